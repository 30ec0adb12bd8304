import type { Knex } from 'knex';

/**
 * Connector ids are unique per tenant, not across tenants: two tenants may both name a connector
 * `crm`, and taking an id tells nothing about other tenants. Internally a connector is keyed by
 * `<tenant>/<id>` (neither part may contain `/`) in every table that refers to it.
 *
 * Checkpoint cursors become TEXT: a reconcile's cursor is the destination's page token, which
 * can be longer than a key.
 */
export async function up(knex: Knex): Promise<void> {
  const mysql = String(knex.client.config.client).startsWith('mysql');
  if (mysql) {
    await knex.raw('ALTER TABLE connectors MODIFY id VARCHAR(200) NOT NULL');
    await knex.raw('ALTER TABLE connector_state MODIFY connector_id VARCHAR(200) NOT NULL');
    await knex.raw('ALTER TABLE deltalog MODIFY connector_id VARCHAR(200) NOT NULL');
    await knex.raw('ALTER TABLE refresh_runs MODIFY connector_id VARCHAR(200) NOT NULL');
    await knex.raw(
      'ALTER TABLE checkpoints MODIFY `cursor` TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL',
    );
  }
  // SQLite does not enforce VARCHAR lengths: only the values change.
  for (const table of ['deltalog', 'connector_state']) {
    await knex.raw(
      `UPDATE ${table} SET connector_id = (SELECT ${qualified(mysql)} FROM connectors c WHERE c.id = ${table}.connector_id)
       WHERE connector_id IN (SELECT id FROM connectors)`,
    );
  }
  await knex.raw(
    `UPDATE refresh_runs SET connector_id = ${mysql ? "CONCAT(tenant, '/', connector_id)" : "tenant || '/' || connector_id"}
     WHERE connector_id NOT LIKE '%/%'`,
  );
  await knex.raw(`UPDATE connectors SET id = ${qualified(mysql, '')} WHERE id NOT LIKE '%/%'`);
}

export async function down(knex: Knex): Promise<void> {
  const strip = (column: string) => `SUBSTR(${column}, INSTR(${column}, '/') + 1)`;
  for (const table of ['deltalog', 'connector_state', 'refresh_runs']) {
    await knex.raw(
      `UPDATE ${table} SET connector_id = ${strip('connector_id')} WHERE connector_id LIKE '%/%'`,
    );
  }
  await knex.raw(`UPDATE connectors SET id = ${strip('id')} WHERE id LIKE '%/%'`);
}

/** `<tenant>/<id>` of a connectors row (aliased `c`, or unaliased with `alias` ''). */
function qualified(mysql: boolean, alias = 'c.'): string {
  return mysql ? `CONCAT(${alias}tenant, '/', ${alias}id)` : `${alias}tenant || '/' || ${alias}id`;
}
