import { DestinationError, type BatchOutcome, type CallRetries } from '../connectors/types';

/**
 * What the calls to one endpoint came to, as the run (`run_api_calls`) and the metrics count them.
 * Every HTTP call counts once, whatever became of it: `rateLimited` were answered 429 and waited
 * for; `retried` failed (5xx, network) and were tried again, inside the operation or by Temporal
 * retrying the activity; `failed` ended in a failure that stands (a batch refused, its records
 * left pending; a fatal error); the rest succeeded. Only `failed` weighs against the run's success
 * threshold: a retried call cost something, but what it carried went out on the next try.
 */
export interface EndpointTally {
  calls: number;
  failed: number;
  rateLimited: number;
  retried: number;
}

export type EndpointTallies = Record<string, EndpointTally>;

/** The calls of an operation that succeeded (perhaps after retries), by endpoint. */
export function talliesOfOutcome(outcome: BatchOutcome, operation: string, failed = 0): EndpointTallies {
  // Without a breakdown by endpoint, every call and every wait was the operation's own.
  const tallies = outcome.callsByEndpoint
    ? talliesOf(outcome.callsByEndpoint, outcome.retriesByEndpoint)
    : talliesOf(
        { [operation]: outcome.apiCalls },
        outcome.retriesByEndpoint ?? { [operation]: { rateLimited: outcome.rateLimitWaits, retried: 0 } },
      );
  if (failed > 0) addFailure(tallies, operation, failed);
  return tallies;
}

/**
 * The calls of an operation that ended in an error: what the error says it cost, and its last
 * call, at the operation's own endpoint when it called it (else at the last endpoint it called):
 * failed when the failure stands, retried when the activity will try again. An error that reports
 * no cost still made one call: the destination was called, and it failed.
 */
export function talliesOfFailure(error: unknown, operation: string): EndpointTallies {
  const cost = (error ?? {}) as Partial<
    Pick<DestinationError, 'apiCalls' | 'rateLimitWaits' | 'callsByEndpoint' | 'retriesByEndpoint'>
  > & { retriedCalls?: number };
  const own = { rateLimited: cost.rateLimitWaits ?? 0, retried: cost.retriedCalls ?? 0 };
  const tallies = cost.callsByEndpoint
    ? talliesOf(cost.callsByEndpoint, cost.retriesByEndpoint)
    : talliesOf({ [operation]: cost.apiCalls ?? 1 }, cost.retriesByEndpoint ?? { [operation]: own });
  const names = Object.keys(tallies);
  const failedAt = names.length === 0 || names.includes(operation) ? operation : names[names.length - 1]!;
  if (failureStands(error)) addFailure(tallies, failedAt, 1);
  else addRetry(tallies, failedAt);
  return tallies;
}

/** A refused batch or a fatal error; anything else (5xx, network, timeouts) is retried. */
function failureStands(error: unknown): boolean {
  return error instanceof DestinationError && error.kind !== 'retryable';
}

/** The 429 waits an error says its operation went through (0 when it does not say). */
export function rateLimitWaitsOf(error: unknown): number {
  return (error as { rateLimitWaits?: number } | null)?.rateLimitWaits ?? 0;
}

/** Does the error say it comes from a destination call (rather than from our database, say)? */
export function isCallFailure(error: unknown): boolean {
  const apiCalls = (error as { apiCalls?: unknown } | undefined)?.apiCalls;
  return error instanceof Error && typeof apiCalls === 'number' && apiCalls > 0;
}

/** The sums over all endpoints, for the run's totals. */
export function totalOf(tallies: EndpointTallies): EndpointTally {
  const total = emptyTally();
  for (const tally of Object.values(tallies)) {
    total.calls += tally.calls;
    total.failed += tally.failed;
    total.rateLimited += tally.rateLimited;
    total.retried += tally.retried;
  }
  return total;
}

export function emptyTally(): EndpointTally {
  return { calls: 0, failed: 0, rateLimited: 0, retried: 0 };
}

function talliesOf(
  calls: Record<string, number>,
  retries: Record<string, CallRetries> | undefined,
): EndpointTallies {
  const tallies: EndpointTallies = {};
  for (const [endpoint, count] of Object.entries(calls)) {
    tallies[endpoint] = { ...emptyTally(), calls: count };
  }
  for (const [endpoint, { rateLimited, retried }] of Object.entries(retries ?? {})) {
    const tally = (tallies[endpoint] ??= emptyTally());
    tally.rateLimited += rateLimited;
    tally.retried += retried;
    // Every retried call is a call: a destination that reports retries but not calls still made them.
    tally.calls = Math.max(tally.calls, tally.rateLimited + tally.retried);
  }
  return tallies;
}

function addRetry(tallies: EndpointTallies, endpoint: string): void {
  const tally = (tallies[endpoint] ??= emptyTally());
  tally.retried += 1;
  tally.calls = Math.max(tally.calls, tally.rateLimited + tally.retried + tally.failed);
}

function addFailure(tallies: EndpointTallies, endpoint: string, failed: number): void {
  const tally = (tallies[endpoint] ??= emptyTally());
  tally.failed += failed;
  tally.calls = Math.max(tally.calls, tally.rateLimited + tally.retried + tally.failed);
}
