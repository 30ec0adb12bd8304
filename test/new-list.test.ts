import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { saveConnector } from '../src/core/connector-store';
import { pendingCounts } from '../src/core/deltalog';
import { MemoryDestination } from './helpers/memory-destination';
import { createDriver } from './helpers/engine-driver';
import { createTestDatabase, dialects, type TestDatabase } from './helpers/databases';

/** New list + swap, scenario by scenario (the property test covers them at random). */

for (const dialect of dialects) {
  describe(`new list + swap (${dialect})`, () => {
    let t: TestDatabase;
    let n = 0;
    before(async () => {
      t = await createTestDatabase(dialect);
    });
    after(() => t.drop());

    async function setup(keys: string[]) {
      const table = `nl_${n}`;
      const id = `nl-${n++}`;
      await t.db.schema.createTable(table, (x) => {
        x.string('k', 16).primary();
        x.string('v', 8);
      });
      await t.db(table).insert(keys.map((k) => ({ k, v: 'a' })));
      await saveConnector(t.db, {
        id,
        dataset: { table, key: 'k', attributes: ['v'] },
        destination: { type: 'http-list', baseUrl: 'http://unused.invalid', listId: 'l', tokenSecret: 'U' },
        policy: { batchSize: 2 },
      });
      const remote = new MemoryDestination({ recordsPerCall: 2 });
      return { table, id, remote, refresh: createDriver(t.db, remote) };
    }
    const state = (id: string) =>
      t
        .db('connector_state')
        .where({ connector_id: `default/${id}` })
        .first();

    test('the list is built aside, swapped in, and the previous one retired', async () => {
      const { table, id, remote, refresh } = await setup(['a', 'b', 'c']);
      await refresh(id, 'newList', { kind: 'none' });
      const first = remote.liveListId;
      assert.deepEqual([...remote.members.keys()].sort(), ['a', 'b', 'c']);
      await t.db(table).where({ k: 'b' }).delete();
      await t.db(table).insert({ k: 'd', v: 'a' });
      await refresh(id, 'newList', { kind: 'none' });
      assert.notEqual(remote.liveListId, first);
      assert.deepEqual([...remote.members.keys()].sort(), ['a', 'c', 'd'], 'the deletion went with the swap');
      assert.equal(remote.lists.has(first), false, 'the previous list was retired');
      assert.equal(remote.lists.has('main'), true, 'the configured list is never deleted');
      assert.equal((await state(id)).remote_list_id, remote.liveListId);
      assert.deepEqual(await pendingCounts(t.db, `default/${id}`), {
        additions: 0,
        updates: 0,
        deletions: 0,
      });
    });

    test('a run that dies while filling leaves the live list alone; the next run retires its half-built list', async () => {
      const { id, remote, refresh } = await setup(['a', 'b', 'c', 'd', 'e']);
      await refresh(id, 'diff', { kind: 'none' });
      const failed = await refresh(id, 'newList', {
        kind: 'fail-send',
        afterCalls: 1,
        applyBeforeFailing: false,
        retry: false,
      });
      assert.equal(failed.completed, false);
      const halfBuilt = (await state(id)).pending_list_id as string;
      assert.equal(remote.lists.get(halfBuilt)?.size, 2, 'one call of two records went into the new list');
      assert.equal(remote.liveListId, 'main');
      assert.equal(remote.members.size, 5, 'the live list is untouched');
      await refresh(id, 'newList', { kind: 'none' });
      assert.equal(remote.lists.has(halfBuilt), false, 'the abandoned list was deleted');
      assert.equal(remote.members.size, 5);
    });

    test('keys the new list refused are not committed, and go out with the next run', async () => {
      const { id, remote, refresh } = await setup(['a', 'b', 'c']);
      await refresh(id, 'diff', { kind: 'none' });
      remote.reject = (key) => (key === 'b' ? 'invalid' : null);
      const run = await refresh(id, 'newList', { kind: 'none' });
      assert.equal(run.rejected, 1);
      assert.deepEqual([...remote.members.keys()].sort(), ['a', 'c']);
      assert.deepEqual(await pendingCounts(t.db, `default/${id}`), {
        additions: 1,
        updates: 0,
        deletions: 0,
      });
      remote.reject = () => null;
      await refresh(id, 'diff', { kind: 'none' });
      assert.deepEqual([...remote.members.keys()].sort(), ['a', 'b', 'c']);
    });
  });
}
