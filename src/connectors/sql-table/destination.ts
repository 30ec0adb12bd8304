import knex, { type Knex } from 'knex';
import { meteredCall } from '../../core/api-calls';
import {
  DestinationError,
  type Attributes,
  type BatchResult,
  type Destination,
  type Limits,
  type Member,
  type MemberPage,
  type Rejection,
  type SecretResolver,
} from '../../core/destination';
import { databaseConfig } from '../../db/index';
import { resolveSecret } from '../kit/index';
import type { DestinationContext } from '../kit/module';
import {
  maxKeyLength,
  SQL_TABLE_TYPE,
  sqlTableConfigSchema,
  urlPrefixes,
  type SqlTableConfig,
  type SqlTableConfigInput,
} from './settings';

/**
 * `sql-table`: the list is a table in another database (MySQL/MariaDB or SQLite), one row per
 * member: `member_key VARCHAR(255) PRIMARY KEY, attributes TEXT` (JSON). Keys compare byte for
 * byte (utf8mb4_bin on MySQL, SQLite's default BINARY), as the deltalog does.
 *
 *   add       INSERT … ON CONFLICT/DUPLICATE KEY UPDATE (one statement per batch)
 *   remove    DELETE … WHERE member_key IN (…)
 *   truncate  DELETE (no DROP privilege needed, and it stays transactional)
 *   list      SELECT member_key … ORDER BY member_key LIMIT n+1 (keyset pagination)
 *   check     the table's columns and its first row (or, before the first write, the connection)
 *
 * One batch is one statement: `recordsPerCall` is the destination's limit, so the engine never
 * hands over more rows than one statement takes. Each statement counts as one call at its
 * operation's name; the table is created on first use, inside the first statement's call.
 *
 * Acknowledgement: the statement's success. Each call is one auto-committed upsert (or DELETE),
 * atomic on the InnoDB or SQLite table made here: it writes every row or throws, and a failed one
 * counts nothing. Affected-row counts are not read: they count changes, not receipt (MySQL counts
 * an unchanged upsert 0, and deleting an absent key is 0, as it should be).
 */

/** The endpoints, as the run counts their statements. */
export const SQL_TABLE_ENDPOINTS = {
  add: 'add',
  remove: 'remove',
  truncate: 'truncate',
  list: 'listMembers',
  check: 'check',
} as const;

/**
 * Statements sent per table name, counted as the run counts them: what the contract harness
 * (emulator.ts) reports as received, there being no emulator between us and the database.
 */
const statementsByTable = new Map<string, number>();

/** The statements (calls) sql-table destinations of this process have sent to tables named `table`. */
export function statementsSent(table: string): number {
  return statementsByTable.get(table) ?? 0;
}

