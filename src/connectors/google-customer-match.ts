import { z } from 'zod';
import type { CountryCode } from 'libphonenumber-js';
import { normalizeEmail, normalizeName, normalizePhone, sha256Hex } from '../core/identifiers';
import {
  GoogleAdsApiError,
  googleAdsErrorsOf,
  googleAdsRequest,
  type GoogleAdsCredentials,
} from './google-ads-rest';
import { HttpDestinationError, realSleep } from './http';
import {
  CallTally,
  httpTarget,
  lazySecret,
  notAcknowledged,
  parseAnswer,
  secretName,
  serviceUrl,
  type HttpConnectorOptions,
} from './kit';
import { defineDestination } from './module';
import { unthrottled } from './throttle';
import {
  DestinationError,
  type AttributeValue,
  type Attributes,
  type Capabilities,
  type Destination,
  type Limits,
  type Member,
  type Rejection,
  type SecretResolver,
} from './types';

/**
 * `google-customer-match`: a Customer Match user list in Google Ads, written through
 * OfflineUserDataJobService. Every batch the engine hands over becomes one asynchronous job:
 *
 *   offlineUserDataJobs:create → :addOperations (≤ 100,000 identifiers per request) → :run
 *   → googleAds:search on the job until SUCCESS or FAILED
 *
 * and only then is the batch reported delivered, so the engine commits what Google applied, and
 * consecutive jobs cannot overtake each other. The dataset key is an e-mail address or a phone
 * number (`keyType`); it is normalised and SHA-256 hashed here and never sent raw.
 *
 * New list + swap uses `remove_all`: createList starts a job whose first operation empties the
 * list, forList(job).add appends the dataset to that job, swapList runs it. When it succeeds the
 * user list holds exactly the uploaded members, in one step.
 *
 * Acknowledgement: per operation, then per job. addOperations (partial failure mode) pins each
 * refused operation by index; a partialFailureError that pins none leaves its whole request
 * unacknowledged. What it took counts once the job ends SUCCESS, which applies all of it (Google
 * reports no per-record result); a FAILED job applies nothing and fails the batch.
 */

export const GOOGLE_ADS_BASE_URL = 'https://googleads.googleapis.com';

const customerIdSchema = z
  .string()
  .regex(/^\d{3}-?\d{3}-?\d{4}$/, 'must be a 10-digit Google Ads customer id (dashes allowed)')
  .transform((id) => id.replace(/-/g, ''));

const consentStatus = z.enum(['GRANTED', 'DENIED']);

export const googleCustomerMatchConfigSchema = z.object({
  type: z.literal('google-customer-match'),
  /** The advertiser account that owns the user list. */
  customerId: customerIdSchema,
  /** The Customer Match (CRM-based, CONTACT_INFO) user list's id. */
  userListId: z.string().regex(/^\d+$/, 'must be the numeric user list id'),
  /** Manager account the OAuth user acts through, when the list's account is a client of it. */
  loginCustomerId: customerIdSchema.optional(),
  /** Name of the secret holding the developer token, never the token itself. */
  developerTokenSecret: secretName,
  /** Name of the secret holding an OAuth 2.0 access token with the adwords scope. */
  accessTokenSecret: secretName,
  /** What the dataset key is: an e-mail address or a phone number. */
  keyType: z.enum(['email', 'phone']).default('email'),
  /** Country for phone numbers written without +country code (ISO 3166 alpha-2). */
  defaultCountry: z
    .string()
    .regex(/^[A-Z]{2}$/, 'must be an ISO 3166-1 alpha-2 code like DE')
    .optional(),
  /**
   * Drop dots before @gmail.com/@googlemail.com. Google's Customer Match guide does not ask for
   * it (only trim + lower-case; its own sample keeps the dots), so it is off by default.
   */
  removeGmailDots: z.boolean().default(false),
  /** Dataset attributes holding a mailing address, sent as a second identifier on additions. */
  address: z
    .object({ firstName: z.string(), lastName: z.string(), countryCode: z.string(), postalCode: z.string() })
    .optional(),
  /** Consent for the uploaded data, set on jobs that add members (Google asks for it since v15). */
  consent: z.object({ adUserData: consentStatus, adPersonalization: consentStatus }).optional(),
  baseUrl: serviceUrl('baseUrl').default(GOOGLE_ADS_BASE_URL),
  /** REST version. Paths checked against the v17 service definition; request fields unchanged through v26. */
  apiVersion: z
    .string()
    .regex(/^v\d+$/)
    .default('v26'),
  /** Records per engine batch, i.e. per job. Google prefers few large jobs to many small ones. */
  recordsPerCall: z.number().int().min(1).max(1_000_000).default(100_000),
  /** Identifiers per addOperations request: Google's limit is 100,000. */
  identifiersPerRequest: z.number().int().min(1).max(100_000).default(100_000),
  callsPerSecond: z.number().positive().optional(),
  /**
   * Jobs tried per batch when one ends FAILED. Google gives no actionable reason for a failed
   * Customer Match job and a run job cannot be re-run, so a fresh job is worth one more try;
   * after that the batch fails as a whole (kind 'batch': nothing committed, records stay pending).
   */
  maxJobAttempts: z.number().int().min(1).max(10).default(2),
  /** First wait before polling a running job; doubles up to maxPollIntervalMs. */
  pollIntervalMs: z.number().int().min(0).default(5_000),
  maxPollIntervalMs: z.number().int().min(0).default(300_000),
  /** How long to wait for one job (Google: "6 hours or more" is possible). */
  jobTimeoutMs: z
    .number()
    .int()
    .min(0)
    .default(12 * 3_600_000),
});

