/**
 * Benchmark: the engine's full-compare deltalog update (`updateDeltalog`) against a raw
 * two-statement SQL floor, on MariaDB, side by side in one run.
 *
 *   npm run bench                       # 1,000,000 rows, 1% churn, 3 repetitions
 *   npx tsx bench/deltalog-update.ts --rows 200000 --churn 1 --repetitions 3
 *
 * It creates (and at the end drops) its own database `deltasync_bench` on the server named by
 * DELTASYNC_BENCH_MYSQL_URL (default mysql://root@127.0.0.1:3306/test), so no other data is touched.
 * See docs/benchmarks.md. Timings never decide the exit code; a wrong result does (exit 1).
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { Command, InvalidArgumentError, Option } from 'commander';
import knex, { type Knex } from 'knex';
import { databaseConfig, openDatabase, type Db } from '../src/db';
import { createBenchDatabase } from './bench-database';
import { timeStatements, type TimedStatement } from './statements';
import { attributeHash, type DatasetDefinition, type Fragment } from '../src/core/dataset';
import { pendingCounts, updateDeltalog, type PendingCounts } from '../src/core/deltalog';

const BENCH_DATABASE = 'deltasync_bench';
const CONNECTOR = 'bench';
const FLOOR_TABLE = 'dl_floor';
const TARGET_RATIO = 1.5;
/** Epoch milliseconds of the synced state; repetition r runs its update at T0 + r seconds. */
const T0 = Date.UTC(2026, 10, 21);

const dataset: DatasetDefinition = {
  table: 'customers',
  key: 'customer_key',
  attributes: ['email', 'name', 'country', 'segment'],
};

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

interface Options {
  url: string;
  rows: number;
  churnPercent: number;
  repetitions: number;
  floorIsolation: FloorIsolation;
  engineModule?: string;
  explain: boolean;
  keep: boolean;
}

/** Isolation of the floor's session. The engine always runs its statements in READ COMMITTED. */
const FLOOR_ISOLATIONS = ['read-committed', 'repeatable-read'] as const;
type FloorIsolation = (typeof FLOOR_ISOLATIONS)[number];

