import { bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { DeltasyncClient } from '../../src/client';
import type { DestinationFactory } from '../../src/connectors/registry';
import type { Db } from '../../src/db';
import { startDevServer, type DevServer } from '../../src/temporal/dev-server';
import { createWorker } from '../../src/worker';

/**
 * A real Temporal dev server (the CLI binary scripts/setup.sh provides) plus one workflow bundle,
 * shared by the tests of one file. Each test gets its own task queue and worker.
 */
export interface TemporalHarness {
  server: DevServer;
  bundle: WorkflowBundleWithSourceMap;
  /** Run `body` with a worker on a fresh task queue and a client for that queue. */
  withWorker<T>(
    options: { db: Db; destinations: DestinationFactory },
    body: (client: DeltasyncClient, worker: Worker) => Promise<T>,
  ): Promise<T>;
  stop(): Promise<void>;
}

let queueCounter = 0;

export async function startTemporal(): Promise<TemporalHarness> {
  // Worker lifecycle chatter drowns the test report; warnings and errors still show.
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const [server, bundle] = await Promise.all([
    startDevServer(),
    bundleWorkflowCode({ workflowsPath: require.resolve('../../src/workflows'), logger: quietLogger }),
  ]);
  return {
    server,
    bundle,
    async withWorker(options, body) {
      const taskQueue = `test-${process.pid}-${queueCounter++}`;
      const worker = await createWorker({
        connection: server.env.nativeConnection,
        db: options.db,
        destinations: options.destinations,
        taskQueue,
        workflowBundle: bundle,
        temporal: server.env.client,
      });
      const client = new DeltasyncClient(server.env.client, taskQueue);
      return worker.runUntil(body(client, worker));
    },
    stop: () => server.stop(),
  };
}

const quiet = () => undefined;
const quietLogger = { log: quiet, trace: quiet, debug: quiet, info: quiet, warn: quiet, error: quiet };