export type GoogleCustomerMatchConfig = z.output<typeof googleCustomerMatchConfigSchema>;
export type GoogleCustomerMatchConfigInput = z.input<typeof googleCustomerMatchConfigSchema>;

/**
 * Knobs for tests and tuning; production uses the defaults. Without a throttle, calls go out
 * unthrottled.
 */
export interface GoogleCustomerMatchOptions extends HttpConnectorOptions {
  /** The list the connector points at now (after a swap: the job that replaced it). */
  listId?: string;
  now?: () => number;
}

export const CUSTOMER_MATCH_ENDPOINTS = [
  'offlineUserDataJobs:create',
  'offlineUserDataJobs:addOperations',
  'offlineUserDataJobs:run',
  'googleAds:search',
] as const;
export type CustomerMatchEndpoint = (typeof CUSTOMER_MATCH_ENDPOINTS)[number];

// --- Wire shapes ---------------------------------------------------------------------------------

export interface UserIdentifier {
  hashedEmail?: string;
  hashedPhoneNumber?: string;
  addressInfo?: { hashedFirstName: string; hashedLastName: string; countryCode: string; postalCode: string };
}

export type JobOperation =
  | { create: { userIdentifiers: UserIdentifier[] } }
  | { remove: { userIdentifiers: UserIdentifier[] } }
  | { removeAll: true };

export type JobStatus = 'PENDING' | 'RUNNING' | 'SUCCESS' | 'FAILED';

interface JobRow {
  resourceName: string;
  status: JobStatus;
  failureReason?: string;
}

const createResponse = z.object({ resourceName: z.string() });
const addOperationsResponse = z.object({
  partialFailureError: z
    .object({ code: z.number().optional(), message: z.string().optional(), details: z.array(z.unknown()) })
    .partial()
    .optional(),
});
const searchResponse = z.object({
  results: z
    .array(
      z.object({
        offlineUserDataJob: z.object({
          resourceName: z.string(),
          status: z.string(),
          failureReason: z.string().optional(),
        }),
      }),
    )
    .optional(),
});

/** One operation and the record it stands for (none for removeAll). */
interface Prepared {
  operation: JobOperation;
  key: string | null;
}

// --- The destination ------------------------------------------------------------------------------

