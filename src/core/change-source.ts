import { createHash } from 'node:crypto';
import type { Knex } from 'knex';
import {
  createTemporaryTable,
  dialectOf,
  dropTemporaryTable,
  selectRows,
  TEMPORARY_KEY,
  type Db,
} from '../db';
import type { TouchedKeys } from './dataset';

/**
 * Trigger change sources: the keys a dataset's base tables touch, journalled by triggers that
 * deltasync installs, so that a refresh compares only those keys (core/change-tracking.ts).
 *
 * A *source* is one base table and the column of it holding the dataset's key; connectors whose
 * datasets depend on the same table and column share it (one set of triggers, one journal).
 * Each insert, update or delete on the table appends the touched key to `change_journal` inside
 * the writer's own transaction: the key is journalled exactly when the write commits.
 *
 * Positions: a refresh *claims* the journal rows committed so far into its source's next batch
 * number (claimChanges). Batch numbers are handed out under a lock on the source, in the order
 * claims happen, so a row that commits late (its auto-increment id older than rows already seen)
 * simply lands in a later batch: nothing is skipped, which ordering by id could not promise. A
 * connector's position is the last batch it applied; the keys to compare are those of the batches
 * after it.
 *
 * A source with a single follower (the usual case: one connector, or one shared compare) needs no
 * batches for its new rows: its claim only takes the next batch number, and the update that
 * applies the unclaimed rows deletes exactly those it read, in its own transaction (consumeRows).
 * That saves writing every journal row twice (claimed, then trimmed). Should another follower
 * appear meanwhile, the rows are left for the claims to come (applied twice, never lost).
 *
 * Continuity (what lets a position be trusted): the triggers were in place, and every claimed row
 * a consumer still needs is still in the journal. When triggers had to be (re)installed over an
 * existing source, or claimed rows went missing, the source's `floor` is raised to the batch being
 * claimed: a consumer whose position is below it gets a full compare.
 */

export interface TrackedTable {
  table: string;
  /** The column of `table` that holds the dataset's key. */
  key: string;
}

/**
 * A short, stable id for a table and key column (trigger names are at most 64 characters); a
 * binary-log source of the same table has its own journal.
 */
export function sourceIdOf(tracked: TrackedTable, kind: 'triggers' | 'binlog' = 'triggers'): string {
  const name = `${kind === 'binlog' ? 'binlog\u001f' : ''}${tracked.table}\u001f${tracked.key}`;
  return createHash('sha256').update(name).digest('hex').slice(0, 16);
}

const EVENTS = ['insert', 'update', 'delete'] as const;
type TriggerEvent = (typeof EVENTS)[number];

function triggerName(sourceId: string, event: TriggerEvent): string {
  return `deltasync_${sourceId}_${event[0]}`;
}

/** `schema.table` → [schema, table]; a bare name → [undefined, table]. */
export function splitTable(table: string): [string | undefined, string] {
  const dot = table.indexOf('.');
  return dot < 0 ? [undefined, table] : [table.slice(0, dot), table.slice(dot + 1)];
}

const quoteMysql = (name: string) => `\`${name.replace(/`/g, '``')}\``;
const quoteSqlite = (name: string) => `"${name.replace(/"/g, '""')}"`;

/** The triggers of a source that exist now. */
async function existingTriggers(db: Db, tracked: TrackedTable, sourceId: string): Promise<string[]> {
  const names = EVENTS.map((event) => triggerName(sourceId, event));
  const [schema, table] = splitTable(tracked.table);
  const found =
    dialectOf(db) === 'mysql'
      ? await selectRows<{ name: string }>(
          db,
          'SELECT TRIGGER_NAME AS name FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = COALESCE(?, DATABASE()) AND EVENT_OBJECT_TABLE = ? AND TRIGGER_NAME IN (?, ?, ?)',
          [schema ?? null, table, ...names],
        )
      : await selectRows<{ name: string }>(
          db,
          "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? AND name IN (?, ?, ?)",
          [table, ...names],
        );
  return found.map((row) => row.name);
}

/**
 * The statements that create a source's triggers. The key is cut to the deltalog's 255
 * characters: a longer key is a bad row that never enters the deltalog, and a trigger must never
 * fail the application's own write.
 */
