import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { realSleep, type RetryOptions } from '../../src/connectors/kit/http';
import {
  createKlaviyoListDestination,
  klaviyoListConfigSchema,
  memberBytesPerJob,
  PROFILE_OVERHEAD_BYTES,
  type KlaviyoListConfigInput,
  type KlaviyoListOptions,
} from '../../src/connectors/klaviyo-list/index';
import { createDestinationContext } from '../../src/connectors/kit/module';
import { unthrottled } from '../../src/connectors/kit/throttle';
import { createSecretStore } from '../../src/tenancy/secrets';
import { saveConnector } from '../../src/core/connector-store';
import { jsonBytes, splitByLimits } from '../../src/core/batching';
import {
  capabilitiesOf,
  DestinationError,
  type Attributes,
  type Limits,
  type Member,
} from '../../src/core/destination';
import {
  klaviyoOperations,
  klaviyoRateLimits,
  klaviyoSpec,
  startKlaviyoEmulator,
  type KlaviyoEmulator,
  type KlaviyoEmulatorOptions,
} from '../../src/connectors/klaviyo-list/emulator';
import {
  IMPORT_JOB_STATES,
  IMPORT_PAYLOAD_MAX_BYTES,
  KLAVIYO_REVISION,
  PAGE_SIZE_DEFAULT,
  PAGE_SIZE_MAX,
  PROFILE_MAX_BYTES,
  PROFILES_PER_IMPORT_JOB,
  PROFILES_PER_MEMBERSHIP_CALL,
  RATE_LIMITS,
} from '../../src/connectors/klaviyo-list/vendor-limits';
import { projectRoot } from '../../src/paths';
import { takeSpecViolations } from '../../src/connectors/kit/vendor-spec';
import { datasetMembers, refreshScenario } from '../helpers/destination-scenario';
import { counted, countedFailure, testContext } from '../helpers/destination-context';
import {
  allKeys,
  closeAfterEach,
  type DestinationSetup,
  fixedSecrets,
  recordedSleep,
  rejection,
  startOfNextSecond,
} from '../helpers/destinations';
import { startFakeServer } from '../helpers/fake-http';

const apiKey = 'pk_4c1e9a7b2d5f8e3a';
const LIST = 'Y6nRLr';
const secrets = fixedSecrets({ KLAVIYO_KEY: apiKey });
const track = closeAfterEach();

/**
 * The emulator and a destination against it. Retries and job polls share one recorded sleep, so
 * `waits` holds both, in order; `retry` overrides the retry knobs, `options` the job knobs.
 */
async function setup(
  config: Partial<KlaviyoListConfigInput> = {},
  emulator: Partial<KlaviyoEmulatorOptions> = {},
  options: KlaviyoListOptions = {},
  retry: RetryOptions = {},
): Promise<DestinationSetup<KlaviyoEmulator>> {
  const emu = track(await startKlaviyoEmulator({ apiKey, lists: [LIST], rateLimits: false, ...emulator }));
  const { waits, sleep } = recordedSleep();
  const { context } = testContext(secrets, { retry: { sleep, baseDelayMs: 100, ...retry } });
  const dest = track(
    createKlaviyoListDestination(
      { type: 'klaviyo-list', baseUrl: emu.url, listId: LIST, apiKeySecret: 'KLAVIYO_KEY', ...config },
      context,
      { sleep, pollIntervalMs: 10, ...options },
    ),
  );
  return { emu, dest, waits };
}

/** Calls by endpoint, as the run's calls list them. */
function callsOf(tallies: Record<string, { calls: number }>): Record<string, number> {
  return Object.fromEntries(Object.entries(tallies).map(([endpoint, tally]) => [endpoint, tally.calls]));
}

const email = (i: number) => `person${String(i).padStart(4, '0')}@example.com`;

function people(count: number, from = 0): Member[] {
  return Array.from({ length: count }, (_, i) => ({
    key: email(from + i),
    attributes: { first_name: `P${from + i}`, plan: i % 2 ? 'gold' : 'free', score: from + i },
  }));
}

