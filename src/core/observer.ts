import type { EstimatedMatches } from './match-estimate';
import type { EndpointTallies } from './api-calls';

/**
 * What the engine tells the outside world about its work, for metrics: the observability layer
 * implements it (Prometheus series, see src/observability/metrics.ts). The engine reports facts
 * (calls made, batches committed, runs closed); only destination types, endpoint names,
 * strategies, statuses and counts cross this port, never connector data, keys or secrets.
 */
export interface EngineObserver {
  /**
   * The calls one destination operation made, by endpoint and outcome (see core/api-calls.ts):
   * the same tallies the run records.
   */
  onCalls(destination: string, tallies: EndpointTallies): void;
  /**
   * One committed send batch: records delivered and records rejected, and what the destination
   * itself counted as received and invalid where it says (Meta), and its match estimate where it
   * gives one (Google: records, and records × percent at the range's bounds).
   */
  onBatch(
    destination: string,
    batch: {
      delivered: number;
      rejected: number;
      reported?: { received: number; invalid: number };
      estimated?: EstimatedMatches;
    },
  ): void;
  /** A run was closed (`status`: succeeded, failed or noop); `seconds` from begin to finish. */
  onRunFinished(destination: string, strategy: string | null, status: string, seconds: number): void;
}

export const noopObserver: EngineObserver = {
  onCalls: () => undefined,
  onBatch: () => undefined,
  onRunFinished: () => undefined,
};
