import crypto, { createHash } from 'node:crypto';

/**
 * MD5 in hex, called once per row by SQLite's md5() (the deltalog's attribute fingerprint): the
 * one-shot crypto.hash (Node 20.12+) is about three times faster than a Hash object per call.
 */
const md5Hex: (text: string) => string =
  typeof crypto.hash === 'function'
    ? (text) => crypto.hash('md5', text, 'hex')
    : (text) => createHash('md5').update(text).digest('hex');
import { crc32 } from 'node:zlib';
import fs from 'node:fs';
import path from 'node:path';
import knex, { type Knex } from 'knex';
import type BetterSqlite3 from 'better-sqlite3';
import { codeRoot, dataDir, projectRoot } from '../paths';

export type Db = Knex;
export type Dialect = 'mysql' | 'sqlite';

export interface DatabaseOptions {
  /**
   * Every statement on these connections is stopped after this long (MariaDB
   * max_statement_time, MySQL max_execution_time for SELECTs, SQLite through the
   * statement-timeout extension). Dataset SQL is tenants' SQL: none may hold the worker forever.
   */
  statementTimeoutMs?: number;
  /**
   * Most connections open at once to a MySQL/MariaDB server (default 8; SQLite has one). Each
   * running send or compare holds one while it reads or writes; others wait for it in turn.
   */
  poolMax?: number;
}

export const DEFAULT_POOL_MAX = 8;

/**
 * Knex settings for a database URL: `mysql://user:pass@host:port/db` (production) or
 * `sqlite:///abs/path.db` / `sqlite:relative.db`. Without a URL, the embedded SQLite file under the
 * project's data folder, so a newcomer needs no database server.
 */
export function databaseConfig(
  url: string | undefined = process.env.DELTASYNC_DATABASE_URL,
  options: DatabaseOptions = {},
): Knex.Config {
  if (!url) return sqliteConfig(path.join(dataDir(), 'deltasync.sqlite'), options);
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
      pool: {
        min: 0,
        max: options.poolMax ?? DEFAULT_POOL_MAX,
        afterCreate(conn: MysqlConnection, done: (err: Error | null, conn: unknown) => void) {
          if (options.statementTimeoutMs === undefined) return done(null, conn);
          limitStatementTime(conn, options.statementTimeoutMs).then(
            () => done(null, conn),
            (error: Error) => done(error, conn),
          );
        },
      },
    };
  }
  if (url.startsWith('sqlite:')) {
    const file = url.replace(/^sqlite:(\/\/)?/, '');
    return sqliteConfig(file === ':memory:' ? file : path.resolve(file), options);
  }
  throw new Error(
    `DELTASYNC_DATABASE_URL must start with mysql://, mariadb:// or sqlite: (got '${url.split(':')[0]}:…')`,
  );
}

/** The one call of a mysql2 connection this module makes. */
interface MysqlConnection {
  query(sql: string, callback: (error: Error | null, rows: unknown) => void): void;
}

function query(conn: MysqlConnection, sql: string): Promise<unknown> {
  return new Promise((resolve, reject) =>
    conn.query(sql, (error, rows) => (error ? reject(error) : resolve(rows))),
  );
}

/** Whether a MySQL-family server is MariaDB (the two name their statement time limits differently). */
export async function isMariaDb(conn: MysqlConnection): Promise<boolean> {
  const rows = (await query(conn, 'SELECT VERSION() AS v')) as { v: string }[];
  return /mariadb/i.test(rows[0]?.v ?? '');
}

/**
 * The session's statement time limit. MariaDB bounds every statement; MySQL's
 * max_execution_time bounds read-only SELECTs only (its INSERT … SELECT has no limit).
 */
export async function limitStatementTime(conn: MysqlConnection, ms: number): Promise<void> {
  const limit = Math.max(0, Math.round(ms));
  await query(
    conn,
    (await isMariaDb(conn))
      ? `SET SESSION max_statement_time = ${(limit / 1000).toFixed(3)}`
      : `SET SESSION max_execution_time = ${limit}`,
  );
}

/**
 * The SQLite extension that gives statements a time limit (native/statement-timeout.c), built by
 * scripts/setup.sh. Without it (no C compiler) statements on the embedded database are not
 * bounded; the worker says so when it starts.
 */
export const statementTimeoutExtension = path.join(projectRoot, 'build', 'statement-timeout.so');

