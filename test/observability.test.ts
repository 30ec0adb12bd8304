import type { EndpointTally } from '../src/core/api-calls';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { DeltasyncClient } from '../src/client';
import type { ConnectorInput } from '../src/connectors/definition';
import { saveConnector } from '../src/connectors/store';
import { listRuns } from '../src/core/runs';
import { createCustomersTable, customerKey, readCustomers, seedCustomers } from '../src/demo/customers';
import { startHttpListEmulator, type HttpListEmulator } from '../src/emulators/http-list-emulator';
import { DestinationError, type Destination } from '../src/connectors/types';
import { createLogger } from '../src/logging';
import { observeDestination } from '../src/observability/destination';
import { createWorkerMetrics } from '../src/observability/metrics';
import {
  noopRefreshObserver,
  safeObserver,
  sendIncrements,
  type RefreshObserver,
} from '../src/observability/observer';
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

describe('observing destinations and sends (no server)', () => {
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
      onCall: (...args) => void calls.push(['call', ...args]),
      onRateLimitWaits: (...args) => void calls.push(['waits', ...args]),
      onBatch: (...args) => void calls.push(['batch', ...args]),
      onRunFinished: (...args) => void calls.push(['run', ...args]),
    };
    return { calls, observer };
  }

  const refused = Object.assign(new DestinationError('refused', 'batch', 400), {
    apiCalls: 3,
    rateLimitWaits: 2,
    callsByEndpoint: { 'jobs:create': 1, 'jobs:run': 2 },
  });
  const fake: Destination = {
    type: 'fake',
    capabilities: {
      add: true,
      remove: true,
      truncate: true,
      listMembers: true,
      updateAttributes: true,
      createList: true,
    },
    limits: { recordsPerCall: 10 },
    add: () => Promise.reject(refused),
    remove: (keys) =>
      Promise.resolve({ rejected: [{ key: keys[0]!, reason: 'no' }], apiCalls: 2, rateLimitWaits: 1 }),
    truncate: () => Promise.reject(new Error('network down')),
    listMembers: () => Promise.resolve({ keys: ['k'], next: null }),
    createList: (name) =>
      Promise.resolve({ listId: `list-${name}`, outcome: { rejected: [], apiCalls: 1, rateLimitWaits: 0 } }),
    forList(listId) {
      return { ...this, type: `fake:${listId}` } as Destination;
    },
    close: () => Promise.resolve(),
  };

  test('calls by endpoint and outcome; results and errors pass through unchanged', async () => {
    const { calls, observer } = recorder();
    const observed = observeDestination(fake, observer);
    assert.equal(observed.type, 'fake');
    assert.equal(observed.limits, fake.limits);
    assert.equal(observed.swapList, undefined, 'an optional operation the destination lacks stays absent');

    await assert.rejects(observed.add([]), (error) => error === refused);
    assert.deepEqual(
      refused.callsByEndpoint,
      { 'jobs:create': 1, 'jobs:run': 2 },
      'the error is not changed',
    );
    const removed = await observed.remove(['a', 'b']);
    assert.deepEqual(removed.rejected, [{ key: 'a', reason: 'no' }]);
    await assert.rejects(observed.truncate(), /network down/);
    assert.deepEqual(await observed.listMembers(null, 10), { keys: ['k'], next: null });
    assert.equal((await observed.createList!('r1')).listId, 'list-r1');
    await observed.forList!('other').remove(['c']);

    assert.deepEqual(calls, [
      // A refused batch whose failing call was not at the operation's own endpoint: the last one.
      ['call', 'fake', 'jobs:create', tally(1)],
      ['call', 'fake', 'jobs:run', tally(2, { failed: 1 })],
      ['waits', 'fake', 2],
      // Without a breakdown by endpoint, the waits were the operation's own calls.
      ['call', 'fake', 'remove', tally(2, { rateLimited: 1 })],
      ['waits', 'fake', 1],
      // An error that knows nothing of its cost: one call, failed, to be tried again.
      ['call', 'fake', 'truncate', tally(1, { retried: 1 })],
      ['waits', 'fake', 0],
      ['call', 'fake', 'listMembers', tally(1)],
      ['waits', 'fake', 0],
      ['call', 'fake', 'createList', tally(1)],
      ['waits', 'fake', 0],
      // A destination for another list is observed too.
      ['call', 'fake:other', 'remove', tally(2, { rateLimited: 1 })],
      ['waits', 'fake:other', 1],
    ]);
  });

  test('send increments start from zero in every attempt, a resumed one included', () => {
    const firstAttempt = sendIncrements();
    assert.deepEqual(firstAttempt({ delivered: 100, rejected: 0 }), { delivered: 100, rejected: 0 });
    assert.deepEqual(firstAttempt({ delivered: 199, rejected: 1 }), { delivered: 99, rejected: 1 });
    // The retry resumes after the cursor; the sender's totals count again from zero.
    const resumed = sendIncrements();
    assert.deepEqual(resumed({ delivered: 50, rejected: 0 }), { delivered: 50, rejected: 0 });
  });

  test('Prometheus observer: counters never go down; a failing observer never fails the caller', async () => {
    const metrics = createWorkerMetrics({ defaultMetrics: false });
    metrics.observer.onBatch('x', { delivered: 5, rejected: -1 });
    metrics.observer.onCall('x', 'add', { calls: 2, failed: 5, rateLimited: 0, retried: 0 });
    metrics.observer.onRunFinished('x', null, 'noop', Number.NaN);
    const text = await metrics.render();
    assert.match(text, /^deltasync_records_sent_total\{destination="x"\} 5$/m);
    assert.doesNotMatch(text, /^deltasync_rejections_total\{/m);
    assert.match(text, /^deltasync_api_calls_total\{destination="x",endpoint="add",outcome="failed"\} 2$/m);
    assert.doesNotMatch(text, /outcome="ok"/);
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
