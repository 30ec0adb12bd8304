import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { countSpecChecked, recordSpecViolation, type SpecCheck, type SpecExchange } from './vendor-spec';

/**
 * Shared plumbing for the vendor API emulators (http-list, HubSpot, Mailchimp, Meta, Google
 * Customer Match, Klaviyo, Braze): a JSON server on node:http with routing, the counted faults
 * every emulator offers, stats counters, and fixed-window rate limiting like the vendors'.
 * Each emulator keeps its own routes, validation, error documents, fault order and storage —
 * that is the contract it emulates; this file holds only what they would otherwise copy.
 */

// --- The server ---------------------------------------------------------------------------------

/** A reply to send: status, JSON body (none for 204), extra headers. */
export interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
  /**
   * An answer a fault makes break the vendor's spec on purpose (a bare `{}` where the vendor
   * always names what it did): not held to the spec. Only faults a test asks for set it.
   */
  offSpec?: true;
}

/** A request as handlers see it: the body already read whole. */
export interface EmulatorRequest {
  method: string;
  /** The request target parsed against a placeholder origin; the pathname is still percent-encoded. */
  url: URL;
  headers: http.IncomingHttpHeaders;
  body: string;
  /**
   * Requests in flight when this one arrived, itself included. A request is in flight from its
   * arrival until its answer has been sent (Mailchimp limits these, not requests per second).
   */
  inFlight: number;
}

export interface JsonServerOptions {
  handle: (request: EmulatorRequest) => Promise<Reply>;
  /** The emulator's stats: every answer is counted by HTTP status in `statuses`. */
  stats: Counters<{ statuses: Record<number, number> }>;
  /**
   * The answer to an error the handler throws, in the vendor's error format. Emulators throw
   * their error documents from deep inside validation; anything else means the emulator crashed,
   * and a crashing service answers 500. Default: 500 `{ message }`.
   */
  errorReply?: (err: unknown) => Reply;
  /** Content-Type of JSON bodies (vendors spell the charset differently); a reply's own headers win. */
  contentType?: string;
  /** Headers every answer carries, computed as it is sent (rate-limit usage, for instance). */
  everyReply?: () => Record<string, string>;
  /**
   * The vendor's published spec (kit/vendor-spec.ts): a request that breaks it is recorded and
   * refused with the vendor's own 400 (`refuse`) before the handler sees it; an answer that breaks
   * it is recorded (and still sent). The test run fails on recorded violations.
   */
  spec?: EmulatorSpec;
}

export interface EmulatorSpec {
  /** The emulator's name in violation reports (the destination type). */
  name: string;
  check: SpecCheck;
  /** The emulator's routes: they name the endpoint whose operation applies. */
  routes: RouteTable<string>;
  refuse(problems: string[]): Reply;
}

/** The exchange as the spec check sees it, or undefined for a request no route names. */
function specExchange(spec: EmulatorSpec, request: EmulatorRequest): SpecExchange | undefined {
  const route = matchRoute(spec.routes, request.method, request.url.pathname);
  if (!route) return undefined;
  let body: unknown;
  if (request.body.trim() !== '') {
    try {
      body = JSON.parse(request.body);
    } catch {
      body = undefined; // not JSON: the handler answers that in the vendor's words
    }
  }
  let pathname = request.url.pathname;
  try {
    pathname = decodeURIComponent(pathname);
  } catch {
    // a malformed escape: checked as sent
  }
  return {
    endpoint: route.endpoint,
    method: request.method,
    pathname,
    query: request.url.searchParams,
    headers: request.headers,
    body,
  };
}

/** Checks the request against the spec; a reply refusing it when it breaks it. */
function refuseOffSpec(
  spec: EmulatorSpec | undefined,
  exchange: SpecExchange | undefined,
): Reply | undefined {
  if (!spec || !exchange) return undefined;
  countSpecChecked(spec.name);
  const problems = safely(() => spec.check.request(exchange));
  if (problems.length === 0) return undefined;
  recordSpecViolation({ emulator: spec.name, endpoint: exchange.endpoint, direction: 'request', problems });
  return spec.refuse(problems);
}

