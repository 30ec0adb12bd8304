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
 * change to them, and the deletion was never sent.
 */
for (const dialect of dialects) {
  describe(`a first push beside connectors of the same dataset (${dialect})`, () => {
    let t: TestDatabase;
    before(async () => {
      t = await createTestDatabase(dialect);
      await t.db.schema.createTable('shared_people', (table) => {
        table.string('k', 32).primary();
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
        await t.db('shared_people').where({ k: 'k01' }).delete();
        const removal = await refresh(id, 'auto', { kind: 'none' }, 'approve');
        assert.equal(removal.status, 'succeeded', id);
        assert.deepEqual([...remote.members.keys()], [], `${id}: the removal reached the list`);
      }
    });
  });
}
