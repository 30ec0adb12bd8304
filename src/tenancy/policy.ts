import { alertRulesSchema, type AlertRules } from '../core/alert-rules';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';
import { TENANT_ID } from '../core/connector';
import { SECRET_NAME } from '../core/destination';

/**
 * The tenants policy: which tenants a worker serves, in which Temporal namespace each one's callers
 * act, how each one's datasets are read, and what each one may write. The operator owns it (a
 * file the worker loads, DELTASYNC_TENANTS_FILE); tenants never change it. docs/security.md
 * explains every field and why it is there.
 */

/** Default statement time limit of dataset reads: long enough for a 50M-row compare, short enough for a stuck one. */
export const DEFAULT_STATEMENT_TIMEOUT_SECONDS = 300;

const origin = z
  .string()
  .regex(
    /^https?:\/\/[A-Za-z0-9.-]+(?::(?:\d{1,5}|\*))?$/,
    'an origin is scheme://host[:port] (port * for any), e.g. https://graph.facebook.com',
  );

const absoluteDirectory = z
  .string()
  .refine((dir) => path.isAbsolute(dir), 'file roots are absolute paths')
  .transform((dir) => path.resolve(dir));

const sqlTableTarget = z.object({
  /** mysql host (as written in the destination's URL) and port. */
  host: z.string().min(1),
  port: z.number().int().positive().default(3306),
  database: z.string().min(1),
  /** Table names, `*` as a wildcard (`audience_*`). */
  tables: z.array(z.string().min(1)).min(1),
});

const redisTarget = z.object({
  host: z.string().min(1),
  port: z.number().int().positive().default(6379),
  db: z.number().int().nonnegative().default(0),
  /** Every key the connector writes starts with this (the set and the keys beside it). */
  keyPrefix: z.string().min(1),
});

export const destinationAllowlistSchema = z.object({
  /** HTTP destinations: the origins a tenant's connectors may call. */
  origins: z.array(origin).default([]),
  /** file-drop directories (and embedded sql-table files) must lie under one of these. */
  fileRoots: z.array(absoluteDirectory).default([]),
  /** sql-table destinations on MySQL/MariaDB. */
  sqlTables: z.array(sqlTableTarget).default([]),
  /** redis-set destinations. */
  redisKeys: z.array(redisTarget).default([]),
});

/**
 * An account's budget, set once for every connector (and, with Redis, every worker) that writes to
 * it; a field left out falls back to what the connectors declare.
 */
const accountBudget = z
  .object({
    callsPerSecond: z.number().positive().optional(),
    maxConcurrent: z.number().int().positive().optional(),
  })
  .strict();

export const tenantPolicySchema = z.object({
  /** The Temporal namespace whose callers act as this tenant (default: the tenant id). */
  namespace: z.string().min(1).optional(),
  /**
   * How this tenant's datasets are read (MySQL/MariaDB): through views created with its own
   * database user, so the database's grants to that user decide what a dataset can see.
   */
  database: z
    .union([
      z.object({
        /** A secret of this tenant holding mysql://user:password@host:port/schema (the view schema). */
        urlSecret: z.string().regex(SECRET_NAME, 'a secret name: A-Z, 0-9 and _'),
        statementTimeoutSeconds: z.number().positive().max(86_400).optional(),
      }),
      /**
       * Read with the worker's own database user: the tenant's datasets can read whatever that user
       * can, deltasync's own tables included. Only for tenants that may see each other's data.
       */
      z.literal('worker'),
    ])
    .optional(),
  /** What the tenant may write; `any`: no allowlist, only for tenants the operator fully trusts. */
  destinations: z
    .union([destinationAllowlistSchema, z.literal('any')])
    .default(() => destinationAllowlistSchema.parse({})),
  /**
   * Budgets of destination accounts, by the account's name (`meta:act_123`, … see
   * docs/deploying.md): they override the limits the tenant's connectors declare.
   */
  accountLimits: z.record(z.string().min(1), accountBudget).default({}),
  /** Alert rules for the tenant's connectors that set none of their own (core/alerts.ts). */
  alerts: alertRulesSchema.optional(),
});

export const tenantsFileSchema = z.object({
  tenants: z.record(z.string(), tenantPolicySchema).superRefine((tenants, ctx) => {
    if (Object.keys(tenants).length === 0)
      ctx.addIssue({ code: 'custom', message: 'list at least one tenant' });
    for (const id of Object.keys(tenants)) {
      if (!TENANT_ID.test(id)) {
        ctx.addIssue({
          code: 'custom',
          path: [id],
          message: 'tenant ids are lower-case letters, digits and inner dashes, at most 40 characters',
        });
      }
    }
  }),
  /** Statement time limit of dataset reads for tenants that set none. */
  statementTimeoutSeconds: z.number().positive().max(86_400).default(DEFAULT_STATEMENT_TIMEOUT_SECONDS),
});

export type DestinationAllowlist = z.output<typeof destinationAllowlistSchema>;

export interface TenantPolicy {
  id: string;
  namespace: string;
  /** Absent: datasets are read with the worker's own database user (single-tenant only). */
  database?: { urlSecret: string };
  statementTimeoutSeconds: number;
  /** 'any': no allowlist (single-tenant workers without a policy file). */
  destinations: DestinationAllowlist | 'any';
  /** Budgets the operator set for destination accounts, by account name. */
  accountLimits?: Record<string, AccountBudget>;
  /** Alert rules of the tenant's connectors that set none. */
  alerts?: AlertRules;
}

