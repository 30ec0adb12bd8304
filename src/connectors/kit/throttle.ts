import { AsyncResource } from 'node:async_hooks';
import Bottleneck from 'bottleneck';
import type { Limits } from '../../core/destination';

/**
 * Runs one call under the rate limit and concurrency cap of `account` (a destination account,
 * scoped to its tenant by the worker).
 */
export type Throttle = <T>(account: string, limits: Limits, call: () => Promise<T>) => Promise<T>;

/**
 * One rate limiter and concurrency cap per destination account, shared by every activity in this
 * worker process: two connectors that write to the same ad account share its budget instead of
 * each assuming it has all of it. (Across several workers, each worker gets its own share; set
 * callsPerSecond per worker accordingly.)
 */
export function createThrottle(): Throttle {
  const limiters = new Map<string, Bottleneck>();
  return (account, limits, call) => {
    let limiter = limiters.get(account);
    // An account nothing has limited: Bottleneck's queue would only add its scheduling to every
    // call. Once one connector of the account declares limits, every call of it goes through them.
    if (!limiter && !limits.maxConcurrent && !limits.callsPerSecond) return call();
    if (!limiter) {
      limiter = new Bottleneck(bottleneckOptions(limits));
      limiters.set(account, limiter);
    }
    // Bottleneck starts a queued call from whichever call freed its slot: bound here, it runs in
    // its own caller's async context, so its calls are counted on its own operation (api-calls.ts)
    // and not on one that may have finished already.
    return limiter.schedule(AsyncResource.bind(call));
  };
}

function bottleneckOptions(limits: Limits): Bottleneck.ConstructorOptions {
  return {
    maxConcurrent: limits.maxConcurrent ?? null,
    minTime: limits.callsPerSecond ? Math.ceil(1000 / limits.callsPerSecond) : 0,
  };
}

/** For tests and one-off tools: no limits at all. */
export const unthrottled: Throttle = (_account, _limits, call) => call();
