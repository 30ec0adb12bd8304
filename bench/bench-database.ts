import knex from 'knex';
import { databaseConfig } from '../src/db';

/**
 * A fresh MariaDB database of the given name on the bench's server (a leftover of an earlier run
 * dropped first), so that a benchmark never touches other data. Returns its URL.
 */
export async function createBenchDatabase(serverUrl: string, name: string): Promise<string> {
  const admin = knex(databaseConfig(serverUrl));
  try {
    await admin.raw(`DROP DATABASE IF EXISTS \`${name}\``);
    await admin.raw(`CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci`);
  } finally {
    await admin.destroy();
  }
  const url = new URL(serverUrl.replace(/^mariadb:/, 'mysql:'));
  url.pathname = `/${name}`;
  return url.toString();
}
