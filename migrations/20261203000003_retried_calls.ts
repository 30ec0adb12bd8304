import type { Knex } from 'knex';

/**
 * Calls by outcome: of each endpoint's calls, those answered 429 and waited for, and those that
 * failed and were tried again inside the operation (the rest succeeded or are counted `failed`).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('run_api_calls', (t) => {
    t.integer('rate_limited').notNullable().defaultTo(0);
    t.integer('retried').notNullable().defaultTo(0);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('run_api_calls', (t) => {
    t.dropColumn('rate_limited');
    t.dropColumn('retried');
  });
}