export function createGoogleCustomerMatchDestination(
  input: GoogleCustomerMatchConfigInput,
  secrets: SecretResolver,
  options: GoogleCustomerMatchOptions = {},
): Destination {
  const config = googleCustomerMatchConfigSchema.parse(input);
  const userListId = userListIdFrom(config, options.listId);
  const userList = `customers/${config.customerId}/userLists/${userListId}`;
  const api = createApi(config, userListId, secrets, options);
  const identify = identifierFor(config);

  /** One batch = one job; a FAILED job is retried with a new one, up to maxJobAttempts. */
  async function sendAsJob(kind: 'create' | 'remove', records: { key: string; attributes?: Attributes }[]) {
    const calls = new CallTally();
    const { prepared, unusable } = prepareOperations(kind, records, identify, config);
    const rejected: Rejection[] = [...unusable];
    let pending = prepared;
    let lastFailure = '';
    for (let attempt = 1; attempt <= config.maxJobAttempts; attempt++) {
      if (pending.length === 0) return calls.outcome(rejected); // nothing (left) worth a job
      const job = await api.createJob(calls, userList, kind === 'create');
      const refused = await api.addOperations(calls, job, pending);
      rejected.push(...refused);
      const refusedKeys = new Set(refused.map((r) => r.key));
      pending = pending.filter((p) => !refusedKeys.has(p.key!));
      if (pending.length === 0) return calls.outcome(rejected);
      await api.runJob(calls, job);
      const done = await api.waitForJob(calls, job);
      if (done.status === 'SUCCESS') return calls.outcome(rejected);
      lastFailure = `job ${job} ended FAILED (failure reason ${done.failureReason ?? 'UNSPECIFIED'})`;
    }
    // Nothing of this batch was applied: fail the batch, so the engine keeps every record pending
    // and the run's success threshold decides. Retrying forever would fail alike.
    throw new JobFailedError(
      `google-customer-match: ${lastFailure} after ${config.maxJobAttempts} job(s); the batch was not applied`,
      'batch',
      calls,
    );
  }

  const destination: Destination = {
    type: 'google-customer-match',
    capabilities: capabilitiesOf(config),
    limits: limitsOf(config),

    add: (members: Member[]) => sendAsJob('create', members),
    remove: (keys: string[]) =>
      sendAsJob(
        'remove',
        keys.map((key) => ({ key })),
      ),

    /** A job whose only operation is remove_all. */
    async truncate() {
      const calls = new CallTally();
      for (let attempt = 1; ; attempt++) {
        const job = await api.createJob(calls, userList, false);
        await api.addOperations(calls, job, [{ operation: { removeAll: true }, key: null }]);
        await api.runJob(calls, job);
        const done = await api.waitForJob(calls, job);
        if (done.status === 'SUCCESS') return calls.outcome([]);
        if (attempt >= config.maxJobAttempts) {
          // No batch to fail here: let the activity be retried later.
          const reason = done.failureReason ?? 'UNSPECIFIED';
          throw new JobFailedError(
            `google-customer-match: remove_all job ${job} ended FAILED (failure reason ${reason})`,
            'retryable',
            calls,
          );
        }
      }
    },

    async listMembers() {
      throw new DestinationError(
        'google-customer-match: Customer Match lists cannot be read back (uploaded data is not retrievable)',
        'fatal',
      );
    },

    /**
     * A job for `userList` whose first operation is remove_all, found again by its external_id
     * when the same name comes back (a retried activity), so no second job is made.
     */
    async createList(name: string) {
      const calls = new CallTally();
      const job = await api.findOrCreateReplacementJob(calls, userList, name);
      return { listId: job, outcome: calls.outcome([]) };
    },

    forList(listId: string): Destination {
      if (!isJobOf(config, listId))
        return createGoogleCustomerMatchDestination(config, secrets, { ...options, listId });
      return replacementJobDestination(listId);
    },

    /** Run the replacement job and wait until the user list holds exactly its members. */
    async swapList(listId: string) {
      requireJob(config, listId);
      const calls = new CallTally();
      const found = await api.findJob(calls, `offline_user_data_job.resource_name = '${listId}'`);
      if (!found) throw new DestinationError(`google-customer-match: no replacement job ${listId}`, 'fatal');
      if (found.status === 'PENDING') await api.runJob(calls, listId);
      const done = found.status === 'SUCCESS' ? found : await api.waitForJob(calls, listId);
      if (done.status === 'FAILED') {
        // A run job cannot be run again and its operations cannot be read back: the old members
        // stay, and only a new createList + fill can try again. Stop the refresh and say so.
        throw new DestinationError(
          `google-customer-match: replacement job ${listId} ended FAILED (failure reason ${done.failureReason ?? 'UNSPECIFIED'}); the user list keeps its previous members — run the refresh again`,
          'fatal',
        );
      }
      return calls.outcome([]);
    },

    /** The "old list" is the same user list, already replaced by the swap: nothing to delete. */
    async deleteList() {
      return { rejected: [], apiCalls: 0, rateLimitWaits: 0 };
    },

    async close() {
      // fetch's global connection pool needs no closing.
    },
  };

  /** The same user list, seen through a replacement job that has not run yet. */
  function replacementJobDestination(job: string): Destination {
    return {
      ...destination,
      async add(members: Member[]) {
        const calls = new CallTally();
        const { prepared, unusable } = prepareOperations('create', members, identify, config);
        try {
          const refused = prepared.length > 0 ? await api.addOperations(calls, job, prepared) : [];
          return calls.outcome([...unusable, ...refused]);
        } catch (err) {
          if (!hasCode(err, 'offlineUserDataJobError.JOB_ALREADY_STARTED')) throw err;
          // Filling a job that already ran cannot work, whichever page comes next.
          throw new DestinationError(
            `google-customer-match: replacement job ${job} was already run; start a new list`,
            'fatal',
          );
        }
      },
      // After the swap the list holds exactly what was added to the job, so a key that is not
      // added is absent by construction; a remove operation would also conflict with the creates.
      async remove() {
        return { rejected: [], apiCalls: 0, rateLimitWaits: 0 };
      },
      // The job already starts with remove_all.
      async truncate() {
        return { rejected: [], apiCalls: 0, rateLimitWaits: 0 };
      },
    };
  }

  return destination;
}

