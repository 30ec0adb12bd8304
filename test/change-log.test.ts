import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { digestOf, keyOfDigest, listRunChanges, type RunChange } from '../src/core/change-log';
import { saveConnector } from '../src/core/connector-store';
import { listRuns } from '../src/core/runs';
import { createDriver } from './helpers/engine-driver';
import { createTestDatabase, dialects, type TestDatabase } from './helpers/databases';
import { MemoryDestination } from './helpers/memory-destination';
import { statementsOf } from './helpers/plans';

/** The row-level change log of runs: what each delivered batch did to which key, and why not. */

for (const dialect of dialects) {
  describe(`the change log of runs (${dialect})`, () => {
    let t: TestDatabase;
    let n = 0;
    before(async () => {
      t = await createTestDatabase(dialect);
    });
    after(() => t.drop());

    async function setup(rows: number, policy: Record<string, unknown> = {}) {
      const table = `people_${n}`;
      const id = `log-${n++}`;
      await t.db.schema.createTable(table, (x) => {
        x.string('k', 32).primary();
        x.string('email', 200);
      });
      const keys = Array.from({ length: rows }, (_, i) => `k${String(i).padStart(2, '0')}`);
      await t.db(table).insert(keys.map((k) => ({ k, email: `${k}@example.com` })));
      await saveConnector(t.db, {
        id,
        dataset: { table, key: 'k', attributes: ['email'] },
        destination: {
          type: 'http-list',
          baseUrl: 'http://unused.invalid',
          listId: 'l',
          tokenSecret: 'UNUSED',
        },
        policy: { recordSuccessThreshold: 0.5, ...policy },
      });
      const remote = new MemoryDestination({ recordsPerCall: 10 });
      remote.reject = (key) =>
        key === 'k05'
          ? 'invalid email'
          : key === 'k06'
            ? { reason: 'not matched yet', deferred: true }
            : null;
      return { table, id, key: `default/${id}`, remote, refresh: createDriver(t.db, remote) };
    }

    const all = async (connectorKey: string, filter: Parameters<typeof listRunChanges>[2] = {}) => {
      const changes: RunChange[] = [];
      let cursor: string | undefined;
      do {
        const page = await listRunChanges(t.db, connectorKey, { ...filter, cursor });
        changes.push(...page.changes);
        cursor = page.next;
      } while (cursor);
      return changes;
    };
    const summary = (changes: RunChange[]) =>
      changes.map((c) => `${c.outcome} ${c.key}${c.reason ? ` (${c.reason})` : ''}`).sort();

    test('every key a run touched, with its outcome, and why the refused ones were refused', async () => {
      const { table, key, refresh } = await setup(25);
      assert.equal((await refresh(key.split('/')[1]!, 'diff', { kind: 'none' })).status, 'succeeded');
      const [first] = await listRuns(t.db, key);
      const firstChanges = await all(key, { runId: first!.id });
      assert.equal(firstChanges.length, 25);
      assert.deepEqual(
        summary(firstChanges).filter((line) => !line.startsWith('added')),
        ['held k06 (not matched yet)', 'rejected k05 (invalid email)'],
      );
      assert.ok(firstChanges.every((c) => c.runId === first!.id && c.at > 0));

      await t.db(table).where({ k: 'k10' }).update({ email: 'changed@example.com' });
      await t.db(table).where({ k: 'k20' }).delete();
      await t.db(table).insert({ k: 'k99', email: 'k99@example.com' });
      assert.equal((await refresh(key.split('/')[1]!, 'diff', { kind: 'none' })).status, 'succeeded');
      const [second] = await listRuns(t.db, key);
      assert.deepEqual(summary(await all(key, { runId: second!.id })), [
        'added k99',
        'held k06 (not matched yet)',
        'rejected k05 (invalid email)',
        'removed k20',
        'updated k10',
      ]);
      // One key across runs, newest first: the answer to "why is k05 not on the list?"
      const k05 = await all(key, { key: 'k05' });
      assert.deepEqual(
        k05.map((c) => [c.runId, c.outcome, c.reason]),
        [
          [second!.id, 'rejected', 'invalid email'],
          [first!.id, 'rejected', 'invalid email'],
        ],
      );
      assert.deepEqual(
        (await all(key, { outcome: 'removed' })).map((c) => c.key),
        ['k20'],
      );
      // A client names a key by a salted digest (it passes through workflow history): found again.
      assert.equal(await keyOfDigest(t.db, key, digestOf('k05')), 'k05');
      assert.equal(await keyOfDigest(t.db, key, digestOf('nobody')), undefined);
    });

    test('pages of any size add up to the whole log, in the same order', async () => {
      const { key, refresh } = await setup(37);
      await refresh(key.split('/')[1]!, 'diff', { kind: 'none' });
      const whole = (await listRunChanges(t.db, key, { limit: 1000 })).changes;
      assert.equal(whole.length, 37);
      for (const limit of [1, 7, 10, 36]) {
        const paged: RunChange[] = [];
        let cursor: string | undefined;
        do {
          const page = await listRunChanges(t.db, key, { limit, cursor });
          assert.ok(page.changes.length <= limit);
          paged.push(...page.changes);
          cursor = page.next;
        } while (cursor);
        assert.deepEqual(paged, whole, `pages of ${limit}`);
      }
      await assert.rejects(listRunChanges(t.db, key, { cursor: 'x' }), /not a cursor/);
    });

    test('the log keeps keys and reasons, never attribute values; changeLogDays 0 writes none', async () => {
      const { key, refresh } = await setup(12, { changeLogDays: 0 });
      const statements = await statementsOf(t.db, () =>
        refresh(key.split('/')[1]!, 'diff', { kind: 'none' }),
      );
      assert.ok(
        statements.some((s) => /insert into .?deltalog/i.test(s.sql)),
        'the run did send',
      );
      assert.deepEqual(
        statements.filter((s) => /insert into .?run_changes/i.test(s.sql)),
        [],
        'changeLogDays 0: no change log is written',
      );
      assert.equal((await t.db('run_changes').where({ connector_id: key })).length, 0);

      const kept = await setup(12);
      await kept.refresh(kept.key.split('/')[1]!, 'diff', { kind: 'none' });
      const rows = (await t.db('run_changes').where({ connector_id: kept.key })) as { payload: Buffer }[];
      assert.ok(rows.length > 0);
      const { gunzipSync } = await import('node:zlib');
      const text = rows.map((r) => gunzipSync(r.payload).toString('utf8')).join('\n');
      assert.match(text, /k01/);
      assert.doesNotMatch(text, /example\.com/, 'no attribute value in the log');
    });
  });
}
