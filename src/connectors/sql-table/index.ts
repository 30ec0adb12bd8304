import path from 'node:path';
import type { SecretResolver, Target } from '../../core/destination';
import { defineDestination } from '../kit/module';
import { createSqlTableDestination, resolveUrl } from './destination';
import { SQL_TABLE_TYPE, sqlTableConfigSchema, type SqlTableConfig } from './settings';

/**
 * The `sql-table` destination module: a table in another database (destination.ts), its settings
 * (settings.ts) and its contract harness (emulator.ts: the local MariaDB, there being no emulator).
 */

export {
  createSqlTableDestination,
  readSqlTableMembers,
  SQL_TABLE_ENDPOINTS,
  statementsSent,
} from './destination';
export {
  SQL_TABLE_TYPE,
  sqlTableConfigSchema,
  type SqlTableConfig,
  type SqlTableConfigInput,
} from './settings';

export const sqlTableDestination = defineDestination({
  type: SQL_TABLE_TYPE,
  configSchema: sqlTableConfigSchema,
  create: (config, context) => createSqlTableDestination(config, context),
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
