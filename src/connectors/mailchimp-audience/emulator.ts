import { createHash, randomUUID } from 'node:crypto';
import type { ContractHarness } from '../kit/contract';
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
import { openApiCheck, type SpecCheck } from '../kit/vendor-spec';
import {
  MAILCHIMP_SPEC_DOCUMENT,
  MAX_MEMBERS_PAGE,
  MAX_MEMBERS_PER_BATCH,
  MAX_SIMULTANEOUS_CONNECTIONS,
} from './vendor-limits';

/**
 * An in-memory Mailchimp Marketing API (audience members only), for tests, demos and users' own
 * tests. It follows Mailchimp's published contract:
 *
 *   POST   /3.0/lists/{list_id}                 batch subscribe/update: {"members":[…],"update_existing":true}
 *          → 200 {"new_members","updated_members","errors":[{email_address,error,error_code}],
 *                 "total_created","total_updated","error_count"}   (per-member errors inside a 200)
 *   DELETE /3.0/lists/{list_id}/members/{subscriber_hash}   archive a member → 204
 *   GET    /3.0/lists/{list_id}/members?count=&offset=&status=  → {"members","total_items"} (archived left out
 *                                                                    unless asked for with status=archived)
 *   GET    /3.0/lists/{list_id}                 the audience → {"id","name","stats":{"member_count"}}
 *
 * The subscriber hash is the MD5 of the lower-cased e-mail address. Authentication is HTTP Basic
 * with any user name and the API key as password (or an OAuth token as Bearer). At most 500
 * members per batch call. Mailchimp's only published rate limit is 10 simultaneous connections per
 * account: the 11th request in flight is answered 429 "TooManyRequests" (no Retry-After, no
 * rate-limit headers, as at Mailchimp). Errors are problem documents: {type,title,status,detail,instance}.
 *
 * Member statuses: a new member gets `status` (or `status_if_new`); an existing one keeps its status
 * unless `status` is given, so an unsubscribed contact stays unsubscribed. Archiving sets status
 * `archived`; re-adding an archived contact brings it back like a new one.
 *
 * Held to Mailchimp's published OpenAPI document (test/vendor-specs/mailchimp/, see SOURCE.md):
 * every request is checked against it before anything else, and one that carries a field the
 * document does not list, lacks a required one (a batch member needs `status` or `status_if_new`)
 * or sends an undeclared query parameter is refused 400 "Invalid Resource" and recorded as a spec
 * violation (kit/vendor-spec.ts); every answer is checked too. So this emulator acts only on
 * fields Mailchimp documents. The limits it enforces are in vendor-limits.ts; what it leaves out
 * is in NOT_EMULATED below.
 */

/**
 * What this emulator does not do that Mailchimp does (or may do): a connector passing here can
 * still meet these in production.
 */
export const NOT_EMULATED: readonly string[] = [
  '`fields` and `exclude_fields` are accepted but ignored: answers always carry the whole (emulated) object.',
  'Batch member fields other than email_address, status, status_if_new and merge_fields (email_type, interests, language, location, tags, vip, ip_*, timestamp_*) and the body field sync_tags pass the spec check but are neither stored nor acted on.',
  'Merge fields: only `required` is enforced (with skip_merge_validation); Mailchimp also validates each type (number, date, birthday, address, phone, zip, url, dropdown choices).',
  'E-mail validation is a shape check; Mailchimp also refuses fake, role-based and otherwise undeliverable addresses, and contacts it has cleaned.',
  'Compliance states: Mailchimp refuses to re-subscribe, through the API, a contact who unsubscribed or was permanently deleted ("Member In Compliance State", "Forgotten Email Not Subscribed"); here only the status rules of status/status_if_new apply.',
  'pending (double opt-in) sends no confirmation e-mail and never turns into subscribed; transactional and cleaned have no behaviour of their own.',
  'GET members filters other than count, offset and status (since_*/before_*, vip_only, interest_*, sort_*, unique_email_id, email_type) are accepted but ignored.',
  'Answered member objects carry id, email_address, status, merge_fields and list_id only (no stats, timestamps, unique_email_id, tags, location).',
  'Authorization: any Basic user name with the API key as password, or the key as a Bearer token; OAuth tokens, data-centre mismatches and the bare 403 Mailchimp can answer under heavy throttling are not emulated.',
  'POST /3.0/batches (asynchronous batch operations) and every other Marketing API endpoint: not emulated (the connector does not call them).',
  "Mailchimp's 120-second request timeout and its answer times.",
];