function createStatements(
  dialect: 'mysql' | 'sqlite',
  tracked: TrackedTable,
  sourceId: string,
  journal: string,
) {
  const [schema, table] = splitTable(tracked.table);
  if (dialect === 'mysql') {
    const target = schema ? `${quoteMysql(schema)}.${quoteMysql(table)}` : quoteMysql(table);
    const key = (row: 'NEW' | 'OLD') => `LEFT(${row}.${quoteMysql(tracked.key)}, 255)`;
    const append = (row: 'NEW' | 'OLD') =>
      `INSERT INTO ${journal} (source_id, record_key) VALUES ('${sourceId}', ${key(row)})`;
    const on = (event: TriggerEvent) =>
      `CREATE TRIGGER ${schema ? `${quoteMysql(schema)}.` : ''}${quoteMysql(triggerName(sourceId, event))} AFTER ${event.toUpperCase()} ON ${target} FOR EACH ROW`;
    return [
      `${on('insert')} ${append('NEW')}`,
      `${on('update')} BEGIN ${append('OLD')}; IF NOT (NEW.${quoteMysql(tracked.key)} <=> OLD.${quoteMysql(tracked.key)}) THEN ${append('NEW')}; END IF; END`,
      `${on('delete')} ${append('OLD')}`,
    ];
  }
  if (schema)
    throw new ChangeSourceError(
      `change sources on SQLite follow tables of the main database only, not '${tracked.table}'`,
    );
  const key = (row: 'NEW' | 'OLD') => `substr(${row}.${quoteSqlite(tracked.key)}, 1, 255)`;
  const append = (row: 'NEW' | 'OLD', when = '') =>
    `INSERT INTO change_journal (source_id, record_key) SELECT '${sourceId}', ${key(row)}${when};`;
  const on = (event: TriggerEvent) =>
    `CREATE TRIGGER ${quoteSqlite(triggerName(sourceId, event))} AFTER ${event.toUpperCase()} ON ${quoteSqlite(table)} BEGIN`;
  const k = quoteSqlite(tracked.key);
  return [
    `${on('insert')} ${append('NEW')} END`,
    `${on('update')} ${append('OLD')} ${append('NEW', ` WHERE NEW.${k} IS NOT OLD.${k}`)} END`,
    `${on('delete')} ${append('OLD')} END`,
  ];
}

/** A change source cannot be installed or read (no TRIGGER privilege, a view, another database). */
export class ChangeSourceError extends Error {
  override name = 'ChangeSourceError';
}

/**
 * Make sure a source's triggers are in place, creating the missing ones (and its row in
 * `change_sources`). Triggers found missing on a source already in use raise its floor: the
 * changes made meanwhile were not journalled (the result says so).
 */
async function ensureTriggers(db: Db, tracked: TrackedTable, now: number): Promise<{ reinstalled: boolean }> {
  const sourceId = sourceIdOf(tracked);
  const dialect = dialectOf(db);
  const existing = await existingTriggers(db, tracked, sourceId);
  const known = (await db('change_sources').where({ source_id: sourceId }).first('last_batch')) as
    { last_batch: number | string } | undefined;
  if (existing.length === EVENTS.length && known) return { reinstalled: false };
  if (existing.length === 0) await assertByteCompared(db, tracked);
  const journal =
    dialect === 'mysql' ? `${quoteMysql(await databaseName(db))}.change_journal` : 'change_journal';
  const [schema] = splitTable(tracked.table);
  const statements = createStatements(dialect, tracked, sourceId, journal);
  for (const [i, event] of EVENTS.entries()) {
    const name = triggerName(sourceId, event);
    if (existing.includes(name)) continue;
    try {
      await db.raw(statements[i]!);
    } catch (error) {
      // Another worker installing the same source at the same moment: its trigger is as good.
      if (/already exists/i.test(String((error as Error).message))) continue;
      const qualified = schema ? `${schema}.${name}` : name;
      throw new ChangeSourceError(
        `cannot create trigger ${qualified} on ${tracked.table}: ${(error as Error).message.split('\n')[0]} ` +
          '(the worker needs the TRIGGER privilege on the table; a view has no triggers: name its base tables in `changes.tables`)',
      );
    }
  }
  if (!known) {
    await db('change_sources')
      .insert({ source_id: sourceId, base_table: tracked.table, key_column: tracked.key, installed_at: now })
      .onConflict('source_id')
      .ignore();
    return { reinstalled: false };
  }
  // Missing triggers on a source in use: nothing below the next batch can be trusted.
  await db('change_sources')
    .where({ source_id: sourceId })
    .update({ floor: Number(known.last_batch) + 1 });
  return { reinstalled: existing.length < EVENTS.length };
}

