import { randomBytes } from 'node:crypto';
import type { ContractHarness } from '../kit/contract';
import {
  Counters,
  FaultBoard,
  hashedEmailKeys,
  sha256Hex,
  totalCalls,
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
  FIRST_BATCH_SEQ,
  MAX_INVALID_ENTRY_SAMPLES,
  MAX_USERS_PER_CALL,
  META_SPEC_DOCUMENT,
  OPERATION_STATUS,
  OPERATION_STATUS_TEXT,
  REPLACE_ERROR_CODE,
  REPLACE_ERROR_SUBCODES,
  REPLACE_ERROR_TITLES,
  REPLACE_MAX_AUDIENCE_SIZE,
  REPLACE_SESSION_MS,
  USERS_LOCKED,
} from './vendor-limits';

/**
 * An in-memory stand-in for the Meta Marketing API's Custom Audience user edges, for tests, the
 * demo and users' own tests. It follows Meta's reference pages and guide as written down in the
 * fixture table test/vendor-specs/meta/marketing-api-custom-audience.openapi.json, against which
 * every request and answer is checked (unless `specCheck: false`):
 *
 *   GET    /{version}/{audience_id}?fields=…                                      read the audience
 *   POST   /{version}/{audience_id}/users         {payload:{schema,data}}          add people
 *   DELETE /{version}/{audience_id}/users         {payload:{schema,data}}          remove people
 *   POST   /{version}/{audience_id}/usersreplace  {payload, session:{session_id,
 *                                                  batch_seq, last_batch_flag}}    replace everyone
 *
 * answering {audience_id, session_id, num_received, num_invalid_entries, invalid_entry_samples}
 * or a Graph error {error:{message, type, code, error_subcode, fbtrace_id}}. Bodies may be JSON,
 * form-encoded (payload=<json>) or query parameters; the token comes as a bearer header or as
 * access_token. At most 10,000 people per call; entries that are not SHA-256 hex count as invalid
 * entries (the call still succeeds); removals that would leave the audience below a minimum size
 * are refused with 200/1870047 (see vendor-limits.ts: observed, not documented). Throttling
 * answers like Meta's: a 400 (403 for code 4) with code 17, 613, 80003 or 4 and an
 * X-Business-Use-Case-Usage header.
 *
 * A replace (usersreplace) is a session, as the guide describes it: batch_seq 1 starts it (and
 * puts the audience's operation_status at 414 "Replace in progress"); later batches of it may
 * carry any other number; the batch with last_batch_flag ends it, and so do 90 minutes after its
 * first batch (later batches: 2650/1870158, and the audience gets what arrived in time). Then
 * Meta processes it asynchronously (`replaceProcessingMs`), after which the audience is exactly
 * what the session uploaded and operation_status is 200 again. Until then /users writes and
 * another replace are refused with 2650/1870145 "Audience Update In Progress"; batches for a
 * finished session with 2650/1870159; a non-first batch of a session that never started with
 * 2650/1870147. Time is `clock()`, so tests can run it virtually.
 */

/** What this emulator still does not do as Meta does (see NOT_EMULATED in docs/connectors.md). */
export const NOT_EMULATED: readonly string[] = [
  'matching: every valid row counts as one person, identified by its first non-empty column; Meta matches hashes to accounts, and the size it reports is a range, usually much smaller than what was sent',
  'processing delays of /users writes: Meta applies them "usually within 24 hours"; here they apply at once (only a replace is asynchronous)',
  'the answer Meta gives a /users write during a replace is not documented: here it is 2650/1870145 "Audience Update In Progress", the replace endpoint\'s documented refusal',
  'whether an empty batch (payload.data []) is accepted is not documented: here it is refused with code 100, so the connector cannot come to depend on it',
  'what a repeated batch_seq 1 does to an open session is only hinted at ("A new replace session starts when we receive a batch_seq of 1"): here it starts the session again, dropping what it staged',
  'operation_status codes other than 200, 414 and 415 (expiry 100, low match rate 411, invalid-entry rate 412, flagged 471 with its 100/1713230 refusals, …); a failed replace (415) only when the replaceFails fault asks for it',
  'the minimum audience size for removals ("Audience Size too Low"): Meta publishes neither the rule nor a threshold; here it is the minAudienceSize option (0: off)',
  'the 100-million-people ceiling of usersreplace is checked against the people held here (1870144), which nobody reaches in a test',
  'Business Use Case rate-limit accounting: throttling happens only when a fault asks for it; the usage header always reports 1%',
  'the /sessions edge, estimated_num_total (accepted, ignored), app_ids/page_ids/is_raw and schemas other than the hashed keys, data_processing_options (LDU), value-based audiences, the learning-phase effects of /users writes',
  'the schema-must-not-change-within-a-session rule answers code 100 (Meta documents that it is an error, not which)',
  'whether num_invalid_entries of a replace batch counts the batch or the whole session is unclear ("Total number of users with an invalid format"): here it counts the batch, while num_received counts the session, as documented',
];

