import { randomUUID } from 'node:crypto';
import type { ContractHarness } from '../kit/contract';
import { openApiCheck, type SpecCheck } from '../kit/vendor-spec';
import {
  Counters,
  FaultBoard,
  matchRoute,
  parseJson,
  startJsonServer,
  statsAndFaults,
  zeroCounts,
  type EmulatorRequest,
  type Reply,
  type RouteTable,
} from '../kit/emulator-kit';
import {
  DAILY_LIMIT,
  MEMBERSHIPS_PAGE_DEFAULT,
  MEMBERSHIPS_PAGE_MAX,
  TEN_SECONDLY_LIMIT,
  TEN_SECONDLY_WINDOW_MS,
  TRUNCATE_MAX_MEMBERS,
} from './vendor-limits';

/**
 * An in-memory HubSpot CRM Lists v3 server (list memberships only), for tests, demos and users'
 * own tests. It follows HubSpot's published OpenAPI document for CRM Lists v3, extracted into
 * test/vendor-specs/hubspot/crm-lists-v3.openapi.json (SOURCE.md there says from where), and holds
 * every exchange to it (kit/vendor-spec.ts): a request the spec does not describe is refused with
 * HubSpot's 400, an answer that strays from it fails the test run.
 *
 *   PUT    /crm/v3/lists/{listId}/memberships/add             ["101","102"]
 *   PUT    /crm/v3/lists/{listId}/memberships/remove          ["101"]
 *   PUT    /crm/v3/lists/{listId}/memberships/add-and-remove  {"recordIdsToAdd":[…],"recordIdsToRemove":[…]}
 *          → 200 {"recordIdsMissing":[…],"recordIdsRemoved":[…],"recordsIdsAdded":[…]}
 *            (sic: `recordsIdsAdded`, all three required, is the spec's schema,
 *            components.schemas.MembershipsUpdateResponse; the same document's examples for
 *            /add and /add-and-remove spell it `recordIdsAdded`. The emulator answers as the
 *            schema says; the destination reads either spelling.)
 *   DELETE /crm/v3/lists/{listId}/memberships                 → 204 (the list itself stays),
 *          only for lists under 100,000 members (TRUNCATE_MAX_MEMBERS): 400 at or over it
 *   GET    /crm/v3/lists/{listId}/memberships?after=&limit=   → 200 {"results":[{"recordId","membershipTimestamp"}],
 *                                                                   "paging":{"next":{"after","link"}},"total"}
 *   GET    /crm/v3/lists/{listId}                             → 200 {"list":{"listId","listVersion","name",
 *                                                                   "objectTypeId","processingStatus","processingType","size"}}
 *
 * Records are CRM records that exist on their own: adding an id that does not exist is reported in
 * `recordIdsMissing` and ignored, as is re-adding a member. Only MANUAL and SNAPSHOT lists accept
 * membership changes. Rate limits are HubSpot's: a rolling ten-second window and a daily budget,
 * answered with 429 and a JSON body naming the policy (`TEN_SECONDLY_ROLLING`, `DAILY`) and, like
 * HubSpot, normally no Retry-After header; the daily budget resets at midnight in the account's
 * time zone. Every answer carries the X-HubSpot-RateLimit-* headers.
 */

