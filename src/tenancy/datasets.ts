import { createHash } from 'node:crypto';
import knex, { type Knex } from 'knex';
import type { ConnectorDefinition } from '../core/connector';
import { connectorKey } from '../core/connector';
import type { SecretResolver } from '../core/destination';
import { keyTraits } from '../core/deltalog';
import {
  keyColumn,
  sourceFrom,
  type DatasetDefinition,
  type DatasetReader,
  type KeyTraits,
} from '../core/dataset';
import { databaseConfig, dialectOf, type Db } from '../db';
import type { TenantPolicy } from './policy';

/**
 * How a connector's dataset is read, per tenant.
 *
 * A tenant with its own database access (`database.urlSecret` in the tenants policy) has each
 * dataset defined as a view that deltasync creates *through that tenant's own database user*,
 * `SQL SECURITY DEFINER`: whenever deltasync's statements read the view, the database checks the
 * tenant user's grants, not deltasync's. A dataset can therefore see exactly what the tenant's
 * user may see, while the set-based compare still joins it with the deltalog in one statement.
 * Before every read, inside the same transaction (which holds the view's metadata lock, so it
 * cannot be replaced meanwhile), deltasync checks the view is still DEFINER-secured with that
 * user as its definer: a view the tenant re-created as `SQL SECURITY INVOKER` would run with
 * deltasync's rights, and is refused. Every such read has the tenant's statement time limit.
 *
 * Without database access of its own (single-tenant workers), a dataset is read directly with the
 * worker's connection, whose statements have the worker's time limit (src/db).
 *
 * docs/security.md explains the choice and the grants a deployment needs.
 */

export interface DatasetAccess {
  /**
   * Everything that stops the connector's dataset from being read (one line each, `dataset: …`);
   * for a tenant with its own database access this (re)creates the connector's view.
   */
  prepare(tenant: TenantPolicy, connector: ConnectorDefinition): Promise<string[]>;
  /** What the engine reads the dataset through. */
  reader(tenant: TenantPolicy, connector: ConnectorDefinition): Promise<DatasetReader>;
  /** Drop the connector's view, if it has one (when the connector is deleted). */
  forget(tenant: TenantPolicy, connector: ConnectorDefinition): Promise<void>;
  close(): Promise<void>;
}

/** A statement on a dataset ran longer than its time limit and was stopped. */
export class StatementTimeoutError extends Error {
  override name = 'StatementTimeoutError';
  constructor(seconds: number, tenant: string) {
    super(
      `reading the dataset took longer than the statement time limit (${seconds} s) and was stopped: ` +
        `make the dataset cheaper to read (an index, a simpler SELECT) or raise statementTimeoutSeconds ` +
        `for tenant '${tenant}' in the tenants policy`,
    );
  }
}

/** The dataset cannot be read safely (its view changed, a grant is missing): nothing is read. */
export class DatasetAccessError extends Error {
  override name = 'DatasetAccessError';
}

export interface DatasetAccessOptions {
  /** deltasync's own database. */
  db: Db;
  /** A tenant's secrets (its database URL is one). */
  secretsOf: (tenant: string) => SecretResolver;
}

export function createDatasetAccess(options: DatasetAccessOptions): DatasetAccess {
  const views = new TenantViews(options);
  return {
    prepare: async (tenant, connector) => {
      if (!tenant.database) return checkDirectRead(options.db, tenant, connector);
      // Triggers would be created with the worker's rights on tables the tenant's user names.
      if (connector.dataset.changes)
        return [
          'dataset.changes: change sources are not available to a tenant that reads through its own database user; remove `changes` (every refresh then compares the whole dataset)',
        ];
      return views.prepare(tenant, connector);
    },
    reader: async (tenant, connector) =>
      tenant.database ? views.reader(tenant, connector) : directRead(options.db, tenant, connector),
    forget: (tenant, connector) => (tenant.database ? views.forget(tenant, connector) : Promise.resolve()),
    close: () => views.close(),
  };
}

// ---------------------------------------------------------------------------------------------
// Read directly with the worker's connection (single tenant)
// ---------------------------------------------------------------------------------------------

