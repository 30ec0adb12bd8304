import type { BatchOutcome, Destination } from '../connectors/types';
import {
  rateLimitWaitsOf,
  talliesOfFailure,
  talliesOfOutcome,
  type EndpointTallies,
} from '../core/api-calls';
import type { RefreshObserver } from './observer';

/**
 * A destination that reports every operation's API calls and rate-limit waits to an observer,
 * and otherwise behaves exactly like the one it wraps: same results, same errors, same `this`.
 *
 * Calls are counted the way the run records them (`run_api_calls`, see core/api-calls.ts): every
 * HTTP call of an operation counts once, by endpoint and outcome (ok, rate_limited, retried,
 * failed); an operation that ends in an error counts one failed call (at its own endpoint when it
 * called it, otherwise at the last endpoint it called).
 */
export function observeDestination(destination: Destination, observer: RefreshObserver): Destination {
  const type = destination.type;

  function succeeded(endpoint: string, outcome: BatchOutcome | undefined): void {
    if (!outcome) return;
    report(talliesOfOutcome(outcome, endpoint), outcome.rateLimitWaits);
  }

  function failed(endpoint: string, error: unknown): void {
    report(talliesOfFailure(error, endpoint), rateLimitWaitsOf(error));
  }

  function report(tallies: EndpointTallies, rateLimitWaits: number): void {
    for (const [name, tally] of Object.entries(tallies)) observer.onCall(type, name, tally);
    observer.onRateLimitWaits(type, rateLimitWaits);
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
