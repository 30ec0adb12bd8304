import { z } from 'zod';
import { createCallSpacer, requestJson, retryPolicy, type JsonRequest } from './http';
import {
  httpTarget,
  lazySecret,
  parseAnswer,
  pathSegment,
  secretName,
  serviceUrl,
  type HttpConnectorOptions,
} from './kit';
import { defineDestination } from './module';
import {
  DestinationError,
  type BatchOutcome,
  type CallRetries,
  type Capabilities,
  type Destination,
  type Member,
  type MemberPage,
  type SecretResolver,
} from './types';

/**
 * `http-list`: a list behind a small JSON API (see docs and src/emulators/http-list-emulator.ts).
 * `supports` says which endpoints the list offers, so this one type can stand in for every class
 * of destination API (add-only, add/remove, with or without truncate or read-back).
 */

export const httpListOperations = ['add', 'remove', 'truncate', 'list'] as const;
export type HttpListOperation = (typeof httpListOperations)[number];

export const httpListConfigSchema = z.object({
  type: z.literal('http-list'),
  baseUrl: serviceUrl('baseUrl'),
  listId: pathSegment,
  /** Name of the secret holding the bearer token, never the token itself. */
  tokenSecret: secretName,
  supports: z
    .array(z.enum(httpListOperations))
    .min(1)
    .default([...httpListOperations]),
  recordsPerCall: z.number().int().min(1).max(100_000).default(1000),
  callsPerSecond: z.number().positive().optional(),
});

export type HttpListConfig = z.output<typeof httpListConfigSchema>;
export type HttpListConfigInput = z.input<typeof httpListConfigSchema>;

/**
 * Knobs for tests and tuning; production uses the defaults. Without a throttle, calls are spaced
 * per instance.
 */
export type HttpListOptions = HttpConnectorOptions;

const rejectionsSchema = z
  .array(z.object({ key: z.string(), reason: z.string() }))
  .optional()
  .default([]);
const addResponseSchema = z.object({ accepted: z.number().optional(), rejected: rejectionsSchema });
const removeResponseSchema = z.object({ removed: z.number().optional(), rejected: rejectionsSchema });
const pageResponseSchema = z.object({ keys: z.array(z.string()), next: z.string().nullable().optional() });

