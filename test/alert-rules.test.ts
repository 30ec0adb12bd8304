import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { alertRulesSchema } from '../src/core/alert-rules';
import {
  alertsFor,
  judgeFinishedRun,
  judgeOverdue,
  markDelivered,
  undeliveredAlerts,
} from '../src/core/alerts';
import { beginRun } from '../src/core/runs';
import type { RunSummary } from '../src/core/summaries';
import { createTestDatabase, dialects, type TestDatabase } from './helpers/databases';

/** The alert rules on their own: dataset sizes against the recent median, overdue successes. */

for (const dialect of dialects) {
  describe(`alert rules (${dialect})`, () => {
    let t: TestDatabase;
    before(async () => {
      t = await createTestDatabase(dialect);
    });
    after(() => t.drop());

    const rules = alertRulesSchema.parse({
      webhooks: [{ urlSecret: 'HOOK' }],
      countDeviationFactor: 3,
      noSuccessWithinHours: 1,
    });
    const run = (fields: Partial<RunSummary>) =>
      ({
        status: 'succeeded',
        recordsSent: 0,
        rejected: 0,
        error: null,
        datasetSize: 100,
        ...fields,
      }) as RunSummary;

    async function pastRun(key: string, size: number, startedAt: number) {
      const id = await beginRun(
        t.db,
        {
          connectorId: key,
          tenant: 'default',
          workflowId: 'w',
          workflowRunId: `r-${Math.random()}`,
          trigger: 'test',
        },
        startedAt,
      );
      await t
        .db('refresh_runs')
        .where({ id })
        .update({ status: 'succeeded', dataset_size: size, finished_at: startedAt });
      return id;
    }

    test('a dataset far above or below the recent runs’ median fires; within the factor it does not', async () => {
      const key = 'default/sizes';
      for (const size of [100, 120, 90, 110, 95]) await pastRun(key, size, 1000);
      const latest = await pastRun(key, 0, 2000);
      const judge = async (size: number) =>
        (
          await judgeFinishedRun(t.db, key, rules, run({ runId: latest, datasetSize: size }), 1000, 2000)
        ).find((v) => v.rule === 'countDeviation')!;
      assert.equal((await judge(250)).firing, false, '250 is 2.5× the median of 100');
      assert.equal((await judge(301)).firing, true);
      assert.equal((await judge(33)).firing, true);
      assert.match((await judge(400)).message!, /holds 400 records, the recent runs' median 100/);
    });

    test('no success within the budget fires on a failed run, and is resolved by the next success', async () => {
      const key = 'default/overdue';
      const hour = 3_600_000;
      const failed = run({ runId: 1, status: 'failed', error: 'boom' });
      const overdue = (await judgeFinishedRun(t.db, key, rules, failed, 0, 2 * hour)).find(
        (v) => v.rule === 'noSuccess',
      )!;
      assert.equal(overdue.firing, true);
      const notYet = (await judgeFinishedRun(t.db, key, rules, failed, 1.5 * hour, 2 * hour)).find(
        (v) => v.rule === 'noSuccess',
      )!;
      assert.equal(notYet.firing, false, 'the last success was half an hour ago');

      const who = { connectorKey: key, connectorId: 'overdue', tenant: 'default' };
      const first = await alertsFor(t.db, who, [overdue], 1, 2 * hour);
      await markDelivered(t.db, key, first[0]!);
      const again = await alertsFor(t.db, who, [overdue], 2, 3 * hour);
      const recovered = await alertsFor(t.db, who, [{ rule: 'noSuccess', firing: false }], 3, 4 * hour);
      assert.deepEqual(
        [first, again, recovered].map((alerts) => alerts.map((a) => `${a.rule} ${a.state}`)),
        [['noSuccess firing'], [], ['noSuccess resolved']],
      );
    });

    test('between runs: overdue from the last success, else the first run, else when it was saved', async () => {
      const hour = 3_600_000;
      const judge = (
        key: string,
        connector: { lastSucceededAt: number | null; createdAt: number },
        now: number,
      ) => judgeOverdue(t.db, key, rules, connector, now);
      const saved = { lastSucceededAt: null, createdAt: 10 * hour };
      assert.equal(
        (await judge('default/never-ran', saved, 10.5 * hour))!.firing,
        false,
        'saved half an hour ago',
      );
      const never = (await judge('default/never-ran', saved, 11.5 * hour))!;
      assert.equal(never.firing, true);
      assert.match(never.message!, /for more than 1 h \(last: never\)/);
      const succeeded = { lastSucceededAt: 11 * hour, createdAt: 0 };
      assert.equal((await judge('default/never-ran', succeeded, 11.5 * hour))!.firing, false);
      assert.equal((await judge('default/never-ran', succeeded, 12.5 * hour))!.firing, true);
      // Saved long ago, first run (failing) recently: counted from that run, as after a run, so the
      // watchdog and the runs agree and the alert does not flap.
      await pastRun('default/late-start', 10, 11 * hour);
      await t.db('refresh_runs').where({ connector_id: 'default/late-start' }).update({ status: 'failed' });
      const lateStart = { lastSucceededAt: null, createdAt: 0 };
      assert.equal((await judge('default/late-start', lateStart, 11.5 * hour))!.firing, false);
      const afterRun = (
        await judgeFinishedRun(
          t.db,
          'default/late-start',
          rules,
          run({ runId: 9, status: 'failed' }),
          null,
          11.5 * hour,
        )
      ).find((v) => v.rule === 'noSuccess')!;
      assert.equal(afterRun.firing, false, 'the same verdict after a run');
      const noBudget = alertRulesSchema.parse({ webhooks: [{ urlSecret: 'HOOK' }], failedRun: true });
      assert.equal(await judgeOverdue(t.db, 'default/never-ran', noBudget, saved, 100 * hour), undefined);
    });

    test('a change stays pending until delivered; a newer change is not cleared by an older delivery', async () => {
      const key = 'default/delivery';
      const who = { connectorKey: key, connectorId: 'delivery', tenant: 'default' };
      const firing = { rule: 'failedRun' as const, firing: true, message: 'run 1 failed: boom' };
      const [fired] = await alertsFor(t.db, who, [firing], 1, 100);
      assert.deepEqual(
        (await undeliveredAlerts(t.db, who)).map((a) => [a.rule, a.state, a.message, a.runId, a.at]),
        [['failedRun', 'firing', 'run 1 failed: boom', 1, 100]],
      );
      assert.deepEqual(await alertsFor(t.db, who, [firing], 2, 200), [], 'firing already, delivered or not');
      await markDelivered(t.db, key, fired!);
      assert.deepEqual(await undeliveredAlerts(t.db, who), []);
      assert.deepEqual(await alertsFor(t.db, who, [firing], 3, 300), [], 'delivered: still quiet');

      // It recovers, and fails again before the recovery was delivered.
      const [resolved] = await alertsFor(t.db, who, [{ rule: 'failedRun', firing: false }], 4, 400);
      assert.equal(resolved!.state, 'resolved');
      const [again] = await alertsFor(t.db, who, [firing], 5, 500);
      assert.equal(again!.state, 'firing', 'an undelivered recovery no longer counts as firing');
      await markDelivered(t.db, key, resolved!);
      assert.deepEqual(
        (await undeliveredAlerts(t.db, who)).map((a) => `${a.rule} ${a.state} ${a.at}`),
        ['failedRun firing 500'],
        'the older delivery left the newer change pending',
      );
      await markDelivered(t.db, key, again!);
      const [last] = await alertsFor(t.db, who, [{ rule: 'failedRun', firing: false }], 6, 600);
      await markDelivered(t.db, key, last!);

      // Fires and recovers before the firing was delivered: nothing to send at all.
      await alertsFor(t.db, who, [firing], 7, 700);
      assert.deepEqual(await alertsFor(t.db, who, [{ rule: 'failedRun', firing: false }], 8, 800), []);
      assert.deepEqual(await undeliveredAlerts(t.db, who), []);
      assert.equal(
        (await t.db('alert_states').where({ connector_id: key })).length,
        0,
        'a delivered recovery is forgotten',
      );
    });
  });
}
