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
import { protoCheck, type SpecCheck } from '../kit/vendor-spec';
import {
  GOOGLE_ADS_API_VERSION,
  MAX_IDENTIFIERS_PER_OPERATION,
  MAX_IDENTIFIERS_PER_REQUEST,
} from './vendor-limits';

/**
 * An in-memory Google Ads API (REST) for Customer Match uploads, for tests, the demo and users'
 * own tests. It keeps the contract of OfflineUserDataJobService and the job rules the real API
 * enforces, and can misbehave the ways the real one does, deterministically and counted.
 *
 *   POST /{v}/customers/{c}/offlineUserDataJobs:create           {job}            → {resourceName}
 *   POST /{v}/customers/{c}/offlineUserDataJobs/{j}:addOperations {operations, enablePartialFailure}
 *                                                                 → {partialFailureError?}
 *   POST /{v}/customers/{c}/offlineUserDataJobs/{j}:run                            → long-running Operation
 *   POST /{v}/customers/{c}/googleAds:search  {query: "… FROM offline_user_data_job WHERE …"}
 *                                                                 → {results: [{offlineUserDataJob}]}
 *                                             {query: "… FROM user_list WHERE …"} → {results: [{userList}]}
 *
 * Rules: at most 100,000 identifiers per addOperations request and 20 per operation
 * (./vendor-limits.ts); remove_all only as the first operation of a job; creates and removes never
 * in one job; no operations after a job started; hashed identifiers must be SHA-256 hex; a job
 * goes PENDING → RUNNING (run) → SUCCESS or FAILED, and applies its operations at once, in order,
 * when it completes (after `runningPolls` searches have seen it RUNNING); a FAILED job may have
 * applied some of them, as Google says it may. Errors use Google's format: the JSON error of
 * Google's REST APIs with GoogleAdsFailure details (google.rpc.BadRequest for a body that is not
 * the request message).
 *
 * Every request and answer is checked against Google's protos (test/vendor-specs/google-ads/, the
 * v25 of google-ads-node@25.1.0): a field the protos do not have, a REQUIRED field missing, an
 * enum value Google does not define fail the test run (kit/vendor-spec.ts). Only the API version of
 * those protos is served; other versions answer 404 as a sunset version does.
 */

/** What this emulator still does not do that the real API does (docs/connectors.md lists it too). */
export const NOT_EMULATED: readonly string[] = [
  'Match rates and real matching: a job applies identifiers as keys; nothing is matched to Google accounts, size_for_search is the exact member count (Google’s is an approximate, rounded count of matched users), and the match_rate_range of a job created with enable_match_rate_range_preview is the configured `matchRate` share, from RUNNING on, not a measurement.',
  'Processing time: a job completes after `runningPolls` searches, not after the minutes to hours (Google: "6 hours or more") a real job may take.',
  'Which operations a FAILED job applied: it applies the first `applyFirst` (default half) of its operations; the real split is unknown and reported nowhere.',
  'The long-running operation of RunOfflineUserDataJob cannot be polled (no OperationService GetOperation); job status is read through googleAds:search only, as the connector does.',
  'GoogleAdsService.search knows only the two query shapes the connector sends (offline_user_data_job by resource_name or external_id, user_list by resource_name or id): no other GAQL, no paging, no page tokens.',
  'validate_only, enable_warnings, operation-level consent and user attributes are accepted as fields but have no effect.',
  'Developer token access levels and their quotas (e.g. 15,000 operations a day with Basic access), and daily quota exhaustion: only the injected rateLimit fault answers RESOURCE_EXHAUSTED.',
  'Customer Match policy checks: customer data terms not accepted, list types other than CRM_BASED contact info, consent requirements for EEA users.',
  'mobile_id and third_party_user_id uploads (the lists here are CONTACT_INFO lists and refuse them as INCOMPATIBLE_UPLOAD_KEY_TYPE).',
];

export type CustomerMatchEndpoint =
  | 'offlineUserDataJobs:create'
  | 'offlineUserDataJobs:addOperations'
  | 'offlineUserDataJobs:run'
  | 'googleAds:search';

const ENDPOINTS: CustomerMatchEndpoint[] = [
  'offlineUserDataJobs:create',
  'offlineUserDataJobs:addOperations',
  'offlineUserDataJobs:run',
  'googleAds:search',
];

export interface UserIdentifier {
  hashedEmail?: string;
  hashedPhoneNumber?: string;
  addressInfo?: {
    hashedFirstName?: string;
    hashedLastName?: string;
    countryCode?: string;
    postalCode?: string;
  };
  mobileId?: string;
  thirdPartyUserId?: string;
}

export interface CustomerMatchEmulatorFaults {
  /** The next `calls` calls (of `endpoint`, or any) answer 429 RESOURCE_EXHAUSTED with retryDelay. */
  rateLimit?: {
    calls: number;
    retryDelaySeconds: number;
    /** Also send a Retry-After header (default false: Google puts the delay in the body). */
    retryAfterHeader?: boolean;
    endpoint?: CustomerMatchEndpoint;
  };
  /** The next `calls` calls answer 500 INTERNAL or 503 UNAVAILABLE without doing anything. */
  serverError?: { calls: number; status?: 500 | 503; endpoint?: CustomerMatchEndpoint };
  /** The next `calls` calls answer 409 ABORTED, databaseError CONCURRENT_MODIFICATION. */
  concurrentModification?: { calls: number; endpoint?: CustomerMatchEndpoint };
  /**
   * The next `jobs` jobs to complete end FAILED. Google: "Some operations may have been
   * successfully processed": each applies its first `applyFirst` operations (default: half of
   * them, rounded down) before failing. `reason` is an OfflineUserDataJobFailureReason.
   */
  failJobs?: { jobs: number; reason?: string; applyFirst?: number };
  /** An OfflineUserDataJobError code to refuse one identifier with (partial failure), or null. */
  reject?: (identifier: UserIdentifier) => string | null;
  /**
   * The next `calls` addOperations requests with partial failures answer a partialFailureError
   * without its GoogleAdsFailure details: the failed operations are left out as usual, but the
   * answer does not say which.
   */
  unnamedPartialFailures?: { calls: number };
  /**
   * The next `calls` addOperations requests (with partial failure enabled) lose their last
   * operation: it is not added to the job, and the answer is a partialFailureError that does not
   * say which operation failed. A short acknowledgement, for the destination to see.
   */
  shortAck?: { calls: number };
  /** Added before every answer. */
  latencyMs?: number;
}

