import { sandboxTarget, watchVendorCalls, type ContractTarget, type SandboxHarness } from '../kit/contract';
import { hashedEmailKeys } from '../kit/emulator-kit';
import { createDestinationContext } from '../kit/module';
import { createGoogleCustomerMatchDestination } from './destination';
import { GOOGLE_ADS_BASE_URL, GOOGLE_CUSTOMER_MATCH_TYPE, googleCustomerMatchConfigSchema } from './settings';
import { GOOGLE_ADS_API_VERSION } from './vendor-limits';

/**
 * The destination contract against a real Google Ads account (`npm run test:sandbox
 * google-customer-match`), never part of the default run and not runnable without the internet.
 *
 * Google gives no sandbox for this: "User lists are not supported in test accounts" (Google Ads
 * API Team, https://mail-archive.com/adwords-api@googlegroups.com/msg93580.html), so the harness
 * needs a production advertiser account that may use Customer Match, and a list kept for it.
 *
 * Customer Match lists cannot be read back ("The uploaded data isn't readable",
 * resources/offline_user_data_job.proto). members() is therefore the list as Google confirmed it:
 * the operations of every job Google reported SUCCESS, applied in order, as seen on the wire (the
 * harness watches the destination's own requests and answers). A job that ends FAILED, or a partial
 * failure that names no operation, leaves the list unknown, and members() says so rather than
 * guess. Google cannot be told to answer 429 or 5xx, and refuses no well-formed hashed e-mail per
 * record, so those cases are skipped.
 */

const DEVELOPER_TOKEN = 'GOOGLE_ADS_SANDBOX_DEVELOPER_TOKEN';
const ACCESS_TOKEN = 'GOOGLE_ADS_SANDBOX_ACCESS_TOKEN';
const CUSTOMER_ID = 'GOOGLE_ADS_SANDBOX_CUSTOMER_ID';
const LOGIN_CUSTOMER_ID = 'GOOGLE_ADS_SANDBOX_LOGIN_CUSTOMER_ID';
const USER_LIST_ID = 'GOOGLE_ADS_SANDBOX_USER_LIST_ID';

type Op = { kind: 'create' | 'remove'; hash: string } | { kind: 'removeAll' };