/** What this emulator does not do that HubSpot does (the contract above is all it knows). */
export const NOT_EMULATED: readonly string[] = [
  'Only the six routes above: no list creation, search, folders, filters, list deletion or restore through the API (lists are made with createList()).',
  'DYNAMIC lists never change members by themselves (no filter evaluation); includeFilters is accepted and ignored, and no filterBranch is ever returned.',
  'GET memberships pages forward only: the `before` token and `paging.prev` are not produced or honoured.',
  'Paging tokens are the base64 of the last record id; HubSpot’s are opaque and differ.',
  'HubSpot’s answer to DELETE memberships on a list of 100,000 members or more is not documented: the emulator answers 400 VALIDATION_ERROR quoting the spec’s sentence.',
  'HubSpot publishes no cap on record ids per membership call; the emulator’s maxRecordsPerCall (default 100,000) is its own.',
  'Membership changes are applied and visible at once; HubSpot may process large changes asynchronously (processingStatus other than COMPLETE is never reported).',
  'Records are bare ids of one object type: no objectTypeId checks (adding a company id to a contact list is not refused).',
  'Authentication is a single static private-app token: no OAuth, no scopes (403 MISSING_SCOPES is never answered), no token expiry.',
  'Rate limits count every authenticated call of the emulator, whatever the app; HubSpot also counts other apps of the account and has separate search and burst limits not modelled here.',
  'Error bodies follow the spec’s Error schema (message, correlationId, category, errors); HubSpot’s live errors also carry `status: "error"`, which that schema does not list.',
];

export type HubspotEndpoint = 'add' | 'remove' | 'addAndRemove' | 'deleteAll' | 'read' | 'getList';
export type HubspotRatePolicy = 'TEN_SECONDLY_ROLLING' | 'DAILY';
export type ProcessingType = 'MANUAL' | 'SNAPSHOT' | 'DYNAMIC';

export interface HubspotFaults {
  /** The next `calls` calls answer 429 for `policyName` (default TEN_SECONDLY_ROLLING). */
  rateLimit?: { calls: number; policyName?: HubspotRatePolicy; retryAfterSeconds?: number };
  /** The next `calls` calls answer 5xx without applying anything. */
  serverError?: { calls: number; status?: 500 | 502 | 503 | 504 };
  /** The next `calls` mutating calls apply their change, then answer 500: delivered but unacknowledged. */
  applyThenFail?: { calls: number };
  /**
   * The next `calls` membership changes apply, then answer 200 `{}`: nothing says which ids were
   * added, removed or missing. An incomplete acknowledgement, for the destination to see.
   */
  bareAnswer?: { calls: number };
  /** Added before every answer. */
  latencyMs?: number;
}

export interface HubspotEmulatorStats {
  /** Requests that reached each endpoint, whatever the answer. */
  calls: Record<HubspotEndpoint, number>;
  /** Record ids in well-formed, authenticated request bodies, per endpoint (faulted calls included). */
  recordsReceived: Record<HubspotEndpoint, number>;
  /** 429 answers by policy, injected or earned. */
  rateLimited: Record<HubspotRatePolicy, number>;
  /** Answers by HTTP status. */
  statuses: Record<number, number>;
}

export interface HubspotListEmulatorOptions {
  port?: number;
  host?: string;
  /** The private app token clients must send as `Authorization: Bearer …`. */
  token: string;
  /** Largest number of record ids one membership call accepts (HubSpot publishes none); default 100,000. */
  maxRecordsPerCall?: number;
  /** Calls allowed per rolling window; default 190 (private apps on Professional/Enterprise). */
  tenSecondlyLimit?: number;
  /** The rolling window; 10,000 ms at HubSpot. Tests may shrink it. */
  rateWindowMs?: number;
  /** Calls allowed per day; default 1,000,000. */
  dailyLimit?: number;
  /** The account's time zone (IANA), where the daily budget resets at midnight; default UTC. */
  accountTimeZone?: string;
  /**
   * Hold every request and answer to HubSpot's published spec (default true); false only for
   * tests that need to send what HubSpot's spec does not describe.
   */
  specCheck?: boolean;
  /**
   * The CRM records that exist. Default: every positive integer id exists (except those removed
   * with `records.delete`); pass ids to make only those (and `records.add`ed ones) exist.
   */
  recordIds?: Iterable<string>;
  /** Clock for the rate windows and membership timestamps (tests inject a fake one). */
  now?: () => number;
}

