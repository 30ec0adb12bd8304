import knex from 'knex';
import { databaseConfig, type Db } from '../../src/db';
import { mysqlServerUrl } from './databases';

/**
 * MariaDB users for the tenancy tests, created once by `scripts/setup.sh --mysql` (see
 * scripts/create-test-users.ts): a least-privilege user for deltasync's worker and one per tenant.
 * Local test credentials only. Each test run grants them rights on its own databases.
 */
export const TEST_USERS = {
  worker: { user: 'deltasync_test_worker', password: 'worker-test-only' },
  a: { user: 'deltasync_test_tenant_a', password: 'tenant-a-test-only' },
  b: { user: 'deltasync_test_tenant_b', password: 'tenant-b-test-only' },
  c: { user: 'deltasync_test_tenant_c', password: 'tenant-c-test-only' },
  d: { user: 'deltasync_test_tenant_d', password: 'tenant-d-test-only' },
} as const;

/** Create the users (if missing), with no rights at all: each test grants what it needs. */
export async function createTestUsers(admin: Db): Promise<void> {
  for (const { user, password } of Object.values(TEST_USERS)) {
    await admin.raw(`CREATE USER IF NOT EXISTS ?@'%' IDENTIFIED BY ?`, [user, password]);
  }
}

/** A URL for `who` on the test server, in `database`. */
export function urlFor(who: keyof typeof TEST_USERS, database: string): string {
  const url = new URL(mysqlServerUrl);
  url.username = TEST_USERS[who].user;
  url.password = TEST_USERS[who].password;
  url.pathname = `/${database}`;
  return url.toString();
}

/** A connection to the test server as root (the admin URL the tests use). */
export function adminConnection(): Db {
  return knex(databaseConfig(mysqlServerUrl));
}
