/**
 * Benchmark: a refresh cycle of many connectors on one dataset (issue 13, 6b). One connector's
 * refresh after a 1% churn is timed; then twenty connectors on the same dataset (one tenant, so
 * they share one compare: src/core/shared-compare.ts) are refreshed at once after another 1%
 * churn, and the cycle — from the first refresh started to the last one finished — is timed. Both
 * run the real workflow on the real Temporal dev server and a real worker process, on MariaDB,
 * sending to http-list lists in a receiver process. Target: the twenty-connector cycle within 2×
 * the one-connector refresh.
 *
 *   npm run bench:shared                              # 1,000,000 rows, 1% churn, 20 connectors
 *   npx tsx bench/shared-compare.ts --rows 100000 --connectors 5
 *
 * It creates (and drops) the database `deltasync_bench_shared` on the server named by --url /
 * DELTASYNC_BENCH_MYSQL_URL. Timings never decide the exit code; a list that differs from the
 * dataset does (exit 1). See docs/benchmarks.md.
 */
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Command } from 'commander';
import knex from 'knex';
import mysql, { type RowDataPacket } from 'mysql2/promise';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { DeltasyncClient, type RunSummary } from '../src/client';
import { saveConnector } from '../src/core/connector-store';
import { databaseConfig, migrateToLatest, type Db } from '../src/db';
import { startDevServer } from '../src/temporal/dev-server';
import { secretEnvName } from '../src/tenancy/secret-names';
import { startWorkerProcess } from '../test/helpers/worker-process';
import { bufferPoolSize, createBenchDatabase, resizeBufferPool } from './bench-database';
import { BENCH_MYSQL_URL, byteSize, percentage, wholeCount } from './options';
import { postToList, startReceiver, type Receiver } from './receiver-process';

const BENCH_DATABASE = 'deltasync_bench_shared';
const TOKEN_SECRET = 'SHARED_TOKEN';
const TARGET_RATIO = 2;
const SAMPLE = 200;

interface Options {
  url: string;
  rows: number;
  churnPercent: number;
  connectors: number;
  /** innodb_buffer_pool_size for the run (restored afterwards); absent: the server's as it is. */
  bufferPool?: number;
}

function parseOptions(argv: string[]): Options {
  const o = new Command('bench/shared-compare.ts')
    .description('A refresh cycle of many connectors sharing one dataset vs one connector, side by side')
    .option('--url <url>', 'MariaDB server', BENCH_MYSQL_URL)
    .option('--rows <n>', 'dataset rows', wholeCount, 1_000_000)
    .option(
      '--churn <percent>',
      'share of the rows changed per cycle (a third new, deleted, edited)',
      percentage,
      1,
    )
    .option('--connectors <n>', 'connectors on the dataset in the shared cycle', wholeCount, 20)
    .option(
      '--buffer-pool <size>',
      "InnoDB buffer pool for the run, e.g. 8G (restored afterwards; default: the server's)",
      byteSize,
    )
    .parse(argv)
    .opts<{ url: string; rows: number; churn: number; connectors: number; bufferPool?: number }>();
  return {
    url: o.url,
    rows: o.rows,
    churnPercent: o.churn,
    connectors: o.connectors,
    bufferPool: o.bufferPool,
  };
}

const log = (line: string) => console.log(`[bench:shared] ${line}`);
const int = (n: number) => n.toLocaleString('en-US');
const seconds = (ms: number) => (ms / 1000).toFixed(2);
const idOf = (i: number) => `shared-${String(i).padStart(2, '0')}`;