export interface HubspotListEmulator {
  url: string;
  port: number;
  close(): Promise<void>;
  /** Creates a list and returns its ILS list id (a numeric string). */
  createList(options?: { name?: string; processingType?: ProcessingType }): string;
  /** The member record ids of a list, in ascending id order. */
  members(listId: string): string[];
  setMembers(listId: string, recordIds: Iterable<string>): void;
  /** The CRM records that exist; deleting a record also drops it from every list, as in HubSpot. */
  records: { add(...ids: string[]): void; delete(...ids: string[]): void; has(id: string): boolean };
  stats(): HubspotEmulatorStats;
  resetStats(): void;
  faults: {
    set(faults: HubspotFaults): void;
    clear(name?: keyof HubspotFaults): void;
    get(): HubspotFaults;
  };
}

interface ListState {
  name: string;
  processingType: ProcessingType;
  /** record id → membership timestamp (ISO). */
  members: Map<string, string>;
  /** The member ids in record id order, kept until the members change (see `changed`). */
  sorted: string[] | null;
  createdAt: string;
}

class BadRequest extends Error {}
const notJson = () => new BadRequest('Invalid input JSON: the request body is not valid JSON.');

const endpoints: HubspotEndpoint[] = ['add', 'remove', 'addAndRemove', 'deleteAll', 'read', 'getList'];
const SPEC_NAME = 'hubspot-list';

/** Each emulator endpoint as the spec's `paths` spell it. */
const SPEC_OPERATIONS: Record<HubspotEndpoint, string> = {
  add: 'PUT /crm/v3/lists/{listId}/memberships/add',
  remove: 'PUT /crm/v3/lists/{listId}/memberships/remove',
  addAndRemove: 'PUT /crm/v3/lists/{listId}/memberships/add-and-remove',
  deleteAll: 'DELETE /crm/v3/lists/{listId}/memberships',
  read: 'GET /crm/v3/lists/{listId}/memberships',
  getList: 'GET /crm/v3/lists/{listId}',
};

let specCheck: SpecCheck | undefined;
/** Compiled once per process: every emulator started holds to the same document. */
function hubspotSpec(): SpecCheck {
  specCheck ??= openApiCheck({
    document: 'test/vendor-specs/hubspot/crm-lists-v3.openapi.json',
    operations: SPEC_OPERATIONS,
  });
  return specCheck;
}