export type MailchimpEndpoint = 'batch' | 'archive' | 'members' | 'list';
export type MemberStatus =
  'subscribed' | 'unsubscribed' | 'cleaned' | 'pending' | 'transactional' | 'archived';
export type MergeValue = string | number;

export interface MailchimpContact {
  id: string;
  email_address: string;
  status: MemberStatus;
  merge_fields: Record<string, MergeValue>;
}

export interface MailchimpFaults {
  /** The next `calls` calls answer 429 TooManyRequests, as if the account had 10 calls in flight. */
  rateLimit?: { calls: number };
  /** The next `calls` calls answer 5xx without applying anything. */
  serverError?: { calls: number; status?: 500 | 502 | 503 };
  /** The next `calls` mutating calls apply their change, then answer 500. */
  applyThenFail?: { calls: number };
  /** A reason to refuse a member in a batch (per-member error, not applied), or null to accept. */
  reject?: (email: string) => string | null;
  /**
   * Members a batch answer leaves out of new_members, updated_members and errors alike (they are
   * applied all the same): an incomplete acknowledgement, for the destination to see.
   */
  unlisted?: (email: string) => boolean;
  /**
   * The next `calls` batch answers leave their last member out (applied all the same), like
   * `unlisted` but counted in calls.
   */
  shortAck?: { calls: number };
  /** Added before every answer: keeps requests in flight long enough to overlap. */
  latencyMs?: number;
}

export interface MailchimpEmulatorStats {
  calls: Record<MailchimpEndpoint, number>;
  /** Members in well-formed batch bodies (faulted calls included). */
  membersReceived: number;
  /** Most requests that were in flight at once, refused ones included. */
  peakInFlight: number;
  /** 429s because more than `maxConcurrent` requests were in flight (injected ones not counted). */
  tooManyConnections: number;
  statuses: Record<number, number>;
}

export interface MergeFieldDefinition {
  tag: string;
  /** New members must carry a value (unless skip_merge_validation=true). */
  required?: boolean;
}

export interface MailchimpEmulatorOptions {
  port?: number;
  host?: string;
  /** The account's API key (`<32 hex>-us6`). */
  apiKey: string;
  /** Simultaneous requests allowed per account; 10 at Mailchimp (vendor-limits.ts). */
  maxConcurrent?: number;
  /** Members per batch call; 500 at Mailchimp (vendor-limits.ts). */
  maxMembersPerCall?: number;
  /**
   * Check every request and answer against Mailchimp's published OpenAPI document (default true):
   * off only for tests that must send what Mailchimp would refuse before the emulator's own checks.
   */
  specCheck?: boolean;
}

export interface MailchimpEmulator {
  /** Root URL: use as the destination's `baseUrl` (paths start with /3.0). */
  url: string;
  port: number;
  close(): Promise<void>;
  /**
   * Creates an audience and returns its id. With `mergeFields`, only those tags are stored (others
   * are ignored) and required ones are enforced for new members; without, any tag is stored.
   */
  createList(options?: { name?: string; mergeFields?: MergeFieldDefinition[] }): string;
  /** Members that are not archived: e-mail → merge fields. */
  members(listId: string): Map<string, Record<string, MergeValue>>;
  /** One contact, archived ones included. */
  contact(listId: string, email: string): MailchimpContact | undefined;
  /** Replaces the audience with these subscribed members. */
  setMembers(listId: string, members: Map<string, Record<string, MergeValue>>): void;
  stats(): MailchimpEmulatorStats;
  resetStats(): void;
  faults: {
    set(faults: MailchimpFaults): void;
    clear(name?: keyof MailchimpFaults): void;
    get(): MailchimpFaults;
  };
}

interface Audience {
  name: string;
  mergeFields: MergeFieldDefinition[] | null;
  /** subscriber hash → contact, in insertion order (the order members are listed in). */
  contacts: Map<string, MailchimpContact>;
}

interface MemberError {
  email_address: string;
  error: string;
  error_code: 'ERROR_CONTACT_EXISTS' | 'ERROR_GENERIC';
  field?: string;
  field_message?: string;
}

