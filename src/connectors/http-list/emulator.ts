import type { AttributeValue, Attributes } from '../../core/destination';
import type { ContractHarness } from '../kit/contract';
import {
  Counters,
  FaultBoard,
  decodeCursor,
  encodeCursor,
  matchRoute,
  parseJson,
  startJsonServer,
  statsAndFaults,
  zeroCounts,
  type CommonFaults,
  type EmulatorRequest,
  type Reply,
  type RouteTable,
} from '../kit/emulator-kit';

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

export interface EmulatorFaults extends CommonFaults {
  /** The next `calls` calls answer 429 with `Retry-After: retryAfterSeconds`. */
  rateLimit?: { calls: number; retryAfterSeconds: number };
  /** The next `calls` calls answer 5xx without applying anything. */
  serverError?: { calls: number; status?: 500 | 503 };
  /** The next `calls` calls apply their change, then answer 500: delivered but unacknowledged. */
  applyThenFail?: { calls: number };
  /** A reason to reject a record (it is then not applied), or null to accept it. */
  reject?: (key: string) => string | null;
  /**
   * A reason to refuse a whole call for one of its records (400, nothing applied: some APIs fail
   * a batch for one malformed record), or null.
   */
  refuseBatchFor?: (key: string) => string | null;
  /**
   * The next `calls` additions take only their first `accepted` records (those not rejected) and
   * answer `{"accepted": <that many>, "rejected": […]}`: a short acknowledgement, which does not
   * say which records were left out.
   */
  shortAcknowledgement?: { calls: number; accepted: number };
}

