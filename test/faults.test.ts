import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Redis from 'ioredis';
import { DeltasyncClient } from '../src/client';
import { saveConnector } from '../src/connectors/store';
import type { StrategyChoice } from '../src/core/plan';
import { createCustomersTable, readCustomers, seedCustomers } from '../src/demo/customers';
import { startHttpListEmulator, type HttpListEmulator } from '../src/emulators/http-list-emulator';
import { createTestDatabase, type TestDatabase } from './helpers/databases';
import { startTemporal, type TemporalHarness } from './helpers/temporal';
import { startWorkerProcess, type WorkerProcess } from './helpers/worker-process';

/**
 * Faults as an operator meets them, on real parts: `deltasync worker` processes, the Temporal dev
 * server, MariaDB, and a receiver of the http-list contract (or Redis). A worker is killed with
 * SIGKILL in the middle of every kind of send (a diff's additions and its deletions, a full push,
 * a truncate's reload, a new list's fill) and another is started. Each case measures what the
 * list received against what it had to: at most the batch in flight may arrive twice. It also
 * measures how long the send stood still before another worker took it over (docs/reliability.md).
 */

const TOKEN = 'fault-token';
const BATCH = 100;
const CUSTOMERS = 3_000;
let temporal: TemporalHarness;
let emulator: HttpListEmulator;
let t: TestDatabase;
let client: DeltasyncClient;
const taskQueue = `faults-${process.pid}`;
const workers: WorkerProcess[] = [];

before(async () => {
  [temporal, emulator, t] = await Promise.all([
    startTemporal(),
    startHttpListEmulator({ token: TOKEN }),
    createTestDatabase('mysql'),
  ]);
  client = new DeltasyncClient(temporal.server.env.client, { taskQueue });
});
after(async () => {
  for (const worker of workers) worker.kill('SIGKILL');
  await Promise.all(workers.map((w) => w.exited));
  await emulator.close();
  await t.drop();
  await temporal.stop();
});

async function worker(): Promise<WorkerProcess> {
  const started = await startWorkerProcess({
    address: temporal.server.address,
    taskQueue,
    databaseUrl: t.url,
    env: { DELTASYNC_SECRET_DEFAULT__FAULT_TOKEN: TOKEN },
  });
  workers.push(started);
  return started;
}

/** A connector over its own table of `count` customers, to its own list, in calls of 100. */
async function connector(id: string, count = CUSTOMERS) {
  const table = `faults_${id.replace(/-/g, '_')}`;
  await createCustomersTable(t.db, table);
  await seedCustomers(t.db, count, { table });
  await saveConnector(t.db, {
    id,
    dataset: { table, key: 'customer_key', attributes: ['email', 'segment'] },
    destination: { type: 'http-list', baseUrl: emulator.url, listId: id, tokenSecret: 'FAULT_TOKEN' },
    policy: { batchSize: BATCH, massDeleteGuard: { enabled: false } },
  });
  return { table };
}

async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

interface KillResult {
  /** Records the list received in this refresh, and how many the refresh had to send. */
  received: number;
  /** From the kill until the list received the next call. */
  takeoverMs: number;
}

/**
 * Start a refresh on one worker, SIGKILL it once `killAfter` records of `endpoint` arrived, start
 * another worker at once, and let the refresh finish there.
 */
async function refreshThroughAKill(
  id: string,
  endpoint: 'add' | 'remove',
  killAfter: number,
  strategy?: StrategyChoice,
): Promise<KillResult & { status: string }> {
  const first = await worker();
  emulator.resetStats();
  emulator.faults.set({ latencyMs: 150 });
  try {
    const run = await client.startRefresh(id, strategy ? { strategy } : {});
    const arrived = () => emulator.stats().recordsReceived[endpoint];
    await waitFor(() => arrived() >= killAfter, `${killAfter} records of ${endpoint}`);
    first.kill('SIGKILL');
    const killedAt = Date.now();
    await first.exited;
    const atKill = emulator.stats().calls[endpoint];
    const second = await worker();
    await waitFor(() => emulator.stats().calls[endpoint] > atKill + 1, 'the send to go on');
    const takeoverMs = Date.now() - killedAt;
    const summary = await run.result();
    second.kill('SIGTERM');
    await second.exited;
    return { status: summary.status, received: arrived(), takeoverMs };
  } finally {
    emulator.faults.clear('latencyMs');
  }
}

async function assertListEqualsDataset(id: string, table: string) {
  const dataset = await readCustomers(t.db, table);
  const list = emulator.members(id);
  assert.deepEqual([...list.keys()].sort(), [...dataset.keys()].sort(), 'the list holds exactly the dataset');
  for (const [key, attributes] of list) {
    assert.deepEqual(attributes, { email: dataset.get(key)!.email, segment: dataset.get(key)!.segment }, key);
  }
}

/** The connector, with its list brought in sync by a first refresh on a worker of its own. */
async function syncedConnector(id: string) {
  const created = await connector(id);
  const w = await worker();
  await client.refresh(id);
  w.kill('SIGTERM');
  await w.exited;
  return created;
}

