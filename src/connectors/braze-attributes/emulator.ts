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
  type RouteTable,
} from '../kit/emulator-kit';
import { openApiCheck, type SpecCheck } from '../kit/vendor-spec';
import { BRAZE_SPEC_DOCUMENT, MAX_OBJECTS_PER_REQUEST, RATE_LIMIT } from './vendor-limits';

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
 *
 * Braze publishes no machine-readable spec; its reference pages are written out as an OpenAPI
 * fixture table (test/vendor-specs/braze/, see SOURCE.md there), and every request and answer is
 * checked against it: a field the pages do not list (outside the open set of custom attributes),
 * a wrong type, more objects than the table allows, is refused 400 and recorded as a spec
 * violation (kit/vendor-spec.ts). Limits are in vendor-limits.ts; what is left out, in NOT_EMULATED.
 */

export const BRAZE_ENDPOINT = 'users/track';

/**
 * What this emulator does not do that Braze does (or may do): a connector passing here can still
 * meet these in production.
 */
export const NOT_EMULATED: readonly string[] = [
  'Users are found by external_id only: objects identified by braze_id, user_alias, email or phone alone are refused per object (Braze would look those users up, or create alias-only and email-only users).',
  'Processing is synchronous and immediately visible; Braze queues /users/track data and reads of it are eventually consistent (10-100 ms usually, Braze advises up to 5 minutes between dependent calls).',
  'Custom attribute semantics: values are stored as sent; {"inc": n}, {"add": [...]}/{"remove": [...]} array operations, nested custom attributes, date parsing, array truncation at 25 elements and the dropping of a whole nested attribute with an invalid value are not applied.',
  'Profile fields (first_name, email_subscribe, push_tokens, subscription_groups, …) are stored as plain attributes: no subscription states, push tokens or e-mail/phone validation.',
  'Events and purchases are counted (events_processed, purchases_processed) but not stored.',
  'Non-fatal errors are shaped { type, input_array, index } as Braze is observed to send them; Braze documents them only as "<minor error message>", so real ones may differ.',
  'Blocklisted ("dummy") external_ids, the per-object errors of Braze (invalid values, too-long strings) and 403 for a key without users.track or an inactive workspace: only injected ones (faults.reject).',
  'Rate limits: one fixed 3-second window per emulator; the hourly limits and burst limits of Monthly Active Users - CY 24-25 contracts (and their 50-object requests, unless maxObjectsPerRequest is set) are not modelled.',
  'Data points, user merges, /users/track/bulk and every other Braze endpoint (the connector calls only /users/track).',
];

export interface BrazeEmulatorFaults extends CommonFaults {
  /** A non-fatal error for this user's attribute object (the rest is processed), or null. */
  reject?: (externalId: string) => string | null;
  /**
   * The next `calls` requests drop their last attribute object without a word: not applied, not
   * counted in `attributes_processed`, no error. A short acknowledgement, for the destination to see.
   */
  shortAck?: { calls: number };
  /**
   * The next `calls` requests meet Braze's maintenance mode: taken whole and answered
   * 202 `{ message: 'queued' }` without counts ("received and queued ... but not immediately
   * processed", https://www.braze.com/docs/api/errors/). Applied all the same.
   */
  queued?: { calls: number };
}

export interface BrazeEmulatorOptions {
  port?: number;
  host?: string;
  /** The REST API key clients must send as a bearer token. */
  apiKey: string;
  /** Objects per request (default 75; 50 on Monthly Active Users CY 24-25 contracts): vendor-limits.ts. */
  maxObjectsPerRequest?: number;
  /** Requests per fixed window (default 3,000 per 3 s: vendor-limits.ts), or false for no limit. */
  rateLimit?: { requests: number; windowSeconds: number } | false;
  /**
   * Check every request and answer against the fixture table of Braze's reference pages (default
   * true): off only for tests that must send what the table refuses before the emulator's own checks.
   */
  specCheck?: boolean;
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

/**
 * Keys of an attributes object that identify the user or steer the request instead of being
 * stored. `email` and `phone` identify a user only in an object without external_id (or braze_id,
 * user_alias); beside an external_id they are profile fields like first_name, and stored.
 */
const CONTROL_KEYS = new Set([
  'external_id',
  'braze_id',
  'user_alias',
  '_update_existing_only',
  'push_token_import',
]);

/** The emulator's one endpoint as the fixture table's operation (see the spec check below). */
const routes: RouteTable<typeof BRAZE_ENDPOINT> = [['POST', /^\/users\/track$/, BRAZE_ENDPOINT]];

/** Compiled once per process: every emulator started shares it. */
let specCheck: SpecCheck | undefined;
function brazeSpecCheck(): SpecCheck {
  specCheck ??= openApiCheck({
    document: BRAZE_SPEC_DOCUMENT,
    operations: { [BRAZE_ENDPOINT]: 'POST /users/track' },
  });
  return specCheck;
}
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
  const maxObjects = options.maxObjectsPerRequest ?? MAX_OBJECTS_PER_REQUEST;
  const window = options.rateLimit === false ? null : (options.rateLimit ?? RATE_LIMIT);
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
      if (faults.take('queued')) return withHeaders({ status: 202, body: { message: 'queued' } });
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
        headers: rateHeaders(window?.requests ?? RATE_LIMIT.requests, 0, reset),
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
    events: number;
    purchases: number;
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
    return { attributes: attributes!, events: events!.length, purchases: purchases!.length };
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
        ...(request.events ? { events_processed: request.events } : {}),
        ...(request.purchases ? { purchases_processed: request.purchases } : {}),
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
    ...(await startJsonServer(options, {
      handle,
      stats,
      spec:
        options.specCheck === false
          ? undefined
          : {
              name: 'braze-attributes',
              check: brazeSpecCheck(),
              routes,
              // Braze's fatal error format: { message, errors }, 400 Bad Request.
              refuse: (problems) => ({ status: 400, body: { message: 'Bad Request', errors: problems } }),
            },
    })),
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