class Problem extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    detail: string,
  ) {
    super(detail);
  }
}

const endpoints: MailchimpEndpoint[] = ['batch', 'archive', 'members', 'list'];
const SETTABLE_STATUSES = ['subscribed', 'unsubscribed', 'cleaned', 'pending', 'transactional'];

/**
 * The emulator's endpoints as operations of Mailchimp's OpenAPI document. Compiled once per
 * process: every emulator started shares it.
 */
let specCheck: SpecCheck | undefined;
function mailchimpSpecCheck(): SpecCheck {
  specCheck ??= openApiCheck({
    document: MAILCHIMP_SPEC_DOCUMENT,
    operations: {
      batch: 'POST /3.0/lists/{list_id}',
      archive: 'DELETE /3.0/lists/{list_id}/members/{subscriber_hash}',
      members: 'GET /3.0/lists/{list_id}/members',
      list: 'GET /3.0/lists/{list_id}',
    } satisfies Record<MailchimpEndpoint, string>,
  });
  return specCheck;
}

export function subscriberHash(email: string): string {
  return createHash('md5').update(email.toLowerCase()).digest('hex');
}

export async function startMailchimpEmulator(options: MailchimpEmulatorOptions): Promise<MailchimpEmulator> {
  const maxConcurrent = options.maxConcurrent ?? MAX_SIMULTANEOUS_CONNECTIONS;
  const maxMembers = options.maxMembersPerCall ?? MAX_MEMBERS_PER_BATCH;
  const audiences = new Map<string, Audience>();
  const faults = new FaultBoard<MailchimpFaults>();
  const stats = new Counters(emptyStats);

  function audience(listId: string): Audience {
    const found = audiences.get(listId);
    if (!found) throw new Problem(404, 'Resource Not Found', 'The requested resource could not be found.');
    return found;
  }

  /** Problems thrown from anywhere in here are answered as Mailchimp's problem documents. */
  async function handle(req: EmulatorRequest): Promise<Reply> {
    // Mailchimp's one published limit: at most `maxConcurrent` requests in flight per account,
    // counted from arrival to the end of the answer (what Mailchimp calls connections).
    stats.current.peakInFlight = Math.max(stats.current.peakInFlight, req.inFlight);
    await faults.latency();
    if (req.inFlight > maxConcurrent) {
      stats.current.tooManyConnections++;
      throw tooManyRequests();
    }
    const route = routeOf(req.method, req.url);
    if (!route) throw new Problem(404, 'Resource Not Found', 'The requested resource could not be found.');
    stats.current.calls[route.endpoint]++;
    if (!authorized(req.headers.authorization)) {
      throw new Problem(
        401,
        'API Key Invalid',
        "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
      );
    }
    if (faults.take('rateLimit')) throw tooManyRequests();
    const parsed = route.endpoint === 'batch' ? parseBatch(req.body, maxMembers) : undefined;
    if (parsed) stats.current.membersReceived += parsed.members.length;
    const serverError = faults.take('serverError');
    if (serverError) {
      throw new Problem(
        serverError.status ?? 500,
        'Internal Server Error',
        'An unexpected internal error has occurred.',
      );
    }
    const reply = apply(route, parsed);
    if (route.endpoint !== 'members' && route.endpoint !== 'list' && faults.take('applyThenFail')) {
      throw new Problem(500, 'Internal Server Error', 'An unexpected internal error has occurred.');
    }
    return reply;
  }

  function authorized(header: string | undefined): boolean {
    if (header === `Bearer ${options.apiKey}`) return true;
    const basic = /^Basic (.+)$/.exec(header ?? '');
    if (!basic) return false;
    const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
    return decoded.slice(decoded.indexOf(':') + 1) === options.apiKey;
  }

  function apply(route: Route, batch: BatchRequest | undefined): Reply {
    const list = audience(route.listId);
    switch (route.endpoint) {
      case 'batch':
        return { status: 200, body: batchUpdate(route.listId, list, batch!, route.query) };
      case 'archive': {
        const key = /^[0-9a-f]{32}$/.test(route.member!) ? route.member! : subscriberHash(route.member!);
        const contact = list.contacts.get(key);
        if (!contact || contact.status === 'archived') {
          throw new Problem(404, 'Resource Not Found', 'The requested resource could not be found.');
        }
        contact.status = 'archived';
        return { status: 204 };
      }
      case 'members':
        return { status: 200, body: membersPage(route.listId, list, route.query) };
      case 'list': {
        const count = [...list.contacts.values()].filter((c) => c.status === 'subscribed').length;
        return { status: 200, body: { id: route.listId, name: list.name, stats: { member_count: count } } };
      }
    }
  }

  function batchUpdate(listId: string, list: Audience, batch: BatchRequest, query: URLSearchParams) {
    const skipMergeValidation = query.get('skip_merge_validation') === 'true';
    const skipDuplicateCheck = query.get('skip_duplicate_check') === 'true';
    const created: MailchimpContact[] = [];
    const updated: MailchimpContact[] = [];
    const errors: MemberError[] = [];
    const seen = new Set<string>();
    for (const member of batch.members) {
      const hash = subscriberHash(member.email_address);
      const duplicate = seen.has(hash);
      seen.add(hash);
      if (duplicate && skipDuplicateCheck) continue; // the first appearance wins
      const problem = duplicate
        ? `${member.email_address} is a duplicate of another member in this request.`
        : memberProblem(list, member, hash, batch.update_existing, skipMergeValidation);
      if (problem) {
        errors.push(typeof problem === 'string' ? genericError(member.email_address, problem) : problem);
        continue;
      }
      const result = upsert(listId, list, member, hash);
      if (faults.current.unlisted?.(member.email_address)) continue;
      (result.created ? created : updated).push(structuredClone(result.contact));
    }
    if (created.length + updated.length > 0 && faults.take('shortAck')) {
      (created.length > 0 ? created : updated).pop();
    }
    return {
      new_members: created,
      updated_members: updated,
      errors,
      total_created: created.length,
      total_updated: updated.length,
      error_count: errors.length,
      _links: [],
    };
  }

  /** Why Mailchimp would refuse this member, or null. */
  function memberProblem(
    list: Audience,
    member: BatchMember,
    hash: string,
    updateExisting: boolean,
    skipMergeValidation: boolean,
  ): MemberError | string | null {
    if (!looksLikeEmail(member.email_address)) {
      return `${member.email_address} looks fake or invalid, please enter a real email address.`;
    }
    const injected = faults.current.reject?.(member.email_address);
    if (injected) return injected;
    const existing = list.contacts.get(hash);
    const isNew = !existing || existing.status === 'archived';
    if (!isNew && !updateExisting) {
      return {
        email_address: member.email_address,
        error: `${member.email_address} is already a list member. Use PUT to insert or update list members.`,
        error_code: 'ERROR_CONTACT_EXISTS',
      };
    }
    if (isNew && !member.status && !member.status_if_new) {
      return `${member.email_address}: status or status_if_new is required for a new member.`;
    }
    const missing = isNew && !skipMergeValidation ? missingRequiredField(list, member) : undefined;
    if (missing) {
      return {
        ...genericError(member.email_address, 'Your merge fields were invalid.'),
        field: missing,
        field_message: 'Please enter a value',
      };
    }
    return null;
  }

  function upsert(listId: string, list: Audience, member: BatchMember, hash: string) {
    const existing = list.contacts.get(hash);
    const isNew = !existing || existing.status === 'archived';
    const contact: MailchimpContact = existing ?? {
      id: hash,
      email_address: member.email_address,
      status: 'subscribed',
      merge_fields: {},
    };
    if (isNew) contact.status = (member.status ?? member.status_if_new)!;
    else if (member.status) contact.status = member.status;
    for (const [tag, value] of Object.entries(member.merge_fields)) {
      if (list.mergeFields && !list.mergeFields.some((f) => f.tag === tag)) continue; // unknown tags are ignored
      contact.merge_fields[tag] = value;
    }
    list.contacts.set(hash, contact);
    return { created: isNew, contact: { ...contact, list_id: listId } };
  }

  function membersPage(listId: string, list: Audience, query: URLSearchParams) {
    const count = Math.min(pageNumber(query, 'count', 10), MAX_MEMBERS_PAGE);
    const offset = pageNumber(query, 'offset', 0);
    // One status (the document's `status` parameter is a single enum value).
    const status = query.get('status');
    const matching = [...list.contacts.values()].filter((c) =>
      status !== null ? c.status === status : c.status !== 'archived',
    );
    return {
      members: matching.slice(offset, offset + count).map((c) => ({ ...c, list_id: listId })),
      list_id: listId,
      total_items: matching.length,
      _links: [],
    };
  }

  return {
    ...(await startJsonServer(options, {
      handle,
      stats,
      errorReply: (err) =>
        problemReply(err instanceof Problem ? err : new Problem(500, 'Internal Server Error', String(err))),
      contentType: 'application/json; charset=utf-8',
      spec:
        options.specCheck === false
          ? undefined
          : {
              name: 'mailchimp-audience',
              check: mailchimpSpecCheck(),
              routes,
              // Mailchimp's answer to a body its schema refuses: 400 "Invalid Resource".
              refuse: (problems) =>
                problemReply(
                  new Problem(
                    400,
                    'Invalid Resource',
                    `The resource submitted could not be validated: ${problems.join('; ')}`,
                  ),
                ),
            },
    })),
    createList: (listOptions = {}) => {
      const listId = randomUUID().replace(/-/g, '').slice(0, 10);
      audiences.set(listId, {
        name: listOptions.name ?? `Audience ${audiences.size + 1}`,
        mergeFields: listOptions.mergeFields ?? null,
        contacts: new Map(),
      });
      return listId;
    },
    members: (listId) => {
      const result = new Map<string, Record<string, MergeValue>>();
      for (const contact of audiences.get(listId)?.contacts.values() ?? []) {
        if (contact.status !== 'archived') result.set(contact.email_address, { ...contact.merge_fields });
      }
      return result;
    },
    contact: (listId, email) => {
      const found = audiences.get(listId)?.contacts.get(subscriberHash(email));
      return found ? structuredClone(found) : undefined;
    },
    setMembers: (listId, members) => {
      const list = audience(listId);
      list.contacts.clear();
      for (const [email, mergeFields] of members) {
        const id = subscriberHash(email);
        list.contacts.set(id, {
          id,
          email_address: email,
          status: 'subscribed',
          merge_fields: { ...mergeFields },
        });
      }
    },
    ...statsAndFaults(stats, faults),
  };
}