export interface JobSummary {
  resourceName: string;
  userList: string;
  externalId?: string;
  status: 'PENDING' | 'RUNNING' | 'SUCCESS' | 'FAILED';
  failureReason?: string;
  consent?: unknown;
  operations: { create: number; remove: number; removeAll: number };
}

export interface CustomerMatchEmulatorStats {
  /** Requests that reached each endpoint, whatever the answer. */
  calls: Record<CustomerMatchEndpoint, number>;
  /** Answers by HTTP status. */
  statuses: Record<number, number>;
  /** Identifiers in operations accepted into a job. */
  identifiersAccepted: number;
  jobs: { created: number; run: number; succeeded: number; failed: number };
}

export interface CustomerMatchEmulatorOptions {
  port?: number;
  host?: string;
  developerToken: string;
  accessToken: string;
  /** Customer id → ids of its Customer Match user lists. Unknown customers get 403. */
  userLists?: Record<string, string[]>;
  /** Google: 100,000 identifiers per addOperations request (MAX_IDENTIFIERS_PER_REQUEST). */
  maxIdentifiersPerRequest?: number;
  /** Google: 20 identifiers per operation (one person) (MAX_IDENTIFIERS_PER_OPERATION). */
  maxIdentifiersPerOperation?: number;
  /** Searches that see a run job RUNNING before it completes; 0 completes it on run. Default 1. */
  runningPolls?: number;
  /**
   * The share of a job's uploaded people Google "matches" (0–1, default 0.55), or the share for
   * each job: reported, for jobs created with enable_match_rate_range_preview that upload members,
   * as the job's operation_metadata.match_rate_range.
   */
  matchRate?: number | ((job: JobSummary) => number);
  /**
   * Check every request and answer against Google's protos (default true): an off-spec request
   * is refused with Google's 400 and recorded as a violation that fails the test run.
   */
  specCheck?: boolean;
}

export interface CustomerMatchEmulator {
  /** Base URL for the destination's `baseUrl`. */
  url: string;
  port: number;
  close(): Promise<void>;
  /** Makes (or empties nothing of) a Customer Match user list of a customer. */
  addUserList(customerId: string, userListId: string): void;
  /** A copy of a list's members, keyed by their first identifier (hashed e-mail or phone). */
  members(userListId: string): Map<string, UserIdentifier[]>;
  setMembers(userListId: string, members: UserIdentifier[][]): void;
  jobs(): JobSummary[];
  /** Completes every RUNNING job now (as if Google had processed them). */
  completeJobs(): void;
  /** The last 1,000 request bodies, for checks such as "no raw e-mail address ever left". */
  requests(): { endpoint: CustomerMatchEndpoint; body: string }[];
  stats(): CustomerMatchEmulatorStats;
  resetStats(): void;
  faults: {
    /** Merges into the active faults; counters start from the values given. */
    set(faults: CustomerMatchEmulatorFaults): void;
    clear(name?: keyof CustomerMatchEmulatorFaults): void;
    get(): CustomerMatchEmulatorFaults;
  };
}

type Operation = { kind: 'create' | 'remove'; identifiers: UserIdentifier[] } | { kind: 'removeAll' };

interface Job {
  resourceName: string;
  id: string;
  customerId: string;
  userList: string;
  externalId?: string;
  consent?: unknown;
  status: JobSummary['status'];
  failureReason?: string;
  operations: Operation[];
  pollsLeft: number;
  /** Created with enable_match_rate_range_preview: its match rate range is reported. */
  matchRatePreview: boolean;
}

/** One error of a GoogleAdsFailure: `family` is the ErrorCode oneof field, e.g. offlineUserDataJobError. */
interface AdsError {
  family: string;
  code: string;
  message: string;
  index?: number;
  retryDelaySeconds?: number;
}

class Refusal extends Error {
  constructor(
    readonly status: number,
    readonly errors: AdsError[],
  ) {
    super(errors[0]?.message ?? 'refused');
  }
}

const RPC_STATUS: Record<number, [string, string]> = {
  400: ['INVALID_ARGUMENT', 'Request contains an invalid argument.'],
  401: ['UNAUTHENTICATED', 'Request is missing required authentication credential.'],
  403: ['PERMISSION_DENIED', 'The caller does not have permission'],
  404: ['NOT_FOUND', 'Requested entity was not found.'],
  409: [
    'ABORTED',
    'Multiple requests were attempting to modify the same resource at once. Retry the request.',
  ],
  429: ['RESOURCE_EXHAUSTED', 'Resource has been exhausted (e.g. check quota).'],
  500: ['INTERNAL', 'Internal error encountered.'],
  503: ['UNAVAILABLE', 'The service is currently unavailable.'],
};

const SHA256_HEX = /^[0-9a-fA-F]{64}$/;

