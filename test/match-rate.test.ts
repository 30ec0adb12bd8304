import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeProgress, describeRun } from '../src/cli/format';
import type { LiveProgress, RunSummary } from '../src/client';
import { createWorkerMetrics } from '../src/observability/metrics';

/** Match rates where the destination reports them: /metrics, `progress` and `runs --details`. */

test('/metrics counts what the destination received and found invalid', async () => {
  const metrics = createWorkerMetrics({ defaultMetrics: false });
  metrics.observer.onBatch('meta-custom-audience', {
    delivered: 8,
    rejected: 2,
    reported: { received: 10, invalid: 2 },
  });
  metrics.observer.onBatch('meta-custom-audience', {
    delivered: 5,
    rejected: 0,
    reported: { received: 5, invalid: 0 },
  });
  metrics.observer.onBatch('http-list', { delivered: 5, rejected: 0 });
  const text = await metrics.render();
  assert.match(
    text,
    /^deltasync_destination_counted_records_total\{destination="meta-custom-audience",verdict="received"\} 15$/m,
  );
  assert.match(
    text,
    /^deltasync_destination_counted_records_total\{destination="meta-custom-audience",verdict="invalid"\} 2$/m,
  );
  assert.doesNotMatch(
    text,
    /counted_records_total\{destination="http-list"/,
    'a destination that says nothing has no series',
  );
});

test('progress and runs --details show the match rate', () => {
  const phase = {
    phase: 'upserts',
    recordsDone: 40,
    batches: 4,
    delivered: 37,
    rejected: 3,
    skipped: 0,
    apiCalls: 4,
    failedCalls: 0,
    rateLimitWaits: 0,
    bytesSent: 0,
    reportedReceived: 39,
    reportedInvalid: 2,
  };
  const progress = {
    connectorId: 'meta-match',
    runId: 3,
    phase: 'done',
    status: 'COMPLETED',
    plan: null,
    completedPhases: [phase],
    sending: null,
    retrying: null,
  } as unknown as LiveProgress;
  assert.match(
    describeProgress('meta-match', progress),
    /the destination received 39, 2 invalid \(94\.9% matched\)/,
  );
  const run = {
    runId: 3,
    status: 'succeeded',
    strategy: 'diff',
    durationMs: 1200,
    additions: 40,
    updates: 0,
    deletions: 0,
    recordsSent: 37,
    apiCalls: 4,
    rejected: 3,
    quarantined: 0,
    badRows: 0,
    deletionsHeld: 0,
    error: null,
    matchRate: { received: 39, invalid: 2, rate: 37 / 39 },
  } as unknown as RunSummary;
  assert.match(describeRun(run), /^ {2}matched {3}94\.9%: the destination received 39, 2 invalid$/m);
});

test("/metrics adds up the destination's match estimates, records × percent at each bound", async () => {
  const metrics = createWorkerMetrics({ defaultMetrics: false });
  // Two jobs: 20 records at 51–60%, 5 at 91–100%.
  metrics.observer.onBatch('google-customer-match', {
    delivered: 20,
    rejected: 0,
    estimated: { records: 20, lowSum: 20 * 51, highSum: 20 * 60 },
  });
  metrics.observer.onBatch('google-customer-match', {
    delivered: 5,
    rejected: 0,
    estimated: { records: 5, lowSum: 5 * 91, highSum: 5 * 100 },
  });
  const text = await metrics.render();
  const series = (bound: string) =>
    new RegExp(
      `^deltasync_destination_estimated_matches_total\\{destination="google-customer-match",bound="${bound}"\\} ([\\d.]+)$`,
      'm',
    ).exec(text)?.[1];
  assert.match(
    text,
    /^deltasync_destination_estimated_records_total\{destination="google-customer-match"\} 25$/m,
  );
  assert.equal(series('low'), '14.75');
  assert.equal(series('high'), '17');
});

test('progress and runs --details show the match estimate, weighted by records', () => {
  const progress = {
    connectorId: 'gcm',
    runId: 4,
    phase: 'done',
    status: 'COMPLETED',
    plan: null,
    completedPhases: [
      {
        phase: 'upserts',
        recordsDone: 25,
        batches: 3,
        delivered: 25,
        rejected: 0,
        skipped: 0,
        apiCalls: 15,
        failedCalls: 0,
        rateLimitWaits: 0,
        bytesSent: 0,
        estimated: { records: 25, lowSum: 20 * 51 + 5 * 91, highSum: 20 * 60 + 5 * 100 },
      },
    ],
    sending: null,
    retrying: null,
  } as unknown as LiveProgress;
  assert.match(describeProgress('gcm', progress), /; the destination estimates 59–68% of 25 records matched/);
  const run = {
    runId: 4,
    status: 'succeeded',
    strategy: 'diff',
    durationMs: 1200,
    additions: 25,
    updates: 0,
    deletions: 0,
    recordsSent: 25,
    apiCalls: 15,
    rejected: 0,
    quarantined: 0,
    badRows: 0,
    deletionsHeld: 0,
    error: null,
    matchRate: null,
    matchEstimate: { records: 25, lowPercent: 59, highPercent: 68 },
  } as unknown as RunSummary;
  assert.match(describeRun(run), /^ {2}matched {3}59–68% of 25 records \(the destination's estimate\)$/m);
});
