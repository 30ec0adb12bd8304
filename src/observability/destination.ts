import type { BatchOutcome, Destination } from '../connectors/types';
import type { RefreshObserver } from './observer';

/**
 * A destination that reports every operation's API calls and rate-limit waits to an observer,
 * and otherwise behaves exactly like the one it wraps: same results, same errors, same `this`.
 *
 * Calls are counted the way the run records them (`run_api_calls`): every HTTP call of an
 * operation counts, retries included; an operation that ends in an error counts one failed call
 * (at its own endpoint when it called it, otherwise at the last endpoint it called). Unlike the
 * run's counters, the metrics also count operations whose error fails the activity (retries run
 * out, fatal errors): the destination was called, and the call failed.
 */
export function observeDestination(destination: Destination, observer: RefreshObserver): Destination {
  const type = destination.type;

  function succeeded(endpoint: string, outcome: BatchOutcome | undefined): void {
    if (!outcome) return;
    for (const [name, calls] of Object.entries(outcome.callsByEndpoint ?? { [endpoint]: outcome.apiCalls })) {
      observer.onCall(type, name, calls, 0);
    }
    observer.onRateLimitWaits(type, outcome.rateLimitWaits);
  }

  function failed(endpoint: string, error: unknown): void {
    const cost = (error ?? {}) as Partial<
      Pick<BatchOutcome, 'apiCalls' | 'rateLimitWaits' | 'callsByEndpoint'>
    >;
    // A copy: the sender reads the same error's counts afterwards.
    const byEndpoint = { ...(cost.callsByEndpoint ?? { [endpoint]: cost.apiCalls ?? 1 }) };
    const names = Object.keys(byEndpoint);
    const failedAt = names.length === 0 || names.includes(endpoint) ? endpoint : names[names.length - 1]!;
    byEndpoint[failedAt] = Math.max(byEndpoint[failedAt] ?? 0, 1);
    for (const [name, calls] of Object.entries(byEndpoint)) {
      observer.onCall(type, name, calls, name === failedAt ? 1 : 0);
    }
    observer.onRateLimitWaits(type, cost.rateLimitWaits ?? 0);
  }

  /** An operation resolving to a BatchOutcome (or carrying one, like createList). */
  const counted =
    <A extends unknown[], R>(
      endpoint: string,
      operation: (...args: A) => Promise<R>,
      outcomeOf: (r: R) => BatchOutcome,
    ) =>
    async (...args: A): Promise<R> => {
      let result: R;
      try {
        result = await operation(...args);
      } catch (error) {
        failed(endpoint, error);
        throw error;
      }
      succeeded(endpoint, outcomeOf(result));
      return result;
    };

  return new Proxy(destination, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== 'function') return value;
      const method = (value as (...args: unknown[]) => unknown).bind(target);
      switch (property) {
        case 'add':
        case 'remove':
        case 'truncate':
        case 'swapList':
        case 'deleteList':
          return counted(property, method as (...args: unknown[]) => Promise<BatchOutcome>, (r) => r);
        case 'createList':
          return counted(
            property,
            method as (...args: unknown[]) => Promise<{ outcome: BatchOutcome }>,
            (r) => r.outcome,
          );
        case 'listMembers':
          // One page, one call (as the run counts it).
          return counted(property, method as (...args: unknown[]) => Promise<unknown>, () => ({
            rejected: [],
            apiCalls: 1,
            rateLimitWaits: 0,
          }));
        case 'forList':
          return (listId: string) => observeDestination(method(listId) as Destination, observer);
        default:
          return method;
      }
    },
  });
}
