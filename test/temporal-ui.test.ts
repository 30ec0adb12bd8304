import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { bundleWorkflowCode, Runtime } from '@temporalio/worker';
import { DeltasyncClient, type RunSummary } from '../src/client';
import type { ConnectorInput } from '../src/core/connector';
import { destinationModule } from '../src/connectors/catalog';
import { createDestinationContext } from '../src/connectors/kit/module';
import type { DestinationFactory } from '../src/connectors/registry';
import { listRuns, type RunRow } from '../src/core/runs';
import { churnCustomers, createCustomersTable, CUSTOMERS_TABLE, seedCustomers } from '../src/demo/customers';
import { startHttpListEmulator, type HttpListEmulator } from '../src/connectors/http-list/emulator';
import { startDevServer, type DevServer } from '../src/temporal/dev-server';
import { createTenancy } from '../src/tenancy';
import { createWorker } from '../src/worker';
import { anySecret, trustedTenants } from './helpers/secrets';
import { refreshWorkflowId } from '../src/temporal/names';
import { createTestDatabase, type TestDatabase } from './helpers/databases';
import { testRuntimeLogger } from './helpers/temporal';

/**
 * "Find every run in the Temporal UI": the real dev server started with its Web UI, MariaDB, a
 * worker and the http-list emulator. Refreshes of two connectors of two tenants (successes, a
 * failure, a no-op), then the UI server's own HTTP API — what the UI's workflow list, memo and
 * history views load — must show every run the database recorded, with its outcome, strategy
 * and tenant, its summary in the memo and the activity summaries in its history.
 */

const TOKEN = 'ui-test-token';
const BATCH = 1000;
const CRM = 'ui-crm'; // tenant default: first push, diff, no-op
const ADS = 'ui-ads'; // tenant growth: first push, a failed diff, the retry

let server: DevServer;
let uiUrl: string;
let database: TestDatabase;
let emulator: HttpListEmulator;

/** The destination as the worker builds it, with short backoffs. */
const destinations: DestinationFactory = (config, { listId }) => {
  const module = destinationModule(config.type);
  if (config.type !== 'http-list' || !module) throw new Error('this test uses http-list only');
  const context = createDestinationContext({
    secrets: () => TOKEN,
    listId,
    retry: { baseDelayMs: 5, maxDelayMs: 20 },
  });
  return module.create(module.configSchema.parse(config), context);
};

function connector(id: string, tenant: string): ConnectorInput {
  return {
    id,
    tenant,
    dataset: { table: CUSTOMERS_TABLE, key: 'customer_key', attributes: ['email', 'country', 'segment'] },
    destination: {
      type: 'http-list',
      baseUrl: emulator.url,
      listId: `list-${id}`,
      tokenSecret: 'UI_TEST_TOKEN',
      recordsPerCall: BATCH,
    },
  };
}

before(async () => {
  Runtime.install({ logger: testRuntimeLogger() });
  [server, database, emulator] = await Promise.all([
    freePort().then((uiPort) => startDevServer({ ui: true, uiPort })),
    createTestDatabase('mysql'),
    startHttpListEmulator({ token: TOKEN }),
  ]);
  uiUrl = server.uiUrl!;
  await createCustomersTable(database.db);
  await seedCustomers(database.db, 3_000);
  // The UI server comes up next to the frontend; wait until it answers.
  await eventually(async () => (await fetch(`${uiUrl}/api/v1/settings`)).ok, 'the UI server');
});

after(async () => {
  await emulator?.close();
  await database?.drop();
  await server?.stop();
});

/** GET from the UI server's API (what its pages load), as JSON. */
async function ui<T>(path: string): Promise<T> {
  const response = await fetch(`${uiUrl}/api/v1/namespaces/default${path}`);
  assert.equal(response.status, 200, `GET ${path}: ${response.status} ${await response.clone().text()}`);
  return (await response.json()) as T;
}

