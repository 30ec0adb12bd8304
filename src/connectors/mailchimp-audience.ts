import { createHash } from 'node:crypto';
import { z } from 'zod';
import { HttpDestinationError, requestJson, retryPolicy, type JsonRequest } from './http';
import {
  CallTally,
  httpTarget,
  notAcknowledged,
  parseAnswer,
  resolveSecret,
  secretName,
  serviceUrl,
  type HttpConnectorOptions,
} from './kit';
import { defineDestination } from './module';
import { createThrottle } from './throttle';
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
 * `mailchimp-audience`: the members of a Mailchimp audience (Marketing API 3.0). The dataset key
 * is the e-mail address (store it normalised: Mailchimp compares addresses case-insensitively);
 * dataset attributes become merge fields.
 *
 *   add     POST   /3.0/lists/{list_id}  {"members":[…],"update_existing":true}, ≤ 500 per call:
 *           new contacts get `statusIfNew`, existing ones keep their status (an unsubscribed
 *           contact is never re-subscribed) and get the merge fields; per-member `errors` in the
 *           200 are record-level rejections.
 *   remove  DELETE /3.0/lists/{list_id}/members/{md5(lower-cased e-mail)}: archives the contact.
 *           Mailchimp has no synchronous batch archive, so a batch is one call per member, run
 *           in parallel under the account's limit of 10 simultaneous connections. A 404 means
 *           the contact is not there (or already archived): already done.
 *   list    GET    /3.0/lists/{list_id}/members?count=&offset=  (≤ 1000 per page, offset cursor)
 *
 * There is no truncate. Mailchimp's one published rate limit is 10 connections in flight per
 * account, answered with 429 and neither Retry-After nor rate-limit headers: `limits.maxConcurrent`
 * makes the worker's shared throttle hold every connector of the account under it, and a 429
 * that still happens is backed off exponentially.
 *
 * Acknowledgement: per member. The batch answer lists every member it took, as `new_members` or
 * `updated_members` (with update_existing, an existing contact counts as updated), and every one
 * it refused, in `errors`; a member in none of them is not confirmed and stays pending. An archive
 * is one call per member, so its 204 (or 404: not there) is that member's own answer.
 */

const SETTABLE_STATUS = ['subscribed', 'pending', 'transactional'] as const;

export const mailchimpAudienceConfigSchema = z.object({
  type: z.literal('mailchimp-audience'),
  /** The audience id (Audience > Settings > Audience name and defaults). */
  listId: z.string().regex(/^[0-9a-z]+$/i, 'listId must be the audience id, e.g. a1b2c3d4e5'),
  /** Name of the secret holding the API key (`…-us6`), never the key itself. */
  apiKeySecret: secretName,
  /** The data centre (`us6`); by default the suffix of the API key. */
  dataCenter: z
    .string()
    .regex(/^[a-z]+\d+$/, 'dataCenter looks like us6')
    .optional(),
  /** Overrides https://{dataCenter}.api.mailchimp.com (a proxy, or the emulator in tests). */
  baseUrl: serviceUrl('baseUrl').optional(),
  /** Dataset attribute → merge tag. Without it, each attribute goes to its upper-cased name. */
  mergeFields: z
    .record(z.string(), z.string().regex(/^[A-Z][A-Z0-9_]*$/, 'merge tags are upper case, e.g. FNAME'))
    .optional(),
  /** The status a contact new to the audience gets. */
  statusIfNew: z.enum(SETTABLE_STATUS).default('subscribed'),
  /** Members per batch call; Mailchimp accepts at most 500. */
  recordsPerCall: z.number().int().min(1).max(500).default(500),
  /** Simultaneous connections for this account; Mailchimp allows 10. */
  maxConcurrent: z.number().int().min(1).max(10).default(10),
});

export type MailchimpAudienceConfig = z.output<typeof mailchimpAudienceConfigSchema>;
export type MailchimpAudienceConfigInput = z.input<typeof mailchimpAudienceConfigSchema>;

/**
 * Knobs for tests and tuning; production uses the defaults. Without a throttle, this instance gets
 * its own.
 */
export type MailchimpAudienceOptions = HttpConnectorOptions;

