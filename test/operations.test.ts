import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import YAML from 'yaml';
import { DeltasyncClient, loadConnectorFile } from '../src/client';
import { InvalidConnectorError, parseConnector } from '../src/core/connector';
import { createHttpListDestination, httpListConfigSchema } from '../src/connectors/http-list/index';
import { createDestinationContext } from '../src/connectors/kit/module';
import type { DestinationFactory } from '../src/connectors/registry';
import { UnknownConnectorError } from '../src/core/connector-store';
import { pendingCounts } from '../src/core/deltalog';
import { createCustomersTable, seedCustomers } from '../src/demo/customers';
import { startHttpListEmulator, type HttpListEmulator } from '../src/connectors/http-list/emulator';
import { createTestDatabase, type TestDatabase } from './helpers/databases';
import { trustedTenants } from './helpers/secrets';
import { startTemporal, type TemporalHarness } from './helpers/temporal';

/**
 * What operators and platform teams do, on the real Temporal dev server and MariaDB: connectors
 * from YAML files, scoped by tenant; the mass-delete guard; schedules.
 */

const TOKEN = 'ops-token';
let temporal: TemporalHarness;
let emulator: HttpListEmulator;
let t: TestDatabase;
/** Tenants of this file, in the one namespace of the dev server. */
const tenants = trustedTenants('default', 'growth', 'finance', 'ops');
const destinations: DestinationFactory = (config, { listId }) => {
  if (config.type !== 'http-list') throw new Error('http-list only');
  const context = createDestinationContext({
    secrets: () => TOKEN,
    listId,
    retry: { baseDelayMs: 5, maxDelayMs: 20 },
  });
  return createHttpListDestination(httpListConfigSchema.parse(config), context);
};

before(async () => {
  [temporal, emulator, t] = await Promise.all([
    startTemporal(),
    startHttpListEmulator({ token: TOKEN }),
    createTestDatabase('mysql'),
  ]);
  await createCustomersTable(t.db);
  await seedCustomers(t.db, 300);
});
after(async () => {
  await emulator.close();
  await t.drop();
  await temporal.stop();
});

/** The fixture, pointed at this test's emulator, written where the test can read it. */
function connectorFile(overrides: Record<string, unknown> = {}): string {
  const definition = YAML.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'connector.yaml'), 'utf8'));
  definition.destination.baseUrl = emulator.url;
  Object.assign(definition, overrides);
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ds-ops-')), 'connector.yaml');
  fs.writeFileSync(file, YAML.stringify(definition));
  return file;
}

describe('connectors from YAML files, scoped by tenant', () => {
  test('create from a file, read, update, list; another tenant sees nothing', async () => {
    await temporal.withWorker({ db: t.db, destinations, tenants }, async (base) => {
      const growth = new DeltasyncClient(base.temporal, { taskQueue: base.taskQueue, tenant: 'growth' });
      const created = await growth.connectors.create(loadConnectorFile(connectorFile()));
      assert.equal(created.tenant, 'growth', 'a file without a tenant takes the client tenant');
      assert.equal(created.policy.massDeleteGuard.approvalTimeoutSeconds, 60);
      await assert.rejects(growth.connectors.create(loadConnectorFile(connectorFile())), /exists already/);
      const updated = await growth.connectors.update({
        ...created,
        policy: { ...created.policy, maxAttempts: 3 },
      });
      assert.equal(updated.policy.maxAttempts, 3);
      assert.deepEqual(
        (await growth.connectors.list()).map((c) => c.id),
        ['yaml-customers'],
      );

      const other = new DeltasyncClient(base.temporal, { taskQueue: base.taskQueue, tenant: 'finance' });
      assert.deepEqual(await other.connectors.list(), []);
      await assert.rejects(other.connectors.get('yaml-customers'), (error: unknown) => {
        assert.ok(error instanceof UnknownConnectorError);
        assert.match(error.message, /no connector with id 'yaml-customers' in tenant 'finance'/);
        return true;
      });
      await assert.rejects(
        other.refresh('yaml-customers'),
        /no connector with id 'yaml-customers' in tenant 'finance'/,
      );
      const summary = await growth.refresh('yaml-customers');
      assert.equal(summary.status, 'succeeded');
      assert.equal(summary.additions, 300);
      const runs = await growth.runs('yaml-customers');
      assert.equal(runs.length, 1);
      await assert.rejects(other.runs('yaml-customers'), UnknownConnectorError);
    });
  });

  test('bad definitions are refused with the file and the field named', async () => {
    const file = connectorFile({ id: 'Bad Id' });
    assert.throws(
      () => loadConnectorFile(file),
      (error: unknown) => {
        assert.ok(error instanceof InvalidConnectorError);
        assert.match(error.message, /connector\.yaml: id: lower-case letters/);
        return true;
      },
    );
    const broken = path.join(path.dirname(file), 'broken.yaml');
    fs.writeFileSync(broken, 'id: [unclosed\n');
    assert.throws(() => loadConnectorFile(broken), /broken\.yaml: .* at line 2, column 1/);
    // Valid as a definition, but the dataset is not there: the worker says so.
    await temporal.withWorker({ db: t.db, destinations, tenants }, async (base) => {
      const client = new DeltasyncClient(base.temporal, { taskQueue: base.taskQueue });
      const definition = parseConnector(loadConnectorFile(connectorFile({ id: 'missing-table' })));
      await assert.rejects(
        client.connectors.create({
          ...definition,
          dataset: { ...definition.dataset, table: 'no_such_table' },
        }),
        (error: unknown) => {
          assert.ok(error instanceof InvalidConnectorError, String(error));
          assert.match(error.problems[0]!, /^dataset: cannot read it in the database: .*no_such_table/);
          return true;
        },
      );
    });
  });
});