/** The declared key and attribute columns can be read (no row is read). */
async function checkDirectRead(db: Db, tenant: TenantPolicy, connector: ConnectorDefinition) {
  try {
    await directRead(db, tenant, connector).read((executor) => probe(executor, connector.dataset));
    return [];
  } catch (error) {
    return [`dataset: cannot read it in the database: ${firstLine(error)}`];
  }
}

function directRead(db: Db, tenant: TenantPolicy, connector: ConnectorDefinition): DatasetReader {
  return {
    dataset: connector.dataset,
    read: (work) => translateTimeout(tenant, () => work(db)),
  };
}

/** SELECT the dataset's columns, no rows: fails when a column or the source cannot be read. */
async function probe(executor: Db | Knex.Transaction, dataset: DatasetDefinition): Promise<void> {
  const columns = columnsOf(dataset);
  const source = sourceFrom(dataset);
  const key = keyColumn(dataset);
  await executor.raw(
    `SELECT ${columns.map(() => '??').join(', ')} FROM ${source.sql} WHERE ${key.sql} IS NULL AND 1 = 0`,
    [...columns.map((c) => `src.${c}`), ...source.bindings, ...key.bindings],
  );
}

/** Key, attributes and the change-trigger marker column: what the engine reads of a dataset. */
function columnsOf(dataset: DatasetDefinition, marker?: string): string[] {
  return [...new Set([dataset.key, ...dataset.attributes, ...(marker ? [marker] : [])])];
}

// ---------------------------------------------------------------------------------------------
// Read through views of the tenant's own database user
// ---------------------------------------------------------------------------------------------

interface TenantConnection {
  db: Db;
  /** The account as the server knows it (`user@host`): every view's definer must be this. */
  user: string;
  /** Where the tenant's views are created: the database its URL names. */
  schema: string;
}

class TenantViews {
  private readonly connections = new Map<string, Promise<TenantConnection>>();
  private workerIdentity: Promise<{ user: string; schema: string; mariaDb: boolean }> | undefined;
  private readonly traits = new Map<string, KeyTraits>();

  constructor(private readonly options: DatasetAccessOptions) {}

  async prepare(tenant: TenantPolicy, connector: ConnectorDefinition): Promise<string[]> {
    if (dialectOf(this.options.db) !== 'mysql') {
      return ['dataset: tenants with their own database access need deltasync on MySQL/MariaDB'];
    }
    let conn: TenantConnection;
    try {
      conn = await this.connection(tenant);
    } catch (error) {
      return [`dataset: cannot connect with tenant '${tenant.id}''s database access: ${firstLine(error)}`];
    }
    const isolation = await this.isolationProblem(tenant, conn);
    if (isolation) return [`dataset: ${isolation}`];

    const view = viewName(connector);
    const columns = columnsOf(connector.dataset, connector.policy.changeTrigger?.markerColumn);
    const source = sourceFrom(connector.dataset);
    try {
      // No DEFINER clause: the view's definer is the tenant's user, the only one it can be.
      await conn.db.raw(
        `CREATE OR REPLACE SQL SECURITY DEFINER VIEW ??.?? AS SELECT ${columns.map(() => '??').join(', ')} FROM ${source.sql}`,
        [conn.schema, view, ...columns.map((c) => `src.${c}`), ...source.bindings],
      );
    } catch (error) {
      return [
        `dataset: cannot read it with tenant '${tenant.id}''s database access: ${databaseMessage(error)}`,
      ];
    }
    this.traits.delete(connectorKey(tenant.id, connector.id)); // the table may have changed
    try {
      await (await this.reader(tenant, connector)).read(async () => undefined);
    } catch (error) {
      return [`dataset: ${firstLine(error)}`];
    }
    return [];
  }

  async reader(tenant: TenantPolicy, connector: ConnectorDefinition): Promise<DatasetReader> {
    const conn = await this.connection(tenant);
    const view = viewName(connector);
    const { key, attributes } = connector.dataset;
    const traits = await this.traitsOf(tenant, conn, connector);
    return {
      dataset: { table: `${conn.schema}.${view}`, key, attributes },
      ...(traits ? { traits } : {}),
      read: (work) => translateTimeout(tenant, () => this.guarded(tenant, conn, view, work)),
    };
  }