export function createHttpListDestination(
  input: HttpListConfigInput,
  secrets: SecretResolver,
  options: HttpListOptions = {},
): Destination {
  const config = httpListConfigSchema.parse(input);
  const supported = new Set<HttpListOperation>(config.supports);
  const listUrl = `${config.baseUrl.replace(/\/+$/, '')}/lists/${encodeURIComponent(config.listId)}`;
  const limits = { recordsPerCall: config.recordsPerCall, callsPerSecond: config.callsPerSecond };
  const spacer =
    config.callsPerSecond && !options.throttle
      ? createCallSpacer(config.callsPerSecond, options.sleep)
      : undefined;
  // Every list behind one base URL and token shares that account's rate budget.
  const account = `http-list:${config.baseUrl}:${config.tokenSecret}`;
  const token = lazySecret(secrets, config.tokenSecret, 'http-list');

  const capabilities: Capabilities = {
    add: supported.has('add'),
    updateAttributes: supported.has('add'),
    remove: supported.has('remove'),
    truncate: supported.has('truncate'),
    listMembers: supported.has('list'),
    createList: false,
  };

  function ensureSupported(operation: HttpListOperation): void {
    if (!supported.has(operation)) {
      throw new DestinationError(
        `http-list: list '${config.listId}' is configured without '${operation}' (supports: ${config.supports.join(', ')})`,
        'fatal',
      );
    }
  }

  async function call<T>(method: 'GET' | 'POST', url: string, body: unknown, schema: z.ZodType<T>) {
    const request: JsonRequest = {
      ...retryPolicy(options),
      method,
      url,
      body,
      service: 'http-list',
      headers: { authorization: `Bearer ${token()}` },
      hints: {
        401: `bad token — check the secret named in tokenSecret ('${config.tokenSecret}')`,
        403: `the token may not use list '${config.listId}' — check the secret named in tokenSecret ('${config.tokenSecret}')`,
        404: `no such endpoint or list — check baseUrl and listId ('${config.listId}')`,
      },
      beforeAttempt: spacer,
    };
    const response = options.throttle
      ? await options.throttle(account, limits, () => requestJson(request))
      : await requestJson(request);
    const parsed = parseAnswer(
      schema,
      response,
      `http-list: unexpected answer from ${method} ${url} (is baseUrl an http-list API?)`,
    );
    return {
      body: parsed,
      apiCalls: response.apiCalls,
      rateLimitWaits: response.rateLimitWaits,
      retriedCalls: response.retriedCalls,
    };
  }

  /**
   * Sends `items` in calls of at most recordsPerCall, adding up what each call reports.
   *
   * Acknowledgements: a call's answer lists the records it rejected (each stays pending with the
   * list's reason), and an addition's answer counts the ones it took (`accepted`; a removal's
   * `removed` counts only keys that were there, so it acknowledges nothing). A count short of what was sent less what was rejected means some records were
   * neither taken nor refused, and the answer does not say which: every record of that call
   * not explicitly rejected stays pending ("not acknowledged"), to go out again. Re-sending is
   * safe (adds and removes are idempotent); committing an unconfirmed record is not.
   */
  async function inBatches<T>(
    endpoint: 'add' | 'remove',
    items: T[],
    keyOf: (item: T) => string,
    send: (chunk: T[]) => Promise<{
      body: { rejected: BatchOutcome['rejected']; taken: number | undefined };
      apiCalls: number;
      rateLimitWaits: number;
      retriedCalls: number;
    }>,
  ): Promise<BatchOutcome> {
    const retries = { rateLimited: 0, retried: 0 };
    const outcome: BatchOutcome = { rejected: [], apiCalls: 0, rateLimitWaits: 0 };
    for (let start = 0; start < items.length; start += config.recordsPerCall) {
      const chunk = items.slice(start, start + config.recordsPerCall);
      const result = await send(chunk);
      const { rejected, taken } = result.body;
      outcome.rejected.push(...rejected);
      const expected = chunk.length - rejected.length;
      if (taken !== undefined && taken < expected) {
        const refused = new Set(rejected.map((r) => r.key));
        const reason = `not acknowledged: the list took ${taken} of the ${expected} records sent and not rejected`;
        for (const item of chunk)
          if (!refused.has(keyOf(item))) outcome.rejected.push({ key: keyOf(item), reason });
      }
      outcome.apiCalls += result.apiCalls;
      outcome.rateLimitWaits += result.rateLimitWaits;
      retries.rateLimited += result.rateLimitWaits;
      retries.retried += result.retriedCalls;
    }
    return withRetries(outcome, endpoint, retries);
  }

  return {
    type: 'http-list',
    capabilities,
    limits,

    async add(members: Member[]) {
      ensureSupported('add');
      return inBatches(
        'add',
        members,
        (member) => member.key,
        async (chunk) => {
          const result = await call('POST', `${listUrl}/members:add`, { members: chunk }, addResponseSchema);
          return { ...result, body: { rejected: result.body.rejected, taken: result.body.accepted } };
        },
      );
    },

    async remove(keys: string[]) {
      ensureSupported('remove');
      return inBatches(
        'remove',
        keys,
        (key) => key,
        async (chunk) => {
          const result = await call(
            'POST',
            `${listUrl}/members:remove`,
            { keys: chunk },
            removeResponseSchema,
          );
          // `removed` counts the keys that were there: removing one already gone is no failure.
          return { ...result, body: { rejected: result.body.rejected, taken: undefined } };
        },
      );
    },

    async truncate() {
      ensureSupported('truncate');
      const result = await call('POST', `${listUrl}:truncate`, undefined, z.object({}));
      const outcome = { rejected: [], apiCalls: result.apiCalls, rateLimitWaits: result.rateLimitWaits };
      return withRetries(outcome, 'truncate', {
        rateLimited: result.rateLimitWaits,
        retried: result.retriedCalls,
      });
    },

    async listMembers(cursor: string | null, limit: number): Promise<MemberPage> {
      ensureSupported('list');
      const query = new URLSearchParams();
      if (cursor !== null) query.set('cursor', cursor);
      query.set('limit', String(limit));
      const result = await call('GET', `${listUrl}/members?${query}`, undefined, pageResponseSchema);
      return { keys: result.body.keys, next: result.body.next ?? null };
    },

    async close() {
      // fetch's global connection pool needs no closing.
    },
  };
}

/** The outcome, saying which of its calls were retried (when any were). */
function withRetries(outcome: BatchOutcome, endpoint: string, retries: CallRetries): BatchOutcome {
  if (retries.rateLimited + retries.retried === 0) return outcome;
  return { ...outcome, retriesByEndpoint: { [endpoint]: retries } };
}

export const httpListDestination = defineDestination({
  type: 'http-list',
  description: 'generic HTTP list API: add/remove, truncate and list members, as declared in `supports`',
  configSchema: httpListConfigSchema,
  create: (config, context) =>
    createHttpListDestination({ ...config, listId: context.listId ?? config.listId }, context.secrets, {
      throttle: context.throttle,
    }),
  targets: (config) => [httpTarget('destination.baseUrl', config.baseUrl)],
});
