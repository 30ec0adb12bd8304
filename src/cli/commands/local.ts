import path from 'node:path';
import { getHeapStatistics } from 'node:v8';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { dataDir } from '../../paths';
import { globalsOf, nonNegativeNumber, positiveInt, print, printJson } from '../options';
import { table } from '../format';
import { ALERT_CHECK_SECONDS } from '../../core/alerts';

/**
 * A worker's memory follows what its sends hold (pages and batches), not how long they run; left
 * to itself V8 grows its heap with the length of a send (issue 12: 467 → 662 MB from 100k to 5M
 * records), so bin/deltasync starts a worker with this old-space cap (MB).
 */
export const WORKER_HEAP_MB = 256;

const heapLimitMb = () => Math.round(getHeapStatistics().heap_size_limit / 2 ** 20);

/**
 * Commands that run things here rather than ask a worker: the worker itself, the Temporal dev
 * server, the demo, the destination catalog. Their heavy modules load only when they run.
 */
export function registerLocal(program: Command): void {
  program
    .command('worker')
    .description(
      'Run a worker: refresh workflows and their activities for every connector ' +
        '(database: DELTASYNC_DATABASE_URL, tenants: DELTASYNC_TENANTS_FILE, secrets: environment or DELTASYNC_SECRETS_FILE)',
    )
    .summary('Run a worker (refresh workflows and activities; /metrics, /healthz)')
    .addOption(
      new Option('--metrics-port <port>', 'port of /metrics (Prometheus) and /healthz; 0 turns them off')
        .argParser(port)
        .env('DELTASYNC_METRICS_PORT')
        .default(9464),
    )
    .addOption(
      new Option(
        '--host <host>',
        'interface /metrics and /healthz listen on (default 127.0.0.1; 0.0.0.0 for every interface)',
      ).env('DELTASYNC_METRICS_HOST'),
    )
    .addOption(
      new Option(
        '--tenants-file <file>',
        'tenants policy: namespaces, dataset access and allowed destinations per tenant (docs/security.md); ' +
          'without it the worker serves one tenant, default, in --namespace',
      ).env('DELTASYNC_TENANTS_FILE'),
    )
    .addOption(
      new Option(
        '--shutdown-grace <seconds>',
        'on SIGTERM/SIGINT, let running activities finish this long (default 30; 0: stop them at once)',
      ).argParser(nonNegativeNumber),
    )
    .addOption(
      new Option(
        '--redis-url <url>',
        "Redis that holds destination accounts' rate limits for every worker naming the same one " +
          '(without it each worker process keeps its own budget)',
      ).env('DELTASYNC_REDIS_URL'),
    )
    .addOption(
      new Option(
        '--activity-slots <n>',
        'activities this process runs at once, shared equally by its namespaces (default: 100 per namespace)',
      )
        .argParser(positiveInt)
        .env('DELTASYNC_ACTIVITY_SLOTS'),
    )
    .addOption(
      new Option('--cached-workflows <n>', 'workflows this process keeps in memory, over all namespaces')
        .argParser(positiveInt)
        .env('DELTASYNC_CACHED_WORKFLOWS'),
    )
    .addOption(
      new Option(
        '--sdk-metrics <host:port>',
        "serve the Temporal SDK's own Prometheus metrics here (task slots, schedule-to-start latency)",
      ).env('DELTASYNC_SDK_METRICS_ADDRESS'),
    )
    .addOption(
      new Option(
        '--alert-check-seconds <n>',
        "seconds between the alert watchdog's sweeps of each tenant: undelivered alerts sent again, " +
          'noSuccessWithinHours judged between runs (0: no watchdog)',
      )
        .argParser(nonNegativeNumber)
        .default(ALERT_CHECK_SECONDS)
        .env('DELTASYNC_ALERT_CHECK_SECONDS'),
    )
    .addOption(
      new Option('--db-pool <n>', 'database connections of this process (MySQL/MariaDB; default 8)')
        .argParser(positiveInt)
        .env('DELTASYNC_DB_POOL_MAX'),
    )
    .addHelpText(
      'after',
      () =>
        '\nUses the global --address, --namespace and --task-queue. A send in flight resumes after its last\n' +
        'committed batch on another worker, so stopping a worker loses nothing.\n' +
        `\nMemory: bin/deltasync caps a worker's V8 old space at DELTASYNC_WORKER_HEAP_MB (default ${WORKER_HEAP_MB})\n` +
        `unless NODE_OPTIONS sets --max-old-space-size; this process's heap limit: ${heapLimitMb()} MB.`,
    )
    .action(
      async (
        opts: {
          metricsPort: number;
          host?: string;
          shutdownGrace?: number;
          tenantsFile?: string;
          redisUrl?: string;
          activitySlots?: number;
          cachedWorkflows?: number;
          dbPool?: number;
          sdkMetrics?: string;
          alertCheckSeconds: number;
        },
        cmd: Command,
      ) => {
        const globals = globalsOf(cmd);
        const { runWorkerService } = await import('../../worker/service.js');
        // The worker logs as JSON on stdout; a failure to start still ends with one line on stderr
        // and exit code 3 when Temporal or the database cannot be reached (see errors.ts).
        await runWorkerService({
          address: globals.address,
          namespace: globals.namespace,
          taskQueue: globals.taskQueue,
          metricsPort: opts.metricsPort,
          ...(opts.tenantsFile ? { tenantsFile: opts.tenantsFile } : {}),
          ...(opts.host ? { host: opts.host } : {}),
          ...(opts.shutdownGrace !== undefined ? { shutdownGraceSeconds: opts.shutdownGrace } : {}),
          redisUrl: opts.redisUrl,
          activitySlots: opts.activitySlots,
          cachedWorkflows: opts.cachedWorkflows,
          dbPoolMax: opts.dbPool,
          sdkMetricsAddress: opts.sdkMetrics,
          alertCheckSeconds: opts.alertCheckSeconds,
        });
      },
    );

  program
    .command('dev-server')
    .description('Start the Temporal dev server with its Web UI, persisting to the data folder')
    .addOption(new Option('--port <port>', 'gRPC port').argParser(positiveInt).default(7233))
    .addOption(new Option('--ui-port <port>', 'Web UI port').argParser(positiveInt).default(8233))
    .action(async (opts: { port: number; uiPort: number }) => {
      const [{ DefaultLogger, Runtime }, { startDevServer }] = await Promise.all([
        import('@temporalio/worker'),
        import('../../temporal/dev-server.js'),
      ]);
      Runtime.install({ logger: new DefaultLogger('WARN') });
      // A namespace per tenant of the tenants policy, when one is set.
      const { TenantDirectory } = await import('../../tenancy/policy.js');
      const namespaces = process.env.DELTASYNC_TENANTS_FILE
        ? TenantDirectory.fromFile(process.env.DELTASYNC_TENANTS_FILE).namespaces()
        : [];
      const server = await startDevServer({
        namespaces,
        ui: true,
        port: opts.port,
        uiPort: opts.uiPort,
        dbFilename: path.join(dataDir(), 'temporal.sqlite'),
      });
      print(`Temporal dev server on ${server.address}, Web UI ${server.uiUrl}. Ctrl-C stops it.`);
      // The server is a child of the Temporal SDK's native runtime, which holds nothing open on
      // Node's event loop: without a handle of our own, Node would exit (and take the server along).
      const keepAlive = setInterval(() => undefined, 60_000);
      await new Promise((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      clearInterval(keepAlive);
      await server.stop();
    });

  program
    .command('demo')
    .description('Run the whole method end to end on a local Temporal dev server, database and list emulator')
    .summary('The whole method end to end, locally')
    .addOption(
      new Option('--customers <n>', 'customers in the demo dataset').argParser(positiveInt).default(100_000),
    )
    .option('--keep-running', 'keep the dev server, Web UI and worker up for inspection until Ctrl-C')
    .addOption(
      new Option('--port <port>', 'Temporal gRPC port (default 7233, or a free one)').argParser(positiveInt),
    )
    .addOption(
      new Option('--ui-port <port>', 'Temporal Web UI port (default gRPC port + 1000)').argParser(
        positiveInt,
      ),
    )
    .action(async (opts: { customers: number; keepRunning?: boolean; port?: number; uiPort?: number }) => {
      const { runDemo } = await import('../demo.js');
      process.exitCode = await runDemo({ ...opts, keepRunning: Boolean(opts.keepRunning) });
    });

  program
    .command('destinations')
    .description('List the destination types a connector can use (docs/connectors.md has the details)')
    .summary('Destination types')
    .option('--json', 'print JSON for scripts')
    .action(async (opts: { json?: boolean }) => {
      // The catalog's descriptions only: no destination module is loaded.
      const { destinationCatalog } = await import('../../connectors/catalog.js');
      const rows = destinationCatalog.map(({ type, description }) => ({ type, description }));
      if (opts.json) printJson(rows);
      else
        print(
          table(
            ['type', 'description'],
            rows.map((r) => [r.type, r.description]),
          ),
        );
    });
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('must be a port (0-65535)');
  return n;
}
