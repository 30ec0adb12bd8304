import Redis from 'ioredis';
import { z } from 'zod';
import { fullJitterBackoff, realSleep, type Sleep } from './http';
import { resolveSecret, secretName } from './kit';
import { defineDestination } from './module';
import { unthrottled } from './throttle';
import {
  DestinationError,
  type BatchOutcome,
  type Destination,
  type Limits,
  type Member,
  type MemberPage,
  type SecretResolver,
  type Throttle,
  type Target,
} from './types';

/**
 * `redis-set`: the list is one Redis set, read by applications with SISMEMBER / SMEMBERS.
 *
 *   add      SADD key m1 m2 …    (pipelined, at most recordsPerCall members per command)
 *   remove   SREM key m1 m2 …
 *   truncate DEL key
 *   list     SSCAN key cursor COUNT limit
 *   new list + swap: fill `${key}:build:${name}` with SADD, then RENAME it over `key` (atomic).
 *
 * A set holds member names only: attributes are not stored, so give the connector a dataset
 * without attributes (attribute changes would only re-send SADDs that change nothing).
 *
 * SADD, SREM and DEL are idempotent, so a command whose answer was lost is simply sent again.
 * RENAME is not (the second one fails with "no such key"); swapList records the build it swapped
 * in `${key}:swapped` in the same MULTI, and a repeated swap of that build is a no-op.
 *
 * Acknowledgement: every command's own reply. SADD/SREM count the members they changed; fewer is
 * no short acknowledgement, the others were already in (out of) the set, the state asked for.
 * A batch counts only when every reply of its pipeline came back without an error: one error,
 * or a lost connection, fails the whole call, and nothing of it is committed.
 */

const maxMembersPerCommand = 100_000;