export type MetaEndpoint = 'audience:read' | 'users:add' | 'users:remove' | 'usersreplace';

export interface MetaEmulatorFaults {
  /** The next `calls` calls are throttled with Graph error `code` (default 17). */
  rateLimit?: { calls: number; code?: 4 | 17 | 613 | 80003; regainAccessMinutes?: number };
  /** The next `calls` calls answer 5xx (Graph code 2) without applying anything. */
  serverError?: { calls: number; status?: 500 | 503 };
  /** The next `calls` calls apply their change, then answer 500: delivered but unacknowledged. */
  applyThenFail?: { calls: number };
  /** After `successfulCalls` more successful calls, every call fails until cleared. */
  failAfter?: { successfulCalls: number; status?: number };
  /** A reason to count a row (schema key → value as sent) as an invalid entry, or null. */
  invalidEntry?: (row: Record<string, string>) => string | null;
  /**
   * The next `calls` calls lose their last row on the way: it is neither applied nor counted in
   * num_received. A short acknowledgement, for the destination to see.
   */
  shortAck?: { calls: number };
  /** Added before every answer. */
  latencyMs?: number;
  /** The next `calls` replaces end as "Replace failed" (operation_status 415): the audience is left as it was. */
  replaceFails?: { calls: number };
}

export interface MetaEmulatorStats {
  /** Requests that reached each endpoint, whatever the answer. */
  calls: Record<MetaEndpoint, number>;
  /** Rows in well-formed, authenticated calls (faulted calls included). */
  recordsReceived: Record<MetaEndpoint, number>;
  /** Valid rows in calls that were applied. */
  recordsApplied: Record<MetaEndpoint, number>;
  /** Throttling answers given. */
  rateLimited: number;
  /** Answers by HTTP status. */
  statuses: Record<number, number>;
}

export interface MetaEmulatorOptions {
  port?: number;
  host?: string;
  /** The access token clients must present. */
  accessToken: string;
  /** Audiences that exist from the start (more via createAudience). */
  audiences?: string[];
  /** Ad account id (digits) named in the X-Business-Use-Case-Usage header. */
  adAccountId?: string;
  /** Most rows per call (Meta: 10,000). */
  maxUsersPerCall?: number;
  /**
   * Removals that would leave fewer people than this are refused (Meta: "Audience Size too
   * Low", a threshold it does not publish). 0 (default) disables the rule.
   */
  minAudienceSize?: number;
  /** How many invalid entries are named in invalid_entry_samples (Meta names a sample, at most 100). */
  invalidSampleLimit?: number;
  /** How long Meta takes to process a replace after its session ends (default 1 s). */
  replaceProcessingMs?: number;
  /** How long a replace session may take from its first batch (Meta: 90 minutes). */
  replaceSessionMs?: number;
  /** The emulator's time in ms (default Date.now): tests pass a virtual clock their sleeps advance. */
  clock?: () => number;
  /**
   * Check every request and answer against the fixture table (default true): a request that
   * breaks it is refused with Graph's 100 "Invalid parameter" and recorded as a violation.
   */
  specCheck?: boolean;
}

/** A person as the emulator holds them: Meta key (EMAIL, PHONE, FN, …) → hash as sent. */
export type MetaRow = Record<string, string>;

export interface ReplaceSessionInfo {
  sessionId: string;
  batchSeqs: number[];
  rowsStaged: number;
  /** open: taking batches; processing: ended, Meta still replacing; done; failed (415). */
  state: 'open' | 'processing' | 'done' | 'failed';
  /** How the session ended: its last_batch_flag, or the 90 minutes running out. */
  endedBy?: 'lastBatch' | 'timeout';
  /** Replaced the audience (done), as a shorthand. */
  finished: boolean;
}

/** A Custom Audience's operation_status (code and Meta's description). */
export interface OperationStatus {
  code: number;
  description: string;
}

