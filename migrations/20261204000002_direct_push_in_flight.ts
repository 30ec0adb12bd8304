import type { Knex } from 'knex';

/**
 * The batches of a direct first push that are in flight: written before the call, deleted with
 * the batch's commit. A batch left here was maybe delivered but never recorded; its keys are then
 * adopted into the deltalog as pending, so that a key the dataset lost meanwhile is still removed
 * (src/core/deltalog.ts adoptInFlight).
 */
export async function up(knex: Knex): Promise<void> {
  const mysql = String(knex.client.config.client).startsWith('mysql');
  await knex.schema.createTable('direct_push_in_flight', (t) => {
    t.integer('run_id').notNullable();
    const first = t.string('first_key', 255).notNullable();
    if (mysql) first.collate('utf8mb4_bin');
    t.string('connector_id', 128).notNullable();
    t.text('record_keys', 'mediumtext').notNullable();
    t.primary(['run_id', 'first_key']);
    t.index(['connector_id'], 'direct_push_in_flight_connector');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('direct_push_in_flight');
}
