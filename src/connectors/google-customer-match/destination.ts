import { z } from 'zod';
import { sha256Hex } from '../../core/identifiers';
import { realSleep } from '../kit/http';
import { lazySecret, parseAnswer } from '../kit/index';
import type { DestinationContext, HttpClient } from '../kit/module';
import {
  DestinationError,
  type Attributes,
  type BatchResult,
  type Destination,
  type Limits,
  type Member,
  type Rejection,
  type SecretResolver,
} from '../../core/destination';
import {
  GoogleAdsApiError,
  googleAdsRequest,
  googleRequestDefaults,
  type GoogleAdsCredentials,
  type GoogleAdsRequest,
} from './ads-api';
import {
  chunksByIdentifiers,
  identifierFor,
  matchEstimateOf,
  partialFailures,
  prepareOperations,
  type JobStatus,
  type Prepared,
} from './operations';
import {
  GOOGLE_CUSTOMER_MATCH_TYPE,
  googleCustomerMatchConfigSchema,
  type GoogleCustomerMatchConfig,
  type GoogleCustomerMatchConfigInput,
} from './settings';

/**
 * `google-customer-match`: a Customer Match user list in Google Ads, written through
 * OfflineUserDataJobService. Every batch the engine hands over becomes one asynchronous job:
 *
 *   offlineUserDataJobs:create → :addOperations (≤ 100,000 identifiers per request) → :run
 *   → googleAds:search on the job until SUCCESS or FAILED
 *
 * and only then is the batch reported delivered, so the engine commits what Google applied, and
 * consecutive jobs cannot overtake each other. The dataset key is an e-mail address or a phone
 * number (`keyType`); it is normalised and SHA-256 hashed (./operations.ts) and never sent raw.
 * check() reads the user list itself with one googleAds:search.
 *
 * New list + swap uses `remove_all`: replaceList.create starts a job whose first operation
 * empties the list, forList(job).add appends the dataset to that job, swap runs it. When it
 * succeeds the user list holds exactly the uploaded members, in one step.
 *
 * Acknowledgement: per operation, then per job. addOperations (partial failure mode) pins each
 * refused operation by index; a partialFailureError that pins none leaves its whole request
 * unacknowledged. What it took counts once the job ends SUCCESS, which applies all of it (Google
 * reports no per-record result). A FAILED job fails the batch; Google says "some operations may
 * have been successfully processed" (enums/offline_user_data_job_status.proto), so part of it may
 * be in the list: its records stay pending and are sent again, which adding or removing twice
 * allows.
 */

const SERVICE = GOOGLE_CUSTOMER_MATCH_TYPE;

export const CUSTOMER_MATCH_ENDPOINTS = [
  'offlineUserDataJobs:create',
  'offlineUserDataJobs:addOperations',
  'offlineUserDataJobs:run',
  'googleAds:search',
] as const;
export type CustomerMatchEndpoint = (typeof CUSTOMER_MATCH_ENDPOINTS)[number];

interface JobRow {
  resourceName: string;
  status: JobStatus;
  failureReason?: string;
  /** operation_metadata.match_rate_range, for jobs created with the preview enabled. */
  matchRateRange?: string;
}

const createResponse = z.object({ resourceName: z.string() });
const addOperationsResponse = z.object({
  partialFailureError: z
    .object({ code: z.number().optional(), message: z.string().optional(), details: z.array(z.unknown()) })
    .partial()
    .optional(),
});
const jobSearchResponse = z.object({
  results: z
    .array(
      z.object({
        offlineUserDataJob: z.object({
          resourceName: z.string(),
          status: z.string(),
          failureReason: z.string().optional(),
          operationMetadata: z.object({ matchRateRange: z.string().optional() }).optional(),
        }),
      }),
    )
    .optional(),
});
const userListSearchResponse = z.object({
  results: z
    .array(
      z.object({
        userList: z.object({
          resourceName: z.string(),
          name: z.string().optional(),
          type: z.string().optional(),
          // int64: a string in Google's JSON.
          sizeForSearch: z.union([z.string(), z.number()]).optional(),
        }),
      }),
    )
    .optional(),
});