  /**
   * How the base table's key compares, read from its catalog with the tenant's own connection
   * (a view has no indexes of its own to tell). A SELECT dataset promises nothing.
   */
  private async traitsOf(tenant: TenantPolicy, conn: TenantConnection, connector: ConnectorDefinition) {
    if (connector.dataset.table === undefined) return undefined;
    const key = connectorKey(tenant.id, connector.id);
    let traits = this.traits.get(key);
    if (!traits) {
      traits = await keyTraits(conn.db, connector.dataset);
      this.traits.set(key, traits);
    }
    return traits;
  }

  /**
   * `work` inside a READ COMMITTED transaction that first takes the view's metadata lock (held
   * until the transaction ends, so the view cannot be swapped meanwhile), then checks the view
   * runs with the tenant's rights, and bounds every statement by the tenant's time limit.
   */
  private async guarded<T>(
    tenant: TenantPolicy,
    conn: TenantConnection,
    view: string,
    work: (executor: Knex.Transaction) => Promise<T>,
  ): Promise<T> {
    const worker = await this.worker();
    const variable = worker.mariaDb ? 'max_statement_time' : 'max_execution_time';
    const limit = worker.mariaDb
      ? tenant.statementTimeoutSeconds.toFixed(3)
      : String(Math.round(tenant.statementTimeoutSeconds * 1000));
    return this.options.db.transaction(
      async (trx) => {
        // One statement keeps the session's limit and sets the tenant's (assignments run in order).
        await trx.raw(`SET @deltasync_limit = @@SESSION.${variable}, SESSION ${variable} = ${limit}`);
        try {
          // One statement opens the view, taking its metadata lock until the transaction ends
          // (so it cannot be replaced meanwhile), and reads the view's definition under that lock.
          let row: { security: string | null; definer: string | null } | undefined;
          try {
            [row] = rowsOf(
              await trx.raw(
                `SELECT (SELECT COUNT(*) FROM ??.?? WHERE 1 = 0) AS probe,
                        (SELECT SECURITY_TYPE FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?) AS security,
                        (SELECT DEFINER FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?) AS definer`,
                [conn.schema, view, conn.schema, view, conn.schema, view],
              ),
            );
          } catch (error) {
            throw new DatasetAccessError(
              `deltasync's database user cannot read ${conn.schema}.${view} (${firstLine(error)}): ` +
                `create the connector again, or GRANT SELECT ON \`${conn.schema}\`.* to deltasync's user`,
            );
          }
          if (row?.security !== 'DEFINER' || row.definer !== conn.user) {
            throw new DatasetAccessError(
              `the view ${conn.schema}.${view} no longer runs with tenant '${tenant.id}''s own rights ` +
                `(${row?.security ? `SQL SECURITY ${row.security}, definer ${row.definer}` : 'not found'}): nothing was read; ` +
                `save the connector again to re-create it`,
            );
          }
          return await work(trx);
        } finally {
          await trx.raw(`SET SESSION ${variable} = @deltasync_limit`);
        }
      },
      { isolationLevel: 'read committed' },
    );
  }

  /**
   * Reasons the tenant's database access would not be a boundary: it is deltasync's own user, it
   * can read deltasync's tables, or its views would sit among them.
   */
  private async isolationProblem(tenant: TenantPolicy, conn: TenantConnection): Promise<string | undefined> {
    const worker = await this.worker();
    if (conn.user === worker.user) {
      return `tenant '${tenant.id}''s database user is deltasync's own (${conn.user}): give the tenant a user of its own`;
    }
    if (conn.schema === worker.schema) {
      return `tenant '${tenant.id}''s views would be created in deltasync's own database '${conn.schema}': name another database in its URL`;
    }
    try {
      await conn.db.raw('SELECT 1 FROM ??.?? WHERE 1 = 0', [worker.schema, 'deltalog']);
    } catch {
      return undefined; // denied, as it must be
    }
    return (
      `tenant '${tenant.id}''s database user can read deltasync's own tables in '${worker.schema}': ` +
      `revoke its grants there (it could read every tenant's keys)`
    );
  }

