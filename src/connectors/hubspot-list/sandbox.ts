import { z } from 'zod';
import { sandboxTarget, watchVendorCalls, type ContractTarget, type SandboxHarness } from '../kit/contract';
import { requestJson } from '../kit/http';
import { createDestinationContext } from '../kit/module';
import { createHubspotListDestination } from './destination';
import { HUBSPOT_TYPE, hubspotListConfigSchema } from './settings';

/**
 * The destination contract against a real HubSpot account (`npm run test:sandbox hubspot-list`),
 * never part of the default run. Membership calls take record ids of records that exist, so the
 * harness borrows existing contacts of the account as member keys; the list is emptied before and
 * after. HubSpot cannot be told to answer 429 or 5xx, so those cases are skipped.
 */

const TOKEN = 'HUBSPOT_SANDBOX_TOKEN';
const LIST = 'HUBSPOT_SANDBOX_LIST_ID';
const BASE_URL = 'https://api.hubapi.com';
/** Keys the suite may ask for: the batch at the record limit (recordsPerCall below) and a few more. */
const RECORDS_PER_CALL = 100;
const CONTACTS_NEEDED = 200;
/** A contact id no account has yet (checked at start: refusedKey only if HubSpot answers 404 for it). */
const ABSENT_RECORD = '999999999999999';

const contactsPage = z.object({
  results: z.array(z.object({ id: z.string() })),
  paging: z.object({ next: z.object({ after: z.string() }).optional() }).optional(),
});

export const sandboxHarness: SandboxHarness = {
  type: HUBSPOT_TYPE,
  requires: {
    [TOKEN]:
      'access token of a private app (or a developer test account’s app) with the crm.lists.read, crm.lists.write and crm.objects.contacts.read scopes',
    [LIST]: 'the ILS list id of an empty MANUAL contact list in that account, used only by this test',
  },
  howTo:
    'Create a free developer test account (developers.hubspot.com > Test accounts) or use a sandbox account, ' +
    `import at least ${CONTACTS_NEEDED} test contacts (Contacts > Import, any CSV with an email column), ` +
    'create a MANUAL ("static") contact list and take its ILS list id from the list’s Details, then create a ' +
    'private app (Settings > Integrations > Private apps) with the scopes crm.lists.read, crm.lists.write and ' +
    `crm.objects.contacts.read and export its access token as ${TOKEN} and the list id as ${LIST}. The run ` +
    'empties the list before and after; the contacts are only added to and removed from it. It makes a few ' +
    'hundred calls: well under any daily limit.',

  async start(env): Promise<ContractTarget> {
    const token = env[TOKEN]!;
    const listId = env[LIST]!;
    const settings = {
      type: HUBSPOT_TYPE,
      baseUrl: BASE_URL,
      listId,
      tokenSecret: TOKEN,
      recordsPerCall: RECORDS_PER_CALL,
      callsPerSecond: 5,
    };
    const secrets: Record<string, string> = { [TOKEN]: token };
    const own = createHubspotListDestination(
      hubspotListConfigSchema.parse(settings),
      createDestinationContext({ secrets: (name) => secrets[name] ?? '' }),
    );

    // Calls to the list the suite's destination makes, counted as they go out (the harness's own
    // calls, marked as such, are not).
    const listUrl = `${BASE_URL}/crm/v3/lists/${listId}`;
    const watch = watchVendorCalls({
      matches: (url) => url === listUrl || url.startsWith(`${listUrl}/`),
    });
    const { ours } = watch;

    return sandboxTarget(watch, own, async () => {
      await ours(() => own.check());
      await ours(() => own.truncate!());
      const contacts = await ours(() => existingContacts(token, CONTACTS_NEEDED));
      const refusable = await ours(() => absent(token, ABSENT_RECORD));

      const keys = new Map<number, string>();
      return {
        settings,
        secrets,
        key(i) {
          let id = keys.get(i);
          if (id === undefined) {
            id = contacts[keys.size];
            if (id === undefined) {
              throw new Error(
                `the sandbox account has only ${contacts.length} contacts; import at least ${CONTACTS_NEEDED}`,
              );
            }
            keys.set(i, id);
          }
          return id;
        },
        members: () =>
          ours(async () => {
            const all: string[] = [];
            let cursor: string | null = null;
            do {
              const page = await own.listMembers!(cursor, 250);
              all.push(...page.keys);
              cursor = page.next;
            } while (cursor !== null);
            return all;
          }),
        ...(refusable ? { refusedKey: () => ABSENT_RECORD } : {}),
        cleanUp: async () => {
          await ours(() => own.truncate!());
        },
      };
    });
  },
};

/** The ids of `count` contacts of the account (GET /crm/v3/objects/contacts, 100 a page). */
async function existingContacts(token: string, count: number): Promise<string[]> {
  const ids: string[] = [];
  let after: string | undefined;
  do {
    const query = new URLSearchParams({ limit: '100', ...(after ? { after } : {}) });
    const { body } = await requestJson({
      method: 'GET',
      url: `${BASE_URL}/crm/v3/objects/contacts?${query}`,
      headers: { authorization: `Bearer ${token}` },
      service: `${HUBSPOT_TYPE} sandbox`,
    });
    const page = contactsPage.parse(body);
    ids.push(...page.results.map((r) => r.id));
    after = page.paging?.next?.after;
  } while (after !== undefined && ids.length < count);
  return ids.slice(0, count);
}

/** Whether HubSpot has no contact with this id (404), so it must answer it in recordIdsMissing. */
async function absent(token: string, id: string): Promise<boolean> {
  try {
    await requestJson({
      method: 'GET',
      url: `${BASE_URL}/crm/v3/objects/contacts/${id}`,
      headers: { authorization: `Bearer ${token}` },
      service: `${HUBSPOT_TYPE} sandbox`,
    });
    return false;
  } catch (err) {
    if (err instanceof Error && 'status' in err && (err as { status?: number }).status === 404) return true;
    throw err;
  }
}
