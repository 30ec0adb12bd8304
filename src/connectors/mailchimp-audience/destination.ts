import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { JsonRequest } from '../kit/http';
import { notAcknowledged, parseAnswer, resolveSecret } from '../kit/index';
import type { DestinationContext, HttpClient } from '../kit/module';
import {
  DestinationError,
  type AttributeValue,
  type BatchResult,
  type Destination,
  type Limits,
  type Member,
  type MemberPage,
  type Rejection,
} from '../../core/destination';
import {
  MAILCHIMP_TYPE,
  mailchimpAudienceConfigSchema,
  mailchimpBaseUrl,
  type MailchimpAudienceConfigInput,
} from './settings';
import { MAX_MEMBERS_PAGE } from './vendor-limits';

/**
 * `mailchimp-audience`: the members of a Mailchimp audience (Marketing API 3.0). The dataset key
 * is the e-mail address (store it normalised: Mailchimp compares addresses case-insensitively);
 * dataset attributes become merge fields.
 *
 *   add     POST   /3.0/lists/{list_id}  {"members":[…],"update_existing":true}, ≤ 500 per call
 *           (recordsPerCall: one batch is one call): new contacts get `statusIfNew`, existing
 *           ones keep their status (an unsubscribed contact is never re-subscribed) and get the
 *           merge fields; per-member `errors` in the 200 are record-level rejections.
 *   remove  DELETE /3.0/lists/{list_id}/members/{md5(lower-cased e-mail)}: archives the contact.
 *           Mailchimp has no synchronous batch archive, so a batch is one call per member, run
 *           in parallel under the account's limit of 10 simultaneous connections. A 404 means
 *           the contact is not there (or already archived): already done.
 *   list    GET    /3.0/lists/{list_id}/members?count=&offset=  (≤ 1000 per page, offset cursor)
 *   check   GET    /3.0/lists/{list_id}?fields=…  the audience: name and subscribed count
 *
 * There is no truncate. Mailchimp's one published rate limit is 10 connections in flight per
 * account, answered with 429 and neither Retry-After nor rate-limit headers: `limits.maxConcurrent`
 * makes the worker's shared throttle hold every connector of the account under it, and a 429
 * that still happens is backed off exponentially.
 *
 * Why `status_if_new` on the batch endpoint. The issue was that Mailchimp's generated client (the
 * Swagger document behind @mailchimp/mailchimp_marketing 3.0.80) lists only `status` for batch
 * members, so new contacts might get no status. Mailchimp's current OpenAPI document (the one its
 * API reference and SDKs are generated from; extract and provenance in test/vendor-specs/mailchimp/)
 * lists `status_if_new` on each batch member — "Subscriber's status udpated if they are net new"
 * [sic] — and requires every member to carry `status` or `status_if_new` (an anyOf on the member).
 * `update_existing` is "Whether this batch operation will change existing members' subscription
 * status", which only a `status` can do. So `status_if_new` with `update_existing: true` and no
 * `status` is the documented way to give new contacts a status without touching anyone else's:
 * one call per 500 members. The other documented ways cost more: `status` with
 * `update_existing: false` refuses every existing contact (ERROR_CONTACT_EXISTS), which then needs a
 * second call each to update its merge fields; `PUT .../members/{subscriber_hash}` (which has
 * `status_if_new` too) is one call per member; and `POST /3.0/batches` of such PUTs is
 * asynchronous, answering per operation only in an archive to poll for and download.
 *
 * Acknowledgement: per member. The batch answer lists every member it took, as `new_members` or
 * `updated_members` (with update_existing, an existing contact counts as updated), and every one
 * it refused, in `errors`; a member in none of them is not confirmed and stays pending. An archive
 * is one call per member, so its 204 (or 404: not there) is that member's own answer.
 */

/** The endpoints, as the run counts their calls. */
export const MAILCHIMP_ENDPOINTS = {
  batch: 'POST lists/{list_id}',
  archive: 'DELETE lists/{list_id}/members/{subscriber_hash}',
  audience: 'GET lists/{list_id}',
  members: 'GET lists/{list_id}/members',
} as const;
type EndpointName = (typeof MAILCHIMP_ENDPOINTS)[keyof typeof MAILCHIMP_ENDPOINTS];