export interface MetaCustomAudienceEmulator {
  /** The graphUrl for the destination. */
  url: string;
  port: number;
  close(): Promise<void>;
  /** Makes an (empty) audience and returns its id. */
  createAudience(id?: string): string;
  /** A copy of an audience's people, by identifying hash; accepts `audienceId:sessionId` list ids. */
  members(listId: string): Map<string, MetaRow>;
  setMembers(audienceId: string, members: Map<string, MetaRow>): void;
  /** The replace sessions an audience has seen. */
  sessions(audienceId: string): ReplaceSessionInfo[];
  /** The audience's operation_status now (414 while a replace runs). */
  operationStatus(audienceId: string): OperationStatus;
  setMinAudienceSize(size: number): void;
  stats(): MetaEmulatorStats;
  resetStats(): void;
  faults: {
    /** Merges into the active faults; counters start from the values given. */
    set(faults: MetaEmulatorFaults): void;
    /** Clears one fault, or all of them. */
    clear(name?: keyof MetaEmulatorFaults): void;
    get(): MetaEmulatorFaults;
  };
}

/** A Graph error answer, thrown from anywhere in the handler. */
class GraphError extends Error {
  constructor(
    readonly status: number,
    readonly code: number,
    message: string,
    readonly extra: { type?: string; subcode?: number; userTitle?: string; userMessage?: string } = {},
  ) {
    super(message);
  }
}

const endpoints: MetaEndpoint[] = ['audience:read', 'users:add', 'users:remove', 'usersreplace'];

const SINGLE_KEY_SCHEMAS: Record<string, string> = { EMAIL_SHA256: 'EMAIL', PHONE_SHA256: 'PHONE' };
const MULTI_KEYS = new Set(
  'EXTERN_ID EMAIL PHONE GEN DOBY DOBM DOBD LN FN FI CT ST ZIP MADID COUNTRY'.split(' '),
);
/** Keys Meta takes unhashed. */
const RAW_KEYS = new Set(['EXTERN_ID', 'MADID']);
const SHA256_HEX = /^[a-f0-9]{64}$/;

const rateLimitErrors: Record<number, { message: string; subcode?: number; status: number }> = {
  4: { message: '(#4) Application request limit reached', status: 403 },
  17: { message: '(#17) User request limit reached', subcode: 2446079, status: 400 },
  613: {
    message: '(#613) There have been too many calls from this ad-account. Please wait a bit and try again.',
    subcode: 1487742,
    status: 400,
  },
  80003: {
    message:
      '(#80003) There have been too many calls to this ad-account. Wait a bit and try again. For more info, please refer to https://developers.facebook.com/docs/graph-api/overview/rate-limiting#custom-audience.',
    status: 400,
  },
};

interface ReplaceSession {
  sessionId: string;
  staged: Map<string, MetaRow>;
  batchSeqs: number[];
  /** The schema of the first batch, which every batch of the session must keep. */
  schema: string;
  /** Rows received in the session so far (its answers' num_received). */
  received: number;
  startedAt: number;
  state: ReplaceSessionInfo['state'];
  endedAt?: number;
  endedBy?: ReplaceSessionInfo['endedBy'];
}

interface Audience {
  members: Map<string, MetaRow>;
  sessions: Map<string, ReplaceSession>;
  /** The replace holding the audience (open or processing): operation_status 414. */
  replacing?: ReplaceSession;
  /** operation_status when no replace holds it. */
  status: OperationStatus;
}

interface ParsedCall {
  endpoint: MetaEndpoint;
  audienceId: string;
  /** The schema as sent, for the session rule. */
  schema: string;
  rows: MetaRow[];
  session?: { sessionId: string; batchSeq: number; last: boolean };
}