/**
 * The journal holds keys byte for byte, as the deltalog does. A key column compared without case
 * would let a SELECT match 'K1' to a journalled 'k1' that the journal's own comparison does not:
 * such a dataset keeps the full compare.
 */
export async function assertByteCompared(db: Db, tracked: TrackedTable): Promise<void> {
  const [schema, table] = splitTable(tracked.table);
  let collation: string | null | undefined;
  if (dialectOf(db) === 'mysql') {
    const rows = await selectRows<{ collation: string | null }>(
      db,
      'SELECT COLLATION_NAME AS collation FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? AND COLUMN_NAME = ?',
      [schema ?? null, table, tracked.key],
    );
    if (rows.length === 0)
      throw new ChangeSourceError(`${tracked.table} has no column ${tracked.key} to follow`);
    collation = rows[0]!.collation;
    if (collation === null || collation.endsWith('_bin')) return;
  } else {
    const [definition] = await selectRows<{ sql: string }>(
      db,
      "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
      [table],
    );
    if (!definition)
      throw new ChangeSourceError(
        `${tracked.table} is not a table (a view has no triggers: name its base tables in \`changes.tables\`)`,
      );
    if (!/collate\s+(nocase|rtrim)/i.test(definition.sql)) return;
    collation = 'NOCASE';
  }
  throw new ChangeSourceError(
    `${tracked.table}.${tracked.key} is compared with collation ${collation}: a change source needs its key column compared byte for byte ` +
      '(a _bin collation, e.g. ALTER TABLE … MODIFY … COLLATE utf8mb4_bin); or leave out `changes` and keep the full compare',
  );
}

export async function databaseName(db: Db): Promise<string> {
  const [row] = await selectRows<{ name: string }>(db, 'SELECT DATABASE() AS name');
  return row!.name;
}

/** Drop a source's triggers, journal and row (no connector follows it any more). */
async function removeSource(db: Db, sourceId: string): Promise<void> {
  const row = (await db('change_sources').where({ source_id: sourceId }).first('base_table')) as
    { base_table: string } | undefined;
  if (row) {
    const [schema] = splitTable(row.base_table);
    for (const event of EVENTS) {
      const name = triggerName(sourceId, event);
      await db.raw(
        dialectOf(db) === 'mysql'
          ? `DROP TRIGGER IF EXISTS ${schema ? `${quoteMysql(schema)}.` : ''}${quoteMysql(name)}`
          : `DROP TRIGGER IF EXISTS ${quoteSqlite(name)}`,
      );
    }
  }
  await db.transaction(async (trx) => {
    await trx('change_journal').where({ source_id: sourceId }).delete();
    await trx('change_positions').where({ source_id: sourceId }).delete();
    await trx('change_sources').where({ source_id: sourceId }).delete();
  });
}

const CLAIM_CHUNK = 5000;

/** A claimed batch; `sole`: the follower is the source's only one, and its unclaimed rows stay so. */
interface Claim {
  batch: number;
  sole: boolean;
}

/** Positions are batch numbers; a claim that left the rows unclaimed is written with a `+`. */
const claimText = (claim: Claim) => `${claim.batch}${claim.sole ? '+' : ''}`;
const claimOf = (text: string): Claim => ({ batch: Number.parseInt(text, 10), sole: text.endsWith('+') });

/**
 * Claim every journal row of the source committed so far into a new batch, and return it. A new
 * batch number is handed out even when nothing changed, so that a position taken after a floor was
 * raised is never below it. When `follower` is the only follower of the source, the rows are left
 * unclaimed: the update that applies them consumes them (consumeRows). Otherwise, on MySQL the
 * rows are first read (a consistent read, which sees committed rows only) and then claimed by
 * primary key: the claim never waits on a writer's open transaction, whose rows go to a later batch.
 */
