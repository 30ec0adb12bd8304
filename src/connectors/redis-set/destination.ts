import Redis from 'ioredis';
import { countCall, failureStands, type CallOutcome } from '../../core/api-calls';
import {
  DestinationError,
  type BatchResult,
  type Destination,
  type Limits,
  type Member,
  type MemberPage,
  type SecretResolver,
} from '../../core/destination';
import { fullJitterBackoff, realSleep, type RetryOptions } from '../kit/http';
import { resolveSecret } from '../kit/index';
import type { DestinationContext } from '../kit/module';
import {
  buildKeyPrefix,
  REDIS_SET_TYPE,
  redisSetConfigSchema,
  swapMarkerKey,
  type RedisSetConfig,
  type RedisSetConfigInput,
} from './settings';

/**
 * `redis-set`: the list is one Redis set, read by applications with SISMEMBER / SMEMBERS.
 *
 *   add      SADD key m1 m2 …    (one command per batch: recordsPerCall members at most)
 *   remove   SREM key m1 m2 …
 *   truncate DEL key
 *   list     SSCAN key cursor COUNT limit
 *   check    SCARD key
 *   new list + swap: fill `${key}:build:${name}` with SADD, then RENAME it over `key` (atomic).
 *
 * A set holds member names only: attributes are not stored (the destination is keys-only, so the
 * engine sends no attribute change), so give the connector a dataset without attributes.
 *
 * Every command counts as one call at its name (SADD, RENAME, …); SSCAN pages count as
 * `listMembers`, the name the run has always booked them under. Attempts that fail count too:
 * a connection refused for "max number of clients reached" as rate limited, one that will be
 * tried again as retried, an error answer that stands as failed.
 *
 * SADD, SREM and DEL are idempotent, so a command whose answer was lost is simply sent again.
 * RENAME is not (the second one fails with "no such key"); the swap records the build it swapped
 * in `${key}:swapped` in the same MULTI, and a repeated swap of that build is a no-op.
 *
 * Acknowledgement: every command's own reply. SADD/SREM count the members they changed; fewer is
 * no short acknowledgement, the others were already in (out of) the set, the state asked for.
 * A call counts only when its reply came back without an error: an error, or a lost connection,
 * fails the whole call, and nothing of it is committed.
 */

/** The endpoints that are not the command's own name. */
export const REDIS_SET_ENDPOINTS = { list: 'listMembers' } as const;

const defaults = { maxAttempts: 5, baseDelayMs: 250, maxDelayMs: 10_000, timeoutMs: 30_000 };

