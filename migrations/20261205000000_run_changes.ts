import type { Knex } from 'knex';

/**
 * The row-level change log of runs (src/core/change-log.ts): which keys each delivered batch
 * added, updated or removed, and which the destination rejected or held, and why. One row per
 * batch and outcome, its keys compressed together: keys and reasons only, never attribute values.
 */
export async function up(knex: Knex): Promise<void> {
  const mysql = knex.client.config.client === 'mysql2';
  await knex.schema.createTable('run_changes', (t) => {
    t.increments('id').primary();
    t.integer('run_id').notNullable();
    t.string('connector_id', 128).notNullable();
    t.string('outcome', 16).notNullable();
    // The batch's key range, in the byte order the send reads keys in (a key's batches by range).
    const first = t.string('first_key', 255).notNullable();
    const last = t.string('last_key', 255).notNullable();
    if (mysql) for (const column of [first, last]) column.collate('utf8mb4_bin');
    t.integer('key_count').notNullable();
    // gzip of a JSON array: keys, or [key, reason] pairs. A batch of 10,000 long keys exceeds a BLOB.
    t.specificType('payload', mysql ? 'MEDIUMBLOB' : 'BLOB').notNullable();
    t.bigInteger('created_at').notNullable();
    t.index(['connector_id', 'run_id', 'id'], 'run_changes_by_run');
    t.index(['connector_id', 'first_key'], 'run_changes_by_key');
    t.index(['created_at'], 'run_changes_by_age');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('run_changes');
}
