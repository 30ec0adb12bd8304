import { createHash } from 'node:crypto';
import { dialectOf, type Db } from '../db';
import type { Fragment } from './dataset';
import { assertByteCompared, type FollowedSource, type TrackedTable } from './change-source';

/**
 * Watermark change sources, for tables maintained by batch jobs that stamp every row they write
 * (`updated_at`, a version counter): the keys touched since the last refresh are those of the rows
 * whose watermark column grew past the value seen then. Nothing is installed in the source
 * database. Hard deletions leave no row to stamp, so they come from a second table in the same
 * list, a tombstone table with the deleted key and its own stamp (`deleted_at`); a soft-deleted
 * row that bumps its watermark needs nothing more.
 *
 * A row may commit after a refresh read the highest watermark, stamped with an older value (its
 * transaction started earlier). So each refresh reads from the watermark the refresh *before* the
 * last one saw: every interval is read twice, and a writer's transaction that stays open for less
 * than one refresh interval is never missed. Longer ones are what the safety net's periodic full
 * compare is for. Re-reading a key is harmless: its update is idempotent.
 *
 * Continuity fails when the highest watermark is lower than one already seen (rows rewritten with
 * older stamps, a restore from backup): the follower then compares in full.
 */

export interface WatermarkTable extends TrackedTable {
  /** The column that grows with every write of a row. */
  column: string;
}

/** Watermarks seen: `low` is where the next read starts, `high` the highest value applied. */
interface Watermarks {
  low: string | null;
  high: string | null;
}

export function watermarkSourceIdOf(tracked: WatermarkTable): string {
  const digest = createHash('sha256').update(`${tracked.table}\u001f${tracked.key}\u001f${tracked.column}`);
  return `wm-${digest.digest('hex').slice(0, 13)}`;
}

export function watermarkSource(db: Db, tracked: WatermarkTable): FollowedSource {
  const sourceId = watermarkSourceIdOf(tracked);
  const parse = (position: string | undefined): Watermarks =>
    position ? (JSON.parse(position) as Watermarks) : { low: null, high: null };
  return {
    sourceId,
    table: tracked.table,
    async prepare() {
      await assertByteCompared(db, tracked);
      return {};
    },
    claim: () => highestStamp(db, tracked),
    // Per table, a lower maximum is normal (the latest rows deleted, their tombstones elsewhere):
    // see watermarksWentBackwards for the check across the dataset's tables.
    discontinuity: async () => undefined,
    touched(position, claimed) {
      const upTo = JSON.parse(claimed) as string | null;
      const { low } = parse(position);
      const from =
        low === null ? { sql: '', bindings: [] } : { sql: ' AND ?? > ?', bindings: [tracked.column, low] };
      return {
        sql: `SELECT ?? AS record_key FROM ?? WHERE ?? IS NOT NULL AND ?? <= ?${from.sql}`,
        bindings: [tracked.key, tracked.table, tracked.key, tracked.column, upTo, ...from.bindings],
      };
    },
    // The next read starts at the highest value applied before this one (see above); after a
    // first full compare, at what it saw.
    advance(position, claimed) {
      const high = JSON.parse(claimed) as string | null;
      return JSON.stringify({ low: position === undefined ? high : parse(position).high, high });
    },
    trim: async () => undefined,
    marker: async () => `watermark:${await highestStamp(db, tracked)}`,
  };
}

/** The highest stamp in the table (JSON: a string, or null for an empty table). */
async function highestStamp(db: Db, tracked: WatermarkTable): Promise<string> {
  const text = dialectOf(db) === 'mysql' ? 'CHAR' : 'TEXT';
  const [row] = await rowsOf<{ m: string | null }>(db, {
    sql: `SELECT CAST(MAX(??) AS ${text}) AS m FROM ??`,
    bindings: [tracked.column, tracked.table],
  });
  return JSON.stringify(row?.m ?? null);
}

/**
 * Across all of a dataset's watermark tables (its tombstone tables too), whether none still holds a
 * stamp as high as the highest seen in it: the watermarks went backwards (rows rewritten with older
 * stamps, a restore from backup) and the positions mean nothing any more. A deletion cannot cause
 * it, since its tombstone carries a newer stamp.
 */
export async function watermarksWentBackwards(
  db: Db,
  tables: WatermarkTable[],
  positions: Map<string, string>,
): Promise<string | undefined> {
  const seen: string[] = [];
  for (const table of tables) {
    const position = positions.get(watermarkSourceIdOf(table));
    const high = position ? (JSON.parse(position) as Watermarks).high : null;
    // A table empty until now that has rows now has moved forward.
    if (high === null ? await hasRows(db, table) : await reaches(db, table, high)) return undefined;
    if (high === null) continue;
    seen.push(`${table.table}.${table.column} below ${high}`);
  }
  return seen.length > 0 ? `the watermarks went backwards (${seen.join(', ')})` : undefined;
}

/**
 * Whether some row's watermark is still at or above `value`, compared by the database as the
 * column's own values are (dates, numbers or text). None: the highest watermark went down (rows
 * rewritten with older stamps, a restore, or the latest row deleted: a full compare sorts it out).
 */
async function reaches(db: Db, tracked: WatermarkTable, value: string): Promise<boolean> {
  const found = await rowsOf<{ one: number }>(db, {
    sql: 'SELECT 1 AS one FROM ?? WHERE ?? >= ? LIMIT 1',
    bindings: [tracked.table, tracked.column, value],
  });
  return found.length > 0;
}

async function hasRows(db: Db, tracked: WatermarkTable): Promise<boolean> {
  return (
    (await rowsOf<{ one: number }>(db, { sql: 'SELECT 1 AS one FROM ?? LIMIT 1', bindings: [tracked.table] }))
      .length > 0
  );
}

async function rowsOf<T>(db: Db, fragment: Fragment): Promise<T[]> {
  const result: unknown = await db.raw(fragment.sql, fragment.bindings);
  return dialectOf(db) === 'mysql' ? (result as [T[]])[0] : (result as T[]);
}