/** The endpoints, as reported in `callsByEndpoint`. */
export const MAILCHIMP_ENDPOINTS = {
  batch: 'POST lists/{list_id}',
  archive: 'DELETE lists/{list_id}/members/{subscriber_hash}',
  audience: 'GET lists/{list_id}',
  members: 'GET lists/{list_id}/members',
} as const;
type EndpointName = (typeof MAILCHIMP_ENDPOINTS)[keyof typeof MAILCHIMP_ENDPOINTS];

const SERVICE = 'mailchimp-audience';
const MAX_PAGE = 1000;

/** The id Mailchimp files a contact under: MD5 of the lower-cased address. */
export function subscriberHash(email: string): string {
  return createHash('md5').update(email.toLowerCase()).digest('hex');
}

/** Where the account lives: `baseUrl`, else the data centre from the config or the key's suffix. */
export function mailchimpBaseUrl(
  config: Pick<MailchimpAudienceConfig, 'baseUrl' | 'dataCenter'>,
  apiKey: string,
) {
  if (config.baseUrl) return config.baseUrl.replace(/\/+$/, '');
  const dataCenter = config.dataCenter ?? /-([a-z]+\d+)$/.exec(apiKey)?.[1];
  if (!dataCenter) return undefined;
  return `https://${dataCenter}.api.mailchimp.com`;
}

/** Merge field values are strings or numbers; null clears a field. */
export function mergeValue(value: AttributeValue): string | number {
  if (value === null) return '';
  if (typeof value === 'number') return value;
  return String(value);
}

/** A member the batch took; absent lists read as empty, so their members stay unacknowledged. */
const takenMembers = z
  .array(z.object({ email_address: z.string() }).loose())
  .optional()
  .default([]);
const batchResponseSchema = z.object({
  new_members: takenMembers,
  updated_members: takenMembers,
  errors: z
    .array(z.object({ email_address: z.string().optional(), error: z.string().optional() }).loose())
    .optional()
    .default([]),
});
const membersResponseSchema = z.object({
  members: z.array(z.object({ email_address: z.string(), status: z.string().optional() })),
  total_items: z.number(),
});

