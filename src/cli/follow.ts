import type cliProgress from 'cli-progress';
import type { LiveProgress, RefreshHandle, RunSummary } from '../client';

/**
 * How `refresh --follow` shows progress: `bar` draws a progress bar (on a terminal it redraws in
 * place; elsewhere it prints the bar as a new line every second), `lines` prints one line per
 * phase, `none` prints nothing, `auto` is `bar` on a terminal and `lines` otherwise.
 */
export type ProgressMode = 'auto' | 'bar' | 'lines' | 'none';
export const PROGRESS_MODES: ProgressMode[] = ['auto', 'bar', 'lines', 'none'];

export interface FollowOptions {
  mode?: ProgressMode;
  /** Where progress goes (default stderr, so stdout stays the result). */
  stream?: NodeJS.WriteStream;
  /** How often to ask the workflow (default 250 ms). */
  pollMs?: number;
}

/**
 * Await a refresh while showing its progress, fed by the workflow's `progress` query (phase, plan,
 * finished send phases) and the running send activity's heartbeat (records, batches, rejections,
 * rate-limit waits). Resolves with the run's summary; rejects as `handle.result()` does. It waits
 * as long as the run: the CLI bounds it by watching the worker (context.ts `withWorker`).
 */
export async function followRefresh(
  handle: RefreshHandle,
  label: string,
  options: FollowOptions = {},
): Promise<RunSummary> {
  const stream = options.stream ?? process.stderr;
  const tty = Boolean(stream.isTTY);
  const mode = options.mode === undefined || options.mode === 'auto' ? (tty ? 'bar' : 'lines') : options.mode;
  const view: ProgressView =
    mode === 'none'
      ? { show: () => undefined, stop: () => undefined }
      : mode === 'lines'
        ? phaseLines(stream, label)
        : tty
          ? terminalBar(stream, label, (await import('cli-progress')).default)
          : printedBar(stream, label);
  const result = handle.result();
  let done = false;
  void result.then(
    () => (done = true),
    () => (done = true),
  );

  const follow = async () => {
    while (!done) {
      const progress = await handle.progress().catch(() => undefined);
      if (progress) view.show(progress);
      await Promise.race([
        result.catch(() => undefined),
        new Promise((r) => setTimeout(r, options.pollMs ?? 250)),
      ]);
    }
    // The last word: the finished workflow still answers the query.
    const final = await handle.progress().catch(() => undefined);
    if (final) view.show(final);
  };

  try {
    await Promise.all([follow(), result]);
    return await result;
  } finally {
    done = true;
    view.stop();
  }
}

interface ProgressView {
  show(progress: LiveProgress): void;
  stop(): void;
}

const BAR_SIZE = 30;
const counters = (s: ReturnType<typeof summarise>) =>
  `${s.records} records · ${s.batches} batches · ${s.rejected} rejected · ${s.waits} rate-limit waits`;

/** On a terminal: one bar, redrawn in place. */
function terminalBar(stream: NodeJS.WriteStream, label: string, bars: typeof cliProgress): ProgressView {
  const bar = new bars.SingleBar(
    { format: `${label} {phase} |{bar}| {counters}`, stream, hideCursor: true, barsize: BAR_SIZE },
    bars.Presets.shades_classic,
  );
  let started = false;
  return {
    show(progress) {
      const s = summarise(progress);
      const payload = { phase: s.phase, counters: counters(s) };
      if (!started) bar.start(s.barTotal, s.barValue, payload);
      started = true;
      bar.setTotal(s.barTotal);
      bar.update(s.barValue, payload);
    },
    stop: () => {
      if (started) bar.stop();
      started = false;
    },
  };
}

/**
 * Elsewhere (a pipe, a CI log), when asked for a bar: the bar as a new line whenever it changed,
 * at most once a second (and at every phase change), and always its final state.
 */
function printedBar(stream: NodeJS.WriteStream, label: string): ProgressView {
  let printed = '';
  let pending = '';
  let printedAt = 0;
  const flush = () => {
    if (pending && pending !== printed) stream.write(`${pending}\n`);
    printed = pending;
    printedAt = Date.now();
  };
  return {
    show(progress) {
      const s = summarise(progress);
      const filled = Math.round((s.barTotal === 0 ? 1 : s.barValue / s.barTotal) * BAR_SIZE);
      const bar = '\u2588'.repeat(filled) + '\u2591'.repeat(BAR_SIZE - filled);
      pending = `${label} ${s.phase} |${bar}| ${counters(s)}`;
      const phaseChanged = !printed.startsWith(`${label} ${s.phase} `);
      if (phaseChanged || Date.now() - printedAt >= 1000) flush();
    },
    stop: flush,
  };
}

/** One line per phase (the default off a terminal). */
function phaseLines(stream: NodeJS.WriteStream, label: string): ProgressView {
  let lastPhase = '';
  return {
    show(progress) {
      if (progress.phase === lastPhase) return;
      lastPhase = progress.phase;
      const s = summarise(progress);
      const counts = s.planned === null ? '' : ` (${s.records} records)`;
      const guard =
        progress.phase === 'awaiting approval' && progress.plan?.guard
          ? `: ${progress.plan.guard.reason}; run 'deltasync approve ${progress.connectorId}' or ` +
            `'deltasync reject ${progress.connectorId}'`
          : '';
      const paused = progress.paused
        ? `: ${progress.paused.reason}; resumes by itself at ${progress.paused.until}`
        : '';
      stream.write(`${label} ${progress.phase}${counts}${guard}${paused}\n`);
    },
    stop: () => undefined,
  };
}

/**
 * Records sent so far of all the run will send (`planned` is null until the plan is known), the
 * counters of every send phase so far, and the bar's position.
 */
export function summarise(progress: LiveProgress) {
  const phases = [
    ...progress.completedPhases,
    // The heartbeat of a phase that has since finished is already among the completed ones.
    ...(progress.sending && !progress.completedPhases.some((p) => p.phase === progress.sending!.phase)
      ? [progress.sending]
      : []),
  ];
  const sum = (pick: (p: (typeof phases)[number]) => number) => phases.reduce((s, p) => s + pick(p), 0);
  const finished = progress.phase === 'done' || progress.phase === 'committing';
  const planned = progress.plan
    ? Math.max(
        plannedRecords(progress.plan),
        sum((p) => p.recordsDone),
      )
    : null;
  const sent = finished && planned !== null ? planned : sum((p) => p.recordsDone);
  const count = (n: number) => n.toLocaleString('en-US');
  return {
    phase: progress.phase.padEnd(17),
    sent,
    planned,
    records: `${count(sent)}/${planned === null ? '?' : count(planned)}`,
    batches: count(sum((p) => p.batches)),
    rejected: count(sum((p) => p.rejected)),
    waits: count(sum((p) => p.rateLimitWaits)),
    // An empty bar until the plan is known; a full one for a run with nothing to send.
    barTotal: planned === null ? 1 : planned,
    barValue: planned === null ? 0 : sent,
  };
}

/** What the run's send phases will handle, by the planned strategy. */
function plannedRecords(plan: NonNullable<LiveProgress['plan']>): number {
  if (!plan.needed || plan.strategy === null) return 0;
  switch (plan.strategy) {
    case 'full':
      return plan.datasetSize + plan.deletions;
    case 'truncate':
    case 'newList':
      return plan.datasetSize;
    default:
      return plan.additions + plan.updates + plan.deletions;
  }
}
