import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { defaultPayloadConverter } from '@temporalio/common';
import { findTemporalCli } from '../src/temporal/cli-binary';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ConnectorInput } from '../src/core/connector';
import { createHttpListDestination, httpListConfigSchema } from '../src/connectors/http-list/index';
import { createDestinationContext } from '../src/connectors/kit/module';
import type { DestinationFactory } from '../src/connectors/registry';
import { saveConnector } from '../src/core/connector-store';
import { endpointCalls, listRuns } from '../src/core/runs';
import { churnCustomers, createCustomersTable, readCustomers, seedCustomers } from '../src/demo/customers';
import { startHttpListEmulator, type HttpListEmulator } from '../src/connectors/http-list/emulator';
import { refreshWorkflowId, searchAttributes } from '../src/workflows/shared';
import { NoRunningRefreshError } from '../src/client';
import { freePort } from './helpers/fake-http';
import { createTestDatabase, dialects, type TestDatabase } from './helpers/databases';
import { HISTORY_FIXTURES, historyText } from './helpers/histories';
import { startTemporal, type TemporalHarness } from './helpers/temporal';

/**
 * The refresh workflow end to end: the real Temporal dev server, a real database (both
 * dialects), the http-list destination against its emulator.
 */

const TOKEN = 'test-token';
let temporal: TemporalHarness;
let emulator: HttpListEmulator;
let listCounter = 0;
/** The Temporal run id of the cancelled refresh, whose history is replayed below. */
let cancelledRun: string | undefined;

before(async () => {
  [temporal, emulator] = await Promise.all([startTemporal(), startHttpListEmulator({ token: TOKEN })]);
});
after(async () => {
  await emulator.close();
  await temporal.stop();
});

/** The destination as the worker builds it, with short backoffs so failing tests stay fast. */
const destinations: DestinationFactory = (config, { listId }) => {
  if (config.type !== 'http-list') throw new Error('these tests use http-list only');
  const context = createDestinationContext({
    secrets: () => TOKEN,
    listId,
    retry: { baseDelayMs: 5, maxDelayMs: 20 },
  });
  return createHttpListDestination(httpListConfigSchema.parse(config), context);
};

function connectorFor(id: string, batchSize: number): ConnectorInput & { destination: { listId: string } } {
  return {
    id,
    dataset: {
      table: 'demo_customers',
      key: 'customer_key',
      attributes: ['email', 'name', 'country', 'segment'],
    },
    destination: {
      type: 'http-list',
      baseUrl: emulator.url,
      listId: `list-${listCounter++}`,
      tokenSecret: 'HTTP_LIST_TOKEN',
      recordsPerCall: batchSize,
    },
    policy: { batchSize },
  };
}

async function triggersOn(t: TestDatabase, table: string): Promise<string[]> {
  if (t.dialect === 'sqlite')
    return (
      (await t.db.raw("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?", [table])) as {
        name: string;
      }[]
    ).map((r) => r.name);
  const [rows] = (await t.db.raw(
    'SELECT TRIGGER_NAME AS name FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = ?',
    [table],
  )) as [{ name: string }[]];
  return rows.map((r) => r.name);
}

/** The list holds exactly the dataset's keys, with their attributes (all, or those named). */
async function assertListEqualsDataset(t: TestDatabase, listId: string, only?: string[]) {
  const expected = await readCustomers(t.db);
  const actual = emulator.members(listId);
  assert.equal(actual.size, expected.size, 'list size');
  for (const [key, attributes] of expected) {
    const sent = only
      ? Object.fromEntries(only.map((name) => [name, (attributes as Record<string, unknown>)[name]]))
      : attributes;
    assert.deepEqual(actual.get(key), sent, `member ${key}`);
  }
}

