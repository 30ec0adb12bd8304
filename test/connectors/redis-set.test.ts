import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import type { RetryOptions } from '../../src/connectors/kit/http';
import {
  createRedisSetDestination,
  redisSetConfigSchema,
  swapMarkerKey,
  type RedisSetConfigInput,
} from '../../src/connectors/redis-set/index';
import { saveConnector } from '../../src/core/connector-store';
import {
  capabilitiesOf,
  DestinationError,
  type Destination,
  type Member,
  type ReplaceList,
  type SecretResolver,
} from '../../src/core/destination';
import { churnCustomers, readCustomers } from '../../src/demo/customers';
import { startRedisSetEmulator, type RedisSetEmulator } from '../../src/connectors/redis-set/emulator';
import { counted, countedFailure, testContext } from '../helpers/destination-context';
import { demoCustomers, refreshScenario } from '../helpers/destination-scenario';
import { allKeys, closeAfterEach, fixedSecrets, recordedSleep, rejection } from '../helpers/destinations';
import { freePort } from '../helpers/fake-http';

/**
 * redis-set against the real Redis on 127.0.0.1:6379, through the fault-injecting proxy. Every
 * test works under its own key prefix and deletes it afterwards.
 */

let emu: RedisSetEmulator;
let counter = 0;
let prefix = '';

before(async () => {
  emu = await startRedisSetEmulator();
});
after(async () => {
  await emu.close();
});
const track = closeAfterEach();
afterEach(async () => {
  emu.faults.clear();
  if (prefix) await emu.cleanup(prefix);
});

function nextPrefix(): string {
  prefix = `deltasync-test:${process.pid}:${counter++}:`;
  return prefix;
}

type RedisSet = Destination &
  Required<Pick<Destination, 'add' | 'remove' | 'truncate' | 'listMembers'>> & { replaceList: ReplaceList };

interface Setup {
  dest: RedisSet;
  key: string;
  /** Every backoff the destination asked for (sleep is faked: tests don't wait). */
  waits: number[];
}

function setup(
  config: Partial<RedisSetConfigInput> = {},
  secrets: SecretResolver = () => emu.url,
  retry: RetryOptions = {},
): Setup {
  const key = `${nextPrefix()}audience`;
  emu.resetStats();
  const { waits, sleep } = recordedSleep();
  const dest = track(
    createRedisSetDestination(
      { type: 'redis-set', urlSecret: 'REDIS_URL', key, ...config } as RedisSetConfigInput,
      testContext(secrets, { retry: { sleep, random: () => 0.5, baseDelayMs: 100, ...retry } }).context,
    ),
  );
  return { dest: dest as RedisSet, key, waits };
}

const noCalls = { failed: 0, rateLimited: 0, retried: 0 };

function members(...keys: string[]): Member[] {
  return keys.map((key) => ({ key, attributes: { segment: 'loyal' } }));
}

const sorted = (keys: Iterable<string>) => [...keys].sort();

describe('redis-set config', () => {
  test('needs exactly one of url and urlSecret, and no password in url', () => {
    const base = { type: 'redis-set', key: 'k' } as const;
    assert.equal(redisSetConfigSchema.safeParse(base).success, false);
    assert.equal(
      redisSetConfigSchema.safeParse({ ...base, url: 'redis://h:6379', urlSecret: 'S' }).success,
      false,
    );
    const withPassword = redisSetConfigSchema.safeParse({ ...base, url: 'redis://u:pw@h:6379' });
    assert.equal(withPassword.success, false);
    assert.match(JSON.stringify(withPassword.error?.issues), /store the URL in a secret/);
    assert.equal(redisSetConfigSchema.safeParse({ ...base, url: 'http://h' }).success, false);
    const parsed = redisSetConfigSchema.parse({ ...base, url: 'redis://reader@h:6379/2' });
    assert.equal(parsed.recordsPerCall, 10_000);
  });
});