describe('klaviyo-list destination against the emulator', () => {
  test('adds profiles with attributes through one bulk import job that joins them to the list', async () => {
    const { emu, dest } = await setup();
    assert.deepEqual(capabilitiesOf(dest), {
      add: true,
      updateAttributes: true,
      remove: true,
      truncate: false,
      listMembers: true,
      createList: false,
    });
    // 5 MB per job, less the document's envelope and what each profile adds to its member.
    assert.deepEqual(dest.limits, {
      recordsPerCall: 10_000,
      bytesPerCall: 5_000_000 - 1024 - 10_000 * PROFILE_OVERHEAD_BYTES,
      callsPerSecond: 2.5,
    });

    const outcome = await counted(() => dest.add!(people(3)));
    assert.deepEqual(outcome.value.rejected, []);
    // Verify the list once, create the job, read its status until complete (two reads here).
    assert.deepEqual(callsOf(outcome.tallies), {
      get_list: 1,
      bulk_import_profiles: 1,
      get_bulk_import_profiles_job: 2,
    });
    assert.equal(outcome.calls, 4);
    assert.deepEqual(
      emu.members(LIST),
      new Map([
        [email(0), { first_name: 'P0', plan: 'free', score: 0 }],
        [email(1), { first_name: 'P1', plan: 'gold', score: 1 }],
        [email(2), { first_name: 'P2', plan: 'free', score: 2 }],
      ]),
    );
    const again = await counted(() => dest.add!(people(1, 3)));
    assert.equal(again.tallies.get_list, undefined, 'list verified once');
  });

  test('updates attributes: a null custom property is removed, a null profile field left alone', async () => {
    const { emu, dest } = await setup();
    await dest.add!([{ key: 'ann@example.com', attributes: { first_name: 'Ann', plan: 'gold', score: 3 } }]);
    await dest.add!([
      { key: 'ann@example.com', attributes: { first_name: null, plan: 'silver', score: null } },
    ]);
    // The bulk import cannot clear profile fields; custom ones go through patch_properties.unset.
    assert.deepEqual(emu.members(LIST).get('ann@example.com'), { first_name: 'Ann', plan: 'silver' });
    assert.equal(emu.members(LIST).size, 1);
  });

  test('a batch is one job: at most profilesPerJob profiles, and members that fit the payload limit', async () => {
    const { emu, dest } = await setup({ profilesPerJob: 100 });
    assert.equal(dest.limits.recordsPerCall, 100);
    const outcome = await counted(() => dest.add!(people(100)));
    assert.equal(emu.stats().jobsCreated, 1);
    assert.equal(outcome.tallies.bulk_import_profiles?.calls, 1);
    assert.equal(emu.members(LIST).size, 100);

    // The engine splits a page by the declared limits (core/batching), as the sender does: every
    // batch's job document then fits the payload limit.
    const small = await setup(
      { profilesPerJob: 20 },
      { maxPayloadBytes: 20_000 },
      { maxPayloadBytes: 20_000 },
    );
    assert.equal(small.dest.limits.bytesPerCall, memberBytesPerJob(20_000, 20));
    const bulky = people(60).map((m) => ({ ...m, attributes: { ...m.attributes, note: 'x'.repeat(900) } }));
    const batches = splitByLimits(
      bulky,
      { maxRecords: small.dest.limits.recordsPerCall, maxBytes: small.dest.limits.bytesPerCall },
      jsonBytes,
    );
    for (const batch of batches) assert.deepEqual((await small.dest.add!(batch)).rejected, []);
    assert.equal(small.emu.stats().jobsCreated, batches.length);
    assert.ok(batches.length >= 3, `${batches.length} jobs`);
    assert.equal(small.emu.stats().statuses[413], undefined, 'no request over the limit');
    assert.equal(small.emu.members(LIST).size, 60);
  });

  test('a profile in a job document takes at most PROFILE_OVERHEAD_BYTES more than its member', async () => {
    const seen: string[] = [];
    const server = track(
      await startFakeServer((req, res, body) => {
        seen.push(body);
        const done = { status: 'complete', completed_count: 1, failed_count: 0 };
        res.writeHead(req.method === 'POST' ? 202 : 200, { 'content-type': 'application/vnd.api+json' });
        res.end(JSON.stringify({ data: { type: 'profile-bulk-import-job', id: 'J1', attributes: done } }));
      }),
    );
    const dest = createKlaviyoListDestination(
      { type: 'klaviyo-list', baseUrl: server.url, listId: LIST, apiKeySecret: 'KLAVIYO_KEY' },
      testContext(secrets).context,
    );
    // The worst case: a short key, every kind of attribute, a null custom property to unset.
    const member: Member = { key: 'a@b.co', attributes: { first_name: 'A', tier: 2, gone: null } };
    await dest.add!([member, member]);
    const job = JSON.parse(seen.find((body) => body.includes('profile-bulk-import-job'))!) as {
      data: { attributes: { profiles: { data: unknown[] } } };
    };
    const profiles = job.data.attributes.profiles.data;
    const perProfile = (jsonBytes(profiles) - 2) / profiles.length; // each with its separator
    assert.ok(
      perProfile - jsonBytes(member) <= PROFILE_OVERHEAD_BYTES,
      `${perProfile} vs ${jsonBytes(member)}`,
    );
    const bare: Member = { key: 'a@b.co', attributes: {} };
    assert.ok(
      jsonBytes({ type: 'profile', attributes: { email: bare.key } }) + 1 - jsonBytes(bare) <=
        PROFILE_OVERHEAD_BYTES,
    );
  });

  test('removes by resolving e-mails to profile ids, 100 per lookup, then ≤ 1,000 ids per DELETE', async () => {
    const { emu, dest } = await setup();
    const seeded = new Map<string, Attributes>();
    for (let i = 0; i < 1050; i++) seeded.set(email(i), { plan: 'free' });
    emu.setMembers(LIST, seeded);

    const strangers = ['nobody1@example.com', 'nobody2@example.com'];
    const outcome = await counted(() => dest.remove!([...seeded.keys(), ...strangers]));
    assert.deepEqual(outcome.value.rejected, [], 'e-mails not in the list are already removed');
    assert.deepEqual(callsOf(outcome.tallies), {
      get_list: 1,
      get_profiles_for_list: 11, // ceil(1052 / 100)
      remove_profiles_from_list: 2, // ceil(1050 / 1000)
    });
    assert.equal(emu.members(LIST).size, 0);
    assert.deepEqual(emu.profile(email(7))?.attributes, { plan: 'free' }, 'the profile itself stays');
  });

  test('lists members page by page, in join order, with the cursor from links.next', async () => {
    const { emu, dest } = await setup();
    await dest.add!(people(25));
    const { keys, pages } = await allKeys(dest, 10);
    assert.equal(pages, 3);
    assert.deepEqual(
      keys,
      people(25).map((m) => m.key),
    );
    // The engine asks for 1,000 per page; Klaviyo's maximum is 100.
    assert.equal((await dest.listMembers!(null, 1000)).keys.length, 25);
    assert.equal(emu.stats().statuses[400], undefined);
  });

  test('waits as long as Retry-After says on 429, and counts the waits', async () => {
    const { emu, dest, waits } = await setup();
    emu.faults.set({ rateLimit: { calls: 2, retryAfterSeconds: 3 } });
    const outcome = await counted(() => dest.add!(people(2)));
    assert.deepEqual(
      waits.filter((ms) => ms >= 1000),
      [3000, 3000],
    );
    assert.equal(outcome.rateLimitWaits, 2);
    assert.deepEqual(outcome.tallies.get_list, { calls: 3, failed: 0, rateLimited: 2, retried: 0 });
    assert.equal(emu.members(LIST).size, 2);
  });

  test("the emulator enforces Klaviyo's burst limit with Retry-After, and the destination waits it out", async () => {
    // Real sleep: eleven DELETEs inside one second exceed the 10/s burst of remove_profiles_from_list.
    // Unthrottled: the worker's throttle at callsPerSecond would keep it under the burst limit.
    const emu = track(await startKlaviyoEmulator({ apiKey, lists: [LIST], rateLimits: true }));
    const dest = createKlaviyoListDestination(
      { type: 'klaviyo-list', baseUrl: emu.url, listId: LIST, apiKeySecret: 'KLAVIYO_KEY' },
      createDestinationContext({ secrets, throttle: unthrottled, retry: { random: () => 0.5 } }),
      { sleep: realSleep, pollIntervalMs: 10 },
    );
    emu.setMembers(LIST, new Map(Array.from({ length: 11 }, (_, i) => [email(i), {}])));
    // Start at the top of a second, so the eleven calls share one fixed window.
    await startOfNextSecond();
    let waited = 0;
    for (let i = 0; i < 11; i++) waited += (await counted(() => dest.remove!([email(i)]))).rateLimitWaits;
    assert.ok(waited >= 1, 'the eleventh call inside the second waited for Retry-After');
    assert.equal(emu.members(LIST).size, 0);
    assert.equal(emu.stats().statuses[429] ?? 0, waited);
  });

  test('every call goes through the shared throttle: writes at callsPerSecond, reads on their own quota', async () => {
    const seen: { account: string; limits: Limits }[] = [];
    const recording = <T>(account: string, limits: Limits, call: () => Promise<T>) => {
      seen.push({ account, limits });
      return call();
    };
    const emu = track(await startKlaviyoEmulator({ apiKey, lists: [LIST], rateLimits: false }));
    const { sleep } = recordedSleep();
    const dest = createKlaviyoListDestination(
      { type: 'klaviyo-list', baseUrl: emu.url, listId: LIST, apiKeySecret: 'KLAVIYO_KEY' },
      createDestinationContext({ secrets, throttle: recording, retry: { sleep } }),
      { sleep, pollIntervalMs: 10 },
    );
    await dest.add!(people(2));
    await dest.remove!([email(0)]);
    await dest.listMembers!(null, 10);
    const writes = seen.filter((s) => !s.account.endsWith(':reads'));
    const reads = seen.filter((s) => s.account.endsWith(':reads'));
    assert.equal(writes.length, 4, 'job create, two status reads, one DELETE');
    assert.equal(reads.length, 3, 'get_list, one lookup, one page of members');
    assert.ok(
      writes.every((s) => s.limits.callsPerSecond === 2.5 && s.account === `klaviyo:${emu.url}:KLAVIYO_KEY`),
    );
    assert.ok(reads.every((s) => s.limits.callsPerSecond! > 11 && s.limits.callsPerSecond! <= 12.5));
  });

  test('retries 5xx with backoff; a persistent 5xx becomes retryable with what it cost', async () => {
    const { emu, dest, waits } = await setup();
    emu.faults.set({ serverError: { calls: 2, status: 503 } });
    const outcome = await counted(() => dest.add!(people(1)));
    assert.deepEqual(waits.slice(0, 2), [50, 100], 'full jitter with random() = 0.5 from a 100 ms base');
    assert.deepEqual(outcome.tallies.get_list, { calls: 3, failed: 0, rateLimited: 0, retried: 2 });
    assert.equal(emu.members(LIST).size, 1);

    emu.faults.set({ serverError: { calls: 100 } });
    const { error, calls } = await countedFailure(() => dest.add!(people(1, 1)));
    assert.ok(error instanceof DestinationError);
    assert.equal(error.kind, 'retryable');
    assert.equal(calls, 5);
  });

  test('import errors become record-level rejections; the failed profiles stay out of the list', async () => {
    const { emu, dest } = await setup();
    emu.faults.set({
      reject: (e) => (e.endsWith('@blocked.example') ? 'Email address is suppressed' : null),
    });
    const invalid = Array.from({ length: 120 }, (_, i) => ({ key: `broken-${i}`, attributes: {} }));
    const members = [...people(3), { key: 'x@blocked.example', attributes: {} }, ...invalid];
    const { value: outcome, tallies } = await counted(() => dest.add!(members));
    assert.equal(outcome.rejected.length, 121);
    assert.deepEqual(
      outcome.rejected.find((r) => r.key === 'x@blocked.example'),
      { key: 'x@blocked.example', reason: 'Email address is suppressed (invalid)' },
    );
    assert.deepEqual(
      outcome.rejected.find((r) => r.key === 'broken-7')?.reason,
      'Invalid email address (invalid)',
    );
    assert.equal(tallies.get_errors_for_bulk_import_profiles_job?.calls, 2, '121 errors, 100 per page');
    assert.deepEqual(
      [...emu.members(LIST).keys()],
      people(3).map((m) => m.key),
    );
  });

  test('profiles a job neither imported nor named as failed stay pending, with the job', async () => {
    const { emu, dest } = await setup({ profilesPerJob: 3 });
    // The first job fails person0001 by name and silently skips person0002: completed_count is 1
    // of the 2 profiles it named no failure for, and which one is not said. The second job is whole.
    emu.faults.set({
      shortAck: { jobs: 1 },
      reject: (e) => (e === email(1) ? 'Email address is suppressed' : null),
    });
    const short = await dest.add!(people(3));
    const whole = await dest.add!(people(3, 3));
    assert.deepEqual(whole.rejected, []);
    assert.deepEqual(
      short.rejected.map((r) => [r.key, r.reason.replace(/job \w+/, 'job J')]),
      [
        [email(1), 'Email address is suppressed (invalid)'],
        [
          email(0),
          'not acknowledged: bulk import job J completed 1 of the 2 profiles it named no failure for (failed_count 1, 1 named)',
        ],
        [
          email(2),
          'not acknowledged: bulk import job J completed 1 of the 2 profiles it named no failure for (failed_count 1, 1 named)',
        ],
      ],
    );
    assert.deepEqual([...emu.members(LIST).keys()], [email(0), email(3), email(4), email(5)]);
  });

  test('a synchronous 400 pointing at a profile sets that profile aside and imports the rest', async () => {
    const { emu, dest } = await setup();
    emu.faults.set({ refuse: (e) => (e === email(5) ? 'Blocked.' : null) });
    const { value: outcome, tallies } = await counted(() => dest.add!(people(8)));
    assert.deepEqual(outcome.rejected, [{ key: email(5), reason: 'Klaviyo refused the profile: Blocked.' }]);
    assert.deepEqual(
      tallies.bulk_import_profiles,
      { calls: 2, failed: 1, rateLimited: 0, retried: 0 },
      'the pointer named the profile: one retry',
    );
    assert.equal(emu.members(LIST).size, 7);
  });

  test('without a usable pointer, halving isolates the refused profile', async () => {
    const { emu, dest } = await setup();
    const long = 'This profile cannot be imported because of a policy that applies to it. '.repeat(2).trim();
    emu.faults.set({ refuse: (e) => (e === email(5) ? long : null) });
    const { value: outcome, tallies } = await counted(() => dest.add!(people(8)));
    assert.deepEqual(
      outcome.rejected.map((r) => r.key),
      [email(5)],
    );
    assert.match(
      outcome.rejected[0]!.reason,
      /^Klaviyo refused the profile: This profile cannot be imported/,
    );
    assert.equal(tallies.bulk_import_profiles?.calls, 7, '8 → 4+4 → 2+2 → 1+1');
    assert.equal(emu.members(LIST).size, 7);
  });

  test('when the isolation budget runs out, what is left is reported as refused', async () => {
    const { emu, dest } = await setup({}, {}, { maxIsolationSplits: 0 });
    emu.faults.set({ refuse: (e) => (e === email(5) ? 'Blocked.' : null) });
    const outcome = await dest.add!(people(8));
    assert.equal(outcome.rejected.length, 8);
    assert.ok(
      outcome.rejected.every((r) => r.reason === 'batch refused: Klaviyo refused the profile: Blocked.'),
    );
    assert.equal(emu.members(LIST).size, 0);
  });

  test('profile fields that are not text are rejected before anything is sent', async () => {
    const { emu, dest } = await setup();
    const { value: outcome, calls } = await counted(() =>
      dest.add!([{ key: 'ann@example.com', attributes: { first_name: 42 } }]),
    );
    assert.deepEqual(outcome.rejected, [
      { key: 'ann@example.com', reason: "Klaviyo's profile field 'first_name' takes text, got number" },
    ]);
    assert.equal(calls, 0);
    assert.equal(emu.stats().jobsCreated, 0);

    const err = await rejection(
      dest.add!([{ key: 'ann@example.com', attributes: { email: 'other@example.com' } }]),
    );
    assert.equal(err.kind, 'fatal');
    assert.match(err.message, /attribute named 'email'/);
  });

  test('a refused key is fatal, names the secret and never shows the key', async () => {
    const wrong = 'pk_wrongwrongwrong';
    const { emu } = await setup();
    const dest = createKlaviyoListDestination(
      { type: 'klaviyo-list', baseUrl: emu.url, listId: LIST, apiKeySecret: 'OTHER_KEY' },
      testContext(() => wrong).context,
    );
    const err = await rejection(dest.add!(people(1)));
    assert.equal(err.kind, 'fatal');
    assert.equal(err.status, 401);
    assert.match(err.message, /Incorrect authentication credentials/);
    assert.match(err.message, /OTHER_KEY/);
    assert.ok(!err.message.includes(wrong), err.message);
  });

  test('a server echoing the bare key does not leak it into the message', async () => {
    const server = track(
      await startFakeServer((req, res) => {
        const key = String(req.headers.authorization).replace('Klaviyo-API-Key ', '');
        res.writeHead(403, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            errors: [
              { id: '1', status: 403, code: 'permission_denied', detail: `key ${key} lacks lists:read` },
            ],
          }),
        );
      }),
    );
    const dest = createKlaviyoListDestination(
      {
        type: 'klaviyo-list',
        baseUrl: server.url,
        listId: LIST,
        apiKeySecret: 'KLAVIYO_KEY',
      },
      testContext(secrets).context,
    );
    const err = await rejection(dest.remove!(['a@example.com']));
    assert.equal(err.kind, 'fatal');
    assert.match(err.message, /lacks lists:read/);
    assert.match(err.message, /scope/);
    assert.ok(!err.message.includes(apiKey), err.message);
  });

  test('a missing list is fatal and names the list, before any profile is imported', async () => {
    const { emu, dest } = await setup({ listId: 'NoSuch' });
    const err = await rejection(dest.add!(people(2)));
    assert.equal(err.kind, 'fatal');
    assert.equal(err.status, 404);
    assert.match(err.message, /no list 'NoSuch'.*check listId/);
    assert.equal(emu.stats().jobsCreated, 0);
  });

  test('a missing secret is fatal and names it', async () => {
    const { dest } = await setup({ apiKeySecret: 'NOT_SET' });
    const err = await rejection(dest.add!(people(1)));
    assert.equal(err.kind, 'fatal');
    assert.match(err.message, /NOT_SET/);
  });

  test('a job that never completes is retryable after jobTimeoutSeconds of polling', async () => {
    const { emu, dest, waits } = await setup({ jobTimeoutSeconds: 1 }, {}, { pollIntervalMs: 100 });
    emu.faults.set({ stuckJobs: true });
    const err = await rejection(dest.add!(people(1)));
    assert.equal(err.kind, 'retryable');
    assert.match(err.message, /still processing after 1 s/);
    assert.deepEqual(waits, [100, 200, 400, 300], 'doubling waits, the last one cut to the budget');
  });

  test('a cancelled job fails its batch: nothing of it is counted as delivered', async () => {
    const { emu, dest } = await setup();
    emu.faults.set({ cancelJobs: { jobs: 1 } });
    const err = await rejection(dest.add!(people(2)));
    assert.equal(err.kind, 'batch');
    assert.match(err.message, /bulk import job \w+ was cancelled in Klaviyo/);
    assert.equal(emu.members(LIST).size, 0);
    await dest.add!(people(2));
    assert.equal(emu.members(LIST).size, 2, 'the next job goes through');
  });

  test('truncate and new list + swap are not available', async () => {
    const { dest } = await setup();
    assert.equal(dest.truncate, undefined);
    assert.equal(dest.replaceList, undefined);
  });

  test('check() reads the list, in one call', async () => {
    const { emu, dest } = await setup();
    const { value: line, tallies } = await counted(() => dest.check());
    assert.equal(line, `klaviyo-list: list ${LIST} '${LIST}' reachable with the key in 'KLAVIYO_KEY'`);
    assert.deepEqual(callsOf(tallies), { get_list: 1 });
    // The list is known to exist: the first import does not read it again.
    const added = await counted(() => dest.add!(people(1)));
    assert.equal(added.tallies.get_list, undefined);
    assert.equal(emu.stats().calls.get_list, 1);
  });

  test('check() refuses a wrong key and a missing list, fatally, with what to fix', async () => {
    const { emu } = await setup();
    const wrongKey = createKlaviyoListDestination(
      { type: 'klaviyo-list', baseUrl: emu.url, listId: LIST, apiKeySecret: 'KLAVIYO_KEY' },
      testContext(() => 'pk_stale_0000').context,
    );
    const refused = await rejection(wrongKey.check());
    assert.equal(refused.kind, 'fatal');
    assert.equal(refused.status, 401);
    assert.match(
      refused.message,
      /^klaviyo-list: 401 .*check the secret named in apiKeySecret \('KLAVIYO_KEY'\)/,
    );
    assert.ok(!refused.message.includes('pk_stale_0000'), refused.message);

    const missing = await setup({ listId: 'NoSuch' });
    const notFound = await rejection(missing.dest.check());
    assert.equal(notFound.kind, 'fatal');
    assert.equal(notFound.status, 404);
    assert.match(
      notFound.message,
      /no list 'NoSuch' in the account of the key in 'KLAVIYO_KEY' — check listId/,
    );
  });
});

