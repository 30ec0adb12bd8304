/**
 * Benchmark: deltasync's push through the real workflow against a hand-written loop, side by side
 * in one run, on MariaDB and on SQLite (issue 12).
 *
 *   npm run bench:push                                   # 100k, 1M and 5M rows, both dialects
 *   npx tsx bench/push.ts --sizes 100000 --dialects mysql,sqlite --churn 0.01
 *
 * For each dialect and size, on the same `customers` table:
 *   1. the plain loop: keyset pages of 1,000 POSTed to an http-list receiver (bench/receiver.ts,
 *      a process of its own); no deltalog, no commits;
 *   2. deltasync's first push: a connector refreshed through the Temporal dev server by a real
 *      `deltasync worker` in a process of its own (its peak RSS is read from /proc);
 *   3. a change of `--churn` of the rows (a third inserted, deleted, updated), then deltasync's
 *      refresh beside a diff loop that sends the same changes by key to the loop's list.
 * After every step the receiver's lists are compared with the dataset (count and a sample), so a
 * wrong result never reports a speed. See docs/benchmarks.md. Timings never decide the exit code;
 * a wrong result or a failed run does (exit 1).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { isDeepStrictEqual } from 'node:util';
import BetterSqlite3 from 'better-sqlite3';
import { Command, InvalidArgumentError, Option } from 'commander';
import mysql, { type RowDataPacket } from 'mysql2/promise';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { DeltasyncClient, type RunSummary } from '../src/client';
import { deleteConnector, saveConnector } from '../src/core/connector-store';
import { databaseConfig, openDatabase, type Db, type Dialect } from '../src/db';
import { startDevServer, type DevServer } from '../src/temporal/dev-server';
import { secretEnvName } from '../src/tenancy/secret-names';
import { startWorkerProcess, type WorkerProcess } from '../test/helpers/worker-process';
import { postToList as post, startReceiver, type Receiver } from './receiver-process';

const BENCH_DATABASE = 'deltasync_bench_push';
const CONNECTOR = 'bench-push';
const TOKEN_SECRET = 'BENCH_PUSH_TOKEN';
/** Rows per keyset page and records per call, for the loops and the connector alike. */
const PAGE = 1000;
/** The plain loop's list (the diff loop updates it too), and the connector's. */
const LOOP_LIST = 'loop';
const LEDGER_ID = 'default/ledger-loop';
const DELTASYNC_LIST = 'deltasync';
/** The same first push with `policy.changeLogDays: 0` (no change log), to its own list. */
const NO_LOG_CONNECTOR = 'bench-push-no-log';
const NO_LOG_LIST = 'deltasync-no-log';
/** Checked keys per list check: spread over the key range, plus some of each kind of change. */
const SAMPLE_SPREAD = 1000;
const SAMPLE_PER_CHANGE = 200;
const TARGET = { pushRatio: 1.3, diffRatio: 1.3, perRecord: 1.2, rssMb: 100 };
const SEGMENTS = ['retail', 'smb', 'enterprise', 'public'];

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

interface Options {
  sizes: number[];
  dialects: Dialect[];
  churn: number;
  url: string;
  keep: boolean;
}

/** `100000,1000000`, `100_000`, `100k,1M,5m`. */
function sizeList(value: string): number[] {
  const sizes = value.split(',').map((part) => {
    const match = /^(\d[\d_]*)([kKmM]?)$/.exec(part.trim());
    const n = match
      ? Number(match[1]!.replace(/_/g, '')) * ({ k: 1e3, m: 1e6 }[match[2]!.toLowerCase()] ?? 1)
      : NaN;
    if (!Number.isInteger(n) || n < 100)
      throw new InvalidArgumentError(`'${part}' is not a size of 100 or more`);
    return n;
  });
  return [...new Set(sizes)].sort((a, b) => a - b);
}

function dialectList(value: string): Dialect[] {
  const dialects = value.split(',').map((part) => {
    const name = part.trim().toLowerCase();
    if (name === 'mysql' || name === 'mariadb') return 'mysql';
    if (name === 'sqlite') return 'sqlite';
    throw new InvalidArgumentError(`'${part}' is not a dialect (mysql, sqlite)`);
  });
  return [...new Set(dialects)];
}

/** A share of the rows: `0.01` or `1%`. */
function share(value: string): number {
  const n = value.endsWith('%') ? Number(value.slice(0, -1)) / 100 : Number(value);
  if (!Number.isFinite(n) || n <= 0 || n > 0.5)
    throw new InvalidArgumentError('expected a share in (0, 0.5]');
  return n;
}

function parseOptions(argv: string[]): Options {
  const program = new Command()
    .name('push')
    .description(
      'Time deltasync (real worker, Temporal dev server) against a hand-written loop, pushing a table to an http-list receiver.',
    )
    .addOption(
      new Option('--sizes <n,…>', 'dataset sizes, in rows (100k, 1M also work)')
        .argParser(sizeList)
        .default([100_000, 1_000_000, 5_000_000], '100000,1000000,5000000'),
    )
    .addOption(
      new Option('--dialects <d,…>', 'databases: mysql (MariaDB), sqlite')
        .argParser(dialectList)
        .default(['mysql', 'sqlite'], 'mysql,sqlite'),
    )
    .option(
      '--churn <share>',
      'share of the rows changed before the diff (a third each inserted, deleted, updated)',
      share,
      0.01,
    )
    .option(
      '--url <url>',
      'MariaDB/MySQL server (env DELTASYNC_BENCH_MYSQL_URL); the bench uses its own database `deltasync_bench_push` there',
      process.env.DELTASYNC_BENCH_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test',
    )
    .option('--keep', 'keep the last run database (MariaDB) or file (SQLite) for investigation', false)
    .parse(argv);
  return program.opts<Options>();
}