export async function startHubspotListEmulator(
  options: HubspotListEmulatorOptions,
): Promise<HubspotListEmulator> {
  const now = options.now ?? Date.now;
  const maxRecords = options.maxRecordsPerCall ?? 100_000;
  const truncateMax = TRUNCATE_MAX_MEMBERS;
  const tenSecondlyLimit = options.tenSecondlyLimit ?? TEN_SECONDLY_LIMIT;
  const windowMs = options.rateWindowMs ?? TEN_SECONDLY_WINDOW_MS;
  const dailyLimit = options.dailyLimit ?? DAILY_LIMIT;
  const timeZone = options.accountTimeZone ?? 'UTC';
  const dayOf = dayIn(timeZone);
  const lists = new Map<string, ListState>();
  const knownRecords = options.recordIds ? new Set(options.recordIds) : null;
  const deletedRecords = new Set<string>();
  const recent: number[] = []; // times of calls counted in the rolling window
  let daily = { day: dayOf(now()), calls: 0 };
  let nextListId = 1001;
  const faults = new FaultBoard<HubspotFaults>();
  const stats = new Counters(emptyStats);

  function recordExists(id: string): boolean {
    if (deletedRecords.has(id)) return false;
    return knownRecords ? knownRecords.has(id) : true;
  }

  async function handle(req: EmulatorRequest): Promise<Reply> {
    await faults.latency();
    const route = routeOf(req.method, req.url);
    if (!route) {
      return error(
        404,
        `Unable to route ${req.method} ${req.url.pathname}${req.url.search}`,
        'OBJECT_NOT_FOUND',
      );
    }
    stats.current.calls[route.endpoint]++;
    if (req.headers.authorization !== `Bearer ${options.token}`) {
      return error(
        401,
        'Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview',
        'INVALID_AUTHENTICATION',
      );
    }
    const limited = takeRateLimit();
    if (limited) return limited;
    const parsed = parseOrReject(route, req.body);
    if (!(parsed instanceof BadRequest)) stats.current.recordsReceived[route.endpoint] += parsed.records;
    const serverError = faults.take('serverError');
    if (serverError) return error(serverError.status ?? 500, 'internal error', 'INTERNAL_ERROR');
    if (parsed instanceof BadRequest) return error(400, parsed.message, 'VALIDATION_ERROR');

    const list = lists.get(route.listId);
    if (!list) return error(404, `List does not exist with ID ${route.listId}.`, 'OBJECT_NOT_FOUND');
    const reading = parsed.kind === 'read' || parsed.kind === 'getList';
    if (!reading && list.processingType === 'DYNAMIC') {
      return error(
        400,
        `List ${route.listId} has processingType DYNAMIC: memberships can only be changed for MANUAL or SNAPSHOT lists.`,
        'VALIDATION_ERROR',
      );
    }
    const reply = apply(route.listId, list, parsed);
    if (!reading && faults.take('applyThenFail')) {
      return error(500, 'internal error', 'INTERNAL_ERROR');
    }
    if (parsed.kind === 'change' && faults.take('bareAnswer')) {
      // Off the spec on purpose (all three id lists are required): the fault is the test's intent.
      return { status: 200, body: {}, offSpec: true };
    }
    return reply;
  }

  /**
   * HubSpot counts every authenticated call against both budgets; a refused call counts for none.
   * The ten-second window rolls (unlike the fixed windows of the kit's limiter); the daily budget
   * resets at midnight in the account's time zone.
   */
  function takeRateLimit(): Reply | undefined {
    const t = now();
    while (recent.length > 0 && recent[0]! <= t - windowMs) recent.shift();
    if (daily.day !== dayOf(t)) daily = { day: dayOf(t), calls: 0 };

    const injected = faults.take('rateLimit');
    if (injected)
      return rateLimited(injected.policyName ?? 'TEN_SECONDLY_ROLLING', injected.retryAfterSeconds);
    if (daily.calls >= dailyLimit) return rateLimited('DAILY');
    if (recent.length >= tenSecondlyLimit) return rateLimited('TEN_SECONDLY_ROLLING');
    recent.push(t);
    daily.calls++;
    return undefined;
  }

  /**
   * HubSpot's 429, as its API usage guidelines show it (https://developers.hubspot.com/docs/api/usage-details):
   * the policy that was hit is named in the body; Retry-After only if injected.
   */
  function rateLimited(policyName: HubspotRatePolicy, retryAfterSeconds?: number): Reply {
    stats.current.rateLimited[policyName]++;
    const daily = policyName === 'DAILY';
    return {
      status: 429,
      body: {
        status: 'error',
        message: `You have reached your ${daily ? 'daily' : 'ten_secondly_rolling'} limit.`,
        errorType: 'RATE_LIMIT',
        correlationId: randomUUID(),
        policyName,
        requestId: randomUUID(),
      },
      headers: retryAfterSeconds === undefined ? undefined : { 'retry-after': String(retryAfterSeconds) },
    };
  }

  function rateLimitHeaders(): Record<string, string> {
    return {
      'x-hubspot-ratelimit-max': String(tenSecondlyLimit),
      'x-hubspot-ratelimit-remaining': String(Math.max(0, tenSecondlyLimit - recent.length)),
      'x-hubspot-ratelimit-interval-milliseconds': String(windowMs),
      'x-hubspot-ratelimit-daily': String(dailyLimit),
      'x-hubspot-ratelimit-daily-remaining': String(Math.max(0, dailyLimit - daily.calls)),
    };
  }

  function parseOrReject(route: Route, raw: string): ParsedRequest | BadRequest {
    try {
      return parseRequest(route, raw, maxRecords);
    } catch (err) {
      if (err instanceof BadRequest) return err;
      throw err;
    }
  }

  function apply(listId: string, list: ListState, request: ParsedRequest): Reply {
    switch (request.kind) {
      case 'change': {
        const missing: string[] = [];
        const added: string[] = [];
        const removed: string[] = [];
        for (const id of request.toAdd) {
          if (!recordExists(id)) missing.push(id);
          else if (!list.members.has(id)) {
            list.members.set(id, new Date(now()).toISOString());
            added.push(id);
          }
        }
        for (const id of request.toRemove) {
          if (!recordExists(id)) missing.push(id);
          else if (list.members.delete(id)) removed.push(id);
        }
        if (added.length + removed.length > 0) list.sorted = null;
        return {
          status: 200,
          body: { recordIdsMissing: missing, recordIdsRemoved: removed, recordsIdsAdded: added },
        };
      }
      case 'deleteAll':
        // "This endpoint only supports lists that have less than 100,000 memberships." (spec)
        if (list.members.size >= truncateMax) {
          return error(
            400,
            `List ${listId} has ${list.members.size} memberships: deleting all records only supports lists that have less than ${truncateMax.toLocaleString('en-US')} memberships.`,
            'VALIDATION_ERROR',
          );
        }
        list.members.clear();
        list.sorted = null;
        return { status: 204 };
      case 'read':
        return { status: 200, body: page(listId, list, request.after, request.limit) };
      case 'getList':
        return {
          status: 200,
          body: {
            list: {
              listId,
              listVersion: 1,
              name: list.name,
              objectTypeId: '0-1',
              processingStatus: 'COMPLETE',
              processingType: list.processingType,
              size: list.members.size,
              createdAt: list.createdAt,
            },
          },
        };
    }
  }

  function page(listId: string, list: ListState, after: string | null, limit: number) {
    list.sorted ??= [...list.members.keys()].sort(compareRecordIds);
    const ids = list.sorted;
    const from = after === null ? 0 : firstAfter(ids, after);
    const slice = ids.slice(from, from + limit);
    const results = slice.map((recordId) => ({ recordId, membershipTimestamp: list.members.get(recordId) }));
    const more = from + limit < ids.length;
    const next = more ? encodeAfter(slice[slice.length - 1]!) : undefined;
    return {
      results,
      ...(next
        ? {
            paging: {
              next: { after: next, link: `${server.url}/crm/v3/lists/${listId}/memberships?after=${next}` },
            },
          }
        : {}),
      total: ids.length,
    };
  }

  const server = await startJsonServer(options, {
    handle,
    ...(options.specCheck === false
      ? {}
      : {
          spec: {
            name: SPEC_NAME,
            check: hubspotSpec(),
            routes,
            refuse: (problems: string[]) =>
              error(400, `Invalid input: ${problems.join('; ')}`, 'VALIDATION_ERROR', problems),
          },
        }),
    stats,
    errorReply: (err) => error(500, String(err), 'INTERNAL_ERROR'),
    contentType: 'application/json;charset=utf-8',
    // HubSpot reports the budgets on every answer, refusals included.
    everyReply: rateLimitHeaders,
  });

  return {
    ...server,
    close: () => server.close(),
    createList: (listOptions = {}) => {
      const listId = String(nextListId++);
      lists.set(listId, {
        name: listOptions.name ?? `List ${listId}`,
        processingType: listOptions.processingType ?? 'MANUAL',
        members: new Map(),
        sorted: null,
        createdAt: new Date(now()).toISOString(),
      });
      return listId;
    },
    members: (listId) => [...(lists.get(listId)?.members.keys() ?? [])].sort(compareRecordIds),
    setMembers: (listId, recordIds) => {
      const list = lists.get(listId);
      if (!list) throw new Error(`no list ${listId}: create it with createList() first`);
      list.members.clear();
      list.sorted = null;
      const at = new Date(now()).toISOString();
      for (const id of recordIds) list.members.set(id, at);
    },
    records: {
      add: (...ids) => {
        for (const id of ids) {
          deletedRecords.delete(id);
          knownRecords?.add(id);
        }
      },
      delete: (...ids) => {
        for (const id of ids) {
          deletedRecords.add(id);
          for (const list of lists.values()) if (list.members.delete(id)) list.sorted = null;
        }
      },
      has: recordExists,
    },
    ...statsAndFaults(stats, faults),
  };
}

