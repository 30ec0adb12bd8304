import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';
import type { RefreshObserver } from './observer';

/**
 * The worker's Prometheus metrics, on a registry of its own (not prom-client's global one, so
 * several workers in one process, as in tests, never share or clash). Labels are destination
 * types, endpoint names, strategies and statuses: a small, fixed set, never connector data.
 */
export interface WorkerMetrics {
  registry: Registry;
  /** Feeds the refresh metrics from the engine (createActivities({ observer })). */
  observer: RefreshObserver;
  /** The Prometheus text exposition of every metric. */
  render(): Promise<string>;
  /** Content-Type of `render()`'s output. */
  contentType: string;
}

export const METRIC_NAMES = {
  recordsSent: 'deltasync_records_sent_total',
  apiCalls: 'deltasync_api_calls_total',
  rejections: 'deltasync_rejections_total',
  rateLimitWaits: 'deltasync_rate_limit_waits_total',
  refreshDuration: 'deltasync_refresh_duration_seconds',
  destinationCounted: 'deltasync_destination_counted_records_total',
  destinationEstimatedMatches: 'deltasync_destination_estimated_matches_total',
  destinationEstimatedRecords: 'deltasync_destination_estimated_records_total',
} as const;

/** From a few seconds (a no-op) to many hours (a full reload of a large list through slow jobs). */
const DURATION_BUCKETS = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21_600, 86_400];

export function createWorkerMetrics(options: { defaultMetrics?: boolean } = {}): WorkerMetrics {
  const registry = new Registry();
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });

  const recordsSent = new Counter({
    name: METRIC_NAMES.recordsSent,
    help: 'Records delivered to a destination and committed in the deltalog.',
    labelNames: ['destination'] as const,
    registers: [registry],
  });
  const apiCalls = new Counter({
    name: METRIC_NAMES.apiCalls,
    help:
      'API calls made to a destination, each counted once, by endpoint and outcome: ok, rate_limited ' +
      '(answered 429, waited and retried), retried (failed, tried again), failed (ended the operation in an error).',
    labelNames: ['destination', 'endpoint', 'outcome'] as const,
    registers: [registry],
  });
  const rejections = new Counter({
    name: METRIC_NAMES.rejections,
    help: 'Records a destination rejected (they stay pending), refused batches included.',
    labelNames: ['destination'] as const,
    registers: [registry],
  });
  const rateLimitWaits = new Counter({
    name: METRIC_NAMES.rateLimitWaits,
    help: 'Times a destination asked us to slow down (429 or equivalent) and the call waited.',
    labelNames: ['destination'] as const,
    registers: [registry],
  });
  const destinationCounted = new Counter({
    name: METRIC_NAMES.destinationCounted,
    help:
      'Records as the destination itself counted them, where its API says (Meta: num_received, num_invalid_entries): ' +
      'received, and invalid among them. The match rate is 1 - invalid / received.',
    labelNames: ['destination', 'verdict'] as const,
    registers: [registry],
  });
  const destinationEstimatedMatches = new Counter({
    name: METRIC_NAMES.destinationEstimatedMatches,
    help:
      'Records the destination estimates it matched to its users, where it gives a range per upload (Google: ' +
      "match_rate_range), at the range's low and high bound (of deltasync_destination_estimated_records_total).",
    labelNames: ['destination', 'bound'] as const,
    registers: [registry],
  });
  const destinationEstimatedRecords = new Counter({
    name: METRIC_NAMES.destinationEstimatedRecords,
    help: "Records covered by the destination's match estimates (deltasync_destination_estimated_matches_total).",
    labelNames: ['destination'] as const,
    registers: [registry],
  });
  const refreshDuration = new Histogram({
    name: METRIC_NAMES.refreshDuration,
    help: 'Duration of finished refresh runs, from begin to finish.',
    labelNames: ['destination', 'strategy', 'status'] as const,
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });

  /** Counters only go up: a zero, negative or non-number increment is ignored. */
  const add = (counter: Counter<string>, labels: Record<string, string>, value: number) => {
    if (Number.isFinite(value) && value > 0) counter.inc(labels, value);
  };

  const observer: RefreshObserver = {
    onCalls(destination, tallies) {
      for (const [endpoint, tally] of Object.entries(tallies)) {
        // Each call has one outcome: the parts never add up to more than the calls.
        let left = Math.max(tally.calls, 0);
        const take = (count: number) => {
          const taken = Math.min(Math.max(count, 0), left);
          left -= taken;
          return taken;
        };
        const labels = (outcome: string) => ({ destination, endpoint, outcome });
        add(apiCalls, labels('failed'), take(tally.failed));
        add(apiCalls, labels('rate_limited'), take(tally.rateLimited));
        add(apiCalls, labels('retried'), take(tally.retried));
        add(apiCalls, labels('ok'), left);
        add(rateLimitWaits, { destination }, tally.rateLimited);
      }
    },
    onBatch(destination, { delivered, rejected, reported, estimated }) {
      add(recordsSent, { destination }, delivered);
      add(rejections, { destination }, rejected);
      if (reported) {
        add(destinationCounted, { destination, verdict: 'received' }, reported.received);
        add(destinationCounted, { destination, verdict: 'invalid' }, reported.invalid);
      }
      if (estimated) {
        add(destinationEstimatedRecords, { destination }, estimated.records);
        add(destinationEstimatedMatches, { destination, bound: 'low' }, estimated.lowSum / 100);
        add(destinationEstimatedMatches, { destination, bound: 'high' }, estimated.highSum / 100);
      }
    },
    onRunFinished(destination, strategy, status, seconds) {
      if (!Number.isFinite(seconds) || seconds < 0) return;
      refreshDuration.observe({ destination, strategy: strategy ?? 'none', status }, seconds);
    },
  };

  return {
    registry,
    observer,
    render: () => registry.metrics(),
    contentType: registry.contentType,
  };
}
