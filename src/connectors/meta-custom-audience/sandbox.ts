import { sandboxTarget, watchVendorCalls, type ContractTarget, type SandboxHarness } from '../kit/contract';
import { hashedEmailKeys } from '../kit/emulator-kit';
import { createDestinationContext } from '../kit/module';
import { createMetaCustomAudienceDestination } from './destination';
import { META_TYPE, metaCustomAudienceConfigSchema } from './settings';
import {
  MAX_USERS_PER_CALL,
  OPERATION_STATUS,
  REPLACE_ERROR_CODE,
  REPLACE_ERROR_SUBCODES,
} from './vendor-limits';

/**
 * The destination contract against a real Meta ad account (`npm run test:sandbox
 * meta-custom-audience`), never part of the default run and not runnable without the internet
 * (it has never been run from here).
 *
 * Meta does not let anyone read the people in a Custom Audience (only an approximate size, and
 * that after matching). members() is therefore the audience as Meta acknowledged it on the wire:
 * the harness watches the destination's own requests and answers, applies every /users call Meta
 * answered with all it was sent received and every invalid entry named, and a replace once
 * operation_status says Meta has finished it. An answer that leaves the audience unknown (fewer
 * received than sent, invalid entries not named, a failed replace) makes members() say so rather
 * than guess. Meta cannot be told to throttle or to answer 5xx, and the connector refuses invalid
 * identifiers itself (Meta never sees them), so those cases are skipped.
 */

const TOKEN = 'META_SANDBOX_TOKEN';
const AD_ACCOUNT = 'META_SANDBOX_AD_ACCOUNT';
const AUDIENCE = 'META_SANDBOX_AUDIENCE_ID';

interface Session {
  staged: Set<string>;
  ended: boolean;
}