export function sqliteStatementTimeoutAvailable(): boolean {
  return fs.existsSync(statementTimeoutExtension);
}

function sqliteConfig(file: string, options: DatabaseOptions): Knex.Config {
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
        conn.function('md5', { deterministic: true }, (text: unknown) => md5Hex(String(text ?? '')));
        // MySQL's SHA2(text, 256), for finding a key by its salted digest (core/change-log.ts).
        conn.function('sha2', { deterministic: true }, (text: unknown, bits: unknown) =>
          text === null || text === undefined || Number(bits) !== 256
            ? null
            : createHash('sha256').update(String(text)).digest('hex'),
        );
        // MySQL's CRC32 (same polynomial, over the UTF-8 bytes), for the dataset change marker.
        conn.function('crc32', { deterministic: true }, (text: unknown) =>
          text === null || text === undefined ? null : crc32(String(text)),
        );
        if (options.statementTimeoutMs !== undefined && sqliteStatementTimeoutAvailable()) {
          conn.loadExtension(statementTimeoutExtension);
          conn.prepare('SELECT deltasync_statement_timeout(?)').get(Math.round(options.statementTimeoutMs));
        }
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

/** The rows of a raw SELECT, whichever driver answered (mysql2 wraps them, better-sqlite3 does not). */
export async function selectRows<T>(
  db: Db | Knex.Transaction,
  sql: string,
  bindings: readonly Knex.RawBinding[] = [],
): Promise<T[]> {
  const result: unknown = await db.raw(sql, bindings);
  return dialectOf(db as Db) === 'mysql' ? (result as [T[]])[0] : (result as T[]);
}

/** A key column of a temporary table, compared byte for byte as the deltalog's `record_key` is. */
export const TEMPORARY_KEY = {
  mysql: 'VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin',
  sqlite: 'TEXT',
};

/**
 * A temporary table of the connection's own, its columns given per dialect; a leftover of a failed
 * attempt on this pooled connection is dropped first. Neither statement ends MySQL's transaction.
 */
export async function createTemporaryTable(
  db: Db | Knex.Transaction,
  name: string,
  columns: Record<Dialect, string>,
): Promise<void> {
  const dialect = dialectOf(db as Db);
  await dropTemporaryTable(db, name, { ifExists: true });
  await db.raw(`CREATE ${dialect === 'mysql' ? 'TEMPORARY' : 'TEMP'} TABLE ${name} (${columns[dialect]})`);
}

export async function dropTemporaryTable(
  db: Db | Knex.Transaction,
  name: string,
  { ifExists = false } = {},
): Promise<void> {
  const ifFound = ifExists ? 'IF EXISTS ' : '';
  await db.raw(
    dialectOf(db as Db) === 'mysql'
      ? `DROP TEMPORARY TABLE ${ifFound}${name}`
      : `DROP TABLE ${ifFound}temp.${name}`,
  );
}

/** Open a database and bring its schema up to date. */
export async function openDatabase(url?: string, options: DatabaseOptions = {}): Promise<Db> {
  if (options.statementTimeoutMs === undefined) {
    const db = knex(databaseConfig(url, options));
    await migrateToLatest(db);
    return db;
  }
  // A migration may rebuild a large table: it runs without the statement time limit.
  const migrator = knex(databaseConfig(url));
  try {
    await migrateToLatest(migrator);
  } finally {
    await migrator.destroy();
  }
  return knex(databaseConfig(url, options));
}

export async function migrateToLatest(db: Db): Promise<void> {
  await db.migrate.latest({ migrationSource });
}

/**
 * The migrations next to the running code: migrations/*.ts from the sources, dist/migrations/*.js
 * compiled. Each is named by its source file (`…_initial.ts`) either way, as knex_migrations has
 * always recorded it, so a database migrated by one is up to date for the other.
 */
const migrationsDir = path.join(codeRoot, 'migrations');
const migrationSource: Knex.MigrationSource<string> = {
  getMigrations: async () =>
    (await fs.promises.readdir(migrationsDir)).filter((file) => /^[^.]+\.(ts|js)$/.test(file)).sort(),
  getMigrationName: (file) => file.replace(/\.js$/, '.ts'),
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- a migration is loaded by its path
  getMigration: async (file) => require(path.join(migrationsDir, file)) as Knex.Migration,
};
