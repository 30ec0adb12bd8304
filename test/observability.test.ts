import { countCall, type EndpointTally } from '../src/core/api-calls';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { DeltasyncClient } from '../src/client';
import type { ConnectorInput } from '../src/core/connector';
import { saveConnector } from '../src/core/connector-store';
import { connectorKey } from '../src/core/connector';
import { directReader } from '../src/core/dataset';
import { updateDeltalog } from '../src/core/deltalog';
import { createList, sendChanges, snapshotRemote, truncateList, type Engine } from '../src/core/refresh';
import { beginRun, endpointCalls, getRun, listRuns } from '../src/core/runs';
import { createCustomersTable, customerKey, readCustomers, seedCustomers } from '../src/demo/customers';
import { startHttpListEmulator, type HttpListEmulator } from '../src/connectors/http-list/emulator';
import { DestinationError, type Destination } from '../src/core/destination';
import { createLogger } from '../src/logging';
import { createWorkerMetrics } from '../src/observability/metrics';
import { noopRefreshObserver, safeObserver, type RefreshObserver } from '../src/observability/observer';
import { installTemporalLogging } from '../src/observability/logging';
import { startDevServer, type DevServer } from '../src/temporal/dev-server';
import { refreshWorkflowId } from '../src/workflows/shared';
import {
  startWorkerService,
  type StartWorkerServiceOptions,
  type WorkerService,
} from '../src/worker/service';
import { createTestDatabase, type TestDatabase } from './helpers/databases';
import { freePort } from './helpers/fake-http';
import { MemoryDestination } from './helpers/memory-destination';

/**
 * The worker service end to end: the real Temporal dev server, MariaDB, the http-list emulator,
 * the service started in-process with its /metrics and /healthz endpoint, its JSON logs read back
 * from a stream.
 */

const TOKEN = 'obs-token-5d1e9b';
const CUSTOMERS = 1000;
process.env.DELTASYNC_SECRET_DEFAULT__OBS_LIST_TOKEN = TOKEN;

/** Every line the service, its activities and the Temporal SDK logged, as written. */
const logLines: string[] = [];
const testLogger = createLogger({
  level: 'debug',
  destination: { write: (chunk: string) => void logLines.push(...chunk.split('\n').filter(Boolean)) },
});

let server: DevServer;
let bundle: WorkflowBundleWithSourceMap;
let t: TestDatabase;
let queueCounter = 0;
let listCounter = 0;
const services: WorkerService[] = [];
const emulators: HttpListEmulator[] = [];

before(async () => {
  // Before the dev server: it creates the process's Temporal Runtime.
  assert.equal(installTemporalLogging(testLogger, { shutdownSignals: [] }), true);
  const quiet = () => undefined;
  [server, bundle, t] = await Promise.all([
    startDevServer(),
    bundleWorkflowCode({
      workflowsPath: require.resolve('../src/workflows'),
      logger: { log: quiet, trace: quiet, debug: quiet, info: quiet, warn: quiet, error: quiet },
    }),
    createTestDatabase('mysql'),
  ]);
  await createCustomersTable(t.db);
  await seedCustomers(t.db, CUSTOMERS);
});

after(async () => {
  for (const service of services) await service.stop().catch(() => undefined);
  for (const emulator of emulators) await emulator.close();
  await t?.drop();
  await server?.stop();
});

async function emulator(): Promise<HttpListEmulator> {
  const started = await startHttpListEmulator({ token: TOKEN });
  emulators.push(started);
  return started;
}

async function startService(
  taskQueue: string,
  options: Partial<StartWorkerServiceOptions> = {},
): Promise<WorkerService> {
  const service = await startWorkerService({
    address: server.address,
    taskQueue,
    host: '127.0.0.1',
    metricsPort: await freePort(),
    databaseUrl: t.url,
    workflowBundle: bundle,
    logger: testLogger,
    ...options,
  });
  services.push(service);
  return service;
}

function connectorFor(
  id: string,
  emu: HttpListEmulator,
  batchSize: number,
  policy: ConnectorInput['policy'] = {},
): ConnectorInput & { destination: { listId: string } } {
  return {
    id,
    dataset: {
      table: 'demo_customers',
      key: 'customer_key',
      attributes: ['email', 'name', 'country', 'segment'],
    },
    destination: {
      type: 'http-list',
      baseUrl: emu.url,
      listId: `obs-list-${listCounter++}`,
      tokenSecret: 'OBS_LIST_TOKEN',
      recordsPerCall: batchSize,
    },
    policy: { batchSize, ...policy },
  };
}