async function claimChanges(db: Db, sourceId: string, follower: string): Promise<Claim> {
  const mysql = dialectOf(db) === 'mysql';
  return db.transaction(async (trx) => {
    const batch = (await lockSource(trx, sourceId)) + 1;
    if (await followedBySoleFollower(trx, sourceId, follower)) {
      await trx('change_sources').where({ source_id: sourceId }).update({ last_batch: batch });
      return { batch, sole: true };
    }
    let claimed = 0;
    if (mysql) {
      const [top] = await selectRows<{ id: number | string | null }>(
        trx,
        'SELECT MAX(id) AS id FROM change_journal WHERE source_id = ? AND batch IS NULL',
        [sourceId],
      );
      const upTo = Number(top?.id ?? 0);
      for (;;) {
        const ids = await selectRows<{ id: number | string }>(
          trx,
          `SELECT id FROM change_journal WHERE source_id = ? AND batch IS NULL AND id <= ? LIMIT ${CLAIM_CHUNK}`,
          [sourceId, upTo],
        );
        if (ids.length === 0) break;
        await trx('change_journal')
          .whereIn(
            'id',
            ids.map((r) => r.id),
          )
          .update({ batch });
        claimed += ids.length;
      }
    } else {
      claimed = Number(
        await trx('change_journal').where({ source_id: sourceId }).whereNull('batch').update({ batch }),
      );
    }
    await trx('change_sources')
      .where({ source_id: sourceId })
      .update({ last_batch: batch, claimed_rows: trx.raw('claimed_rows + ?', [claimed]) });
    return { batch, sole: false };
  });
}

/** Lock the source's row (claims happen one at a time) and return its last batch. */
async function lockSource(trx: Knex.Transaction, sourceId: string): Promise<number> {
  const locked = trx('change_sources').where({ source_id: sourceId });
  const row = (await (dialectOf(trx as unknown as Db) === 'mysql' ? locked.forUpdate() : locked).first(
    'last_batch',
  )) as { last_batch: number | string } | undefined;
  if (!row) throw new ChangeSourceError(`change source ${sourceId} is not installed`);
  return Number(row.last_batch);
}

/** No follower but `follower` has a position in the source (applied, or held for a first compare). */
async function followedBySoleFollower(trx: Knex.Transaction, sourceId: string, follower: string) {
  const other = (await trx('change_positions')
    .where({ source_id: sourceId })
    .whereNot({ connector_id: follower })
    .first('connector_id')) as unknown;
  return other === undefined;
}

/**
 * Whether a follower at `position` can continue to the claimed `batch`. Claimed rows still needed
 * must still be there: fewer than claimed less trimmed means someone deleted journal rows, and then
 * no position below `batch` can be continued from (the floor is raised to it). A position below the
 * floor cannot either.
 */
async function journalContinuity(
  db: Db,
  sourceId: string,
  position: number,
  batch: number,
): Promise<'rows missing' | 'below floor' | undefined> {
  const row = (await db('change_sources')
    .where({ source_id: sourceId })
    .first('claimed_rows', 'trimmed_rows', 'floor')) as {
    claimed_rows: number | string;
    trimmed_rows: number | string;
    floor: number | string;
  };
  const expected = Number(row.claimed_rows) - Number(row.trimmed_rows);
  const [counted] = (await db('change_journal')
    .where({ source_id: sourceId })
    .whereNotNull('batch')
    .count({ n: '*' })) as { n: number | string }[];
  const present = Number(counted?.n ?? 0);
  if (present < expected) {
    await db('change_sources')
      .where({ source_id: sourceId })
      .update({ floor: batch, trimmed_rows: Number(row.claimed_rows) - present });
    return 'rows missing';
  }
  return position < Number(row.floor) ? 'below floor' : undefined;
}

/**
 * The keys touched in the source after a position, up to a claimed batch: a subquery naming the
 * distinct keys (`record_key`), for the deltalog update to join.
 *
 * A sole follower's claim left the rows unclaimed: the update reads them once into a table of its
 * own, and consumes them. It also reads the batches claimed after its own (by a follower that joined
 * meanwhile), which may hold rows committed before its claim; applying them early is harmless.
 */
