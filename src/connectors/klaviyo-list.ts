import { z } from 'zod';
import { createThrottle } from './throttle';
import { realSleep, requestJson, retryPolicy, type JsonRequest } from './http';
import {
  CallTally,
  httpTarget,
  lazySecret,
  notAcknowledged,
  parseAnswer,
  pathSegment,
  secretName,
  serviceUrl,
  type HttpConnectorOptions,
} from './kit';
import { defineDestination } from './module';
import {
  DestinationError,
  type AttributeValue,
  type BatchOutcome,
  type Capabilities,
  type Destination,
  type Limits,
  type Member,
  type MemberPage,
  type Rejection,
  type SecretResolver,
} from './types';

/**
 * `klaviyo-list`: a Klaviyo list whose members are profiles keyed by e-mail (the dataset key is
 * the e-mail address; normalise it, e.g. with normalizeEmail from core/identifiers).
 *
 * How the engine's operations map onto Klaviyo's JSON:API (revision-pinned):
 * - add / update attributes: one bulk import job per ≤ 10,000 profiles (≤ 5 MB), with the list
 *   as the job's relationship: Klaviyo upserts the profiles by e-mail and joins them to the list
 *   in one asynchronous job; we poll it, then read its import errors, whose JSON:API pointers name
 *   the profile that failed (→ record-level rejections). Dataset attributes named like Klaviyo's
 *   profile fields (first_name, phone_number, …) go to those fields, all others to custom
 *   `properties`; a null custom property is removed with `meta.patch_properties.unset` (the bulk
 *   import ignores nulls, so a null profile field leaves the old value in place).
 * - remove: list membership is a relationship between list and profile *ids*, so the e-mails are
 *   first resolved to ids, 100 at a time, with `filter=any(email,[…])` on the list's own profiles
 *   (e-mails not in the list are already removed), then removed ≤ 1,000 ids per DELETE. The
 *   profiles themselves stay.
 * - list members: the list's profiles, 100 per page, cursor from `links.next`.
 * No truncate (Klaviyo has no "empty this list"), and no new-list-and-swap: a new list gets a new
 * id, which every flow, segment and campaign that targets the old list would silently lose.
 *
 * Acknowledgement: a bulk import job names the profiles that failed but only counts the ones it
 * imported (`completed_count`, `failed_count`). Unless its named failures match failed_count and
 * completed_count covers every profile not named, which profiles made it is unknown: all the
 * job's unnamed ones stay pending. A removal's 2xx is its acknowledgement (no per-profile answer).
 */

/** Klaviyo profile attributes besides `email` that are top-level strings, not custom properties. */
export const KLAVIYO_PROFILE_FIELDS = [
  'phone_number',
  'external_id',
  'first_name',
  'last_name',
  'organization',
  'locale',
  'title',
  'image',
] as const;

export const klaviyoListConfigSchema = z.object({
  type: z.literal('klaviyo-list'),
  /** The list's id (six characters, e.g. `Y6nRLr`), from the list's URL or GET /api/lists. */
  listId: pathSegment,
  /** Name of the secret holding the private API key (`pk_…`), never the key itself. */
  apiKeySecret: secretName,
  baseUrl: serviceUrl('baseUrl').default('https://a.klaviyo.com'),
  /** API revision sent in the `revision` header; the contract this destination was written for. */
  revision: z
    .string()
    .regex(/^\d{4}-\d{2}-\d{2}(\.[a-z0-9]+)?$/, 'revision must look like 2026-04-15')
    .default('2026-04-15'),
  /** Profiles per bulk import job: Klaviyo takes up to 10,000. */
  profilesPerJob: z.number().int().min(1).max(10_000).default(10_000),
  /**
   * Write calls per second (bulk imports, job status, removals: Klaviyo's 10/s burst, 150/min
   * steady per endpoint). Lower it when other integrations share the account's quota.
   */
  callsPerSecond: z.number().positive().max(10).default(2.5),
  /**
   * How long to wait for one bulk import job. Keep it under the send activity's 2-minute
   * heartbeat timeout: the engine heartbeats between pages, not while a page's job runs.
   */
  jobTimeoutSeconds: z.number().positive().max(3600).default(90),
});

