import { createHash } from 'node:crypto';
import type { Knex } from 'knex';
import type { Db, Dialect } from '../db';

/**
 * Where a connector's records come from: a table or view, or any SELECT, in our database. The key
 * column identifies a record; the attribute columns are what the destination receives (and what
 * the attribute hash fingerprints).
 */
export interface DatasetDefinition {
  /** A table or view name (optionally `schema.table`). Exactly one of `table` and `sql`. */
  table?: string;
  /** A SELECT statement; its result columns are referred to by name. */
  sql?: string;
  /** Column holding the record key (a string column; unique per record). */
  key: string;
  /** Columns sent to the destination as the record's attributes. */
  attributes: string[];
  /** Where its changes can be read from (absent: every refresh compares the whole dataset). */
  changes?: ChangeSourceSettings;
}

/** A dataset's change source, as declared (see changeSourceSchema in core/connector.ts). */
export type ChangeSourceSettings =
  | {
      source: 'triggers';
      /** Base tables and the column of each holding the dataset's key (default: the dataset's table). */
      tables?: { table: string; key: string }[];
      /** The safety net: a full compare at least this often. */
      fullCompareHours: number;
    }
  | {
      /** The server's row-format binary log, read at each refresh (core/change-binlog.ts). */
      source: 'binlog';
      tables?: { table: string; key: string }[];
      fullCompareHours: number;
    }
  | {
      source: 'watermark';
      /** The dataset table's watermark column. */
      column?: string;
      /** Tables (tombstone tables too), the key column and the watermark column of each. */
      tables?: { table: string; key: string; column: string }[];
      fullCompareHours: number;
    };

/**
 * The dataset as its rows are read and compared: connectors of a tenant with the same signature
 * share one compare (src/core/shared-compare.ts).
 */
export function datasetSignature(dataset: DatasetDefinition): string {
  const shape = {
    table: dataset.table ?? null,
    sql: dataset.sql ?? null,
    key: dataset.key,
    attributes: dataset.attributes,
    changes: dataset.changes ?? null,
  };
  return createHash('sha256').update(JSON.stringify(shape)).digest('hex').slice(0, 40);
}

/** How a column of the dataset's key compares, which decides how cheaply duplicates are ruled out. */
export interface KeyTraits {
  /** A single-column primary or unique key: no key can repeat. */
  unique: boolean;
  /** Compared byte for byte already (a _bin collation, or SQLite's default). */
  binary: boolean;
}

/**
 * How the engine reads a connector's dataset. Every statement that touches the dataset runs
 * inside `read`: where a tenant's data is read through a view of its own database user, `read`
 * first checks the view still runs with that user's rights and bounds the statements' time
 * (src/tenancy/datasets.ts); for a dataset read directly, it just runs them.
 */
export interface DatasetReader {
  /** The dataset as the engine's statements name it (a tenant's view, or the dataset itself). */
  dataset: DatasetDefinition;
  /** Known in advance (from the base table's catalog); otherwise read from `dataset`'s. */
  traits?: KeyTraits;
  /** Run statements that read the dataset. `executor` may be a transaction; use only it. */
  read<T>(work: (executor: Db | Knex.Transaction) => Promise<T>): Promise<T>;
}

/** A reader that runs the engine's statements on `db` as they are. */
export function directReader(db: Db, dataset: DatasetDefinition): DatasetReader {
  return { dataset, read: (work) => work(db) };
}

/** Longest key the deltalog stores; longer keys are reported as bad rows, never truncated. */
export const MAX_KEY_LENGTH = 255;

/** A SQL fragment with its bindings, ready for `db.raw(sql, bindings)`. */
export interface Fragment {
  sql: string;
  bindings: Knex.RawBinding[];
}

/**
 * The keys a change source reports touched: a subquery naming them (`record_key`), with what must
 * run in the transaction that applies them, first (`prepare`) and last before it commits
 * (`settle`): a journal read by a single follower is consumed that way (core/change-source.ts).
 */
export interface TouchedKeys extends Fragment {
  prepare?(trx: Knex.Transaction): Promise<void>;
  settle?(trx: Knex.Transaction): Promise<void>;
}

/** The dataset as a FROM-clause item aliased `src`. */
export function sourceFrom(dataset: DatasetDefinition): Fragment {
  if (dataset.sql !== undefined) return { sql: `(${dataset.sql}) src`, bindings: [] };
  if (dataset.table !== undefined) return { sql: '?? src', bindings: [dataset.table] };
  throw new Error('a dataset needs either `table` or `sql`');
}

export function keyColumn(dataset: DatasetDefinition): Fragment {
  return { sql: '??', bindings: [`src.${dataset.key}`] };
}

/**
 * The key as the deltalog compares it: byte for byte (`record_key` is utf8mb4_bin on MySQL, BINARY
 * on SQLite), whatever the dataset column's own collation. Grouping by this keeps 'A@x' and 'a@x'
 * apart exactly when the deltalog does.
 */
export function comparableKey(dialect: Dialect, dataset: DatasetDefinition): Fragment {
  const k = keyColumn(dataset);
  const sql =
    dialect === 'mysql' ? `CONVERT(${k.sql} USING utf8mb4) COLLATE utf8mb4_bin` : `${k.sql} COLLATE BINARY`;
  return { sql, bindings: k.bindings };
}

/** SQL predicate: the row's key can be stored (not null, not empty, not too long). */
export function validKey(dialect: Dialect, dataset: DatasetDefinition): Fragment {
  const k = keyColumn(dataset);
  const length = dialect === 'mysql' ? 'CHAR_LENGTH' : 'LENGTH';
  return {
    sql: `${k.sql} IS NOT NULL AND ${k.sql} <> '' AND ${length}(${k.sql}) <= ${MAX_KEY_LENGTH}`,
    bindings: [...k.bindings, ...k.bindings, ...k.bindings],
  };
}

/**
 * MD5 over the attribute columns, computed by the database so the dataset never travels to the
 * worker. Each value is prefixed ('v' for a value, 'n' for NULL) so NULL and the text 'NULL' differ.
 */
export function attributeHash(dialect: Dialect, dataset: DatasetDefinition): Fragment {
  if (dataset.attributes.length === 0) return { sql: "MD5('')", bindings: [] };
  const parts = dataset.attributes.map(() =>
    dialect === 'mysql' ? "COALESCE(CONCAT('v', ??), 'n')" : "COALESCE('v' || ??, 'n')",
  );
  const bindings = dataset.attributes.map((column) => `src.${column}`);
  const joined =
    dialect === 'mysql'
      ? `CONCAT_WS(CHAR(31 USING utf8mb4), ${parts.join(', ')})`
      : parts.join(' || char(31) || ');
  return { sql: `MD5(${joined})`, bindings };
}
