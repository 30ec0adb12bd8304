import type { Attributes } from '../../core/destination';
import type { ContractHarness } from '../kit/contract';
import {
  Counters,
  FaultBoard,
  FixedWindowLimiter,
  parseJson,
  startJsonServer,
  statsAndFaults,
  type CommonFaults,
  type EmulatorRequest,
  type Reply,
} from '../kit/emulator-kit';

/**
 * An in-memory emulator of Braze's `POST /users/track` (attributes; events and purchases are
 * counted, not stored), for tests, demos and users' own tests. As the real endpoint:
 * `Authorization: Bearer <REST API key>`, at most 75 objects per request (attributes, events and
 * purchases combined), `201 { message: 'success', attributes_processed, errors? }` where
 * `errors: [{ type, input_array, index }]` are non-fatal: every other object is still processed;
 * `{ message }` bodies for fatal 4xx; `null` removes an attribute; `_update_existing_only: true`
 * never creates a user; a fixed 3,000-requests-per-3-seconds window answered with 429, and the
 * `X-RateLimit-Limit/Remaining/Reset` headers (reset in UTC epoch seconds) on every answer —
 * Braze documents no Retry-After. Users are identified by `external_id` only.
 */

export const BRAZE_ENDPOINT = 'users/track';

export interface BrazeEmulatorFaults extends CommonFaults {
  /** A non-fatal error for this user's attribute object (the rest is processed), or null. */
  reject?: (externalId: string) => string | null;
  /**
   * The next `calls` requests drop their last attribute object without a word: not applied, not
   * counted in `attributes_processed`, no error. A short acknowledgement, for the destination to see.
   */
  shortAck?: { calls: number };
}

export interface BrazeEmulatorOptions {
  port?: number;
  host?: string;
  /** The REST API key clients must send as a bearer token. */
  apiKey: string;
  /** Objects per request (default 75; 50 on Monthly Active Users CY 24-25 contracts). */
  maxObjectsPerRequest?: number;
  /** Requests per fixed window (default 3,000 per 3 s), or false for no limit. */
  rateLimit?: { requests: number; windowSeconds: number } | false;
}

export interface BrazeEmulatorStats {
  calls: Record<typeof BRAZE_ENDPOINT, number>;
  statuses: Record<number, number>;
  /** Attribute objects in well-formed, authenticated requests (faulted ones included). */
  attributesReceived: number;
  /** Attribute objects applied to a user profile. */
  attributesApplied: number;
}

export interface BrazeEmulator {
  /** Base URL for the destination's `restEndpoint`. */
  url: string;
  port: number;
  close(): Promise<void>;
  /**
   * "The list" of a connector: users whose membership attribute is `true`, with their other
   * attributes (neither the flag nor external_id).
   */
  members(membershipAttribute: string): Map<string, Attributes>;
  /** Every user profile by external_id, all attributes. */
  users(): Map<string, Attributes>;
  setUsers(users: Map<string, Attributes>): void;
  stats(): BrazeEmulatorStats;
  resetStats(): void;
  faults: {
    set(faults: BrazeEmulatorFaults): void;
    clear(name?: keyof BrazeEmulatorFaults): void;
    get(): BrazeEmulatorFaults;
  };
}

/** Keys of an attributes object that steer the request instead of being stored. */
const CONTROL_KEYS = new Set([
  'external_id',
  'braze_id',
  'user_alias',
  'email',
  'phone',
  '_update_existing_only',
  'push_token_import',
]);
const NO_IDENTIFIER = "'external_id' or 'braze_id' or 'user_alias' or 'email' or 'phone' is required";

class Fatal extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function startBrazeEmulator(options: BrazeEmulatorOptions): Promise<BrazeEmulator> {
  const maxObjects = options.maxObjectsPerRequest ?? 75;
  const window =
    options.rateLimit === false ? null : (options.rateLimit ?? { requests: 3000, windowSeconds: 3 });
  const limiter =
    window && new FixedWindowLimiter([{ limit: window.requests, ms: window.windowSeconds * 1000 }]);
  const users = new Map<string, Attributes>();
  const faults = new FaultBoard<BrazeEmulatorFaults>();
  const stats = new Counters(emptyStats);