describe('redis-set against the real Redis', () => {
  test('add, remove, truncate and listMembers; attributes are not stored', async () => {
    const { dest, key } = setup();
    assert.deepEqual(capabilitiesOf(dest), {
      add: true,
      remove: true,
      truncate: true,
      listMembers: true,
      updateAttributes: false,
      createList: true,
    });
    const added = await counted(() => dest.add(members('c@x', 'a@x', 'b@x', 'a@x')));
    assert.deepEqual(added.value, { rejected: [] });
    assert.deepEqual(added.tallies, { SADD: { calls: 1, ...noCalls } });
    assert.deepEqual(sorted(await emu.members(key)), ['a@x', 'b@x', 'c@x']);
    assert.equal(await emu.redis.type(key), 'set', 'members only: no hash of attributes next to it');

    const removed = await counted(() => dest.remove(['b@x', 'never@x']));
    assert.deepEqual(removed.tallies, { SREM: { calls: 1, ...noCalls } });
    assert.deepEqual(sorted(await emu.members(key)), ['a@x', 'c@x']);
    assert.deepEqual(sorted((await dest.listMembers(null, 10)).keys), ['a@x', 'c@x']);

    const truncated = await counted(() => dest.truncate());
    assert.deepEqual(truncated.tallies, { DEL: { calls: 1, ...noCalls } });
    assert.equal(await emu.redis.exists(key), 0);
    const page = await counted(() => dest.listMembers(null, 10));
    assert.deepEqual(page.value, { keys: [], next: null });
    assert.deepEqual(
      page.tallies,
      { listMembers: { calls: 1, ...noCalls } },
      'SSCAN pages, as runs book them',
    );
    const none = await counted(() => dest.add([]));
    assert.deepEqual([none.value, none.calls], [{ rejected: [] }, 0]);
  });

  test('recordsPerCall is the limit the engine holds batches to: one batch, one SADD', async () => {
    const { dest, key } = setup({ recordsPerCall: 3 });
    assert.equal(dest.limits.recordsPerCall, 3);
    emu.resetStats();
    const outcome = await counted(() => dest.add(members('a', 'b', 'c')));
    assert.equal(outcome.calls, 1);
    assert.equal(emu.stats().calls.SADD, 1);
    assert.equal((await emu.members(key)).size, 3);
  });

  test('SSCAN pages: a cursor per page, every member at least once, no repeats inside a page', async () => {
    const { dest, key } = setup();
    const keys = Array.from({ length: 2_500 }, (_, i) => `member-${i}@example.com`);
    await dest.add(members(...keys));
    const { keys: listed, pages } = await allKeys(dest, 200);
    assert.ok(pages > 5, `${pages} pages for 2,500 members at COUNT 200`);
    assert.deepEqual(sorted(new Set(listed)), sorted(keys));
    assert.equal(await emu.redis.scard(key), 2_500);
  });

  test('a closed port: retried with backoff, then retryable, naming host and port only', async () => {
    const closedPort = await freePort();
    const { dest, waits } = setup({}, () => `redis://user:pw-not-shown@127.0.0.1:${closedPort}/0`, {
      maxAttempts: 3,
    });
    const err = await rejection(dest.add(members('a')));
    assert.equal(err.kind, 'retryable');
    assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${closedPort}`));
    assert.match(err.message, /ECONNREFUSED/);
    assert.match(err.message, /gave up after 3 attempts/);
    assert.doesNotMatch(err.message, /pw-not-shown/);
    assert.deepEqual(waits, [50, 100], 'full jitter (random 0.5) on 100 ms, then 200 ms');
  });

  test('a dropped connection is re-opened and the command sent again', async () => {
    const { dest, key, waits } = setup();
    emu.faults.set({ dropConnection: { calls: 1 } });
    const outcome = await counted(() => dest.add(members('a', 'b')));
    assert.deepEqual(
      outcome.tallies,
      { SADD: { calls: 2, failed: 0, rateLimited: 0, retried: 1 } },
      'the lost SADD and its retry',
    );
    assert.equal(waits.length, 1);
    assert.deepEqual(sorted(await emu.members(key)), ['a', 'b']);
    assert.equal(emu.stats().faults.dropConnection, 1);
  });

  test('applied but unacknowledged: the repeated SADD changes nothing', async () => {
    const { dest, key } = setup();
    emu.faults.set({ applyThenDrop: { calls: 1 } });
    await dest.add(members('a', 'b'));
    assert.equal(emu.stats().calls.SADD, 2);
    assert.deepEqual(sorted(await emu.members(key)), ['a', 'b']);
  });

  test('a SADD counting fewer members acknowledges them all; an error answer fails the call', async () => {
    const { dest, key } = setup({ recordsPerCall: 2 });
    await dest.add(members('a', 'b'));
    // SADD answers 1 (only 'c' is new): 'a' was already there, which is what was asked.
    assert.deepEqual((await dest.add(members('a', 'c'))).rejected, []);

    // The SADD is refused: the call fails, so the engine commits none of its members, and the
    // refused call counts as failed.
    emu.faults.set({
      replyError: { calls: 1, message: 'OOM command not allowed when used memory > maxmemory' },
    });
    const failure = await countedFailure(() => dest.add(members('d', 'e')));
    const err = failure.error;
    assert.ok(err instanceof DestinationError, String(err));
    assert.equal(err.kind, 'fatal');
    assert.match(err.message, /OOM/);
    assert.deepEqual(failure.tallies, { SADD: { calls: 1, failed: 1, rateLimited: 0, retried: 0 } });
    assert.deepEqual(sorted(await emu.members(key)), ['a', 'b', 'c']);
  });

  test('LOADING and BUSY answers are waited out', async () => {
    const { dest, key, waits } = setup();
    emu.faults.set({ replyError: { calls: 2, message: 'LOADING Redis is loading the dataset in memory' } });
    const outcome = await counted(() => dest.remove(['x']));
    assert.equal(outcome.calls, 3);
    assert.equal(outcome.retried, 2);
    assert.equal(waits.length, 2);
    emu.faults.set({ replyError: { calls: 1, message: 'BUSY Redis is busy running a script.' } });
    await dest.add(members('a'));
    assert.deepEqual(sorted(await emu.members(key)), ['a']);
  });

  test('"max number of clients reached" counts as a rate-limit wait', async () => {
    const { dest, key } = setup();
    emu.faults.set({ maxClients: { calls: 2 } });
    const outcome = await counted(() => dest.add(members('a')));
    assert.equal(outcome.rateLimitWaits, 2);
    assert.equal(outcome.calls, 3);
    assert.deepEqual(sorted(await emu.members(key)), ['a']);
  });

  test('a hung command times out and is retried on a new connection', async () => {
    const { dest, key } = setup({}, undefined, { timeoutMs: 200 });
    emu.faults.set({ stall: { calls: 1 } });
    const outcome = await counted(() => dest.add(members('a')));
    assert.equal(outcome.calls, 2);
    assert.deepEqual(sorted(await emu.members(key)), ['a']);
  });

  test('persistent LOADING becomes retryable after maxAttempts', async () => {
    const { dest } = setup({}, undefined, { maxAttempts: 4 });
    emu.faults.set({ replyError: { calls: 100 } });
    const failure = await countedFailure(() => dest.truncate());
    const err = failure.error;
    assert.ok(err instanceof DestinationError, String(err));
    assert.equal(err.kind, 'retryable');
    assert.match(err.message, /LOADING/);
    assert.equal(emu.stats().calls.DEL, 4);
    assert.deepEqual(failure.tallies, { DEL: { calls: 4, failed: 0, rateLimited: 0, retried: 4 } });
  });

  test('WRONGTYPE is fatal and names the key', async () => {
    const { dest, key } = setup();
    await emu.redis.set(key, 'a string someone else owns');
    const err = await rejection(dest.add(members('a')));
    assert.equal(err.kind, 'fatal');
    assert.match(err.message, /WRONGTYPE/);
    assert.ok(err.message.includes(`'${key}'`), err.message);
    assert.equal(await emu.redis.get(key), 'a string someone else owns', 'left alone');
  });

  test('NOAUTH and WRONGPASS are fatal and name the secret, never the password', async () => {
    const { dest } = setup();
    emu.faults.set({ replyError: { calls: 1, message: 'NOAUTH Authentication required.' } });
    const noauth = await rejection(dest.add(members('a')));
    assert.equal(noauth.kind, 'fatal');
    assert.match(noauth.message, /NOAUTH.*secret 'REDIS_URL'/);

    // A user the real server does not know: Redis itself answers WRONGPASS.
    const proxied = new URL(emu.url);
    proxied.username = 'nobody';
    proxied.password = 'hunter2-secret';
    const wrong = setup({ urlSecret: 'REDIS_WRONG_URL' }, () => proxied.toString());
    const wrongpass = await rejection(wrong.dest.add(members('a')));
    assert.equal(wrongpass.kind, 'fatal');
    assert.match(wrongpass.message, /WRONGPASS.*secret 'REDIS_WRONG_URL'/);
    assert.doesNotMatch(wrongpass.message, /hunter2/);
  });

  test('a missing secret or a URL that is not redis:// is fatal', async () => {
    const missing = setup({ urlSecret: 'NOT_SET' }, fixedSecrets({}));
    const err = await rejection(missing.dest.add(members('a')));
    assert.equal(err.kind, 'fatal');
    assert.match(err.message, /NOT_SET/);
    const http = setup({}, () => 'http://127.0.0.1:6379');
    assert.match((await rejection(http.dest.add(members('a')))).message, /secret 'REDIS_URL'.*redis:\/\//);
  });
});

describe('redis-set check()', () => {
  test('SCARD: the credentials and the key in one command', async () => {
    const { dest, key } = setup();
    const empty = await counted(() => dest.check());
    assert.match(
      empty.value,
      new RegExp(`^redis-set: set '${key}' on Redis at 127\\.0\\.0\\.1:\\d+ reachable \\(0 members\\)$`),
    );
    assert.deepEqual(empty.tallies, { SCARD: { calls: 1, ...noCalls } });
    await dest.add(members('a', 'b'));
    assert.match(await dest.check(), /reachable \(2 members\)$/);
  });

  test('a user Redis does not know is fatal and names the secret, never the password', async () => {
    const proxied = new URL(emu.url);
    proxied.username = 'nobody';
    proxied.password = 'hunter2-secret';
    const { dest } = setup({}, () => proxied.toString());
    const err = await rejection(dest.check());
    assert.equal(err.kind, 'fatal');
    assert.match(
      err.message,
      /^redis-set: .*WRONGPASS.*check the user and password in the URL in secret 'REDIS_URL'/,
    );
    assert.doesNotMatch(err.message, /hunter2/);
  });

  test('a missing secret is fatal; a key holding something else than a set is fatal and named', async () => {
    const missing = setup({ urlSecret: 'NOT_SET' }, fixedSecrets({}));
    assert.match((await rejection(missing.dest.check())).message, /NOT_SET/);

    const { dest, key } = setup();
    await emu.redis.set(key, 'a string someone else owns');
    const err = await rejection(dest.check());
    assert.equal(err.kind, 'fatal');
    assert.ok(err.message.includes(`key '${key}'`) && /WRONGTYPE/.test(err.message), err.message);
  });

  test('an unreachable server is retryable', async () => {
    const { dest } = setup({}, () => `redis://127.0.0.1:${closedPort}/0`, { maxAttempts: 2 });
    assert.equal((await rejection(dest.check())).kind, 'retryable');
  });
});