// ---------------------------------------------------------------------------------------------
// Output helpers
// ---------------------------------------------------------------------------------------------

const started = performance.now();
const clock = () => `[${((performance.now() - started) / 1000).toFixed(1).padStart(7)}s]`;
const log = (message: string) => console.log(`${clock()} ${message}`);
const int = (n: number) => Math.round(n).toLocaleString('en-US');
const secs = (ms: number) => (ms / 1000).toFixed(2);
const rate = (records: number, ms: number) => int((records * 1000) / ms);
const ratio = (r: number) => `${r.toFixed(2)}x`;
const mb = (kb: number) => (kb / 1024).toFixed(0);
const dialectName = (d: Dialect) => (d === 'mysql' ? 'MariaDB' : 'SQLite');
const sizeName = (n: number) =>
  n >= 1e6 && n % 1e6 === 0 ? `${n / 1e6}M` : n >= 1e3 && n % 1e3 === 0 ? `${n / 1e3}k` : int(n);

async function step<T>(label: string, work: () => Promise<T>): Promise<T> {
  const t = performance.now();
  const result = await work();
  log(`${label} (${secs(performance.now() - t)}s)`);
  return result;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

// ---------------------------------------------------------------------------------------------
// The dataset: `customers(customer_key, email, name, segment)`, seeded from n = 1..N
// ---------------------------------------------------------------------------------------------

interface Row {
  customer_key: string;
  email: string;
  name: string;
  segment: string;
}

const attributesOf = (row: Row) => ({ email: row.email, name: row.name, segment: row.segment });
const keyOf = (n: number) => `cus_${String(n).padStart(10, '0')}`;

/** The base rows as SQL over the integer `n` (MariaDB's seq_1_to_N, SQLite's recursive CTE). */
const seedSql: Record<Dialect, (n: string) => string> = {
  mysql: (n) =>
    `CONCAT('cus_', LPAD(${n}, 10, '0')), CONCAT('user', ${n}, '@mail', ${n} % 97, '.example.com'), ` +
    `CONCAT('Customer ', ${n}), ELT(1 + ${n} % 4, ${SEGMENTS.map((s) => `'${s}'`).join(', ')})`,
  sqlite: (n) =>
    `printf('cus_%010d', ${n}), 'user' || ${n} || '@mail' || (${n} % 97) || '.example.com', ` +
    `'Customer ' || ${n}, CASE ${n} % 4 ${SEGMENTS.map((s, i) => `WHEN ${i} THEN '${s}'`).join(' ')} END`,
};

/** A row inserted by the churn: its key sorts right after base row `n`'s, so inserts land all over. */
const insertedRow = (n: number): Row => ({
  customer_key: `${keyOf(n)}-new`,
  email: `user${n}.new@mail${n % 97}.example.com`,
  name: `Customer ${n} (new)`,
  segment: SEGMENTS[(n + 1) % SEGMENTS.length]!,
});

/** What the churn does: keys inserted (with their rows), deleted, and updated (name changed). */
interface ChurnPlan {
  inserted: Row[];
  deleted: string[];
  updated: string[];
}

/**
 * `share` of `size` rows, deterministically spread over the key range: base rows n = 1 + i·P mod N
 * for a P coprime with N are distinct; the first third get an inserted neighbour, the second are
 * deleted, the rest updated.
 */
function planChurn(size: number, churnShare: number): ChurnPlan {
  const total = Math.max(3, Math.round(size * churnShare));
  const third = Math.floor(total / 3);
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  let p = 1_000_003;
  while (gcd(p, size) !== 1) p += 2;
  const base = (i: number) => 1 + ((i * p) % size);
  const plan: ChurnPlan = { inserted: [], deleted: [], updated: [] };
  for (let i = 0; i < total; i++) {
    if (i < third) plan.inserted.push(insertedRow(base(i)));
    else if (i < 2 * third) plan.deleted.push(keyOf(base(i)));
    else plan.updated.push(keyOf(base(i)));
  }
  return plan;
}

const chunks = <T>(items: T[], size: number): T[][] =>
  Array.from({ length: Math.ceil(items.length / size) }, (_, i) => items.slice(i * size, (i + 1) * size));
const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** The dataset as the bench (and the hand-written loops) reach it: the plain driver, no knex. */
interface Dataset {
  dialect: Dialect;
  /** The database URL the worker opens (DELTASYNC_DATABASE_URL). */
  url: string;
  /** The project's own connection: migrations, the connector. */
  db: Db;
  seed(size: number): Promise<void>;
  count(): Promise<number>;
  /** The loop's read: the next page of 1,000 rows after `after`, in key order. */
  page(after: string): Promise<Row[]>;
  /** The diff loop's read: these keys' rows. */
  byKeys(keys: string[]): Promise<Row[]>;
  /**
   * The ledger loop's record of a delivered page, in one transaction: one INSERT of its keys and
   * attribute hashes into `loop_ledger` (shaped like the deltalog: same columns, primary key and
   * pending index), and its last key into `loop_checkpoint`.
   */
  record(rows: { key: string; hash: string }[], now: number): Promise<void>;
  applyChurn(plan: ChurnPlan): Promise<void>;
  /** Let background writes of the previous step settle before a timed one (untimed). */
  settle(): Promise<void>;
  close(keep: boolean): Promise<void>;
}

const COLUMNS = 'customer_key, email, name, segment';

async function mysqlDataset(serverUrl: string): Promise<Dataset> {
  const admin = await mysql.createConnection(databaseConfig(serverUrl).connection as mysql.ConnectionOptions);
  await admin.query(`DROP DATABASE IF EXISTS \`${BENCH_DATABASE}\``);
  await admin.query(`CREATE DATABASE \`${BENCH_DATABASE}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci`);
  await admin.end();
  const u = new URL(serverUrl.replace(/^mariadb:/, 'mysql:'));
  u.pathname = `/${BENCH_DATABASE}`;
  const url = u.toString();
  const db = await openDatabase(url);
  const conn = await mysql.createConnection(databaseConfig(url).connection as mysql.ConnectionOptions);
  const rows = async (sql: string, params: unknown[] = []) =>
    (await conn.query<RowDataPacket[]>(sql, params))[0];
  return {
    dialect: 'mysql',
    url,
    db,
    async seed(size) {
      await conn.query(
        `CREATE TABLE customers (
           customer_key VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
           email VARCHAR(255) NOT NULL,
           name VARCHAR(255) NOT NULL,
           segment VARCHAR(32) NOT NULL
         ) ENGINE=InnoDB`,
      );
      await conn.query(`INSERT INTO customers SELECT ${seedSql.mysql('seq')} FROM seq_1_to_${size}`);
      await conn.query('ANALYZE TABLE customers');
      await conn.query('CREATE TABLE loop_ledger LIKE deltalog');
      await conn.query('CREATE TABLE loop_checkpoint (id INT PRIMARY KEY, cursor_key VARCHAR(255))');
      await conn.query("INSERT INTO loop_checkpoint VALUES (1, '')");
    },
    async record(ledger, now) {
      await conn.query('BEGIN');
      await conn.query(
        'INSERT INTO loop_ledger (connector_id, record_key, in_dataset, attr_hash, on_remote, updated_at, committed_at, attempts) VALUES ?',
        [ledger.map((r) => [LEDGER_ID, r.key, 1, r.hash, 1, now, now, 0])],
      );
      await conn.query('UPDATE loop_checkpoint SET cursor_key = ? WHERE id = 1', [ledger.at(-1)!.key]);
      await conn.query('COMMIT');
    },
    count: async () => Number((await rows('SELECT COUNT(*) AS n FROM customers'))[0]?.n),
    page: async (after) =>
      (
        await conn.execute<RowDataPacket[]>(
          `SELECT ${COLUMNS} FROM customers WHERE customer_key > ? ORDER BY customer_key LIMIT ${PAGE}`,
          [after],
        )
      )[0] as Row[],
    byKeys: async (keys) =>
      keys.length === 0
        ? []
        : ((await rows(`SELECT ${COLUMNS} FROM customers WHERE customer_key IN (?)`, [keys])) as Row[]),
    async applyChurn(plan) {
      for (const batch of chunks(plan.inserted, PAGE))
        await conn.query(`INSERT INTO customers (${COLUMNS}) VALUES ?`, [
          batch.map((r) => [r.customer_key, r.email, r.name, r.segment]),
        ]);
      for (const batch of chunks(plan.deleted, PAGE))
        await conn.query('DELETE FROM customers WHERE customer_key IN (?)', [batch]);
      for (const batch of chunks(plan.updated, PAGE))
        await conn.query(`UPDATE customers SET name = CONCAT(name, ' (changed)') WHERE customer_key IN (?)`, [
          batch,
        ]);
    },
    async settle() {
      // A seed or a push leaves dirty pages in the buffer pool, which the next step's reads would
      // pay to flush: write them out now (FOR EXPORT flushes the tables' pages; nothing is exported).
      const t = performance.now();
      await conn.query('FLUSH TABLES customers, deltalog FOR EXPORT');
      await conn.query('UNLOCK TABLES');
      if (performance.now() - t > 1000) log(`  flushed dirty pages (${secs(performance.now() - t)}s)`);
    },
    async close(keep) {
      if (!keep) await conn.query(`DROP DATABASE IF EXISTS \`${BENCH_DATABASE}\``);
      else log(`kept database ${BENCH_DATABASE}`);
      await conn.end();
      await db.destroy();
    },
  };
}

async function sqliteDataset(): Promise<Dataset> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deltasync-bench-push-'));
  const file = path.join(dir, 'bench.sqlite');
  const url = `sqlite://${file}`;
  // The project's connection creates the file (WAL) and its tables; the loop uses its own.
  let db: Db;
  let conn: BetterSqlite3.Database;
  try {
    db = await openDatabase(url);
    conn = new BetterSqlite3(file);
  } catch (error) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  conn.pragma('busy_timeout = 10000');
  let page: BetterSqlite3.Statement<[string], Row> | undefined;
  let insertLedger: BetterSqlite3.Statement | undefined;
  return {
    dialect: 'sqlite',
    url,
    db,
    async seed(size) {
      conn.exec(
        `CREATE TABLE customers (
           customer_key TEXT NOT NULL PRIMARY KEY,
           email TEXT NOT NULL,
           name TEXT NOT NULL,
           segment TEXT NOT NULL
         )`,
      );
      conn
        .prepare(
          `WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ?)
           INSERT INTO customers SELECT ${seedSql.sqlite('n')} FROM seq`,
        )
        .run(size);
      conn.exec('ANALYZE customers');
      conn.exec(
        `CREATE TABLE loop_ledger (
           connector_id TEXT NOT NULL, record_key TEXT NOT NULL, in_dataset BOOLEAN NOT NULL,
           attr_hash TEXT, on_remote BOOLEAN NOT NULL DEFAULT 0, updated_at BIGINT NOT NULL,
           committed_at BIGINT, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,
           PRIMARY KEY (connector_id, record_key));
         CREATE INDEX loop_ledger_pending ON loop_ledger (connector_id, committed_at, in_dataset, record_key);
         CREATE TABLE loop_checkpoint (id INTEGER PRIMARY KEY, cursor_key TEXT);
         INSERT INTO loop_checkpoint VALUES (1, '');`,
      );
    },
    async record(ledger, now) {
      insertLedger ??= conn.prepare(
        'INSERT INTO loop_ledger (connector_id, record_key, in_dataset, attr_hash, on_remote, updated_at, committed_at, attempts) VALUES (?, ?, 1, ?, 1, ?, ?, 0)',
      );
      const insert = insertLedger;
      const checkpoint = conn.prepare('UPDATE loop_checkpoint SET cursor_key = ? WHERE id = 1');
      conn.transaction(() => {
        for (const r of ledger) insert.run(LEDGER_ID, r.key, r.hash, now, now);
        checkpoint.run(ledger.at(-1)!.key);
      })();
    },
    count: async () => (conn.prepare('SELECT COUNT(*) AS n FROM customers').get() as { n: number }).n,
    page: async (after) => {
      page ??= conn.prepare<[string], Row>(
        `SELECT ${COLUMNS} FROM customers WHERE customer_key > ? ORDER BY customer_key LIMIT ${PAGE}`,
      );
      return page.all(after);
    },
    byKeys: async (keys) =>
      keys.length === 0
        ? []
        : conn
            .prepare<string[], Row>(
              `SELECT ${COLUMNS} FROM customers WHERE customer_key IN (${keys.map(() => '?').join(', ')})`,
            )
            .all(...keys),
    async applyChurn(plan) {
      const insert = conn.prepare(`INSERT INTO customers (${COLUMNS}) VALUES (?, ?, ?, ?)`);
      const remove = conn.prepare('DELETE FROM customers WHERE customer_key = ?');
      const update = conn.prepare(`UPDATE customers SET name = name || ' (changed)' WHERE customer_key = ?`);
      conn.transaction(() => {
        for (const r of plan.inserted) insert.run(r.customer_key, r.email, r.name, r.segment);
        for (const key of plan.deleted) remove.run(key);
        for (const key of plan.updated) update.run(key);
      })();
    },
    async settle() {
      // Fold the write-ahead log into the database file, so no timed step starts with a big WAL.
      conn.pragma('wal_checkpoint(TRUNCATE)');
    },
    async close(keep) {
      conn.close();
      await db.destroy();
      if (!keep) fs.rmSync(dir, { recursive: true, force: true });
      else log(`kept ${file}`);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The receiver (bench/receiver.ts in a child process) and the hand-written loops
// ---------------------------------------------------------------------------------------------

const members = (rows: Row[]) => ({
  members: rows.map((r) => ({ key: r.customer_key, attributes: attributesOf(r) })),
});

interface Timed {
  ms: number;
  records: number;
  calls: number;
}

/**
 * The plain loop: keyset pages of 1,000, each POSTed as it comes; nothing remembered. With
 * `ledger`, the ledger loop: it also remembers what it delivered, as a person would write it to
 * keep deltasync's promise (resume after the last recorded page, know what the list holds): after
 * each POST, the page's keys and attribute hashes go into a ledger table in one INSERT, with the
 * checkpoint, in one transaction. The floor for a first push that commits per batch.
 */
async function plainLoop(data: Dataset, receiver: Receiver, { ledger = false } = {}): Promise<Timed> {
  const t = performance.now();
  let after = '';
  let records = 0;
  let calls = 0;
  for (;;) {
    const rows = await data.page(after);
    if (rows.length === 0) break;
    await post(receiver, LOOP_LIST, 'add', members(rows), rows.length);
    if (ledger)
      await data.record(
        rows.map((r) => ({ key: r.customer_key, hash: hashOf(r) })),
        Date.now(),
      );
    calls++;
    records += rows.length;
    after = rows[rows.length - 1]!.customer_key;
    if (rows.length < PAGE) break;
  }
  return { ms: performance.now() - t, records, calls };
}

const hashOf = (row: Row) =>
  createHash('md5').update(`${row.email}\u001f${row.name}\u001f${row.segment}`).digest('hex');

/** The diff loop: the changed and inserted keys' rows read by key and upserted, then the deletions. */
async function diffLoop(data: Dataset, receiver: Receiver, plan: ChurnPlan): Promise<Timed> {
  const upserts = [...plan.inserted.map((r) => r.customer_key), ...plan.updated].sort(byteOrder);
  const deletions = [...plan.deleted].sort(byteOrder);
  const t = performance.now();
  let records = 0;
  let calls = 0;
  for (const keys of chunks(upserts, PAGE)) {
    const rows = await data.byKeys(keys);
    await post(receiver, LOOP_LIST, 'add', members(rows), rows.length);
    calls++;
    records += rows.length;
  }
  for (const keys of chunks(deletions, PAGE)) {
    await post(receiver, LOOP_LIST, 'remove', { keys }, keys.length);
    calls++;
    records += keys.length;
  }
  return { ms: performance.now() - t, records, calls };
}

// ---------------------------------------------------------------------------------------------
// Checks: a list equals the dataset (count and a sample of keys)
// ---------------------------------------------------------------------------------------------

function sampleKeys(size: number, plan: ChurnPlan | undefined): string[] {
  const keys = new Set<string>([keyOf(1), keyOf(size)]);
  for (let i = 0; i < SAMPLE_SPREAD; i++) keys.add(keyOf(1 + Math.floor((i * size) / SAMPLE_SPREAD)));
  if (plan) {
    for (const r of plan.inserted.slice(0, SAMPLE_PER_CHANGE)) keys.add(r.customer_key);
    for (const key of plan.deleted.slice(0, SAMPLE_PER_CHANGE)) keys.add(key);
    for (const key of plan.updated.slice(0, SAMPLE_PER_CHANGE)) keys.add(key);
  }
  return [...keys];
}

/** Problems found comparing `list` with the dataset (none: equal on the count and every sampled key). */
async function checkList(data: Dataset, receiver: Receiver, list: string, keys: string[]): Promise<string[]> {
  const expected = new Map<string, Row>();
  for (const batch of chunks(keys, PAGE))
    for (const row of await data.byKeys(batch)) expected.set(row.customer_key, row);
  const [rows, remote] = await Promise.all([data.count(), receiver.check(list, keys)]);
  const problems: string[] = [];
  if (remote.count !== rows)
    problems.push(`list '${list}' holds ${int(remote.count)} members, the dataset ${int(rows)} rows`);
  let missing = 0;
  let extra = 0;
  let different = 0;
  for (const key of keys) {
    const want = expected.get(key);
    const got = remote.members[key] ?? null;
    if (want && !got) missing++;
    else if (!want && got) extra++;
    else if (want && got && !isDeepStrictEqual(got, attributesOf(want))) {
      if (different++ === 0)
        problems.push(
          `'${key}': list has ${JSON.stringify(got)}, dataset ${JSON.stringify(attributesOf(want))}`,
        );
    }
  }
  if (missing + extra + different > 0)
    problems.push(
      `list '${list}', ${keys.length} sampled keys: ${missing} missing, ${extra} extra, ${different} with other attributes`,
    );
  return problems;
}

function checkSummary(
  summary: RunSummary,
  expected: { additions: number; updates: number; deletions: number },
): string[] {
  const problems: string[] = [];
  if (summary.status !== 'succeeded')
    problems.push(`run ${summary.runId} ${summary.status}: ${summary.error ?? ''}`);
  for (const field of ['additions', 'updates', 'deletions'] as const)
    if (summary[field] !== expected[field])
      problems.push(`run ${summary.runId}: ${field} ${summary[field]}, expected ${expected[field]}`);
  if (summary.rejected > 0) problems.push(`run ${summary.runId}: ${summary.rejected} records rejected`);
  return problems;
}

// ---------------------------------------------------------------------------------------------
// The worker's memory (/proc/<pid>/status) and time per phase (RunSummary.timings)
// ---------------------------------------------------------------------------------------------

function memoryKb(pid: number): { rss: number; peak: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: field('VmRSS'), peak: field('VmHWM') };
}

/**
 * Reset the peak RSS to the current RSS (Linux: `5` to /proc/<pid>/clear_refs), so that the peak
 * read later is the refreshes', not the start's (bundling the workflow code). False if refused.
 */
function resetPeak(pid: number): boolean {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

interface Timings {
  deltalogMs: number;
  planMs: number;
  readMs: number;
  fetchMs: number;
  callMs: number;
  commitMs: number;
  /** Of commitMs: the row-level change log's writes (absent before the engine timed them). */
  changeLogMs?: number;
}
const PHASES = ['deltalogMs', 'planMs', 'readMs', 'fetchMs', 'callMs', 'commitMs'] as const;

/** The run's time per phase, if the engine reports it (`RunSummary.timings`); null otherwise. */
function timingsOf(summary: RunSummary): Timings | null {
  const value = (summary as { timings?: unknown }).timings;
  if (!value || typeof value !== 'object') return null;
  const t = value as Record<string, unknown>;
  return PHASES.every((p) => typeof t[p] === 'number') ? (t as unknown as Timings) : null;
}

// ---------------------------------------------------------------------------------------------
// One dialect at one size
// ---------------------------------------------------------------------------------------------

interface Refresh {
  ms: number;
  summary: RunSummary;
  timings: Timings | null;
}

interface RunResult {
  dialect: Dialect;
  size: number;
  changes: number;
  loop?: Timed;
  /** The plain loop that also records each delivered page with its checkpoint. */
  ledgerLoop?: Timed;
  push?: Refresh;
  /** The first push again, without the change log (after the diff, the first connector deleted). */
  pushNoLog?: Refresh;
  diffLoop?: Timed;
  diff?: Refresh;
  /** Worker memory in kB: when it was ready, its peak by then (the start), after the first push, at the end. */
  memory?: { ready: number; startPeak: number; pushPeak?: number; peak?: number; reset: boolean };
  problems: string[];
}

async function runOne(
  options: Options,
  server: DevServer,
  dialect: Dialect,
  size: number,
  keep: boolean,
): Promise<RunResult> {
  const label = `${dialectName(dialect)} ${sizeName(size)}`;
  const plan = planChurn(size, options.churn);
  const result: RunResult = {
    dialect,
    size,
    changes: plan.inserted.length + plan.deleted.length + plan.updated.length,
    problems: [],
  };
  const problem = (what: string, kind = 'WRONG RESULT') => {
    result.problems.push(what);
    log(`${label}: ${kind}: ${what}`);
  };
  let data: Dataset | undefined;
  let receiver: Receiver | undefined;
  let worker: WorkerProcess | undefined;
  try {
    data = await step(`${label}: created the database`, () =>
      dialect === 'mysql' ? mysqlDataset(options.url) : sqliteDataset(),
    );
    const dataset = data;
    await step(`${label}: seeded customers with ${int(size)} rows`, () => dataset.seed(size));
    await dataset.settle();
    receiver = await startReceiver();
    const rx = receiver;
    const taskQueue = `bench-push-${process.pid}-${dialect}-${size}`;
    worker = await step(`${label}: started a worker process`, () =>
      startWorkerProcess({
        address: server.address,
        taskQueue,
        databaseUrl: dataset.url,
        env: { [secretEnvName('default', TOKEN_SECRET)]: rx.token },
      }),
    );
    const pid = worker.pid;
    const ready = memoryKb(pid);
    result.memory = { ready: ready.rss, startPeak: ready.peak, reset: resetPeak(pid) };
    const client = new DeltasyncClient(server.env.client, { taskQueue });
    await saveConnector(dataset.db, {
      id: CONNECTOR,
      dataset: { table: 'customers', key: 'customer_key', attributes: ['email', 'name', 'segment'] },
      destination: { type: 'http-list', baseUrl: rx.url, listId: DELTASYNC_LIST, tokenSecret: TOKEN_SECRET },
      policy: { batchSize: PAGE },
    });

    // 1. The plain loop, then deltasync's first push, on the same rows.
    const firstSample = sampleKeys(size, undefined);
    result.loop = await plainLoop(dataset, rx);
    log(
      `${label}: plain loop   ${secs(result.loop.ms)}s, ${rate(result.loop.records, result.loop.ms)} records/s`,
    );
    for (const p of await checkList(dataset, rx, LOOP_LIST, firstSample)) problem(p);
    await dataset.settle();
    result.ledgerLoop = await plainLoop(dataset, rx, { ledger: true });
    log(
      `${label}: ledger loop  ${secs(result.ledgerLoop.ms)}s, ${rate(result.ledgerLoop.records, result.ledgerLoop.ms)} records/s`,
    );
    await dataset.settle();
    const push = await timedRefresh(client);
    result.push = push;
    result.memory.pushPeak = memoryKb(pid).peak;
    log(
      `${label}: first push   ${secs(push.ms)}s, ${rate(size, push.ms)} records/s (strategy ${push.summary.strategy})`,
    );
    for (const p of checkSummary(push.summary, { additions: size, updates: 0, deletions: 0 })) problem(p);
    for (const p of await checkList(dataset, rx, DELTASYNC_LIST, firstSample)) problem(p);

    // 2. The churn, then the diff loop (to the loop's list) and deltasync's refresh.
    await step(
      `${label}: changed ${int(result.changes)} rows (+${int(plan.inserted.length)} -${int(plan.deleted.length)} ~${int(plan.updated.length)})`,
      () => dataset.applyChurn(plan),
    );
    await dataset.settle();
    result.diffLoop = await diffLoop(dataset, rx, plan);
    log(
      `${label}: diff loop    ${secs(result.diffLoop.ms)}s, ${rate(result.diffLoop.records, result.diffLoop.ms)} records/s`,
    );
    await dataset.settle();
    const diff = await timedRefresh(client);
    result.diff = diff;
    log(`${label}: diff refresh ${secs(diff.ms)}s (strategy ${diff.summary.strategy})`);
    for (const p of checkSummary(diff.summary, {
      additions: plan.inserted.length,
      updates: plan.updated.length,
      deletions: plan.deleted.length,
    }))
      problem(p);
    const diffSample = sampleKeys(size, plan);
    for (const list of [DELTASYNC_LIST, LOOP_LIST])
      for (const p of await checkList(dataset, rx, list, diffSample)) problem(p);
    result.memory.peak = memoryKb(pid).peak;
    if (result.problems.length === 0)
      log(`${label}: both lists equal the dataset (count and ${diffSample.length} sampled keys)`);

    // 3. The change log's cost: the first push once more, by a connector that keeps no log. The
    // first connector goes first, or the two would share the dataset and neither push directly.
    await step(`${label}: deleted the first connector and its deltalog`, () =>
      deleteConnector(dataset.db, 'default', CONNECTOR),
    );
    await saveConnector(dataset.db, {
      id: NO_LOG_CONNECTOR,
      dataset: { table: 'customers', key: 'customer_key', attributes: ['email', 'name', 'segment'] },
      destination: { type: 'http-list', baseUrl: rx.url, listId: NO_LOG_LIST, tokenSecret: TOKEN_SECRET },
      policy: { batchSize: PAGE, changeLogDays: 0 },
    });
    await dataset.settle();
    const rows = await dataset.count();
    const noLog = await timedRefresh(client, NO_LOG_CONNECTOR);
    result.pushNoLog = noLog;
    log(`${label}: first push without the change log ${secs(noLog.ms)}s, ${rate(rows, noLog.ms)} records/s`);
    for (const p of checkSummary(noLog.summary, { additions: rows, updates: 0, deletions: 0 })) problem(p);
    for (const p of await checkList(dataset, rx, NO_LOG_LIST, diffSample)) problem(p);
  } catch (error) {
    problem((error as Error).stack ?? String(error), 'RUN FAILED');
    if (worker) console.error(worker.logs().split('\n').slice(-30).join('\n'));
  } finally {
    if (worker) {
      worker.kill('SIGTERM');
      const killLater = setTimeout(() => worker?.kill('SIGKILL'), 15_000);
      await worker.exited;
      clearTimeout(killLater);
    }
    await receiver?.stop();
    await data?.close(keep);
  }
  return result;
}

async function timedRefresh(client: DeltasyncClient, connector = CONNECTOR): Promise<Refresh> {
  const t = performance.now();
  const summary = await client.refresh(connector, { trigger: 'bench' });
  const ms = performance.now() - t;
  return { ms, summary, timings: timingsOf(summary) };
}

// ---------------------------------------------------------------------------------------------
// Report and targets
// ---------------------------------------------------------------------------------------------

/** The diff's send: the refresh less its deltalog update when timings say so, else the whole refresh. */
const diffSendMs = (r: Refresh) => (r.timings ? r.ms - r.timings.deltalogMs : r.ms);
const ok = (
  r: RunResult | undefined,
): r is RunResult &
  Required<Pick<RunResult, 'loop' | 'ledgerLoop' | 'push' | 'diffLoop' | 'diff' | 'memory'>> =>
  !!r &&
  r.problems.length === 0 &&
  !!r.loop &&
  !!r.ledgerLoop &&
  !!r.push &&
  !!r.diffLoop &&
  !!r.diff &&
  !!r.memory;

function report(options: Options, results: RunResult[]): void {
  const good = results.filter(ok);
  const name = (r: RunResult) => `${dialectName(r.dialect)} ${sizeName(r.size)}`;
  const wrong = results.filter((r) => !ok(r));
  console.log(`\nPush benchmark: churn ${options.churn * 100}%, ${PAGE} records per page and call\n`);
  if (wrong.length > 0)
    console.log(`No figures for ${wrong.map(name).join(', ')}: wrong result or failed run (see above).\n`);

  console.log(
    'First push (records/s; ratio = deltasync time / plain loop time; ledger = the loop that also\n' +
      'records each delivered page and its checkpoint in a ledger table, in one transaction):\n',
  );
  console.log(
    table(
      [
        'run',
        'records',
        'loop s',
        'loop rec/s',
        'ledger s',
        'deltasync s',
        'deltasync rec/s',
        'ratio',
        'vs ledger',
        'calls loop/ds',
      ],
      good.map((r) => [
        name(r),
        int(r.size),
        secs(r.loop.ms),
        rate(r.loop.records, r.loop.ms),
        secs(r.ledgerLoop.ms),
        secs(r.push.ms),
        rate(r.size, r.push.ms),
        ratio(r.push.ms / r.loop.ms),
        ratio(r.push.ms / r.ledgerLoop.ms),
        `${int(r.loop.calls)}/${int(r.push.summary.apiCalls)}`,
      ]),
    ),
  );

  console.log(
    '\nDiff (send = the refresh less its deltalog update; the whole refresh when timings are n/a):\n',
  );
  console.log(
    table(
      [
        'run',
        'changes',
        'loop s',
        'loop rec/s',
        'refresh s',
        'deltalog s',
        'send s',
        'send rec/s',
        'send ratio',
        'refresh ratio',
      ],
      good.map((r) => [
        name(r),
        int(r.changes),
        secs(r.diffLoop.ms),
        rate(r.diffLoop.records, r.diffLoop.ms),
        secs(r.diff.ms),
        r.diff.timings ? secs(r.diff.timings.deltalogMs) : 'n/a',
        secs(diffSendMs(r.diff)),
        rate(r.changes, diffSendMs(r.diff)),
        ratio(diffSendMs(r.diff) / r.diffLoop.ms),
        ratio(r.diff.ms / r.diffLoop.ms),
      ]),
    ),
  );

  console.log(
    "\nTime per phase from the run summary, seconds. log = the change log's writes, part of commit. rest =\n" +
      'wall less the phases: workflow and activity scheduling, the client; negative when the phases of a\n' +
      'pipelined send overlap:\n',
  );
  const phaseRow = (label: string, r: Refresh) => [
    label,
    ...PHASES.map((p) => (r.timings ? secs(r.timings[p]) : 'n/a')),
    r.timings?.changeLogMs !== undefined ? secs(r.timings.changeLogMs) : 'n/a',
    r.timings ? secs(r.ms - PHASES.reduce((sum, p) => sum + r.timings![p], 0)) : 'n/a',
    secs(r.ms),
  ];
  console.log(
    table(
      ['run', 'deltalog', 'plan', 'read', 'fetch', 'call', 'commit', 'log', 'rest', 'wall'],
      good.flatMap((r) => [phaseRow(`${name(r)} first push`, r.push), phaseRow(`${name(r)} diff`, r.diff)]),
    ),
  );

  console.log(
    "\nThe change log's cost (issue 15): the first push as above, and again by a connector that keeps no\n" +
      'log (policy.changeLogDays 0), run last, after the first connector and its deltalog were deleted;\n' +
      "log = the change log's inserts inside the commits (compression overlaps the previous commit):\n",
  );
  console.log(
    table(
      ['run', 'with log s', 'log s', 'log share', 'without log s', 'with / without'],
      good.map((r) => [
        name(r),
        secs(r.push.ms),
        r.push.timings?.changeLogMs !== undefined ? secs(r.push.timings.changeLogMs) : 'n/a',
        r.push.timings?.changeLogMs !== undefined
          ? `${((r.push.timings.changeLogMs / r.push.ms) * 100).toFixed(1)}%`
          : 'n/a',
        r.pushNoLog ? secs(r.pushNoLog.ms) : 'n/a',
        r.pushNoLog ? ratio(r.push.ms / r.pushNoLog.ms) : 'n/a',
      ]),
    ),
  );

  console.log('\nWorker RSS, MB (its own process; restarted per size):\n');
  console.log(
    table(
      ['run', 'ready', 'peak at start', 'peak first push', 'peak run'],
      good.map((r) => [
        name(r),
        mb(r.memory.ready),
        mb(r.memory.startPeak),
        mb(r.memory.pushPeak ?? NaN),
        mb(r.memory.peak ?? NaN),
      ]),
    ),
  );
  if (good.some((r) => !r.memory.reset))
    console.log('(the peak could not be reset after the start: "peak run" includes the start)');
  else
    console.log(
      '("peak at start" includes bundling the workflow code; the peak is reset once the worker is ready)',
    );

  console.log('\nPer-record time at 5M / at 1M:\n');
  for (const dialect of options.dialects) {
    const at = (size: number) => good.find((r) => r.dialect === dialect && r.size === size);
    const [m1, m5] = [at(1_000_000), at(5_000_000)];
    if (!m1 || !m5) {
      console.log(`  ${dialectName(dialect)}: n/a (needs 1M and 5M)`);
      continue;
    }
    const perRecord = (ms: number, n: number) => ms / n;
    console.log(
      `  ${dialectName(dialect)}: deltasync first push ${ratio(perRecord(m5.push.ms, 5e6) / perRecord(m1.push.ms, 1e6))}, ` +
        `plain loop ${ratio(perRecord(m5.loop.ms, 5e6) / perRecord(m1.loop.ms, 1e6))}`,
    );
  }

  console.log('');
  for (const line of targets(options, results)) console.log(line);
}

function targets(options: Options, results: RunResult[]): string[] {
  const lines: string[] = [];
  const find = (dialect: Dialect, size: number) =>
    results.find((r) => r.dialect === dialect && r.size === size);
  /** The runs a target needs, or the reason it cannot be judged. */
  const need = (dialect: Dialect, sizes: number[]) => {
    if (!options.dialects.includes(dialect)) return 'TARGET SKIPPED (dialect not run)';
    if (sizes.some((s) => !options.sizes.includes(s))) return 'TARGET SKIPPED (size not run)';
    const bad = sizes.map((s) => find(dialect, s)).find((r) => !ok(r));
    return bad ? `TARGET MISSED (wrong result or failed run at ${sizeName(bad.size)})` : undefined;
  };
  const verdict = (met: boolean) => (met ? 'TARGET MET' : 'TARGET MISSED');
  for (const dialect of ['mysql', 'sqlite'] as Dialect[]) {
    const d = dialectName(dialect);
    const what = `first push ≤ ${TARGET.pushRatio}x the plain loop at 1M on ${d}`;
    const skip = need(dialect, [1_000_000]);
    if (skip) lines.push(`${skip}: ${what}`);
    else {
      const r = find(dialect, 1_000_000) as Required<RunResult>;
      const x = r.push.ms / r.loop.ms;
      lines.push(`${verdict(x <= TARGET.pushRatio)}: ${what}: ${ratio(x)}`);
    }
  }
  for (const dialect of ['mysql', 'sqlite'] as Dialect[]) {
    const d = dialectName(dialect);
    const what = `diff send ≤ ${TARGET.diffRatio}x the diff loop at 1M on ${d}`;
    const skip = need(dialect, [1_000_000]);
    if (skip) lines.push(`${skip}: ${what}`);
    else {
      const r = find(dialect, 1_000_000) as Required<RunResult>;
      const x = diffSendMs(r.diff) / r.diffLoop.ms;
      const basis = r.diff.timings ? '' : ' (timings n/a: the whole refresh)';
      lines.push(`${verdict(x <= TARGET.diffRatio)}: ${what}: ${ratio(x)}${basis}`);
    }
  }
  for (const dialect of ['mysql', 'sqlite'] as Dialect[]) {
    const d = dialectName(dialect);
    const what = `per-record time of the first push at 5M ≤ ${TARGET.perRecord}x that at 1M on ${d}`;
    const skip = need(dialect, [1_000_000, 5_000_000]);
    if (skip) lines.push(`${skip}: ${what}`);
    else {
      const [m1, m5] = [find(dialect, 1_000_000), find(dialect, 5_000_000)] as Required<RunResult>[];
      const x = m5!.push.ms / 5e6 / (m1!.push.ms / 1e6);
      lines.push(`${verdict(x <= TARGET.perRecord)}: ${what}: ${ratio(x)}`);
    }
  }
  for (const dialect of ['mysql', 'sqlite'] as Dialect[]) {
    const d = dialectName(dialect);
    const what = `worker peak RSS at 5M ≤ ${TARGET.rssMb} MB above 100k on ${d}`;
    const skip = need(dialect, [100_000, 5_000_000]);
    if (skip) lines.push(`${skip}: ${what}`);
    else {
      const [k100, m5] = [find(dialect, 100_000), find(dialect, 5_000_000)] as Required<RunResult>[];
      const delta = (m5!.memory.peak! - k100!.memory.peak!) / 1024;
      lines.push(
        `${verdict(delta <= TARGET.rssMb)}: ${what}: ${mb(k100!.memory.peak!)} → ${mb(m5!.memory.peak!)} MB (${delta >= 0 ? '+' : ''}${delta.toFixed(0)} MB)`,
      );
    }
  }
  return lines;
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const options = parseOptions(process.argv);
  log(
    `push benchmark: sizes ${options.sizes.map(sizeName).join(', ')}; ${options.dialects.map(dialectName).join(', ')}; ` +
      `churn ${options.churn * 100}%; load average ${os
        .loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}, ${os.cpus().length} cores`,
  );
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const server = await step('started the Temporal dev server', () => startDevServer());
  const results: RunResult[] = [];
  try {
    for (const dialect of options.dialects) {
      for (const size of options.sizes) {
        const last = dialect === options.dialects.at(-1) && size === options.sizes.at(-1);
        results.push(await runOne(options, server, dialect, size, options.keep && last));
      }
    }
  } finally {
    await server.stop();
  }
  log(
    `done; load average ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );
  report(options, results);
  if (results.some((r) => !ok(r))) {
    console.log('\nFAILED: a run failed or a list did not equal the dataset (see above).');
    return 1;
  }
  return 0;
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