export function createMailchimpAudienceDestination(
  input: MailchimpAudienceConfigInput,
  secrets: SecretResolver,
  options: MailchimpAudienceOptions = {},
): Destination {
  const config = mailchimpAudienceConfigSchema.parse(input);
  const limits: Limits = { recordsPerCall: config.recordsPerCall, maxConcurrent: config.maxConcurrent };
  const throttle = options.throttle ?? createThrottle();
  let resolved: { apiKey: string; baseUrl: string; account: string } | undefined;
  /** Set once the audience is known to exist (checked only when a member DELETE answers 404). */
  let audienceExists = false;

  /** The key, where it lives and its throttle account; resolved on first use, inside the activity. */
  function connection() {
    if (resolved) return resolved;
    const apiKey = resolveSecret(secrets, config.apiKeySecret, SERVICE);
    const baseUrl = mailchimpBaseUrl(config, apiKey);
    if (!baseUrl) {
      throw new DestinationError(
        `${SERVICE}: the API key in secret '${config.apiKeySecret}' has no data centre suffix (like -us6): set dataCenter in the destination`,
        'fatal',
      );
    }
    // One account = one key: every connector using it shares the 10 connections.
    resolved = { apiKey, baseUrl, account: `mailchimp:${config.apiKeySecret}@${baseUrl}` };
    return resolved;
  }

  function listUrl(): string {
    return `${connection().baseUrl}/3.0/lists/${encodeURIComponent(config.listId)}`;
  }

  async function call<T>(
    endpoint: EndpointName,
    request: Pick<JsonRequest, 'method' | 'url' | 'body'>,
    schema: z.ZodType<T>,
    calls: CallTally,
  ): Promise<T> {
    const { apiKey, account } = connection();
    const response = await calls.measure(endpoint, () =>
      throttle(account, limits, () =>
        requestJson({
          // A 429 here means connections in flight, which free up within a second or two.
          ...retryPolicy(options, { baseDelayMs: 500 }),
          ...request,
          service: SERVICE,
          headers: { authorization: `Basic ${Buffer.from(`deltasync:${apiKey}`).toString('base64')}` },
          // The redaction of the Basic header knows its base64, not the key inside it.
          redactValues: [apiKey],
          hints: {
            401: `the API key was refused — check the secret named in apiKeySecret ('${config.apiKeySecret}') and its data centre`,
            403: `the API key may not use audience '${config.listId}' — check the secret named in apiKeySecret ('${config.apiKeySecret}')`,
            404: `no audience '${config.listId}' in this Mailchimp account — check listId`,
          },
        }),
      ),
    );
    return parseAnswer(
      schema,
      response,
      `${SERVICE}: unexpected answer from ${request.method} ${request.url} (is baseUrl Mailchimp's API?)`,
    );
  }

  /** Merge fields for one member, per the configured (or default) attribute → tag mapping. */
  function mergeFieldsOf(member: Member): Record<string, string | number> {
    const fields: Record<string, string | number> = {};
    for (const [attribute, value] of Object.entries(member.attributes)) {
      const tag = config.mergeFields
        ? config.mergeFields[attribute]
        : attribute.toUpperCase().replace(/[^A-Z0-9_]/g, '_');
      if (tag !== undefined) fields[tag] = mergeValue(value);
    }
    return fields;
  }

  /**
   * One batch call of at most recordsPerCall members; per-member errors become rejections, and
   * members the answer does not mention are not acknowledged (see the top of the file).
   */
  async function addChunk(chunk: Member[], calls: CallTally): Promise<Rejection[]> {
    const { unique, duplicates } = uniqueByAddress(chunk);
    const body = {
      members: unique.map((member) => ({
        email_address: member.key,
        status_if_new: config.statusIfNew,
        merge_fields: mergeFieldsOf(member),
      })),
      update_existing: true,
    };
    const response = await call(
      MAILCHIMP_ENDPOINTS.batch,
      { method: 'POST', url: listUrl(), body },
      batchResponseSchema,
      calls,
    );
    const byAddress = new Map(unique.map((member) => [member.key.toLowerCase(), member.key]));
    const rejected: Rejection[] = [...duplicates];
    for (const error of response.errors) {
      const key = byAddress.get((error.email_address ?? '').toLowerCase());
      if (key !== undefined) rejected.push({ key, reason: describeMemberError(error) });
    }
    const taken = new Set(
      [...response.new_members, ...response.updated_members].map((m) => m.email_address.toLowerCase()),
    );
    const unmentioned = unique.filter((member) => !taken.has(member.key.toLowerCase())).map((m) => m.key);
    const why = "Mailchimp's answer lists it neither in new_members, updated_members nor errors";
    rejected.push(...notAcknowledged(unmentioned, rejected, why));
    return rejected;
  }

  /** Archives one contact; false when Mailchimp has no such (unarchived) contact. */
  async function archive(key: string, calls: CallTally): Promise<boolean> {
    const url = `${listUrl()}/members/${subscriberHash(key)}`;
    try {
      await call(MAILCHIMP_ENDPOINTS.archive, { method: 'DELETE', url }, z.unknown(), calls);
      return true;
    } catch (err) {
      if (err instanceof DestinationError && err.status === 404) return false;
      throw err;
    }
  }

  /** A member DELETE answers 404 for a missing contact and for a missing audience alike. */
  async function ensureAudienceExists(calls: CallTally): Promise<void> {
    if (audienceExists) return;
    await call(
      MAILCHIMP_ENDPOINTS.audience,
      { method: 'GET', url: `${listUrl()}?fields=id` },
      z.unknown(),
      calls,
    );
    audienceExists = true;
  }

  const capabilities: Capabilities = {
    add: true,
    remove: true,
    truncate: false,
    listMembers: true,
    updateAttributes: true,
    createList: false,
  };

  return {
    type: SERVICE,
    capabilities,
    limits,

    async add(members: Member[]) {
      const calls = new CallTally();
      const rejected: Rejection[] = [];
      for (let start = 0; start < members.length; start += config.recordsPerCall) {
        rejected.push(...(await addChunk(members.slice(start, start + config.recordsPerCall), calls)));
      }
      return calls.outcome(rejected);
    },

    async remove(keys: string[]) {
      const calls = new CallTally();
      // All at once: the throttle lets maxConcurrent through and queues the rest.
      const results = await Promise.allSettled(keys.map((key) => archive(key, calls)));
      throwFirstFailure(results, calls);
      const rejected: Rejection[] = [];
      results.forEach((result, i) => {
        if (result.status === 'fulfilled') return;
        // Only 'batch' refusals are left here: one member refused, the others done.
        rejected.push({ key: keys[i]!, reason: (result.reason as Error).message });
      });
      if (results.some((r) => r.status === 'fulfilled' && !r.value)) await ensureAudienceExists(calls);
      return calls.outcome(rejected);
    },

    async truncate(): Promise<BatchOutcome> {
      throw new DestinationError(`${SERVICE}: Mailchimp audiences cannot be emptied in one call`, 'fatal');
    },

    async listMembers(cursor: string | null, limit: number): Promise<MemberPage> {
      const offset = cursor === null ? 0 : Number(cursor);
      const count = Math.max(1, Math.min(limit, MAX_PAGE));
      const query = new URLSearchParams({
        count: String(count),
        offset: String(offset),
        fields: 'members.email_address,members.status,total_items',
      });
      const page = await call(
        MAILCHIMP_ENDPOINTS.members,
        { method: 'GET', url: `${listUrl()}/members?${query}` },
        membersResponseSchema,
        new CallTally(),
      );
      const keys = page.members.filter((m) => m.status !== 'archived').map((m) => m.email_address);
      return { keys, next: offset + count < page.total_items ? String(offset + count) : null };
    },

    async close() {
      // fetch's global connection pool needs no closing.
    },
  };
}

