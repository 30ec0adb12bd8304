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