  async function handle(req: EmulatorRequest): Promise<Reply> {
    await faults.latency();
    if (req.method !== 'POST' || req.url.pathname.replace(/\/+$/, '') !== '/users/track') {
      return { status: 404, body: { message: 'Not Found' } };
    }
    stats.current.calls[BRAZE_ENDPOINT]++;
    if (req.headers.authorization !== `Bearer ${options.apiKey}`) {
      return { status: 401, body: { message: 'Invalid API key' } };
    }
    const limited = rateLimited();
    if (limited) return limited;
    const serverError = faults.take('serverError');
    if (serverError) {
      return withHeaders({ status: serverError.status ?? 500, body: { message: 'Internal Server Error' } });
    }
    const down = faults.down();
    if (down) return withHeaders({ status: down.status ?? 503, body: { message: 'Service Unavailable' } });
    try {
      const reply = track(parseRequest(req.body));
      if (faults.take('applyThenFail'))
        return withHeaders({ status: 500, body: { message: 'Internal Server Error' } });
      faults.succeeded();
      return withHeaders(reply);
    } catch (err) {
      if (err instanceof Fatal)
        return withHeaders({ status: err.status, body: { message: err.message, errors: [err.message] } });
      throw err;
    }
  }

  function rateLimited(): Reply | undefined {
    const injected = faults.take('rateLimit');
    if (injected) {
      const reset = Math.ceil(Date.now() / 1000) + injected.retryAfterSeconds;
      return {
        status: 429,
        body: { message: 'Rate Limited' },
        headers: rateHeaders(window?.requests ?? 3000, 0, reset),
      };
    }
    const full = limiter?.take('workspace');
    if (full)
      return {
        status: 429,
        body: { message: 'Rate Limited' },
        headers: rateHeaders(full.limit, 0, Math.ceil(full.resetAtMs / 1000)),
      };
    return undefined;
  }

  function withHeaders(reply: Reply): Reply {
    if (!limiter) return reply;
    const state = limiter.report('workspace');
    return {
      ...reply,
      headers: {
        ...reply.headers,
        ...rateHeaders(state.limit, Math.max(0, state.remaining), Math.ceil(state.resetAtMs / 1000)),
      },
    };
  }

  interface TrackRequest {
    attributes: unknown[];
    others: number;
  }

  function parseRequest(raw: string): TrackRequest {
    const body = parseJson(raw, () => new Fatal(400, 'Bad Request: request body is not valid JSON'));
    const fields = (body && typeof body === 'object' ? body : {}) as Record<string, unknown>;
    const arrays = ['attributes', 'events', 'purchases'].map((name) => fields[name] ?? []);
    if (!arrays.every(Array.isArray) || arrays.every((a) => (a as unknown[]).length === 0)) {
      throw new Fatal(
        400,
        "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields.",
      );
    }
    const [attributes, events, purchases] = arrays as unknown[][];
    const total = attributes!.length + events!.length + purchases!.length;
    if (total > maxObjects)
      throw new Fatal(
        400,
        `Max Input Length Exceeded: at most ${maxObjects} objects per request, got ${total}`,
      );
    stats.current.attributesReceived += attributes!.length;
    return { attributes: attributes!, others: events!.length + purchases!.length };
  }

  /** Applies each attribute object on its own: one bad object does not stop the others. */
  function track(request: TrackRequest): Reply {
    const errors: { type: string; input_array: string; index: number }[] = [];
    let processed = 0;
    const dropLast = request.attributes.length > 0 && faults.take('shortAck') !== undefined;
    const applied = dropLast ? request.attributes.slice(0, -1) : request.attributes;
    applied.forEach((item, index) => {
      const problem = applyAttributes(item);
      if (problem) errors.push({ type: problem, input_array: 'attributes', index });
      else processed++;
    });
    return {
      status: 201,
      body: {
        message: 'success',
        ...(request.attributes.length ? { attributes_processed: processed } : {}),
        ...(request.others ? { events_processed: request.others } : {}),
        ...(errors.length ? { errors } : {}),
      },
    };
  }

