import { createHash } from 'node:crypto';
import { dialectOf, selectRows, type Db } from '../db';
import type { Fragment } from './dataset';
import { assertByteCompared, unionOfKeys, type FollowedSource, type TrackedTable } from './change-source';

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
 * A dataset's stamped tables (its tombstone tables too) are one source with one position, the
 * watermarks seen in each: continuity fails when none of them still holds a stamp as high as the
 * highest seen in it (rows rewritten with older stamps, a restore from backup), and the follower
 * then compares in full. One table's maximum going down is normal (its newest rows deleted, their
 * tombstones stamped newer elsewhere).
 */

export interface WatermarkTable extends TrackedTable {
  /** The column that grows with every write of a row. */
  column: string;
}

/** Per table, in list order: `low` is where the next read starts, `high` the highest value applied. */
type Watermarks = { low: string | null; high: string | null }[];
/** Per table, in list order: its highest stamp now (null: no rows). */
type Stamps = (string | null)[];

export function watermarkSource(db: Db, tables: WatermarkTable[]): FollowedSource {
  const digest = createHash('sha256').update(
    JSON.stringify(tables.map(({ table, key, column }) => [table, key, column])),
  );
  const parse = (position: string | undefined): Watermarks | undefined =>
    position === undefined ? undefined : (JSON.parse(position) as Watermarks);
  const highest = async (): Promise<Stamps> => {
    const stamps: Stamps = [];
    for (const table of tables) stamps.push(await highestStamp(db, table));
    return stamps;
  };
  return {
    sourceId: `wm-${digest.digest('hex').slice(0, 13)}`,
    table: tables.map((t) => t.table).join(', '),
    async prepare() {
      for (const table of tables) await assertByteCompared(db, table);
      return {};
    },
    claim: async () => JSON.stringify(await highest()),
    async discontinuity(position) {
      const seen = parse(position)!;
      const below: string[] = [];
      for (const [i, table] of tables.entries()) {
        const high = seen[i]?.high ?? null;
        // A table empty until now that has rows now has moved forward.
        if (high === null ? await hasRows(db, table) : await reaches(db, table, high)) return undefined;
        if (high !== null) below.push(`${table.table}.${table.column} below ${high}`);
      }
      return below.length > 0 ? `the watermarks went backwards (${below.join(', ')})` : undefined;
    },
    touched(position, claimed) {
      const seen = parse(position);
      const upTo = JSON.parse(claimed) as Stamps;
      return unionOfKeys(
        tables.map((table, i) => rowsStampedIn(table, seen?.[i]?.low ?? null, upTo[i] ?? null)),
      );
    },
    // The next read starts at the highest value applied before this one (see above); after a
    // first full compare, at what it saw.
    advance(position, claimed) {
      const seen = parse(position);
      const upTo = JSON.parse(claimed) as Stamps;
      return JSON.stringify(upTo.map((high, i) => ({ low: seen ? (seen[i]?.high ?? null) : high, high })));
    },
    trim: async () => undefined,
    marker: async () => `watermark:${JSON.stringify(await highest())}`,
  };
}

/** The keys of a table's rows stamped after `low` (from the start: null) up to `upTo`. */
function rowsStampedIn(table: WatermarkTable, low: string | null, upTo: string | null): Fragment {
  const from =
    low === null ? { sql: '', bindings: [] } : { sql: ' AND ?? > ?', bindings: [table.column, low] };
  return {
    sql: `SELECT ?? AS record_key FROM ?? WHERE ?? IS NOT NULL AND ?? <= ?${from.sql}`,
    bindings: [table.key, table.table, table.key, table.column, upTo, ...from.bindings],
  };
}

/** The highest stamp in the table (null for an empty table). */
async function highestStamp(db: Db, tracked: WatermarkTable): Promise<string | null> {
  const text = dialectOf(db) === 'mysql' ? 'CHAR' : 'TEXT';
  const [row] = await selectRows<{ m: string | null }>(db, `SELECT CAST(MAX(??) AS ${text}) AS m FROM ??`, [
    tracked.column,
    tracked.table,
  ]);
  return row?.m ?? null;
}

/**
 * Whether some row's watermark is still at or above `value`, compared by the database as the
 * column's own values are (dates, numbers or text).
 */
async function reaches(db: Db, tracked: WatermarkTable, value: string): Promise<boolean> {
  const found = await selectRows(db, 'SELECT 1 AS one FROM ?? WHERE ?? >= ? LIMIT 1', [
    tracked.table,
    tracked.column,
    value,
  ]);
  return found.length > 0;
}

async function hasRows(db: Db, tracked: WatermarkTable): Promise<boolean> {
  return (await selectRows(db, 'SELECT 1 AS one FROM ?? LIMIT 1', [tracked.table])).length > 0;
}
