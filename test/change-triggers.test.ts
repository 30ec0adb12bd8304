import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from '@temporalio/worker';
import { DeltasyncClient, type ConnectorInput } from '../src/client';
import { validateConnector } from '../src/connectors/catalog';
import { InvalidConnectorError } from '../src/core/connector';
import { createHttpListDestination, httpListConfigSchema } from '../src/connectors/http-list/index';
import { createDestinationContext } from '../src/connectors/kit/module';
import type { DestinationFactory } from '../src/connectors/registry';
import { UnknownConnectorError } from '../src/core/connector-store';
import { changeMarker } from '../src/core/change-marker';
import type { DatasetDefinition } from '../src/core/dataset';
import { createCustomersTable, seedCustomers } from '../src/demo/customers';
import { startHttpListEmulator, type HttpListEmulator } from '../src/connectors/http-list/emulator';
import { watchWorkflowId, type watchConnector } from '../src/workflows/watch';
import { createTestDatabase, dialects, type TestDatabase } from './helpers/databases';
import { trustedTenants } from './helpers/secrets';
import { startTemporal, type TemporalHarness } from './helpers/temporal';

/**
 * Change-triggered refreshes: the change marker on both dialects, and the per-connector watcher
 * on the real Temporal dev server and MariaDB (polling, signals, debounce, attach, stop).
 */

test('policy: changeTrigger is optional; its defaults and limits', () => {
  const base = {
    id: 'policy-check',
    dataset: { table: 'customers', key: 'email', attributes: [] },
    destination: { type: 'http-list', baseUrl: 'http://127.0.0.1:1', listId: 'l', tokenSecret: 'T' },
  };
  assert.equal(validateConnector(base).policy.changeTrigger, undefined, 'no trigger unless asked for');
  assert.deepEqual(validateConnector({ ...base, policy: { changeTrigger: {} } }).policy.changeTrigger, {
    pollSeconds: 60,
    debounceSeconds: 30,
  });
  assert.throws(
    () =>
      validateConnector({
        ...base,
        policy: { changeTrigger: { pollSeconds: 0.5, markerColumn: 'x; drop' } },
      }),
    (error: unknown) => {
      assert.ok(error instanceof InvalidConnectorError, 'an InvalidConnectorError');
      assert.match(error.message, /policy\.changeTrigger\.pollSeconds/);
      assert.match(error.message, /policy\.changeTrigger\.markerColumn/);
      return true;
    },
  );
});

