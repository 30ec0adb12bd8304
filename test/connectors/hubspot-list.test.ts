import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import {
  createHubspotListDestination,
  HUBSPOT_ENDPOINTS,
  hubspotListConfigSchema,
  type HubspotListConfigInput,
} from '../../src/connectors/hubspot-list/index';
import { saveConnector } from '../../src/core/connector-store';
import { projectRoot } from '../../src/paths';
import { createDestinationContext } from '../../src/connectors/kit/module';
import { createThrottle } from '../../src/connectors/kit/throttle';
import {
  capabilitiesOf,
  DestinationError,
  QuotaExhaustedError,
  type Member,
} from '../../src/core/destination';
import { nextMidnightIn } from '../../src/connectors/hubspot-list/destination';
import {
  NOT_EMULATED,
  startHubspotListEmulator,
  type HubspotListEmulator,
  type HubspotListEmulatorOptions,
} from '../../src/connectors/hubspot-list/emulator';
import {
  MEMBERSHIPS_PAGE_DEFAULT,
  MEMBERSHIPS_PAGE_MAX,
  TRUNCATE_MAX_MEMBERS,
} from '../../src/connectors/hubspot-list/vendor-limits';
import { takeSpecViolations } from '../../src/connectors/kit/vendor-spec';
import { refreshScenario } from '../helpers/destination-scenario';
import { counted, countedFailure, testContext } from '../helpers/destination-context';
import {
  allKeys,
  closeAfterEach,
  fixedSecrets,
  rejection,
  type DestinationSetup,
} from '../helpers/destinations';
import { startFakeServer } from '../helpers/fake-http';

const token = 'pat-na1-7c1e9a44-0b2f';
const secrets = fixedSecrets({ HUBSPOT_TOKEN: token });
const track = closeAfterEach();

type Setup = DestinationSetup<HubspotListEmulator> & { listId: string };

async function setup(
  config: Partial<HubspotListConfigInput> = {},
  emulator: Partial<HubspotListEmulatorOptions> = {},
  secretResolver = secrets,
): Promise<Setup> {
  const emu = track(await startHubspotListEmulator({ token, ...emulator }));
  const listId = emu.createList({ name: 'VIP customers' });
  const { context, waits } = testContext(secretResolver);
  const dest = track(
    createHubspotListDestination(
      { type: 'hubspot-list', baseUrl: emu.url, listId, tokenSecret: 'HUBSPOT_TOKEN', ...config },
      context,
    ),
  );
  return { emu, dest, listId, waits };
}

function members(...keys: string[]): Member[] {
  return keys.map((key) => ({ key, attributes: {} }));
}

function ids(from: number, count: number): string[] {
  return Array.from({ length: count }, (_, i) => String(from + i));
}

/** The wall-clock time of an instant in a time zone, HH:MM:SS. */
function localTime(at: Date, timeZone: string): string {
  return new Intl.DateTimeFormat('en-GB', {
    timeZone,
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hourCycle: 'h23',
  }).format(at);
}

