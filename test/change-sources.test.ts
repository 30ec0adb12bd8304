import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { sourceIdOf } from '../src/core/change-source';
import {
  changeSourceMarker,
  updateFollowingChanges,
  forgetTracking,
  type TrackedUpdate,
} from '../src/core/change-tracking';
import { directReader, type DatasetDefinition, type DatasetReader } from '../src/core/dataset';
import { datasetKeyCount, updateDeltalog } from '../src/core/deltalog';
import type { Db } from '../src/db';
import { createTestDatabase, dialects, type TestDatabase } from './helpers/databases';
import { deltalogOf } from './helpers/deltalog-rows';
import { assertIndexed, planOf, statementsOf } from './helpers/plans';
import { startPrivateMariaDb } from './helpers/private-mariadb';

/**
 * Trigger change sources (src/core/change-source.ts, src/core/change-tracking.ts): the deltalog
 * updated from the touched keys only ends exactly as the full compare leaves it, through random
 * edits of a table dataset and of a SELECT over two tables; and the safety net compares in full
 * whenever the journal cannot prove it saw every change, counting what it missed as drift.
 */

const HOUR = 3600_000;

interface Fixture {
  people: string;
  orders: string;
  table: DatasetDefinition;
  joined: DatasetDefinition;
  /** The same two datasets, followed by watermark columns and tombstone tables instead. */
  stampedTable: DatasetDefinition;
  stampedJoined: DatasetDefinition;
  /** The same two datasets, followed through the server's binary log (MariaDB only). */
  loggedTable: DatasetDefinition;
  loggedJoined: DatasetDefinition;
  /** The stamp the next write gets (a batch job's clock). */
  clock: { now: number };
}

let fixtureCounter = 0;

/** Fresh base tables: `people` (no key constraint, so bad and duplicate keys can occur) and `orders`. */
async function fixture(db: Db): Promise<Fixture> {
  const n = fixtureCounter++;
  const people = `people_${n}`;
  const orders = `orders_${n}`;
  // Keys compared byte for byte, as change sources require (the test database's default is _ci).
  // Every table has a stamp (the watermark), and each a tombstone table for hard deletions.
  // (The index is made in the CREATE: MariaDB 10.11 failed a separate ALTER … ADD INDEX here
  // now and then with "Internal error: rename index to add".)
  const mysql = db.client.config.client !== 'better-sqlite3';
  const columns: Record<string, string> = {
    [people]: 'a VARCHAR(16) NULL, b INTEGER NULL,',
    [orders]: 'amount INTEGER NOT NULL,',
  };
  for (const table of [people, orders, `${people}_gone`, `${orders}_gone`])
    await db.raw(
      mysql
        ? `CREATE TABLE ${table} (id INTEGER AUTO_INCREMENT PRIMARY KEY, k VARCHAR(300) COLLATE utf8mb4_bin NULL, ${columns[table] ?? ''} stamp INTEGER NOT NULL DEFAULT 0, INDEX (stamp))`
        : `CREATE TABLE ${table} (id INTEGER PRIMARY KEY AUTOINCREMENT, k VARCHAR(300) NULL, ${columns[table] ?? ''} stamp INTEGER NOT NULL DEFAULT 0)`,
    );
  if (!mysql)
    for (const table of [people, orders]) await db.raw(`CREATE INDEX ${table}_stamp ON ${table} (stamp)`);
  const changes = { source: 'triggers' as const, fullCompareHours: 24 };
  const stamped = (...tables: string[]) => ({
    source: 'watermark' as const,
    fullCompareHours: 24,
    tables: tables.flatMap((table) => [
      { table, key: 'k', column: 'stamp' },
      { table: `${table}_gone`, key: 'k', column: 'stamp' },
    ]),
  });
  const joinedSql = `SELECT p.k AS k, p.a AS a, (SELECT COUNT(*) FROM ${orders} o WHERE o.k = p.k) AS orders FROM ${people} p`;
  return {
    people,
    orders,
    clock: { now: 0 },
    stampedTable: { table: people, key: 'k', attributes: ['a', 'b'], changes: stamped(people) },
    stampedJoined: {
      sql: joinedSql,
      key: 'k',
      attributes: ['a', 'orders'],
      changes: stamped(people, orders),
    },
    table: { table: people, key: 'k', attributes: ['a', 'b'], changes },
    loggedTable: {
      table: people,
      key: 'k',
      attributes: ['a', 'b'],
      changes: { ...changes, source: 'binlog' },
    },
    loggedJoined: {
      sql: joinedSql,
      key: 'k',
      attributes: ['a', 'orders'],
      changes: {
        source: 'binlog',
        fullCompareHours: 24,
        tables: [
          { table: people, key: 'k' },
          { table: orders, key: 'k' },
        ],
      },
    },
    // A person with their order count: membership from `people`, an attribute from `orders`.
    joined: {
      sql: `SELECT p.k AS k, p.a AS a, (SELECT COUNT(*) FROM ${orders} o WHERE o.k = p.k) AS orders FROM ${people} p`,
      key: 'k',
      attributes: ['a', 'orders'],
      changes: {
        ...changes,
        tables: [
          { table: people, key: 'k' },
          { table: orders, key: 'k' },
        ],
      },
    },
  };
}

