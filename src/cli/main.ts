import fs from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { DeltasyncClient } from '../client';
import { destinationModules } from '../connectors/catalog';
import { InvalidConnectorError } from '../connectors/definition';
import { listConnectors, saveConnector, UnknownConnectorError } from '../connectors/store';
import { STRATEGIES } from '../core/plan';
import { openDatabase } from '../db';
import { runDemo } from '../demo/run-demo';
import { logger } from '../logging';
import { startDevServer } from '../temporal/dev-server';
import { createWorker, NativeConnection } from '../worker';
import { followRefresh } from './follow';
import { runTable, table } from './format';
import path from 'node:path';
import { dataDir } from '../paths';

/** Exit codes scripts can rely on. */
const EXIT = { ok: 0, failed: 1, usage: 2, unavailable: 3 } as const;

const positiveInt = (value: string) => {
  const n = Number(value.replace(/_/g, ''));
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('must be a positive whole number');
  return n;
};
const temporalAddress = new Option('--address <host:port>', 'Temporal frontend address')
  .env('TEMPORAL_ADDRESS')
  .default('localhost:7233');

const program = new Command('deltasync')
  .description('Keep external lists equal to a canonical dataset (deltalog method on Temporal).')
  .showHelpAfterError();

program
  .command('demo')
  .description('Run the whole method end to end on a local Temporal dev server, database and list emulator')
  .addOption(
    new Option('--customers <n>', 'customers in the demo dataset').argParser(positiveInt).default(100_000),
  )
  .option('--keep-running', 'keep the dev server, Web UI and worker up for inspection until Ctrl-C')
  .addOption(
    new Option('--port <port>', 'Temporal gRPC port (default 7233, or a free one)').argParser(positiveInt),
  )
  .addOption(
    new Option('--ui-port <port>', 'Temporal Web UI port (default gRPC port + 1000)').argParser(positiveInt),
  )
  .action(async (opts: { customers: number; keepRunning?: boolean; port?: number; uiPort?: number }) => {
    process.exitCode = await runDemo({ ...opts, keepRunning: Boolean(opts.keepRunning) });
  });

program
  .command('dev-server')
  .description('Start the Temporal dev server with its Web UI, persisting to the data folder')
  .addOption(new Option('--port <port>', 'gRPC port').argParser(positiveInt).default(7233))
  .addOption(new Option('--ui-port <port>', 'Web UI port').argParser(positiveInt).default(8233))
  .action(async (opts: { port: number; uiPort: number }) => {
    Runtime.install({ logger: new DefaultLogger('WARN') });
    const server = await startDevServer({
      ui: true,
      port: opts.port,
      uiPort: opts.uiPort,
      dbFilename: path.join(dataDir(), 'temporal.sqlite'),
    });
    process.stdout.write(
      `Temporal dev server on ${server.address}, Web UI ${server.uiUrl}. Ctrl-C stops it.\n`,
    );
    await new Promise((resolve) => process.once('SIGINT', resolve));
    await server.stop();
  });

program
  .command('worker')
  .description('Run a worker: refresh workflows and their activities for every connector')
  .addOption(temporalAddress)
  .option('--task-queue <name>', 'task queue', 'deltasync')
  .action(async (opts: { address: string; taskQueue: string }) => {
    const db = await openDatabase();
    const connection = await NativeConnection.connect({ address: opts.address });
    const temporal = (await DeltasyncClient.connect({ address: opts.address })).temporal;
    const worker = await createWorker({ connection, db, taskQueue: opts.taskQueue, temporal });
    logger.info({ address: opts.address, taskQueue: opts.taskQueue }, 'worker started');
    // The SDK drains in-flight activities on SIGINT/SIGTERM; each committed batch stays committed.
    await worker.run();
    await db.destroy();
    logger.info('worker stopped');
  });

