import type { Client } from '@temporalio/client';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities } from '../activities';
import { createDestinationFactory, type DestinationFactory } from '../connectors/registry';
import type { Db } from '../db';
import { TASK_QUEUE } from '../workflows/shared';

export interface DeltasyncWorkerOptions {
  connection: NativeConnection;
  db: Db;
  /** A client of the same cluster, for refreshes started by schedules and change triggers. */
  temporal?: Client;
  namespace?: string;
  taskQueue?: string;
  /** Defaults to the built-in destinations with secrets from the environment / secrets file. */
  destinations?: DestinationFactory;
  /** A pre-built workflow bundle (tests build it once); otherwise bundled from src/workflows. */
  workflowBundle?: WorkerOptions['workflowBundle'];
}

/** A worker that runs refresh workflows and their activities for every connector. */
export async function createWorker(options: DeltasyncWorkerOptions): Promise<Worker> {
  const workflows = options.workflowBundle
    ? { workflowBundle: options.workflowBundle }
    : { workflowsPath: require.resolve('../workflows') };
  return Worker.create({
    connection: options.connection,
    namespace: options.namespace ?? 'default',
    taskQueue: options.taskQueue ?? TASK_QUEUE,
    ...workflows,
    activities: createActivities({
      db: options.db,
      destinations: options.destinations ?? createDestinationFactory(),
      temporal: options.temporal,
      taskQueue: options.taskQueue ?? TASK_QUEUE,
    }),
  });
}

export { NativeConnection };
