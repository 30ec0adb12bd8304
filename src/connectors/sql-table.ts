import path from 'node:path';
import knex, { type Knex } from 'knex';
import { z } from 'zod';
import { databaseConfig } from '../db';
import { resolveSecret, secretName } from './kit';
import { defineDestination } from './module';
import {
  DestinationError,
  type Attributes,
  type BatchOutcome,
  type Destination,
  type Member,
  type MemberPage,
  type Rejection,
  type SecretResolver,
  type Target,
} from './types';

/**
 * `sql-table`: the list is a table in another database (MySQL/MariaDB or SQLite), one row per
 * member: `member_key VARCHAR(255) PRIMARY KEY, attributes TEXT` (JSON). Keys compare byte for
 * byte (utf8mb4_bin on MySQL, SQLite's default BINARY), as the deltalog does.
 *
 * Acknowledgement: the statement's success. Each call is one auto-committed upsert (or DELETE),
 * atomic on the InnoDB or SQLite table made here: it writes every row or throws, and a failed one
 * counts nothing. Affected-row counts are not read: they count changes, not receipt (MySQL counts
 * an unchanged upsert 0, and deleting an absent key is 0, as it should be).
 */

const maxKeyLength = 255;
/** Two bound parameters per row must stay under SQLite's 32766 and MySQL's 65535 placeholders. */
const maxRecordsPerStatement = 10_000;
const urlPrefixes = /^(mysql:\/\/|mariadb:\/\/|sqlite:)/;

export const sqlTableConfigSchema = z
  .object({
    type: z.literal('sql-table'),
    /** Name of a secret holding the database URL (use this whenever the URL has a password). */
    urlSecret: secretName.optional(),
    url: z
      .string()
      .regex(urlPrefixes, 'url must start with mysql://, mariadb:// or sqlite:')
      .refine((url) => !hasPassword(url), {
        message: 'url must not contain a password: store the URL in a secret and name it in urlSecret',
      })
      .optional(),
    table: z
      .string()
      .regex(
        /^[A-Za-z_][A-Za-z0-9_]{0,63}$/,
        'table must be a plain name: letters, digits and _, at most 64',
      ),
    recordsPerCall: z.number().int().min(1).max(maxRecordsPerStatement).default(1000),
  })
  .refine((config) => (config.url === undefined) !== (config.urlSecret === undefined), {
    message: 'give exactly one of url (no password) or urlSecret (name of a secret holding the URL)',
    path: ['url'],
  });

export type SqlTableConfig = z.output<typeof sqlTableConfigSchema>;
export type SqlTableConfigInput = z.input<typeof sqlTableConfigSchema>;