export const sandboxHarness: SandboxHarness = {
  type: META_TYPE,
  requires: {
    [TOKEN]:
      'access token (a system user token of the business, or a user token from the Graph API Explorer) with ads_management on the ad account',
    [AD_ACCOUNT]: 'the ad account that owns the audience, as act_<digits>',
    [AUDIENCE]:
      'the numeric id of an empty customer-list Custom Audience (subtype CUSTOM) of that account, used by no ad set and only by this test',
  },
  howTo:
    'Create a Meta app of the Business type with the Marketing API product (developers.facebook.com), and use an ad ' +
    'account of a business that has accepted the Custom Audience terms (a sandbox ad account from the app’s ' +
    'Marketing API tools may do if it lets you create customer-list audiences). In Audience Manager (or with POST ' +
    'act_<id>/customaudiences, subtype=CUSTOM, customer_file_source=USER_PROVIDED_ONLY) create an empty customer-list ' +
    'audience kept for this test and used by no ad set. Give a system user of the business the ad account with ' +
    `ads_management and generate its token (Business Settings > System users). Export ${TOKEN}, ${AD_ACCOUNT} and ` +
    `${AUDIENCE}. The run uploads only SHA-256 hashes of person<N>@example.com addresses and removes what it added ` +
    'at the end; Meta may refuse removals that would leave an audience too small ("Audience Size too Low"), in ' +
    'which case close() fails and the audience must be deleted and created anew. Changes reach the audience’s ' +
    'size only after Meta matches them (up to 24 hours); the contract checks what Meta acknowledged.',

  async start(env): Promise<ContractTarget> {
    const audienceId = env[AUDIENCE]!;
    const settings = {
      type: META_TYPE,
      adAccountId: env[AD_ACCOUNT]!,
      audienceId,
      accessTokenSecret: TOKEN,
    };
    const secrets: Record<string, string> = { [TOKEN]: env[TOKEN]! };
    const config = metaCustomAudienceConfigSchema.parse(settings);
    const own = createMetaCustomAudienceDestination(
      config,
      createDestinationContext({ secrets: (name) => secrets[name] ?? '' }),
    );
    const { key, unhash } = hashedEmailKeys();

    // The audience as Meta acknowledged it, and everything ever sent to it (to take it out again).
    const confirmed = new Set<string>();
    const sent = new Set<string>();
    const sessions = new Map<string, Session>();
    let unknown: string | undefined;

    function observe(method: string, path: string, body: unknown, status: number, answer: unknown) {
      const error = (answer as { error?: { code?: number; error_subcode?: number } } | undefined)?.error;
      if (method === 'GET') {
        const code = (answer as { operation_status?: { code?: number } }).operation_status?.code;
        if (code === undefined || code === OPERATION_STATUS.replaceInProgress) return;
        for (const [id, session] of sessions) {
          if (!session.ended) continue;
          sessions.delete(id);
          if (code === OPERATION_STATUS.replaceFailed) {
            unknown = 'Meta reported a replace failed (operation_status 415)';
            continue;
          }
          confirmed.clear();
          for (const hash of session.staged) confirmed.add(hash);
        }
        return;
      }
      const request = body as {
        payload?: { data?: (string | string[])[] };
        session?: { session_id?: number; last_batch_flag?: boolean };
      };
      const hashes = (request.payload?.data ?? []).map((row) => (Array.isArray(row) ? row[0]! : row));
      if (method === 'POST') for (const hash of hashes) sent.add(hash);
      if (path.endsWith('/usersreplace')) {
        const id = String(request.session?.session_id);
        const session = sessions.get(id) ?? { staged: new Set<string>(), ended: false };
        sessions.set(id, session);
        const ends =
          error?.code === REPLACE_ERROR_CODE &&
          (error.error_subcode === REPLACE_ERROR_SUBCODES.sessionFinished ||
            error.error_subcode === REPLACE_ERROR_SUBCODES.sessionTimedOut);
        if (ends) session.ended = true;
        if (status !== 200) return;
        for (const hash of accepted(hashes, answer)) session.staged.add(hash);
        if (request.session?.last_batch_flag === true) session.ended = true;
        return;
      }
      if (status !== 200) return;
      const taken = accepted(hashes, answer);
      for (const hash of taken) {
        if (method === 'POST') confirmed.add(hash);
        else confirmed.delete(hash);
      }
    }

    /** The hashes of a call Meta took, or all of them with `unknown` set when it does not say. */
    function accepted(hashes: string[], answer: unknown): string[] {
      const counts = answer as {
        num_received?: number;
        num_invalid_entries?: number;
        invalid_entry_samples?: Record<string, string> | string[];
      };
      const samples = counts.invalid_entry_samples ?? {};
      const named = new Set(Array.isArray(samples) ? samples : Object.keys(samples));
      if ((counts.num_invalid_entries ?? 0) > named.size) {
        unknown = 'Meta counted invalid entries it did not name';
      }
      return hashes.filter((hash) => !named.has(hash));
    }

    // Calls to the audience the suite's destination makes are counted as they go out (the
    // harness's own are not); every answer, the harness's too, feeds the acknowledged audience.
    const prefix = `${config.graphUrl.replace(/\/+$/, '')}/${config.apiVersion}/${audienceId}`;
    const ofAudience = (url: string) => url === prefix || /^[/?]/.test(url.slice(prefix.length));
    const watch = watchVendorCalls({
      matches: (url) => url.startsWith(prefix) && ofAudience(url),
      observe: ({ url, method, status, requestBody, responseBody }) => {
        // An answer that is not JSON: the destination reports that itself.
        if (responseBody !== undefined)
          observe(method, new URL(url).pathname, requestBody, status, responseBody);
      },
    });
    const { ours } = watch;

    return sandboxTarget(watch, own, async () => {
      await ours(() => own.check());
      return {
        settings,
        secrets,
        key,
        members: async () => {
          if (unknown !== undefined) {
            throw new Error(
              `${META_TYPE} sandbox: the audience's people are unknown (${unknown}); Meta does not let anyone read them`,
            );
          }
          return unhash(confirmed);
        },
        cleanUp: async () => {
          // Everything this run sent goes out again, as the connector removes people.
          const keys = unhash(sent);
          for (let i = 0; i < keys.length; i += MAX_USERS_PER_CALL) {
            const { rejected } = await ours(() => own.remove(keys.slice(i, i + MAX_USERS_PER_CALL)));
            if (rejected.length > 0) {
              throw new Error(
                `${META_TYPE} sandbox: Meta kept ${rejected.length} people in audience ${audienceId} (${rejected[0]!.reason}); delete the audience and create a new one`,
              );
            }
          }
        },
      };
    });
  },
};