export async function startGoogleCustomerMatchEmulator(
  options: CustomerMatchEmulatorOptions,
): Promise<CustomerMatchEmulator> {
  const maxPerRequest = options.maxIdentifiersPerRequest ?? MAX_IDENTIFIERS_PER_REQUEST;
  const maxPerOperation = options.maxIdentifiersPerOperation ?? MAX_IDENTIFIERS_PER_OPERATION;
  const runningPolls = options.runningPolls ?? 1;
  const matchRate = options.matchRate ?? 0.55;
  /** customer id → user list id → members */
  const customers = new Map<string, Map<string, UserListStore>>();
  const jobs = new Map<string, Job>();
  let nextJobId = 9_000_001;
  const faults = new FaultBoard<CustomerMatchEmulatorFaults>();
  const stats = new Counters(emptyStats);
  let log: { endpoint: CustomerMatchEndpoint; body: string }[] = [];

  for (const [customerId, lists] of Object.entries(options.userLists ?? {})) {
    for (const list of lists) addUserList(customerId, list);
  }

  function addUserList(customerId: string, userListId: string) {
    let lists = customers.get(customerId);
    if (!lists) customers.set(customerId, (lists = new Map()));
    if (!lists.has(userListId)) lists.set(userListId, new UserListStore());
  }

  function findList(userListId: string): UserListStore | undefined {
    for (const lists of customers.values()) {
      const found = lists.get(userListId);
      if (found) return found;
    }
    return undefined;
  }

  function listOf(resourceName: string): UserListStore | undefined {
    const match = /^customers\/(\d+)\/userLists\/(\d+)$/.exec(resourceName);
    return match ? customers.get(match[1]!)?.get(match[2]!) : undefined;
  }

  async function handle(req: EmulatorRequest): Promise<Reply> {
    await faults.latency();
    const route = routeOf(req.method, req.url);
    // A version Google does not serve (sunset, or not this emulator's) is not found at all.
    if (!route || route.version !== GOOGLE_ADS_API_VERSION) {
      return { status: 404, body: rpcError(404, GOOGLE_ADS_API_VERSION, []) };
    }
    stats.current.calls[route.endpoint]++;
    log.push({ endpoint: route.endpoint, body: req.body });
    if (log.length > 1000) log = log.slice(-1000);
    try {
      authenticate(req, route);
      const injected = takeInjectedFault(route);
      if (injected) return injected;
      const body = parseBody(req.body);
      return { status: 200, body: dispatch(route, body), headers: { 'request-id': requestId() } };
    } catch (err) {
      if (err instanceof BadRequest) return badRequest([err.message]);
      if (err instanceof Refusal)
        return { status: err.status, body: rpcError(err.status, route.version, err.errors) };
      throw err;
    }
  }

  function authenticate(req: EmulatorRequest, route: Route) {
    if (req.headers.authorization !== `Bearer ${options.accessToken}`) {
      throw refusal(
        401,
        'authenticationError',
        'OAUTH_TOKEN_INVALID',
        'The OAuth token in the header is not valid.',
      );
    }
    if (req.headers['developer-token'] !== options.developerToken) {
      throw refusal(
        401,
        'authenticationError',
        'DEVELOPER_TOKEN_INVALID',
        'The developer token is not valid.',
      );
    }
    if (!customers.has(route.customerId)) {
      throw refusal(
        403,
        'authorizationError',
        'USER_PERMISSION_DENIED',
        `User doesn't have permission to access customer ${route.customerId}.`,
      );
    }
  }

  function takeInjectedFault({ endpoint, version }: Route): Reply | undefined {
    // A fault aimed at one endpoint is not used up by calls to the others.
    const aimedHere = (fault: { endpoint?: CustomerMatchEndpoint }) =>
      fault.endpoint === undefined || fault.endpoint === endpoint;
    const rateLimit = faults.take('rateLimit', aimedHere);
    if (rateLimit) {
      const error: AdsError = {
        family: 'quotaError',
        code: 'RESOURCE_TEMPORARILY_EXHAUSTED',
        message: 'Too many requests in a short amount of time.',
        retryDelaySeconds: rateLimit.retryDelaySeconds,
      };
      return {
        status: 429,
        body: rpcError(429, version, [error]),
        headers: rateLimit.retryAfterHeader
          ? { 'retry-after': String(rateLimit.retryDelaySeconds) }
          : undefined,
      };
    }
    const serverError = faults.take('serverError', aimedHere);
    if (serverError) {
      const status = serverError.status ?? 500;
      const error = {
        family: 'internalError',
        code: 'INTERNAL_ERROR',
        message: 'An internal error has occurred.',
      };
      return { status, body: rpcError(status, version, status === 500 ? [error] : []) };
    }
    if (faults.take('concurrentModification', aimedHere)) {
      const error = {
        family: 'databaseError',
        code: 'CONCURRENT_MODIFICATION',
        message: 'Multiple requests were attempting to modify the same resource at once.',
      };
      return { status: 409, body: rpcError(409, version, [error]) };
    }
    return undefined;
  }

  function dispatch(route: Route, body: Record<string, unknown>): unknown {
    switch (route.endpoint) {
      case 'offlineUserDataJobs:create':
        return createJob(route, body);
      case 'offlineUserDataJobs:addOperations':
        return addOperations(jobFor(route), body, route.version);
      case 'offlineUserDataJobs:run':
        return runJob(jobFor(route), route.version);
      case 'googleAds:search':
        return search(route, body);
    }
  }

  function createJob(route: Route, body: Record<string, unknown>) {
    const job = objectField(body, 'job');
    if (job.type !== 'CUSTOMER_MATCH_USER_LIST') {
      throw refusal(400, 'fieldError', 'REQUIRED', 'job.type must be CUSTOMER_MATCH_USER_LIST.');
    }
    const metadata = objectField(job, 'customerMatchUserListMetadata');
    const userList = String(metadata.userList ?? '');
    if (!userList.startsWith(`customers/${route.customerId}/userLists/`) || !listOf(userList)) {
      throw refusal(
        400,
        'offlineUserDataJobError',
        'INVALID_USER_LIST_ID',
        'The user list ID provided for the job is invalid.',
      );
    }
    const externalId = job.externalId === undefined ? undefined : String(job.externalId);
    if (
      externalId !== undefined &&
      [...jobs.values()].some((j) => j.customerId === route.customerId && j.externalId === externalId)
    ) {
      throw refusal(
        400,
        'offlineUserDataJobError',
        'EXTERNAL_UPDATE_ID_ALREADY_EXISTS',
        'The external update ID already exists.',
      );
    }
    const id = String(nextJobId++);
    const resourceName = `customers/${route.customerId}/offlineUserDataJobs/${id}`;
    jobs.set(resourceName, {
      resourceName,
      id,
      customerId: route.customerId,
      userList,
      externalId,
      consent: metadata.consent,
      status: 'PENDING',
      operations: [],
      pollsLeft: runningPolls,
      matchRatePreview: body.enableMatchRateRangePreview === true,
    });
    stats.current.jobs.created++;
    return { resourceName };
  }

  function jobFor(route: Route): Job {
    const job = jobs.get(`customers/${route.customerId}/offlineUserDataJobs/${route.jobId}`);
    if (!job) throw new Refusal(404, []);
    return job;
  }

  function addOperations(job: Job, body: Record<string, unknown>, version: string) {
    if (job.status !== 'PENDING') {
      throw refusal(
        400,
        'offlineUserDataJobError',
        'JOB_ALREADY_STARTED',
        'Once the upload job is started, new operations cannot be added.',
      );
    }
    const operations = body.operations;
    if (!Array.isArray(operations) || operations.length === 0) {
      throw refusal(400, 'fieldError', 'REQUIRED', 'operations must be a non-empty list.');
    }
    const parsed = operations.map((op, i) => parseOperation(op, i));
    checkJobRules(job, parsed);
    const errors = parsed.flatMap((op, i) => operationErrors(op, i));
    if (errors.length > 0 && body.enablePartialFailure !== true) throw new Refusal(400, errors);
    const failed = new Set(errors.map((e) => e.index));
    const lost =
      body.enablePartialFailure === true &&
      parsed[parsed.length - 1]!.kind !== 'removeAll' &&
      faults.take('shortAck') !== undefined;
    if (lost) failed.add(parsed.length - 1);
    parsed.forEach((op, i) => {
      if (failed.has(i)) return;
      job.operations.push(op);
      if (op.kind !== 'removeAll') stats.current.identifiersAccepted += op.identifiers.length;
    });
    if (lost) return { partialFailureError: { ...rpcStatus(400, version, errors), details: [] } };
    if (errors.length === 0) return {};
    const partialFailureError = rpcStatus(400, version, errors);
    if (faults.take('unnamedPartialFailures'))
      return { partialFailureError: { ...partialFailureError, details: [] } };
    return { partialFailureError };
  }

  /** Request-wide rules: the whole request is refused, nothing is added. */
  function checkJobRules(job: Job, ops: Operation[]) {
    const identifiers = ops.reduce(
      (sum, op) => sum + (op.kind === 'removeAll' ? 0 : op.identifiers.length),
      0,
    );
    if (identifiers > maxPerRequest) {
      throw refusal(
        400,
        'offlineUserDataJobError',
        'TOO_MANY_USER_IDENTIFIERS',
        `Maximum number of user identifiers allowed per request is ${maxPerRequest.toLocaleString('en-US')} and per operation is ${maxPerOperation}.`,
      );
    }
    ops.forEach((op, i) => {
      if (op.kind === 'removeAll' && job.operations.length + i > 0) {
        throw refusal(
          400,
          'offlineUserDataJobError',
          'INVALID_OPERATION_ORDER',
          'When a remove-all operation is provided, it has to be the first operation of the operation list.',
          i,
        );
      }
    });
    const kinds = new Set([...job.operations, ...ops].map((op) => op.kind));
    if (kinds.has('create') && kinds.has('remove')) {
      throw refusal(
        400,
        'offlineUserDataJobError',
        'CONFLICTING_OPERATION',
        'Mixing creation and removal of offline data in the same job is not allowed.',
      );
    }
  }

  /** Per-operation problems: partial failures when enablePartialFailure is set. */
  function operationErrors(op: Operation, index: number): AdsError[] {
    if (op.kind === 'removeAll') return [];
    const fail = (code: string, message: string): AdsError[] => [
      { family: 'offlineUserDataJobError', code, message, index },
    ];
    if (op.identifiers.length === 0)
      return fail('MISSING_USER_IDENTIFIER', 'The user identifier is missing valid data.');
    if (op.identifiers.length > maxPerOperation) {
      return fail('TOO_MANY_USER_IDENTIFIERS', `At most ${maxPerOperation} user identifiers per operation.`);
    }
    for (const identifier of op.identifiers) {
      const problem = identifierProblem(identifier) ?? faults.current.reject?.(identifier) ?? null;
      if (problem) return fail(problem, describeCode(problem));
    }
    return [];
  }

  function runJob(job: Job, version: string) {
    if (job.status !== 'PENDING') {
      throw refusal(400, 'offlineUserDataJobError', 'JOB_ALREADY_STARTED', 'The job has already been run.');
    }
    job.status = 'RUNNING';
    stats.current.jobs.run++;
    if (job.pollsLeft <= 0) complete(job);
    return {
      name: `customers/${job.customerId}/operations/${job.id}`,
      metadata: {
        '@type': `type.googleapis.com/google.ads.googleads.${version}.resources.OfflineUserDataJobMetadata`,
      },
    };
  }

  /**
   * Google estimates the match rate while the job runs and gives the final one when it ends, for
   * uploads whose job asked for the preview; otherwise the field is unset (UNSPECIFIED, which
   * proto3 JSON leaves out).
   */
  function matchRateRangeOf(job: Job): string | undefined {
    const uploads = job.operations.some((op) => op.kind === 'create');
    if (!job.matchRatePreview || !uploads || job.status === 'PENDING') return undefined;
    return matchRateRangeFor(typeof matchRate === 'number' ? matchRate : matchRate(summarize(job)));
  }

  /** A job applies all its operations at once, in order: remove_all first, as Google requires. */
  function complete(job: Job) {
    // Counted in jobs, not calls, so not one for faults.take.
    const failJobs = faults.current.failJobs;
    const fails = failJobs !== undefined && failJobs.jobs > 0;
    const applied = fails
      ? job.operations.slice(0, failJobs.applyFirst ?? Math.floor(job.operations.length / 2))
      : job.operations;
    const list = listOf(job.userList);
    for (const op of applied) {
      if (op.kind === 'removeAll') list?.clear();
      else if (op.kind === 'create') list?.upsert(op.identifiers);
      else list?.remove(op.identifiers);
    }
    if (fails) {
      failJobs.jobs--;
      if (failJobs.jobs === 0) faults.clear('failJobs');
      job.status = 'FAILED';
      job.failureReason = failJobs.reason ?? 'UNKNOWN';
      stats.current.jobs.failed++;
      return;
    }
    job.status = 'SUCCESS';
    stats.current.jobs.succeeded++;
  }

  function search(route: Route, body: Record<string, unknown>) {
    const query = String(body.query ?? '');
    if (/\bFROM\s+user_list\b/i.test(query)) return searchUserLists(route, query);
    const where = parseJobQuery(query);
    const found = [...jobs.values()].filter(
      (job) =>
        job.customerId === route.customerId &&
        (where.field === 'resource_name' ? job.resourceName === where.value : job.externalId === where.value),
    );
    // GAQL answers with the fields selected (and, in this emulator, a few more).
    const selectsMatchRate = /\boffline_user_data_job\.operation_metadata\.match_rate_range\b/i.test(query);
    // Each search sees a run job RUNNING until it has done so `runningPolls` times.
    for (const job of found) {
      if (job.status !== 'RUNNING') continue;
      if (job.pollsLeft > 0) job.pollsLeft--;
      else complete(job);
    }
    return {
      results: found.slice(0, 1).map((job) => ({
        offlineUserDataJob: {
          resourceName: job.resourceName,
          id: job.id,
          ...(job.externalId ? { externalId: job.externalId } : {}),
          type: 'CUSTOMER_MATCH_USER_LIST',
          status: job.status,
          ...(job.failureReason ? { failureReason: job.failureReason } : {}),
          customerMatchUserListMetadata: { userList: job.userList },
          ...(selectsMatchRate && matchRateRangeOf(job)
            ? { operationMetadata: { matchRateRange: matchRateRangeOf(job) } }
            : {}),
        },
      })),
      fieldMask:
        'offlineUserDataJob.resourceName,offlineUserDataJob.status,offlineUserDataJob.failureReason' +
        (selectsMatchRate ? ',offlineUserDataJob.operationMetadata.matchRateRange' : ''),
    };
  }

  /**
   * A user list of the customer, by resource name or id: the fields a Customer Match upload
   * checks (Google rounds size_for_search; here it is the exact count, an int64 string).
   */
  function searchUserLists(route: Route, query: string) {
    const byName = /WHERE\s+user_list\.resource_name\s*=\s*'customers\/(\d+)\/userLists\/(\d+)'/i.exec(query);
    const byId = /WHERE\s+user_list\.id\s*=\s*(\d+)/i.exec(query);
    if (!byName && !byId) {
      throw refusal(
        400,
        'queryError',
        'UNEXPECTED_END_OF_QUERY',
        'Filter by user_list.resource_name or user_list.id.',
      );
    }
    const id = byName ? byName[2]! : byId![1]!;
    const sameCustomer = !byName || byName[1] === route.customerId;
    const list = sameCustomer ? customers.get(route.customerId)?.get(id) : undefined;
    return {
      results: list
        ? [
            {
              userList: {
                resourceName: `customers/${route.customerId}/userLists/${id}`,
                id,
                name: `Customer Match list ${id}`,
                type: 'CRM_BASED',
                sizeForSearch: String(list.size),
              },
            },
          ]
        : [],
      fieldMask: 'userList.resourceName,userList.name,userList.type,userList.sizeForSearch',
    };
  }

  return {
    ...(await startJsonServer(options, {
      handle,
      stats,
      errorReply: (err) => ({
        status: 500,
        body: { error: { code: 500, message: String(err), status: 'INTERNAL' } },
      }),
      contentType: 'application/json; charset=UTF-8',
      ...(options.specCheck === false
        ? {}
        : { spec: { name: 'google-customer-match', check: googleAdsSpec(), routes, refuse: badRequest } }),
    })),
    addUserList,
    members: (userListId) => findList(userListId)?.copy() ?? new Map(),
    setMembers: (userListId, members) => {
      const list = findList(userListId);
      if (!list) throw new Error(`no user list ${userListId}: addUserList first`);
      list.clear();
      for (const identifiers of members) list.upsert(identifiers.map(copyIdentifier));
    },
    jobs: () => [...jobs.values()].map(summarize),
    completeJobs: () => {
      for (const job of jobs.values()) if (job.status === 'RUNNING') complete(job);
    },
    requests: () => [...log],
    ...statsAndFaults(stats, faults),
    resetStats: () => {
      stats.reset();
      log = [];
    },
  };
}

