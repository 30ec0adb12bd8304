import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import fs from 'node:fs';
import path from 'node:path';
import knex, { type Knex } from 'knex';
import type BetterSqlite3 from 'better-sqlite3';
import { dataDir, projectRoot } from '../paths';

export type Db = Knex;
export type Dialect = 'mysql' | 'sqlite';

/**
 * Knex settings for a database URL: `mysql://user:pass@host:port/db` (production) or
 * `sqlite:///abs/path.db` / `sqlite:relative.db`. Without a URL, the embedded SQLite file under the
 * project's data folder, so a newcomer needs no database server.
 */
export function databaseConfig(url: string | undefined = process.env.DELTASYNC_DATABASE_URL): Knex.Config {
  if (!url) return sqliteConfig(path.join(dataDir(), 'deltasync.sqlite'));
  if (url.startsWith('mysql://') || url.startsWith('mariadb://')) {
    const u = new URL(url.replace(/^mariadb:/, 'mysql:'));
    return {
      client: 'mysql2',
      compileSqlOnError: false,
      connection: {
        host: u.hostname,
        port: Number(u.port || 3306),
        user: decodeURIComponent(u.username),
        password: decodeURIComponent(u.password),
        database: u.pathname.replace(/^\//, ''),
        charset: 'utf8mb4',
        supportBigNumbers: true,
        // Epoch-millisecond BIGINTs fit a double exactly; keep them numbers, not strings.
        bigNumberStrings: false,
      },
      pool: { min: 0, max: 8 },
    };
  }
  if (url.startsWith('sqlite:')) {
    const file = url.replace(/^sqlite:(\/\/)?/, '');
    return sqliteConfig(file === ':memory:' ? file : path.resolve(file));
  }
  throw new Error(
    `DELTASYNC_DATABASE_URL must start with mysql://, mariadb:// or sqlite: (got '${url.split(':')[0]}:…')`,
  );
}

function sqliteConfig(file: string): Knex.Config {
  if (file !== ':memory:') fs.mkdirSync(path.dirname(file), { recursive: true });
  return {
    client: 'better-sqlite3',
    // Error messages must not carry record values (they end up in logs and workflow history).
    compileSqlOnError: false,
    connection: { filename: file },
    useNullAsDefault: true,
    pool: {
      min: 1,
      max: 1,
      afterCreate(conn: BetterSqlite3.Database, done: (err: Error | null, conn: unknown) => void) {
        // SQLite has no hash function; the deltalog's attribute fingerprint needs one.
        conn.function('md5', { deterministic: true }, (text: unknown) =>
          createHash('md5')
            .update(String(text ?? ''))
            .digest('hex'),
        );
        // MySQL's CRC32 (same polynomial, over the UTF-8 bytes), for the dataset change marker.
        conn.function('crc32', { deterministic: true }, (text: unknown) =>
          text === null || text === undefined ? null : crc32(String(text)),
        );
        conn.pragma('journal_mode = WAL');
        conn.pragma('busy_timeout = 10000');
        conn.pragma('synchronous = NORMAL');
        done(null, conn);
      },
    },
  };
}

export function dialectOf(db: Db): Dialect {
  const client = String(db.client.config.client);
  return client === 'mysql2' || client === 'mysql' ? 'mysql' : 'sqlite';
}

/** Open a database and bring its schema up to date. */
export async function openDatabase(url?: string): Promise<Db> {
  const db = knex(databaseConfig(url));
  await migrateToLatest(db);
  return db;
}

export async function migrateToLatest(db: Db): Promise<void> {
  await db.migrate.latest({
    directory: path.join(projectRoot, 'migrations'),
    loadExtensions: ['.ts', '.js'],
  });
}
