import { DestinationError } from './destination';
import { AsyncLocalStorage } from 'node:async_hooks';

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

/** What became of one call: see EndpointTally. */
export type CallOutcome = 'ok' | 'rate_limited' | 'retried' | 'failed';

/**
 * The one measurement of what destination calls cost. The engine runs each destination operation
 * inside `measureCalls`; the HTTP client destinations are given (and `meteredCall`, for the few
 * that speak another protocol) reports every call with `countCall`. The tallies that come back
 * feed both the run's counters and the worker's metrics, so the two cannot disagree.
 */
const currentMeter = new AsyncLocalStorage<EndpointTallies>();

/** Count one call of `endpoint` in the measurement in progress (none: nobody is counting). */
export function countCall(endpoint: string, outcome: CallOutcome): void {
  const tallies = currentMeter.getStore();
  if (!tallies) return;
  const tally = (tallies[endpoint] ??= emptyTally());
  tally.calls += 1;
  if (outcome === 'failed') tally.failed += 1;
  if (outcome === 'rate_limited') tally.rateLimited += 1;
  if (outcome === 'retried') tally.retried += 1;
}

export type Measured<T> =
  { ok: true; value: T; tallies: EndpointTallies } | { ok: false; error: unknown; tallies: EndpointTallies };

/**
 * Run `work` and return what it resolved to or threw, with the calls it made by endpoint. A failed
 * operation's calls were made all the same, so they are returned too.
 */
export async function measureCalls<T>(work: () => Promise<T>): Promise<Measured<T>> {
  const tallies: EndpointTallies = {};
  try {
    const value = await currentMeter.run(tallies, work);
    return { ok: true, value, tallies };
  } catch (error) {
    return { ok: false, error, tallies };
  }
}

/** `work` counted as one call of `endpoint`: for destinations that do not speak HTTP. */
export async function meteredCall<T>(endpoint: string, work: () => Promise<T>): Promise<T> {
  try {
    const value = await work();
    countCall(endpoint, 'ok');
    return value;
  } catch (error) {
    countCall(endpoint, failureStands(error) ? 'failed' : 'retried');
    throw error;
  }
}

/**
 * One destination operation (a batch, a truncate, a page of members, …), measured. An operation
 * that failed with a DestinationError without a counted call (a destination that does not speak
 * HTTP and does not meter its calls) still called the destination: that counts as one call at
 * `endpoint`, failed when the failure stands, retried when it will be tried again.
 */
export async function measureOperation<T>(endpoint: string, work: () => Promise<T>): Promise<Measured<T>> {
  const measured = await measureCalls(work);
  if (measured.ok || !(measured.error instanceof DestinationError)) return measured;
  if (totalOf(measured.tallies).calls > 0) return measured;
  const stands = failureStands(measured.error);
  const tally = { ...emptyTally(), calls: 1, failed: stands ? 1 : 0, retried: stands ? 0 : 1 };
  return { ...measured, tallies: { ...measured.tallies, [endpoint]: tally } };
}

/** A refused batch or a fatal error; anything else (5xx, network, timeouts) is retried. */
export function failureStands(error: unknown): boolean {
  return error instanceof DestinationError && error.kind !== 'retryable';
}

/** 429 answers waited for, over all endpoints. */
export function rateLimitWaitsOf(tallies: EndpointTallies): number {
  return totalOf(tallies).rateLimited;
}

/** The sums over all endpoints, for the run's totals. */
export function totalOf(tallies: EndpointTallies): EndpointTally {
  const total = emptyTally();
  for (const tally of Object.values(tallies)) addTally(total, tally);
  return total;
}

/** `from`'s calls added to `into`, endpoint by endpoint. */
export function addTallies(into: EndpointTallies, from: EndpointTallies): void {
  for (const [endpoint, tally] of Object.entries(from)) addTally((into[endpoint] ??= emptyTally()), tally);
}

function addTally(into: EndpointTally, from: EndpointTally): void {
  into.calls += from.calls;
  into.failed += from.failed;
  into.rateLimited += from.rateLimited;
  into.retried += from.retried;
}

export function emptyTally(): EndpointTally {
  return { calls: 0, failed: 0, rateLimited: 0, retried: 0 };
}