export type AccountBudget = z.output<typeof accountBudget>;

/** A caller's tenant is not one this namespace serves: to the caller, its connectors do not exist. */
export class TenantNotServedError extends Error {
  override name = 'TenantNotServedError';
  constructor(
    readonly tenant: string,
    readonly namespace: string,
    readonly served: string[],
  ) {
    super(
      `tenant '${tenant}' is not served in Temporal namespace '${namespace}' (it serves: ${served.join(', ') || 'none'})`,
    );
  }
}

export class InvalidTenantsPolicyError extends Error {
  override name = 'InvalidTenantsPolicyError';
}

/** The tenants a worker serves, by namespace. */
export class TenantDirectory {
  private readonly byId: Map<string, TenantPolicy>;

  private constructor(
    tenants: TenantPolicy[],
    /** True without a policy file: one tenant, `default`, trusted with the worker's own access. */
    readonly singleTenant: boolean,
    readonly source: string,
  ) {
    this.byId = new Map(tenants.map((t) => [t.id, t]));
  }

  /** No policy file: one tenant, `default`, in `namespace`, reading with the worker's own user. */
  static singleTenant(namespace = 'default', statementTimeoutSeconds = DEFAULT_STATEMENT_TIMEOUT_SECONDS) {
    return new TenantDirectory(
      [{ id: 'default', namespace, statementTimeoutSeconds, destinations: 'any' }],
      true,
      'no tenants policy (single tenant)',
    );
  }

  /** From a parsed policy (YAML or JSON). */
  static fromPolicy(input: unknown, source = 'tenants policy'): TenantDirectory {
    const parsed = tenantsFileSchema.safeParse(input);
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
      throw new InvalidTenantsPolicyError(`${source} is invalid:\n  ${problems.join('\n  ')}`);
    }
    const entries = Object.entries(parsed.data.tenants);
    const undecided = entries.filter(([, t]) => t.database === undefined).map(([id]) => `'${id}'`);
    if (entries.length > 1 && undecided.length > 0) {
      throw new InvalidTenantsPolicyError(
        `${source}: with more than one tenant every tenant needs its own dataset access ` +
          `(tenants.<id>.database.urlSecret); missing for ${undecided.join(', ')}. Reading datasets with ` +
          `the worker's own database user would let each tenant read the others' data (if they may, say ` +
          `so with database: worker).`,
      );
    }
    const tenants = entries.map(([id, t]): TenantPolicy => ({
      id,
      namespace: t.namespace ?? id,
      ...(typeof t.database === 'object' ? { database: { urlSecret: t.database.urlSecret } } : {}),
      statementTimeoutSeconds:
        (typeof t.database === 'object' ? t.database.statementTimeoutSeconds : undefined) ??
        parsed.data.statementTimeoutSeconds,
      destinations: t.destinations,
      accountLimits: t.accountLimits,
      ...(t.alerts ? { alerts: t.alerts } : {}),
    }));
    return new TenantDirectory(tenants, false, source);
  }

  static fromFile(file: string): TenantDirectory {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (error) {
      throw new InvalidTenantsPolicyError(
        `cannot read the tenants policy ${file}: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    let input: unknown;
    try {
      input = YAML.parse(text);
    } catch (error) {
      throw new InvalidTenantsPolicyError(
        `the tenants policy ${file} is not valid YAML or JSON: ${error instanceof Error ? error.message.split('\n')[0] : ''}`,
      );
    }
    return TenantDirectory.fromPolicy(input, `the tenants policy ${file}`);
  }

  /** DELTASYNC_TENANTS_FILE when set, otherwise one tenant (`default`) in `namespace`. */
  static load(options: { file?: string; namespace?: string } = {}): TenantDirectory {
    const file = options.file ?? process.env.DELTASYNC_TENANTS_FILE;
    return file ? TenantDirectory.fromFile(file) : TenantDirectory.singleTenant(options.namespace);
  }

  get tenants(): TenantPolicy[] {
    return [...this.byId.values()];
  }

  /** Every namespace with at least one tenant: the worker polls each. */
  namespaces(): string[] {
    return [...new Set(this.tenants.map((t) => t.namespace))].sort();
  }

  tenantsIn(namespace: string): string[] {
    return this.tenants.filter((t) => t.namespace === namespace).map((t) => t.id);
  }

  get(tenant: string): TenantPolicy | undefined {
    return this.byId.get(tenant);
  }

  /** The budget the policy sets for one of `tenant`'s destination accounts, if any. */
  accountLimits(tenant: string, account: string): AccountBudget | undefined {
    return this.byId.get(tenant)?.accountLimits?.[account];
  }

  /**
   * The tenant a call made in `namespace` acts as. Temporal's authorization decides who reaches a
   * namespace; the namespace decides the tenant. A namespace with one tenant needs no claim (and
   * refuses another); in a shared namespace the caller names one of its tenants.
   */
  resolve(namespace: string, claimed?: string): TenantPolicy {
    const served = this.tenantsIn(namespace);
    const tenant = claimed ?? (served.length === 1 ? served[0] : undefined);
    if (tenant === undefined || !served.includes(tenant)) {
      throw new TenantNotServedError(tenant ?? '(none given)', namespace, served);
    }
    return this.byId.get(tenant)!;
  }
}
