import type { Client } from '@temporalio/client';
import type { Duration } from '@temporalio/common';
import {
  bundleWorkflowCode,
  NativeConnection,
  Runtime,
  Worker,
  type WorkerOptions,
} from '@temporalio/worker';
import { createActivities } from '../activities';
import type { Throttle } from '../connectors/kit/throttle';
import { createDestinationFactory, type DestinationFactory } from '../connectors/registry';
import { dialectOf, type Db } from '../db';
import type { Logger } from '../logging';
import { activityLogging } from '../observability/logging';
import type { RefreshObserver } from '../observability/observer';
import { createTenancy, TenantDirectory, type Tenancy } from '../tenancy';
import { TASK_QUEUE } from '../temporal/names';

export interface DeltasyncWorkerOptions {
  connection: NativeConnection;
  db: Db;
  /** A client of the same cluster, for refreshes started by schedules and change triggers. */
  temporal?: Client;
  /**
   * The namespace of a single-tenant worker (default `default`). With a tenants policy, the
   * worker polls every namespace the policy names instead.
   */
  namespace?: string;
  taskQueue?: string;
  /**
   * Tenants, their secrets, dataset access and allowlists. Default: DELTASYNC_TENANTS_FILE (or
   * one tenant, `default`, in `namespace`), secrets from the environment and DELTASYNC_SECRETS_FILE.
   */
  tenancy?: Tenancy;
  /** The built-in destinations with each tenant's secrets, unless given. */
  destinations?: DestinationFactory;
  /**
   * Budgets of destination accounts for the built-in destinations (default: this process's own;
   * the service shares them through Redis when DELTASYNC_REDIS_URL is set).
   */
  throttle?: Throttle;
  /**
   * Activities this process runs at once, over all namespaces (each namespace's worker gets an
   * equal share, at least one). Bounds the database connections and memory the sends need.
   * Default: Temporal's own, 100 per namespace.
   */
  activitySlots?: number;
  /** Workflows kept in memory, over all namespaces (default: the SDK's own per namespace). */
  cachedWorkflows?: number;
  /** A pre-built workflow bundle (tests build it once); otherwise bundled from src/workflows. */
  workflowBundle?: WorkerOptions['workflowBundle'];
  /** Receives API calls, records sent, rejections, rate-limit waits and run durations (metrics). */
  observer?: RefreshObserver;
  /** Waits between attempts to deliver an alert (default 0.5, 2 and 8 s; tests pass short ones). */
  alertBackoffMs?: number[];
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

/**
 * Workers that run refresh workflows and their activities: one per Temporal namespace the tenants
 * policy names (a tenant's boundary is its namespace), all sharing one set of activities that take
 * the caller's tenant from the namespace each task comes from.
 */
export async function createWorkers(options: DeltasyncWorkerOptions): Promise<Worker[]> {
  const tenancy =
    options.tenancy ??
    createTenancy({ db: options.db, directory: TenantDirectory.load({ namespace: options.namespace }) });
  const { directory } = tenancy;
  if (dialectOf(options.db) === 'sqlite' && directory.tenants.length > 1) {
    throw new Error(
      `the embedded SQLite database is single-tenant; ${directory.source} names ${directory.tenants.length} tenants: ` +
        'set DELTASYNC_DATABASE_URL to a MySQL/MariaDB database',
    );
  }
  const taskQueue = options.taskQueue ?? TASK_QUEUE;
  const activities = createActivities({
    db: options.db,
    tenancy,
    destinations:
      options.destinations ??
      createDestinationFactory(tenancy.secrets.forTenant, options.throttle, (tenant, account) =>
        directory.accountLimits(tenant, account),
      ),
    temporal: options.temporal,
    taskQueue,
    observer: options.observer,
    alertBackoffMs: options.alertBackoffMs,
  });
  const namespaces = directory.namespaces();
  // Bundled once for every namespace's worker: each would otherwise bundle (and hold) its own copy.
  const workflows =
    options.workflowBundle || namespaces.length > 1
      ? {
          workflowBundle:
            options.workflowBundle ??
            (await bundleWorkflowCode({
              workflowsPath: require.resolve('../workflows'),
              logger: Runtime.instance().logger,
            })),
        }
      : { workflowsPath: require.resolve('../workflows') };
  const share = (total: number | undefined) =>
    total === undefined ? undefined : Math.max(1, Math.floor(total / namespaces.length));
  const activitySlots = share(options.activitySlots);
  const cachedWorkflows = share(options.cachedWorkflows);
  return Promise.all(
    namespaces.map((namespace) =>
      Worker.create({
        connection: options.connection,
        namespace,
        taskQueue,
        // Heartbeats carry the send's live progress (records done): pass them on within a second
        // instead of the SDK's default of up to a minute, so progress bars move.
        maxHeartbeatThrottleInterval: '1 second',
        defaultHeartbeatThrottleInterval: '1 second',
        ...(activitySlots === undefined ? {} : { maxConcurrentActivityTaskExecutions: activitySlots }),
        // The SDK wants at least two cached workflows, or none.
        ...(cachedWorkflows === undefined ? {} : { maxCachedWorkflows: Math.max(2, cachedWorkflows) }),
        ...workflows,
        activities,
        ...(options.logger
          ? {
              interceptors: { activity: [activityLogging(options.logger, { runIdOf: runIdOf(options.db) })] },
            }
          : {}),
        ...(options.shutdownGraceTime === undefined ? {} : { shutdownGraceTime: options.shutdownGraceTime }),
      }),
    ),
  );
}

/** The worker of a deployment with one namespace (every test and the demo). */
export async function createWorker(options: DeltasyncWorkerOptions): Promise<Worker> {
  const workers = await createWorkers(options);
  if (workers.length !== 1) {
    throw new Error(
      `createWorker serves one namespace; the tenants policy names ${workers.length}: use createWorkers`,
    );
  }
  return workers[0]!;
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