/**
 * HubSpot's error body, as the spec's Error schema lists it: message, correlationId, category and,
 * for a refused request, one ErrorDetail per problem.
 */
function error(status: number, message: string, category: string, details?: string[]): Reply {
  return {
    status,
    body: {
      message,
      correlationId: randomUUID(),
      category,
      ...(details ? { errors: details.map((detail) => ({ message: detail })) } : {}),
    },
  };
}

function emptyStats(): HubspotEmulatorStats {
  return {
    calls: zeroCounts(endpoints),
    recordsReceived: zeroCounts(endpoints),
    rateLimited: { TEN_SECONDLY_ROLLING: 0, DAILY: 0 },
    statuses: {},
  };
}

/** The calendar day of an instant in `timeZone`, as YYYY-MM-DD. */
function dayIn(timeZone: string): (ms: number) => string {
  const format = new Intl.DateTimeFormat('en-CA', {
    timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
  });
  return (ms) => format.format(ms);
}

/** Record ids are integers: order them numerically, as HubSpot pages memberships by record id. */
function compareRecordIds(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

/** The index of the first id after `after` in ascending record id order (binary search). */
function firstAfter(ids: string[], after: string): number {
  let low = 0;
  let high = ids.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (compareRecordIds(ids[middle]!, after) > 0) high = middle;
    else low = middle + 1;
  }
  return low;
}

