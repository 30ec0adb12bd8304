import type { Db } from '../db';
import { dialectOf } from '../db';

/**
 * The demo dataset: a customers table with a string key and a few attributes. Deterministic, so
 * a demo run and a test run see the same records for the same numbers.
 */

export const CUSTOMERS_TABLE = 'demo_customers';
const COUNTRIES = ['DE', 'FR', 'US', 'GB', 'NL', 'SE', 'JP', 'BR'];
const SEGMENTS = ['new', 'active', 'loyal', 'lapsed'];

export function customerKey(n: number): string {
  return `cust-${String(n).padStart(7, '0')}`;
}

function customer(n: number, version = 0) {
  return {
    customer_key: customerKey(n),
    email: `customer${n}@example.com`,
    name: `Customer ${n}`,
    country: COUNTRIES[n % COUNTRIES.length]!,
    segment: SEGMENTS[(n + version) % SEGMENTS.length]!,
  };
}

export async function createCustomersTable(db: Db, table = CUSTOMERS_TABLE): Promise<void> {
  await db.schema.dropTableIfExists(table);
  await db.schema.createTable(table, (t) => {
    const key = t.string('customer_key', 64).primary();
    if (dialectOf(db) === 'mysql') key.collate('utf8mb4_bin');
    t.string('email', 255).notNullable();
    t.string('name', 255).notNullable();
    t.string('country', 2).notNullable();
    t.string('segment', 16).notNullable();
  });
}

/** Insert customers 1..count, in batches, calling `onProgress` with rows written so far. */
export async function seedCustomers(
  db: Db,
  count: number,
  options: { table?: string; first?: number; onProgress?: (done: number) => void } = {},
): Promise<void> {
  const first = options.first ?? 1;
  // SQLite caps a compound SELECT (knex's multi-row insert there) at 500 terms.
  const batch = dialectOf(db) === 'sqlite' ? 400 : 2000;
  for (let start = first; start < first + count; start += batch) {
    const rows = [];
    for (let n = start; n < Math.min(start + batch, first + count); n++) rows.push(customer(n));
    await db(options.table ?? CUSTOMERS_TABLE).insert(rows);
    options.onProgress?.(Math.min(start + batch, first + count) - first);
  }
}

export interface Churn {
  /** New customers appended after the current highest number. */
  additions: number;
  /** Customers deleted, spread over the table. */
  deletions: number;
  /** Customers whose segment changes. */
  changes: number;
}

/**
 * Change the dataset the way life does: some customers arrive, some leave, some change. Returns
 * the keys touched, so callers can check them on the destination.
 */
export async function churnCustomers(db: Db, churn: Churn, table = CUSTOMERS_TABLE) {
  const keys = (
    (await db(table).select('customer_key').orderBy('customer_key')) as { customer_key: string }[]
  ).map((r) => r.customer_key);
  const highest = keys.length === 0 ? 0 : Number(keys[keys.length - 1]!.slice(5));
  // Deletions and changes are picked from disjoint, evenly spaced positions.
  const stride = Math.max(1, Math.floor(keys.length / Math.max(1, churn.deletions + churn.changes)));
  const picked = keys.filter((_, i) => i % stride === 0);
  const deleted = picked.slice(0, churn.deletions);
  const changed = picked.slice(churn.deletions, churn.deletions + churn.changes);
  for (let i = 0; i < deleted.length; i += 1000) {
    await db(table)
      .whereIn('customer_key', deleted.slice(i, i + 1000))
      .delete();
  }
  for (const key of changed) {
    await db(table)
      .where({ customer_key: key })
      .update({ segment: db.raw("CASE WHEN segment = 'loyal' THEN 'lapsed' ELSE 'loyal' END") });
  }
  await seedCustomers(db, churn.additions, { table, first: highest + 1 });
  const added = Array.from({ length: churn.additions }, (_, i) => customerKey(highest + 1 + i));
  return { added, deleted, changed };
}

/** The dataset as the destination should hold it: key → attributes. */
export async function readCustomers(db: Db, table = CUSTOMERS_TABLE) {
  const rows = (await db(table).select()) as Record<string, string>[];
  return new Map(
    rows.map(({ customer_key, ...attributes }) => [customer_key!, attributes as Record<string, string>]),
  );
}
