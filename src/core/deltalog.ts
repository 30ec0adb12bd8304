import type { Knex } from 'knex';
import {
  createTemporaryTable,
  dialectOf,
  dropTemporaryTable,
  selectRows,
  TEMPORARY_KEY,
  type Db,
  type Dialect,
} from '../db';
import type { Attributes, Rejection } from './destination';
import { jsonBytes } from './batching';
import {
  attributeHash,
  comparableKey,
  keyColumn,
  MAX_KEY_LENGTH,
  directReader,
  sourceFrom,
  validKey,
  type DatasetDefinition,
  type DatasetReader,
  type Fragment,
  type TouchedKeys,
  type KeyTraits,
} from './dataset';

/**
 * The deltalog: one row per (connector, key) ever seen. A row is pending exactly when
 * `committed_at` is NULL; `on_remote` remembers what the destination last confirmed, which is what
 * tells an addition (not on the remote yet) from an attribute update (already there).
 *
 * Everything here is set-based SQL over the database; nothing loads the dataset into memory.
 */

type Executor = Db | Knex.Transaction;

function join(...fragments: Fragment[]): Fragment {
  return { sql: fragments.map((f) => f.sql).join(' '), bindings: fragments.flatMap((f) => f.bindings) };
}
const text = (sql: string, ...bindings: Knex.RawBinding[]): Fragment => ({ sql, bindings });

/**
 * Where a compare writes: a connector's deltalog (named by the connector's key), or the rows of a
 * compare shared by the connectors of one dataset (src/core/shared-compare.ts), which have the
 * deltalog's compare columns and no delivery state.
 */
export type CompareTarget = string | { sharedCompare: string };

interface TargetTable {
  table: string;
  owner: string;
  id: string;
  /** Columns (after `updated_at`) and values a new row takes besides the compared ones. */
  newColumns: string;
  newValues: string;
  /** Assignments (after `updated_at`) that make a changed row pending again. */
  reset: string;
  /** SQLite's name for the table's primary key index. */
  keyIndex: string;
}

function tableOf(target: CompareTarget): TargetTable {
  if (typeof target === 'string')
    return {
      table: 'deltalog',
      owner: 'connector_id',
      id: target,
      newColumns: ', on_remote, committed_at, attempts',
      newValues: ', 0, NULL, 0',
      reset: ', committed_at = NULL, attempts = 0, last_error = NULL',
      keyIndex: SQLITE_DELTALOG_KEY,
    };
  return {
    table: 'shared_compare_rows',
    owner: 'compare_id',
    id: target.sharedCompare,
    newColumns: '',
    newValues: '',
    reset: '',
    keyIndex: 'sqlite_autoindex_shared_compare_rows_1',
  };
}

// ---------------------------------------------------------------------------------------------
// 1. Full-compare update (FIG. 4)
// ---------------------------------------------------------------------------------------------

export interface BadRowReport {
  datasetRows: number;
  nullOrEmptyKeys: number;
  oversizedKeys: number;
  /** Distinct keys that occur on more than one row (each is kept once). */
  duplicateKeys: number;
  samples: { nullOrEmptyKey: Record<string, unknown>[]; oversizedKey: string[]; duplicateKey: string[] };
}

export function badRowTotal(report: BadRowReport): number {
  return report.nullOrEmptyKeys + report.oversizedKeys + report.duplicateKeys;
}

/**
 * Bring the deltalog in line with the dataset as it is now, in one transaction:
 * new keys are inserted pending; keys that came back or whose attribute hash changed become pending
 * again; keys that left the dataset flip `in_dataset` off, pending. `now` becomes their
 * `updated_at`. Re-running it against an unchanged dataset changes nothing, so it is idempotent.
 */
export async function updateDeltalog(
  db: Db,
  connectorId: CompareTarget,
  source: DatasetDefinition | DatasetReader,
  now: number,
  alongside?: (trx: Knex.Transaction) => Promise<void>,
  journal?: Pick<TouchedKeys, 'prepare' | 'settle'>,
): Promise<BadRowReport> {
  const reader = readerOf(db, source);
  return reader.read(async (executor) => {
    const traits = reader.traits ?? (await keyTraits(executor, reader.dataset));
    const report = await inspectDataset(executor, reader.dataset, traits);
    await inCompareTransaction(executor, async (trx) => {
      // A change source's journal rows read before the compare are reflected in it: they are
      // consumed with it (core/change-source.ts).
      await journal?.prepare?.(trx);
      await applyFullCompare(trx, connectorId, reader.dataset, now, report, traits);
      await journal?.settle?.(trx);
      await alongside?.(trx);
    });
    return report;
  });
}

/**
 * The same update for the keys a change source says were touched (`touched`: a subquery naming
 * them as `record_key`) instead of the whole dataset: the same statements, restricted to those
 * keys, so the deltalog ends exactly as a full compare would leave it for them, at a cost that
 * follows the change. Keys are always grouped (as the full compare groups a duplicated key), since
 * the bad-row scan that would say whether any key repeats is what this avoids. `alongside` runs in
 * the same transaction (the change positions move with the deltalog). Returns how many touched
 * keys there were and how the number of keys in the dataset changed.
 */
export async function updateDeltalogFromChanges(
  db: Db,
  connectorId: CompareTarget,
  source: DatasetDefinition | DatasetReader,
  touched: TouchedKeys,
  now: number,
  alongside: (trx: Knex.Transaction, counted: ChangesApplied) => Promise<void>,
): Promise<ChangesApplied> {
  const reader = readerOf(db, source);
  return reader.read(async (executor) => {
    const traits = reader.traits ?? (await keyTraits(executor, reader.dataset));
    return inCompareTransaction(executor, async (trx) => {
      const dialect = dialectOf(trx as unknown as Db);
      const groupBy = duplicateKey(dialect, reader.dataset, traits);
      const applied = { touchedKeys: 0, datasetKeysDelta: 0 };
      // The touched keys are gathered once, distinct and in key order, into a temporary table;
      // then a chunk at a time: the chunk's pages, read by its first statement, are still in the
      // buffer pool for the next ones (all of the change at once may not fit).
      await touched.prepare?.(trx);
      await gatherTouched(trx, dialect, touched);
      const chunks = await chunksOf(trx);
      // Reading ahead: while one chunk is written, the next chunks' pages are read into the buffer
      // pool on other connections (MySQL; the disk serves several reads at once). Only a warm-up
      // (what the transaction reads is its own), and only when the first chunk had to read from
      // disk: with the tables in the pool it would only take a core from the update.
      const mayReadAhead = dialect === 'mysql' && !executor.isTransaction && chunks.length > 1;
      let readingAhead = false;
      const readAhead = new Map<number, Promise<unknown>>();
      const warm = async (i: number) => {
        const chunk = chunks[i];
        if (!chunk || readAhead.has(i)) return;
        // The keys are named: the gathered table is this connection's own.
        const keys = await rows<{ record_key: string }>(trx, chunkKeys(chunk));
        readAhead.set(
          i,
          warmChunk(
            executor,
            connectorId,
            reader.dataset,
            keys.map((row) => row.record_key),
          ).catch(() => undefined),
        );
      };
      if (dialect === 'mysql') await createGone(trx);
      try {
        for (const [i, { after, upTo, keys }] of chunks.entries()) {
          if (readingAhead) for (let ahead = 1; ahead <= READ_AHEAD; ahead++) await warm(i + ahead);
          const readsBefore = i === 0 && mayReadAhead ? await diskReads(trx) : undefined;
          const scope = { dataset: reader.dataset, now, groupBy, touched: chunkKeys({ after, upTo }) };
          applied.datasetKeysDelta += await applyChunk(trx, dialect, connectorId, scope);
          applied.touchedKeys += keys;
          if (readsBefore !== undefined) readingAhead = (await diskReads(trx)) - readsBefore > keys / 10;
        }
      } finally {
        await Promise.all(readAhead.values());
      }
      await dropTemporaryTable(trx, TOUCHED);
      if (dialect === 'mysql') await dropTemporaryTable(trx, GONE);
      await touched.settle?.(trx);
      await alongside(trx, applied);
      return applied;
    });
  });
}