/** A checker that throws (an Any of a type the spec does not load) reports that as a problem. */
function safely(check: () => string[]): string[] {
  try {
    return check();
  } catch (error) {
    return [`the spec check failed: ${error instanceof Error ? error.message : String(error)}`];
  }
}

function checkAnswer(spec: EmulatorSpec | undefined, exchange: SpecExchange | undefined, reply: Reply): void {
  if (!spec || !exchange || reply.offSpec) return;
  const problems = safely(() => spec.check.response(exchange, { status: reply.status, body: reply.body }));
  if (problems.length > 0) {
    recordSpecViolation({
      emulator: spec.name,
      endpoint: exchange.endpoint,
      direction: 'response',
      problems,
    });
  }
}

export interface JsonServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

/**
 * Serves `options.handle` on `listen.port` (0 or none: a free one) until closed. Bodies are read
 * whole before the handler runs.
 */
export async function startJsonServer(
  listen: { port?: number; host?: string },
  options: JsonServerOptions,
): Promise<JsonServer> {
  const errorReply =
    options.errorReply ?? ((err: unknown): Reply => ({ status: 500, body: { message: String(err) } }));
  let inFlight = 0;
  const server = http.createServer((req, res) => {
    const arrivedWith = ++inFlight;
    res.on('close', () => inFlight--);
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      let exchange: SpecExchange | undefined;
      // The request is built inside the chain: a target `new URL` rejects still gets an answer.
      Promise.resolve()
        .then(() => {
          const request: EmulatorRequest = {
            method: req.method ?? 'GET',
            url: new URL(req.url ?? '/', 'http://emulator'),
            headers: req.headers,
            body: Buffer.concat(chunks).toString('utf8'),
            inFlight: arrivedWith,
          };
          exchange = options.spec ? specExchange(options.spec, request) : undefined;
          return refuseOffSpec(options.spec, exchange) ?? options.handle(request);
        })
        .catch(errorReply)
        .then((reply) => {
          checkAnswer(options.spec, exchange, reply);
          const statuses = options.stats.current.statuses;
          statuses[reply.status] = (statuses[reply.status] ?? 0) + 1;
          const body = reply.body === undefined ? '' : JSON.stringify(reply.body);
          res.writeHead(reply.status, {
            ...(body ? { 'content-type': options.contentType ?? 'application/json' } : {}),
            ...options.everyReply?.(),
            ...reply.headers,
          });
          res.end(body);
        });
    });
  });
  const host = listen.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port ?? 0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // Clients keep sockets alive; drop them so close() doesn't wait for their idle timeout.
        server.closeAllConnections();
      }),
  };
}

/** Routes, each an HTTP method, a pattern for the (still encoded) pathname and the endpoint it names. */
export type RouteTable<E> = readonly (readonly [method: string, path: RegExp, endpoint: E])[];

/** The first route matching the request, with the pattern's capture groups (undecoded). */
export function matchRoute<E>(
  routes: RouteTable<E>,
  method: string,
  pathname: string,
): { endpoint: E; params: (string | undefined)[] } | undefined {
  for (const [verb, pattern, endpoint] of routes) {
    const match = verb === method ? pattern.exec(pathname) : null;
    if (match) return { endpoint, params: match.slice(1) };
  }
  return undefined;
}

/** JSON.parse, throwing the vendor's own error (from `invalid`) for a body that is not JSON. */
export function parseJson(raw: string, invalid: () => Error): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    throw invalid();
  }
}

// --- Faults -------------------------------------------------------------------------------------

