import type { EndpointTally } from '../core/api-calls';
import { describeError, logger } from '../logging';

/**
 * What the refresh activities tell the outside world about their work, for metrics. Activities
 * report facts (calls made, records committed, runs closed); an implementation turns them into
 * Prometheus series (see metrics.ts). Only destination types, endpoint names, strategies,
 * statuses and counts cross this interface: never connector data, keys or secrets.
 */
export interface RefreshObserver {
  /**
   * API calls one destination operation made at `endpoint` (`add`, `users:add`, `jobs:run`, …),
   * retries included, and what became of them (see core/api-calls.ts).
   */
  onCall(destination: string, endpoint: string, tally: EndpointTally): void;
  /** Times the destination told us to slow down (429 or equivalent) and we waited. */
  onRateLimitWaits(destination: string, waits: number): void;
  /** One recorded send call: records delivered (committed) and records rejected. */
  onBatch(destination: string, batch: { delivered: number; rejected: number }): void;
  /** A run was closed (`status`: succeeded, failed or noop); `seconds` from begin to finish. */
  onRunFinished(destination: string, strategy: string | null, status: string, seconds: number): void;
}

export const noopRefreshObserver: RefreshObserver = {
  onCall: () => undefined,
  onRateLimitWaits: () => undefined,
  onBatch: () => undefined,
  onRunFinished: () => undefined,
};

/**
 * The observer as the activities use it: a failing observer is logged and ignored, so metrics can
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
    onCall: guard('onCall', observer.onCall.bind(observer)),
    onRateLimitWaits: guard('onRateLimitWaits', observer.onRateLimitWaits.bind(observer)),
    onBatch: guard('onBatch', observer.onBatch.bind(observer)),
    onRunFinished: guard('onRunFinished', observer.onRunFinished.bind(observer)),
  };
}

/** The sender's running totals, as its `onBatch` callback receives them. */
export interface SendTotals {
  delivered: number;
  rejected: number;
}

/**
 * Per-call increments from the sender's running totals. The totals count from zero in every
 * activity attempt, a resumed one included (a resume restores only the cursor), so the baseline
 * is zero for each attempt, never the heartbeat details of the attempt before.
 */
export function sendIncrements(): (totals: SendTotals) => SendTotals {
  let last: SendTotals = { delivered: 0, rejected: 0 };
  return (totals) => {
    const increment = {
      delivered: totals.delivered - last.delivered,
      rejected: totals.rejected - last.rejected,
    };
    last = { delivered: totals.delivered, rejected: totals.rejected };
    return increment;
  };
}
