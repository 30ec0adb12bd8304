import { z } from 'zod';
import { lazySecret, notAcknowledged, parseAnswer } from '../kit/index';
import type { DestinationContext } from '../kit/module';
import {
  DestinationError,
  type AttributeValue,
  type BatchResult,
  type Destination,
  type Limits,
  type Member,
  type Rejection,
} from '../../core/destination';
import {
  BRAZE_TYPE,
  brazeAttributesConfigSchema,
  RESERVED_ATTRIBUTES,
  type BrazeAttributesConfigInput,
} from './settings';

/**
 * `braze-attributes`: Braze has no list-membership API, so "the list" is the set of users whose
 * membership attribute (one per connector, e.g. `in_deltasync_vip`) is `true`. The dataset key is
 * the Braze `external_id`. Everything goes through `POST /users/track`, ≤ 75 attribute objects
 * per request (the destination's recordsPerCall, so one batch is one request):
 * - add / update attributes: `{ external_id, ...dataset attributes, [flag]: true }`. Braze
 *   creates the user if the external_id is new (its default).
 * - remove: `{ external_id, [flag]: null, _update_existing_only: true }`. Braze documents null as
 *   the way to remove an attribute, which puts an ex-member back exactly where a never-member is
 *   (a segment "flag is true" selects members either way), instead of leaving a `false` behind
 *   on every user that ever left; update-only mode keeps a removal from creating a user. The
 *   dataset attributes stay on the profile: they are the user's data, not the list's.
 * The answer `{ message: 'success', attributes_processed, errors: [{ type, input_array, index }] }`
 * is partial success: indexed objects are record-level rejections (see Acknowledgement below).
 * Braze's pages document the items of `errors` only as "<minor error message>" objects
 * (test/vendor-specs/braze/): `{ type, input_array, index }` is the shape Braze is seen to send.
 * An error without that shape names no object, so the whole request counts as refused — never
 * as accepted: with nothing documented to go on, the connector does not guess.
 * Every field sent is one Braze's pages list (external_id, _update_existing_only, custom
 * attributes, null to remove one), checked by the emulator against the fixture table.
 * No truncate, no list members: Braze's REST API cannot find users by attribute (only
 * `/users/export/segment` exports a dashboard segment, asynchronously, to files — not used here).
 *
 * Acknowledgement: Braze names the objects it refuses (`errors`, by index) but only counts the
 * ones it queued (`attributes_processed`), so a count short of the objects sent less the refused
 * ones, or no count on a `success`, leaves every unrefused object of that request pending ("not
 * acknowledged"). `queued` (maintenance) carries no counts: Braze took the request whole.
 */

/** The one endpoint, as the run counts its calls. */
const ENDPOINT = 'users/track';

/**
 * The external_id check() names in its update-only object without attributes: Braze
 * authenticates and authorizes the call and changes nothing, whether or not that user exists.
 */
const CHECK_EXTERNAL_ID = 'deltasync-check';

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
  context: DestinationContext,
): Destination {
  const config = brazeAttributesConfigSchema.parse(input);
  const restEndpoint = config.restEndpoint.replace(/\/+$/, '');
  const limits: Limits = { recordsPerCall: config.objectsPerRequest, callsPerSecond: config.callsPerSecond };
  const flag = config.membershipAttribute;
  const apiKey = lazySecret(context.secrets, config.apiKeySecret, BRAZE_TYPE);
  const http = context.http({
    // Rate limits are per workspace, and a REST API key belongs to one workspace.
    account: `braze:${restEndpoint}:${config.apiKeySecret}`,
    limits,
    defaults: {
      service: BRAZE_TYPE,
      // Braze sends no Retry-After with its 429s; without its X-RateLimit-Reset header either,
      // rate limits back off from a 1 s base, about the length of Braze's 3-second window.
      baseDelayMs: 1000,
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
    },
  });

  /** One /users/track request, its answer checked. */
  async function track(objects: Record<string, unknown>[]): Promise<TrackResponse> {
    const response = await http.request(ENDPOINT, {
      method: 'POST',
      url: `${restEndpoint}/users/track`,
      body: { attributes: objects },
      headers: { authorization: `Bearer ${apiKey()}` },
    });
    return parseAnswer(
      trackResponseSchema,
      response,
      `${BRAZE_TYPE}: unexpected answer from POST ${restEndpoint}/users/track (is restEndpoint a Braze REST endpoint?)`,
    );
  }

  /** One request for the batch (the engine keeps it within objectsPerRequest). */
  async function send(keys: string[], objects: Record<string, unknown>[]): Promise<BatchResult> {
    return { rejected: rejections(await track(objects), keys) };
  }

  function memberObject(member: Member): Record<string, unknown> {
    for (const name of Object.keys(member.attributes)) {
      if (RESERVED_ATTRIBUTES.includes(name) || name === flag) {
        throw new DestinationError(
          `${BRAZE_TYPE}: the dataset attribute '${name}' clashes with ${name === flag ? 'the membershipAttribute' : 'a Braze identifier field'} — rename it in dataset.attributes`,
          'fatal',
        );
      }
    }
    const attributes: Record<string, AttributeValue> = { ...member.attributes };
    return { external_id: member.key, ...attributes, [flag]: true };
  }

  return {
    type: BRAZE_TYPE,
    limits,

    add: async (members) =>
      send(
        members.map((m) => m.key),
        members.map(memberObject),
      ),

    remove: async (keys) =>
      send(
        keys,
        keys.map((key) => ({ external_id: key, [flag]: null, _update_existing_only: true })),
      ),

    /**
     * Braze has no read that the users.track permission allows, and no list to read: the check
     * is a /users/track call that cannot change anything (an update-only object without
     * attributes), which proves the endpoint, the key and its permission.
     */
    async check() {
      const body = await track([{ external_id: CHECK_EXTERNAL_ID, _update_existing_only: true }]);
      if (body.message !== 'success' && body.message !== 'queued') {
        throw new DestinationError(
          `${BRAZE_TYPE}: /users/track at ${restEndpoint} answered '${body.message}' — check restEndpoint and the key in '${config.apiKeySecret}'`,
          'fatal',
        );
      }
      return `${BRAZE_TYPE}: ${restEndpoint} accepts the key in '${config.apiKeySecret}' for /users/track; members are the users with ${flag} = true`;
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
    throw new DestinationError(`${BRAZE_TYPE}: /users/track answered '${body.message}'`, 'batch');
  }
  const rejected: Rejection[] = [];
  for (const error of body.errors ?? []) {
    const indexed = indexedErrorSchema.safeParse(error);
    const key = indexed.success ? keys[indexed.data.index] : undefined;
    if (!indexed.success || key === undefined) {
      throw new DestinationError(
        `${BRAZE_TYPE}: /users/track reported an error for no object: ${JSON.stringify(error)}`,
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