function capabilitiesOf(config: GoogleCustomerMatchConfig): Capabilities {
  return {
    add: true,
    remove: true,
    // remove_all in a job of its own; not atomic with the reload (newList is).
    truncate: true,
    listMembers: false,
    // Google keeps no attributes, only identifiers. With an address mapping, the address is one:
    // re-adding a member with a changed address updates it. Without one, updates carry nothing.
    updateAttributes: config.address !== undefined,
    createList: true,
  };
}

function limitsOf(config: GoogleCustomerMatchConfig): Limits {
  return { recordsPerCall: config.recordsPerCall, callsPerSecond: config.callsPerSecond };
}

/** Job(s) that ended FAILED, reporting what they cost. */
class JobFailedError extends HttpDestinationError {
  constructor(message: string, kind: DestinationError['kind'], calls: CallTally) {
    super(message, kind, undefined, calls.apiCalls, calls.rateLimitWaits);
    this.name = 'JobFailedError';
  }
}

// --- The API calls --------------------------------------------------------------------------------

function createApi(
  config: GoogleCustomerMatchConfig,
  userListId: string,
  secrets: SecretResolver,
  options: GoogleCustomerMatchOptions,
) {
  const credentials = credentialsFor(config, secrets);
  const throttle = options.throttle ?? unthrottled;
  const account = `google-ads:${config.customerId}`;
  const limits = limitsOf(config);
  const sleep = options.sleep ?? realSleep;
  const now = options.now ?? Date.now;
  const customer = `customers/${config.customerId}`;
  const hint =
    `check the secrets named in accessTokenSecret ('${config.accessTokenSecret}') and developerTokenSecret ` +
    `('${config.developerTokenSecret}'), that the token's user may manage customer ${config.customerId}` +
    `${config.loginCustomerId ? ` through manager ${config.loginCustomerId}` : ''}, and that user list ` +
    `${userListId} is a Customer Match list of that customer`;

  async function call<T>(
    calls: CallTally,
    endpoint: CustomerMatchEndpoint,
    path: string,
    body: unknown,
    schema: z.ZodType<T>,
  ): Promise<T> {
    const { baseUrl, apiVersion } = config;
    const request = { baseUrl, apiVersion, path, body, credentials, hint, service: 'google-customer-match' };
    const response = await calls.measure(endpoint, () =>
      throttle(account, limits, () => googleAdsRequest<unknown>(request, options)),
    );
    return parseAnswer(
      schema,
      response,
      `google-customer-match: unexpected answer from ${endpoint} (is baseUrl the Google Ads API?)`,
    );
  }

  async function createJob(calls: CallTally, userList: string, adds: boolean, externalId?: string) {
    const job = {
      type: 'CUSTOMER_MATCH_USER_LIST',
      ...(externalId ? { externalId } : {}),
      customerMatchUserListMetadata: {
        userList,
        // Consent describes data being uploaded; removals do not need it.
        ...(adds && config.consent ? { consent: config.consent } : {}),
      },
    };
    const body = await call(
      calls,
      'offlineUserDataJobs:create',
      `${customer}/offlineUserDataJobs:create`,
      { job },
      createResponse,
    );
    return body.resourceName;
  }

  /** Sends the operations in requests of at most identifiersPerRequest; returns record rejections. */
  async function addOperations(calls: CallTally, job: string, prepared: Prepared[]): Promise<Rejection[]> {
    const rejected: Rejection[] = [];
    for (const chunk of chunksByIdentifiers(prepared, config.identifiersPerRequest)) {
      const body = await call(
        calls,
        'offlineUserDataJobs:addOperations',
        `${job}:addOperations`,
        { enablePartialFailure: true, operations: chunk.map((p) => p.operation) },
        addOperationsResponse,
      );
      rejected.push(...partialFailures(body.partialFailureError, chunk));
    }
    return rejected;
  }

  async function runJob(calls: CallTally, job: string) {
    await call(calls, 'offlineUserDataJobs:run', `${job}:run`, {}, z.object({ name: z.string().optional() }));
  }

  async function findJob(calls: CallTally, where: string): Promise<JobRow | undefined> {
    const query =
      'SELECT offline_user_data_job.resource_name, offline_user_data_job.status, ' +
      `offline_user_data_job.failure_reason FROM offline_user_data_job WHERE ${where} LIMIT 1`;
    const body = await call(
      calls,
      'googleAds:search',
      `${customer}/googleAds:search`,
      { query },
      searchResponse,
    );
    const row = body.results?.[0]?.offlineUserDataJob;
    return row ? { ...row, status: row.status as JobStatus } : undefined;
  }

  /** Polls with a doubling, capped interval until the job is SUCCESS or FAILED. */
  async function waitForJob(calls: CallTally, job: string): Promise<JobRow> {
    const deadline = now() + config.jobTimeoutMs;
    let interval = config.pollIntervalMs;
    for (;;) {
      await sleep(interval);
      const row = await findJob(calls, `offline_user_data_job.resource_name = '${job}'`);
      if (!row) throw new DestinationError(`google-customer-match: job ${job} has vanished`, 'retryable');
      if (row.status === 'SUCCESS' || row.status === 'FAILED') return row;
      if (now() >= deadline) {
        // Still running: the job may yet finish; a retry re-sends the batch, which is idempotent.
        throw new HttpDestinationError(
          `google-customer-match: job ${job} still ${row.status} after ${Math.round(config.jobTimeoutMs / 1000)} s`,
          'retryable',
          undefined,
          calls.apiCalls,
          calls.rateLimitWaits,
        );
      }
      interval = Math.min(interval * 2, config.maxPollIntervalMs);
    }
  }

  /**
   * The PENDING replacement job for `name`, made on first use. Its external_id is derived from
   * the name, so a retried createList finds the job instead of making a second one. When the job
   * of that id already ran (a later refresh reusing the name), the next generation's id is used.
   */
  async function findOrCreateReplacementJob(calls: CallTally, userList: string, name: string) {
    for (let generation = 0; generation < MAX_GENERATIONS; generation++) {
      const externalId = externalIdFor(userList, name, generation);
      const job =
        (await findJob(calls, `offline_user_data_job.external_id = ${externalId}`)) ??
        (await createReplacementJob(calls, userList, externalId));
      if (job.status === 'PENDING') {
        await ensureRemoveAllFirst(calls, job.resourceName);
        return job.resourceName;
      }
    }
    throw new DestinationError(
      `google-customer-match: ${MAX_GENERATIONS} replacement jobs named '${name}' already ran; use a new name`,
      'fatal',
    );
  }

  async function createReplacementJob(
    calls: CallTally,
    userList: string,
    externalId: string,
  ): Promise<JobRow> {
    try {
      return { resourceName: await createJob(calls, userList, true, externalId), status: 'PENDING' };
    } catch (err) {
      if (!hasCode(err, 'offlineUserDataJobError.EXTERNAL_UPDATE_ID_ALREADY_EXISTS')) throw err;
      // Another attempt created it between our search and our create.
      const raced = await findJob(calls, `offline_user_data_job.external_id = ${externalId}`);
      if (!raced) throw err;
      return raced;
    }
  }

  async function ensureRemoveAllFirst(calls: CallTally, job: string) {
    try {
      await addOperations(calls, job, [{ operation: { removeAll: true }, key: null }]);
    } catch (err) {
      // remove_all may only come first: refused as out of order means an earlier attempt added it.
      if (!hasCode(err, 'offlineUserDataJobError.INVALID_OPERATION_ORDER')) throw err;
    }
  }

  return { createJob, addOperations, runJob, findJob, waitForJob, findOrCreateReplacementJob };
}