export function createRedisSetDestination(
  input: RedisSetConfigInput,
  context: DestinationContext,
): Destination {
  const config = redisSetConfigSchema.parse(input);
  const session = new RedisSession(config, context.secrets, context.retry);
  const liveKey = config.key;
  const limits: Limits = { recordsPerCall: config.recordsPerCall };

  /** The destination writing to one key: the live set, or a set being built for a swap. */
  function setAt(key: string): Destination {
    return {
      type: REDIS_SET_TYPE,
      limits,
      // Nothing to update: a set stores no attributes.
      keysOnly: true,

      async add(members: Member[]): Promise<BatchResult> {
        const names = members.map((m) => m.key);
        // Redis accepts any byte string as a member: there is nothing to reject per record.
        if (names.length > 0) {
          await session.run(key, (client, send) => send('SADD', () => client.sadd(key, ...names)));
        }
        return { rejected: [] };
      },

      async remove(keys: string[]): Promise<BatchResult> {
        if (keys.length > 0) {
          await session.run(key, (client, send) => send('SREM', () => client.srem(key, ...keys)));
        }
        return { rejected: [] };
      },

      async truncate(): Promise<void> {
        await session.run(key, (client, send) => send('DEL', () => client.del(key)));
      },

      async listMembers(cursor: string | null, limit: number): Promise<MemberPage> {
        const [next, members] = await session.run(key, (client, send) =>
          send(REDIS_SET_ENDPOINTS.list, () => client.sscan(key, cursor ?? '0', 'COUNT', Math.max(1, limit))),
        );
        // SSCAN may repeat a member within a page or across pages, and COUNT is only a hint: a
        // page can be larger than `limit` (small sets come back whole) or empty with a cursor.
        return { keys: [...new Set(members)], next: next === '0' ? null : next };
      },

      replaceList: {
        create: (name) => createBuild(name),
        forList: (listId) => setAt(ownKey(listId)),
        swap: async (listId) => {
          await swapIn(ownBuildKey(listId));
          // RENAME moved the new set onto the live key: that is where the list lives now.
          return { liveListId: liveKey };
        },
        retire: (listId) => retire(listId),
      },

      /** The credentials and the key in one command: a key of another type is refused. */
      async check(): Promise<string> {
        const members = await session.run(key, (client, send) => send('SCARD', () => client.scard(key)));
        return `${REDIS_SET_TYPE}: set '${key}' on ${session.where()} reachable (${members} member${members === 1 ? '' : 's'})`;
      },

      close: () => session.close(),
    };
  }

  /**
   * The build key for `name`. Deliberately not emptied when it exists: the engine calls this again
   * only for the same run, whose fill resumes from its checkpoint, so members already added there
   * are committed and must stay. (Redis cannot hold an empty set: the key appears with the first
   * SADD, so there is nothing to create; we only check that the name is free for a set.)
   */
  async function createBuild(name: string): Promise<{ listId: string }> {
    const buildKey = `${buildKeyPrefix(liveKey)}${name}`;
    const type = await session.run(buildKey, (client, send) => send('TYPE', () => client.type(buildKey)));
    requireSetOrNone(buildKey, type);
    return { listId: buildKey };
  }

  /**
   * RENAME build → live, atomically replacing the old set. Idempotent: WATCH guards the check,
   * and MULTI records the swapped build in the marker key with the RENAME, so a retry after a
   * lost answer finds the marker and does nothing. An empty new list has no build key (Redis
   * drops empty sets): then the swap empties the live set instead.
   */
  async function swapIn(buildKey: string): Promise<void> {
    const marker = swapMarkerKey(liveKey);
    await session.run(liveKey, async (client, send) => {
      await send('WATCH', () => client.watch(buildKey, liveKey, marker));
      const [buildType, liveType, swapped] = (await send(['TYPE', 'TYPE', 'GET'], async () =>
        pipelineValues(await client.pipeline().type(buildKey).type(liveKey).get(marker).exec()),
      )) as [string, string, string | null];
      const problem = [wrongTypeOf(buildKey, buildType), wrongTypeOf(liveKey, liveType)].find(Boolean);
      const swappedAlready = buildType === 'none' && swapped === buildKey;
      if (problem || swappedAlready) {
        await send('UNWATCH', () => client.unwatch());
        if (problem) throw problem;
        return;
      }
      const transaction = client.multi();
      if (buildType === 'set') transaction.rename(buildKey, liveKey);
      else transaction.del(liveKey);
      transaction.set(marker, buildKey);
      await send(['MULTI', buildType === 'set' ? 'RENAME' : 'DEL', 'SET', 'EXEC'], async () => {
        const results = await transaction.exec();
        if (results === null) throw new TransientRedisError('a watched key changed during the swap');
        return pipelineValues(results);
      });
    });
  }

  /**
   * Retire a list the connector no longer points at. The live key is never deleted: RENAME has
   * already replaced the old set with the new one, so there is nothing left to retire, and a DEL
   * would destroy the list just swapped in. A build key is deleted (it was either renamed away,
   * making this a no-op, or abandoned half-filled).
   */
  async function retire(listId: string): Promise<void> {
    const key = ownKey(listId);
    if (key === liveKey) return;
    await session.run(key, (client, send) => send('DEL', () => client.del(key)));
  }

  /** The live key or one of its build keys; anything else is not this connector's to touch. */
  function ownKey(listId: string): string {
    if (listId === liveKey || listId.startsWith(buildKeyPrefix(liveKey))) return listId;
    throw new DestinationError(
      `${REDIS_SET_TYPE}: list id '${listId}' is neither the set '${liveKey}' nor one of its build keys ('${buildKeyPrefix(liveKey)}…')`,
      'fatal',
    );
  }

  function ownBuildKey(listId: string): string {
    if (listId.startsWith(buildKeyPrefix(liveKey))) return listId;
    throw new DestinationError(
      `${REDIS_SET_TYPE}: can only swap in a build key of '${liveKey}' ('${buildKeyPrefix(liveKey)}…'), not '${listId}'`,
      'fatal',
    );
  }

  // The live list is always config.key: the swap says so, and a connector that still points at a
  // build key from before (context.listId) finds its set there too, since RENAME moved it.
  return setAt(liveKey);
}

function requireSetOrNone(key: string, type: string): void {
  const problem = wrongTypeOf(key, type);
  if (problem) throw problem;
}

function wrongTypeOf(key: string, type: string): DestinationError | undefined {
  return type === 'set' || type === 'none' ? undefined : wrongType(key, type);
}