describe('listings at scale', () => {
  test('20,000 connectors of a tenant and 250 runs of one are read a page at a time', async () => {
    const template = parseConnector({
      ...loadConnectorFile(connectorFile({ id: 'bulk-00000' })),
      tenant: 'finance',
    });
    const rows = Array.from({ length: 20_000 }, (_, i) => {
      const id = `bulk-${String(i).padStart(5, '0')}`;
      return {
        id: `finance/${id}`,
        tenant: 'finance',
        destination_type: template.destination.type,
        definition: JSON.stringify({ ...template, id }),
        created_at: 1,
        updated_at: 1,
      };
    });
    await t.db.batchInsert('connectors', rows, 1000);
    const runs = Array.from({ length: 250 }, (_, i) => ({
      connector_id: 'finance/bulk-00007',
      tenant: 'finance',
      workflow_id: 'bulk',
      workflow_run_id: `bulk-run-${i}`,
      status: 'succeeded',
      started_at: i,
      finished_at: i + 1,
    }));
    await t.db.batchInsert('refresh_runs', runs, 250);
    await temporal.withWorker({ db: t.db, destinations, tenants }, async (base) => {
      const finance = new DeltasyncClient(base.temporal, { taskQueue: base.taskQueue, tenant: 'finance' });
      const listed = await finance.connectors.list();
      assert.equal(listed.length, 20_000);
      assert.equal(listed[0]!.id, 'bulk-00000');
      assert.equal(listed[19_999]!.id, 'bulk-19999');
      assert.ok(
        listed.every((c, i) => i === 0 || c.id > listed[i - 1]!.id),
        'in id order, none twice',
      );

      const all = await finance.runs('bulk-00007', { limit: 1000 });
      assert.equal(all.length, 250);
      assert.equal(new Set(all.map((r) => r.runId)).size, 250);
      assert.ok(
        all.every((r, i) => i === 0 || r.runId < all[i - 1]!.runId),
        'newest first',
      );
      const next = await finance.runs('bulk-00007', { limit: 10, beforeRunId: all[99]!.runId });
      assert.deepEqual(
        next.map((r) => r.runId),
        all.slice(100, 110).map((r) => r.runId),
      );
    });
  });
});