/** Deliver everything pending (both connectors alike), so the next round starts from a synced list. */
async function deliverAll(db: Db, connectorIds: string[], now: number) {
  await db('deltalog')
    .whereIn('connector_id', connectorIds)
    .whereNull('committed_at')
    .update({ committed_at: now, on_remote: db.raw('in_dataset') });
}

function follow(db: Db, connectorId: string, dataset: DatasetDefinition, now: number, mustCompare?: string) {
  return updateFollowingChanges(db, connectorId, dataset, directReader(db, dataset), now, mustCompare);
}

async function triggersOn(db: Db, table: string): Promise<string[]> {
  if (db.client.config.client === 'better-sqlite3') {
    const rows = (await db.raw("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?", [
      table,
    ])) as { name: string }[];
    return rows.map((r) => r.name).sort();
  }
  const [rows] = (await db.raw(
    'SELECT TRIGGER_NAME AS name FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = ?',
    [table],
  )) as [{ name: string }[]];
  return rows.map((r) => r.name).sort();
}

// Keys: a handful that collide often, case variants, an empty one, NULL and one too long to store.
const keyArb = fc.constantFrom('k1', 'k2', 'k3', 'K1', 'k4', 'k5', '', null, 'x'.repeat(260));
const editArb = fc.oneof(
  fc.record({
    kind: fc.constant('insert' as const),
    k: keyArb,
    a: fc.constantFrom('x', 'y', null),
    b: fc.option(fc.integer({ min: 0, max: 2 })),
  }),
  fc.record({ kind: fc.constant('update' as const), k: keyArb, a: fc.constantFrom('x', 'z', null) }),
  fc.record({ kind: fc.constant('rekey' as const), k: keyArb, to: keyArb }),
  fc.record({ kind: fc.constant('delete' as const), k: keyArb }),
  fc.record({ kind: fc.constant('order' as const), k: keyArb, amount: fc.integer({ min: 1, max: 9 }) }),
  fc.record({ kind: fc.constant('unorder' as const), k: keyArb }),
);
type Edit = typeof editArb extends fc.Arbitrary<infer T> ? T : never;

/** An edit as a batch job that keeps watermarks would make it: stamped, deletions tombstoned. */
async function apply(db: Db, f: Fixture, edit: Edit) {
  const stamp = ++f.clock.now;
  const byKey = (table: string, k: string | null) =>
    k === null ? db(table).whereNull('k') : db(table).where({ k });
  const tombstone = async (table: string, k: string | null) => {
    if ((await byKey(table, k).first()) !== undefined) await db(`${table}_gone`).insert({ k, stamp });
  };
  switch (edit.kind) {
    case 'insert':
      return db(f.people).insert({ k: edit.k, a: edit.a, b: edit.b, stamp });
    case 'update':
      return byKey(f.people, edit.k).update({ a: edit.a, stamp });
    case 'rekey':
      await tombstone(f.people, edit.k);
      return byKey(f.people, edit.k).update({ k: edit.to, stamp });
    case 'delete':
      await tombstone(f.people, edit.k);
      return byKey(f.people, edit.k).delete();
    case 'order':
      return db(f.orders).insert({ k: edit.k, amount: edit.amount, stamp });
    case 'unorder':
      await tombstone(f.orders, edit.k);
      return byKey(f.orders, edit.k).delete();
  }
}