describe('the change marker', () => {
  for (const dialect of dialects) {
    describe(dialect, () => {
      let t: TestDatabase;
      before(async () => {
        t = await createTestDatabase(dialect);
        for (const table of ['items', 'items_reversed']) {
          await t.db.schema.createTable(table, (c) => {
            c.string('id', 64).primary();
            c.string('name', 64).nullable();
            c.integer('score').nullable();
            c.bigInteger('updated_at').notNullable();
          });
        }
        const rows = Array.from({ length: 50 }, (_, i) => ({
          id: `k${String(i).padStart(3, '0')}`,
          name: i % 7 === 0 ? null : `name ${i}`,
          score: i,
          updated_at: 1000 + i,
        }));
        await t.db('items').insert(rows);
        for (const row of [...rows].reverse()) await t.db('items_reversed').insert(row);
      });
      after(() => t.drop());

      const dataset: DatasetDefinition = { table: 'items', key: 'id', attributes: ['name', 'score'] };
      const marker = () => changeMarker(t.db, dataset);

      test('checksum: stable and order-independent; sees insert, delete, attribute and key changes', async () => {
        const initial = await marker();
        assert.match(initial, /^50:[0-9a-f]{16}$/);
        assert.equal(await marker(), initial, 'nothing changed: the same marker');
        assert.equal(
          await changeMarker(t.db, { ...dataset, table: 'items_reversed' }),
          initial,
          'the same rows inserted in another order: the same marker',
        );
        assert.equal(
          await changeMarker(t.db, {
            sql: 'SELECT id, name, score FROM items',
            key: 'id',
            attributes: ['name', 'score'],
          }),
          initial,
          'a SELECT dataset works the same way',
        );

        await t.db('items').insert({ id: 'k999', name: 'new', score: 1, updated_at: 5000 });
        const inserted = await marker();
        assert.notEqual(inserted, initial, 'insert');
        assert.match(inserted, /^51:/);
        await t.db('items').where({ id: 'k999' }).delete();
        assert.equal(await marker(), initial, 'back to the same contents: back to the same marker');

        await t.db('items').where({ id: 'k010' }).delete();
        assert.notEqual(await marker(), initial, 'delete');
        await t.db('items').insert({ id: 'k010', name: 'name 10', score: 10, updated_at: 1010 });
        assert.equal(await marker(), initial);

        await t.db('items').where({ id: 'k003' }).update({ score: 4 });
        const changed = await marker();
        assert.notEqual(changed, initial, 'attribute change');
        assert.match(changed, /^50:/, 'same count, different checksum');
        await t.db('items').where({ id: 'k003' }).update({ score: 3 });
        assert.equal(await marker(), initial);

        await t.db('items').where({ id: 'k003' }).update({ id: 'k003b' });
        assert.notEqual(await marker(), initial, 'key change');
        await t.db('items').where({ id: 'k003b' }).update({ id: 'k003' });
        assert.equal(await marker(), initial);

        // Two rows swap their values: per-row CRC32 alone is linear and could miss this.
        await t.db('items').where({ id: 'k001' }).update({ name: 'name 2', score: 2 });
        await t.db('items').where({ id: 'k002' }).update({ name: 'name 1', score: 1 });
        assert.notEqual(await marker(), initial, 'attributes swapped between two keys');
        await t.db('items').where({ id: 'k001' }).update({ name: 'name 1', score: 1 });
        await t.db('items').where({ id: 'k002' }).update({ name: 'name 2', score: 2 });

        await t.db('items').where({ id: 'k000' }).update({ name: 'NULL' }); // was NULL
        assert.notEqual(await marker(), initial, "NULL and 'NULL' differ");
        await t.db('items').where({ id: 'k000' }).update({ name: null });
        assert.equal(await marker(), initial);

        await t.db('items').where({ id: 'k004' }).update({ updated_at: 9999 });
        assert.equal(await marker(), initial, 'a column outside the dataset does not count');
        await t.db('items').where({ id: 'k004' }).update({ updated_at: 1004 });
      });

      test('marker column: COUNT(*) + MAX(column)', async () => {
        const byColumn = () => changeMarker(t.db, dataset, 'updated_at');
        const initial = await byColumn();
        assert.match(initial, /^50:[0-9a-f]{16}$/);
        assert.equal(await byColumn(), initial);
        assert.notEqual(initial, await marker(), 'a different kind of marker');

        await t.db('items').insert({ id: 'k900', name: 'x', score: 0, updated_at: 6000 });
        const inserted = await byColumn();
        assert.notEqual(inserted, initial, 'insert');
        await t.db('items').where({ id: 'k005' }).update({ score: 55, updated_at: 7000 });
        const updated = await byColumn();
        assert.notEqual(updated, inserted, 'update that bumps the column');
        await t.db('items').where({ id: 'k006' }).delete();
        const deleted = await byColumn();
        assert.notEqual(deleted, updated, 'delete');
        assert.match(deleted, /^50:/);
        assert.equal(await byColumn(), deleted, 'nothing changed');
      });
    });
  }
});

const TOKEN = 'watch-token';
let temporal: TemporalHarness;
let emulator: HttpListEmulator;
let t: TestDatabase;
const destinations: DestinationFactory = (config, { listId }) => {
  if (config.type !== 'http-list') throw new Error('http-list only');
  const context = createDestinationContext({
    secrets: () => TOKEN,
    listId,
    retry: { baseDelayMs: 5, maxDelayMs: 20 },
  });
  return createHttpListDestination(httpListConfigSchema.parse(config), context);
};