/** A series' name and labels, label order aside. */
function seriesKey(name: string, labels: Record<string, string>): string {
  return `${name}${JSON.stringify(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)))}`;
}

/** Parsed Prometheus text: `name{labels}` → value. */
async function scrape(service: WorkerService): Promise<{ contentType: string; sample: typeof sampleOf }> {
  const response = await fetch(`http://127.0.0.1:${service.port}/metrics`);
  assert.equal(response.status, 200);
  const text = await response.text();
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    assert.ok(match, `a Prometheus sample line: ${line}`);
    const labels = Object.fromEntries(
      [...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1]!, m[2]!]),
    );
    samples.set(seriesKey(match[1]!, labels), Number(match[3]));
  }
  function sampleOf(name: string, labels: Record<string, string> = {}): number | undefined {
    return samples.get(seriesKey(name, labels));
  }
  return { contentType: response.headers.get('content-type') ?? '', sample: sampleOf };
}

async function health(service: WorkerService): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`http://127.0.0.1:${service.port}/healthz`);
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function committedKeys(connectorId: string): Promise<Set<string>> {
  const rows = (await t
    .db('deltalog')
    .where({ connector_id: `default/${connectorId}` })
    .whereNotNull('committed_at')
    .select('record_key')) as { record_key: string }[];
  return new Set(rows.map((r) => r.record_key));
}

/** The log lines as JSON objects; every line must be one. */
function parsedLogs(): Record<string, unknown>[] {
  return logLines.map((line) => {
    try {
      return JSON.parse(line) as Record<string, unknown>;
    } catch {
      assert.fail(`a log line that is not JSON: ${line}`);
    }
  });
}

