import type { Knex } from 'knex';
import { createHash } from 'node:crypto';
import { dialectOf, type Db } from '../db';
import { attributeHash, sourceFrom, type DatasetDefinition, type Fragment } from './dataset';

/**
 * A cheap fingerprint of a dataset's current contents, for change-triggered refreshes: when it
 * differs from the last one seen, the dataset changed. One aggregate query, computed in the
 * database; only the short marker string leaves it (a count and a digest, never record data).
 *
 * - With a `markerColumn` (a column that grows with every insert and update, such as
 *   `updated_at`): COUNT(*) and MAX(column). Cheap with an index on the column. Sees inserts,
 *   deletions (the count drops) and updates that bump the column; not an update that leaves the
 *   column alone, nor a deletion and an older-stamped insert in the same interval.
 * - Without: COUNT(*) and an order-independent checksum, SUM(CRC32(MD5(key, attributes))) — the
 *   same per-row fingerprint the deltalog compares, so any insert, deletion, key change or
 *   attribute change is seen (a change escapes only if the 32-bit sums collide, about 1 in 4
 *   billion). A full scan, but no rows travel: the database returns two numbers.
 *
 * Nothing changed → the same marker, whatever order the rows come in.
 */
export async function changeMarker(
  db: Db | Knex.Transaction,
  dataset: DatasetDefinition,
  markerColumn?: string,
): Promise<string> {
  const dialect = dialectOf(db as Db);
  const text = dialect === 'mysql' ? 'CHAR' : 'TEXT';
  const source = sourceFrom(dataset);
  let aggregate: Fragment;
  if (markerColumn !== undefined) {
    aggregate = { sql: `CAST(MAX(??) AS ${text})`, bindings: [`src.${markerColumn}`] };
  } else {
    // MD5 over the key and the attributes, each prefixed so NULL and 'NULL' differ (as the
    // deltalog's attribute hash); CRC32 of that hex digest turns it into a 32-bit integer. The MD5
    // in between matters: CRC32 alone is linear, so swapping values between rows could cancel out.
    const row = attributeHash(dialect, { ...dataset, attributes: [dataset.key, ...dataset.attributes] });
    aggregate = { sql: `CAST(COALESCE(SUM(CRC32(${row.sql})), 0) AS ${text})`, bindings: row.bindings };
  }
  const result = await db.raw(`SELECT COUNT(*) AS n, ${aggregate.sql} AS m FROM ${source.sql}`, [
    ...aggregate.bindings,
    ...source.bindings,
  ]);
  const first = (dialect === 'mysql' ? result[0][0] : result[0]) as { n: number | string; m: string | null };
  const count = Number(first.n);
  const digest = createHash('sha256')
    .update(`${markerColumn === undefined ? 'checksum' : `max:${markerColumn}`}\u001f${first.m ?? ''}`)
    .digest('hex')
    .slice(0, 16);
  return `${count}:${digest}`;
}