let closedPort = 0;
before(async () => {
  closedPort = await freePort();
});

describe('redis-set new list + swap', () => {
  test('build under a temp key, RENAME over the live set, retire nothing', async () => {
    const { dest, key } = setup();
    const replace = dest.replaceList;
    await dest.add(members('old-1', 'old-2', 'kept'));
    const created = await counted(() => replace.create('run-7'));
    const { listId } = created.value;
    assert.equal(listId, `${key}:build:run-7`);
    assert.deepEqual(created.tallies, { TYPE: { calls: 1, ...noCalls } });

    const build = replace.forList(listId);
    await build.add!(members('kept', 'new-1'));
    // The engine resumes a fill after a crash: create again must keep what was added.
    assert.equal((await replace.create('run-7')).listId, listId);
    await build.add!(members('new-2'));
    assert.deepEqual(sorted(await emu.members(key)), ['kept', 'old-1', 'old-2'], 'live set untouched');

    const swapped = await counted(() => replace.swap(listId));
    assert.deepEqual(swapped.value, { liveListId: key }, 'the new set now lives at the live key');
    assert.equal(swapped.tallies.RENAME?.calls, 1);
    assert.deepEqual(sorted(await emu.members(key)), ['kept', 'new-1', 'new-2']);
    assert.equal(await emu.redis.exists(listId), 0);
    assert.equal(await emu.redis.get(swapMarkerKey(key)), listId);

    // The engine retries the swap activity when retiring the old list or its own commit fails.
    const again = await counted(() => replace.swap(listId));
    assert.equal(again.tallies.RENAME, undefined);
    assert.deepEqual(sorted(await emu.members(key)), ['kept', 'new-1', 'new-2']);

    // Deleting the live key would destroy the set just swapped in: a no-op.
    assert.equal((await counted(() => replace.retire(key))).calls, 0);
    assert.equal((await counted(() => replace.retire(`${key}:build:run-3`))).calls, 1, 'an older build: DEL');
    assert.equal((await emu.members(key)).size, 3);
  });

  test('a swap whose answer was lost is found done on the retry', async () => {
    const { dest, key } = setup();
    await dest.add(members('old'));
    const { listId } = await dest.replaceList.create('run-1');
    await dest.replaceList.forList(listId).add!(members('new'));
    emu.faults.set({ applyThenDrop: { calls: 1 }, commands: ['EXEC'] });
    const outcome = await counted(() => dest.replaceList.swap(listId));
    assert.equal(emu.stats().faults.applyThenDrop, 1);
    assert.equal(outcome.tallies.RENAME?.calls, 1, 'sent once; the retry saw the marker');
    assert.deepEqual(sorted(await emu.members(key)), ['new']);
  });

  test('an empty new list empties the live set', async () => {
    const { dest, key } = setup();
    await dest.add(members('old'));
    const { listId } = await dest.replaceList.create('run-2');
    const outcome = await counted(() => dest.replaceList.swap(listId));
    assert.equal(outcome.tallies.DEL?.calls, 1);
    assert.equal(await emu.redis.exists(key), 0);
    await dest.add(members('later'));
    await dest.replaceList.swap(listId);
    assert.deepEqual(sorted(await emu.members(key)), ['later'], 'a repeated swap does not empty it again');
  });

  test("keys that are not this connector's are refused", async () => {
    const { dest, key } = setup();
    const replace = dest.replaceList;
    await emu.redis.set(`${key}:build:run-9`, 'not a set');
    assert.equal((await rejection(replace.create('run-9'))).kind, 'fatal');
    assert.throws(() => replace.forList('someone-elses-key'), /neither the set/);
    assert.equal((await rejection(replace.swap(key))).kind, 'fatal');
    assert.equal((await rejection(replace.retire('someone-elses-key'))).kind, 'fatal');

    await emu.redis.set(key, 'live key holds a string');
    const { listId } = await replace.create('run-10');
    await replace.forList(listId).add!(members('a'));
    const err = await rejection(replace.swap(listId));
    assert.equal(err.kind, 'fatal');
    assert.match(err.message, /holds a string, not a set/);
    assert.equal(await emu.redis.get(key), 'live key holds a string', 'RENAME never overwrites it');
  });
});

