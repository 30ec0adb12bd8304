import type { Knex } from 'knex';

/**
 * What the destination itself reported about the records a run sent, where it reports it (Meta's
 * num_received and num_invalid_entries): the run's match rate.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('refresh_runs', (t) => {
    t.integer('reported_calls').notNullable().defaultTo(0);
    t.integer('reported_received').notNullable().defaultTo(0);
    t.integer('reported_invalid').notNullable().defaultTo(0);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('refresh_runs', (t) => {
    t.dropColumn('reported_invalid');
    t.dropColumn('reported_received');
    t.dropColumn('reported_calls');
  });
}
