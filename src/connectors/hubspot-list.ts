import { z } from 'zod';
import { requestJson, retryPolicy, type JsonRequest } from './http';
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
import { createThrottle } from './throttle';
import {
  type Capabilities,
  type Destination,
  type Limits,
  type Member,
  type MemberPage,
  type Rejection,
  type SecretResolver,
} from './types';

/**
 * `hubspot-list`: the members of a MANUAL or SNAPSHOT list in HubSpot (CRM Lists API v3).
 *
 * The dataset key is the HubSpot record id (`hs_object_id` of a contact, company, …): list
 * membership calls carry record ids only, so dataset attributes are never sent. Keep
 * `dataset.attributes` empty for this destination; attribute changes would only re-add members
 * that are already there (harmless, but calls spent for nothing).
 *
 *   add       PUT    /crm/v3/lists/{listId}/memberships/add     [ids] → recordIdsMissing: rejected
 *   remove    PUT    /crm/v3/lists/{listId}/memberships/remove  [ids] → missing records: not members, done
 *   truncate  DELETE /crm/v3/lists/{listId}/memberships        (the list itself stays)
 *   list      GET    /crm/v3/lists/{listId}/memberships?after=&limit=  (at most 250 per page)
 *
 * Rate limits: private apps get 100 (Free/Starter) or 190 (Professional/Enterprise) calls per
 * rolling ten seconds. The default of 10 calls per second fits every tier; raise `callsPerSecond`
 * to 19 on Professional/Enterprise. A 429 (body `policyName: TEN_SECONDLY_ROLLING` or `DAILY`)
 * is waited out: Retry-After when HubSpot sends one, otherwise exponential backoff from 1 s.
 *
 * Acknowledgement: per record id, from the synchronous answer's lists. HubSpot names the ids it
 * added or removed and the ones it has no record of (`recordIdsMissing`); an id in neither was
 * already in (or out of) the list, which is the state asked for, as with Redis's SADD. An answer
 * without those lists confirms nothing: every id of that call stays pending.
 */

export const hubspotListConfigSchema = z.object({
  type: z.literal('hubspot-list'),
  /** The ILS list id (the list's Details in HubSpot), not the legacy v1 list id. */
  listId: z.string().regex(/^\d+$/, 'listId must be the numeric ILS list id (see the list’s Details)'),
  /** Name of the secret holding the private app's access token, never the token itself. */
  tokenSecret: secretName,
  baseUrl: serviceUrl('baseUrl').default('https://api.hubapi.com'),
  /** HubSpot publishes no limit for membership calls; 10,000 ids is about 110 kB of JSON. */
  recordsPerCall: z.number().int().min(1).max(100_000).default(10_000),
  /** Spacing of calls for this account (shared by every connector using the same token). */
  callsPerSecond: z.number().positive().max(100).default(10),
});

export type HubspotListConfig = z.output<typeof hubspotListConfigSchema>;
export type HubspotListConfigInput = z.input<typeof hubspotListConfigSchema>;

/**
 * Knobs for tests and tuning; production uses the defaults. Without a throttle, this instance gets
 * its own.
 */
export type HubspotListOptions = HttpConnectorOptions;

/** The endpoints, as reported in `callsByEndpoint`. */
export const HUBSPOT_ENDPOINTS = {
  add: 'PUT memberships/add',
  remove: 'PUT memberships/remove',
  truncate: 'DELETE memberships',
  list: 'GET memberships',
} as const;

const SERVICE = 'hubspot-list';
/** Record ids are positive integers; HubSpot would not recognise '0042' as record 42. */
const RECORD_ID = /^[1-9]\d*$/;
/** HubSpot documents 250 as the largest memberships page. */
const MAX_PAGE = 250;

// Optional, without a default: an answer that lacks a list must not read as an empty one.
const recordIdList = z.array(z.union([z.string(), z.number()]).transform(String)).optional();
const updateResponseSchema = z.object({
  recordIdsMissing: recordIdList,
  recordIdsRemoved: recordIdList,
  recordsIdsAdded: recordIdList,
});
/** Older API versions return bare ids; current ones `{recordId, membershipTimestamp}`. */
const pageResponseSchema = z.object({
  results: z.array(
    z.union([
      z
        .object({ recordId: z.union([z.string(), z.number()]).transform(String) })
        .transform((r) => r.recordId),
      z.union([z.string(), z.number()]).transform(String),
    ]),
  ),
  paging: z.object({ next: z.object({ after: z.string() }).optional() }).optional(),
});

