import type { Knex } from 'knex';

/**
 * One compare for many connectors (src/core/shared-compare.ts): connectors of one tenant whose
 * datasets are the same share a compare of the dataset into `shared_compare_rows` (a deltalog
 * without delivery state, its `updated_at` a stamp that only grows); each connector then applies
 * the rows stamped after its `applied_stamp` to its own deltalog. `connectors.dataset_signature`
 * finds the connectors that share.
 */
export async function up(knex: Knex): Promise<void> {
  const mysql = String(knex.client.config.client).startsWith('mysql');
  await knex.schema.createTable('shared_compares', (t) => {
    t.string('compare_id', 64).primary();
    t.string('tenant', 64).notNullable();
    /** The stamp of the last compare: the shared rows it changed carry it. */
    t.bigInteger('stamp').notNullable().defaultTo(0);
    /** When the last compare began: a refresh asked for before then may use it. */
    t.bigInteger('compared_from').notNullable().defaultTo(0);
    /** Removed rows are trimmed up to this stamp (every member has applied them). */
    t.bigInteger('trimmed_stamp').notNullable().defaultTo(0);
    /** The last compare's bad-row report and how it ran (JSON), for the runs that use it. */
    t.text('report').nullable();
    t.text('compare').nullable();
    /** Who compares now, until when (renewed while it runs; a crashed worker's lease runs out). */
    t.string('leased_by', 64).nullable();
    t.bigInteger('lease_until').notNullable().defaultTo(0);
  });
  await knex.schema.createTable('shared_compare_rows', (t) => {
    t.string('compare_id', 64).notNullable();
    const key = t.string('record_key', 255).notNullable();
    if (mysql) key.collate('utf8mb4_bin');
    t.boolean('in_dataset').notNullable();
    t.string('attr_hash', 32).nullable();
    t.bigInteger('updated_at').notNullable();
    t.primary(['compare_id', 'record_key']);
    // What changed after a member's stamp, in key order: the apply reads only the change.
    t.index(['compare_id', 'updated_at', 'record_key'], 'shared_compare_rows_stamp');
  });
  await knex.schema.createTable('shared_compare_members', (t) => {
    t.string('connector_id', 200).primary();
    t.string('compare_id', 64).notNullable();
    /** The connector's deltalog holds every shared row stamped up to this. */
    t.bigInteger('applied_stamp').notNullable();
    t.index(['compare_id'], 'shared_compare_members_compare');
  });
  await knex.schema.createTable('shared_compare_rechecks', (t) => {
    // Keys a member sent with a hash the shared compare had not seen: the next compare restamps them.
    t.string('compare_id', 64).notNullable();
    const key = t.string('record_key', 255).notNullable();
    if (mysql) key.collate('utf8mb4_bin');
    /** When it was noted: a compare begun after that does not consume it. */
    t.bigInteger('noted_at').notNullable();
    t.primary(['compare_id', 'record_key']);
  });
  await knex.schema.alterTable('connectors', (t) => {
    t.string('dataset_signature', 64).nullable();
    t.index(['tenant', 'dataset_signature'], 'connectors_dataset');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('connectors', (t) => {
    t.dropIndex(['tenant', 'dataset_signature'], 'connectors_dataset');
    t.dropColumn('dataset_signature');
  });
  await knex.schema.dropTable('shared_compare_rechecks');
  await knex.schema.dropTable('shared_compare_members');
  await knex.schema.dropTable('shared_compare_rows');
  await knex.schema.dropTable('shared_compares');
}
