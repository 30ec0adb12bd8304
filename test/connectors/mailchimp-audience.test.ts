import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import {
  createMailchimpAudienceDestination,
  MAILCHIMP_ENDPOINTS,
  mailchimpAudienceConfigSchema,
  mailchimpBaseUrl,
  mergeValue,
  subscriberHash,
  type MailchimpAudienceConfigInput,
} from '../../src/connectors/mailchimp-audience/index';
import { saveConnector } from '../../src/core/connector-store';
import { createDestinationContext } from '../../src/connectors/kit/module';
import { createThrottle } from '../../src/connectors/kit/throttle';
import { capabilitiesOf, DestinationError, type Member } from '../../src/core/destination';
import {
  startMailchimpEmulator,
  type MailchimpEmulator,
  type MailchimpEmulatorOptions,
  type MergeFieldDefinition,
} from '../../src/connectors/mailchimp-audience/emulator';
import {
  MAILCHIMP_SPEC_DOCUMENT,
  MAX_MEMBERS_PAGE,
  MAX_MEMBERS_PER_BATCH,
} from '../../src/connectors/mailchimp-audience/vendor-limits';
import { openApiCheck, takeSpecViolations } from '../../src/connectors/kit/vendor-spec';
import { projectRoot } from '../../src/paths';
import { refreshScenario } from '../helpers/destination-scenario';
import { counted, countedFailure, testContext } from '../helpers/destination-context';
import { closeAfterEach, type DestinationSetup, fixedSecrets, rejection } from '../helpers/destinations';
import { startFakeServer } from '../helpers/fake-http';

const apiKey = '0123456789abcdef0123456789abcdef-us6';
const secrets = fixedSecrets({ MAILCHIMP_KEY: apiKey });
const track = closeAfterEach();

type Setup = DestinationSetup<MailchimpEmulator> & { listId: string };

async function setup(
  config: Partial<MailchimpAudienceConfigInput> = {},
  emulator: Partial<MailchimpEmulatorOptions> & { mergeFields?: MergeFieldDefinition[] } = {},
  secretResolver = secrets,
): Promise<Setup> {
  const emu = track(await startMailchimpEmulator({ apiKey, ...emulator }));
  const listId = emu.createList({ name: 'Newsletter', mergeFields: emulator.mergeFields });
  const { context, waits } = testContext(secretResolver);
  const dest = track(
    createMailchimpAudienceDestination(
      { type: 'mailchimp-audience', baseUrl: emu.url, listId, apiKeySecret: 'MAILCHIMP_KEY', ...config },
      context,
    ),
  );
  return { emu, dest, listId, waits };
}

function contacts(...emails: string[]): Member[] {
  return emails.map((key, i) => ({
    key,
    attributes: { fname: `Name ${i}`, score: i, vip: i === 0, note: null },
  }));
}

function emails(count: number, domain = 'example.com'): string[] {
  return Array.from({ length: count }, (_, i) => `user${String(i).padStart(4, '0')}@${domain}`);
}

