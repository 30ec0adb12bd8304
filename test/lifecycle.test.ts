import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connectorKey, type ConnectorInput } from '../src/core/connector';
import { createHttpListDestination, httpListConfigSchema } from '../src/connectors/http-list/index';
import { createDestinationContext } from '../src/connectors/kit/module';
import type { DestinationFactory } from '../src/connectors/registry';
import { loadConnector, saveConnector } from '../src/core/connector-store';
import { updateDeltalog } from '../src/core/deltalog';
import { getRun } from '../src/core/runs';
import { createCustomersTable, readCustomers, seedCustomers } from '../src/demo/customers';
import { startHttpListEmulator, type HttpListEmulator } from '../src/connectors/http-list/emulator';
import { createTestDatabase, dialects, type TestDatabase } from './helpers/databases';
import { startTemporal, type TemporalHarness } from './helpers/temporal';

/**
 * The policy knobs that act over many refreshes, end to end through the workflow (the real
 * Temporal dev server, both databases, the http-list emulator): the time horizon, the janitor's
 * retention, and `last_succeeded_at`.
 */

const TOKEN = 'lifecycle-token';
const DAY = 86_400_000;
let temporal: TemporalHarness;
let emulator: HttpListEmulator;
let counter = 0;

before(async () => {
  [temporal, emulator] = await Promise.all([startTemporal(), startHttpListEmulator({ token: TOKEN })]);
});
after(async () => {
  await emulator.close();
  await temporal.stop();
});

const destinations: DestinationFactory = (config, { listId }) => {
  if (config.type !== 'http-list') throw new Error('these tests use http-list only');
  const context = createDestinationContext({
    secrets: () => TOKEN,
    listId,
    retry: { baseDelayMs: 5, maxDelayMs: 20 },
  });
  return createHttpListDestination(httpListConfigSchema.parse(config), context);
};

function connectorFor(policy: ConnectorInput['policy']) {
  const id = `life-${counter++}`;
  return {
    id,
    dataset: {
      table: 'demo_customers',
      key: 'customer_key',
      attributes: ['email', 'name', 'country', 'segment'],
    },
    destination: {
      type: 'http-list' as const,
      baseUrl: emulator.url,
      listId: `life-list-${id}`,
      tokenSecret: 'HTTP_LIST_TOKEN',
    },
    policy: { batchSize: 100, ...policy },
  };
}