async function main(): Promise<number> {
  const options = parseOptions(process.argv);
  log(
    `${int(options.rows)} rows, ${options.churnPercent}% churn, 1 connector vs ${options.connectors} on one dataset`,
  );
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const url = await createBenchDatabase(options.url, BENCH_DATABASE);
  const db = knex(databaseConfig(url));
  await migrateToLatest(db);
  const restorePool =
    options.bufferPool === undefined ? undefined : await resizeBufferPool(db, options.bufferPool);
  const pool = await bufferPoolSize(db);
  log(
    `InnoDB buffer pool ${int(pool / 1024 ** 2)} MiB${restorePool === undefined ? " (the server's own)" : ' for this run'}`,
  );
  const receiver = await startReceiver();
  const server = await startDevServer();
  const taskQueue = `bench-shared-${process.pid}`;
  const worker = await startWorkerProcess({
    address: server.address,
    taskQueue,
    databaseUrl: url,
    env: { [secretEnvName('default', TOKEN_SECRET)]: receiver.token },
  });
  const client = new DeltasyncClient(server.env.client, { taskQueue });
  try {
    await seed(db, options.rows);
    const save = (i: number) =>
      saveConnector(db, {
        id: idOf(i),
        dataset: { table: 'customers', key: 'customer_key', attributes: ['email', 'segment'] },
        destination: { type: 'http-list', baseUrl: receiver.url, listId: idOf(i), tokenSecret: TOKEN_SECRET },
      });
    await save(0);
    log(`first push of ${idOf(0)}: ${(await client.refresh(idOf(0))).status}`);

    // One connector: its refresh after a churn, four times; the first warms, the median of the
    // other three is the figure.
    let churnRound = 0;
    const alone: { ms: number; run: RunSummary }[] = [];
    for (let i = 0; i < 4; i++) {
      await churn(db, options, churnRound++);
      await settle(db);
      const started = performance.now();
      const run = await client.refresh(idOf(0));
      if (i > 0) alone.push({ ms: performance.now() - started, run });
      log(
        `one connector: ${seconds(performance.now() - started)} s (${run.status}, compare ${run.compare?.mode})`,
      );
    }
    const one = alone.sort((a, b) => a.ms - b.ms)[1]!;

    // The others join: their first pushes, then one cycle in which they all become members.
    for (let i = 1; i < options.connectors; i++) await save(i);
    const ids = Array.from({ length: options.connectors }, (_, i) => idOf(i));
    const setup = performance.now();
    await refreshAll(client, ids);
    await churn(db, options, churnRound++);
    await refreshAll(client, ids);
    log(`setup of ${options.connectors - 1} more connectors: ${seconds(performance.now() - setup)} s`);

    // The figure: one cycle of all of them after a churn.
    await churn(db, options, churnRound++);
    await settle(db);
    const started = performance.now();
    const runs = await refreshAll(client, ids);
    const many = performance.now() - started;
    const compared = runs.filter((r) => r.compare?.shared?.ranCompare).length;
    log(`${options.connectors} connectors: ${seconds(many)} s, ${compared} compare(s) run`);

    const wrong = await checkLists(db, receiver, ids);
    const ratio = many / one.ms;
    // Until every deltalog was updated (the runs start together): what sharing the compare saves.
    const compareRatio =
      Math.max(...runs.map((r) => r.timings?.deltalogMs ?? NaN)) / (one.run.timings?.deltalogMs ?? NaN);
    const deltalogMs = runs.map((r) => r.timings?.deltalogMs ?? NaN);
    const sent = runs.reduce((sum, r) => sum + (r.recordsSent ?? 0), 0);
    console.log(
      `\n| cycle | buffer pool | connectors | wall s | compares run | deltalog step s (max) | records sent |\n|---|---:|---:|---:|---:|---:|---:|\n` +
        `| one connector | ${int(pool / 1024 ** 2)} MiB | 1 | ${seconds(one.ms)} | 1 | ${seconds(one.run.timings?.deltalogMs ?? NaN)} | ${int(one.run.recordsSent ?? 0)} |\n` +
        `| shared | ${int(pool / 1024 ** 2)} MiB | ${options.connectors} | ${seconds(many)} | ${compared} | ${seconds(Math.max(...deltalogMs))} | ${int(sent)} |\n`,
    );
    const median = (field: keyof NonNullable<RunSummary['timings']>) => {
      const values = runs.map((r) => Number(r.timings?.[field] ?? NaN)).sort((a, b) => a - b);
      return seconds(values[Math.floor(values.length / 2)] ?? NaN);
    };
    console.log(
      `per run in the shared cycle (median s): deltalog ${median('deltalogMs')}, plan ${median('planMs')}, ` +
        `read ${median('readMs')}, fetch ${median('fetchMs')}, calls ${median('callMs')}, commits ${median('commitMs')}\n`,
    );
    console.log(
      `(not a target: the deltalog step of the cycle, until all ${options.connectors} deltalogs were updated, took ${compareRatio.toFixed(2)}× one connector's)`,
    );
    console.log(
      `${ratio <= TARGET_RATIO ? 'TARGET MET' : 'TARGET MISSED'}: ${options.connectors} connectors' cycle ${ratio.toFixed(2)}× one connector's refresh (target ≤ ${TARGET_RATIO}×)`,
    );
    if (wrong.length > 0) {
      log(`WRONG RESULT: ${wrong.join('; ')}`);
      return 1;
    }

    // The floors: one more churn each, sent by hand-written loops (see ledgerCycle).
    const compareMs = one.run.timings?.deltalogMs ?? NaN;
    console.log(
      `\nfloors (one compare, taken as the one connector's deltalog step, ${seconds(compareMs)} s, then ${options.connectors} hand-written loops at once):`,
    );
    for (const pendingFirst of [false, true]) {
      await churn(db, options, churnRound);
      const changes = await churnedKeys(db, options, churnRound++);
      await settle(db);
      const loops = await ledgerCycle(url, receiver, ids, changes, pendingFirst);
      const floor = compareMs + loops;
      const floorWrong = await checkLists(db, receiver, ids);
      const what = pendingFirst
        ? 'deltalog floor (every changed row read by key and written pending in one transaction, then each page POSTed and written committed)'
        : 'ledger floor (each page read by key, POSTed, its rows written committed)';
      console.log(
        `- ${what}: loops ${seconds(loops)} s, cycle floor ${seconds(floor)} s = ${(floor / one.ms).toFixed(2)}× one connector's refresh; ` +
          `the measured cycle took ${(many / floor).toFixed(2)}× this floor`,
      );
      if (floorWrong.length > 0) {
        log(`WRONG RESULT after the hand-written loops: ${floorWrong.join('; ')}`);
        return 1;
      }
    }
    return 0;
  } finally {
    worker.kill('SIGTERM');
    await worker.exited;
    await server.stop();
    await receiver.stop();
    await db.raw(`DROP DATABASE IF EXISTS \`${BENCH_DATABASE}\``);
    if (restorePool !== undefined) await resizeBufferPool(db, restorePool);
    await db.destroy();
  }
}

