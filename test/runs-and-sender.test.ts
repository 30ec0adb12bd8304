import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connectorKey, type ConnectorDefinition, type ConnectorInput } from '../src/core/connector';
import { saveConnector } from '../src/core/connector-store';
import {
  DestinationError,
  type Destination,
  type Member,
  type WritableDestination,
} from '../src/core/destination';
import { pendingCounts, quarantinedCount, updateDeltalog } from '../src/core/deltalog';
import {
  ABANDONED,
  beginRun,
  endpointCalls,
  finishRun,
  getRun,
  incrementRunCounters,
  loadCheckpoint,
  meetsThreshold,
  recordSnapshot,
} from '../src/core/runs';
import { sendPhase, type SendProgress } from '../src/core/sender';
import type { Db } from '../src/db';
import { MemoryDestination } from './helpers/memory-destination';
import { createTestDatabase, dialects, type TestDatabase } from './helpers/databases';

/**
 * The send phase against the in-memory destination, and the run record around it: per-batch
 * commits and checkpoints, resuming, refused batches, record rejections and quarantine, the success
 * threshold and `last_succeeded_at`.
 */

const key = (i: number) => `k${String(i).padStart(3, '0')}`;
const range = (n: number) => Array.from({ length: n }, (_, i) => key(i));
const attributesOf = (i: number) => ({ name: `name ${i}`, score: i });

let counter = 0;

async function pendingKeys(db: Db, connectorId: string): Promise<string[]> {
  const rows = (await db('deltalog')
    .where({ connector_id: connectorId })
    .whereNull('committed_at')
    .orderBy('record_key')
    .select('record_key')) as { record_key: string }[];
  return rows.map((r) => r.record_key);
}

async function logRow(db: Db, connectorId: string, recordKey: string) {
  const row = (await db('deltalog').where({ connector_id: connectorId, record_key: recordKey }).first()) as
    { attempts: unknown; last_error: string | null; committed_at: unknown } | undefined;
  assert.ok(row, `deltalog row ${recordKey}`);
  return {
    attempts: Number(row.attempts),
    last_error: row.last_error,
    committed_at: row.committed_at === null ? null : Number(row.committed_at),
  };
}

async function lastSucceededAt(db: Db, connectorId: string): Promise<number | null> {
  const row = (await db('connector_state').where({ connector_id: connectorId }).first()) as {
    last_succeeded_at: unknown;
  };
  return row.last_succeeded_at === null ? null : Number(row.last_succeeded_at);
}

/** The connector's rows in the deltalog, as the activities key them. */
function keyOf(connector: ConnectorDefinition): string {
  return connectorKey(connector.tenant, connector.id);
}

/** A destination that advertises a larger batch than the list behind it accepts. */
function overstatingLimit(remote: MemoryDestination, advertised: number): WritableDestination {
  return {
    type: 'memory',
    limits: { recordsPerCall: advertised },
    add: (members) => remote.add!(members),
    remove: (keys) => remote.remove!(keys),
    truncate: () => remote.truncate!(),
    listMembers: (cursor, limit) => remote.listMembers!(cursor, limit),
    check: () => remote.check(),
    close: async () => {},
  };
}