// --- The destination ------------------------------------------------------------------------------

/** The connector's user list: changed in place by jobs, emptied by remove_all, replaceable. */
export type CustomerMatchDestination = Destination &
  Required<Pick<Destination, 'add' | 'remove' | 'truncate' | 'replaceList'>>;

/**
 * The destination for the connector's list: the configured user list, or `context.listId` (a
 * user list of the same customer; after a swap, the job that replaced the list's members, which
 * means the configured list).
 */
export function createGoogleCustomerMatchDestination(
  input: GoogleCustomerMatchConfigInput,
  context: DestinationContext,
): CustomerMatchDestination {
  const config = googleCustomerMatchConfigSchema.parse(input);
  const userListId = userListIdFrom(config, context.listId);
  const userList = `customers/${config.customerId}/userLists/${userListId}`;
  // One batch is one offline user data job (minutes each, retried up to maxJobAttempts): a refused
  // batch is not split into more of them.
  const limits: Limits = {
    recordsPerCall: config.recordsPerCall,
    callsPerSecond: config.callsPerSecond,
    splitRefusedBatches: false,
  };
  const http = context.http({
    account: `google-ads:${config.customerId}`,
    limits,
    defaults: googleRequestDefaults(SERVICE),
  });
  const api = createApi(config, userListId, context.secrets, http);
  const identify = identifierFor(config);

  /** One batch = one job; a FAILED job is retried with a new one, up to maxJobAttempts. */
  async function sendAsJob(
    kind: 'create' | 'remove',
    records: { key: string; attributes?: Attributes }[],
  ): Promise<BatchResult> {
    const { prepared, unusable } = prepareOperations(kind, records, identify, config);
    const rejected: Rejection[] = [...unusable];
    let pending = prepared;
    let lastFailure = '';
    for (let attempt = 1; attempt <= config.maxJobAttempts; attempt++) {
      if (pending.length === 0) return { rejected }; // nothing (left) worth a job
      const job = await api.createJob(userList, kind === 'create');
      const refused = await api.addOperations(job, pending);
      rejected.push(...refused);
      const refusedKeys = new Set(refused.map((r) => r.key));
      pending = pending.filter((p) => !refusedKeys.has(p.key!));
      if (pending.length === 0) return { rejected };
      await api.runJob(job);
      // The last job's failure stands: the poll that finds it FAILED counts as a failed call.
      const done = await api.waitForJob(job, attempt === config.maxJobAttempts ? 'batch' : undefined);
      if (done.status === 'SUCCESS') {
        // Google's estimate of how many of the uploaded people it matched (uploads only).
        const estimate = kind === 'create' ? matchEstimateOf(done.matchRateRange, pending.length) : undefined;
        return { rejected, ...(estimate ? { matchEstimate: estimate } : {}) };
      }
      lastFailure = `job ${job} ended FAILED (failure reason ${done.failureReason ?? 'UNSPECIFIED'})`;
    }
    // Google may have applied part of this batch (a FAILED job's operations "may have been
    // successfully processed"), but not which part: fail the batch, so the engine keeps every
    // record pending (sending them again is harmless) and the run's success threshold decides.
    // Retrying forever would fail alike.
    throw new DestinationError(
      `${SERVICE}: ${lastFailure} after ${config.maxJobAttempts} job(s); Google may have applied part of the batch, whose records stay pending and are sent again`,
      'batch',
    );
  }

  const close = async () => {
    // fetch's global connection pool needs no closing.
  };

  /** The same user list, seen through a replacement job that has not run yet. */
  function replacementJobDestination(job: string): Destination {
    return {
      type: SERVICE,
      limits,
      ...(config.address === undefined ? { keysOnly: true } : {}),
      async add(members: Member[]) {
        const { prepared, unusable } = prepareOperations('create', members, identify, config);
        try {
          const refused = prepared.length > 0 ? await api.addOperations(job, prepared) : [];
          return { rejected: [...unusable, ...refused] };
        } catch (err) {
          if (!hasCode(err, 'offlineUserDataJobError.JOB_ALREADY_STARTED')) throw err;
          // Filling a job that already ran cannot work, whichever page comes next.
          throw new DestinationError(
            `${SERVICE}: replacement job ${job} was already run; start a new list`,
            'fatal',
          );
        }
      },
      // After the swap the list holds exactly what was added to the job, so a key that is not
      // added is absent by construction; a remove operation would also conflict with the creates.
      remove: async () => ({ rejected: [] }),
      // The job already starts with remove_all.
      truncate: async () => {},
      check: () => api.checkUserList(),
      close,
    };
  }

  return {
    type: SERVICE,
    limits,
    // Google keeps no attributes, only identifiers. With an address mapping, the address is one:
    // re-adding a member with a changed address updates it. Without one, updates carry nothing.
    ...(config.address === undefined ? { keysOnly: true } : {}),

    add: (members) => sendAsJob('create', members),
    remove: (keys) =>
      sendAsJob(
        'remove',
        keys.map((key) => ({ key })),
      ),

    /** A job whose only operation is remove_all (not atomic with the reload; newList is). */
    async truncate() {
      for (let attempt = 1; ; attempt++) {
        const job = await api.createJob(userList, false);
        await api.addOperations(job, [{ operation: { removeAll: true }, key: null }]);
        await api.runJob(job);
        const done = await api.waitForJob(job);
        if (done.status === 'SUCCESS') return;
        if (attempt >= config.maxJobAttempts) {
          // No batch to fail here: let the activity be retried later.
          const reason = done.failureReason ?? 'UNSPECIFIED';
          throw new DestinationError(
            `${SERVICE}: remove_all job ${job} ended FAILED (failure reason ${reason})`,
            'retryable',
          );
        }
      }
    },

    // No listMembers: Customer Match lists cannot be read back (uploaded data is not retrievable).

    replaceList: {
      /**
       * A job for the user list whose first operation is remove_all, found again by its
       * external_id when the same name comes back (a retried activity), so no second job is made.
       */
      create: async (name) => ({ listId: await api.findOrCreateReplacementJob(userList, name) }),

      forList: (listId) =>
        isJobOf(config, listId)
          ? replacementJobDestination(listId)
          : createGoogleCustomerMatchDestination(config, { ...context, listId }),

      /** Run the replacement job and wait until the user list holds exactly its members. */
      async swap(listId) {
        requireJob(config, listId);
        const found = await api.findJob(`offline_user_data_job.resource_name = '${listId}'`);
        if (!found) throw new DestinationError(`${SERVICE}: no replacement job ${listId}`, 'fatal');
        if (found.status === 'PENDING') await api.runJob(listId);
        const done = found.status === 'SUCCESS' ? found : await api.waitForJob(listId, 'fatal');
        if (done.status === 'FAILED') {
          // A run job cannot be run again and its operations cannot be read back. Google: "Some
          // operations may have been successfully processed" — the remove_all that starts the job
          // among them, perhaps. The list is then neither the old nor the new one, and only a new
          // create + fill (a full refresh) can put it right. Stop the refresh and say so.
          throw new DestinationError(
            `${SERVICE}: replacement job ${listId} ended FAILED (failure reason ${done.failureReason ?? 'UNSPECIFIED'}); Google may have applied part of it, so the user list may hold neither the old nor the new members — run the refresh again`,
            'fatal',
          );
        }
        // The connector then points at the job, which means the configured user list.
        return {};
      },

      /** The "old list" is the same user list, already replaced by the swap: nothing to delete. */
      retire: async () => {},
    },

    check: () => api.checkUserList(),
    close,
  };
}