describe('worker service: metrics, health, logs, graceful shutdown', () => {
  test('metrics after a refresh through the workflow: records, calls by endpoint and outcome, rejections, rate-limit waits, duration', async () => {
    const emu = await emulator();
    // 1000 customers in calls of 100: the first call is rate limited once (one wait, then
    // retried), one record is rejected, the tenth call is refused as a whole (400).
    const rejectedKey = customerKey(7);
    emu.faults.set({
      rateLimit: { calls: 1, retryAfterSeconds: 1 },
      reject: (key) => (key === rejectedKey ? 'invalid e-mail' : null),
      failAfter: { successfulCalls: 9, status: 400 },
    });
    const connector = connectorFor('obs-metrics', emu, 100, {
      successThreshold: 0.5,
      recordSuccessThreshold: 0.5,
      // The refused call is counted as it is; splitting it is tested in runs-and-sender.test.ts.
      splitCallBudget: 0,
    });
    await saveConnector(t.db, connector);
    const taskQueue = `obs-${process.pid}-${queueCounter++}`;
    const service = await startService(taskQueue);
    const client = new DeltasyncClient(server.env.client, taskQueue);

    const summary = await client.refresh(connector.id);
    assert.equal(summary.status, 'succeeded');
    assert.equal(summary.strategy, 'diff');
    // What the run recorded, as the metrics must report it.
    assert.equal(summary.recordsSent, 899, '900 delivered by nine calls, less the rejected record');
    assert.equal(summary.rejected, 101, 'the rejected record and the refused call of 100');
    assert.equal(summary.apiCalls, 11, 'ten calls, one of them twice (429 then 200)');
    assert.equal(summary.failedCalls, 1);
    assert.equal(summary.rateLimitWaits, 1);

    const { contentType, sample } = await scrape(service);
    assert.match(contentType, /^text\/plain; version=0\.0\.4/);
    const dest = { destination: 'http-list' };
    assert.equal(sample('deltasync_records_sent_total', dest), summary.recordsSent);
    assert.equal(sample('deltasync_rejections_total', dest), summary.rejected);
    assert.equal(sample('deltasync_rate_limit_waits_total', dest), summary.rateLimitWaits);
    // Each call counted once, by its outcome: the 429 was waited for and tried again.
    const calls = (outcome: string) =>
      sample('deltasync_api_calls_total', { ...dest, endpoint: 'add', outcome });
    assert.equal(calls('ok'), 9);
    assert.equal(calls('rate_limited'), 1);
    assert.equal(calls('failed'), 1);
    assert.deepEqual(summary.callsByEndpoint, { add: { calls: 11, failed: 1, rateLimited: 1, retried: 0 } });
    const run = { ...dest, strategy: 'diff', status: 'succeeded' };
    assert.equal(sample('deltasync_refresh_duration_seconds_count', run), 1);
    const seconds = sample('deltasync_refresh_duration_seconds_sum', run)!;
    assert.ok(Math.abs(seconds - summary.durationMs! / 1000) < 1e-6, `duration ${seconds} s`);
    assert.ok(seconds >= 1, 'the run waited a second for the rate limit');
    assert.equal(sample('deltasync_refresh_duration_seconds_bucket', { ...run, le: '+Inf' }), 1);
    assert.ok((sample('process_cpu_user_seconds_total') ?? 0) > 0, 'default process metrics');

    // The next run sends the 101 records left pending; the one after has nothing to do, and is
    // observed with strategy "none".
    emu.faults.clear();
    const second = await client.refresh(connector.id);
    assert.equal(second.recordsSent, 101);
    const noop = await client.refresh(connector.id);
    assert.equal(noop.status, 'noop');
    const later = await scrape(service);
    assert.equal(later.sample('deltasync_records_sent_total', dest), CUSTOMERS);
    assert.equal(later.sample('deltasync_rejections_total', dest), 101, 'unchanged');
    assert.equal(later.sample('deltasync_api_calls_total', { ...dest, endpoint: 'add', outcome: 'ok' }), 11);
    assert.equal(later.sample('deltasync_refresh_duration_seconds_count', run), 2);
    assert.equal(
      later.sample('deltasync_refresh_duration_seconds_count', { ...dest, strategy: 'none', status: 'noop' }),
      1,
    );

    await service.stop();
  });

  test('JSON log lines carry connector and run ids, and never records or secrets', async () => {
    const emu = await emulator();
    const connector = connectorFor('obs-logs', emu, 250);
    await saveConnector(t.db, connector);
    const taskQueue = `obs-${process.pid}-${queueCounter++}`;
    const service = await startService(taskQueue);
    const firstLine = logLines.length;
    const summary = await new DeltasyncClient(server.env.client, taskQueue).refresh(connector.id);
    assert.equal(summary.status, 'succeeded');
    await service.stop();

    const lines = parsedLogs().slice(firstLine);
    const ours = lines.filter((l) => l.connectorId === connector.id);
    const started = (activity: string) => ours.find((l) => l.msg === `${activity} started`);
    const finished = (activity: string) => ours.find((l) => l.msg === `${activity} finished`);

    // deltasync's own lines: start and end of every step, with the ids and counts.
    for (const activity of ['beginRun', 'updateDeltalog', 'planRefresh', 'sendChanges', 'finishRun']) {
      assert.ok(started(activity), `${activity} started`);
      const end = finished(activity);
      assert.ok(end, `${activity} finished`);
      assert.equal(end.runId, summary.runId, `${activity} finished carries the run id`);
      assert.equal(end.level, 30);
      assert.equal(typeof end.durationMs, 'number');
    }
    const send = finished('sendChanges')!;
    assert.equal(send.phase, 'upserts');
    assert.equal(send.delivered, CUSTOMERS);
    assert.equal(send.apiCalls, 4);
    assert.equal(send.cursor, undefined, 'a cursor is a key: never logged');
    assert.equal(started('sendChanges')!.phase, 'upserts');
    assert.equal(finished('finishRun')!.status, 'succeeded');

    // Every line logged inside this refresh's activities carries both ids, the SDK's own
    // activity lines included. Exceptions: the run id is known only once beginRun returns it, and
    // the SDK logs "Activity started" before the arguments reach the interceptor.
    const inActivities = lines.filter(
      (l) =>
        l.workflowId === refreshWorkflowId('default', connector.id) &&
        (l.activity !== undefined || l.activityType !== undefined),
    );
    const sdkLines = inActivities.filter((l) => l.temporal === true && l.msg === 'Activity completed');
    assert.ok(sdkLines.length >= 5, 'the SDK activity logger is forwarded to pino');
    for (const line of inActivities) {
      const beforeRunId =
        line.msg === 'Activity started' || (line.activity ?? line.activityType) === 'beginRun';
      assert.equal(line.connectorId, connector.id, `connectorId on: ${JSON.stringify(line)}`);
      if (!beforeRunId || line.msg === 'Activity completed' || line.msg === 'beginRun finished') {
        assert.equal(line.runId, summary.runId, `runId on: ${JSON.stringify(line)}`);
      }
    }
    // The SDK's worker lines come through as JSON too.
    assert.ok(lines.some((l) => l.temporal === true && l.msg === 'Worker state changed'));

    const text = logLines.join('\n');
    assert.ok(!text.includes(TOKEN), 'no secret in the logs');
    assert.ok(!/cust-\d{7}|@example\.com/.test(text), 'no record key or attribute in the logs');
  });

  test('the worker service keeps one alert watchdog per tenant it serves', async () => {
    const taskQueue = `obs-${process.pid}-${queueCounter++}`;
    const watchdog = server.env.client.workflow.getHandle('deltasync-alert-watchdog@default');
    // The services of the tests before this one started it on their own task queues.
    await watchdog.terminate('a fresh start').catch(() => undefined);
    const first = await startService(taskQueue, { alertCheckSeconds: 60 });
    try {
      const described = await watchdog.describe();
      assert.equal(described.status.name, 'RUNNING');
      assert.equal(described.taskQueue, taskQueue);
      const second = await startService(taskQueue, { alertCheckSeconds: 60 });
      assert.equal((await watchdog.describe()).runId, described.runId, 'a second worker leaves it running');
      await second.stop();
      await watchdog.terminate('test over');
      const off = await startService(taskQueue, { alertCheckSeconds: 0 });
      assert.equal((await watchdog.describe()).status.name, 'TERMINATED', '0: no watchdog');
      await off.stop();
    } finally {
      await first.stop();
      await watchdog.terminate('test over').catch(() => undefined);
    }
  });

  test('/healthz: 200 while the worker runs and the database answers, 503 when it does not', async () => {
    const service = await startService(`obs-${process.pid}-${queueCounter++}`);
    const healthy = await health(service);
    assert.equal(healthy.status, 200);
    assert.deepEqual(
      { status: healthy.body.status, worker: healthy.body.worker, database: healthy.body.database },
      { status: 'ok', worker: 'RUNNING', database: 'ok' },
    );

    assert.equal((await fetch(`http://127.0.0.1:${service.port}/nothing`)).status, 404);
    assert.equal((await fetch(`http://127.0.0.1:${service.port}/metrics`, { method: 'POST' })).status, 405);

    await service.db.destroy();
    const unhealthy = await health(service);
    assert.equal(unhealthy.status, 503);
    assert.deepEqual(
      { status: unhealthy.body.status, worker: unhealthy.body.worker, database: unhealthy.body.database },
      { status: 'unavailable', worker: 'RUNNING', database: 'unreachable' },
    );

    await service.stop();
    assert.equal(service.workers[0]!.getState(), 'STOPPED');
    await assert.rejects(fetch(`http://127.0.0.1:${service.port}/healthz`), 'the endpoint is closed');
  });

  test('graceful shutdown mid-send: every call the destination answered is committed; a new worker resumes', async () => {
    const emu = await emulator();
    emu.faults.set({ latencyMs: 150 });
    const connector = connectorFor('obs-shutdown', emu, 25);
    const listId = connector.destination.listId;
    await saveConnector(t.db, connector);
    const taskQueue = `obs-${process.pid}-${queueCounter++}`;
    const first = await startService(taskQueue, { shutdownGraceSeconds: 1 });
    const client = new DeltasyncClient(server.env.client, taskQueue);

    const handle = await client.startRefresh(connector.id);
    await waitFor(() => emu.members(listId).size >= 100, 'four calls delivered');
    const atStop = emu.members(listId).size;
    const stopping = first.stop();
    // Draining: not ready for work any more, but activities still run for the grace period.
    const draining = await health(first);
    assert.equal(draining.status, 503);
    assert.notEqual(draining.body.worker, 'RUNNING');
    await stopping;

    const applied = new Set(emu.members(listId).keys());
    const committed = await committedKeys(connector.id);
    assert.ok(applied.size > atStop, 'sends went on during the grace period');
    assert.ok(applied.size < CUSTOMERS, `stopped mid-send (${applied.size} of ${CUSTOMERS})`);
    assert.equal(emu.stats().recordsApplied.add, applied.size, 'no record sent twice');
    const committedNotApplied = [...committed].filter((k) => !applied.has(k));
    const appliedNotCommitted = [...applied].filter((k) => !committed.has(k));
    assert.deepEqual(committedNotApplied, [], 'no committed record the destination lacks');
    // The call in flight when the activity was told to stop finished and was committed too.
    assert.deepEqual(appliedNotCommitted, [], 'every call the destination answered is committed');
    const [run] = await listRuns(t.db, `default/${connector.id}`);
    assert.ok(run);
    assert.equal(run.status, 'running');
    assert.equal(run.records_sent, committed.size, 'run counters committed with each call');

    const stoppedLogs = parsedLogs().filter(
      (l) => l.msg === 'sendChanges stopped' && l.connectorId === connector.id,
    );
    assert.equal(stoppedLogs.length, 1);
    assert.equal(stoppedLogs[0]!.runId, run.id);

    // Another worker takes over: the send resumes after the last committed call.
    emu.faults.clear();
    const second = await startService(taskQueue);
    const summary = await handle.result();
    assert.equal(summary.status, 'succeeded');
    const expected = await readCustomers(t.db);
    const members = emu.members(listId);
    assert.equal(members.size, expected.size);
    for (const [key, attributes] of expected) assert.deepEqual(members.get(key), attributes, key);
    assert.equal(emu.stats().recordsApplied.add, CUSTOMERS, 'the resumed send re-sent nothing');
    const { sample } = await scrape(second);
    assert.equal(
      sample('deltasync_records_sent_total', { destination: 'http-list' }),
      CUSTOMERS - committed.size,
      'the resumed attempt counts only what it sent',
    );
    assert.equal(summary.recordsSent, CUSTOMERS);
    await second.stop();
  });
});