function positiveInteger(value: string): number {
  const n = Number(value.replace(/[_,]/g, ''));
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

function percent(value: string): number {
  const n = Number(value.replace(/%$/, ''));
  if (!Number.isFinite(n) || n <= 0 || n > 50)
    throw new InvalidArgumentError('expected a percentage in (0, 50]');
  return n;
}

function parseOptions(argv: string[]): Options {
  const env = process.env;
  const program = new Command()
    .name('deltalog-update')
    .description(
      'Time the engine full-compare deltalog update against a raw two-statement SQL floor (MariaDB).',
    )
    .option(
      '--url <url>',
      'server URL (env DELTASYNC_BENCH_MYSQL_URL); the bench uses its own database `deltasync_bench` there',
      env.DELTASYNC_BENCH_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test',
    )
    .option('--rows <n>', 'dataset rows (env DELTASYNC_BENCH_ROWS)', positiveInteger, 1_000_000)
    .option('--churn <percent>', 'churn per repetition, in percent (env DELTASYNC_BENCH_CHURN)', percent, 1)
    .option('--repetitions <n>', 'timed repetitions (env DELTASYNC_BENCH_REPETITIONS)', positiveInteger, 3)
    .option(
      '--explain',
      'print EXPLAIN for the engine and floor statements after the first repetition',
      false,
    )
    .addOption(
      new Option(
        '--floor-isolation <level>',
        "isolation of the floor's session: read-committed (as the engine's statements) or repeatable-read (InnoDB's default)",
      )
        .choices(FLOOR_ISOLATIONS)
        .default('read-committed'),
    )
    .option(
      '--engine-module <file>',
      'time `updateDeltalog` from this module (a modified copy of src/core/deltalog.ts) instead of the real one',
    )
    .option('--keep', 'keep the `deltasync_bench` database afterwards (for investigation)', false)
    .parse(argv);
  const opts = program.opts<{
    url: string;
    rows: number;
    churn: number;
    repetitions: number;
    floorIsolation: FloorIsolation;
    engineModule?: string;
    explain: boolean;
    keep: boolean;
  }>();
  // Environment variables apply unless the flag was given on the command line.
  const fromEnv = <T>(flag: string, name: string, parse: (v: string) => T, fallback: T): T => {
    const raw = env[name];
    if (program.getOptionValueSource(flag) === 'cli' || raw === undefined || raw === '') return fallback;
    try {
      return parse(raw);
    } catch (error) {
      return program.error(`${name}=${raw}: ${(error as Error).message}`);
    }
  };
  return {
    url: opts.url,
    rows: fromEnv('rows', 'DELTASYNC_BENCH_ROWS', positiveInteger, opts.rows),
    churnPercent: fromEnv('churn', 'DELTASYNC_BENCH_CHURN', percent, opts.churn),
    repetitions: fromEnv('repetitions', 'DELTASYNC_BENCH_REPETITIONS', positiveInteger, opts.repetitions),
    explain: opts.explain,
    floorIsolation: opts.floorIsolation,
    engineModule: opts.engineModule,
    keep: opts.keep,
  };
}

// ---------------------------------------------------------------------------------------------
// Output helpers
// ---------------------------------------------------------------------------------------------

const started = performance.now();
const clock = () => `[${((performance.now() - started) / 1000).toFixed(1).padStart(6)}s]`;
const log = (message: string) => console.log(`${clock()} ${message}`);
const int = (n: number) => n.toLocaleString('en-US');
const secs = (ms: number) => (ms / 1000).toFixed(2);

/** Run a long untimed step with a progress line: what it does, then how long it took. */
async function step<T>(label: string, work: () => Promise<T>): Promise<T> {
  const t = performance.now();
  const result = await work();
  log(`${label} (${secs(performance.now() - t)}s)`);
  return result;
}

async function timed(work: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await work();
  return performance.now() - t;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

// ---------------------------------------------------------------------------------------------
// SQL
// ---------------------------------------------------------------------------------------------

async function select<T>(db: Db, sql: string, bindings: Knex.RawBinding[] = []): Promise<T[]> {
  const [found] = (await db.raw(sql, bindings)) as [T[]];
  return found;
}

/** The dataset's columns as a function of the sequence number `n` (the seeded, base state). */
const seed = (n: string) => ({
  key: `CONCAT('cus_', LPAD(${n}, 10, '0'))`,
  email: `CONCAT('user', ${n}, '@mail', ${n} % 97, '.example.com')`,
  name: `CONCAT('Customer ', ${n})`,
  country: `ELT(1 + ${n} % 8, 'DE', 'FR', 'NL', 'BE', 'ES', 'IT', 'AT', 'PL')`,
  segment: `ELT(1 + ${n} % 4, 'retail', 'smb', 'enterprise', 'public')`,
});
const seedColumns = (n: string) => {
  const s = seed(n);
  return `${s.key}, ${s.email}, ${s.name}, ${s.country}, ${s.segment}`;
};

/** The engine's attribute hash (src/core/dataset.ts) over the dataset aliased `src`. */
const hash: Fragment = attributeHash('mysql', dataset);

/**
 * The floor: the two statements a DBA would write by hand, against `dl_floor` (same definition as
 * `deltalog`), the upsert reading the same MD5 through a derived table `ds`; no bad-row checks, no
 * transaction. The removal joins the dataset table itself: MariaDB 10.11 materializes a derived
 * table in a multi-table UPDATE (EXPLAIN shows <derived2> with an auto key), which would slow the
 * floor down rather than measure it.
 */
function floorStatements(now: number): Fragment[] {
  const columns =
    'connector_id, record_key, in_dataset, attr_hash, on_remote, updated_at, committed_at, attempts';
  const upsert: Fragment = {
    sql:
      `INSERT INTO ${FLOOR_TABLE} (${columns}) ` +
      `SELECT ?, ds.k, 1, ds.h, 0, ?, NULL, 0 ` +
      `FROM (SELECT src.customer_key AS k, ${hash.sql} AS h FROM customers src) ds ` +
      `LEFT JOIN ${FLOOR_TABLE} dl ON dl.connector_id = ? AND dl.record_key = ds.k ` +
      `WHERE dl.record_key IS NULL OR dl.in_dataset = 0 OR dl.attr_hash <> ds.h ` +
      `ON DUPLICATE KEY UPDATE in_dataset = 1, attr_hash = VALUES(attr_hash), updated_at = VALUES(updated_at), ` +
      `committed_at = NULL, attempts = 0, last_error = NULL`,
    bindings: [CONNECTOR, now, ...hash.bindings, CONNECTOR],
  };
  const remove: Fragment = {
    sql:
      `UPDATE ${FLOOR_TABLE} dl LEFT JOIN customers ds ON ds.customer_key = dl.record_key ` +
      `SET dl.in_dataset = 0, dl.updated_at = ?, dl.committed_at = NULL, dl.attempts = 0, dl.last_error = NULL ` +
      `WHERE dl.connector_id = ? AND dl.in_dataset = 1 AND ds.customer_key IS NULL`,
    bindings: [now, CONNECTOR],
  };
  return [upsert, remove];
}

/** A one-connection pool whose session runs at the given isolation level (autocommit stays on). */
function floorConnection(url: string, isolation: FloorIsolation): Db {
  const config = databaseConfig(url);
  const level = isolation.replace('-', ' ').toUpperCase();
  return knex({
    ...config,
    pool: {
      min: 1,
      max: 1,
      afterCreate(
        conn: { query(sql: string, callback: (error: Error | null) => void): void },
        done: (error: Error | null, conn: unknown) => void,
      ) {
        conn.query(`SET SESSION TRANSACTION ISOLATION LEVEL ${level}`, (error) => done(error, conn));
      },
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Setup, churn and resets (all untimed)
// ---------------------------------------------------------------------------------------------

interface Churn {
  added: number;
  deleted: number;
  changed: number;
}

function churnSizes(rows: number, churnPercent: number): Churn {
  const total = Math.max(3, Math.round((rows * churnPercent) / 100));
  const third = Math.floor(total / 3);
  return { added: third, deleted: third, changed: total - 2 * third };
}

async function seedDataset(db: Db, rows: number): Promise<void> {
  await db.raw(
    `CREATE TABLE customers (
       customer_key VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
       email VARCHAR(255) NULL,
       name VARCHAR(255) NULL,
       country CHAR(2) NULL,
       segment VARCHAR(32) NULL
     ) ENGINE=InnoDB`,
  );
  await step(`seeded customers with ${int(rows)} rows from seq_1_to_${rows}`, () =>
    db.raw(`INSERT INTO customers SELECT ${seedColumns('seq')} FROM seq_1_to_${rows}`),
  );
  // The churn plan: which base rows a repetition adds next to, deletes or changes.
  await db.raw(
    `CREATE TABLE churn_pick (
       n INT UNSIGNED NOT NULL PRIMARY KEY,
       action ENUM('add', 'delete', 'change') NOT NULL,
       base_key VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
       new_key VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
       KEY (action)
     ) ENGINE=InnoDB`,
  );
}

/** Both deltalogs in the synced state: every dataset key committed, on the remote, hash current. */
async function syncDeltalogs(db: Db): Promise<void> {
  await step(`filled deltalog with the synced state`, () =>
    db.raw(
      `INSERT INTO deltalog (connector_id, record_key, in_dataset, attr_hash, on_remote, updated_at, committed_at, attempts)
       SELECT ?, src.customer_key, 1, ${hash.sql}, 1, ?, ?, 0 FROM customers src`,
      [CONNECTOR, ...hash.bindings, T0, T0],
    ),
  );
  await db.raw(`CREATE TABLE ${FLOOR_TABLE} LIKE deltalog`);
  await step(`filled ${FLOOR_TABLE} (CREATE TABLE ${FLOOR_TABLE} LIKE deltalog) with the same rows`, () =>
    db.raw(`INSERT INTO ${FLOOR_TABLE} SELECT * FROM deltalog`),
  );
  await step('analyzed the tables', () => db.raw(`ANALYZE TABLE customers, deltalog, ${FLOOR_TABLE}`));
}

/**
 * Pick the churn of repetition `rep` (deterministic: it depends on `rep` only) and apply it to the
 * dataset: a third new keys (each sorting right after a picked key, so they land all over the key
 * range), a third deleted, a third with a changed attribute.
 */
async function applyChurn(db: Db, rows: number, churn: Churn, rep: number): Promise<void> {
  const total = churn.added + churn.deleted + churn.changed;
  await db.raw('TRUNCATE TABLE churn_pick');
  await db.raw(
    `INSERT INTO churn_pick (n, action, base_key, new_key)
     SELECT n, CASE WHEN rk <= ? THEN 'add' WHEN rk <= ? THEN 'delete' ELSE 'change' END,
            ${seed('n').key}, CONCAT(${seed('n').key}, '-r', ?)
     FROM (SELECT seq AS n, ROW_NUMBER() OVER (ORDER BY CRC32(CONCAT(?, ':', seq)), seq) AS rk
           FROM seq_1_to_${rows}) picked
     WHERE rk <= ?`,
    [churn.added, churn.added + churn.deleted, rep, rep, total],
  );
  const s = seed('p.n');
  await db.raw(
    `INSERT INTO customers SELECT p.new_key, ${s.email}, ${s.name}, ${s.country}, ${s.segment}
     FROM churn_pick p WHERE p.action = 'add'`,
  );
  await db.raw(
    `DELETE c FROM customers c JOIN churn_pick p ON p.base_key = c.customer_key WHERE p.action = 'delete'`,
  );
  await db.raw(
    `UPDATE customers c JOIN churn_pick p ON p.base_key = c.customer_key
     SET c.name = CONCAT(c.name, ' (renamed in repetition ', ?, ')') WHERE p.action = 'change'`,
    [rep],
  );
}

/** Undo a repetition: the dataset back to its seeded state, both deltalogs back to synced. */
async function resetRepetition(db: Db): Promise<void> {
  const s = seed('p.n');
  await db.raw(
    `DELETE c FROM customers c JOIN churn_pick p ON p.new_key = c.customer_key WHERE p.action = 'add'`,
  );
  await db.raw(
    `INSERT INTO customers SELECT ${seedColumns('p.n')} FROM churn_pick p WHERE p.action = 'delete'`,
  );
  await db.raw(
    `UPDATE customers c JOIN churn_pick p ON p.base_key = c.customer_key SET c.name = ${s.name}
     WHERE p.action = 'change'`,
  );
  for (const dl of ['deltalog', FLOOR_TABLE]) {
    await db.raw(
      `DELETE dl FROM ${dl} dl JOIN churn_pick p ON dl.connector_id = ? AND dl.record_key = p.new_key
       WHERE p.action = 'add'`,
      [CONNECTOR],
    );
    await db.raw(
      `UPDATE ${dl} dl JOIN churn_pick p ON dl.connector_id = ? AND dl.record_key = p.base_key
       JOIN customers src ON src.customer_key = p.base_key
       SET dl.in_dataset = 1, dl.attr_hash = ${hash.sql}, dl.on_remote = 1, dl.updated_at = ?,
           dl.committed_at = ?, dl.attempts = 0, dl.last_error = NULL
       WHERE p.action IN ('delete', 'change')`,
      [CONNECTOR, ...hash.bindings, T0, T0],
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------------------------

interface Checksum {
  rows: number;
  inDataset: number;
  digest: string;
}

/** Order-independent checksum over every column the update writes. */
async function checksum(db: Db, table: string): Promise<Checksum> {
  const row = `MD5(CONCAT_WS('|', record_key, in_dataset, COALESCE(attr_hash, '-'), on_remote, updated_at,
                COALESCE(committed_at, '-'), attempts, COALESCE(last_error, '-')))`;
  const [found] = await select<{ n: unknown; present: unknown; a: unknown; b: unknown }>(
    db,
    `SELECT COUNT(*) AS n, SUM(in_dataset) AS present,
            BIT_XOR(CAST(CONV(LEFT(${row}, 16), 16, 10) AS UNSIGNED)) AS a,
            BIT_XOR(CAST(CONV(RIGHT(${row}, 16), 16, 10) AS UNSIGNED)) AS b
     FROM ${table} WHERE connector_id = ?`,
    [CONNECTOR],
  );
  return {
    rows: Number(found?.n ?? 0),
    inDataset: Number(found?.present ?? 0),
    digest: `${BigInt(String(found?.a ?? 0)).toString(16)}:${BigInt(String(found?.b ?? 0)).toString(16)}`,
  };
}

/** `pendingCounts` of src/core/deltalog.ts, for the floor's table. */
async function floorPendingCounts(db: Db): Promise<PendingCounts> {
  const [row] = await select<{ additions: unknown; updates: unknown; deletions: unknown }>(
    db,
    `SELECT SUM(CASE WHEN in_dataset = 1 AND on_remote = 0 THEN 1 ELSE 0 END) AS additions,
            SUM(CASE WHEN in_dataset = 1 AND on_remote = 1 THEN 1 ELSE 0 END) AS updates,
            SUM(CASE WHEN in_dataset = 0 THEN 1 ELSE 0 END) AS deletions
     FROM ${FLOOR_TABLE} WHERE connector_id = ? AND committed_at IS NULL`,
    [CONNECTOR],
  );
  return {
    additions: Number(row?.additions ?? 0),
    updates: Number(row?.updates ?? 0),
    deletions: Number(row?.deletions ?? 0),
  };
}

const sameChecksum = (a: Checksum, b: Checksum) =>
  a.rows === b.rows && a.inDataset === b.inDataset && a.digest === b.digest;
const showCounts = (c: PendingCounts) => `+${c.additions} ~${c.updates} -${c.deletions}`;

// ---------------------------------------------------------------------------------------------
// Statement timing inside the engine (knex query events)
// ---------------------------------------------------------------------------------------------

type Phase = 'inspect: counts' | 'inspect: duplicates' | 'upsert' | 'mark removed' | 'other';

interface CapturedQuery extends TimedStatement {
  phase: Phase;
}

function phaseOf(sql: string): Phase {
  if (/^SELECT COUNT\(\*\) AS total/i.test(sql)) return 'inspect: counts';
  if (/^SELECT COUNT\(\*\) AS n FROM \(SELECT/i.test(sql)) return 'inspect: duplicates';
  if (/^INSERT INTO deltalog/i.test(sql)) return 'upsert';
  // The keys that left are found into a temporary table, then marked (core/deltalog.ts: no locks
  // on the dataset's rows).
  if (
    /^(UPDATE deltalog|INSERT (IGNORE )?INTO deltasync_gone|(CREATE|DROP) TEMPORARY TABLE (IF EXISTS )?deltasync_gone)/i.test(
      sql,
    )
  )
    return 'mark removed';
  return 'other';
}

/** The engine's statements, each with the phase it belongs to. */
async function captureQueries(db: Db, work: () => Promise<unknown>): Promise<CapturedQuery[]> {
  const { statements } = await timeStatements(db, work);
  return statements.map((q) => ({ ...q, phase: phaseOf(q.sql) }));
}

async function explain(db: Db, title: string, sql: string, bindings: readonly unknown[]): Promise<void> {
  const plan = await select<Record<string, unknown>>(db, `EXPLAIN ${sql}`, bindings as Knex.RawBinding[]);
  const columns = ['id', 'select_type', 'table', 'type', 'key', 'key_len', 'ref', 'rows', 'Extra'];
  console.log(`\nEXPLAIN ${title}`);
  console.log(
    table(
      columns,
      plan.map((r) => columns.map((c) => (r[c] === null || r[c] === undefined ? '' : String(r[c])))),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

interface RepetitionResult {
  rep: number;
  first: 'floor' | 'engine';
  floorMs: number;
  floorSplit: [number, number];
  engineMs: number;
  engineSplit: Record<Phase, number>;
}

async function main(): Promise<number> {
  const options = parseOptions(process.argv);
  const churn = churnSizes(options.rows, options.churnPercent);
  const churnTotal = churn.added + churn.deleted + churn.changed;
  const expected: PendingCounts = {
    additions: churn.added,
    updates: churn.changed,
    deletions: churn.deleted,
  };

  log(
    `deltalog full-compare benchmark: ${int(options.rows)} rows, ${options.churnPercent}% churn ` +
      `(${int(churnTotal)} keys: +${int(churn.added)} new, -${int(churn.deleted)} deleted, ` +
      `~${int(churn.changed)} changed), ${options.repetitions} repetition${options.repetitions === 1 ? '' : 's'}`,
  );
  let engine: typeof updateDeltalog = updateDeltalog;
  if (options.engineModule) {
    const file = path.resolve(options.engineModule);
    const loaded = (await import(pathToFileURL(file).href)) as { updateDeltalog?: typeof updateDeltalog };
    if (typeof loaded.updateDeltalog !== 'function') throw new Error(`${file} exports no updateDeltalog`);
    engine = loaded.updateDeltalog;
    log(`engine: updateDeltalog from ${path.relative(process.cwd(), file)} (not src/core/deltalog.ts)`);
  }
  const url = await createBenchDatabase(options.url, BENCH_DATABASE);
  const safeUrl = new URL(url);
  safeUrl.password = safeUrl.password ? '***' : '';
  log(`created database ${BENCH_DATABASE} (${safeUrl.toString()})`);
  const db = await openDatabase(url);
  // The floor gets its own session, so its isolation level is set once and nothing else runs there.
  const floorDb = floorConnection(url, options.floorIsolation);
  let failed = false;
  try {
    const [server] = await select<{ version: string; pool: unknown; isolation: string }>(
      db,
      'SELECT VERSION() AS version, @@innodb_buffer_pool_size AS pool, @@tx_isolation AS isolation',
    );
    log(
      `server ${server?.version}, innodb_buffer_pool_size ${int(Math.round(Number(server?.pool) / 2 ** 20))} MiB, ` +
        `default isolation ${server?.isolation}`,
    );
    const [floorSession] = await select<{ isolation: string }>(floorDb, 'SELECT @@tx_isolation AS isolation');
    log(`engine statements run in READ-COMMITTED, floor session in ${floorSession?.isolation}`);

    await seedDataset(db, options.rows);
    await syncDeltalogs(db);
    const synced = await checksum(db, 'deltalog');

    const results: RepetitionResult[] = [];
    for (let rep = 1; rep <= options.repetitions; rep++) {
      const now = T0 + rep * 1000;
      if (rep > 1)
        await step(`repetition ${rep}: reset dataset and both deltalogs to the synced state`, () =>
          resetRepetition(db),
        );
      const [engineStart, floorStart] = await step(
        `repetition ${rep}: verified both deltalogs are synced`,
        () => Promise.all([checksum(db, 'deltalog'), checksum(db, FLOOR_TABLE)]),
      );
      if (!sameChecksum(engineStart, synced) || !sameChecksum(floorStart, synced)) {
        throw new Error(`repetition ${rep}: the deltalogs are not in the synced state before the update`);
      }
      await step(`repetition ${rep}: applied the churn to customers`, () =>
        applyChurn(db, options.rows, churn, rep),
      );

      const first: 'floor' | 'engine' = rep % 2 === 1 ? 'floor' : 'engine';
      let floorMs = 0;
      const floorSplit: [number, number] = [0, 0];
      let engineMs = 0;
      let captured: CapturedQuery[] = [];
      const runFloor = async () => {
        const [upsert, remove] = floorStatements(now);
        floorSplit[0] = await timed(() => floorDb.raw(upsert!.sql, upsert!.bindings));
        floorSplit[1] = await timed(() => floorDb.raw(remove!.sql, remove!.bindings));
        floorMs = floorSplit[0] + floorSplit[1];
        log(`repetition ${rep}: floor  ${secs(floorMs)}s`);
      };
      const runEngine = async () => {
        captured = await captureQueries(db, async () => {
          engineMs = await timed(() => engine(db, CONNECTOR, dataset, now));
        });
        log(`repetition ${rep}: engine ${secs(engineMs)}s`);
      };
      if (first === 'floor') {
        await runFloor();
        await runEngine();
      } else {
        await runEngine();
        await runFloor();
      }

      const engineSplit: Record<Phase, number> = {
        'inspect: counts': 0,
        'inspect: duplicates': 0,
        upsert: 0,
        'mark removed': 0,
        other: 0,
      };
      for (const q of captured) engineSplit[q.phase] += q.ms;
      // BEGIN, SET TRANSACTION, COMMIT, pool acquisition: whatever the statements do not account for.
      engineSplit.other = Math.max(
        0,
        engineMs -
          (engineSplit['inspect: counts'] +
            engineSplit['inspect: duplicates'] +
            engineSplit.upsert +
            engineSplit['mark removed']),
      );
      results.push({ rep, first, floorMs, floorSplit, engineMs, engineSplit });

      const [engineSum, floorSum, enginePending, floorPending] = await step(
        `repetition ${rep}: verified results`,
        () =>
          Promise.all([
            checksum(db, 'deltalog'),
            checksum(db, FLOOR_TABLE),
            pendingCounts(db, CONNECTOR),
            floorPendingCounts(db),
          ]),
      );
      const problems: string[] = [];
      if (!sameChecksum(engineSum, floorSum)) {
        problems.push(
          `deltalog and ${FLOOR_TABLE} differ: engine ${JSON.stringify(engineSum)}, floor ${JSON.stringify(floorSum)}`,
        );
      }
      for (const [who, got] of [
        ['engine', enginePending],
        ['floor', floorPending],
      ] as const) {
        if (showCounts(got) !== showCounts(expected)) {
          problems.push(`${who} pending ${showCounts(got)}, expected ${showCounts(expected)}`);
        }
      }
      if (problems.length > 0) {
        failed = true;
        for (const p of problems) log(`repetition ${rep}: WRONG RESULT: ${p}`);
      } else {
        log(`repetition ${rep}: identical deltalogs, pending ${showCounts(enginePending)} as churned`);
      }

      if (options.explain && rep === 1) {
        const [upsert, remove] = floorStatements(now);
        for (const q of captured.filter((c) => c.phase !== 'other'))
          await explain(db, `engine ${q.phase}`, q.sql, q.bindings);
        await explain(db, 'floor upsert', upsert!.sql, upsert!.bindings);
        await explain(db, 'floor mark removed', remove!.sql, remove!.bindings);
        console.log('');
      }
    }

    report(options, churnTotal, results);
  } finally {
    if (options.keep) {
      log(`kept database ${BENCH_DATABASE} (--keep)`);
      await db.destroy();
      await floorDb.destroy();
    } else {
      await db.raw(`DROP DATABASE IF EXISTS \`${BENCH_DATABASE}\``);
      await db.destroy();
      await floorDb.destroy();
      log(`dropped database ${BENCH_DATABASE}`);
    }
  }
  if (failed) {
    console.log('\nFAILED: the engine and the floor did not produce the expected deltalog (see above).');
    return 1;
  }
  return 0;
}

function report(options: Options, churnTotal: number, results: RepetitionResult[]): void {
  console.log(
    `\nFull-compare deltalog update, ${int(options.rows)} rows, ${options.churnPercent}% churn (${int(churnTotal)} keys), ` +
      `floor session ${options.floorIsolation.toUpperCase()}\n`,
  );
  console.log(
    table(
      ['rep', 'first', 'floor s', 'floor upsert', 'floor remove', 'engine s', 'ratio'],
      results.map((r) => [
        String(r.rep),
        r.first,
        secs(r.floorMs),
        secs(r.floorSplit[0]),
        secs(r.floorSplit[1]),
        secs(r.engineMs),
        `${(r.engineMs / r.floorMs).toFixed(2)}x`,
      ]),
    ),
  );
  console.log('\nEngine time split (seconds):\n');
  const phases: Phase[] = ['inspect: counts', 'inspect: duplicates', 'upsert', 'mark removed', 'other'];
  console.log(
    table(
      ['rep', 'inspectDataset', '(counts', 'duplicates)', 'upsert', 'mark removed', 'txn/other', 'engine s'],
      results.map((r) => {
        const s = r.engineSplit;
        return [
          String(r.rep),
          secs(s['inspect: counts'] + s['inspect: duplicates']),
          ...phases.map((p) => secs(s[p])),
          secs(r.engineMs),
        ];
      }),
    ),
  );
  const ratio = median(results.map((r) => r.engineMs / r.floorMs));
  const statementsOnly = median(
    results.map((r) => (r.engineSplit.upsert + r.engineSplit['mark removed']) / r.floorMs),
  );
  console.log(
    `\nmedian floor ${secs(median(results.map((r) => r.floorMs)))}s, median engine ${secs(median(results.map((r) => r.engineMs)))}s`,
  );
  console.log(
    `median ratio engine/floor: ${ratio.toFixed(2)}x (engine statements alone: ${statementsOnly.toFixed(2)}x)`,
  );
  console.log(
    ratio <= TARGET_RATIO
      ? `TARGET MET: the engine is within ${TARGET_RATIO}x of the floor.`
      : `TARGET MISSED: the engine takes ${ratio.toFixed(2)}x the floor (target ${TARGET_RATIO}x). Timings are reported, not enforced.`,
  );
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  },
);
