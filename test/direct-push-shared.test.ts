import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { saveConnector } from '../src/core/connector-store';
import { createDriver } from './helpers/engine-driver';
import { createTestDatabase, dialects, type TestDatabase } from './helpers/databases';
import { MemoryDestination } from './helpers/memory-destination';

/**
 * Found by the engine's property test (one run in three): a first push read straight from the
 * dataset, by a connector whose dataset other connectors share, wrote its deltalog behind the
 * shared compare's back. The shared rows never held the pushed key, so its later removal was no
 * change to them, and the deletion was never sent. Such a push is direct again (a compare-path first
 * push of 1M rows took five times as long): its next shared apply compares with every shared row.
 */
for (const dialect of dialects) {
  describe(`a first push beside connectors of the same dataset (${dialect})`, () => {
    let t: TestDatabase;
    before(async () => {
      t = await createTestDatabase(dialect);
      await t.db.schema.createTable('shared_people', (table) => {
        // Byte-for-byte keys (on MariaDB a _bin collation), so that a first push may be direct.
        const key = table.string('k', 32).primary();
        if (dialect === 'mysql') key.collate('utf8mb4_bin');
        table.string('a', 16).notNullable();
      });
    });
    after(() => t.drop());

    test('a key pushed and then removed from the dataset is removed from the list', async () => {
      for (const id of ['first', 'second']) {
        await t.db('shared_people').delete();
        await saveConnector(t.db, {
          id,
          dataset: { table: 'shared_people', key: 'k', attributes: ['a'] },
          destination: {
            type: 'http-list',
            baseUrl: 'http://unused.invalid',
            listId: 'l',
            tokenSecret: 'UNUSED',
          },
        });
        const remote = new MemoryDestination({ recordsPerCall: 3 });
        const refresh = createDriver(t.db, remote);
        await refresh(id, 'truncate', { kind: 'none' }); // an empty dataset: nothing to push
        await t.db('shared_people').insert({ k: 'k01', a: 'x' });
        assert.equal((await refresh(id, 'auto', { kind: 'none' })).status, 'succeeded');
        assert.deepEqual([...remote.members.keys()], ['k01']);
        assert.equal(await lastCompareMode(id), 'direct', `${id}: the first push read the dataset directly`);
        await t.db('shared_people').where({ k: 'k01' }).delete();
        const removal = await refresh(id, 'auto', { kind: 'none' }, 'approve');
        assert.equal(removal.status, 'succeeded', id);
        assert.deepEqual([...remote.members.keys()], [], `${id}: the removal reached the list`);
      }
    });

    test('an edit the shared rows never saw, undone before the next compare, reaches the list', async () => {
      await t.db('shared_people').delete();
      await t.db('shared_people').insert({ k: 'k02', a: 'old' });
      const dataset = { table: 'shared_people', key: 'k', attributes: ['a'] };
      const destination = {
        type: 'http-list' as const,
        baseUrl: 'http://unused.invalid',
        listId: 'l',
        tokenSecret: 'UNUSED',
      };
      const lead = createDriver(t.db, new MemoryDestination({ recordsPerCall: 3 }));
      await saveConnector(t.db, { id: 'lead', dataset, destination });
      await saveConnector(t.db, { id: 'late', dataset, destination });
      await lead('lead', 'auto', { kind: 'none' });
      await lead('lead', 'auto', { kind: 'none' }); // the shared rows now hold k02 as 'old'
      // The newcomer pushes k02 as 'new' straight from the dataset; then the edit is undone, so
      // the dataset agrees with the shared rows again and no compare sees a change.
      await t.db('shared_people').update({ a: 'new' });
      const remote = new MemoryDestination({ recordsPerCall: 3 });
      const late = createDriver(t.db, remote);
      await late('late', 'auto', { kind: 'none' });
      assert.equal(await lastCompareMode('late'), 'direct');
      assert.equal(remote.members.get('k02')?.a, 'new');
      await t.db('shared_people').update({ a: 'old' });
      assert.equal((await late('late', 'auto', { kind: 'none' })).status, 'succeeded');
      assert.equal(remote.members.get('k02')?.a, 'old', 'the list holds what the dataset holds');
    });

    async function lastCompareMode(id: string): Promise<string> {
      const run = (await t
        .db('refresh_runs')
        .where({ connector_id: `default/${id}` })
        .orderBy('id', 'desc')
        .first('compare')) as { compare: string };
      return (JSON.parse(run.compare) as { mode: string }).mode;
    }
  });
}
