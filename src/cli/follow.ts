import type cliProgress from 'cli-progress';
import type { LiveProgress, RefreshHandle, RunSummary } from '../client';
import { clockTime } from './format';

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

/**
 * Records per second since the send began, and the time left at that rate (none before the first
 * records, or once done).
 */
function rateTracker(now: () => number = Date.now) {
  let start: { at: number; sent: number } | undefined;
  return (s: ReturnType<typeof summarise>): { rate?: string; eta?: string } => {
    if (start === undefined) {
      if (s.sent > 0) start = { at: now(), sent: s.sent };
      return {};
    }
    const seconds = (now() - start.at) / 1000;
    // Done: the run's own summary says how long it took.
    if (s.planned !== null && s.sent >= s.planned) return {};
    if (seconds < 1 || s.sent <= start.sent) return {};
    const perSecond = (s.sent - start.sent) / seconds;
    const rate = `${Math.round(perSecond).toLocaleString('en-US')}/s`;
    if (s.planned === null) return { rate };
    return { rate, eta: `ETA ${clockTime(Math.ceil((s.planned - s.sent) / perSecond))}` };
  };
}

/** `text` in at most `max` characters (at least 4), its end replaced by … when cut. */
function shorten(text: string, max: number): string {
  const room = Math.max(4, max);
  return text.length <= room ? text : `${text.slice(0, room - 1)}…`;
}

/**
 * What follows the bar, as much of it as fits in `width` characters: the records first, then rate
 * and time left, then the rest.
 */
export function fittedCounters(
  s: ReturnType<typeof summarise>,
  timing: { rate?: string; eta?: string },
  width: number,
): string {
  const parts = [
    `${s.records} records`,
    timing.rate,
    timing.eta,
    `${s.rejected} rejected`,
    `${s.batches} batches`,
    `${s.waits} rate-limit waits`,
  ].filter((p): p is string => p !== undefined);
  let line = '';
  for (const part of parts) {
    const next = line ? `${line} · ${part}` : part;
    if (next.length > width) break;
    line = next;
  }
  return line || s.records.slice(0, Math.max(0, width));
}

/** On a terminal: one bar, redrawn in place. */
function terminalBar(stream: NodeJS.WriteStream, label: string, bars: typeof cliProgress): ProgressView {
  // Fits the terminal: a narrower bar first, then fewer counters after it, then a shorter label.
  const width = stream.columns ?? 80;
  const LONGEST_PHASE = 'awaiting approval'.length;
  const barSize = Math.max(10, Math.min(BAR_SIZE, width - label.length - LONGEST_PHASE - 45));
  const fixed = barSize + 5;
  const shown =
    label.length + LONGEST_PHASE + fixed + 22 > width
      ? shorten(label, width - LONGEST_PHASE - fixed - 22)
      : label;
  const room = (phase: string) => width - shown.length - phase.length - fixed;
  const bar = new bars.SingleBar(
    {
      format: `${shown} {phase} |{bar}| {counters}`,
      stream,
      hideCursor: true,
      barsize: barSize,
      linewrap: false,
    },
    bars.Presets.shades_classic,
  );
  const timing = rateTracker();
  let started = false;
  let hinted = false;
  return {
    show(progress) {
      const s = summarise(progress);
      const phase = progress.phase;
      const payload = { phase, counters: fittedCounters(s, timing(s), room(phase)) };
      const hint = approvalHint(progress);
      if (hint && !hinted) {
        // Said once, above the bar (which is redrawn below it).
        if (started) bar.stop();
        started = false;
        stream.write(`${label} awaiting approval: ${hint}\n`);
      }
      hinted = Boolean(hint);
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
  const timing = rateTracker();
  let printed = '';
  let pending = '';
  let printedAt = 0;
  let hinted = false;
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
      const { rate, eta } = timing(s);
      pending = `${label} ${s.phase} |${bar}| ${counters(s)}${rate ? ` · ${rate}` : ''}${eta ? ` · ${eta}` : ''}`;
      const hint = approvalHint(progress);
      if (hint && !hinted) stream.write(`${label} awaiting approval: ${hint}\n`);
      hinted = Boolean(hint);
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
      const hint = approvalHint(progress);
      const guard = hint ? `: ${hint}` : '';
      const paused = progress.paused
        ? `: ${progress.paused.reason}; resumes by itself at ${progress.paused.until}`
        : '';
      stream.write(`${label} ${progress.phase}${counts}${guard}${paused}\n`);
    },
    stop: () => undefined,
  };
}

/**
 * What to do about a run held by the mass-delete guard: why it waits, the two commands that decide,
 * and what happens without a decision. Undefined while the run is not waiting.
 */
export function approvalHint(progress: LiveProgress): string | undefined {
  const guard = progress.plan?.guard;
  if (progress.phase !== 'awaiting approval' || !guard) return undefined;
  const id = progress.connectorId;
  return (
    `${guard.reason}; run 'deltasync approve ${id}' to send the deletions or 'deltasync reject ${id}' ` +
    `to keep them pending (no decision within ${guard.approvalTimeoutSeconds} s rejects)`
  );
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
