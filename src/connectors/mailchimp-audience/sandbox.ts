import { randomBytes } from 'node:crypto';
import {
  allMembers,
  sandboxTarget,
  watchVendorCalls,
  type ContractTarget,
  type SandboxHarness,
} from '../kit/contract';
import { createDestinationContext } from '../kit/module';
import { createMailchimpAudienceDestination } from './destination';
import { MAILCHIMP_TYPE, mailchimpAudienceConfigSchema, mailchimpBaseUrl } from './settings';

/**
 * The destination contract against a real Mailchimp audience (`npm run test:sandbox
 * mailchimp-audience`), never part of the default run, and not runnable here (no internet). Member
 * keys are plus-addresses of one mailbox the tester owns (Mailchimp refuses example.com and other
 * addresses it thinks fake), unique to the run; the audience is emptied (every contact archived)
 * before and after. Mailchimp cannot be told to answer 429 or 5xx, nor to acknowledge short, so
 * those cases are skipped; an address Mailchimp refuses per member is the refused key.
 */

const API_KEY = 'MAILCHIMP_SANDBOX_API_KEY';
const LIST = 'MAILCHIMP_SANDBOX_LIST_ID';
const EMAIL = 'MAILCHIMP_SANDBOX_EMAIL';

export const sandboxHarness: SandboxHarness = {
  type: MAILCHIMP_TYPE,
  requires: {
    [API_KEY]: 'a Marketing API key of the test account, with its data-centre suffix (…-us6)',
    [LIST]:
      'the id of an audience of that account used only by this test (Audience > Settings > Audience name and defaults)',
    [EMAIL]:
      'a mailbox you own whose domain accepts plus-addressing (name@yourdomain.com): test contacts are name+deltasync-<run>-<i>@yourdomain.com',
  },
  howTo:
    'Use a Mailchimp account you may test in (a free account will do), create an audience used only by ' +
    `this test, with no automations or welcome e-mails and no required merge fields but FNAME, and export ` +
    `its id as ${LIST}. Create an API key (Profile > Extras > API keys) and export it as ${API_KEY}, and ` +
    `a mailbox of yours as ${EMAIL}: the run adds a few hundred plus-addressed contacts with status ` +
    "'subscribed' (no campaign is sent) and archives every contact of the audience before and after, so " +
    'archived contacts accumulate there (they do not count towards the plan). Mailchimp allows 10 ' +
    'simultaneous connections per account: run nothing else against it meanwhile.',

  async start(env): Promise<ContractTarget> {
    const apiKey = env[API_KEY]!;
    const listId = env[LIST]!;
    const [local, domain] = env[EMAIL]!.toLowerCase().split('@') as [string, string | undefined];
    if (!domain) throw new Error(`${EMAIL} must be an e-mail address (name@yourdomain.com)`);
    const run = randomBytes(3).toString('hex');
    const settings = {
      type: MAILCHIMP_TYPE,
      listId,
      apiKeySecret: API_KEY,
      mergeFields: { fname: 'FNAME' },
    };
    const secrets: Record<string, string> = { [API_KEY]: apiKey };
    const own = createMailchimpAudienceDestination(
      mailchimpAudienceConfigSchema.parse(settings),
      createDestinationContext({ secrets: (name) => secrets[name] ?? '' }),
    );
    const baseUrl = mailchimpBaseUrl({}, apiKey);
    if (!baseUrl) throw new Error(`${API_KEY} has no data-centre suffix (like -us6)`);

    // Calls to the audience the suite's destination makes, counted as they go out (the harness's
    // own calls, marked as such, are not).
    const listUrl = `${baseUrl}/3.0/lists/${listId}`;
    const watch = watchVendorCalls({
      matches: (url) => url === listUrl || url.startsWith(`${listUrl}/`) || url.startsWith(`${listUrl}?`),
    });
    const { ours } = watch;

    const members = () => ours(() => allMembers(own, 1000));
    /** Archives every contact of the audience (Mailchimp has no truncate). */
    const empty = async () => {
      const keys = await members();
      for (let i = 0; i < keys.length; i += 100) await ours(() => own.remove!(keys.slice(i, i + 100)));
    };

    return sandboxTarget(watch, own, async () => {
      await ours(() => own.check());
      await empty();
      return {
        settings,
        secrets,
        key: (i) => `${local}+deltasync-${run}-${i}@${domain}`,
        attributes: (i) => ({ fname: `M${i}` }),
        members,
        // Mailchimp answers a malformed address in the batch's `errors`, per member.
        refusedKey: () => 'not-an-address',
        cleanUp: empty,
      };
    });
  },
};
