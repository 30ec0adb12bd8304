import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runLoadTest, targetsOf, type LoadTestOptions } from '../bench/load-test';
import { mysqlServerUrl } from './helpers/databases';

/**
 * The short version of `npm run bench:load` (bench/load.ts): two worker processes, the real
 * Temporal dev server, MariaDB and Redis; 24 connectors in six tenants over three shared
 * namespaces, one dataset much larger than the rest, every tenant's connectors on one
 * destination account with a limit. Everything is refreshed at once, then again after a churn.
 */
test(
  'two workers: every list exact, no account above its limit, tenants finish together',
  { timeout: 600_000 },
  async () => {
    const options: LoadTestOptions = {
      serverUrl: mysqlServerUrl,
      database: `deltasync_load_test_${process.pid}`,
      tenants: 6,
      connectorsPerTenant: 4,
      tenantsPerNamespace: 2,
      workers: 2,
      largeDatasets: 1,
      largeRows: 20_000,
      smallRows: [50, 400],
      churnPercent: 2,
      accountLimit: { callsPerSecond: 10, maxConcurrent: 2 },
      recordsPerCall: 1000,
      latencyMs: 20,
      activitySlots: 8,
      dbPool: 4,
      redisUrl: process.env.DELTASYNC_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/3',
      log: () => undefined,
    };
    const report = await runLoadTest(options);
    for (const target of targetsOf(report, options)) assert.ok(target.met, target.text);
    // The large dataset's account made calls at its limit's pace; the others stayed within theirs.
    assert.equal(report.accounts.length, 6);
    assert.ok(report.accounts.every((a) => a.calls > 0));
    // Each worker serves the SDK's own metrics (--sdk-metrics): how long activities waited for a slot.
    assert.ok(report.scheduleToStartMs.every((ms) => Number.isFinite(ms) && ms >= 0));
    assert.ok(
      report.peakDbConnections <= report.dbConnectionBound,
      `${report.peakDbConnections} connections`,
    );
    // A history does not grow with the dataset: 20,000 records take the events 300 do.
    assert.ok(
      report.history.largeMaxEvents <= report.history.smallMaxEvents + 10,
      `large ${report.history.largeMaxEvents} events, small ${report.history.smallMaxEvents}`,
    );
  },
);
