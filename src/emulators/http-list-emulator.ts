import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import type { AttributeValue, Attributes } from '../connectors/types';

/**
 * An in-memory server speaking the http-list contract, for tests, the demo and users' own tests.
 * It behaves like a well-run SaaS list API (bearer auth, size limits, per-record rejections,
 * cursor pagination) and can be told to misbehave in the ways real ones do, deterministically.
 *
 *   POST /lists/{list}/members:add     {"members":[{"key","attributes"}]} → {"accepted","rejected"}
 *   POST /lists/{list}/members:remove  {"keys":[…]}                       → {"removed","rejected"}
 *   POST /lists/{list}:truncate                                            → {}
 *   GET  /lists/{list}/members?cursor=C&limit=L                            → {"keys","next"}
 */

export type Endpoint = 'add' | 'remove' | 'truncate' | 'list';

export interface EmulatorFaults {
  /** The next `calls` calls answer 429 with `Retry-After: retryAfterSeconds`. */
  rateLimit?: { calls: number; retryAfterSeconds: number };
  /** The next `calls` calls answer 5xx without applying anything. */
  serverError?: { calls: number; status?: 500 | 503 };
  /** The next `calls` calls apply their change, then answer 500: delivered but unacknowledged. */
  applyThenFail?: { calls: number };
  /** After `successfulCalls` more successful mutating calls, every mutating call fails until cleared. */
  failAfter?: { successfulCalls: number; status?: number };
  /** A reason to reject a record (it is then not applied), or null to accept it. */
  reject?: (key: string) => string | null;
  /** Added before every answer. */
  latencyMs?: number;
}

export interface EmulatorStats {
  /** Requests that reached each endpoint, whatever the answer. */
  calls: Record<Endpoint, number>;
  /** Records carried in well-formed, authenticated request bodies, per endpoint (faulted calls included). */
  recordsReceived: Record<Endpoint, number>;
  /** Records in calls whose change was applied to the list (apply-then-fail calls included). */
  recordsApplied: Record<Endpoint, number>;
  /** Answers by HTTP status. */
  statuses: Record<number, number>;
}

export interface HttpListEmulatorOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  host?: string;
  /** The bearer token clients must send. */
  token: string;
  /** Largest body (members, keys) or page accepted; larger bodies get 400. */
  maxRecordsPerCall?: number;
}

export interface HttpListEmulator {
  /** Base URL for the http-list destination's `baseUrl`. */
  url: string;
  port: number;
  close(): Promise<void>;
  /** A copy of a list's members (empty for a list never written). */
  members(listId: string): Map<string, Attributes>;
  setMembers(listId: string, members: Map<string, Attributes>): void;
  stats(): EmulatorStats;
  resetStats(): void;
  faults: {
    /** Merges into the active faults; counters start from the values given. */
    set(faults: EmulatorFaults): void;
    /** Clears one fault, or all of them. */
    clear(name?: keyof EmulatorFaults): void;
    /** The active faults with their remaining counts. */
    get(): EmulatorFaults;
  };
}

/** A reply to send: status, JSON body, extra headers. */
interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

class BadRequest extends Error {}

const endpoints: Endpoint[] = ['add', 'remove', 'truncate', 'list'];