export type KlaviyoListConfig = z.output<typeof klaviyoListConfigSchema>;
export type KlaviyoListConfigInput = z.input<typeof klaviyoListConfigSchema>;

/**
 * Knobs for tests and tuning; production uses the defaults. Without a throttle, this instance
 * limits itself.
 */
export interface KlaviyoListOptions extends HttpConnectorOptions {
  /** First wait before reading a job's status; later waits double up to maxPollIntervalMs. */
  pollIntervalMs?: number;
  maxPollIntervalMs?: number;
  /** Largest request body (Klaviyo: 5 MB per bulk import). */
  maxPayloadBytes?: number;
  /** Splits spent isolating profiles a bulk import refuses synchronously, per page. */
  maxIsolationSplits?: number;
}

/** Reads (get_list, get_profiles_for_list) have their own, larger quota: 75/s burst, 700/min. */
const READ_CALLS_PER_SECOND = 700 / 60;
const MAX_PROFILE_BYTES = 100_000;
/** Room for the job document around the profiles. */
const ENVELOPE_BYTES = 1024;
/** E-mails per lookup: one page (100) answers the whole lookup. */
const LOOKUP_BATCH = 100;
/** Keeps lookup URLs well under common 8 KB request-line limits. */
const MAX_FILTER_CHARS = 4000;
const REMOVE_BATCH = 1000;
/** A complete profile index: a truncated message must not turn profile 12 into profile 1. */
const PROFILE_POINTER = /\/data\/attributes\/profiles\/data\/(\d+)(?=[/"]|$)/;

type Operation =
  | 'get_list'
  | 'get_profiles_for_list'
  | 'remove_profiles_from_list'
  | 'bulk_import_profiles'
  | 'get_bulk_import_profiles_job'
  | 'get_errors_for_bulk_import_profiles_job';

const READS = new Set<Operation>(['get_list', 'get_profiles_for_list']);
const JOB_OPERATIONS = new Set<Operation>([
  'get_bulk_import_profiles_job',
  'get_errors_for_bulk_import_profiles_job',
]);

const jobSchema = z.object({
  data: z.object({
    id: z.string(),
    attributes: z.object({
      status: z.enum(['queued', 'processing', 'complete', 'cancelled']),
      completed_count: z.number().nullable().optional(),
      failed_count: z.number().nullable().optional(),
    }),
  }),
});
type JobAttributes = z.output<typeof jobSchema>['data']['attributes'];

const linksSchema = z.object({ next: z.string().nullable().optional() }).optional();
const importErrorsSchema = z.object({
  data: z.array(
    z.object({
      attributes: z.object({
        code: z.string(),
        detail: z.string(),
        source: z.object({ pointer: z.string().nullable().optional() }).nullable().optional(),
        original_payload: z.unknown().optional(),
      }),
    }),
  ),
  links: linksSchema,
});
const profilesSchema = z.object({
  data: z.array(
    z.object({ id: z.string(), attributes: z.object({ email: z.string().nullable().optional() }) }),
  ),
  links: linksSchema,
});
const anySchema = z.unknown();

/** A profile ready for a bulk import job. */
interface PreparedProfile {
  key: string;
  resource: Record<string, unknown>;
  bytes: number;
}

export function createKlaviyoListDestination(
  input: KlaviyoListConfigInput,
  secrets: SecretResolver,
  options: KlaviyoListOptions = {},
): Destination {
  const config = klaviyoListConfigSchema.parse(input);
  const baseUrl = config.baseUrl.replace(/\/+$/, '');
  const listPath = `/api/lists/${encodeURIComponent(config.listId)}`;
  const throttle = options.throttle ?? createThrottle();
  const sleep = options.sleep ?? realSleep;
  const maxPayloadBytes = options.maxPayloadBytes ?? 5_000_000;
  const limits: Limits = {
    recordsPerCall: config.profilesPerJob,
    bytesPerCall: maxPayloadBytes,
    callsPerSecond: config.callsPerSecond,
  };
  const readLimits: Limits = { recordsPerCall: LOOKUP_BATCH, callsPerSecond: READ_CALLS_PER_SECOND };
  // Private keys share one quota per Klaviyo account: every list behind the same key does too.
  const account = `klaviyo:${baseUrl}:${config.apiKeySecret}`;
  const apiKey = lazySecret(secrets, config.apiKeySecret, 'klaviyo-list');
  let listVerified = false;

  const hints = {
    401: `the private API key was refused — check the secret named in apiKeySecret ('${config.apiKeySecret}')`,
    403: `the API key lacks a scope (lists:read, lists:write, profiles:read, profiles:write) — check the key in '${config.apiKeySecret}'`,
    404: `Klaviyo has no list '${config.listId}' in the account of the key in '${config.apiKeySecret}' — check listId`,
  };

  /** One API call under the account's throttle and the shared retry policy. */
  async function call<T>(
    tally: CallTally,
    operation: Operation,
    method: JsonRequest['method'],
    path: string,
    schema: z.ZodType<T>,
    body?: unknown,
  ): Promise<T> {
    const key = apiKey();
    const request: JsonRequest = {
      ...retryPolicy(options),
      method,
      url: path.startsWith('http') ? path : `${baseUrl}${path}`,
      body,
      service: 'klaviyo-list',
      headers: {
        authorization: `Klaviyo-API-Key ${key}`,
        revision: config.revision,
        accept: 'application/vnd.api+json',
        ...(body === undefined ? {} : { 'content-type': 'application/vnd.api+json' }),
      },
      hints: JOB_OPERATIONS.has(operation)
        ? { ...hints, 404: 'Klaviyo no longer knows this bulk import job' }
        : hints,
      // The redaction of the authorization header knows Bearer/Basic/Token prefixes, not Klaviyo's
      // own `Klaviyo-API-Key` scheme: a server echoing the bare key must not leak it into a message.
      redactValues: [key],
    };
    const reads = READS.has(operation);
    const response = await tally.measure(operation, () =>
      throttle(reads ? `${account}:reads` : account, reads ? readLimits : limits, () => requestJson(request)),
    );
    return parseAnswer(
      schema,
      response,
      `klaviyo-list: unexpected answer from ${method} ${path} (is baseUrl Klaviyo's API, and revision ${config.revision} supported?)`,
    );
  }

  /** A `links.next` from the server, as a path on our base URL: the key only ever goes there. */
  function sameOrigin(link: string | null | undefined): string | null {
    if (!link) return null;
    const next = new URL(link, baseUrl);
    return `${new URL(baseUrl).origin}${next.pathname}${next.search}`;
  }

  /** A missing list must stop the refresh with a clear message, whatever endpoint would notice. */
  async function verifyList(tally: CallTally): Promise<void> {
    if (listVerified) return;
    await call(tally, 'get_list', 'GET', listPath, anySchema);
    listVerified = true;
  }

  // --- add ----------------------------------------------------------------------------------------

  /** A member as a bulk-import profile, or the reason it cannot be one. */
  function prepare(member: Member): PreparedProfile | Rejection {
    const attributes: Record<string, unknown> = { email: member.key };
    const properties: Record<string, AttributeValue> = {};
    const unset: string[] = [];
    for (const [name, value] of Object.entries(member.attributes)) {
      if (name === 'email') {
        throw new DestinationError(
          "klaviyo-list: the dataset has an attribute named 'email', but the dataset key is the profile's e-mail — drop 'email' from dataset.attributes",
          'fatal',
        );
      }
      if (!(KLAVIYO_PROFILE_FIELDS as readonly string[]).includes(name)) {
        if (value === null) unset.push(name);
        else properties[name] = value;
      } else if (value !== null) {
        if (typeof value !== 'string') {
          return {
            key: member.key,
            reason: `Klaviyo's profile field '${name}' takes text, got ${typeof value}`,
          };
        }
        attributes[name] = value;
      }
    }
    if (Object.keys(properties).length > 0) attributes.properties = properties;
    const resource = {
      type: 'profile',
      attributes,
      ...(unset.length ? { meta: { patch_properties: { unset } } } : {}),
    };
    const bytes = Buffer.byteLength(JSON.stringify(resource));
    if (bytes > MAX_PROFILE_BYTES) {
      return {
        key: member.key,
        reason: `profile is ${bytes} bytes; Klaviyo takes at most 100 KB per profile`,
      };
    }
    return { key: member.key, resource, bytes };
  }

  /** Groups of at most profilesPerJob profiles whose job document fits the payload limit. */
  function jobChunks(profiles: PreparedProfile[]): PreparedProfile[][] {
    const chunks: PreparedProfile[][] = [];
    let chunk: PreparedProfile[] = [];
    let bytes = ENVELOPE_BYTES;
    for (const profile of profiles) {
      if (
        chunk.length > 0 &&
        (chunk.length >= config.profilesPerJob || bytes + profile.bytes + 1 > maxPayloadBytes)
      ) {
        chunks.push(chunk);
        chunk = [];
        bytes = ENVELOPE_BYTES;
      }
      chunk.push(profile);
      bytes += profile.bytes + 1;
    }
    if (chunk.length > 0) chunks.push(chunk);
    return chunks;
  }

  /**
   * Imports a chunk; when Klaviyo refuses the whole request (a 400) because of some profiles,
   * those are set aside and the rest imported. A refusal whose JSON:API pointer names a profile
   * drops that one; otherwise the chunk is halved. `budget` bounds the extra calls: what is left
   * unresolved when it runs out is reported as refused, like any refused batch.
   */
  async function importIsolating(
    tally: CallTally,
    chunk: PreparedProfile[],
    budget: { splits: number },
  ): Promise<Rejection[]> {
    let jobId: string;
    let attributes: JobAttributes;
    try {
      ({ id: jobId, attributes } = await createJob(tally, chunk));
    } catch (err) {
      if (!(err instanceof DestinationError) || err.kind !== 'batch') throw err;
      const reason = refusalReason(err);
      const pointed = Number(PROFILE_POINTER.exec(err.message)?.[1] ?? NaN);
      if (chunk.length === 1) return [{ key: chunk[0]!.key, reason }];
      if (budget.splits <= 0) return chunk.map((p) => ({ key: p.key, reason: `batch refused: ${reason}` }));
      budget.splits--;
      if (pointed >= 0 && pointed < chunk.length) {
        const rest = chunk.filter((_, i) => i !== pointed);
        return [{ key: chunk[pointed]!.key, reason }, ...(await importIsolating(tally, rest, budget))];
      }
      const middle = Math.ceil(chunk.length / 2);
      return [
        ...(await importIsolating(tally, chunk.slice(0, middle), budget)),
        ...(await importIsolating(tally, chunk.slice(middle), budget)),
      ];
    }
    const finished = await waitForJob(tally, jobId, attributes);
    if (finished.status === 'cancelled') {
      throw new DestinationError(`klaviyo-list: bulk import job ${jobId} was cancelled in Klaviyo`, 'batch');
    }
    const rejected = finished.failed_count ? await importErrors(tally, jobId, chunk) : [];
    return [...rejected, ...unconfirmed(jobId, finished, chunk, rejected)];
  }

  /** The profiles of a finished job that its counts do not confirm (see the top of the file). */
  function unconfirmed(
    jobId: string,
    job: JobAttributes,
    chunk: PreparedProfile[],
    rejected: Rejection[],
  ): Rejection[] {
    const named = new Set(rejected.map((r) => r.key)).size;
    const failed = job.failed_count ?? 0;
    const completed = job.completed_count ?? 0;
    const expected = chunk.length - named;
    if (failed <= named && completed >= expected) return [];
    const why = `bulk import job ${jobId} completed ${completed} of the ${expected} profiles it named no failure for (failed_count ${failed}, ${named} named)`;
    const keys = chunk.map((p) => p.key);
    return notAcknowledged(keys, rejected, why);
  }

  async function createJob(tally: CallTally, chunk: PreparedProfile[]) {
    const document = {
      data: {
        type: 'profile-bulk-import-job',
        attributes: { profiles: { data: chunk.map((p) => p.resource) } },
        relationships: { lists: { data: [{ type: 'list', id: config.listId }] } },
      },
    };
    const created = await call(
      tally,
      'bulk_import_profiles',
      'POST',
      '/api/profile-bulk-import-jobs',
      jobSchema,
      document,
    );
    return created.data;
  }

  /** Polls with doubling waits until the job is done or jobTimeoutSeconds of waiting are spent. */
  async function waitForJob(tally: CallTally, jobId: string, initial: JobAttributes): Promise<JobAttributes> {
    const budgetMs = config.jobTimeoutSeconds * 1000;
    let interval = options.pollIntervalMs ?? 1000;
    let waited = 0;
    let attributes = initial;
    while (attributes.status === 'queued' || attributes.status === 'processing') {
      if (waited >= budgetMs) {
        throw new DestinationError(
          `klaviyo-list: bulk import job ${jobId} is still ${attributes.status} after ${config.jobTimeoutSeconds} s; the page is sent again on retry (imports are upserts)`,
          'retryable',
        );
      }
      const wait = Math.min(interval, budgetMs - waited);
      await sleep(wait);
      waited += wait;
      interval = Math.min(interval * 2, options.maxPollIntervalMs ?? 10_000);
      const job = await call(
        tally,
        'get_bulk_import_profiles_job',
        'GET',
        `/api/profile-bulk-import-jobs/${jobId}`,
        jobSchema,
      );
      attributes = job.data.attributes;
    }
    return attributes;
  }

  /** The job's per-profile failures, mapped back to keys through their JSON:API pointers. */
  async function importErrors(
    tally: CallTally,
    jobId: string,
    chunk: PreparedProfile[],
  ): Promise<Rejection[]> {
    const rejected: Rejection[] = [];
    let url: string | null = `/api/profile-bulk-import-jobs/${jobId}/import-errors?page%5Bsize%5D=100`;
    while (url !== null) {
      const page: z.output<typeof importErrorsSchema> = await call(
        tally,
        'get_errors_for_bulk_import_profiles_job',
        'GET',
        url,
        importErrorsSchema,
      );
      for (const { attributes } of page.data) {
        const key = keyOfImportError(attributes, chunk);
        if (key === undefined) {
          // Not knowing which profile failed, no profile of the job can be counted as delivered.
          throw new DestinationError(
            `klaviyo-list: bulk import job ${jobId} reported an error that names no profile: ${attributes.detail}`,
            'batch',
          );
        }
        rejected.push({ key, reason: `${attributes.detail} (${attributes.code})` });
      }
      url = sameOrigin(page.links?.next);
    }
    return rejected;
  }

  // --- remove -------------------------------------------------------------------------------------

  /** Profile ids of those `emails` that are in the list (absent ones need no removal). */
  async function memberIds(tally: CallTally, emails: string[]): Promise<string[]> {
    const ids: string[] = [];
    const query = new URLSearchParams({
      filter: `any(email,${JSON.stringify(emails)})`,
      'fields[profile]': 'email',
      'page[size]': String(LOOKUP_BATCH),
    });
    let url: string | null = `${listPath}/profiles?${query}`;
    while (url !== null) {
      const page: z.output<typeof profilesSchema> = await call(
        tally,
        'get_profiles_for_list',
        'GET',
        url,
        profilesSchema,
      );
      ids.push(...page.data.map((profile) => profile.id));
      url = sameOrigin(page.links?.next);
    }
    return ids;
  }

  return {
    type: 'klaviyo-list',
    capabilities: {
      add: true,
      updateAttributes: true,
      remove: true,
      truncate: false,
      listMembers: true,
      createList: false,
    } satisfies Capabilities,
    limits,

    async add(members: Member[]) {
      const tally = new CallTally();
      const rejected: Rejection[] = [];
      const profiles: PreparedProfile[] = [];
      for (const member of members) {
        const prepared = prepare(member);
        if ('reason' in prepared) rejected.push(prepared);
        else profiles.push(prepared);
      }
      if (profiles.length > 0) await verifyList(tally);
      const budget = { splits: options.maxIsolationSplits ?? 32 };
      for (const chunk of jobChunks(profiles))
        rejected.push(...(await importIsolating(tally, chunk, budget)));
      return tally.outcome(rejected);
    },

    async remove(keys: string[]) {
      const tally = new CallTally();
      if (keys.length > 0) await verifyList(tally);
      const ids: string[] = [];
      for (const group of lookupGroups(keys)) ids.push(...(await memberIds(tally, group)));
      for (let start = 0; start < ids.length; start += REMOVE_BATCH) {
        const data = ids.slice(start, start + REMOVE_BATCH).map((id) => ({ type: 'profile', id }));
        await call(
          tally,
          'remove_profiles_from_list',
          'DELETE',
          `${listPath}/relationships/profiles`,
          anySchema,
          { data },
        );
      }
      return tally.outcome([]);
    },

    async truncate(): Promise<BatchOutcome> {
      throw new DestinationError(
        'klaviyo-list: Klaviyo cannot empty a list in one operation (no truncate)',
        'fatal',
      );
    },

    async listMembers(cursor: string | null, limit: number): Promise<MemberPage> {
      const query = new URLSearchParams({
        'fields[profile]': 'email',
        'page[size]': String(Math.min(Math.max(1, limit), 100)),
      });
      if (cursor !== null) query.set('page[cursor]', cursor);
      const page = await call(
        new CallTally(),
        'get_profiles_for_list',
        'GET',
        `${listPath}/profiles?${query}`,
        profilesSchema,
      );
      // Profiles known only by phone number have no key in an e-mail-keyed list.
      const keys = page.data.flatMap((profile) =>
        profile.attributes.email ? [profile.attributes.email] : [],
      );
      const next = page.links?.next ? new URL(page.links.next).searchParams.get('page[cursor]') : null;
      return { keys, next };
    },

    async close() {
      // fetch's global connection pool needs no closing.
    },
  };
}

/** Lookup batches: ≤ 100 e-mails, and a filter short enough for a URL. */
function lookupGroups(keys: string[]): string[][] {
  const groups: string[][] = [];
  let group: string[] = [];
  let chars = 0;
  for (const key of keys) {
    const size = encodeURIComponent(JSON.stringify(key)).length + 3;
    if (group.length > 0 && (group.length >= LOOKUP_BATCH || chars + size > MAX_FILTER_CHARS)) {
      groups.push(group);
      group = [];
      chars = 0;
    }
    group.push(key);
    chars += size;
  }
  if (group.length > 0) groups.push(group);
  return groups;
}

/** Which profile of the job an import error is about: its pointer, else its original payload. */
function keyOfImportError(
  error: { source?: { pointer?: string | null } | null; original_payload?: unknown },
  chunk: PreparedProfile[],
): string | undefined {
  const index = Number(PROFILE_POINTER.exec(error.source?.pointer ?? '')?.[1] ?? NaN);
  if (index >= 0 && index < chunk.length) return chunk[index]!.key;
  const payload = error.original_payload as { attributes?: { email?: unknown } } | undefined;
  const email = payload?.attributes?.email;
  return chunk.find((profile) => profile.key === email)?.key;
}

/**
 * The JSON:API `detail` of a refusal, for the rejection reason, read from the start of the error
 * document that the message quotes (cut at 200 characters, hence the '…'; a pointer cut off there
 * makes importIsolating halve the chunk instead). The whole document is in the error's `body`;
 * reading it instead would change which refusals are pinned on a profile at once.
 */
function refusalReason(err: DestinationError): string {
  const match = /"detail":"((?:[^"\\]|\\.)*)("?)/.exec(err.message);
  if (!match) return err.message;
  const detail = match[1]!.replace(/\\(.)/g, '$1');
  return `Klaviyo refused the profile: ${detail}${match[2] ? '' : '…'}`;
}

export const klaviyoListDestination = defineDestination({
  type: 'klaviyo-list',
  description:
    'Klaviyo list keyed by e-mail: bulk import jobs upsert profile attributes and join the list, removals by profile id, members read back',
  configSchema: klaviyoListConfigSchema,
  create: (config, context) =>
    createKlaviyoListDestination({ ...config, listId: context.listId ?? config.listId }, context.secrets, {
      throttle: context.throttle,
    }),
  targets: (config) => [httpTarget('destination.baseUrl', config.baseUrl)],
});
