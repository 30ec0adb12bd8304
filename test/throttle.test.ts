import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createThrottleService, type Budget, type ThrottleService } from '../src/connectors/kit/throttle';
import { createDestinationFactory } from '../src/connectors/registry';
import type { Limits } from '../src/core/destination';
import { TenantDirectory } from '../src/tenancy/policy';
import { anySecret } from './helpers/secrets';

/**
 * Destination accounts' budgets across worker processes: each ThrottleService below stands for one
 * worker (its own Redis connections and limiters; Bottleneck's state lives in Redis, not in the
 * process), so two of them sharing Redis are two workers sharing an ad account.
 */

const REDIS_URL = process.env.DELTASYNC_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0';

/** Calls that take `ms` each, with the most that ever ran at once and every start time. */
function recorder(ms: number) {
  let running = 0;
  const seen = { peak: 0, starts: [] as number[] };
  const call = async () => {
    seen.starts.push(Date.now());
    seen.peak = Math.max(seen.peak, ++running);
    await sleep(ms);
    running -= 1;
  };
  return { call, seen };
}

/** The most starts within any window of `windowMs`. */
function busiestWindow(starts: number[], windowMs: number): number {
  const sorted = [...starts].sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; i < sorted.length; i++) {
    while (sorted[i]! - sorted[j]! >= windowMs) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
}