describe('klaviyo-list wire format', () => {
  test('sends JSON:API documents with the key, revision and content type Klaviyo expects', async () => {
    const seen: { method: string; url: string; headers: http.IncomingHttpHeaders; body: string }[] = [];
    const server = track(
      await startFakeServer((req, res, body) => {
        seen.push({ method: req.method!, url: req.url!, headers: req.headers, body });
        const path = req.url!.split('?')[0]!;
        const job = {
          data: {
            type: 'profile-bulk-import-job',
            id: 'J1',
            attributes: { status: 'complete', total_count: 1, completed_count: 1, failed_count: 0 },
          },
        };
        const profiles = {
          data: [{ type: 'profile', id: '01P', attributes: { email: 'a@x.io' } }],
          links: { next: null },
        };
        const answer = path.includes('profile-bulk-import-jobs')
          ? job
          : path.endsWith('/profiles')
            ? profiles
            : { data: {} };
        res.writeHead(req.method === 'DELETE' ? 204 : path.endsWith('jobs') ? 202 : 200, {
          'content-type': 'application/vnd.api+json',
        });
        res.end(req.method === 'DELETE' ? '' : JSON.stringify(answer));
      }),
    );
    const dest = createKlaviyoListDestination(
      {
        type: 'klaviyo-list',
        baseUrl: `${server.url}/`,
        listId: LIST,
        apiKeySecret: 'KLAVIYO_KEY',
      },
      testContext(secrets).context,
    );

    await dest.add!([{ key: 'a@x.io', attributes: { first_name: 'A', tier: 2, gone: null } }]);
    await dest.remove!(['a@x.io']);

    assert.deepEqual(
      seen.map(({ method, url }) => `${method} ${decodeURIComponent(url)}`),
      [
        `GET /api/lists/${LIST}`,
        'POST /api/profile-bulk-import-jobs',
        `GET /api/lists/${LIST}/profiles?filter=any(email,["a@x.io"])&fields[profile]=email&page[size]=100`,
        `DELETE /api/lists/${LIST}/relationships/profiles`,
      ],
    );
    assert.deepEqual(JSON.parse(seen[1]!.body), {
      data: {
        type: 'profile-bulk-import-job',
        attributes: {
          profiles: {
            data: [
              {
                type: 'profile',
                attributes: { email: 'a@x.io', first_name: 'A', properties: { tier: 2 } },
                meta: { patch_properties: { unset: ['gone'] } },
              },
            ],
          },
        },
        relationships: { lists: { data: [{ type: 'list', id: LIST }] } },
      },
    });
    assert.deepEqual(JSON.parse(seen[3]!.body), { data: [{ type: 'profile', id: '01P' }] });
    for (const { headers, body } of seen) {
      assert.equal(headers.authorization, `Klaviyo-API-Key ${apiKey}`);
      assert.equal(headers.revision, '2026-04-15');
      assert.equal(headers.accept, 'application/vnd.api+json');
      if (body) assert.equal(headers['content-type'], 'application/vnd.api+json');
    }
  });
});