describe('hubspot-list destination against the emulator', () => {
  test('add, re-add, remove, truncate and list round trip', async () => {
    const { emu, dest, listId } = await setup();
    assert.deepEqual(capabilitiesOf(dest), {
      add: true,
      remove: true,
      truncate: true,
      listMembers: true,
      updateAttributes: false,
      createList: false,
    });
    const added = await counted(() => dest.add!(members('101', '102', '103')));
    assert.deepEqual(added.value, { rejected: [] });
    assert.deepEqual(added.tallies, {
      [HUBSPOT_ENDPOINTS.add]: { calls: 1, failed: 0, rateLimited: 0, retried: 0 },
    });
    // Re-adding a member is ignored by HubSpot: safe to repeat after a lost acknowledgement.
    assert.deepEqual((await dest.add!(members('103', '104'))).rejected, []);
    assert.deepEqual(emu.members(listId), ['101', '102', '103', '104']);

    const removed = await counted(() => dest.remove!(['102', '999']));
    assert.deepEqual(removed.value.rejected, [], '999 is not a member: nothing to do, not an error');
    assert.deepEqual(Object.keys(removed.tallies), [HUBSPOT_ENDPOINTS.remove]);
    assert.equal(removed.calls, 1);
    assert.deepEqual(emu.members(listId), ['101', '103', '104']);

    // The list's size first: under 100,000 members, one DELETE empties it.
    const truncated = await counted(() => dest.truncate!());
    assert.deepEqual(Object.keys(truncated.tallies), [HUBSPOT_ENDPOINTS.get, HUBSPOT_ENDPOINTS.truncate]);
    assert.equal(truncated.calls, 2);
    assert.deepEqual(emu.members(listId), []);
    assert.deepEqual(emu.stats().calls, {
      add: 2,
      remove: 1,
      addAndRemove: 0,
      deleteAll: 1,
      read: 0,
      getList: 1,
    });
  });

  test('pages members in record id order, at most 250 per page', async () => {
    const { emu, dest, listId } = await setup();
    const all = ids(1, 620);
    emu.setMembers(listId, [...all].reverse());
    const { keys, pages } = await allKeys(dest, 1000);
    assert.equal(pages, 3, '1000 asked, 250 served per page');
    assert.deepEqual(keys, all, 'numeric order: 9 before 10');
    assert.deepEqual((await allKeys(dest, 100)).pages, 7);
  });

  test('recordsPerCall is the record limit: a full batch is one call', async () => {
    const { emu, dest, listId } = await setup({ recordsPerCall: 400 });
    assert.deepEqual(dest.limits, { recordsPerCall: 400, callsPerSecond: 10, truncateMaxMembers: 100_000 });
    const outcome = await counted(() => dest.add!(members(...ids(1, 400))));
    assert.equal(outcome.calls, 1);
    assert.deepEqual(Object.keys(outcome.tallies), [HUBSPOT_ENDPOINTS.add]);
    assert.equal(emu.stats().recordsReceived.add, 400);
    assert.equal(emu.members(listId).length, 400);
  });

  test('records HubSpot reports missing are rejected on add, and done on remove', async () => {
    const { emu, dest, listId } = await setup({}, { recordIds: ids(100, 10) });
    const added = await dest.add!(members('100', '101', '555', '102'));
    assert.deepEqual(added.rejected, [
      { key: '555', reason: 'no such HubSpot record (recordIdsMissing): deleted or never created' },
    ]);
    assert.deepEqual(emu.members(listId), ['100', '101', '102']);

    // Deleting a record in HubSpot drops it from its lists: its removal is already true.
    emu.records.delete('101');
    assert.deepEqual(emu.members(listId), ['100', '102']);
    const removed = await dest.remove!(['101', '102']);
    assert.deepEqual(removed.rejected, []);
    assert.deepEqual(emu.members(listId), ['100']);
  });

  test('an answer without its id lists acknowledges no id of that call', async () => {
    const { emu, dest, listId } = await setup({ recordsPerCall: 2 }, { recordIds: ids(100, 10) });
    // Two calls: ['100', '555'] is answered `{}`, so the missing '555' is not reported either;
    // ['101', '102'] is answered in full.
    emu.faults.set({ bareAnswer: { calls: 1 } });
    const bare = await dest.add!(members('100', '555'));
    const whole = await dest.add!(members('101', '102'));
    const reason =
      "not acknowledged: HubSpot's answer does not carry both recordIdsMissing and recordsIdsAdded (or recordIdsAdded)";
    assert.deepEqual(bare.rejected, [
      { key: '100', reason },
      { key: '555', reason },
    ]);
    assert.deepEqual(whole.rejected, []);
    assert.deepEqual(emu.members(listId), ['100', '101', '102'], "'100' was added, just not confirmed");

    emu.faults.set({ bareAnswer: { calls: 1 } });
    const removed = await dest.remove!(['100', '101']);
    assert.deepEqual(
      removed.rejected.map((r) => [r.key, r.reason.split(':')[0]]),
      [
        ['100', 'not acknowledged'],
        ['101', 'not acknowledged'],
      ],
    );
    assert.deepEqual((await dest.remove!(['102'])).rejected, [], 'the next call is answered in full');
  });

  test('keys that are not record ids are rejected locally and never sent', async () => {
    const { emu, dest, listId } = await setup();
    const added = await dest.add!(members('alice@example.com', '0042', '7'));
    assert.deepEqual(
      added.rejected.map((r) => r.key),
      ['alice@example.com', '0042'],
    );
    assert.match(added.rejected[0]!.reason, /record id \(hs_object_id\)/);
    assert.equal(emu.stats().recordsReceived.add, 1);
    assert.deepEqual(emu.members(listId), ['7']);

    const onlyBad = await counted(() => dest.add!(members('x')));
    assert.equal(onlyBad.calls, 0);
    const removal = await counted(() => dest.remove!(['x']));
    assert.deepEqual(removal.value, { rejected: [] });
    assert.equal(removal.calls, 0);
  });

  test('429 TEN_SECONDLY_ROLLING without Retry-After: backs off from one second, then succeeds', async () => {
    const { emu, dest, listId, waits } = await setup();
    emu.faults.set({ rateLimit: { calls: 2 } });
    const outcome = await counted(() => dest.add!(members('1', '2')));
    // Full jitter with random() = 0.5: half of 1 s, then half of 2 s.
    assert.deepEqual(waits, [500, 1000]);
    assert.equal(outcome.rateLimitWaits, 2);
    assert.equal(outcome.calls, 3);
    assert.deepEqual(outcome.tallies, {
      [HUBSPOT_ENDPOINTS.add]: { calls: 3, failed: 0, rateLimited: 2, retried: 0 },
    });
    assert.deepEqual(emu.stats().rateLimited, { TEN_SECONDLY_ROLLING: 2, DAILY: 0 });
    assert.deepEqual(emu.members(listId), ['1', '2']);
  });

  test('the 429 body names the policy, and Retry-After is honoured when present', async () => {
    const { emu, dest, waits } = await setup();
    emu.faults.set({ rateLimit: { calls: 1, retryAfterSeconds: 7 } });
    const raw = await fetch(`${emu.url}/crm/v3/lists/1/memberships`, {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(raw.status, 429);
    const body = (await raw.json()) as Record<string, unknown>;
    assert.equal(body.policyName, 'TEN_SECONDLY_ROLLING');
    assert.equal(body.errorType, 'RATE_LIMIT');
    assert.equal(body.message, 'You have reached your ten_secondly_rolling limit.');
    assert.equal(raw.headers.get('retry-after'), '7');
    assert.equal(raw.headers.get('x-hubspot-ratelimit-interval-milliseconds'), '10000');

    emu.faults.set({ rateLimit: { calls: 1, retryAfterSeconds: 3 } });
    await dest.add!(members('1'));
    assert.deepEqual(waits, [3000]);
  });

  test('the rolling ten-second window is enforced, and waiting it out succeeds', async () => {
    let clock = Date.parse('2026-03-02T10:00:00Z');
    const emu = track(await startHubspotListEmulator({ token, tenSecondlyLimit: 3, now: () => clock }));
    const listId = emu.createList();
    const waits: number[] = [];
    const dest = createHubspotListDestination(
      { type: 'hubspot-list', baseUrl: emu.url, listId, tokenSecret: 'HUBSPOT_TOKEN', recordsPerCall: 1 },
      // The fake sleep moves the emulator's clock: waiting really waits, instantly.
      testContext(secrets, { retry: { sleep: async (ms) => void (waits.push(ms), (clock += ms)) } }).context,
    );
    // Four batches of one record, one call each.
    const outcome = await counted(async () => {
      for (const id of ['1', '2', '3', '4']) await dest.add!(members(id));
    });
    assert.equal(emu.stats().rateLimited.TEN_SECONDLY_ROLLING, outcome.rateLimitWaits);
    assert.ok(outcome.rateLimitWaits >= 3, `waited ${outcome.rateLimitWaits} times`);
    assert.ok(
      waits.reduce((a, b) => a + b, 0) >= 10_000,
      `the fourth call went through only after the window rolled: ${waits}`,
    );
    assert.deepEqual(emu.members(listId), ['1', '2', '3', '4']);
  });

  test('a DAILY 429 is not retried: the run pauses until midnight in the account’s time zone', async () => {
    const timeZone = 'America/New_York';
    const { emu, dest, listId, waits } = await setup({ accountTimeZone: timeZone }, { dailyLimit: 2 });
    await dest.add!(members('1'));
    await dest.add!(members('2'));
    const before = Date.now();
    const { error, calls, tallies } = await countedFailure(() => dest.add!(members('3')));
    const after = Date.now();
    assert.ok(error instanceof QuotaExhaustedError, String(error));
    assert.equal(calls, 1, 'one attempt: no retry can pass before the reset');
    assert.deepEqual(tallies[HUBSPOT_ENDPOINTS.add], { calls: 1, failed: 0, rateLimited: 1, retried: 0 });
    assert.deepEqual(waits, [], 'nothing waited for');
    assert.equal(emu.stats().rateLimited.DAILY, 1);
    // The next midnight in New York, seen from the moment of the call.
    const expected = [nextMidnightIn(timeZone, before), nextMidnightIn(timeZone, after)];
    assert.ok(
      expected.some((at) => at.getTime() === error.resumeAt.getTime()),
      `${error.resumeAt.toISOString()} is not the next midnight in ${timeZone}`,
    );
    assert.equal(localTime(error.resumeAt, timeZone), '00:00:00');
    assert.ok(error.resumeAt.getTime() > before && error.resumeAt.getTime() <= after + 25 * 3600_000);
    assert.match(error.reason, /^hubspot-list: .*DAILY.*America\/New_York/);
    assert.ok(error.message.includes(error.resumeAt.toISOString()), error.message);
    assert.deepEqual(emu.members(listId), ['1', '2']);
  });

  test('a TEN_SECONDLY_ROLLING 429 is still waited for and retried', async () => {
    const { emu, dest, listId, waits } = await setup({ accountTimeZone: 'Europe/Berlin' });
    emu.faults.set({ rateLimit: { calls: 1, policyName: 'TEN_SECONDLY_ROLLING' } });
    const outcome = await counted(() => dest.add!(members('4')));
    assert.deepEqual(waits, [500]);
    assert.equal(outcome.calls, 2);
    assert.deepEqual(emu.members(listId), ['4']);
    // Injected DAILY: the same refusal as an earned one.
    emu.faults.set({ rateLimit: { calls: 1, policyName: 'DAILY' } });
    const daily = await dest.add!(members('5')).then(
      () => assert.fail('expected the quota to stop the add'),
      (err: unknown) => err,
    );
    assert.ok(daily instanceof QuotaExhaustedError, String(daily));
    assert.equal(localTime(daily.resumeAt, 'Europe/Berlin'), '00:00:00');
  });

  test('a shared throttle at callsPerSecond keeps under the rolling window; without it, 429s', async () => {
    // A one-second window of 10 calls stands in for HubSpot's ten seconds of 190.
    const emu = track(await startHubspotListEmulator({ token, tenSecondlyLimit: 10, rateWindowMs: 1000 }));
    const lists = [emu.createList(), emu.createList(), emu.createList()];
    // The worker's context: one throttle per process, shared by every destination it builds.
    const context = createDestinationContext({ secrets, throttle: createThrottle() });
    const destinations = lists.map((listId) =>
      createHubspotListDestination(
        { type: 'hubspot-list', baseUrl: emu.url, listId, tokenSecret: 'HUBSPOT_TOKEN', callsPerSecond: 6 },
        context,
      ),
    );
    // Three connectors of one account, five calls each, all at once.
    await Promise.all(
      destinations.map((dest, i) =>
        Promise.all(ids(1, 5).map((id) => dest.add!(members(String(i * 100 + Number(id)))))),
      ),
    );
    assert.equal(emu.stats().rateLimited.TEN_SECONDLY_ROLLING, 0, 'the throttle kept under the limit');
    for (const listId of lists) assert.equal(emu.members(listId).length, 5);

    // The same burst without the throttle runs into the limit.
    const burst = await Promise.all(
      ids(1, 15).map(() =>
        fetch(`${emu.url}/crm/v3/lists/${lists[0]}/memberships`, {
          headers: { authorization: `Bearer ${token}` },
        }),
      ),
    );
    assert.ok(burst.filter((r) => r.status === 429).length >= 5);
  });

  test('retries 5xx with backoff; persistent 5xx becomes retryable', async () => {
    const { emu, dest, listId, waits } = await setup({}, {});
    emu.faults.set({ serverError: { calls: 2, status: 502 } });
    const outcome = await counted(() => dest.add!(members('1')));
    assert.deepEqual(waits, [500, 1000]);
    assert.equal(outcome.calls, 3);
    assert.equal(outcome.retried, 2);
    assert.equal(outcome.rateLimitWaits, 0);
    assert.deepEqual(emu.members(listId), ['1']);

    emu.faults.set({ serverError: { calls: 100, status: 503 } });
    const { error, calls } = await countedFailure(() => dest.remove!(['1']));
    assert.ok(error instanceof DestinationError);
    assert.equal(error.kind, 'retryable');
    assert.equal(error.status, 503);
    assert.equal(calls, 5);
    assert.deepEqual(emu.members(listId), ['1'], 'nothing applied');
  });

  test('applyThenFail: delivered but unacknowledged, the retry re-applies idempotently', async () => {
    const { emu, dest, listId } = await setup();
    emu.faults.set({ applyThenFail: { calls: 1 } });
    const outcome = await counted(() => dest.add!(members('5', '6')));
    assert.equal(outcome.calls, 2);
    assert.deepEqual(outcome.value.rejected, []);
    assert.deepEqual(emu.members(listId), ['5', '6']);
  });

  test('too many ids in one call and DYNAMIC lists fail just the batch, with HubSpot’s message', async () => {
    const { emu, dest } = await setup({ recordsPerCall: 50 }, { maxRecordsPerCall: 20 });
    const err = await rejection(dest.add!(members(...ids(1, 30))));
    assert.equal(err.kind, 'batch');
    assert.equal(err.status, 400);
    assert.match(err.message, /Too many record ids in one request: 30 \(at most 20\)/);
    assert.equal(emu.stats().calls.add, 1, 'a 400 is not retried');

    const dynamicList = emu.createList({ processingType: 'DYNAMIC' });
    const dynamic = createHubspotListDestination(
      { type: 'hubspot-list', baseUrl: emu.url, listId: dynamicList, tokenSecret: 'HUBSPOT_TOKEN' },
      testContext(secrets).context,
    );
    const refused = await rejection(dynamic.add!(members('1')));
    assert.equal(refused.kind, 'batch');
    assert.match(refused.message, /processingType DYNAMIC/);
  });

  test('401 is fatal, names the secret and never shows the token', async () => {
    const { dest } = await setup({ tokenSecret: 'OLD_TOKEN' }, {}, (name) =>
      name === 'OLD_TOKEN' ? 'pat-na1-revoked-0000' : secrets(name),
    );
    const err = await rejection(dest.add!(members('1')));
    assert.equal(err.kind, 'fatal');
    assert.equal(err.status, 401);
    assert.match(err.message, /^hubspot-list: 401 Unauthorized from PUT http:\/\/.*\/memberships\/add/);
    assert.match(err.message, /Authentication credentials not found/);
    assert.match(err.message, /OLD_TOKEN/);
    assert.doesNotMatch(err.message, /pat-na1-revoked-0000/);
  });

  test('an unknown list is fatal with a hint; a missing secret is fatal and named', async () => {
    const { dest } = await setup({ listId: '424242' });
    const err = await rejection(dest.truncate!());
    assert.equal(err.kind, 'fatal');
    assert.equal(err.status, 404);
    assert.match(err.message, /List does not exist with ID 424242/);
    assert.match(err.message, /check listId/);

    const { dest: unset } = await setup({ tokenSecret: 'NOT_SET' });
    const missing = await rejection(unset.listMembers!(null, 10));
    assert.equal(missing.kind, 'fatal');
    assert.match(missing.message, /NOT_SET/);
  });

  test('check() reads the list: its name, kind and size, in one call', async () => {
    const { emu, dest, listId } = await setup();
    emu.setMembers(listId, ['7', '8']);
    const { value: line, tallies } = await counted(() => dest.check());
    assert.equal(
      line,
      `hubspot-list: list ${listId} 'VIP customers' (MANUAL, 2 members) reachable with the token in 'HUBSPOT_TOKEN'`,
    );
    assert.deepEqual(tallies, {
      [HUBSPOT_ENDPOINTS.get]: { calls: 1, failed: 0, rateLimited: 0, retried: 0 },
    });
    assert.equal(emu.stats().calls.getList, 1);
  });

  test('check() refuses a wrong token, a missing list and a DYNAMIC list, fatally, with what to fix', async () => {
    const { emu } = await setup();
    const wrongToken = await setup({}, {}, () => 'pat-na1-stale-0000');
    const refused = await rejection(wrongToken.dest.check());
    assert.equal(refused.kind, 'fatal');
    assert.equal(refused.status, 401);
    assert.match(refused.message, /^hubspot-list: 401 .*check the private app token .*'HUBSPOT_TOKEN'/);
    assert.ok(!refused.message.includes('pat-na1-stale-0000'));

    const missing = await setup({ listId: '424242' });
    const notFound = await rejection(missing.dest.check());
    assert.equal(notFound.kind, 'fatal');
    assert.equal(notFound.status, 404);
    assert.match(notFound.message, /List does not exist with ID 424242\..*check listId/);

    const dynamicList = emu.createList({ name: 'Openers', processingType: 'DYNAMIC' });
    const dynamic = createHubspotListDestination(
      { type: 'hubspot-list', baseUrl: emu.url, listId: dynamicList, tokenSecret: 'HUBSPOT_TOKEN' },
      testContext(secrets).context,
    );
    const notManual = await rejection(dynamic.check());
    assert.equal(notManual.kind, 'fatal');
    assert.match(notManual.message, /list \d+ 'Openers' is DYNAMIC: .*MANUAL or SNAPSHOT/);
  });

  test('the list the connector points at now (after a swap) wins over the configured one', async () => {
    const { emu } = await setup();
    const live = emu.createList({ name: 'Live' });
    const dest = createHubspotListDestination(
      { type: 'hubspot-list', baseUrl: emu.url, listId: '1', tokenSecret: 'HUBSPOT_TOKEN' },
      testContext(secrets, { listId: live }).context,
    );
    await dest.add!(members('5'));
    assert.deepEqual(emu.members(live), ['5']);
  });

  test('a 403 echoing the token does not leak it', async () => {
    const server = track(
      await startFakeServer((req, res) => {
        res.writeHead(403, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            status: 'error',
            message: `This app hasn't been granted all required scopes (token ${req.headers.authorization})`,
            category: 'MISSING_SCOPES',
          }),
        );
      }),
    );
    const dest = createHubspotListDestination(
      {
        type: 'hubspot-list',
        baseUrl: server.url,
        listId: '1',
        tokenSecret: 'HUBSPOT_TOKEN',
      },
      testContext(secrets).context,
    );
    const err = await rejection(dest.add!(members('1')));
    assert.equal(err.kind, 'fatal');
    assert.match(err.message, /crm\.lists\.write/);
    assert.ok(!err.message.includes(token), err.message);
  });
});