for (const dialect of dialects) {
  describe(`horizon, janitor and last success through the workflow (${dialect})`, () => {
    let t: TestDatabase;
    before(async () => {
      t = await createTestDatabase(dialect);
      await createCustomersTable(t.db);
      await seedCustomers(t.db, 300);
    });
    after(() => t.drop());

    const deltalogRow = (id: string, key: string) =>
      t
        .db('deltalog')
        .where({ connector_id: connectorKey('default', id), record_key: key })
        .first() as Promise<{ in_dataset: unknown; committed_at: unknown } | undefined>;
    const name = async (key: string) =>
      (await t.db('demo_customers').where({ customer_key: key }).first('name')) as { name: string };

    test('horizonDays: changes older than the horizon alone start no send; the next refresh sends them too', async () => {
      const connector = connectorFor({ horizonDays: 1 });
      await saveConnector(t.db, connector);
      const [stale, fresh] = ['cust-0000010', 'cust-0000020'];
      await temporal.withWorker({ db: t.db, destinations }, async (client) => {
        assert.equal((await client.refresh(connector.id)).status, 'succeeded');

        // A change the deltalog saw three days ago and that never went out (say its run was
        // cancelled): still pending, but outside the one-day horizon.
        await t.db('demo_customers').where({ customer_key: stale }).update({ name: 'Changed Long Ago' });
        const definition = await loadConnector(t.db, 'default', connector.id);
        await updateDeltalog(
          t.db,
          connectorKey('default', connector.id),
          definition.dataset,
          Date.now() - 3 * DAY,
        );
        const quiet = await client.refresh(connector.id);
        assert.equal(quiet.status, 'noop', 'nothing inside the horizon');
        assert.equal(quiet.apiCalls, 0);
        assert.notEqual(emulator.members(connector.destination.listId).get(stale)?.name, 'Changed Long Ago');

        // A change inside the horizon: the refresh runs, and sends every pending change.
        await t.db('demo_customers').where({ customer_key: fresh }).update({ name: 'Changed Today' });
        const run = await client.refresh(connector.id);
        assert.equal(run.status, 'succeeded');
        assert.equal(run.updates, 2, 'the fresh change and the stale one');
        const members = emulator.members(connector.destination.listId);
        assert.equal(members.get(stale)?.name, (await name(stale)).name);
        assert.equal(members.get(fresh)?.name, 'Changed Today');
      });
    });

    test('the janitor purges committed deletions past retentionDays at the end of a refresh', async () => {
      const purging = connectorFor({ retentionDays: 0 });
      const keeping = connectorFor({ retentionDays: 30 });
      await Promise.all([saveConnector(t.db, purging), saveConnector(t.db, keeping)]);
      const gone = ['cust-0000100', 'cust-0000101', 'cust-0000102'];
      const rows = await t.db('demo_customers').whereIn('customer_key', gone);
      await temporal.withWorker({ db: t.db, destinations }, async (client) => {
        for (const c of [purging, keeping]) await client.refresh(c.id);
        await t.db('demo_customers').whereIn('customer_key', gone).delete();
        for (const c of [purging, keeping]) {
          const run = await client.refresh(c.id);
          assert.equal(run.deletions, 3);
          for (const key of gone) assert.equal(emulator.members(c.destination.listId).has(key), false);
        }
        for (const key of gone) {
          assert.equal(await deltalogRow(purging.id, key), undefined, `${key} purged (retention 0 days)`);
          const kept = await deltalogRow(keeping.id, key);
          assert.ok(kept && !kept.in_dataset && kept.committed_at !== null, `${key} kept for 30 days`);
        }

        // A purged key that comes back is an addition like any other.
        await t.db('demo_customers').insert(rows);
        const back = await client.refresh(purging.id);
        assert.equal(back.additions, 3);
      });
      const expected = await readCustomers(t.db);
      assert.equal(emulator.members(purging.destination.listId).size, expected.size);
    });

    test('last_succeeded_at advances to the run snapshot on success only, and is shown on the connector', async () => {
      const connector = connectorFor({});
      await saveConnector(t.db, connector);
      const lastSucceeded = async () =>
        Number(
          (
            (await t
              .db('connector_state')
              .where({ connector_id: connectorKey('default', connector.id) })
              .first()) as {
              last_succeeded_at: unknown;
            }
          ).last_succeeded_at,
        );
      await temporal.withWorker({ db: t.db, destinations }, async (client) => {
        const ok = await client.refresh(connector.id);
        const run = await getRun(t.db, ok.runId);
        assert.equal(await lastSucceeded(), Number(run.snapshot_at), 'the snapshot the run sent');

        // Every record refused: the run fails its record threshold, and the mark stays.
        await t.db('demo_customers').update({ segment: 'refused-segment' });
        emulator.faults.set({ reject: () => 'invalid record' });
        try {
          const failed = await client.refresh(connector.id).then(
            () => assert.fail('a run whose records were all refused fails'),
            (error: unknown) => error,
          );
          assert.ok(failed instanceof Error);
        } finally {
          emulator.faults.clear('reject');
        }
        assert.equal(await lastSucceeded(), Number(run.snapshot_at), 'a failed run does not advance it');

        const listed = (await client.connectors.list()).find((c) => c.id === connector.id);
        assert.equal(listed?.lastSucceededAt, Number(run.snapshot_at));
      });
    });
  });
}