describe('klaviyo emulator', () => {
  let emu: KlaviyoEmulator;
  before(async () => {
    emu = await startKlaviyoEmulator({ apiKey, lists: [LIST], rateLimits: false });
  });
  after(() => emu.close());

  const request = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
    fetch(`${emu.url}${path}`, {
      method,
      headers: { authorization: `Klaviyo-API-Key ${apiKey}`, revision: '2026-04-15', ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  const job = (profiles: unknown[]) => ({
    data: { type: 'profile-bulk-import-job', attributes: { profiles: { data: profiles } } },
  });

  test('answers JSON:API error documents: missing revision, bad page size, oversized job, bad field', async () => {
    const cases: [Promise<Response>, number, RegExp, string | undefined][] = [
      [request('GET', `/api/lists/${LIST}`, undefined, { revision: '' }), 400, /revision/, undefined],
      // The spec bounds page[size] (1–100): refused by the spec check, in Klaviyo's error format.
      [
        request('GET', `/api/lists/${LIST}/profiles?page[size]=101`),
        400,
        /page\[size\]': must be <= 100/,
        undefined,
      ],
      [
        request(
          'POST',
          '/api/profile-bulk-import-jobs',
          job(Array(10_001).fill({ type: 'profile', attributes: { email: 'a@b.co' } })),
        ),
        400,
        /10000/,
        '/data/attributes/profiles/data',
      ],
      // Refused by the spec check too (first_name is a string), pointing at the field.
      [
        request(
          'POST',
          '/api/profile-bulk-import-jobs',
          job([{ type: 'profile', attributes: { email: 'a@b.co', first_name: 1 } }]),
        ),
        400,
        /first_name: must be string/,
        '/data/attributes/profiles/data/0/attributes/first_name',
      ],
      [request('GET', '/api/lists/Nope'), 404, /does not exist/, undefined],
      [
        request('GET', `/api/lists/${LIST}`, undefined, { authorization: '' }),
        401,
        /Klaviyo-API-Key/,
        undefined,
      ],
    ];
    for (const [response, status, detail, pointer] of cases) {
      const answer = await response;
      assert.equal(answer.status, status);
      const { errors } = (await answer.json()) as {
        errors: { code: string; detail: string; source?: { pointer?: string } }[];
      };
      assert.match(errors[0]!.detail, detail);
      assert.equal(errors[0]!.source?.pointer, pointer);
    }
    assert.deepEqual(
      takeSpecViolations().map((v) => [v.endpoint, v.direction]),
      [
        ['get_profiles_for_list', 'request'],
        ['bulk_import_profiles', 'request'],
      ],
    );
  });

  test("holds requests to Klaviyo's spec: an undocumented field is refused with Klaviyo's 400 and fails the run", async () => {
    const refused = await request(
      'POST',
      '/api/profile-bulk-import-jobs',
      job([{ type: 'profile', attributes: { email: 'a@b.co', status_if_new: 'subscribed' } }]),
    );
    assert.equal(refused.status, 400);
    const { errors } = (await refused.json()) as {
      errors: { detail: string; source?: { pointer?: string } }[];
    };
    assert.match(errors[0]!.detail, /field 'status_if_new' is not in the spec/);
    assert.equal(errors[0]!.source?.pointer, '/data/attributes/profiles/data/0/attributes');
    const unknownQuery = await request('GET', `/api/lists/${LIST}?page[size]=5`);
    assert.equal(unknownQuery.status, 400);
    const noRevision = await fetch(`${emu.url}/api/lists/${LIST}`, {
      headers: { authorization: `Klaviyo-API-Key ${apiKey}` },
    });
    assert.equal(noRevision.status, 400);
    assert.deepEqual(
      takeSpecViolations().map((v) => [v.endpoint, v.direction, v.problems.join('; ')]),
      [
        [
          'bulk_import_profiles',
          'request',
          "request body at /data/attributes/profiles/data/0/attributes: field 'status_if_new' is not in the spec",
        ],
        ['get_list', 'request', "query parameter 'page[size]' is not in the spec"],
        ['get_list', 'request', "header 'revision' is required"],
      ],
    );
  });

  test('answers are held to the spec too: what the emulator used to send is off-spec', () => {
    const exchange = (endpoint: string, pathname: string) => ({
      endpoint,
      method: 'GET',
      pathname,
      query: new URLSearchParams(),
      headers: { revision: KLAVIYO_REVISION },
      body: undefined,
    });
    const members = exchange('get_profiles_for_list', `/api/lists/${LIST}/profiles`);
    const self = 'http://127.0.0.1/api/lists/Y6nRLr/profiles/';
    const member = {
      type: 'profile',
      id: '01K1',
      attributes: { email: 'a@b.co', joined_group_at: '2026-12-04T00:00:00Z' },
      links: { self: 'http://127.0.0.1/api/profiles/01K1/' },
    };
    assert.deepEqual(
      klaviyoSpec().response(members, { status: 200, body: { data: [member], links: { self } } }),
      [],
    );
    // CollectionLinks.next is a URI, not nullable: absent on the last page, not null.
    assert.match(
      klaviyoSpec()
        .response(members, { status: 200, body: { data: [member], links: { self, next: null, prev: null } } })
        .join(),
      /links\/next: must be string/,
    );
    // joined_group_at is required in every list member.
    const { joined_group_at: _, ...attributes } = member.attributes;
    assert.match(
      klaviyoSpec()
        .response(members, { status: 200, body: { data: [{ ...member, attributes }] } })
        .join(),
      /required field 'joined_group_at' is missing/,
    );
    // Error objects carry id, code, title, detail and source; not status or meta.
    const error = { id: 'e1', code: 'not_found', title: 'Not found.', detail: 'No list.' };
    const list = exchange('get_list', `/api/lists/${LIST}`);
    assert.deepEqual(klaviyoSpec().response(list, { status: 404, body: { errors: [error] } }), []);
    assert.deepEqual(
      klaviyoSpec().response(list, { status: 404, body: { errors: [{ ...error, status: 404, meta: {} }] } }),
      [
        "404 answer body at /errors/0: field 'status' is not in the spec",
        "404 answer body at /errors/0: field 'meta' is not in the spec",
      ],
    );
  });

  test('jobs end cancelled when Klaviyo cancels them, applying nothing', async () => {
    emu.faults.set({ cancelJobs: { jobs: 1 } });
    const created = await request('POST', '/api/profile-bulk-import-jobs', {
      data: {
        ...job([{ type: 'profile', attributes: { email: 'c@x.io' } }]).data,
        relationships: { lists: { data: [{ type: 'list', id: LIST }] } },
      },
    });
    const { data } = (await created.json()) as { data: { id: string } };
    const statuses: string[] = [];
    for (let i = 0; i < 2; i++) {
      const read = (await (await request('GET', `/api/profile-bulk-import-jobs/${data.id}`)).json()) as {
        data: { attributes: { status: string } };
      };
      statuses.push(read.data.attributes.status);
    }
    assert.deepEqual(statuses, ['processing', 'cancelled']);
    assert.equal(emu.members(LIST).has('c@x.io'), false);
    assert.deepEqual(emu.faults.get(), {});
  });

  test('jobs are queued, then processing, then complete; nothing is applied before', async () => {
    const created = await request('POST', '/api/profile-bulk-import-jobs', {
      data: {
        ...job([{ type: 'profile', attributes: { email: 'q@x.io' } }]).data,
        relationships: { lists: { data: [{ type: 'list', id: LIST }] } },
      },
    });
    assert.equal(created.status, 202);
    const { data } = (await created.json()) as { data: { id: string; attributes: { status: string } } };
    assert.equal(data.attributes.status, 'queued');
    const statuses: string[] = [];
    for (let i = 0; i < 3; i++) {
      const read = (await (await request('GET', `/api/profile-bulk-import-jobs/${data.id}`)).json()) as {
        data: { attributes: { status: string } };
      };
      statuses.push(read.data.attributes.status);
      if (i === 0) assert.equal(emu.members(LIST).has('q@x.io'), false);
    }
    assert.deepEqual(statuses, ['processing', 'complete', 'complete']);
    assert.equal(emu.members(LIST).has('q@x.io'), true);
  });

  test('faults count down, can be inspected and cleared; failAfter takes the service down for writes', async () => {
    emu.faults.set({ serverError: { calls: 1 }, latencyMs: 1 });
    assert.equal((await request('GET', `/api/lists/${LIST}`)).status, 500);
    assert.deepEqual(emu.faults.get(), { latencyMs: 1 });
    emu.faults.clear();
    emu.faults.set({ failAfter: { successfulCalls: 0, status: 503 } });
    assert.equal(
      (await request('DELETE', `/api/lists/${LIST}/relationships/profiles`, { data: [] })).status,
      503,
    );
    assert.equal((await request('GET', `/api/lists/${LIST}`)).status, 200, 'reads still work');
    emu.faults.clear('failAfter');
    assert.equal(
      (await request('DELETE', `/api/lists/${LIST}/relationships/profiles`, { data: [] })).status,
      204,
    );
  });
});

describe("klaviyo-list: Klaviyo's published spec (revision 2026-04-15)", () => {
  const specDir = path.join(projectRoot, 'test/vendor-specs/klaviyo/apis');
  type Operation = {
    description: string;
    parameters?: { name: string; schema: { maximum?: number; default?: unknown } }[];
    'x-klaviyo-ratelimit': { burst: string; steady: string };
  };
  const spec = (operation: string) => {
    const doc = JSON.parse(readFileSync(path.join(specDir, `${operation}.json`), 'utf8')) as {
      info: { version: string };
      paths: Record<string, Record<string, Operation>>;
      components: { schemas: Record<string, unknown> };
    };
    const [op] = Object.values(Object.values(doc.paths)[0]!);
    return { doc, op: op! };
  };
  const perSecond = (text: string) => Number(/^(\d+)\/s$/.exec(text)![1]);
  const perMinute = (text: string) => Number(/^(\d+)\/m$/.exec(text)![1]);

  test('every operation the emulator serves is in the spec, at the revision the connector sends', () => {
    assert.deepEqual(readdirSync(specDir).sort(), klaviyoOperations.map((op) => `${op}.json`).sort());
    for (const operation of klaviyoOperations) {
      assert.equal(spec(operation).doc.info.version, KLAVIYO_REVISION, operation);
    }
    const config = klaviyoListConfigSchema.parse({ type: 'klaviyo-list', listId: LIST, apiKeySecret: 'K' });
    assert.equal(config.revision, KLAVIYO_REVISION);
  });

  test('rate limits: the constants, the emulator and the connector’s read quota are the spec’s', async () => {
    for (const operation of klaviyoOperations) {
      const published = spec(operation).op['x-klaviyo-ratelimit'];
      const limits = { burst: perSecond(published.burst), steady: perMinute(published.steady) };
      assert.deepEqual(RATE_LIMITS[operation], limits, operation);
      assert.deepEqual(klaviyoRateLimits[operation], limits, `the emulator enforces ${operation}'s`);
    }
    // The connector reads the list and its profiles at the steady rate of those reads.
    const seen: Limits[] = [];
    const emu = track(await startKlaviyoEmulator({ apiKey, lists: [LIST], rateLimits: false }));
    const dest = createKlaviyoListDestination(
      { type: 'klaviyo-list', baseUrl: emu.url, listId: LIST, apiKeySecret: 'KLAVIYO_KEY' },
      createDestinationContext({
        secrets,
        throttle: (account, limits, call) => {
          if (account.endsWith(':reads')) seen.push(limits);
          return call();
        },
      }),
    );
    await dest.check();
    await dest.listMembers!(null, 10);
    const steady = Math.min(RATE_LIMITS.get_list.steady, RATE_LIMITS.get_profiles_for_list.steady);
    assert.deepEqual(
      seen.map((limits) => limits.callsPerSecond),
      [steady / 60, steady / 60],
    );
  });

  test('sizes: profiles per job, payload, profile, membership calls and pages are the spec’s', () => {
    const imports = spec('bulk_import_profiles').op.description;
    const sizes =
      /Accepts up to ([\d,]+) profiles per request\. The maximum allowed payload size is (\d+)MB\. The maximum allowed payload size per-profile is (\d+)KB\./.exec(
        imports,
      );
    assert.ok(sizes, 'the bulk import limits are where they were');
    assert.equal(PROFILES_PER_IMPORT_JOB, Number(sizes[1]!.replace(/,/g, '')));
    assert.equal(IMPORT_PAYLOAD_MAX_BYTES, Number(sizes[2]) * 1_000_000);
    assert.equal(PROFILE_MAX_BYTES, Number(sizes[3]) * 1000);
    for (const operation of ['remove_profiles_from_list', 'add_profiles_to_list']) {
      const max = /accepts a maximum of (\d+) profiles per call/.exec(spec(operation).op.description);
      assert.equal(PROFILES_PER_MEMBERSHIP_CALL, Number(max?.[1]), operation);
    }
    for (const operation of ['get_profiles_for_list', 'get_errors_for_bulk_import_profiles_job']) {
      const size = spec(operation).op.parameters!.find((p) => p.name === 'page[size]')!.schema;
      assert.deepEqual([size.maximum, size.default], [PAGE_SIZE_MAX, PAGE_SIZE_DEFAULT], operation);
    }
    const job = spec('get_bulk_import_profiles_job').doc.components.schemas
      .ProfileImportJobResponseObjectResource as {
      properties: { attributes: { properties: { status: { enum: string[] } } } };
    };
    assert.deepEqual(job.properties.attributes.properties.status.enum, [...IMPORT_JOB_STATES]);
    const config = klaviyoListConfigSchema.safeParse({
      type: 'klaviyo-list',
      listId: LIST,
      apiKeySecret: 'K',
      profilesPerJob: PROFILES_PER_IMPORT_JOB + 1,
    });
    assert.equal(config.success, false, 'no more profiles per job than Klaviyo takes');
  });
});

describe('klaviyo-list config', () => {
  test('schema applies defaults and rejects bad values', () => {
    const parsed = klaviyoListConfigSchema.parse({ type: 'klaviyo-list', listId: LIST, apiKeySecret: 'K' });
    assert.equal(parsed.baseUrl, 'https://a.klaviyo.com');
    assert.equal(parsed.profilesPerJob, 10_000);
    assert.equal(parsed.callsPerSecond, 2.5);
    const bad = klaviyoListConfigSchema.safeParse({
      ...parsed,
      profilesPerJob: 10_001,
      revision: 'latest',
      callsPerSecond: 50,
    });
    assert.deepEqual(bad.error?.issues.map((issue) => issue.path.join('.')).sort(), [
      'callsPerSecond',
      'profilesPerJob',
      'revision',
    ]);
  });
});

describe('klaviyo-list refresh workflow on the Temporal dev server (mysql)', () => {
  const scenario = refreshScenario({
    emulator: () => startKlaviyoEmulator({ apiKey, lists: [LIST], jobStatusReads: 1 }),
    dataset: async (db) => {
      await db.schema.createTable('klaviyo_contacts', (table) => {
        table.string('email', 191).primary().collate('utf8mb4_bin');
        table.string('first_name', 64).notNullable();
        table.string('plan', 16).notNullable();
        table.integer('score').nullable();
      });
      await db('klaviyo_contacts').insert(
        Array.from({ length: 30 }, (_, i) => ({
          email: email(i),
          first_name: `P${i}`,
          plan: 'free',
          score: i,
        })),
      );
    },
  });

  /** The dataset as Klaviyo should hold it; a null custom property is absent there. */
  const expected = () => datasetMembers(scenario.db, 'klaviyo_contacts', 'email');

  test('two refreshes with additions, deletions and updates, through a 429 and a 503, end equal', async () => {
    const { emu: emulator, db } = scenario;
    await saveConnector(db, {
      id: 'klaviyo-crm',
      dataset: { table: 'klaviyo_contacts', key: 'email', attributes: ['first_name', 'plan', 'score'] },
      destination: { type: 'klaviyo-list', baseUrl: emulator.url, listId: LIST, apiKeySecret: 'KLAVIYO_KEY' },
    });
    // Built the way the worker builds it: catalog, secret resolver, shared throttle at 2.5 calls/s.
    await scenario.withWorker(
      createSecretStore({ DELTASYNC_SECRET_DEFAULT__KLAVIYO_KEY: apiKey }, undefined).forTenant('default'),
      async (client) => {
        emulator.faults.set({
          rateLimit: { calls: 1, retryAfterSeconds: 1 },
          serverError: { calls: 1, status: 503 },
        });
        const first = await client.refresh('klaviyo-crm');
        assert.equal(first.status, 'succeeded', first.error ?? '');
        assert.deepEqual([first.additions, first.updates, first.deletions], [30, 0, 0]);
        assert.ok(first.rateLimitWaits >= 1, 'the 429 was waited for');
        assert.ok(first.callsByEndpoint.bulk_import_profiles, JSON.stringify(first.callsByEndpoint));
        assert.deepEqual(emulator.members(LIST), await expected());

        await db('klaviyo_contacts')
          .whereIn('email', [email(1), email(2), email(3)])
          .delete();
        await db('klaviyo_contacts').insert(
          [30, 31].map((i) => ({ email: email(i), first_name: `P${i}`, plan: 'gold', score: i })),
        );
        await db('klaviyo_contacts')
          .whereIn('email', [email(10), email(11)])
          .update({ plan: 'gold' });
        await db('klaviyo_contacts')
          .where({ email: email(12) })
          .update({ score: null });
        emulator.faults.set({ serverError: { calls: 1, status: 500 } });

        const second = await client.refresh('klaviyo-crm');
        assert.equal(second.status, 'succeeded', second.error ?? '');
        assert.deepEqual([second.additions, second.updates, second.deletions], [2, 3, 3]);
        assert.ok(second.callsByEndpoint.remove_profiles_from_list, JSON.stringify(second.callsByEndpoint));
        assert.deepEqual(emulator.members(LIST), await expected());
        assert.ok(emulator.profile(email(1)), 'removed from the list, not deleted');
      },
    );
  });
});
