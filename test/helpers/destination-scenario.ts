import { after, before } from 'node:test';
import type { Worker } from '@temporalio/worker';
import type { DeltasyncClient } from '../../src/client';
import { createDestinationFactory } from '../../src/connectors/registry';
import type { Attributes, SecretResolver } from '../../src/core/destination';
import type { Db } from '../../src/db';
import { createCustomersTable, seedCustomers } from '../../src/demo/customers';
import type { SecretStore } from '../../src/tenancy/secrets';
import { createTestDatabase, type TestDatabase } from './databases';
import type { Closable } from './destinations';
import { startTemporal, type TemporalHarness } from './temporal';

/**
 * The refresh workflow end to end for one destination: the real Temporal dev server, a fresh
 * MariaDB database holding the dataset table, and (optionally) the destination's emulator.
 */
export interface RefreshScenario<E> {
  readonly temporal: TemporalHarness;
  readonly database: TestDatabase;
  /** `database.db`: where the dataset table and deltasync's own tables live. */
  readonly db: Db;
  /** The emulator `refreshScenario` started (undefined when it was given none). */
  readonly emu: E;
  /**
   * Runs `body` with a worker on a fresh task queue, its destinations built the way the worker
   * builds them: the catalog, the secret resolver `secrets`, one shared throttle.
   */
  withWorker<T>(
    secrets: SecretResolver,
    body: (client: DeltasyncClient, worker: Worker) => Promise<T>,
  ): Promise<T>;
}

/**
 * Registers, in the calling `describe`, the hooks that start the scenario before its tests
 * (`dataset` creates and fills the dataset table) and tear it down after them.
 */
export function refreshScenario<E extends Closable | undefined = undefined>(setup: {
  emulator?: () => Promise<E>;
  dataset?: (db: Db) => Promise<void>;
}): RefreshScenario<E> {
  let temporal: TemporalHarness | undefined;
  let database: TestDatabase | undefined;
  let emu: E | undefined;
  before(async () => {
    [temporal, database, emu] = await Promise.all([
      startTemporal(),
      createTestDatabase('mysql'),
      setup.emulator?.(),
    ]);
    await setup.dataset?.(database.db);
  });
  after(async () => {
    await emu?.close();
    await database?.drop();
    await temporal?.stop();
  });

  const started = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('the refresh scenario is not started (use it inside a test)');
    return value;
  };
  return {
    get temporal() {
      return started(temporal);
    },
    get database() {
      return started(database);
    },
    get db() {
      return started(database).db;
    },
    get emu() {
      return emu as E;
    },
    withWorker(secrets, body) {
      const store = secretStoreOf(secrets);
      const destinations = createDestinationFactory(store.forTenant);
      return started(temporal).withWorker({ db: started(database).db, destinations, secrets: store }, body);
    },
  };
}

/** A `dataset` for `refreshScenario`: the demo customers table with `count` customers. */
export function demoCustomers(count: number): (db: Db) => Promise<void> {
  return async (db) => {
    await createCustomersTable(db);
    await seedCustomers(db, count);
  };
}

/**
 * The rows of `table` as the list should hold them: the `key` column's value to the other
 * columns, where a null column is absent (the destination removed that attribute).
 */
export async function datasetMembers(db: Db, table: string, key: string): Promise<Map<string, Attributes>> {
  const rows = (await db(table).select()) as Record<string, string | number | null>[];
  return new Map(
    rows.map(({ [key]: id, ...attributes }) => [
      String(id),
      Object.fromEntries(Object.entries(attributes).filter(([, value]) => value !== null)) as Attributes,
    ]),
  );
}

/** Every tenant sees the same secrets (these scenarios have one tenant). */
function secretStoreOf(secrets: SecretResolver): SecretStore {
  const has = (name: string) => {
    try {
      secrets(name);
      return true;
    } catch {
      return false;
    }
  };
  return { forTenant: () => secrets, has: (_tenant, name) => has(name), hint: () => 'set it in the test' };
}