// --- Members ---------------------------------------------------------------------------------------

/** Key of one identifier: people are matched on any of theirs. */
function identifierKey(identifier: UserIdentifier): string {
  if (identifier.hashedEmail) return identifier.hashedEmail.toLowerCase();
  if (identifier.hashedPhoneNumber) return identifier.hashedPhoneNumber.toLowerCase();
  const a = identifier.addressInfo ?? {};
  return `address:${a.hashedFirstName}:${a.hashedLastName}:${a.countryCode}:${a.postalCode}`;
}

function copyIdentifier(identifier: UserIdentifier): UserIdentifier {
  return identifier.addressInfo
    ? { ...identifier, addressInfo: { ...identifier.addressInfo } }
    : { ...identifier };
}

/** A user list: people (identifier sets), found by any of their identifiers. */
class UserListStore {
  private readonly people = new Map<string, UserIdentifier[]>();
  private readonly index = new Map<string, string>();

  upsert(identifiers: UserIdentifier[]) {
    const keys = identifiers.map(identifierKey);
    const existing = keys.map((k) => this.index.get(k)).find((k) => k !== undefined);
    if (existing) this.drop(existing);
    const person = existing ?? keys[0]!;
    // Parsed from a request and never mutated: stored as they are, copied on the way out.
    this.people.set(person, identifiers);
    for (const key of keys) this.index.set(key, person);
  }