export async function startHttpListEmulator(options: HttpListEmulatorOptions): Promise<HttpListEmulator> {
  const maxRecords = options.maxRecordsPerCall ?? 10_000;
  const lists = new Map<string, SortedList>();
  let faults: EmulatorFaults = {};
  let stats = emptyStats();

  function list(listId: string): SortedList {
    let found = lists.get(listId);
    if (!found) {
      found = new SortedList();
      lists.set(listId, found);
    }
    return found;
  }

  async function handle(req: http.IncomingMessage, raw: string): Promise<Reply> {
    if (faults.latencyMs) await delay(faults.latencyMs);
    const route = routeOf(req.method ?? 'GET', req.url ?? '/');
    if (!route) return { status: 404, body: { message: `no such endpoint: ${req.method} ${req.url}` } };
    stats.calls[route.endpoint]++;

    if (req.headers.authorization !== `Bearer ${options.token}`) {
      return { status: 401, body: { message: 'invalid token' } };
    }
    // Parsed before the injected faults only to count what crossed the wire; a real API would
    // rate-limit before looking at the body, so a 429 or 5xx still wins over a 400.
    const request = parseOrReject(route, raw);
    if (!(request instanceof BadRequest)) stats.recordsReceived[route.endpoint] += request.records;
    const injected = takeRateLimitOrServerError();
    if (injected) return injected;
    if (request instanceof BadRequest) return { status: 400, body: { message: request.message } };

    const mutating = route.endpoint !== 'list';
    if (mutating && failAfterExhausted()) {
      return { status: faults.failAfter?.status ?? 503, body: { message: 'service unavailable' } };
    }
    const body = apply(list(route.listId), request);
    stats.recordsApplied[route.endpoint] += request.records;
    if (takeCount('applyThenFail')) return { status: 500, body: { message: 'internal error' } };
    if (mutating && faults.failAfter) faults.failAfter.successfulCalls--;
    return { status: 200, body };
  }

  function parseOrReject(route: Route, raw: string): ParsedRequest | BadRequest {
    try {
      return parseRequest(route, raw, maxRecords);
    } catch (err) {
      if (err instanceof BadRequest) return err;
      throw err;
    }
  }

  function takeRateLimitOrServerError(): Reply | undefined {
    const rateLimit = faults.rateLimit;
    if (rateLimit && takeCount('rateLimit')) {
      return {
        status: 429,
        body: { message: 'rate limit exceeded' },
        headers: { 'retry-after': String(rateLimit.retryAfterSeconds) },
      };
    }
    const serverError = faults.serverError;
    if (serverError && takeCount('serverError')) {
      return { status: serverError.status ?? 500, body: { message: 'server error' } };
    }
    return undefined;
  }

  /** Uses up one call of a counted fault; true when the fault applied to this call. */
  function takeCount(name: 'rateLimit' | 'serverError' | 'applyThenFail'): boolean {
    const fault = faults[name];
    if (!fault || fault.calls <= 0) return false;
    fault.calls--;
    if (fault.calls === 0) delete faults[name];
    return true;
  }

  function failAfterExhausted(): boolean {
    return faults.failAfter !== undefined && faults.failAfter.successfulCalls <= 0;
  }

  function apply(members: SortedList, request: ParsedRequest): unknown {
    switch (request.kind) {
      case 'add': {
        const rejected = rejections(request.members.map((m) => m.key));
        for (const member of request.members) {
          if (!rejected.has(member.key)) members.set(member.key, member.attributes);
        }
        return { accepted: request.members.length - rejected.size, rejected: listRejections(rejected) };
      }
      case 'remove': {
        const rejected = rejections(request.keys);
        let removed = 0;
        for (const key of request.keys) {
          if (!rejected.has(key) && members.delete(key)) removed++;
        }
        return { removed, rejected: listRejections(rejected) };
      }
      case 'truncate':
        members.clear();
        return {};
      case 'list':
        return members.page(request.after, request.limit);
    }
  }

  function rejections(keys: string[]): Map<string, string> {
    const rejected = new Map<string, string>();
    if (!faults.reject) return rejected;
    for (const key of keys) {
      const reason = faults.reject(key);
      if (reason !== null) rejected.set(key, reason);
    }
    return rejected;
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      handle(req, Buffer.concat(chunks).toString('utf8'))
        .catch((err: unknown): Reply => ({ status: 500, body: { message: String(err) } }))
        .then((reply) => {
          stats.statuses[reply.status] = (stats.statuses[reply.status] ?? 0) + 1;
          res.writeHead(reply.status, { 'content-type': 'application/json', ...reply.headers });
          res.end(JSON.stringify(reply.body));
        });
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://${options.host ?? '127.0.0.1'}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // Clients keep sockets alive; drop them so close() doesn't wait for their idle timeout.
        server.closeAllConnections();
      }),
    members: (listId) => {
      const copy = new Map<string, Attributes>();
      for (const [key, attributes] of lists.get(listId)?.entries() ?? []) copy.set(key, { ...attributes });
      return copy;
    },
    setMembers: (listId, members) => {
      const replacement = new SortedList();
      for (const [key, attributes] of members) replacement.set(key, { ...attributes });
      lists.set(listId, replacement);
    },
    stats: () => structuredClone(stats),
    resetStats: () => {
      stats = emptyStats();
    },
    faults: {
      // Copies, so the caller's object is not counted down under its feet.
      set: (next) => {
        faults = { ...faults, ...structuredCloneFaults(next) };
      },
      clear: (name) => {
        if (name) delete faults[name];
        else faults = {};
      },
      get: () => structuredCloneFaults(faults),
    },
  };
}