describe('redis-set refresh workflow on the real Temporal dev server (mysql)', () => {
  const scenario = refreshScenario({ dataset: demoCustomers(300) });

  test('diff refreshes with faults, then a forced truncate + reload', async () => {
    const { db } = scenario;
    const key = `${nextPrefix()}customers`;
    await saveConnector(db, {
      id: 'redis-customers',
      dataset: { table: 'demo_customers', key: 'customer_key', attributes: ['segment'] },
      destination: { type: 'redis-set', urlSecret: 'REDIS_URL', key, recordsPerCall: 100 },
    });
    const expectKeys = async () => sorted((await readCustomers(db)).keys());

    await scenario.withWorker(fixedSecrets({ REDIS_URL: emu.url }), async (client) => {
      emu.faults.set({ maxClients: { calls: 1 }, replyError: { calls: 1 } });
      const first = await client.refresh('redis-customers');
      assert.equal(first.status, 'succeeded');
      assert.equal(first.strategy, 'diff');
      assert.equal(first.recordsSent, 300);
      assert.ok(first.rateLimitWaits >= 1, 'max clients counted as a rate-limit wait');
      assert.deepEqual(sorted(await emu.members(key)), await expectKeys());

      const churn = await churnCustomers(db, { additions: 20, deletions: 15, changes: 10 });
      emu.faults.set({ replyError: { calls: 1, message: 'BUSY Redis is busy running a script.' } });
      emu.faults.set({ dropConnection: { calls: 1 } });
      const second = await client.refresh('redis-customers');
      assert.equal(second.status, 'succeeded');
      assert.deepEqual([second.additions, second.updates, second.deletions], [20, 10, 15]);
      assert.deepEqual(sorted(await emu.members(key)), await expectKeys());
      for (const gone of churn.deleted) assert.equal(await emu.redis.sismember(key, gone), 0);

      // Someone else added a stray member: a forced truncate + reload drops it.
      await emu.redis.sadd(key, 'stray-member');
      const reload = await client.refresh('redis-customers', { strategy: 'truncate' });
      assert.equal(reload.status, 'succeeded');
      assert.equal(reload.strategy, 'truncate');
      assert.deepEqual(sorted(await emu.members(key)), await expectKeys());
    });
  });

  test('forced new list + swap: RENAME over the live set; later diffs and a reconcile use it', async () => {
    const { db } = scenario;
    const key = `${nextPrefix()}customers`;
    await saveConnector(db, {
      id: 'redis-newlist',
      dataset: { table: 'demo_customers', key: 'customer_key', attributes: [] },
      destination: { type: 'redis-set', urlSecret: 'REDIS_URL', key, recordsPerCall: 100 },
    });
    const expectKeys = async () => sorted((await readCustomers(db)).keys());

    await scenario.withWorker(fixedSecrets({ REDIS_URL: emu.url }), async (client) => {
      await client.refresh('redis-newlist');
      await emu.redis.sadd(key, 'stray-member');
      await churnCustomers(db, { additions: 5, deletions: 5, changes: 0 });
      // The swap's answer is lost once: the retry finds the marker and does not RENAME again.
      emu.faults.set({ applyThenDrop: { calls: 1 }, commands: ['EXEC'] });
      const swapped = await client.refresh('redis-newlist', { strategy: 'newList' });
      assert.equal(swapped.status, 'succeeded');
      assert.equal(swapped.strategy, 'newList');
      assert.equal(emu.stats().faults.applyThenDrop, 1);
      assert.equal(swapped.callsByEndpoint.RENAME?.calls, 1);
      assert.deepEqual(sorted(await emu.members(key)), await expectKeys(), 'the stray member is gone');
      const builds = await emu.redis.keys(`${key}:build:*`);
      assert.deepEqual(builds, [], 'the build key was renamed away');
      assert.match((await emu.redis.get(swapMarkerKey(key))) ?? '', /:build:run-\d+$/);

      // The connector now points at the build id; the set still lives at `key`.
      const churn = await churnCustomers(db, { additions: 3, deletions: 2, changes: 0 });
      const diff = await client.refresh('redis-newlist');
      assert.equal(diff.strategy, 'diff');
      assert.deepEqual(sorted(await emu.members(key)), await expectKeys());
      for (const added of churn.added) assert.equal(await emu.redis.sismember(key, added), 1);

      // Drift behind our back, found by reading the set back with SSCAN.
      await emu.redis.sadd(key, 'stray-1', 'stray-2');
      await emu.redis.srem(key, churn.added[0]!);
      const reconciled = await client.reconcile('redis-newlist');
      assert.equal(reconciled.status, 'succeeded');
      assert.deepEqual([reconciled.drift?.extra, reconciled.drift?.missing], [2, 1]);
      // SSCAN pages count as 'listMembers', the name runs have always booked them under.
      assert.ok((reconciled.callsByEndpoint.listMembers?.calls ?? 0) >= 1);
      assert.deepEqual(sorted(await emu.members(key)), await expectKeys());
    });
  });
});