/** Paging tokens are opaque to clients; inside, the last record id returned. */
function encodeAfter(recordId: string): string {
  return Buffer.from(recordId).toString('base64url');
}

function decodeAfter(token: string): string | null {
  const decoded = Buffer.from(token, 'base64url').toString('utf8');
  return /^[1-9]\d*$/.test(decoded) ? decoded : null;
}

// --- Routing and request validation -------------------------------------------------------------

interface Route {
  endpoint: HubspotEndpoint;
  listId: string;
  query: URLSearchParams;
}

const routes: RouteTable<HubspotEndpoint> = [
  ['PUT', /^\/crm\/v3\/lists\/([^/]+)\/memberships\/add$/, 'add'],
  ['PUT', /^\/crm\/v3\/lists\/([^/]+)\/memberships\/remove$/, 'remove'],
  ['PUT', /^\/crm\/v3\/lists\/([^/]+)\/memberships\/add-and-remove$/, 'addAndRemove'],
  ['DELETE', /^\/crm\/v3\/lists\/([^/]+)\/memberships$/, 'deleteAll'],
  ['GET', /^\/crm\/v3\/lists\/([^/]+)\/memberships$/, 'read'],
  ['GET', /^\/crm\/v3\/lists\/([^/]+)$/, 'getList'],
];

function routeOf(method: string, url: URL): Route | undefined {
  const match = matchRoute(routes, method, url.pathname);
  return match && { endpoint: match.endpoint, listId: match.params[0]!, query: url.searchParams };
}

type ParsedRequest = { records: number } & (
  | { kind: 'change'; toAdd: string[]; toRemove: string[] }
  | { kind: 'deleteAll' }
  | { kind: 'read'; after: string | null; limit: number }
  | { kind: 'getList' }
);