  async forget(tenant: TenantPolicy, connector: ConnectorDefinition): Promise<void> {
    const conn = await this.connection(tenant).catch(() => undefined);
    await conn?.db
      .raw('DROP VIEW IF EXISTS ??.??', [conn.schema, viewName(connector)])
      .catch(() => undefined);
  }

  async close(): Promise<void> {
    const open = [...this.connections.values()];
    this.connections.clear();
    for (const conn of open) await conn.then((c) => c.db.destroy()).catch(() => undefined);
  }

  private connection(tenant: TenantPolicy): Promise<TenantConnection> {
    const url = this.options.secretsOf(tenant.id)(tenant.database!.urlSecret);
    const cacheKey = `${tenant.id}\n${url}`;
    let conn = this.connections.get(cacheKey);
    if (!conn) {
      conn = openTenantConnection(url, tenant);
      conn.catch(() => this.connections.delete(cacheKey));
      this.connections.set(cacheKey, conn);
    }
    return conn;
  }

  private worker() {
    this.workerIdentity ??= (async () => {
      const [row] = rowsOf<{ user: string; schema: string; version: string }>(
        await this.options.db.raw(
          'SELECT CURRENT_USER() AS user, DATABASE() AS `schema`, VERSION() AS version',
        ),
      );
      return { user: row!.user, schema: row!.schema, mariaDb: /mariadb/i.test(row!.version) };
    })();
    return this.workerIdentity;
  }
}

async function openTenantConnection(url: string, tenant: TenantPolicy): Promise<TenantConnection> {
  if (!/^(mysql|mariadb):\/\//.test(url)) {
    throw new DatasetAccessError(
      `the URL in secret '${tenant.database!.urlSecret}' must be a mysql:// or mariadb:// URL`,
    );
  }
  const config = databaseConfig(url, { statementTimeoutMs: tenant.statementTimeoutSeconds * 1000 });
  const db = knex({ ...config, pool: { ...(config.pool ?? {}), min: 0, max: 2 } });
  try {
    const [row] = rowsOf<{ user: string; schema: string | null }>(
      await db.raw('SELECT CURRENT_USER() AS user, DATABASE() AS `schema`'),
    );
    if (!row?.schema) {
      throw new DatasetAccessError(
        `the URL in secret '${tenant.database!.urlSecret}' names no database: name the one where the tenant's dataset views go`,
      );
    }
    return { db, user: row.user, schema: row.schema };
  } catch (error) {
    await db.destroy();
    throw error;
  }
}

/** One view per connector, in the tenant's schema: `ds_<id>_<hash>` (64 characters at most). */
export function viewName(connector: ConnectorDefinition): string {
  const hash = createHash('sha256')
    .update(connectorKey(connector.tenant, connector.id))
    .digest('hex')
    .slice(0, 10);
  return `ds_${connector.id.replace(/[^a-z0-9_]/g, '_').slice(0, 48)}_${hash}`;
}

// ---------------------------------------------------------------------------------------------

const TIMEOUT_ERRNOS = new Set([1969 /* MariaDB max_statement_time */, 3024 /* MySQL max_execution_time */]);

/** A statement stopped by a time limit becomes a StatementTimeoutError that says what to do. */
async function translateTimeout<T>(tenant: TenantPolicy, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    const { errno, code } = (error ?? {}) as { errno?: number; code?: string };
    if ((errno !== undefined && TIMEOUT_ERRNOS.has(errno)) || code === 'SQLITE_INTERRUPT') {
      throw new StatementTimeoutError(tenant.statementTimeoutSeconds, tenant.id);
    }
    throw error;
  }
}

function rowsOf<T>(result: unknown): T[] {
  return Array.isArray(result) && Array.isArray(result[0]) ? (result[0] as T[]) : (result as T[]);
}

/**
 * What the database said, without the statement (knex puts it first). A view over something the
 * user may not read fails with 1356, which says "invalid … or lack rights": it never tells a table
 * that does not exist from one the user may not see, so neither does this.
 */
function databaseMessage(error: unknown): string {
  const { sqlMessage, errno } = (error ?? {}) as { sqlMessage?: string; errno?: number };
  if (errno === 1356)
    return 'it selects a table, column or function this user has no rights to (or that does not exist)';
  return sqlMessage ?? firstLine(error);
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0]!;
}