/** Touched keys updated per round of statements (see updateDeltalogFromChanges). */
const CHANGE_CHUNK = 1000;
/** Chunks whose pages are read ahead while one is written. */
const READ_AHEAD = 2;
const TOUCHED = 'deltasync_touched';

interface Chunk {
  /** Keys after this one (exclusive) … */
  after: string;
  /** … up to this one (inclusive). */
  upTo: string;
  keys: number;
}

/**
 * One chunk of touched keys; returns how many entered the dataset less how many left, counted from
 * what the statements wrote, so that the keys need not be read again to count them.
 *
 * MySQL says how many of an upsert's rows were new ("Records: n  Duplicates: d"), so one upsert
 * writes the chunk's new and changed keys; the keys that came back into the dataset (updates, to
 * the upsert) are counted by the read that finds those that left, before it. SQLite's count cannot
 * tell an insert from an update: the keys staying and the keys entering are upserted by two
 * statements, the second's count being those that entered.
 */
async function applyChunk(
  trx: Knex.Transaction,
  dialect: Dialect,
  connectorId: CompareTarget,
  scope: UpsertScope & { touched: Fragment },
): Promise<number> {
  if (dialect === 'sqlite') {
    await upsertNewAndChanged(trx, dialect, connectorId, { ...scope, only: 'staying' });
    const entering = await upsertNewAndChanged(trx, dialect, connectorId, { ...scope, only: 'entering' });
    const left = await markRemoved(trx, dialect, connectorId, scope.dataset, scope.now, scope.touched);
    return entering.written - left;
  }
  const target = tableOf(connectorId);
  await gatherGone(trx, target, scope.dataset, { touched: scope.touched, back: true });
  const upsert = await upsertNewAndChanged(trx, dialect, connectorId, scope);
  const left = await markGone(trx, target, scope.now);
  const [back] = await rows<{ n: number | string }>(
    trx,
    text(`SELECT COUNT(*) AS n FROM ${GONE} WHERE back = 1`),
  );
  await trx.raw(`DELETE FROM ${GONE}`);
  return upsert.written - upsert.updated + Number(back?.n ?? 0) - left;
}

/** A chunk's keys, from the gathered table. */
function chunkKeys({ after, upTo }: Pick<Chunk, 'after' | 'upTo'>): Fragment {
  return text(`SELECT record_key FROM ${TOUCHED} WHERE record_key > ? AND record_key <= ?`, after, upTo);
}

/** The gathered keys cut into chunks of CHANGE_CHUNK in key order: one row per chunk read. */
async function chunksOf(trx: Knex.Transaction): Promise<Chunk[]> {
  const bounds = await rows<{ k: string; rn: number | string }>(
    trx,
    text(
      `SELECT x.record_key AS k, x.rn FROM (SELECT record_key, ROW_NUMBER() OVER (ORDER BY record_key) AS rn, COUNT(*) OVER () AS total FROM ${TOUCHED}) x WHERE x.rn % ${CHANGE_CHUNK} = 0 OR x.rn = x.total ORDER BY x.rn`,
    ),
  );
  const chunks: Chunk[] = [];
  let after = '';
  let counted = 0;
  for (const { k, rn } of bounds) {
    chunks.push({ after, upTo: k, keys: Number(rn) - counted });
    after = k;
    counted = Number(rn);
  }
  return chunks;
}

/** The server's count of pages read from disk into the buffer pool so far. */
async function diskReads(trx: Knex.Transaction): Promise<number> {
  const [status] = (await trx.raw("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_reads'")) as [
    { Value: string }[],
  ];
  return Number(status[0]?.Value ?? 0);
}

/** Read a chunk's pages of the deltalog and the dataset, so that its statements find them cached. */
async function warmChunk(
  db: Executor,
  connectorId: CompareTarget,
  dataset: DatasetDefinition,
  chunkKeys: string[],
): Promise<void> {
  if (chunkKeys.length === 0) return;
  const keys = text(chunkKeys.map(() => '?').join(', '), ...chunkKeys);
  const target = tableOf(connectorId);
  await rows(
    db,
    join(
      text(
        `SELECT COUNT(*) AS n FROM ${target.table} WHERE ${target.owner} = ? AND record_key IN (`,
        target.id,
      ),
      keys,
      text(')'),
    ),
  );
  await rows(
    db,
    join(
      text('SELECT COUNT(*) AS n FROM'),
      sourceFrom(dataset),
      text('WHERE'),
      keyColumn(dataset),
      text('IN ('),
      keys,
      text(')'),
    ),
  );
}

/** The touched keys, distinct, into a temporary table keyed by them. */
async function gatherTouched(trx: Knex.Transaction, dialect: Dialect, touched: Fragment): Promise<void> {
  await createTemporaryTable(trx, TOUCHED, {
    mysql: `record_key ${TEMPORARY_KEY.mysql} NOT NULL PRIMARY KEY`,
    sqlite: `record_key ${TEMPORARY_KEY.sqlite} NOT NULL PRIMARY KEY`,
  });
  if (dialect === 'mysql') {
    await trx.raw(
      `INSERT IGNORE INTO ${TOUCHED} (record_key) SELECT t.record_key FROM (${touched.sql}) t`,
      touched.bindings,
    );
    return;
  }
  await trx.raw(
    `INSERT OR IGNORE INTO ${TOUCHED} (record_key) SELECT t.record_key FROM (${touched.sql}) t WHERE t.record_key IS NOT NULL`,
    touched.bindings,
  );
}

export interface ChangesApplied {
  touchedKeys: number;
  /** Keys that entered the dataset less those that left it. */
  datasetKeysDelta: number;
}

/** Keys the deltalog holds as in the dataset (after a full compare, for counting on from there). */
export async function datasetKeyCount(db: Db, connectorId: CompareTarget): Promise<number> {
  const target = tableOf(connectorId);
  const [row] = (await db(target.table)
    .where({ [target.owner]: target.id, in_dataset: 1 })
    .count({ n: '*' })) as {
    n: number | string;
  }[];
  return Number(row?.n ?? 0);
}

/**
 * A first push may skip the compare: when the connector has nothing in the deltalog yet and the
 * dataset's key is unique and compared byte for byte, every valid row is an addition, so the send
 * reads the dataset itself in key order (readDatasetPage) and writes each delivered batch to the
 * deltalog committed (insertDirectPush). That saves writing every key pending and then rewriting
 * it committed. Returns the bad-row report when the first push may go direct, else undefined.
 */
export async function inspectForDirectPush(
  db: Db,
  connectorId: string,
  source: DatasetDefinition | DatasetReader,
): Promise<BadRowReport | undefined> {
  if (await hasDeltalog(db, connectorId)) return undefined;
  const reader = readerOf(db, source);
  return reader.read(async (executor) => {
    const traits = reader.traits ?? (await keyTraits(executor, reader.dataset));
    if (!traits.unique || !traits.binary) return undefined;
    return inspectDataset(executor, reader.dataset, traits);
  });
}

/** Rows of the dataset the deltalog can take: what a direct first push sends. */
export function validRows(report: BadRowReport): number {
  return report.datasetRows - badRowTotal(report);
}

function readerOf(db: Db, source: DatasetDefinition | DatasetReader): DatasetReader {
  return 'read' in source ? source : directReader(db, source);
}

/**
 * READ COMMITTED: reading the dataset must not lock the rows other processes are writing. A
 * reader that already opened a transaction (a guarded read) set it up so: the compare joins it.
 */
function inCompareTransaction<T>(db: Executor, work: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
  if (db.isTransaction) return work(db as Knex.Transaction);
  return db.transaction(
    work,
    dialectOf(db as Db) === 'mysql' ? { isolationLevel: 'read committed' } : undefined,
  );
}

