import type { Knex } from 'knex';

/**
 * A first push read straight from the dataset (src/core/refresh/run-record.ts): the number of rows
 * it sends, set by the deltalog update when it skips the compare because the connector's deltalog
 * is empty. Null for every other run.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('refresh_runs', (t) => {
    t.bigInteger('direct_push_rows').nullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('refresh_runs', (t) => {
    t.dropColumn('direct_push_rows');
  });
}
