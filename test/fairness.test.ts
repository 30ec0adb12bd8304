import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DeltasyncClient, type RefreshHandle } from '../src/client';
import { startHttpListEmulator, type HttpListEmulator } from '../src/connectors/http-list/emulator';
import { createHttpListDestination, httpListConfigSchema } from '../src/connectors/http-list/index';
import { createDestinationContext } from '../src/connectors/kit/module';
import type { DestinationFactory } from '../src/connectors/registry';
import { saveConnector } from '../src/core/connector-store';
import { createCustomersTable, seedCustomers } from '../src/demo/customers';
import type { RefreshUrgency } from '../src/temporal/priority';
import { createTenancy } from '../src/tenancy';
import { createWorkers } from '../src/worker';
import { createTestDatabase, type TestDatabase } from './helpers/databases';
import { anySecret, trustedTenants } from './helpers/secrets';
import { startTemporal, type TemporalHarness } from './helpers/temporal';

/**
 * Priority and fairness on the real dev server (started with Temporal's priority and fairness
 * switches on): a worker with one activity slot faces a backlog queued before it started, and the
 * order in which refreshes finish shows who was served first. In first-in-first-out order the
 * refresh started last would finish last.
 */

const TOKEN = 'test-token';
const BACKLOG = 8;
let temporal: TemporalHarness;
let emulator: HttpListEmulator;
let t: TestDatabase;
let queues = 0;

const destinations: DestinationFactory = (config, { listId }) =>
  createHttpListDestination(
    httpListConfigSchema.parse(config),
    createDestinationContext({ secrets: () => TOKEN, listId }),
  );

before(async () => {
  [temporal, emulator, t] = await Promise.all([
    startTemporal(),
    startHttpListEmulator({ token: TOKEN }),
    createTestDatabase('mysql'),
  ]);
  await createCustomersTable(t.db);
  await seedCustomers(t.db, 50);
});
after(async () => {
  await emulator.close();
  await temporal.stop();
  await t.drop();
});

async function saveConnectors(tenant: string, ids: string[]) {
  for (const id of ids) {
    await saveConnector(t.db, {
      id,
      tenant,
      dataset: { table: 'demo_customers', key: 'customer_key', attributes: ['email'] },
      destination: {
        type: 'http-list',
        baseUrl: emulator.url,
        listId: `${tenant}-${id}-${queues}`,
        tokenSecret: 'TOKEN',
      },
    });
  }
}

/**
 * Queue `starts` (in order) with no worker polling, then start one worker with a single activity
 * slot, and return the connectors in the order their refreshes finished.
 */
async function finishingOrder(starts: { tenant: string; id: string; urgency: RefreshUrgency }[]) {
  const taskQueue = `fairness-${process.pid}-${queues++}`;
  const clients = new Map<string, DeltasyncClient>();
  const clientOf = (tenant: string) => {
    if (!clients.has(tenant))
      clients.set(tenant, new DeltasyncClient(temporal.server.env.client, { taskQueue, tenant }));
    return clients.get(tenant)!;
  };
  const handles: [string, RefreshHandle][] = [];
  for (const s of starts) {
    handles.push([
      `${s.tenant}/${s.id}`,
      await clientOf(s.tenant).startRefresh(s.id, { urgency: s.urgency }),
    ]);
  }
  const tenancy = createTenancy({
    db: t.db,
    directory: trustedTenants('big', 'small'),
    secrets: anySecret(),
  });
  const [worker] = await createWorkers({
    connection: temporal.server.env.nativeConnection,
    db: t.db,
    tenancy,
    destinations,
    taskQueue,
    workflowBundle: temporal.bundle,
    temporal: temporal.server.env.client,
    activitySlots: 1,
  });
  const order: string[] = [];
  await worker!.runUntil(
    Promise.all(
      handles.map(async ([name, handle]) => {
        const run = await handle.result();
        assert.equal(run.status, 'succeeded', name);
        order.push(name);
      }),
    ),
  );
  await tenancy.datasets.close();
  return { order, handles: new Map(handles) };
}

describe('priority and fairness between refreshes', () => {
  test('a refresh records its urgency as priority and its tenant as fairness key', async () => {
    await saveConnectors('big', ['p-interactive', 'p-backfill', 'p-schedule']);
    const { handles } = await finishingOrder([
      { tenant: 'big', id: 'p-interactive', urgency: 'interactive' },
      { tenant: 'big', id: 'p-backfill', urgency: 'backfill' },
    ]);
    const priorityOf = async (name: string) =>
      (await temporal.server.env.client.workflow.getHandle(handles.get(name)!.workflowId).describe())
        .priority;
    assert.deepEqual(await priorityOf('big/p-interactive'), {
      priorityKey: 1,
      fairnessKey: 'big',
      fairnessWeight: 0,
    });
    assert.deepEqual(await priorityOf('big/p-backfill'), {
      priorityKey: 4,
      fairnessKey: 'big',
      fairnessWeight: 0,
    });
  });

  test('an interactive refresh overtakes a backlog of backfills', async () => {
    const ids = Array.from({ length: BACKLOG }, (_, i) => `bulk-${i}`);
    await saveConnectors('big', [...ids, 'urgent']);
    const { order } = await finishingOrder([
      ...ids.map((id) => ({ tenant: 'big', id, urgency: 'backfill' as const })),
      { tenant: 'big', id: 'urgent', urgency: 'interactive' },
    ]);
    assert.ok(order.indexOf('big/urgent') <= 1, `finished in the order ${order.join(', ')}`);
  });

  test("one tenant's backlog does not hold back another tenant's refresh at the same priority", async () => {
    const ids = Array.from({ length: BACKLOG }, (_, i) => `queue-${i}`);
    await saveConnectors('big', ids);
    await saveConnectors('small', ['only']);
    const { order } = await finishingOrder([
      ...ids.map((id) => ({ tenant: 'big', id, urgency: 'scheduled' as const })),
      { tenant: 'small', id: 'only', urgency: 'scheduled' },
    ]);
    // Without fairness it finished fifth here (the nine interleave their activities in one queue);
    // with the tenant as fairness key it is served in turns with the big tenant's eight: first.
    assert.ok(order.indexOf('small/only') <= 1, `finished in the order ${order.join(', ')}`);
  });
});
