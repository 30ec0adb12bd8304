import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Redis from 'ioredis';
import { createConnection } from 'mysql2/promise';
import { DeltasyncClient } from '../src/client';
import { saveConnector } from '../src/core/connector-store';
import type { StrategyChoice } from '../src/core/plan';
import type { Db } from '../src/db';
import { createCustomersTable, readCustomers, seedCustomers } from '../src/demo/customers';
import {
  startHttpListEmulator,
  type EmulatorFaults,
  type HttpListEmulator,
} from '../src/connectors/http-list/emulator';
import { createTestDatabase, type TestDatabase } from './helpers/databases';
import { startPrivateMariaDb, type PrivateMariaDb } from './helpers/private-mariadb';
import {
  startRestartableTemporal,
  startTemporal,
  type RestartableTemporal,
  type TemporalHarness,
} from './helpers/temporal';
import { startWorkerProcess, type WorkerProcess } from './helpers/worker-process';

/**
 * Faults as an operator meets them, on real parts: `deltasync worker` processes, the Temporal dev
 * server, MariaDB, and a receiver of the http-list contract (or Redis). A worker is killed with
 * SIGKILL in the middle of every kind of send (a diff's additions and its deletions, a full push,
 * a truncate's reload, a new list's fill) and another is started. Each case measures what the
 * list received against what it had to: at most the batch in flight may arrive twice. It also
 * measures how long the send stood still before another worker took it over (docs/reliability.md).
 *
 * Then the parts around a worker fail: the Temporal dev server and the database are killed with
 * SIGKILL mid-send and started again on the same state, the list answers bursts of 429 and 5xx
 * and a short acknowledgement, and the dataset is edited while a send runs. Each case checks the
 * list against the dataset, counts what arrived twice, checks the run's outcome and counts, and
 * prints how long the send stood still.
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

/** A worker process; by default on the shared dev server, task queue and database. */
async function worker(
  options: { address?: string; databaseUrl?: string; taskQueue?: string } = {},
): Promise<WorkerProcess> {
  const started = await startWorkerProcess({
    address: options.address ?? temporal.server.address,
    taskQueue: options.taskQueue ?? taskQueue,
    databaseUrl: options.databaseUrl ?? t.url,
    env: { DELTASYNC_SECRET_DEFAULT__FAULT_TOKEN: TOKEN },
  });
  workers.push(started);
  return started;
}