function touchedKeys(sourceId: string, after: number, upTo: Claim, follower: string): TouchedKeys {
  const batches =
    'SELECT DISTINCT record_key FROM change_journal WHERE record_key IS NOT NULL AND source_id = ? AND batch > ?';
  if (!upTo.sole) return { sql: `${batches} AND batch <= ?`, bindings: [sourceId, after, upTo.batch] };
  const rows = unclaimedRowsTable(sourceId);
  return {
    sql: `${batches} UNION SELECT record_key FROM ${rows} WHERE record_key IS NOT NULL`,
    bindings: [sourceId, after],
    prepare: (trx) => readUnclaimedRows(trx, sourceId),
    settle: (trx) => consumeRows(trx, sourceId, upTo.batch, follower),
  };
}

/** The update's own (temporary) table of the unclaimed rows it read. */
const unclaimedRowsTable = (sourceId: string) => `deltasync_unclaimed_${sourceId}`;

/**
 * The source's unclaimed journal rows, read once (committed rows only: a writer's open transaction
 * is not waited for; its rows stay for the next refresh) into a temporary table, so that exactly
 * the rows applied are the rows consumed.
 */
async function readUnclaimedRows(trx: Knex.Transaction, sourceId: string): Promise<void> {
  const rows = unclaimedRowsTable(sourceId);
  await createTemporaryTable(trx, rows, {
    mysql: `id BIGINT UNSIGNED NOT NULL PRIMARY KEY, record_key ${TEMPORARY_KEY.mysql} NULL`,
    sqlite: `id INTEGER NOT NULL PRIMARY KEY, record_key ${TEMPORARY_KEY.sqlite} NULL`,
  });
  await trx.raw(
    `INSERT INTO ${rows} (id, record_key) SELECT id, record_key FROM change_journal WHERE source_id = ? AND batch IS NULL`,
    [sourceId],
  );
}

/**
 * At the end of the update that applied them, delete the unclaimed rows it read, when the claim
 * that left them unclaimed is still the source's last and its follower still the only one (under
 * the source's lock, held until the update commits: a follower joining now claims after it, and
 * compares in full after that). Otherwise they stay for the next claims; applying a key again is
 * harmless. Nothing else counts these rows: they were never claimed.
 */
async function consumeRows(
  trx: Knex.Transaction,
  sourceId: string,
  batch: number,
  follower: string,
): Promise<void> {
  const rows = unclaimedRowsTable(sourceId);
  const mysql = dialectOf(trx as unknown as Db) === 'mysql';
  const last = await lockSource(trx, sourceId);
  if (last === batch && (await followedBySoleFollower(trx, sourceId, follower)))
    await trx.raw(
      mysql
        ? `DELETE j FROM change_journal j JOIN ${rows} r ON j.id = r.id WHERE j.batch IS NULL`
        : `DELETE FROM change_journal WHERE id IN (SELECT id FROM temp.${rows}) AND batch IS NULL`,
    );
  await dropTemporaryTable(trx, rows);
}

/** Several subqueries naming `record_key`, as one (with what each must run first and last). */
export function unionOfKeys(parts: TouchedKeys[]): TouchedKeys {
  if (parts.length === 1) return parts[0]!;
  return {
    sql: `SELECT u.record_key FROM (${parts.map((p) => p.sql).join(' UNION ')}) u`,
    bindings: parts.flatMap((p) => p.bindings),
    prepare: async (trx) => {
      for (const part of parts) await part.prepare?.(trx);
    },
    settle: async (trx) => {
      for (const part of parts) await part.settle?.(trx);
    },
  };
}

/**
 * One followed source, whatever its kind (a table's triggers here, a dataset's stamped tables in
 * change-watermark.ts), as change-tracking.ts drives it. Positions are strings the source alone
 * reads.
 */
