import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startHttpListEmulator, type HttpListEmulator } from '../src/connectors/http-list/emulator';
import { createHttpListDestination, httpListConfigSchema } from '../src/connectors/http-list/index';
import { createDestinationContext } from '../src/connectors/kit/module';
import type { DestinationFactory } from '../src/connectors/registry';
import type { ConnectorInput } from '../src/core/connector';
import { saveConnector } from '../src/core/connector-store';
import { createCustomersTable, seedCustomers } from '../src/demo/customers';
import { TenantDirectory } from '../src/tenancy/policy';
import type { SecretStore } from '../src/tenancy/secrets';
import { createTestDatabase, type TestDatabase } from './helpers/databases';
import { startFakeServer, type FakeServer } from './helpers/fake-http';
import { startTemporal, type TemporalHarness } from './helpers/temporal';
import { ensureAlertWatchdog } from '../src/temporal/alert-watchdog-starter';
import { alertWatchdogWorkflowId } from '../src/temporal/names';
import { createAlerter } from '../src/activities/alerts';
import { createTenancy } from '../src/tenancy';

/**
 * Alerts through the real workflow: a local webhook receiver records what the worker posts (the
 * generic JSON body and Slack's), and the connector's runs fail, recover, reject, shrink and wait
 * for approval in turn.
 */

const TOKEN = 'list-token';
let temporal: TemporalHarness;
let emulator: HttpListEmulator;
let receiver: FakeServer;
let t: TestDatabase;
const received: { path: string; body: Record<string, unknown> }[] = [];
/** Answer this many more posts with 503 (the worker retries them). */
let failNext = 0;
let refusedPosts = 0;

const destinations: DestinationFactory = (config, { listId }) =>
  createHttpListDestination(
    httpListConfigSchema.parse(config),
    createDestinationContext({
      secrets: (name) => (name === 'BAD_TOKEN' ? 'wrong' : TOKEN),
      listId,
      retry: { baseDelayMs: 5, maxDelayMs: 20 },
    }),
  );

const secrets = (): SecretStore => ({
  forTenant: () => (name) =>
    name === 'ALERT_URL' ? `${receiver.url}/json` : name === 'SLACK_URL' ? `${receiver.url}/slack` : TOKEN,
  has: () => true,
  hint: () => '',
});

before(async () => {
  [temporal, emulator, t, receiver] = await Promise.all([
    startTemporal(),
    startHttpListEmulator({ token: TOKEN }),
    createTestDatabase('mysql'),
    startFakeServer((req, res, body) => {
      if (failNext > 0) {
        failNext -= 1;
        refusedPosts += 1;
        res.statusCode = 503;
      } else received.push({ path: req.url ?? '', body: JSON.parse(body) as Record<string, unknown> });
      res.end();
    }),
  ]);
  await createCustomersTable(t.db);
  await seedCustomers(t.db, 100);
});
after(async () => {
  await receiver.close();
  await emulator.close();
  await temporal.stop();
  await t.drop();
});

function connector(tokenSecret = 'TOKEN'): ConnectorInput {
  return {
    id: 'alerted',
    dataset: { table: 'demo_customers', key: 'customer_key', attributes: ['email'] },
    destination: { type: 'http-list', baseUrl: emulator.url, listId: 'alerted', tokenSecret },
    policy: {
      alerts: {
        webhooks: [
          { urlSecret: 'ALERT_URL', format: 'json' },
          { urlSecret: 'SLACK_URL', format: 'slack' },
        ],
        rejectedShareAbove: 0.2,
        countDeviationFactor: 2,
      },
      massDeleteGuard: { maxShare: 0.5 },
    },
  };
}

/** The alerts posted since the last call, as `rule state` (from the JSON webhook). */
function taken(): string[] {
  const json = received
    .filter((r) => r.path === '/json')
    .map((r) => `${String(r.body.rule)} ${String(r.body.state)}`);
  const slack = received.filter((r) => r.path === '/slack');
  assert.equal(slack.length, json.length, 'every alert goes to both webhooks');
  for (const s of slack)
    assert.match(String(s.body.text), /^:(rotating_light|white_check_mark): deltasync default\/alerted: /);
  received.length = 0;
  return json.sort();
}