function parseRequest(route: Route, raw: string, maxRecords: number): ParsedRequest {
  switch (route.endpoint) {
    case 'add': {
      const toAdd = recordIds(parseJson(raw, notJson), 'request body', maxRecords);
      return { kind: 'change', toAdd, toRemove: [], records: toAdd.length };
    }
    case 'remove': {
      const toRemove = recordIds(parseJson(raw, notJson), 'request body', maxRecords);
      return { kind: 'change', toAdd: [], toRemove, records: toRemove.length };
    }
    case 'addAndRemove': {
      const body = parseJson(raw, notJson);
      if (!body || typeof body !== 'object' || Array.isArray(body)) {
        throw new BadRequest('Request body must be an object with recordIdsToAdd and recordIdsToRemove.');
      }
      const { recordIdsToAdd = [], recordIdsToRemove = [] } = body as Record<string, unknown>;
      const toAdd = recordIds(recordIdsToAdd, 'recordIdsToAdd', maxRecords);
      const toRemove = recordIds(recordIdsToRemove, 'recordIdsToRemove', maxRecords);
      if (toAdd.length + toRemove.length > maxRecords) {
        throw new BadRequest(`Too many record ids in one request: at most ${maxRecords}.`);
      }
      return { kind: 'change', toAdd, toRemove, records: toAdd.length + toRemove.length };
    }
    case 'deleteAll':
      return { kind: 'deleteAll', records: 0 };
    case 'read':
      return { kind: 'read', ...pageQuery(route.query), records: 0 };
    case 'getList':
      return { kind: 'getList', records: 0 };
  }
}

/** Record ids arrive as strings or numbers (HubSpot's clients send strings); both mean the same record. */
function recordIds(value: unknown, field: string, maxRecords: number): string[] {
  if (!Array.isArray(value)) throw new BadRequest(`${field} must be an array of record ids.`);
  if (value.length > maxRecords) {
    throw new BadRequest(`Too many record ids in one request: ${value.length} (at most ${maxRecords}).`);
  }
  return value.map((id, i) => {
    const text = typeof id === 'number' && Number.isSafeInteger(id) ? String(id) : id;
    if (typeof text !== 'string' || !/^[1-9]\d*$/.test(text)) {
      throw new BadRequest(`${field}[${i}] is not a record id: ${JSON.stringify(id)}.`);
    }
    return text;
  });
}

function pageQuery(query: URLSearchParams): { after: string | null; limit: number } {
  const limitText = query.get('limit') ?? String(MEMBERSHIPS_PAGE_DEFAULT);
  if (!/^\d+$/.test(limitText) || Number(limitText) < 1) {
    throw new BadRequest('limit must be a positive integer.');
  }
  const afterText = query.get('after');
  const after = afterText === null ? null : decodeAfter(afterText);
  if (afterText !== null && after === null) throw new BadRequest(`Invalid paging token: ${afterText}`);
  // "The maximum `limit` is 250." (spec)
  return { after, limit: Math.min(Number(limitText), MEMBERSHIPS_PAGE_MAX) };
}

/**
 * The shared destination contract suite's view of this emulator (test/connectors/contract.test.ts):
 * a fresh emulator and MANUAL list per start, record ids as keys (no attributes: membership calls
 * carry ids only), a deleted record HubSpot reports in recordIdsMissing, and the bare `{}` answer
 * that acknowledges no id (off-spec on purpose — the schema requires all three id lists — so the
 * answer is marked `offSpec` and not held to the spec).
 */
export const contractHarness: ContractHarness = {
  type: 'hubspot-list',
  async start() {
    const token = 'pat-na1-contract-5d2e';
    const refused = '999999999';
    const emu = await startHubspotListEmulator({ token });
    const listId = emu.createList({ name: 'Contract list' });
    emu.records.delete(refused);
    return {
      settings: { type: 'hubspot-list', baseUrl: emu.url, listId, tokenSecret: 'HUBSPOT_CONTRACT_TOKEN' },
      secrets: { HUBSPOT_CONTRACT_TOKEN: token },
      key: (i) => String(i + 1),
      members: async () => emu.members(listId),
      rateLimit: (calls) => emu.faults.set({ rateLimit: { calls } }),
      serverError: (calls) => emu.faults.set({ serverError: { calls } }),
      shortAcknowledgeNext: () => emu.faults.set({ bareAnswer: { calls: 1 } }),
      refusedKey: () => refused,
      received: () => Object.values(emu.stats().statuses).reduce((sum, n) => sum + n, 0),
      close: () => emu.close(),
    };
  },
};
