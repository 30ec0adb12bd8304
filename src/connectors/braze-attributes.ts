import { z } from 'zod';
import { createThrottle } from './throttle';
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
 * `braze-attributes`: Braze has no list-membership API, so "the list" is the set of users whose
 * membership attribute (one per connector, e.g. `in_deltasync_vip`) is `true`. The dataset key is
 * the Braze `external_id`. Everything goes through `POST /users/track`, ≤ 75 attribute objects
 * per request:
 * - add / update attributes: `{ external_id, ...dataset attributes, [flag]: true }`. Braze
 *   creates the user if the external_id is new (its default).
 * - remove: `{ external_id, [flag]: null, _update_existing_only: true }`. Braze documents null as
 *   the way to remove an attribute, which puts an ex-member back exactly where a never-member is
 *   (a segment "flag is true" selects members either way), instead of leaving a `false` behind
 *   on every user that ever left; update-only mode keeps a removal from creating a user. The
 *   dataset attributes stay on the profile: they are the user's data, not the list's.
 * The answer `{ message: 'success', attributes_processed, errors: [{ type, input_array, index }] }`
 * is partial success: indexed objects are record-level rejections (see Acknowledgement below).
 * No truncate, no list members: Braze's REST API cannot find users by attribute (only
 * `/users/export/segment` exports a dashboard segment, asynchronously, to files — not used here).
 *
 * Acknowledgement: Braze names the objects it refuses (`errors`, by index) but only counts the
 * ones it queued (`attributes_processed`), so a count short of the objects sent less the refused
 * ones, or no count on a `success`, leaves every unrefused object of that request pending ("not
 * acknowledged"). `queued` (maintenance) carries no counts: Braze took the request whole.
 */

/** Keys of an attributes object that identify the user or steer the request. */
const RESERVED = ['external_id', 'braze_id', 'user_alias', '_update_existing_only', 'push_token_import'];

export const brazeAttributesConfigSchema = z.object({
  type: z.literal('braze-attributes'),
  /** The workspace's REST endpoint, e.g. https://rest.iad-01.braze.com (per Braze instance). */
  restEndpoint: serviceUrl('restEndpoint'),
  /** Name of the secret holding the REST API key (needs `users.track`), never the key itself. */
  apiKeySecret: secretName,
  /** Custom attribute marking membership; give every connector its own (in_deltasync_<connector>). */
  membershipAttribute: z
    .string()
    .min(1)
    .max(255)
    .refine((name) => !name.startsWith('$'), 'custom attribute names cannot start with $')
    .refine((name) => !RESERVED.includes(name), 'membershipAttribute cannot be an identifier field'),
  /** Attribute objects per request: 75, or 50 on Monthly Active Users CY 24-25 contracts. */
  objectsPerRequest: z.number().int().min(1).max(75).default(75),
  /** /users/track allows 3,000 requests per 3 seconds per workspace. */
  callsPerSecond: z.number().positive().max(1000).default(1000),
});

export type BrazeAttributesConfig = z.output<typeof brazeAttributesConfigSchema>;
export type BrazeAttributesConfigInput = z.input<typeof brazeAttributesConfigSchema>;

/**
 * Knobs for tests and tuning; production uses the defaults. Without a throttle, this instance
 * limits itself.
 */
export type BrazeAttributesOptions = HttpConnectorOptions;

const ENDPOINT = 'users/track';

const trackResponseSchema = z.object({
  message: z.string(),
  attributes_processed: z.number().optional(),
  errors: z.array(z.unknown()).optional(),
});
type TrackResponse = z.output<typeof trackResponseSchema>;

/** A non-fatal error Braze ties to one object of the request. */
const indexedErrorSchema = z.object({
  type: z.string(),
  input_array: z.literal('attributes'),
  index: z.number().int(),
});

export function createBrazeAttributesDestination(
  input: BrazeAttributesConfigInput,
  secrets: SecretResolver,
  options: BrazeAttributesOptions = {},
): Destination {
  const config = brazeAttributesConfigSchema.parse(input);
  const restEndpoint = config.restEndpoint.replace(/\/+$/, '');
  const throttle = options.throttle ?? createThrottle();
  const limits: Limits = { recordsPerCall: config.objectsPerRequest, callsPerSecond: config.callsPerSecond };
  // Rate limits are per workspace, and a REST API key belongs to one workspace.
  const account = `braze:${restEndpoint}:${config.apiKeySecret}`;
  const flag = config.membershipAttribute;
  const apiKey = lazySecret(secrets, config.apiKeySecret, 'braze-attributes');

  /** One /users/track request under the workspace's throttle and the shared retry policy. */
  async function track(objects: Record<string, unknown>[]) {
    const request: JsonRequest = {
      // Braze sends no Retry-After with its 429s; without its X-RateLimit-Reset header either,
      // rate limits back off from a 1 s base, about the length of Braze's 3-second window.
      ...retryPolicy(options, { baseDelayMs: 1000 }),
      method: 'POST',
      url: `${restEndpoint}/users/track`,
      body: { attributes: objects },
      service: 'braze-attributes',
      headers: { authorization: `Bearer ${apiKey()}` },
      // A 429 says when the window resets (epoch seconds): wait exactly that long.
      classify: ({ status, headers }) => {
        if (status !== 429) return undefined;
        const waitMs = Number(headers.get('x-ratelimit-reset')) * 1000 - Date.now();
        return Number.isFinite(waitMs) && waitMs > 0
          ? { kind: 'rateLimited', retryAfterMs: waitMs }
          : undefined;
      },
      hints: {
        401: `the REST API key was refused — check the secret named in apiKeySecret ('${config.apiKeySecret}')`,
        403: `the key lacks the users.track permission, or the workspace is inactive — check the key in '${config.apiKeySecret}'`,
        404: `Braze does not know this REST API key here — check restEndpoint (${restEndpoint}) is the key's instance, and the key in '${config.apiKeySecret}'`,
      },
    };
    const response = await throttle(account, limits, () => requestJson(request));
    const body = parseAnswer(
      trackResponseSchema,
      response,
      `braze-attributes: unexpected answer from POST ${restEndpoint}/users/track (is restEndpoint a Braze REST endpoint?)`,
    );
    return { body, apiCalls: response.apiCalls, rateLimitWaits: response.rateLimitWaits };
  }

  /** Sends objects in requests of objectsPerRequest; non-fatal errors become rejections. */
  async function send(keys: string[], objects: Record<string, unknown>[]): Promise<BatchOutcome> {
    const tally = new CallTally();
    const rejected: Rejection[] = [];
    for (let start = 0; start < objects.length; start += config.objectsPerRequest) {
      const chunkKeys = keys.slice(start, start + config.objectsPerRequest);
      const chunk = objects.slice(start, start + config.objectsPerRequest);
      const result = await tally.measure(ENDPOINT, () => track(chunk));
      rejected.push(...rejections(result.body, chunkKeys));
    }
    return tally.outcome(rejected);
  }

  function memberObject(member: Member): Record<string, unknown> {
    for (const name of Object.keys(member.attributes)) {
      if (RESERVED.includes(name) || name === flag) {
        throw new DestinationError(
          `braze-attributes: the dataset attribute '${name}' clashes with ${name === flag ? 'the membershipAttribute' : 'a Braze identifier field'} — rename it in dataset.attributes`,
          'fatal',
        );
      }
    }
    const attributes: Record<string, AttributeValue> = { ...member.attributes };
    return { external_id: member.key, ...attributes, [flag]: true };
  }

  return {
    type: 'braze-attributes',
    capabilities: {
      add: true,
      updateAttributes: true,
      remove: true,
      truncate: false,
      listMembers: false,
      createList: false,
    } satisfies Capabilities,
    limits,

    async add(members: Member[]) {
      return send(
        members.map((m) => m.key),
        members.map(memberObject),
      );
    },

    async remove(keys: string[]) {
      return send(
        keys,
        keys.map((key) => ({ external_id: key, [flag]: null, _update_existing_only: true })),
      );
    },

    async truncate(): Promise<BatchOutcome> {
      throw new DestinationError('braze-attributes: Braze has no list to empty (no truncate)', 'fatal');
    },

    async listMembers(): Promise<MemberPage> {
      throw new DestinationError(
        'braze-attributes: Braze cannot list users by attribute through its REST API (no list members)',
        'fatal',
      );
    },

    async close() {
      // fetch's global connection pool needs no closing.
    },
  };
}

/**
 * Record-level rejections from a 2xx answer. `success` (or `queued`, during Braze maintenance)
 * with indexed errors is partial success; an error that names no object leaves no way to tell
 * which users were updated, so the whole request counts as refused. Objects neither refused nor
 * covered by `attributes_processed` are not acknowledged (see the top of the file).
 */
function rejections(body: TrackResponse, keys: string[]): Rejection[] {
  if (body.message !== 'success' && body.message !== 'queued') {
    throw new DestinationError(`braze-attributes: /users/track answered '${body.message}'`, 'batch');
  }
  const rejected: Rejection[] = [];
  for (const error of body.errors ?? []) {
    const indexed = indexedErrorSchema.safeParse(error);
    const key = indexed.success ? keys[indexed.data.index] : undefined;
    if (!indexed.success || key === undefined) {
      throw new DestinationError(
        `braze-attributes: /users/track reported an error for no object: ${JSON.stringify(error)}`,
        'batch',
      );
    }
    rejected.push({ key, reason: indexed.data.type });
  }
  if (body.message === 'queued') return rejected;
  const expected = keys.length - new Set(rejected.map((r) => r.key)).size;
  const processed = body.attributes_processed;
  if (processed === undefined || processed < expected) {
    const why =
      processed === undefined
        ? `no attributes_processed count for the ${expected} attribute objects Braze did not refuse`
        : `Braze processed ${processed} of the ${expected} attribute objects it did not refuse`;
    rejected.push(...notAcknowledged(keys, rejected, why));
  }
  return rejected;
}

export const brazeAttributesDestination = defineDestination({
  type: 'braze-attributes',
  description:
    'Braze users (external_id) flagged by a membership attribute through /users/track, with the dataset attributes',
  configSchema: brazeAttributesConfigSchema,
  create: (config, context) =>
    createBrazeAttributesDestination(config, context.secrets, { throttle: context.throttle }),
  targets: (config) => [httpTarget('destination.restEndpoint', config.restEndpoint)],
});