describe('the watcher', () => {
  before(async () => {
    [temporal, emulator, t] = await Promise.all([
      startTemporal(),
      startHttpListEmulator({ token: TOKEN }),
      createTestDatabase('mysql'),
    ]);
  });
  after(async () => {
    await emulator.close();
    await t.drop();
    await temporal.stop();
  });

  /** A connector over its own table of `rows` customers, refreshed once (trigger `manual`). */
  async function connector(
    client: DeltasyncClient,
    id: string,
    rows = 10,
    policy: ConnectorInput['policy'] = {},
    changes?: NonNullable<ConnectorInput['dataset']['changes']>,
  ) {
    const table = `watched_${id.replace(/-/g, '_')}`;
    await createCustomersTable(t.db, table);
    await seedCustomers(t.db, rows, { table });
    await client.connectors.create({
      id,
      dataset: {
        table,
        key: 'customer_key',
        attributes: ['email', 'segment'],
        ...(changes ? { changes } : {}),
      },
      destination: {
        type: 'http-list',
        baseUrl: emulator.url,
        listId: `${id}-list`,
        tokenSecret: 'HTTP_LIST_TOKEN',
        supports: ['add', 'remove', 'truncate', 'list'],
      },
      policy,
    });
    assert.equal((await client.refresh(id)).status, 'succeeded');
    return table;
  }

  interface RunRow {
    id: number;
    trigger: string;
    status: string;
    started_at: number;
    finished_at: number | null;
    workflow_run_id: string;
  }
  const runsOf = async (id: string) =>
    (await t
      .db('refresh_runs')
      .where({ connector_id: `default/${id}` })
      .orderBy('id')) as RunRow[];
  const changeRuns = async (id: string) => (await runsOf(id)).filter((run) => run.trigger === 'change');

  test('a poll sees an insert and starts exactly one refresh, recorded as `change`', async () => {
    await temporal.withWorker(
      { db: t.db, destinations, tenants: trustedTenants('default', 'other') },
      async (base) => {
        const client = new DeltasyncClient(base.temporal, { taskQueue: base.taskQueue });
        const id = 'watch-insert';
        const table = await connector(client, id, 10, {
          changeTrigger: { pollSeconds: 1, debounceSeconds: 1 },
        });

        const watched = await client.watch(id);
        assert.equal(watched.workflowId, watchWorkflowId('default', id));
        assert.equal(watched.alreadyWatching, false);
        const again = await client.watch(id, { pollSeconds: 99 });
        assert.equal(again.alreadyWatching, true, 'a second watch leaves the running watcher');
        assert.equal(again.runId, watched.runId);
        await waitFor(async () => (await client.watchStatus(id))?.marker !== null, 'the baseline marker');
        const baseline = (await client.watchStatus(id))!;
        assert.equal(baseline.pollSeconds, 1, 'settings from the policy, not the second call');
        assert.equal(baseline.debounceSeconds, 1);
        assert.match(baseline.marker!, /^10:/);
        assert.equal(baseline.pending, false);

        await sleep(1500); // polls that find nothing changed start nothing
        assert.deepEqual(await changeRuns(id), []);

        await seedCustomers(t.db, 3, { table, first: 100 });
        await waitFor(
          async () => (await changeRuns(id)).some((run) => run.status !== 'running'),
          'a change run',
        );
        await sleep(2000); // several more polls and debounce windows
        const runs = await changeRuns(id);
        assert.equal(runs.length, 1, 'exactly one change-triggered refresh');
        assert.equal(runs[0]!.status, 'succeeded');
        assert.equal(emulator.members(`${id}-list`).size, 13);
        const status = (await client.watchStatus(id))!;
        assert.equal(status.triggers, 1);
        assert.equal(status.pending, false);
        assert.equal(status.lastTrigger?.attached, false);
        assert.equal(status.lastTrigger?.runId, runs[0]!.workflow_run_id);
        assert.match(status.marker!, /^13:/);
        assert.equal(status.running, true);

        // Another tenant's client sees no such connector.
        const other = new DeltasyncClient(base.temporal, { taskQueue: base.taskQueue, tenant: 'other' });
        await assert.rejects(other.watch(id), UnknownConnectorError);
        await assert.rejects(other.notifyChange(id), UnknownConnectorError);
        await assert.rejects(other.watchStatus(id), UnknownConnectorError);
        await assert.rejects(other.unwatch(id), UnknownConnectorError);
        assert.equal((await client.watchStatus(id))!.signals, 0);

        assert.equal(await client.unwatch(id), true);
      },
    );
  });

  test('live mode: watching a dataset with a trigger change source polls its journal, not the dataset', async () => {
    await temporal.withWorker({ db: t.db, destinations }, async (base) => {
      const client = new DeltasyncClient(base.temporal, { taskQueue: base.taskQueue });
      const id = 'watch-live';
      const table = await connector(
        client,
        id,
        10,
        { changeTrigger: { pollSeconds: 1, debounceSeconds: 0 } },
        {
          source: 'triggers',
        },
      );
      await client.watch(id);
      await waitFor(async () => (await client.watchStatus(id))?.marker !== null, 'the baseline marker');
      // The first refresh read the dataset directly: the watcher's first check installed the triggers.
      assert.equal((await client.watchStatus(id))!.marker, 'sources|journal:none');

      const statements: string[] = [];
      const listener = (query: { sql: string }) => statements.push(query.sql);
      t.db.on('query', listener);
      await sleep(2500); // polls that find nothing start nothing, and never read the dataset
      t.db.off('query', listener);
      assert.deepEqual(await changeRuns(id), []);
      assert.ok(
        statements.some((sql) => sql.includes('change_journal')),
        'the journal was polled',
      );
      assert.ok(!statements.some((sql) => sql.includes(table)), 'the dataset was not read');

      await seedCustomers(t.db, 2, { table, first: 100 });
      await t
        .db(table)
        .where({ customer_key: (await t.db(table).first()).customer_key })
        .delete();
      await waitFor(
        async () => (await changeRuns(id)).some((run) => run.status !== 'running'),
        'a change run',
      );
      await sleep(3000); // the refresh claimed the journal: the marker stays, nothing more starts
      const runs = await changeRuns(id);
      assert.equal(runs.length, 1, 'exactly one refresh per burst of changes');
      const [summary] = await client.runs(id, { limit: 1 });
      assert.deepEqual(summary?.compare, {
        mode: 'full',
        reason: 'first compare with the change source',
      });
      assert.equal(emulator.members(`${id}-list`).size, 11);

      await t
        .db(table)
        .where({ customer_key: (await t.db(table).first()).customer_key })
        .update({ segment: 'live' });
      await waitFor(
        async () => (await changeRuns(id)).filter((run) => run.status !== 'running').length === 2,
        'a second change run',
      );
      const [second] = await client.runs(id, { limit: 1 });
      assert.deepEqual(second?.compare, {
        mode: 'incremental',
        reason: 'keys touched since the last refresh',
        touchedKeys: 1,
      });
      assert.equal(await client.unwatch(id), true);
    });
  });

  test('a burst of five signals within the debounce window starts one refresh', async () => {
    await temporal.withWorker({ db: t.db, destinations }, async (base) => {
      const client = new DeltasyncClient(base.temporal, { taskQueue: base.taskQueue });
      const id = 'watch-burst';
      // Polls are rare here: only the signals can trigger.
      await connector(client, id, 10, { changeTrigger: { pollSeconds: 600, debounceSeconds: 2 } });
      assert.equal(await client.watchStatus(id), null, 'not watched yet');

      let lastSentAt = 0;
      for (let i = 1; i <= 5; i++) {
        lastSentAt = Date.now();
        await client.notifyChange(id, `batch ${i}`); // the first one starts the watcher
        await sleep(200);
      }
      const status = (await client.watchStatus(id))!;
      assert.equal(status.signals, 5);
      assert.equal(status.pending, true);
      assert.equal(status.lastNote, 'batch 5');
      assert.equal(status.debounceSeconds, 2, "a watcher started by a signal takes the connector's policy");

      await waitFor(
        async () => (await changeRuns(id)).some((run) => run.status !== 'running'),
        'a change run',
      );
      await sleep(2000);
      const runs = await changeRuns(id);
      assert.equal(runs.length, 1, 'one refresh for the burst');
      assert.ok(
        runs[0]!.started_at >= lastSentAt + 1900,
        `the refresh waited for the debounce after the last signal (${runs[0]!.started_at - lastSentAt} ms)`,
      );
      const after = (await client.watchStatus(id))!;
      assert.equal(after.triggers, 1);
      assert.equal(after.pending, false);
      assert.equal(await client.unwatch(id), true);
    });
  });

  test('a change while a refresh runs attaches to it, then follows up once it has ended', async () => {
    await temporal.withWorker({ db: t.db, destinations }, async (base) => {
      const client = new DeltasyncClient(base.temporal, { taskQueue: base.taskQueue });
      const id = 'watch-attach';
      const table = await connector(client, id, 10);
      // Half the list leaves: the refresh waits at the mass-delete guard, i.e. it keeps running.
      await t.db(table).where('customer_key', '<=', 'cust-0000005').delete();
      const manual = await client.startRefresh(id);
      await waitFor(async () => (await manual.progress()).phase === 'awaiting approval', 'the guard');

      await client.watch(id, { pollSeconds: 1, debounceSeconds: 1 });
      await client.notifyChange(id, 'import during the refresh');
      await waitFor(async () => (await client.watchStatus(id))?.lastTrigger?.attached === true, 'an attach');
      const attached = (await client.watchStatus(id))!;
      assert.equal(attached.lastTrigger!.runId, manual.runId, 'it joined the running refresh');
      assert.equal(attached.pending, true, 'the change stays pending: the running refresh may predate it');
      await sleep(2000); // further attempts attach again
      let runs = await runsOf(id);
      assert.equal(runs.filter((run) => run.status === 'running').length, 1, 'never two refreshes at once');
      assert.deepEqual(await changeRuns(id), [], 'no refresh of its own while one runs');
      assert.ok((await client.watchStatus(id))!.triggers >= 2, 'it kept attaching');

      await client.approve(id, { by: 'test' });
      const first = await manual.result();
      assert.equal(first.deletions, 5);
      await waitFor(
        async () => (await changeRuns(id)).some((run) => run.status !== 'running'),
        'the follow-up',
      );
      await sleep(1500);
      runs = await runsOf(id);
      const followUps = runs.filter((run) => run.trigger === 'change');
      assert.equal(followUps.length, 1, 'exactly one follow-up refresh');
      const manualRow = runs.find((run) => run.workflow_run_id === manual.runId)!;
      assert.ok(
        followUps[0]!.started_at >= manualRow.finished_at!,
        'the follow-up started after the first ended',
      );
      const status = (await client.watchStatus(id))!;
      assert.equal(status.pending, false);
      assert.equal(status.lastTrigger!.attached, false);
      assert.equal(await client.unwatch(id), true);
      const text = await replayWatcher(client, id);
      assert.ok(text.includes('datasetChanged') && text.includes('startRefresh'), 'a signal and starts');
      assert.ok(text.includes('import during the refresh'), 'the note (a label) travels in the signal');
    });
  });

  test('continue-as-new keeps the state; unwatch stops it; a deleted connector ends its watcher', async () => {
    await temporal.withWorker({ db: t.db, destinations }, async (base) => {
      const client = new DeltasyncClient(base.temporal, { taskQueue: base.taskQueue });
      const id = 'watch-stop';
      const table = await connector(client, id, 10);
      // Three loop turns per run: the watcher continues as new every second or two.
      const handle = await client.temporal.workflow.start<typeof watchConnector>('watchConnector', {
        workflowId: watchWorkflowId('default', id),
        taskQueue: base.taskQueue,
        args: [
          { connectorId: id, tenant: 'default', pollSeconds: 1, debounceSeconds: 1, iterationsPerRun: 3 },
        ],
      });
      await waitFor(
        async () => ((await client.watchStatus(id))?.generation ?? 0) >= 2,
        'two continue-as-new',
      );
      const continued = (await client.watchStatus(id))!;
      assert.match(continued.marker!, /^10:/);
      assert.notEqual((await handle.describe()).runId, handle.firstExecutionRunId);
      assert.deepEqual(await changeRuns(id), [], 'the marker survived: no spurious refresh');

      await seedCustomers(t.db, 1, { table, first: 500 });
      await waitFor(
        async () => (await changeRuns(id)).some((run) => run.status !== 'running'),
        'a change run',
      );
      assert.equal((await changeRuns(id)).length, 1);

      assert.equal(await client.unwatch(id), true);
      const stopped = (await client.watchStatus(id))!;
      assert.equal(stopped.running, false);
      assert.equal(stopped.stopped, true);
      await seedCustomers(t.db, 1, { table, first: 600 });
      await sleep(1500);
      assert.equal((await changeRuns(id)).length, 1, 'nothing starts after unwatch');
      assert.equal(await client.unwatch(id), false, 'no watcher runs');

      // The last run (it may have stopped before its first check) replays and holds no records.
      const text = await replayWatcher(client, id);
      assert.ok(text.includes('carried'), 'it was continued as new, with the state handed over');

      await client.watch(id, { pollSeconds: 1 });
      await waitFor(
        async () => (await client.watchStatus(id))?.marker?.startsWith('12:') === true,
        'a baseline',
      );
      await client.connectors.delete(id);
      const ended = client.temporal.workflow.getHandle<typeof watchConnector>(watchWorkflowId('default', id));
      const final = await ended.result();
      assert.match(final.lastError ?? '', /no connector with id 'watch-stop'/);
      assert.equal((await changeRuns(id)).length, 1);
    });
  });
});

/**
 * The watcher's latest run: it replays deterministically against the workflow bundle, and its
 * history holds no record data (markers are a count and a digest). Returns the history as JSON.
 */
async function replayWatcher(client: DeltasyncClient, connectorId: string): Promise<string> {
  const history = await client.temporal.workflow
    .getHandle(watchWorkflowId('default', connectorId))
    .fetchHistory();
  await Worker.runReplayHistory(
    { workflowBundle: temporal.bundle },
    history,
    watchWorkflowId('default', connectorId),
  );
  // Payloads are bytes (base64 in JSON): decode them, so the checks see what they carry.
  const text = JSON.stringify(history, (key, value: unknown) =>
    key === 'data' && typeof value === 'string' ? Buffer.from(value, 'base64').toString('utf8') : value,
  );
  assert.doesNotMatch(text, /cust-\d{7}/, 'no record keys in history');
  assert.ok(!text.includes('@example.com'), 'no record attributes in history');
  return text;
}

async function waitFor(condition: () => Promise<boolean>, what: string, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition().catch(() => false)) return;
    await sleep(150);
  }
  throw new Error(`timed out waiting for ${what}`);
}