function hasPassword(url: string): boolean {
  if (!/^(mysql|mariadb):\/\//.test(url)) return false;
  try {
    return new URL(url.replace(/^mariadb:/, 'mysql:')).password !== '';
  } catch {
    return false;
  }
}

export function createSqlTableDestination(input: SqlTableConfigInput, secrets: SecretResolver): Destination {
  const config = sqlTableConfigSchema.parse(input);
  const { table } = config;
  let db: Knex | undefined;
  let tableReady: Promise<void> | undefined;

  // Opened on first use, inside the activity, where the secret may be resolved.
  function connection(): Knex {
    db ??= knex(knexConfig(resolveUrl(config, secrets)));
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

  /** Runs one statement, turning driver errors into DestinationErrors. */
  async function statement<T>(operation: string, run: (conn: Knex) => Promise<T>): Promise<T> {
    try {
      return await run(await ready());
    } catch (err) {
      if (err instanceof DestinationError) throw err;
      // Someone dropped the table under us: create it again on the retry.
      if (isMissingTable(err)) tableReady = undefined;
      throw toDestinationError(err, operation, table);
    }
  }

  return {
    type: 'sql-table',
    capabilities: {
      add: true,
      remove: true,
      truncate: true,
      listMembers: true,
      updateAttributes: true,
      createList: false,
    },
    limits: { recordsPerCall: config.recordsPerCall },

    async add(members: Member[]): Promise<BatchOutcome> {
      // A key the column cannot hold would fail the whole statement; reject just that record.
      const rejected: Rejection[] = [];
      const rows: { member_key: string; attributes: string }[] = [];
      for (const member of members) {
        const problem = keyProblem(member.key);
        if (problem) rejected.push({ key: member.key, reason: problem });
        else rows.push({ member_key: member.key, attributes: JSON.stringify(member.attributes) });
      }
      const apiCalls = await inStatements(rows, config.recordsPerCall, (chunk) =>
        statement('add', (conn) => conn(table).insert(chunk).onConflict('member_key').merge()),
      );
      return { rejected, apiCalls, rateLimitWaits: 0 };
    },

    async remove(keys: string[]): Promise<BatchOutcome> {
      const apiCalls = await inStatements(keys, config.recordsPerCall, (chunk) =>
        statement('remove', (conn) => conn(table).whereIn('member_key', chunk).delete()),
      );
      return { rejected: [], apiCalls, rateLimitWaits: 0 };
    },

    async truncate(): Promise<BatchOutcome> {
      // DELETE rather than TRUNCATE: no DROP privilege needed, and it stays transactional.
      await statement('truncate', (conn) => conn(table).delete());
      return { rejected: [], apiCalls: 1, rateLimitWaits: 0 };
    },

    async listMembers(cursor: string | null, limit: number): Promise<MemberPage> {
      // One row more than asked tells whether another page exists without a second query.
      const rows: { member_key: string }[] = await statement('listMembers', (conn) => {
        const query = conn(table)
          .select('member_key')
          .orderBy('member_key')
          .limit(limit + 1);
        return cursor === null ? query : query.where('member_key', '>', cursor);
      });
      const keys = rows.slice(0, limit).map((row) => row.member_key);
      return { keys, next: rows.length > limit ? keys[keys.length - 1]! : null };
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

function resolveUrl(config: SqlTableConfig, secrets: SecretResolver): string {
  const url = config.url ?? resolveSecret(secrets, config.urlSecret!, 'sql-table');
  // databaseConfig would fall back to deltasync's own database for an empty URL: never do that.
  if (!urlPrefixes.test(url)) {
    throw new DestinationError(
      `sql-table: the URL in secret '${config.urlSecret}' must start with mysql://, mariadb:// or sqlite:`,
      'fatal',
    );
  }
  return url;
}

function knexConfig(url: string): Knex.Config {
  // Without this, knex inlines the bound values (member keys, attributes) into error messages.
  return { ...databaseConfig(url), compileSqlOnError: false };
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
  const columns = await db(table)
    .columnInfo()
    .catch((err: unknown) => {
      throw toDestinationError(err, 'inspect table', table);
    });
  for (const column of ['member_key', 'attributes']) {
    if (!(column in columns)) {
      throw new DestinationError(
        `sql-table: table '${table}' exists but has no '${column}' column; it needs member_key VARCHAR(255) PRIMARY KEY and attributes TEXT`,
        'fatal',
      );
    }
  }
}

/** Runs `send` over slices of at most `size` items; returns the number of statements. */
async function inStatements<T>(
  items: T[],
  size: number,
  send: (chunk: T[]) => Promise<unknown>,
): Promise<number> {
  let statements = 0;
  for (let start = 0; start < items.length; start += size) {
    await send(items.slice(start, start + size));
    statements++;
  }
  return statements;
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
  const message = `sql-table: ${operation} on table '${table}' failed: ${driverMessage(driver, err)}`;
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

export const sqlTableDestination = defineDestination({
  type: 'sql-table',
  description: 'a table in another database (knex): upsert, delete, truncate and list members',
  configSchema: sqlTableConfigSchema,
  create: (config, context) => createSqlTableDestination(config, context.secrets),
  targets: (config, secrets) => [sqlTableTarget(config, secrets)],
});

/** The table written, for the tenants policy: on a MySQL server, or in an SQLite file's folder. */
function sqlTableTarget(config: SqlTableConfig, secrets: SecretResolver): Target {
  const field = config.urlSecret ? 'destination.urlSecret' : 'destination.url';
  const url = resolveUrl(config, secrets);
  if (url.startsWith('sqlite:')) {
    const file = url.replace(/^sqlite:(\/\/)?/, '');
    return { kind: 'file', field, path: file === ':memory:' ? file : path.dirname(path.resolve(file)) };
  }
  const u = new URL(url.replace(/^mariadb:/, 'mysql:'));
  return {
    kind: 'mysql',
    field,
    host: u.hostname,
    port: Number(u.port || 3306),
    database: decodeURIComponent(u.pathname.replace(/^\//, '')),
    table: config.table,
  };
}