for (const dialect of dialects) {
  describe(`runs and sender on ${dialect}`, () => {
    let t: TestDatabase;
    let db: Db;

    before(async () => {
      t = await createTestDatabase(dialect);
      db = t.db;
    });
    after(() => t.drop());

    /** A connector over a fresh dataset table of n keys, its deltalog updated (all pending). */
    async function setup(n: number, policy: ConnectorInput['policy'] = {}) {
      const table = `people_${counter}`;
      const id = `conn-${counter++}`;
      await db.schema.createTable(table, (tb) => {
        tb.string('email', 255).primary();
        tb.string('name', 64).notNullable();
        tb.integer('score').notNullable();
      });
      if (n > 0) await db(table).insert(range(n).map((k, i) => ({ email: k, ...attributesOf(i) })));
      const connector: ConnectorDefinition = await saveConnector(db, {
        id,
        dataset: { table, key: 'email', attributes: ['name', 'score'] },
        destination: {
          type: 'http-list',
          baseUrl: 'http://unused.invalid',
          listId: 'l',
          tokenSecret: 'UNUSED',
        },
        policy,
      });
      await updateDeltalog(db, keyOf(connector), connector.dataset, 1_000);
      return { connector, table };
    }

    let runCounter = 0;
    async function newRun(connector: ConnectorDefinition): Promise<number> {
      return beginRun(
        db,
        {
          connectorId: keyOf(connector),
          tenant: connector.tenant,
          workflowId: `wf-${keyOf(connector)}`,
          workflowRunId: `run-${dialect}-${runCounter++}`,
          trigger: 'test',
        },
        1_000,
      );
    }

    test('sendPhase commits every batch and checkpoints the last key of it', async () => {
      const { connector, table } = await setup(10, { batchSize: 3 });
      const remote = new MemoryDestination({ recordsPerCall: 100 });
      const runId = await newRun(connector);
      const seen: { records: number; pending: string[]; checkpoint: unknown }[] = [];
      const progress = await sendPhase({
        db,
        connector,
        connectorKey: keyOf(connector),
        destination: remote,
        runId,
        phase: 'upserts',
        now: () => 2_000,
        onBatch: async (p) => {
          seen.push({
            records: p.recordsDone,
            pending: await pendingKeys(db, keyOf(connector)),
            checkpoint: await loadCheckpoint(db, runId, 'upserts'),
          });
        },
      });
      assert.deepEqual(
        seen.map((s) => s.records),
        [3, 6, 9, 10],
      );
      assert.deepEqual(
        seen.map((s) => s.checkpoint),
        [
          { cursor: key(2), recordsDone: 3 },
          { cursor: key(5), recordsDone: 6 },
          { cursor: key(8), recordsDone: 9 },
          { cursor: key(9), recordsDone: 10 },
        ],
      );
      // Committed batch by batch, not at the end.
      assert.deepEqual(
        seen.map((s) => s.pending),
        [range(10).slice(3), range(10).slice(6), range(10).slice(9), []],
      );
      assert.equal(progress.batches, 4);
      assert.equal(progress.delivered, 10);
      assert.equal(progress.apiCalls, 4);
      assert.equal(progress.failedCalls, 0);
      assert.equal(remote.calls.add, 4);
      assert.deepEqual(
        [...remote.members].sort(),
        range(10).map((k, i) => [k, attributesOf(i)]),
      );
      const run = await getRun(db, runId);
      assert.equal(run.records_sent, 10);
      assert.equal(run.api_calls, 4);
      assert.equal((await logRow(db, keyOf(connector), key(0))).committed_at, 2_000);

      // Deletions: only keys go out, in batches as well.
      await db(table)
        .whereIn('email', [key(1), key(4), key(7), key(8)])
        .delete();
      await updateDeltalog(db, keyOf(connector), connector.dataset, 3_000);
      const deletions = await sendPhase({
        db,
        connector,
        connectorKey: keyOf(connector),
        destination: remote,
        runId,
        phase: 'deletions',
      });
      assert.equal(deletions.batches, 2);
      assert.equal(deletions.delivered, 4);
      assert.equal(remote.calls.remove, 2);
      assert.deepEqual([...remote.members.keys()].sort(), [key(0), key(2), key(3), key(5), key(6), key(9)]);
      assert.deepEqual(await loadCheckpoint(db, runId, 'deletions'), { cursor: key(8), recordsDone: 4 });
      assert.deepEqual(await pendingCounts(db, keyOf(connector)), { additions: 0, updates: 0, deletions: 0 });
    });

    test('a row edited mid-send is sent as it is now, and not again by the next refresh', async () => {
      const { connector, table } = await setup(6, { batchSize: 2 });
      const remote = new MemoryDestination({ recordsPerCall: 100 });
      const runId = await newRun(connector);
      // Edited after the deltalog update read the dataset, before the send reads these rows.
      await db(table)
        .where({ email: key(4) })
        .update({ name: 'edited mid-send' });
      await sendPhase({
        db,
        connector,
        connectorKey: keyOf(connector),
        destination: remote,
        runId,
        phase: 'upserts',
        onBatch: async (p) => {
          if (p.batches === 1)
            await db(table)
              .where({ email: key(5) })
              .update({ score: 99 });
        },
      });
      assert.equal(remote.members.get(key(4))?.name, 'edited mid-send');
      // key(5) was edited while the send ran: the pipeline may have read its page before or after
      // the edit. Either way the deltalog keeps the hash of what was sent, so the next update
      // sends the edit exactly when the destination does not have it yet.
      const sentEdited = remote.members.get(key(5))?.score === 99;
      await updateDeltalog(db, keyOf(connector), connector.dataset, 5_000);
      assert.deepEqual(await pendingKeys(db, keyOf(connector)), sentEdited ? [] : [key(5)]);
      if (!sentEdited) {
        await sendPhase({
          db,
          connector,
          connectorKey: keyOf(connector),
          destination: remote,
          runId: await newRun(connector),
          phase: 'upserts',
        });
        assert.equal(remote.members.get(key(5))?.score, 99);
        await updateDeltalog(db, keyOf(connector), connector.dataset, 5_500);
        assert.deepEqual(await pendingKeys(db, keyOf(connector)), []);
      }
      // An edit after the send read the row is still a change.
      await db(table)
        .where({ email: key(5) })
        .update({ score: 100 });
      await updateDeltalog(db, keyOf(connector), connector.dataset, 6_000);
      assert.deepEqual(await pendingKeys(db, keyOf(connector)), [key(5)]);
    });

    test('a destination taking several calls at once gets that many batches in flight, committed in order', async () => {
      const { connector } = await setup(30, { batchSize: 2 });
      const remote = new MemoryDestination({ recordsPerCall: 100, maxConcurrent: 3 });
      let running = 0;
      let most = 0;
      const calls: string[][] = [];
      const slow: Destination = {
        ...overstatingLimit(remote, 100),
        limits: { recordsPerCall: 100, maxConcurrent: 3 },
        add: async (members: Member[]) => {
          running++;
          most = Math.max(most, running);
          calls.push(members.map((m) => m.key));
          // Later calls answer first: commits must still go in key order.
          await new Promise((resolve) => setTimeout(resolve, 30 - (calls.length % 3) * 10));
          running--;
          // The 8th batch (keys 14 and 15) fails: everything before it is committed.
          if (members[0]!.key === key(14)) throw new DestinationError('boom', 'retryable');
          return remote.add!(members);
        },
      };
      const runId = await newRun(connector);
      const checkpoints: number[] = [];
      await assert.rejects(
        sendPhase({
          db,
          connector,
          connectorKey: keyOf(connector),
          destination: slow,
          runId,
          phase: 'full',
          onBatch: (p) => void checkpoints.push(p.recordsDone),
        }),
        /boom/,
      );
      assert.equal(most, 3, 'three calls at once, never more');
      // Commits went in order and stopped at the failed batch (keys 14 and 15).
      assert.deepEqual(checkpoints, [2, 4, 6, 8, 10, 12, 14]);
      assert.deepEqual(await loadCheckpoint(db, runId, 'full'), { cursor: key(13), recordsDone: 14 });
      // What went out after it (at most the other batches in flight) is sent again on resume.
      const afterCheckpoint = calls.flat().filter((k) => k > key(13));
      assert.ok(
        afterCheckpoint.length <= 3 * 2,
        `at most three batches beyond the checkpoint: ${afterCheckpoint.length}`,
      );
    });

    test('a failed batch: the send ends only once every call already made has ended; fills go one at a time', async () => {
      const { connector } = await setup(12, { batchSize: 2 });
      const remote = new MemoryDestination({ recordsPerCall: 100, maxConcurrent: 3 });
      let running = 0;
      let most = 0;
      const slow: Destination = {
        ...overstatingLimit(remote, 100),
        limits: { recordsPerCall: 100, maxConcurrent: 3 },
        add: async (members: Member[]) => {
          running++;
          most = Math.max(most, running);
          try {
            // The first batch fails while the two after it are still running.
            if (members[0]!.key === key(0)) {
              await new Promise((resolve) => setTimeout(resolve, 50));
              throw new DestinationError('boom', 'retryable');
            }
            await new Promise((resolve) => setTimeout(resolve, 150));
            return await remote.add!(members);
          } finally {
            running--;
          }
        },
      };
      await assert.rejects(
        sendPhase({
          db,
          connector,
          connectorKey: keyOf(connector),
          destination: slow,
          runId: await newRun(connector),
          phase: 'full',
        }),
        /boom/,
      );
      assert.equal(running, 0, 'no call still running when the send rejected');
      assert.equal(most, 3);

      // A fill (a replace session, a list being built) writes its batches in order, one at a time.
      most = 0;
      const filling: Destination = {
        ...slow,
        add: async (members: Member[]) => {
          running++;
          most = Math.max(most, running);
          await new Promise((resolve) => setTimeout(resolve, 5));
          running--;
          return remote.add!(members);
        },
      };
      await sendPhase({
        db,
        connector,
        connectorKey: keyOf(connector),
        destination: filling,
        runId: await newRun(connector),
        phase: 'fill',
      });
      assert.equal(most, 1, 'one fill call at a time');
    });

    test('a send that dies resumes after the last committed page', async () => {
      const { connector } = await setup(10, { batchSize: 3 });
      const remote = new MemoryDestination({ recordsPerCall: 100 });
      remote.faults = { failAfterCalls: 2 };
      const runId = await newRun(connector);
      let heartbeat: SendProgress | undefined;
      await assert.rejects(
        sendPhase({
          db,
          connector,
          connectorKey: keyOf(connector),
          destination: remote,
          runId,
          phase: 'full',
          onBatch: (p) => {
            heartbeat = p;
          },
        }),
        (error) => error instanceof DestinationError && error.kind === 'retryable',
      );
      assert.equal(heartbeat?.recordsDone, 6);
      assert.ok(!('cursor' in heartbeat!), 'progress carries counts only: a cursor is a record key');
      assert.deepEqual(await loadCheckpoint(db, runId, 'full'), { cursor: key(5), recordsDone: 6 });
      assert.deepEqual(await pendingKeys(db, keyOf(connector)), range(10).slice(6));
      assert.deepEqual([...remote.members.keys()].sort(), range(6));

      // Resuming: the database's checkpoint decides. The full push goes on after k005 (a full push
      // re-reads the whole dataset, so only the checkpoint keeps the first two pages from going
      // out again).
      remote.faults = {};
      const sent: string[][] = [];
      const watching: Destination = {
        ...overstatingLimit(remote, 100),
        add: (members: Member[]) => {
          sent.push(members.map((m) => m.key));
          return remote.add!(members);
        },
      };
      const resumed = await sendPhase({
        db,
        connector,
        connectorKey: keyOf(connector),
        destination: watching,
        runId,
        phase: 'full',
      });
      assert.deepEqual(sent, [range(10).slice(6, 9), [key(9)]]);
      assert.equal(resumed.recordsDone, 10);
      assert.equal(resumed.batches, 2);
      assert.deepEqual(await pendingKeys(db, keyOf(connector)), []);
      assert.equal(remote.members.size, 10);

      // Once done, a retry finds the checkpoint at the end of the dataset and sends nothing.
      sent.length = 0;
      await sendPhase({
        db,
        connector,
        connectorKey: keyOf(connector),
        destination: watching,
        runId,
        phase: 'full',
      });
      assert.deepEqual(sent, [], 'the checkpoint is at the end of the dataset');
    });

    test('without a split budget, a batch refused as a whole stays pending with attempts + 1 and counts a failed call', async () => {
      const { connector } = await setup(7, { batchSize: 3, splitCallBudget: 0 });
      // The list takes 2 records per call but the connector was told 3: the full pages are refused.
      const remote = new MemoryDestination({ recordsPerCall: 2 });
      const runId = await newRun(connector);
      const progress = await sendPhase({
        db,
        connector,
        connectorKey: keyOf(connector),
        destination: overstatingLimit(remote, 3),
        runId,
        phase: 'upserts',
      });
      assert.equal(progress.batches, 3);
      assert.equal(progress.apiCalls, 3);
      assert.equal(progress.failedCalls, 2);
      assert.equal(progress.delivered, 1);
      assert.equal(progress.rejected, 6);
      assert.deepEqual([...remote.members.keys()], [key(6)]);
      assert.deepEqual(await pendingKeys(db, keyOf(connector)), range(6));
      for (const k of range(6)) {
        const row = await logRow(db, keyOf(connector), k);
        assert.equal(row.attempts, 1, k);
        assert.match(row.last_error ?? '', /^batch refused: 3 records exceed the limit of 2/);
      }
      assert.equal((await logRow(db, keyOf(connector), key(6))).attempts, 0);
      const run = await getRun(db, runId);
      assert.equal(run.api_calls, 3);
      assert.equal(run.failed_calls, 2);
      assert.equal(run.records_sent, 1);
      assert.equal(run.rejected, 6);

      const finished = await finishRun(db, runId, { successThreshold: 0.5 }, 9_000);
      assert.equal(finished.status, 'failed', '1 of 3 calls succeeded');
      assert.equal(finished.error, '2 of 3 API calls failed (threshold 50% success)');
    });

    test('a batch refused for one bad record is split down to it: the rest is delivered, every call counted', async () => {
      const { connector } = await setup(8, { batchSize: 8 });
      const remote = new MemoryDestination({ recordsPerCall: 8 });
      remote.refuseBatchFor = (k) => (k === key(3) ? `invalid payload at ${k}` : null);
      const runId = await newRun(connector);
      const progress = await sendPhase({
        db,
        connector,
        connectorKey: keyOf(connector),
        destination: remote,
        runId,
        phase: 'upserts',
      });
      // 8 refused → 4 refused + 4 → 2 refused + 2 → k002 + k003 refused: 7 calls.
      assert.equal(progress.apiCalls, 7);
      assert.equal(progress.failedCalls, 0, 'k003 is a rejected record, not a failed call');
      assert.equal(progress.delivered, 7);
      assert.equal(progress.rejected, 1);
      assert.deepEqual(
        [...remote.members.keys()].sort(),
        range(8).filter((k) => k !== key(3)),
      );
      assert.deepEqual(await pendingKeys(db, keyOf(connector)), [key(3)]);
      assert.equal(
        (await logRow(db, keyOf(connector), key(3))).last_error,
        `record refused: invalid payload at ${key(3)}`,
      );
      assert.deepEqual(await endpointCalls(db, runId), {
        add: { calls: 7, failed: 0, rateLimited: 0, retried: 3 },
      });
    });

    test('once the split budget is spent, what is still refused fails as a batch', async () => {
      const { connector } = await setup(8, { batchSize: 8, splitCallBudget: 2 });
      const remote = new MemoryDestination({ recordsPerCall: 8 });
      remote.refuseBatchFor = (k) => (k === key(3) ? 'invalid payload' : null);
      const runId = await newRun(connector);
      const progress = await sendPhase({
        db,
        connector,
        connectorKey: keyOf(connector),
        destination: remote,
        runId,
        phase: 'upserts',
      });
      assert.equal(progress.apiCalls, 3, 'the refused call and its two halves');
      assert.equal(progress.delivered, 4);
      assert.equal(progress.rejected, 4);
      assert.deepEqual(await pendingKeys(db, keyOf(connector)), range(4));
      assert.equal((await logRow(db, keyOf(connector), key(0))).last_error, 'batch refused: invalid payload');
    });

    test('records the destination rejects stay pending and are quarantined after maxAttempts runs', async () => {
      const { connector } = await setup(5, { batchSize: 10, maxAttempts: 3 });
      const remote = new MemoryDestination({ recordsPerCall: 100 });
      remote.reject = (k) => (k === key(2) ? 'invalid e-mail' : null);

      for (let attempt = 1; attempt <= 3; attempt++) {
        const runId = await newRun(connector);
        const progress = await sendPhase({
          db,
          connector,
          connectorKey: keyOf(connector),
          destination: remote,
          runId,
          phase: 'upserts',
        });
        assert.equal(progress.rejected, 1, `run ${attempt}`);
        assert.equal(progress.delivered, attempt === 1 ? 4 : 0);
        assert.equal(progress.failedCalls, 0, 'a record rejection is not a failed call');
        const row = await logRow(db, keyOf(connector), key(2));
        assert.equal(row.attempts, attempt);
        assert.equal(row.last_error, 'invalid e-mail');
        assert.equal(row.committed_at, null);
        assert.equal((await getRun(db, runId)).rejected, 1);
      }
      assert.equal(remote.recordsReceived.add, 5 + 1 + 1);
      assert.equal(await quarantinedCount(db, keyOf(connector), 3), 1);
      assert.deepEqual(await pendingCounts(db, keyOf(connector), { maxAttempts: 3 }), {
        additions: 0,
        updates: 0,
        deletions: 0,
      });

      // The fourth run leaves it alone.
      const runId = await newRun(connector);
      const progress = await sendPhase({
        db,
        connector,
        connectorKey: keyOf(connector),
        destination: remote,
        runId,
        phase: 'upserts',
      });
      assert.equal(progress.batches, 0);
      assert.equal(remote.recordsReceived.add, 7);
      assert.deepEqual(await pendingKeys(db, keyOf(connector)), [key(2)]);
      assert.equal(remote.members.has(key(2)), false);
    });

    test('finishRun: the record threshold counts rejections, not deferred ones', async () => {
      const { connector } = await setup(0);
      const judged = async (counters: { records_sent: number; rejected: number; deferred: number }) => {
        const runId = await newRun(connector);
        await incrementRunCounters(db, runId, { api_calls: 1, ...counters });
        return finishRun(db, runId, { successThreshold: 0.99, recordSuccessThreshold: 0.95 }, 5_000);
      };
      const refused = await judged({ records_sent: 90, rejected: 10, deferred: 0 });
      assert.equal(refused.status, 'failed');
      assert.equal(refused.error, '10 of 100 records were rejected (threshold 95% delivered)');
      assert.equal((await judged({ records_sent: 96, rejected: 4, deferred: 0 })).status, 'succeeded');
      const waiting = await judged({ records_sent: 0, rejected: 10, deferred: 10 });
      assert.equal(waiting.status, 'succeeded', 'refused for now, not the records’ fault');
    });

    test('finishRun: below the success threshold fails and keeps last_succeeded_at', async () => {
      const { connector } = await setup(50, { batchSize: 1 });
      // One call in 50 is refused as a whole (a 400 about that batch).
      const remote = new MemoryDestination({ recordsPerCall: 1 });
      let refuse: string | null = key(17);
      const destination: Destination = {
        ...overstatingLimit(remote, 1),
        add: async (members: Member[]) => {
          if (members.some((m) => m.key === refuse)) throw new DestinationError('bad request', 'batch', 400);
          return remote.add!(members);
        },
      };
      const before = await lastSucceededAt(db, keyOf(connector));
      assert.equal(before, null);

      const failing = await newRun(connector);
      await recordSnapshot(db, failing, 4_000, {
        datasetRows: 50,
        nullOrEmptyKeys: 0,
        oversizedKeys: 0,
        duplicateKeys: 0,
        samples: { nullOrEmptyKey: [], oversizedKey: [], duplicateKey: [] },
      });
      await sendPhase({
        db,
        connector,
        connectorKey: keyOf(connector),
        destination,
        runId: failing,
        phase: 'upserts',
      });
      let run = await getRun(db, failing);
      assert.equal(run.api_calls, 50);
      assert.equal(run.failed_calls, 1);
      assert.equal(meetsThreshold(run, 0.99), false, '49/50 = 0.98 < 0.99');
      assert.equal(meetsThreshold(run, 0.98), true, '49/50 = 0.98 >= 0.98');
      assert.ok(await loadCheckpoint(db, failing, 'upserts'));

      run = await finishRun(db, failing, { successThreshold: 0.99 }, 5_000);
      assert.equal(run.status, 'failed');
      assert.equal(run.finished_at, 5_000);
      assert.equal(run.error, '1 of 50 API calls failed (threshold 99% success)');
      assert.equal(await lastSucceededAt(db, keyOf(connector)), null, 'a failed run does not advance it');
      assert.equal(await loadCheckpoint(db, failing, 'upserts'), undefined, 'checkpoints are cleared');
      // A retried finish changes nothing.
      const again = await finishRun(db, failing, { successThreshold: 0 }, 6_000);
      assert.equal(again.status, 'failed');
      assert.equal(again.finished_at, 5_000);
      assert.equal(await lastSucceededAt(db, keyOf(connector)), null);

      // The next run delivers the refused record and passes: last_succeeded_at = its snapshot.
      refuse = null;
      const passing = await newRun(connector);
      await recordSnapshot(db, passing, 7_000, {
        datasetRows: 50,
        nullOrEmptyKeys: 0,
        oversizedKeys: 0,
        duplicateKeys: 0,
        samples: { nullOrEmptyKey: [], oversizedKey: [], duplicateKey: [] },
      });
      const progress = await sendPhase({
        db,
        connector,
        connectorKey: keyOf(connector),
        destination,
        runId: passing,
        phase: 'upserts',
      });
      assert.equal(progress.delivered, 1);
      run = await finishRun(db, passing, { successThreshold: 0.99 }, 8_000);
      assert.equal(run.status, 'succeeded');
      assert.equal(run.error, null);
      assert.equal(
        await lastSucceededAt(db, keyOf(connector)),
        7_000,
        'the snapshot time, not the finish time',
      );
      assert.equal(remote.members.size, 50);
    });

    test('beginRun is idempotent per workflow run id', async () => {
      const { connector } = await setup(0);
      const run = {
        connectorId: keyOf(connector),
        tenant: connector.tenant,
        workflowId: 'wf',
        workflowRunId: `same-${dialect}`,
        trigger: 'schedule',
      };
      const first = await beginRun(db, run, 1_000);
      const second = await beginRun(db, run, 2_000);
      assert.equal(second, first);
      const rows = (await db('refresh_runs').where({ workflow_run_id: run.workflowRunId })) as unknown[];
      assert.equal(rows.length, 1);
      const row = await getRun(db, first);
      assert.equal(row.status, 'running');
      assert.equal(row.started_at, 1_000, 'the first begin is kept');
      assert.equal(row.trigger, 'schedule');
      const state = (await db('connector_state')
        .where({ connector_id: keyOf(connector) })
        .first()) as {
        last_run_id: unknown;
      };
      assert.equal(Number(state.last_run_id), first);

      const other = await beginRun(db, { ...run, workflowRunId: `other-${dialect}` }, 3_000);
      assert.notEqual(other, first);
      const state2 = (await db('connector_state')
        .where({ connector_id: keyOf(connector) })
        .first()) as {
        last_run_id: unknown;
      };
      assert.equal(Number(state2.last_run_id), other);
      const abandoned = await getRun(db, first);
      assert.equal(abandoned.status, 'failed', 'a run left running by an ended workflow is closed');
      assert.equal(abandoned.error, ABANDONED);
      assert.equal(abandoned.finished_at, 3_000);
      assert.equal((await getRun(db, other)).status, 'running');
    });
  });
}

describe('success threshold', () => {
  test('meetsThreshold at the boundary', () => {
    assert.equal(meetsThreshold({ api_calls: 0, failed_calls: 0 }, 0.99), true);
    assert.equal(meetsThreshold({ api_calls: 100, failed_calls: 1 }, 0.99), true);
    assert.equal(meetsThreshold({ api_calls: 100, failed_calls: 2 }, 0.99), false);
    assert.equal(meetsThreshold({ api_calls: 1, failed_calls: 1 }, 0), true);
    assert.equal(meetsThreshold({ api_calls: 3, failed_calls: 0 }, 1), true);
    assert.equal(meetsThreshold({ api_calls: 3, failed_calls: 1 }, 1), false);
  });
});
