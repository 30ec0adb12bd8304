import { z } from 'zod';
import type { JsonRequest } from '../kit/http';
import { lazySecret, notAcknowledged, parseAnswer } from '../kit/index';
import type { DestinationContext } from '../kit/module';
import type { BatchResult, Destination, Limits, Member, MemberPage } from '../../core/destination';
import {
  HTTP_LIST_TYPE,
  httpListConfigSchema,
  type HttpListConfigInput,
  type HttpListOperation,
} from './settings';

/**
 * `http-list`: a list behind a small JSON API (see docs and ./emulator.ts).
 *
 *   add       POST /lists/{list}/members:add     {"members":[{"key","attributes"}]} → {"accepted","rejected"}
 *   remove    POST /lists/{list}/members:remove  {"keys":[…]}                       → {"removed","rejected"}
 *   truncate  POST /lists/{list}:truncate                                            → {}
 *   list      GET  /lists/{list}/members?cursor=C&limit=L                            → {"keys","next"}
 *
 * `supports` says which endpoints the list offers, so this one type can stand in for every class
 * of destination API (add-only, add/remove, with or without truncate or read-back): the
 * destination has exactly the methods of the operations supported, and so those capabilities.
 *
 * One batch is one call: `recordsPerCall` is the destination's limit, so the engine never hands
 * over more records than one call takes.
 *
 * Acknowledgement: a call's answer lists the records it rejected (each stays pending with the
 * list's reason), and an addition's answer counts the ones it took (`accepted`; a removal's
 * `removed` counts only keys that were there, so it acknowledges nothing). A count short of what
 * was sent less what was rejected means some records were neither taken nor refused, and the
 * answer does not say which: every record of that call not explicitly rejected stays pending
 * ("not acknowledged"), to go out again. Re-sending is safe (adds and removes are idempotent);
 * committing an unconfirmed record is not.
 */

/** The endpoints, as the run counts their calls. */
export const HTTP_LIST_ENDPOINTS = {
  add: 'add',
  remove: 'remove',
  truncate: 'truncate',
  list: 'listMembers',
  check: 'check',
} as const;

const rejectionsSchema = z
  .array(z.object({ key: z.string(), reason: z.string() }))
  .optional()
  .default([]);
const addResponseSchema = z.object({ accepted: z.number().optional(), rejected: rejectionsSchema });
const removeResponseSchema = z.object({ removed: z.number().optional(), rejected: rejectionsSchema });
const pageResponseSchema = z.object({ keys: z.array(z.string()), next: z.string().nullable().optional() });

export function createHttpListDestination(
  input: HttpListConfigInput,
  context: DestinationContext,
): Destination {
  const config = httpListConfigSchema.parse(input);
  const supported = new Set<HttpListOperation>(config.supports);
  const listId = context.listId ?? config.listId;
  const baseUrl = config.baseUrl.replace(/\/+$/, '');
  const listUrl = `${baseUrl}/lists/${encodeURIComponent(listId)}`;
  const limits: Limits = { recordsPerCall: config.recordsPerCall, callsPerSecond: config.callsPerSecond };
  const token = lazySecret(context.secrets, config.tokenSecret, HTTP_LIST_TYPE);
  const http = context.http({
    // Every list behind one base URL and token shares that account's rate budget.
    account: `http-list:${config.baseUrl}:${config.tokenSecret}`,
    limits,
    defaults: {
      service: HTTP_LIST_TYPE,
      hints: {
        401: `bad token — check the secret named in tokenSecret ('${config.tokenSecret}')`,
        403: `the token may not use list '${listId}' — check the secret named in tokenSecret ('${config.tokenSecret}')`,
        404: `no such endpoint or list — check baseUrl and listId ('${listId}')`,
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
      `${HTTP_LIST_TYPE}: unexpected answer from ${request.method} ${request.url} (is baseUrl an http-list API?)`,
    );
  }

  async function add(members: Member[]): Promise<BatchResult> {
    const { accepted, rejected } = await call(
      HTTP_LIST_ENDPOINTS.add,
      { method: 'POST', url: `${listUrl}/members:add`, body: { members } },
      addResponseSchema,
    );
    const expected = members.length - rejected.length;
    if (accepted === undefined || accepted >= expected) return { rejected };
    const why = `the list took ${accepted} of the ${expected} records sent and not rejected`;
    const unacknowledged = notAcknowledged(
      members.map((m) => m.key),
      rejected,
      why,
    );
    return { rejected: [...rejected, ...unacknowledged] };
  }

  async function remove(keys: string[]): Promise<BatchResult> {
    // `removed` counts the keys that were there: removing one already gone is no failure.
    const { rejected } = await call(
      HTTP_LIST_ENDPOINTS.remove,
      { method: 'POST', url: `${listUrl}/members:remove`, body: { keys } },
      removeResponseSchema,
    );
    return { rejected };
  }

  async function truncate(): Promise<void> {
    await call(HTTP_LIST_ENDPOINTS.truncate, { method: 'POST', url: `${listUrl}:truncate` }, z.object({}));
  }

  async function listMembers(cursor: string | null, limit: number): Promise<MemberPage> {
    const query = new URLSearchParams();
    if (cursor !== null) query.set('cursor', cursor);
    query.set('limit', String(limit));
    const page = await call(
      HTTP_LIST_ENDPOINTS.list,
      { method: 'GET', url: `${listUrl}/members?${query}` },
      pageResponseSchema,
    );
    return { keys: page.keys, next: page.next ?? null };
  }

  /**
   * One authenticated call that changes nothing: the first member, where the list can be read;
   * else an add (or a removal) of no records, which the API answers like any other.
   */
  async function check(): Promise<string> {
    const list = `${HTTP_LIST_TYPE} list '${listId}' at ${baseUrl}`;
    if (supported.has('list')) {
      const page = await call(
        HTTP_LIST_ENDPOINTS.check,
        { method: 'GET', url: `${listUrl}/members?limit=1` },
        pageResponseSchema,
      );
      return `${list} reachable (${page.keys.length === 0 ? 'empty' : 'has members'})`;
    }
    if (supported.has('add') || supported.has('remove')) {
      const [operation, body, schema] = supported.has('add')
        ? (['add', { members: [] }, addResponseSchema] as const)
        : (['remove', { keys: [] }, removeResponseSchema] as const);
      await call(
        HTTP_LIST_ENDPOINTS.check,
        { method: 'POST', url: `${listUrl}/members:${operation}`, body },
        schema,
      );
      return `${list} reachable (an empty ${operation} was accepted)`;
    }
    return `${list} not checked: it supports only truncate, and every call would empty it`;
  }

  return {
    type: HTTP_LIST_TYPE,
    limits,
    // A list that takes no additions has no attributes of ours to update.
    keysOnly: !supported.has('add'),
    ...(supported.has('add') ? { add } : {}),
    ...(supported.has('remove') ? { remove } : {}),
    ...(supported.has('truncate') ? { truncate } : {}),
    ...(supported.has('list') ? { listMembers } : {}),
    check,
    async close() {
      // fetch's global connection pool needs no closing.
    },
  };
}