  remove(identifiers: UserIdentifier[]) {
    for (const key of identifiers.map(identifierKey)) {
      const person = this.index.get(key);
      if (person) this.drop(person);
    }
  }

  clear() {
    this.people.clear();
    this.index.clear();
  }

  get size(): number {
    return this.people.size;
  }

  copy(): Map<string, UserIdentifier[]> {
    return new Map([...this.people].map(([key, ids]) => [key, ids.map(copyIdentifier)]));
  }

  private drop(person: string) {
    for (const identifier of this.people.get(person) ?? []) this.index.delete(identifierKey(identifier));
    this.people.delete(person);
  }
}

// --- Parsing and validation -----------------------------------------------------------------------

interface Route {
  endpoint: CustomerMatchEndpoint;
  version: string;
  customerId: string;
  jobId?: string;
}

const routes: RouteTable<CustomerMatchEndpoint> = [
  ['POST', /^\/(v\d+)\/customers\/(\d+)\/offlineUserDataJobs:create$/, 'offlineUserDataJobs:create'],
  [
    'POST',
    /^\/(v\d+)\/customers\/(\d+)\/offlineUserDataJobs\/(\d+):addOperations$/,
    'offlineUserDataJobs:addOperations',
  ],
  ['POST', /^\/(v\d+)\/customers\/(\d+)\/offlineUserDataJobs\/(\d+):run$/, 'offlineUserDataJobs:run'],
  ['POST', /^\/(v\d+)\/customers\/(\d+)\/googleAds:search$/, 'googleAds:search'],
];

