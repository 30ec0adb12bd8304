import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import type { TrackedUpdate } from '../src/core/change-tracking';
import { attributeHash, datasetSignature, directReader, type DatasetDefinition } from '../src/core/dataset';
import { recordSentHashes, updateDeltalog } from '../src/core/deltalog';
import { compareForConnector, leaveSharedCompare } from '../src/core/shared-compare';
import type { Db } from '../src/db';
import { createTestDatabase, dialects, type TestDatabase } from './helpers/databases';
import { deltalogOf } from './helpers/deltalog-rows';
import { assertIndexed, planOf, statementsOf } from './helpers/plans';

/**
 * One compare for many connectors (src/core/shared-compare.ts): connectors of a tenant with the
 * same dataset share one compare per refresh cycle, and each one's deltalog still ends exactly as
 * its own full compare would leave it, whenever it refreshes, joins or leaves, whatever it sent.
 */

let tables = 0;
let connectors = 0;

async function peopleTable(db: Db): Promise<string> {
  const name = `shared_people_${tables++}`;
  const mysql = db.client.config.client !== 'better-sqlite3';
  await db.raw(
    mysql
      ? `CREATE TABLE ${name} (id INTEGER AUTO_INCREMENT PRIMARY KEY, k VARCHAR(300) COLLATE utf8mb4_bin NULL, a VARCHAR(16) NULL, b INTEGER NULL)`
      : `CREATE TABLE ${name} (id INTEGER PRIMARY KEY AUTOINCREMENT, k VARCHAR(300) NULL, a VARCHAR(16) NULL, b INTEGER NULL)`,
  );
  return name;
}

/** A connector row as saveConnector leaves it, as far as sharing looks (tenant and signature). */
async function register(db: Db, tenant: string, dataset: DatasetDefinition): Promise<string> {
  const key = `${tenant}/shared-${connectors++}`;
  await db('connectors').insert({
    id: key,
    tenant,
    destination_type: 'memory',
    definition: '{}',
    dataset_signature: datasetSignature(dataset),
    created_at: 0,
    updated_at: 0,
  });
  return key;
}

function refresh(db: Db, key: string, dataset: DatasetDefinition, now: number): Promise<TrackedUpdate> {
  return compareForConnector(db, {
    connectorKey: key,
    tenant: key.split('/')[0]!,
    declared: dataset,
    reader: directReader(db, dataset),
    requestedAt: now,
    clock: () => now,
  });
}

/**
 * Deliver what is pending as the sender does: attributes are read at send time, so a row edited
 * since the compare is sent as it is now and its new hash recorded (and, for a shared member,
 * noted for the next shared compare).
 */
async function deliver(db: Db, dataset: DatasetDefinition, ids: string[], now: number) {
  const dialect = db.client.config.client === 'better-sqlite3' ? 'sqlite' : 'mysql';
  const hash = attributeHash(dialect, dataset);
  for (const id of ids) {
    const pending = (await db('deltalog')
      .where({ connector_id: id, in_dataset: true })
      .whereNull('committed_at')
      .select('record_key', 'attr_hash')) as { record_key: string; attr_hash: string }[];
    const sent: { key: string; hash: string }[] = [];
    for (const row of pending) {
      const [current] = (await db
        .raw(`SELECT MIN(${hash.sql}) AS h FROM ?? src WHERE src.k = ?`, [
          ...hash.bindings,
          dataset.table!,
          row.record_key,
        ])
        .then((r: unknown) => (dialect === 'mysql' ? (r as [unknown[]])[0] : r))) as { h: string | null }[];
      if (current?.h && current.h !== row.attr_hash) sent.push({ key: row.record_key, hash: current.h });
    }
    await db.transaction(async (trx) => {
      await recordSentHashes(trx, id, sent, now);
      await trx('deltalog')
        .where({ connector_id: id })
        .whereNull('committed_at')
        .update({ committed_at: now, on_remote: trx.raw('in_dataset') });
    });
  }
}

const keyArb = fc.constantFrom('k1', 'k2', 'k3', 'K1', 'k4', '', null);
const editArb = fc.oneof(
  fc.record({ kind: fc.constant('insert' as const), k: keyArb, a: fc.constantFrom('x', 'y', null) }),
  fc.record({ kind: fc.constant('update' as const), k: keyArb, a: fc.constantFrom('x', 'y', 'z') }),
  fc.record({ kind: fc.constant('delete' as const), k: keyArb }),
);
type Edit = typeof editArb extends fc.Arbitrary<infer T> ? T : never;