async function applyFullCompare(
  trx: Knex.Transaction,
  connectorId: CompareTarget,
  dataset: DatasetDefinition,
  now: number,
  report: BadRowReport,
  traits: KeyTraits,
): Promise<void> {
  const dialect = dialectOf(trx as unknown as Db);
  // A duplicated key gets one row per key, grouped the way duplicates were counted.
  const groupBy = report.duplicateKeys > 0 ? duplicateKey(dialect, dataset, traits) : undefined;
  await upsertNewAndChanged(trx, dialect, connectorId, { dataset, now, groupBy });
  await markRemoved(trx, dialect, connectorId, dataset, now);
}

/**
 * What an update would leave pending, without changing anything: the same statements in a
 * transaction that is rolled back. For dry-run plans.
 */
export async function previewUpdate<T>(
  db: Db,
  connectorId: string,
  source: DatasetDefinition | DatasetReader,
  now: number,
  read: (trx: Db, report: BadRowReport) => Promise<T>,
): Promise<T> {
  const reader = readerOf(db, source);
  return reader.read(async (executor) => {
    const traits = reader.traits ?? (await keyTraits(executor, reader.dataset));
    const report = await inspectDataset(executor, reader.dataset, traits);
    let result: T | undefined;
    // Inside a guarded read this is a savepoint: only the compare's changes are rolled back.
    const preview = (trx: Knex.Transaction) =>
      applyFullCompare(trx, connectorId, reader.dataset, now, report, traits).then(async () => {
        result = await read(trx as unknown as Db, report);
        await trx.rollback(ROLLED_BACK);
      });
    const inTransaction = executor.isTransaction
      ? executor.transaction(preview)
      : inCompareTransaction(executor, preview);
    await inTransaction.catch((error: unknown) => {
      if (error !== ROLLED_BACK) throw error;
    });
    return result as T;
  });
}
const ROLLED_BACK = new Error('preview rolled back');

interface UpsertScope {
  dataset: DatasetDefinition;
  now: number;
  /** How a duplicated key is grouped (when the dataset has one, or may). */
  groupBy: Fragment | undefined;
  /** Only these keys (a subquery naming them as `record_key`). */
  touched?: Fragment;
  /**
   * Only keys that stay in the dataset with a new hash, or only keys that enter it (new, or back):
   * the second's count of written rows is the number of keys that entered.
   */
  only?: 'staying' | 'entering';
}

/**
 * New and changed keys, pending. Returns how many rows it wrote, and (MySQL) how many of them were
 * updates of existing rows.
 */
async function upsertNewAndChanged(
  trx: Knex.Transaction,
  dialect: 'mysql' | 'sqlite',
  connectorId: CompareTarget,
  { dataset, now, groupBy, touched, only }: UpsertScope,
): Promise<{ written: number; updated: number }> {
  const target = tableOf(connectorId);
  const hash = attributeHash(dialect, dataset);
  const rows = join(
    text('SELECT'),
    groupBy ?? keyColumn(dataset),
    text('AS k,'),
    hash,
    text('AS h FROM'),
    sourceFrom(dataset),
    text('WHERE'),
    validKey(dialect, dataset),
    ...(touched ? [text('AND'), keyColumn(dataset), text('IN ('), touched, text(')')] : []),
  );
  // A duplicated key (reported as a bad row) gets one stable hash; otherwise its rows would take
  // turns in the deltalog and make the key pending again on every update.
  const ds = groupBy
    ? join(text('SELECT dup.k, MIN(dup.h) AS h FROM ('), rows, text(') dup GROUP BY dup.k'))
    : rows;
  const { table, owner } = target;
  const select = join(
    text(`SELECT ?, ds.k, 1, ds.h, ?${target.newValues} FROM (`, target.id, now),
    ds,
    text(`) ds ${joinTouched(dialect, target, only)} ON dl.${owner} = ? AND dl.record_key = ds.k`, target.id),
    text(`WHERE ${UPSERT_FILTER[only ?? 'all']}`),
  );
  const insert = `INSERT INTO ${table} (${owner}, record_key, in_dataset, attr_hash, updated_at${target.newColumns})`;
  const onConflict =
    dialect === 'mysql'
      ? `ON DUPLICATE KEY UPDATE in_dataset = 1, attr_hash = VALUES(attr_hash), updated_at = VALUES(updated_at)${target.reset}`
      : `ON CONFLICT (${owner}, record_key) DO UPDATE SET in_dataset = 1, attr_hash = excluded.attr_hash, updated_at = excluded.updated_at${target.reset}`;
  return rowsWritten(dialect, await trx.raw(`${insert} ${select.sql} ${onConflict}`, select.bindings));
}

/**
 * How the deltalog joins the dataset's rows. Only keys staying in the dataset need a deltalog row
 * (an inner join), and SQLite, left to order an inner join itself, walks the connector's rows by
 * the pending index; CROSS JOIN keeps the touched rows outside, the primary key inside.
 */
function joinTouched(dialect: Dialect, target: TargetTable, only: UpsertScope['only']): string {
  if (only !== 'staying') return `LEFT JOIN ${target.table} dl`;
  return dialect === 'sqlite'
    ? `CROSS JOIN ${target.table} dl INDEXED BY ${target.keyIndex}`
    : `JOIN ${target.table} dl`;
}

const UPSERT_FILTER = {
  all: 'dl.record_key IS NULL OR dl.in_dataset = 0 OR dl.attr_hash IS NULL OR dl.attr_hash <> ds.h',
  staying: 'dl.in_dataset = 1 AND (dl.attr_hash IS NULL OR dl.attr_hash <> ds.h)',
  entering: 'dl.record_key IS NULL OR dl.in_dataset = 0',
};

/**
 * Rows an INSERT … SELECT … upsert wrote, one per selected row, and how many of them updated an
 * existing row: MySQL's "Records: n  Duplicates: d" (its affected rows count an update twice);
 * SQLite's changes, which do not tell (updated: 0).
 */
function rowsWritten(dialect: Dialect, result: unknown): { written: number; updated: number } {
  if (dialect === 'sqlite') return { written: Number((result as { changes: number }).changes), updated: 0 };
  const info = (result as [{ info?: string }])[0]?.info ?? '';
  const counts = /Records:\s*(\d+)\s+Duplicates:\s*(\d+)/.exec(info);
  if (!counts) throw new Error(`no row counts in MySQL's answer to an upsert: ${JSON.stringify(info)}`);
  return { written: Number(counts[1]), updated: Number(counts[2]) };
}

/** Rows an UPDATE changed (MySQL's affected rows, SQLite's changes). */
function rowsChanged(dialect: Dialect, result: unknown): number {
  if (dialect === 'sqlite') return Number((result as { changes: number }).changes);
  return Number((result as [{ affectedRows: number }])[0].affectedRows);
}

/** Keys that left the dataset, pending deletion. Returns how many. */
async function markRemoved(
  trx: Knex.Transaction,
  dialect: 'mysql' | 'sqlite',
  connectorId: CompareTarget,
  dataset: DatasetDefinition,
  now: number,
  touched?: Fragment,
): Promise<number> {
  const target = tableOf(connectorId);
  const { table, owner } = target;
  const set = `in_dataset = 0, updated_at = ?${target.reset}`;
  if (dialect === 'mysql') return markRemovedMysql(trx, target, dataset, now, touched);
  // Keys that are invalid in the dataset never entered the deltalog, so no validity filter here.
  const statement = join(
    text(`UPDATE ${table} ${touched ? byKeyHint(trx, target) : ''} SET ${set}`, now),
    text(`WHERE ${owner} = ? AND in_dataset = 1`, target.id),
    ...(touched ? [text('AND record_key IN ('), touched, text(')')] : []),
    text('AND NOT EXISTS (SELECT 1 FROM'),
    sourceFrom(dataset),
    text('WHERE'),
    keyColumn(dataset),
    text(`= ${table}.record_key)`),
  );
  return rowsChanged(dialect, await trx.raw(statement.sql, statement.bindings));
}

const GONE = 'deltasync_gone';

/**
 * MySQL reads the tables a multi-table UPDATE joins with shared locks, held until the transaction
 * commits: joined to the dataset, the application's writes to it would wait for the whole compare
 * (and the compare for their open transactions). So the keys that left are found first by an
 * INSERT … SELECT, which reads without locks under READ COMMITTED, into a temporary table, and the
 * update joins only that. Restricted to touched keys, both drive from them (a derived table joined
 * to the deltalog's primary key) rather than walking the connector's rows.
 */