describe('rate limits across workers', () => {
  const services: ThrottleService[] = [];
  const worker = (shared: boolean, keyPrefix: string) => {
    const service = createThrottleService(shared ? { redisUrl: REDIS_URL, keyPrefix } : {});
    services.push(service);
    return service;
  };
  after(() => Promise.all(services.map((s) => s.close())));

  test('two workers sharing Redis hold an account to its concurrency cap together; without Redis each has its own', async () => {
    const limits: Limits = { recordsPerCall: 100, maxConcurrent: 2 };
    for (const shared of [true, false]) {
      const prefix = `test-${randomUUID()}`;
      const [a, b] = [worker(shared, prefix), worker(shared, prefix)];
      const { call, seen } = recorder(60);
      await Promise.all(
        Array.from({ length: 24 }, (_, i) => (i % 2 ? a : b).throttle('acme|meta:act_1', limits, call)),
      );
      assert.equal(seen.starts.length, 24);
      if (shared) assert.equal(seen.peak, 2, 'never more than the account allows, over both workers');
      else assert.equal(seen.peak, 4, 'each worker alone lets the account’s whole cap through');
    }
  });

  test('two workers sharing Redis send at most the account’s calls per second between them', async () => {
    const limits: Limits = { recordsPerCall: 100, callsPerSecond: 20 };
    const prefix = `test-${randomUUID()}`;
    const [a, b] = [worker(true, prefix), worker(true, prefix)];
    const { call, seen } = recorder(1);
    await Promise.all(
      Array.from({ length: 50 }, (_, i) => (i % 2 ? a : b).throttle('acme|hubspot:TOKEN', limits, call)),
    );
    // Spaced 5% wider than 50 ms: no second holds more than 20, whatever the timers' jitter.
    assert.ok(
      busiestWindow(seen.starts, 1000) <= 20,
      `busiest second: ${busiestWindow(seen.starts, 1000)} calls`,
    );
  });

  test('accounts are budgets of their own, and of their tenant', async () => {
    const prefix = `test-${randomUUID()}`;
    const a = worker(true, prefix);
    const limits: Limits = { recordsPerCall: 100, maxConcurrent: 1 };
    const { call, seen } = recorder(60);
    await Promise.all(
      ['acme|meta:act_1', 'acme|meta:act_2', 'globex|meta:act_1'].map((account) =>
        a.throttle(account, limits, call),
      ),
    );
    assert.equal(seen.peak, 3, 'three budgets of one call each run at once');
  });

  test('connectors of one account that declare different limits: the tightest holds, and it is reported', async () => {
    const conflicts: [string, Budget, Budget][] = [];
    const service = createThrottleService({
      redisUrl: REDIS_URL,
      keyPrefix: `test-${randomUUID()}`,
      onConflict: (account, kept, declared) => conflicts.push([account, kept, declared]),
    });
    services.push(service);
    const { call, seen } = recorder(60);
    await service.throttle('acme|x', { recordsPerCall: 1, maxConcurrent: 3 }, call);
    await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        service.throttle('acme|x', { recordsPerCall: 1, maxConcurrent: i === 0 ? 1 : 3 }, call),
      ),
    );
    assert.equal(seen.peak, 1);
    assert.deepEqual(conflicts, [
      [
        'acme|x',
        { maxConcurrent: 3, callsPerSecond: undefined },
        { maxConcurrent: 1, callsPerSecond: undefined },
      ],
    ]);
  });

  test('an account budget set in the tenants policy replaces what the connector declares', async () => {
    const prefix = `test-${randomUUID()}`;
    const service = worker(true, prefix);
    const seenLimits: Limits[] = [];
    const factory = createDestinationFactory(
      anySecret().forTenant,
      (account, limits, call) => (seenLimits.push(limits), service.throttle(account, limits, call)),
      (tenant, account) =>
        tenant === 'acme' && account.startsWith('http-list:') ? { maxConcurrent: 1 } : undefined,
    );
    const destination = factory(
      {
        type: 'http-list',
        baseUrl: 'http://127.0.0.1:1',
        listId: 'l',
        tokenSecret: 'TOKEN',
        callsPerSecond: 50,
      } as never,
      { tenant: 'acme' },
    );
    // No receiver listens: the call fails, but it went through the throttle with the policy's budget.
    await destination.add?.([{ key: 'a', attributes: {} }]).catch(() => undefined);
    await destination.close?.();
    assert.ok(seenLimits.length > 0);
    assert.equal(seenLimits[0]!.maxConcurrent, 1);
    assert.equal(seenLimits[0]!.callsPerSecond, 50, 'what the policy leaves out stays the connector’s');
  });

  test('a worker that dies in the middle of a call gives its slot back once the call expires', async () => {
    const keyPrefix = `test-${randomUUID()}`;
    const limits: Limits = { recordsPerCall: 1, maxConcurrent: 1 };
    const dying = createThrottleService({ redisUrl: REDIS_URL, keyPrefix, jobExpirationMs: 800 });
    const survivor = worker(true, keyPrefix);
    // The dying worker's call never finishes: it holds the account's only slot, then its process
    // (here: its Redis connections) goes away without telling anyone.
    void dying.throttle('acme|x', limits, () => new Promise(() => undefined)).catch(() => undefined);
    await sleep(200);
    await dying.close();
    const started = Date.now();
    await survivor.throttle('acme|x', limits, async () => undefined);
    assert.ok(Date.now() - started >= 400, 'the slot was held while the call could still be running');
  });

  test('the tenants policy sets account budgets and refuses unknown fields', () => {
    const policy = (accountLimits: unknown) =>
      TenantDirectory.fromPolicy({ tenants: { acme: { accountLimits } } });
    const directory = policy({ 'meta:act_1': { callsPerSecond: 5, maxConcurrent: 2 } });
    assert.deepEqual(directory.accountLimits('acme', 'meta:act_1'), { callsPerSecond: 5, maxConcurrent: 2 });
    assert.equal(directory.accountLimits('acme', 'meta:act_2'), undefined);
    assert.equal(directory.accountLimits('globex', 'meta:act_1'), undefined);
    assert.throws(() => policy({ 'meta:act_1': { callsPerMinute: 5 } }), /accountLimits.*meta:act_1/s);
    assert.throws(() => policy({ 'meta:act_1': { maxConcurrent: 0 } }), /accountLimits/);
  });

  test('with Redis unreachable, a limited call waits for it instead of going out unmetered', async () => {
    const errors: unknown[] = [];
    const service = createThrottleService({
      redisUrl: 'redis://127.0.0.1:1/0',
      keyPrefix: `test-${randomUUID()}`,
      onError: (error) => errors.push(error),
    });
    let called = false;
    const pending = service.throttle('acme|x', { recordsPerCall: 1, maxConcurrent: 1 }, async () => {
      called = true;
    });
    pending.catch(() => undefined);
    await sleep(1500);
    assert.equal(called, false);
    await service.close();
  });

  test('a Redis URL that is not one is refused with the variable to fix', () => {
    assert.throws(
      () => createThrottleService({ redisUrl: 'http://localhost:6379' }),
      /DELTASYNC_REDIS_URL must start with redis:\/\//,
    );
  });
});