function routeOf(method: string, url: URL): Route | undefined {
  const match = matchRoute(routes, method, url.pathname);
  if (!match) return undefined;
  const [version, customerId, jobId] = match.params;
  return { endpoint: match.endpoint, version: version!, customerId: customerId!, jobId };
}

/** Google takes an empty body for an empty message; anything else must be a JSON object. */
function parseBody(raw: string): Record<string, unknown> {
  const invalid = () => new BadRequest('Invalid JSON payload received. Expected a JSON object.');
  const value = parseJson(raw === '' ? '{}' : raw, invalid);
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw invalid();
  return value as Record<string, unknown>;
}

/** A body that is not the request message: Google answers before any Google Ads check runs. */
class BadRequest extends Error {}

/**
 * Google's answer to a body that does not parse into the request message (unknown field, wrong
 * type): 400 INVALID_ARGUMENT with google.rpc.BadRequest field violations, no GoogleAdsFailure.
 */
function badRequest(problems: string[]): Reply {
  return {
    status: 400,
    body: {
      error: {
        code: 400,
        message: `Invalid JSON payload received. ${problems.join('; ')}`,
        status: 'INVALID_ARGUMENT',
        details: [
          {
            '@type': 'type.googleapis.com/google.rpc.BadRequest',
            fieldViolations: problems.map((description) => ({ description })),
          },
        ],
      },
    },
  };
}

const V = `google.ads.googleads.${GOOGLE_ADS_API_VERSION}`;
let spec: SpecCheck | undefined;

/**
 * Google's protos for the four calls (test/vendor-specs/google-ads/SOURCE.md), loaded once per
 * process. Path-bound request fields (customer_id, resource_name) travel in the URL.
 */