async function markRemovedMysql(
  trx: Knex.Transaction,
  target: TargetTable,
  dataset: DatasetDefinition,
  now: number,
  touched?: Fragment,
): Promise<number> {
  await createGone(trx);
  await gatherGone(trx, target, dataset, { touched, back: false });
  const left = await markGone(trx, target, now);
  await dropTemporaryTable(trx, GONE);
  return left;
}

/** The temporary table of keys that left (`back` = 0) or came back (`back` = 1), on MySQL. */
async function createGone(trx: Knex.Transaction): Promise<void> {
  const columns = `record_key ${TEMPORARY_KEY.mysql} NOT NULL PRIMARY KEY, back TINYINT NOT NULL DEFAULT 0`;
  await createTemporaryTable(trx, GONE, { mysql: columns, sqlite: columns });
}

/** Mark the keys gathered as gone pending removal; returns how many. */
async function markGone(trx: Knex.Transaction, target: TargetTable, now: number): Promise<number> {
  const set = `in_dataset = 0, updated_at = ?${target.reset}`.replace(/(\w+) =/g, 'dl.$1 =');
  const result: unknown = await trx.raw(
    `UPDATE ${target.table} dl JOIN ${GONE} g ON dl.${target.owner} = ? AND dl.record_key = g.record_key SET ${set} WHERE g.back = 0`,
    [target.id, now],
  );
  return rowsChanged('mysql', result);
}

/**
 * Into the gone table, one lock-free read (an INSERT … SELECT): the keys in the dataset by the
 * deltalog that left it, of all the connector's keys or only the `touched` ones; with `back`, also
 * the keys out of it by the deltalog that are back (an upsert cannot count those apart from changed
 * keys). A duplicated key's rows are one key.
 */
async function gatherGone(
  trx: Knex.Transaction,
  target: TargetTable,
  dataset: DatasetDefinition,
  { touched, back }: { touched?: Fragment; back: boolean },
): Promise<void> {
  const key = keyColumn(dataset);
  const gone = join(
    text(`INSERT IGNORE INTO ${GONE} (record_key, back) SELECT dl.record_key, dl.in_dataset = 0 FROM`),
    ...(touched
      ? [
          text('('),
          touched,
          text(
            `) t JOIN ${target.table} dl ON dl.${target.owner} = ? AND dl.record_key = t.record_key`,
            target.id,
          ),
        ]
      : [text(`${target.table} dl`)]),
    text('LEFT JOIN'),
    sourceFrom(dataset),
    text('ON'),
    key,
    text(`= dl.record_key WHERE dl.${target.owner} = ? AND ((dl.in_dataset = 1 AND`, target.id),
    key,
    text('IS NULL)'),
    ...(back ? [text('OR (dl.in_dataset = 0 AND'), key, text('IS NOT NULL)')] : []),
    text(')'),
  );
  await trx.raw(gone.sql, gone.bindings);
}

const SAMPLE_SIZE = 5;

export type { KeyTraits };

/**
 * Read from the catalog for table datasets; a SELECT dataset promises nothing. Grouping by an
 * expression (a collation cast) cannot use the key's index: on a million rows that is the
 * difference between half a second and half a minute, so the cast is used only when needed.
 */
export async function keyTraits(db: Executor, dataset: DatasetDefinition): Promise<KeyTraits> {
  if (dataset.table === undefined) return { unique: false, binary: false };
  const [schema, table] = dataset.table.includes('.') ? dataset.table.split('.', 2) : [null, dataset.table];
  if (dialectOf(db as Db) === 'mysql') {
    const [column] = await rows<{ collation: string | null }>(
      db,
      text(
        'SELECT COLLATION_NAME AS collation FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? AND COLUMN_NAME = ?',
        schema,
        table!,
        dataset.key,
      ),
    );
    const indexes = await rows<{ name: string }>(
      db,
      text(
        'SELECT INDEX_NAME AS name FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? AND NON_UNIQUE = 0 GROUP BY INDEX_NAME HAVING COUNT(*) = 1 AND MAX(COLUMN_NAME) = ?',
        schema,
        table!,
        dataset.key,
      ),
    );
    const collation = column?.collation ?? null;
    return { unique: indexes.length > 0, binary: collation === null || collation.endsWith('_bin') };
  }
  const columns = await rows<{ name: string; pk: number }>(
    db,
    text('SELECT name, pk FROM pragma_table_info(?)', table!),
  );
  const pkColumns = columns.filter((c) => c.pk > 0);
  let unique = pkColumns.length === 1 && pkColumns[0]!.name === dataset.key;
  for (const index of await rows<{ name: string; unique: number }>(
    db,
    text('SELECT name, "unique" FROM pragma_index_list(?)', table!),
  )) {
    if (unique || !index.unique) continue;
    const indexColumns = await rows<{ name: string }>(
      db,
      text('SELECT name FROM pragma_index_info(?)', index.name),
    );
    unique = indexColumns.length === 1 && indexColumns[0]!.name === dataset.key;
  }
  const [definition] = await rows<{ sql: string | null }>(
    db,
    text('SELECT sql FROM sqlite_master WHERE name = ?', table!),
  );
  return { unique, binary: !/collate\s+(nocase|rtrim)/i.test(definition?.sql ?? '') };
}

/** The key as duplicates are counted: as the deltalog compares it, as cheaply as possible. */
function duplicateKey(dialect: Dialect, dataset: DatasetDefinition, traits: KeyTraits): Fragment {
  return traits.binary ? keyColumn(dataset) : comparableKey(dialect, dataset);
}

/** Count (and sample) the rows the deltalog cannot take as they are: they are reported, not lost. */
export async function inspectDataset(
  db: Executor,
  dataset: DatasetDefinition,
  traits?: KeyTraits,
): Promise<BadRowReport> {
  const dialect = dialectOf(db as Db);
  const k = keyColumn(dataset);
  const length = dialect === 'mysql' ? 'CHAR_LENGTH' : 'LENGTH';
  const key = traits ?? (await keyTraits(db, dataset));
  const dupKey = duplicateKey(dialect, dataset, key);
  // One scan counts the bad keys and, unless the key is declared unique, whether any valid key
  // repeats (rows minus distinct keys); only then is it worth grouping to count and name them.
  const surplus = key.unique
    ? text('0')
    : join(
        text('SUM(CASE WHEN'),
        validKey(dialect, dataset),
        text('THEN 1 ELSE 0 END) - COUNT(DISTINCT CASE WHEN'),
        validKey(dialect, dataset),
        text('THEN'),
        dupKey,
        text('END)'),
      );
  const counts = join(
    text('SELECT COUNT(*) AS total, SUM(CASE WHEN'),
    k,
    text('IS NULL OR'),
    k,
    text("= '' THEN 1 ELSE 0 END) AS empty_keys, SUM(CASE WHEN"),
    text(`${length}(${k.sql}) > ${MAX_KEY_LENGTH} THEN 1 ELSE 0 END) AS long_keys,`, ...k.bindings),
    surplus,
    text('AS surplus FROM'),
    sourceFrom(dataset),
  );
  const [row] = await rows<{
    total: number;
    empty_keys: number | null;
    long_keys: number | null;
    surplus: number | null;
  }>(db, counts);
  let dup: { n: number } | undefined;
  if (Number(row?.surplus ?? 0) > 0) {
    const duplicates = join(
      text('SELECT COUNT(*) AS n FROM (SELECT'),
      dupKey,
      text('AS k FROM'),
      sourceFrom(dataset),
      text('WHERE'),
      validKey(dialect, dataset),
      text('GROUP BY'),
      dupKey,
      text('HAVING COUNT(*) > 1) d'),
    );
    [dup] = await rows<{ n: number }>(db, duplicates);
  }
  const report: BadRowReport = {
    datasetRows: Number(row?.total ?? 0),
    nullOrEmptyKeys: Number(row?.empty_keys ?? 0),
    oversizedKeys: Number(row?.long_keys ?? 0),
    duplicateKeys: Number(dup?.n ?? 0),
    samples: { nullOrEmptyKey: [], oversizedKey: [], duplicateKey: [] },
  };
  if (report.nullOrEmptyKeys > 0) {
    const columns =
      dataset.attributes.length > 0 ? dataset.attributes.map(() => '??').join(', ') : '1 AS row';
    const sample = join(
      text(`SELECT ${columns} FROM`, ...dataset.attributes.map((c) => `src.${c}`)),
      sourceFrom(dataset),
      text('WHERE'),
      k,
      text('IS NULL OR'),
      k,
      text(`= '' LIMIT ${SAMPLE_SIZE}`),
    );
    report.samples.nullOrEmptyKey = await rows<Record<string, unknown>>(db, sample);
  }
  if (report.oversizedKeys > 0) {
    const sample = join(
      text('SELECT'),
      k,
      text('AS k FROM'),
      sourceFrom(dataset),
      text(`WHERE ${length}(${k.sql}) > ${MAX_KEY_LENGTH} LIMIT ${SAMPLE_SIZE}`, ...k.bindings),
    );
    const found = await rows<{ k: string }>(db, sample);
    report.samples.oversizedKey = found.map((r) => `${String(r.k).slice(0, 60)}…`);
  }
  if (report.duplicateKeys > 0) {
    const sample = join(
      text('SELECT'),
      dupKey,
      text('AS k FROM'),
      sourceFrom(dataset),
      text('WHERE'),
      validKey(dialect, dataset),
      text('GROUP BY'),
      dupKey,
      text(`HAVING COUNT(*) > 1 ORDER BY 1 LIMIT ${SAMPLE_SIZE}`),
    );
    report.samples.duplicateKey = (await rows<{ k: string }>(db, sample)).map((r) => String(r.k));
  }
  return report;
}

