/**
 * Benchmark: the deltalog update of a dataset that follows a trigger change source (only the keys
 * touched since the last refresh) against the full compare of the same dataset, side by side in
 * one run, on MariaDB (issue 13: target ≥ 50× at 10M rows and 0.1% churn).
 *
 *   npm run bench:changes                             # 10,000,000 rows, 0.1% churn
 *   npx tsx bench/change-source.ts --rows 1000000 --churn 0.1
 *
 * It creates (and at the end drops) its own database `deltasync_bench_changes` on the server named
 * by --url / DELTASYNC_BENCH_MYSQL_URL, so no other data is touched. See docs/benchmarks.md.
 * Timings never decide the exit code; a wrong result does (exit 1).
 */
import { performance } from 'node:perf_hooks';
import { Command } from 'commander';
import knex from 'knex';
import { updateFollowingChanges } from '../src/core/change-tracking';
import { attributeHash, directReader, type DatasetDefinition } from '../src/core/dataset';
import { updateDeltalog } from '../src/core/deltalog';
import { databaseConfig, migrateToLatest, selectRows, type Db } from '../src/db';
import { bufferPoolSize, createBenchDatabase, resizeBufferPool } from './bench-database';
import { BENCH_MYSQL_URL, byteSize, percentage, wholeCount } from './options';
import { timeStatements, type TimedStatement } from './statements';

const BENCH_DATABASE = 'deltasync_bench_changes';
const TARGET_SPEEDUP = 50;
const FOLLOWED = 'default/followed';
const COMPARED = 'default/compared';
const T0 = Date.UTC(2026, 11, 4);

const dataset: DatasetDefinition = {
  table: 'customers',
  key: 'customer_key',
  attributes: ['email', 'name', 'country', 'segment'],
  changes: { source: 'triggers', fullCompareHours: 24 },
};
const { changes: _none, ...unfollowed } = dataset;

interface Options {
  url: string;
  rows: number;
  churnPercent: number;
  /** innodb_buffer_pool_size for the run (restored afterwards); absent: the server's as it is. */
  bufferPool?: number;
  keep: boolean;
}

function parseOptions(argv: string[]): Options {
  const command = new Command('bench/change-source.ts')
    .description('Incremental deltalog update from a trigger change source vs the full compare, side by side')
    .option('--url <url>', 'MariaDB server', BENCH_MYSQL_URL)
    .option('--rows <n>', 'dataset rows', wholeCount, 10_000_000)
    .option('--churn <percent>', 'share of the rows changed (a third new, deleted, renamed)', percentage, 0.1)
    .option(
      '--buffer-pool <size>',
      "InnoDB buffer pool for the run, e.g. 4G (restored afterwards; default: the server's)",
      byteSize,
    )
    .option('--keep', 'keep the benchmark database afterwards', false)
    .parse(argv);
  const o = command.opts<{ url: string; rows: number; churn: number; bufferPool?: number; keep: boolean }>();
  return { url: o.url, rows: o.rows, churnPercent: o.churn, bufferPool: o.bufferPool, keep: o.keep };
}

const log = (line: string) => console.log(`[bench:changes] ${line}`);
const secs = (ms: number) => (ms / 1000).toFixed(2);
const int = (n: number) => n.toLocaleString('en-US');

async function timed<T>(label: string, work: () => Promise<T>): Promise<{ ms: number; result: T }> {
  const started = performance.now();
  const result = await work();
  const ms = performance.now() - started;
  log(`${label} (${secs(ms)} s)`);
  return { ms, result };
}

async function openBenchDatabase(serverUrl: string): Promise<Db> {
  const db = knex(databaseConfig(await createBenchDatabase(serverUrl, BENCH_DATABASE)));
  await migrateToLatest(db);
  return db;
}

const seedColumns = (n: string) =>
  `CONCAT('cus_', LPAD(${n}, 10, '0')), CONCAT('user', ${n}, '@mail', ${n} % 97, '.example.com'), ` +
  `CONCAT('Customer ', ${n}), ELT(1 + ${n} % 8, 'DE', 'FR', 'NL', 'BE', 'ES', 'IT', 'AT', 'PL'), ` +
  `ELT(1 + ${n} % 4, 'retail', 'smb', 'enterprise', 'public')`;

