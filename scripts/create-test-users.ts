import { adminConnection, createTestUsers } from '../test/helpers/tenant-databases';

/** scripts/setup.sh --mysql: the MariaDB users the tenancy tests need (idempotent). */
async function main() {
  const admin = adminConnection();
  try {
    await createTestUsers(admin);
  } finally {
    await admin.destroy();
  }
}

main().catch((error: unknown) => {
  console.error(
    `[setup] ERROR: could not create the test users: ${error instanceof Error ? error.message : String(error)}`,
  );
  process.exit(1);
});