describe('hubspot-list wire format and emulator', () => {
  test('sends exactly the documented requests', async () => {
    const seen: string[] = [];
    const server = track(
      await startFakeServer((req, res, body) => {
        seen.push(`${req.method} ${req.url} ${body} ${req.headers.authorization}`);
        if (req.method === 'DELETE') {
          res.writeHead(204).end();
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        const page = req.url!.includes('after=')
          ? { results: [{ recordId: '9', membershipTimestamp: '2026-01-01T00:00:00Z' }] }
          : { results: [7, 8], paging: { next: { after: 'AbC' } } };
        const list = {
          list: {
            listId: '123',
            listVersion: 1,
            name: 'L',
            objectTypeId: '0-1',
            processingStatus: 'COMPLETE',
            processingType: 'MANUAL',
            size: 3,
          },
        };
        res.end(
          JSON.stringify(
            req.method !== 'GET'
              ? { recordIdsMissing: [], recordIdsRemoved: [], recordsIdsAdded: [] }
              : req.url === '/crm/v3/lists/123'
                ? list
                : page,
          ),
        );
      }),
    );
    const dest = createHubspotListDestination(
      {
        type: 'hubspot-list',
        baseUrl: `${server.url}/`,
        listId: '123',
        tokenSecret: 'HUBSPOT_TOKEN',
      },
      testContext(secrets).context,
    );
    await dest.add!(members('11', '12'));
    await dest.remove!(['11']);
    await dest.truncate!();
    const first = await dest.listMembers!(null, 500);
    const second = await dest.listMembers!(first.next, 500);
    assert.deepEqual(
      [first, second],
      [
        { keys: ['7', '8'], next: 'AbC' },
        { keys: ['9'], next: null },
      ],
    );
    assert.deepEqual(seen, [
      `PUT /crm/v3/lists/123/memberships/add ["11","12"] Bearer ${token}`,
      `PUT /crm/v3/lists/123/memberships/remove ["11"] Bearer ${token}`,
      `GET /crm/v3/lists/123  Bearer ${token}`,
      `DELETE /crm/v3/lists/123/memberships  Bearer ${token}`,
      `GET /crm/v3/lists/123/memberships?limit=250  Bearer ${token}`,
      `GET /crm/v3/lists/123/memberships?limit=250&after=AbC  Bearer ${token}`,
    ]);
  });

  test('add-and-remove, bad bodies and rate limit headers', async () => {
    const emu = track(await startHubspotListEmulator({ token, tenSecondlyLimit: 50 }));
    const listId = emu.createList({ processingType: 'SNAPSHOT' });
    emu.setMembers(listId, ['1', '2']);
    const put = (path: string, body: string) =>
      fetch(`${emu.url}/crm/v3/lists/${listId}/memberships/${path}`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body,
      });
    const both = await put(
      'add-and-remove',
      '{"recordIdsToAdd":["3","4","2"],"recordIdsToRemove":["1","5"]}',
    );
    assert.equal(both.status, 200);
    assert.deepEqual(await both.json(), {
      recordIdsMissing: [],
      recordIdsRemoved: ['1'],
      recordsIdsAdded: ['3', '4'],
    });
    assert.equal(both.headers.get('x-hubspot-ratelimit-max'), '50');
    assert.equal(both.headers.get('x-hubspot-ratelimit-remaining'), '49');
    assert.deepEqual(emu.members(listId), ['2', '3', '4']);

    // Bodies the spec does not describe are refused before anything else, in HubSpot's words,
    // and recorded as violations; a string that is no record id passes the spec, not HubSpot.
    for (const [path, body, message, offSpec] of [
      ['add', '{nope', /request body is required/, true],
      ['add', '["abc"]', /is not a record id/, false],
      ['add', '{"ids":["1"]}', /must be array/, true],
      ['add', '[3]', /\/0: must be string/, true],
      ['add-and-remove', '{"recordIdsToAdd":["3"]}', /required field 'recordIdsToRemove' is missing/, true],
    ] as const) {
      const answer = await put(path, body);
      assert.equal(answer.status, 400);
      const json = (await answer.json()) as { message: string; category: string; correlationId: string };
      assert.match(json.message, message);
      assert.equal(json.category, 'VALIDATION_ERROR');
      assert.match(json.correlationId, /^[0-9a-f-]{36}$/);
      const violations = takeSpecViolations();
      assert.deepEqual(
        violations.map((v) => [v.emulator, v.direction]),
        offSpec ? [['hubspot-list', 'request']] : [],
        body,
      );
    }
    emu.faults.set({ serverError: { calls: 1 }, latencyMs: 1 });
    assert.deepEqual(emu.faults.get(), { serverError: { calls: 1 }, latencyMs: 1 });
    emu.faults.clear();
    assert.deepEqual(emu.faults.get(), {});
  });

  test('config schema: defaults and validation', () => {
    const parsed = hubspotListConfigSchema.parse({ type: 'hubspot-list', listId: '12', tokenSecret: 'T' });
    assert.equal(parsed.baseUrl, 'https://api.hubapi.com');
    assert.equal(parsed.recordsPerCall, 10_000);
    assert.equal(parsed.callsPerSecond, 10);
    const bad = hubspotListConfigSchema.safeParse({ ...parsed, listId: 'VIP list', recordsPerCall: 0 });
    assert.deepEqual(bad.error?.issues.map((i) => i.path.join('.')).sort(), ['listId', 'recordsPerCall']);
  });
});

