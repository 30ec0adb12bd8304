import type { CompareRecord } from './change-tracking';
import type { EndpointTallies } from './api-calls';
import { idOfKey } from './connector';
import type { Db } from '../db';
import { badRowTotal } from './deltalog';
import type { GuardCheck } from './guard';
import type { Cost, Strategy } from './plan';
import { weightedEstimate, type RunMatchEstimate } from './match-estimate';
import { endpointCalls, NO_TIMINGS, type RunRow, type RunStatus, type RunTimings } from './runs';

/**
 * What a refresh reports to its workflow, its client and the Temporal UI. These travel through
 * workflow history, so they hold counts and ids only: never a record key, an attribute, or a
 * sample (samples of bad rows and drift stay on the run record in the database).
 */

export interface PlanSummary {
  needed: boolean;
  strategy: Strategy | null;
  reason: string;
  additions: number;
  updates: number;
  deletions: number;
  datasetSize: number;
  /** Keys the deltalog believes the remote list holds before this run. */
  remoteSize: number;
  batchSize: number;
  estimates: Record<Strategy, Cost | null>;
  /** The mass-delete guard's verdict: when triggered, the run waits for an operator. */
  guard: GuardCheck & { approvalTimeoutSeconds: number };
  /**
   * What runs if the guard's deletions are held: a diff without them where the destination can
   * add in place, nothing where it can only replace the whole list (a new list would drop them).
   */
  withDeletionsHeld: 'diff' | null;
  /** Records held back after `maxAttempts` rejections (not sent until their attributes change). */
  quarantined: number;
}

export interface GuardDecision {
  approved: boolean;
  /** Who decided (`timeout` when nobody did in time). */
  by: string;
  note?: string;
}

export interface DryRunPlan extends PlanSummary {
  connectorId: string;
  badRows: number;
  quarantined: number;
}

/** What a reconcile found, as counts (the keys stay in the database). */
export interface DriftCounts {
  /** On the remote list, though the deltalog did not believe so. */
  extra: number;
  /** Believed on the remote list, but not there. */
  missing: number;
  /** In the dataset but not on the list because quarantined (rejected `maxAttempts` times). */
  quarantined: number;
}

export interface RunSummary {
  runId: number;
  connectorId: string;
  tenant: string;
  status: RunStatus;
  /** Who started it: manual, cli, schedule, change, … */
  trigger: string;
  strategy: string | null;
  strategyReason: string | null;
  datasetSize: number | null;
  additions: number;
  updates: number;
  deletions: number;
  recordsSent: number;
  bytesSent: number;
  rejected: number;
  quarantined: number;
  apiCalls: number;
  failedCalls: number;
  /** Calls by endpoint and outcome (see core/api-calls.ts). */
  callsByEndpoint: EndpointTallies;
  rateLimitWaits: number;
  badRows: number;
  /**
   * How the deltalog was updated: a full compare, from a change source's touched keys, or skipped
   * by a direct first push; with the reason and, for a full compare that could measure it, the
   * drift it found beyond what the change source reported. Null: no deltalog update (yet).
   */
  compare: CompareRecord | null;
  drift: DriftCounts | null;
  /** Deletions the mass-delete guard held back (they stay pending), and its decision. */
  deletionsHeld: number;
  guard: (GuardCheck & GuardDecision & { decidedAt: number }) | null;
  durationMs: number | null;
  /** Where the run's time went (null for runs recorded before timings were kept). */
  timings: RunTimings | null;
  error: string | null;
  /**
   * What the destination itself said it received, and how much of it was invalid (Meta's
   * num_received and num_invalid_entries): `rate` is the valid share. Null where the destination
   * does not say.
   */
  matchRate: MatchRate | null;
  /**
   * The destination's estimate of the share of the run's records it matched to its users, where
   * it gives a range per upload (Google's match_rate_range per job): the records the estimates
   * cover and the range, in percent, weighted by each upload's records. Null where it gives none.
   */
  matchEstimate: RunMatchEstimate | null;
}

export interface MatchRate {
  received: number;
  invalid: number;
  rate: number;
}

/** A run as the client and the workflow report it. */
export async function summarizeRun(db: Db, run: RunRow): Promise<RunSummary> {
  // Runs recorded before quarantined keys were counted lack the field.
  const drift = run.drift
    ? (JSON.parse(run.drift) as Omit<DriftCounts, 'quarantined'> & { quarantined?: number })
    : null;
  return {
    runId: run.id,
    connectorId: idOfKey(run.connector_id),
    tenant: run.tenant,
    status: run.status,
    trigger: run.trigger,
    strategy: run.strategy,
    strategyReason: run.strategy_reason,
    datasetSize: run.dataset_size,
    additions: run.additions,
    updates: run.updates,
    deletions: run.deletions,
    recordsSent: run.records_sent,
    bytesSent: run.bytes_sent,
    rejected: run.rejected,
    quarantined: run.quarantined,
    apiCalls: run.api_calls,
    failedCalls: run.failed_calls,
    callsByEndpoint: await endpointCalls(db, run.id),
    rateLimitWaits: run.rate_limit_waits,
    badRows: run.bad_rows ? badRowTotal(JSON.parse(run.bad_rows)) : 0,
    compare: run.compare ? (JSON.parse(run.compare) as CompareRecord) : null,
    drift: drift && { extra: drift.extra, missing: drift.missing, quarantined: drift.quarantined ?? 0 },
    deletionsHeld: run.deletions_held,
    guard: run.guard ? JSON.parse(run.guard) : null,
    durationMs: run.finished_at === null ? null : run.finished_at - run.started_at,
    timings: run.timings ? { ...NO_TIMINGS, ...(JSON.parse(run.timings) as Partial<RunTimings>) } : null,
    error: run.error,
    matchRate: matchRateOf(run),
    matchEstimate: matchEstimateOf(run),
  };
}

/** The destination's match estimate over the run's records, where it gave one; null where not. */
function matchEstimateOf(run: RunRow): RunMatchEstimate | null {
  return weightedEstimate({
    records: Number(run.match_estimated_records ?? 0),
    lowSum: Number(run.match_estimated_low ?? 0),
    highSum: Number(run.match_estimated_high ?? 0),
  });
}

/** The destination's own count of what it received, where it reports one; null where it does not. */
function matchRateOf(run: RunRow): MatchRate | null {
  const calls = Number(run.reported_calls ?? 0);
  if (calls === 0) return null;
  const received = Number(run.reported_received);
  const invalid = Number(run.reported_invalid);
  return { received, invalid, rate: received === 0 ? 1 : (received - invalid) / received };
}
