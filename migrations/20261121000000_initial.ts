import type { Knex } from 'knex';

/**
 * Times are epoch milliseconds in BIGINT columns: identical on MySQL and SQLite, free of time
 * zones, and passed into set-based SQL as plain parameters.
 */
export async function up(knex: Knex): Promise<void> {
  const mysql = String(knex.client.config.client).startsWith('mysql');

  await knex.schema.createTable('connectors', (t) => {
    t.string('id', 128).primary();
    t.string('tenant', 64).notNullable().defaultTo('default');
    t.string('destination_type', 64).notNullable();
    // The validated definition (dataset, destination settings with secret *names*, policy).
    t.text('definition').notNullable();
    t.bigInteger('created_at').notNullable();
    t.bigInteger('updated_at').notNullable();
    t.index(['tenant']);
  });

  await knex.schema.createTable('connector_state', (t) => {
    t.string('connector_id', 128).primary();
    t.bigInteger('last_succeeded_at').nullable();
    t.string('remote_list_id', 255).nullable();
    t.integer('last_run_id').nullable();
  });

  await knex.schema.createTable('deltalog', (t) => {
    t.string('connector_id', 128).notNullable();
    // Keys compare byte for byte, as destinations do: 'A@x' and 'a@x' are two records.
    const key = t.string('record_key', 255).notNullable();
    if (mysql) key.collate('utf8mb4_bin');
    t.boolean('in_dataset').notNullable();
    t.string('attr_hash', 32).nullable();
    // The last state the destination confirmed: tells an addition from an attribute update.
    t.boolean('on_remote').notNullable().defaultTo(false);
    t.bigInteger('updated_at').notNullable();
    t.bigInteger('committed_at').nullable();
    t.integer('attempts').notNullable().defaultTo(0);
    t.string('last_error', 1000).nullable();
    t.primary(['connector_id', 'record_key']);
    // Pending rows (committed_at IS NULL) by kind, in key order: the changeset scans.
    t.index(['connector_id', 'committed_at', 'in_dataset', 'record_key'], 'deltalog_pending');
  });

  await knex.schema.createTable('refresh_runs', (t) => {
    t.increments('id').primary();
    t.string('connector_id', 128).notNullable();
    t.string('tenant', 64).notNullable().defaultTo('default');
    t.string('workflow_id', 255).notNullable();
    t.string('workflow_run_id', 64).notNullable().unique();
    t.string('trigger', 32).notNullable().defaultTo('manual');
    t.string('status', 32).notNullable(); // running | succeeded | noop | failed
    t.string('strategy', 32).nullable();
    t.string('strategy_reason', 500).nullable();
    // The snapshot time of this run's deltalog update: the "as of" of the invariant.
    t.bigInteger('snapshot_at').nullable();
    t.bigInteger('started_at').notNullable();
    t.bigInteger('finished_at').nullable();
    t.bigInteger('dataset_size').nullable();
    t.integer('additions').notNullable().defaultTo(0);
    t.integer('deletions').notNullable().defaultTo(0);
    t.integer('updates').notNullable().defaultTo(0);
    t.bigInteger('records_sent').notNullable().defaultTo(0);
    t.integer('rejected').notNullable().defaultTo(0);
    t.integer('api_calls').notNullable().defaultTo(0);
    t.integer('failed_calls').notNullable().defaultTo(0);
    t.integer('rate_limit_waits').notNullable().defaultTo(0);
    t.text('bad_rows').nullable(); // JSON: counts and samples of rows the dataset could not supply
    t.text('error').nullable();
    t.index(['connector_id', 'id']);
  });

  await knex.schema.createTable('checkpoints', (t) => {
    t.integer('run_id').notNullable();
    t.string('phase', 32).notNullable();
    const cursor = t.string('cursor', 255).notNullable();
    if (mysql) cursor.collate('utf8mb4_bin');
    t.bigInteger('records_done').notNullable().defaultTo(0);
    t.bigInteger('updated_at').notNullable();
    t.primary(['run_id', 'phase']);
  });
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ['checkpoints', 'refresh_runs', 'deltalog', 'connector_state', 'connectors']) {
    await knex.schema.dropTableIfExists(table);
  }
}