async function seed(db: Db, rows: number): Promise<void> {
  await db.raw(
    `CREATE TABLE customers (
       customer_key VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
       email VARCHAR(255) NULL, name VARCHAR(255) NULL, country CHAR(2) NULL, segment VARCHAR(32) NULL
     ) ENGINE=InnoDB`,
  );
  const chunk = 1_000_000;
  for (let first = 1; first <= rows; first += chunk) {
    const last = Math.min(rows, first + chunk - 1);
    await timed(`seeded rows ${int(first)}–${int(last)}`, () =>
      db.raw(`INSERT INTO customers SELECT ${seedColumns('seq')} FROM seq_${first}_to_${last}`),
    );
  }
}

/** The churn, through the triggers: a third new keys, a third deleted, a third renamed. */
async function churn(db: Db, rows: number, percent: number): Promise<number> {
  const total = Math.max(3, Math.round((rows * percent) / 100));
  const third = Math.floor(total / 3);
  const stride = Math.floor(rows / total);
  const picked = (offset: number, count: number) =>
    `SELECT ${offset} + seq * ${stride} AS n FROM seq_0_to_${count - 1}`;
  await db.raw(
    `INSERT INTO customers SELECT CONCAT('cus_', LPAD(p.n, 10, '0'), '-new'), 'new@example.com', 'New', 'DE', 'smb' FROM (${picked(1, third)}) p`,
  );
  await db.raw(
    `DELETE c FROM customers c JOIN (${picked(2, third)}) p ON c.customer_key = CONCAT('cus_', LPAD(p.n, 10, '0'))`,
  );
  await db.raw(
    `UPDATE customers c JOIN (${picked(3, total - 2 * third)}) p ON c.customer_key = CONCAT('cus_', LPAD(p.n, 10, '0')) SET c.name = CONCAT(c.name, ' (renamed)')`,
  );
  return total;
}

/** The keys the churn touched, distinct, kept aside for the least-SQL floor (untimed). */
async function keepTouchedKeys(db: Db): Promise<void> {
  await db.raw(
    `CREATE TABLE bench_touched (record_key VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY) ENGINE=InnoDB`,
  );
  await db.raw(
    'INSERT IGNORE INTO bench_touched SELECT record_key FROM change_journal WHERE record_key IS NOT NULL',
  );
}

/**
 * The floor an incremental update is measured against: the touched keys given, distinct, in a
 * table, and the two statements that apply them to the compared connector's deltalog (new and
 * changed keys, then removals), in one transaction, with no journal to claim, no positions, no
 * counts. What is left is the rows' own reads and writes.
 */
async function applyTouchedKeysRaw(db: Db, now: number): Promise<void> {
  const hash = attributeHash('mysql', dataset);
  await db.transaction(async (trx) => {
    await trx.raw(
      `INSERT INTO deltalog (connector_id, record_key, in_dataset, attr_hash, updated_at, on_remote, committed_at, attempts)
       SELECT ?, src.customer_key, 1, ${hash.sql}, ?, 0, NULL, 0
       FROM bench_touched t JOIN customers src ON src.customer_key = t.record_key
       LEFT JOIN deltalog dl ON dl.connector_id = ? AND dl.record_key = src.customer_key
       WHERE dl.record_key IS NULL OR dl.in_dataset = 0 OR dl.attr_hash <> ${hash.sql}
       ON DUPLICATE KEY UPDATE in_dataset = 1, attr_hash = VALUES(attr_hash), updated_at = VALUES(updated_at),
         committed_at = NULL, attempts = 0, last_error = NULL`,
      [COMPARED, ...hash.bindings, now, COMPARED, ...hash.bindings],
    );
    await trx.raw(
      `UPDATE deltalog dl JOIN bench_touched t ON dl.connector_id = ? AND dl.record_key = t.record_key
       LEFT JOIN customers c ON c.customer_key = dl.record_key
       SET dl.in_dataset = 0, dl.updated_at = ?, dl.committed_at = NULL, dl.attempts = 0, dl.last_error = NULL
       WHERE dl.in_dataset = 1 AND c.customer_key IS NULL`,
      [COMPARED, now],
    );
  });
}

/**
 * Where a step's time went: its statements' times summed by their first words (read-ahead
 * statements run beside the others, so the sum can exceed the step's time).
 */
function logStatementTimes(statements: TimedStatement[]): void {
  const spent = new Map<string, { n: number; ms: number }>();
  for (const { sql, ms } of statements) {
    const kind = sql.replace(/\s+/g, ' ').slice(0, 72);
    const total = spent.get(kind) ?? { n: 0, ms: 0 };
    spent.set(kind, { n: total.n + 1, ms: total.ms + ms });
  }
  const top = [...spent.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, 8);
  for (const [kind, { n, ms }] of top) log(`  ${secs(ms)} s  ×${n}  ${kind}`);
}

