/**
 * Secret names as connectors write them (`tokenSecret: CRM_TOKEN`). A name is looked up only
 * among its connector's tenant's secrets (see secrets.ts), so it can never reach the worker's own
 * configuration or another tenant's credentials.
 */
export const SECRET_NAME = /^[A-Z][A-Z0-9_]{0,127}$/;

/** `DELTASYNC_SECRET_<TENANT>__<NAME>`: the environment variable holding a tenant's secret. */
export function secretEnvName(tenant: string, name: string): string {
  return `DELTASYNC_SECRET_${tenant.toUpperCase().replace(/-/g, '_')}__${name}`;
}