/** Rows of a raw SELECT fragment (see selectRows). */
function rows<T>(db: Executor, fragment: Fragment): Promise<T[]> {
  return selectRows<T>(db, fragment.sql, fragment.bindings);
}

// ---------------------------------------------------------------------------------------------
// 2. Pending counts (is a refresh needed?)
// ---------------------------------------------------------------------------------------------

export interface PendingCounts {
  additions: number;
  updates: number;
  deletions: number;
}

/** Pending changes, optionally only those updated at or after `since` (the time horizon). */
export async function pendingCounts(
  db: Db,
  connectorId: string,
  options: { since?: number; maxAttempts?: number } = {},
): Promise<PendingCounts> {
  const query = db('deltalog')
    .where({ connector_id: connectorId })
    .whereNull('committed_at')
    .select(
      db.raw('SUM(CASE WHEN in_dataset = 1 AND on_remote = 0 THEN 1 ELSE 0 END) AS additions'),
      db.raw('SUM(CASE WHEN in_dataset = 1 AND on_remote = 1 THEN 1 ELSE 0 END) AS updates'),
      db.raw('SUM(CASE WHEN in_dataset = 0 THEN 1 ELSE 0 END) AS deletions'),
    );
  if (options.since !== undefined) query.where('updated_at', '>=', options.since);
  if (options.maxAttempts !== undefined) query.where('attempts', '<', options.maxAttempts);
  const [row] = (await query) as { additions: unknown; updates: unknown; deletions: unknown }[];
  return {
    additions: Number(row?.additions ?? 0),
    updates: Number(row?.updates ?? 0),
    deletions: Number(row?.deletions ?? 0),
  };
}

/**
 * What planning asks of the pending rows, in one pass over them (each pass looks every pending row
 * up by its primary key for the columns the pending index lacks; with the deltalog's pages not in
 * memory, each pass was a random read per pending row): the pending changes below the quarantine
 * threshold; the pending rows in the dataset and those on the remote, which with the dataset's
 * size give the remote's (a committed row is on the remote exactly when it is in the dataset);
 * and the quarantined ones.
 */
export async function pendingSummary(
  db: Db,
  connectorId: string,
  maxAttempts: number,
): Promise<{ pending: PendingCounts; inDataset: number; onRemote: number; quarantined: number }> {
  const index = dialectOf(db) === 'mysql' ? 'FORCE INDEX (deltalog_pending)' : 'INDEXED BY deltalog_pending';
  const below = `attempts < ${Number(maxAttempts)}`;
  const [row] = await rows<Record<string, unknown>>(
    db,
    text(
      `SELECT SUM(CASE WHEN ${below} AND in_dataset = 1 AND on_remote = 0 THEN 1 ELSE 0 END) AS additions,
              SUM(CASE WHEN ${below} AND in_dataset = 1 AND on_remote = 1 THEN 1 ELSE 0 END) AS updates,
              SUM(CASE WHEN ${below} AND in_dataset = 0 THEN 1 ELSE 0 END) AS deletions,
              SUM(CASE WHEN in_dataset = 1 THEN 1 ELSE 0 END) AS in_dataset,
              SUM(CASE WHEN on_remote = 1 THEN 1 ELSE 0 END) AS on_remote,
              SUM(CASE WHEN ${below} THEN 0 ELSE 1 END) AS quarantined
       FROM deltalog ${index} WHERE connector_id = ? AND committed_at IS NULL`,
      connectorId,
    ),
  );
  const n = (name: string) => Number(row?.[name] ?? 0);
  return {
    pending: { additions: n('additions'), updates: n('updates'), deletions: n('deletions') },
    inDataset: n('in_dataset'),
    onRemote: n('on_remote'),
    quarantined: n('quarantined'),
  };
}

/** Keys the dataset holds now, per the deltalog (the size of a full push). */
export async function datasetSize(db: Db, connectorId: string): Promise<number> {
  return (await deltalogSizes(db, connectorId)).dataset;
}

/**
 * Keys in the dataset and keys on the remote list, per the deltalog, in one pass over the
 * connector's rows (planning needs both; each alone is a walk of the whole list).
 */
export async function deltalogSizes(
  db: Db,
  connectorId: string,
): Promise<{ dataset: number; remote: number }> {
  const [row] = (await db('deltalog')
    .where({ connector_id: connectorId })
    .select(
      db.raw('SUM(CASE WHEN in_dataset = 1 THEN 1 ELSE 0 END) AS dataset'),
      db.raw('SUM(CASE WHEN on_remote = 1 THEN 1 ELSE 0 END) AS remote'),
    )) as { dataset: unknown; remote: unknown }[];
  return { dataset: Number(row?.dataset ?? 0), remote: Number(row?.remote ?? 0) };
}

/**
 * Keys of the dataset the list does not hold because they are quarantined: a reconcile that finds
 * no drift must still say the list lacks them.
 */
export async function quarantinedAbsent(db: Db, connectorId: string, maxAttempts: number): Promise<number> {
  const [row] = (await db('deltalog')
    .where({ connector_id: connectorId, in_dataset: true, on_remote: false })
    .whereNull('committed_at')
    .where('attempts', '>=', maxAttempts)
    .count({ n: '*' })) as { n: unknown }[];
  return Number(row?.n ?? 0);
}

/** Rows held back after too many rejections, until their attributes change. */
export async function quarantinedCount(db: Db, connectorId: string, maxAttempts: number): Promise<number> {
  const [row] = (await db('deltalog')
    .where({ connector_id: connectorId })
    .whereNull('committed_at')
    .where('attempts', '>=', maxAttempts)
    .count({ n: '*' })) as { n: unknown }[];
  return Number(row?.n ?? 0);
}

// ---------------------------------------------------------------------------------------------
// 3. The changeset, streamed by keyset pagination
// ---------------------------------------------------------------------------------------------

/** What a send phase walks: pending upserts, pending deletions, or every key in the dataset. */
export type ChangesetKind = 'upserts' | 'deletions' | 'dataset';

export interface ChangesetRow {
  record_key: string;
  on_remote: boolean;
  /** The attribute hash the last deltalog update saw (null for keys that left the dataset). */
  attr_hash: string | null;
}