// --- The API calls --------------------------------------------------------------------------------

function createApi(
  config: GoogleCustomerMatchConfig,
  userListId: string,
  secrets: SecretResolver,
  http: HttpClient,
) {
  const credentials = credentialsFor(config, secrets);
  const customer = `customers/${config.customerId}`;
  const hint =
    `check the secrets named in accessTokenSecret ('${config.accessTokenSecret}') and developerTokenSecret ` +
    `('${config.developerTokenSecret}'), that the token's user may manage customer ${config.customerId}` +
    `${config.loginCustomerId ? ` through manager ${config.loginCustomerId}` : ''}, and that user list ` +
    `${userListId} is a Customer Match list of that customer`;

  /**
   * One request, counted at `endpoint`; `answers` are error codes the caller reacts to, `refuse`
   * a successful answer that is a failure (see GoogleAdsRequest).
   */
  async function call<T>(
    endpoint: CustomerMatchEndpoint,
    path: string,
    body: unknown,
    schema: z.ZodType<T>,
    { answers, refuse }: Pick<GoogleAdsRequest, 'answers' | 'refuse'> = {},
  ): Promise<T> {
    const { baseUrl, apiVersion } = config;
    const request = { baseUrl, apiVersion, path, body, credentials, hint, service: SERVICE, answers, refuse };
    const response = await googleAdsRequest<unknown>(http, endpoint, request);
    return parseAnswer(
      schema,
      response,
      `${SERVICE}: unexpected answer from ${endpoint} (is baseUrl the Google Ads API?)`,
    );
  }

  async function createJob(userList: string, adds: boolean, externalId?: string) {
    const job = {
      type: 'CUSTOMER_MATCH_USER_LIST',
      ...(externalId ? { externalId } : {}),
      customerMatchUserListMetadata: {
        userList,
        // Consent describes data being uploaded; removals do not need it.
        ...(adds && config.consent ? { consent: config.consent } : {}),
      },
    };
    // A replacement job's create may find its external_id taken by an earlier attempt.
    const answers = externalId ? ['offlineUserDataJobError.EXTERNAL_UPDATE_ID_ALREADY_EXISTS'] : undefined;
    const body = await call(
      'offlineUserDataJobs:create',
      `${customer}/offlineUserDataJobs:create`,
      // The preview asks Google to estimate an upload's match rate (read in sendAsJob; a
      // replacement job's is not read, so it does not ask).
      { job, ...(adds && !externalId ? { enableMatchRateRangePreview: true } : {}) },
      createResponse,
      { answers },
    );
    return body.resourceName;
  }

  /**
   * Sends the operations in requests of at most identifiersPerRequest; returns record rejections.
   * The engine's batch is one job, and a job takes its operations in as many addOperations
   * requests as they need: one record may carry two identifiers (the key and an address), and a
   * job of recordsPerCall records may exceed Google's 100,000 identifiers per request.
   */
  async function addOperations(job: string, prepared: Prepared[], answers?: string[]): Promise<Rejection[]> {
    const rejected: Rejection[] = [];
    for (const chunk of chunksByIdentifiers(prepared, config.identifiersPerRequest)) {
      const body = await call(
        'offlineUserDataJobs:addOperations',
        `${job}:addOperations`,
        { enablePartialFailure: true, operations: chunk.map((p) => p.operation) },
        addOperationsResponse,
        { answers },
      );
      rejected.push(...partialFailures(body.partialFailureError, chunk));
    }
    return rejected;
  }

  async function runJob(job: string) {
    await call('offlineUserDataJobs:run', `${job}:run`, {}, z.object({ name: z.string().optional() }));
  }

  /**
   * The first job `where` selects. With `failedStands`, finding it FAILED is a failure that
   * stands (the batch, or the swap, fails for it): that search counts as a failed call.
   */
  async function findJob(where: string, failedStands?: 'batch' | 'fatal'): Promise<JobRow | undefined> {
    const query =
      'SELECT offline_user_data_job.resource_name, offline_user_data_job.status, ' +
      'offline_user_data_job.failure_reason, offline_user_data_job.operation_metadata.match_rate_range ' +
      `FROM offline_user_data_job WHERE ${where} LIMIT 1`;
    const rowOf = (body: unknown): JobRow | undefined => {
      const row = jobSearchResponse.safeParse(body).data?.results?.[0]?.offlineUserDataJob;
      if (!row) return undefined;
      const { operationMetadata, ...fields } = row;
      return {
        ...fields,
        status: row.status as JobStatus,
        ...(operationMetadata?.matchRateRange ? { matchRateRange: operationMetadata.matchRateRange } : {}),
      };
    };
    const refuse = (body: unknown) =>
      failedStands && rowOf(body)?.status === 'FAILED'
        ? { kind: failedStands, message: 'the job ended FAILED' }
        : undefined;
    try {
      const body = await call(
        'googleAds:search',
        `${customer}/googleAds:search`,
        { query },
        jobSearchResponse,
        {
          refuse,
        },
      );
      return rowOf(body);
    } catch (err) {
      // Refused above: counted as failed; the caller says what the FAILED job means.
      if (err instanceof GoogleAdsApiError && err.kind === failedStands && refuse(err.body))
        return rowOf(err.body);
      throw err;
    }
  }

  /**
   * Polls with a doubling, capped interval until the job is SUCCESS or FAILED; `failedStands`:
   * see findJob.
   */
  async function waitForJob(job: string, failedStands?: 'batch' | 'fatal'): Promise<JobRow> {
    const deadline = Date.now() + config.jobTimeoutMs;
    let interval = config.pollIntervalMs;
    for (;;) {
      await realSleep(interval);
      const row = await findJob(`offline_user_data_job.resource_name = '${job}'`, failedStands);
      if (!row) throw new DestinationError(`${SERVICE}: job ${job} has vanished`, 'retryable');
      if (row.status === 'SUCCESS' || row.status === 'FAILED') return row;
      if (Date.now() >= deadline) {
        // Still running: the job may yet finish; a retry re-sends the batch, which is idempotent.
        throw new DestinationError(
          `${SERVICE}: job ${job} still ${row.status} after ${Math.round(config.jobTimeoutMs / 1000)} s`,
          'retryable',
        );
      }
      interval = Math.min(interval * 2, config.maxPollIntervalMs);
    }
  }

  /**
   * The PENDING replacement job for `name`, made on first use. Its external_id is derived from
   * the name, so a retried create finds the job instead of making a second one. When the job
   * of that id already ran (a later refresh reusing the name), the next generation's id is used.
   */
  async function findOrCreateReplacementJob(userList: string, name: string) {
    for (let generation = 0; generation < MAX_GENERATIONS; generation++) {
      const externalId = externalIdFor(userList, name, generation);
      const job =
        (await findJob(`offline_user_data_job.external_id = ${externalId}`)) ??
        (await createReplacementJob(userList, externalId));
      if (job.status === 'PENDING') {
        await ensureRemoveAllFirst(job.resourceName);
        return job.resourceName;
      }
    }
    throw new DestinationError(
      `${SERVICE}: ${MAX_GENERATIONS} replacement jobs named '${name}' already ran; use a new name`,
      'fatal',
    );
  }

  async function createReplacementJob(userList: string, externalId: string): Promise<JobRow> {
    try {
      return { resourceName: await createJob(userList, true, externalId), status: 'PENDING' };
    } catch (err) {
      if (!hasCode(err, 'offlineUserDataJobError.EXTERNAL_UPDATE_ID_ALREADY_EXISTS')) throw err;
      // Another attempt created it between our search and our create.
      const raced = await findJob(`offline_user_data_job.external_id = ${externalId}`);
      if (!raced) throw err;
      return raced;
    }
  }

  async function ensureRemoveAllFirst(job: string) {
    try {
      // remove_all may only come first: refused as out of order means an earlier attempt added it.
      await addOperations(
        job,
        [{ operation: { removeAll: true }, key: null }],
        ['offlineUserDataJobError.INVALID_OPERATION_ORDER'],
      );
    } catch (err) {
      if (!hasCode(err, 'offlineUserDataJobError.INVALID_OPERATION_ORDER')) throw err;
    }
  }

  /** One cheap read: the user list, that it is a Customer Match list, and its size. */
  async function checkUserList(): Promise<string> {
    const resourceName = `${customer}/userLists/${userListId}`;
    const query =
      'SELECT user_list.resource_name, user_list.name, user_list.type, user_list.size_for_search ' +
      `FROM user_list WHERE user_list.resource_name = '${resourceName}' LIMIT 1`;
    const body = await call(
      'googleAds:search',
      `${customer}/googleAds:search`,
      { query },
      userListSearchResponse,
    );
    const list = body.results?.[0]?.userList;
    if (!list) {
      throw new DestinationError(
        `${SERVICE}: customer ${config.customerId} has no user list ${userListId} — check userListId (and loginCustomerId, if the list's account is managed)`,
        'fatal',
      );
    }
    if (list.type !== undefined && list.type !== 'CRM_BASED') {
      throw new DestinationError(
        `${SERVICE}: user list ${userListId} is a ${list.type} list, not a Customer Match (CRM_BASED) one — check userListId`,
        'fatal',
      );
    }
    const name = list.name ? ` ('${list.name}')` : '';
    const size =
      list.sizeForSearch === undefined
        ? 'size not reported'
        : `about ${Number(list.sizeForSearch).toLocaleString('en')} members for search`;
    return `${SERVICE}: user list ${userListId}${name} of customer ${config.customerId} reachable (${size})`;
  }

  return {
    createJob,
    addOperations,
    runJob,
    findJob,
    waitForJob,
    findOrCreateReplacementJob,
    checkUserList,
  };
}