export function createSqlTableDestination(
  input: SqlTableConfigInput,
  context: DestinationContext,
): Destination {
  const config = sqlTableConfigSchema.parse(input);
  const { table } = config;
  const limits: Limits = { recordsPerCall: config.recordsPerCall };
  let db: Knex | undefined;
  let tableReady: Promise<void> | undefined;

  // Opened on first use, inside the activity, where the secret may be resolved.
  function connection(): Knex {
    db ??= knex(knexConfig(resolveUrl(config, context.secrets)));
    return db;
  }

  async function ready(): Promise<Knex> {
    const conn = connection();
    tableReady ??= ensureTable(conn, table).catch((err: unknown) => {
      tableReady = undefined;
      throw err;
    });
    await tableReady;
    return conn;
  }

  /** Runs one statement, counted as one call of `endpoint`, turning driver errors into DestinationErrors. */
  function statement<T>(endpoint: string, run: (conn: Knex) => Promise<T>): Promise<T> {
    statementsByTable.set(table, statementsSent(table) + 1);
    return meteredCall(endpoint, async () => {
      try {
        return await run(await ready());
      } catch (err) {
        if (err instanceof DestinationError) throw err;
        // Someone dropped the table under us: create it again on the retry.
        if (isMissingTable(err)) tableReady = undefined;
        throw toDestinationError(err, endpoint, table);
      }
    });
  }

  return {
    type: SQL_TABLE_TYPE,
    limits,

    async add(members: Member[]): Promise<BatchResult> {
      // A key the column cannot hold would fail the whole statement; reject just that record.
      const rejected: Rejection[] = [];
      const rows: { member_key: string; attributes: string }[] = [];
      for (const member of members) {
        const problem = keyProblem(member.key);
        if (problem) rejected.push({ key: member.key, reason: problem });
        else rows.push({ member_key: member.key, attributes: JSON.stringify(member.attributes) });
      }
      if (rows.length > 0) {
        await statement(SQL_TABLE_ENDPOINTS.add, (conn) =>
          conn(table).insert(rows).onConflict('member_key').merge(),
        );
      }
      return { rejected };
    },

    async remove(keys: string[]): Promise<BatchResult> {
      if (keys.length > 0) {
        await statement(SQL_TABLE_ENDPOINTS.remove, (conn) =>
          conn(table).whereIn('member_key', keys).delete(),
        );
      }
      return { rejected: [] };
    },

    async truncate(): Promise<void> {
      // DELETE rather than TRUNCATE: no DROP privilege needed, and it stays transactional.
      await statement(SQL_TABLE_ENDPOINTS.truncate, (conn) => conn(table).delete());
    },

    async listMembers(cursor: string | null, limit: number): Promise<MemberPage> {
      // One row more than asked tells whether another page exists without a second query.
      const rows: { member_key: string }[] = await statement(SQL_TABLE_ENDPOINTS.list, (conn) => {
        const query = conn(table)
          .select('member_key')
          .orderBy('member_key')
          .limit(limit + 1);
        return cursor === null ? query : query.where('member_key', '>', cursor);
      });
      const keys = rows.slice(0, limit).map((row) => row.member_key);
      return { keys, next: rows.length > limit ? keys[keys.length - 1]! : null };
    },

    /**
     * Connects (the credentials, the database) and reads the table's layout and first row; a
     * table not there yet is fine: the first write creates it. Creates nothing itself.
     */
    async check(): Promise<string> {
      const where = describeUrl(resolveUrl(config, context.secrets));
      statementsByTable.set(table, statementsSent(table) + 1);
      return meteredCall(SQL_TABLE_ENDPOINTS.check, async () => {
        try {
          const conn = connection();
          if (!(await conn.schema.hasTable(table))) {
            return `${SQL_TABLE_TYPE}: ${where} reachable; table '${table}' does not exist yet and is created on the first write`;
          }
          await requireColumns(conn, table);
          const first = await conn(table).select('member_key').limit(1);
          return `${SQL_TABLE_TYPE}: table '${table}' in ${where} reachable (${first.length === 0 ? 'empty' : 'has members'})`;
        } catch (err) {
          if (err instanceof DestinationError) throw err;
          throw toDestinationError(err, 'check', table);
        }
      });
    },

    async close() {
      await db?.destroy();
      db = undefined;
      tableReady = undefined;
    },
  };
}

/** All members of a sql-table list, for tests and the demo. */
export async function readSqlTableMembers(url: string, table: string): Promise<Map<string, Attributes>> {
  const db = knex(knexConfig(url));
  try {
    const rows: { member_key: string; attributes: string | null }[] = await db(table)
      .select('member_key', 'attributes')
      .orderBy('member_key');
    return new Map(rows.map((row) => [row.member_key, JSON.parse(row.attributes ?? '{}') as Attributes]));
  } finally {
    await db.destroy();
  }
}

// --- Connection and table -----------------------------------------------------------------------

export function resolveUrl(config: SqlTableConfig, secrets: SecretResolver): string {
  const url = config.url ?? resolveSecret(secrets, config.urlSecret!, SQL_TABLE_TYPE);
  // databaseConfig would fall back to deltasync's own database for an empty URL: never do that.
  if (!urlPrefixes.test(url)) {
    throw new DestinationError(
      `${SQL_TABLE_TYPE}: the URL in secret '${config.urlSecret}' must start with mysql://, mariadb:// or sqlite:`,
      'fatal',
    );
  }
  return url;
}

/** Where a URL points, without its credentials: `mysql://host:port/database` or the SQLite file. */
function describeUrl(url: string): string {
  if (url.startsWith('sqlite:')) return url.replace(/^sqlite:(\/\/)?/, 'sqlite:');
  try {
    const u = new URL(url.replace(/^mariadb:/, 'mysql:'));
    return `mysql://${u.host}${u.pathname}`;
  } catch {
    return 'the database';
  }
}

function knexConfig(url: string): Knex.Config {
  return {
    ...databaseConfig(url),
    // Without this, knex inlines the bound values (member keys, attributes) into error messages.
    compileSqlOnError: false,
    // A failed connection comes back to us as an error, which becomes the run's DestinationError;
    // knex's own copy of it (with a stack, on stderr, outside the worker's logs) is noise.
    log: {
      warn: (message: string) =>
        void (message.startsWith('Acquire connection error') || console.warn(message)),
    },
  };
}

async function ensureTable(db: Knex, table: string): Promise<void> {
  const mysql = String(db.client.config.client).startsWith('mysql');
  try {
    if (!(await db.schema.hasTable(table))) {
      await db.schema.createTable(table, (t) => {
        const key = t.string('member_key', maxKeyLength).primary();
        if (mysql) {
          t.charset('utf8mb4');
          key.collate('utf8mb4_bin');
        }
        t.text('attributes').notNullable();
      });
    }
  } catch (err) {
    // Another worker may have created it between our check and our CREATE: that is fine.
    if (!isTableExists(err)) throw toDestinationError(err, 'prepare', table);
  }
  await requireColumns(db, table);
}