/** Row count and an order-independent checksum of a connector's deltalog. */
async function fingerprint(db: Db, connector: string): Promise<string> {
  const [row] = await selectRows<{ n: number; s: string | null }>(
    db,
    `SELECT COUNT(*) AS n, SUM(CRC32(CONCAT_WS('|', record_key, in_dataset, attr_hash, on_remote, updated_at, COALESCE(committed_at, '-'), attempts))) AS s
     FROM deltalog WHERE connector_id = ?`,
    [connector],
  );
  return `${row!.n}:${row!.s ?? 0}`;
}

async function main(): Promise<number> {
  const options = parseOptions(process.argv);
  log(`${int(options.rows)} rows, ${options.churnPercent}% churn, MariaDB at ${new URL(options.url).host}`);
  const db = await openBenchDatabase(options.url);
  const restorePool =
    options.bufferPool === undefined ? undefined : await resizeBufferPool(db, options.bufferPool);
  const pool = await bufferPoolSize(db);
  log(
    `InnoDB buffer pool ${int(pool / 1024 ** 2)} MiB${restorePool === undefined ? " (the server's own)" : ' for this run'}`,
  );
  try {
    await seed(db, options.rows);
    // Both deltalogs at the seeded state; the followed one installs its triggers and positions.
    await timed('full compare of the followed connector (installs the triggers)', () =>
      updateFollowingChanges(db, FOLLOWED, dataset, directReader(db, dataset), T0),
    );
    await timed('full compare of the compared connector', () => updateDeltalog(db, COMPARED, unfollowed, T0));
    const changed = await timed('churn through the triggers', () =>
      churn(db, options.rows, options.churnPercent),
    );
    await keepTouchedKeys(db);
    await db.raw('FLUSH TABLES customers, deltalog, change_journal FOR EXPORT');
    await db.raw('UNLOCK TABLES');

    const now = T0 + 60_000;
    const { result: incremental, statements } = await timeStatements(db, () =>
      timed('incremental update (followed connector)', () =>
        updateFollowingChanges(db, FOLLOWED, dataset, directReader(db, dataset), now),
      ),
    );
    logStatementTimes(statements);
    // After the incremental update, so the touched rows' dataset pages are already cached: the
    // floor at its cheapest. It leaves the compared deltalog as the full compare would (checked
    // below: the full compare then changes nothing more, and the two deltalogs must be equal).
    const floor = await timed('least SQL for the touched keys (compared connector)', () =>
      applyTouchedKeysRaw(db, now),
    );
    const full = await timed('full compare (compared connector)', () =>
      updateDeltalog(db, COMPARED, unfollowed, now),
    );

    const [a, b] = [await fingerprint(db, FOLLOWED), await fingerprint(db, COMPARED)];
    const right =
      incremental.result.compare.mode === 'incremental' &&
      incremental.result.compare.touchedKeys === changed.result &&
      a === b;
    if (!right) {
      log(
        `WRONG RESULT: compare ${JSON.stringify(incremental.result.compare)}, changed ${changed.result}, deltalogs ${a} vs ${b}`,
      );
      return 1;
    }
    const speedup = full.ms / incremental.ms;
    console.log(
      `\n| rows | churn | buffer pool | touched keys | full compare s | incremental s | least SQL s | speedup | least SQL's speedup |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n` +
        `| ${int(options.rows)} | ${options.churnPercent}% | ${int(pool / 1024 ** 2)} MiB | ${int(changed.result)} | ${secs(full.ms)} | ${secs(incremental.ms)} | ${secs(floor.ms)} | ${speedup.toFixed(1)}× | ${(full.ms / floor.ms).toFixed(1)}× |\n`,
    );
    log(
      `the least SQL that applies the touched keys (given, distinct, in a table) is ${(full.ms / floor.ms).toFixed(1)}× faster than the full compare; the incremental update takes ${(incremental.ms / floor.ms).toFixed(2)}× its time`,
    );
    console.log(
      `${speedup >= TARGET_SPEEDUP ? 'TARGET MET' : 'TARGET MISSED'}: incremental update ${speedup.toFixed(1)}× faster than the full compare ` +
        `at ${int(options.rows)} rows and ${options.churnPercent}% churn (target ≥ ${TARGET_SPEEDUP}×${options.rows < 10_000_000 ? '; the target is set at 10M rows' : ''})`,
    );
    return 0;
  } finally {
    if (!options.keep) await db.raw(`DROP DATABASE IF EXISTS \`${BENCH_DATABASE}\``);
    if (restorePool !== undefined) await resizeBufferPool(db, restorePool);
    await db.destroy();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