/** The next page of keys after `afterKey`, in key order. */
export async function readChangesetPage(
  db: Db,
  connectorId: string,
  kind: ChangesetKind,
  afterKey: string,
  limit: number,
  maxAttempts: number,
): Promise<ChangesetRow[]> {
  const query = db('deltalog')
    .select('record_key', 'on_remote', 'attr_hash')
    .where({ connector_id: connectorId })
    .where('record_key', '>', afterKey)
    .orderBy('record_key')
    .limit(limit);
  if (kind === 'dataset') query.where({ in_dataset: true });
  else
    query
      .whereNull('committed_at')
      .where({ in_dataset: kind === 'upserts' })
      .where('attempts', '<', maxAttempts);
  const found = (await query) as { record_key: string; on_remote: unknown; attr_hash: string | null }[];
  return found.map((r) => ({
    record_key: r.record_key,
    on_remote: Boolean(r.on_remote),
    attr_hash: r.attr_hash ?? null,
  }));
}

// --- a direct first push: the dataset read in its key order, the deltalog written as it goes ---

/** A dataset row as a direct first push reads it, with the hash a compare would compute for it. */
export interface DatasetRecord {
  key: string;
  attributes: Attributes;
  hash: string;
}

/**
 * The dataset's next page of valid keys after `afterKey` ('' for the first), in the key column's
 * own order. Only for a dataset whose key is unique and compared byte for byte (directPushAllowed):
 * the key's index then bounds each page by the batch, and no key can repeat across pages.
 */
export async function readDatasetPage(
  db: Executor,
  dataset: DatasetDefinition,
  afterKey: string,
  limit: number,
): Promise<DatasetRecord[]> {
  const dialect = dialectOf(db as Db);
  const columns = [dataset.key, ...dataset.attributes];
  const after = afterKey === '' ? text('') : join(text('AND'), keyColumn(dataset), text('> ?', afterKey));
  const query = join(
    text(`SELECT ${columns.map(() => '??').join(', ')},`, ...columns.map((c) => `src.${c}`)),
    attributeHash(dialect, dataset),
    text(`AS ${HASH_COLUMN} FROM`),
    sourceFrom(dataset),
    text('WHERE'),
    validKey(dialect, dataset),
    after,
    text('ORDER BY'),
    keyColumn(dataset),
    text(`LIMIT ${Math.max(1, Math.floor(limit))}`),
  );
  return (await rows<Record<string, unknown>>(db, query)).map((row) => ({
    key: String(row[dataset.key]),
    attributes: pickAttributes(row, dataset.attributes),
    hash: String(row[HASH_COLUMN]),
  }));
}

/** A row a direct first push writes: delivered (committed), or refused with its reason (pending). */
export interface DirectPushRow {
  key: string;
  hash: string;
  refused?: { reason: string; deferred: boolean };
}

/**
 * Write one batch of a direct first push into the deltalog, in one statement: delivered keys
 * committed and on the remote, refused keys pending additions with the reason, exactly as a
 * compare followed by this batch's commit would leave them. Idempotent: a batch written again
 * (a commit whose answer was lost) overwrites itself.
 */
export async function insertDirectPush(
  trx: Executor,
  connectorId: string,
  batch: DirectPushRow[],
  now: number,
): Promise<void> {
  if (batch.length === 0) return;
  // The batch travels as one JSON parameter: thousands of bound values cost the worker more to
  // format (and MariaDB more to parse) than the rows themselves cost to insert.
  const rows = batch.map(({ key, hash, refused }) => [
    key,
    hash,
    refused ? 0 : 1,
    refused ? null : now,
    refused && !refused.deferred ? 1 : 0,
    refused ? refused.reason.slice(0, 1000) : null,
  ]);
  const columns =
    'connector_id, record_key, in_dataset, attr_hash, on_remote, updated_at, committed_at, attempts, last_error';
  if (dialectOf(trx as unknown as Db) === 'mysql') {
    await trx.raw(
      `INSERT INTO deltalog (${columns}) SELECT ?, j.k, 1, j.h, j.r, ?, j.c, j.a, j.e FROM JSON_TABLE(?, '$[*]' COLUMNS (` +
        "k VARCHAR(255) PATH '$[0]', h VARCHAR(32) PATH '$[1]', r INT PATH '$[2]', c BIGINT PATH '$[3]', " +
        "a INT PATH '$[4]', e VARCHAR(1000) PATH '$[5]')) j " +
        'ON DUPLICATE KEY UPDATE attr_hash = VALUES(attr_hash), on_remote = VALUES(on_remote), committed_at = VALUES(committed_at), attempts = VALUES(attempts), last_error = VALUES(last_error)',
      [connectorId, now, JSON.stringify(rows)],
    );
    return;
  }
  const at = (i: number) => `json_extract(value, '$[${i}]')`;
  await trx.raw(
    `INSERT INTO deltalog (${columns}) SELECT ?, ${at(0)}, 1, ${at(1)}, ${at(2)}, ?, ${at(3)}, ${at(4)}, ${at(5)} FROM json_each(?) WHERE true ` +
      'ON CONFLICT (connector_id, record_key) DO UPDATE SET attr_hash = excluded.attr_hash, on_remote = excluded.on_remote, committed_at = excluded.committed_at, attempts = excluded.attempts, last_error = excluded.last_error',
    [connectorId, now, JSON.stringify(rows)],
  );
}

/**
 * A direct push's batch is about to be sent: its keys are written down first, because once sent
 * it may be delivered without ever being recorded (a crash before its commit), and a key the
 * dataset then loses would be in no deltalog row to remove it by. The batch's commit deletes them.
 */
export async function markInFlight(
  db: Db,
  runId: number,
  connectorId: string,
  keys: string[],
): Promise<void> {
  await db('direct_push_in_flight')
    .insert({
      run_id: runId,
      first_key: keys[0]!,
      connector_id: connectorId,
      record_keys: JSON.stringify(keys),
    })
    .onConflict(['run_id', 'first_key'])
    .merge(['record_keys']);
}

/** The batch is recorded (inside its commit's transaction): no longer in flight. */
export async function clearInFlight(trx: Executor, runId: number, firstKey: string): Promise<void> {
  await trx('direct_push_in_flight').where({ run_id: runId, first_key: firstKey }).delete();
}

/**
 * Batches a direct push left in flight (sent, never recorded) become pending deltalog rows with
 * no known hash, as the compare path would hold them: a key still in the dataset is sent again
 * (at most those batches, as promised), a key it lost is removed. Returns the keys adopted.
 */
export async function adoptInFlight(db: Db, connectorId: string, now: number): Promise<number> {
  const left = (await db('direct_push_in_flight').where({ connector_id: connectorId })) as {
    run_id: number;
    first_key: string;
    record_keys: string;
  }[];
  if (left.length === 0) return 0;
  let adopted = 0;
  await db.transaction(async (trx) => {
    for (const batch of left) {
      const keys = JSON.parse(batch.record_keys) as string[];
      const rows = keys.map((key) => ({
        connector_id: connectorId,
        record_key: key,
        in_dataset: true,
        attr_hash: null,
        on_remote: false,
        updated_at: now,
        committed_at: null,
        attempts: 0,
      }));
      // 200 rows a statement: knex writes SQLite's multi-row insert as a compound SELECT.
      for (let i = 0; i < rows.length; i += 200) {
        await trx('deltalog')
          .insert(rows.slice(i, i + 200))
          .onConflict(['connector_id', 'record_key'])
          .ignore();
      }
      await clearInFlight(trx, batch.run_id, batch.first_key);
      adopted += keys.length;
    }
  });
  return adopted;
}

/** Whether the connector has any row in the deltalog (none: its first push may go direct). */
export async function hasDeltalog(db: Db, connectorId: string): Promise<boolean> {
  const row = (await db('deltalog').where({ connector_id: connectorId }).first('record_key')) as unknown;
  return row !== undefined;
}

/** A record as read for sending: its attributes, and their hash as the deltalog update computes it. */
export interface FetchedRecord {
  attributes: Attributes;
  hash: string;
}

