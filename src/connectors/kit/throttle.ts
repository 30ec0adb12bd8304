import { AsyncResource } from 'node:async_hooks';
import Bottleneck from 'bottleneck';
import type { Limits } from '../../core/destination';

/**
 * Runs one call under the rate limit and concurrency cap of `account` (a destination account,
 * scoped to its tenant by the worker).
 */
export type Throttle = <T>(account: string, limits: Limits, call: () => Promise<T>) => Promise<T>;

/** A throttle that holds connections (Redis) until closed. */
export interface ThrottleService {
  throttle: Throttle;
  /** Where the budgets live: `local` (this process) or the Redis they are shared through. */
  readonly store: 'local' | 'redis';
  close(): Promise<void>;
}

export interface ThrottleOptions {
  /**
   * Hold every account's budget in this Redis (redis://…), shared by every worker process that
   * names the same one: three workers writing to one ad account then send at the account's rate,
   * not three times it. Without it, the budget is this process's own.
   */
  redisUrl?: string;
  /** Told once per account whose connectors declare different limits (the tightest applies). */
  onConflict?: (account: string, kept: Budget, declared: Budget) => void;
  /** Errors of the Redis store (calls wait while it reconnects). */
  onError?: (error: unknown) => void;
  /** How long a call may hold its slot in Redis (default CLUSTER_JOB_EXPIRATION_MS). */
  jobExpirationMs?: number;
  /** Prefix of the limiters' Redis keys (tests keep runs apart with it). */
  keyPrefix?: string;
}

/** The part of a destination's limits a throttle enforces. */
export type Budget = Pick<Limits, 'callsPerSecond' | 'maxConcurrent'>;

/**
 * A job that outlives this is dropped from the cluster's count of running calls: it is how a
 * worker that died in the middle of a call gives its slot back. It is longer than a request with
 * every retry and Retry-After wait (kit/http.ts: 5 attempts of at most 30 s, plus the waits).
 */
export const CLUSTER_JOB_EXPIRATION_MS = 10 * 60_000;
/** An account's state leaves Redis after this long without a call. */
const CLUSTER_KEY_TTL_MS = 24 * 3_600_000;

/**
 * One rate limiter and concurrency cap per destination account, shared by every activity of the
 * worker process, and with `redisUrl` by every worker process (Bottleneck's clustering: the
 * running count and the time of the next call live in Redis and change atomically). Two
 * connectors that write to the same ad account share its budget instead of each assuming it has
 * all of it; when they declare different limits, the tightest holds.
 */
export function createThrottleService(options: ThrottleOptions = {}): ThrottleService {
  const connection = options.redisUrl
    ? new Bottleneck.IORedisConnection({ clientOptions: redisClientOptions(options.redisUrl) })
    : undefined;
  const limiters = new Map<string, { limiter: Bottleneck; budget: Budget }>();
  const keyPrefix = options.keyPrefix ?? 'deltasync';

  const limiterFor = (account: string, declared: Budget) => {
    const known = limiters.get(account);
    if (known) {
      const tighter = tightest(known.budget, declared);
      if (!sameBudget(tighter, known.budget)) {
        options.onConflict?.(account, known.budget, declared);
        known.budget = tighter;
        // In Redis the settings are the cluster's: every worker's limiter follows the update.
        void known.limiter.updateSettings(bottleneckSettings(tighter));
      }
      return known.limiter;
    }
    const limiter = new Bottleneck({
      ...bottleneckSettings(declared),
      ...(connection
        ? {
            id: `${keyPrefix}:${account}`,
            datastore: 'ioredis',
            connection,
            clearDatastore: false,
            timeout: CLUSTER_KEY_TTL_MS,
          }
        : {}),
    });
    limiter.on('error', (error: unknown) => options.onError?.(error));
    // The first limiter of an account stores its settings in Redis and later ones read them
    // back; writing ours makes a changed limit take effect at the next worker start.
    if (connection) void limiter.updateSettings(bottleneckSettings(declared));
    limiters.set(account, { limiter, budget: declared });
    return limiter;
  };

  const throttle: Throttle = (account, limits, call) => {
    const declared: Budget = { callsPerSecond: limits.callsPerSecond, maxConcurrent: limits.maxConcurrent };
    // An account nothing has limited: Bottleneck's queue would only add its scheduling to every
    // call. Once one connector of the account declares limits, every call of it goes through them.
    if (!limiters.has(account) && !declared.maxConcurrent && !declared.callsPerSecond) return call();
    const limiter = limiterFor(account, declared);
    // Bottleneck starts a queued call from whichever call freed its slot: bound here, it runs in
    // its own caller's async context, so its calls are counted on its own operation (api-calls.ts)
    // and not on one that may have finished already.
    const job = AsyncResource.bind(call);
    if (!connection) return limiter.schedule(job);
    return limiter.schedule({ expiration: options.jobExpirationMs ?? CLUSTER_JOB_EXPIRATION_MS }, job);
  };

  return {
    throttle,
    store: connection ? 'redis' : 'local',
    async close() {
      const all = [...limiters.values()];
      limiters.clear();
      // Limiters on a shared connection leave it open: it is closed once, after them.
      await Promise.all(
        all.map(({ limiter }) => Promise.resolve(limiter.disconnect(false)).catch(() => undefined)),
      );
      await Promise.resolve(connection?.disconnect(false)).catch(() => undefined);
    },
  };
}

/** One process's budgets, no Redis (a single worker, tests, one-off tools). */
export function createThrottle(): Throttle {
  return createThrottleService().throttle;
}

/** For tests and one-off tools: no limits at all. */
export const unthrottled: Throttle = (_account, _limits, call) => call();

/**
 * Calls are let go this much further apart than the rate allows: a destination counts arrivals,
 * and a call let go on time can arrive a few milliseconds late, so that the next one, on time,
 * lands within the same second as ten others (measured by the load test: 11 calls within one
 * second at 10/s without it).
 */
export const SPACING_HEADROOM = 1.05;

function bottleneckSettings(budget: Budget): Bottleneck.ConstructorOptions {
  return {
    maxConcurrent: budget.maxConcurrent ?? null,
    minTime: budget.callsPerSecond ? Math.ceil((1000 / budget.callsPerSecond) * SPACING_HEADROOM) : 0,
  };
}

/** The stricter of two budgets, field by field (undefined: no limit). */
export function tightest(a: Budget, b: Budget): Budget {
  const min = (x?: number, y?: number) => (x === undefined ? y : y === undefined ? x : Math.min(x, y));
  return {
    callsPerSecond: min(a.callsPerSecond, b.callsPerSecond),
    maxConcurrent: min(a.maxConcurrent, b.maxConcurrent),
  };
}

function sameBudget(a: Budget, b: Budget): boolean {
  return a.callsPerSecond === b.callsPerSecond && a.maxConcurrent === b.maxConcurrent;
}

/** ioredis options from a redis:// URL (user, password, database number in the path). */
function redisClientOptions(url: string) {
  const u = new URL(url);
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new Error(`DELTASYNC_REDIS_URL must start with redis:// or rediss:// (got '${u.protocol}…')`);
  }
  return {
    host: u.hostname,
    port: Number(u.port || 6379),
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    db: Number(u.pathname.replace(/^\//, '') || 0),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}
