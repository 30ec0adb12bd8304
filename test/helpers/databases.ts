import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import knex from 'knex';
import { databaseConfig, migrateToLatest, type Db, type Dialect } from '../../src/db';

/** Both dialects run in every test run: MariaDB is required, never skipped (see scripts/setup.sh). */
export const dialects: Dialect[] = ['sqlite', 'mysql'];

export const mysqlServerUrl = process.env.DELTASYNC_TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';

export interface TestDatabase {
  db: Db;
  /** URL another process (a worker) can open to reach the same database. */
  url: string;
  dialect: Dialect;
  drop(): Promise<void>;
}

let counter = 0;

/**
 * A fresh, migrated, throw-away database of the given dialect; MySQL ones on the shared server,
 * or on `options.mysqlServer` (a server URL without a database, e.g. a private MariaDB's).
 */
export async function createTestDatabase(
  dialect: Dialect,
  options: { mysqlServer?: string } = {},
): Promise<TestDatabase> {
  const name = `ds_test_${process.pid}_${Date.now().toString(36)}_${counter++}`;
  if (dialect === 'sqlite') {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deltasync-'));
    const url = `sqlite://${path.join(dir, `${name}.sqlite`)}`;
    const db = knex(databaseConfig(url));
    await migrateToLatest(db);
    return {
      db,
      url,
      dialect,
      drop: async () => {
        await db.destroy();
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  const serverUrl = options.mysqlServer ?? mysqlServerUrl;
  const admin = knex(databaseConfig(serverUrl));
  await admin.raw(`CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci`);
  await admin.destroy();
  const server = new URL(serverUrl);
  server.pathname = `/${name}`;
  const url = server.toString();
  const db = knex(databaseConfig(url));
  await migrateToLatest(db);
  return {
    db,
    url,
    dialect,
    drop: async () => {
      await db.raw(`DROP DATABASE \`${name}\``);
      await db.destroy();
    },
  };
}
