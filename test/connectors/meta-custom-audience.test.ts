import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import {
  createMetaCustomAudienceDestination,
  metaCustomAudienceConfigSchema,
  metaHash,
  metaNormalizers,
  replaceSessionId,
  type MetaAudienceDestination,
  type MetaCustomAudienceConfigInput,
} from '../../src/connectors/meta-custom-audience/index';
import { MetaGraphError, regainAccessMs } from '../../src/connectors/meta-custom-audience/graph-api';
import { forgetReplaceSessions } from '../../src/connectors/meta-custom-audience/destination';
import {
  FIRST_BATCH_SEQ,
  MAX_INVALID_ENTRY_SAMPLES,
  MAX_USERS_PER_CALL,
  META_SPEC_DOCUMENT,
  OPERATION_STATUS,
  OPERATION_STATUS_TEXT,
  REPLACE_ERROR_CODE,
  REPLACE_ERROR_SUBCODES,
  REPLACE_ERROR_TITLES,
  REPLACE_MAX_AUDIENCE_SIZE,
  REPLACE_SESSION_MS,
} from '../../src/connectors/meta-custom-audience/vendor-limits';
import { projectRoot } from '../../src/paths';
import type { RetryOptions } from '../../src/connectors/kit/http';
import type { ConnectorInput } from '../../src/core/connector';
import { saveConnector } from '../../src/core/connector-store';
import { endpointCalls } from '../../src/core/runs';
import {
  capabilitiesOf,
  DestinationError,
  type Member,
  type SecretResolver,
} from '../../src/core/destination';
import { dialectOf, type Db } from '../../src/db/index';
import {
  NOT_EMULATED,
  startMetaCustomAudienceEmulator,
  type MetaCustomAudienceEmulator,
  type MetaEmulatorOptions,
  type MetaRow,
} from '../../src/connectors/meta-custom-audience/emulator';
import { takeSpecViolations } from '../../src/connectors/kit/vendor-spec';
import { counted, countedFailure, testContext } from '../helpers/destination-context';
import { refreshScenario } from '../helpers/destination-scenario';
import { closeAfterEach, fixedSecrets, rejection } from '../helpers/destinations';
import { freePort, startFakeServer } from '../helpers/fake-http';

const TOKEN = 'EAAB-meta-token-5d1c9a';
const AUDIENCE = '23850000000000001';
const ACCOUNT = 'act_4242';
const secrets = fixedSecrets({ META_TOKEN: TOKEN });
const track = closeAfterEach();

/** Independent of the module under test: SHA-256 hex of an already normalised value. */
const sha = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');
const emailHash = (email: string) => sha(email.trim().toLowerCase());

/** The destination's settings for the audience AUDIENCE of the Graph API at `graphUrl`. */
function settings(graphUrl: string, config: Partial<MetaCustomAudienceConfigInput> = {}) {
  return {
    type: 'meta-custom-audience' as const,
    graphUrl,
    adAccountId: ACCOUNT,
    audienceId: AUDIENCE,
    accessTokenSecret: 'META_TOKEN',
    ...config,
  };
}

/**
 * Virtual time shared by an emulator and the destinations of one test: the destinations' sleeps
 * (retry backoff, waiting for a replace) are recorded and move the emulator's clock on.
 */
function virtualTime() {
  const time = { now: Date.parse('2026-12-04T09:00:00Z'), waits: [] as number[] };
  return {
    time,
    clock: () => time.now,
    sleep: async (ms: number) => {
      time.waits.push(ms);
      time.now += ms;
    },
  };
}

/** A destination on the emulator, in the same virtual time, built as another activity would. */
function destinationOn(
  emu: MetaCustomAudienceEmulator,
  sleep: (ms: number) => Promise<void>,
  options: { listId?: string; config?: Partial<MetaCustomAudienceConfigInput> } = {},
) {
  const { context } = testContext(secrets, { listId: options.listId, retry: { baseDelayMs: 100, sleep } });
  return track(createMetaCustomAudienceDestination(settings(emu.url, options.config), context));
}

async function setup(
  config: Partial<MetaCustomAudienceConfigInput> = {},
  emulator: Partial<MetaEmulatorOptions> = {},
  retry: RetryOptions = {},
  secretResolver: SecretResolver = secrets,
): Promise<{
  emu: MetaCustomAudienceEmulator;
  dest: MetaAudienceDestination;
  waits: number[];
  sleep: (ms: number) => Promise<void>;
}> {
  const { time, clock, sleep } = virtualTime();
  const emu = track(
    await startMetaCustomAudienceEmulator({ accessToken: TOKEN, audiences: [AUDIENCE], clock, ...emulator }),
  );
  const { context } = testContext(secretResolver, {
    retry: { baseDelayMs: 100, rateLimitBaseDelayMs: 1000, sleep, ...retry },
  });
  const dest = track(createMetaCustomAudienceDestination(settings(emu.url, config), context));
  return { emu, dest, waits: time.waits, sleep };
}

const minimalSettings = {
  type: 'meta-custom-audience' as const,
  adAccountId: ACCOUNT,
  audienceId: AUDIENCE,
  accessTokenSecret: 'META_TOKEN',
};

/** Every call of an endpoint succeeded at once. */
const ok = (calls: number) => ({ calls, failed: 0, rateLimited: 0, retried: 0 });

const people = (...emails: string[]): Member[] => emails.map((key) => ({ key, attributes: {} }));

