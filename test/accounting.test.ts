import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { saveConnector } from '../src/core/connector-store';
import type { Capabilities } from '../src/core/destination';
import { updateDeltalog } from '../src/core/deltalog';
import { endpointCalls, listRuns } from '../src/core/runs';
import type { Strategy } from '../src/core/plan';
import { MemoryDestination } from './helpers/memory-destination';
import { createDriver } from './helpers/engine-driver';
import { createTestDatabase, type TestDatabase } from './helpers/databases';
import { startTemporal, type TemporalHarness } from './helpers/temporal';

/**
 * API-call accounting: every run records its calls per endpoint, a diff costs exactly what its
 * batch arithmetic says, and `auto` never costs more than the cheapest fixed strategy.
 */

describe('a diff of a 1,000,000-key list with 1% churn (MariaDB, real Temporal)', () => {
  let t: TestDatabase;
  let temporal: TemporalHarness;
  const B = 1000;
  before(async () => {
    [t, temporal] = await Promise.all([createTestDatabase('mysql'), startTemporal()]);
    await t.db.raw(
      `CREATE TABLE big (k VARCHAR(16) COLLATE utf8mb4_bin PRIMARY KEY, segment VARCHAR(8) NOT NULL)`,
    );
    // MariaDB's sequence engine makes a million rows in one statement.
    await t.db.raw(`INSERT INTO big SELECT CONCAT('k', LPAD(seq, 7, '0')), 'a' FROM seq_1_to_1000000`);
    await saveConnector(t.db, {
      id: 'million',
      dataset: { table: 'big', key: 'k', attributes: ['segment'] },
      destination: {
        type: 'http-list',
        baseUrl: 'http://unused.invalid',
        listId: 'l',
        tokenSecret: 'UNUSED',
      },
      policy: { batchSize: B },
    });
    // The list is in sync: every key delivered before (set-based, no million calls needed).
    await updateDeltalog(t.db, 'default/million', { table: 'big', key: 'k', attributes: ['segment'] }, 1);
    await t
      .db('deltalog')
      .where({ connector_id: 'default/million' })
      .update({ committed_at: 2, on_remote: true });
  });
  after(async () => {
    await t.drop();
    await temporal.stop();
  });

  test('makes exactly ceil(upserts / B) + ceil(deletions / B) calls, recorded per endpoint', async () => {
    // 1% churn: 4,321 new keys, 3,210 deleted, 2,469 changed = 10,000.
    await t.db.raw(`INSERT INTO big SELECT CONCAT('n', LPAD(seq, 7, '0')), 'a' FROM seq_1_to_4321`);
    await t.db.raw(`DELETE FROM big WHERE k BETWEEN 'k0100001' AND 'k0103210'`);
    await t.db.raw(`UPDATE big SET segment = 'b' WHERE k BETWEEN 'k0500001' AND 'k0502469'`);
    const remote = new MemoryDestination({ recordsPerCall: B });
    const summary = await temporal.withWorker({ db: t.db, destinations: () => remote }, (client) =>
      client.refresh('million'),
    );
    assert.equal(summary.strategy, 'diff');
    assert.deepEqual([summary.additions, summary.deletions, summary.updates], [4321, 3210, 2469]);
    const expected = Math.ceil((4321 + 2469) / B) + Math.ceil(3210 / B);
    assert.equal(expected, 7 + 4);
    assert.equal(summary.apiCalls, expected);
    assert.deepEqual(summary.callsByEndpoint, {
      add: { calls: Math.ceil((4321 + 2469) / B), failed: 0, rateLimited: 0, retried: 0 },
      remove: { calls: Math.ceil(3210 / B), failed: 0, rateLimited: 0, retried: 0 },
    });
    assert.equal(remote.calls.add + remote.calls.remove, expected, 'the destination saw the same');
  });
});