async function seed(db: Db, rows: number) {
  await db.raw(
    `CREATE TABLE customers (customer_key VARCHAR(32) COLLATE utf8mb4_bin PRIMARY KEY, email VARCHAR(64) NOT NULL, segment VARCHAR(16) NOT NULL)`,
  );
  for (let from = 1; from <= rows; from += 1_000_000) {
    const to = Math.min(rows, from + 999_999);
    await db.raw(
      `INSERT INTO customers SELECT CONCAT('c', LPAD(seq, 9, '0')), CONCAT('user', seq, '@example.com'), ELT(1 + seq % 4, 'retail', 'smb', 'enterprise', 'public') FROM seq_${from}_to_${to}`,
    );
  }
}

/**
 * Write out the dirty pages a seed, a setup or a churn left in the buffer pool, so the timed step
 * does not pay for the step before it (FOR EXPORT flushes the tables' pages; nothing is exported).
 */
async function settle(db: Db) {
  const started = performance.now();
  await db.transaction(async (trx) => {
    await trx.raw('FLUSH TABLES customers, deltalog, shared_compare_rows FOR EXPORT');
    await trx.raw('UNLOCK TABLES');
  });
  const ms = performance.now() - started;
  if (ms > 1000) log(`flushed dirty pages: ${seconds(ms)} s`);
}

/** A third of the churn new keys, a third deleted, a third with a new email; different each round. */
async function churn(db: Db, options: Options, round: number) {
  const picked = churnPicks(options, round);
  await db.raw(
    `INSERT INTO customers SELECT n.k, CONCAT('new', n.seq, '@example.com'), 'retail' FROM ${picked.inserted} n`,
  );
  // Joined to a derived table of keys (an IN over the sequence would scan the table per row).
  await db.raw(`DELETE c FROM customers c JOIN ${picked.deleted} d ON c.customer_key = d.k`);
  await db.raw(
    `UPDATE customers c JOIN ${picked.edited} e ON c.customer_key = e.k SET c.email = CONCAT('edited', ${round}, '-', c.customer_key)`,
  );
}