describe('meta-custom-audience destination', () => {
  test('adds people as SHA-256 of normalised identifiers, extra columns from attributes', async () => {
    const { emu, dest } = await setup({
      attributeMap: { PHONE: 'phone', FN: 'first_name', LN: 'last_name' },
      defaultCountry: 'DE',
    });
    const { value: outcome, tallies } = await counted(() =>
      dest.add([
        {
          key: ' Alice@Example.COM ',
          attributes: { phone: '0151 2345 6789', first_name: 'Zoë-Ann', last_name: "O'Neil", segment: 'vip' },
        },
        { key: 'bob@example.com', attributes: { phone: null, first_name: 'Bob', last_name: '' } },
      ]),
    );
    assert.deepEqual(outcome, { rejected: [], report: { received: 2, invalid: 0 } });
    assert.deepEqual(tallies, { 'users:add': ok(1) });
    assert.deepEqual(
      emu.members(AUDIENCE),
      new Map<string, MetaRow>([
        [
          emailHash('alice@example.com'),
          {
            EMAIL: emailHash('alice@example.com'),
            PHONE: sha('4915123456789'),
            FN: sha('zoëann'),
            LN: sha('oneil'),
          },
        ],
        [emailHash('bob@example.com'), { EMAIL: emailHash('bob@example.com'), FN: sha('bob') }],
      ]),
    );
  });

  test('a key that does not normalise is rejected with a reason and never sent', async () => {
    const { emu, dest } = await setup();
    const outcome = await dest.add(people('not-an-email', 'ok@example.com'));
    assert.equal(outcome.rejected.length, 1);
    assert.equal(outcome.rejected[0]!.key, 'not-an-email');
    assert.match(outcome.rejected[0]!.reason, /^invalid e-mail/);
    assert.equal(emu.stats().recordsReceived['users:add'], 1);

    const none = await counted(() => dest.add(people('still not one', '@')));
    assert.equal(none.calls, 0, 'nothing valid: no call at all');
    assert.equal(none.value.rejected.length, 2);
    assert.equal(emu.stats().calls['users:add'], 1);
  });

  test('phone numbers as the key: digits with country code, no +', async () => {
    const { emu, dest } = await setup({ keyType: 'phone', defaultCountry: 'DE' });
    const outcome = await dest.add(people('+44 20 7946 0958', '030 1234567', '12'));
    assert.deepEqual(
      outcome.rejected.map((r) => r.key),
      ['12'],
    );
    assert.match(outcome.rejected[0]!.reason, /invalid phone number/);
    assert.deepEqual(
      [...emu.members(AUDIENCE).keys()].sort(),
      [sha('442079460958'), sha('49301234567')].sort(),
    );
  });

  test('removes people by their hashed key; a key that cannot normalise is a no-op', async () => {
    const { emu, dest } = await setup();
    await dest.add(people('a@x.com', 'b@x.com', 'c@x.com'));
    const { value: outcome, tallies } = await counted(() => dest.remove(['B@x.com', 'nonsense']));
    assert.deepEqual(outcome, { rejected: [] });
    assert.deepEqual(tallies, { 'users:remove': ok(1) });
    assert.deepEqual(
      [...emu.members(AUDIENCE).keys()].sort(),
      [emailHash('a@x.com'), emailHash('c@x.com')].sort(),
    );
  });

  test("Meta's invalid entries become rejections where its samples name them", async () => {
    const bad = new Set([emailHash('bad1@x.com'), emailHash('bad2@x.com')]);
    const { emu, dest } = await setup({}, { invalidSampleLimit: 1 });
    emu.faults.set({ invalidEntry: (row) => (bad.has(row.EMAIL!) ? 'Invalid email' : null) });
    const named = await dest.add(people('good@x.com', 'bad1@x.com'));
    assert.deepEqual(named.rejected, [
      { key: 'bad1@x.com', reason: 'Meta rejected the entry: Invalid email' },
    ]);

    // Meta names one sample of the two invalid entries: the other hides among the rest, so no
    // person of the call but the named one is acknowledged (nor counted delivered).
    const sampled = await dest.add(people('good@x.com', 'bad1@x.com', 'bad2@x.com'));
    const reason = 'not acknowledged: Meta counted 2 invalid entries and named 1';
    assert.deepEqual(sampled.rejected, [
      { key: 'bad1@x.com', reason: 'Meta rejected the entry: Invalid email' },
      { key: 'good@x.com', reason },
      { key: 'bad2@x.com', reason },
    ]);
    assert.deepEqual([...emu.members(AUDIENCE).keys()], [emailHash('good@x.com')]);
  });

  test('people Meta did not receive leave the rest of their call unacknowledged', async () => {
    const { emu, dest } = await setup({ recordsPerCall: 2 });
    // Two calls: [a, b] loses b on the way (num_received 1 of 2, and which one is not said); [c] is whole.
    emu.faults.set({ shortAck: { calls: 1 } });
    const added = await dest.add(people('a@x.com', 'b@x.com'));
    const whole = await dest.add(people('c@x.com'));
    const reason = 'not acknowledged: Meta received 1 of the 2 people sent';
    assert.deepEqual(added.rejected, [
      { key: 'a@x.com', reason },
      { key: 'b@x.com', reason },
    ]);
    assert.deepEqual(whole.rejected, []);
    assert.deepEqual(
      [...emu.members(AUDIENCE).keys()].sort(),
      [emailHash('a@x.com'), emailHash('c@x.com')].sort(),
    );

    emu.faults.set({ shortAck: { calls: 1 } });
    const removed = await dest.remove(['a@x.com', 'c@x.com']);
    assert.deepEqual(
      removed.rejected.map((r) => r.key),
      ['a@x.com', 'c@x.com'],
      'removals are counted the same way',
    );
  });

  for (const code of [17, 613, 80003, 4] as const) {
    test(`throttling (Graph error ${code}) is waited out with exponential backoff and jitter`, async () => {
      const { emu, dest, waits } = await setup();
      emu.faults.set({ rateLimit: { calls: 2, code } });
      const outcome = await counted(() => dest.add(people('a@x.com')));
      // Full jitter with random() = 0.5 and a 1 s base: half of 1 s, then half of 2 s.
      assert.deepEqual(waits, [500, 1000]);
      assert.equal(outcome.rateLimitWaits, 2);
      assert.equal(outcome.calls, 3);
      assert.deepEqual(outcome.tallies, { 'users:add': { calls: 3, failed: 0, rateLimited: 2, retried: 0 } });
      assert.equal(emu.stats().rateLimited, 2);
      assert.equal(emu.stats().statuses[code === 4 ? 403 : 400], 2);
      assert.equal(emu.members(AUDIENCE).size, 1);
    });
  }

  test("waits as long as Meta's estimated_time_to_regain_access says, within maxWaitMs", async () => {
    const { emu, dest, waits } = await setup({}, {}, { maxWaitMs: 90_000 });
    emu.faults.set({ rateLimit: { calls: 1, code: 80003, regainAccessMinutes: 5 } });
    await dest.add(people('a@x.com'));
    assert.deepEqual(waits, [90_000]);
    emu.faults.set({ rateLimit: { calls: 1, code: 613, regainAccessMinutes: 1 } });
    await dest.remove(['a@x.com']);
    assert.deepEqual(waits, [90_000, 60_000]);
  });

  test('throttling that does not stop becomes retryable after maxRateLimitWaits', async () => {
    const { emu, dest } = await setup({}, {}, { maxRateLimitWaits: 3 });
    emu.faults.set({ rateLimit: { calls: 100, code: 613 } });
    const { error: err, tallies } = await countedFailure(() => dest.add(people('a@x.com')));
    assert.ok(err instanceof MetaGraphError);
    assert.equal(err.kind, 'retryable');
    assert.equal(tallies['users:add']!.calls, 4);
    assert.equal(tallies['users:add']!.rateLimited, 3);
    assert.match(err.message, /still throttled after 3 waits: 400 Graph error 613\/1487742/);
  });

  test('5xx is retried with backoff; a persistent one becomes retryable', async () => {
    const { emu, dest, waits } = await setup();
    emu.faults.set({ serverError: { calls: 2, status: 503 } });
    const outcome = await counted(() => dest.add(people('a@x.com')));
    assert.deepEqual(waits, [50, 100]);
    assert.equal(outcome.calls, 3);
    assert.equal(outcome.retried, 2);
    assert.equal(outcome.rateLimitWaits, 0);

    emu.faults.set({ serverError: { calls: 100 } });
    const { error: err, calls } = await countedFailure(() => dest.add(people('b@x.com')));
    assert.ok(err instanceof MetaGraphError);
    assert.equal(err.kind, 'retryable');
    assert.equal(err.status, 500);
    assert.equal(calls, 5);
    assert.equal(emu.members(AUDIENCE).size, 1);
  });

  test('network errors are retried, then retryable', async () => {
    const graphUrl = `http://127.0.0.1:${await freePort()}`;
    const { context, waits } = testContext(secrets, { retry: { maxAttempts: 3 } });
    const dest = createMetaCustomAudienceDestination(settings(graphUrl), context);
    const err = await rejection(dest.add(people('a@x.com')));
    assert.equal(err.kind, 'retryable');
    assert.match(err.message, /network error/);
    assert.equal(waits.length, 2);
  });

  test('applied but unacknowledged: the retry re-sends idempotently', async () => {
    const { emu, dest } = await setup();
    emu.faults.set({ applyThenFail: { calls: 1 } });
    const outcome = await counted(() => dest.add(people('a@x.com', 'b@x.com')));
    assert.equal(outcome.calls, 2);
    assert.equal(emu.members(AUDIENCE).size, 2);
    assert.equal(emu.stats().recordsReceived['users:add'], 4);
  });

  test('an invalid token is fatal, names the secret and never shows the token', async () => {
    const wrong = 'EAAB-revoked-token-77';
    const { dest } = await setup({}, {}, {}, () => wrong);
    const { error: err, calls } = await countedFailure(() => dest.add(people('a@x.com')));
    assert.ok(err instanceof MetaGraphError);
    assert.equal(err.kind, 'fatal');
    assert.equal(err.code, 190);
    assert.equal(calls, 1, 'not retried');
    assert.match(err.message, /Graph error 190 \(OAuthException\): Invalid OAuth access token/);
    assert.match(err.message, /accessTokenSecret \('META_TOKEN'\)/);
    assert.ok(!err.message.includes(wrong), err.message);
  });

  test('a missing secret is fatal and names the secret', async () => {
    const { emu, dest } = await setup({ accessTokenSecret: 'NOT_SET' });
    const err = await rejection(dest.add(people('a@x.com')));
    assert.equal(err.kind, 'fatal');
    assert.match(err.message, /NOT_SET/);
    assert.equal(emu.stats().calls['users:add'], 0);
  });

  test('an unknown audience is fatal, with what to check', async () => {
    const { emu, dest } = await setup({ audienceId: '999' });
    const err = await rejection(dest.remove(['a@x.com']));
    assert.equal(err.kind, 'fatal');
    assert.ok(err instanceof MetaGraphError);
    assert.deepEqual([err.code, err.subcode], [100, 33]);
    assert.match(err.message, /audience '999' does not exist or the token may not use it/);
    assert.match(err.message, /act_4242/);
    assert.equal(emu.stats().calls['users:remove'], 1);
  });

  test('removals that would leave the audience too small stay pending, deferred, with a clear reason', async () => {
    const { emu, dest } = await setup({}, { minAudienceSize: 4 });
    await dest.add(people('a@x.com', 'b@x.com', 'c@x.com', 'd@x.com', 'e@x.com'));
    const { value: refused, tallies } = await counted(() => dest.remove(['a@x.com', 'b@x.com']));
    assert.deepEqual(
      refused.rejected.map((r) => r.key),
      ['a@x.com', 'b@x.com'],
    );
    for (const { reason, deferred } of refused.rejected) {
      assert.match(
        reason,
        /^refused by Meta: audience would fall below its minimum size \(error 200\/1870047\)/,
      );
      // Not the records' fault: they must not use up attempts and end in quarantine.
      assert.equal(deferred, true);
    }
    assert.deepEqual(tallies, { 'users:remove': ok(1) }, 'an answer, not a failed call');
    assert.equal(emu.members(AUDIENCE).size, 5, 'nothing removed');

    const allowed = await dest.remove(['a@x.com']);
    assert.deepEqual(allowed.rejected, []);
    assert.equal(emu.members(AUDIENCE).size, 4);
  });

  test('any other refusal of a whole call fails just that batch', async () => {
    const { emu, dest } = await setup({ recordsPerCall: 5 }, { maxUsersPerCall: 2 });
    const err = await rejection(dest.add(people('a@x.com', 'b@x.com', 'c@x.com')));
    assert.equal(err.kind, 'batch');
    assert.equal(err.status, 400);
    assert.match(err.message, /Too many users in one request: 3 \(at most 2\)/);
    assert.equal(emu.stats().calls['users:add'], 1, 'not retried');
  });

  test('recordsPerCall is the record limit: a full batch is one call', async () => {
    const { emu, dest } = await setup({ recordsPerCall: 2 });
    assert.equal(dest.limits.recordsPerCall, 2, 'the engine never hands over more than 2');
    const outcome = await counted(() => dest.add(people('a@x.com', 'b@x.com')));
    assert.equal(outcome.calls, 1);
    assert.equal(emu.members(AUDIENCE).size, 2);
  });

  test('check() reads the audience once: its name and size', async () => {
    const { emu, dest } = await setup();
    await dest.add(people('a@x.com', 'b@x.com'));
    const { value: line, tallies } = await counted(() => dest.check());
    assert.equal(
      line,
      `meta-custom-audience: audience ${AUDIENCE} ('Emulated audience ${AUDIENCE}') of ${ACCOUNT} reachable (2 people)`,
    );
    assert.deepEqual(tallies, { 'audience:read': ok(1) });
    assert.equal(emu.members(AUDIENCE).size, 2, 'nothing changed');
  });

  test('check() refuses a bad token or a missing audience, fatally, with what to fix', async () => {
    const { dest: badToken } = await setup({}, {}, {}, () => 'EAAB-revoked-token-77');
    const refused = await rejection(badToken.check());
    assert.equal(refused.kind, 'fatal');
    assert.match(
      refused.message,
      /^meta-custom-audience: .*Graph error 190 .*accessTokenSecret \('META_TOKEN'\)/,
    );
    assert.ok(!refused.message.includes('EAAB-revoked-token-77'));

    const { dest: missing } = await setup({ audienceId: '999' });
    const unknown = await rejection(missing.check());
    assert.equal(unknown.kind, 'fatal');
    assert.match(unknown.message, /audience '999' does not exist or the token may not use it/);

    const { dest: noSecret } = await setup({ accessTokenSecret: 'NOT_SET' });
    const unset = await rejection(noSecret.check());
    assert.equal(unset.kind, 'fatal');
    assert.match(unset.message, /NOT_SET/);
  });

  test('new list + swap: a usersreplace session, invisible until Meta has processed it', async () => {
    const { emu, dest, waits, sleep } = await setup();
    await dest.add(people('old1@x.com', 'keep@x.com'));

    const replace = dest.replaceList;
    const { value: created, calls } = await counted(() => replace.create('refresh-17'));
    assert.equal((await replace.create('refresh-17')).listId, created.listId, 'idempotent per name');
    assert.notEqual((await replace.create('refresh-18')).listId, created.listId);
    assert.equal(calls, 0);
    assert.match(created.listId, new RegExp(`^${AUDIENCE}:\\d+$`));

    const list = replace.forList(created.listId);
    const first = await counted(() => list.add!(people('keep@x.com', 'new1@x.com', 'not an email')));
    assert.deepEqual(
      first.tallies,
      { 'audience:read': ok(1), usersreplace: ok(1) },
      'the first batch starts the replace: only once operation_status says none runs',
    );
    assert.deepEqual(
      first.value.rejected.map((r) => r.key),
      ['not an email'],
    );
    assert.deepEqual(emu.operationStatus(AUDIENCE), { code: 414, description: 'Replace in progress' });
    const second = await counted(() => list.add!(people('new2@x.com')));
    assert.deepEqual(second.tallies, { usersreplace: ok(1) });
    assert.deepEqual(
      second.value.rejected,
      [],
      "Meta's num_received counts the session: this batch's is the difference",
    );
    assert.deepEqual(
      [...emu.members(AUDIENCE).keys()].sort(),
      [emailHash('old1@x.com'), emailHash('keep@x.com')].sort(),
      'the live audience is untouched while the session fills',
    );
    const sessionId = String(replaceSessionId(AUDIENCE, 'refresh-17'));
    assert.deepEqual(emu.sessions(AUDIENCE), [
      { sessionId, batchSeqs: [1, 2], rowsStaged: 3, state: 'open', finished: false },
    ]);

    // The engine swaps in another activity, with another destination: the numbering goes on.
    // The session ends with its last batch sent again under last_batch_flag (never an empty
    // batch), and the swap returns once Meta has processed the replace.
    const swapper = destinationOn(emu, sleep);
    const swap = await counted(() => swapper.replaceList.swap(created.listId));
    assert.deepEqual(swap.value, {}, 'the connector then points at audience:session');
    assert.deepEqual(swap.tallies, { usersreplace: ok(1), 'audience:read': ok(2) });
    assert.deepEqual(waits, [2_000], 'one status read while Meta processes (1 s), one after');
    const expected = ['keep@x.com', 'new1@x.com', 'new2@x.com'].map(emailHash).sort();
    assert.deepEqual([...emu.members(AUDIENCE).keys()].sort(), expected);
    assert.deepEqual(emu.sessions(AUDIENCE), [
      { sessionId, batchSeqs: [1, 2, 3], rowsStaged: 3, state: 'done', endedBy: 'lastBatch', finished: true },
    ]);
    assert.deepEqual(emu.operationStatus(AUDIENCE).code, 200);

    const again = await counted(() => replace.swap(created.listId)); // a retried swap changes nothing
    assert.deepEqual(again.tallies, { 'audience:read': ok(1) });
    const retired = await counted(() => replace.retire(AUDIENCE));
    assert.equal(retired.calls, 0, 'old and new list are the same audience: nothing to delete');
    assert.deepEqual([...emu.members(created.listId).keys()].sort(), expected);

    // A session list only takes additions.
    assert.deepEqual(capabilitiesOf(list), {
      add: true,
      remove: false,
      truncate: false,
      listMembers: false,
      updateAttributes: false,
      createList: false,
    });
  });

  test('after a swap the connector points at audience:session, and writes to the audience', async () => {
    const { emu } = await setup();
    const swapped = createMetaCustomAudienceDestination(
      settings(emu.url),
      testContext(secrets, { listId: `${AUDIENCE}:123456` }).context,
    );
    const outcome = await counted(() => swapped.add(people('a@x.com')));
    assert.deepEqual(outcome.tallies, { 'users:add': ok(1) });
    assert.equal(emu.members(AUDIENCE).size, 1);
    assert.deepEqual(emu.sessions(AUDIENCE), [], 'the finished session is not reopened');
    await swapped.remove(['a@x.com']);
    assert.equal(emu.members(AUDIENCE).size, 0);
  });
});