/** Faults every emulator can be told to produce; each counted one is used up call by call. */
export interface CommonFaults {
  /** The next `calls` calls are refused as rate limited (how depends on the vendor). */
  rateLimit?: { calls: number; retryAfterSeconds: number };
  /** The next `calls` calls answer 5xx without applying anything. */
  serverError?: { calls: number; status?: 500 | 502 | 503 | 504 };
  /** The next `calls` mutating calls apply their change, then answer 500: delivered, unacknowledged. */
  applyThenFail?: { calls: number };
  /** After `successfulCalls` more successful mutating calls, every mutating call fails until cleared. */
  failAfter?: { successfulCalls: number; status?: number };
  /** Added before every answer. */
  latencyMs?: number;
}

/**
 * What FaultBoard relies on. An emulator's faults need not offer all of CommonFaults (HubSpot
 * has no failAfter) and may shape them its own way (Mailchimp's rateLimit has no delay).
 */
interface FaultsBase {
  failAfter?: { successfulCalls: number; status?: number };
  latencyMs?: number;
}

/** Names of the faults counted in calls: `{ calls: n, … }`. */
type CountedFault<F> = {
  [K in keyof F]-?: NonNullable<F[K]> extends { calls: number } ? K : never;
}[keyof F];

/**
 * The fault switchboard of one emulator: `set` merges (copies, so the caller's object is not
 * counted down under its feet), `clear` removes one fault or all, `take` uses up one call.
 */
export class FaultBoard<F extends FaultsBase> {
  private active = {} as F;

  /** The active faults themselves, for reading options such as record-level rejection rules. */
  get current(): F {
    return this.active;
  }

  set(next: F): void {
    this.active = { ...this.active, ...copyFaults(next) };
  }

  clear(name?: keyof F): void {
    if (name) delete this.active[name];
    else this.active = {} as F;
  }

  snapshot(): F {
    return copyFaults(this.active);
  }

  /**
   * Uses up one call of a counted fault and returns it (with its options, such as a status),
   * or undefined when it does not apply to this call. `applies` narrows a fault further, e.g.
   * to the endpoint it is aimed at; a fault that does not apply is not used up.
   */
  take<K extends CountedFault<F>>(
    name: K,
    applies?: (fault: NonNullable<F[K]>) => boolean,
  ): NonNullable<F[K]> | undefined {
    const fault = this.active[name] as (NonNullable<F[K]> & { calls: number }) | undefined;
    if (!fault || fault.calls <= 0 || (applies && !applies(fault))) return undefined;
    fault.calls--;
    if (fault.calls === 0) delete this.active[name];
    return fault;
  }

  /** `failAfter` once it has let its successful calls through (the service is "down"), else undefined. */
  down(): NonNullable<F['failAfter']> | undefined {
    const failAfter = this.active.failAfter;
    return failAfter && failAfter.successfulCalls <= 0 ? failAfter : undefined;
  }

  /** Counts a successful mutating call against `failAfter`. */
  succeeded(): void {
    if (this.active.failAfter) this.active.failAfter.successfulCalls--;
  }

  async latency(): Promise<void> {
    if (this.active.latencyMs) await delay(this.active.latencyMs);
  }
}

/** Functions (record-level rejection rules) are kept as they are; counters are deep-copied. */
function copyFaults<F extends object>(faults: F): F {
  const copy: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(faults)) {
    copy[name] = typeof value === 'function' ? value : structuredClone(value);
  }
  return copy as F;
}

// --- Stats --------------------------------------------------------------------------------------

/** An emulator's stats: counted into `current`, handed out as copies, reset to `zero()`. */
export class Counters<S> {
  current: S;

  constructor(private readonly zero: () => S) {
    this.current = zero();
  }

  snapshot(): S {
    return structuredClone(this.current);
  }

  reset(): void {
    this.current = this.zero();
  }
}

/** A count of 0 for each of `keys` (per-endpoint stats). */
export function zeroCounts<K extends string>(keys: readonly K[]): Record<K, number> {
  return Object.fromEntries(keys.map((key) => [key, 0])) as Record<K, number>;
}

/** The members every emulator offers tests: `stats()`, `resetStats()` and `faults.set/clear/get`. */
export function statsAndFaults<S, F extends FaultsBase>(stats: Counters<S>, faults: FaultBoard<F>) {
  return {
    stats: () => stats.snapshot(),
    resetStats: () => stats.reset(),
    faults: {
      set: (next: F) => faults.set(next),
      clear: (name?: keyof F) => faults.clear(name),
      get: () => faults.snapshot(),
    },
  };
}

