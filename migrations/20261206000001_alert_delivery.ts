import type { Knex } from 'knex';

/**
 * Alerts are delivered at least once: a rule's change (starts firing, resolves) is kept with what
 * to say until every webhook has taken it; the alert watchdog delivers what a worker could not
 * (a webhook down for longer than a run's retries, a worker stopped between the two).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('alert_states', (t) => {
    // 'firing' or 'resolved' while that change is not yet delivered; null once it is.
    t.string('pending', 16).nullable();
    t.text('message').nullable();
    t.bigInteger('run_id').nullable();
    t.bigInteger('changed_at').nullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('alert_states', (t) => {
    t.dropColumn('changed_at');
    t.dropColumn('run_id');
    t.dropColumn('message');
    t.dropColumn('pending');
  });
}