describe('auto never makes more calls than the cheapest fixed strategy (SQLite)', () => {
  let t: TestDatabase;
  before(async () => {
    t = await createTestDatabase('sqlite');
  });
  after(() => t.drop());

  const fixed: Strategy[] = ['diff', 'full', 'truncate', 'newList'];
  const capabilitiesArb: fc.Arbitrary<Capabilities> = fc.record({
    add: fc.constant(true),
    remove: fc.boolean(),
    truncate: fc.boolean(),
    listMembers: fc.constant(true),
    updateAttributes: fc.boolean(),
    createList: fc.boolean(),
  });
  let scenario = 0;

  test('property: over random datasets, churn and capabilities', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 60 }),
        fc.integer({ min: 0, max: 60 }),
        fc.integer({ min: 0, max: 60 }),
        fc.integer({ min: 0, max: 60 }),
        fc.integer({ min: 1, max: 15 }),
        capabilitiesArb,
        async (initial, added, deleted, changed, batch, capabilities) => {
          const table = `acc_${scenario++}`;
          await t.db.schema.createTable(table, (x) => {
            x.string('k', 16).primary();
            x.string('v', 8);
          });
          const rows = Array.from({ length: initial }, (_, i) => ({ k: `k${1000 + i}`, v: 'a' }));
          if (rows.length) await t.db(table).insert(rows);
          // One connector per strategy, all over the same dataset and history.
          const runs = new Map<string, () => Promise<number | undefined>>();
          for (const strategy of [...fixed, 'auto'] as const) {
            const id = `${table}-${strategy}`.toLowerCase();
            await saveConnector(t.db, {
              id,
              dataset: { table, key: 'k', attributes: ['v'] },
              destination: {
                type: 'http-list',
                baseUrl: 'http://unused.invalid',
                listId: 'l',
                tokenSecret: 'U',
              },
              policy: { batchSize: batch },
            });
            const remote = new MemoryDestination({ recordsPerCall: batch }, capabilities);
            const refresh = createDriver(t.db, remote);
            await refresh(id, capabilities.remove ? 'diff' : 'auto', { kind: 'none' }).catch(() => undefined);
            runs.set(strategy, async () => {
              const result = await refresh(id, strategy, { kind: 'none' }).catch(() => undefined);
              if (!result?.completed) return undefined; // not possible with these capabilities
              return (await listRuns(t.db, `default/${id}`, 1))[0]!.api_calls;
            });
          }
          const keys = rows.map((r) => r.k);
          await t.db(table).whereIn('k', keys.slice(0, deleted)).delete();
          await t
            .db(table)
            .whereIn('k', keys.slice(deleted, deleted + changed))
            .update({ v: 'b' });
          const fresh = Array.from({ length: added }, (_, i) => ({ k: `n${1000 + i}`, v: 'a' }));
          if (fresh.length) await t.db(table).insert(fresh);

          const calls = new Map<string, number | undefined>();
          for (const [strategy, run] of runs) calls.set(strategy, await run());
          const possible = fixed.map((s) => calls.get(s)).filter((c): c is number => c !== undefined);
          if (possible.length === 0) return;
          const auto = calls.get('auto');
          assert.ok(auto !== undefined, 'auto finds a way when a fixed strategy does');
          assert.ok(auto <= Math.min(...possible), `auto ${auto} vs ${JSON.stringify([...calls])}`);
        },
      ),
      {
        numRuns: 25,
        // Found in CI: the first swap retires nothing, so new list + swap cost one call less than planned.
        examples: [
          [
            26,
            36,
            19,
            1,
            6,
            {
              add: true,
              remove: true,
              truncate: false,
              listMembers: true,
              updateAttributes: false,
              createList: true,
            },
          ],
        ],
      },
    );
  });

  test('every run records its calls per endpoint', async () => {
    const [run] = await listRuns(t.db, 'default/acc_0-newlist', 1);
    const byEndpoint = await endpointCalls(t.db, run!.id);
    const total = Object.values(byEndpoint).reduce((sum, e) => sum + e.calls, 0);
    assert.equal(total, run!.api_calls);
  });
});