/**
 * Current attributes of the given keys, straight from the dataset, with the hash of exactly what
 * was read: a row edited since the deltalog update is sent as it is now, and committing its new
 * hash keeps the next refresh from sending it again. Keys gone since are absent.
 */
export async function fetchRecords(
  db: Executor,
  dataset: DatasetDefinition,
  keys: string[],
): Promise<Map<string, FetchedRecord>> {
  const found = new Map<string, FetchedRecord>();
  const hash = attributeHash(dialectOf(db as Db), dataset);
  const chunkSize = 5000; // stays under SQLite's bound-parameter limit
  for (let i = 0; i < keys.length; i += chunkSize) {
    const chunk = keys.slice(i, i + chunkSize);
    const columns = [dataset.key, ...dataset.attributes].map(() => '??').join(', ');
    const source = sourceFrom(dataset);
    const query = join(
      text(`SELECT ${columns},`, ...[dataset.key, ...dataset.attributes].map((c) => `src.${c}`)),
      hash,
      text(`AS ${HASH_COLUMN} FROM`),
      source,
      text('WHERE'),
      keyColumn(dataset),
      text(`IN (${chunk.map(() => '?').join(', ')})`, ...chunk),
    );
    for (const row of await rows<Record<string, unknown>>(db, query)) {
      const key = String(row[dataset.key]);
      const record = { attributes: pickAttributes(row, dataset.attributes), hash: String(row[HASH_COLUMN]) };
      // A duplicated key (reported as a bad row): the row with the smallest hash, the one the
      // deltalog update keeps, so that sending it settles the key instead of flipping it.
      const seen = found.get(key);
      if (seen === undefined || record.hash < seen.hash) found.set(key, record);
    }
  }
  return found;
}
const HASH_COLUMN = '__deltasync_hash';

/** Current attributes of the given keys, straight from the dataset. Keys gone since are absent. */
export async function fetchAttributes(
  db: Executor,
  dataset: DatasetDefinition,
  keys: string[],
): Promise<Map<string, Attributes>> {
  const records = await fetchRecords(db, dataset, keys);
  return new Map([...records].map(([key, record]) => [key, record.attributes]));
}

function pickAttributes(row: Record<string, unknown>, columns: string[]): Attributes {
  const attributes: Attributes = {};
  for (const column of columns) {
    const value = row[column];
    if (value === null || value === undefined) attributes[column] = null;
    else if (typeof value === 'number' || typeof value === 'string' || typeof value === 'boolean')
      attributes[column] = value;
    else if (value instanceof Date) attributes[column] = value.toISOString();
    else attributes[column] = String(value);
  }
  return attributes;
}

// ---------------------------------------------------------------------------------------------
// 4. Commit (FIG. 5) and the janitor
// ---------------------------------------------------------------------------------------------

/**
 * Mark delivered keys committed: the destination now holds what the deltalog says
 * (`on_remote` follows `in_dataset`). Only pending rows change, so re-committing is harmless.
 */
export async function commitDelivered(
  trx: Executor,
  connectorId: string,
  keys: string[],
  now: number,
): Promise<void> {
  const chunkSize = 5000;
  for (let i = 0; i < keys.length; i += chunkSize) {
    await byPrimaryKey(
      trx,
      trx('deltalog')
        .where({ connector_id: connectorId })
        .whereIn('record_key', keys.slice(i, i + chunkSize))
        .whereNull('committed_at')
        .update({ committed_at: now, on_remote: trx.raw('in_dataset'), attempts: 0, last_error: null }),
    );
  }
}

/**
 * SQLite, left to itself, answers `connector_id = ? AND record_key IN (…)` from the pending
 * index (it covers the columns) by walking every row of the connector: name the primary key.
 */
function byKeyHint(db: Executor, target: TargetTable): string {
  return dialectOf(db as Db) === 'sqlite' ? `INDEXED BY ${target.keyIndex}` : '';
}

/** The index SQLite makes for the deltalog's primary key (connector_id, record_key). */
const SQLITE_DELTALOG_KEY = 'sqlite_autoindex_deltalog_1';

/**
 * Runs an UPDATE of deltalog rows named by key through the primary key, so its work is bounded
 * by the batch. Without statistics SQLite prefers `deltalog_pending` (connector_id, committed_at)
 * for `… record_key IN (…) AND committed_at IS NULL`, and so walks every pending row of the
 * connector for every batch: a first push whose cost grew with the square of the list. MariaDB
 * picks the primary key by itself; SQLite is told (INDEXED BY), and test/send-path.test.ts holds
 * both to it with EXPLAIN.
 */
async function byPrimaryKey(trx: Executor, update: Knex.QueryBuilder): Promise<void> {
  if (dialectOf(trx as unknown as Db) !== 'sqlite') {
    await update;
    return;
  }
  const { sql, bindings } = update.toSQL().toNative();
  const routed = sql.replace(
    /^update `deltalog`/i,
    `update \`deltalog\` indexed by \`${SQLITE_DELTALOG_KEY}\``,
  );
  if (routed === sql) throw new Error(`unexpected SQL for a keyed deltalog update: ${sql.slice(0, 60)}`);
  await trx.raw(routed, bindings as readonly Knex.RawBinding[]);
}

/**
 * Keys sent with attributes that changed after the deltalog update read them: record the hash of
 * what was sent, so the next update does not see a change the destination already has. Rare (a
 * row edited mid-send), hence one statement per key. A connector that applies a shared compare
 * (core/shared-compare.ts) also notes the keys there: the shared rows never saw that hash, so
 * the next shared compare restamps them and every member checks them again.
 */
export async function recordSentHashes(
  trx: Executor,
  connectorId: string,
  sent: { key: string; hash: string }[],
  now: number,
): Promise<void> {
  if (sent.length === 0) return;
  for (const { key, hash } of sent) {
    await trx('deltalog').where({ connector_id: connectorId, record_key: key }).update({ attr_hash: hash });
  }
  const member = (await trx('shared_compare_members')
    .where({ connector_id: connectorId })
    .first('compare_id')) as { compare_id: string } | undefined;
  if (!member) return;
  await trx('shared_compare_rechecks')
    .insert(sent.map(({ key }) => ({ compare_id: member.compare_id, record_key: key, noted_at: now })))
    .onConflict(['compare_id', 'record_key'])
    .merge(['noted_at']);
}

/** Rejected keys stay pending; their attempt count grows until the quarantine threshold. */
export async function recordRejections(
  trx: Executor,
  connectorId: string,
  rejections: Rejection[],
): Promise<void> {
  for (const { reason, deferred, keys } of groupRejections(rejections)) {
    await byPrimaryKey(
      trx,
      trx('deltalog')
        .where({ connector_id: connectorId })
        .whereIn('record_key', keys)
        .whereNull('committed_at')
        .update({ last_error: reason, ...(deferred ? {} : { attempts: trx.raw('attempts + 1') }) }),
    );
  }
}

/** One statement per distinct reason (and deferral), not one per rejected record. */
function groupRejections(rejections: Rejection[]) {
  const groups = new Map<string, { reason: string; deferred: boolean; keys: string[] }>();
  for (const { key, reason, deferred = false } of rejections) {
    const text = reason.slice(0, 1000);
    const id = `${deferred}:${text}`;
    const group = groups.get(id) ?? { reason: text, deferred, keys: [] };
    group.keys.push(key);
    groups.set(id, group);
  }
  return groups.values();
}

// --- new list + swap: filling is not committing; the swap commits ---------------------------

/** Keys now in the list being built: clear any earlier rejection so the swap commits them. */
export async function markFilled(trx: Executor, connectorId: string, keys: string[]): Promise<void> {
  for (let i = 0; i < keys.length; i += 5000) {
    await byPrimaryKey(
      trx,
      trx('deltalog')
        .where({ connector_id: connectorId })
        .whereIn('record_key', keys.slice(i, i + 5000))
        .whereNotNull('last_error')
        .update({ last_error: null }),
    );
  }
}

/**
 * Keys the new list refused: once it is swapped in they will not be on the remote, whatever the
 * old list held, so they become pending additions with the reason.
 */