export async function startMetaCustomAudienceEmulator(
  options: MetaEmulatorOptions,
): Promise<MetaCustomAudienceEmulator> {
  const maxUsers = options.maxUsersPerCall ?? MAX_USERS_PER_CALL;
  const sampleLimit = Math.min(options.invalidSampleLimit ?? 10, MAX_INVALID_ENTRY_SAMPLES);
  const processingMs = options.replaceProcessingMs ?? 1_000;
  const sessionMs = options.replaceSessionMs ?? REPLACE_SESSION_MS;
  const now = options.clock ?? Date.now;
  const adAccount = options.adAccountId ?? '1000000000';
  let minAudienceSize = options.minAudienceSize ?? 0;
  const audiences = new Map<string, Audience>();
  let nextAudienceId = 23_850_000_000_000_000n;
  const faults = new FaultBoard<MetaEmulatorFaults>();
  const stats = new Counters(emptyStats);

  function createAudience(id?: string): string {
    const audienceId = id ?? String(nextAudienceId++);
    if (!audiences.has(audienceId)) {
      audiences.set(audienceId, {
        members: new Map(),
        sessions: new Map(),
        status: statusOf(OPERATION_STATUS.normal),
      });
    }
    return audienceId;
  }
  for (const id of options.audiences ?? []) createAudience(id);

  /**
   * Brings an audience's replace up to now: a session past its 90 minutes ends (timed out), and
   * a session whose processing time has passed replaces the audience (or fails, on request).
   */
  function settle(audience: Audience): void {
    const session = audience.replacing;
    if (!session) return;
    const at = now();
    if (session.state === 'open' && at >= session.startedAt + sessionMs) {
      session.state = 'processing';
      session.endedAt = session.startedAt + sessionMs;
      session.endedBy = 'timeout';
    }
    if (session.state === 'processing' && at >= session.endedAt! + processingMs) {
      audience.replacing = undefined;
      if (faults.take('replaceFails')) {
        session.state = 'failed';
        audience.status = statusOf(OPERATION_STATUS.replaceFailed);
      } else {
        session.state = 'done';
        audience.members = new Map(session.staged);
        audience.status = statusOf(OPERATION_STATUS.normal);
      }
    }
  }

  function audienceOf(id: string): Audience | undefined {
    const audience = audiences.get(id);
    if (audience) settle(audience);
    return audience;
  }

  function operationStatus(audience: Audience): OperationStatus {
    return audience.replacing ? statusOf(OPERATION_STATUS.replaceInProgress) : { ...audience.status };
  }

  /** GraphErrors thrown from anywhere in here are answered as Graph error documents. */
  async function handle(req: EmulatorRequest): Promise<Reply> {
    await faults.latency();
    const route = routeOf(req.method, req.url.pathname);
    if (!route) throw new GraphError(400, 100, `(#100) Unknown path components: ${req.url.pathname}`);
    stats.current.calls[route.endpoint]++;

    const params = readParams(req);
    authenticate(req, params);
    if (route.endpoint === 'audience:read') return readAudience(route.audienceId, params);
    // Parsed before the injected faults only to count what crossed the wire; Meta throttles
    // before looking at the body, so a throttle or a 5xx still wins over a bad payload.
    let call: ParsedCall | GraphError;
    try {
      call = parseCall(route, params, maxUsers);
      stats.current.recordsReceived[route.endpoint] += call.rows.length;
    } catch (err) {
      if (!(err instanceof GraphError)) throw err;
      call = err;
    }
    const injected = takeRateLimitOrServerError();
    if (injected) return injected;
    if (call instanceof GraphError) throw call;

    const audience = audienceOf(call.audienceId);
    if (!audience) throw unknownObject(call.audienceId);
    const down = faults.down();
    if (down) throw new GraphError(down.status ?? 503, 2, 'Service temporarily unavailable');
    if (call.endpoint !== 'usersreplace' && audience.replacing) throw updateInProgress('users');
    const rows = faults.take('shortAck') ? call.rows.slice(0, -1) : call.rows;
    const { valid, invalid } = validateRows(rows);
    // A session's answers count what it received so far ("Total number of users received in
    // this session so far", guide); a call without one counts itself.
    const received = apply(audience, call, valid, rows.length);
    stats.current.recordsApplied[call.endpoint] += valid.length;
    if (faults.take('applyThenFail')) throw new GraphError(500, 1, 'An unknown error occurred');
    faults.succeeded();
    return {
      status: 200,
      body: {
        audience_id: call.audienceId,
        session_id: call.session?.sessionId ?? randomSessionId(),
        num_received: received,
        num_invalid_entries: invalid.length,
        invalid_entry_samples: Object.fromEntries(invalid.slice(0, sampleLimit)),
      },
    };
  }

  /**
   * The audience's fields Graph was asked for (`fields`, comma-separated; `id` always). Meta
   * reports the size as a range around the true count; here both bounds are the count.
   */
  function readAudience(audienceId: string, params: Record<string, unknown>): Reply {
    const injected = takeRateLimitOrServerError();
    if (injected) return injected;
    const audience = audienceOf(audienceId);
    if (!audience) throw unknownObject(audienceId, 'get');
    const size = audience.members.size;
    const known: Record<string, unknown> = {
      id: audienceId,
      name: `Emulated audience ${audienceId}`,
      approximate_count_lower_bound: size,
      approximate_count_upper_bound: size,
      operation_status: operationStatus(audience),
      subtype: 'CUSTOM',
    };
    const asked = String(params.fields ?? '')
      .split(',')
      .map((field) => field.trim())
      .filter((field) => field !== '');
    const body: Record<string, unknown> = { id: audienceId };
    for (const field of asked) {
      if (!(field in known))
        throw new GraphError(400, 100, `(#100) Tried accessing nonexisting field (${field})`);
      body[field] = known[field];
    }
    return { status: 200, body };
  }

  function authenticate(req: EmulatorRequest, params: Record<string, unknown>): void {
    const header = /^(?:Bearer|OAuth)\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const presented = header ?? (typeof params.access_token === 'string' ? params.access_token : undefined);
    if (presented === undefined) {
      throw new GraphError(400, 104, 'An access token is required to request this resource.', {
        type: 'OAuthException',
      });
    }
    if (presented !== options.accessToken) {
      throw new GraphError(400, 190, 'Invalid OAuth access token - Cannot parse access token', {
        type: 'OAuthException',
      });
    }
  }

  function takeRateLimitOrServerError(): Reply | undefined {
    const rateLimit = faults.take('rateLimit');
    if (rateLimit) {
      stats.current.rateLimited++;
      const code = rateLimit.code ?? 17;
      const spec = rateLimitErrors[code]!;
      const usage = { [adAccount]: [bucUsage(100, rateLimit.regainAccessMinutes ?? 0)] };
      return graphErrorReply(new GraphError(spec.status, code, spec.message, { subcode: spec.subcode }), {
        'x-business-use-case-usage': JSON.stringify(usage),
      });
    }
    const serverError = faults.take('serverError');
    if (serverError) {
      return graphErrorReply(new GraphError(serverError.status ?? 500, 2, 'Service temporarily unavailable'));
    }
    return undefined;
  }

  /** Splits rows into those Meta would take and [sample key, reason] for the invalid ones. */
  function validateRows(rows: MetaRow[]): { valid: MetaRow[]; invalid: [string, string][] } {
    const valid: MetaRow[] = [];
    const invalid: [string, string][] = [];
    for (const row of rows) {
      const filled = Object.entries(row).filter(([, value]) => value !== '');
      const badCell = filled.find(([key, value]) => !RAW_KEYS.has(key) && !SHA256_HEX.test(value));
      const reason =
        filled.length === 0
          ? 'no identifier in this row'
          : badCell
            ? `${badCell[0]} is not a SHA-256 hash in lower-case hex`
            : (faults.current.invalidEntry?.(row) ?? null);
      if (reason === null) valid.push(row);
      else invalid.push([badCell?.[1] ?? filled[0]?.[1] ?? '', reason]);
    }
    return { valid, invalid };
  }

  /** Applies the valid rows; for a replace batch, returns the session's rows received so far. */
  function apply(audience: Audience, call: ParsedCall, rows: MetaRow[], received: number): number {
    switch (call.endpoint) {
      case 'users:add':
        for (const row of rows) audience.members.set(identity(row), withoutBlanks(row));
        return received;
      case 'users:remove': {
        const present = new Set(rows.map(identity).filter((id) => audience.members.has(id)));
        if (present.size > 0 && audience.members.size - present.size < minAudienceSize)
          throw audienceTooSmall();
        for (const id of present) audience.members.delete(id);
        return received;
      }
      case 'usersreplace':
        return applyReplace(audience, call, rows, received);
      default:
        return received;
    }
  }

  /** One batch of a replace session, by the guide's session rules (see the top of the file). */
  function applyReplace(audience: Audience, call: ParsedCall, rows: MetaRow[], received: number): number {
    const session = call.session!;
    const existing = audience.sessions.get(session.sessionId);
    if (existing && existing.state !== 'open') {
      throw replaceError(
        existing.endedBy === 'timeout'
          ? REPLACE_ERROR_SUBCODES.sessionTimedOut
          : REPLACE_ERROR_SUBCODES.sessionFinished,
      );
    }
    let state: ReplaceSession;
    if (session.batchSeq === FIRST_BATCH_SEQ) {
      if (audience.replacing && audience.replacing !== existing) throw updateInProgress('replace');
      if (audience.members.size >= REPLACE_MAX_AUDIENCE_SIZE)
        throw replaceError(REPLACE_ERROR_SUBCODES.sizeNotSupported);
      // "A new replace session starts when we receive a batch_seq of 1": again, for an open one.
      state = {
        sessionId: session.sessionId,
        staged: new Map(),
        batchSeqs: [],
        schema: call.schema,
        received: 0,
        startedAt: now(),
        state: 'open',
      };
      audience.sessions.set(session.sessionId, state);
      audience.replacing = state;
    } else {
      if (!existing) throw replaceError(REPLACE_ERROR_SUBCODES.firstBatchMissing);
      state = existing;
      if (state.schema !== call.schema) {
        throw new GraphError(
          400,
          100,
          `(#100) Invalid parameter: the schema of a replace session cannot change (first batch: ${state.schema}, this one: ${call.schema})`,
        );
      }
    }
    state.batchSeqs.push(session.batchSeq);
    state.received += received;
    for (const row of rows) state.staged.set(identity(row), withoutBlanks(row));
    if (session.last) {
      state.state = 'processing';
      state.endedAt = now();
      state.endedBy = 'lastBatch';
    }
    return state.received;
  }

  const check = options.specCheck === false ? undefined : metaSpecCheck();
  return {
    ...(await startJsonServer(options, {
      handle,
      stats,
      errorReply: (err) =>
        graphErrorReply(
          err instanceof GraphError
            ? err
            : new GraphError(500, 1, `An unknown error occurred: ${String(err)}`),
        ),
      // Meta reports the ad account's usage on every answer; a throttled one overrides it.
      everyReply: () => ({
        'x-business-use-case-usage': JSON.stringify({ [adAccount]: [bucUsage(1, 0)] }),
      }),
      ...(check
        ? {
            spec: {
              name: 'meta-custom-audience',
              check,
              routes,
              refuse: (problems: string[]) =>
                graphErrorReply(new GraphError(400, 100, `(#100) Invalid parameter: ${problems.join('; ')}`)),
            },
          }
        : {}),
    })),
    createAudience,
    members: (listId) => {
      const audience = audienceOf(listId.split(':')[0]!);
      return new Map([...(audience?.members ?? [])].map(([id, row]) => [id, { ...row }]));
    },
    setMembers: (audienceId, members) => {
      const audience = audiences.get(createAudience(audienceId))!;
      audience.members = new Map([...members].map(([id, row]) => [id, { ...row }]));
    },
    sessions: (audienceId) =>
      [...(audienceOf(audienceId)?.sessions.values() ?? [])].map((s) => ({
        sessionId: s.sessionId,
        batchSeqs: [...s.batchSeqs],
        rowsStaged: s.staged.size,
        state: s.state,
        ...(s.endedBy ? { endedBy: s.endedBy } : {}),
        finished: s.state === 'done',
      })),
    operationStatus: (audienceId) => {
      const audience = audienceOf(audienceId);
      if (!audience) throw new Error(`no audience ${audienceId}`);
      return operationStatus(audience);
    },
    setMinAudienceSize: (size) => {
      minAudienceSize = size;
    },
    ...statsAndFaults(stats, faults),
  };
}