function wrongType(key: string, type?: string): DestinationError {
  const holds = type ? `holds a ${type}` : 'holds another type';
  return new DestinationError(
    `${REDIS_SET_TYPE}: key '${key}' ${holds}, not a set (WRONGTYPE): choose another key in the connector's destination, or delete that key if nothing else uses it`,
    'fatal',
  );
}

/** The values of a pipeline's replies; the first error among them is thrown. */
function pipelineValues(results: [Error | null, unknown][] | null): unknown[] {
  if (results === null) throw new TransientRedisError('the pipeline was not executed');
  return results.map(([err, value]) => {
    if (err) throw err;
    return value;
  });
}

// --- Connection, retries and error classification -------------------------------------------------

/** A condition that goes away by itself: retry after a backoff. */
class TransientRedisError extends Error {
  override name = 'TransientRedisError';
}

/**
 * One round trip to Redis: the commands it carries (each counted as one call, at its name) and
 * the promise of their replies.
 */
type Send = <T>(commands: string | string[], roundTrip: () => Promise<T>) => Promise<T>;

type Problem =
  { kind: 'transient'; reason: string; rateLimited: boolean } | { kind: 'final'; error: DestinationError };

/**
 * One lazily opened connection, re-opened after a failure, and the retry loop every operation
 * runs in. ioredis's own reconnecting is switched off: a failed attempt is counted, backed off
 * and retried here, so the run's counters and the engine see what really happened.
 */
class RedisSession {
  private client: Redis | undefined;
  /** The last 'error' event: a failed command often only says "Connection is closed". */
  private lastEvent: Error | undefined;

  constructor(
    private readonly config: RedisSetConfig,
    private readonly secrets: SecretResolver,
    private readonly retry: RetryOptions,
  ) {}

  /**
   * Runs `work` until it succeeds or fails for good. Every command `work` sends is counted: when
   * its reply comes back, as a call that went through; when its round trip fails, with what
   * became of the attempt (rate limited, retried, or failed for good).
   */
  async run<T>(key: string, work: (client: Redis, send: Send) => Promise<T>): Promise<T> {
    const maxAttempts = this.retry.maxAttempts ?? defaults.maxAttempts;
    for (let attempt = 1; ; attempt++) {
      let unanswered: string[] = [];
      const send: Send = async (commands, roundTrip) => {
        const names = typeof commands === 'string' ? [commands] : commands;
        unanswered = names;
        const value = await roundTrip();
        unanswered = [];
        for (const name of names) countCall(name, 'ok');
        return value;
      };
      try {
        return await work(this.connection(), send);
      } catch (err) {
        const problem = this.classify(err, key);
        if (problem.kind === 'transient') this.drop();
        const final =
          problem.kind === 'final'
            ? problem.error
            : attempt >= maxAttempts
              ? new DestinationError(
                  `${REDIS_SET_TYPE}: ${this.where()}: ${problem.reason} (gave up after ${attempt} attempts)`,
                  'retryable',
                )
              : undefined;
        const outcome: CallOutcome = final
          ? failureStands(final)
            ? 'failed'
            : 'retried'
          : problem.kind === 'transient' && problem.rateLimited
            ? 'rate_limited'
            : 'retried';
        for (const name of unanswered) countCall(name, outcome);
        if (final) throw final;
        await this.backoff(attempt);
      }
    }
  }

  async close(): Promise<void> {
    this.drop();
  }

  /** host:port and database, never the credentials. */
  where(): string {
    try {
      const url = new URL(this.config.url ?? this.secrets(this.config.urlSecret!));
      return `Redis at ${url.host}${url.pathname.length > 1 ? url.pathname : ''}`;
    } catch {
      return `Redis (${this.urlSource()})`;
    }
  }

  private connection(): Redis {
    if (this.client) return this.client;
    const client = new Redis(this.url(), {
      lazyConnect: true,
      // No automatic reconnects or re-sends: run() decides what is retried, and counts it.
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
      // Redis answers a connection over maxclients with an error before any command. Without
      // CLIENT SETINFO first, that error answers the ready check (INFO) and is reported as an
      // 'error' event, instead of being taken for SETINFO's (ignored) reply.
      disableClientInfo: true,
      connectTimeout: 10_000,
      // A command without an answer after this long counts as a connection failure.
      commandTimeout: this.retry.timeoutMs ?? defaults.timeoutMs,
    });
    // Without a listener, ioredis prints connection errors to the console.
    client.on('error', (err: Error) => {
      this.lastEvent = err;
    });
    this.lastEvent = undefined;
    this.client = client;
    return client;
  }

  private drop(): void {
    this.client?.disconnect();
    this.client = undefined;
  }

