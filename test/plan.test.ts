import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { Capabilities } from '../src/core/destination';
import type { PendingCounts } from '../src/core/deltalog';
import {
  estimateCosts,
  planRefresh,
  PlanningError,
  STRATEGIES,
  type Cost,
  type PlanInput,
  type Strategy,
} from '../src/core/plan';
import { EVERYTHING } from './helpers/memory-destination';

/** The planner is pure: counts in, decision out. */

const everything: Capabilities = EVERYTHING;
const NONE: PendingCounts = { additions: 0, updates: 0, deletions: 0 };

function input(overrides: Partial<PlanInput>): PlanInput {
  const pending = overrides.pending ?? NONE;
  return {
    capabilities: everything,
    recordsPerCall: 100,
    pending,
    pendingInHorizon: pending,
    datasetSize: 1_000,
    remoteSize: 1_000,
    recordBytes: 100,
    keyBytes: 20,
    listPageSize: 1_000,
    strategy: 'auto',
    ...overrides,
  };
}

/** Predicted calls of the three classic strategies (the others are tested on their own below). */
const CLASSIC = ['diff', 'full', 'truncate'] as const;
function callsOf(estimates: Record<Strategy, Cost | null>) {
  return Object.fromEntries(CLASSIC.map((s) => [s, estimates[s]?.calls ?? null]));
}
const estimateCalls = (scenario: PlanInput) => callsOf(estimateCosts(scenario));

function planningError(fn: () => unknown): PlanningError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof PlanningError, `expected a PlanningError, got ${String(error)}`);
    assert.equal(error.name, 'PlanningError');
    return error;
  }
  assert.fail('expected a PlanningError');
}