/** The id Mailchimp files a contact under: MD5 of the lower-cased address. */
export function subscriberHash(email: string): string {
  return createHash('md5').update(email.toLowerCase()).digest('hex');
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
const audienceSchema = z.object({
  id: z.string(),
  name: z.string().optional(),
  stats: z.object({ member_count: z.number().optional() }).optional(),
});

export function createMailchimpAudienceDestination(
  input: MailchimpAudienceConfigInput,
  context: DestinationContext,
): Destination {
  const config = mailchimpAudienceConfigSchema.parse(input);
  const listId = context.listId ?? config.listId;
  const limits: Limits = { recordsPerCall: config.recordsPerCall, maxConcurrent: config.maxConcurrent };
  let resolved: { baseUrl: string; http: HttpClient } | undefined;
  /** Set once the audience is known to exist (checked only when a member DELETE answers 404). */
  let audienceExists = false;

  /** Where the key's account lives and its HTTP client; resolved on first use, inside the activity. */
  function connection() {
    if (resolved) return resolved;
    const apiKey = resolveSecret(context.secrets, config.apiKeySecret, MAILCHIMP_TYPE);
    const baseUrl = mailchimpBaseUrl(config, apiKey);
    if (!baseUrl) {
      throw new DestinationError(
        `${MAILCHIMP_TYPE}: the API key in secret '${config.apiKeySecret}' has no data centre suffix (like -us6): set dataCenter in the destination`,
        'fatal',
      );
    }
    const http = context.http({
      // One account = one key: every connector using it shares the 10 connections.
      account: `mailchimp:${config.apiKeySecret}@${baseUrl}`,
      limits,
      defaults: {
        service: MAILCHIMP_TYPE,
        // A 429 here means connections in flight, which free up within a second or two.
        baseDelayMs: 500,
        headers: { authorization: `Basic ${Buffer.from(`deltasync:${apiKey}`).toString('base64')}` },
        // The redaction of the Basic header knows its base64, not the key inside it.
        redactValues: [apiKey],
        hints: {
          401: `the API key was refused — check the secret named in apiKeySecret ('${config.apiKeySecret}') and its data centre`,
          403: `the API key may not use audience '${listId}' — check the secret named in apiKeySecret ('${config.apiKeySecret}')`,
          404: `no audience '${listId}' in this Mailchimp account — check listId`,
        },
      },
    });
    resolved = { baseUrl, http };
    return resolved;
  }

  function listUrl(): string {
    return `${connection().baseUrl}/3.0/lists/${encodeURIComponent(listId)}`;
  }

  async function call<T>(
    endpoint: EndpointName,
    request: Pick<JsonRequest, 'method' | 'url' | 'body' | 'classify'>,
    schema: z.ZodType<T>,
  ): Promise<{ status: number; body: T }> {
    const response = await connection().http.request(endpoint, request);
    const body = parseAnswer(
      schema,
      response,
      `${MAILCHIMP_TYPE}: unexpected answer from ${request.method} ${request.url} (is baseUrl Mailchimp's API?)`,
    );
    return { status: response.status, body };
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
   * Archives one contact; false when Mailchimp has no such (unarchived) contact. That 404 is the
   * answer asked for, so it is read as one (and counted as a call that succeeded), not as a failure.
   */
  async function archive(key: string): Promise<boolean> {
    const { status } = await call(
      MAILCHIMP_ENDPOINTS.archive,
      {
        method: 'DELETE',
        url: `${listUrl()}/members/${subscriberHash(key)}`,
        classify: (answer) => (answer.status === 404 ? { kind: 'ok' } : undefined),
      },
      z.unknown(),
    );
    return status !== 404;
  }

  /** A member DELETE answers 404 for a missing contact and for a missing audience alike. */
  async function ensureAudienceExists(): Promise<void> {
    if (audienceExists) return;
    await call(MAILCHIMP_ENDPOINTS.audience, { method: 'GET', url: `${listUrl()}?fields=id` }, z.unknown());
    audienceExists = true;
  }

  return {
    type: MAILCHIMP_TYPE,
    limits,

    /**
     * One batch call; per-member errors become rejections, and members the answer does not
     * mention are not acknowledged (see the top of the file).
     */
    async add(members: Member[]): Promise<BatchResult> {
      if (members.length === 0) return { rejected: [] };
      const { unique, duplicates } = uniqueByAddress(members);
      const body = {
        members: unique.map((member) => ({
          email_address: member.key,
          status_if_new: config.statusIfNew,
          merge_fields: mergeFieldsOf(member),
        })),
        update_existing: true,
      };
      const { body: answer } = await call(
        MAILCHIMP_ENDPOINTS.batch,
        { method: 'POST', url: listUrl(), body },
        batchResponseSchema,
      );
      const byAddress = new Map(unique.map((member) => [member.key.toLowerCase(), member.key]));
      const rejected: Rejection[] = [...duplicates];
      for (const error of answer.errors) {
        const key = byAddress.get((error.email_address ?? '').toLowerCase());
        if (key !== undefined) rejected.push({ key, reason: describeMemberError(error) });
      }
      const taken = new Set(
        [...answer.new_members, ...answer.updated_members].map((m) => m.email_address.toLowerCase()),
      );
      const unmentioned = unique.filter((member) => !taken.has(member.key.toLowerCase())).map((m) => m.key);
      const why = "Mailchimp's answer lists it neither in new_members, updated_members nor errors";
      rejected.push(...notAcknowledged(unmentioned, rejected, why));
      // Mailchimp's own count: the members it was sent, and those it answered with an error.
      return { rejected, report: { received: unique.length, invalid: answer.errors.length } };
    },

    async remove(keys: string[]): Promise<BatchResult> {
      // All at once: the throttle lets maxConcurrent through and queues the rest.
      const results = await Promise.allSettled(keys.map((key) => archive(key)));
      throwWorstFailure(results);
      const rejected: Rejection[] = [];
      results.forEach((result, i) => {
        if (result.status === 'fulfilled') return;
        // Only 'batch' refusals are left here: one member refused, the others done.
        rejected.push({ key: keys[i]!, reason: (result.reason as Error).message });
      });
      if (results.some((r) => r.status === 'fulfilled' && !r.value)) await ensureAudienceExists();
      return { rejected };
    },

    async listMembers(cursor: string | null, limit: number): Promise<MemberPage> {
      const offset = cursor === null ? 0 : Number(cursor);
      const count = Math.max(1, Math.min(limit, MAX_MEMBERS_PAGE));
      const query = new URLSearchParams({
        count: String(count),
        offset: String(offset),
        fields: 'members.email_address,members.status,total_items',
      });
      const { body: page } = await call(
        MAILCHIMP_ENDPOINTS.members,
        { method: 'GET', url: `${listUrl()}/members?${query}` },
        membersResponseSchema,
      );
      const keys = page.members.filter((m) => m.status !== 'archived').map((m) => m.email_address);
      return { keys, next: offset + count < page.total_items ? String(offset + count) : null };
    },

    /** Reads the audience: the key, its data centre and the audience id in one call. */
    async check() {
      const query = new URLSearchParams({ fields: 'id,name,stats.member_count' });
      const { body: audience } = await call(
        MAILCHIMP_ENDPOINTS.audience,
        { method: 'GET', url: `${listUrl()}?${query}` },
        audienceSchema,
      );
      audienceExists = true;
      const name = audience.name === undefined ? '' : ` '${audience.name}'`;
      const count = audience.stats?.member_count;
      const members = count === undefined ? '' : ` (${count} subscribed member${count === 1 ? '' : 's'})`;
      return `${MAILCHIMP_TYPE}: audience ${listId}${name}${members} reachable at ${connection().baseUrl} with the key in '${config.apiKeySecret}'`;
    },

    async close() {
      // fetch's global connection pool needs no closing.
    },
  };
}

/** A fatal or retryable failure of any member fails the batch; 'batch' ones are that member's alone. */
function throwWorstFailure(results: PromiseSettledResult<boolean>[]): void {
  const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  const worst =
    failures.find((e) => !(e instanceof DestinationError) || e.kind === 'fatal') ??
    failures.find((e) => e instanceof DestinationError && e.kind === 'retryable');
  // Every call of the batch, the failed ones included, was counted as it was made.
  if (worst !== undefined) throw worst;
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