describe('hubspot-list against HubSpot’s published spec (test/vendor-specs/hubspot)', () => {
  const spec = JSON.parse(
    readFileSync(path.join(projectRoot, 'test/vendor-specs/hubspot/crm-lists-v3.openapi.json'), 'utf8'),
  ) as {
    paths: Record<
      string,
      Record<
        string,
        {
          description: string;
          parameters?: { name: string; description?: string; schema?: { default?: unknown } }[];
        }
      >
    >;
  };
  const memberships = spec.paths['/crm/v3/lists/{listId}/memberships']!;

  test('the limits the emulator enforces are the ones the spec states', () => {
    const truncateLimit = /only supports lists that have less than ([\d,]+) memberships/.exec(
      memberships.delete!.description,
    );
    assert.ok(truncateLimit, 'the DELETE memberships description states its limit');
    assert.equal(TRUNCATE_MAX_MEMBERS, Number(truncateLimit[1]!.replace(/,/g, '')));
    const limit = memberships.get!.parameters!.find((p) => p.name === 'limit')!;
    assert.equal(MEMBERSHIPS_PAGE_MAX, Number(/The maximum `limit` is (\d+)/.exec(limit.description!)![1]));
    assert.equal(MEMBERSHIPS_PAGE_DEFAULT, limit.schema!.default);
    assert.ok(NOT_EMULATED.length > 0);
  });

  test('truncate of a list with 100,000 members or more: paged removals, since HubSpot refuses the DELETE there', async () => {
    const { emu, dest, listId } = await setup(
      // Fast enough for a test: 400 pages of 250 at the highest callsPerSecond allowed.
      { callsPerSecond: 100 },
      { tenSecondlyLimit: 1_000_000, dailyLimit: 10_000_000 },
    );
    const all = ids(1_000_001, TRUNCATE_MAX_MEMBERS);
    emu.setMembers(listId, all);

    // HubSpot's own answer at the limit: the DELETE is refused.
    const refused = await fetch(`${emu.url}/crm/v3/lists/${listId}/memberships`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(refused.status, 400);
    const body = (await refused.json()) as { message: string; category: string };
    assert.match(body.message, /less than 100,000 memberships/);
    assert.equal(emu.members(listId).length, TRUNCATE_MAX_MEMBERS, 'nothing removed');

    const outcome = await counted(() => dest.truncate!());
    assert.deepEqual(emu.members(listId), [], 'the list is empty');
    const tallies = outcome.tallies;
    assert.equal(tallies[HUBSPOT_ENDPOINTS.truncate], undefined, 'no DELETE sent for a list at the limit');
    assert.equal(tallies[HUBSPOT_ENDPOINTS.get]?.calls, 1, 'the size read once');
    assert.equal(
      tallies[HUBSPOT_ENDPOINTS.remove]?.calls,
      TRUNCATE_MAX_MEMBERS / 10_000,
      'removals of recordsPerCall ids',
    );
    assert.equal(emu.stats().recordsReceived.remove, TRUNCATE_MAX_MEMBERS);
    assert.ok((tallies[HUBSPOT_ENDPOINTS.list]?.calls ?? 0) >= TRUNCATE_MAX_MEMBERS / MEMBERSHIPS_PAGE_MAX);

    // One member fewer: the one DELETE HubSpot supports.
    emu.setMembers(listId, all.slice(1));
    const small = await counted(() => dest.truncate!());
    assert.deepEqual(Object.keys(small.tallies), [HUBSPOT_ENDPOINTS.get, HUBSPOT_ENDPOINTS.truncate]);
    assert.deepEqual(emu.members(listId), []);
  });

  test('an add acknowledged as the spec’s examples spell it (recordIdsAdded) is acknowledged', async () => {
    const server = track(
      await startFakeServer((req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ recordIdsAdded: ['11'], recordIdsMissing: ['12'] }));
      }),
    );
    const dest = createHubspotListDestination(
      { type: 'hubspot-list', baseUrl: server.url, listId: '123', tokenSecret: 'HUBSPOT_TOKEN' },
      testContext(secrets).context,
    );
    const added = await dest.add!(members('11', '12'));
    assert.deepEqual(added.rejected, [
      { key: '12', reason: 'no such HubSpot record (recordIdsMissing): deleted or never created' },
    ]);
  });

  test('the next midnight in the account’s time zone, across offsets and DST', () => {
    const at = (iso: string) => Date.parse(iso);
    assert.equal(nextMidnightIn('UTC', at('2026-12-04T15:30:00Z')).toISOString(), '2026-12-05T00:00:00.000Z');
    assert.equal(nextMidnightIn('UTC', at('2026-12-04T00:00:00Z')).toISOString(), '2026-12-05T00:00:00.000Z');
    assert.equal(
      nextMidnightIn('Europe/Berlin', at('2026-12-04T23:30:00Z')).toISOString(),
      '2026-12-05T23:00:00.000Z',
      'already the 5th in Berlin: the reset is the next night',
    );
    assert.equal(
      nextMidnightIn('America/New_York', at('2026-03-07T12:00:00Z')).toISOString(),
      '2026-03-08T05:00:00.000Z',
    );
    assert.equal(
      nextMidnightIn('America/New_York', at('2026-03-08T12:00:00Z')).toISOString(),
      '2026-03-09T04:00:00.000Z',
      'EDT from the 8th',
    );
    assert.equal(
      nextMidnightIn('Asia/Kolkata', at('2026-12-04T19:00:00Z')).toISOString(),
      '2026-12-05T18:30:00.000Z',
    );
    // Chile starts summer time at midnight: the 6th of September 2026 begins at 01:00 (-03).
    assert.equal(
      nextMidnightIn('America/Santiago', at('2026-09-05T16:00:00Z')).toISOString(),
      '2026-09-06T04:00:00.000Z',
    );
  });

  test('the settings take the account’s time zone, an IANA name, UTC by default', () => {
    const parsed = hubspotListConfigSchema.parse({ type: 'hubspot-list', listId: '12', tokenSecret: 'T' });
    assert.equal(parsed.accountTimeZone, 'UTC');
    assert.equal(
      hubspotListConfigSchema.parse({ ...parsed, accountTimeZone: 'Europe/Paris' }).accountTimeZone,
      'Europe/Paris',
    );
    const bad = hubspotListConfigSchema.safeParse({ ...parsed, accountTimeZone: 'Mars/Olympus' });
    assert.match(bad.error?.issues[0]?.message ?? '', /IANA time zone/);
  });
});

