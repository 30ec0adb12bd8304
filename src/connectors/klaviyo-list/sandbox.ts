import {
  allMembers,
  sandboxTarget,
  watchVendorCalls,
  type ContractTarget,
  type SandboxHarness,
} from '../kit/contract';
import { createDestinationContext } from '../kit/module';
import { createKlaviyoListDestination } from './destination';
import { KLAVIYO_TYPE } from './settings';
import { PAGE_SIZE_MAX } from './vendor-limits';

/**
 * The destination contract against a real Klaviyo account (`npm run test:sandbox klaviyo-list`),
 * never part of the default run and not runnable without the internet. members() reads the list
 * back through Klaviyo's API (get_profiles_for_list, as the destination's listMembers does); the
 * list is emptied before and after. Klaviyo cannot be told to answer 429 or 5xx, so those cases are
 * skipped; an address that is not one is refused per profile (an import error), as in the emulator.
 */

const API_KEY = 'KLAVIYO_SANDBOX_API_KEY';
const LIST_ID = 'KLAVIYO_SANDBOX_LIST_ID';
const BASE_URL = 'https://a.klaviyo.com';

export const sandboxHarness: SandboxHarness = {
  type: KLAVIYO_TYPE,
  requires: {
    [API_KEY]:
      'private API key (pk_…) with the lists:read, lists:write, profiles:read and profiles:write scopes',
    [LIST_ID]: 'the id of a list in that account used only by this test (six characters, e.g. Y6nRLr)',
  },
  howTo:
    'Use a Klaviyo account meant for testing (a free account is enough: the run puts at most a few hundred ' +
    'profiles in the list). Create a list (Audience > Lists & segments > Create, single opt-in) and take its id ' +
    'from its URL; create a private API key (Settings > API keys) with the lists and profiles read/write scopes. ' +
    `Export them as ${API_KEY} and ${LIST_ID}. The run imports profiles named deltasync.contract+<N>@example.com ` +
    'into the list and empties the list before and after; Klaviyo keeps the profiles themselves (delete them ' +
    'from Audience > Profiles if you like). It stays well under the rate limits (150 writes a minute).',

  async start(env): Promise<ContractTarget> {
    const settings = {
      type: KLAVIYO_TYPE as typeof KLAVIYO_TYPE,
      baseUrl: BASE_URL,
      listId: env[LIST_ID]!,
      apiKeySecret: API_KEY,
    };
    const secrets: Record<string, string> = { [API_KEY]: env[API_KEY]! };
    const own = createKlaviyoListDestination(
      settings,
      createDestinationContext({ secrets: (name) => secrets[name] ?? '' }),
    );

    // Calls the suite's destination makes are counted as they go out (the harness's own are not).
    const watch = watchVendorCalls({
      matches: (url) => url.startsWith(`${BASE_URL}/api/`),
    });
    const { ours } = watch;
    const members = () => ours(() => allMembers(own, PAGE_SIZE_MAX));
    const empty = async () => {
      const keys = await members();
      if (keys.length > 0) await ours(() => own.remove!(keys));
    };

    return sandboxTarget(watch, own, async () => {
      await ours(() => own.check());
      await empty();
      return {
        settings,
        secrets,
        key: (i) => `deltasync.contract+${i}@example.com`,
        attributes: (i) => ({ first_name: `K${i}`, plan: i % 2 ? 'gold' : 'free' }),
        members,
        refusedKey: () => 'not-an-email',
        cleanUp: empty,
      };
    });
  },
};