/** The fixture table's check, compiled once per process (ajv compiles are not free). */
let metaSpec: SpecCheck | undefined;
export function metaSpecCheck(): SpecCheck {
  return (metaSpec ??= openApiCheck({
    document: META_SPEC_DOCUMENT,
    operations: {
      'audience:read': 'GET /{custom_audience_id}',
      'users:add': 'POST /{custom_audience_id}/users',
      'users:remove': 'DELETE /{custom_audience_id}/users',
      usersreplace: 'POST /{custom_audience_id}/usersreplace',
    },
  }));
}

function statusOf(code: number): OperationStatus {
  return { code, description: OPERATION_STATUS_TEXT[code] ?? '' };
}

/** One of the usersreplace errors the guide lists: code 2650, its subcode and title. */
function replaceError(subcode: number): GraphError {
  const title = REPLACE_ERROR_TITLES[subcode]!;
  return new GraphError(400, REPLACE_ERROR_CODE, `(#2650) Failed to update the custom audience: ${title}`, {
    subcode,
    userTitle: title,
    userMessage: title,
  });
}

/**
 * The audience is held by a replace. For a second replace the guide documents this answer; for a
 * /users write it documents none (see vendor-limits.ts USERS_LOCKED): the same answer is given.
 */
function updateInProgress(what: 'users' | 'replace'): GraphError {
  const error = replaceError(USERS_LOCKED.subcode);
  const why =
    what === 'replace'
      ? "You can't replace a customer list custom audience that is in the process of being updated."
      : 'This audience is being replaced: users cannot be added or removed until the replace is finished.';
  return new GraphError(error.status, error.code, error.message, {
    ...error.extra,
    userMessage: `${why} Wait for the audience availability to become "Normal" and try again.`,
  });
}