for (const dialect of dialects) {
  describe(`refresh workflow on ${dialect}`, () => {
    let t: TestDatabase;
    before(async () => {
      t = await createTestDatabase(dialect);
      await createCustomersTable(t.db);
      await seedCustomers(t.db, 2_500);
    });
    after(() => t.drop());

    test('first refresh, diff refresh with additions, deletions and updates, then a no-op', async () => {
      const connector = connectorFor(`crm-${dialect}`, 1000);
      await saveConnector(t.db, connector);
      const listId = connector.destination.listId;
      await temporal.withWorker({ db: t.db, destinations }, async (client) => {
        const first = await client.refresh(connector.id);
        assert.equal(first.status, 'succeeded');
        assert.equal(first.strategy, 'diff');
        assert.deepEqual([first.additions, first.updates, first.deletions], [2500, 0, 0]);
        assert.equal(first.apiCalls, 3, 'ceil(2500 / 1000) add calls');
        await assertListEqualsDataset(t, listId);

        const churn = await churnCustomers(t.db, { additions: 40, deletions: 25, changes: 30 });
        const second = await client.refresh(connector.id);
        assert.equal(second.status, 'succeeded');
        assert.deepEqual([second.additions, second.updates, second.deletions], [40, 30, 25]);
        assert.equal(second.apiCalls, 2, 'one add call for 70 upserts, one remove call for 25 deletions');
        await assertListEqualsDataset(t, listId);
        for (const key of churn.deleted)
          assert.equal(emulator.members(listId).has(key), false, `${key} removed`);

        emulator.resetStats();
        const third = await client.refresh(connector.id);
        assert.equal(third.status, 'noop');
        assert.equal(third.apiCalls, 0);
        assert.equal(emulator.stats().calls.add + emulator.stats().calls.remove, 0, 'a no-op sends nothing');

        const runs = await listRuns(t.db, `default/${connector.id}`);
        assert.deepEqual(
          runs.map((r) => r.status),
          ['noop', 'succeeded', 'succeeded'],
        );
      });
    });

    test('a batch refused for one bad record: the refresh splits it down to that record and delivers the rest', async () => {
      const connector = connectorFor(`split-${dialect}`, 1000);
      await saveConnector(t.db, connector);
      const { customer_key: bad } = (await t
        .db('demo_customers')
        .orderBy('customer_key')
        .offset(700)
        .first('customer_key')) as {
        customer_key: string;
      };
      emulator.faults.set({ refuseBatchFor: (key) => (key === bad ? `malformed record ${key}` : null) });
      try {
        await temporal.withWorker({ db: t.db, destinations }, async (client) => {
          const run = await client.refresh(connector.id);
          assert.equal(run.status, 'succeeded', 'one record refused: within the record threshold');
          const rows = Number(((await t.db('demo_customers').count({ n: '*' }).first()) as { n: number }).n);
          assert.equal(run.additions, rows, 'planned');
          assert.equal(run.recordsSent, rows - 1, 'delivered');
          assert.equal(run.rejected, 1);
          // The first batch (1,000) and its halves down to one record: 1 + 2 × 10 calls; two more batches.
          assert.equal(run.apiCalls, 23);
          const listed = emulator.members(connector.destination.listId);
          assert.equal(listed.size, rows - 1);
          assert.equal(listed.has(bad), false);
          const why = [];
          for await (const change of client.allChanges(connector.id, { key: bad })) why.push(change);
          assert.deepEqual(
            why.map((c) => c.outcome),
            ['rejected'],
          );
          assert.match(
            why[0]!.reason ?? '',
            new RegExp(`^record refused: .*400 Bad Request.*malformed record ${bad}$`),
          );
        });
      } finally {
        emulator.faults.clear('refuseBatchFor');
      }
    });

    // The binary log exists on MariaDB only (setup gives the test server one).
    for (const source of dialect === 'mysql' ? (['triggers', 'binlog'] as const) : (['triggers'] as const))
      test(`with a ${source} change source: a direct first push, one full compare, then diffs from the touched keys only`, async () => {
        const connector = connectorFor(`followed-${source}-${dialect}`, 1000);
        connector.dataset.changes = { source };
        await saveConnector(t.db, connector);
        const listId = connector.destination.listId;
        await temporal.withWorker({ db: t.db, destinations }, async (client) => {
          const first = await client.refresh(connector.id);
          assert.equal(first.compare?.mode, 'direct');
          await assertListEqualsDataset(t, listId);

          await churnCustomers(t.db, { additions: 10, deletions: 5, changes: 5 });
          const second = await client.refresh(connector.id);
          // The first push read the dataset directly; following the journal starts from a full compare.
          assert.deepEqual(second.compare, { mode: 'full', reason: 'first compare with the change source' });
          assert.deepEqual([second.additions, second.updates, second.deletions], [10, 5, 5]);

          await churnCustomers(t.db, { additions: 7, deletions: 3, changes: 4 });
          const third = await client.refresh(connector.id);
          assert.deepEqual(third.compare, {
            mode: 'incremental',
            reason: 'keys touched since the last refresh',
            touchedKeys: 14,
          });
          assert.deepEqual([third.additions, third.updates, third.deletions], [7, 4, 3]);
          assert.equal(third.datasetSize, (await readCustomers(t.db)).size);
          await assertListEqualsDataset(t, listId);

          // Deleting the last connector that follows the table removes its triggers (if any) and journal.
          await client.connectors.delete(connector.id);
          assert.deepEqual(await triggersOn(t, 'demo_customers'), []);
          assert.equal((await t.db('change_journal')).length, 0);
          assert.equal((await t.db('change_sources')).length, 0);
        });
      });

    test('connectors on one dataset refreshed at once share one compare; each list ends exact', async () => {
      const connectors = [0, 1, 2].map((i) => connectorFor(`shared-${i}-${dialect}`, 1000));
      for (const connector of connectors) {
        connector.dataset = { ...connector.dataset, attributes: ['email', 'segment'] };
        await saveConnector(t.db, connector);
      }
      await temporal.withWorker({ db: t.db, destinations }, async (client) => {
        const cycle = async () => {
          const handles = await Promise.all(connectors.map((c) => client.startRefresh(c.id)));
          return Promise.all(handles.map((h) => h.result()));
        };
        await cycle(); // first pushes, read directly
        for (const round of [1, 2]) {
          await churnCustomers(t.db, { additions: 6, deletions: 4, changes: 5 });
          const runs = await cycle();
          assert.equal(
            runs.filter((r) => r.compare?.shared?.ranCompare).length,
            1,
            `round ${round}: one compare`,
          );
          for (const run of runs) {
            assert.equal(run.compare?.shared?.connectors, 3);
            assert.deepEqual([run.additions, run.updates, run.deletions], [6, 5, 4], `round ${round}`);
          }
          for (const connector of connectors)
            await assertListEqualsDataset(t, connector.destination.listId, ['email', 'segment']);
        }
      });
    });
  });
}

