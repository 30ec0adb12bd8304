/**
 * Secret names as connectors write them (`tokenSecret: CRM_TOKEN`, see SECRET_NAME). A name is
 * looked up only among its connector's tenant's secrets (see secrets.ts), so it can never reach
 * the worker's own configuration or another tenant's credentials.
 */
export { SECRET_NAME } from '../core/destination';

/** `DELTASYNC_SECRET_<TENANT>__<NAME>`: the environment variable holding a tenant's secret. */
export function secretEnvName(tenant: string, name: string): string {
  return `DELTASYNC_SECRET_${tenant.toUpperCase().replace(/-/g, '_')}__${name}`;
}
