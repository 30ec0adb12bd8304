import type { Knex } from 'knex';

/**
 * The destination's estimate of how many of a run's records it matched to its users, where it
 * gives a range (Google's match_rate_range per Customer Match job): the records the estimates
 * cover, and the sums of records × percent at the range's low and high bounds, so that runs add
 * up and the run's range is each sum over the records.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('refresh_runs', (t) => {
    t.bigInteger('match_estimated_records').notNullable().defaultTo(0);
    t.bigInteger('match_estimated_low').notNullable().defaultTo(0);
    t.bigInteger('match_estimated_high').notNullable().defaultTo(0);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('refresh_runs', (t) => {
    t.dropColumn('match_estimated_high');
    t.dropColumn('match_estimated_low');
    t.dropColumn('match_estimated_records');
  });
}
