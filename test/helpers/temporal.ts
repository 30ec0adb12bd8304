import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import {
  bundleWorkflowCode,
  DefaultLogger,
  Runtime,
  Worker,
  type Logger,
  type LogLevel,
  type LogMetadata,
  type WorkflowBundleWithSourceMap,
} from '@temporalio/worker';
import { DeltasyncClient } from '../../src/client';
import type { DestinationFactory } from '../../src/connectors/registry';
import type { Db } from '../../src/db';
import { createTenancy, TenantDirectory } from '../../src/tenancy';
import type { SecretStore } from '../../src/tenancy/secrets';
import {
  startDevServer,
  startDevServerProcess,
  type DevServer,
  type DevServerProcess,
} from '../../src/temporal/dev-server';
import { createWorkers } from '../../src/worker';
import { anySecret } from './secrets';

/**
 * A real Temporal dev server (the CLI binary scripts/setup.sh provides) plus one workflow bundle,
 * shared by the tests of one file. Each test gets its own task queue and worker.
 */
export interface TemporalHarness {
  server: DevServer;
  bundle: WorkflowBundleWithSourceMap;
  /**
   * Run `body` with workers on a fresh task queue (one per namespace of `tenants`; default: one
   * tenant, `default`, in the namespace `default`) and a client of the `default` namespace.
   * Secrets: `secrets`, else any name resolves (for tests that are not about secrets).
   */
  withWorker<T>(
    options: {
      db: Db;
      destinations: DestinationFactory;
      tenants?: TenantDirectory;
      secrets?: SecretStore;
      alertBackoffMs?: number[];
    },
    body: (client: DeltasyncClient, worker: Worker) => Promise<T>,
  ): Promise<T>;
  /** A client of the dev server in another namespace. */
  clientIn(namespace: string): Client;
  stop(): Promise<void>;
}

let queueCounter = 0;

export async function startTemporal(options: { namespaces?: string[] } = {}): Promise<TemporalHarness> {
  Runtime.install({ logger: testRuntimeLogger() });
  const [server, bundle] = await Promise.all([
    startDevServer({ namespaces: options.namespaces }),
    bundleWorkflowCode({ workflowsPath: require.resolve('../../src/workflows'), logger: quietLogger }),
  ]);
  return {
    server,
    bundle,
    async withWorker(options, body) {
      const taskQueue = `test-${process.pid}-${queueCounter++}`;
      const tenancy = createTenancy({
        db: options.db,
        directory: options.tenants ?? TenantDirectory.singleTenant(),
        secrets: options.secrets ?? anySecret(),
      });
      const workers = await createWorkers({
        connection: server.env.nativeConnection,
        db: options.db,
        tenancy,
        destinations: options.destinations,
        taskQueue,
        workflowBundle: bundle,
        temporal: server.env.client,
        alertBackoffMs: options.alertBackoffMs,
      });
      const client = new DeltasyncClient(server.env.client, taskQueue);
      const [first, ...others] = workers;
      const running = others.map((w) => w.run());
      try {
        return await first!.runUntil(body(client, first!));
      } finally {
        for (const w of others) w.shutdown();
        await Promise.all(running);
        await tenancy.datasets.close();
      }
    },
    clientIn: (namespace) => new Client({ connection: server.env.client.connection, namespace }),
    stop: () => server.stop(),
  };
}

/**
 * The Temporal SDK's logger in tests. Worker lifecycle chatter (INFO) drowns the test report, and
 * so do the SDK's warnings for activities and workflows that fail, which tests provoke on purpose
 * by the dozen (a refused token, a missing connector, a run below its threshold): each is one line
 * here (what failed and why), without the error's stack. Every other warning and every error
 * prints in full, and a test's own failure output is untouched. DELTASYNC_TEST_LOG=full prints the
 * failures in full too, as the SDK does.
 */
export function testRuntimeLogger(): Logger {
  const full = new DefaultLogger('WARN');
  const brief = process.env.DELTASYNC_TEST_LOG !== 'full';
  const log = (level: LogLevel, message: string, meta?: LogMetadata) => {
    if (brief && level === 'WARN' && (message === 'Activity failed' || message === 'Workflow failed')) {
      process.stderr.write(`[temporal] ${message}: ${failureLine(meta)}\n`);
    } else full.log(level, message, meta);
  };
  return {
    log,
    trace: (message, meta) => log('TRACE', message, meta),
    debug: (message, meta) => log('DEBUG', message, meta),
    info: (message, meta) => log('INFO', message, meta),
    warn: (message, meta) => log('WARN', message, meta),
    error: (message, meta) => log('ERROR', message, meta),
  };
}

/** `sendChanges (attempt 2) of refreshConnector deltasync-refresh-crm@default: DestinationFatal: …` */
function failureLine(meta: LogMetadata | undefined): string {
  const { error, activityType, attempt, workflowType, workflowId } = (meta ?? {}) as Record<string, unknown>;
  const where = [
    typeof activityType === 'string'
      ? `${activityType}${attempt ? ` (attempt ${String(attempt)})` : ''} of`
      : '',
    typeof workflowType === 'string' ? workflowType : '',
    typeof workflowId === 'string' ? workflowId : '',
  ]
    .filter(Boolean)
    .join(' ');
  // The innermost cause says why: a workflow fails with an ActivityFailure around the activity's.
  // (Errors logged from the workflow sandbox come from another realm: no instanceof.)
  type Failure = { name?: string; type?: string; message?: string; cause?: unknown };
  const isFailure = (value: unknown): value is Failure =>
    typeof value === 'object' && value !== null && 'message' in value;
  let cause: unknown = error;
  while (isFailure(cause) && isFailure(cause.cause)) cause = cause.cause;
  const failure = isFailure(cause)
    ? `${cause.type ?? cause.name ?? 'Error'}: ${String(cause.message).split('\n')[0]}`
    : String(cause);
  return `${where}: ${failure}`;
}

const quiet = () => undefined;
const quietLogger = { log: quiet, trace: quiet, debug: quiet, info: quiet, warn: quiet, error: quiet };

/**
 * A dev server that can be killed and started again on the same port and state file (a SQLite
 * file in a temporary folder), with a client whose connection reconnects after a restart. For
 * tests of a Temporal outage; workers run in processes of their own (test/helpers/worker-process).
 */
export interface RestartableTemporal {
  server: DevServerProcess;
  client: Client;
  stop(): Promise<void>;
}

export async function startRestartableTemporal(): Promise<RestartableTemporal> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deltasync-temporal-'));
  const server = await startDevServerProcess({ dbFilename: path.join(dir, 'temporal.sqlite') });
  const connection = await Connection.connect({ address: server.address });
  return {
    server,
    client: new Client({ connection }),
    async stop() {
      await connection.close();
      await server.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
