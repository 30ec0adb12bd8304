import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { createThrottle } from '../../src/connectors/kit/throttle';
import { countCall, measureCalls } from '../../src/core/api-calls';

/** One limiter per destination account, shared by everything in the worker that uses it. */

test('calls to one account never exceed its concurrency cap, whoever makes them', async () => {
  const throttle = createThrottle();
  const limits = { recordsPerCall: 1, maxConcurrent: 3 };
  // Calls end only when the test releases them, so the count in flight does not depend on timing.
  const inFlight: (() => void)[] = [];
  let peak = 0;
  const call = () =>
    new Promise<void>((resolve) => {
      inFlight.push(resolve);
      peak = Math.max(peak, inFlight.length);
    });
  // Two "activities" (connectors) of the same account, 20 calls each, all at once.
  const calls = Array.from({ length: 40 }, () => throttle('acme:account-1', limits, call));
  for (let remaining = 40; remaining > 0; remaining--) {
    const expected = Math.min(3, remaining);
    for (let waited = 0; inFlight.length < expected; waited += 5) {
      assert.ok(waited < 5_000, `${expected} calls in flight (${inFlight.length})`);
      await sleep(5);
    }
    await sleep(5); // room for a fourth call to start, if the limiter let it
    assert.equal(inFlight.length, expected, 'calls in flight');
    inFlight.shift()!();
  }
  await Promise.all(calls);
  assert.equal(peak, 3);
});

test('accounts are limited separately', async () => {
  const throttle = createThrottle();
  const limits = { recordsPerCall: 1, maxConcurrent: 1 };
  // Each call ends only once both are in flight: if the accounts shared a limiter, they never would.
  let inFlight = 0;
  const call = async () => {
    inFlight++;
    for (let waited = 0; inFlight < 2; waited += 5) {
      if (waited >= 5_000) throw new Error("the other account's call never started");
      await sleep(5);
    }
  };
  await Promise.all([throttle('acme:a', limits, call), throttle('acme:b', limits, call)]);
  assert.equal(inFlight, 2, 'one call in flight per account, two accounts');
});

test('calls per second space the starts of calls to one account', async () => {
  const throttle = createThrottle();
  const starts: number[] = [];
  const scheduled = performance.now();
  await Promise.all(
    Array.from({ length: 5 }, () =>
      throttle('acme:rate', { recordsPerCall: 1, callsPerSecond: 20 }, async () => {
        starts.push(performance.now());
      }),
    ),
  );
  // 20 calls per second: the fifth call cannot start before 4 x 50 ms after they were scheduled.
  // (A lower bound measured from scheduling, so a busy event loop cannot make it fail.)
  assert.equal(starts.length, 5);
  assert.ok(Math.max(...starts) - scheduled >= 195, `last start after ${Math.max(...starts) - scheduled} ms`);
});

test('an account without limits is not queued: its calls start at once, all of them', async () => {
  const throttle = createThrottle();
  let started = 0;
  const calls = Array.from({ length: 50 }, () =>
    throttle('open:account', { recordsPerCall: 1 }, async () => {
      started++;
      await sleep(20);
    }),
  );
  // Started synchronously, not by a scheduler's later tick.
  assert.equal(started, 50);
  await Promise.all(calls);
});

test('once a connector of an account declares limits, calls without limits of that account obey them too', async () => {
  const throttle = createThrottle();
  let running = 0;
  let most = 0;
  const call = async () => {
    running++;
    most = Math.max(most, running);
    await sleep(10);
    running--;
  };
  await throttle('shared:account', { recordsPerCall: 1, maxConcurrent: 1 }, call);
  await Promise.all(Array.from({ length: 5 }, () => throttle('shared:account', { recordsPerCall: 1 }, call)));
  assert.equal(most, 1);
});

test('a queued call is counted on the operation that made it, whichever call freed its slot', async () => {
  // Found in CI: Mailchimp's capped account ran a queued retry in the context of the batch whose
  // call had just ended, so the retry was counted on that batch, sometimes after it was recorded.
  const throttle = createThrottle();
  const limits = { recordsPerCall: 1, maxConcurrent: 2 };
  const operations = Array.from({ length: 12 }, (_, i) =>
    measureCalls(async () => {
      for (let call = 0; call <= i % 3; call++) {
        await throttle('capped:account', limits, async () => {
          await sleep(1 + ((i * 7) % 5));
          countCall(`op-${i}`, 'ok');
        });
      }
    }),
  );
  const measured = await Promise.all(operations);
  for (const [i, m] of measured.entries()) {
    assert.deepEqual(Object.keys(m.tallies), [`op-${i}`], `operation ${i} counts only its own calls`);
    assert.equal(m.tallies[`op-${i}`]!.calls, 1 + (i % 3));
  }
});
