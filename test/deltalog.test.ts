import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { DatasetDefinition } from '../src/core/dataset';
import {
  badRowTotal,
  commitDelivered,
  datasetSize,
  deltalogSizes,
  fetchAttributes,
  markRemoteEmptied,
  pendingCounts,
  pendingSummary,
  purgeCommittedDeletions,
  quarantinedCount,
  readChangesetPage,
  recordRejections,
  updateDeltalog,
  validRows,
} from '../src/core/deltalog';
import type { Db } from '../src/db';
import { createTestDatabase, dialects, type TestDatabase } from './helpers/databases';

/**
 * Scenario tests of the deltalog engine (FIG. 4 update, pending counts, changeset pages, commit,
 * rejections, truncation and the janitor), each against its own small dataset table.
 */

interface DsRow {
  k: string | null;
  a?: string | null;
  b?: number | null;
}

interface LogRow {
  record_key: string;
  in_dataset: number;
  attr_hash: string | null;
  on_remote: number;
  updated_at: number;
  committed_at: number | null;
  attempts: number;
  last_error: string | null;
}

const NONE = { additions: 0, updates: 0, deletions: 0 };

let tableCounter = 0;

/** A fresh dataset table (no primary key, so bad rows can exist) and its definition. */
async function datasetTable(
  db: Db,
  rows: DsRow[] = [],
): Promise<{ table: string; dataset: DatasetDefinition }> {
  const table = `ds_${tableCounter++}`;
  await db.schema.createTable(table, (t) => {
    t.string('k', 400).nullable();
    t.string('a', 32).nullable();
    t.integer('b').nullable();
  });
  if (rows.length > 0) await db(table).insert(rows.map((r) => ({ a: null, b: null, ...r })));
  return { table, dataset: { table, key: 'k', attributes: ['a', 'b'] } };
}

async function log(db: Db, connectorId: string): Promise<LogRow[]> {
  const rows = (await db('deltalog').where({ connector_id: connectorId }).orderBy('record_key')) as Record<
    string,
    unknown
  >[];
  return rows.map((r) => ({
    record_key: String(r.record_key),
    in_dataset: Number(r.in_dataset),
    attr_hash: r.attr_hash === null ? null : String(r.attr_hash),
    on_remote: Number(r.on_remote),
    updated_at: Number(r.updated_at),
    committed_at: r.committed_at === null ? null : Number(r.committed_at),
    attempts: Number(r.attempts),
    last_error: r.last_error === null ? null : String(r.last_error),
  }));
}

async function logRow(db: Db, connectorId: string, key: string): Promise<LogRow> {
  const row = (await log(db, connectorId)).find((r) => r.record_key === key);
  assert.ok(row, `deltalog row for ${key}`);
  return row;
}

async function pendingKeys(db: Db, connectorId: string): Promise<string[]> {
  return (await log(db, connectorId)).filter((r) => r.committed_at === null).map((r) => r.record_key);
}