/** The refresh succeeded, re-sent at most one batch, and was taken over within the heartbeat timeout's reach. */
function assertAtMostOneBatchResent(what: string, result: KillResult & { status: string }, expected: number) {
  assert.equal(result.status, 'succeeded');
  const resent = result.received - expected;
  measured.push(`${what}: ${resent} re-sent, taken over after ${result.takeoverMs} ms`);
  assert.ok(resent >= 0 && resent <= BATCH, `${resent} records re-sent (at most one batch of ${BATCH})`);
  assert.ok(result.takeoverMs < 35_000, `taken over after ${result.takeoverMs} ms`);
}

/** Measured figures, printed at the end for docs/reliability.md. */
const measured: string[] = [];
after(() => {
  if (measured.length > 0)
    console.log(`\nfault matrix (kill -9 of the worker mid-send):\n${measured.join('\n')}`);
});

describe('kill -9 of the worker mid-send: at most the batch in flight arrives twice', () => {
  test('a diff: its additions', async () => {
    const { table } = await connector('kill-diff');
    const result = await refreshThroughAKill('kill-diff', 'add', 800);
    assertAtMostOneBatchResent('diff additions', result, CUSTOMERS);
    await assertListEqualsDataset('kill-diff', table);
  });

  test('a full push', async () => {
    const { table } = await syncedConnector('kill-full');
    const result = await refreshThroughAKill('kill-full', 'add', 1_500, 'full');
    assertAtMostOneBatchResent('full push', result, CUSTOMERS);
    await assertListEqualsDataset('kill-full', table);
  });

  test('a truncate and reload', async () => {
    const { table } = await syncedConnector('kill-truncate');
    const result = await refreshThroughAKill('kill-truncate', 'add', 1_200, 'truncate');
    assertAtMostOneBatchResent('truncate + reload', result, CUSTOMERS);
    await assertListEqualsDataset('kill-truncate', table);
  });

  test('a diff: its deletions', async () => {
    const { table } = await syncedConnector('kill-deletions');
    const gone = 2_000;
    const keys = (await t.db(table).select('customer_key').orderBy('customer_key').limit(gone)) as {
      customer_key: string;
    }[];
    await t
      .db(table)
      .whereIn(
        'customer_key',
        keys.map((k) => k.customer_key),
      )
      .delete();
    // Forced: for two thirds of the list, truncate + reload would be cheaper.
    const result = await refreshThroughAKill('kill-deletions', 'remove', 700, 'diff');
    assertAtMostOneBatchResent('diff deletions', result, gone);
    await assertListEqualsDataset('kill-deletions', table);
  });

  test('a new list’s fill (Redis)', async () => {
    const id = 'kill-fill';
    const table = `faults_${id.replace(/-/g, '_')}`;
    const count = 20_000;
    await createCustomersTable(t.db, table);
    await seedCustomers(t.db, count, { table });
    const key = `deltasync-faults-${process.pid}:set`;
    await saveConnector(t.db, {
      id,
      dataset: { table, key: 'customer_key', attributes: [] },
      destination: { type: 'redis-set', url: 'redis://127.0.0.1:6379/0', key, recordsPerCall: BATCH },
      policy: { strategy: 'newList', massDeleteGuard: { enabled: false } },
    });
    // Every SADD the worker sends to a build key, counted as Redis receives it.
    const redis = new Redis('redis://127.0.0.1:6379/0');
    const monitor = await redis.monitor();
    let added = 0;
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (args[0]?.toLowerCase() === 'sadd' && args[1]?.startsWith(`${key}:build:`)) added += args.length - 2;
    });
    try {
      const first = await worker();
      const run = await client.startRefresh(id);
      await waitFor(() => added >= 5_000, '5,000 members added to the build');
      first.kill('SIGKILL');
      const killedAt = Date.now();
      await first.exited;
      const atKill = added;
      const second = await worker();
      await waitFor(() => added > atKill + BATCH, 'the fill to go on');
      const takeoverMs = Date.now() - killedAt;
      const summary = await run.result();
      second.kill('SIGTERM');
      await second.exited;
      assert.equal(summary.status, 'succeeded');
      assert.equal(summary.strategy, 'newList');
      const resent = added - count;
      measured.push(`new list fill: ${resent} re-sent, taken over after ${takeoverMs} ms`);
      assert.ok(resent >= 0 && resent <= BATCH, `${resent} members re-sent (at most one batch of ${BATCH})`);
      const members = new Set(await redis.smembers(key));
      assert.equal(members.size, count);
      assert.deepEqual([...members].sort(), [...(await readCustomers(t.db, table)).keys()].sort());
    } finally {
      monitor.disconnect();
      const leftovers = await redis.keys(`${key}*`);
      if (leftovers.length > 0) await redis.del(...leftovers);
      redis.disconnect();
    }
  });
});