export interface EmulatorStats {
  /** Requests that reached each endpoint, whatever the answer. */
  calls: Record<Endpoint, number>;
  /** Records carried in well-formed, authenticated request bodies, per endpoint (faulted calls included). */
  recordsReceived: Record<Endpoint, number>;
  /**
   * Records in calls whose change was applied to the list (apply-then-fail calls included; of a
   * short acknowledgement, only the records it took).
   */
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
  /**
   * The lists that exist (and those `setMembers` seeds); any other answers 404, like a list
   * deleted or never created. Default: every list exists, and starts empty.
   */
  lists?: string[];
  /** Told of every call to a list once answered: which list, when it arrived and when it was answered. */
  onCall?: (call: { listId: string; endpoint: Endpoint; startedAt: number; endedAt: number }) => void;
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

class BadRequest extends Error {}
const notJson = () => new BadRequest('body is not valid JSON');

const endpoints: Endpoint[] = ['add', 'remove', 'truncate', 'list'];

export async function startHttpListEmulator(options: HttpListEmulatorOptions): Promise<HttpListEmulator> {
  const maxRecords = options.maxRecordsPerCall ?? 10_000;
  const lists = new Map<string, SortedList>();
  const existing = options.lists ? new Set(options.lists) : undefined;
  const faults = new FaultBoard<EmulatorFaults>();
  const stats = new Counters(emptyStats);

  function list(listId: string): SortedList {
    let found = lists.get(listId);
    if (!found) {
      found = new SortedList();
      lists.set(listId, found);
    }
    return found;
  }

  async function handle(req: EmulatorRequest): Promise<Reply> {
    if (!options.onCall) return answer(req);
    const startedAt = Date.now();
    const reply = await answer(req);
    const route = routeOf(req.method, req.url);
    if (route)
      options.onCall({ listId: route.listId, endpoint: route.endpoint, startedAt, endedAt: Date.now() });
    return reply;
  }

  async function answer(req: EmulatorRequest): Promise<Reply> {
    await faults.latency();
    const route = routeOf(req.method, req.url);
    if (!route) {
      return {
        status: 404,
        body: { message: `no such endpoint: ${req.method} ${req.url.pathname}${req.url.search}` },
      };
    }
    stats.current.calls[route.endpoint]++;

    if (req.headers.authorization !== `Bearer ${options.token}`) {
      return { status: 401, body: { message: 'invalid token' } };
    }
    if (existing && !existing.has(route.listId)) {
      return { status: 404, body: { message: `no such list: ${route.listId}` } };
    }
    // Parsed before the injected faults only to count what crossed the wire; a real API would
    // rate-limit before looking at the body, so a 429 or 5xx still wins over a 400.
    const request = parseOrReject(route, req.body);
    if (!(request instanceof BadRequest)) stats.current.recordsReceived[route.endpoint] += request.records;
    const rateLimit = faults.take('rateLimit');
    if (rateLimit) {
      return {
        status: 429,
        body: { message: 'rate limit exceeded' },
        headers: { 'retry-after': String(rateLimit.retryAfterSeconds) },
      };
    }
    const serverError = faults.take('serverError');
    if (serverError) return { status: serverError.status ?? 500, body: { message: 'server error' } };
    if (request instanceof BadRequest) return { status: 400, body: { message: request.message } };
    const refusal = batchRefusal(request);
    if (refusal) return { status: 400, body: { message: refusal } };

    const mutating = route.endpoint !== 'list';
    const down = mutating ? faults.down() : undefined;
    if (down) return { status: down.status ?? 503, body: { message: 'service unavailable' } };
    const { body, applied } = apply(list(route.listId), request);
    stats.current.recordsApplied[route.endpoint] += applied;
    if (faults.take('applyThenFail')) return { status: 500, body: { message: 'internal error' } };
    if (mutating) faults.succeeded();
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

  /** The answer's body, and how many of the request's records changed the list (for the stats). */
  function apply(members: SortedList, request: ParsedRequest): { body: unknown; applied: number } {
    switch (request.kind) {
      case 'add': {
        const rejected = rejections(request.members.map((m) => m.key));
        const taken = request.members.filter((member) => !rejected.has(member.key));
        const short = faults.take('shortAcknowledgement');
        const applied = short ? taken.slice(0, Math.max(0, short.accepted)) : taken;
        for (const member of applied) members.set(member.key, member.attributes);
        return {
          body: { accepted: applied.length, rejected: listRejections(rejected) },
          // Stats count every record of an applied call; of a short one, only the part taken.
          applied: short ? applied.length : request.records,
        };
      }
      case 'remove': {
        const rejected = rejections(request.keys);
        let removed = 0;
        for (const key of request.keys) {
          if (!rejected.has(key) && members.delete(key)) removed++;
        }
        return { body: { removed, rejected: listRejections(rejected) }, applied: request.records };
      }
      case 'truncate':
        members.clear();
        return { body: {}, applied: request.records };
      case 'list':
        return { body: members.page(request.after, request.limit), applied: request.records };
    }
  }

  function batchRefusal(request: ParsedRequest): string | null {
    const refuse = faults.current.refuseBatchFor;
    if (!refuse) return null;
    const keys =
      request.kind === 'add'
        ? request.members.map((m) => m.key)
        : request.kind === 'remove'
          ? request.keys
          : [];
    for (const key of keys) {
      const reason = refuse(key);
      if (reason !== null) return reason;
    }
    return null;
  }

  function rejections(keys: string[]): Map<string, string> {
    const rejected = new Map<string, string>();
    const reject = faults.current.reject;
    if (!reject) return rejected;
    for (const key of keys) {
      const reason = reject(key);
      if (reason !== null) rejected.set(key, reason);
    }
    return rejected;
  }

  return {
    ...(await startJsonServer(options, { handle, stats })),
    members: (listId) => {
      const copy = new Map<string, Attributes>();
      for (const [key, attributes] of lists.get(listId)?.entries() ?? []) copy.set(key, { ...attributes });
      return copy;
    },
    setMembers: (listId, members) => {
      existing?.add(listId);
      const replacement = new SortedList();
      for (const [key, attributes] of members) replacement.set(key, { ...attributes });
      lists.set(listId, replacement);
    },
    ...statsAndFaults(stats, faults),
  };
}

function emptyStats(): EmulatorStats {
  return {
    calls: zeroCounts(endpoints),
    recordsReceived: zeroCounts(endpoints),
    recordsApplied: zeroCounts(endpoints),
    statuses: {},
  };
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

// Matched on the still-encoded path: an encoded list id cannot contain '/' or ':'.
const routes: RouteTable<Endpoint> = [
  ['POST', /^\/lists\/([^/:]+)\/members:add$/, 'add'],
  ['POST', /^\/lists\/([^/:]+)\/members:remove$/, 'remove'],
  ['POST', /^\/lists\/([^/:]+):truncate$/, 'truncate'],
  ['GET', /^\/lists\/([^/:]+)\/members$/, 'list'],
];

function routeOf(method: string, url: URL): Route | undefined {
  const match = matchRoute(routes, method, url.pathname);
  if (!match) return undefined;
  try {
    return {
      endpoint: match.endpoint,
      listId: decodeURIComponent(match.params[0]!),
      query: url.searchParams,
    };
  } catch {
    return undefined; // a malformed escape names no list
  }
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
      const members = arrayField(parseJson(raw, notJson), 'members', maxRecords).map(parseMember);
      return { kind: 'add', members, records: members.length };
    }
    case 'remove': {
      const keys = arrayField(parseJson(raw, notJson), 'keys', maxRecords).map((key, i) => {
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
    // Cursors carry the last key returned.
    const decoded = decodeCursor(cursor);
    if (typeof decoded !== 'string') throw new BadRequest('invalid cursor');
    after = decoded;
  }
  // Like most list APIs, an over-large page size is clamped rather than refused.
  return { after, limit: Math.min(limit, maxRecords) };
}

// --- Storage ------------------------------------------------------------------------------------

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

// --- The shared contract suite --------------------------------------------------------------------

/**
 * The shared destination contract suite's view of this emulator (test/connectors/contract.test.ts):
 * a fresh emulator per start, e-mail-like keys with one attribute, 429 with Retry-After, 5xx, a
 * short `accepted` count, and one key the list refuses as a record.
 */
export const contractHarness: ContractHarness = {
  type: 'http-list',
  async start() {
    const token = 'tok-contract-7c1e4a';
    const listId = 'contract';
    const refused = 'refused@invalid.example';
    const emu = await startHttpListEmulator({ token, lists: [listId] });
    emu.faults.set({ reject: (key) => (key === refused ? 'invalid e-mail address' : null) });
    return {
      settings: { type: 'http-list', baseUrl: emu.url, listId, tokenSecret: 'HTTP_LIST_CONTRACT_TOKEN' },
      secrets: { HTTP_LIST_CONTRACT_TOKEN: token },
      key: (i) => `member-${i}@example.com`,
      attributes: (i) => ({ segment: i % 2 === 0 ? 'even' : 'odd' }),
      members: async () => [...emu.members(listId).keys()],
      rateLimit: (calls) => emu.faults.set({ rateLimit: { calls, retryAfterSeconds: 1 } }),
      serverError: (calls) => emu.faults.set({ serverError: { calls, status: 503 } }),
      shortAcknowledgeNext: () => emu.faults.set({ shortAcknowledgement: { calls: 1, accepted: 1 } }),
      refusedKey: () => refused,
      received: () => Object.values(emu.stats().calls).reduce((sum, calls) => sum + calls, 0),
      close: () => emu.close(),
    };
  },
};