describe('planRefresh', () => {
  test('nothing pending inside the horizon: no refresh, even with older pending changes', () => {
    const none = planRefresh(input({}));
    assert.equal(none.needed, false);
    assert.equal(none.strategy, null);
    assert.match(none.reason, /no pending changes inside the horizon/);

    const old = planRefresh(
      input({ pending: { additions: 5, updates: 2, deletions: 3 }, pendingInHorizon: NONE }),
    );
    assert.equal(old.needed, false);
    assert.equal(old.strategy, null);
  });

  test('any pending change inside the horizon triggers a refresh', () => {
    for (const inHorizon of [
      { additions: 1, updates: 0, deletions: 0 },
      { additions: 0, updates: 1, deletions: 0 },
      { additions: 0, updates: 0, deletions: 1 },
    ]) {
      const plan = planRefresh(
        input({ pending: { additions: 3, updates: 3, deletions: 3 }, pendingInHorizon: inHorizon }),
      );
      assert.equal(plan.needed, true, JSON.stringify(inHorizon));
      assert.equal(plan.strategy, 'diff');
    }
  });

  test('diff is chosen when it is cheapest', () => {
    const plan = planRefresh(input({ pending: { additions: 120, updates: 30, deletions: 40 } }));
    assert.equal(plan.needed, true);
    assert.equal(plan.strategy, 'diff');
    // diff: ceil(150/100) + ceil(40/100) = 3; full: 10 + 1 = 11; truncate: 1 + 10 = 11
    assert.deepEqual(callsOf(plan.estimates), { diff: 3, full: 11, truncate: 11 });
    assert.match(
      plan.reason,
      /cheapest in API calls \(diff 3, full push \+ deletes 11, truncate \+ reload 11, new list \+ swap 12\)/,
    );
  });

  test('truncate + reload is chosen when churn is huge relative to the list', () => {
    // A list of 1,000 of which 900 left and 900 new keys came: the dataset still holds 1,000.
    const plan = planRefresh(input({ pending: { additions: 900, updates: 0, deletions: 900 } }));
    // diff: 9 + 9 = 18; full: 10 + 9 = 19; truncate: 1 + 10 = 11
    assert.deepEqual(callsOf(plan.estimates), { diff: 18, full: 19, truncate: 11 });
    assert.equal(plan.strategy, 'truncate');

    // Without truncate the diff (18) beats the full push (19).
    const noTruncate = planRefresh(
      input({
        capabilities: { ...everything, truncate: false, createList: false },
        pending: { additions: 900, updates: 0, deletions: 900 },
      }),
    );
    assert.deepEqual(callsOf(noTruncate.estimates), { diff: 18, full: 19, truncate: null });
    assert.equal(noTruncate.strategy, 'diff');
  });

  test("truncate + reload is ruled out, with the reason on the plan, for a list at the destination's truncate limit", () => {
    const churn = { additions: 90_000, updates: 0, deletions: 90_000 };
    const at = (remoteSize: number) =>
      input({
        pending: churn,
        remoteSize,
        datasetSize: remoteSize,
        truncateMaxMembers: 100_000,
        capabilities: { ...everything, createList: false },
      });
    // Under the limit (HubSpot: fewer than 100,000 members) truncate is the cheapest.
    assert.equal(planRefresh(at(99_999)).strategy, 'truncate');
    // At it, the planner no longer chooses truncate, and says why.
    const plan = planRefresh(at(100_000));
    assert.equal(plan.estimates.truncate, null);
    assert.equal(plan.strategy, 'diff');
    assert.match(
      plan.reason,
      /truncate \+ reload ruled out: the destination empties only lists of fewer than 100,000 members and this one holds 100,000/,
    );
    // Forcing it is refused up front with the same reason, not sent to fail at the vendor.
    const error = planningError(() => planRefresh({ ...at(250_000), strategy: 'truncate' }));
    assert.match(error.message, /fewer than 100,000 members and this one holds 250,000/);
  });

  test('ties go to the diff, then to the full push', () => {
    // diff: 10 + 0 = 10; full: 10 + 0 = 10; truncate: 11
    const tie = planRefresh(input({ pending: { additions: 1_000, updates: 0, deletions: 0 } }));
    assert.deepEqual(callsOf(tie.estimates), { diff: 10, full: 10, truncate: 11 });
    assert.equal(tie.strategy, 'diff');
  });

  test('a forced strategy is honoured, even with nothing pending', () => {
    for (const strategy of STRATEGIES) {
      const plan = planRefresh(input({ strategy }));
      assert.equal(plan.needed, true, strategy);
      assert.equal(plan.strategy, strategy);
      assert.match(plan.reason, /^forced: /);
    }
    // Forced even where auto would pick something cheaper.
    const forced = planRefresh(
      input({ strategy: 'full', pending: { additions: 1, updates: 0, deletions: 0 } }),
    );
    assert.equal(forced.strategy, 'full');
    assert.deepEqual(callsOf(forced.estimates), { diff: 1, full: 10, truncate: 11 });
  });

  test('forcing a strategy the destination cannot carry out is a PlanningError', () => {
    const noTruncate = planningError(() =>
      planRefresh(input({ strategy: 'truncate', capabilities: { ...everything, truncate: false } })),
    );
    assert.match(noTruncate.message, /strategy 'truncate' \(truncate \+ reload\) is not possible/);
    assert.match(noTruncate.message, /cannot truncate the list/);

    const noRemove = planningError(() =>
      planRefresh(
        input({
          strategy: 'diff',
          capabilities: { ...everything, remove: false },
          pending: { additions: 0, updates: 0, deletions: 7 },
        }),
      ),
    );
    assert.match(noRemove.message, /strategy 'diff' \(diff\) is not possible/);
    assert.match(noRemove.message, /cannot remove members and 7 deletions are pending/);

    const noAdd = planningError(() =>
      planRefresh(input({ strategy: 'full', capabilities: { ...everything, add: false } })),
    );
    assert.match(noAdd.message, /cannot add members/);

    // Without deletions pending, a destination that cannot remove still takes a forced diff.
    const fine = planRefresh(
      input({ strategy: 'diff', capabilities: { ...everything, remove: false, truncate: false } }),
    );
    assert.equal(fine.strategy, 'diff');
  });

  test('pending deletions with neither remove nor truncate is a PlanningError', () => {
    const error = planningError(() =>
      planRefresh(
        input({
          capabilities: { ...everything, remove: false, truncate: false, createList: false },
          pending: { additions: 2, updates: 0, deletions: 5 },
        }),
      ),
    );
    assert.match(error.message, /no strategy can deliver the pending changes/);
    assert.match(error.message, /5 deletions are pending/);
    assert.match(error.message, /neither remove nor truncate/);

    // With truncate, deletions go out by reloading the list.
    const reload = planRefresh(
      input({
        capabilities: { ...everything, remove: false, createList: false },
        pending: { additions: 2, updates: 0, deletions: 5 },
      }),
    );
    assert.equal(reload.strategy, 'truncate');
    assert.deepEqual(callsOf(reload.estimates), { diff: null, full: null, truncate: 11 });
  });
  test('a destination that cannot add is named as the problem, not deletions', () => {
    // e.g. an http-list configured with `supports: ['remove']`
    const error = planningError(() =>
      planRefresh(
        input({
          capabilities: { ...everything, add: false, createList: false },
          pending: { additions: 3, updates: 0, deletions: 0 },
        }),
      ),
    );
    assert.match(error.message, /cannot add members/);
    assert.doesNotMatch(error.message, /0 pending deletions/);
  });
});