export function createHubspotListDestination(
  input: HubspotListConfigInput,
  secrets: SecretResolver,
  options: HubspotListOptions = {},
): Destination {
  const config = hubspotListConfigSchema.parse(input);
  const baseUrl = config.baseUrl.replace(/\/+$/, '');
  const listUrl = `${baseUrl}/crm/v3/lists/${config.listId}`;
  const limits: Limits = { recordsPerCall: config.recordsPerCall, callsPerSecond: config.callsPerSecond };
  // Limits are per app and account: every connector using the same token shares one budget.
  const account = `hubspot:${config.tokenSecret}@${baseUrl}`;
  const throttle = options.throttle ?? createThrottle();
  const token = lazySecret(secrets, config.tokenSecret, SERVICE);

  async function call<T>(request: Pick<JsonRequest, 'method' | 'url' | 'body'>, schema: z.ZodType<T>) {
    const response = await throttle(account, limits, () =>
      requestJson({
        // HubSpot's window is ten seconds: start backing off at a second, not at a quarter of one.
        ...retryPolicy(options, { baseDelayMs: 1000 }),
        ...request,
        service: SERVICE,
        headers: { authorization: `Bearer ${token()}` },
        hints: {
          401: `the token was refused — check the private app token in the secret named in tokenSecret ('${config.tokenSecret}')`,
          403: `the token may not use lists — give the private app the crm.lists.read and crm.lists.write scopes (secret '${config.tokenSecret}')`,
          404: `no list ${config.listId} in this HubSpot account — check listId (the ILS list id from the list's Details)`,
        },
      }),
    );
    const body = parseAnswer(
      schema,
      response,
      `${SERVICE}: unexpected answer from ${request.method} ${request.url} (is baseUrl HubSpot's API?)`,
    );
    return { body, apiCalls: response.apiCalls, rateLimitWaits: response.rateLimitWaits };
  }

  /**
   * Sends record ids to a membership endpoint in calls of at most recordsPerCall ids. Returns the
   * ids HubSpot reported missing (no such record), the ids of calls whose answer acknowledged
   * nothing (see the top of the file), and what the calls cost.
   */
  async function sendIds(endpoint: 'add' | 'remove', ids: string[]) {
    const tally = new CallTally();
    const missing: string[] = [];
    const unacknowledged: Rejection[] = [];
    const doneList = endpoint === 'add' ? 'recordsIdsAdded' : 'recordIdsRemoved';
    for (let start = 0; start < ids.length; start += config.recordsPerCall) {
      const chunk = ids.slice(start, start + config.recordsPerCall);
      const result = await call(
        { method: 'PUT', url: `${listUrl}/memberships/${endpoint}`, body: chunk },
        updateResponseSchema,
      );
      tally.count(HUBSPOT_ENDPOINTS[endpoint], result);
      const { recordIdsMissing } = result.body;
      if (recordIdsMissing === undefined || result.body[doneList] === undefined) {
        const why = `HubSpot's answer does not carry both recordIdsMissing and ${doneList}`;
        unacknowledged.push(...notAcknowledged(chunk, [], why));
        continue;
      }
      missing.push(...recordIdsMissing);
    }
    return { outcome: tally.outcome([]), missing, unacknowledged };
  }

  const capabilities: Capabilities = {
    add: true,
    remove: true,
    truncate: true,
    listMembers: true,
    // Membership calls carry no attributes: nothing to update.
    updateAttributes: false,
    createList: false,
  };

  return {
    type: SERVICE,
    capabilities,
    limits,

    async add(members: Member[]) {
      const keys = members.map((m) => m.key);
      const ids = keys.filter((key) => RECORD_ID.test(key));
      const rejected: Rejection[] = keys
        .filter((key) => !RECORD_ID.test(key))
        .map((key) => ({
          key,
          reason: 'not a HubSpot record id: the dataset key must be the record id (hs_object_id)',
        }));
      if (ids.length === 0) return { rejected, apiCalls: 0, rateLimitWaits: 0 };
      const { outcome, missing, unacknowledged } = await sendIds('add', ids);
      for (const key of new Set(missing)) {
        rejected.push({ key, reason: 'no such HubSpot record (recordIdsMissing): deleted or never created' });
      }
      return { ...outcome, rejected: [...rejected, ...unacknowledged] };
    },

    /**
     * A key that is not a record id, or a record HubSpot no longer has, cannot be a member: its
     * removal is already true and counts as delivered.
     */
    async remove(keys: string[]) {
      const ids = keys.filter((key) => RECORD_ID.test(key));
      if (ids.length === 0) return { rejected: [], apiCalls: 0, rateLimitWaits: 0 };
      const { outcome, unacknowledged } = await sendIds('remove', ids);
      return { ...outcome, rejected: unacknowledged };
    },

    async truncate() {
      const result = await call({ method: 'DELETE', url: `${listUrl}/memberships` }, z.unknown());
      return {
        rejected: [],
        apiCalls: result.apiCalls,
        rateLimitWaits: result.rateLimitWaits,
        callsByEndpoint: { [HUBSPOT_ENDPOINTS.truncate]: result.apiCalls },
      };
    },

    async listMembers(cursor: string | null, limit: number): Promise<MemberPage> {
      const query = new URLSearchParams({ limit: String(Math.max(1, Math.min(limit, MAX_PAGE))) });
      if (cursor !== null) query.set('after', cursor);
      const result = await call(
        { method: 'GET', url: `${listUrl}/memberships?${query}` },
        pageResponseSchema,
      );
      return { keys: result.body.results, next: result.body.paging?.next?.after ?? null };
    },

    async close() {
      // fetch's global connection pool needs no closing.
    },
  };
}

export const hubspotListDestination = defineDestination({
  type: 'hubspot-list',
  description:
    'HubSpot list (CRM Lists v3, MANUAL/SNAPSHOT): add/remove record ids, truncate, list members; key = record id',
  configSchema: hubspotListConfigSchema,
  create: (config, context) =>
    createHubspotListDestination({ ...config, listId: context.listId ?? config.listId }, context.secrets, {
      throttle: context.throttle,
    }),
  targets: (config) => [httpTarget('destination.baseUrl', config.baseUrl)],
});