for (const dialect of dialects) {
  describe(`change sources on ${dialect}`, () => {
    let t: TestDatabase;
    let db: Db;
    let connectorCounter = 0;
    const connector = () => `default/cs-${connectorCounter++}`;
    /**
     * A twin connector on the same dataset that always compares in full: `check(now)` brings it up
     * to date and asserts that connector `id`'s deltalog equals the twin's.
     */
    const checkAgainstTwin = (id: string, dataset: DatasetDefinition) => {
      const twin = connector();
      return async (now: number) => {
        await updateDeltalog(db, twin, { ...dataset, changes: undefined }, now);
        assert.deepEqual(await deltalogOf(db, id), await deltalogOf(db, twin));
      };
    };

    before(async () => {
      t = await createTestDatabase(dialect);
      db = t.db;
    });
    after(() => t.drop());

    test('incremental and full compare leave identical deltalogs through random edits', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.array(editArb, { maxLength: 8 }), { minLength: 1, maxLength: 6 }),
          async (rounds) => {
            const f = await fixture(db);
            const datasets = [f.table, f.joined, f.stampedTable, f.stampedJoined];
            if (dialect === 'mysql') datasets.push(f.loggedTable, f.loggedJoined);
            const pairs = datasets.map((dataset) => ({
              dataset,
              followed: connector(),
              full: connector(),
            }));
            let now = 1_000_000;
            for (const [round, edits] of [[] as Edit[], ...rounds].entries()) {
              for (const edit of edits) await apply(db, f, edit);
              now += 1000;
              for (const { dataset, followed, full } of pairs) {
                const tracked = await follow(db, followed, dataset, now);
                await updateDeltalog(db, full, dataset, now);
                assert.equal(
                  tracked.compare.mode,
                  round === 0 ? 'full' : 'incremental',
                  tracked.compare.reason,
                );
                assert.deepEqual(
                  await deltalogOf(db, followed),
                  await deltalogOf(db, full),
                  `round ${round}`,
                );
                // The dataset size an incremental update reports is carried forward exactly.
                if (tracked.compare.mode === 'incremental')
                  assert.equal(
                    tracked.report.datasetRows - badRowsOf(tracked),
                    await datasetKeyCount(db, followed),
                  );
              }
              if (round % 2 === 1)
                await deliverAll(
                  db,
                  pairs.flatMap((p) => [p.followed, p.full]),
                  now,
                );
            }
            for (const { followed } of pairs) await forgetTracking(db, followed);
            assert.deepEqual(await triggersOn(db, f.people), [], 'triggers removed with the last follower');
          },
        ),
        { numRuns: dialect === 'mysql' ? 15 : 40 },
      );
    });

    test('the dataset size an incremental update carries forward counts keys new, back, changed and gone', async () => {
      const f = await fixture(db);
      const id = connector();
      await db(f.people).insert(['s1', 's2', 's3'].map((k) => ({ k, a: 'x' })));
      await follow(db, id, f.table, 1000);
      await db(f.people).where({ k: 's1' }).delete();
      assert.equal((await follow(db, id, f.table, 2000)).report.datasetRows, 2);
      await db(f.people).insert([
        { k: 's1', a: 'y' }, // back
        { k: 's4', a: 'x' }, // new
      ]);
      await db(f.people).where({ k: 's2' }).update({ a: 'z' }); // changed
      await db(f.people).where({ k: 's3' }).delete(); // gone
      const next = await follow(db, id, f.table, 3000);
      assert.equal(next.compare.mode, 'incremental');
      assert.equal(next.compare.touchedKeys, 4);
      assert.equal(next.report.datasetRows, 3);
      assert.equal(await datasetKeyCount(db, id), 3);
    });

    test('triggers dropped behind its back: the next refresh compares in full and counts the drift', async () => {
      const f = await fixture(db);
      const id = connector();
      await db(f.people).insert([
        { k: 'a1', a: 'x' },
        { k: 'a2', a: 'x' },
      ]);
      assert.equal(
        (await follow(db, id, f.table, 1000)).compare.reason,
        'first compare with the change source',
      );
      assert.equal((await triggersOn(db, f.people)).length, 3);
      await db(f.people).where({ k: 'a1' }).update({ a: 'y' });
      const journalled = await follow(db, id, f.table, 2000);
      assert.deepEqual(journalled.compare, {
        mode: 'incremental',
        reason: 'keys touched since the last refresh',
        touchedKeys: 1,
      });

      for (const name of await triggersOn(db, f.people)) await db.raw(`DROP TRIGGER ${name}`);
      await db(f.people).where({ k: 'a2' }).update({ a: 'z' }); // not journalled
      await db(f.people).insert({ k: 'a3', a: 'x' }); // not journalled
      const repaired = await follow(db, id, f.table, 3000);
      assert.equal(repaired.compare.mode, 'full');
      assert.match(repaired.compare.reason, /triggers on .* were missing/);
      assert.equal(repaired.compare.drift, 2);
      assert.equal((await triggersOn(db, f.people)).length, 3, 'reinstalled');

      await db(f.people).where({ k: 'a3' }).delete();
      const next = await follow(db, id, f.table, 4000);
      assert.equal(next.compare.mode, 'incremental');
      // Membership and hashes as a fresh full compare sees them (a3 stays behind as removed).
      const twin = connector();
      await updateDeltalog(db, twin, f.table, 4000);
      const present = async (c: string) =>
        (await deltalogOf(db, c)).filter((r) => r[1] === '1').map((r) => r.slice(0, 3));
      assert.deepEqual(await present(id), await present(twin));
    });

    test('journal rows deleted by hand: a follower that still needed them compares in full', async () => {
      const f = await fixture(db);
      const [first, second] = [connector(), connector()];
      await db(f.people).insert({ k: 'b1', a: 'x' });
      await follow(db, first, f.table, 1000);
      await follow(db, second, f.table, 1000);
      await db(f.people).insert({ k: 'b2', a: 'x' });
      await follow(db, first, f.table, 2000); // claims b2's row; `second` still needs it
      const left = await db('change_journal')
        .where({ source_id: sourceIdOf({ table: f.people, key: 'k' }) })
        .delete();
      assert.ok(left > 0);
      const repaired = await follow(db, second, f.table, 3000);
      assert.equal(repaired.compare.mode, 'full');
      assert.match(repaired.compare.reason, /went missing/);
      assert.equal(repaired.compare.drift, 1);
      assert.equal((await follow(db, second, f.table, 4000)).compare.mode, 'incremental');
    });

    test('the safety net compares in full on its cadence; with every write journalled it finds no drift', async () => {
      const f = await fixture(db);
      const id = connector();
      const dataset = { ...f.table, changes: { source: 'triggers' as const, fullCompareHours: 1 } };
      await db(f.people).insert({ k: 'c1', a: 'x' });
      await follow(db, id, dataset, 0);
      await db(f.people).insert({ k: 'c2', a: 'x' });
      assert.equal((await follow(db, id, dataset, 0.5 * HOUR)).compare.mode, 'incremental');
      await db(f.people).where({ k: 'c1' }).delete();
      const net = await follow(db, id, dataset, 1.5 * HOUR);
      assert.deepEqual(net.compare, {
        mode: 'full',
        reason: "the safety net's full compare (every 1 h)",
        drift: 0,
      });
      assert.equal(
        Number((await db('deltalog').where({ connector_id: id, record_key: 'c1' }).first()).in_dataset),
        0,
      );
    });

    // SQLite fires delete triggers for every DELETE (its truncate optimisation is off while a
    // table has triggers); MySQL's TRUNCATE TABLE fires none.
    // The binary log records a TRUNCATE as a statement, with no rows: the same for that source.
    if (dialect === 'mysql')
      for (const source of ['triggers', 'binlog'] as const)
        test(`a TRUNCATE, which fires no triggers and logs no rows, is found as drift by the safety net (${source})`, async () => {
          const f = await fixture(db);
          const id = connector();
          const dataset = { ...f.table, changes: { source, fullCompareHours: 1 } };
          await db(f.people).insert([
            { k: 'd1', a: 'x' },
            { k: 'd2', a: 'x' },
          ]);
          await follow(db, id, dataset, 0);
          await db.raw(`TRUNCATE TABLE ${f.people}`);
          assert.deepEqual((await follow(db, id, dataset, 0.5 * HOUR)).compare.touchedKeys, 0);
          const net = await follow(db, id, dataset, 2 * HOUR);
          assert.equal(net.compare.mode, 'full');
          assert.equal(net.compare.drift, 2);
        });

    test('switching a dataset to the full compare and back loses no change', async () => {
      const f = await fixture(db);
      const id = connector();
      const plain = { ...f.table, changes: undefined };
      const check = checkAgainstTwin(id, plain);
      await db(f.people).insert([
        { k: 'e1', a: 'x' },
        { k: 'e2', a: 'x' },
      ]);
      await follow(db, id, f.table, 1000);
      await check(1000);
      await db(f.people).insert({ k: 'e3', a: 'x' });
      const away = await follow(db, id, plain, 2000);
      assert.deepEqual(away.compare, { mode: 'full', reason: 'the dataset declares no change source' });
      await check(2000);
      assert.deepEqual(await triggersOn(db, f.people), [], 'no follower left: triggers dropped');
      assert.equal(
        await db('change_journal')
          .where({ source_id: sourceIdOf({ table: f.people, key: 'k' }) })
          .count({ n: '*' })
          .first()
          .then((r) => Number(r?.n)),
        0,
      );
      await db(f.people).where({ k: 'e1' }).update({ a: 'y' });
      const back = await follow(db, id, f.table, 3000);
      assert.equal(back.compare.mode, 'full');
      await check(3000);
      await db(f.people).where({ k: 'e2' }).delete();
      await db(f.people).insert({ k: 'e4', a: 'x' });
      assert.equal((await follow(db, id, f.table, 4000)).compare.mode, 'incremental');
      await check(4000);
    });

    test('switching between triggers and a watermark loses no change', async () => {
      const f = await fixture(db);
      const id = connector();
      const check = checkAgainstTwin(id, f.table);
      const edit = (k: string) => apply(db, f, { kind: 'insert', k, a: 'x', b: null });
      await edit('s1');
      await follow(db, id, f.table, 1000);
      await check(1000);
      await edit('s2');
      const toWatermark = await follow(db, id, f.stampedTable, 2000);
      assert.deepEqual(toWatermark.compare, { mode: 'full', reason: "the dataset's definition changed" });
      await check(2000);
      assert.deepEqual(await triggersOn(db, f.people), [], 'the triggers went with their last follower');
      await edit('s3');
      await apply(db, f, { kind: 'delete', k: 's1' });
      assert.equal((await follow(db, id, f.stampedTable, 3000)).compare.mode, 'incremental');
      await check(3000);
      await edit('s4');
      assert.equal((await follow(db, id, f.table, 4000)).compare.mode, 'full');
      await check(4000);
      await apply(db, f, { kind: 'update', k: 's2', a: 'z' });
      assert.equal((await follow(db, id, f.table, 5000)).compare.mode, 'incremental');
      await check(5000);
    });

    if (dialect === 'mysql') {
      test('switching between triggers and the binary log loses no change', async () => {
        const f = await fixture(db);
        const id = connector();
        const check = checkAgainstTwin(id, f.table);
        const edit = (k: string) => apply(db, f, { kind: 'insert', k, a: 'x', b: null });
        await edit('l1');
        await follow(db, id, f.table, 1000);
        await check(1000);
        await edit('l2');
        const toLog = await follow(db, id, f.loggedTable, 2000);
        assert.deepEqual(toLog.compare, { mode: 'full', reason: "the dataset's definition changed" });
        await check(2000);
        assert.deepEqual(await triggersOn(db, f.people), [], 'no triggers: the binary log is read instead');
        await apply(db, f, { kind: 'rekey', k: 'l1', to: 'l9' });
        await apply(db, f, { kind: 'update', k: 'l2', a: 'z' });
        const logged = await follow(db, id, f.loggedTable, 3000);
        // l1 left, l9 came, l2 changed: both keys of the rekeyed row, from the row images.
        assert.deepEqual(logged.compare, {
          mode: 'incremental',
          reason: 'keys touched since the last refresh',
          touchedKeys: 3,
        });
        await check(3000);
        await edit('l3');
        assert.equal((await follow(db, id, f.table, 4000)).compare.mode, 'full');
        await check(4000);
        await apply(db, f, { kind: 'delete', k: 'l3' });
        assert.equal((await follow(db, id, f.table, 5000)).compare.mode, 'incremental');
        await check(5000);
      });

      test('a purged binary log makes the next refresh compare in full and count what it missed', async () => {
        const f = await fixture(db);
        const id = connector();
        const check = checkAgainstTwin(id, f.loggedTable);
        await db(f.people).insert({ k: 'p1', a: 'x' });
        await follow(db, id, f.loggedTable, 1000);
        await check(1000);
        await db(f.people).insert({ k: 'p2', a: 'x' });
        // The log the source stopped in is purged before the source read what was written there.
        const [[status]] = (await db.raw('SHOW MASTER STATUS')) as [[{ File: string }]];
        const oldest = async () =>
          ((await db.raw('SHOW BINARY LOGS')) as [[{ Log_name: string }]])[0][0].Log_name;
        // MariaDB keeps a log until its binlog checkpoint has passed it: rotate and purge until it goes.
        for (let i = 0; i < 50 && (await oldest()) <= status.File; i++) {
          await db.raw('FLUSH BINARY LOGS');
          const [[current]] = (await db.raw('SHOW MASTER STATUS')) as [[{ File: string }]];
          await db.raw(`PURGE BINARY LOGS TO '${current.File}'`);
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        assert.ok((await oldest()) > status.File, 'the old log is gone');
        const repaired = await follow(db, id, f.loggedTable, 2000);
        assert.equal(repaired.compare.mode, 'full');
        assert.match(repaired.compare.reason, /binary log .* was purged/);
        assert.equal(repaired.compare.drift, 1, 'p2 was only in the purged log');
        await check(2000);
        await db(f.people).where({ k: 'p1' }).delete();
        assert.equal((await follow(db, id, f.loggedTable, 3000)).compare.mode, 'incremental');
        await check(3000);
      });

      test("live mode's marker reads the binary log: it moves with a write to the table, not with other tables or the refresh's claim", async () => {
        const f = await fixture(db);
        const id = connector();
        await db(f.people).insert({ k: 'm1', a: 'x' });
        await follow(db, id, f.loggedTable, 1000);
        const first = await changeSourceMarker(db, f.loggedTable, null, 1000);
        await db(f.orders).insert({ k: 'm1', amount: 1 }); // another table
        assert.equal(await changeSourceMarker(db, f.loggedTable, first!, 1100), first);
        await db(f.people).insert({ k: 'm2', a: 'x' });
        const moved = await changeSourceMarker(db, f.loggedTable, first!, 1200);
        assert.notEqual(moved, first);
        const claimed = await follow(db, id, f.loggedTable, 2000);
        assert.equal(claimed.compare.touchedKeys, 1);
        assert.equal(
          await changeSourceMarker(db, f.loggedTable, moved!, 2100),
          moved,
          'the claim moves nothing',
        );
      });

      test('a server without a row-format binary log is refused with what to set', async () => {
        // A MariaDB of this test's own, started without a binary log (--no-defaults).
        const server = await startPrivateMariaDb();
        try {
          const bare = await createTestDatabase('mysql', { mysqlServer: server.url });
          try {
            const f = await fixture(bare.db);
            await assert.rejects(
              follow(bare.db, connector(), f.loggedTable, 1000),
              /needs log_bin=ON, binlog_format=ROW and binlog_row_image=FULL on the server \(it has log_bin=0/,
            );
          } finally {
            await bare.drop();
          }
        } finally {
          await server.stop();
        }
      });
    } else {
      test('the binary-log source on SQLite is refused with the reason', async () => {
        const f = await fixture(db);
        await assert.rejects(follow(db, connector(), f.loggedTable, 1000), /needs MySQL or MariaDB/);
      });
    }

    test('a changed dataset definition or an interrupted first push compares in full', async () => {
      const f = await fixture(db);
      const id = connector();
      await db(f.people).insert({ k: 'g1', a: 'x', b: 1 });
      await follow(db, id, f.table, 1000);
      const narrower = { ...f.table, attributes: ['a'] };
      assert.equal((await follow(db, id, narrower, 2000)).compare.reason, "the dataset's definition changed");
      assert.equal((await follow(db, id, narrower, 3000)).compare.mode, 'incremental');
      assert.equal(
        (await follow(db, id, narrower, 4000, '3 keys to re-check')).compare.reason,
        '3 keys to re-check',
      );
    });

    test("an incremental update's statements reach the touched keys through indexes, never by a scan", async () => {
      const table = `indexed_${fixtureCounter++}`;
      await db.schema.createTable(table, (tb) => {
        const key = tb.string('k', 64).primary();
        if (dialect === 'mysql') key.collate('utf8mb4_bin');
        tb.string('a', 16).nullable();
      });
      const rows = Array.from({ length: 20_000 }, (_, i) => ({
        k: `p${String(i).padStart(6, '0')}`,
        a: 'x',
      }));
      for (let i = 0; i < rows.length; i += 500) await db(table).insert(rows.slice(i, i + 500));
      const dataset: DatasetDefinition = {
        table,
        key: 'k',
        attributes: ['a'],
        changes: { source: 'triggers', fullCompareHours: 24 },
      };
      const id = connector();
      await follow(db, id, dataset, 1000);
      // Another source's unapplied changes: the journal is not small enough to scan cheaply.
      const others = Array.from({ length: 20_000 }, (_, i) => ({
        source_id: 'another',
        record_key: `o${i}`,
      }));
      for (let i = 0; i < others.length; i += 500)
        await db('change_journal').insert(others.slice(i, i + 500));
      if (dialect === 'mysql') await db.raw('ANALYZE TABLE change_journal');
      await db(table).whereIn('k', ['p000010', 'p010000']).update({ a: 'y' });
      await db(table).where({ k: 'p000020' }).delete();
      await db(table).insert({ k: 'p999999', a: 'x' });
      let result: TrackedUpdate | undefined;
      const statements = await statementsOf(db, async () => (result = await follow(db, id, dataset, 2000)));
      assert.equal(result?.compare.touchedKeys, 4);
      const reads = statements.filter((q) => /\b(deltalog|change_journal|indexed_)/.test(q.sql));
      assert.ok(reads.length >= 5, `statements seen: ${reads.length}`);
      // The statements read the touched keys (the journal rows they consume, the keys that left)
      // from temporary tables the update made on its own connection: explain them on one
      // connection that has them too, holding the same keys.
      const unclaimed = `deltasync_unclaimed_${sourceIdOf({ table, key: 'k' })}`;
      const key = dialect === 'mysql' ? 'VARCHAR(255) COLLATE utf8mb4_bin' : 'TEXT';
      const temporaries: Record<string, string> = {
        deltasync_touched: `record_key ${key} NOT NULL PRIMARY KEY`,
        [unclaimed]: `id INTEGER NOT NULL PRIMARY KEY, record_key ${key} NULL`,
        ...(dialect === 'mysql'
          ? { deltasync_gone: `record_key ${key} NOT NULL PRIMARY KEY, back TINYINT NOT NULL DEFAULT 0` }
          : {}),
      };
      const temporary = dialect === 'mysql' ? 'TEMPORARY' : 'TEMP';
      const plans = await db.transaction(async (trx) => {
        for (const [name, columns] of Object.entries(temporaries))
          await trx.raw(`CREATE ${temporary} TABLE ${name} (${columns})`);
        const touched = ['p000010', 'p010000', 'p000020', 'p999999'];
        await trx('deltasync_touched').insert(touched.map((record_key) => ({ record_key })));
        await trx(unclaimed).insert(touched.map((record_key, i) => ({ id: i + 1, record_key })));
        const found = [];
        for (const q of reads) found.push(await planOf({ db: trx, dialect }, q));
        for (const name of Object.keys(temporaries))
          await trx.raw(`DROP ${dialect === 'mysql' ? 'TEMPORARY ' : ''}TABLE ${name}`);
        return found;
      });
      for (const plan of plans) {
        // Each table by the index that bounds the work by the touched keys (or the source's batches).
        const bounded: [RegExp, RegExp][] = [
          [/\b(src|indexed_\d+)\b/, /\(k=\?\)|key=PRIMARY/],
          [/\b(dl|deltalog)\b/, /record_key=\?|key=PRIMARY/],
          [
            /\bchange_journal\b/,
            /change_journal_batch \(source_id=\? AND batch|INTEGER PRIMARY KEY|key=(change_journal_batch|PRIMARY)/,
          ],
        ];
        for (const [name, index] of bounded)
          if (plan.some((line) => name.test(line) && !/^<(derived|subquery)/.test(line)))
            assertIndexed(plan, name, index);
      }
    });

    test('a key column compared without case is refused with the reason, before any trigger exists', async () => {
      const table = `caseless_${fixtureCounter++}`;
      await db.raw(
        dialect === 'mysql'
          ? `CREATE TABLE ${table} (k VARCHAR(64) COLLATE utf8mb4_general_ci PRIMARY KEY, a VARCHAR(8))`
          : `CREATE TABLE ${table} (k TEXT COLLATE NOCASE PRIMARY KEY, a TEXT)`,
      );
      const dataset: DatasetDefinition = {
        table,
        key: 'k',
        attributes: ['a'],
        changes: { source: 'triggers', fullCompareHours: 24 },
      };
      await assert.rejects(follow(db, connector(), dataset, 1000), {
        name: 'ChangeSourceError',
        message: new RegExp(
          `${table}\\.k is compared with collation (utf8mb4_general_ci|NOCASE).*byte for byte`,
        ),
      });
      assert.deepEqual(await triggersOn(db, table), []);
    });

    test('a watermark source re-reads the last interval, so a row that commits late with an older stamp is not missed', async () => {
      const f = await fixture(db);
      const id = connector();
      const check = checkAgainstTwin(id, f.stampedTable);
      await db(f.people).insert({ k: 'w1', a: 'x', stamp: 10 });
      assert.equal((await follow(db, id, f.stampedTable, 1000)).compare.mode, 'full');
      await check(1000);
      await db(f.people).insert([
        { k: 'w2', a: 'x', stamp: 11 },
        { k: 'w3', a: 'x', stamp: 12 },
      ]);
      assert.equal((await follow(db, id, f.stampedTable, 2000)).compare.touchedKeys, 2);
      await check(2000);
      // A transaction that stamped its row 11 commits only now, after the refresh read up to 12.
      await db(f.people).insert({ k: 'w-late', a: 'x', stamp: 11 });
      const next = await follow(db, id, f.stampedTable, 3000);
      assert.equal(next.compare.mode, 'incremental');
      assert.equal(next.compare.touchedKeys, 3, 'the interval (10, 12] read again, with the late row');
      await check(3000);
    });

    test('watermarks that go backwards (rows re-stamped lower, a restore) make the next refresh compare in full', async () => {
      const f = await fixture(db);
      const id = connector();
      await db(f.people).insert([
        { k: 'v1', a: 'x', stamp: 5 },
        { k: 'v2', a: 'x', stamp: 6 },
      ]);
      await follow(db, id, f.stampedTable, 1000);
      await db(f.people).where({ k: 'v2' }).delete(); // a deletion is not going backwards…
      await db(`${f.people}_gone`).insert({ k: 'v2', stamp: 7 });
      assert.equal((await follow(db, id, f.stampedTable, 2000)).compare.mode, 'incremental');
      await db(f.people).update({ stamp: 1, a: 'restored' }); // …a restore from an older backup is
      await db(`${f.people}_gone`).delete();
      const after = await follow(db, id, f.stampedTable, 3000);
      assert.equal(after.compare.mode, 'full');
      assert.match(after.compare.reason, /the watermarks went backwards/);
      assert.equal(after.compare.drift, 1, 'v1 restored with other attributes, which no stamp announced');
    });

    test("a follower's first compare holds the journal: others trimming meanwhile cannot lose it a change", async () => {
      const f = await fixture(db);
      const [a, c] = [connector(), connector()];
      await db(f.people).insert({ k: 'r1', a: 'x' });
      await follow(db, a, f.table, 1000);
      // `c` starts following: it claims, then compares. Right after its compare read the dataset,
      // r1 changes and `a` refreshes (claiming that change and trimming what it applied).
      const racing: DatasetReader = {
        dataset: f.table,
        read: async (work) => {
          const result = await work(db);
          if (!raced) {
            raced = true;
            await db(f.people).where({ k: 'r1' }).update({ a: 'changed' });
            await follow(db, a, f.table, 2000);
          }
          return result;
        },
      };
      let raced = false;
      const first = await updateFollowingChanges(db, c, f.table, racing, 2000);
      assert.equal(first.compare.mode, 'full');
      const next = await follow(db, c, f.table, 3000);
      assert.equal(next.compare.mode, 'incremental');
      assert.equal(next.compare.touchedKeys, 1, "r1's change reaches `c` too");
      const twin = connector();
      await updateDeltalog(db, twin, f.table, 3000);
      const hashes = async (id: string) => (await deltalogOf(db, id)).map((r) => r.slice(0, 3));
      assert.deepEqual(await hashes(c), await hashes(twin));
    });

    test('a view cannot be followed by triggers: the error names it and says to list its base tables', async () => {
      const f = await fixture(db);
      const view = `${f.people}_view`;
      await db.raw(`CREATE VIEW ${view} AS SELECT k, a, b FROM ${f.people}`);
      const dataset: DatasetDefinition = { ...f.table, table: view };
      await assert.rejects(follow(db, connector(), dataset, 1000), (error: Error) => {
        assert.equal(error.name, 'ChangeSourceError');
        assert.match(error.message, new RegExp(view));
        assert.match(error.message, /a view has no triggers: name its base tables in `changes.tables`/);
        return true;
      });
      // Listing the base table instead works.
      const listed = await follow(
        db,
        connector(),
        {
          ...dataset,
          changes: { source: 'triggers', fullCompareHours: 24, tables: [{ table: f.people, key: 'k' }] },
        },
        1000,
      );
      assert.equal(listed.compare.mode, 'full');
    });

    test('a refresh that dies after claiming the journal, before applying it, loses nothing: the next one applies it', async () => {
      const f = await fixture(db);
      const id = connector();
      const check = checkAgainstTwin(id, f.table);
      await db(f.people).insert({ k: 'x1', a: 'x' });
      await follow(db, id, f.table, 1000);
      await check(1000);
      await db(f.people).insert({ k: 'x2', a: 'x' });
      await db(f.people).where({ k: 'x1' }).update({ a: 'y' });
      // The worker dies once the journal is claimed, before its update reads anything.
      const dying: DatasetReader = {
        dataset: f.table,
        read: () => Promise.reject(new Error('worker killed')),
      };
      await assert.rejects(updateFollowingChanges(db, id, f.table, dying, 2000), /worker killed/);
      await db(f.people).insert({ k: 'x3', a: 'x' });
      const next = await follow(db, id, f.table, 3000);
      assert.deepEqual(next.compare, {
        mode: 'incremental',
        reason: 'keys touched since the last refresh',
        touchedKeys: 3,
      });
      await check(3000);
    });

    test('the journal is trimmed to what every follower has applied', async () => {
      const f = await fixture(db);
      const [first, second] = [connector(), connector()];
      const source = sourceIdOf({ table: f.people, key: 'k' });
      const journal = async () =>
        Number((await db('change_journal').where({ source_id: source }).count({ n: '*' }))[0]!.n);
      await follow(db, first, f.table, 1000);
      await follow(db, second, f.table, 1000);
      await db(f.people).insert([
        { k: 'h1', a: 'x' },
        { k: 'h2', a: 'x' },
      ]);
      await follow(db, first, f.table, 2000);
      assert.equal(await journal(), 2, '`second` has not applied them yet');
      await follow(db, second, f.table, 2000);
      assert.equal(await journal(), 0);
    });

    const journalRows = async (source: string) =>
      Number((await db('change_journal').where({ source_id: source }).count({ n: '*' }))[0]!.n);

    test("a source's only follower consumes the journal rows it applies, without claiming them first", async () => {
      const f = await fixture(db);
      const id = connector();
      const check = checkAgainstTwin(id, f.table);
      const source = sourceIdOf({ table: f.people, key: 'k' });
      await follow(db, id, f.table, 1000);
      await check(1000);
      await db(f.people).insert([
        { k: 'c1', a: 'x' },
        { k: 'c2', a: 'x' },
      ]);
      await db(f.people).where({ k: 'c1' }).update({ a: 'y' });
      assert.equal(await journalRows(source), 3);
      const next = await follow(db, id, f.table, 2000);
      assert.equal(next.compare.mode, 'incremental');
      assert.equal(next.compare.touchedKeys, 2);
      await check(2000);
      assert.equal(await journalRows(source), 0, 'the rows it applied are gone');
      const state = (await db('change_sources').where({ source_id: source }).first('claimed_rows')) as {
        claimed_rows: number | string;
      };
      assert.equal(Number(state.claimed_rows), 0, 'no row was written claimed first');
      // A full compare consumes them too: it read the dataset after they were committed.
      await db(f.people).insert({ k: 'c3', a: 'x' });
      const full = await follow(db, id, f.table, 3000, 'checked in full');
      assert.deepEqual([full.compare.mode, full.compare.drift], ['full', 0]);
      assert.equal(await journalRows(source), 0);
    });

    test('a follower joining while the only follower applies the journal: neither loses a change', async () => {
      const f = await fixture(db);
      const [a, c] = [connector(), connector()];
      const source = sourceIdOf({ table: f.people, key: 'k' });
      const checkA = checkAgainstTwin(a, f.table);
      await follow(db, a, f.table, 1000);
      await checkA(1000);
      await db(f.people).insert({ k: 'j1', a: 'x' });
      // `a` claims as the only follower (j1's row stays unclaimed); before its update reads the
      // journal, `c` starts following, which claims j1's row into a later batch, and j2 is written.
      const joining: DatasetReader = {
        dataset: f.table,
        read: async (work) => {
          assert.equal((await follow(db, c, f.table, 2000)).compare.mode, 'full');
          await db(f.people).insert({ k: 'j2', a: 'x' });
          return work(db);
        },
      };
      const applied = await updateFollowingChanges(db, a, f.table, joining, 2000);
      assert.equal(applied.compare.mode, 'incremental');
      await checkA(2000); // j1 (claimed by `c`) and j2 (unclaimed) both reached `a`
      assert.ok((await journalRows(source)) > 0, '`c` still needs j2: nothing was consumed');
      const next = await follow(db, c, f.table, 3000);
      assert.equal(next.compare.mode, 'incremental');
      const twin = connector();
      await updateDeltalog(db, twin, { ...f.table, changes: undefined }, 3000);
      const present = async (id: string) =>
        (await deltalogOf(db, id)).filter((r) => r[1] === '1').map((r) => r.slice(0, 3));
      assert.deepEqual(await present(c), await present(twin));
      assert.equal((await follow(db, a, f.table, 4000)).compare.mode, 'incremental');
      await checkA(4000);
    });

    if (dialect === 'mysql')
      test("a writer's open transaction is not waited for; its row reaches the refresh after it commits", async () => {
        const f = await fixture(db);
        const id = connector();
        const check = checkAgainstTwin(id, f.table);
        await follow(db, id, f.table, 1000);
        await check(1000);
        await db(f.people).insert({ k: 'w1', a: 'x' });
        const writer = await db.transaction();
        try {
          await writer(f.people).insert({ k: 'w2', a: 'x' });
          let timer: NodeJS.Timeout | undefined;
          const waited = new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error('the refresh waited on the open transaction')), 10_000);
          });
          const refreshed = await Promise.race([follow(db, id, f.table, 2000), waited]);
          clearTimeout(timer);
          assert.equal(refreshed.compare.touchedKeys, 1, 'w1 only: w2 is not committed');
          await check(2000);
          await writer.commit();
        } finally {
          if (!writer.isCompleted()) await writer.rollback();
        }
        const next = await follow(db, id, f.table, 3000);
        assert.equal(next.compare.touchedKeys, 1, 'w2, committed since');
        await check(3000);
      });
  });
}

function badRowsOf({ report }: Pick<TrackedUpdate, 'report'>): number {
  return report.nullOrEmptyKeys + report.oversizedKeys + report.duplicateKeys;
}