describe('meta-custom-audience wire format', () => {
  test('sends exactly the documented requests, with hashes only', async () => {
    const seen: { method: string; url: string; auth?: string; body: string }[] = [];
    const server = track(
      await startFakeServer((req, res, body) => {
        seen.push({ method: req.method!, url: req.url!, auth: req.headers.authorization, body });
        res.writeHead(200, { 'content-type': 'application/json' });
        const answer =
          req.method === 'GET'
            ? { id: AUDIENCE, operation_status: { code: 200, description: 'Normal' } }
            : {
                audience_id: AUDIENCE,
                session_id: '1',
                num_received: 1,
                num_invalid_entries: 0,
                invalid_entry_samples: {},
              };
        res.end(JSON.stringify(answer));
      }),
    );
    const graphUrl = `${server.url}/`;
    const config = {
      type: 'meta-custom-audience' as const,
      graphUrl,
      apiVersion: 'v21.0',
      adAccountId: ACCOUNT,
      audienceId: AUDIENCE,
      accessTokenSecret: 'META_TOKEN',
    };
    const { context } = testContext(secrets);
    const single = createMetaCustomAudienceDestination(config, context);
    const multi = createMetaCustomAudienceDestination({ ...config, attributeMap: { FN: 'name' } }, context);

    await single.add(people('Ann@Example.com'));
    await single.remove(['ann@example.com']);
    await multi.add([{ key: 'ann@example.com', attributes: { name: 'Ann' } }]);
    const { listId } = await single.replaceList.create('n');
    await single.replaceList.forList(listId).add!(people('ann@example.com'));
    await single.replaceList.swap(listId);

    const ann = emailHash('ann@example.com');
    const session = replaceSessionId(AUDIENCE, 'n');
    assert.deepEqual(
      seen.map(({ method, url, body }) => [method, url, body === '' ? undefined : JSON.parse(body)]),
      [
        ['POST', `/v21.0/${AUDIENCE}/users`, { payload: { schema: 'EMAIL_SHA256', data: [ann] } }],
        ['DELETE', `/v21.0/${AUDIENCE}/users`, { payload: { schema: 'EMAIL_SHA256', data: [ann] } }],
        [
          'POST',
          `/v21.0/${AUDIENCE}/users`,
          { payload: { schema: ['EMAIL', 'FN'], data: [[ann, sha('ann')]] } },
        ],
        // A replace starts only when none runs (operation_status), …
        ['GET', `/v21.0/${AUDIENCE}?fields=operation_status`, undefined],
        [
          'POST',
          `/v21.0/${AUDIENCE}/usersreplace`,
          {
            payload: { schema: 'EMAIL_SHA256', data: [ann] },
            session: { session_id: session, batch_seq: 1, last_batch_flag: false },
          },
        ],
        // … ends with its last batch again, flagged (an empty batch is not documented), …
        [
          'POST',
          `/v21.0/${AUDIENCE}/usersreplace`,
          {
            payload: { schema: 'EMAIL_SHA256', data: [ann] },
            session: { session_id: session, batch_seq: 2, last_batch_flag: true },
          },
        ],
        // … and the swap returns once Meta has processed it.
        ['GET', `/v21.0/${AUDIENCE}?fields=operation_status`, undefined],
      ],
    );
    assert.ok(seen.every((request) => request.auth === `Bearer ${TOKEN}`));
    assert.ok(
      seen.every((request) => !/ann|@|example/i.test(request.body + request.url)),
      'no raw identifier leaves',
    );
  });
});