export const sandboxHarness: SandboxHarness = {
  type: GOOGLE_CUSTOMER_MATCH_TYPE,
  requires: {
    [DEVELOPER_TOKEN]:
      'developer token of the Google Ads API (Basic access or higher; Explorer/test tokens cannot reach production accounts)',
    [ACCESS_TOKEN]:
      'OAuth 2.0 access token with the https://www.googleapis.com/auth/adwords scope of a user who may manage the customer (valid for an hour: mint it right before the run)',
    [CUSTOMER_ID]: 'the 10-digit id of the advertiser account that owns the user list',
    [LOGIN_CUSTOMER_ID]:
      'the manager account the token acts through, or the customer id itself when the user has direct access',
    [USER_LIST_ID]:
      'the id of a Customer Match (CRM_BASED, contact info) user list of that account, used only by this test',
  },
  howTo:
    'Google Ads test accounts do not support user lists, so use a production advertiser account that has accepted ' +
    'the Customer Match terms and meets its policy (Tools > Audience manager). Create a Customer Match list of ' +
    'customer contact information there and take its id from the list’s URL or a GAQL query on user_list. Apply ' +
    'for a developer token with Basic access (API Center of a manager account), and mint an OAuth access token with ' +
    `the adwords scope (e.g. with the OAuth playground or gcloud) right before the run. Export them as ${DEVELOPER_TOKEN}, ` +
    `${ACCESS_TOKEN}, ${CUSTOMER_ID}, ${LOGIN_CUSTOMER_ID} and ${USER_LIST_ID}. The run uploads only hashed ` +
    'person<N>@example.com addresses, empties the list with remove_all before and after, and needs a few dozen ' +
    'jobs; each job can take minutes to hours to process (Google: up to 6 hours or more), so expect a long run. ' +
    'Basic access allows 15,000 operations a day.',

  async start(env): Promise<ContractTarget> {
    const customerId = env[CUSTOMER_ID]!.replace(/-/g, '');
    const settings = {
      type: GOOGLE_CUSTOMER_MATCH_TYPE,
      customerId,
      loginCustomerId: env[LOGIN_CUSTOMER_ID]!.replace(/-/g, ''),
      userListId: env[USER_LIST_ID]!,
      developerTokenSecret: DEVELOPER_TOKEN,
      accessTokenSecret: ACCESS_TOKEN,
      // Real jobs take minutes or more: poll gently.
      pollIntervalMs: 15_000,
      maxPollIntervalMs: 120_000,
    };
    const secrets: Record<string, string> = {
      [DEVELOPER_TOKEN]: env[DEVELOPER_TOKEN]!,
      [ACCESS_TOKEN]: env[ACCESS_TOKEN]!,
    };
    const own = createGoogleCustomerMatchDestination(
      googleCustomerMatchConfigSchema.parse(settings),
      createDestinationContext({ secrets: (name) => secrets[name] ?? '' }),
    );
    const { key, unhash } = hashedEmailKeys();

    // The list as Google confirmed it, rebuilt from the jobs it reported SUCCESS.
    const confirmed = new Set<string>();
    let unknown: string | undefined;
    const jobOps = new Map<string, Op[]>();
    const applied = new Set<string>();

    function observe(url: string, body: unknown, answer: unknown) {
      const path = url.slice(`${GOOGLE_ADS_BASE_URL}/${GOOGLE_ADS_API_VERSION}/`.length);
      const addOperations = /^(customers\/\d+\/offlineUserDataJobs\/\d+):addOperations$/.exec(path);
      if (addOperations) {
        const ops = ((body as { operations?: unknown[] }).operations ?? []).map(toOp);
        const failure = (answer as { partialFailureError?: PartialFailure }).partialFailureError;
        const refused = refusedIndexes(failure);
        if (refused === 'unnamed') unknown = 'a partial failure named no operation';
        const kept = ops.filter((_, i) => refused === 'unnamed' || !refused.has(i));
        jobOps.set(addOperations[1]!, [...(jobOps.get(addOperations[1]!) ?? []), ...kept]);
        return;
      }
      if (!path.endsWith('/googleAds:search')) return;
      const rows = (
        answer as { results?: { offlineUserDataJob?: { resourceName: string; status: string } }[] }
      ).results;
      for (const row of rows ?? []) {
        const job = row.offlineUserDataJob;
        if (!job || applied.has(job.resourceName)) continue;
        if (job.status === 'FAILED') {
          applied.add(job.resourceName);
          unknown = `job ${job.resourceName} ended FAILED, and Google does not say which of its operations it applied`;
        }
        if (job.status !== 'SUCCESS') continue;
        applied.add(job.resourceName);
        for (const op of jobOps.get(job.resourceName) ?? []) {
          if (op.kind === 'removeAll') confirmed.clear();
          else if (op.kind === 'create') confirmed.add(op.hash);
          else confirmed.delete(op.hash);
        }
      }
    }

    // Calls to the customer the suite's destination makes are counted as they go out (the
    // harness's own calls are not); every answer, the harness's too, feeds the confirmed list.
    const prefix = `${GOOGLE_ADS_BASE_URL}/${GOOGLE_ADS_API_VERSION}/customers/${customerId}`;
    const watch = watchVendorCalls({
      matches: (url) => url.startsWith(prefix),
      observe: ({ url, status, requestBody, responseBody }) => {
        // Not JSON either way: the destination reports that itself.
        if (status >= 200 && status < 300 && requestBody !== undefined && responseBody !== undefined) {
          observe(url, requestBody, responseBody);
        }
      },
    });
    const { ours } = watch;

    return sandboxTarget(watch, own, async () => {
      await ours(() => own.check());
      await ours(() => own.truncate());
      return {
        settings,
        secrets,
        key,
        members: async () => {
          if (unknown !== undefined) {
            throw new Error(
              `${GOOGLE_CUSTOMER_MATCH_TYPE} sandbox: the list's members are unknown (${unknown}); Customer Match lists cannot be read back`,
            );
          }
          return unhash(confirmed);
        },
        cleanUp: async () => {
          await ours(() => own.truncate());
        },
      };
    });
  },
};

type PartialFailure = {
  details?: { errors?: { location?: { fieldPathElements?: { index?: number }[] } }[] }[];
};

function toOp(value: unknown): Op {
  const op = value as {
    create?: { userIdentifiers?: { hashedEmail?: string }[] };
    remove?: { userIdentifiers?: { hashedEmail?: string }[] };
  };
  if (op.create) return { kind: 'create', hash: op.create.userIdentifiers?.[0]?.hashedEmail ?? '' };
  if (op.remove) return { kind: 'remove', hash: op.remove.userIdentifiers?.[0]?.hashedEmail ?? '' };
  return { kind: 'removeAll' };
}

/** The operations a partial failure names, or 'unnamed' when it names none. */
function refusedIndexes(failure: PartialFailure | undefined): Set<number> | 'unnamed' {
  if (!failure) return new Set();
  const indexes = (failure.details ?? []).flatMap((detail) =>
    (detail.errors ?? []).map((error) => error.location?.fieldPathElements?.[0]?.index),
  );
  if (indexes.length === 0 || indexes.some((i) => i === undefined)) return 'unnamed';
  return new Set(indexes as number[]);
}