function hasCode(err: unknown, code: string): boolean {
  return err instanceof GoogleAdsApiError && err.codes.includes(code);
}

// --- Credentials and ids --------------------------------------------------------------------------

function credentialsFor(config: GoogleCustomerMatchConfig, secrets: SecretResolver): GoogleAdsCredentials {
  const read = (field: 'developerTokenSecret' | 'accessTokenSecret') =>
    lazySecret(secrets, config[field], `google-customer-match: ${field} '${config[field]}'`);
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
      `google-customer-match: '${listId}' is not a replacement job of customer ${config.customerId} (customers/${config.customerId}/offlineUserDataJobs/…)`,
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
    `google-customer-match: list id '${listId}' is neither a user list id nor a job of customer ${config.customerId}`,
    'fatal',
  );
}

/** How many replacement jobs one name may have had before createList gives up. */
const MAX_GENERATIONS = 100;

/**
 * The external_id (an int64, a string in Google's JSON) of the replacement job `name` gets for
 * `userList` in a generation: 60 bits of a hash, plus the generation, well inside int64.
 */
export function externalIdFor(userList: string, name: string, generation = 0): string {
  const digest = sha256Hex(`${userList}/${name}`);
  return (BigInt(`0x${digest.slice(0, 15)}`) + BigInt(generation)).toString();
}