function structuredCloneFaults(f: EmulatorFaults): EmulatorFaults {
  const { reject, ...counted } = f;
  return { ...structuredClone(counted), ...(reject ? { reject } : {}) };
}

function emptyStats(): EmulatorStats {
  const zero = () => Object.fromEntries(endpoints.map((e) => [e, 0])) as Record<Endpoint, number>;
  return { calls: zero(), recordsReceived: zero(), recordsApplied: zero(), statuses: {} };
}

function listRejections(rejected: Map<string, string>): { key: string; reason: string }[] {
  return [...rejected].map(([key, reason]) => ({ key, reason }));
}

// --- Routing and request validation -------------------------------------------------------------

interface Route {
  endpoint: Endpoint;
  listId: string;
  query: URLSearchParams;
}

function routeOf(method: string, rawUrl: string): Route | undefined {
  const url = new URL(rawUrl, 'http://emulator');
  // Match on the still-encoded path: an encoded list id cannot contain '/' or ':'.
  const patterns: [string, RegExp, Endpoint][] = [
    ['POST', /^\/lists\/([^/:]+)\/members:add$/, 'add'],
    ['POST', /^\/lists\/([^/:]+)\/members:remove$/, 'remove'],
    ['POST', /^\/lists\/([^/:]+):truncate$/, 'truncate'],
    ['GET', /^\/lists\/([^/:]+)\/members$/, 'list'],
  ];
  for (const [verb, pattern, endpoint] of patterns) {
    const match = pattern.exec(url.pathname);
    if (verb === method && match) {
      try {
        return { endpoint, listId: decodeURIComponent(match[1]!), query: url.searchParams };
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

type ParsedRequest = { records: number } & (
  | { kind: 'add'; members: { key: string; attributes: Attributes }[] }
  | { kind: 'remove'; keys: string[] }
  | { kind: 'truncate' }
  | { kind: 'list'; after: string | null; limit: number }
);

function parseRequest(route: Route, raw: string, maxRecords: number): ParsedRequest {
  switch (route.endpoint) {
    case 'add': {
      const members = arrayField(parseJson(raw), 'members', maxRecords).map(parseMember);
      return { kind: 'add', members, records: members.length };
    }
    case 'remove': {
      const keys = arrayField(parseJson(raw), 'keys', maxRecords).map((key, i) => {
        if (typeof key !== 'string' || key === '')
          throw new BadRequest(`keys[${i}] must be a non-empty string`);
        return key;
      });
      return { kind: 'remove', keys, records: keys.length };
    }
    case 'truncate':
      return { kind: 'truncate', records: 0 };
    case 'list':
      return { kind: 'list', ...parsePageQuery(route.query, maxRecords), records: 0 };
  }
}

function parseJson(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    throw new BadRequest('body is not valid JSON');
  }
}

function arrayField(body: unknown, field: string, maxRecords: number): unknown[] {
  const value = body && typeof body === 'object' ? (body as Record<string, unknown>)[field] : undefined;
  if (!Array.isArray(value)) throw new BadRequest(`body must be an object with a '${field}' array`);
  if (value.length > maxRecords) {
    throw new BadRequest(`too many records in one call: ${value.length} (at most ${maxRecords})`);
  }
  return value;
}

function parseMember(value: unknown, i: number): { key: string; attributes: Attributes } {
  if (!value || typeof value !== 'object') throw new BadRequest(`members[${i}] must be an object`);
  const { key, attributes = {} } = value as Record<string, unknown>;
  if (typeof key !== 'string' || key === '')
    throw new BadRequest(`members[${i}].key must be a non-empty string`);
  if (!attributes || typeof attributes !== 'object' || Array.isArray(attributes)) {
    throw new BadRequest(`members[${i}].attributes must be an object`);
  }
  for (const [name, attr] of Object.entries(attributes)) {
    if (!isAttributeValue(attr)) {
      throw new BadRequest(`members[${i}].attributes.${name} must be a string, number, boolean or null`);
    }
  }
  return { key, attributes: { ...(attributes as Attributes) } };
}

function isAttributeValue(value: unknown): value is AttributeValue {
  return value === null || ['string', 'number', 'boolean'].includes(typeof value);
}

function parsePageQuery(query: URLSearchParams, maxRecords: number): { after: string | null; limit: number } {
  const limitText = query.get('limit') ?? '100';
  const limit = Number(limitText);
  if (!/^\d+$/.test(limitText) || limit < 1) throw new BadRequest('limit must be a positive integer');
  const cursor = query.get('cursor');
  let after: string | null = null;
  if (cursor !== null) {
    after = decodeCursor(cursor);
    if (after === null) throw new BadRequest('invalid cursor');
  }
  // Like most list APIs, an over-large page size is clamped rather than refused.
  return { after, limit: Math.min(limit, maxRecords) };
}

// --- Storage ------------------------------------------------------------------------------------

/** Cursors are opaque to clients; inside, they are the last key returned. */
function encodeCursor(lastKey: string): string {
  return Buffer.from(JSON.stringify({ after: lastKey })).toString('base64url');
}

function decodeCursor(cursor: string): string | null {
  try {
    const decoded: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    const after =
      decoded && typeof decoded === 'object' ? (decoded as Record<string, unknown>).after : undefined;
    return typeof after === 'string' ? after : null;
  } catch {
    return null;
  }
}

/** Byte order of the UTF-8 encoding, as a binary database collation sorts keys. */
function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** A map whose keys can be paged in order; the sorted key array is rebuilt only after changes. */
class SortedList {
  private readonly map = new Map<string, Attributes>();
  private sorted: string[] | null = null;

  set(key: string, attributes: Attributes): void {
    if (!this.map.has(key)) this.sorted = null;
    this.map.set(key, attributes);
  }

  delete(key: string): boolean {
    const deleted = this.map.delete(key);
    if (deleted) this.sorted = null;
    return deleted;
  }

  clear(): void {
    this.map.clear();
    this.sorted = null;
  }

  entries(): IterableIterator<[string, Attributes]> {
    return this.map.entries();
  }

  page(after: string | null, limit: number): { keys: string[]; next: string | null } {
    this.sorted ??= [...this.map.keys()].sort(compareKeys);
    const start = after === null ? 0 : firstAfter(this.sorted, after);
    const keys = this.sorted.slice(start, start + limit);
    const more = start + limit < this.sorted.length;
    return { keys, next: more ? encodeCursor(keys[keys.length - 1]!) : null };
  }
}

/** Index of the first key strictly greater than `after` (binary search). */
function firstAfter(sorted: string[], after: string): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (compareKeys(sorted[mid]!, after) <= 0) low = mid + 1;
    else high = mid;
  }
  return low;
}
