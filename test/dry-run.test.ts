import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connectorKey } from '../src/core/connector';
import { loadConnector, saveConnector } from '../src/core/connector-store';
import { directReader } from '../src/core/dataset';
import { noopObserver } from '../src/core/observer';
import * as engine from '../src/core/refresh';
import { listRuns } from '../src/core/runs';
import { createTestDatabase, dialects, type TestDatabase } from './helpers/databases';
import { createDriver } from './helpers/engine-driver';
import { MemoryDestination } from './helpers/memory-destination';

/**
 * The dry run (`deltasync plan`, engine.previewRun): what the next refresh would do, by which
 * strategy and with which counts, without changing the deltalog or calling the destination.
 */

for (const dialect of dialects) {
  describe(`a dry run (${dialect})`, () => {
    let t: TestDatabase;
    before(async () => {
      t = await createTestDatabase(dialect);
    });
    after(() => t.drop());

    test('says what the next refresh does, quarantined rows included, and changes nothing', async () => {
      await t.db.schema.createTable('fans', (x) => {
        x.string('k', 16).primary();
        x.string('v', 8);
      });
      await t.db('fans').insert(Array.from({ length: 60 }, (_, i) => ({ k: `k${100 + i}`, v: 'a' })));
      await saveConnector(t.db, {
        id: 'fans',
        dataset: { table: 'fans', key: 'k', attributes: ['v'] },
        destination: { type: 'http-list', baseUrl: 'http://unused.invalid', listId: 'l', tokenSecret: 'U' },
        policy: { batchSize: 10, maxAttempts: 1 },
      });
      const remote = new MemoryDestination({ recordsPerCall: 10 });
      remote.reject = (key) => (key === 'k100' ? 'invalid' : null); // quarantined after one refusal
      const refresh = createDriver(t.db, remote);
      await refresh('fans', 'auto', { kind: 'none' });
      await t.db('fans').whereIn('k', ['k101', 'k102']).delete();
      await t.db('fans').where({ k: 'k103' }).update({ v: 'b' });
      await t.db('fans').insert({ k: 'k999', v: 'a' });

      const key = connectorKey('default', 'fans');
      const before = await t.db('deltalog').where({ connector_id: key }).orderBy('record_key');
      const connector = await loadConnector(t.db, 'default', 'fans');
      const deps = { db: t.db, now: Date.now, observer: noopObserver };
      const calls = { ...remote.calls };
      const plan = await engine.previewRun(
        deps,
        { connector, key },
        directReader(t.db, connector.dataset),
        remote,
      );
      assert.deepEqual(
        [plan.strategy, plan.additions, plan.updates, plan.deletions, plan.quarantined, plan.datasetSize],
        ['diff', 1, 1, 2, 1, 59],
      );
      assert.deepEqual(await t.db('deltalog').where({ connector_id: key }).orderBy('record_key'), before);
      assert.deepEqual(remote.calls, calls, 'no call to the destination');

      await refresh('fans', 'auto', { kind: 'none' });
      const [run] = await listRuns(t.db, key, 1);
      assert.deepEqual(
        [run!.strategy, run!.additions, run!.updates, run!.deletions, run!.dataset_size],
        ['diff', 1, 1, 2, 59],
        'the refresh did what the dry run said',
      );
    });
  });
}