// --- Identifiers ----------------------------------------------------------------------------------

type Identify = (key: string) => { identifier: UserIdentifier } | { reason: string };

/** Normalise + hash the dataset key as Google's Customer Match rules say; null-safe. */
export function identifierFor(
  config: Pick<GoogleCustomerMatchConfig, 'keyType' | 'defaultCountry' | 'removeGmailDots'>,
): Identify {
  if (config.keyType === 'phone') {
    return (key) => {
      const phone = normalizePhone(key, config.defaultCountry as CountryCode | undefined);
      if (phone === null) {
        return {
          reason: `not a valid phone number${config.defaultCountry ? '' : ' (without + and country code it needs defaultCountry)'}`,
        };
      }
      return { identifier: { hashedPhoneNumber: sha256Hex(phone) } };
    };
  }
  return (key) => {
    const email = normalizeEmail(key, { removeGmailDots: config.removeGmailDots });
    return email === null
      ? { reason: 'not a valid e-mail address' }
      : { identifier: { hashedEmail: sha256Hex(email) } };
  };
}

/** The address identifier, when every part is present; otherwise none (the key still matches). */
export function addressIdentifier(
  mapping: NonNullable<GoogleCustomerMatchConfig['address']>,
  attributes: Attributes,
): UserIdentifier | undefined {
  const text = (value: AttributeValue | undefined) =>
    value === null || value === undefined ? '' : String(value).trim();
  const firstName = normalizeName(text(attributes[mapping.firstName]));
  const lastName = normalizeName(text(attributes[mapping.lastName]));
  const countryCode = text(attributes[mapping.countryCode]).toUpperCase();
  const postalCode = text(attributes[mapping.postalCode]);
  if (firstName === null || lastName === null || !/^[A-Z]{2}$/.test(countryCode) || postalCode === '') {
    return undefined;
  }
  // Names are hashed; country and postal code are sent as they are (Google's rules).
  return {
    addressInfo: {
      hashedFirstName: sha256Hex(firstName),
      hashedLastName: sha256Hex(lastName),
      countryCode,
      postalCode,
    },
  };
}

