import { noopObserver, type EngineObserver } from '../core/observer';
import { describeError, logger } from '../logging';

/**
 * What the refresh engine tells the outside world about its work, for metrics: the engine's
 * observer port (core/observer.ts), implemented here by Prometheus series (see metrics.ts). The
 * engine reports facts (the calls of every destination operation, batches committed, runs
 * closed); only destination types, endpoint names, strategies, statuses and counts cross it:
 * never connector data, keys or secrets.
 */
export type RefreshObserver = EngineObserver;

export const noopRefreshObserver: RefreshObserver = noopObserver;

/**
 * The observer as the engine uses it: a failing observer is logged and ignored, so metrics can
 * never change what a refresh does.
 */
export function safeObserver(observer: RefreshObserver | undefined): RefreshObserver {
  if (!observer) return noopRefreshObserver;
  const guard =
    <A extends unknown[]>(name: keyof RefreshObserver, report: (...args: A) => void) =>
    (...args: A) => {
      try {
        report(...args);
      } catch (error) {
        logger.warn({ error: describeError(error), observer: name }, 'refresh observer failed; ignored');
      }
    };
  return {
    onCalls: guard('onCalls', observer.onCalls.bind(observer)),
    onBatch: guard('onBatch', observer.onBatch.bind(observer)),
    onRunFinished: guard('onRunFinished', observer.onRunFinished.bind(observer)),
  };
}
