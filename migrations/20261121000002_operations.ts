import type { Knex } from 'knex';

/** The mass-delete guard's decision on a run, and the deletions it held back. */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('refresh_runs', (t) => {
    t.text('guard').nullable(); // JSON: why it waited, the decision, who, when, note
    t.integer('deletions_held').notNullable().defaultTo(0);
    t.index(['tenant', 'connector_id']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('refresh_runs', (t) => {
    t.dropIndex(['tenant', 'connector_id']);
    t.dropColumn('guard');
    t.dropColumn('deletions_held');
  });
}
