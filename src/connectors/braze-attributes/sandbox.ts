import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { z } from 'zod';
import { sandboxTarget, watchVendorCalls, type ContractTarget, type SandboxHarness } from '../kit/contract';
import { requestJson } from '../kit/http';
import { createDestinationContext } from '../kit/module';
import { createBrazeAttributesDestination } from './destination';
import { BRAZE_TYPE, brazeAttributesConfigSchema } from './settings';

/**
 * The destination contract against a real Braze workspace (`npm run test:sandbox
 * braze-attributes`), never part of the default run, and not runnable here (no internet).
 *
 * "The list" is the users whose membership attribute is true, and Braze cannot list users by
 * attribute: the harness reads back the users it handed out as keys, through
 * `POST /users/export/ids` (50 external_ids a request, their custom_attributes), and keeps those
 * flagged. Braze processes /users/track asynchronously and its reads are eventually consistent,
 * so a read is repeated until two in a row agree. close() clears the flag of every user the run
 * used and deletes those users (`POST /users/delete`), leaving the workspace as it was. Braze
 * cannot be told to answer 429 or 5xx, to acknowledge short, nor to refuse a given user, so
 * those cases are skipped.
 */

const ENDPOINT = 'BRAZE_SANDBOX_REST_ENDPOINT';
const API_KEY = 'BRAZE_SANDBOX_API_KEY';
/**
 * Identifiers per /users/export/ids request: "Up to 50 external_ids or user_aliases can be
 * included in a single request" (https://www.braze.com/docs/api/endpoints/export/user_data/post_users_identifier/).
 * /users/delete is sent the same size (its own page was not re-read on 2026-12-04).
 */
const IDS_PER_REQUEST = 50;

const exportAnswer = z.object({
  users: z.array(
    z.object({
      external_id: z.string().optional(),
      custom_attributes: z.record(z.string(), z.unknown()).optional(),
    }),
  ),
});

export const sandboxHarness: SandboxHarness = {
  type: BRAZE_TYPE,
  requires: {
    [ENDPOINT]:
      "the workspace's REST endpoint, e.g. https://rest.iad-01.braze.com (Settings > APIs and Identifiers)",
    [API_KEY]:
      'a REST API key of a test workspace with the users.track, users.export.ids and users.delete permissions',
  },
  howTo:
    'Use a Braze workspace meant for testing (a development or sandbox workspace of your company: it ' +
    'must not feed live campaigns), create a REST API key (Settings > APIs and Identifiers > API Keys) ' +
    `with the users.track, users.export.ids and users.delete permissions, and export it as ${API_KEY} ` +
    `and the workspace's REST endpoint as ${ENDPOINT}. The run creates a few hundred users named ` +
    'deltasync-sandbox-<run>-<i> with a membership attribute in_deltasync_sandbox_<run>, and deletes them ' +
    'at the end; each update spends data points. Braze is eventually consistent: a run takes minutes.',

  async start(env): Promise<ContractTarget> {
    const restEndpoint = env[ENDPOINT]!.replace(/\/+$/, '');
    const apiKey = env[API_KEY]!;
    const run = randomBytes(3).toString('hex');
    const flag = `in_deltasync_sandbox_${run}`;
    const settings = { type: BRAZE_TYPE, restEndpoint, apiKeySecret: API_KEY, membershipAttribute: flag };
    const secrets: Record<string, string> = { [API_KEY]: apiKey };
    const own = createBrazeAttributesDestination(
      brazeAttributesConfigSchema.parse(settings),
      createDestinationContext({ secrets: (name) => secrets[name] ?? '' }),
    );

    const trackUrl = `${restEndpoint}/users/track`;
    const watch = watchVendorCalls({ matches: (url) => url === trackUrl });
    const { ours } = watch;
    const braze = (endpoint: string, body: unknown) =>
      ours(() =>
        requestJson({
          method: 'POST',
          url: `${restEndpoint}${endpoint}`,
          headers: { authorization: `Bearer ${apiKey}` },
          body,
          service: `${BRAZE_TYPE} sandbox`,
        }),
      );

    /** Every key the suite was handed: the only users this run can have flagged. */
    const handedOut = new Set<string>();
    const chunks = (keys: string[]) =>
      Array.from({ length: Math.ceil(keys.length / IDS_PER_REQUEST) }, (_, i) =>
        keys.slice(i * IDS_PER_REQUEST, (i + 1) * IDS_PER_REQUEST),
      );
    const readOnce = async () => {
      const flagged: string[] = [];
      for (const external_ids of chunks([...handedOut])) {
        const { body } = await braze('/users/export/ids', {
          external_ids,
          fields_to_export: ['external_id', 'custom_attributes'],
        });
        for (const user of exportAnswer.parse(body).users) {
          if (user.external_id !== undefined && user.custom_attributes?.[flag] === true)
            flagged.push(user.external_id);
        }
      }
      return flagged.sort();
    };

    return sandboxTarget(watch, own, async () => {
      await ours(() => own.check());
      return {
        settings,
        secrets,
        key: (i) => {
          const key = `deltasync-sandbox-${run}-${i}`;
          handedOut.add(key);
          return key;
        },
        attributes: (i) => ({ first_name: `U${i}` }),
        // Eventually consistent: read until two reads 3 s apart agree (at most about a minute).
        members: async () => {
          let last = await readOnce();
          for (let attempt = 0; attempt < 20; attempt++) {
            await delay(3000);
            const next = await readOnce();
            if (next.join('\n') === last.join('\n')) return next;
            last = next;
          }
          return last;
        },
        cleanUp: async () => {
          const keys = [...handedOut];
          for (let i = 0; i < keys.length; i += 75) await ours(() => own.remove!(keys.slice(i, i + 75)));
          for (const external_ids of chunks(keys)) await braze('/users/delete', { external_ids });
        },
      };
    });
  },
};