// --- Requests -----------------------------------------------------------------------------------

/** The API version in the path is optional, as in Graph; a trailing slash is tolerated. */
const routes: RouteTable<MetaEndpoint> = [
  ['GET', /^\/(?:v\d+\.\d+\/)?(\d+)\/?$/, 'audience:read'],
  ['POST', /^\/(?:v\d+\.\d+\/)?(\d+)\/users\/?$/, 'users:add'],
  ['DELETE', /^\/(?:v\d+\.\d+\/)?(\d+)\/users\/?$/, 'users:remove'],
  ['POST', /^\/(?:v\d+\.\d+\/)?(\d+)\/usersreplace\/?$/, 'usersreplace'],
];

function routeOf(
  method: string,
  pathname: string,
): { endpoint: MetaEndpoint; audienceId: string } | undefined {
  const match = matchRoute(routes, method, pathname);
  return match && { endpoint: match.endpoint, audienceId: match.params[0]! };
}

/** Graph takes parameters as JSON, as a form, or in the query string; JSON-valued ones as strings. */
function readParams(req: EmulatorRequest): Record<string, unknown> {
  const params: Record<string, unknown> = {};
  for (const [name, value] of req.url.searchParams) params[name] = value;
  const type = req.headers['content-type'] ?? '';
  if (req.body.trim() !== '') {
    if (type.includes('application/x-www-form-urlencoded')) {
      for (const [name, value] of new URLSearchParams(req.body)) params[name] = value;
    } else {
      const body = parseJson(
        req.body,
        () => new GraphError(400, 100, '(#100) The request body is not valid JSON'),
      );
      if (body && typeof body === 'object') Object.assign(params, body);
    }
  }
  for (const name of ['payload', 'session']) {
    const value = params[name];
    if (typeof value === 'string') {
      params[name] = parseJson(
        value,
        () => new GraphError(400, 100, `(#100) param ${name} must be a JSON object`),
      );
    }
  }
  return params;
}

