import type { Db } from '../../src/db';

/**
 * A connector's deltalog, every column but its connector id, in key order, values as strings: what
 * two ways of updating a deltalog must leave identical.
 */
export async function deltalogOf(db: Db, connectorId: string) {
  const rows = (await db('deltalog')
    .where({ connector_id: connectorId })
    .orderBy('record_key')
    .select(
      'record_key',
      'in_dataset',
      'attr_hash',
      'on_remote',
      'updated_at',
      'committed_at',
      'attempts',
    )) as Record<string, unknown>[];
  return rows.map((row) => Object.values(row).map((v) => (v === null ? null : String(v))));
}