function tooManyRequests(): Problem {
  return new Problem(429, 'Too Many Requests', 'You have exceeded the limit of 10 simultaneous connections.');
}

function problemReply(problem: Problem): Reply {
  return {
    status: problem.status,
    headers: { 'content-type': 'application/problem+json; charset=utf-8' },
    body: {
      type: 'https://mailchimp.com/developer/marketing/docs/errors/',
      title: problem.title,
      status: problem.status,
      detail: problem.message,
      instance: randomUUID(),
    },
  };
}

function genericError(email: string, error: string): MemberError {
  return { email_address: email, error, error_code: 'ERROR_GENERIC' };
}

function missingRequiredField(list: Audience, member: BatchMember): string | undefined {
  return list.mergeFields?.find((f) => f.required && (member.merge_fields[f.tag] ?? '') === '')?.tag;
}

/** Mailchimp's own check is stricter; this catches what matters for tests (no @, no domain, spaces). */
function looksLikeEmail(email: string): boolean {
  return /^[^\s@]+@[^\s@]+\.[^\s@]{2,}$/.test(email);
}

function emptyStats(): MailchimpEmulatorStats {
  return {
    calls: zeroCounts(endpoints),
    membersReceived: 0,
    peakInFlight: 0,
    tooManyConnections: 0,
    statuses: {},
  };
}