describe('the mass-delete guard', () => {
  async function guardedScenario(id: string, approvalTimeoutSeconds = 60) {
    const table = `guarded_${id.replace(/-/g, '_')}`;
    await createCustomersTable(t.db, table);
    await seedCustomers(t.db, 100, { table });
    const definition = parseConnector(loadConnectorFile(connectorFile({ id })));
    return {
      table,
      definition: {
        ...definition,
        dataset: { ...definition.dataset, table },
        destination: { ...definition.destination, listId: `${id}-list` },
        policy: {
          ...definition.policy,
          massDeleteGuard: { ...definition.policy.massDeleteGuard, approvalTimeoutSeconds },
        },
      },
    };
  }

  test('a run deleting more than 20% waits; approve lets the deletions go', async () => {
    const { table, definition } = await guardedScenario('guard-approve');
    await temporal.withWorker({ db: t.db, destinations, tenants }, async (base) => {
      const client = new DeltasyncClient(base.temporal, { taskQueue: base.taskQueue, tenant: 'default' });
      await client.connectors.create(definition);
      await client.refresh(definition.id);
      await t.db(table).where('customer_key', '<=', 'cust-0000030').delete(); // 30% of the list
      const run = await client.startRefresh(definition.id);
      await waitFor(async () => (await run.progress()).phase === 'awaiting approval');
      const progress = await run.progress();
      assert.match(progress.plan!.guard.reason, /30 deletions would remove 30% of the list \(limit 20%\)/);
      assert.equal(emulator.members(`${definition.id}-list`).size, 100, 'nothing deleted while waiting');
      const decision = await client.approve(definition.id, { by: 'alice', note: 'expected cleanup' });
      assert.deepEqual(decision, { approved: true, by: 'alice', note: 'expected cleanup' });
      const summary = await run.result();
      assert.equal(summary.deletions, 30);
      assert.equal(summary.deletionsHeld, 0);
      assert.equal(summary.guard?.by, 'alice');
      assert.equal(emulator.members(`${definition.id}-list`).size, 70);
      await assert.rejects(
        client.approve(definition.id),
        /no refresh of 'guard-approve' is waiting for approval/,
      );
    });
  });

  test('reject holds the deletions back (pending) and sends the rest; no decision in time rejects', async () => {
    const { table, definition } = await guardedScenario('guard-reject', 2);
    await temporal.withWorker({ db: t.db, destinations, tenants }, async (base) => {
      const client = new DeltasyncClient(base.temporal, { taskQueue: base.taskQueue, tenant: 'default' });
      await client.connectors.create(definition);
      await client.refresh(definition.id);
      await t.db(table).where('customer_key', '<=', 'cust-0000050').delete();
      await seedCustomers(t.db, 5, { table, first: 1000 });
      const run = await client.startRefresh(definition.id);
      await waitFor(async () => (await run.progress()).phase === 'awaiting approval');
      await client.reject(definition.id, { by: 'bob' });
      const rejected = await run.result();
      assert.equal(rejected.status, 'succeeded');
      assert.equal(rejected.deletionsHeld, 50);
      assert.equal(rejected.guard?.approved, false);
      assert.equal(
        emulator.members(`${definition.id}-list`).size,
        105,
        'additions went out, deletions did not',
      );
      assert.equal(
        (await pendingCounts(t.db, `default/${definition.id}`)).deletions,
        50,
        'held deletions stay pending',
      );

      // The next run asks again; nobody answers within 2 s, which rejects.
      const timedOut = await client.refresh(definition.id);
      assert.equal(timedOut.guard?.by, 'timeout');
      assert.equal(timedOut.deletionsHeld, 50);
      assert.equal(emulator.members(`${definition.id}-list`).size, 105);
    });
  });

  test('an emptied dataset always waits for approval', async () => {
    const { table, definition } = await guardedScenario('guard-empty', 1);
    await temporal.withWorker({ db: t.db, destinations, tenants }, async (base) => {
      const client = new DeltasyncClient(base.temporal, { taskQueue: base.taskQueue, tenant: 'default' });
      await client.connectors.create({
        ...definition,
        policy: {
          ...definition.policy,
          massDeleteGuard: { ...definition.policy.massDeleteGuard, maxShare: 1 },
        },
      });
      await client.refresh(definition.id);
      await t.db(table).delete();
      const summary = await client.refresh(definition.id);
      assert.match(summary.guard?.reason ?? '', /the dataset is empty: all 100 members would be removed/);
      assert.equal(summary.deletionsHeld, 100);
      assert.equal(emulator.members(`${definition.id}-list`).size, 100);
    });
  });
});

describe('schedules', () => {
  test('create, run on time, pause with a note, trigger, update, list, delete', async () => {
    const { definition } = await (async () => {
      const table = 'scheduled_customers';
      await createCustomersTable(t.db, table);
      await seedCustomers(t.db, 20, { table });
      const loaded = parseConnector(loadConnectorFile(connectorFile({ id: 'scheduled' })));
      return { definition: { ...loaded, dataset: { ...loaded.dataset, table } } };
    })();
    await temporal.withWorker({ db: t.db, destinations, tenants }, async (base) => {
      const client = new DeltasyncClient(base.temporal, { taskQueue: base.taskQueue, tenant: 'ops' });
      await client.connectors.create({ ...definition, tenant: 'ops' });
      const schedule = await client.schedules.create('scheduled', { every: '2s', jitter: '100ms' });
      assert.equal(schedule.paused, false);
      await waitFor(async () => (await client.runs('scheduled')).length >= 2, 'two scheduled runs');
      const runs = await client.runs('scheduled');
      const finished = runs.filter((r) => r.status !== 'running');
      assert.ok(finished.length >= 1);
      assert.ok(
        finished.every((r) => r.status === 'succeeded' || r.status === 'noop'),
        JSON.stringify(finished.map((r) => r.status)),
      );

      await client.schedules.pause('scheduled', 'maintenance window');
      const paused = await client.schedules.describe('scheduled');
      assert.equal(paused.paused, true);
      assert.equal(paused.note, 'maintenance window');
      const before = (await client.runs('scheduled', { limit: 100 })).length;
      await client.schedules.trigger('scheduled');
      await waitFor(
        async () => (await client.runs('scheduled', { limit: 100 })).length === before + 1,
        'triggered run',
      );

      await client.schedules.unpause('scheduled');
      const updated = await client.schedules.update('scheduled', {
        cron: ['0 3 * * *'],
        timezone: 'Europe/Berlin',
      });
      assert.deepEqual(updated.spec.timezone, 'Europe/Berlin');
      assert.equal(updated.nextRuns[0]!.getUTCMinutes(), 0);
      assert.deepEqual(
        (await client.schedules.list()).map((s) => s.connectorId),
        ['scheduled'],
      );
      const other = new DeltasyncClient(base.temporal, { taskQueue: base.taskQueue, tenant: 'growth' });
      assert.deepEqual(await other.schedules.list(), []);
      await client.schedules.delete('scheduled');
      assert.deepEqual(await client.schedules.list(), []);
    });
  });
});

async function waitFor(condition: () => Promise<boolean>, what = 'condition', timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition().catch(() => false)) return;
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}`);
}
