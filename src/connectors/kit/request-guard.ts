import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * A hook around every HTTP request a destination makes: whoever runs destination calls (the
 * worker, for a tenant) may say which URLs they may reach. The HTTP layer asks before each request
 * and refuses the ones the guard names a reason for. Outside a guard (a destination used on its
 * own, as the contract tests do) nothing is refused.
 */
export type RequestGuard = (url: URL) => string | undefined;

const current = new AsyncLocalStorage<RequestGuard>();

/** Run `work` with every HTTP request it makes held to `guard`. */
export function withRequestGuard<T>(guard: RequestGuard, work: () => Promise<T>): Promise<T> {
  return current.run(guard, work);
}

/** Why `url` may not be called here, or undefined when it may. */
export function requestRefusal(url: string): string | undefined {
  return current.getStore()?.(new URL(url));
}
