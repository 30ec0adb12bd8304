import type { Knex } from 'knex';

/**
 * Change sources (src/core/change-source.ts): triggers on a dataset's base tables write the keys
 * they touch to `change_journal`; a refresh claims the unclaimed rows into the next batch of
 * their source and updates the deltalog from the keys of the batches after its connector's
 * position only. `change_sources.floor` is the lowest position from which the journal is known to
 * be complete (raised when triggers had to be reinstalled or rows went missing). A watermark source
 * keeps no journal: its position is the column values seen. The run records
 * how its deltalog was updated in `refresh_runs.compare`.
 */
export async function up(knex: Knex): Promise<void> {
  const mysql = String(knex.client.config.client).startsWith('mysql');
  await knex.schema.createTable('change_sources', (t) => {
    t.string('source_id', 64).primary();
    t.string('base_table', 255).notNullable();
    t.string('key_column', 255).notNullable();
    t.bigInteger('installed_at').notNullable();
    /** The last batch claimed (0: none yet). */
    t.bigInteger('last_batch').notNullable().defaultTo(0);
    /** A position below this cannot be continued from: those consumers need a full compare. */
    t.bigInteger('floor').notNullable().defaultTo(0);
    /** Journal rows claimed so far, and trimmed so far: what is left must still be there. */
    t.bigInteger('claimed_rows').notNullable().defaultTo(0);
    t.bigInteger('trimmed_rows').notNullable().defaultTo(0);
  });
  await knex.schema.createTable('change_journal', (t) => {
    t.bigIncrements('id').primary();
    t.string('source_id', 64).notNullable();
    const key = t.string('record_key', 255).nullable();
    if (mysql) key.collate('utf8mb4_bin');
    t.bigInteger('batch').nullable();
    t.index(['source_id', 'batch', 'record_key'], 'change_journal_batch');
  });
  await knex.schema.createTable('change_positions', (t) => {
    t.string('connector_id', 128).notNullable();
    t.string('source_id', 64).notNullable();
    /** Where the connector is in the source: a trigger journal's batch, or watermark values (JSON). */
    t.text('position').notNullable();
    /**
     * False while the connector's first compare with the source runs: the row then only holds
     * the journal from its claim on, so that other followers' trimming cannot delete it.
     */
    t.boolean('applied').notNullable().defaultTo(true);
    t.primary(['connector_id', 'source_id']);
  });
  await knex.schema.createTable('change_tracking', (t) => {
    t.string('connector_id', 128).primary();
    /** What the positions were taken for: a different dataset needs a full compare first. */
    t.string('signature', 64).notNullable();
    t.bigInteger('full_compare_at').notNullable();
    /** Keys in the dataset per the deltalog, counted at the full compare and carried forward. */
    t.bigInteger('dataset_keys').notNullable();
    /** The bad-row report of the last full compare (an incremental update does not scan for them). */
    t.text('bad_rows').notNullable();
  });
  await knex.schema.alterTable('refresh_runs', (t) => {
    t.text('compare').nullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('refresh_runs', (t) => {
    t.dropColumn('compare');
  });
  await knex.schema.dropTable('change_tracking');
  await knex.schema.dropTable('change_positions');
  await knex.schema.dropTable('change_journal');
  await knex.schema.dropTable('change_sources');
}