describe('meta-custom-audience emulator', () => {
  test('takes payloads as JSON, form or query string, and the token as access_token', async () => {
    const emu = track(await startMetaCustomAudienceEmulator({ accessToken: TOKEN, audiences: [AUDIENCE] }));
    const a = emailHash('a@x.com');
    const b = emailHash('b@x.com');
    const form = new URLSearchParams({
      access_token: TOKEN,
      payload: JSON.stringify({
        schema: ['EMAIL', 'FN'],
        data: [
          [a, sha('ann')],
          [b, ''],
        ],
      }),
    });
    const added = await fetch(`${emu.url}/v25.0/${AUDIENCE}/users`, { method: 'POST', body: form });
    assert.equal(added.status, 200);
    const body = (await added.json()) as Record<string, unknown>;
    assert.equal(body.audience_id, AUDIENCE);
    assert.equal(body.num_received, 2);
    assert.equal(body.num_invalid_entries, 0);
    assert.match(String(body.session_id), /^\d+$/);
    assert.deepEqual(emu.members(AUDIENCE).get(b), { EMAIL: b });

    const query = new URLSearchParams({ payload: JSON.stringify({ schema: 'EMAIL_SHA256', data: [a] }) });
    const removed = await fetch(`${emu.url}/v25.0/${AUDIENCE}/users?${query}`, {
      method: 'DELETE',
      headers: { authorization: `OAuth ${TOKEN}` },
    });
    assert.equal(removed.status, 200);
    assert.deepEqual([...emu.members(AUDIENCE).keys()], [b]);
  });

  test('answers what Meta would: invalid entries, bad payloads, missing tokens, unknown paths', async () => {
    const emu = track(await startMetaCustomAudienceEmulator({ accessToken: TOKEN, audiences: [AUDIENCE] }));
    const post = (path: string, body: unknown, auth = `Bearer ${TOKEN}`) =>
      fetch(`${emu.url}${path}`, {
        method: 'POST',
        headers: { authorization: auth, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const users = `/v25.0/${AUDIENCE}/users`;
    const mixed = await post(users, {
      payload: { schema: 'EMAIL_SHA256', data: ['someone@x.com', emailHash('ok@x.com')] },
    });
    const answer = (await mixed.json()) as Record<string, unknown>;
    assert.equal(mixed.status, 200, 'invalid entries do not fail the call');
    assert.equal(answer.num_received, 2);
    assert.equal(answer.num_invalid_entries, 1);
    assert.deepEqual(answer.invalid_entry_samples, {
      'someone@x.com': 'EMAIL is not a SHA-256 hash in lower-case hex',
    });

    const errorOf = async (response: Promise<Response>) => {
      const r = await response;
      const { error } = (await r.json()) as { error: { code: number; message: string; fbtrace_id: string } };
      assert.ok(error.fbtrace_id);
      return [r.status, error.code, error.message] as const;
    };
    const cases: [Promise<Response>, number, number, RegExp][] = [
      [
        post(users, { payload: { schema: ['EMAIL', 'FN'], data: [['x']] } }),
        400,
        100,
        /does not match schema/,
      ],
      // Refused by the fixture table before the emulator sees them (and recorded, below).
      [
        post(users, { payload: { schema: ['NAME'], data: [] } }),
        400,
        100,
        /^\(#100\) Invalid parameter: request body at \/payload\/schema/,
      ],
      [post(users, {}), 400, 100, /required field 'payload' is missing/],
      [
        post(`/v25.0/${AUDIENCE}/usersreplace`, {
          payload: { schema: 'EMAIL_SHA256', data: [emailHash('a@x.com')] },
        }),
        400,
        100,
        /required field 'session' is missing/,
      ],
      [
        post(users, {
          payload: { schema: 'EMAIL_SHA256', data: [emailHash('a@x.com')] },
          status_if_new: 'x',
        }),
        400,
        100,
        /field 'status_if_new' is not in the spec/,
      ],
      // Whether Meta takes a batch without people is not documented: refused.
      [
        post(users, { payload: { schema: 'EMAIL_SHA256', data: [] } }),
        400,
        100,
        /payload.data holds no users/,
      ],
      [
        post(users, { payload: { schema: 'EMAIL_SHA256', data: [] } }, ''),
        400,
        104,
        /access token is required/,
      ],
      [
        post(users, { payload: { schema: 'EMAIL_SHA256', data: [] } }, 'Bearer nope'),
        400,
        190,
        /Invalid OAuth/,
      ],
      [post('/v25.0/123/nothing', {}), 400, 100, /Unknown path components/],
    ];
    for (const [response, status, code, message] of cases) {
      const [gotStatus, gotCode, gotMessage] = await errorOf(response);
      assert.deepEqual([gotStatus, gotCode], [status, code], gotMessage);
      assert.match(gotMessage, message);
    }
    assert.equal(emu.members(AUDIENCE).size, 1);
    assert.deepEqual(
      takeSpecViolations()
        .map((v) => `${v.emulator} ${v.endpoint} ${v.direction}`)
        .sort(),
      [
        'meta-custom-audience users:add request',
        'meta-custom-audience users:add request',
        'meta-custom-audience users:add request',
        'meta-custom-audience usersreplace request',
      ],
      'the requests that broke the fixture table were recorded (and are taken here)',
    );
  });

  test('faults count down per call and can be inspected and cleared', async () => {
    const { emu, dest } = await setup();
    emu.faults.set({ serverError: { calls: 1 }, rateLimit: { calls: 1, code: 613 } });
    await dest.add(people('a@x.com'));
    assert.deepEqual(emu.faults.get(), {});
    assert.deepEqual(emu.stats().statuses, { 200: 1, 400: 1, 500: 1 });
    emu.faults.set({ failAfter: { successfulCalls: 1 }, latencyMs: 1 });
    await dest.add(people('b@x.com'));
    assert.equal((await rejection(dest.add(people('c@x.com')))).kind, 'retryable');
    emu.faults.clear('failAfter');
    await dest.add(people('c@x.com'));
    assert.equal(emu.members(AUDIENCE).size, 3);
    emu.faults.clear();
    emu.resetStats();
    assert.deepEqual(emu.stats().calls, {
      'audience:read': 0,
      'users:add': 0,
      'users:remove': 0,
      usersreplace: 0,
    });
  });
});

// --- Meta's replace: asynchronous, holding the audience, in sessions of at most 90 minutes ------

/** One Graph call straight to the emulator, as another tool (or Audience Manager) would make it. */
async function graphCall(emu: MetaCustomAudienceEmulator, method: string, path: string, body?: unknown) {
  const response = await fetch(`${emu.url}/v25.0/${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = (await response.json()) as {
    num_received?: number;
    error?: { code: number; error_subcode?: number; error_user_title?: string };
  } & Record<string, unknown>;
  return { status: response.status, body: answer };
}

/** [status, code, subcode] of a Graph error answer. */
const refusal = (answer: Awaited<ReturnType<typeof graphCall>>) => [
  answer.status,
  answer.body.error?.code,
  answer.body.error?.error_subcode,
];

function replaceBatch(sessionId: number, batchSeq: number, emails: string[], last = false) {
  return {
    payload: { schema: 'EMAIL_SHA256', data: emails.map(emailHash) },
    session: { session_id: sessionId, batch_seq: batchSeq, last_batch_flag: last },
  };
}

const addBody = (...emails: string[]) => ({
  payload: { schema: 'EMAIL_SHA256', data: emails.map(emailHash) },
});
const hashes = (...emails: string[]) => emails.map(emailHash).sort();
const holding = (emu: MetaCustomAudienceEmulator) => [...emu.members(AUDIENCE).keys()].sort();
const LOCKED = [400, 2650, 1870145];

describe('meta-custom-audience emulator: replace sessions and the replace lock', () => {
  async function emulator(options: Partial<MetaEmulatorOptions> = {}) {
    const virtual = virtualTime();
    const emu = track(
      await startMetaCustomAudienceEmulator({
        accessToken: TOKEN,
        audiences: [AUDIENCE],
        clock: virtual.clock,
        ...options,
      }),
    );
    emu.setMembers(AUDIENCE, new Map([[emailHash('old@x.com'), { EMAIL: emailHash('old@x.com') }]]));
    return { emu, time: virtual.time };
  }

  test('a replace runs asynchronously after its last batch; /users writes are refused until it ends', async () => {
    const { emu, time } = await emulator({ replaceProcessingMs: 5_000 });
    assert.deepEqual(emu.operationStatus(AUDIENCE), {
      code: 200,
      description: 'Normal. There is no updating or issues found',
    });
    const first = await graphCall(emu, 'POST', `${AUDIENCE}/usersreplace`, replaceBatch(41, 1, ['a@x.com']));
    assert.equal(first.status, 200);
    assert.deepEqual(emu.operationStatus(AUDIENCE), { code: 414, description: 'Replace in progress' });
    // "Don't add or remove users via /users during an ongoing replace operation."
    const locked = await graphCall(emu, 'POST', `${AUDIENCE}/users`, addBody('z@x.com'));
    assert.deepEqual(refusal(locked), LOCKED);
    assert.equal(locked.body.error?.error_user_title, 'Audience Update In Progress');

    const last = await graphCall(
      emu,
      'POST',
      `${AUDIENCE}/usersreplace`,
      replaceBatch(41, 2, ['b@x.com'], true),
    );
    assert.equal(last.body.num_received, 2, '"Total number of users received in this session so far"');
    assert.deepEqual(holding(emu), hashes('old@x.com'), 'ended, but not processed yet');
    assert.deepEqual(
      refusal(await graphCall(emu, 'DELETE', `${AUDIENCE}/users`, addBody('old@x.com'))),
      LOCKED,
    );
    time.now += 4_999;
    assert.equal(emu.operationStatus(AUDIENCE).code, 414);

    time.now += 1;
    const read = await graphCall(
      emu,
      'GET',
      `${AUDIENCE}?fields=operation_status,approximate_count_lower_bound`,
    );
    assert.deepEqual(read.body, {
      id: AUDIENCE,
      operation_status: { code: 200, description: 'Normal. There is no updating or issues found' },
      approximate_count_lower_bound: 2,
    });
    assert.deepEqual(holding(emu), hashes('a@x.com', 'b@x.com'));
    assert.equal((await graphCall(emu, 'POST', `${AUDIENCE}/users`, addBody('z@x.com'))).status, 200);
    assert.deepEqual(emu.stats().calls.usersreplace, 2);
  });

  test("the session rules of Meta's guide: first batch, one replace at a time, finished sessions, one schema", async () => {
    const { emu, time } = await emulator();
    const replace = (body: unknown) => graphCall(emu, 'POST', `${AUDIENCE}/usersreplace`, body);
    // "The first batch_seq was not detected."
    assert.deepEqual(refusal(await replace(replaceBatch(7, 2, ['a@x.com']))), [400, 2650, 1870147]);
    assert.equal((await replace(replaceBatch(7, 1, ['a@x.com']))).status, 200);
    // "You cannot perform a replace operation if there is one already being executed."
    assert.deepEqual(refusal(await replace(replaceBatch(8, 1, ['b@x.com']))), [400, 2650, 1870145]);
    // "changing the schema mid-session will result in errors"
    const multi = {
      ...replaceBatch(7, 2, []),
      payload: { schema: ['EMAIL'], data: [[emailHash('c@x.com')]] },
    };
    assert.deepEqual(refusal(await replace(multi)), [400, 100, undefined]);
    // Later batches may repeat numbers and people.
    assert.equal((await replace(replaceBatch(7, 5, ['a@x.com', 'c@x.com']))).status, 200);
    assert.equal((await replace(replaceBatch(7, 5, ['a@x.com'], true))).status, 200);
    // "This replace operation is already finished because you uploaded a batch with last_batch_flag==true."
    assert.deepEqual(refusal(await replace(replaceBatch(7, 6, ['d@x.com']))), [400, 2650, 1870159]);
    assert.deepEqual(refusal(await replace(replaceBatch(7, 1, ['d@x.com']))), [400, 2650, 1870159]);
    time.now += 1_000;
    assert.deepEqual(holding(emu), hashes('a@x.com', 'c@x.com'));
    assert.deepEqual(refusal(await replace(replaceBatch(7, 6, ['d@x.com']))), [400, 2650, 1870159]);
    assert.deepEqual(emu.sessions(AUDIENCE), [
      {
        sessionId: '7',
        batchSeqs: [1, 5, 5],
        rowsStaged: 2,
        state: 'done',
        endedBy: 'lastBatch',
        finished: true,
      },
    ]);
    // The next replace may start now.
    assert.equal((await replace(replaceBatch(8, 1, ['b@x.com'], true))).status, 200);
  });

  test('a session not finished within 90 minutes refuses later batches; Meta replaces with what arrived', async () => {
    const { emu, time } = await emulator();
    const replace = (body: unknown) => graphCall(emu, 'POST', `${AUDIENCE}/usersreplace`, body);
    assert.equal((await replace(replaceBatch(9, 1, ['a@x.com']))).status, 200);
    time.now += 89 * 60_000;
    assert.equal((await replace(replaceBatch(9, 2, ['b@x.com']))).status, 200);
    time.now += 60_000;
    const late = await replace(replaceBatch(9, 3, ['c@x.com'], true));
    assert.deepEqual(refusal(late), [400, 2650, 1870158]);
    assert.equal(late.body.error?.error_user_title, 'Replace Session Timed Out');
    assert.equal(emu.sessions(AUDIENCE)[0]!.endedBy, 'timeout');
    assert.equal(emu.operationStatus(AUDIENCE).code, 414, 'Meta is still processing what arrived');
    time.now += 1_000;
    assert.deepEqual(holding(emu), hashes('a@x.com', 'b@x.com'));
    assert.deepEqual(refusal(await replace(replaceBatch(9, 4, ['c@x.com']))), [400, 2650, 1870158]);
  });

  test('a replace Meta cannot finish leaves operation_status 415 and the audience as it was', async () => {
    const { emu, time } = await emulator();
    emu.faults.set({ replaceFails: { calls: 1 } });
    await graphCall(emu, 'POST', `${AUDIENCE}/usersreplace`, replaceBatch(10, 1, ['a@x.com'], true));
    time.now += 1_000;
    assert.deepEqual(emu.operationStatus(AUDIENCE), { code: 415, description: 'Replace failed' });
    assert.deepEqual(holding(emu), hashes('old@x.com'));
    assert.equal(emu.sessions(AUDIENCE)[0]!.state, 'failed');
    assert.equal((await graphCall(emu, 'POST', `${AUDIENCE}/users`, addBody('z@x.com'))).status, 200);
  });
});

describe('meta-custom-audience destination: waiting for Meta to finish a replace', () => {
  test('a write while a replace holds the audience waits for Meta to finish it (operation_status), then goes', async () => {
    const { emu, dest, waits } = await setup({}, { replaceProcessingMs: 20_000 });
    // Someone else replaces the audience (Audience Manager, another tool): Meta holds it a while.
    await graphCall(emu, 'POST', `${AUDIENCE}/usersreplace`, replaceBatch(51, 1, ['theirs@x.com'], true));
    const added = await counted(() => dest.add(people('a@x.com')));
    assert.deepEqual(added.value.rejected, []);
    // The refused write, five reads of operation_status 2, 4, 8 and 16 s apart, the write again.
    assert.deepEqual(added.tallies, { 'users:add': ok(2), 'audience:read': ok(5) });
    assert.deepEqual(waits, [2_000, 4_000, 8_000, 16_000]);
    assert.deepEqual(holding(emu), hashes('theirs@x.com', 'a@x.com'));

    await graphCall(emu, 'POST', `${AUDIENCE}/usersreplace`, replaceBatch(52, 1, ['theirs@x.com'], true));
    const removed = await counted(() => dest.remove(['theirs@x.com']));
    assert.deepEqual(removed.value.rejected, []);
    assert.equal(removed.tallies['users:remove']!.calls, 2);
    assert.deepEqual(holding(emu), []);
  });

  test('a new replace starts only once the running one is finished', async () => {
    const { emu, dest, waits } = await setup({}, { replaceProcessingMs: 3_000 });
    await graphCall(emu, 'POST', `${AUDIENCE}/usersreplace`, replaceBatch(61, 1, ['theirs@x.com'], true));
    const { listId } = await dest.replaceList.create('waits-for-theirs');
    const filled = await counted(() => dest.replaceList.forList(listId).add!(people('mine@x.com')));
    assert.deepEqual(filled.value.rejected, []);
    assert.deepEqual(filled.tallies, { 'audience:read': ok(3), usersreplace: ok(1) });
    assert.deepEqual(waits, [2_000, 4_000]);
    await dest.replaceList.swap(listId);
    assert.deepEqual(holding(emu), hashes('mine@x.com'));
  });

  test('the swap waits for Meta at most 100 minutes at a time: retryable, and the retried swap finishes', async () => {
    const { emu, dest, waits } = await setup({}, { replaceProcessingMs: 2 * 60 * 60_000 });
    const { listId } = await dest.replaceList.create('slow-meta');
    await dest.replaceList.forList(listId).add!(people('a@x.com'));
    const slow = await countedFailure(() => dest.replaceList.swap(listId));
    const err = slow.error as DestinationError;
    assert.equal(err.kind, 'retryable');
    assert.match(
      err.message,
      /^meta-custom-audience: audience \d+ is still being replaced by Meta \(operation_status 414 "Replace in progress"\) after 5942 s; the swap waits until Meta has finished \(retried\)$/,
    );
    assert.deepEqual(
      waits.slice(0, 6),
      [2_000, 4_000, 8_000, 16_000, 32_000, 60_000],
      'backoff up to a minute',
    );
    assert.ok(
      waits.every((ms) => ms <= 60_000),
      'no single wait beyond a minute: the activity heartbeats',
    );
    assert.deepEqual(holding(emu), [], 'not replaced yet');

    // Temporal runs the swap again: the session ends once more (Meta: already finished), the wait goes on.
    const retried = await counted(() => dest.replaceList.swap(listId));
    assert.deepEqual(retried.tallies.usersreplace, ok(1));
    assert.deepEqual(holding(emu), hashes('a@x.com'));
    assert.deepEqual(
      emu.sessions(AUDIENCE)[0]!.batchSeqs,
      [1, 2],
      'the repeated end was refused, changing nothing',
    );
  });

  test('a replace Meta reports failed (415) fails the swap, with what to do', async () => {
    const { emu, dest } = await setup();
    emu.faults.set({ replaceFails: { calls: 1 } });
    const { listId } = await dest.replaceList.create('meta-fails');
    await dest.replaceList.forList(listId).add!(people('a@x.com'));
    const err = await rejection(dest.replaceList.swap(listId));
    assert.equal(err.kind, 'fatal');
    assert.match(err.message, /operation_status 415 "Replace failed"/);
  });

  test('nothing to replace with: the swap refuses, since Meta documents no empty replace', async () => {
    const { emu, dest } = await setup();
    const { listId } = await dest.replaceList.create('nobody');
    const outcome = await counted(() => dest.replaceList.forList(listId).add!(people('not an email')));
    assert.equal(outcome.calls, 0);
    const err = await rejection(dest.replaceList.swap(listId));
    assert.equal(err.kind, 'fatal');
    assert.match(err.message, /Meta documents no way to replace an audience with nobody/);
    assert.equal(emu.stats().calls.usersreplace, 0, 'no empty batch was sent');
  });

  test('a fill that outlasts the 90-minute session: later batches refused, the swap fails saying why', async () => {
    const { emu, dest, sleep } = await setup();
    const { listId } = await dest.replaceList.create('slow-fill');
    const list = dest.replaceList.forList(listId);
    await list.add!(people('a@x.com'));
    await sleep(91 * 60_000);
    const late = await rejection(list.add!(people('b@x.com')));
    assert.equal(late.kind, 'batch');
    assert.match(late.message, /Graph error 2650\/1870158/);
    const err = await rejection(dest.replaceList.swap(listId));
    assert.equal(err.kind, 'fatal');
    assert.match(err.message, /ran past Meta's 90-minute limit/);
    await sleep(1_000);
    assert.deepEqual(holding(emu), hashes('a@x.com'), 'Meta replaced it with what arrived in time');
  });

  test('a worker restart mid-fill continues the session (no second batch_seq 1); a swap without the last batch waits for Meta to end it', async () => {
    const { emu, dest, sleep, waits } = await setup();
    const { listId } = await dest.replaceList.create('restarted');
    await dest.replaceList.forList(listId).add!(people('a@x.com'));
    forgetReplaceSessions(); // the worker restarts
    const resumed = destinationOn(emu, sleep).replaceList.forList(listId);
    const second = await counted(() => resumed.add!(people('b@x.com')));
    assert.deepEqual(second.value.rejected, []);
    assert.deepEqual(second.tallies, { 'audience:read': ok(1), usersreplace: ok(1) });
    const sessionId = String(replaceSessionId(AUDIENCE, 'restarted'));
    assert.deepEqual(emu.sessions(AUDIENCE), [
      { sessionId, batchSeqs: [1, 2], rowsStaged: 2, state: 'open', finished: false },
    ]);

    // Restarted again before the swap: no batch to end the session with. Meta ends it by itself
    // 90 minutes after its first batch; the swap waits that out.
    forgetReplaceSessions();
    const swap = await counted(() => destinationOn(emu, sleep).replaceList.swap(listId));
    assert.equal(swap.tallies.usersreplace, undefined, 'nothing sent');
    assert.ok(waits.reduce((sum, ms) => sum + ms, 0) >= 90 * 60_000);
    assert.deepEqual(holding(emu), hashes('a@x.com', 'b@x.com'));
    assert.equal(emu.sessions(AUDIENCE)[0]!.endedBy, 'timeout');
  });

  test('a restart while someone else replaces: Meta saying the session never started sends it as the first batch', async () => {
    const { emu, dest } = await setup({}, { replaceProcessingMs: 3_000 });
    const { listId } = await dest.replaceList.create('restarted-during-theirs');
    forgetReplaceSessions();
    await graphCall(emu, 'POST', `${AUDIENCE}/usersreplace`, replaceBatch(71, 1, ['theirs@x.com'], true));
    const filled = await counted(() => dest.replaceList.forList(listId).add!(people('mine@x.com')));
    assert.deepEqual(filled.value.rejected, []);
    assert.deepEqual(filled.tallies.usersreplace, ok(2), 'batch_seq 2 refused (1870147), then batch_seq 1');
    await dest.replaceList.swap(listId);
    assert.deepEqual(holding(emu), hashes('mine@x.com'));
    const mine = emu.sessions(AUDIENCE).find((s) => s.sessionId !== '71')!;
    assert.deepEqual(mine.batchSeqs, [1, 2]);
  });
});

describe('meta-custom-audience: the fixture table and the constants', () => {
  const spec = JSON.parse(readFileSync(path.join(projectRoot, META_SPEC_DOCUMENT), 'utf8')) as {
    'x-limits': Record<string, { value: number; source: string }>;
    paths: Record<
      string,
      Record<
        string,
        {
          externalDocs?: { url: string };
          'x-retrieved'?: string;
          'x-errors'?: { code: number; error_subcode: number; title: string }[];
        }
      >
    >;
    components: {
      schemas: {
        Payload: { properties: { data: { maxItems: number } } };
        CustomAudienceStatus: {
          properties: { code: { 'x-operation-status-codes': Record<string, string> } };
        };
      };
    };
  };

  test('the limits in vendor-limits.ts are those of the fixture table', () => {
    const limits = spec['x-limits'];
    assert.equal(limits.usersPerCall!.value, MAX_USERS_PER_CALL);
    assert.equal(spec.components.schemas.Payload.properties.data.maxItems, MAX_USERS_PER_CALL);
    assert.equal(limits.replaceSessionMinutes!.value * 60_000, REPLACE_SESSION_MS);
    assert.equal(limits.replaceMaxAudienceSize!.value, REPLACE_MAX_AUDIENCE_SIZE);
    assert.equal(limits.invalidEntrySamples!.value, MAX_INVALID_ENTRY_SAMPLES);
    assert.equal(limits.firstBatchSeq!.value, FIRST_BATCH_SEQ);
    for (const limit of Object.values(limits))
      assert.match(limit.source, /^https:\/\/developers\.facebook\.com\//);
    assert.equal(
      metaCustomAudienceConfigSchema.safeParse({ ...minimalSettings, recordsPerCall: MAX_USERS_PER_CALL + 1 })
        .success,
      false,
    );

    const errors = spec.paths['/{custom_audience_id}/usersreplace']!.post!['x-errors']!;
    assert.deepEqual(
      errors.map((e) => [e.code, e.error_subcode, e.title]).sort(),
      Object.values(REPLACE_ERROR_SUBCODES)
        .map((subcode) => [REPLACE_ERROR_CODE, subcode, REPLACE_ERROR_TITLES[subcode]])
        .sort(),
    );
    const codes = spec.components.schemas.CustomAudienceStatus.properties.code['x-operation-status-codes'];
    for (const code of Object.values(OPERATION_STATUS))
      assert.equal(OPERATION_STATUS_TEXT[code], codes[String(code)]);
  });

  test('every operation cites its reference page and the day it was read', () => {
    for (const [route, operations] of Object.entries(spec.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        if (method === 'parameters') continue;
        assert.match(
          operation.externalDocs?.url ?? '',
          /^https:\/\/developers\.facebook\.com\//,
          `${method} ${route}`,
        );
        assert.equal(operation['x-retrieved'], '2026-12-04');
      }
    }
    assert.ok(NOT_EMULATED.length > 0);
  });
});

describe('meta-custom-audience normalisation and config', () => {
  test("identifiers follow Meta's normalisation rules", () => {
    const n = metaNormalizers;
    assert.equal(n.EMAIL('  John.Doe@Example.COM '), 'john.doe@example.com');
    assert.equal(n.EMAIL('john.doe@gmail.com'), 'john.doe@gmail.com', 'no Gmail dot removal for Meta');
    assert.equal(n.PHONE('+49 (151) 234-56789'), '4915123456789');
    assert.equal(n.PHONE('0151 23456789', 'DE'), '4915123456789');
    assert.equal(n.PHONE('(650) 253-0000', 'US'), '16502530000');
    assert.equal(n.PHONE('0151 23456789'), null, 'no country code, no default: unusable');
    assert.equal(n.FN('  Zoë-Ann '), 'zoëann');
    assert.equal(n.LN("O'Brien Smith"), 'obriensmith');
    assert.equal(n.FI('Émile'), 'é');
    assert.equal(n.GEN('Female'), 'f');
    assert.equal(n.GEN('x'), null);
    assert.equal(n.DOBY('1984'), '1984');
    assert.equal(n.DOBM('3'), '03');
    assert.equal(n.DOBD('32'), null);
    assert.equal(n.CT('New York'), 'newyork');
    assert.equal(n.ST('CA'), 'ca');
    assert.equal(n.ZIP('94043-1234'), '94043');
    assert.equal(n.ZIP(' SW1A 1AA '), 'sw1a1aa');
    assert.equal(n.COUNTRY('DE'), 'de');
    assert.equal(n.COUNTRY('Germany'), null);
    assert.equal(
      metaHash('EMAIL', ' Test@Example.COM '),
      '973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b',
    );
    assert.equal(metaHash('PHONE', 'garbage'), null);
  });

  test('schema defaults, limits, capabilities and refusals', async () => {
    const parsed = metaCustomAudienceConfigSchema.parse({
      type: 'meta-custom-audience',
      adAccountId: 'act_1',
      audienceId: '2',
      accessTokenSecret: 'T',
    });
    assert.equal(parsed.graphUrl, 'https://graph.facebook.com');
    assert.equal(parsed.apiVersion, 'v25.0');
    assert.equal(parsed.keyType, 'email');
    assert.equal(parsed.recordsPerCall, 10_000);
    assert.deepEqual(parsed.attributeMap, {});
    const bad = metaCustomAudienceConfigSchema.safeParse({
      ...parsed,
      adAccountId: '1',
      audienceId: 'abc',
      recordsPerCall: 10_001,
      attributeMap: { EMAIL: 'email' },
    });
    assert.deepEqual(bad.error?.issues.map((issue) => issue.path.join('.')).sort(), [
      'adAccountId',
      'attributeMap',
      'audienceId',
      'recordsPerCall',
    ]);

    const { dest } = await setup();
    assert.deepEqual(capabilitiesOf(dest), {
      add: true,
      remove: true,
      truncate: false,
      listMembers: false,
      updateAttributes: false,
      createList: true,
    });
    assert.equal(dest.keysOnly, true);
    assert.equal(dest.limits.recordsPerCall, 10_000);
    const { dest: withColumns } = await setup({ attributeMap: { PHONE: 'phone' } });
    assert.equal(capabilitiesOf(withColumns).updateAttributes, true, 'identifier columns must be re-sent');
  });

  test("regainAccessMs reads Retry-After and Meta's usage header", () => {
    const usage = (minutes: number[]) =>
      new Headers({
        'x-business-use-case-usage': JSON.stringify({
          '1': minutes.map((m) => ({ type: 'custom_audience', estimated_time_to_regain_access: m })),
        }),
      });
    assert.equal(regainAccessMs(usage([0, 3, 1])), 180_000);
    assert.equal(regainAccessMs(usage([0])), undefined);
    assert.equal(regainAccessMs(new Headers({ 'retry-after': '7' })), 7000);
    assert.equal(regainAccessMs(new Headers({ 'x-business-use-case-usage': 'not json' })), undefined);
  });
});

// --- The refresh workflow end to end ------------------------------------------------------------

const PEOPLE_TABLE = 'meta_people';
const FIRST_NAMES = ['Anna', 'Bob', 'Chloé', 'Dmitri', 'Eve'];

function person(n: number, version = 0) {
  return {
    email: `Person${n}@Example.com`,
    phone: `+49 151 234${String(n + version * 500).padStart(5, '0')}`,
    first_name: FIRST_NAMES[n % FIRST_NAMES.length]!,
    last_name: version === 0 ? `Smith-Jones` : `Miller`,
    segment: 'active',
  };
}

async function createPeople(db: Db, count: number) {
  await db.schema.createTable(PEOPLE_TABLE, (t) => {
    const key = t.string('email', 255).primary();
    if (dialectOf(db) === 'mysql') key.collate('utf8mb4_bin');
    t.string('phone', 32).nullable();
    t.string('first_name', 64).notNullable();
    t.string('last_name', 64).notNullable();
    t.string('segment', 16).notNullable();
  });
  await db(PEOPLE_TABLE).insert(Array.from({ length: count }, (_, i) => person(i + 1)));
  // One row Meta can never take: it must be rejected record-level, not sent.
  await db(PEOPLE_TABLE).insert({ ...person(0), email: 'not-an-email' });
}

/** The audience Meta should hold for the table, computed without the module under test. */
async function expectedAudience(db: Db): Promise<Map<string, MetaRow>> {
  const rows = (await db(PEOPLE_TABLE).select()) as ReturnType<typeof person>[];
  const letters = (name: string) => name.toLowerCase().replace(/[^a-zé]/g, '');
  return new Map(
    rows
      .filter((row) => row.email.includes('@'))
      .map((row) => [
        emailHash(row.email),
        {
          EMAIL: emailHash(row.email),
          PHONE: sha(row.phone.replace(/\D/g, '')),
          FN: sha(letters(row.first_name)),
          LN: sha(letters(row.last_name)),
        },
      ]),
  );
}

/** A connector on the people table, for `audienceId`, as an operator would write it. */
function metaConnector(id: string, audienceId: string, graphUrl: string): ConnectorInput {
  return {
    id,
    dataset: {
      table: PEOPLE_TABLE,
      key: 'email',
      attributes: ['phone', 'first_name', 'last_name', 'segment'],
    },
    destination: {
      type: 'meta-custom-audience',
      graphUrl,
      adAccountId: ACCOUNT,
      audienceId,
      accessTokenSecret: 'META_TOKEN',
      attributeMap: { PHONE: 'phone', FN: 'first_name', LN: 'last_name' },
      recordsPerCall: 10,
    },
    // Records are refused on purpose here, some runs refuse all they send: judged by calls only.
    policy: { batchSize: 10, recordSuccessThreshold: 0 },
  };
}

describe('refresh workflow with meta-custom-audience (mysql)', () => {
  const scenario = refreshScenario({
    emulator: () => startMetaCustomAudienceEmulator({ accessToken: TOKEN, audiences: [AUDIENCE] }),
    dataset: (db) => createPeople(db, 40),
  });

  test('additions, deletions and identifier updates over throttling and 5xx; too-small removals wait', async () => {
    const { emu, db } = scenario;
    const connector = metaConnector('meta-crm', AUDIENCE, emu.url);
    await saveConnector(db, connector);
    const assertAudienceIsDataset = async () => {
      assert.deepEqual(emu.members(AUDIENCE), await expectedAudience(db));
    };

    // Built exactly as the worker builds it: registry, catalog, secrets by name.
    await scenario.withWorker(secrets, async (client) => {
      emu.faults.set({ rateLimit: { calls: 1, code: 80003 }, serverError: { calls: 1, status: 503 } });
      const first = await client.refresh(connector.id);
      assert.equal(first.status, 'succeeded');
      assert.deepEqual([first.additions, first.updates, first.deletions], [41, 0, 0]);
      assert.equal(first.rejected, 1, 'the invalid e-mail');
      assert.equal(first.rateLimitWaits, 1);
      // Four pages of valid people; the fifth holds only the invalid e-mail and needs no call.
      assert.equal(first.apiCalls, 4 + 2, 'four add calls, one throttled and one 5xx retry');
      await assertAudienceIsDataset();
      const reason = (await db('deltalog')
        .where({ connector_id: `default/${connector.id}`, record_key: 'not-an-email' })
        .first()) as {
        last_error: string;
      };
      assert.match(reason.last_error, /^invalid e-mail/);

      // Churn: people leave, arrive, and change phone number or last name.
      const gone = ['Person3@Example.com', 'Person14@Example.com', 'Person27@Example.com'];
      await db(PEOPLE_TABLE).whereIn('email', gone).delete();
      await db(PEOPLE_TABLE).insert([41, 42, 43, 44].map((n) => person(n)));
      for (const n of [5, 6, 7]) {
        await db(PEOPLE_TABLE)
          .where({ email: person(n).email })
          .update({ phone: person(n, 1).phone, last_name: person(n, 1).last_name });
      }
      emu.faults.set({ rateLimit: { calls: 1, code: 17 }, serverError: { calls: 1 } });
      const second = await client.refresh(connector.id);
      assert.equal(second.status, 'succeeded');
      // The invalid e-mail is still pending (attempt 2), so it counts among the additions.
      assert.deepEqual([second.additions, second.updates, second.deletions], [4 + 1, 3, 3]);
      assert.equal(second.rateLimitWaits, 1);
      await assertAudienceIsDataset();
      for (const email of gone) assert.equal(emu.members(AUDIENCE).has(emailHash(email)), false);

      // Meta refuses removals that would shrink the audience too far: they wait, with the reason.
      emu.setMinAudienceSize(emu.members(AUDIENCE).size);
      await db(PEOPLE_TABLE).whereIn('email', ['Person1@Example.com', 'Person2@Example.com']).delete();
      const refused = await client.refresh(connector.id);
      assert.equal(refused.rejected, 2 + 1, 'two refused removals and the invalid e-mail');
      assert.equal(emu.members(AUDIENCE).has(emailHash('Person1@Example.com')), true);
      const pending = (await db('deltalog')
        .where({ connector_id: `default/${connector.id}`, record_key: 'Person1@Example.com' })
        .first()) as {
        committed_at: unknown;
        attempts: number;
        last_error: string;
      };
      assert.equal(pending.committed_at, null);
      assert.equal(pending.attempts, 0, "deferred: the refusal is not the record's fault");
      assert.match(pending.last_error, /refused by Meta: audience would fall below its minimum size/);

      emu.setMinAudienceSize(0);
      const retried = await client.refresh(connector.id);
      assert.equal(retried.status, 'succeeded');
      assert.equal(retried.deletions, 2);
      await assertAudienceIsDataset();
    });
  });

  test("the run's match rate: what Meta counted as received and invalid, on the run and in progress", async () => {
    const { emu, db } = scenario;
    const audienceId = emu.createAudience();
    const connector = metaConnector('meta-match', audienceId, emu.url);
    await saveConnector(db, connector);
    // Meta finds two of the people invalid (it counts them, and names them in its samples).
    const bad = new Set([emailHash('Person4@Example.com'), emailHash('Person9@Example.com')]);
    emu.faults.set({ invalidEntry: (row) => (bad.has(row.EMAIL ?? '') ? 'invalid hash' : null) });
    try {
      await scenario.withWorker(secrets, async (client) => {
        const run = await client.refresh(connector.id);
        assert.ok(run.matchRate, 'Meta reports what it received');
        // 40 people, one of them without a valid e-mail (rejected before any call): 39 sent.
        assert.equal(run.matchRate.received, 39);
        assert.equal(run.matchRate.invalid, 2);
        assert.equal(run.matchRate.rate, 37 / 39);
        assert.equal(run.recordsSent, 37);
        const [listed] = await client.runs(connector.id, { limit: 1 });
        assert.deepEqual(listed!.matchRate, run.matchRate);
      });
    } finally {
      emu.faults.clear('invalidEntry');
    }
  });

  test('forced new list + swap: the audience becomes exactly the dataset through a usersreplace session', async () => {
    const { emu, db } = scenario;
    const audienceId = emu.createAudience();
    const connector = metaConnector('meta-replace', audienceId, emu.url);
    await saveConnector(db, connector);
    // People the dataset never had: a diff cannot know them, a replace drops them.
    const stray = emailHash('stray@elsewhere.example');
    emu.setMembers(audienceId, new Map([[stray, { EMAIL: stray }]]));
    const state = () =>
      db('connector_state')
        .where({ connector_id: `default/${connector.id}` })
        .first() as Promise<{
        remote_list_id: string | null;
      }>;

    await scenario.withWorker(secrets, async (client) => {
      emu.faults.set({ rateLimit: { calls: 1, code: 80003 }, serverError: { calls: 1 } });
      const replaced = await client.refresh(connector.id, { strategy: 'newList' });
      assert.equal(replaced.status, 'succeeded');
      assert.equal(replaced.strategy, 'newList');
      assert.equal(replaced.rejected, 1, 'the invalid e-mail stays pending');
      assert.equal(replaced.rateLimitWaits, 1);
      assert.deepEqual(emu.members(audienceId), await expectedAudience(db));
      const [session, ...others] = emu.sessions(audienceId);
      assert.equal(others.length, 0);
      assert.equal(session!.finished, true);
      const pages = Math.ceil(emu.members(audienceId).size / 10);
      assert.deepEqual(
        session!.batchSeqs,
        Array.from({ length: pages + 1 }, (_, i) => i + 1),
        'fill pages 1..n, then the last page again with last_batch_flag, numbered across activities',
      );
      const calls = await endpointCalls(db, replaced.runId);
      assert.deepEqual(Object.keys(calls).sort(), ['audience:read', 'usersreplace']);
      assert.deepEqual(calls.usersreplace, { calls: pages + 1, failed: 0, rateLimited: 0, retried: 0 });
      // operation_status before the first batch (throttled once, a 5xx once) and after the swap.
      assert.equal(calls['audience:read']!.rateLimited, 1);
      assert.equal(calls['audience:read']!.retried, 1);
      assert.ok(calls['audience:read']!.calls >= 3 + 1);
      assert.equal((await state()).remote_list_id, `${audienceId}:${session!.sessionId}`);

      // The connector now points at audience:session; a diff writes to the audience itself.
      await db(PEOPLE_TABLE).where({ email: 'Person9@Example.com' }).delete();
      await db(PEOPLE_TABLE).insert(person(77));
      const diff = await client.refresh(connector.id);
      assert.equal(diff.strategy, 'diff');
      assert.equal(diff.status, 'succeeded');
      assert.deepEqual(emu.members(audienceId), await expectedAudience(db));
      assert.equal(emu.sessions(audienceId).length, 1, 'no session reopened');

      // Another replace: a new session; retiring the old list id touches nothing.
      emu.setMembers(audienceId, new Map([...emu.members(audienceId), [stray, { EMAIL: stray }]]));
      const again = await client.refresh(connector.id, { strategy: 'newList' });
      assert.equal(again.status, 'succeeded');
      assert.deepEqual(emu.members(audienceId), await expectedAudience(db));
      assert.equal(emu.sessions(audienceId).length, 2);
      assert.deepEqual(Object.keys(await endpointCalls(db, again.runId)).sort(), [
        'audience:read',
        'usersreplace',
      ]);
    });
  });
});
