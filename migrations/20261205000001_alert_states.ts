import type { Knex } from 'knex';

/**
 * Which alert rules are firing for which connector (src/core/alerts.ts): a rule alerts when it
 * starts firing and stays quiet until it has recovered, so a failing connector alerts once.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('alert_states', (t) => {
    t.string('connector_id', 128).notNullable();
    t.string('rule', 32).notNullable();
    t.bigInteger('firing_since').notNullable();
    t.primary(['connector_id', 'rule']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('alert_states');
}