/** A fatal or retryable failure of any member fails the batch; 'batch' ones are that member's alone. */
function throwFirstFailure(results: PromiseSettledResult<boolean>[], calls: CallTally): void {
  const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  const worst =
    failures.find((e) => !(e instanceof DestinationError) || e.kind === 'fatal') ??
    failures.find((e) => e instanceof DestinationError && e.kind === 'retryable');
  if (worst === undefined) return;
  if (worst instanceof HttpDestinationError) {
    // Report the whole batch's cost, not just the failed request's.
    throw new HttpDestinationError(
      worst.message,
      worst.kind,
      worst.status,
      calls.apiCalls,
      calls.rateLimitWaits,
    );
  }
  throw worst;
}

/**
 * Mailchimp files contacts under the lower-cased address, so 'Ann@x.com' and 'ann@x.com' in one
 * batch are the same contact: the first is sent, the others rejected with a reason.
 */
function uniqueByAddress(members: Member[]): { unique: Member[]; duplicates: Rejection[] } {
  const first = new Map<string, string>();
  const unique: Member[] = [];
  const duplicates: Rejection[] = [];
  for (const member of members) {
    const address = member.key.toLowerCase();
    const earlier = first.get(address);
    if (earlier === undefined) {
      first.set(address, member.key);
      unique.push(member);
    } else {
      duplicates.push({
        key: member.key,
        reason: `same Mailchimp contact as '${earlier}' (addresses are compared case-insensitively)`,
      });
    }
  }
  return { unique, duplicates };
}

/** "Your merge fields were invalid. (FNAME: Please enter a value) [ERROR_GENERIC]" */
function describeMemberError(error: Record<string, unknown>): string {
  let reason = typeof error.error === 'string' ? error.error : 'refused by Mailchimp';
  if (typeof error.field === 'string')
    reason += ` (${error.field}: ${String(error.field_message ?? 'invalid')})`;
  if (typeof error.error_code === 'string') reason += ` [${error.error_code}]`;
  return reason;
}

export const mailchimpAudienceDestination = defineDestination({
  type: 'mailchimp-audience',
  description:
    'Mailchimp audience: batch upsert with merge fields (500 per call), archive, list members; key = e-mail; 10 connections',
  configSchema: mailchimpAudienceConfigSchema,
  create: (config, context) =>
    createMailchimpAudienceDestination(
      { ...config, listId: context.listId ?? config.listId },
      context.secrets,
      {
        throttle: context.throttle,
      },
    ),
  // Without baseUrl or dataCenter, the data centre is the API key's suffix: read the key.
  targets: (config, secrets) => {
    const url =
      config.baseUrl || config.dataCenter
        ? mailchimpBaseUrl(config, '')
        : mailchimpBaseUrl(config, resolveSecret(secrets, config.apiKeySecret, `${SERVICE}: apiKeySecret`));
    return url ? [httpTarget(config.baseUrl ? 'destination.baseUrl' : 'destination.dataCenter', url)] : [];
  },
});
