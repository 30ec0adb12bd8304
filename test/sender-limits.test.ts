import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { saveConnector } from '../src/core/connector-store';
import { pendingCounts } from '../src/core/deltalog';
import { endpointCalls, listRuns } from '../src/core/runs';
import { MemoryDestination } from './helpers/memory-destination';
import { jsonBytes } from '../src/core/batching';
import { createDriver } from './helpers/engine-driver';
import { createTestDatabase, dialects, type TestDatabase } from './helpers/databases';

/** The sender against destination limits: bytes per call, and destinations without attributes. */

for (const dialect of dialects) {
  describe(`sender limits (${dialect})`, () => {
    let t: TestDatabase;
    let n = 0;
    before(async () => {
      t = await createTestDatabase(dialect);
    });
    after(() => t.drop());

    async function setup(rows: number) {
      const table = `people_${n}`;
      const id = `limits-${n++}`;
      await t.db.schema.createTable(table, (x) => {
        x.string('k', 32).primary();
        x.string('note', 200);
      });
      await t
        .db(table)
        .insert(Array.from({ length: rows }, (_, i) => ({ k: `k${100 + i}`, note: 'x'.repeat(50) })));
      await saveConnector(t.db, {
        id,
        dataset: { table, key: 'k', attributes: ['note'] },
        destination: {
          type: 'http-list',
          baseUrl: 'http://unused.invalid',
          listId: 'l',
          tokenSecret: 'UNUSED',
        },
      });
      return { table, id };
    }

    test('a byte limit splits pages into more calls, each counted by endpoint', async () => {
      const { id } = await setup(10);
      const recordBytes = jsonBytes({ key: 'k100', attributes: { note: 'x'.repeat(50) } });
      assert.equal(recordBytes, 89, 'two records fit in 200 bytes, three do not');
      const remote = new MemoryDestination({ recordsPerCall: 100, bytesPerCall: 200 });
      const result = await createDriver(t.db, remote)(id, 'diff', { kind: 'none' });
      assert.equal(result.status, 'succeeded');
      assert.equal(remote.calls.add, 5, '10 records, two per call');
      assert.equal(remote.members.size, 10);
      const [run] = await listRuns(t.db, `default/${id}`);
      assert.deepEqual(await endpointCalls(t.db, run!.id), {
        add: { calls: 5, failed: 0, rateLimited: 0, retried: 0 },
      });
      assert.equal(run!.api_calls, 5);
      assert.equal(run!.bytes_sent, 10 * recordBytes);
    });

    test('a record larger than the byte limit on its own is rejected with the reason, never sent', async () => {
      const { table, id } = await setup(4);
      await t
        .db(table)
        .where({ k: 'k101' })
        .update({ note: 'y'.repeat(200) });
      const big = jsonBytes({ key: 'k101', attributes: { note: 'y'.repeat(200) } });
      assert.ok(big > 200);
      const remote = new MemoryDestination({ recordsPerCall: 100, bytesPerCall: 200 });
      const result = await createDriver(t.db, remote)(id, 'diff', { kind: 'none' });
      assert.equal(result.rejected, 1);
      assert.equal(remote.recordsReceived.add, 3, 'the oversized record never went out');
      assert.deepEqual([...remote.members.keys()].sort(), ['k100', 'k102', 'k103']);
      const row = (await t
        .db('deltalog')
        .where({ connector_id: `default/${id}`, record_key: 'k101' })
        .first()) as {
        attempts: number;
        last_error: string;
        committed_at: unknown;
      };
      assert.equal(row.committed_at, null);
      assert.equal(Number(row.attempts), 1);
      assert.equal(
        row.last_error,
        `record is ${big} bytes, more than the destination accepts in one call (200 bytes)`,
      );
      const [run] = await listRuns(t.db, `default/${id}`);
      assert.equal(run!.api_calls, 2, 'three records of 89 bytes: two calls');
    });

    test('deferred rejections stay pending without using up attempts (never quarantined)', async () => {
      const { table, id } = await setup(3);
      const remote = new MemoryDestination({ recordsPerCall: 100 });
      const refresh = createDriver(t.db, remote);
      await refresh(id, 'auto', { kind: 'none' });
      await t.db(table).delete();
      remote.reject = () => ({ reason: 'audience would fall below its minimum size', deferred: true });
      for (let i = 0; i < 7; i++) await refresh(id, 'diff', { kind: 'none' }); // maxAttempts is 5
      const rows = (await t.db('deltalog').where({ connector_id: `default/${id}` })) as {
        attempts: number;
        last_error: string;
      }[];
      assert.deepEqual(
        rows.map((r) => [r.attempts, r.last_error]),
        Array(3).fill([0, 'audience would fall below its minimum size']),
      );
      remote.reject = () => null;
      await refresh(id, 'diff', { kind: 'none' });
      assert.equal(remote.members.size, 0, 'delivered once the destination accepts');
      assert.deepEqual(await pendingCounts(t.db, `default/${id}`), {
        additions: 0,
        updates: 0,
        deletions: 0,
      });
    });

    test('attribute changes cost nothing on a destination that keeps no attributes', async () => {
      const { table, id } = await setup(6);
      const remote = new MemoryDestination(
        { recordsPerCall: 100 },
        {
          add: true,
          remove: true,
          truncate: false,
          listMembers: false,
          updateAttributes: false,
          createList: false,
        },
      );
      const refresh = createDriver(t.db, remote);
      await refresh(id, 'auto', { kind: 'none' });
      assert.equal(remote.recordsReceived.add, 6);
      await t.db(table).whereIn('k', ['k100', 'k101']).update({ note: 'changed' });
      await t.db(table).insert({ k: 'k200', note: 'new' });
      const second = await refresh(id, 'auto', { kind: 'none' });
      assert.equal(second.status, 'succeeded');
      assert.equal(remote.recordsReceived.add, 7, 'only the new key was sent');
      assert.deepEqual(await pendingCounts(t.db, `default/${id}`), {
        additions: 0,
        updates: 0,
        deletions: 0,
      });
    });
  });
}
