import cliProgress from 'cli-progress';
import type { LiveProgress, RefreshHandle, RunSummary } from '../client';

/**
 * Await a refresh while drawing a progress bar fed by the workflow's progress query and the send
 * activity's heartbeat. Falls back to plain lines when stderr is not a terminal (CI, pipes).
 */
export async function followRefresh(handle: RefreshHandle, label: string): Promise<RunSummary> {
  const interactive = Boolean(process.stderr.isTTY);
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} {phase} |{bar}| {value}/{total} records · {batches} batches · {rejected} rejected · {waits} rate-limit waits`,
      stream: process.stderr,
      hideCursor: true,
      noTTYOutput: false,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  let lastPhase = '';
  const result = handle.result();
  let done = false;
  void result.finally(() => (done = true)).catch(() => undefined);

  while (!done) {
    const progress = await handle.progress().catch(() => undefined);
    if (progress) {
      const view = summarise(progress);
      if (interactive) {
        if (!started) bar.start(view.total, 0, view.payload);
        started = true;
        bar.setTotal(Math.max(view.total, 1));
        bar.update(view.value, view.payload);
      } else if (progress.phase !== lastPhase) {
        process.stderr.write(`${label} ${progress.phase}${view.total ? ` (${view.total} records)` : ''}\n`);
      }
      lastPhase = progress.phase;
    }
    await Promise.race([result.catch(() => undefined), new Promise((r) => setTimeout(r, 250))]);
  }
  if (started) {
    bar.update(bar.getTotal(), { phase: 'done' });
    bar.stop();
  }
  return result;
}

function summarise(progress: LiveProgress) {
  const plan = progress.plan;
  const total = plan ? phaseTotal(progress.phase, plan) : 0;
  const sending = progress.sending;
  const finished = progress.completedPhases.reduce((sum, p) => sum + p.recordsDone, 0);
  const value =
    progress.phase === 'committing' || progress.phase === 'done'
      ? total
      : Math.min(sending?.recordsDone ?? 0, total);
  return {
    total,
    value,
    payload: {
      phase: progress.phase.padEnd(17),
      batches: (sending?.batches ?? 0) + progress.completedPhases.reduce((s, p) => s + p.batches, 0),
      rejected: (sending?.rejected ?? 0) + progress.completedPhases.reduce((s, p) => s + p.rejected, 0),
      waits:
        (sending?.rateLimitWaits ?? 0) + progress.completedPhases.reduce((s, p) => s + p.rateLimitWaits, 0),
      finished,
    },
  };
}

function phaseTotal(phase: string, plan: NonNullable<LiveProgress['plan']>): number {
  if (phase === 'deletions') return plan.deletions;
  if (phase === 'full') return plan.datasetSize;
  if (phase === 'upserts')
    return plan.strategy === 'truncate' ? plan.datasetSize : plan.additions + plan.updates;
  return plan.additions + plan.updates + plan.deletions;
}