// --- Rate limits --------------------------------------------------------------------------------

export interface Window {
  /** Requests allowed per window. */
  limit: number;
  /** Window length in milliseconds; windows start on multiples of it (fixed, not rolling). */
  ms: number;
}

export interface WindowState {
  limit: number;
  remaining: number;
  /** When the window resets, in milliseconds since the epoch. */
  resetAtMs: number;
}

/**
 * Fixed-window rate limiting per key, several windows at once (Klaviyo: 1 s burst and 1 min
 * steady; Braze: 3 s). A refused request does not count against the windows.
 */
export class FixedWindowLimiter {
  private readonly counts = new Map<string, { start: number; count: number }>();

  constructor(
    private readonly windows: Window[],
    private readonly now: () => number = Date.now,
  ) {}

  /** Counts a request; undefined when allowed, else the state of the first full window. */
  take(key: string): WindowState | undefined {
    const states = this.windows.map((window, i) => this.state(`${key}#${i}`, window));
    const full = states.find((state) => state.remaining <= 0);
    if (full) return full;
    this.windows.forEach((window, i) => this.counts.get(`${key}#${i}`)!.count++);
    return undefined;
  }

  /** The longest window's state after the last request, for rate-limit response headers. */
  report(key: string): WindowState {
    const last = this.windows.length - 1;
    return this.state(`${key}#${last}`, this.windows[last]!);
  }

  private state(id: string, window: Window): WindowState {
    const now = this.now();
    const start = Math.floor(now / window.ms) * window.ms;
    let entry = this.counts.get(id);
    if (!entry || entry.start !== start) {
      entry = { start, count: 0 };
      this.counts.set(id, entry);
    }
    return { limit: window.limit, remaining: window.limit - entry.count, resetAtMs: start + window.ms };
  }
}

/** Whole seconds until `atMs`, at least 1 (a Retry-After of 0 invites a hot loop). */
export function secondsUntil(atMs: number, nowMs: number = Date.now()): number {
  return Math.max(1, Math.ceil((atMs - nowMs) / 1000));
}

// --- Paging -------------------------------------------------------------------------------------

/**
 * Cursors are opaque to clients; inside, they are a position in the emulator's own order: an
 * integer (Klaviyo's join sequence) or the last key returned (http-list).
 */
export function encodeCursor(after: number | string): string {
  return Buffer.from(JSON.stringify({ after })).toString('base64url');
}

/** The position a cursor of ours carries, or null for anything else. */
export function decodeCursor(cursor: string): number | string | null {
  try {
    const decoded: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    const after = decoded && typeof decoded === 'object' ? (decoded as Record<string, unknown>).after : null;
    return typeof after === 'string' || Number.isInteger(after) ? (after as number | string) : null;
  } catch {
    return null;
  }
}

// --- Contract harnesses ---------------------------------------------------------------------------

/**
 * Member keys as e-mail addresses for emulators that hold only their SHA-256 hashes (Meta,
 * Google): `key(i)` hands out the i-th address and remembers it, `unhash` turns what the
 * emulator holds back into the keys the connector sent.
 */
export function hashedEmailKeys(): { key(i: number): string; unhash(hashes: Iterable<string>): string[] } {
  const byHash = new Map<string, string>();
  return {
    key(i) {
      const email = `person${i}@example.com`;
      byHash.set(sha256Hex(email), email);
      return email;
    },
    unhash: (hashes) => [...hashes].map((hash) => byHash.get(hash) ?? hash),
  };
}

/** The SHA-256 of a normalised identifier, as the ad platforms receive it. */
export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** Every call an emulator's stats counted, over all endpoints. */
export function totalCalls(calls: Record<string, number>): number {
  return Object.values(calls).reduce((sum, count) => sum + count, 0);
}