describe('hubspot-list refresh workflow (Temporal dev server, MariaDB)', () => {
  const TABLE = 'hs_contacts';
  const scenario = refreshScenario({
    emulator: () => startHubspotListEmulator({ token }),
    dataset: async (db) => {
      await db.schema.createTable(TABLE, (table) => {
        table.string('record_id', 32).primary().collate('utf8mb4_bin');
        table.string('lifecycle', 32).notNullable();
      });
      await db(TABLE).insert(ids(1001, 60).map((record_id) => ({ record_id, lifecycle: 'lead' })));
    },
  });

  async function datasetIds(): Promise<string[]> {
    const rows = (await scenario.db(TABLE).select('record_id')) as { record_id: string }[];
    return rows.map((r) => r.record_id).sort((a, b) => Number(a) - Number(b));
  }

  test('diff refreshes with a 429 and a 5xx, then truncate + reload, end equal to the dataset', async () => {
    const { emu, db } = scenario;
    const listId = emu.createList({ name: 'Synced from the warehouse' });
    await saveConnector(db, {
      id: 'hubspot-vip',
      dataset: { table: TABLE, key: 'record_id', attributes: ['lifecycle'] },
      destination: {
        type: 'hubspot-list',
        baseUrl: emu.url,
        listId,
        tokenSecret: 'HUBSPOT_TOKEN',
        recordsPerCall: 25,
      },
    });
    // Built exactly as the worker builds it: catalog, secret resolver, shared throttle.
    await scenario.withWorker(secrets, async (client) => {
      emu.faults.set({ rateLimit: { calls: 1 }, serverError: { calls: 1, status: 503 } });
      const first = await client.refresh('hubspot-vip');
      assert.equal(first.status, 'succeeded');
      assert.deepEqual([first.additions, first.updates, first.deletions], [60, 0, 0]);
      assert.equal(first.rateLimitWaits, 1);
      assert.equal(first.apiCalls, 3 + 2, 'three batches of 25, plus the 429 and the 503 retried');
      assert.deepEqual(emu.members(listId), await datasetIds());

      // Seven new records, five gone, four with a changed attribute (re-added: a no-op in HubSpot).
      await db(TABLE).insert(ids(2001, 7).map((record_id) => ({ record_id, lifecycle: 'lead' })));
      await db(TABLE).whereIn('record_id', ids(1001, 5)).delete();
      await db(TABLE).whereIn('record_id', ids(1050, 4)).update({ lifecycle: 'customer' });
      emu.faults.set({ rateLimit: { calls: 1 } });
      const second = await client.refresh('hubspot-vip');
      assert.equal(second.status, 'succeeded');
      assert.equal(second.strategy, 'diff');
      assert.deepEqual([second.additions, second.updates, second.deletions], [7, 4, 5]);
      assert.equal(second.rejected, 0);
      assert.deepEqual(emu.members(listId), await datasetIds());

      // Someone added a record by hand in HubSpot: truncate + reload puts the list right.
      emu.setMembers(listId, [...emu.members(listId), '777777']);
      emu.resetStats();
      const reload = await client.refresh('hubspot-vip', { strategy: 'truncate' });
      assert.equal(reload.status, 'succeeded');
      assert.equal(reload.strategy, 'truncate');
      assert.equal(emu.stats().calls.deleteAll, 1);
      assert.equal(emu.stats().recordsReceived.add, 62, 'the whole dataset re-sent');
      assert.deepEqual(emu.members(listId), await datasetIds());
    });
  });
});
