import { z } from 'zod';
import type { JsonRequest } from '../kit/http';
import { lazySecret, notAcknowledged, parseAnswer } from '../kit/index';
import type { DestinationContext } from '../kit/module';
import {
  DestinationError,
  type BatchResult,
  type Destination,
  type Limits,
  type Member,
  type MemberPage,
  type Rejection,
} from '../../core/destination';
import { HUBSPOT_TYPE, hubspotListConfigSchema, type HubspotListConfigInput } from './settings';

/**
 * `hubspot-list`: the members of a MANUAL or SNAPSHOT list in HubSpot (CRM Lists API v3).
 *
 * The dataset key is the HubSpot record id (`hs_object_id` of a contact, company, …): list
 * membership calls carry record ids only, so dataset attributes are never sent (the destination
 * is keys-only: the engine sends no attribute change). Keep `dataset.attributes` empty for it.
 *
 *   add       PUT    /crm/v3/lists/{listId}/memberships/add     [ids] → recordIdsMissing: rejected
 *   remove    PUT    /crm/v3/lists/{listId}/memberships/remove  [ids] → missing records: not members, done
 *   truncate  DELETE /crm/v3/lists/{listId}/memberships        (the list itself stays)
 *   list      GET    /crm/v3/lists/{listId}/memberships?after=&limit=  (at most 250 per page)
 *   check     GET    /crm/v3/lists/{listId}                     the list: name, processingType, size
 *
 * One batch is one membership call: `recordsPerCall` is the destination's limit, so the engine
 * never hands over more ids than one call takes.
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

/** The endpoints, as the run counts their calls. */
export const HUBSPOT_ENDPOINTS = {
  add: 'PUT memberships/add',
  remove: 'PUT memberships/remove',
  truncate: 'DELETE memberships',
  list: 'GET memberships',
  get: 'GET list',
} as const;

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
/** GET /crm/v3/lists/{listId}: the size is `size`, or `hs_list_size` among the list's properties. */
const listResponseSchema = z.object({
  list: z.object({
    name: z.string().optional(),
    processingType: z.string().optional(),
    size: z.number().optional(),
    additionalProperties: z.record(z.string(), z.unknown()).optional(),
  }),
});