/** The keys a churn round picks, as derived tables of `k` (spread over the key range). */
function churnPicks(options: Options, round: number) {
  const third = Math.max(1, Math.round((options.rows * options.churnPercent) / 100 / 3));
  const step = Math.max(1, Math.floor(options.rows / third / 3));
  const keys = (offset: number) =>
    `(SELECT CONCAT('c', LPAD(${offset} + seq * ${step * 3} + ${round}, 9, '0')) AS k FROM seq_0_to_${third - 1})`;
  return {
    inserted: `(SELECT CONCAT('n', ${round}, '-', seq) AS k, seq FROM seq_1_to_${third})`,
    deleted: keys(1),
    edited: keys(2),
  };
}

/** What a churn round changed, as a hand-written loop would be told: keys to upsert, keys to delete. */
async function churnedKeys(db: Db, options: Options, round: number) {
  const picked = churnPicks(options, round);
  const list = async (sql: string) =>
    ((await db.raw(`SELECT k FROM ${sql} x ORDER BY k`)) as [{ k: string }[]])[0].map((r) => r.k);
  const upserts = [...(await list(picked.inserted)), ...(await list(picked.edited))].sort((a, b) =>
    Buffer.compare(Buffer.from(a), Buffer.from(b)),
  );
  return { upserts, deletions: await list(picked.deleted) };
}

/**
 * The least a cycle can do after its compare, written by hand: for every connector at once, on a
 * connection of its own, the changed rows read by key a page (1,000) at a time and POSTed to its
 * list, then the deletions; after each call, the page's keys and attribute hashes written into the
 * connector's deltalog as delivered (one INSERT … ON DUPLICATE KEY UPDATE) with a checkpoint, in
 * one transaction: what keeping the promise (resume after the last recorded page, know what each
 * list holds) needs per connector. No Temporal, no planning, no change log, no pending state.
 * With `pendingFirst`, the deltalog method's own floor: every changed row is first written pending
 * (as a deltalog update leaves them, all in one transaction), then each page committed after its
 * call: the two writes per changed row and connector the method makes.
 */
async function ledgerCycle(
  url: string,
  receiver: Receiver,
  ids: string[],
  changes: { upserts: string[]; deletions: string[] },
  pendingFirst: boolean,
): Promise<number> {
  const connections = await Promise.all(
    ids.map(() => mysql.createConnection(databaseConfig(url).connection as mysql.ConnectionOptions)),
  );
  await connections[0]!.query(
    'CREATE TABLE IF NOT EXISTS floor_checkpoints (connector_id VARCHAR(128) PRIMARY KEY, cursor_key VARCHAR(255))',
  );
  const started = performance.now();
  try {
    await Promise.all(ids.map((id, i) => ledgerLoop(connections[i]!, receiver, id, changes, pendingFirst)));
    return performance.now() - started;
  } finally {
    await Promise.all(connections.map((c) => c.end()));
  }
}

const LEDGER_PAGE = 1000;