function pageNumber(query: URLSearchParams, name: string, fallback: number): number {
  const text = query.get(name);
  if (text === null) return fallback;
  if (!/^\d+$/.test(text))
    throw new Problem(400, 'Invalid Resource', `${name} must be a non-negative integer.`);
  return Number(text);
}

// --- Routing and request validation -------------------------------------------------------------

interface Route {
  endpoint: MailchimpEndpoint;
  listId: string;
  member?: string;
  query: URLSearchParams;
}

const routes: RouteTable<MailchimpEndpoint> = [
  ['POST', /^\/3\.0\/lists\/([^/]+)$/, 'batch'],
  ['DELETE', /^\/3\.0\/lists\/([^/]+)\/members\/([^/]+)$/, 'archive'],
  ['GET', /^\/3\.0\/lists\/([^/]+)\/members$/, 'members'],
  ['GET', /^\/3\.0\/lists\/([^/]+)$/, 'list'],
];

function routeOf(method: string, url: URL): Route | undefined {
  const match = matchRoute(routes, method, url.pathname);
  if (!match) return undefined;
  const [listId, member] = match.params;
  return {
    endpoint: match.endpoint,
    listId: listId!,
    member: member === undefined ? undefined : decodeURIComponent(member),
    query: url.searchParams,
  };
}