function parseCall(
  route: { endpoint: MetaEndpoint; audienceId: string },
  params: Record<string, unknown>,
  maxUsers: number,
): ParsedCall {
  const payload = params.payload;
  if (!payload || typeof payload !== 'object')
    throw new GraphError(400, 100, '(#100) The parameter payload is required');
  const { schema, data } = payload as { schema?: unknown; data?: unknown };
  const columns = schemaColumns(schema);
  if (!Array.isArray(data)) throw new GraphError(400, 100, '(#100) payload.data must be an array');
  if (data.length > maxUsers) {
    throw new GraphError(
      400,
      100,
      `(#100) Too many users in one request: ${data.length} (at most ${maxUsers})`,
    );
  }
  if (data.length === 0) {
    // Meta does not document whether it takes a batch without people: refused here, so that no
    // client comes to depend on it (see NOT_EMULATED).
    throw new GraphError(400, 100, '(#100) Invalid parameter: payload.data holds no users');
  }
  const rows = data.map((entry) => rowOf(columns, entry));
  const call: ParsedCall = {
    endpoint: route.endpoint,
    audienceId: route.audienceId,
    schema: JSON.stringify(schema),
    rows,
  };
  if (route.endpoint === 'usersreplace') call.session = parseSession(params.session);
  return call;
}

function schemaColumns(schema: unknown): string[] {
  if (typeof schema === 'string' && SINGLE_KEY_SCHEMAS[schema]) return [SINGLE_KEY_SCHEMAS[schema]];
  if (
    Array.isArray(schema) &&
    schema.length > 0 &&
    schema.every((key) => typeof key === 'string' && MULTI_KEYS.has(key)) &&
    new Set(schema).size === schema.length
  ) {
    return schema as string[];
  }
  throw new GraphError(400, 100, `(#100) Invalid schema: ${JSON.stringify(schema)}`);
}

function rowOf(columns: string[], entry: unknown): MetaRow {
  const cells = columns.length === 1 && typeof entry === 'string' ? [entry] : entry;
  if (
    !Array.isArray(cells) ||
    cells.length !== columns.length ||
    !cells.every((c) => typeof c === 'string')
  ) {
    throw new GraphError(400, 100, '(#100) Data is missing or does not match schema');
  }
  return Object.fromEntries(columns.map((key, i) => [key, cells[i] as string]));
}

