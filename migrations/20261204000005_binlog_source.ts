import type { Knex } from 'knex';

/**
 * Binary-log change sources (src/core/change-binlog.ts) journal like trigger sources; each keeps
 * where in the server's binary log it stopped reading.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('change_sources', (t) => {
    t.string('binlog_file', 255).nullable();
    t.bigInteger('binlog_position').nullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('change_sources', (t) => {
    t.dropColumn('binlog_position');
    t.dropColumn('binlog_file');
  });
}