program
  .command('refresh <connector>')
  .description('Start a refresh of a connector (or attach to the one running)')
  .addOption(temporalAddress)
  .addOption(
    new Option('--strategy <strategy>', 'force a strategy for this run').choices(['auto', ...STRATEGIES]),
  )
  .option('--wait', 'wait for the result and print it')
  .option('--follow', 'wait with a live progress bar')
  .option('--json', 'print JSON for scripts')
  .action(
    async (
      connectorId: string,
      opts: { address: string; strategy?: 'auto'; wait?: boolean; follow?: boolean; json?: boolean },
    ) => {
      const client = await DeltasyncClient.connect({ address: opts.address });
      const handle = await client.startRefresh(connectorId, { strategy: opts.strategy, trigger: 'cli' });
      if (!opts.wait && !opts.follow) {
        const started = {
          connectorId,
          workflowId: handle.workflowId,
          runId: handle.runId,
          attached: handle.attached,
        };
        process.stdout.write(
          opts.json
            ? `${JSON.stringify(started)}\n`
            : `${handle.attached ? 'Attached to the running' : 'Started'} refresh ${handle.workflowId} (run ${handle.runId})\n`,
        );
        return;
      }
      const summary = opts.follow ? await followRefresh(handle, connectorId) : await handle.result();
      process.stdout.write(
        opts.json ? `${JSON.stringify(summary)}\n` : `${runTable([{ label: connectorId, summary }])}\n`,
      );
      process.exitCode = summary.status === 'failed' ? EXIT.failed : EXIT.ok;
    },
  );

program
  .command('plan <connector>')
  .description('Dry run: what a refresh would send, by which strategy, in how many calls (sends nothing)')
  .addOption(temporalAddress)
  .addOption(new Option('--strategy <strategy>', 'plan a forced strategy').choices(['auto', ...STRATEGIES]))
  .option('--json', 'print JSON for scripts')
  .action(async (connectorId: string, opts: { address: string; strategy?: 'auto'; json?: boolean }) => {
    const client = await DeltasyncClient.connect({ address: opts.address });
    const plan = await client.plan(connectorId, { strategy: opts.strategy });
    if (opts.json) {
      process.stdout.write(`${JSON.stringify(plan)}\n`);
      return;
    }
    const verdict = plan.needed ? `would refresh by ${plan.strategy}` : 'nothing to send';
    process.stdout.write(
      `${connectorId}: ${verdict} (${plan.reason})\n` +
        `pending: ${plan.additions} additions, ${plan.updates} updates, ${plan.deletions} deletions; ` +
        `dataset ${plan.datasetSize}, bad rows ${plan.badRows}, quarantined ${plan.quarantined}\n\n` +
        `${table(
          ['strategy', 'API calls', 'records', 'bytes'],
          STRATEGIES.map((s) => {
            const cost = plan.estimates[s];
            return [
              s,
              ...(cost ? [cost.calls, cost.records, cost.bytes].map(String) : ['not possible', '', '']),
            ];
          }),
        )}\n`,
    );
  });

program
  .command('destinations')
  .description('List the destination types a connector can use (docs/connectors.md has the details)')
  .option('--json', 'print JSON for scripts')
  .action((opts: { json?: boolean }) => {
    const rows = destinationModules.map((m) => ({ type: m.type, description: m.description }));
    process.stdout.write(
      opts.json
        ? `${JSON.stringify(rows)}\n`
        : `${table(
            ['type', 'description'],
            rows.map((r) => [r.type, r.description]),
          )}\n`,
    );
  });

const connectors = program.command('connectors').description('Manage connectors');
connectors
  .command('add <file>')
  .description('Create or update a connector from a JSON file')
  .action(async (file: string) => {
    const db = await openDatabase();
    try {
      const connector = await saveConnector(db, JSON.parse(fs.readFileSync(file, 'utf8')));
      process.stdout.write(`Saved connector ${connector.id} (${connector.destination.type})\n`);
    } finally {
      await db.destroy();
    }
  });
connectors
  .command('list')
  .description('List connectors')
  .option('--json', 'print JSON for scripts')
  .action(async (opts: { json?: boolean }) => {
    const db = await openDatabase();
    try {
      const all = await listConnectors(db);
      if (opts.json) process.stdout.write(`${JSON.stringify(all)}\n`);
      else
        process.stdout.write(
          `${table(
            ['id', 'tenant', 'destination', 'strategy'],
            all.map((c) => [c.id, c.tenant, c.destination.type, c.policy.strategy]),
          )}\n`,
        );
    } finally {
      await db.destroy();
    }
  });

program.parseAsync().catch((error: unknown) => {
  if (
    error instanceof InvalidConnectorError ||
    error instanceof UnknownConnectorError ||
    error instanceof SyntaxError
  ) {
    process.stderr.write(`deltasync: ${error.message}\n`);
    process.exitCode = EXIT.usage;
    return;
  }
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`deltasync: ${message}\n`);
  process.exitCode = /connect|ECONNREFUSED|UNAVAILABLE/i.test(message) ? EXIT.unavailable : EXIT.failed;
});