export async function recordFillRejections(trx: Executor, connectorId: string, rejections: Rejection[]) {
  for (const { reason, deferred, keys } of groupRejections(rejections)) {
    await trx('deltalog')
      .where({ connector_id: connectorId })
      .whereIn('record_key', keys)
      .update({
        committed_at: null,
        on_remote: false,
        last_error: reason,
        ...(deferred ? {} : { attempts: trx.raw('attempts + 1') }),
      });
  }
}

/** The remote list no longer holds anything the dataset lost: those deletions are delivered. */
async function commitPendingDeletions(trx: Executor, connectorId: string, now: number) {
  await trx('deltalog')
    .where({ connector_id: connectorId, in_dataset: false })
    .whereNull('committed_at')
    .update({ committed_at: now, on_remote: false, attempts: 0, last_error: null });
}

/**
 * The new list is live: it holds every key of the dataset it accepted and nothing else. Pending
 * deletions are thereby delivered; pending keys it accepted are committed.
 */
export async function commitSwapped(db: Db, connectorId: string, now: number): Promise<void> {
  await db.transaction(async (trx) => {
    await commitPendingDeletions(trx, connectorId, now);
    await trx('deltalog')
      .where({ connector_id: connectorId, in_dataset: true })
      .whereNull('committed_at')
      .whereNull('last_error')
      .update({ committed_at: now, on_remote: true, attempts: 0 });
  });
}

// --- reconcile: compare what the remote holds with what the deltalog believes ----------------

export async function saveRemoteKeys(trx: Executor, runId: number, keys: string[]): Promise<void> {
  const unique = [...new Set(keys)];
  for (let i = 0; i < unique.length; i += 500) {
    await trx('remote_members')
      .insert(unique.slice(i, i + 500).map((record_key) => ({ run_id: runId, record_key })))
      .onConflict(['run_id', 'record_key'])
      .ignore();
  }
}

export interface DriftReport {
  /** On the remote list, though the deltalog did not believe so. */
  extra: number;
  /** Believed on the remote list, but not there. */
  missing: number;
  samples: { extra: string[]; missing: string[] };
}

/**
 * Correct the deltalog with what the remote list really holds (read into `remote_members` for
 * this run): missing keys become pending again (additions, or delivered deletions), extra keys
 * become pending deletions (or, if the dataset has them, pending updates). The next send phases
 * then repair the drift.
 */
export async function reconcileWithRemote(
  db: Db,
  connectorId: string,
  runId: number,
  now: number,
): Promise<DriftReport> {
  const believed = () => db('deltalog').where({ connector_id: connectorId, on_remote: true });
  const inRemote = (alias: string) =>
    db('remote_members')
      .where({ run_id: runId })
      .whereRaw(`remote_members.record_key = ${alias}.record_key`)
      .select(db.raw('1'));
  const missingQuery = () => believed().whereNotExists(inRemote('deltalog'));
  const extraQuery = () =>
    db('remote_members as rm')
      .where('rm.run_id', runId)
      .whereNotExists(
        db('deltalog')
          .where({ connector_id: connectorId, on_remote: true })
          .whereRaw('deltalog.record_key = rm.record_key')
          .select(db.raw('1')),
      );
  const count = async (query: Knex.QueryBuilder) =>
    Number(((await query.clone().count({ n: '*' })) as { n: unknown }[])[0]?.n ?? 0);
  const report: DriftReport = {
    missing: await count(missingQuery()),
    extra: await count(extraQuery()),
    samples: {
      missing: (
        (await missingQuery().select('record_key').orderBy('record_key').limit(5)) as { record_key: string }[]
      ).map((r) => r.record_key),
      extra: (
        (await extraQuery().select('rm.record_key').orderBy('rm.record_key').limit(5)) as {
          record_key: string;
        }[]
      ).map((r) => r.record_key),
    },
  };
  await db.transaction(async (trx) => {
    const notOnRemote = (q: Knex.QueryBuilder) =>
      q.whereNotExists(
        trx('remote_members')
          .where({ run_id: runId })
          .whereRaw('remote_members.record_key = deltalog.record_key')
          .select(trx.raw('1')),
      );
    const onRemote = (q: Knex.QueryBuilder) =>
      q.whereExists(
        trx('remote_members')
          .where({ run_id: runId })
          .whereRaw('remote_members.record_key = deltalog.record_key')
          .select(trx.raw('1')),
      );
    // Missing and in the dataset: add again. Missing and deleted: that deletion is done.
    await notOnRemote(
      trx('deltalog').where({ connector_id: connectorId, on_remote: true, in_dataset: true }),
    ).update({
      on_remote: false,
      committed_at: null,
      attempts: 0,
    });
    await notOnRemote(
      trx('deltalog').where({ connector_id: connectorId, on_remote: true, in_dataset: false }),
    ).update({
      on_remote: false,
      committed_at: now,
    });
    // Extra but known: on the remote after all (an update if in the dataset, else a deletion).
    await onRemote(trx('deltalog').where({ connector_id: connectorId, on_remote: false })).update({
      on_remote: true,
      committed_at: null,
      attempts: 0,
      updated_at: now,
    });
    // Extra and unknown: someone else put it there; it is not in the dataset, so delete it.
    await trx.raw(
      `INSERT INTO deltalog (connector_id, record_key, in_dataset, attr_hash, on_remote, updated_at, committed_at, attempts)
       SELECT ?, rm.record_key, 0, NULL, 1, ?, NULL, 0 FROM remote_members rm
       WHERE rm.run_id = ? AND NOT EXISTS (SELECT 1 FROM deltalog dl WHERE dl.connector_id = ? AND dl.record_key = rm.record_key)`,
      [connectorId, now, runId, connectorId],
    );
    await trx('remote_members').where({ run_id: runId }).delete();
  });
  return report;
}

/** Average JSON size of a record (key + attributes) and of a key, from a sample of the dataset. */
export async function sampleRecordBytes(db: Executor, dataset: DatasetDefinition, sample = 200) {
  const columns = [dataset.key, ...dataset.attributes];
  const query = join(
    text(`SELECT ${columns.map(() => '??').join(', ')} FROM`, ...columns.map((c) => `src.${c}`)),
    sourceFrom(dataset),
    text(`LIMIT ${sample}`),
  );
  const found = await rows<Record<string, unknown>>(db, query);
  if (found.length === 0) return { recordBytes: 0, keyBytes: 0 };
  let recordBytes = 0;
  let keyBytes = 0;
  for (const row of found) {
    const key = String(row[dataset.key]);
    recordBytes += jsonBytes({ key, attributes: pickAttributes(row, dataset.attributes) });
    keyBytes += jsonBytes(key);
  }
  return { recordBytes: Math.ceil(recordBytes / found.length), keyBytes: Math.ceil(keyBytes / found.length) };
}

/**
 * After truncating the remote list, it holds nothing: pending deletions are thereby delivered,
 * and every key in the dataset must be sent again.
 */
export async function markRemoteEmptied(db: Db, connectorId: string, now: number): Promise<void> {
  await db.transaction(async (trx) => {
    await commitPendingDeletions(trx, connectorId, now);
    await trx('deltalog')
      .where({ connector_id: connectorId, in_dataset: true })
      .update({ committed_at: null, on_remote: false, attempts: 0, last_error: null });
  });
}

/**
 * Remove committed deletions older than the retention window. Pending deletions are never
 * touched: a deletion leaves the deltalog only once the destination confirmed it.
 */
export async function purgeCommittedDeletions(
  db: Db,
  connectorId: string,
  olderThan: number,
  batchSize = 5000,
): Promise<number> {
  let purged = 0;
  for (;;) {
    const keys = (
      (await db('deltalog')
        .select('record_key')
        .where({ connector_id: connectorId, in_dataset: false })
        .whereNotNull('committed_at')
        .where('committed_at', '<', olderThan)
        .limit(batchSize)) as { record_key: string }[]
    ).map((r) => r.record_key);
    if (keys.length === 0) return purged;
    purged += await db('deltalog')
      .where({ connector_id: connectorId, in_dataset: false })
      .whereIn('record_key', keys)
      .whereNotNull('committed_at')
      .delete();
  }
}