async function requireColumns(db: Knex, table: string): Promise<void> {
  const columns = await db(table)
    .columnInfo()
    .catch((err: unknown) => {
      throw toDestinationError(err, 'inspect table', table);
    });
  for (const column of ['member_key', 'attributes']) {
    if (!(column in columns)) {
      throw new DestinationError(
        `${SQL_TABLE_TYPE}: table '${table}' exists but has no '${column}' column; it needs member_key VARCHAR(255) PRIMARY KEY and attributes TEXT`,
        'fatal',
      );
    }
  }
}

function keyProblem(key: string): string | null {
  if (key === '') return 'empty key';
  // VARCHAR(255) counts characters (code points), not UTF-16 units.
  const length = [...key].length;
  return length > maxKeyLength ? `key longer than ${maxKeyLength} characters (${length})` : null;
}

// --- Error classification -----------------------------------------------------------------------

/** Errors an operator must fix (credentials, grants, names, layout): retrying won't help. */
const fatalCodes = new Set([
  'ER_ACCESS_DENIED_ERROR',
  'ER_ACCESS_DENIED_NO_PASSWORD_ERROR',
  'ER_DBACCESS_DENIED_ERROR',
  'ER_TABLEACCESS_DENIED_ERROR',
  'ER_COLUMNACCESS_DENIED_ERROR',
  'ER_SPECIFIC_ACCESS_DENIED_ERROR',
  'ER_BAD_DB_ERROR',
  'ER_WRONG_TABLE_NAME',
  'ER_TOO_LONG_IDENT',
  'ER_BAD_FIELD_ERROR',
  'ER_NOT_SUPPORTED_AUTH_MODE',
  'ER_OPTION_PREVENTS_STATEMENT',
  'SQLITE_READONLY',
  'SQLITE_CANTOPEN',
  'SQLITE_NOTADB',
  'SQLITE_CORRUPT',
  'SQLITE_AUTH',
  'SQLITE_PERM',
]);

/** Errors caused by the batch's own data: another batch may well go through. */
const batchCodes = new Set([
  'ER_DATA_TOO_LONG',
  'ER_TRUNCATED_WRONG_VALUE',
  'ER_TRUNCATED_WRONG_VALUE_FOR_FIELD',
  'ER_NET_PACKET_TOO_LARGE',
  'SQLITE_TOOBIG',
]);

interface DriverError {
  code?: string;
  errno?: number;
  sqlMessage?: string;
  message?: string;
}

function toDestinationError(err: unknown, operation: string, table: string): DestinationError {
  const driver: DriverError = err && typeof err === 'object' ? (err as DriverError) : {};
  const code = driver.code ?? '';
  const message = `${SQL_TABLE_TYPE}: ${operation} on table '${table}' failed: ${driverMessage(driver, err)}`;
  return new DestinationError(message, classify(code, driverMessage(driver, err)));
}

function classify(code: string, message: string): DestinationError['kind'] {
  if (fatalCodes.has(code)) return 'fatal';
  if (batchCodes.has(code) || /too many SQL variables/i.test(message)) return 'batch';
  // SQLITE_ERROR is SQLite's catch-all for bad statements (no such column, syntax): the table is
  // not what we expect. A missing table is the exception: it is recreated on the retry.
  if (code === 'SQLITE_ERROR' && !/no such table/i.test(message)) return 'fatal';
  // Lost connections, deadlocks, lock timeouts, busy databases, pool timeouts: try again.
  return 'retryable';
}

function isTableExists(err: unknown): boolean {
  const driver: DriverError = err && typeof err === 'object' ? (err as DriverError) : {};
  return driver.code === 'ER_TABLE_EXISTS_ERROR' || /table .* already exists/i.test(driver.message ?? '');
}

function isMissingTable(err: unknown): boolean {
  const driver: DriverError = err && typeof err === 'object' ? (err as DriverError) : {};
  return driver.code === 'ER_NO_SUCH_TABLE' || /no such table/i.test(driver.message ?? '');
}

/** The driver's own words, without the SQL text knex prefixes to them. */
function driverMessage(driver: DriverError, err: unknown): string {
  if (driver.sqlMessage) return `${driver.sqlMessage} (${driver.code})`;
  const message = driver.message ?? String(err);
  const withoutSql = /^\s*(insert|delete|select|create|alter|pragma|show)\b[\s\S]* - /i.test(message)
    ? message.slice(message.indexOf(' - ') + 3)
    : message;
  return driver.code ? `${withoutSql} (${driver.code})` : withoutSql;
}
