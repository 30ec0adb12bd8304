import { destinationModule } from '../connectors/catalog';
import type { ConnectorDefinition, DestinationConfig } from '../core/connector';
import type { Target } from '../core/destination';
import type { Db } from '../db';
import { createDatasetAccess, type DatasetAccess } from './datasets';
import { disallowedTargets } from './egress';
import { TenantDirectory, type TenantPolicy } from './policy';
import { createSecretStore, type SecretStore } from './secrets';

/**
 * Tenants as a security boundary, as the worker enforces it (docs/security.md): who a caller is
 * (its Temporal namespace → its tenant), which secrets a connector may name (its tenant's only),
 * what its dataset may read (its tenant's database grants) and what it may write (its tenant's
 * allowlist). Every check runs in the worker, whoever the client is.
 */

export { TenantDirectory, TenantNotServedError, type TenantPolicy } from './policy';
export { withEgressPolicy } from './egress';
export { StatementTimeoutError, DatasetAccessError } from './datasets';

export interface Tenancy {
  directory: TenantDirectory;
  secrets: SecretStore;
  datasets: DatasetAccess;
}

export interface TenancyOptions {
  db: Db;
  /** Default: DELTASYNC_TENANTS_FILE, else one tenant (`default`) in the namespace `default`. */
  directory?: TenantDirectory;
  /** Default: the environment and DELTASYNC_SECRETS_FILE. */
  secrets?: SecretStore;
}

export function createTenancy(options: TenancyOptions): Tenancy {
  const secrets = options.secrets ?? createSecretStore();
  return {
    directory: options.directory ?? TenantDirectory.load(),
    secrets,
    datasets: createDatasetAccess({ db: options.db, secretsOf: (tenant) => secrets.forTenant(tenant) }),
  };
}

/**
 * Every reason this connector may not run as its tenant, one line each, naming the field: a
 * secret its tenant does not have, a target outside its tenant's allowlist, a dataset its
 * tenant's database access cannot read. Empty when it may. (Re)creates the dataset's view.
 */
export async function connectorProblems(
  tenancy: Tenancy,
  tenant: TenantPolicy,
  connector: ConnectorDefinition,
): Promise<string[]> {
  const missing = secretNames(connector.destination)
    .filter(([, name]) => !tenancy.secrets.has(tenant.id, name))
    .map(
      ([field, name]) =>
        `destination.${field}: tenant '${tenant.id}' has no secret '${name}' (${tenancy.secrets.hint(tenant.id, name)})`,
    );
  if (missing.length > 0) return missing;

  let targets: Target[];
  try {
    const module = destinationModule(connector.destination.type);
    if (!module) throw new Error(`unknown destination type '${connector.destination.type}'`);
    const settings = module.configSchema.parse(connector.destination);
    targets = module.targets(settings, tenancy.secrets.forTenant(tenant.id));
  } catch (error) {
    return [`destination: ${error instanceof Error ? error.message : String(error)}`];
  }
  const disallowed = disallowedTargets(tenant.destinations, targets);
  if (disallowed.length > 0) return disallowed;
  return tenancy.datasets.prepare(tenant, connector);
}

/** The secret names a destination config refers to: every `…Secret` setting, as [field, name]. */
export function secretNames(config: DestinationConfig): [string, string][] {
  return Object.entries(config).flatMap(([field, value]): [string, string][] =>
    field.endsWith('Secret') && typeof value === 'string' ? [[field, value]] : [],
  );
}
