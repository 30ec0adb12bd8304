import type { Knex } from 'knex';

/**
 * Where a run's time went, in milliseconds (JSON: deltalogMs, readMs, fetchMs, callMs,
 * commitMs): the deltalog update and, summed over the send phases, reading pending keys, fetching
 * their attributes, destination calls and commits. Counts only, never records.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('refresh_runs', (t) => {
    t.text('timings').nullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('refresh_runs', (t) => {
    t.dropColumn('timings');
  });
}