  private url(): string {
    const url = this.config.url ?? resolveSecret(this.secrets, this.config.urlSecret!, REDIS_SET_TYPE);
    if (!/^rediss?:\/\//.test(url) || !URL.canParse(url)) {
      throw new DestinationError(
        `${REDIS_SET_TYPE}: the URL in ${this.urlSource()} must be a redis:// or rediss:// URL`,
        'fatal',
      );
    }
    return url;
  }

  private urlSource(): string {
    return this.config.urlSecret ? `secret '${this.config.urlSecret}'` : 'url';
  }

  private async backoff(attempt: number): Promise<void> {
    const delay = fullJitterBackoff(
      attempt - 1,
      this.retry.baseDelayMs ?? defaults.baseDelayMs,
      this.retry.maxDelayMs ?? defaults.maxDelayMs,
      this.retry.random,
    );
    await (this.retry.sleep ?? realSleep)(delay);
  }

  /** Transient problems are retried; everything else ends the operation with a DestinationError. */
  private classify(err: unknown, key: string): Problem {
    if (err instanceof DestinationError) return { kind: 'final', error: err };
    if (err instanceof TransientRedisError) {
      return { kind: 'transient', reason: err.message, rateLimited: false };
    }
    if (isReplyError(err)) return this.fromReply((err as Error).message, key);
    // Not an answer from Redis: the connection failed. An answer received while connecting
    // (WRONGPASS, "max number of clients reached") or the socket's error (ECONNREFUSED) arrives
    // as an 'error' event; the command itself only says "Connection is closed".
    const event = this.lastEvent;
    if (event && isReplyError(event)) return this.fromReply(event.message, key);
    const message = err instanceof Error ? err.message : String(err);
    const cause = event && event.message !== message ? `${message} (${event.message})` : message;
    // Refused, reset, timed out, closed: the command may or may not have run. Every command
    // here is idempotent except RENAME, which swapIn guards, so trying again is safe.
    return { kind: 'transient', reason: `connection failed: ${cause}`, rateLimited: false };
  }

  private fromReply(text: string, key: string): Problem {
    // Redis answers a connection over its maxclients with this error and closes it: the closest
    // thing Redis has to a 429.
    if (/^ERR max number of clients reached/.test(text)) {
      return { kind: 'transient', reason: text, rateLimited: true };
    }
    // The server is starting, busy with a script, or failing over: it passes.
    if (/^(LOADING|BUSY|TRYAGAIN|CLUSTERDOWN|MASTERDOWN)\b/.test(text)) {
      return { kind: 'transient', reason: text, rateLimited: false };
    }
    return { kind: 'final', error: this.replyError(text, key) };
  }

  private replyError(text: string, key: string): DestinationError {
    const code = text.split(' ')[0] ?? '';
    const server = this.where();
    switch (code) {
      case 'WRONGTYPE':
        return wrongType(key);
      case 'NOAUTH':
      case 'WRONGPASS':
        return new DestinationError(
          `${REDIS_SET_TYPE}: ${server} refused the credentials (${text}): check the user and password in the URL in ${this.urlSource()}`,
          'fatal',
        );
      case 'NOPERM':
        return new DestinationError(
          `${REDIS_SET_TYPE}: ${server}: the user may not run this command on '${key}' (${text}): grant it SADD, SREM, DEL, SSCAN, SCARD, TYPE, GET, SET, RENAME, WATCH, MULTI and EXEC on the key's pattern`,
          'fatal',
        );
      case 'READONLY':
        return new DestinationError(
          `${REDIS_SET_TYPE}: ${server} is a read-only replica (${text}): point the URL in ${this.urlSource()} at the primary`,
          'fatal',
        );
      case 'MOVED':
      case 'ASK':
      case 'CROSSSLOT':
        return new DestinationError(
          `${REDIS_SET_TYPE}: ${server} is a Redis Cluster node (${text}): redis-set needs a standalone or primary endpoint`,
          'fatal',
        );
      case 'OOM':
      case 'MISCONF':
        return new DestinationError(
          `${REDIS_SET_TYPE}: ${server} refuses writes (${text}): free memory or fix persistence on the server`,
          'fatal',
        );
    }
    if (/max request size|string exceeds maximum|Protocol error/i.test(text)) {
      return new DestinationError(`${REDIS_SET_TYPE}: ${server} refused the command (${text})`, 'batch');
    }
    return new DestinationError(`${REDIS_SET_TYPE}: ${server} answered: ${text}`, 'fatal');
  }
}

/** An error answer from the server (ioredis's ReplyError), as opposed to a connection failure. */
function isReplyError(err: unknown): boolean {
  return err instanceof Error && err.name === 'ReplyError';
}
