import { z } from 'zod';
import type { Answer, JsonRequest, Verdict } from '../kit/http';
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
import { MEMBERSHIPS_PAGE_MAX, TRUNCATE_MAX_MEMBERS } from './vendor-limits';

/**
 * `hubspot-list`: the members of a MANUAL or SNAPSHOT list in HubSpot (CRM Lists API v3), as
 * HubSpot's OpenAPI document describes it (test/vendor-specs/hubspot/crm-lists-v3.openapi.json).
 *
 * The dataset key is the HubSpot record id (`hs_object_id` of a contact, company, …): list
 * membership calls carry record ids only, so dataset attributes are never sent (the destination
 * is keys-only: the engine sends no attribute change). Keep `dataset.attributes` empty for it.
 *
 *   add       PUT    /crm/v3/lists/{listId}/memberships/add     [ids] → recordIdsMissing: rejected
 *   remove    PUT    /crm/v3/lists/{listId}/memberships/remove  [ids] → missing records: not members, done
 *   truncate  GET    /crm/v3/lists/{listId}                     its size, then
 *             DELETE /crm/v3/lists/{listId}/memberships        (the list itself stays) — which
 *             "only supports lists that have less than 100,000 memberships": at or over that,
 *             the members are read a page at a time and removed recordsPerCall at a time
 *   list      GET    /crm/v3/lists/{listId}/memberships?after=&limit=  (at most 250 per page)
 *   check     GET    /crm/v3/lists/{listId}                     the list: name, processingType, size
 *
 * One batch is one membership call: `recordsPerCall` is the destination's limit, so the engine
 * never hands over more ids than one call takes.
 *
 * Rate limits: private apps get 100 (Free/Starter) or 190 (Professional/Enterprise) calls per
 * rolling ten seconds. The default of 10 calls per second fits every tier; raise `callsPerSecond`
 * to 19 on Professional/Enterprise. A 429 with `policyName: TEN_SECONDLY_ROLLING` is waited out:
 * Retry-After when HubSpot sends one, otherwise exponential backoff from 1 s. A 429 with
 * `policyName: DAILY` cannot pass before the daily limit resets, at midnight in the account's
 * time zone (`accountTimeZone`; https://developers.hubspot.com/apisbytier): it is not retried, the
 * run pauses until then (QuotaExhaustedError).
 *
 * Acknowledgement: per record id, from the synchronous answer's lists. HubSpot names the ids it
 * added or removed and the ones it has no record of (`recordIdsMissing`); the spec's schema spells
 * the added ids `recordsIdsAdded` (sic), its examples `recordIdsAdded`: either is read. An id in neither was
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
const MAX_PAGE = MEMBERSHIPS_PAGE_MAX;

// Optional, without a default: an answer that lacks a list must not read as an empty one.
const recordIdList = z.array(z.union([z.string(), z.number()]).transform(String)).optional();
/**
 * MembershipsUpdateResponse. The spec's schema names the added ids `recordsIdsAdded` (sic, and
 * required); the examples of the same document, for /add and /add-and-remove, `recordIdsAdded`.
 * Whichever HubSpot sends is read.
 */
const updateResponseSchema = z
  .object({
    recordIdsMissing: recordIdList,
    recordIdsRemoved: recordIdList,
    recordsIdsAdded: recordIdList,
    recordIdsAdded: recordIdList,
  })
  .transform(({ recordsIdsAdded, recordIdsAdded, ...rest }) => ({
    ...rest,
    recordsIdsAdded: recordsIdsAdded ?? recordIdsAdded,
  }));
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
/** GET /crm/v3/lists/{listId} (ListFetchResponse): the list's name, kind and `size`. */
const listResponseSchema = z.object({
  list: z.object({
    name: z.string().optional(),
    processingType: z.string().optional(),
    size: z.number().optional(),
  }),
});

/** A 429's body names the limit that was hit (https://developers.hubspot.com/docs/api/usage-details). */
const rateLimitBodySchema = z.object({ policyName: z.string() });

