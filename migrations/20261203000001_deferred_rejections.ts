import type { Knex } from 'knex';

/**
 * Rejections the destination called deferred (refused for now, not the record's fault: Meta
 * refusing removals that would make an audience too small). They stay pending like any
 * rejection, but do not count against a run's record threshold.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('refresh_runs', (t) => {
    t.integer('deferred').notNullable().defaultTo(0);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('refresh_runs', (t) => t.dropColumn('deferred'));
}
