import type { Client } from '@temporalio/client';
import type { Duration } from '@temporalio/common';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities } from '../activities';
import { createDestinationFactory, type DestinationFactory } from '../connectors/registry';
import type { Db } from '../db';
import type { Logger } from '../logging';
import { activityLogging } from '../observability/logging';
import type { RefreshObserver } from '../observability/observer';
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
  /** Receives API calls, records sent, rejections, rate-limit waits and run durations (metrics). */
  observer?: RefreshObserver;
  /**
   * Log every activity's start and end as JSON, and put connector and run ids on every line an
   * activity logs. Without it, activities log only through the Temporal Runtime's logger.
   */
  logger?: Logger;
  /**
   * After shutdown() is called, how long running activities keep going before they are told to
   * stop; a send then finishes and commits the destination call in flight and stops (the SDK's
   * default: 0, told at once).
   */
  shutdownGraceTime?: Duration;
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
    // Heartbeats carry the send's live progress (records done, cursor): pass them on within a
    // second instead of the SDK's default of up to a minute, so progress bars move.
    maxHeartbeatThrottleInterval: '1 second',
    defaultHeartbeatThrottleInterval: '1 second',
    ...workflows,
    activities: createActivities({
      db: options.db,
      destinations: options.destinations ?? createDestinationFactory(),
      temporal: options.temporal,
      taskQueue: options.taskQueue ?? TASK_QUEUE,
      observer: options.observer,
    }),
    ...(options.logger
      ? { interceptors: { activity: [activityLogging(options.logger, { runIdOf: runIdOf(options.db) })] } }
      : {}),
    ...(options.shutdownGraceTime === undefined ? {} : { shutdownGraceTime: options.shutdownGraceTime }),
  });
}

/** The run record of a refresh workflow run, for log lines of activities not given its id. */
function runIdOf(db: Db) {
  return async (workflowRunId: string): Promise<number | undefined> => {
    const row = (await db('refresh_runs').where({ workflow_run_id: workflowRunId }).first('id')) as
      { id: number } | undefined;
    return row === undefined ? undefined : Number(row.id);
  };
}

export { NativeConnection };
