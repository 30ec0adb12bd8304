import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type Worker, type WorkerOptions } from '@temporalio/worker';
import type { DestinationFactory } from '../connectors/registry';
import { dialectOf, openDatabase, sqliteStatementTimeoutAvailable, type Db } from '../db';
import { describeError, logger as defaultLogger, type Logger } from '../logging';
import { installTemporalLogging } from '../observability/logging';
import { createWorkerMetrics, type WorkerMetrics } from '../observability/metrics';
import { startOpsServer, type HealthReport, type OpsServer } from '../observability/server';
import { createTenancy, TenantDirectory, type Tenancy } from '../tenancy';
import { ensureAlertWatchdog } from '../temporal/alert-watchdog-starter';
import { ALERT_CHECK_SECONDS } from '../core/alerts';
import { TASK_QUEUE } from '../temporal/names';
import { createThrottleService } from '../connectors/kit/throttle';
import { createWorkers } from './index';

/**
 * The worker as a long-running service: JSON logs, a Prometheus `/metrics` and a `/healthz`
 * endpoint, and a graceful shutdown on SIGINT/SIGTERM that lets every running send finish the
 * destination call in flight and commit it before the process lets go of the database.
 */

export interface WorkerServiceOptions {
  /** Temporal frontend, host:port. */
  address: string;
  /** The namespace of a single-tenant worker; with a tenants policy, the policy's namespaces. */
  namespace?: string;
  /** The tenants policy file (default DELTASYNC_TENANTS_FILE; none: one tenant, `default`). */
  tenantsFile?: string;
  taskQueue?: string;
  /** Port of /metrics and /healthz (default 9464; 0 = no endpoint). */
  metricsPort?: number;
  /**
   * Interface the endpoint listens on (default 127.0.0.1: metrics name connectors and tenants;
   * expose them deliberately, e.g. 0.0.0.0 behind a network policy).
   */
  host?: string;
  /**
   * On shutdown, how long running activities keep working before they are told to stop; a
   * send then finishes and commits its call in flight, and stops. Default 30.
   */
  shutdownGraceSeconds?: number;
  /**
   * Redis that holds destination accounts' budgets for every worker naming the same one
   * (DELTASYNC_REDIS_URL); without it each worker process keeps its own (docs/deploying.md).
   */
  redisUrl?: string;
  /** Activities run at once by this process, over all namespaces (default: Temporal's, 100 per namespace). */
  activitySlots?: number;
  /** Workflows kept in memory by this process, over all namespaces (default: the SDK's, per namespace). */
  cachedWorkflows?: number;
  /** Database connections of this process (MySQL/MariaDB; default 8). */
  dbPoolMax?: number;
  /**
   * host:port where the Temporal SDK serves its own Prometheus metrics: task slots in use,
   * schedule-to-start latency, sticky cache (none by default).
   */
  sdkMetricsAddress?: string;
  /**
   * Seconds between the alert watchdog's sweeps of each tenant (default 300; 0: no watchdog):
   * alerts a webhook did not take are sent again, and `noSuccessWithinHours` fires between runs.
   */
  alertCheckSeconds?: number;
}

/** For embedding and tests: the pieces the CLI takes from the environment. */
export interface StartWorkerServiceOptions extends WorkerServiceOptions {
  /** Default: DELTASYNC_DATABASE_URL, else the embedded SQLite file (see openDatabase). */
  databaseUrl?: string;
  destinations?: DestinationFactory;
  /** Default: from tenantsFile, the environment and DELTASYNC_SECRETS_FILE. */
  tenants?: TenantDirectory;
  workflowBundle?: WorkerOptions['workflowBundle'];
  /** Default: the process logger (src/logging.ts). */
  logger?: Logger;
}

export interface WorkerService {
  /** The port /metrics and /healthz answer on; undefined when disabled. */
  port: number | undefined;
  /** One per namespace the worker serves. */
  workers: Worker[];
  db: Db;
  metrics: WorkerMetrics;
  /** The service's health, as /healthz reports it. */
  health(): Promise<HealthReport>;
  /**
   * Shut down gracefully: stop polling, let running activities finish (see shutdownGraceSeconds),
   * then close the endpoint, the connections and the database. Resolves when all is closed.
   */
  stop(): Promise<void>;
  /** Settles once the service has stopped: after stop(), or when the worker stopped by itself (rejects with its error). */
  done: Promise<void>;
}

export const DEFAULT_METRICS_PORT = 9464;
export const DEFAULT_SHUTDOWN_GRACE_SECONDS = 30;
/** /healthz answers within this, whatever the database does. */
const HEALTH_CHECK_TIMEOUT_MS = 2000;