export function createHubspotListDestination(
  input: HubspotListConfigInput,
  context: DestinationContext,
): Destination {
  const config = hubspotListConfigSchema.parse(input);
  const baseUrl = config.baseUrl.replace(/\/+$/, '');
  const listId = context.listId ?? config.listId;
  const listUrl = `${baseUrl}/crm/v3/lists/${listId}`;
  const limits: Limits = {
    recordsPerCall: config.recordsPerCall,
    callsPerSecond: config.callsPerSecond,
    truncateMaxMembers: TRUNCATE_MAX_MEMBERS,
  };
  const token = lazySecret(context.secrets, config.tokenSecret, HUBSPOT_TYPE);
  const http = context.http({
    // Limits are per app and account: every connector using the same token shares one budget.
    account: `hubspot:${config.tokenSecret}@${baseUrl}`,
    limits,
    defaults: {
      service: HUBSPOT_TYPE,
      // HubSpot's window is ten seconds: start backing off at a second, not at a quarter of one.
      baseDelayMs: 1000,
      classify: (answer) => dailyQuota(answer, config.accountTimeZone),
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
      const named = operation === 'add' ? 'recordsIdsAdded (or recordIdsAdded)' : doneList;
      const why = `HubSpot's answer does not carry both recordIdsMissing and ${named}`;
      return { missing: [], unacknowledged: notAcknowledged(ids, [], why) };
    }
    return { missing: body.recordIdsMissing, unacknowledged: [] };
  }

  async function listPage(cursor: string | null, limit: number): Promise<MemberPage> {
    const query = new URLSearchParams({ limit: String(Math.max(1, Math.min(limit, MAX_PAGE))) });
    if (cursor !== null) query.set('after', cursor);
    const body = await call(
      HUBSPOT_ENDPOINTS.list,
      { method: 'GET', url: `${listUrl}/memberships?${query}` },
      pageResponseSchema,
    );
    return { keys: body.results, next: body.paging?.next?.after ?? null };
  }

  const readList = () => call(HUBSPOT_ENDPOINTS.get, { method: 'GET', url: listUrl }, listResponseSchema);

  /**
   * Empties a list too large for the one DELETE: reads up to recordsPerCall members from the
   * start of the list, removes them in one call, and starts over until a read finds none.
   * Starting over (rather than following the cursor) does not depend on how HubSpot's opaque
   * paging token behaves once the records before it are gone.
   */
  async function removeAllInBatches(): Promise<void> {
    const sent = new Set<string>();
    for (;;) {
      const batch: string[] = [];
      let cursor: string | null = null;
      do {
        const page = await listPage(cursor, Math.min(MAX_PAGE, config.recordsPerCall - batch.length));
        batch.push(...page.keys);
        cursor = page.next;
      } while (cursor !== null && batch.length < config.recordsPerCall);
      if (batch.length === 0) return;
      const ids = batch.slice(0, config.recordsPerCall);
      if (ids.every((id) => sent.has(id))) {
        throw new DestinationError(
          `${HUBSPOT_TYPE}: list ${listId} still lists ${ids.length} members already removed — HubSpot may still be processing the removals; the truncate is tried again`,
          'retryable',
        );
      }
      for (const id of ids) sent.add(id);
      await sendIds('remove', ids);
    }
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

    /**
     * One DELETE for a list under TRUNCATE_MAX_MEMBERS, as HubSpot supports; paged removals at or
     * over it (the planner avoids truncate there, but a list can grow past it meanwhile). A DELETE
     * HubSpot refuses as a bad request (the list grew past the limit since its size was read)
     * falls back to the removals too.
     */
    async truncate() {
      const { list } = await readList();
      if (list.size !== undefined && list.size >= TRUNCATE_MAX_MEMBERS) return removeAllInBatches();
      try {
        await call(
          HUBSPOT_ENDPOINTS.truncate,
          { method: 'DELETE', url: `${listUrl}/memberships` },
          z.unknown(),
        );
      } catch (err) {
        if (!(err instanceof DestinationError && err.kind === 'batch' && err.status === 400)) throw err;
        await removeAllInBatches();
      }
    },

    listMembers: listPage,

    /**
     * Reads the list itself: the token, its scopes and the list id in one call. A DYNAMIC list
     * is reachable but HubSpot changes its members only through its filters, so it is refused.
     */
    async check() {
      const { list } = await readList();
      const named = list.name === undefined ? '' : ` '${list.name}'`;
      if (list.processingType === 'DYNAMIC') {
        throw new DestinationError(
          `${HUBSPOT_TYPE}: list ${listId}${named} is DYNAMIC: HubSpot sets its members from its filters — point listId at a MANUAL or SNAPSHOT list`,
          'fatal',
        );
      }
      const size = list.size ?? NaN;
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

/**
 * A 429 for HubSpot's DAILY policy: the daily limit "resets at midnight based on the time zone
 * setting of the HubSpot account" (https://developers.hubspot.com/apisbytier), so no retry can pass
 * before then and the run pauses until that midnight. Every other answer (TEN_SECONDLY_ROLLING
 * included) takes the shared policy: waited out and retried.
 */
function dailyQuota(answer: Answer, timeZone: string): Verdict | undefined {
  if (answer.status !== 429) return undefined;
  const body = rateLimitBodySchema.safeParse(answer.body);
  if (!body.success || body.data.policyName !== 'DAILY') return undefined;
  const resumeAt = nextMidnightIn(timeZone, Date.now());
  return {
    kind: 'quotaExhausted',
    resumeAt,
    reason: `HubSpot's DAILY API limit is used up (429, policyName DAILY); it resets at midnight in the account's time zone (${timeZone}), at ${resumeAt.toISOString()}`,
  };
}

/**
 * The first instant of the day after `from`'s day in `timeZone` (IANA): its midnight, or, where
 * the clocks jump over midnight (summer time starting at 00:00), the instant the day begins.
 */
export function nextMidnightIn(timeZone: string, from: number): Date {
  const dayOf = new Intl.DateTimeFormat('en-CA', {
    timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
  });
  const [year, month, day] = dayOf.format(from).split('-').map(Number) as [number, number, number];
  // Midnight of the next day as if the zone were UTC, moved by the zone's offset around then.
  const wallClock = Date.UTC(year, month - 1, day + 1);
  let at = wallClock - offsetOf(timeZone, wallClock);
  at = wallClock - offsetOf(timeZone, at);
  const nextDay = new Date(wallClock).toISOString().slice(0, 10);
  // In a gap at midnight the estimate lands in the evening before: find where the day starts.
  if (dayOf.format(at) < nextDay) {
    let low = at;
    let high = at + 6 * 3600_000;
    while (high - low > 1) {
      const middle = Math.floor((low + high) / 2);
      if (dayOf.format(middle) < nextDay) low = middle;
      else high = middle;
    }
    at = high;
  }
  return new Date(at);
}

/** How far `timeZone`'s wall clock is ahead of UTC at the instant `at`, in milliseconds. */
function offsetOf(timeZone: string, at: number): number {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
  }).formatToParts(at);
  const part = (type: string) => Number(parts.find((p) => p.type === type)!.value);
  const wall = Date.UTC(
    part('year'),
    part('month') - 1,
    part('day'),
    part('hour'),
    part('minute'),
    part('second'),
  );
  return wall - Math.floor(at / 1000) * 1000;
}
