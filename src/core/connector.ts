import { alertRulesSchema } from './alert-rules';
import { z } from 'zod';
import { STRATEGIES } from './plan';

/**
 * A connector: one dataset wired to one list in one destination, with its refresh policy.
 * Destination settings carry secret *names* (`tokenSecret`, `urlSecret`), never secret values.
 */

/** Lower-case letters, digits and inner dashes, at most 40: fits environment names and ids. */
export const TENANT_ID = /^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$/;
export const tenantIdSchema = z
  .string()
  .regex(TENANT_ID, 'tenant ids are lower-case letters, digits and inner dashes, at most 40 characters');

const identifier = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_$.]*$/, 'must be a plain SQL identifier (letters, digits, _, $, .)');

/**
 * Where a dataset's changes can be read from, so that a refresh compares only the keys touched
 * since the last one (docs/change-sources.md). `triggers`: deltasync installs triggers on the base
 * tables that journal every inserted, updated or deleted key. `watermark`: rows whose `column`
 * grew since the last refresh (a tombstone table, listed too, brings hard deletions). A `table`
 * dataset follows its own table by its key; a `sql` dataset (or a view) names the base tables its
 * rows depend on, each with the column that holds the dataset's key. A full compare still runs
 * every `fullCompareHours` and whenever the source cannot prove it saw every change.
 */
const fullCompareHours = z.number().positive().default(24);
const keyedTables = z
  .array(z.object({ table: identifier, key: identifier }))
  .min(1)
  .optional();

export const changeSourceSchema = z.discriminatedUnion('source', [
  z.object({ source: z.literal('triggers'), tables: keyedTables, fullCompareHours }),
  /** The server's row-format binary log (MySQL/MariaDB): for tables that may not carry triggers. */
  z.object({ source: z.literal('binlog'), tables: keyedTables, fullCompareHours }),
  z.object({
    source: z.literal('watermark'),
    /** The dataset table's watermark column (a `table` dataset without `tables`). */
    column: identifier.optional(),
    tables: z
      .array(z.object({ table: identifier, key: identifier, column: identifier }))
      .min(1)
      .optional(),
    fullCompareHours,
  }),
]);

export const datasetSchema = z
  .object({
    table: identifier.optional(),
    sql: z.string().min(1).optional(),
    key: identifier,
    attributes: z.array(identifier).default([]),
    changes: changeSourceSchema.optional(),
  })
  .refine((d) => (d.table === undefined) !== (d.sql === undefined), {
    message: 'set exactly one of `table` and `sql`',
  })
  .refine((d) => d.changes === undefined || d.table !== undefined || d.changes.tables !== undefined, {
    message: 'a `sql` dataset with `changes` names the base tables its rows depend on (`changes.tables`)',
    path: ['changes', 'tables'],
  })
  .refine(
    (d) =>
      d.changes?.source !== 'watermark' || d.changes.tables !== undefined || d.changes.column !== undefined,
    {
      message: 'a watermark source names its column (`changes.column`) or its tables (`changes.tables`)',
      path: ['changes'],
    },
  );