describe('estimateCosts', () => {
  test('new list + swap and reconcile', () => {
    const costs = estimateCosts(
      input({ pending: { additions: 10, updates: 0, deletions: 5 }, remoteSize: 2_500 }),
    );
    // create + swap, then 10 fill calls; nothing to retire the first time (never the configured list)
    assert.deepEqual(costs.newList, { calls: 2 + 10, records: 1_000, bytes: 100_000 });
    // after an earlier swap, and with a list a failed run left half-built, both are retired
    const later = estimateCosts(input({ listsToRetire: 2 }));
    assert.equal(later.newList!.calls, 4 + 10);
    // read 3 pages of the remote list, then the diff: 1 + 1
    assert.deepEqual(costs.reconcile, { calls: 3 + 2, records: 15, bytes: 10 * 100 + 5 * 20 });
    const cannot = estimateCosts(
      input({ capabilities: { ...everything, createList: false, listMembers: false } }),
    );
    assert.equal(cannot.newList, null);
    assert.equal(cannot.reconcile, null);
  });

  test('an upload-only destination gets new list + swap from auto', () => {
    const uploadOnly = { ...everything, add: false, remove: false, truncate: false, listMembers: false };
    const plan = planRefresh(
      input({ capabilities: uploadOnly, pending: { additions: 1, updates: 0, deletions: 1 } }),
    );
    assert.equal(plan.strategy, 'newList');
  });

  test('byte limits shrink the batches the estimate assumes', () => {
    // 100 records per call, but only 2,000 bytes per call at 100 bytes a record: 20 per call.
    const costs = estimateCosts(
      input({ bytesPerCall: 2_000, pending: { additions: 100, updates: 0, deletions: 0 } }),
    );
    assert.equal(costs.diff!.calls, 5);
    assert.equal(costs.full!.calls, 50);
    assert.equal(costs.diff!.bytes, 100 * 100);
  });

  test('equal calls: fewer records sent wins', () => {
    // 50 additions: diff 1 call, 50 records; full push 10 calls. With 1,000 per call both are 1 call.
    const plan = planRefresh(
      input({ recordsPerCall: 1_000, pending: { additions: 50, updates: 0, deletions: 0 } }),
    );
    assert.equal(callsOf(plan.estimates).diff, callsOf(plan.estimates).full);
    assert.equal(plan.strategy, 'diff');
  });
});