/** A connector over its own table of `count` customers, to its own list, in calls of 100. */
async function connector(id: string, count = CUSTOMERS, db: Db = t.db) {
  const table = `faults_${id.replace(/-/g, '_')}`;
  await createCustomersTable(db, table);
  await seedCustomers(db, count, { table });
  await saveConnector(db, {
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

async function assertListEqualsDataset(id: string, table: string, db: Db = t.db) {
  const dataset = await readCustomers(db, table);
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
  if (measured.length > 0) console.log(`\nfault matrix (docs/reliability.md):\n${measured.join('\n')}`);
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

/**
 * The longest time `count` (records the list applied) stood still while watched: from one change
 * to the next, polled every 25 ms. What comes after the last change (the send is over) is not
 * counted.
 */
function watchStandstill(count: () => number) {
  let last = count();
  let changedAt = Date.now();
  let longest = 0;
  const timer = setInterval(() => {
    const now = Date.now();
    const current = count();
    if (current === last) return;
    longest = Math.max(longest, now - changedAt);
    last = current;
    changedAt = now;
  }, 25);
  return {
    stop(): number {
      clearInterval(timer);
      return longest;
    },
  };
}

/** What the run reported, in the terms the matrix uses: outcome, records sent, rejected. */
function assertOutcome(
  summary: { status: string; recordsSent: number; rejected: number },
  expected: { status: string; recordsSent: number; rejected: number },
) {
  assert.deepEqual(
    { status: summary.status, recordsSent: summary.recordsSent, rejected: summary.rejected },
    expected,
  );
}

describe('restart of the Temporal dev server mid-send (SIGKILL, same port, same state file)', () => {
  // A server of these tests' own: the shared one belongs to the SDK and cannot be restarted.
  let restartable: RestartableTemporal;
  let restartClient: DeltasyncClient;
  /** The worker both tests start with (a worker takes ~15 s to start on a busy machine). */
  let first: WorkerProcess;
  before(async () => {
    restartable = await startRestartableTemporal();
    restartClient = new DeltasyncClient(restartable.client, { taskQueue });
    first = await onRestartable();
  });
  after(async () => {
    await restartable?.stop();
  });

  const onRestartable = () => worker({ address: restartable.server.address });

  test('the send goes on while Temporal is down; the run finishes after the restart', async () => {
    const id = 'temporal-restart';
    const { table } = await connector(id);
    emulator.resetStats();
    // Slow enough calls (~10 s for the send) that it still runs when Temporal is back.
    emulator.faults.set({ latencyMs: 300 });
    try {
      const run = await restartClient.startRefresh(id);
      const applied = () => emulator.stats().recordsApplied.add;
      await waitFor(() => applied() >= 800, '800 records delivered');
      const standstill = watchStandstill(applied);
      await restartable.server.kill('SIGKILL');
      const atKill = applied();
      // Down for a few seconds: well inside the send's 20 s heartbeat timeout, so the send that
      // ran on is still the one Temporal knows when it comes back.
      await sleep(3_000);
      const whileDown = applied() - atKill;
      const restartStarted = Date.now();
      await restartable.server.start();
      const restartedAt = Date.now();
      const appliedAtRestart = applied();
      const summary = await run.result();
      const finishedAfterMs = Date.now() - restartedAt;
      const stoodStillMs = standstill.stop();

      const resent = applied() - CUSTOMERS;
      measured.push(
        `Temporal restarted mid-send: ${resent} re-sent, send stood still at most ${stoodStillMs} ms ` +
          `(${whileDown} records delivered while Temporal was down; restart took ` +
          `${restartedAt - restartStarted} ms; run finished ${finishedAfterMs} ms after it)`,
      );
      assertOutcome(summary, { status: 'succeeded', recordsSent: CUSTOMERS, rejected: 0 });
      assert.ok(resent >= 0 && resent <= BATCH, `${resent} records re-sent (at most one batch of ${BATCH})`);
      assert.ok(whileDown > 0, 'the worker kept sending while Temporal was down');
      assert.ok(appliedAtRestart < CUSTOMERS, 'the send still ran when Temporal came back');
      assert.ok(finishedAfterMs < 60_000, `the run finished ${finishedAfterMs} ms after the restart`);
      await assertListEqualsDataset(id, table);
    } finally {
      emulator.faults.clear('latencyMs');
    }
  });

  test('a send that completed while Temporal was down: the retried send finds its checkpoint at the end and sends nothing', async () => {
    // A full push walks the whole dataset, committed or not: only its checkpoint keeps a retried
    // send from pushing all of it again (a diff would find nothing pending anyway).
    const id = 'temporal-completion-lost';
    const { table } = await connector(id);
    await restartClient.refresh(id);
    emulator.resetStats();
    emulator.faults.set({ latencyMs: 150 });
    try {
      const run = await restartClient.startRefresh(id, { strategy: 'full' });
      const applied = () => emulator.stats().recordsApplied.add;
      await waitFor(() => applied() >= 1_500, '1,500 records pushed');
      await restartable.server.kill('SIGKILL');
      await waitFor(() => applied() >= CUSTOMERS, 'the push to end while Temporal is down');
      // The send has returned; its completion cannot reach Temporal. Killing the worker now makes
      // sure it never does (a worker alive at the restart might still deliver it).
      await sleep(1_000);
      first.kill('SIGKILL');
      await first.exited;
      const callsBefore = emulator.stats().calls.add;
      const restartStarted = Date.now();
      await restartable.server.start();
      const restartedAt = Date.now();
      const second = await onRestartable();
      const summary = await run.result();
      const recoveredMs = Date.now() - restartedAt;
      second.kill('SIGTERM');
      await second.exited;

      // History keeps the attempt that completed an activity: the send's must be a retry.
      const history = await restartable.client.workflow.getHandle(run.workflowId, run.runId).fetchHistory();
      const events = history.events ?? [];
      const sends = new Set(
        events
          .filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'sendChanges')
          .map((e) => String(e.eventId)),
      );
      const sendAttempts = events
        .map((e) => e.activityTaskStartedEventAttributes)
        .filter((started) => started && sends.has(String(started.scheduledEventId)))
        .map((started) => started!.attempt ?? 1);
      const resent = applied() - CUSTOMERS;
      const sentAfterRestart = emulator.stats().calls.add - callsBefore;
      measured.push(
        `Temporal restarted, send's completion lost: ${resent} re-sent, ${sentAfterRestart} calls after ` +
          `the restart; restart took ${restartedAt - restartStarted} ms, run finished ${recoveredMs} ms after it`,
      );
      assert.ok(
        sendAttempts.length === 1 && sendAttempts[0]! >= 2,
        `the send was retried, its completion lost (attempts: ${sendAttempts.join(', ')})`,
      );
      assert.equal(sentAfterRestart, 0, 'the retried send found its checkpoint at the end');
      assert.equal(resent, 0, 'nothing re-sent');
      assert.equal(summary.strategy, 'full');
      assertOutcome(summary, { status: 'succeeded', recordsSent: CUSTOMERS, rejected: 0 });
      assert.ok(recoveredMs < 90_000, `the run finished ${recoveredMs} ms after the restart`);
      await assertListEqualsDataset(id, table);
    } finally {
      emulator.faults.clear('latencyMs');
    }
  });
});

describe('restart of the database mid-send (a private MariaDB, SIGKILL, same data and port)', () => {
  // Never the shared server at 127.0.0.1:3306: other test files use it while this one runs.
  let mariadb: PrivateMariaDb;
  let own: TestDatabase;
  // A task queue of its own: workers of the shared database must not take its runs.
  const ownQueue = `${taskQueue}-own-db`;
  let ownClient: DeltasyncClient;
  let ownWorker: WorkerProcess;
  before(async () => {
    mariadb = await startPrivateMariaDb();
    own = await createTestDatabase('mysql', { mysqlServer: mariadb.url });
    ownClient = new DeltasyncClient(temporal.server.env.client, { taskQueue: ownQueue });
    ownWorker = await worker({ databaseUrl: own.url, taskQueue: ownQueue });
  });
  after(async () => {
    ownWorker?.kill('SIGTERM');
    await ownWorker?.exited;
    await own?.db.destroy();
    await mariadb?.stop();
  });

  /**
   * Start a refresh of `id`; once 800 records arrived, `prepare` the moment of the kill, kill the
   * database, keep it down 3 s, start it again, and let the refresh finish.
   */
  async function refreshThroughADatabaseRestart(id: string, prepare: () => Promise<void>) {
    const { table } = await connector(id, CUSTOMERS, own.db);
    emulator.resetStats();
    emulator.faults.set({ latencyMs: 150 });
    try {
      const run = await ownClient.startRefresh(id);
      const applied = () => emulator.stats().recordsApplied.add;
      await waitFor(() => applied() >= 800, '800 records delivered');
      await prepare();
      const appliedAtKill = applied();
      await mariadb.kill('SIGKILL');
      const killedAt = Date.now();
      emulator.faults.set({ latencyMs: 150 });
      await sleep(3_000);
      const deliveredWhileDown = applied() - appliedAtKill;
      const callsWhileDown = emulator.stats().calls.add;
      const restartStarted = Date.now();
      await mariadb.start();
      const restartMs = Date.now() - restartStarted;
      await waitFor(() => emulator.stats().calls.add > callsWhileDown, 'the send to go on');
      const stoodStillMs = Date.now() - killedAt;
      const summary = await run.result();
      const resent = applied() - CUSTOMERS;
      return { table, summary, resent, stoodStillMs, restartMs, deliveredWhileDown };
    } finally {
      emulator.faults.clear('latencyMs');
    }
  }

  test('a batch in flight when the database dies: its commit waits for the database, nothing arrives twice', async () => {
    const id = 'db-restart-between';
    // Between two calls the worker spends tens of milliseconds in the database (commit, next
    // page, attributes), where a kill may or may not land. Held two seconds at the list, the next
    // call is surely in flight when the database dies, with no statement running.
    const result = await refreshThroughADatabaseRestart(id, async () => {
      emulator.faults.set({ latencyMs: 2_000 });
      await sleep(700);
    });
    measured.push(
      `database restarted, a call in flight: ${result.resent} re-sent, send stood still ` +
        `${result.stoodStillMs} ms (down 3 s, restart took ${result.restartMs} ms)`,
    );
    assert.equal(
      result.deliveredWhileDown,
      BATCH,
      'the batch in flight was delivered while the database was down',
    );
    assertOutcome(result.summary, { status: 'succeeded', recordsSent: CUSTOMERS, rejected: 0 });
    assert.ok(
      result.resent >= 0 && result.resent <= BATCH,
      `${result.resent} records re-sent (at most one batch)`,
    );
    assert.ok(result.stoodStillMs < 60_000, `the send stood still ${result.stoodStillMs} ms`);
    await assertListEqualsDataset(id, result.table, own.db);
  });

  test('the database dies during a commit: the commit is written once it is back, nothing arrives twice', async () => {
    const id = 'db-restart-commit';
    // The run's row locked by another session: the worker's next commit (which counts the batch
    // on the run) waits for the lock, inside its transaction, when the database dies. The batch
    // is delivered; its commit fails with the connection and must not be lost nor, ideally, make
    // the batch go out again.
    const locker = await createConnection({ host: '127.0.0.1', port: mariadb.port, user: 'root' });
    locker.on('error', () => undefined); // the kill ends this session too
    try {
      const result = await refreshThroughADatabaseRestart(id, async () => {
        const database = new URL(own.url).pathname.slice(1);
        await locker.query(`USE \`${database}\``);
        await locker.query('START TRANSACTION');
        await locker.query(
          "SELECT id FROM refresh_runs WHERE connector_id = ? AND status = 'running' FOR UPDATE",
          [`default/${id}`],
        );
        // Seen at all, the worker's update of the run's row waits: it cannot pass the lock.
        await waitFor(async () => {
          const [rows] = await locker.query(
            "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE INFO LIKE 'update `refresh_runs`%'",
          );
          return Number((rows as { n: unknown }[])[0]?.n) > 0;
        }, 'the worker’s commit to wait for the lock');
      });
      measured.push(
        `database restarted during a commit: ${result.resent} re-sent, send stood still ` +
          `${result.stoodStillMs} ms (down 3 s, restart took ${result.restartMs} ms)`,
      );
      assertOutcome(result.summary, { status: 'succeeded', recordsSent: CUSTOMERS, rejected: 0 });
      assert.ok(
        result.resent >= 0 && result.resent <= BATCH,
        `${result.resent} records re-sent (at most one batch)`,
      );
      assert.ok(result.stoodStillMs < 60_000, `the send stood still ${result.stoodStillMs} ms`);
      await assertListEqualsDataset(id, result.table, own.db);
    } finally {
      locker.destroy();
    }
  });
});

/**
 * One worker for the faults that kill none (bursts, short acknowledgements, edits), started when
 * the first of them needs it: a worker takes ~15 s to start on a busy machine. It polls the
 * shared task queue, so it must not start before the kill -9 cases are done.
 */
let steady: Promise<WorkerProcess> | undefined;
const steadyWorker = () => (steady ??= worker());

describe('429 and 5xx bursts against a worker process', () => {
  /** A refresh of a fresh connector; `burst` is switched on once 1,000 records arrived. */
  async function refreshThroughABurst(id: string, burst: EmulatorFaults) {
    const { table } = await connector(id);
    await steadyWorker();
    emulator.resetStats();
    emulator.faults.set({ latencyMs: 100 });
    try {
      const run = await client.startRefresh(id);
      const applied = () => emulator.stats().recordsApplied.add;
      await waitFor(() => applied() >= 1_000, '1,000 records delivered');
      const standstill = watchStandstill(applied);
      emulator.faults.set(burst);
      const summary = await run.result();
      const stoodStillMs = standstill.stop();
      // The error of a send attempt that failed (and was retried) stays on the run.
      const row = (await t.db('refresh_runs').where({ id: summary.runId }).first('last_failure')) as
        { last_failure: string | null } | undefined;
      return {
        table,
        summary,
        stoodStillMs,
        stats: emulator.stats(),
        lastFailure: row?.last_failure ?? null,
      };
    } finally {
      emulator.faults.clear();
    }
  }

  test('429 ×4 (Retry-After: 1), then 500 ×3: the worker’s HTTP retries absorb it', async () => {
    const id = 'burst-absorbed';
    const { table, summary, stoodStillMs, stats, lastFailure } = await refreshThroughABurst(id, {
      rateLimit: { calls: 4, retryAfterSeconds: 1 },
      serverError: { calls: 3, status: 500 },
    });
    const resent = stats.recordsApplied.add - CUSTOMERS;
    measured.push(
      `429 ×4 then 500 ×3: ${resent} re-sent, send stood still ${stoodStillMs} ms, ` +
        `${stats.calls.add} calls (run counted ${summary.apiCalls}, ${summary.rateLimitWaits} rate-limit waits)`,
    );
    assertOutcome(summary, { status: 'succeeded', recordsSent: CUSTOMERS, rejected: 0 });
    assert.equal(resent, 0, 'a refused call applies nothing: nothing arrives twice');
    assert.equal(stats.statuses[429], 4);
    assert.equal(stats.statuses[500], 3);
    assert.equal(stats.calls.add, CUSTOMERS / BATCH + 7, 'every batch once, plus the refused calls');
    assert.equal(summary.apiCalls, stats.calls.add, 'the run counts every call the list received');
    assert.equal(summary.rateLimitWaits, 4);
    assert.equal(summary.failedCalls, 0, 'no batch failed');
    assert.equal(lastFailure, null, 'the send itself never failed');
    // Four Retry-After waits of 1 s and three backoffs (jittered, at most 0.25 + 0.5 + 1 s).
    assert.ok(stoodStillMs >= 4_000 && stoodStillMs < 30_000, `the send stood still ${stoodStillMs} ms`);
    await assertListEqualsDataset(id, table);
  });

  test('503 ×8, more than one call’s retries: the send activity fails, Temporal retries it', async () => {
    const id = 'burst-activity-retried';
    const { table, summary, stoodStillMs, stats, lastFailure } = await refreshThroughABurst(id, {
      serverError: { calls: 8, status: 503 },
    });
    const resent = stats.recordsApplied.add - CUSTOMERS;
    measured.push(
      `503 ×8 (the activity retried): ${resent} re-sent, send stood still ${stoodStillMs} ms, ` +
        `${stats.calls.add} calls (run counted ${summary.apiCalls})`,
    );
    assertOutcome(summary, { status: 'succeeded', recordsSent: CUSTOMERS, rejected: 0 });
    assert.equal(resent, 0, 'a refused call applies nothing: nothing arrives twice');
    assert.equal(stats.statuses[503], 8);
    assert.equal(stats.calls.add, CUSTOMERS / BATCH + 8, 'every batch once, plus the refused calls');
    // The calls of the attempt that gave up cost the account as much as any other.
    assert.equal(summary.apiCalls, stats.calls.add, 'the run counts every call the list received');
    assert.match(lastFailure ?? '', /503/, 'a send attempt failed with the 503s and was retried');
    assert.ok(stoodStillMs < 60_000, `the send stood still ${stoodStillMs} ms`);
    await assertListEqualsDataset(id, table);
  });
});

describe('short acknowledgements', () => {
  test('a call answered `accepted` 60 of 100: its records stay pending, the next refresh delivers them', async () => {
    const id = 'short-ack';
    const { table } = await connector(id);
    await steadyWorker();
    emulator.resetStats();
    emulator.faults.set({ latencyMs: 100 });
    try {
      const run = await client.startRefresh(id);
      await waitFor(() => emulator.stats().recordsApplied.add >= 1_000, '1,000 records delivered');
      emulator.faults.set({ shortAcknowledgement: { calls: 1, accepted: 60 } });
      const first = await run.result();
      assert.equal(emulator.faults.get().shortAcknowledgement, undefined, 'the short answer was given');
      // Which 40 of the call's records the list left out, the answer did not say: all 100 stay
      // pending (the run counts them rejected, 'not acknowledged'); the list lacks 40.
      assertOutcome(first, { status: 'succeeded', recordsSent: CUSTOMERS - BATCH, rejected: BATCH });
      assert.equal(emulator.members(id).size, CUSTOMERS - 40);

      emulator.faults.clear('latencyMs');
      const started = Date.now();
      const next = await client.refresh(id);
      const nextMs = Date.now() - started;
      const received = emulator.stats().recordsReceived.add;
      const resent = received - CUSTOMERS;
      measured.push(
        `short acknowledgement (60 of 100): first run ${first.recordsSent} sent, ${first.rejected} rejected; ` +
          `the next refresh sent ${next.recordsSent} in ${nextMs} ms; ${resent} re-sent in all`,
      );
      assert.equal(next.additions, BATCH, 'the next refresh has exactly that call’s records to send');
      assertOutcome(next, { status: 'succeeded', recordsSent: BATCH, rejected: 0 });
      assert.equal(resent, BATCH, 'the unconfirmed call, once more');
      assert.ok(nextMs < 60_000, `the next refresh took ${nextMs} ms`);
      await assertListEqualsDataset(id, table);
    } finally {
      emulator.faults.clear();
    }
  });
});

describe('the dataset edited during a send', () => {
  /*
   * Two ways a send meets edits: a first push reads the dataset itself in key order (a direct
   * push: rows ahead of it are read as they are then, rows behind it are left to the next
   * refresh); a diff reads pending keys from a compared deltalog and fetches their attributes.
   */
  const variants = [
    { name: 'a first push of 3,000 rows (read straight from the dataset)', alreadySent: 0 },
    { name: 'a 3,000-row diff (pending keys from a compared deltalog)', alreadySent: 1 },
  ];
  for (const [i, variant] of variants.entries()) {
    test(`inserts, updates and deletes during ${variant.name}: one more refresh sends only what changed after the send read its rows`, async () => {
      const id = `edited-mid-send-${i}`;
      const { table } = await connector(id, variant.alreadySent || CUSTOMERS);
      await steadyWorker();
      if (variant.alreadySent) {
        // One row delivered first, so the deltalog is not empty: the rest goes out as a diff.
        assert.equal((await client.refresh(id)).recordsSent, variant.alreadySent);
        await seedCustomers(t.db, CUSTOMERS - variant.alreadySent, { table, first: variant.alreadySent + 1 });
      }
      const direct = variant.alreadySent === 0;
      emulator.resetStats();
      emulator.faults.set({ latencyMs: 150 });
      try {
        const keys = (
          (await t.db(table).select('customer_key').orderBy('customer_key')) as { customer_key: string }[]
        ).map((r) => r.customer_key);
        // Sent: among the first 500 keys, delivered and committed once 1,000 records arrived.
        // Not read yet: among the last 500, which the send reaches only at its end.
        const sent = keys.slice(0, 500);
        const unread = keys.slice(-500);
        const every = (from: string[], step: number, count: number, offset = 0) =>
          Array.from({ length: count }, (_, i) => from[offset + i * step]!);
        const updatedSent = every(sent, 10, 50);
        const deletedSent = every(sent, 10, 30, 5);
        const updatedUnread = every(unread, 10, 50);
        const deletedUnread = every(unread, 10, 30, 5);

        const run = await client.startRefresh(id);
        await waitFor(() => emulator.stats().recordsApplied.add >= 1_000, '1,000 records delivered');
        const readerAt = emulator.stats().recordsApplied.add;
        await t.db.transaction(async (trx) => {
          await trx(table)
            .whereIn('customer_key', [...updatedSent, ...updatedUnread])
            .update({ segment: 'edited' });
          await trx(table)
            .whereIn('customer_key', [...deletedSent, ...deletedUnread])
            .delete();
        });
        // Numbered after every existing row: ahead of the send, whichever way it reads.
        await seedCustomers(t.db, 40, { table, first: 100_001 });
        const first = await run.result();
        assert.ok(
          emulator.stats().recordsApplied.add - readerAt >= 1_000,
          'the edits landed well before the send reached the unread rows',
        );
        // The unread deleted rows were gone when the send read them: neither sent nor rejected.
        // A direct push also reads the 40 new rows, which sort after every row it had read; a
        // diff knows only the keys its compare found.
        const firstSent = CUSTOMERS - variant.alreadySent - 30 + (direct ? 40 : 0);
        assertOutcome(first, { status: 'succeeded', recordsSent: firstSent, rejected: 0 });

        emulator.faults.clear('latencyMs');
        emulator.resetStats();
        const started = Date.now();
        const second = await client.refresh(id);
        const secondMs = Date.now() - started;
        const stats = emulator.stats();
        const sentBySecond = stats.recordsReceived.add + stats.recordsReceived.remove;
        // What changed after the send read its rows: 50 rows updated and 30 deleted after they
        // were sent (and, for the diff, 40 rows inserted after its compare). The 50 rows updated
        // before the send read them went out with their new attributes: sending them again would
        // be re-sending. A diff removes the 30 rows deleted before the send read them all the
        // same, and must: the deltalog cannot tell a key never sent from one whose delivery was
        // never confirmed (a batch in flight when a worker died), and skipping the removal of
        // such a key would leave a deleted row on the list. A direct push wrote no row for them.
        const truly = { additions: direct ? 0 : 40, updates: 50, deletions: direct ? 30 : 30 + 30 };
        const resent = second.updates - truly.updates;
        measured.push(
          `dataset edited during ${variant.name}: the second refresh sent ${sentBySecond} records ` +
            `(${second.additions} additions, ${second.updates} updates, ${second.deletions} deletions` +
            `${direct ? '' : ' of which 30 of keys never sent'}); ${resent} re-sent; took ${secondMs} ms`,
        );
        assertOutcome(second, {
          status: 'succeeded',
          recordsSent: truly.additions + truly.updates + truly.deletions,
          rejected: 0,
        });
        await assertListEqualsDataset(id, table);
        assert.ok(secondMs < 60_000, `the second refresh took ${secondMs} ms`);
        assert.equal(second.additions, truly.additions, 'the rows inserted mid-send');
        assert.equal(
          second.updates,
          truly.updates,
          'only rows updated after they were sent; those updated before went out with their new attributes',
        );
        assert.equal(second.deletions, truly.deletions, 'the rows deleted mid-send');
        assert.equal(sentBySecond, truly.additions + truly.updates + truly.deletions, 'nothing re-sent');
      } finally {
        emulator.faults.clear();
      }
    });
  }
});
