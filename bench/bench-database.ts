import knex from 'knex';
import { databaseConfig, selectRows, type Db } from '../src/db';

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

/** Resize the InnoDB buffer pool, waiting (up to a minute) until it is done; returns the size before. */
export async function resizeBufferPool(db: Db, size: number): Promise<number> {
  const before = await bufferPoolSize(db);
  await db.raw('SET GLOBAL innodb_buffer_pool_size = ?', [size]);
  for (
    let waited = 0;
    waited < 60_000 && (await bufferPoolSize(db)) === before && size !== before;
    waited += 500
  )
    await new Promise((resolve) => setTimeout(resolve, 500));
  return before;
}

export async function bufferPoolSize(db: Db): Promise<number> {
  const [row] = await selectRows<{ size: number | string }>(db, 'SELECT @@innodb_buffer_pool_size AS size');
  return Number(row!.size);
}
