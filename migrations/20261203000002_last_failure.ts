import type { Knex } from 'knex';

/**
 * The last error a run's activity met while Temporal retried it (a destination refusing
 * connections, a 5xx): kept on the run, so a run that fails or is cancelled says why.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('refresh_runs', (t) => {
    t.text('last_failure').nullable();
    t.bigInteger('last_failure_at').nullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('refresh_runs', (t) => {
    t.dropColumn('last_failure');
    t.dropColumn('last_failure_at');
  });
}