describe('mailchimp-audience destination against the emulator', () => {
  test('upserts with merge fields, archives, and lists members', async () => {
    const { emu, dest, listId } = await setup();
    assert.deepEqual(capabilitiesOf(dest), {
      add: true,
      remove: true,
      truncate: false,
      listMembers: true,
      updateAttributes: true,
      createList: false,
    });
    assert.deepEqual(dest.limits, { recordsPerCall: 500, maxConcurrent: 10 });

    const added = await counted(() =>
      dest.add!(contacts('ann@example.com', 'bob@example.com', 'cy@example.com')),
    );
    assert.deepEqual(added.value, { rejected: [], report: { received: 3, invalid: 0 } });
    assert.deepEqual(added.tallies, {
      [MAILCHIMP_ENDPOINTS.batch]: { calls: 1, failed: 0, rateLimited: 0, retried: 0 },
    });
    assert.deepEqual(emu.members(listId).get('ann@example.com'), {
      FNAME: 'Name 0',
      SCORE: 0,
      VIP: 'true',
      NOTE: '',
    });
    assert.equal(emu.contact(listId, 'bob@example.com')?.status, 'subscribed');

    // An update changes merge fields only; an unsubscribed contact is never re-subscribed.
    await dest.add!([{ key: 'bob@example.com', attributes: { fname: 'Robert' } }]);
    assert.equal(emu.members(listId).get('bob@example.com')?.FNAME, 'Robert');
    assert.equal(emu.members(listId).get('bob@example.com')?.SCORE, 1, 'fields not sent are kept');

    const removed = await counted(() => dest.remove!(['bob@example.com', 'nobody@example.com']));
    assert.deepEqual(removed.value.rejected, [], 'a contact that is not there is already removed');
    assert.deepEqual(removed.tallies, {
      // The 404 for nobody@ is the answer asked for: a call that succeeded, not a failed one.
      [MAILCHIMP_ENDPOINTS.archive]: { calls: 2, failed: 0, rateLimited: 0, retried: 0 },
      [MAILCHIMP_ENDPOINTS.audience]: { calls: 1, failed: 0, rateLimited: 0, retried: 0 },
    });
    assert.equal(emu.contact(listId, 'bob@example.com')?.status, 'archived');
    assert.deepEqual([...emu.members(listId).keys()], ['ann@example.com', 'cy@example.com']);

    const first = await dest.listMembers!(null, 1);
    const second = await dest.listMembers!(first.next, 1);
    assert.deepEqual(
      [first, second],
      [
        { keys: ['ann@example.com'], next: '1' },
        { keys: ['cy@example.com'], next: null },
      ],
    );

    // Re-adding an archived contact brings it back.
    await dest.add!(contacts('bob@example.com'));
    assert.equal(emu.contact(listId, 'bob@example.com')?.status, 'subscribed');
  });

  test('existing contacts keep their status; new ones get statusIfNew', async () => {
    const { emu, dest, listId } = await setup({ statusIfNew: 'pending' });
    emu.setMembers(listId, new Map([['gone@example.com', { FNAME: 'G' }]]));
    // Unsubscribe happens in Mailchimp (the contact clicked the link); emulate it through the API.
    await fetch(`${emu.url}/3.0/lists/${listId}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}` },
      body: JSON.stringify({
        members: [{ email_address: 'gone@example.com', status: 'unsubscribed' }],
        update_existing: true,
      }),
    });
    await dest.add!(contacts('gone@example.com', 'new@example.com'));
    assert.equal(emu.contact(listId, 'gone@example.com')?.status, 'unsubscribed');
    assert.equal(emu.contact(listId, 'new@example.com')?.status, 'pending');
  });

  test('recordsPerCall is the record limit: 500 members, the most Mailchimp takes, are one call', async () => {
    const { emu, dest, listId } = await setup();
    const outcome = await counted(() => dest.add!(contacts(...emails(500))));
    assert.equal(outcome.calls, 1);
    assert.equal(emu.stats().membersReceived, 500);
    assert.equal(emu.members(listId).size, 500);

    const smaller = await setup({ recordsPerCall: 200 });
    assert.deepEqual(smaller.dest.limits, { recordsPerCall: 200, maxConcurrent: 10 });
  });

  test('per-member errors in the 200 become rejections with Mailchimp’s reason', async () => {
    const { emu, dest, listId } = await setup(
      {},
      { mergeFields: [{ tag: 'FNAME', required: true }, { tag: 'SCORE' }] },
    );
    emu.faults.set({
      reject: (email) => (email.endsWith('@blocked.test') ? 'compliance state: cannot be subscribed' : null),
    });
    const outcome = await dest.add!([
      ...contacts('ok@example.com', 'not-an-address', 'x@blocked.test', 'Ok@Example.com'),
      { key: 'nofname@example.com', attributes: { score: 3 } },
    ]);
    assert.deepEqual(outcome.rejected, [
      {
        key: 'Ok@Example.com',
        reason: "same Mailchimp contact as 'ok@example.com' (addresses are compared case-insensitively)",
      },
      {
        key: 'not-an-address',
        reason: 'not-an-address looks fake or invalid, please enter a real email address. [ERROR_GENERIC]',
      },
      { key: 'x@blocked.test', reason: 'compliance state: cannot be subscribed [ERROR_GENERIC]' },
      {
        key: 'nofname@example.com',
        reason: 'Your merge fields were invalid. (FNAME: Please enter a value) [ERROR_GENERIC]',
      },
    ]);
    assert.deepEqual([...emu.members(listId).keys()], ['ok@example.com']);
    assert.deepEqual(
      emu.members(listId).get('ok@example.com'),
      { FNAME: 'Name 0', SCORE: 0 },
      'unknown tags ignored',
    );
  });

  test('members the batch answer does not mention stay pending; the ones it lists are delivered', async () => {
    const { emu, dest, listId } = await setup();
    emu.faults.set({
      unlisted: (email) => email === 'b@example.com' || email === 'c@example.com',
      reject: (email) => (email === 'c@example.com' ? 'compliance state: cannot be subscribed' : null),
    });
    const outcome = await dest.add!(
      contacts('a@example.com', 'b@example.com', 'c@example.com', 'd@example.com'),
    );
    assert.deepEqual(outcome.rejected, [
      { key: 'c@example.com', reason: 'compliance state: cannot be subscribed [ERROR_GENERIC]' },
      {
        key: 'b@example.com',
        reason:
          "not acknowledged: Mailchimp's answer lists it neither in new_members, updated_members nor errors",
      },
    ]);
    assert.deepEqual([...emu.members(listId).keys()], ['a@example.com', 'b@example.com', 'd@example.com']);

    emu.faults.clear();
    const again = await dest.add!(contacts('a@example.com', 'b@example.com'));
    assert.deepEqual(again.rejected, [], 'existing contacts come back as updated_members');
  });

  test('429 TooManyRequests carries no Retry-After: exponential backoff, then success', async () => {
    const { emu, dest, listId, waits } = await setup();
    emu.faults.set({ rateLimit: { calls: 2 } });
    const outcome = await counted(() => dest.add!(contacts('a@example.com')));
    assert.deepEqual(waits, [250, 500], 'half of 500 ms, then half of 1 s (random() = 0.5)');
    assert.equal(outcome.rateLimitWaits, 2);
    assert.equal(outcome.calls, 3);
    assert.equal(emu.members(listId).size, 1);
  });

  test('the emulator refuses the 11th simultaneous request with 429 TooManyRequests', async () => {
    const { emu, listId } = await setup();
    emu.faults.set({ latencyMs: 150 });
    const answers = await Promise.all(
      Array.from({ length: 14 }, () =>
        fetch(`${emu.url}/3.0/lists/${listId}/members`, { headers: { authorization: `Bearer ${apiKey}` } }),
      ),
    );
    const refused = answers.filter((r) => r.status === 429);
    assert.equal(refused.length, 4);
    const problem = (await refused[0]!.json()) as Record<string, unknown>;
    assert.equal(problem.title, 'Too Many Requests');
    assert.equal(problem.detail, 'You have exceeded the limit of 10 simultaneous connections.');
    assert.equal(refused[0]!.headers.get('retry-after'), null);
    assert.equal(emu.stats().tooManyConnections, 4);
  });

  test('several connectors of one account, sending at once, never exceed 10 connections', async () => {
    const emu = track(await startMailchimpEmulator({ apiKey }));
    // The worker's context: one throttle per process, shared by every activity.
    const context = createDestinationContext({ secrets, throttle: createThrottle() });
    const lists = [emu.createList(), emu.createList(), emu.createList()];
    const destinations = lists.map((listId) =>
      createMailchimpAudienceDestination(
        { type: 'mailchimp-audience', baseUrl: emu.url, listId, apiKeySecret: 'MAILCHIMP_KEY' },
        context,
      ),
    );
    for (const [i, listId] of lists.entries()) {
      emu.setMembers(listId, new Map(emails(40, `list${i}.test`).map((e) => [e, {}])));
    }
    emu.faults.set({ latencyMs: 60 });
    // 3 × 40 archive calls plus three batch upserts, all started together.
    const { value: outcomes, rateLimitWaits } = await counted(() =>
      Promise.all(
        destinations.flatMap((dest, i) => [
          dest.remove!(emails(40, `list${i}.test`)),
          dest.add!(contacts(...emails(30, `new${i}.test`))),
        ]),
      ),
    );
    const { peakInFlight } = emu.stats();
    assert.ok(peakInFlight <= 10, `never more than 10 connections in flight (peak ${peakInFlight})`);
    assert.ok(peakInFlight > 5, `but sent in parallel, not one by one (peak ${peakInFlight})`);
    assert.equal(emu.stats().tooManyConnections, 0);
    assert.ok(outcomes.every((o) => o.rejected.length === 0));
    assert.equal(rateLimitWaits, 0);
    for (const [i, listId] of lists.entries()) {
      assert.deepEqual([...emu.members(listId).keys()], emails(30, `new${i}.test`));
    }
  });

  test('retries 5xx; persistent 5xx in one archive fails the batch as retryable with its cost', async () => {
    const { emu, dest, listId, waits } = await setup();
    emu.faults.set({ serverError: { calls: 1, status: 503 } });
    await dest.add!(contacts('a@example.com', 'b@example.com'));
    assert.deepEqual(waits, [250]);
    assert.equal(emu.members(listId).size, 2);

    emu.faults.set({ serverError: { calls: 5 } });
    const { error, calls } = await countedFailure(() => dest.remove!(['a@example.com']));
    assert.ok(error instanceof DestinationError);
    assert.equal(error.kind, 'retryable');
    assert.equal(error.status, 500);
    assert.equal(calls, 5);
    assert.equal(emu.members(listId).size, 2);
  });

  test('applyThenFail on an archive: the retry finds it archived (404) and counts it done', async () => {
    const { emu, dest, listId } = await setup();
    emu.setMembers(listId, new Map([['a@example.com', {}]]));
    emu.faults.set({ applyThenFail: { calls: 1 } });
    const outcome = await counted(() => dest.remove!(['a@example.com']));
    assert.deepEqual(outcome.value.rejected, []);
    assert.equal(emu.contact(listId, 'a@example.com')?.status, 'archived');
    assert.deepEqual(outcome.tallies[MAILCHIMP_ENDPOINTS.archive], {
      calls: 2,
      failed: 0,
      rateLimited: 0,
      retried: 1,
    });
  });

  test('a bad API key is fatal, names the secret and never shows the key', async () => {
    const wrongKey = 'ffffffffffffffffffffffffffffffff-us6';
    const { dest } = await setup({ apiKeySecret: 'OLD_KEY' }, {}, (name) =>
      name === 'OLD_KEY' ? wrongKey : secrets(name),
    );
    const err = await rejection(dest.add!(contacts('a@example.com')));
    assert.equal(err.kind, 'fatal');
    assert.equal(err.status, 401);
    assert.match(err.message, /API Key Invalid/);
    assert.match(err.message, /OLD_KEY/);
    assert.ok(!err.message.includes(wrongKey.slice(0, 32)), err.message);
  });

  test('a missing audience is fatal, on add and on remove alike', async () => {
    const { dest } = await setup({ listId: 'nosuchlist' });
    const onAdd = await rejection(dest.add!(contacts('a@example.com')));
    assert.equal(onAdd.kind, 'fatal');
    assert.match(onAdd.message, /no audience 'nosuchlist'/);
    // A member DELETE answers 404 either way: the audience check tells them apart.
    const onRemove = await rejection(dest.remove!(['a@example.com']));
    assert.equal(onRemove.kind, 'fatal');
    assert.match(onRemove.message, /GET .*\/3\.0\/lists\/nosuchlist\?fields=id/);
  });

  test('more than 500 members is refused as a whole; a missing secret or data centre is fatal', async () => {
    const { emu, listId } = await setup();
    const tooMany = await fetch(`${emu.url}/3.0/lists/${listId}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}` },
      body: JSON.stringify({
        members: emails(501).map((email_address) => ({ email_address, status: 'subscribed' })),
      }),
    });
    assert.equal(tooMany.status, 400);
    assert.match(((await tooMany.json()) as { detail: string }).detail, /at most 500 members/);

    const { dest: unset } = await setup({ apiKeySecret: 'NOT_SET' });
    assert.match((await rejection(unset.add!(contacts('a@example.com')))).message, /NOT_SET/);

    const noSuffix = createMailchimpAudienceDestination(
      { type: 'mailchimp-audience', listId: 'abc', apiKeySecret: 'PLAIN' },
      testContext(() => 'oauth-token-without-suffix').context,
    );
    const err = await rejection(noSuffix.listMembers!(null, 10));
    assert.equal(err.kind, 'fatal');
    assert.match(err.message, /no data centre suffix .* set dataCenter/);
    assert.ok(!err.message.includes('oauth-token-without-suffix'));
  });

  test('check() reads the audience: its name and subscribed count, in one call', async () => {
    const { emu, dest, listId } = await setup();
    emu.setMembers(listId, new Map([['a@example.com', {}]]));
    const { value: line, tallies } = await counted(() => dest.check());
    assert.equal(
      line,
      `mailchimp-audience: audience ${listId} 'Newsletter' (1 subscribed member) reachable at ${emu.url} with the key in 'MAILCHIMP_KEY'`,
    );
    assert.deepEqual(tallies, {
      [MAILCHIMP_ENDPOINTS.audience]: { calls: 1, failed: 0, rateLimited: 0, retried: 0 },
    });
    // The audience is known to exist: a removal of an absent contact needs no second look.
    const removal = await counted(() => dest.remove!(['nobody@example.com']));
    assert.deepEqual(Object.keys(removal.tallies), [MAILCHIMP_ENDPOINTS.archive]);
  });

  test('check() refuses a wrong key, a missing audience and a key without data centre, fatally', async () => {
    const wrongKey = 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-us6';
    const { dest } = await setup({}, {}, () => wrongKey);
    const refused = await rejection(dest.check());
    assert.equal(refused.kind, 'fatal');
    assert.equal(refused.status, 401);
    assert.match(
      refused.message,
      /^mailchimp-audience: 401 .*check the secret named in apiKeySecret \('MAILCHIMP_KEY'\)/,
    );
    assert.ok(!refused.message.includes(wrongKey.slice(0, 32)), refused.message);

    const missing = await setup({ listId: 'nosuchlist' });
    const notFound = await rejection(missing.dest.check());
    assert.equal(notFound.kind, 'fatal');
    assert.equal(notFound.status, 404);
    assert.match(notFound.message, /no audience 'nosuchlist' in this Mailchimp account — check listId/);

    const noSuffix = createMailchimpAudienceDestination(
      { type: 'mailchimp-audience', listId: 'abc', apiKeySecret: 'PLAIN' },
      testContext(() => 'oauth-token-without-suffix').context,
    );
    assert.match((await rejection(noSuffix.check())).message, /set dataCenter/);
  });

  test('a server echoing the key in an error does not leak it', async () => {
    const server = track(
      await startFakeServer((req, res) => {
        const key = Buffer.from(req.headers.authorization!.slice(6), 'base64').toString().split(':')[1];
        res.writeHead(400, { 'content-type': 'application/problem+json' });
        res.end(JSON.stringify({ title: 'Invalid Resource', detail: `key ${key} may not do that` }));
      }),
    );
    const dest = createMailchimpAudienceDestination(
      {
        type: 'mailchimp-audience',
        baseUrl: server.url,
        listId: 'l1',
        apiKeySecret: 'MAILCHIMP_KEY',
      },
      testContext(secrets).context,
    );
    const err = await rejection(dest.add!(contacts('a@example.com')));
    assert.equal(err.kind, 'batch');
    assert.match(err.message, /may not do that/);
    assert.ok(!err.message.includes(apiKey), err.message);
  });
});