export function createHubspotListDestination(
  input: HubspotListConfigInput,
  context: DestinationContext,
): Destination {
  const config = hubspotListConfigSchema.parse(input);
  const baseUrl = config.baseUrl.replace(/\/+$/, '');
  const listId = context.listId ?? config.listId;
  const listUrl = `${baseUrl}/crm/v3/lists/${listId}`;
  const limits: Limits = { recordsPerCall: config.recordsPerCall, callsPerSecond: config.callsPerSecond };
  const token = lazySecret(context.secrets, config.tokenSecret, HUBSPOT_TYPE);
  const http = context.http({
    // Limits are per app and account: every connector using the same token shares one budget.
    account: `hubspot:${config.tokenSecret}@${baseUrl}`,
    limits,
    defaults: {
      service: HUBSPOT_TYPE,
      // HubSpot's window is ten seconds: start backing off at a second, not at a quarter of one.
      baseDelayMs: 1000,
      hints: {
        401: `the token was refused — check the private app token in the secret named in tokenSecret ('${config.tokenSecret}')`,
        403: `the token may not use lists — give the private app the crm.lists.read and crm.lists.write scopes (secret '${config.tokenSecret}')`,
        404: `no list ${listId} in this HubSpot account — check listId (the ILS list id from the list's Details)`,
      },
    },
  });

  async function call<T>(
    endpoint: string,
    request: Pick<JsonRequest, 'method' | 'url' | 'body'>,
    schema: z.ZodType<T>,
  ): Promise<T> {
    const response = await http.request(endpoint, {
      ...request,
      headers: { authorization: `Bearer ${token()}` },
    });
    return parseAnswer(
      schema,
      response,
      `${HUBSPOT_TYPE}: unexpected answer from ${request.method} ${request.url} (is baseUrl HubSpot's API?)`,
    );
  }

  /**
   * Sends record ids to a membership endpoint in one call. Returns the ids HubSpot reported
   * missing (no such record), and the ids left unacknowledged when the answer confirms nothing
   * (see the top of the file).
   */
  async function sendIds(operation: 'add' | 'remove', ids: string[]) {
    const body = await call(
      HUBSPOT_ENDPOINTS[operation],
      { method: 'PUT', url: `${listUrl}/memberships/${operation}`, body: ids },
      updateResponseSchema,
    );
    const doneList = operation === 'add' ? 'recordsIdsAdded' : 'recordIdsRemoved';
    if (body.recordIdsMissing === undefined || body[doneList] === undefined) {
      const why = `HubSpot's answer does not carry both recordIdsMissing and ${doneList}`;
      return { missing: [], unacknowledged: notAcknowledged(ids, [], why) };
    }
    return { missing: body.recordIdsMissing, unacknowledged: [] };
  }

  return {
    type: HUBSPOT_TYPE,
    limits,
    // Membership calls carry no attributes: nothing to update.
    keysOnly: true,

    async add(members: Member[]): Promise<BatchResult> {
      const keys = members.map((m) => m.key);
      const ids = keys.filter((key) => RECORD_ID.test(key));
      const rejected: Rejection[] = keys
        .filter((key) => !RECORD_ID.test(key))
        .map((key) => ({
          key,
          reason: 'not a HubSpot record id: the dataset key must be the record id (hs_object_id)',
        }));
      if (ids.length === 0) return { rejected };
      const { missing, unacknowledged } = await sendIds('add', ids);
      for (const key of new Set(missing)) {
        rejected.push({ key, reason: 'no such HubSpot record (recordIdsMissing): deleted or never created' });
      }
      return { rejected: [...rejected, ...unacknowledged] };
    },

    /**
     * A key that is not a record id, or a record HubSpot no longer has, cannot be a member: its
     * removal is already true and counts as delivered.
     */
    async remove(keys: string[]): Promise<BatchResult> {
      const ids = keys.filter((key) => RECORD_ID.test(key));
      if (ids.length === 0) return { rejected: [] };
      const { unacknowledged } = await sendIds('remove', ids);
      return { rejected: unacknowledged };
    },

    async truncate() {
      await call(
        HUBSPOT_ENDPOINTS.truncate,
        { method: 'DELETE', url: `${listUrl}/memberships` },
        z.unknown(),
      );
    },

    async listMembers(cursor: string | null, limit: number): Promise<MemberPage> {
      const query = new URLSearchParams({ limit: String(Math.max(1, Math.min(limit, MAX_PAGE))) });
      if (cursor !== null) query.set('after', cursor);
      const body = await call(
        HUBSPOT_ENDPOINTS.list,
        { method: 'GET', url: `${listUrl}/memberships?${query}` },
        pageResponseSchema,
      );
      return { keys: body.results, next: body.paging?.next?.after ?? null };
    },

    /**
     * Reads the list itself: the token, its scopes and the list id in one call. A DYNAMIC list
     * is reachable but HubSpot changes its members only through its filters, so it is refused.
     */
    async check() {
      const { list } = await call(HUBSPOT_ENDPOINTS.get, { method: 'GET', url: listUrl }, listResponseSchema);
      const named = list.name === undefined ? '' : ` '${list.name}'`;
      if (list.processingType === 'DYNAMIC') {
        throw new DestinationError(
          `${HUBSPOT_TYPE}: list ${listId}${named} is DYNAMIC: HubSpot sets its members from its filters — point listId at a MANUAL or SNAPSHOT list`,
          'fatal',
        );
      }
      const size = list.size ?? Number(list.additionalProperties?.hs_list_size ?? NaN);
      const details = [
        ...(list.processingType === undefined ? [] : [list.processingType]),
        ...(Number.isFinite(size) ? [`${size} member${size === 1 ? '' : 's'}`] : []),
      ];
      const about = details.length > 0 ? ` (${details.join(', ')})` : '';
      return `${HUBSPOT_TYPE}: list ${listId}${named}${about} reachable with the token in '${config.tokenSecret}'`;
    },

    async close() {
      // fetch's global connection pool needs no closing.
    },
  };
}