interface BatchMember {
  email_address: string;
  status?: MemberStatus;
  status_if_new?: MemberStatus;
  merge_fields: Record<string, MergeValue>;
}

interface BatchRequest {
  members: BatchMember[];
  update_existing: boolean;
}

/** Malformed requests fail as a whole (400 Invalid Resource), as at Mailchimp. */
function parseBatch(raw: string, maxMembers: number): BatchRequest {
  const body = parseJson(
    raw,
    () => new Problem(400, 'JSON Parse Error', 'We encountered an unspecified JSON parsing error.'),
  );
  const { members, update_existing = false } = (body ?? {}) as Record<string, unknown>;
  if (!Array.isArray(members)) throw invalid('members must be an array of members.');
  if (members.length > maxMembers) {
    throw invalid(`A batch may add or update at most ${maxMembers} members; this one has ${members.length}.`);
  }
  return { members: members.map(parseMember), update_existing: update_existing === true };
}

function parseMember(value: unknown, i: number): BatchMember {
  const member = (value ?? {}) as Record<string, unknown>;
  const { email_address, status, status_if_new, merge_fields = {} } = member;
  if (typeof email_address !== 'string') throw invalid(`members[${i}].email_address is required.`);
  for (const [name, given] of [
    ['status', status],
    ['status_if_new', status_if_new],
  ] as const) {
    if (given !== undefined && !SETTABLE_STATUSES.includes(given as string)) {
      throw invalid(`members[${i}].${name} must be one of ${SETTABLE_STATUSES.join(', ')}.`);
    }
  }
  if (!merge_fields || typeof merge_fields !== 'object' || Array.isArray(merge_fields)) {
    throw invalid(`members[${i}].merge_fields must be an object.`);
  }
  for (const [tag, v] of Object.entries(merge_fields)) {
    if (typeof v !== 'string' && typeof v !== 'number') {
      throw invalid(`members[${i}].merge_fields.${tag} must be a string or a number.`);
    }
  }
  return {
    email_address,
    status: status as MemberStatus | undefined,
    status_if_new: status_if_new as MemberStatus | undefined,
    merge_fields: merge_fields as Record<string, MergeValue>,
  };
}

function invalid(detail: string): Problem {
  return new Problem(400, 'Invalid Resource', detail);
}

/**
 * The shared destination contract suite's view of this emulator (test/connectors/contract.test.ts):
 * a fresh emulator and audience per start, members keyed by e-mail with a merge field, an address
 * Mailchimp refuses as fake, and a batch answer that leaves a member out.
 */
export const contractHarness: ContractHarness = {
  type: 'mailchimp-audience',
  async start() {
    const apiKey = '5c0ffee5c0ffee5c0ffee5c0ffee5c0f-us6';
    const emu = await startMailchimpEmulator({ apiKey });
    const listId = emu.createList({ name: 'Contract audience' });
    return {
      settings: {
        type: 'mailchimp-audience',
        baseUrl: emu.url,
        listId,
        apiKeySecret: 'MAILCHIMP_CONTRACT_KEY',
      },
      secrets: { MAILCHIMP_CONTRACT_KEY: apiKey },
      key: (i) => `member${i}@example.com`,
      attributes: (i) => ({ fname: `M${i}` }),
      members: async () => [...emu.members(listId).keys()],
      rateLimit: (calls) => emu.faults.set({ rateLimit: { calls } }),
      serverError: (calls) => emu.faults.set({ serverError: { calls } }),
      shortAcknowledgeNext: () => emu.faults.set({ shortAck: { calls: 1 } }),
      refusedKey: () => 'not-an-address',
      // Every answer, the 429s for too many connections included.
      received: () => Object.values(emu.stats().statuses).reduce((sum, n) => sum + n, 0),
      close: () => emu.close(),
    };
  },
};