async function edit(db: Db, table: string, e: Edit) {
  const byKey = () => (e.k === null ? db(table).whereNull('k') : db(table).where({ k: e.k }));
  if (e.kind === 'insert') return db(table).insert({ k: e.k, a: e.a, b: 1 });
  if (e.kind === 'update') return byKey().update({ a: e.a });
  return byKey().delete();
}

/** Per round, what each of the three shared connectors does: refresh, deliver, both or neither. */
const stepArb = fc.record({
  edits: fc.array(editArb, { maxLength: 6 }),
  refresh: fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }),
  midSendEdits: fc.array(editArb, { maxLength: 2 }),
  deliver: fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }),
});

for (const dialect of dialects) {
  describe(`shared compare on ${dialect}`, () => {
    let t: TestDatabase;
    let db: Db;
    before(async () => {
      t = await createTestDatabase(dialect);
      db = t.db;
    });
    after(() => t.drop());

    test('every member ends as its own full compare would leave it, through random edits, sends and skipped refreshes', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(stepArb, { minLength: 1, maxLength: 6 }),
          fc.boolean(),
          fc.integer({ min: 0, max: 2 }),
          async (steps, followTriggers, lateJoiner) => {
            const table = await peopleTable(db);
            const dataset: DatasetDefinition = {
              table,
              key: 'k',
              attributes: ['a', 'b'],
              ...(followTriggers ? { changes: { source: 'triggers' as const, fullCompareHours: 24 } } : {}),
            };
            // Three members, each with a twin (another tenant, so never shared) that compares in
            // full exactly when its member refreshes and is delivered to alike.
            const members: { key: string; twin: string; joined: boolean }[] = [];
            for (let i = 0; i < 3; i++) {
              const joined = i !== lateJoiner;
              members.push({
                key: joined ? await register(db, 'acme', dataset) : `acme/late-${connectors++}`,
                twin: `twin/${connectors++}`,
                joined,
              });
            }
            let now = 1_000_000;
            for (const [round, step] of steps.entries()) {
              for (const e of step.edits) await edit(db, table, e);
              if (round === 1) {
                // The late one joins: its first refresh with the others applies every shared row.
                const late = members[lateJoiner]!;
                await db('connectors').insert({
                  id: late.key,
                  tenant: 'acme',
                  destination_type: 'memory',
                  definition: '{}',
                  dataset_signature: datasetSignature(dataset),
                  created_at: 0,
                  updated_at: 0,
                });
                late.joined = true;
              }
              now += 1000;
              for (const [i, member] of members.entries()) {
                if (!step.refresh[i] && round > 0) continue;
                await refresh(db, member.key, dataset, now + i);
                await updateDeltalog(db, member.twin, { ...dataset, changes: undefined }, now + i);
                assert.deepEqual(
                  await deltalogOf(db, member.key),
                  await deltalogOf(db, member.twin),
                  `round ${round}, member ${i}`,
                );
              }
              for (const e of step.midSendEdits) await edit(db, table, e);
              for (const [i, member] of members.entries())
                if (step.deliver[i]) await deliver(db, dataset, [member.key, member.twin], now + 500);
            }
            // One last refresh of everyone, after everything: still equal.
            now += 1000;
            for (const [i, member] of members.entries()) {
              await refresh(db, member.key, dataset, now + i);
              await updateDeltalog(db, member.twin, { ...dataset, changes: undefined }, now + i);
              assert.deepEqual(
                await deltalogOf(db, member.key),
                await deltalogOf(db, member.twin),
                `last, member ${i}`,
              );
            }
            for (const member of members) await leaveSharedCompare(db, member.key);
            assert.equal(
              Number((await db('shared_compare_rows').count({ n: '*' }))[0]!.n),
              0,
              'rows dropped',
            );
          },
        ),
        { numRuns: dialect === 'mysql' ? 12 : 30 },
      );
    });

    test('a sent hash the shared compare never saw is checked again when the dataset goes back', async () => {
      const table = await peopleTable(db);
      const dataset = { table, key: 'k', attributes: ['a'] };
      const [one, two] = [await register(db, 'acme', dataset), await register(db, 'acme', dataset)];
      await db(table).insert({ k: 'p1', a: 'old' });
      await refresh(db, one, dataset, 1000);
      await refresh(db, two, dataset, 1000);
      await db(table).where({ k: 'p1' }).update({ a: 'new' }); // edited mid-send: `one` sends "new"
      await deliver(db, dataset, [one, two], 1500);
      await db(table).where({ k: 'p1' }).update({ a: 'old' }); // and back, before any compare saw "new"
      await refresh(db, one, dataset, 2000);
      const [row] = (await db('deltalog').where({ connector_id: one, record_key: 'p1' })) as {
        committed_at: unknown;
      }[];
      assert.equal(row!.committed_at, null, 'p1 must be sent again: the destination holds "new"');
    });

    test('twenty members refreshed at once run one compare; each reports the sharing', async () => {
      const table = await peopleTable(db);
      const dataset = { table, key: 'k', attributes: ['a', 'b'] };
      await db(table).insert(Array.from({ length: 300 }, (_, i) => ({ k: `c${i}`, a: 'x', b: i })));
      const keys: string[] = [];
      for (let i = 0; i < 20; i++) keys.push(await register(db, 'acme', dataset));
      const results = await Promise.all(keys.map((key) => refresh(db, key, dataset, 5000)));
      assert.equal(results.filter((r) => r.compare.shared?.ranCompare).length, 1, 'one compare');
      for (const r of results) {
        assert.equal(r.compare.shared?.connectors, 20);
        assert.equal(r.report.datasetRows, 300);
      }
      for (const key of keys)
        assert.equal(
          Number((await db('deltalog').where({ connector_id: key }).count({ n: '*' }))[0]!.n),
          300,
        );

      // A later cycle compares again, once: 3 changed keys reach every member.
      await db(table).whereIn('k', ['c1', 'c2']).update({ a: 'y' });
      await db(table).where({ k: 'c3' }).delete();
      const again = await Promise.all(keys.map((key) => refresh(db, key, dataset, 6000)));
      assert.equal(again.filter((r) => r.compare.shared?.ranCompare).length, 1);
      for (const key of keys)
        assert.equal(
          Number(
            (await db('deltalog').where({ connector_id: key, updated_at: 6000 }).count({ n: '*' }))[0]!.n,
          ),
          3,
        );
    });

    test('other tenants never share, even with the same dataset', async () => {
      const table = await peopleTable(db);
      const dataset = { table, key: 'k', attributes: ['a'] };
      const mine = await register(db, 'acme', dataset);
      const theirs = await register(db, 'globex', dataset);
      await db(table).insert({ k: 'd1', a: 'x' });
      assert.equal((await refresh(db, mine, dataset, 1000)).compare.shared, undefined);
      assert.equal((await refresh(db, theirs, dataset, 1000)).compare.shared, undefined);
      assert.equal(Number((await db('shared_compares').count({ n: '*' }))[0]!.n) >= 0, true);
      const ours = await register(db, 'acme', dataset);
      assert.equal((await refresh(db, ours, dataset, 2000)).compare.shared?.connectors, 2);
      const compares = (await db('shared_compares').select('tenant')) as { tenant: string }[];
      assert.ok(compares.every((c) => c.tenant === 'acme'));
    });

    test('a connector alone keeps its own compare; one whose dataset changes leaves, and the last one out removes the compare', async () => {
      const table = await peopleTable(db);
      const dataset = { table, key: 'k', attributes: ['a'] };
      await db(table).insert({ k: 'f1', a: 'x' });
      const alone = await register(db, 'solo', dataset);
      assert.equal((await refresh(db, alone, dataset, 1000)).compare.shared, undefined);
      const groups = () => db('shared_compares').where({ tenant: 'solo' }).select('compare_id');
      assert.deepEqual(await groups(), [], 'no shared rows for a connector alone');

      const other = await register(db, 'solo', dataset);
      await refresh(db, other, dataset, 2000);
      await refresh(db, alone, dataset, 2000);
      assert.equal((await groups()).length, 1);
      // `other` now sends another attribute: a dataset of its own, so both are alone again.
      const changed = { ...dataset, attributes: ['a', 'b'] };
      await db('connectors')
        .where({ id: other })
        .update({ dataset_signature: datasetSignature(changed) });
      assert.equal((await refresh(db, other, changed, 3000)).compare.shared, undefined);
      assert.equal((await refresh(db, alone, dataset, 3000)).compare.shared, undefined);
      assert.deepEqual(await groups(), [], 'the compare nobody applies is removed');
      assert.equal(
        Number(
          (await db('shared_compare_members').whereIn('connector_id', [alone, other]).count({ n: '*' }))[0]!
            .n,
        ),
        0,
      );
    });

    test('a compare whose lease ran out under it cannot commit after a later one: its refresh fails, no member skips a row', async () => {
      const table = await peopleTable(db);
      const dataset = { table, key: 'k', attributes: ['a'] };
      const [slow, fast] = [await register(db, 'lease', dataset), await register(db, 'lease', dataset)];
      await db(table).insert({ k: 'g1', a: 'x' });
      let open!: () => void;
      const gate = new Promise<void>((resolve) => (open = resolve));
      const stalled = compareForConnector(db, {
        connectorKey: slow,
        tenant: 'lease',
        declared: dataset,
        // A worker that stalls after taking the lease, before it reads anything.
        reader: {
          dataset,
          read: async (work) => {
            await gate;
            return work(db);
          },
        },
        requestedAt: 1000,
        clock: () => 1000,
      });
      const leased = async () =>
        (await db('shared_compares').where({ tenant: 'lease' }).first('leased_by'))?.leased_by;
      for (let i = 0; i < 100 && !(await leased()); i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(await leased(), 'the stalled refresh holds the lease');
      await db('shared_compares').where({ tenant: 'lease' }).update({ lease_until: 0 }); // it ran out
      await db(table).insert({ k: 'g2', a: 'x' });
      const later = await refresh(db, fast, dataset, 2000);
      assert.equal(later.compare.shared?.ranCompare, true);
      open();
      await assert.rejects(stalled, /a later compare .* committed first/);
      // Retried, the stalled connector catches up with everything.
      await refresh(db, slow, dataset, 3000);
      for (const key of [slow, fast])
        assert.deepEqual(
          (
            (await db('deltalog').where({ connector_id: key, in_dataset: true }).orderBy('record_key')) as {
              record_key: string;
            }[]
          ).map((r) => r.record_key),
          ['g1', 'g2'],
        );
    });

    test('a removed key leaves the shared rows once every member has applied its removal', async () => {
      const table = await peopleTable(db);
      const dataset = { table, key: 'k', attributes: ['a'] };
      const [one, two] = [await register(db, 'trim', dataset), await register(db, 'trim', dataset)];
      await db(table).insert([
        { k: 'h1', a: 'x' },
        { k: 'h2', a: 'x' },
      ]);
      await refresh(db, one, dataset, 1000);
      await refresh(db, two, dataset, 1000);
      await db(table).where({ k: 'h1' }).delete();
      const sharedKeys = async () =>
        (
          (await db('shared_compare_rows')
            .join('shared_compares', 'shared_compares.compare_id', 'shared_compare_rows.compare_id')
            .where('shared_compares.tenant', 'trim')
            .orderBy('record_key')
            .select('record_key')) as { record_key: string }[]
        ).map((r) => r.record_key);
      await refresh(db, one, dataset, 2000);
      assert.deepEqual(await sharedKeys(), ['h1', 'h2'], '`two` has not applied the removal yet');
      await refresh(db, two, dataset, 1500); // served by that compare
      assert.deepEqual(await sharedKeys(), ['h2']);
      for (const key of [one, two])
        assert.equal(
          (await db('deltalog').where({ connector_id: key, record_key: 'h1' }).first())?.in_dataset,
          0,
        );
    });

    test("a member's apply reads only the change, through indexes", async () => {
      const table = await peopleTable(db);
      const dataset = { table, key: 'k', attributes: ['a'] };
      const [one, two] = [await register(db, 'acme', dataset), await register(db, 'acme', dataset)];
      await db(table).insert(Array.from({ length: 200 }, (_, i) => ({ k: `e${i}`, a: 'x' })));
      await refresh(db, one, dataset, 1000);
      await refresh(db, two, dataset, 1000);
      await db(table).where({ k: 'e7' }).update({ a: 'y' });
      await refresh(db, one, dataset, 2000);
      // `two` reuses that compare: its statements touch the shared rows and its deltalog only.
      const statements = await statementsOf(db, () => refresh(db, two, dataset, 1500));
      const apply = statements.filter((q) => /shared_compare_rows/i.test(q.sql) && /deltalog/i.test(q.sql));
      assert.equal(apply.length, 1, apply.map((q) => q.sql).join('\n'));
      assert.ok(!statements.some((q) => q.sql.includes(table)), 'the dataset is not read');
      const plan = await planOf(t, apply[0]!);
      assertIndexed(plan, /\bs\b|shared_compare_rows/, /shared_compare_rows_stamp|range|SEARCH/);
      assertIndexed(plan, /\bdl\b|deltalog/, /PRIMARY|autoindex_deltalog/);
    });
  });
}