/** Start the worker service and return at once; the caller stops it. */
export async function startWorkerService(options: StartWorkerServiceOptions): Promise<WorkerService> {
  const logger = options.logger ?? defaultLogger;
  const namespace = options.namespace ?? 'default';
  const taskQueue = options.taskQueue ?? TASK_QUEUE;
  const graceSeconds = options.shutdownGraceSeconds ?? DEFAULT_SHUTDOWN_GRACE_SECONDS;
  const metricsPort = options.metricsPort ?? DEFAULT_METRICS_PORT;
  if (!Number.isInteger(metricsPort) || metricsPort < 0 || metricsPort > 65_535) {
    throw new RangeError(`metricsPort must be a port number, or 0 for no endpoint (got ${metricsPort})`);
  }
  if (!Number.isFinite(graceSeconds) || graceSeconds < 0) {
    throw new RangeError(`shutdownGraceSeconds must be 0 or more (got ${graceSeconds})`);
  }

  // Before any connection: the Runtime is created once per process. Signals are ours (see
  // runWorkerService), so the SDK does not shut the worker down behind the service's back.
  if (
    !installTemporalLogging(logger, { shutdownSignals: [], sdkMetricsAddress: options.sdkMetricsAddress })
  ) {
    logger.debug('a Temporal Runtime is installed already: SDK logs go to its logger');
  }

  const metrics = createWorkerMetrics();
  // Closed in this order: the endpoint, the Temporal connections, the database last.
  let server: OpsServer | undefined;
  const opened: { close(): Promise<unknown> }[] = [];
  const closeAll = async () => {
    for (const resource of [...(server ? [server] : []), ...opened.splice(0).reverse()]) {
      await resource
        .close()
        .catch((error: unknown) => logger.warn({ error: describeError(error) }, 'closing failed'));
    }
    server = undefined;
  };

  let workers: Worker[] = [];
  let db: Db | undefined;
  let tenancy: Tenancy | undefined;
  const health = async (): Promise<HealthReport> => {
    const states = workers.map((w) => w.getState());
    const state = states.length === 0 ? 'STARTING' : (states.find((s) => s !== 'RUNNING') ?? 'RUNNING');
    const database = db ? await databaseReachable(db, logger) : false;
    return {
      healthy: state === 'RUNNING' && database,
      details: { worker: state, database: database ? 'ok' : 'unreachable', taskQueue },
    };
  };

  try {
    // The endpoint first: a port in use fails the start before anything else is opened.
    if (metricsPort > 0) {
      server = await startOpsServer({
        port: metricsPort,
        host: options.host ?? '127.0.0.1',
        logger,
        health,
        metrics: async () => ({ contentType: metrics.contentType, body: await metrics.render() }),
      });
    }
    const directory =
      options.tenants ?? TenantDirectory.load({ file: options.tenantsFile, namespace: options.namespace });
    // Every statement of the worker is bounded; tenants' dataset reads by their own limits.
    const statementTimeoutSeconds = Math.max(...directory.tenants.map((t) => t.statementTimeoutSeconds));
    const database = await openDatabase(options.databaseUrl, {
      statementTimeoutMs: statementTimeoutSeconds * 1000,
      ...(options.dbPoolMax === undefined ? {} : { poolMax: options.dbPoolMax }),
    });
    db = database;
    opened.push({ close: () => database.destroy() });
    if (dialectOf(database) === 'sqlite' && !sqliteStatementTimeoutAvailable()) {
      logger.warn(
        'the SQLite statement-timeout extension is not built (run `npm run setup`, which needs a C compiler): statements on the embedded database have no time limit',
      );
    }
    const tenants = createTenancy({ db: database, directory });
    tenancy = tenants;
    opened.push({ close: () => tenants.datasets.close() });
    const budgets = createThrottleService({
      redisUrl: options.redisUrl,
      onConflict: (account, kept, declared) =>
        logger.warn(
          { account, kept, declared },
          'connectors of one account declare different limits; the tightest holds (set the account once in the tenants policy: accountLimits)',
        ),
      onError: (error) => logger.warn({ error: describeError(error) }, 'rate-limit store (Redis) error'),
    });
    opened.push({ close: () => budgets.close() });
    const connection = await NativeConnection.connect({ address: options.address });
    opened.push(connection);
    const clientConnection = await Connection.connect({ address: options.address });
    opened.push(clientConnection);
    workers = await createWorkers({
      connection,
      db: database,
      tenancy: tenants,
      temporal: new Client({ connection: clientConnection, namespace }),
      namespace,
      taskQueue,
      destinations: options.destinations,
      throttle: budgets.throttle,
      activitySlots: options.activitySlots,
      cachedWorkflows: options.cachedWorkflows,
      workflowBundle: options.workflowBundle,
      observer: metrics.observer,
      logger,
      shutdownGraceTime: graceSeconds * 1000,
    });
    await ensureAlertWatchdogs(
      clientConnection,
      tenants.directory,
      taskQueue,
      logger,
      options.alertCheckSeconds,
    );
  } catch (error) {
    await closeAll();
    throw error;
  }

  const running = workers;
  // One worker failing stops the service: the others are shut down gracefully with it.
  const done = Promise.all(
    running.map((w) =>
      w.run().catch((error: unknown) => {
        for (const other of running) if (other.getState() === 'RUNNING') other.shutdown();
        throw error;
      }),
    ),
  ).then(
    async () => {
      await closeAll();
      logger.info({ taskQueue }, 'worker service stopped');
    },
    async (error: unknown) => {
      logger.error({ error: describeError(error), taskQueue }, 'worker failed; the service stops');
      await closeAll();
      throw error;
    },
  );
  // Callers await `done` or stop(); the failure is theirs to see, never an unhandled rejection.
  done.catch(() => undefined);
  logger.info(
    {
      address: options.address,
      namespaces: tenancy!.directory.namespaces(),
      tenants: tenancy!.directory.tenants.map((t) => t.id),
      taskQueue,
      metricsPort: server?.port ?? null,
      graceSeconds,
      rateLimits: options.redisUrl ? 'shared through Redis' : 'this process only',
    },
    'worker service started',
  );

  return {
    port: server?.port,
    workers: running,
    db: db!,
    metrics,
    health,
    done,
    stop() {
      const live = running.filter((w) => w.getState() === 'RUNNING');
      if (live.length > 0) {
        logger.info({ graceSeconds }, 'worker service stopping: running activities finish their calls');
        for (const w of live) w.shutdown();
      }
      return done;
    },
  };
}