describe('mailchimp-audience wire format and helpers', () => {
  test('sends exactly the documented requests', async () => {
    const seen: string[] = [];
    const server = track(
      await startFakeServer((req, res, body) => {
        seen.push(`${req.method} ${req.url} ${body}`.trim());
        assert.equal(
          req.headers.authorization,
          `Basic ${Buffer.from(`deltasync:${apiKey}`).toString('base64')}`,
        );
        if (req.method === 'DELETE') return void res.writeHead(204).end();
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify(
            req.method === 'GET'
              ? { members: [{ email_address: 'a@x.com', status: 'subscribed' }], total_items: 1 }
              : {
                  new_members: [{ email_address: 'a@x.com' }],
                  updated_members: [],
                  errors: [],
                  error_count: 0,
                },
          ),
        );
      }),
    );
    const dest = createMailchimpAudienceDestination(
      {
        type: 'mailchimp-audience',
        baseUrl: `${server.url}/`,
        listId: 'a1b2c3d4e5',
        apiKeySecret: 'MAILCHIMP_KEY',
        mergeFields: { first_name: 'FNAME' },
      },
      testContext(secrets).context,
    );
    const added = await dest.add!([{ key: 'A@x.com', attributes: { first_name: 'Ann', ignored: 'x' } }]);
    assert.deepEqual(
      added.rejected,
      [],
      'new_members names it (Mailchimp compares addresses case-insensitively)',
    );
    await dest.remove!(['A@x.com']);
    assert.deepEqual(await dest.listMembers!(null, 5000), { keys: ['a@x.com'], next: null });
    assert.deepEqual(seen, [
      'POST /3.0/lists/a1b2c3d4e5 {"members":[{"email_address":"A@x.com","status_if_new":"subscribed","merge_fields":{"FNAME":"Ann"}}],"update_existing":true}',
      `DELETE /3.0/lists/a1b2c3d4e5/members/${subscriberHash('a@x.com')}`,
      'GET /3.0/lists/a1b2c3d4e5/members?count=1000&offset=0&fields=members.email_address%2Cmembers.status%2Ctotal_items',
    ]);
  });

  test('helpers: data centre, subscriber hash, merge values, config defaults', () => {
    assert.equal(mailchimpBaseUrl({}, apiKey), 'https://us6.api.mailchimp.com');
    assert.equal(mailchimpBaseUrl({ dataCenter: 'us21' }, 'token'), 'https://us21.api.mailchimp.com');
    assert.equal(mailchimpBaseUrl({ baseUrl: 'http://localhost:1/' }, apiKey), 'http://localhost:1');
    assert.equal(mailchimpBaseUrl({}, 'token'), undefined);
    // Mailchimp's documented example: md5 of the lower-cased address.
    assert.equal(subscriberHash('Urist.McVankab@freddiesjokes.com'), '62eeb292278cc15f5817cb78f7790b08');
    assert.deepEqual(
      [mergeValue(null), mergeValue(3), mergeValue(true), mergeValue('x')],
      ['', 3, 'true', 'x'],
    );
    const parsed = mailchimpAudienceConfigSchema.parse({
      type: 'mailchimp-audience',
      listId: 'abc',
      apiKeySecret: 'K',
    });
    assert.equal(parsed.recordsPerCall, 500);
    assert.equal(parsed.maxConcurrent, 10);
    assert.equal(parsed.statusIfNew, 'subscribed');
    const bad = mailchimpAudienceConfigSchema.safeParse({
      ...parsed,
      recordsPerCall: 501,
      mergeFields: { a: 'fname' },
    });
    assert.deepEqual(bad.error?.issues.map((i) => i.path.join('.')).sort(), [
      'mergeFields.a',
      'recordsPerCall',
    ]);
  });
});

