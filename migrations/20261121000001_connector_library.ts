import type { Knex } from 'knex';

/** Per-endpoint call accounting, plan estimates, drift reports, and new-list-and-swap state. */
export async function up(knex: Knex): Promise<void> {
  const mysql = String(knex.client.config.client).startsWith('mysql');

  await knex.schema.createTable('run_api_calls', (t) => {
    t.integer('run_id').notNullable();
    t.string('endpoint', 64).notNullable();
    t.integer('calls').notNullable().defaultTo(0);
    t.integer('failed').notNullable().defaultTo(0);
    t.primary(['run_id', 'endpoint']);
  });

  await knex.schema.alterTable('refresh_runs', (t) => {
    t.bigInteger('bytes_sent').notNullable().defaultTo(0);
    t.integer('quarantined').notNullable().defaultTo(0);
    t.text('estimates').nullable(); // JSON: predicted calls, records and bytes per strategy
    t.text('drift').nullable(); // JSON: what a reconcile found (extra and missing keys)
  });

  await knex.schema.alterTable('connector_state', (t) => {
    // A list being built by new list + swap; the live one stays remote_list_id until the swap.
    t.string('pending_list_id', 255).nullable();
  });

  // A reconcile reads the remote membership into the database, never into worker memory.
  await knex.schema.createTable('remote_members', (t) => {
    t.integer('run_id').notNullable();
    const key = t.string('record_key', 255).notNullable();
    if (mysql) key.collate('utf8mb4_bin');
    t.primary(['run_id', 'record_key']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('remote_members');
  await knex.schema.alterTable('connector_state', (t) => t.dropColumn('pending_list_id'));
  await knex.schema.alterTable('refresh_runs', (t) => {
    t.dropColumn('bytes_sent');
    t.dropColumn('quarantined');
    t.dropColumn('estimates');
    t.dropColumn('drift');
  });
  await knex.schema.dropTableIfExists('run_api_calls');
}