describe('estimateCalls', () => {
  test('exact values: calls round up per record kind', () => {
    assert.deepEqual(
      estimateCalls(input({ pending: { additions: 150, updates: 51, deletions: 1 }, datasetSize: 1_001 })),
      // diff: ceil(201/100) + ceil(1/100) = 3 + 1; full: ceil(1001/100) + 1 = 12; truncate: 1 + 11
      { diff: 4, full: 12, truncate: 12 },
    );
    assert.deepEqual(estimateCalls(input({ datasetSize: 0 })), { diff: 0, full: 0, truncate: 1 });
    assert.deepEqual(
      estimateCalls(
        input({ recordsPerCall: 1, pending: { additions: 3, updates: 2, deletions: 4 }, datasetSize: 9 }),
      ),
      { diff: 9, full: 13, truncate: 10 },
    );
    assert.deepEqual(
      estimateCalls(
        input({
          recordsPerCall: 10_000,
          pending: { additions: 10_000, updates: 0, deletions: 10_001 },
          datasetSize: 20_000,
        }),
      ),
      { diff: 3, full: 4, truncate: 3 },
    );
  });

  test('strategies the destination cannot carry out are null', () => {
    const pending = { additions: 1, updates: 0, deletions: 1 };
    assert.deepEqual(estimateCalls(input({ capabilities: { ...everything, add: false }, pending })), {
      diff: null,
      full: null,
      truncate: null,
    });
    assert.deepEqual(estimateCalls(input({ capabilities: { ...everything, remove: false }, pending })), {
      diff: null,
      full: null,
      truncate: 11,
    });
    assert.deepEqual(estimateCalls(input({ capabilities: { ...everything, truncate: false }, pending })), {
      diff: 2,
      full: 11,
      truncate: null,
    });
  });

  test('property: auto never picks a strategy costlier than another allowed one', () => {
    const capabilitiesArb = fc.record({
      add: fc.boolean(),
      remove: fc.boolean(),
      truncate: fc.boolean(),
      listMembers: fc.boolean(),
      updateAttributes: fc.boolean(),
      createList: fc.boolean(),
    });
    const scenarioArb = fc
      .record({
        capabilities: capabilitiesArb,
        recordsPerCall: fc.integer({ min: 1, max: 500 }),
        additions: fc.nat(5_000),
        updates: fc.nat(5_000),
        deletions: fc.nat(5_000),
        unchanged: fc.nat(20_000),
        horizonShare: fc.double({ min: 0, max: 1, noNaN: true }),
        recordBytes: fc.integer({ min: 1, max: 5_000 }),
        keyBytes: fc.integer({ min: 1, max: 300 }),
        bytesPerCall: fc.option(fc.integer({ min: 1_000, max: 5_000_000 })),
      })
      .map((s): PlanInput => {
        const pending = { additions: s.additions, updates: s.updates, deletions: s.deletions };
        const part = (n: number) => Math.floor(n * s.horizonShare);
        return {
          capabilities: s.capabilities,
          recordsPerCall: s.recordsPerCall,
          pending,
          pendingInHorizon: {
            additions: part(s.additions),
            updates: part(s.updates),
            deletions: part(s.deletions),
          },
          datasetSize: s.additions + s.updates + s.unchanged,
          remoteSize: s.updates + s.deletions + s.unchanged,
          recordBytes: s.recordBytes,
          keyBytes: s.keyBytes,
          bytesPerCall: s.bytesPerCall ?? undefined,
          listPageSize: 1_000,
          strategy: 'auto',
        };
      });

    fc.assert(
      fc.property(scenarioArb, (scenario) => {
        const costs = estimateCosts(scenario);
        const estimates = Object.fromEntries(STRATEGIES.map((s) => [s, costs[s]?.calls ?? null]));
        // `auto` never reads the whole remote list: a reconcile is only ever requested.
        const allowed = STRATEGIES.filter((s) => s !== 'reconcile' && costs[s] !== null);
        const inHorizon =
          scenario.pendingInHorizon.additions +
          scenario.pendingInHorizon.updates +
          scenario.pendingInHorizon.deletions;
        let plan;
        try {
          plan = planRefresh(scenario);
        } catch (error) {
          assert.ok(error instanceof PlanningError);
          assert.equal(allowed.length, 0, 'only when no strategy is allowed');
          assert.ok(inHorizon > 0, 'only when something has to be sent');
          return;
        }
        assert.deepEqual(plan.estimates, costs);
        if (inHorizon === 0) {
          assert.equal(plan.needed, false);
          return;
        }
        assert.equal(plan.needed, true);
        const chosen = plan.strategy as Strategy;
        assert.ok(allowed.includes(chosen), `${chosen} is allowed`);
        for (const other of allowed) {
          assert.ok(estimates[chosen]! <= estimates[other]!, `${chosen} (${estimates[chosen]}) <= ${other}`);
        }
      }),
      { numRuns: 2_000 },
    );
  });
});