const keys = (n: number, prefix = 'k') =>
  Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(3, '0')}`);

for (const dialect of dialects) {
  describe(`deltalog on ${dialect}`, () => {
    let t: TestDatabase;
    let db: Db;
    let connectorCounter = 0;
    const connector = () => `c-${connectorCounter++}`;

    before(async () => {
      t = await createTestDatabase(dialect);
      db = t.db;
    });
    after(() => t.drop());

    test('first update makes every key a pending addition; commit clears; a re-run is idempotent', async () => {
      const id = connector();
      const { dataset } = await datasetTable(
        db,
        keys(7).map((k, i) => ({ k, a: `v${i}`, b: i })),
      );
      const report = await updateDeltalog(db, id, dataset, 1_000);
      assert.equal(report.datasetRows, 7);
      assert.equal(badRowTotal(report), 0);
      assert.deepEqual(await pendingCounts(db, id), { additions: 7, updates: 0, deletions: 0 });
      assert.equal(await datasetSize(db, id), 7);
      const rows = await log(db, id);
      assert.deepEqual(
        rows.map((r) => r.record_key),
        keys(7),
      );
      for (const r of rows) {
        assert.equal(r.in_dataset, 1);
        assert.equal(r.on_remote, 0);
        assert.equal(r.updated_at, 1_000);
        assert.equal(r.committed_at, null);
        assert.match(r.attr_hash ?? '', /^[0-9a-f]{32}$/);
      }

      await commitDelivered(db, id, keys(7), 1_500);
      assert.deepEqual(await pendingCounts(db, id), NONE);
      const committed = await log(db, id);
      for (const r of committed) {
        assert.equal(r.committed_at, 1_500);
        assert.equal(r.on_remote, 1);
      }

      await updateDeltalog(db, id, dataset, 2_000);
      assert.deepEqual(await log(db, id), committed, 'an unchanged re-run changes nothing');
      assert.deepEqual(await pendingCounts(db, id), NONE);
    });

    if (dialect === 'mysql')
      test("the compare never locks the dataset's rows: the application's writes to them do not wait", async () => {
        const id = connector();
        const table = `ds_${tableCounter++}`;
        await db.schema.createTable(table, (tb) => {
          tb.string('k', 64).primary().collate('utf8mb4_bin');
          tb.string('a', 32).nullable();
        });
        await db(table).insert(keys(5).map((k) => ({ k, a: 'x' })));
        const dataset: DatasetDefinition = { table, key: 'k', attributes: ['a'] };
        await updateDeltalog(db, id, dataset, 1_000);
        await db(table).where({ k: 'k004' }).delete(); // a key that left, for the compare to find
        // Inside the compare's transaction, once its statements ran: a write to every row it read.
        await updateDeltalog(db, id, dataset, 2_000, async () => {
          await db.raw('SET STATEMENT innodb_lock_wait_timeout = 2 FOR UPDATE ?? SET a = ?', [table, 'y']);
        });
        assert.equal((await logRow(db, id, 'k004')).in_dataset, 0);
      });

    test("planning's sizes from the pending rows equal the counted ones, through every state", async () => {
      const id = connector();
      const { table, dataset } = await datasetTable(
        db,
        keys(40).map((k, i) => ({ k, a: `v${i}`, b: i })),
      );
      let report = await updateDeltalog(db, id, dataset, 1_000);
      /** What planning derives (the inspection's size, the pending rows) against a walk of the list. */
      const check = async (state: string) => {
        const counted = await deltalogSizes(db, id);
        const pending = await pendingSummary(db, id, 3);
        // The one pass planning makes gives what the separate counts give.
        assert.deepEqual(pending.pending, await pendingCounts(db, id, { maxAttempts: 3 }), state);
        assert.equal(pending.quarantined, await quarantinedCount(db, id, 3), state);
        assert.equal(validRows(report), counted.dataset, `${state}: dataset size`);
        assert.equal(
          counted.dataset - pending.inDataset + pending.onRemote,
          counted.remote,
          `${state}: remote size`,
        );
      };
      await check('all pending');
      await commitDelivered(db, id, keys(40).slice(0, 25), 1_100);
      await check('some committed');
      await db(table).whereIn('k', keys(40).slice(0, 5)).delete(); // committed, now deletions
      await db(table).whereIn('k', keys(40).slice(30, 33)).delete(); // never sent, now deletions
      await db(table).whereIn('k', keys(40).slice(10, 14)).update({ a: 'changed' });
      await db(table).insert({ k: 'zz-new', a: 'n', b: 1 });
      report = await updateDeltalog(db, id, dataset, 1_200);
      await check('after a compare with churn');
      await recordRejections(db, id, [{ key: keys(40)[11]!, reason: 'refused' }]);
      await commitDelivered(db, id, keys(40).slice(0, 5), 1_300);
      await check('deletions delivered, an update refused');
      await markRemoteEmptied(db, id, 1_400);
      await check('after a truncate');
      await commitDelivered(db, id, [...keys(40), 'zz-new'], 1_500);
      await check('all committed');
    });

    test('leave, come back, attribute change; NULL, the text NULL and the empty string differ', async () => {
      const id = connector();
      const { table, dataset } = await datasetTable(db, [
        { k: 'a', a: 'x', b: 1 },
        { k: 'b', a: 'y', b: 2 },
        { k: 'c', a: 'z', b: 3 },
      ]);
      await updateDeltalog(db, id, dataset, 1_000);
      await commitDelivered(db, id, ['a', 'b', 'c'], 1_100);

      // b leaves the dataset: a pending deletion.
      await db(table).where({ k: 'b' }).delete();
      await updateDeltalog(db, id, dataset, 2_000);
      assert.deepEqual(await pendingCounts(db, id), { additions: 0, updates: 0, deletions: 1 });
      let b = await logRow(db, id, 'b');
      assert.equal(b.in_dataset, 0);
      assert.equal(b.committed_at, null);
      assert.equal(b.updated_at, 2_000);
      assert.deepEqual(await pendingKeys(db, id), ['b']);

      // b comes back unchanged before the deletion went out: pending again, in the dataset.
      await db(table).insert({ k: 'b', a: 'y', b: 2 });
      await updateDeltalog(db, id, dataset, 3_000);
      b = await logRow(db, id, 'b');
      assert.equal(b.in_dataset, 1);
      assert.equal(b.committed_at, null);
      assert.equal(b.updated_at, 3_000);
      // Still on the remote (the deletion was never delivered), so it counts as an update.
      assert.deepEqual(await pendingCounts(db, id), { additions: 0, updates: 1, deletions: 0 });
      await commitDelivered(db, id, ['b'], 3_100);

      // Deleted and delivered, then back: an addition this time.
      await db(table).where({ k: 'b' }).delete();
      await updateDeltalog(db, id, dataset, 4_000);
      await commitDelivered(db, id, ['b'], 4_100);
      assert.equal((await logRow(db, id, 'b')).on_remote, 0);
      await db(table).insert({ k: 'b', a: 'y', b: 2 });
      await updateDeltalog(db, id, dataset, 5_000);
      assert.deepEqual(await pendingCounts(db, id), { additions: 1, updates: 0, deletions: 0 });
      await commitDelivered(db, id, ['b'], 5_100);

      // An attribute change of a key on the remote: a pending update.
      const before = await logRow(db, id, 'c');
      await db(table).where({ k: 'c' }).update({ b: 30 });
      await updateDeltalog(db, id, dataset, 6_000);
      const after = await logRow(db, id, 'c');
      assert.notEqual(after.attr_hash, before.attr_hash);
      assert.equal(after.updated_at, 6_000);
      assert.deepEqual(await pendingCounts(db, id), { additions: 0, updates: 1, deletions: 0 });
      assert.deepEqual(await pendingKeys(db, id), ['c']);
      await commitDelivered(db, id, ['c'], 6_100);

      // NULL, 'NULL' and '' are three different fingerprints.
      const other = connector();
      const nulls = await datasetTable(db, [
        { k: 'n1', a: null, b: 1 },
        { k: 'n2', a: 'NULL', b: 1 },
        { k: 'n3', a: '', b: 1 },
      ]);
      await updateDeltalog(db, other, nulls.dataset, 1_000);
      const hashes = (await log(db, other)).map((r) => r.attr_hash);
      assert.equal(new Set(hashes).size, 3, `hashes ${hashes.join(', ')}`);
      await commitDelivered(db, other, ['n1', 'n2', 'n3'], 1_100);
      // Each transition between them is an attribute change.
      await db(nulls.table).where({ k: 'n1' }).update({ a: 'NULL' });
      await db(nulls.table).where({ k: 'n2' }).update({ a: '' });
      await db(nulls.table).where({ k: 'n3' }).update({ a: null });
      await updateDeltalog(db, other, nulls.dataset, 2_000);
      assert.deepEqual(await pendingCounts(db, other), { additions: 0, updates: 3, deletions: 0 });
      // And fetchAttributes hands the destination exactly those values.
      const attrs = await fetchAttributes(db, nulls.dataset, ['n1', 'n2', 'n3']);
      assert.deepEqual(attrs.get('n1'), { a: 'NULL', b: 1 });
      assert.deepEqual(attrs.get('n2'), { a: '', b: 1 });
      assert.deepEqual(attrs.get('n3'), { a: null, b: 1 });
    });

    test("keys differing only by case are two records ('A@x' and 'a@x')", async () => {
      const id = connector();
      const { table, dataset } = await datasetTable(db, [
        { k: 'A@x', a: 'upper', b: 1 },
        { k: 'a@x', a: 'lower', b: 2 },
      ]);
      const report = await updateDeltalog(db, id, dataset, 1_000);
      assert.equal(report.duplicateKeys, 0, `no duplicates: ${JSON.stringify(report.samples)}`);
      assert.deepEqual(
        (await log(db, id)).map((r) => r.record_key),
        ['A@x', 'a@x'],
      );
      assert.deepEqual(await pendingCounts(db, id), { additions: 2, updates: 0, deletions: 0 });
      const attrs = await fetchAttributes(db, dataset, ['A@x', 'a@x']);
      assert.deepEqual(attrs.get('A@x'), { a: 'upper', b: 1 });
      assert.deepEqual(attrs.get('a@x'), { a: 'lower', b: 2 });

      await commitDelivered(db, id, ['A@x', 'a@x'], 1_100);
      await updateDeltalog(db, id, dataset, 2_000);
      assert.deepEqual(await pendingCounts(db, id), NONE, 'idempotent with case-variant keys');

      // Removing one of them is a deletion of that one only.
      await db(table).where({ a: 'lower' }).delete();
      await updateDeltalog(db, id, dataset, 3_000);
      assert.deepEqual(await pendingKeys(db, id), ['a@x']);
      assert.equal((await logRow(db, id, 'a@x')).in_dataset, 0);
      assert.equal((await logRow(db, id, 'A@x')).in_dataset, 1);
    });

    test('bad rows are reported with samples and never stop the valid rows', async () => {
      const id = connector();
      const long = 'L'.repeat(300);
      const { table, dataset } = await datasetTable(db, [
        { k: 'good1', a: 'x', b: 1 },
        { k: null, a: 'no-key', b: 2 },
        { k: '', a: 'empty-key', b: 3 },
        { k: long, a: 'too-long', b: 4 },
        { k: 'dup', a: 'first', b: 5 },
        { k: 'dup', a: 'first', b: 5 },
        { k: 'good2', a: 'y', b: 6 },
        { k: 'K'.repeat(255), a: 'just-fits', b: 7 },
      ]);
      const report = await updateDeltalog(db, id, dataset, 1_000);
      assert.equal(report.datasetRows, 8);
      assert.equal(report.nullOrEmptyKeys, 2);
      assert.equal(report.oversizedKeys, 1);
      assert.equal(report.duplicateKeys, 1);
      assert.equal(badRowTotal(report), 4);
      assert.deepEqual(report.samples.nullOrEmptyKey.map((r) => r.a).sort(), ['empty-key', 'no-key']);
      assert.equal(report.samples.oversizedKey.length, 1);
      assert.ok(report.samples.oversizedKey[0]!.startsWith('LLLL'));
      assert.ok(report.samples.oversizedKey[0]!.length < 100, 'samples of long keys are shortened');
      assert.deepEqual(report.samples.duplicateKey, ['dup']);

      const stored = (await log(db, id)).map((r) => r.record_key);
      assert.deepEqual(stored, ['K'.repeat(255), 'dup', 'good1', 'good2']);
      assert.deepEqual(await pendingCounts(db, id), { additions: 4, updates: 0, deletions: 0 });

      // Idempotent with the bad rows still there.
      await commitDelivered(db, id, stored, 1_100);
      await updateDeltalog(db, id, dataset, 2_000);
      assert.deepEqual(await pendingCounts(db, id), NONE);

      // The valid rows keep flowing: a change next to the bad rows is picked up.
      await db(table).where({ k: 'good2' }).update({ a: 'changed' });
      await updateDeltalog(db, id, dataset, 3_000);
      assert.deepEqual(await pendingKeys(db, id), ['good2']);
    });

    test('a duplicated key whose rows disagree is stored once and stays settled', async () => {
      const id = connector();
      const { dataset } = await datasetTable(db, [
        { k: 'dup', a: 'one', b: 1 },
        { k: 'dup', a: 'two', b: 2 },
        { k: 'solo', a: 'x', b: 3 },
      ]);
      const report = await updateDeltalog(db, id, dataset, 1_000);
      assert.equal(report.duplicateKeys, 1);
      assert.deepEqual(
        (await log(db, id)).map((r) => r.record_key),
        ['dup', 'solo'],
      );
      await commitDelivered(db, id, ['dup', 'solo'], 1_100);
      // Nothing changed in the dataset, so nothing may become pending, run after run.
      for (const now of [2_000, 3_000, 4_000]) {
        await updateDeltalog(db, id, dataset, now);
        assert.deepEqual(await pendingCounts(db, id), NONE, `re-run at ${now}`);
      }
    });

    test('a dataset given as SQL (WHERE and a computed column) works like a table', async () => {
      const id = connector();
      const { table } = await datasetTable(db, [
        { k: 'a', a: 'x', b: 1 },
        { k: 'b', a: 'y', b: 2 },
        { k: 'c', a: 'z', b: null },
        { k: null, a: 'bad', b: 9 },
      ]);
      const dataset: DatasetDefinition = {
        sql: `SELECT k AS email, UPPER(a) AS label, b * 10 AS score FROM ${table} WHERE b IS NOT NULL`,
        key: 'email',
        attributes: ['label', 'score'],
      };
      const report = await updateDeltalog(db, id, dataset, 1_000);
      assert.equal(report.datasetRows, 3);
      assert.equal(report.nullOrEmptyKeys, 1);
      assert.deepEqual(report.samples.nullOrEmptyKey, [{ label: 'BAD', score: 90 }]);
      assert.deepEqual(await pendingKeys(db, id), ['a', 'b']);
      const attrs = await fetchAttributes(db, dataset, ['a', 'b', 'c']);
      assert.deepEqual([...attrs.keys()].sort(), ['a', 'b']);
      assert.deepEqual(attrs.get('a'), { label: 'X', score: 10 });
      assert.deepEqual(attrs.get('b'), { label: 'Y', score: 20 });
      await commitDelivered(db, id, ['a', 'b'], 1_100);

      await updateDeltalog(db, id, dataset, 2_000);
      assert.deepEqual(await pendingCounts(db, id), NONE);

      // c enters through the WHERE, b leaves through it, a changes through the computed column.
      await db(table).where({ k: 'c' }).update({ b: 3 });
      await db(table).where({ k: 'b' }).update({ b: null });
      await db(table).where({ k: 'a' }).update({ a: 'w' });
      await updateDeltalog(db, id, dataset, 3_000);
      assert.deepEqual(await pendingCounts(db, id), { additions: 1, updates: 1, deletions: 1 });
      assert.equal((await logRow(db, id, 'b')).in_dataset, 0);
      assert.equal((await logRow(db, id, 'c')).on_remote, 0);

      // A case change the computed column hides is no change.
      await commitDelivered(db, id, ['a', 'b', 'c'], 3_100);
      await db(table).where({ k: 'a' }).update({ a: 'W' });
      await updateDeltalog(db, id, dataset, 4_000);
      assert.deepEqual(await pendingCounts(db, id), NONE);
    });

    test('horizon, rejections and quarantine', async () => {
      const id = connector();
      const { table, dataset } = await datasetTable(db, [
        { k: 'a', a: 'x', b: 1 },
        { k: 'b', a: 'y', b: 2 },
        { k: 'c', a: 'z', b: 3 },
        { k: 'd', a: 'w', b: 4 },
      ]);
      await updateDeltalog(db, id, dataset, 1_000);
      await commitDelivered(db, id, ['a', 'b', 'c'], 1_100);
      await db(table).where({ k: 'a' }).update({ b: 10 });
      await updateDeltalog(db, id, dataset, 2_000);
      await db(table).where({ k: 'b' }).delete();
      await updateDeltalog(db, id, dataset, 3_000);

      // d (1000, addition), a (2000, update), b (3000, deletion)
      assert.deepEqual(await pendingCounts(db, id), { additions: 1, updates: 1, deletions: 1 });
      assert.deepEqual(await pendingCounts(db, id, { since: 1_000 }), {
        additions: 1,
        updates: 1,
        deletions: 1,
      });
      assert.deepEqual(await pendingCounts(db, id, { since: 1_001 }), {
        additions: 0,
        updates: 1,
        deletions: 1,
      });
      assert.deepEqual(await pendingCounts(db, id, { since: 2_000 }), {
        additions: 0,
        updates: 1,
        deletions: 1,
      });
      assert.deepEqual(await pendingCounts(db, id, { since: 3_000 }), {
        additions: 0,
        updates: 0,
        deletions: 1,
      });
      assert.deepEqual(await pendingCounts(db, id, { since: 3_001 }), NONE);

      // Rejections: attempts grow, the latest reason is kept (at most 1000 characters).
      await recordRejections(db, id, [{ key: 'd', reason: 'invalid e-mail' }]);
      await recordRejections(db, id, [
        { key: 'd', reason: 'still invalid' },
        { key: 'a', reason: 'too long' },
      ]);
      let d = await logRow(db, id, 'd');
      assert.equal(d.attempts, 2);
      assert.equal(d.last_error, 'still invalid');
      assert.equal(d.committed_at, null);
      await recordRejections(db, id, [{ key: 'd', reason: 'r'.repeat(1_500) }]);
      d = await logRow(db, id, 'd');
      assert.equal(d.attempts, 3);
      assert.equal(d.last_error, 'r'.repeat(1_000));
      // A committed row is not pending, so a stray rejection does not touch it.
      await recordRejections(db, id, [{ key: 'c', reason: 'late' }]);
      assert.equal((await logRow(db, id, 'c')).attempts, 0);

      assert.equal(await quarantinedCount(db, id, 3), 1);
      assert.equal(await quarantinedCount(db, id, 4), 0);
      assert.equal(await quarantinedCount(db, id, 1), 2);
      assert.deepEqual(await pendingCounts(db, id, { maxAttempts: 3 }), {
        additions: 0,
        updates: 1,
        deletions: 1,
      });
      assert.deepEqual(await pendingCounts(db, id, { maxAttempts: 4 }), {
        additions: 1,
        updates: 1,
        deletions: 1,
      });
      assert.deepEqual(
        (await readChangesetPage(db, id, 'upserts', '', 10, 3)).map(({ record_key, on_remote }) => ({
          record_key,
          on_remote,
        })),
        [{ record_key: 'a', on_remote: true }],
      );

      // An unchanged re-run keeps the quarantine; an attribute change lifts it.
      await updateDeltalog(db, id, dataset, 4_000);
      assert.equal(await quarantinedCount(db, id, 3), 1);
      await db(table).where({ k: 'd' }).update({ a: 'fixed' });
      await updateDeltalog(db, id, dataset, 5_000);
      d = await logRow(db, id, 'd');
      assert.equal(d.attempts, 0);
      assert.equal(d.last_error, null);
      assert.equal(d.updated_at, 5_000);
      assert.equal(await quarantinedCount(db, id, 3), 0);
      assert.deepEqual(await pendingCounts(db, id, { maxAttempts: 3 }), {
        additions: 1,
        updates: 1,
        deletions: 1,
      });
    });

    test('changeset pages: every pending key exactly once, in key order', async () => {
      const id = connector();
      const all = [...keys(12, 'k'), ...keys(5, 'K'), 'Zed', 'a', 'b_', 'b-'];
      const { table, dataset } = await datasetTable(
        db,
        all.map((k, i) => ({ k, a: 'x', b: i })),
      );
      await updateDeltalog(db, id, dataset, 1_000);
      // Commit some, remove some: upserts and deletions are separate changesets.
      await commitDelivered(db, id, ['k000', 'k005', 'K001', 'Zed'], 1_100);
      await db(table).whereIn('k', ['k005', 'Zed']).delete();
      await updateDeltalog(db, id, dataset, 2_000);

      async function walk(kind: 'upserts' | 'deletions' | 'dataset', size: number) {
        const seen: string[] = [];
        let cursor = '';
        let pages = 0;
        for (;;) {
          const page = await readChangesetPage(db, id, kind, cursor, size, 5);
          if (page.length === 0) break;
          assert.ok(page.length <= size);
          pages++;
          seen.push(...page.map((r) => r.record_key));
          cursor = page[page.length - 1]!.record_key;
        }
        return { seen, pages };
      }
      const expectedUpserts = all.filter((k) => !['k000', 'k005', 'K001', 'Zed'].includes(k)).sort();
      for (const size of [1, 4, 5, 100]) {
        const { seen, pages } = await walk('upserts', size);
        assert.deepEqual(seen, expectedUpserts, `page size ${size}`);
        assert.equal(pages, Math.ceil(expectedUpserts.length / size));
      }
      assert.deepEqual((await walk('deletions', 1)).seen, ['Zed', 'k005']);
      const inDataset = all.filter((k) => !['k005', 'Zed'].includes(k)).sort();
      assert.deepEqual((await walk('dataset', 3)).seen, inDataset);
      // Binary key order: upper case before lower case, '-' before '_'.
      assert.ok(expectedUpserts.indexOf('K000') < expectedUpserts.indexOf('a'));
      assert.ok(expectedUpserts.indexOf('b-') < expectedUpserts.indexOf('b_'));
    });

    test('markRemoteEmptied: pending deletions are delivered, every dataset key is an addition again', async () => {
      const id = connector();
      const { table, dataset } = await datasetTable(db, [
        { k: 'a', a: 'x', b: 1 },
        { k: 'b', a: 'y', b: 2 },
        { k: 'c', a: 'z', b: 3 },
        { k: 'old', a: 'o', b: 4 },
      ]);
      await updateDeltalog(db, id, dataset, 1_000);
      await commitDelivered(db, id, ['a', 'b', 'c', 'old'], 1_100);
      await db(table).where({ k: 'old' }).delete();
      await updateDeltalog(db, id, dataset, 1_200);
      await commitDelivered(db, id, ['old'], 1_300); // a committed deletion
      await db(table).where({ k: 'c' }).delete(); // a pending deletion
      await db(table).where({ k: 'b' }).update({ b: 20 }); // a pending update
      await db(table).insert({ k: 'd', a: 'new', b: 5 }); // a pending addition
      await updateDeltalog(db, id, dataset, 2_000);
      await recordRejections(db, id, [{ key: 'd', reason: 'nope' }]);
      assert.deepEqual(await pendingCounts(db, id), { additions: 1, updates: 1, deletions: 1 });

      await markRemoteEmptied(db, id, 3_000);
      assert.deepEqual(await pendingCounts(db, id), { additions: 3, updates: 0, deletions: 0 });
      const rows = await log(db, id);
      const byKey = new Map(rows.map((r) => [r.record_key, r]));
      for (const key of ['a', 'b', 'd']) {
        const r = byKey.get(key)!;
        assert.equal(r.in_dataset, 1, key);
        assert.equal(r.on_remote, 0, key);
        assert.equal(r.committed_at, null, key);
        assert.equal(r.attempts, 0, key);
      }
      assert.equal(byKey.get('c')!.committed_at, 3_000);
      assert.equal(byKey.get('c')!.on_remote, 0);
      assert.equal(byKey.get('old')!.committed_at, 1_300, 'an earlier committed deletion keeps its time');
    });

    test('janitor purges only committed deletions older than the cutoff, in batches', async () => {
      const id = connector();
      const gone = keys(7, 'gone');
      const { table, dataset } = await datasetTable(db, [
        ...gone.map((k) => ({ k, a: 'x', b: 1 })),
        { k: 'recent', a: 'x', b: 1 },
        { k: 'pending', a: 'x', b: 1 },
        { k: 'stays', a: 'x', b: 1 },
      ]);
      await updateDeltalog(db, id, dataset, 100);
      await commitDelivered(db, id, [...gone, 'recent', 'pending', 'stays'], 100);
      await db(table)
        .whereIn('k', [...gone, 'recent', 'pending'])
        .delete();
      await updateDeltalog(db, id, dataset, 200);
      await commitDelivered(db, id, gone, 300);
      await commitDelivered(db, id, ['recent'], 500);
      // Another connector's committed deletions are not this janitor's business.
      const other = connector();
      await updateDeltalog(db, other, dataset, 100);
      await db('deltalog').where({ connector_id: other }).update({ in_dataset: false, committed_at: 100 });

      assert.equal(await purgeCommittedDeletions(db, id, 300, 2), 0, 'strictly older than the cutoff');
      assert.equal(await purgeCommittedDeletions(db, id, 500, 2), 7);
      assert.deepEqual(
        (await log(db, id)).map((r) => r.record_key),
        ['pending', 'recent', 'stays'],
      );
      assert.equal(await purgeCommittedDeletions(db, id, 10_000, 2), 1);
      const left = await log(db, id);
      assert.deepEqual(
        left.map((r) => [r.record_key, r.in_dataset, r.committed_at]),
        [
          ['pending', 0, null],
          ['stays', 1, 100],
        ],
      );
      assert.equal((await log(db, other)).length, 1);
    });
  });
}