describe('alerts', () => {
  test('a failing connector alerts once, then once more when it recovers; rejections, a shrunken dataset and a held run alert too', async () => {
    const tenants = TenantDirectory.fromPolicy({
      tenants: {
        default: {
          database: 'worker',
          destinations: { origins: [new URL(emulator.url).origin, new URL(receiver.url).origin] },
        },
      },
    });
    await saveConnector(t.db, connector());
    await temporal.withWorker({ db: t.db, destinations, tenants, secrets: secrets() }, async (client) => {
      assert.equal((await client.refresh('alerted')).status, 'succeeded');
      assert.deepEqual(taken(), [], 'a healthy run alerts nothing');

      // A refused token: the run fails, twice; one alert (its first two posts answered 503, retried).
      await saveConnector(t.db, connector('BAD_TOKEN'));
      failNext = 2;
      await t
        .db('demo_customers')
        .where('customer_key', '<=', 'cust-0000005')
        .update({ email: 'new@example.com' });
      await assert.rejects(client.refresh('alerted'));
      const [firing] = received.filter((r) => r.path === '/json');
      assert.equal(firing?.body.source, 'deltasync');
      assert.equal(firing?.body.connectorId, 'alerted');
      assert.match(String(firing?.body.message), /^run \d+ failed: .*401/);
      assert.deepEqual(taken(), ['failedRun firing']);
      assert.equal(refusedPosts, 2);
      await assert.rejects(client.refresh('alerted'));
      assert.deepEqual(taken(), [], 'still failing: no second alert');

      await saveConnector(t.db, connector());
      assert.equal((await client.refresh('alerted')).status, 'succeeded');
      assert.deepEqual(taken(), ['failedRun resolved']);

      // Half the records sent are rejected.
      emulator.faults.set({ reject: (key) => (key <= 'cust-0000050' ? 'invalid email' : null) });
      await t.db('demo_customers').update({ email: t.db.raw("CONCAT('x', email)") });
      await client.refresh('alerted').catch(() => undefined);
      assert.deepEqual(taken(), ['failedRun firing', 'rejectedShare firing']);
      emulator.faults.clear('reject');
      await client.refresh('alerted');
      assert.deepEqual(taken(), ['failedRun resolved', 'rejectedShare resolved']);

      // 60% of the dataset gone: the guard holds the run (alert at once), then the dataset is far
      // below the recent runs' median.
      await t.db('demo_customers').where('customer_key', '<=', 'cust-0000060').delete();
      const run = await client.startRefresh('alerted');
      for (let i = 0; i < 80 && (await run.progress()).phase !== 'awaiting approval'; i++) await sleep(250);
      assert.deepEqual(taken(), ['awaitingApproval firing']);
      await client.approve('alerted', { by: 'test' });
      await run.result();
      assert.deepEqual(taken(), ['awaitingApproval resolved', 'countDeviation firing']);
    });
  });

  test('between runs, the watchdog alerts a connector that stopped succeeding, and sends again what a webhook missed', async () => {
    const tenants = TenantDirectory.fromPolicy({
      tenants: {
        default: {
          database: 'worker',
          destinations: { origins: [new URL(emulator.url).origin, new URL(receiver.url).origin] },
        },
      },
    });
    // Saved now and never refreshed: overdue once 3.6 s have passed, with no run to say so.
    await saveConnector(t.db, {
      ...connector(),
      id: 'quiet',
      policy: {
        alerts: { webhooks: [{ urlSecret: 'ALERT_URL', format: 'json' }], noSuccessWithinHours: 0.001 },
      },
    });
    received.length = 0;
    refusedPosts = 0;
    // The webhook is down for the first alert's four attempts: the alert stays pending.
    failNext = 4;
    const options = { db: t.db, destinations, tenants, secrets: secrets(), alertBackoffMs: [20, 20, 20] };
    const watchdog = temporal.clientIn('default').workflow.getHandle(alertWatchdogWorkflowId('default'));
    await temporal.withWorker(options, async (client, worker) => {
      const started = await ensureAlertWatchdog(temporal.clientIn('default'), {
        tenant: 'default',
        everySeconds: 1,
        taskQueue: worker.options.taskQueue,
        sweepsPerRun: 3,
      });
      try {
        const quiet = () => received.filter((r) => r.body.connectorId === 'quiet');
        // Overdue after 3.6 s; each sweep then tries the webhook once (the next sweep is the retry).
        for (let i = 0; i < 200 && quiet().length === 0; i++) await sleep(100);
        assert.equal(refusedPosts, 4, 'the first delivery failed four times');
        assert.deepEqual(
          quiet().map((r) => `${String(r.body.rule)} ${String(r.body.state)}`),
          ['noSuccess firing'],
          'a later sweep delivered it',
        );
        assert.match(
          String(quiet()[0]!.body.message),
          /no successful refresh for more than 0.001 h \(last: never\)/,
        );
        await sleep(2500);
        assert.equal(quiet().length, 1, 'delivered once: the sweeps after it stay quiet');
        assert.notEqual((await watchdog.describe()).runId, started.runId, 'it continued as new');

        received.length = 0;
        assert.equal((await client.refresh('quiet')).status, 'succeeded');
        assert.deepEqual(
          received
            .filter((r) => r.body.connectorId === 'quiet')
            .map((r) => `${String(r.body.rule)} ${String(r.body.state)}`),
          ['noSuccess resolved'],
        );
      } finally {
        await watchdog.terminate('test over');
      }
    });
    const history = await watchdog.fetchHistory();
    assert.ok(
      (history.events?.length ?? 0) < 60,
      `a run of the watchdog holds ${history.events?.length} events`,
    );
  });

  test('a sweep tries a webhook that is down once, not once per alert, and keeps the alerts for the next', async () => {
    const directory = TenantDirectory.fromPolicy({
      tenants: { default: { database: 'worker', destinations: { origins: [new URL(receiver.url).origin] } } },
    });
    const tenancy = createTenancy({ db: t.db, directory, secrets: secrets() });
    const tenant = directory.get('default')!;
    const alerter = createAlerter({ db: t.db, tenancy, backoffMs: [10, 10, 10] });
    for (const id of ['sweep-a', 'sweep-b', 'sweep-c']) {
      await saveConnector(t.db, {
        ...connector(),
        id,
        policy: {
          alerts: { webhooks: [{ urlSecret: 'ALERT_URL', format: 'json' }], noSuccessWithinHours: 0.0001 },
        },
      });
    }
    await sleep(400); // 0.36 s: all three overdue
    received.length = 0;
    refusedPosts = 0;
    failNext = 1_000;
    const down = await alerter.sweep(tenant);
    assert.equal(refusedPosts, 1, 'one post for the first alert; the others wait for the next sweep');
    assert.ok(down.pending >= 3, JSON.stringify(down));
    failNext = 0;
    const up = await alerter.sweep(tenant);
    const swept = received.filter((r) => String(r.body.connectorId).startsWith('sweep-'));
    assert.deepEqual(swept.map((r) => r.body.connectorId).sort(), ['sweep-a', 'sweep-b', 'sweep-c']);
    assert.equal(up.pending, 0);
    for (const id of ['sweep-a', 'sweep-b', 'sweep-c'])
      await t
        .db('connectors')
        .where({ id: `default/${id}` })
        .delete();
    await tenancy.datasets.close();
  });

  test('a webhook outside the origins the tenant may call gets nothing', async () => {
    // The emulator and the receiver share 127.0.0.1: the tenant may call the emulator's port only.
    const tenants = TenantDirectory.fromPolicy({
      tenants: { default: { database: 'worker', destinations: { origins: [new URL(emulator.url).origin] } } },
    });
    await saveConnector(t.db, { ...connector('BAD_TOKEN'), id: 'alerted-elsewhere' });
    received.length = 0;
    await temporal.withWorker({ db: t.db, destinations, tenants, secrets: secrets() }, async (client) => {
      await assert.rejects(client.refresh('alerted-elsewhere'));
    });
    assert.deepEqual(received, []);
  });
});