/**
 * A query through the UI server, as its Queries and User Metadata tabs send it (a POST, so with
 * the CSRF cookie and header the UI's pages carry). Answered by a worker, so one must be running.
 */
async function uiQuery(workflowId: string, queryType: string): Promise<unknown> {
  const settings = await fetch(`${uiUrl}/api/v1/settings`);
  const csrf = /_csrf=([^;]+)/.exec(settings.headers.get('set-cookie') ?? '')?.[1];
  assert.ok(csrf, 'the UI server hands out a CSRF cookie');
  const path = `/workflows/${encodeURIComponent(workflowId)}/query/${queryType}`;
  const response = await fetch(`${uiUrl}/api/v1/namespaces/default${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', cookie: `_csrf=${csrf}`, 'x-csrf-token': csrf },
    body: JSON.stringify({ execution: { workflowId }, query: { queryType } }),
  });
  assert.equal(response.status, 200, `POST ${path}: ${response.status} ${await response.clone().text()}`);
  const { queryResult } = (await response.json()) as { queryResult: { payloads: Payload[] } };
  return decode(queryResult.payloads[0]);
}

interface Payload {
  metadata?: { encoding?: string };
  data?: string;
}
interface UiExecution {
  execution: { workflowId: string; runId: string };
  type: { name: string };
  status: string;
  memo?: { fields?: Record<string, Payload> };
  searchAttributes?: { indexedFields?: Record<string, Payload> };
}
interface UiEvent {
  eventType: string;
  userMetadata?: { summary?: Payload };
}

/** A payload as the UI's JSON API returns it: base64 JSON. */
function decode(payload: Payload | undefined): unknown {
  if (!payload?.data) return undefined;
  assert.equal(Buffer.from(payload.metadata?.encoding ?? '', 'base64').toString(), 'json/plain');
  return JSON.parse(Buffer.from(payload.data, 'base64').toString('utf8'));
}

/** The workflow list for a visibility query, as the UI's list page loads it (`?query=`). */
async function listRunsInUi(query: string): Promise<UiExecution[]> {
  const { executions } = await ui<{ executions?: UiExecution[] }>(
    `/workflows?query=${encodeURIComponent(query)}&pageSize=100`,
  );
  return executions ?? [];
}

function searchAttribute(execution: UiExecution, name: string): unknown {
  return decode(execution.searchAttributes?.indexedFields?.[name]);
}

/** The summaries of a run's scheduled activities, in history order, as the UI's history view shows them. */
async function activitySummaries(workflowId: string, runId: string): Promise<string[]> {
  const { history } = await ui<{ history: { events: UiEvent[] } }>(
    `/workflows/${encodeURIComponent(workflowId)}/history?execution.runId=${runId}&maximumPageSize=1000`,
  );
  return history.events
    .filter((e) => e.eventType === 'EVENT_TYPE_ACTIVITY_TASK_SCHEDULED' && e.userMetadata?.summary)
    .map((e) => decode(e.userMetadata!.summary) as string);
}

describe('operating from the Temporal Web UI', () => {
  test('every run recorded in the database is found in the UI, with its attributes, memo and summaries', async () => {
    const bundle = await bundleWorkflowCode({
      workflowsPath: require.resolve('../src/workflows'),
      logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} },
    });
    const taskQueue = `ui-test-${process.pid}`;
    const worker = await createWorker({
      connection: server.env.nativeConnection,
      db: database.db,
      tenancy: createTenancy({
        db: database.db,
        directory: trustedTenants('default', 'growth'),
        secrets: anySecret(),
      }),
      destinations,
      taskQueue,
      workflowBundle: bundle,
      temporal: server.env.client,
    });
    const defaults = new DeltasyncClient(server.env.client, { taskQueue });
    const growth = new DeltasyncClient(server.env.client, { taskQueue, tenant: 'growth' });

    const summaries = await worker.runUntil(async () => {
      await defaults.connectors.apply(connector(CRM, 'default'));
      await growth.connectors.apply(connector(ADS, 'growth'));
      const crmFirst = await defaults.refresh(CRM);
      const adsFirst = await growth.refresh(ADS);
      await churnCustomers(database.db, { additions: 120, deletions: 40, changes: 60 });
      const crmDiff = await defaults.refresh(CRM);

      // Every call refused with a 400: the batches fail, the run falls below its success threshold.
      emulator.faults.set({ failAfter: { successfulCalls: 0, status: 400 } });
      await assert.rejects(growth.refresh(ADS), 'the refused diff fails the run');
      emulator.faults.clear();
      const adsRetry = await growth.refresh(ADS);
      const crmNoop = await defaults.refresh(CRM);

      assert.deepEqual(
        [crmFirst, crmDiff, crmNoop, adsFirst, adsRetry].map((r) => [r.connectorId, r.status]),
        [
          [CRM, 'succeeded'],
          [CRM, 'succeeded'],
          [CRM, 'noop'],
          [ADS, 'succeeded'],
          [ADS, 'succeeded'],
        ],
      );
      assert.equal(adsRetry.additions + adsRetry.updates, crmDiff.additions + crmDiff.updates);
      assert.equal(adsRetry.deletions, crmDiff.deletions, 'the retry sends what the failed run could not');

      // What the UI's User Metadata and Queries tabs load: the current details (the phase, here
      // the outcome of the finished run), the `progress` query and the approve/reject updates.
      for (const [id, tenant, outcome] of [
        [CRM, 'default', 'noop'],
        [ADS, 'growth', 'succeeded'],
      ] as const) {
        const metadata = (await uiQuery(refreshWorkflowId(tenant, id), '__temporal_workflow_metadata')) as {
          currentDetails?: string;
          definition?: { queryDefinitions?: { name: string }[]; updateDefinitions?: { name: string }[] };
        };
        assert.equal(metadata.currentDetails, `**${id}**: ${outcome}`);
        assert.ok(metadata.definition?.queryDefinitions?.some((q) => q.name === 'progress'));
        assert.deepEqual(metadata.definition?.updateDefinitions?.map((u) => u.name).sort(), [
          'approve',
          'reject',
        ]);
        const progress = (await uiQuery(refreshWorkflowId(tenant, id), 'progress')) as {
          phase: string;
          connectorId: string;
        };
        assert.deepEqual([progress.connectorId, progress.phase], [id, 'done']);
      }
      return new Map<number, RunSummary>(
        [...(await defaults.runs(CRM)), ...(await growth.runs(ADS))].map((r) => [r.runId, r]),
      );
    });

    const expected: Record<string, { tenant: string; runs: RunRow[] }> = {
      [CRM]: { tenant: 'default', runs: await listRuns(database.db, `default/${CRM}`) },
      [ADS]: { tenant: 'growth', runs: await listRuns(database.db, `growth/${ADS}`) },
    };
    assert.deepEqual(
      expected[CRM]!.runs.map((r) => r.status),
      ['noop', 'succeeded', 'succeeded'],
    );
    assert.deepEqual(
      expected[ADS]!.runs.map((r) => r.status),
      ['succeeded', 'failed', 'succeeded'],
    );

    for (const [connectorId, { tenant, runs }] of Object.entries(expected)) {
      // What the UI's list shows for `DeltasyncConnectorId="…"` (visibility may lag a moment).
      const listed = await eventually(async () => {
        const found = await listRunsInUi(`DeltasyncConnectorId="${connectorId}"`);
        const closed = found.filter((e) => e.status !== 'WORKFLOW_EXECUTION_STATUS_RUNNING');
        return closed.length === runs.length && found.length === runs.length ? found : undefined;
      }, `${runs.length} closed runs of ${connectorId} in the UI's list`);
      assert.deepEqual(
        new Set(listed.map((e) => e.execution.runId)),
        new Set(runs.map((r) => r.workflow_run_id)),
        `the UI lists exactly the runs of ${connectorId} in refresh_runs`,
      );

      for (const run of runs) {
        const execution = listed.find((e) => e.execution.runId === run.workflow_run_id)!;
        const where = `${connectorId} run ${run.id} (${run.status})`;
        assert.equal(execution.execution.workflowId, refreshWorkflowId(tenant, connectorId), where);
        assert.equal(execution.type.name, 'refreshConnector', where);
        assert.equal(
          execution.status,
          run.status === 'failed'
            ? 'WORKFLOW_EXECUTION_STATUS_FAILED'
            : 'WORKFLOW_EXECUTION_STATUS_COMPLETED',
          where,
        );
        assert.equal(searchAttribute(execution, 'DeltasyncConnectorId'), connectorId, where);
        assert.equal(searchAttribute(execution, 'DeltasyncOutcome'), run.status, where);
        assert.equal(searchAttribute(execution, 'DeltasyncTenant'), tenant, where);
        assert.equal(run.tenant, tenant, where);
        assert.equal(searchAttribute(execution, 'DeltasyncDestination'), 'http-list', where);
        // A no-op chooses no strategy; every other run records the one it used.
        assert.equal(searchAttribute(execution, 'DeltasyncStrategy'), run.strategy ?? undefined, where);
        assert.equal(run.strategy === null, run.status === 'noop', where);

        const summary = summaries.get(run.id);
        assert.ok(summary, `client.runs reports ${where}`);
        // Every run here ends through finishRun (the failed one below its success threshold), so
        // every run has its memo.
        assert.deepEqual(
          decode(execution.memo?.fields?.summary),
          {
            status: summary.status,
            strategy: summary.strategy,
            additions: summary.additions,
            updates: summary.updates,
            deletions: summary.deletions,
            deletionsHeld: summary.deletionsHeld,
            rejected: summary.rejected,
            quarantined: summary.quarantined,
            apiCalls: summary.apiCalls,
            durationMs: summary.durationMs,
          },
          `the memo of ${where} holds its summary`,
        );

        const upserts = run.additions + run.updates;
        const sends = [
          ...(upserts > 0
            ? [
                `send ${upserts.toLocaleString('en-US')} additions and updates in ~${Math.ceil(upserts / BATCH)} calls`,
              ]
            : []),
          ...(run.deletions > 0
            ? [`send ${run.deletions} deletions in ~${Math.ceil(run.deletions / BATCH)} calls`]
            : []),
        ];
        assert.deepEqual(
          await activitySummaries(execution.execution.workflowId, execution.execution.runId),
          ['update the deltalog (full compare)', ...sends],
          `the history of ${where} shows the activity summaries`,
        );
      }
    }

    // The queries the docs give: by tenant, and by connector and outcome.
    const growthRuns = await listRunsInUi(`WorkflowType="refreshConnector" AND DeltasyncTenant="growth"`);
    assert.deepEqual(
      new Set(growthRuns.map((e) => e.execution.runId)),
      new Set(expected[ADS]!.runs.map((r) => r.workflow_run_id)),
    );
    const failedRuns = await listRunsInUi(`DeltasyncConnectorId="${ADS}" AND DeltasyncOutcome="failed"`);
    assert.deepEqual(
      failedRuns.map((e) => e.execution.runId),
      expected[ADS]!.runs.filter((r) => r.status === 'failed').map((r) => r.workflow_run_id),
    );
    assert.deepEqual(await listRunsInUi(`DeltasyncConnectorId="${CRM}" AND DeltasyncOutcome="failed"`), []);
  });
});

/** Polls `check` until it returns something other than false or undefined (at most 15 s). */
async function eventually<T>(check: () => Promise<T | false | undefined>, what: string): Promise<T> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const result = await check().catch(() => undefined);
    if (result !== false && result !== undefined) return result;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}