export const policySchema = z.object({
  /** `auto` lets the planner pick the cheapest allowed strategy on every run. */
  strategy: z.enum(['auto', ...STRATEGIES]).default('auto'),
  /** Records per call; defaults to (and may not exceed) the destination's limit. */
  batchSize: z.number().int().positive().optional(),
  /** Only pending changes of the last N days trigger a refresh (all pending changes are sent). */
  horizonDays: z.number().positive().optional(),
  /** Committed deletions are purged from the deltalog after this many days. */
  retentionDays: z.number().nonnegative().default(30),
  /** Alert rules and the webhooks they go to (core/alerts.ts); default: the tenant's, if any. */
  alerts: alertRulesSchema.optional(),
  /** The row-level change log of runs (`deltasync changes`) keeps this many days (0: no log is written). */
  changeLogDays: z.number().nonnegative().default(14),
  /** Share of API calls that must succeed for the run to count as succeeded. */
  successThreshold: z.number().min(0).max(1).default(0.99),
  /** Share of the records sent that must be delivered (not rejected) for the run to succeed. */
  recordSuccessThreshold: z.number().min(0).max(1).default(0.95),
  /**
   * How long a send may keep failing without committing a batch (a destination refusing
   * connections, answering 5xx) before the run fails with the cause, instead of retrying forever.
   */
  failureBudgetSeconds: z.number().positive().default(600),
  /**
   * Calls one send phase may spend splitting batches the destination refuses as a whole, to find
   * the records it refuses (0: a refused batch fails all its records).
   */
  splitCallBudget: z.number().int().nonnegative().default(100),
  /** Rejections of one record before it is quarantined until its attributes change. */
  maxAttempts: z.number().int().positive().default(5),
  /** Runs that would delete a large share of the list wait for an operator's approval. */
  massDeleteGuard: z
    .object({
      enabled: z.boolean().default(true),
      maxShare: z.number().min(0).max(1).default(0.2),
      onEmptyDataset: z.boolean().default(true),
      /** Seconds to wait for a decision; no decision in time rejects (deletions stay pending). */
      approvalTimeoutSeconds: z
        .number()
        .int()
        .positive()
        .default(24 * 3600),
    })
    .default(() => ({
      enabled: true,
      maxShare: 0.2,
      onEmptyDataset: true,
      approvalTimeoutSeconds: 24 * 3600,
    })),
  /**
   * Refresh when the dataset changes (besides schedules): a watcher checks a cheap change marker
   * every `pollSeconds` and accepts `datasetChanged` signals; a burst of changes starts one
   * refresh once `debounceSeconds` pass without a further change (but no later than
   * `maxWaitSeconds` after the first one). Takes effect when the connector is watched
   * (`client.watch(id)`); absent, a watcher started anyway uses these defaults.
   */
  changeTrigger: z
    .object({
      pollSeconds: z.number().min(1).default(60),
      debounceSeconds: z.number().nonnegative().default(30),
      /** Refresh at the latest this long after the first change of a burst that never goes quiet. */
      maxWaitSeconds: z.number().positive().optional(),
      /**
       * A column that grows with every insert and update (e.g. `updated_at`): the marker becomes
       * COUNT(*) + MAX(column), cheap with an index. Without it: COUNT(*) + a checksum over every
       * key and attribute hash (a full scan, computed in the database).
       */
      markerColumn: identifier.optional(),
    })
    .optional(),
});

/**
 * A destination's settings as the core sees them: a type and the type's own settings, which its
 * module's schema validates (connectors/catalog.ts: validateConnector).
 */
export const destinationSchema = z.looseObject({ type: z.string().min(1) });

export const connectorSchema = z.object({
  id: z
    .string()
    .regex(/^[a-z0-9][a-z0-9_.-]{0,127}$/, 'lower-case letters, digits, _, . and -; at most 128 characters'),
  tenant: tenantIdSchema.default('default'),
  dataset: datasetSchema,
  destination: destinationSchema,
  policy: policySchema.default(() => policySchema.parse({})),
});

export type ConnectorDefinition = z.output<typeof connectorSchema>;
export type ConnectorInput = z.input<typeof connectorSchema>;
export type DestinationConfig = z.output<typeof destinationSchema>;
export type RefreshPolicy = z.output<typeof policySchema>;

/**
 * How a connector is keyed in the database: ids are unique per tenant, so two tenants may both
 * have a `crm` connector and neither learns of the other's.
 */
export function connectorKey(tenant: string, id: string): string {
  return `${tenant}/${id}`;
}

/** The public id back from a key (`acme/crm` → `crm`). */
export function idOfKey(key: string): string {
  return key.slice(key.indexOf('/') + 1);
}

/**
 * Validate a connector's own fields (its destination's settings are its module's to check: see
 * validateConnector), with messages that name the bad field (`policy.batchSize: …`).
 */
export function parseConnector(input: unknown): ConnectorDefinition {
  const result = connectorSchema.safeParse(input);
  if (result.success) return result.data;
  throw new InvalidConnectorError(problemsOf(result.error));
}

/** One line per issue, each naming its field. */
export function problemsOf(error: z.ZodError, prefix: (string | number)[] = []): string[] {
  return error.issues.map((issue) => `${[...prefix, ...issue.path].join('.') || '(root)'}: ${issue.message}`);
}

export class InvalidConnectorError extends Error {
  override name = 'InvalidConnectorError';
  constructor(readonly problems: string[]) {
    super(`invalid connector definition:\n  ${problems.join('\n  ')}`);
  }
}
