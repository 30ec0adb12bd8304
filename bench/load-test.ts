/**
 * The load test of many workers (issue 14), shared by `npm run bench:load` (bench/load.ts, a
 * thousand connectors) and its short version in the tests (test/load.test.ts): real worker
 * processes, the real Temporal dev server and MariaDB, an http-list receiver in a process of its
 * own, and Redis holding every tenant's destination-account budget.
 *
 * Tenants share namespaces a few at a time (the tenant is the fairness key within one); each
 * tenant's connectors send to one account of its own, limited in the tenants policy; each
 * connector reads a table of its own, most small, a few large. Every connector is refreshed at
 * once (its first push), then again after a churn of every table.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client, Connection } from '@temporalio/client';
import Redis from 'ioredis';
import knex from 'knex';
import YAML from 'yaml';
import { DeltasyncClient, type RunSummary } from '../src/client';
import { saveConnector } from '../src/core/connector-store';
import { databaseConfig, migrateToLatest, type Db } from '../src/db';
import { startDevServer } from '../src/temporal/dev-server';
import { secretEnvName } from '../src/tenancy/secret-names';
import { freePort } from '../test/helpers/fake-http';
import { startWorkerProcess, type WorkerProcess } from '../test/helpers/worker-process';
import { createBenchDatabase } from './bench-database';
import type { AccountCalls } from './receiver';
import { startReceiver, type Receiver } from './receiver-process';

export interface LoadTestOptions {
  /** MariaDB server; the test works in a database of its own, dropped at the end. */
  serverUrl: string;
  database: string;
  tenants: number;
  connectorsPerTenant: number;
  tenantsPerNamespace: number;
  /** Worker processes. */
  workers: number;
  /** Connectors with a large dataset (the first connector of as many tenants). */
  largeDatasets: number;
  largeRows: number;
  /** Rows of every other connector's dataset: spread between these two. */
  smallRows: [number, number];
  churnPercent: number;
  /** Every tenant's destination account allows this. */
  accountLimit: { callsPerSecond: number; maxConcurrent: number };
  /** Records per destination call. */
  recordsPerCall: number;
  /** How long the receiver takes to answer a call, as a remote API would. */
  latencyMs: number;
  /** Per worker process. */
  activitySlots: number;
  dbPool: number;
  /** Redis for the budgets (a database the test may empty). */
  redisUrl: string;
  log(line: string): void;
}

export interface CycleReport {
  name: string;
  drainMs: number;
  /** When each tenant's last refresh finished, from the cycle's start. */
  tenantFinishedMs: Map<string, number>;
  medianTenantMs: number;
  slowestTenantMs: number;
  /** Slowest tenant over the median tenant. */
  spread: number;
  recordsSent: number;
}

export interface LoadReport {
  cycles: CycleReport[];
  /** Lists that differ from their dataset (empty: every list exact). */
  wrongLists: string[];
  accounts: AccountCalls[];
  workerPeakRssMb: number[];
  /** Mean time activities waited for a worker slot, per worker (the SDK's schedule-to-start latency). */
  scheduleToStartMs: number[];
  /** Most connections to the test's database seen at once, and the bound the settings give. */
  peakDbConnections: number;
  dbConnectionBound: number;
  /** Events and bytes of the refresh runs' histories: the largest, and the largest of a large dataset. */
  history: { maxEvents: number; maxBytes: number; largeMaxEvents: number; smallMaxEvents: number };
}

const TOKEN_SECRET = 'TOKEN';
const POLL_CONNECTIONS_MS = 250;

