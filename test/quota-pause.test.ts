import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { describeProgress } from '../src/cli/format';
import { saveConnector } from '../src/core/connector-store';
import { QuotaExhaustedError, type Member } from '../src/core/destination';
import { getRun } from '../src/core/runs';
import { MemoryDestination } from './helpers/memory-destination';
import { createTestDatabase, type TestDatabase } from './helpers/databases';
import { startTemporal, type TemporalHarness } from './helpers/temporal';

/**
 * A destination quota that only resets at a fixed time (HubSpot's DAILY policy) cannot be waited
 * out by retries: the run pauses in Temporal until the reset, says why, and resumes from its last
 * committed batch without having burnt an attempt.
 */
describe('a run that finds the daily quota used up', () => {
  let t: TestDatabase;
  let temporal: TemporalHarness;
  before(async () => {
    [t, temporal] = await Promise.all([createTestDatabase('sqlite'), startTemporal()]);
    await t.db.schema.createTable('people', (table) => {
      table.string('email').primary();
    });
    await t
      .db('people')
      .insert(
        Array.from({ length: 250 }, (_, i) => ({ email: `p${String(i).padStart(3, '0')}@example.com` })),
      );
    await saveConnector(t.db, {
      id: 'quota',
      dataset: { table: 'people', key: 'email' },
      destination: {
        type: 'http-list',
        baseUrl: 'http://unused.invalid',
        listId: 'l',
        tokenSecret: 'UNUSED',
      },
      policy: { batchSize: 100 },
    });
  });
  after(async () => {
    await t.drop();
    await temporal.stop();
  });

  test('pauses until the reset, shows the reason, then resumes where it stopped', async () => {
    const remote = new MemoryDestination({ recordsPerCall: 100 });
    const add = remote.add!.bind(remote);
    let adds = 0;
    let resumeAt = 0;
    (remote as { add: (members: Member[]) => ReturnType<typeof add> }).add = async (members) => {
      adds++;
      if (adds === 2) {
        resumeAt = Date.now() + 3_000;
        throw new QuotaExhaustedError('memory: daily quota (DAILY) used up', new Date(resumeAt));
      }
      return add(members);
    };

    await temporal.withWorker({ db: t.db, destinations: () => remote }, async (client) => {
      const handle = await client.startRefresh('quota');
      let paused: Awaited<ReturnType<typeof handle.progress>> | undefined;
      for (let i = 0; i < 100 && !paused; i++) {
        const progress = await handle.progress();
        if (progress.phase === 'paused') paused = progress;
        else await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.ok(paused, 'the run showed itself paused');
      assert.equal(paused.paused?.reason, 'memory: daily quota (DAILY) used up');
      assert.equal(paused.paused?.until, new Date(resumeAt).toISOString());
      assert.equal(paused.retrying, null, 'no retry is running while paused');
      // `deltasync progress` says it.
      assert.match(
        describeProgress('quota', paused),
        /paused: +memory: daily quota \(DAILY\) used up; resumes by itself at 20\d\d-/,
      );
      // The run says why too, for `deltasync runs`.
      const run = await getRun(t.db, paused.runId!);
      assert.match(run.last_failure ?? '', /daily quota \(DAILY\) used up; the run pauses until/);

      const summary = await handle.result();
      assert.equal(summary.status, 'succeeded');
      assert.ok(Date.now() >= resumeAt, 'it did not resume before the reset');
      assert.equal(remote.lists.get('main')!.size, 250, 'every record arrived');
      // First batch, the refused one, then the refused batch again and the last: nothing re-sent twice.
      assert.equal(adds, 4);

      // The send was scheduled again after the pause, not retried: no attempt was burnt.
      const history = await client.temporal.workflow
        .getHandle(handle.workflowId, handle.runId)
        .fetchHistory();
      const sends = history.events!.filter(
        (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'sendChanges',
      );
      assert.equal(sends.length, 2);
      const attempts = history.events!.flatMap((e) =>
        e.activityTaskStartedEventAttributes ? [e.activityTaskStartedEventAttributes.attempt] : [],
      );
      assert.ok(
        attempts.every((a) => a === 1),
        `every activity ran once per schedule (${attempts.join(',')})`,
      );
      assert.equal(
        history.events!.filter((e) => e.timerStartedEventAttributes).length,
        1,
        'one durable timer',
      );
    });
  });
});