describe("mailchimp-audience and Mailchimp's published OpenAPI document", () => {
  type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  const doc = JSON.parse(readFileSync(path.join(projectRoot, MAILCHIMP_SPEC_DOCUMENT), 'utf8')) as Json;
  const batchOperation = doc.paths['/3.0/lists/{list_id}'].post as Json;
  const batchBody = batchOperation.requestBody.content['application/json'].schema as Json;
  const check = openApiCheck({
    document: MAILCHIMP_SPEC_DOCUMENT,
    operations: {
      batch: 'POST /3.0/lists/{list_id}',
      archive: 'DELETE /3.0/lists/{list_id}/members/{subscriber_hash}',
      members: 'GET /3.0/lists/{list_id}/members',
      list: 'GET /3.0/lists/{list_id}',
    },
  });

  test('the limits in vendor-limits.ts are the ones the document states', () => {
    const perCall = /Up to (\d+) members may be added or updated with each API call/.exec(
      batchBody.properties.members.description as string,
    );
    assert.equal(Number(perCall?.[1]), MAX_MEMBERS_PER_BATCH);
    const count = (doc.paths['/3.0/lists/{list_id}/members'].get.parameters as Json[]).find(
      (p) => p.name === 'count',
    );
    assert.equal(count?.schema.maximum, MAX_MEMBERS_PAGE);
    const base = { type: 'mailchimp-audience', listId: 'abc', apiKeySecret: 'K' } as const;
    assert.equal(mailchimpAudienceConfigSchema.parse(base).recordsPerCall, MAX_MEMBERS_PER_BATCH);
    assert.ok(!mailchimpAudienceConfigSchema.safeParse({ ...base, recordsPerCall: 501 }).success);
  });

  test('status_if_new is how the document sets a new member’s status without touching existing ones', () => {
    const member = batchBody.properties.members.items as Json;
    assert.deepEqual(member.anyOf, [{ required: ['status'] }, { required: ['status_if_new'] }]);
    assert.match(member.properties.status_if_new.description as string, /if they are net new/);
    assert.match(
      batchBody.properties.update_existing.description as string,
      /change existing members' subscription status/,
    );
    const exchange = (body: unknown) => ({
      endpoint: 'batch',
      method: 'POST',
      pathname: '/3.0/lists/a1b2c3d4e5',
      query: new URLSearchParams(),
      headers: {},
      body,
    });
    // What the connector sends (the wire-format test above pins it byte for byte) follows the
    // document; a member with neither status nor status_if_new does not.
    const sent = {
      members: [{ email_address: 'A@x.com', status_if_new: 'subscribed', merge_fields: { FNAME: 'Ann' } }],
      update_existing: true,
    };
    assert.deepEqual(check.request(exchange(sent)), []);
    assert.match(
      check.request(exchange({ members: [{ email_address: 'a@x.com' }] })).join(),
      /required field 'status_if_new' is missing/,
    );
  });

  test('the emulator refuses what the document does not list, 400 Invalid Resource, before acting on it', async () => {
    const { emu, listId } = await setup();
    const call = (method: string, url: string, body?: unknown) =>
      fetch(`${emu.url}/3.0/lists/${listId}${url}`, {
        method,
        headers: { authorization: `Bearer ${apiKey}` },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    const undocumented = await call('POST', '', {
      members: [{ email_address: 'new@example.com', status_if_new: 'subscribed', source: 'crm' }],
      update_existing: true,
    });
    assert.equal(undocumented.status, 400);
    const problem = (await undocumented.json()) as { title: string; detail: string };
    assert.equal(problem.title, 'Invalid Resource');
    assert.match(problem.detail, /field 'source' is not in the spec/);
    assert.equal(emu.contact(listId, 'new@example.com'), undefined, 'nothing applied');

    const noStatus = await call('POST', '', { members: [{ email_address: 'new@example.com' }] });
    assert.equal(noStatus.status, 400);
    assert.equal(emu.contact(listId, 'new@example.com'), undefined);
    assert.equal((await call('GET', '/members?status=subscribed,pending')).status, 400);
    assert.equal((await call('GET', '/members?page=2')).status, 400);

    const taken = takeSpecViolations();
    assert.deepEqual(
      taken.map((v) => [v.emulator, v.endpoint, v.direction]),
      [
        ['mailchimp-audience', 'batch', 'request'],
        ['mailchimp-audience', 'batch', 'request'],
        ['mailchimp-audience', 'members', 'request'],
        ['mailchimp-audience', 'members', 'request'],
      ],
    );
    assert.match(taken[3]!.problems.join(), /query parameter 'page' is not in the spec/);

    // The documented request goes through, and so does its answer (checked too: a violation left
    // untaken fails this file).
    const documented = await call('POST', '', {
      members: [{ email_address: 'new@example.com', status_if_new: 'pending' }],
      update_existing: true,
    });
    assert.equal(documented.status, 200);
    assert.equal(emu.contact(listId, 'new@example.com')?.status, 'pending');
  });
});

describe('mailchimp-audience refresh workflow (Temporal dev server, MariaDB)', () => {
  const TABLE = 'mc_subscribers';
  const scenario = refreshScenario({
    emulator: () => startMailchimpEmulator({ apiKey }),
    dataset: async (db) => {
      await db.schema.createTable(TABLE, (table) => {
        table.string('email', 255).primary().collate('utf8mb4_bin');
        table.string('first_name', 64).notNullable();
        table.string('plan', 16).notNullable();
      });
      await db(TABLE).insert(
        emails(80).map((email, i) => ({ email, first_name: `User ${i}`, plan: 'free' })),
      );
    },
  });

  async function expected(): Promise<Map<string, Record<string, string>>> {
    const rows = (await scenario.db(TABLE).select()) as { email: string; first_name: string; plan: string }[];
    return new Map(rows.map((r) => [r.email, { FNAME: r.first_name, PLAN: r.plan }]));
  }

  async function assertAudienceEqualsDataset(listId: string) {
    const want = await expected();
    const have = scenario.emu.members(listId);
    assert.equal(have.size, want.size, 'audience size');
    for (const [email, fields] of want) assert.deepEqual(have.get(email), fields, email);
  }

  test('two diff refreshes with a 429 and a 5xx end with the audience equal to the dataset', async () => {
    const { emu, db } = scenario;
    const listId = emu.createList({ mergeFields: [{ tag: 'FNAME', required: true }, { tag: 'PLAN' }] });
    await saveConnector(db, {
      id: 'mailchimp-newsletter',
      dataset: { table: TABLE, key: 'email', attributes: ['first_name', 'plan'] },
      destination: {
        type: 'mailchimp-audience',
        baseUrl: emu.url,
        listId,
        apiKeySecret: 'MAILCHIMP_KEY',
        mergeFields: { first_name: 'FNAME', plan: 'PLAN' },
        recordsPerCall: 30,
      },
    });

    await scenario.withWorker(secrets, async (client) => {
      emu.faults.set({ rateLimit: { calls: 1 }, serverError: { calls: 1, status: 503 } });
      const first = await client.refresh('mailchimp-newsletter');
      assert.equal(first.status, 'succeeded');
      assert.deepEqual([first.additions, first.updates, first.deletions], [80, 0, 0]);
      assert.equal(first.rateLimitWaits, 1);
      assert.equal(first.apiCalls, 3 + 2, 'three batches of at most 30, plus the 429 and the 503 retried');
      await assertAudienceEqualsDataset(listId);

      // Six sign-ups, eight leavers (archived), five plan changes; one more 429 on the way.
      await db(TABLE).insert(
        emails(6, 'new.test').map((email) => ({ email, first_name: 'New', plan: 'free' })),
      );
      const leavers = emails(8);
      await db(TABLE).whereIn('email', leavers).delete();
      await db(TABLE).whereIn('email', emails(80).slice(40, 45)).update({ plan: 'pro' });
      emu.faults.set({ rateLimit: { calls: 1 } });
      emu.resetStats();
      const second = await client.refresh('mailchimp-newsletter');
      assert.equal(second.status, 'succeeded');
      assert.deepEqual([second.additions, second.updates, second.deletions], [6, 5, 8]);
      assert.equal(second.rejected, 0);
      assert.equal(emu.stats().calls.archive, 8, 'one archive call per leaver');
      assert.ok(emu.stats().peakInFlight <= 10);
      await assertAudienceEqualsDataset(listId);
      for (const email of leavers) assert.equal(emu.contact(listId, email)?.status, 'archived', email);
    });
  });
});