async function ledgerLoop(
  conn: mysql.Connection,
  receiver: Receiver,
  id: string,
  changes: { upserts: string[]; deletions: string[] },
  pendingFirst: boolean,
) {
  const connectorKey = `default/${id}`;
  type Page = { members: { key: string; attributes: Record<string, string> }[]; hashed: Hashed[] };
  type Hashed = { key: string; hash: string | null };
  const upserts: Page[] = [];
  for (let i = 0; i < changes.upserts.length; i += LEDGER_PAGE) {
    const keys = changes.upserts.slice(i, i + LEDGER_PAGE);
    const [rows] = await conn.execute<RowDataPacket[]>(
      `SELECT customer_key, email, segment FROM customers WHERE customer_key IN (${keys.map(() => '?').join(', ')})`,
      keys,
    );
    const members = rows.map((r) => ({
      key: String(r.customer_key),
      attributes: { email: String(r.email), segment: String(r.segment) },
    }));
    const hashed = members.map((m) => ({
      key: m.key,
      hash: createHash('md5').update(`v${m.attributes.email}\u001fv${m.attributes.segment}`).digest('hex'),
    }));
    upserts.push({ members, hashed });
  }
  const deletions: Hashed[][] = [];
  for (let i = 0; i < changes.deletions.length; i += LEDGER_PAGE)
    deletions.push(changes.deletions.slice(i, i + LEDGER_PAGE).map((key) => ({ key, hash: null })));

  const upsertRows = (rows: Hashed[], inDataset: number, committed: number | null) =>
    conn.query(
      `INSERT INTO deltalog (connector_id, record_key, in_dataset, attr_hash, on_remote, updated_at, committed_at, attempts) VALUES ?
       ON DUPLICATE KEY UPDATE in_dataset = VALUES(in_dataset), attr_hash = COALESCE(VALUES(attr_hash), attr_hash),
         ${committed === null ? '' : 'on_remote = VALUES(on_remote),'} updated_at = VALUES(updated_at), committed_at = VALUES(committed_at), attempts = 0`,
      [
        rows.map((r) => [
          connectorKey,
          r.key,
          inDataset,
          r.hash,
          committed === null ? 0 : inDataset,
          Date.now(),
          committed,
          0,
        ]),
      ],
    );
  // The deltalog update's share, at its cheapest: every changed row pending, in one transaction.
  if (pendingFirst) {
    await conn.query('BEGIN');
    for (const page of upserts) await upsertRows(page.hashed, 1, null);
    for (const page of deletions) await upsertRows(page, 0, null);
    await conn.query('COMMIT');
  }
  const record = async (rows: Hashed[], inDataset: number) => {
    const now = Date.now();
    await conn.query('BEGIN');
    if (pendingFirst)
      await conn.query(
        `UPDATE deltalog SET committed_at = ?, on_remote = in_dataset, attempts = 0, last_error = NULL
         WHERE connector_id = ? AND record_key IN (?) AND committed_at IS NULL`,
        [now, connectorKey, rows.map((r) => r.key)],
      );
    else await upsertRows(rows, inDataset, now);
    await conn.query('REPLACE INTO floor_checkpoints VALUES (?, ?)', [connectorKey, rows.at(-1)!.key]);
    await conn.query('COMMIT');
  };
  for (const page of upserts) {
    await postToList(receiver, id, 'add', { members: page.members }, page.members.length);
    await record(page.hashed, 1);
  }
  for (const page of deletions) {
    await postToList(receiver, id, 'remove', { keys: page.map((k) => k.key) }, page.length);
    await record(page, 0);
  }
}

async function refreshAll(client: DeltasyncClient, ids: string[]): Promise<RunSummary[]> {
  const runs = await Promise.all(ids.map((id) => client.refresh(id)));
  const failed = runs.filter((run) => run.status !== 'succeeded' && run.status !== 'noop');
  if (failed.length > 0) throw new Error(`${failed.length} refreshes did not succeed: ${failed[0]!.status}`);
  return runs;
}

/** Every list holds as many members as the table has rows, and a spread sample matches exactly. */
async function checkLists(db: Db, receiver: Receiver, ids: string[]): Promise<string[]> {
  const [[{ n }]] = (await db.raw('SELECT COUNT(*) AS n FROM customers')) as [[{ n: number }]];
  const sample = (await db.raw(
    `SELECT customer_key, email, segment FROM customers ORDER BY MD5(customer_key) LIMIT ${SAMPLE}`,
  )) as [{ customer_key: string; email: string; segment: string }[]];
  const keys = [...sample[0].map((r) => r.customer_key), 'c000000001', 'not-a-key'];
  const wrong: string[] = [];
  for (const id of ids) {
    const { count, members } = await receiver.check(id, keys);
    if (count !== Number(n)) wrong.push(`${id} holds ${count} members, the table ${n} rows`);
    for (const row of sample[0]) {
      const held = members[row.customer_key];
      if (held?.email !== row.email || held?.segment !== row.segment) {
        wrong.push(`${id}: ${row.customer_key} is ${JSON.stringify(held)}`);
        break;
      }
    }
    if (members['not-a-key'] !== null) wrong.push(`${id} holds a key the table never had`);
  }
  return wrong;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