export interface FollowedSource {
  sourceId: string;
  /** The table (or tables), for the reasons a run gives. */
  table: string;
  /** Ready the source (install what it needs); `lost`: changes may have gone unrecorded. */
  prepare(now: number): Promise<{ lost?: string }>;
  /** Everything visible now is at or below the position returned (claimed for `follower`). */
  claim(follower: string): Promise<string>;
  /** Why a follower at `position` cannot continue to `claimed`; undefined when it can. */
  discontinuity(position: string, claimed: string): Promise<string | undefined>;
  /** The keys touched after `position` up to `claimed`, as a subquery naming `record_key`. */
  touched(position: string | undefined, claimed: string, follower: string): TouchedKeys;
  /**
   * The position a follower keeps once it applied up to `claimed` from `position` (undefined: a
   * first full compare).
   */
  advance(position: string | undefined, claimed: string): string;
  /** Drop what every follower has applied. */
  trim(): Promise<void>;
  /**
   * For change-triggered refreshes (live mode): a short string that differs from `previous` only
   * when something changed that no refresh has claimed yet. Cheap: bounded by those changes.
   */
  marker(previous: string | null): Promise<string>;
}

/** A table followed by triggers and its journal. */
export function triggerSource(db: Db, tracked: TrackedTable): FollowedSource {
  return journalSource(db, tracked, sourceIdOf(tracked), {
    async prepare(now) {
      const state = await ensureTriggers(db, tracked, now);
      return state.reinstalled
        ? {
            lost: `the triggers on ${tracked.table} were missing (changes made meanwhile were not journalled)`,
          }
        : {};
    },
    fill: async () => undefined,
  });
}

/**
 * How a journal is kept: `prepare` installs what writes it (or checks it can be written), `fill`
 * brings it up to date before a claim or a marker (triggers fill it as writes commit: nothing to
 * do; a binary-log source reads the log: change-binlog.ts).
 */
export interface JournalKeeper {
  prepare(now: number): Promise<{ lost?: string }>;
  fill(): Promise<void>;
}

/** A table whose touched keys a keeper writes to `change_journal`: batches, positions, trimming. */
export function journalSource(
  db: Db,
  tracked: TrackedTable,
  sourceId: string,
  keeper: JournalKeeper,
): FollowedSource {
  return {
    sourceId,
    table: tracked.table,
    prepare: (now) => keeper.prepare(now),
    // Claimed before anything is read: a change committed after its claim is in a later batch.
    async claim(follower) {
      await keeper.fill();
      return claimText(await claimChanges(db, sourceId, follower));
    },
    async discontinuity(position, claimed) {
      const broken = await journalContinuity(db, sourceId, claimOf(position).batch, claimOf(claimed).batch);
      if (broken === 'rows missing') return `rows of the change journal of ${tracked.table} went missing`;
      if (broken === 'below floor')
        return `the change journal of ${tracked.table} cannot prove it saw every change since the last refresh`;
      return undefined;
    },
    touched: (position, claimed, follower) =>
      touchedKeys(sourceId, claimOf(position ?? '0').batch, claimOf(claimed), follower),
    advance: (_position, claimed) => String(claimOf(claimed).batch),
    trim: async () => {
      await trimJournal(db, sourceId);
    },
    // The newest unclaimed journal row; once a refresh claimed everything, the marker stays put.
    async marker(previous) {
      await keeper.fill();
      const [row] = (await db('change_journal')
        .where({ source_id: sourceId })
        .whereNull('batch')
        .max({ id: 'id' })) as { id: number | string | null }[];
      return row?.id === null || row?.id === undefined ? (previous ?? 'journal:none') : `journal:${row.id}`;
    },
  };
}

/** Delete the journal rows every follower of the source has applied (the lowest position among them). */
async function trimJournal(db: Db, sourceId: string): Promise<void> {
  const positions = (await db('change_positions').where({ source_id: sourceId }).select('position')) as {
    position: string;
  }[];
  if (positions.length === 0) return;
  const low = Math.min(...positions.map((row) => Number(row.position)));
  const deleted = Number(
    await db('change_journal').where({ source_id: sourceId }).where('batch', '<=', low).delete(),
  );
  if (deleted > 0)
    await db('change_sources')
      .where({ source_id: sourceId })
      .update({ trimmed_rows: db.raw('trimmed_rows + ?', [deleted]) });
}

/** Sources no connector follows any more: their triggers and journal are removed. */
export async function removeUnfollowedSources(db: Db, sourceIds: string[]): Promise<void> {
  for (const sourceId of sourceIds) {
    const follower = (await db('change_positions')
      .where({ source_id: sourceId })
      .first('connector_id')) as unknown;
    if (follower === undefined) await removeSource(db, sourceId);
  }
}