export function googleAdsSpec(): SpecCheck {
  return (spec ??= protoCheck({
    root: 'test/vendor-specs/google-ads',
    files: [
      `google/ads/googleads/${GOOGLE_ADS_API_VERSION}/services/offline_user_data_job_service.proto`,
      `google/ads/googleads/${GOOGLE_ADS_API_VERSION}/services/google_ads_service.proto`,
      `google/ads/googleads/${GOOGLE_ADS_API_VERSION}/errors/errors.proto`,
      'google/rpc/error_details.proto',
      'design-guide/errors.proto',
    ],
    operations: {
      'offlineUserDataJobs:create': {
        request: `${V}.services.CreateOfflineUserDataJobRequest`,
        response: `${V}.services.CreateOfflineUserDataJobResponse`,
        pathFields: ['customer_id'],
      },
      'offlineUserDataJobs:addOperations': {
        request: `${V}.services.AddOfflineUserDataJobOperationsRequest`,
        response: `${V}.services.AddOfflineUserDataJobOperationsResponse`,
        pathFields: ['resource_name'],
      },
      'offlineUserDataJobs:run': {
        request: `${V}.services.RunOfflineUserDataJobRequest`,
        response: 'google.longrunning.Operation',
        pathFields: ['resource_name'],
      },
      'googleAds:search': {
        request: `${V}.services.SearchGoogleAdsRequest`,
        response: `${V}.services.SearchGoogleAdsResponse`,
        pathFields: ['customer_id'],
      },
    },
    // Google's JSON REST error: {"error": {code, message, status, details}} (API design guide).
    errorResponse: 'apidesign.Error.Status',
  }));
}

function objectField(value: Record<string, unknown>, field: string): Record<string, unknown> {
  const found = value[field];
  if (!found || typeof found !== 'object' || Array.isArray(found)) {
    throw refusal(400, 'fieldError', 'REQUIRED', `${field} is required.`);
  }
  return found as Record<string, unknown>;
}

function parseOperation(value: unknown, index: number): Operation {
  const op = (value ?? {}) as Record<string, unknown>;
  const present = ['create', 'remove', 'removeAll'].filter((k) => op[k] !== undefined);
  if (present.length !== 1) {
    throw refusal(
      400,
      'fieldError',
      'REQUIRED',
      'Exactly one of create, remove, removeAll must be set.',
      index,
    );
  }
  if (op.removeAll !== undefined) {
    if (op.removeAll !== true) throw refusal(400, 'fieldError', 'REQUIRED', 'removeAll must be true.', index);
    return { kind: 'removeAll' };
  }
  const kind = op.create !== undefined ? 'create' : 'remove';
  const userData = (op[kind] ?? {}) as { userIdentifiers?: unknown };
  const identifiers = Array.isArray(userData.userIdentifiers)
    ? (userData.userIdentifiers as UserIdentifier[])
    : [];
  return { kind, identifiers };
}

/** The checks Google makes of one identifier, as an OfflineUserDataJobError code. */
function identifierProblem(identifier: UserIdentifier): string | null {
  const set = (
    ['hashedEmail', 'hashedPhoneNumber', 'addressInfo', 'mobileId', 'thirdPartyUserId'] as const
  ).filter((field) => identifier[field] !== undefined);
  if (set.length !== 1) return 'MISSING_USER_IDENTIFIER';
  if (identifier.mobileId !== undefined || identifier.thirdPartyUserId !== undefined) {
    return 'INCOMPATIBLE_UPLOAD_KEY_TYPE'; // the lists here are CONTACT_INFO lists
  }
  const hashed = identifier.hashedEmail ?? identifier.hashedPhoneNumber;
  if (hashed !== undefined) return SHA256_HEX.test(hashed) ? null : 'INVALID_SHA256_FORMAT';
  const address = identifier.addressInfo!;
  if (!SHA256_HEX.test(address.hashedFirstName ?? '') || !SHA256_HEX.test(address.hashedLastName ?? '')) {
    return 'INVALID_SHA256_FORMAT';
  }
  if (!/^[A-Z]{2}$/.test(address.countryCode ?? '')) return 'INVALID_COUNTRY_CODE';
  if (!address.postalCode) return 'MISSING_USER_IDENTIFIER';
  return null;
}

const CODE_MESSAGES: Record<string, string> = {
  MISSING_USER_IDENTIFIER: 'The user identifier is missing valid data.',
  INVALID_SHA256_FORMAT: 'The SHA256 encoded value is malformed.',
  INVALID_COUNTRY_CODE: 'The country code is invalid.',
  INCOMPATIBLE_UPLOAD_KEY_TYPE:
    'Upload data is not compatible with the upload key type of the associated user list.',
};

function describeCode(code: string): string {
  return CODE_MESSAGES[code] ?? `The user identifier was rejected (${code}).`;
}

/** The emulator understands the one query shape the API's job status lookups use. */
function parseJobQuery(query: string): { field: 'resource_name' | 'external_id'; value: string } {
  if (!/\bFROM\s+offline_user_data_job\b/i.test(query)) {
    throw refusal(
      400,
      'queryError',
      'PROHIBITED_RESOURCE_TYPE_IN_FROM_CLAUSE',
      'This emulator only queries offline_user_data_job.',
    );
  }
  const byName = /WHERE\s+offline_user_data_job\.resource_name\s*=\s*'([^']+)'/i.exec(query);
  if (byName) return { field: 'resource_name', value: byName[1]! };
  const byExternal = /WHERE\s+offline_user_data_job\.external_id\s*=\s*(\d+)/i.exec(query);
  if (byExternal) return { field: 'external_id', value: byExternal[1]! };
  throw refusal(
    400,
    'queryError',
    'UNEXPECTED_END_OF_QUERY',
    'Filter by offline_user_data_job.resource_name or external_id.',
  );
}

// --- Google's error format -------------------------------------------------------------------------

function refusal(status: number, family: string, code: string, message: string, index?: number): Refusal {
  return new Refusal(status, [{ family, code, message, index }]);
}

/**
 * A google.rpc.Status, as a partialFailureError carries it: the gRPC code number, the message and
 * the GoogleAdsFailure details (google.rpc.Status has no `status` name; only the HTTP error has).
 */