describe('the engine reports calls and batches (no server)', () => {
  const tally = (calls: number, of: Partial<EndpointTally> = {}): EndpointTally => ({
    calls,
    failed: 0,
    rateLimited: 0,
    retried: 0,
    ...of,
  });

  /** Every observer call, in order. */
  function recorder() {
    const calls: unknown[][] = [];
    const observer: RefreshObserver = {
      onCalls: (...args) => void calls.push(['calls', ...args]),
      onBatch: (...args) => void calls.push(['batch', ...args]),
      onRunFinished: (...args) => void calls.push(['run', ...args]),
    };
    return { calls, observer };
  }

  let scenario = 0;
  /** A connector over a fresh table of `rows` keys, its deltalog updated, and a run of it. */
  async function runOf(rows: number) {
    const table = `obs_engine_${scenario}`;
    const id = `obs-engine-${scenario++}`;
    await t.db.schema.createTable(table, (x) => {
      x.string('k', 16).primary();
      x.string('v', 8);
    });
    await t.db(table).insert(Array.from({ length: rows }, (_, i) => ({ k: `k${i}`, v: 'a' })));
    const connector = await saveConnector(t.db, {
      id,
      dataset: { table, key: 'k', attributes: ['v'] },
      destination: { type: 'http-list', baseUrl: 'http://unused.invalid', listId: 'l', tokenSecret: 'U' },
    });
    const key = connectorKey(connector.tenant, connector.id);
    await updateDeltalog(t.db, key, connector.dataset, 1_000);
    const runId = await beginRun(
      t.db,
      {
        connectorId: key,
        tenant: connector.tenant,
        workflowId: id,
        workflowRunId: `${id}-run`,
        trigger: 'test',
      },
      1_000,
    );
    return { connector, key, runId, source: directReader(t.db, connector.dataset) };
  }

  test('every operation: its calls by endpoint and outcome go to the observer and the run, the same tallies', async () => {
    const { calls, observer } = recorder();
    const engine: Engine = { db: t.db, now: Date.now, observer };
    const { connector, key, runId, source } = await runOf(3);
    const scope = { connector, key, runId };
    // Counted as the HTTP client counts: every attempt at its endpoint.
    const fake: Destination = {
      type: 'fake',
      // One refused call, counted as it is (splitting it is tested in runs-and-sender.test.ts).
      limits: { recordsPerCall: 10, splitRefusedBatches: false },
      add: () => {
        countCall('jobs:create', 'ok');
        countCall('jobs:run', 'rate_limited');
        countCall('jobs:run', 'failed');
        return Promise.reject(new DestinationError('refused', 'batch', 400));
      },
      remove: () => Promise.resolve({ rejected: [] }),
      // An error that counted no call: one call at the operation's endpoint, to be tried again.
      truncate: () => Promise.reject(new DestinationError('network down', 'retryable')),
      // Counts nothing: nothing is reported.
      listMembers: () => Promise.resolve({ keys: ['k0'], next: null }),
      replaceList: {
        create: (name) => {
          countCall('lists:create', 'ok');
          return Promise.resolve({ listId: `list-${name}` });
        },
        forList: () => fake,
        swap: () => Promise.resolve({}),
        retire: () => Promise.resolve(),
      },
      check: () => Promise.resolve('fake list reachable'),
      close: () => Promise.resolve(),
    };

    const sent = await sendChanges(engine, scope, { destination: fake, source, phase: 'upserts' });
    assert.equal(sent.rejected, 3, 'the refused batch: its records stay pending');
    await assert.rejects(truncateList(engine, scope, fake), /network down/);
    assert.deepEqual(await createList(engine, scope, fake), { listId: `list-run-${runId}` });
    assert.deepEqual(await snapshotRemote(engine, scope, fake), { keys: 1 });

    assert.deepEqual(calls, [
      [
        'calls',
        'http-list',
        { 'jobs:create': tally(1), 'jobs:run': tally(2, { rateLimited: 1, failed: 1 }) },
      ],
      ['batch', 'http-list', { delivered: 0, rejected: 3 }],
      ['calls', 'http-list', { truncate: tally(1, { retried: 1 }) }],
      ['calls', 'http-list', { 'lists:create': tally(1) }],
    ]);
    // The run recorded what the observer was told, endpoint by endpoint.
    assert.deepEqual(await endpointCalls(t.db, runId), {
      'jobs:create': tally(1),
      'jobs:run': tally(2, { rateLimited: 1, failed: 1 }),
      'lists:create': tally(1),
      truncate: tally(1, { retried: 1 }),
    });
    const run = await getRun(t.db, runId);
    assert.deepEqual([run.api_calls, run.failed_calls, run.rate_limit_waits], [5, 1, 1]);
  });

  test('batches are reported as they commit, once each, a resumed send included', async () => {
    const { calls, observer } = recorder();
    const engine: Engine = { db: t.db, now: Date.now, observer };
    const { connector, key, runId, source } = await runOf(3);
    const scope = { connector, key, runId };
    const remote = new MemoryDestination({ recordsPerCall: 1 });
    remote.faults = { failAfterCalls: 2 };
    const send = () => sendChanges(engine, scope, { destination: remote, source, phase: 'upserts' });
    await assert.rejects(send(), /injected failure/);
    remote.faults = {};
    // The retry resumes after the last committed call: only the third record is reported again.
    await send();
    const batches = calls.filter(([kind]) => kind === 'batch');
    assert.deepEqual(batches, Array(3).fill(['batch', 'http-list', { delivered: 1, rejected: 0 }]));
    const reported = calls.filter(([kind]) => kind === 'calls').map(([, , tallies]) => tallies);
    assert.deepEqual(reported, [
      { add: tally(1) },
      { add: tally(1) },
      { add: tally(1, { retried: 1 }) },
      { add: tally(1) },
    ]);
    assert.deepEqual(await endpointCalls(t.db, runId), { add: tally(4, { retried: 1 }) });
  });

  test('Prometheus observer: counters never go down; a failing observer never fails the caller', async () => {
    const metrics = createWorkerMetrics({ defaultMetrics: false });
    metrics.observer.onBatch('x', { delivered: 5, rejected: -1 });
    metrics.observer.onCalls('x', {
      add: { calls: 2, failed: 5, rateLimited: 0, retried: 0 },
      'jobs:run': { calls: 3, failed: 0, rateLimited: 2, retried: 0 },
    });
    metrics.observer.onRunFinished('x', null, 'noop', Number.NaN);
    const text = await metrics.render();
    assert.match(text, /^deltasync_records_sent_total\{destination="x"\} 5$/m);
    assert.doesNotMatch(text, /^deltasync_rejections_total\{/m);
    assert.match(text, /^deltasync_api_calls_total\{destination="x",endpoint="add",outcome="failed"\} 2$/m);
    assert.doesNotMatch(text, /endpoint="add",outcome="ok"/);
    assert.match(text, /^deltasync_api_calls_total\{destination="x",endpoint="jobs:run",outcome="ok"\} 1$/m);
    assert.match(text, /^deltasync_rate_limit_waits_total\{destination="x"\} 2$/m);
    assert.doesNotMatch(text, /^deltasync_refresh_duration_seconds_count/m);
    assert.doesNotMatch(text, /^process_/m);

    const throwing = safeObserver({
      ...noopRefreshObserver,
      onBatch: () => {
        throw new Error('broken');
      },
    });
    assert.doesNotThrow(() => throwing.onBatch('x', { delivered: 1, rejected: 0 }));
  });
});
