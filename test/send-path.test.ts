import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { loadConnector, saveConnector } from '../src/core/connector-store';
import {
  commitDelivered,
  fetchRecords,
  insertDirectPush,
  markFilled,
  pendingSummary,
  readDatasetPage,
  readChangesetPage,
  recordRejections,
  updateDeltalog,
} from '../src/core/deltalog';
import { sendPhase } from '../src/core/sender';
import { beginRun, getRun, incrementRunCounters, saveCheckpoint } from '../src/core/runs';
import { summarizeRun } from '../src/core/summaries';
import { MemoryDestination } from './helpers/memory-destination';
import { createTestDatabase, dialects, type TestDatabase } from './helpers/databases';
import { assertIndexed, planOf, statementsOf } from './helpers/plans';

/**
 * Every statement on the send path does work bounded by its batch, not by the list: each is run
 * against a deltalog of 30,000 pending rows (and another connector's), captured as sent, and its
 * plan read with EXPLAIN (MariaDB) or EXPLAIN QUERY PLAN (SQLite). A planner that walks the
 * connector's pending rows for every commit (the quadratic first push of issue 12) fails here.
 */

const ROWS = 30_000;
const dataset = { table: 'people', key: 'k', attributes: ['segment'] };

for (const dialect of dialects) {
  describe(`the send path's statements are bounded by the batch (${dialect})`, () => {
    let t: TestDatabase;
    let runId: number;
    const key = 'default/bounded';
    const keys = (from: number, count: number) =>
      Array.from({ length: count }, (_, i) => `k${String(from + i).padStart(6, '0')}`);

    before(async () => {
      t = await createTestDatabase(dialect);
      await t.db.schema.createTable('people', (table) => {
        table.string('k', 32).primary();
        table.string('segment', 8);
      });
      // 250 rows a statement: knex writes SQLite's multi-row insert as a compound SELECT (≤ 500 terms).
      for (let i = 0; i < ROWS; i += 250) {
        await t.db('people').insert(keys(i, 250).map((k) => ({ k, segment: 'a' })));
      }
      await saveConnector(t.db, {
        id: 'bounded',
        dataset,
        destination: {
          type: 'http-list',
          baseUrl: 'http://unused.invalid',
          listId: 'l',
          tokenSecret: 'UNUSED',
        },
        policy: { batchSize: 1000 },
      });
      // Another connector's rows, so that "by connector" alone is not a bound either.
      await updateDeltalog(t.db, 'default/other', dataset, 1);
      await updateDeltalog(t.db, key, dataset, 1);
      runId = await beginRun(
        t.db,
        { connectorId: key, tenant: 'default', trigger: 'test', workflowId: 'w', workflowRunId: 'r' },
        1,
      );
    });
    after(() => t.drop());

    test('reading pending keys and their attributes', async () => {
      for (const kind of ['upserts', 'deletions', 'dataset'] as const) {
        const [read] = await statementsOf(t.db, () => readChangesetPage(t.db, key, kind, 'k010000', 1000, 5));
        assertIndexed(
          await planOf(t, read!),
          /deltalog/,
          /deltalog_pending|PRIMARY|sqlite_autoindex_deltalog_1/,
        );
      }
      // Planning's pending counts walk the pending rows (the change), never the whole list.
      const [sizes] = await statementsOf(t.db, () => pendingSummary(t.db, key, 3));
      assertIndexed(await planOf(t, sizes!), /deltalog/, /deltalog_pending/);
      const [fetch] = await statementsOf(t.db, () => fetchRecords(t.db, dataset, keys(12_000, 1000)));
      assertIndexed(await planOf(t, fetch!), /people|^src\b| src\b/);
    });

    test('committing a batch, recording its rejections and fills go through the primary key', async () => {
      const batch = keys(20_000, 1000);
      const statements = await statementsOf(t.db, () =>
        t.db.transaction(async (trx) => {
          await commitDelivered(trx, key, batch, 2);
          await recordRejections(trx, key, [{ key: 'k025000', reason: 'refused' }]);
          await markFilled(trx, key, keys(26_000, 1000));
          await incrementRunCounters(trx, runId, { records_sent: 1000 });
          await saveCheckpoint(trx, runId, 'upserts', { cursor: batch.at(-1)!, recordsDone: 1000 }, 2);
        }),
      );
      const deltalog = statements.filter((q) => /deltalog/i.test(q.sql));
      assert.equal(deltalog.length, 3);
      for (const q of deltalog) {
        assertIndexed(
          await planOf(t, q),
          /deltalog/,
          /PRIMARY|sqlite_autoindex_deltalog_1 \(connector_id=\? AND record_key=\?\)/,
        );
      }
      for (const q of statements.filter(
        (s) => /refresh_runs|checkpoints/i.test(s.sql) && /^\s*update/i.test(s.sql),
      )) {
        for (const line of await planOf(t, q)) assert.doesNotMatch(line, /^SCAN|type=ALL/, line);
      }
    });

    test('a direct first push reads the dataset through its key and writes each batch in one statement', async () => {
      const [read] = await statementsOf(t.db, () => readDatasetPage(t.db, dataset, 'k010000', 1000));
      assertIndexed(
        await planOf(t, read!),
        /people|^src\b| src\b/,
        /type=range key=PRIMARY|USING INDEX sqlite_autoindex_people_1 \(k>\?\)/,
      );
      const batch = keys(10_001, 1000).map((k) => ({ key: k, hash: 'h' }));
      const writes = await statementsOf(t.db, () =>
        t.db.transaction((trx) => insertDirectPush(trx, 'default/direct', batch, 4)),
      );
      assert.equal(writes.length, 1, 'one INSERT for the batch');
      assert.equal(
        await t
          .db('deltalog')
          .where({ connector_id: 'default/direct' })
          .count({ n: '*' })
          .then(([r]) => Number(r!.n)),
        1000,
      );
    });

    test('a send records where its time went', async () => {
      const remote = new MemoryDestination({ recordsPerCall: 1000 });
      const run = await beginRun(
        t.db,
        { connectorId: key, tenant: 'default', trigger: 'test', workflowId: 'w2', workflowRunId: 'r2' },
        3,
      );
      const connector = await loadConnector(t.db, 'default', 'bounded');
      await sendPhase({
        db: t.db,
        connector,
        connectorKey: key,
        destination: remote,
        runId: run,
        phase: 'upserts',
      });
      const summary = await summarizeRun(t.db, await getRun(t.db, run));
      assert.ok(summary.timings, 'timings recorded');
      for (const part of ['readMs', 'fetchMs', 'callMs', 'commitMs', 'changeLogMs'] as const) {
        assert.ok(
          Number.isInteger(summary.timings[part]) && summary.timings[part] >= 0,
          `${part}: ${summary.timings[part]}`,
        );
      }
      assert.ok(summary.timings.commitMs > 0 && summary.timings.readMs > 0, JSON.stringify(summary.timings));
      // The change log is written inside each commit: its share is part of commitMs, and timed.
      assert.ok(summary.timings.changeLogMs <= summary.timings.commitMs, JSON.stringify(summary.timings));
      assert.ok(
        summary.timings.changeLogMs > 0,
        `the log's inserts are timed: ${JSON.stringify(summary.timings)}`,
      );
    });
  });
}