function rpcStatus(httpStatus: number, version: string, errors: AdsError[]) {
  const [status, message] = RPC_STATUS[httpStatus] ?? ['UNKNOWN', 'Unknown error.'];
  const details =
    errors.length === 0
      ? []
      : [
          {
            '@type': `type.googleapis.com/google.ads.googleads.${version}.errors.GoogleAdsFailure`,
            errors: errors.map(adsErrorJson),
            requestId: requestId(),
          },
        ];
  return { code: RPC_CODE[status] ?? 2, message, details };
}

/** google.rpc.Code numbers (test/vendor-specs/google-ads/google/rpc/code.proto). */
const RPC_CODE: Record<string, number> = {
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  ABORTED: 10,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
};

/** Google's JSON REST error: the HTTP status code and the google.rpc.Code name. */
function rpcError(httpStatus: number, version: string, errors: AdsError[]) {
  const [status] = RPC_STATUS[httpStatus] ?? ['UNKNOWN'];
  const { message, details } = rpcStatus(httpStatus, version, errors);
  return { error: { code: httpStatus, message, status, ...(details.length ? { details } : {}) } };
}

function adsErrorJson(error: AdsError) {
  return {
    errorCode: { [error.family]: error.code },
    message: error.message,
    ...(error.index === undefined
      ? {}
      : { location: { fieldPathElements: [{ fieldName: 'operations', index: error.index }] } }),
    ...(error.retryDelaySeconds === undefined
      ? {}
      : {
          details: {
            quotaErrorDetails: {
              rateScope: 'DEVELOPER',
              rateName: 'Number of operations for basic access',
              retryDelay: `${error.retryDelaySeconds}s`,
            },
          },
        }),
  };
}

let requestCounter = 0;
function requestId(): string {
  return `emu-${(requestCounter++).toString(36)}`;
}

// --- Small helpers ---------------------------------------------------------------------------------

/**
 * The OfflineUserDataJobMatchRateRange for a matched share, by the bounds its values name
 * (enums/offline_user_data_job_match_rate_range.proto: "between 0% and 19%", "20% and 30%", …,
 * "more than or equal to 91%").
 */
export function matchRateRangeFor(share: number): string {
  const percent = Math.round(Math.min(1, Math.max(0, share)) * 100);
  if (percent <= 19) return 'MATCH_RANGE_LESS_THAN_20';
  if (percent <= 30) return 'MATCH_RANGE_20_TO_30';
  if (percent >= 91) return 'MATCH_RANGE_91_TO_100';
  const low = Math.floor((percent - 1) / 10) * 10 + 1;
  return `MATCH_RANGE_${low}_TO_${low + 9}`;
}

function summarize(job: Job): JobSummary {
  const count = (kind: Operation['kind']) => job.operations.filter((op) => op.kind === kind).length;
  return {
    resourceName: job.resourceName,
    userList: job.userList,
    ...(job.externalId ? { externalId: job.externalId } : {}),
    status: job.status,
    ...(job.failureReason ? { failureReason: job.failureReason } : {}),
    ...(job.consent ? { consent: structuredClone(job.consent) } : {}),
    operations: { create: count('create'), remove: count('remove'), removeAll: count('removeAll') },
  };
}

function emptyStats(): CustomerMatchEmulatorStats {
  return {
    calls: zeroCounts(ENDPOINTS),
    statuses: {},
    identifiersAccepted: 0,
    jobs: { created: 0, run: 0, succeeded: 0, failed: 0 },
  };
}

/**
 * The shared destination contract suite's view of this emulator (test/connectors/contract.test.ts):
 * a fresh emulator with one Customer Match list per start, people keyed by e-mail address (the
 * emulator holds their hashes), one address Google refuses as an operation, and the short
 * acknowledgement of a partial failure that names no operation.
 */
export const contractHarness: ContractHarness = {
  type: 'google-customer-match',
  async start() {
    const developerToken = 'dev-token-contract-51ab';
    const accessToken = 'ya29.contract-access-token';
    const customerId = '1234567890';
    const userListId = '5550777';
    const refused = 'refused@example.com';
    const { key, unhash } = hashedEmailKeys();
    const emu = await startGoogleCustomerMatchEmulator({
      developerToken,
      accessToken,
      userLists: { [customerId]: [userListId] },
    });
    emu.faults.set({ reject: (id) => (id.hashedEmail === sha256Hex(refused) ? 'INVALID_ENCODING' : null) });
    return {
      settings: {
        type: 'google-customer-match',
        customerId,
        userListId,
        developerTokenSecret: 'GADS_CONTRACT_DEVELOPER_TOKEN',
        accessTokenSecret: 'GADS_CONTRACT_ACCESS_TOKEN',
        baseUrl: emu.url,
        // Jobs complete on the second poll; polls are not waited for.
        pollIntervalMs: 0,
        maxPollIntervalMs: 0,
      },
      secrets: {
        GADS_CONTRACT_DEVELOPER_TOKEN: developerToken,
        GADS_CONTRACT_ACCESS_TOKEN: accessToken,
      },
      key,
      members: async () => unhash(emu.members(userListId).keys()),
      rateLimit: (calls) => emu.faults.set({ rateLimit: { calls, retryDelaySeconds: 1 } }),
      serverError: (calls) => emu.faults.set({ serverError: { calls } }),
      shortAcknowledgeNext: () => emu.faults.set({ shortAck: { calls: 1 } }),
      refusedKey: () => refused,
      received: () => totalCalls(emu.stats().calls),
      close: () => emu.close(),
    };
  },
};