function prepareOperations(
  kind: 'create' | 'remove',
  records: { key: string; attributes?: Attributes }[],
  identify: Identify,
  config: GoogleCustomerMatchConfig,
): { prepared: Prepared[]; unusable: Rejection[] } {
  const prepared: Prepared[] = [];
  const unusable: Rejection[] = [];
  for (const record of records) {
    const result = identify(record.key);
    if ('reason' in result) {
      unusable.push({ key: record.key, reason: result.reason });
      continue;
    }
    const identifiers = [result.identifier];
    // A removal names the person by the key alone; the address only helps matching on upload.
    const address =
      kind === 'create' && config.address && record.attributes
        ? addressIdentifier(config.address, record.attributes)
        : undefined;
    if (address) identifiers.push(address);
    const userData = { userIdentifiers: identifiers };
    prepared.push({
      operation: kind === 'create' ? { create: userData } : { remove: userData },
      key: record.key,
    });
  }
  return { prepared, unusable };
}

function identifierCount(operation: JobOperation): number {
  if ('create' in operation) return operation.create.userIdentifiers.length;
  if ('remove' in operation) return operation.remove.userIdentifiers.length;
  return 0;
}

/** Consecutive chunks of at most `limit` identifiers (removeAll counts as none). */
export function chunksByIdentifiers<T extends { operation: JobOperation }>(items: T[], limit: number): T[][] {
  const chunks: T[][] = [];
  let current: T[] = [];
  let count = 0;
  for (const item of items) {
    const size = identifierCount(item.operation);
    if (current.length > 0 && count + size > limit) {
      chunks.push(current);
      current = [];
      count = 0;
    }
    current.push(item);
    count += size;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

/**
 * partialFailureError → one rejection per failed operation, with Google's codes as the reason.
 * A failure that names no operation (no GoogleAdsFailure errors in its details) says some
 * operations failed but not which: none of the request's records is acknowledged.
 */
function partialFailures(
  status: z.output<typeof addOperationsResponse>['partialFailureError'],
  chunk: Prepared[],
): Rejection[] {
  if (!status) return [];
  const errors = googleAdsErrorsOf(status);
  if (errors.length === 0) {
    const failed = (status.code ?? 0) !== 0 || (status.details?.length ?? 0) > 0 || !!status.message;
    if (!failed) return [];
    const what = [status.code, status.message].filter((part) => part !== undefined).join(' ');
    const why = `addOperations reported a partial failure (${what || 'no detail'}) without naming the operations`;
    // remove_all stands for no record: whether it was taken decides the whole job.
    const keys = chunk.map((p) => p.key);
    if (keys.includes(null)) throw new DestinationError(`google-customer-match: ${why}`, 'batch');
    return notAcknowledged(keys as string[], [], why);
  }
  const reasons = new Map<string, string[]>();
  for (const error of errors) {
    const key = error.operationIndex === undefined ? undefined : chunk[error.operationIndex]?.key;
    if (key === undefined || key === null) {
      // An error we cannot pin on a record: refuse the whole request rather than guess.
      throw new DestinationError(
        `google-customer-match: addOperations reported ${error.code}: ${error.message} outside any operation`,
        'batch',
      );
    }
    reasons.set(key, [...(reasons.get(key) ?? []), `${error.code}: ${error.message}`]);
  }
  return [...reasons].map(([key, list]) => ({ key, reason: list.join('; ') }));
}

// --- Registration ---------------------------------------------------------------------------------

export const googleCustomerMatchDestination = defineDestination({
  type: 'google-customer-match',
  description:
    'Google Ads Customer Match user list: hashed e-mail/phone add/remove as offline user data jobs; remove_all for truncate and new list + swap',
  configSchema: googleCustomerMatchConfigSchema,
  create: (config, context) =>
    createGoogleCustomerMatchDestination(config, context.secrets, {
      throttle: context.throttle,
      listId: context.listId,
    }),
  targets: (config) => [httpTarget('destination.baseUrl', config.baseUrl)],
});
