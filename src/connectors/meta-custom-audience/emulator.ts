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

/**
 * An in-memory stand-in for the Meta Marketing API's Custom Audience user edges, for tests, the
 * demo and users' own tests. It follows the documented contract:
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
 * are refused with Meta's 200/1870047; a replace session's uploads stay invisible until its
 * last_batch_flag, then become the whole audience. Throttling answers like Meta's: a 400 (403 for
 * code 4) with code 17, 613, 80003 or 4 and an X-Business-Use-Case-Usage header.
 *
 * Not emulated: matching (every valid row counts as one person, identified by its first
 * non-empty column), processing delays, the lock on /users while a replace runs, session expiry.
 */

export type MetaEndpoint = 'audience:read' | 'users:add' | 'users:remove' | 'usersreplace';

export interface MetaEmulatorFaults {
  /** The next `calls` calls are throttled with Graph error `code` (default 17). */
  rateLimit?: { calls: number; code?: 4 | 17 | 613 | 80003; regainAccessMinutes?: number };
  /** The next `calls` calls answer 5xx (Graph code 2, is_transient) without applying anything. */
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
  /** How many invalid entries are named in invalid_entry_samples (Meta names a sample, not all). */
  invalidSampleLimit?: number;
}

/** A person as the emulator holds them: Meta key (EMAIL, PHONE, FN, …) → hash as sent. */
export type MetaRow = Record<string, string>;

export interface ReplaceSessionInfo {
  sessionId: string;
  batchSeqs: number[];
  rowsStaged: number;
  finished: boolean;
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
  finished: boolean;
}

interface Audience {
  members: Map<string, MetaRow>;
  sessions: Map<string, ReplaceSession>;
}

interface ParsedCall {
  endpoint: MetaEndpoint;
  audienceId: string;
  rows: MetaRow[];
  session?: { sessionId: string; batchSeq: number; last: boolean };
}

export async function startMetaCustomAudienceEmulator(
  options: MetaEmulatorOptions,
): Promise<MetaCustomAudienceEmulator> {
  const maxUsers = options.maxUsersPerCall ?? 10_000;
  const sampleLimit = options.invalidSampleLimit ?? 10;
  const adAccount = options.adAccountId ?? '1000000000';
  let minAudienceSize = options.minAudienceSize ?? 0;
  const audiences = new Map<string, Audience>();
  let nextAudienceId = 23_850_000_000_000_000n;
  const faults = new FaultBoard<MetaEmulatorFaults>();
  const stats = new Counters(emptyStats);

  function createAudience(id?: string): string {
    const audienceId = id ?? String(nextAudienceId++);
    if (!audiences.has(audienceId)) audiences.set(audienceId, { members: new Map(), sessions: new Map() });
    return audienceId;
  }
  for (const id of options.audiences ?? []) createAudience(id);

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

    const audience = audiences.get(call.audienceId);
    if (!audience) throw unknownObject(call.audienceId);
    const down = faults.down();
    if (down) throw new GraphError(down.status ?? 503, 2, 'Service temporarily unavailable');
    const rows = faults.take('shortAck') ? call.rows.slice(0, -1) : call.rows;
    const { valid, invalid } = validateRows(rows);
    apply(audience, call, valid);
    stats.current.recordsApplied[call.endpoint] += valid.length;
    if (faults.take('applyThenFail')) throw new GraphError(500, 1, 'An unknown error occurred');
    faults.succeeded();
    return {
      status: 200,
      body: {
        audience_id: call.audienceId,
        session_id: call.session?.sessionId ?? randomSessionId(),
        num_received: rows.length,
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
    const audience = audiences.get(audienceId);
    if (!audience) throw unknownObject(audienceId, 'get');
    const size = audience.members.size;
    const known: Record<string, unknown> = {
      id: audienceId,
      name: `Emulated audience ${audienceId}`,
      approximate_count_lower_bound: size,
      approximate_count_upper_bound: size,
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

  function apply(audience: Audience, call: ParsedCall, rows: MetaRow[]): void {
    switch (call.endpoint) {
      case 'users:add':
        for (const row of rows) audience.members.set(identity(row), withoutBlanks(row));
        return;
      case 'users:remove': {
        const present = new Set(rows.map(identity).filter((id) => audience.members.has(id)));
        if (present.size > 0 && audience.members.size - present.size < minAudienceSize)
          throw audienceTooSmall();
        for (const id of present) audience.members.delete(id);
        return;
      }
      case 'usersreplace':
        return applyReplace(audience, call.session!, rows);
    }
  }

  function applyReplace(audience: Audience, session: NonNullable<ParsedCall['session']>, rows: MetaRow[]) {
    let state = audience.sessions.get(session.sessionId);
    if (state?.finished) {
      // A repeated empty last batch (a retried swap) changes nothing; anything else is too late.
      if (session.last && rows.length === 0) return;
      throw new GraphError(400, 100, `(#100) Upload session ${session.sessionId} has already finished`);
    }
    if (!state) {
      state = { sessionId: session.sessionId, staged: new Map(), batchSeqs: [], finished: false };
      audience.sessions.set(session.sessionId, state);
    }
    state.batchSeqs.push(session.batchSeq);
    for (const row of rows) state.staged.set(identity(row), withoutBlanks(row));
    if (session.last) {
      audience.members = new Map(state.staged);
      state.finished = true;
    }
  }

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
    })),
    createAudience,
    members: (listId) => {
      const audience = audiences.get(listId.split(':')[0]!);
      return new Map([...(audience?.members ?? [])].map(([id, row]) => [id, { ...row }]));
    },
    setMembers: (audienceId, members) => {
      const audience = audiences.get(createAudience(audienceId))!;
      audience.members = new Map([...members].map(([id, row]) => [id, { ...row }]));
    },
    sessions: (audienceId) =>
      [...(audiences.get(audienceId)?.sessions.values() ?? [])].map((s) => ({
        sessionId: s.sessionId,
        batchSeqs: [...s.batchSeqs],
        rowsStaged: s.staged.size,
        finished: s.finished,
      })),
    setMinAudienceSize: (size) => {
      minAudienceSize = size;
    },
    ...statsAndFaults(stats, faults),
  };
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
  const rows = data.map((entry) => rowOf(columns, entry));
  const call: ParsedCall = { endpoint: route.endpoint, audienceId: route.audienceId, rows };
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
        is_transient: error.status >= 500,
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
