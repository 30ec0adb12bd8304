import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { createThrottle } from '../src/connectors/throttle';

/** One limiter per destination account, shared by everything in the worker that uses it. */

test('calls to one account never exceed its concurrency cap, whoever makes them', async () => {
  const throttle = createThrottle();
  const limits = { recordsPerCall: 1, maxConcurrent: 3 };
  let inFlight = 0;
  let peak = 0;
  const call = async () => {
    inFlight++;
    peak = Math.max(peak, inFlight);
    await sleep(5);
    inFlight--;
  };
  // Two "activities" (connectors) of the same account, 20 calls each, all at once.
  await Promise.all(Array.from({ length: 40 }, () => throttle('acme:account-1', limits, call)));
  assert.equal(peak, 3);
});

test('accounts are limited separately', async () => {
  const throttle = createThrottle();
  const limits = { recordsPerCall: 1, maxConcurrent: 1 };
  let inFlight = 0;
  let peak = 0;
  const call = async () => {
    inFlight++;
    peak = Math.max(peak, inFlight);
    await sleep(20);
    inFlight--;
  };
  await Promise.all([throttle('acme:a', limits, call), throttle('acme:b', limits, call)]);
  assert.equal(peak, 2, 'one call in flight per account, two accounts');
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
