import { TenantDirectory } from '../../src/tenancy/policy';
import type { SecretStore } from '../../src/tenancy/secrets';

/**
 * For tests that are not about secrets: every tenant has every secret (all with `value`). The
 * tests of the secrets boundary use the real store (src/tenancy/secrets.ts).
 */
export function anySecret(value = 'test-secret'): SecretStore {
  return { forTenant: () => () => value, has: () => true, hint: () => '' };
}

/**
 * For tests of tenant scoping that are not about dataset access or allowlists: these tenants
 * share the namespace `default`, read with the worker's database user and may write anywhere.
 */
export function trustedTenants(...ids: string[]): TenantDirectory {
  return TenantDirectory.fromPolicy({
    tenants: Object.fromEntries(
      ids.map((id) => [id, { namespace: 'default', database: 'worker', destinations: 'any' }]),
    ),
  });
}