function hasCode(err: unknown, code: string): boolean {
  return err instanceof GoogleAdsApiError && err.codes.includes(code);
}

// --- Credentials and ids --------------------------------------------------------------------------

function credentialsFor(config: GoogleCustomerMatchConfig, secrets: SecretResolver): GoogleAdsCredentials {
  const read = (field: 'developerTokenSecret' | 'accessTokenSecret') =>
    lazySecret(secrets, config[field], `${SERVICE}: ${field} '${config[field]}'`);
  return {
    developerToken: read('developerTokenSecret'),
    accessToken: read('accessTokenSecret'),
    loginCustomerId: config.loginCustomerId,
  };
}

const JOB_NAME = /^customers\/(\d+)\/offlineUserDataJobs\/(\d+)$/;

function isJobOf(config: GoogleCustomerMatchConfig, listId: string): boolean {
  return JOB_NAME.exec(listId)?.[1] === config.customerId;
}

function requireJob(config: GoogleCustomerMatchConfig, listId: string): void {
  if (!isJobOf(config, listId)) {
    throw new DestinationError(
      `${SERVICE}: '${listId}' is not a replacement job of customer ${config.customerId} (customers/${config.customerId}/offlineUserDataJobs/…)`,
      'fatal',
    );
  }
}

/**
 * The user list to write. After a swap the connector points at the job that replaced the list's
 * members; the list itself is still the configured one. A numeric id or a user list resource
 * name of the same customer selects another list.
 */
function userListIdFrom(config: GoogleCustomerMatchConfig, listId: string | undefined): string {
  if (listId === undefined || JOB_NAME.test(listId)) return config.userListId;
  if (/^\d+$/.test(listId)) return listId;
  const match = /^customers\/(\d+)\/userLists\/(\d+)$/.exec(listId);
  if (match && match[1] === config.customerId) return match[2]!;
  throw new DestinationError(
    `${SERVICE}: list id '${listId}' is neither a user list id nor a job of customer ${config.customerId}`,
    'fatal',
  );
}

/** How many replacement jobs one name may have had before replaceList.create gives up. */
const MAX_GENERATIONS = 100;

/**
 * The external_id (an int64, a string in Google's JSON) of the replacement job `name` gets for
 * `userList` in a generation: 60 bits of a hash, plus the generation, well inside int64.
 */
export function externalIdFor(userList: string, name: string, generation = 0): string {
  const digest = sha256Hex(`${userList}/${name}`);
  return (BigInt(`0x${digest.slice(0, 15)}`) + BigInt(generation)).toString();
}