describe('refresh workflow: failures, concurrency, determinism (mysql)', () => {
  let t: TestDatabase;
  before(async () => {
    t = await createTestDatabase('mysql');
    await createCustomersTable(t.db);
    await seedCustomers(t.db, 5_000);
  });
  after(() => t.drop());

  test('a refresh that fails mid-send resumes and re-sends at most the batch in flight', async () => {
    const connector = connectorFor('resume', 500);
    await saveConnector(t.db, connector);
    const listId = connector.destination.listId;
    emulator.resetStats();
    // Five calls succeed, then the service is down until we clear the fault: the send activity
    // exhausts its HTTP retries, fails, and Temporal retries it. (Delivered-but-unacknowledged
    // batches are covered by the engine's property test.)
    emulator.faults.set({ failAfter: { successfulCalls: 5, status: 503 } });
    await temporal.withWorker({ db: t.db, destinations }, async (client) => {
      const handle = await client.startRefresh(connector.id);
      const wf = client.temporal.workflow.getHandle(handle.workflowId, handle.runId);
      await waitFor(async () => {
        const pending = (await wf.describe()).raw.pendingActivities ?? [];
        return pending.some((a) => a.activityType?.name === 'sendChanges' && (a.attempt ?? 0) >= 2);
      }, 'the send activity to fail and be retried');
      const progress = await handle.progress();
      assert.equal(progress.phase, 'upserts');
      assert.equal(progress.sending?.recordsDone, 2500, 'five batches committed before the outage');
      emulator.faults.clear();
      const summary = await handle.result();
      assert.equal(summary.status, 'succeeded');
      // Every call the receiver saw is on the run: those of the failed attempts, 5xx retried
      // inside a call, and the calls that went through. The outage made no call fail for good.
      const received = emulator.stats().calls.add;
      assert.equal(summary.apiCalls, received, `the receiver counted ${received} calls`);
      const add = summary.callsByEndpoint.add!;
      assert.equal(add.calls, received);
      assert.ok(add.retried >= 2, `retried ${add.retried}: every 503 was tried again`);
      assert.equal(add.failed, 0);
      assert.equal(add.calls - add.retried, 10, 'ten calls of 500 went through');
    });
    await assertListEqualsDataset(t, listId);
    const applied = emulator.stats().recordsApplied.add;
    assert.ok(
      applied >= 5000 && applied <= 5000 + 500,
      `records applied ${applied}: at most one batch twice`,
    );
  });

  test('two concurrent starts for one connector run one refresh', async () => {
    const connector = connectorFor('concurrent', 500);
    await saveConnector(t.db, connector);
    emulator.faults.set({ latencyMs: 50 });
    try {
      await temporal.withWorker({ db: t.db, destinations }, async (client) => {
        const [a, b] = await Promise.all([
          client.startRefresh(connector.id),
          client.startRefresh(connector.id),
        ]);
        assert.equal(a.runId, b.runId, 'both callers hold the same workflow run');
        const c = await client.startRefresh(connector.id);
        assert.equal(c.attached, true, 'a start while running attaches');
        assert.equal(c.runId, a.runId);
        const [ra, rb] = await Promise.all([a.result(), b.result()]);
        assert.deepEqual(ra, rb);
      });
    } finally {
      emulator.faults.clear();
    }
    const runs = await listRuns(t.db, `default/${connector.id}`);
    assert.equal(runs.length, 1, 'one run recorded');
    assert.equal(emulator.members(connector.destination.listId).size, 5000);
  });

  test('a cancelled refresh closes once its send stopped; what it delivered is committed, the next sends the rest', async () => {
    const connector = connectorFor('cancel', 500);
    await saveConnector(t.db, connector);
    const listId = connector.destination.listId;
    emulator.resetStats();
    emulator.faults.set({ latencyMs: 300 });
    try {
      await temporal.withWorker({ db: t.db, destinations }, async (client) => {
        const handle = await client.startRefresh(connector.id);
        await waitFor(
          async () => ((await handle.progress()).sending?.recordsDone ?? 0) >= 1000,
          'two batches delivered',
        );
        const cancelled = await client.cancel(connector.id);
        assert.equal(cancelled.runId, handle.runId);
        cancelledRun = cancelled.runId;
        const run = await cancelled.stopped();
        // The run closed only after its send stopped: nothing reaches the destination afterwards.
        const callsAtClose = emulator.stats().calls.add;
        const delivered = emulator.members(listId).size;
        await sleep(1_500);
        assert.equal(emulator.stats().calls.add, callsAtClose, 'no call after the run closed');
        assert.ok(delivered >= 1000 && delivered < 5000, `stopped mid-send (${delivered} of 5,000)`);

        assert.ok(run, 'the cancelled run is recorded');
        assert.equal(run.status, 'failed');
        assert.match(run.error ?? '', /cancel/i);
        assert.equal(run.recordsSent, delivered, 'the run counts every batch the destination applied');
        const wf = client.temporal.workflow.getHandle(handle.workflowId, handle.runId);
        const description = await wf.describe();
        assert.equal(description.status.name, 'CANCELLED');
        assert.deepEqual(description.typedSearchAttributes.get(searchAttributes.outcome), 'cancelled');
        await assert.rejects(client.cancel(connector.id), NoRunningRefreshError);

        emulator.faults.clear();
        const next = await client.refresh(connector.id);
        assert.equal(next.status, 'succeeded');
        assert.equal(next.additions, 5000 - delivered, 'the next refresh sends only what was left');
      });
    } finally {
      emulator.faults.clear();
    }
    await assertListEqualsDataset(t, listId);
    assert.equal(emulator.stats().recordsApplied.add, 5000, 'no record sent twice');
  });

  test('forced strategies through the workflow: full push + deletes, then truncate + reload', async () => {
    const connector = connectorFor('strategies', 1000);
    await saveConnector(t.db, connector);
    const listId = connector.destination.listId;
    await temporal.withWorker({ db: t.db, destinations }, async (client) => {
      await client.refresh(connector.id);
      await churnCustomers(t.db, { additions: 20, deletions: 10, changes: 5 });
      // Something else wrote to the list: a full push re-sends everything but cannot remove it.
      emulator.setMembers(listId, new Map([...emulator.members(listId), ['stray-key', { email: 'x' }]]));
      emulator.resetStats();
      const full = await client.refresh(connector.id, { strategy: 'full' });
      assert.equal(full.strategy, 'full');
      assert.equal(emulator.stats().recordsApplied.add, 5010, 'the whole dataset re-sent');
      assert.equal(emulator.stats().recordsApplied.remove, 10, 'then the pending deletions');
      assert.equal(emulator.members(listId).has('stray-key'), true);

      await churnCustomers(t.db, { additions: 5, deletions: 5, changes: 0 });
      const truncate = await client.refresh(connector.id, { strategy: 'truncate' });
      assert.equal(truncate.strategy, 'truncate');
      assert.equal(truncate.apiCalls, 1 + Math.ceil(5010 / 1000), 'one truncate, then the reload');
      await assertListEqualsDataset(t, listId);
      const handle = client.temporal.workflow.getHandle(refreshWorkflowId('default', connector.id));
      const { searchAttributes: attrs } = await handle.describe();
      assert.deepEqual(attrs.DeltasyncStrategy, ['truncate']);
      assert.deepEqual(attrs.DeltasyncConnectorId, [connector.id]);
      assert.deepEqual(attrs.DeltasyncDestination, ['http-list']);
      assert.deepEqual(attrs.DeltasyncOutcome, ['succeeded']);
      const summaries = ((await handle.fetchHistory()).events ?? [])
        .map((event) => event.userMetadata?.summary)
        .filter((payload) => payload !== undefined && payload !== null)
        .map((payload) => defaultPayloadConverter.fromPayload<string>(payload!));
      assert.ok(
        summaries.includes('truncate the remote list'),
        `activity summaries for the UI: ${summaries}`,
      );
      assert.ok(summaries.some((text) => /^send 5,010 additions and updates in ~6 calls$/.test(text)));
    });
  });

  test('the progress query reports phase, plan and live send counters', async () => {
    const connector = connectorFor('progress', 250);
    await saveConnector(t.db, connector);
    emulator.faults.set({ latencyMs: 40 });
    try {
      await temporal.withWorker({ db: t.db, destinations }, async (client) => {
        const handle = await client.startRefresh(connector.id);
        let seen: Awaited<ReturnType<typeof handle.progress>> | undefined;
        await waitFor(async () => {
          seen = await handle.progress();
          return (seen.sending?.recordsDone ?? 0) > 0;
        }, 'a send heartbeat');
        assert.equal(seen!.phase, 'upserts');
        assert.equal(seen!.status, 'RUNNING');
        assert.equal(seen!.plan?.additions, 5010);
        assert.equal(seen!.plan?.strategy, 'diff');
        assert.equal(seen!.sending!.recordsDone % 250, 0, 'counts whole committed batches');
        // What a heartbeat holds can reach workflow history and any caller of progress: counts only.
        assert.doesNotMatch(JSON.stringify(seen), /cust-\d{7}/, 'no record key in the progress');
        await handle.result();
        const final = await handle.progress();
        assert.equal(final.phase, 'done');
        assert.equal(final.completedPhases[0]?.delivered, 5010);
      });
    } finally {
      emulator.faults.clear();
    }
  });

  test('bad rows are counted and sampled on the run, and the rest is delivered', async () => {
    await t.db.schema.createTable('messy_customers', (table) => {
      table.string('customer_key', 300).nullable();
      table.string('email', 100);
    });
    await t.db('messy_customers').insert([
      { customer_key: 'ok-1', email: 'a@x' },
      { customer_key: 'ok-2', email: 'b@x' },
      { customer_key: 'dup', email: 'c@x' },
      { customer_key: 'dup', email: 'd@x' },
      { customer_key: null, email: 'no-key@x' },
      { customer_key: '', email: 'empty-key@x' },
      { customer_key: 'k'.repeat(256), email: 'long@x' },
    ]);
    const connector = {
      ...connectorFor('messy', 100),
      dataset: { table: 'messy_customers', key: 'customer_key', attributes: ['email'] },
    };
    await saveConnector(t.db, connector);
    await temporal.withWorker({ db: t.db, destinations }, async (client) => {
      const summary = await client.refresh(connector.id);
      assert.equal(summary.status, 'succeeded');
      assert.equal(summary.badRows, 4, 'null key, empty key, oversized key, one duplicated key');
    });
    const [run] = await listRuns(t.db, `default/${connector.id}`);
    const report = JSON.parse(run!.bad_rows!);
    assert.equal(report.duplicateKeys, 1);
    assert.deepEqual(report.samples.duplicateKey, ['dup']);
    assert.equal(report.nullOrEmptyKeys, 2);
    assert.equal(report.oversizedKeys, 1);
    assert.deepEqual([...emulator.members(connector.destination.listId).keys()].sort(), [
      'dup',
      'ok-1',
      'ok-2',
    ]);
  });

  test('outcomes: every record rejected fails the run; a reconcile says what quarantine keeps off the list', async () => {
    await temporal.withWorker({ db: t.db, destinations }, async (client) => {
      const refused = connectorFor('all-refused', 250);
      await saveConnector(t.db, refused);
      emulator.faults.set({ reject: () => 'invalid e-mail' });
      try {
        const run = await client.refresh(refused.id).catch((error: unknown) => error);
        assert.ok(run instanceof Error, 'the run failed');
        const [record] = await listRuns(t.db, `default/${refused.id}`);
        assert.equal(record!.status, 'failed');
        assert.equal(record!.failed_calls, 0, 'every call worked');
        assert.match(record!.error ?? '', /^(\d+) of \1 records were rejected \(threshold 95% delivered\)$/);
      } finally {
        emulator.faults.clear('reject');
      }

      // One key refused every time, quarantined after one attempt; the rest goes out.
      const stubborn = { ...connectorFor('stubborn', 500), policy: { batchSize: 500, maxAttempts: 1 } };
      await saveConnector(t.db, stubborn);
      emulator.faults.set({ reject: (key) => (key === 'cust-0000007' ? 'invalid e-mail' : null) });
      try {
        const first = await client.refresh(stubborn.id);
        assert.equal(first.status, 'succeeded', 'one record in 5,010 is within the threshold');
        assert.equal(first.rejected, 1);
        const reconciled = await client.reconcile(stubborn.id);
        assert.deepEqual(reconciled.drift, { extra: 0, missing: 0, quarantined: 1 });
        assert.equal(reconciled.quarantined, 1);
        assert.equal(emulator.members(stubborn.destination.listId).has('cust-0000007'), false);
      } finally {
        emulator.faults.clear('reject');
      }
    });
  });

  test('a destination that keeps refusing connections fails the run after its budget, saying why', async () => {
    const port = await freePort();
    const unreachable = {
      ...connectorFor('refusing', 500),
      destination: { ...connectorFor('refusing', 500).destination, baseUrl: `http://127.0.0.1:${port}` },
      policy: { batchSize: 500, failureBudgetSeconds: 4 },
    };
    await saveConnector(t.db, unreachable);
    await temporal.withWorker({ db: t.db, destinations }, async (client) => {
      const started = Date.now();
      const run = await client.startRefresh(unreachable.id);
      // While it retries, progress says what the last attempt met.
      let retrying: Awaited<ReturnType<typeof run.progress>>['retrying'] = null;
      await waitFor(async () => (retrying = (await run.progress()).retrying) !== null, 'a retried send');
      assert.equal(retrying!.activity, 'sendChanges');
      assert.match(retrying!.lastFailure, /ECONNREFUSED/);
      const error: Error = await run.result().then(
        () => assert.fail('the run should fail'),
        (failure: unknown) => failure as Error,
      );
      assert.ok(
        Date.now() - started < 60_000,
        `failed after ${Date.now() - started} ms, not retried forever`,
      );
      assert.match(
        String((error.cause as Error | undefined)?.cause ?? error.cause),
        /nothing was delivered for \d+ s over \d+ attempts \(failureBudgetSeconds 4\); last error: .*ECONNREFUSED/,
      );
      const [record] = await listRuns(t.db, `default/${unreachable.id}`);
      assert.equal(record!.status, 'failed');
      assert.match(record!.error ?? '', /ECONNREFUSED/, 'the cause is kept on the run');
    });

    // Every step that calls the destination keeps the budget, not only the send, and the run
    // counts the calls its failed attempts made.
    const truncating = { ...unreachable, id: 'refusing-truncate' };
    await saveConnector(t.db, truncating);
    await temporal.withWorker({ db: t.db, destinations }, async (client) => {
      const run = await client.startRefresh(truncating.id, { strategy: 'truncate' });
      const error: Error = await run.result().then(
        () => assert.fail('the run should fail'),
        (failure: unknown) => failure as Error,
      );
      assert.match(
        String((error.cause as Error | undefined)?.cause ?? error.cause),
        /truncate: nothing was delivered for \d+ s over \d+ attempts \(failureBudgetSeconds 4\)/,
      );
      const [record] = await listRuns(t.db, `default/${truncating.id}`);
      const calls = await endpointCalls(t.db, record!.id);
      assert.ok(calls.truncate!.calls >= 2, `${calls.truncate!.calls} truncate calls counted`);
      assert.equal(calls.truncate!.retried, calls.truncate!.calls, 'each refused connection was retried');
      assert.equal(record!.api_calls, calls.truncate!.calls);
    });

    // Cancelled while it retries: the run still says what the send met.
    const cancelled = { ...unreachable, id: 'refusing-cancelled', policy: { batchSize: 500 } };
    await saveConnector(t.db, cancelled);
    await temporal.withWorker({ db: t.db, destinations }, async (client) => {
      const run = await client.startRefresh(cancelled.id);
      await waitFor(async () => (await run.progress()).retrying !== null, 'a retried send');
      const stopped = await (await client.cancel(cancelled.id)).stopped();
      assert.equal(stopped?.status, 'failed');
      assert.match(stopped?.error ?? '', /cancel.*last error while retrying: .*ECONNREFUSED/is);
    });
  });

  test('histories of this file replay deterministically, and carry no record data', async () => {
    const ids = ['resume', 'concurrent', 'cancel', 'strategies', 'progress', 'messy'].map((id) =>
      refreshWorkflowId('default', id),
    );
    // The cancelled run, not the refresh that followed it.
    const runIdOf = (workflowId: string) =>
      workflowId === refreshWorkflowId('default', 'cancel') ? cancelledRun : undefined;
    const histories = await Promise.all(
      ids.map(async (workflowId) => ({
        workflowId,
        history: await temporal.server.env.client.workflow
          .getHandle(workflowId, runIdOf(workflowId))
          .fetchHistory(),
      })),
    );
    const { Worker } = await import('@temporalio/worker');
    for await (const result of Worker.runReplayHistories({ workflowBundle: temporal.bundle }, histories)) {
      assert.equal(result.error, undefined, `${result.workflowId} replays`);
    }
    const record = process.env.DELTASYNC_RECORD_HISTORIES; // 1: all of them; or names: cancel,messy
    const toSave =
      record === '1' ? ids : (record?.split(',').map((id) => refreshWorkflowId('default', id)) ?? []);
    saveHistoryFixtures(toSave.map((workflowId) => ({ workflowId, runId: runIdOf(workflowId) })));
    for (const { workflowId, history } of histories) {
      const text = historyText(history);
      // The decoded payloads are there to search: counts and the connector id, but no records.
      assert.ok(text.includes('"connectorId":"'), `${workflowId}: payloads are decoded`);
      assert.ok(!text.includes('@example.com'), `${workflowId}: no record attributes in history`);
      assert.doesNotMatch(text, /cust-\d{7}/, `${workflowId}: no record keys in history`);
      assert.ok(!text.includes(TOKEN), `${workflowId}: no secrets in history`);
    }
  });
});

/**
 * Refresh the committed fixtures that test/replay.test.ts replays against the current workflow
 * code, exported by the Temporal CLI in the standard JSON history format.
 */
function saveHistoryFixtures(runs: { workflowId: string; runId?: string }[]) {
  fs.mkdirSync(HISTORY_FIXTURES, { recursive: true });
  for (const { workflowId, runId } of runs) {
    const json = execFileSync(findTemporalCli()!, [
      ...['workflow', 'show', '--workflow-id', workflowId, '--output', 'json'],
      ...(runId ? ['--run-id', runId] : []),
      ...['--address', temporal.server.address],
    ]);
    fs.writeFileSync(path.join(HISTORY_FIXTURES, `${workflowId}.json`), json);
  }
}

async function waitFor(condition: () => Promise<boolean>, what: string, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition()) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}
