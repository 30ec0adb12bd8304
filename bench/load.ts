/**
 * `npm run bench:load`: many workers, a thousand connectors (issue 14). Two worker processes
 * (default), the real Temporal dev server and MariaDB, Redis holding the destination accounts'
 * budgets, an http-list receiver in a process of its own; 1,000 connectors in 50 tenants (five per
 * namespace), three of them over 1M rows, every tenant's connectors on one destination account
 * limited in the tenants policy. All are refreshed at once, then again after a 1% churn. See
 * docs/benchmarks.md for what it prints and docs/deploying.md for the settings it exercises.
 */
import { Command } from 'commander';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { describeReport, runLoadTest, targetsOf, type LoadTestOptions } from './load-test';
import { BENCH_MYSQL_URL, percentage, positiveNumber, wholeCount } from './options';

function parseOptions(argv: string[]): LoadTestOptions {
  const opts = new Command('bench:load')
    .description('many workers and a thousand connectors: limits, fairness, exact lists')
    .option(
      '--url <url>',
      'MariaDB server (the bench creates and drops deltasync_bench_load)',
      BENCH_MYSQL_URL,
    )
    .option(
      '--redis <url>',
      'Redis for the budgets (the bench empties this database)',
      'redis://127.0.0.1:6379/3',
    )
    .option('--tenants <n>', 'tenants', wholeCount, 50)
    .option('--connectors <n>', 'connectors per tenant', wholeCount, 20)
    .option('--tenants-per-namespace <n>', 'tenants sharing a Temporal namespace', wholeCount, 5)
    .option('--workers <n>', 'worker processes', wholeCount, 2)
    .option('--large <n>', 'connectors over a large dataset', wholeCount, 3)
    .option('--large-rows <n>', 'rows of a large dataset', wholeCount, 1_000_000)
    .option('--churn <percent>', 'churn before the second cycle', percentage, 1)
    .option('--calls-per-second <n>', "every tenant's account limit", positiveNumber, 20)
    .option('--max-concurrent <n>', "every tenant's account concurrency", wholeCount, 2)
    .option('--latency <ms>', 'time the receiver takes per call', wholeCount, 20)
    .option('--activity-slots <n>', 'activities per worker process', wholeCount, 20)
    .option('--db-pool <n>', 'database connections per worker process', wholeCount, 10)
    .parse(argv)
    .opts<{
      url: string;
      redis: string;
      tenants: number;
      connectors: number;
      tenantsPerNamespace: number;
      workers: number;
      large: number;
      largeRows: number;
      churn: number;
      callsPerSecond: number;
      maxConcurrent: number;
      latency: number;
      activitySlots: number;
      dbPool: number;
    }>();
  return {
    serverUrl: opts.url,
    database: 'deltasync_bench_load',
    tenants: opts.tenants,
    connectorsPerTenant: opts.connectors,
    tenantsPerNamespace: opts.tenantsPerNamespace,
    workers: opts.workers,
    largeDatasets: Math.min(opts.large, opts.tenants),
    largeRows: opts.largeRows,
    smallRows: [100, 5_000],
    churnPercent: opts.churn,
    accountLimit: { callsPerSecond: opts.callsPerSecond, maxConcurrent: opts.maxConcurrent },
    recordsPerCall: 1000,
    latencyMs: opts.latency,
    activitySlots: opts.activitySlots,
    dbPool: opts.dbPool,
    redisUrl: opts.redis,
    log: (line) => console.log(`[load] ${line}`),
  };
}

async function main(): Promise<number> {
  const options = parseOptions(process.argv);
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const report = await runLoadTest(options);
  console.log('');
  for (const line of describeReport(report)) console.log(line);
  for (const wrong of report.wrongLists.slice(0, 10)) console.log(`WRONG LIST: ${wrong}`);
  console.log('');
  for (const target of targetsOf(report, options)) {
    console.log(`${target.met ? 'TARGET MET' : 'TARGET MISSED'}: ${target.text}`);
  }
  return report.wrongLists.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