  function applyAttributes(item: unknown): string | null {
    const object = (item && typeof item === 'object' ? item : {}) as Record<string, unknown>;
    const externalId = object.external_id;
    if (typeof externalId !== 'string' || externalId === '') {
      const other = ['braze_id', 'user_alias', 'email', 'phone'].some((name) => object[name] !== undefined);
      return other ? 'this emulator identifies users by external_id only' : NO_IDENTIFIER;
    }
    const rejected = faults.current.reject?.(externalId);
    if (rejected) return rejected;
    let user = users.get(externalId);
    // Queued and accepted, but an update-only object never creates a profile.
    if (!user && object._update_existing_only === true) return null;
    if (!user) {
      user = {};
      users.set(externalId, user);
    }
    for (const [name, value] of Object.entries(object)) {
      if (CONTROL_KEYS.has(name)) continue;
      if (value === null) delete user[name];
      else user[name] = value as Attributes[string];
    }
    stats.current.attributesApplied++;
    return null;
  }

  return {
    ...(await startJsonServer(options, { handle, stats })),
    members: (membershipAttribute) => {
      const result = new Map<string, Attributes>();
      for (const [externalId, attributes] of users) {
        if (attributes[membershipAttribute] !== true) continue;
        const { [membershipAttribute]: _flag, ...rest } = attributes;
        result.set(externalId, rest);
      }
      return result;
    },
    users: () => new Map([...users].map(([id, attributes]) => [id, { ...attributes }])),
    setUsers: (next) => {
      users.clear();
      for (const [id, attributes] of next) users.set(id, { ...attributes });
    },
    ...statsAndFaults(stats, faults),
  };
}

function rateHeaders(limit: number, remaining: number, resetEpochSeconds: number): Record<string, string> {
  return {
    'x-ratelimit-limit': String(limit),
    'x-ratelimit-remaining': String(remaining),
    'x-ratelimit-reset': String(resetEpochSeconds),
  };
}

function emptyStats(): BrazeEmulatorStats {
  return { calls: { [BRAZE_ENDPOINT]: 0 }, statuses: {}, attributesReceived: 0, attributesApplied: 0 };
}

/**
 * The shared destination contract suite's view of this emulator (test/connectors/contract.test.ts):
 * a fresh emulator per start, users keyed by external_id, one user id Braze refuses, and the
 * short acknowledgement Braze gives when `attributes_processed` falls short.
 */
export const contractHarness: ContractHarness = {
  type: 'braze-attributes',
  async start() {
    const apiKey = 'braze-contract-key-4c1e';
    const flag = 'in_deltasync_contract';
    const refused = 'refused-user';
    const emu = await startBrazeEmulator({ apiKey });
    emu.faults.set({
      reject: (externalId) =>
        externalId === refused ? 'provided external_id is blacklisted and disallowed' : null,
    });
    return {
      settings: {
        type: 'braze-attributes',
        restEndpoint: emu.url,
        apiKeySecret: 'BRAZE_CONTRACT_KEY',
        membershipAttribute: flag,
      },
      secrets: { BRAZE_CONTRACT_KEY: apiKey },
      key: (i) => `user-${i}`,
      attributes: (i) => ({ first_name: `U${i}`, tier: i % 2 ? 'gold' : 'basic' }),
      members: async () => [...emu.members(flag).keys()],
      rateLimit: (calls) => emu.faults.set({ rateLimit: { calls, retryAfterSeconds: 1 } }),
      serverError: (calls) => emu.faults.set({ serverError: { calls } }),
      shortAcknowledgeNext: () => emu.faults.set({ shortAck: { calls: 1 } }),
      refusedKey: () => refused,
      received: () => emu.stats().calls[BRAZE_ENDPOINT],
      close: () => emu.close(),
    };
  },
};