/**
 * The worker service for `deltasync worker`: runs until SIGINT or SIGTERM, then shuts down
 * gracefully (a second signal exits at once). Rejects if the worker fails.
 */
export async function runWorkerService(options: WorkerServiceOptions): Promise<void> {
  const service = await startWorkerService(options);
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      defaultLogger.warn({ signal }, 'second signal: exiting without waiting for running activities');
      process.exit(1);
    }
    signalled = true;
    defaultLogger.info({ signal }, 'shutdown requested');
    void service.stop().catch(() => undefined);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await service.done;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** `SELECT 1` within HEALTH_CHECK_TIMEOUT_MS. */
async function databaseReachable(db: Db, logger: Logger): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      db.raw('SELECT 1'),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('no answer within 2 s')), HEALTH_CHECK_TIMEOUT_MS);
      }),
    ]);
    return true;
  } catch (error) {
    logger.warn({ error: describeError(error) }, 'health check: database unreachable');
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * One alert watchdog per tenant served, in its namespace (a running one is left as it is). The
 * tenants' starts go out together: a worker serving fifty tenants does not wait for them in turn.
 */
async function ensureAlertWatchdogs(
  connection: Connection,
  directory: TenantDirectory,
  taskQueue: string,
  logger: Logger,
  everySeconds = ALERT_CHECK_SECONDS,
): Promise<void> {
  if (everySeconds <= 0) return;
  const ensure = async (client: Client, namespace: string, tenant: string) => {
    try {
      const started = await ensureAlertWatchdog(client, { tenant, everySeconds, taskQueue });
      const where = { tenant, namespace, workflowId: started.workflowId };
      if (started.taskQueue === taskQueue) logger.info({ ...where, everySeconds }, 'alert watchdog running');
      else
        logger.warn(
          { ...where, taskQueue: started.taskQueue },
          'the alert watchdog runs on another task queue; terminate it and a worker of this one starts it here',
        );
    } catch (error) {
      // Alerts after runs still work; the worker serves without the watchdog.
      logger.error(
        { tenant, namespace, error: describeError(error) },
        'the alert watchdog could not be started',
      );
    }
  };
  await Promise.all(
    directory.namespaces().flatMap((namespace) => {
      const client = new Client({ connection, namespace });
      return directory.tenantsIn(namespace).map((tenant) => ensure(client, namespace, tenant));
    }),
  );
}