export const redisSetConfigSchema = z
  .object({
    type: z.literal('redis-set'),
    /** Name of a secret holding the redis:// or rediss:// URL (use it whenever there is a password). */
    urlSecret: secretName.optional(),
    /** The URL itself, allowed only without a password (e.g. redis://127.0.0.1:6379/0). */
    url: z
      .string()
      .regex(/^rediss?:\/\//, 'url must start with redis:// or rediss://')
      .refine((url) => !hasPassword(url), {
        message: 'url must not contain a password: store the URL in a secret and name it in urlSecret',
      })
      .optional(),
    /** The set's key. Build keys `${key}:build:…` and the marker `${key}:swapped` sit next to it. */
    key: z.string().min(1).max(512),
    /** Members per SADD/SREM command. */
    recordsPerCall: z.number().int().min(1).max(maxMembersPerCommand).default(10_000),
  })
  .refine((config) => (config.url === undefined) !== (config.urlSecret === undefined), {
    message: 'give exactly one of url (no password) or urlSecret (name of a secret holding the URL)',
    path: ['url'],
  });

export type RedisSetConfig = z.output<typeof redisSetConfigSchema>;
export type RedisSetConfigInput = z.input<typeof redisSetConfigSchema>;

/** Knobs for tests and tuning; production uses the defaults. */
export interface RedisSetOptions {
  /** The worker-wide limiter per account (the Redis server). */
  throttle?: Throttle;
  sleep?: Sleep;
  random?: () => number;
  /** Attempts for connection failures and transient server states, the first one included. */
  maxAttempts?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  connectTimeoutMs?: number;
  /** A command without an answer after this long counts as a connection failure. */
  commandTimeoutMs?: number;
}

function hasPassword(url: string): boolean {
  try {
    return new URL(url).password !== '';
  } catch {
    return false;
  }
}

export function buildKeyPrefix(key: string): string {
  return `${key}:build:`;
}

export function swapMarkerKey(key: string): string {
  return `${key}:swapped`;
}

export function createRedisSetDestination(
  input: RedisSetConfigInput,
  secrets: SecretResolver,
  options: RedisSetOptions = {},
): Destination {
  const config = redisSetConfigSchema.parse(input);
  const session = new RedisSession(config, secrets, options);
  const liveKey = config.key;
  const limits: Limits = { recordsPerCall: config.recordsPerCall };

  /** The destination writing to one key: the live set, or a set being built for a swap. */
  function setAt(key: string): Destination {
    return {
      type: 'redis-set',
      capabilities: {
        add: true,
        remove: true,
        truncate: true,
        listMembers: true,
        // Nothing to update: a set stores no attributes.
        updateAttributes: false,
        createList: true,
      },
      limits,

      async add(members: Member[]) {
        return sendInChunks(
          'SADD',
          key,
          members.map((m) => m.key),
        );
      },

      async remove(keys: string[]) {
        return sendInChunks('SREM', key, keys);
      },

      async truncate() {
        const { outcome } = await session.run(key, async (client, count) => {
          count('DEL');
          await client.del(key);
        });
        return outcome;
      },

      async listMembers(cursor: string | null, limit: number): Promise<MemberPage> {
        const { value } = await session.run(key, async (client, count) => {
          count('SSCAN');
          return client.sscan(key, cursor ?? '0', 'COUNT', Math.max(1, limit));
        });
        const [next, members] = value;
        // SSCAN may repeat a member within a page or across pages, and COUNT is only a hint: a
        // page can be larger than `limit` (small sets come back whole) or empty with a cursor.
        return { keys: [...new Set(members)], next: next === '0' ? null : next };
      },

      createList: (name) => createBuild(name),
      forList: (listId) => setAt(ownKey(listId)),
      swapList: async (listId) => swapIn(ownBuildKey(listId)),
      deleteList: async (listId) => retire(listId),
      close: () => session.close(),
    };
  }

  /** SADD/SREM of many members: commands of at most recordsPerCall members, in one pipeline. */
  async function sendInChunks(command: 'SADD' | 'SREM', key: string, members: string[]) {
    if (members.length === 0) return { rejected: [], apiCalls: 0, rateLimitWaits: 0 };
    const chunks: string[][] = [];
    for (let i = 0; i < members.length; i += config.recordsPerCall) {
      chunks.push(members.slice(i, i + config.recordsPerCall));
    }
    const { outcome } = await session.run(key, async (client, count) => {
      const pipeline = client.pipeline();
      for (const chunk of chunks) {
        if (command === 'SADD') pipeline.sadd(key, ...chunk);
        else pipeline.srem(key, ...chunk);
      }
      count(command, chunks.length);
      pipelineValues(await pipeline.exec());
    });
    // Redis accepts any byte string as a member: there is nothing to reject per record.
    return outcome;
  }

  /**
   * The build key for `name`. Deliberately not emptied when it exists: the engine calls this again
   * only for the same run, whose fill resumes from its checkpoint, so members already added there
   * are committed and must stay. (Redis cannot hold an empty set: the key appears with the first
   * SADD, so there is nothing to create; we only check that the name is free for a set.)
   */
  async function createBuild(name: string) {
    const buildKey = `${buildKeyPrefix(liveKey)}${name}`;
    const { outcome } = await session.run(buildKey, async (client, count) => {
      count('TYPE');
      requireSetOrNone(buildKey, await client.type(buildKey));
    });
    return { listId: buildKey, outcome };
  }

  /**
   * RENAME build → live, atomically replacing the old set. Idempotent: WATCH guards the check,
   * and MULTI records the swapped build in the marker key with the RENAME, so a retry after a
   * lost answer finds the marker and does nothing. An empty new list has no build key (Redis
   * drops empty sets): then the swap empties the live set instead.
   */
  async function swapIn(buildKey: string): Promise<BatchOutcome> {
    const marker = swapMarkerKey(liveKey);
    const { outcome } = await session.run(liveKey, async (client, count) => {
      count('WATCH');
      await client.watch(buildKey, liveKey, marker);
      count('TYPE', 2);
      count('GET');
      const [buildType, liveType, swapped] = pipelineValues(
        await client.pipeline().type(buildKey).type(liveKey).get(marker).exec(),
      ) as [string, string, string | null];
      const problem = [wrongTypeOf(buildKey, buildType), wrongTypeOf(liveKey, liveType)].find(Boolean);
      const swappedAlready = buildType === 'none' && swapped === buildKey;
      if (problem || swappedAlready) {
        count('UNWATCH');
        await client.unwatch();
        if (problem) throw problem;
        return;
      }
      const transaction = client.multi();
      if (buildType === 'set') transaction.rename(buildKey, liveKey);
      else transaction.del(liveKey);
      transaction.set(marker, buildKey);
      count('MULTI');
      count(buildType === 'set' ? 'RENAME' : 'DEL');
      count('SET');
      count('EXEC');
      const results = await transaction.exec();
      if (results === null) throw new TransientRedisError('a watched key changed during the swap');
      pipelineValues(results);
    });
    return outcome;
  }

  /**
   * Retire a list the connector no longer points at. The live key is never deleted: RENAME has
   * already replaced the old set with the new one, so there is nothing left to retire, and a DEL
   * would destroy the list just swapped in. A build key is deleted (it was either renamed away,
   * making this a no-op, or abandoned half-filled).
   */
  async function retire(listId: string): Promise<BatchOutcome> {
    const key = ownKey(listId);
    if (key === liveKey) return { rejected: [], apiCalls: 0, rateLimitWaits: 0 };
    const { outcome } = await session.run(key, async (client, count) => {
      count('DEL');
      await client.del(key);
    });
    return outcome;
  }

  /** The live key or one of its build keys; anything else is not this connector's to touch. */
  function ownKey(listId: string): string {
    if (listId === liveKey || listId.startsWith(buildKeyPrefix(liveKey))) return listId;
    throw new DestinationError(
      `redis-set: list id '${listId}' is neither the set '${liveKey}' nor one of its build keys ('${buildKeyPrefix(liveKey)}…')`,
      'fatal',
    );
  }

  function ownBuildKey(listId: string): string {
    if (listId.startsWith(buildKeyPrefix(liveKey))) return listId;
    throw new DestinationError(
      `redis-set: can only swap in a build key of '${liveKey}' ('${buildKeyPrefix(liveKey)}…'), not '${listId}'`,
      'fatal',
    );
  }

  // The live list is always config.key: after a swap the engine points the connector at the build
  // key it created, but RENAME moved that set to config.key, so context.listId is not used.
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
    `redis-set: key '${key}' ${holds}, not a set (WRONGTYPE): choose another key in the connector's destination, or delete that key if nothing else uses it`,
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

type Count = (endpoint: string, calls?: number) => void;

type Problem =
  { kind: 'transient'; reason: string; rateLimited: boolean } | { kind: 'final'; error: DestinationError };

const defaults = { maxAttempts: 5, baseDelayMs: 250, maxDelayMs: 10_000 };

/**
 * One lazily opened connection, re-opened after a failure, and the retry loop every operation
 * runs in. ioredis's own reconnecting is switched off: a failed attempt is counted, backed off
 * and retried here, so the run's counters and the engine see what really happened.
 */
class RedisSession {
  private client: Redis | undefined;
  /** The last 'error' event: a failed command often only says "Connection is closed". */
  private lastEvent: Error | undefined;
  private readonly account: string;
  private readonly limits: Limits;

  constructor(
    private readonly config: RedisSetConfig,
    private readonly secrets: SecretResolver,
    private readonly options: RedisSetOptions,
  ) {
    // Every connector writing to one Redis server shares its budget (and concurrency cap).
    this.account = `redis:${config.urlSecret ? `secret:${config.urlSecret}` : config.url}`;
    this.limits = { recordsPerCall: config.recordsPerCall };
  }

  /** Runs `work` until it succeeds or fails for good; returns its value and what it cost. */
  async run<T>(key: string, work: (client: Redis, count: Count) => Promise<T>) {
    const outcome: BatchOutcome = { rejected: [], apiCalls: 0, rateLimitWaits: 0, callsByEndpoint: {} };
    const count: Count = (endpoint, calls = 1) => {
      outcome.apiCalls += calls;
      outcome.callsByEndpoint![endpoint] = (outcome.callsByEndpoint![endpoint] ?? 0) + calls;
    };
    const throttle = this.options.throttle ?? unthrottled;
    const maxAttempts = this.options.maxAttempts ?? defaults.maxAttempts;
    for (let attempt = 1; ; attempt++) {
      try {
        const value = await throttle(this.account, this.limits, () => work(this.connection(), count));
        return { value, outcome };
      } catch (err) {
        const problem = this.classify(err, key);
        if (problem.kind !== 'transient') throw problem.error;
        this.drop();
        if (problem.rateLimited) outcome.rateLimitWaits++;
        if (attempt >= maxAttempts) {
          throw new DestinationError(
            `redis-set: ${this.where()}: ${problem.reason} (gave up after ${attempt} attempts)`,
            'retryable',
          );
        }
        await this.backoff(attempt);
      }
    }
  }

  async close(): Promise<void> {
    this.drop();
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
      connectTimeout: this.options.connectTimeoutMs ?? 10_000,
      commandTimeout: this.options.commandTimeoutMs ?? 30_000,
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
    const url = this.config.url ?? resolveSecret(this.secrets, this.config.urlSecret!, 'redis-set');
    if (!/^rediss?:\/\//.test(url) || !URL.canParse(url)) {
      throw new DestinationError(
        `redis-set: the URL in ${this.urlSource()} must be a redis:// or rediss:// URL`,
        'fatal',
      );
    }
    return url;
  }

  private urlSource(): string {
    return this.config.urlSecret ? `secret '${this.config.urlSecret}'` : 'url';
  }

  /** host:port and database, never the credentials. */
  private where(): string {
    try {
      const url = new URL(this.config.url ?? this.secrets(this.config.urlSecret!));
      return `Redis at ${url.host}${url.pathname.length > 1 ? url.pathname : ''}`;
    } catch {
      return `Redis (${this.urlSource()})`;
    }
  }

  private async backoff(attempt: number): Promise<void> {
    const delay = fullJitterBackoff(
      attempt - 1,
      this.options.baseDelayMs ?? defaults.baseDelayMs,
      this.options.maxDelayMs ?? defaults.maxDelayMs,
      this.options.random,
    );
    await (this.options.sleep ?? realSleep)(delay);
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
          `redis-set: ${server} refused the credentials (${text}): check the user and password in the URL in ${this.urlSource()}`,
          'fatal',
        );
      case 'NOPERM':
        return new DestinationError(
          `redis-set: ${server}: the user may not run this command on '${key}' (${text}): grant it SADD, SREM, DEL, SSCAN, TYPE, GET, SET, RENAME, WATCH, MULTI and EXEC on the key's pattern`,
          'fatal',
        );
      case 'READONLY':
        return new DestinationError(
          `redis-set: ${server} is a read-only replica (${text}): point the URL in ${this.urlSource()} at the primary`,
          'fatal',
        );
      case 'MOVED':
      case 'ASK':
      case 'CROSSSLOT':
        return new DestinationError(
          `redis-set: ${server} is a Redis Cluster node (${text}): redis-set needs a standalone or primary endpoint`,
          'fatal',
        );
      case 'OOM':
      case 'MISCONF':
        return new DestinationError(
          `redis-set: ${server} refuses writes (${text}): free memory or fix persistence on the server`,
          'fatal',
        );
    }
    if (/max request size|string exceeds maximum|Protocol error/i.test(text)) {
      return new DestinationError(`redis-set: ${server} refused the command (${text})`, 'batch');
    }
    return new DestinationError(`redis-set: ${server} answered: ${text}`, 'fatal');
  }
}

/** An error answer from the server (ioredis's ReplyError), as opposed to a connection failure. */
function isReplyError(err: unknown): boolean {
  return err instanceof Error && err.name === 'ReplyError';
}

export const redisSetDestination = defineDestination({
  type: 'redis-set',
  description:
    'a Redis set (SADD/SREM/DEL/SSCAN, new list by RENAME): stores member keys only, no attributes',
  configSchema: redisSetConfigSchema,
  create: (config, context) =>
    createRedisSetDestination(config, context.secrets, { throttle: context.throttle }),
  targets: (config, secrets) => [redisTarget(config, secrets)],
});

/** The set and the keys beside it (`<key>:build:…`, `<key>:swapped`), for the tenants policy. */
function redisTarget(config: RedisSetConfig, secrets: SecretResolver): Target {
  const url = new URL(config.url ?? resolveSecret(secrets, config.urlSecret!, 'redis-set: urlSecret'));
  return {
    kind: 'redis',
    field: 'destination.key',
    host: url.hostname,
    port: Number(url.port || 6379),
    db: Number(url.pathname.replace(/^\//, '') || 0),
    keys: [config.key],
  };
}
