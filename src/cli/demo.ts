import { randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import cliProgress from 'cli-progress';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { DeltasyncClient, type RunSummary } from '../client';
import { followRefresh } from './follow';
import { formatCount, runTable } from './format';
import { saveConnector } from '../core/connector-store';
import { openDatabase, type Db } from '../db';
import { startHttpListEmulator } from '../connectors/http-list/emulator';
import { dataDir } from '../paths';
import { startDevServer } from '../temporal/dev-server';
import { secretEnvName } from '../tenancy/secret-names';
import { createWorker } from '../worker';
import { refreshWorkflowId } from '../temporal/names';
import {
  churnCustomers,
  createCustomersTable,
  CUSTOMERS_TABLE,
  readCustomers,
  seedCustomers,
} from '../demo/customers';

export interface DemoOptions {
  customers: number;
  keepRunning: boolean;
  port?: number;
  uiPort?: number;
}

const CONNECTOR_ID = 'demo-customers';
const TOKEN_SECRET = 'DEMO_HTTP_LIST_TOKEN';

/**
 * The whole method on real parts: a Temporal dev server with its Web UI, a worker, the embedded
 * database (or DELTASYNC_DATABASE_URL) with a customers dataset, and the http-list emulator as
 * the destination. Two refreshes, the second after the dataset changed; then proof that the
 * remote list equals the dataset. Returns the process exit code.
 */
export async function runDemo(options: DemoOptions): Promise<number> {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const say = (line = '') => process.stdout.write(`${line}\n`);
  const port = options.port ?? (await freePortOr(7233));
  const uiPort = options.uiPort ?? (await freePortOr(port + 1000));

  say(`Starting the Temporal dev server (state in ${path.join(dataDir(), 'temporal.sqlite')}) …`);
  const server = await startDevServer({
    ui: true,
    port,
    uiPort,
    dbFilename: path.join(dataDir(), 'temporal.sqlite'),
  });
  // The emulator checks a bearer token; the connector names the secret, the worker resolves it.
  // The demo's one tenant, `default`, holds the emulator's token as a secret of its own.
  const token = randomBytes(16).toString('hex');
  process.env[secretEnvName('default', TOKEN_SECRET)] = token;
  const emulator = await startHttpListEmulator({ token });
  const db = await openDatabase();
  const worker = await createWorker({
    connection: server.env.nativeConnection,
    db,
    temporal: server.env.client,
  });
  const workerRunning = worker.run();
  const client = new DeltasyncClient(server.env.client);

  try {
    say(`Temporal Web UI: ${server.uiUrl}   (gRPC ${server.address})`);
    say(`http-list emulator: ${emulator.url}`);
    say(
      `Database: ${process.env.DELTASYNC_DATABASE_URL ? 'DELTASYNC_DATABASE_URL' : path.join(dataDir(), 'deltasync.sqlite')}`,
    );
    say();

    await resetDemo(db);
    await seedWithProgress(db, options.customers);
    await saveConnector(db, {
      id: CONNECTOR_ID,
      dataset: {
        table: CUSTOMERS_TABLE,
        key: 'customer_key',
        attributes: ['email', 'name', 'country', 'segment'],
      },
      destination: {
        type: 'http-list',
        baseUrl: emulator.url,
        listId: 'customers',
        tokenSecret: TOKEN_SECRET,
      },
    });

    const runs: { label: string; summary: RunSummary }[] = [];
    say('Refresh 1: the first push of the whole dataset');
    runs.push({
      label: '1 first',
      summary: await followRefresh(await client.startRefresh(CONNECTOR_ID), '  refresh 1'),
    });

    const churn = {
      additions: Math.ceil(options.customers / 100),
      deletions: Math.ceil(options.customers / 200),
      changes: Math.ceil(options.customers / 125),
    };
    say(
      `\nChanging the dataset: ${formatCount(churn.additions)} new customers, ${formatCount(churn.deletions)} deleted, ${formatCount(churn.changes)} changed segment`,
    );
    await churnCustomers(db, churn);
    say('Refresh 2: only the changes');
    runs.push({
      label: '2 changes',
      summary: await followRefresh(await client.startRefresh(CONNECTOR_ID), '  refresh 2'),
    });

    say();
    say(runTable(runs));
    say();
    const equal = await listEqualsDataset(db, emulator.members('customers'));
    say(equal.ok ? `✔ ${equal.message}` : `✘ ${equal.message}`);
    say();
    say(
      `Inspect the runs: ${server.uiUrl}/namespaces/default/workflows?query=${encodeURIComponent(`DeltasyncConnectorId="${CONNECTOR_ID}"`)}`,
    );
    say(
      `Latest run:       ${server.uiUrl}/namespaces/default/workflows/${refreshWorkflowId('default', CONNECTOR_ID)}`,
    );

    if (options.keepRunning) {
      say('\nEverything stays up for inspection (--keep-running). Press Ctrl-C to stop.');
      await new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
    }
    return equal.ok ? 0 : 1;
  } finally {
    say('Shutting down …');
    worker.shutdown();
    await workerRunning;
    await emulator.close();
    await db.destroy();
    await server.stop();
  }
}

/** Each demo starts from an empty remote list, so it forgets what earlier demos delivered. */
async function resetDemo(db: Db) {
  await db('deltalog').where({ connector_id: CONNECTOR_ID }).delete();
  await db('refresh_runs').where({ connector_id: CONNECTOR_ID }).delete();
  await db('connector_state').where({ connector_id: CONNECTOR_ID }).delete();
  await createCustomersTable(db);
}

async function seedWithProgress(db: Db, count: number) {
  const bar = new cliProgress.SingleBar(
    { format: 'Seeding customers |{bar}| {value}/{total}', stream: process.stderr },
    cliProgress.Presets.shades_classic,
  );
  bar.start(count, 0);
  await seedCustomers(db, count, { onProgress: (done) => bar.update(done) });
  bar.stop();
}

async function listEqualsDataset(db: Db, members: Map<string, Record<string, unknown>>) {
  const dataset = await readCustomers(db);
  let missing = 0;
  let different = 0;
  for (const [key, attributes] of dataset) {
    const remote = members.get(key);
    if (!remote) missing++;
    else if (!isDeepStrictEqual(remote, attributes)) different++;
  }
  const extra = [...members.keys()].filter((key) => !dataset.has(key)).length;
  const ok = missing === 0 && different === 0 && extra === 0;
  return {
    ok,
    message: ok
      ? `the emulator's list equals the dataset: ${formatCount(dataset.size)} members, same keys and attributes`
      : `the emulator's list differs from the dataset: ${missing} missing, ${extra} extra, ${different} with other attributes`,
  };
}

/** The preferred port if nothing listens there, otherwise any free one. */
async function freePortOr(preferred: number): Promise<number> {
  const tryListen = (port: number) =>
    new Promise<number | undefined>((resolve) => {
      const probe = net.createServer();
      probe.once('error', () => resolve(undefined));
      probe.listen(port, '127.0.0.1', () => {
        const bound = (probe.address() as net.AddressInfo).port;
        probe.close(() => resolve(bound));
      });
    });
  return (await tryListen(preferred)) ?? (await tryListen(0))!;
}