export async function runLoadTest(options: LoadTestOptions): Promise<LoadReport> {
  const { log } = options;
  const tenants = Array.from({ length: options.tenants }, (_, i) => `t${String(i + 1).padStart(2, '0')}`);
  const namespaceOf = (tenantIndex: number) =>
    `load-ns${String(Math.floor(tenantIndex / options.tenantsPerNamespace) + 1).padStart(2, '0')}`;
  const namespaces = [...new Set(tenants.map((_, i) => namespaceOf(i)))];
  const connectors = tenants.flatMap((tenant, t) =>
    Array.from({ length: options.connectorsPerTenant }, (_, c) => ({
      tenant,
      namespace: namespaceOf(t),
      id: `c${c}`,
      table: `ds_${tenant}_${c}`,
      rows:
        c === 0 && t < options.largeDatasets
          ? options.largeRows
          : options.smallRows[0] +
            ((t * 7919 + c * 104729) % (options.smallRows[1] - options.smallRows[0] + 1)),
    })),
  );

  const url = await createBenchDatabase(options.serverUrl, options.database);
  const db = knex(databaseConfig(url));
  await migrateToLatest(db);
  const receiver = await startReceiver({ latencyMs: options.latencyMs });
  const server = await startDevServer({ namespaces });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deltasync-load-'));
  const workers: WorkerProcess[] = [];
  const connections: Connection[] = [];
  const stopWatching = watchConnections(db, options.database);
  try {
    await emptyRedis(options.redisUrl);
    const seeding = performance.now();
    for (const c of connectors) await seed(db, c.table, c.rows);
    log(
      `${connectors.length} connectors in ${tenants.length} tenants and ${namespaces.length} namespaces; ` +
        `${connectors.reduce((n, c) => n + c.rows, 0).toLocaleString('en-US')} rows seeded in ${seconds(performance.now() - seeding)} s`,
    );
    const account = `http-list:${receiver.url}:${TOKEN_SECRET}`;
    const policyFile = path.join(dir, 'tenants.yaml');
    fs.writeFileSync(
      policyFile,
      YAML.stringify({
        tenants: Object.fromEntries(
          tenants.map((tenant, t) => [
            tenant,
            {
              namespace: namespaceOf(t),
              // Trusted with the worker's own database user: the load test is not about dataset access.
              database: 'worker',
              destinations: { origins: [new URL(receiver.url).origin] },
              accountLimits: { [account]: options.accountLimit },
            },
          ]),
        ),
      }),
    );
    for (const c of connectors) {
      await saveConnector(db, {
        id: c.id,
        tenant: c.tenant,
        dataset: { table: c.table, key: 'k', attributes: ['email', 'segment'] },
        destination: {
          type: 'http-list',
          baseUrl: receiver.url,
          listId: `${c.tenant}.${c.id}`,
          tokenSecret: TOKEN_SECRET,
          recordsPerCall: options.recordsPerCall,
        },
      });
    }
    const taskQueue = `load-${process.pid}`;
    const sdkMetricsPorts: number[] = [];
    for (let w = 0; w < options.workers; w++) {
      sdkMetricsPorts.push(await freePort());
      workers.push(
        await startWorkerProcess({
          address: server.address,
          taskQueue,
          databaseUrl: url,
          env: {
            DELTASYNC_TENANTS_FILE: policyFile,
            DELTASYNC_REDIS_URL: options.redisUrl,
            DELTASYNC_ACTIVITY_SLOTS: String(options.activitySlots),
            DELTASYNC_DB_POOL_MAX: String(options.dbPool),
            DELTASYNC_SDK_METRICS_ADDRESS: `127.0.0.1:${sdkMetricsPorts[w]}`,
            ...Object.fromEntries(tenants.map((t) => [secretEnvName(t, TOKEN_SECRET), receiver.token])),
          },
        }),
      );
    }
    log(`${options.workers} worker processes started`);
    const clients = new Map<string, DeltasyncClient>();
    for (const [t, tenant] of tenants.entries()) {
      const connection = await Connection.connect({ address: server.address });
      connections.push(connection);
      clients.set(
        tenant,
        new DeltasyncClient(new Client({ connection, namespace: namespaceOf(t) }), { taskQueue, tenant }),
      );
    }

    const cycles: CycleReport[] = [];
    const runs: RunRecord[] = [];
    for (const name of ['first push', 'after churn']) {
      if (name === 'after churn') {
        for (const c of connectors) await churn(db, c.table, c.rows, options.churnPercent);
      }
      const started = performance.now();
      const finished = new Map<string, number>();
      let recordsSent = 0;
      const done = await Promise.all(
        connectors.map(async (connector) => {
          const handle = await clients
            .get(connector.tenant)!
            .startRefresh(connector.id, { urgency: 'scheduled' });
          const run = await handle.result();
          if (run.status !== 'succeeded' && run.status !== 'noop') {
            throw new Error(`${connector.tenant}/${connector.id}: refresh ${run.status}`);
          }
          const at = performance.now() - started;
          finished.set(connector.tenant, Math.max(finished.get(connector.tenant) ?? 0, at));
          recordsSent += run.recordsSent ?? 0;
          return { connector, run, workflowId: handle.workflowId, runId: handle.runId };
        }),
      );
      runs.push(...done);
      const drainMs = performance.now() - started;
      const byTenant = [...finished.values()].sort((a, b) => a - b);
      const medianTenantMs = byTenant[Math.floor(byTenant.length / 2)]!;
      const slowestTenantMs = byTenant[byTenant.length - 1]!;
      cycles.push({
        name,
        drainMs,
        tenantFinishedMs: finished,
        medianTenantMs,
        slowestTenantMs,
        spread: slowestTenantMs / medianTenantMs,
        recordsSent,
      });
      log(
        `${name}: ${connectors.length} refreshes drained in ${seconds(drainMs)} s, ${recordsSent.toLocaleString('en-US')} records sent; ` +
          `tenants finished: median ${seconds(medianTenantMs)} s, slowest ${seconds(slowestTenantMs)} s`,
      );
    }

    const wrongLists = await checkLists(db, receiver, connectors);
    const history = await historySizes(clients, runs, options.largeRows);
    const workerPeakRssMb = workers.map((w) => peakRssMb(w.pid));
    const scheduleToStartMs = await Promise.all(sdkMetricsPorts.map(meanScheduleToStartMs));
    return {
      cycles,
      wrongLists,
      accounts: await receiver.calls(),
      workerPeakRssMb,
      scheduleToStartMs,
      peakDbConnections: stopWatching(),
      // Each worker: its pool, plus up to two connections per tenant's dataset reads (tenancy/datasets.ts).
      dbConnectionBound: options.workers * (options.dbPool + 2 * tenants.length),
      history,
    };
  } finally {
    stopWatching();
    for (const w of workers) w.kill('SIGTERM');
    await Promise.all(workers.map((w) => w.exited));
    await Promise.all(connections.map((c) => c.close()));
    await server.stop();
    await receiver.stop();
    await db.raw(`DROP DATABASE IF EXISTS \`${options.database}\``);
    await db.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A dataset of `rows` rows (keys k000000001…), from MariaDB's sequence engine. */
async function seed(db: Db, table: string, rows: number) {
  await db.raw(
    `CREATE TABLE \`${table}\` (k VARCHAR(32) COLLATE utf8mb4_bin PRIMARY KEY, email VARCHAR(64) NOT NULL, segment VARCHAR(16) NOT NULL)`,
  );
  await db.raw(
    `INSERT INTO \`${table}\` SELECT CONCAT('k', LPAD(seq, 9, '0')), CONCAT('user', seq, '@example.com'), ELT(1 + seq % 4, 'retail', 'smb', 'enterprise', 'public') FROM seq_1_to_${rows}`,
  );
}

/** A third of the churn new keys, a third deleted, a third with a new email (at least one each). */
async function churn(db: Db, table: string, rows: number, percent: number) {
  const third = Math.max(1, Math.round((rows * percent) / 100 / 3));
  const step = Math.max(1, Math.floor(rows / third / 3));
  await db.raw(
    `INSERT INTO \`${table}\` SELECT CONCAT('n', seq), CONCAT('new', seq, '@example.com'), 'retail' FROM seq_1_to_${third}`,
  );
  const keys = (offset: number) =>
    `(SELECT CONCAT('k', LPAD(${offset} + seq * ${step * 3}, 9, '0')) AS k FROM seq_0_to_${third - 1})`;
  await db.raw(`DELETE t FROM \`${table}\` t JOIN ${keys(1)} d ON t.k = d.k`);
  await db.raw(`UPDATE \`${table}\` t JOIN ${keys(2)} e ON t.k = e.k SET t.email = CONCAT('edited-', t.k)`);
}

/**
 * Every list against its table: the member count, and every member's attributes (a sample of
 * 500 for the large datasets).
 */
async function checkLists(
  db: Db,
  receiver: Receiver,
  connectors: { tenant: string; id: string; table: string; rows: number }[],
): Promise<string[]> {
  const wrong: string[] = [];
  for (const c of connectors) {
    const [[{ n }]] = (await db.raw(`SELECT COUNT(*) AS n FROM \`${c.table}\``)) as [[{ n: number }]];
    const sample = (
      (await db.raw(
        `SELECT k, email, segment FROM \`${c.table}\` ORDER BY ${Number(n) > 5000 ? 'MD5(k)' : 'k'} LIMIT 5000`,
      )) as [{ k: string; email: string; segment: string }[]]
    )[0];
    const list = `${c.tenant}.${c.id}`;
    const { count, members } = await receiver.check(list, [...sample.map((r) => r.k), 'not-a-key']);
    if (count !== Number(n)) wrong.push(`${list} holds ${count} members, its table ${n} rows`);
    const differs = sample.find(
      (r) => members[r.k]?.email !== r.email || members[r.k]?.segment !== r.segment,
    );
    if (differs) wrong.push(`${list}: ${differs.k} is ${JSON.stringify(members[differs.k])}`);
    if (members['not-a-key'] !== null) wrong.push(`${list} holds a key its table never had`);
  }
  return wrong;
}

interface RunRecord {
  connector: { tenant: string; rows: number };
  run: RunSummary;
  workflowId: string;
  runId: string;
}

async function historySizes(clients: Map<string, DeltasyncClient>, runs: RunRecord[], largeRows: number) {
  let maxEvents = 0;
  let maxBytes = 0;
  let largeMaxEvents = 0;
  let smallMaxEvents = 0;
  for (const r of runs) {
    const description = await clients
      .get(r.connector.tenant)!
      .temporal.workflow.getHandle(r.workflowId, r.runId)
      .describe();
    const events = description.historyLength;
    maxEvents = Math.max(maxEvents, events);
    maxBytes = Math.max(maxBytes, description.historySize ?? 0);
    if (r.connector.rows === largeRows) largeMaxEvents = Math.max(largeMaxEvents, events);
    else smallMaxEvents = Math.max(smallMaxEvents, events);
  }
  return { maxEvents, maxBytes, largeMaxEvents, smallMaxEvents };
}

/** Polls the connections to `database`; the returned function stops and gives the most seen. */
function watchConnections(db: Db, database: string): () => number {
  let peak = 0;
  let stopped = false;
  const poll = async () => {
    while (!stopped) {
      try {
        const [[{ n }]] = (await db.raw(
          'SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE DB = ?',
          [database],
        )) as [[{ n: number }]];
        // Less this poll's own connection.
        peak = Math.max(peak, Number(n) - 1);
      } catch {
        // The database is being set up or dropped.
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_CONNECTIONS_MS));
    }
  };
  void poll();
  return () => ((stopped = true), peak);
}

/** The mean of the SDK's activity schedule-to-start latency histogram, over every label set. */
async function meanScheduleToStartMs(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const total = (suffix: string) =>
    [
      ...text.matchAll(
        new RegExp(`^temporal_activity_schedule_to_start_latency${suffix}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'),
      ),
    ]
      .map((m) => Number(m[1]))
      .reduce((a, b) => a + b, 0);
  const count = total('_count');
  if (count === 0)
    throw new Error(`no activity schedule-to-start latency on the SDK metrics:\n${text.slice(0, 2000)}`);
  return total('_sum') / count;
}

/** The process's peak resident memory (VmHWM), in MB. */
function peakRssMb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  return Math.round(kb / 1024);
}

/** The budgets of an earlier run (a killed worker's running calls) must not count against this one. */
async function emptyRedis(url: string) {
  const redis = new Redis(url, { lazyConnect: true });
  await redis.connect();
  await redis.flushdb();
  redis.disconnect();
}

function seconds(ms: number): string {
  return (ms / 1000).toFixed(2);
}

/** Slowest tenant over the median tenant, at most. */
export const SPREAD_TARGET = 3;

/** The issue's targets, each met or not, with the figure that decides it. */
export function targetsOf(report: LoadReport, options: LoadTestOptions): { met: boolean; text: string }[] {
  const { callsPerSecond, maxConcurrent } = options.accountLimit;
  const busiest = Math.max(0, ...report.accounts.map((a) => a.busiestSecond));
  const peak = Math.max(0, ...report.accounts.map((a) => a.peakConcurrent));
  const spread = Math.max(...report.cycles.map((c) => c.spread));
  return [
    {
      met: report.wrongLists.length === 0,
      text: `every list equal to its dataset (${report.wrongLists.length} wrong)`,
    },
    {
      met: busiest <= callsPerSecond && peak <= maxConcurrent,
      text: `no account above its limit: busiest second ${busiest} calls (limit ${callsPerSecond}/s), most at once ${peak} (limit ${maxConcurrent})`,
    },
    {
      met: spread <= SPREAD_TARGET,
      text: `slowest tenant ${spread.toFixed(2)}× the median tenant (target ≤ ${SPREAD_TARGET}×)`,
    },
  ];
}

/** The figures beside the targets, as lines of text. */
export function describeReport(report: LoadReport): string[] {
  const lines = report.cycles.map(
    (c) =>
      `${c.name}: drained in ${seconds(c.drainMs)} s; tenants finished at median ${seconds(c.medianTenantMs)} s, ` +
      `slowest ${seconds(c.slowestTenantMs)} s (${c.spread.toFixed(2)}×); ${c.recordsSent.toLocaleString('en-US')} records sent`,
  );
  const calls = report.accounts.reduce((n, a) => n + a.calls, 0);
  lines.push(
    `destination calls: ${calls.toLocaleString('en-US')} over ${report.accounts.length} accounts`,
    `worker peak RSS: ${report.workerPeakRssMb.map((mb) => `${mb} MB`).join(', ')}`,
    `activities waited for a worker slot: ${report.scheduleToStartMs.map((ms) => `${(ms / 1000).toFixed(2)} s`).join(', ')} on average (SDK metrics)`,
    `database connections: at most ${report.peakDbConnections} at once (bound from the settings: ${report.dbConnectionBound})`,
    `workflow history per run: at most ${report.history.maxEvents} events, ${(report.history.maxBytes / 1024).toFixed(1)} KiB ` +
      `(large datasets ${report.history.largeMaxEvents} events, small ${report.history.smallMaxEvents})`,
  );
  return lines;
}