function parseSession(value: unknown): NonNullable<ParsedCall['session']> {
  const session = (value ?? {}) as { session_id?: unknown; batch_seq?: unknown; last_batch_flag?: unknown };
  const sessionId = String(session.session_id ?? '');
  if (!/^\d+$/.test(sessionId) || !Number.isInteger(session.batch_seq) || (session.batch_seq as number) < 1) {
    throw new GraphError(400, 100, '(#100) The parameter session requires session_id and batch_seq (from 1)');
  }
  return { sessionId, batchSeq: session.batch_seq as number, last: session.last_batch_flag === true };
}

// --- Answers ------------------------------------------------------------------------------------

function graphErrorReply(error: GraphError, headers: Record<string, string> = {}): Reply {
  const { type = 'OAuthException', subcode, userTitle, userMessage } = error.extra;
  return {
    status: error.status,
    headers,
    body: {
      error: {
        message: error.message,
        type,
        code: error.code,
        ...(subcode === undefined ? {} : { error_subcode: subcode }),
        ...(userTitle ? { error_user_title: userTitle, error_user_msg: userMessage } : {}),
        fbtrace_id: randomBytes(8).toString('base64url'),
      },
    },
  };
}

function unknownObject(id: string, method: 'get' | 'post' = 'post'): GraphError {
  return new GraphError(
    400,
    100,
    `Unsupported ${method} request. Object with ID '${id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation.`,
    { type: 'GraphMethodException', subcode: 33 },
  );
}

/** Meta's answer, as recorded from the real API, when a removal would shrink an audience too far. */
function audienceTooSmall(): GraphError {
  return new GraphError(400, 200, 'Permissions error', {
    subcode: 1870047,
    userTitle: 'Audience Size too Low',
    userMessage: 'You cannot remove users from this audience because it will result in a low audience size.',
  });
}

function bucUsage(callCount: number, regainMinutes: number) {
  return {
    type: 'custom_audience',
    call_count: callCount,
    total_cputime: 1,
    total_time: 1,
    estimated_time_to_regain_access: regainMinutes,
  };
}

/** One person per row, identified by its first non-empty column. */
function identity(row: MetaRow): string {
  return Object.values(row).find((value) => value !== '') ?? '';
}

function withoutBlanks(row: MetaRow): MetaRow {
  return Object.fromEntries(Object.entries(row).filter(([, value]) => value !== ''));
}

function randomSessionId(): string {
  return String(BigInt(`0x${randomBytes(7).toString('hex')}`));
}

function emptyStats(): MetaEmulatorStats {
  return {
    calls: zeroCounts(endpoints),
    recordsReceived: zeroCounts(endpoints),
    recordsApplied: zeroCounts(endpoints),
    rateLimited: 0,
    statuses: {},
  };
}

/**
 * The shared destination contract suite's view of this emulator (test/connectors/contract.test.ts):
 * a fresh emulator with one audience per start, people keyed by e-mail address (the emulator
 * holds their hashes), one address Meta counts as an invalid entry, and Meta's short
 * acknowledgement (`num_received` below the people sent).
 */
export const contractHarness: ContractHarness = {
  type: 'meta-custom-audience',
  async start() {
    const accessToken = 'EAAB-contract-token-9f3a';
    const audienceId = '23850000000000777';
    const refused = 'refused@example.com';
    const { key, unhash } = hashedEmailKeys();
    const emu = await startMetaCustomAudienceEmulator({ accessToken, audiences: [audienceId] });
    emu.faults.set({ invalidEntry: (row) => (row.EMAIL === sha256Hex(refused) ? 'Invalid email' : null) });
    return {
      settings: {
        type: 'meta-custom-audience',
        graphUrl: emu.url,
        adAccountId: 'act_4242',
        audienceId,
        accessTokenSecret: 'META_CONTRACT_TOKEN',
      },
      secrets: { META_CONTRACT_TOKEN: accessToken },
      key,
      members: async () => unhash(emu.members(audienceId).keys()),
      rateLimit: (calls) => emu.faults.set({ rateLimit: { calls } }),
      serverError: (calls) => emu.faults.set({ serverError: { calls } }),
      shortAcknowledgeNext: () => emu.faults.set({ shortAck: { calls: 1 } }),
      refusedKey: () => refused,
      received: () => totalCalls(emu.stats().calls),
      close: () => emu.close(),
    };
  },
};
