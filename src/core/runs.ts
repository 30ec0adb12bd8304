import type { Knex } from 'knex';
import type { Db } from '../db';
import { totalOf, type EndpointTallies } from './api-calls';
import type { BadRowReport } from './deltalog';
import type { CompareRecord } from './change-tracking';

/** The run record: one row per refresh, written as the run goes so operators can follow it. */

export type RunStatus = 'running' | 'succeeded' | 'noop' | 'failed';

/** What the destination counted itself, summed over the run's calls; absent on old rows. */
interface DestinationCounts {
  /** Its count of what it received (see RunSummary.matchRate). */
  reported_calls?: number;
  reported_received?: number;
  reported_invalid?: number;
  /** Its match estimate (see RunSummary.matchEstimate and core/match-estimate.ts). */
  match_estimated_records?: number;
  match_estimated_low?: number;
  match_estimated_high?: number;
}

export interface RunRow extends DestinationCounts {
  id: number;
  connector_id: string;
  tenant: string;
  workflow_id: string;
  workflow_run_id: string;
  trigger: string;
  status: RunStatus;
  strategy: string | null;
  strategy_reason: string | null;
  snapshot_at: number | null;
  started_at: number;
  finished_at: number | null;
  dataset_size: number | null;
  additions: number;
  deletions: number;
  updates: number;
  records_sent: number;
  rejected: number;
  /** Of `rejected`, those the destination deferred (not the record's fault). */
  deferred: number;
  api_calls: number;
  failed_calls: number;
  rate_limit_waits: number;
  bytes_sent: number;
  quarantined: number;
  estimates: string | null;
  drift: string | null;
  guard: string | null;
  deletions_held: number;
  bad_rows: string | null;
  error: string | null;
  /** The last error an activity of the run met while it was retried (see recordFailure). */
  last_failure: string | null;
  last_failure_at: number | null;
  /** RunTimings as JSON (null: recorded before timings were kept, or nothing timed yet). */
  timings: string | null;
  /** Rows a direct first push sends straight from the dataset; null when the deltalog was compared. */
  direct_push_rows: number | null;
  /** CompareRecord as JSON: how the deltalog was updated (null before change sources existed). */
  compare: string | null;
}

/** Where a run's time went, in milliseconds; the send's parts are summed over its phases. */
export interface RunTimings {
  /** The deltalog update (the full compare; a direct first push only inspects the dataset). */
  deltalogMs: number;
  /** Planning: the pending counts, the sizes and the planner's decision. */
  planMs: number;
  /** Reading pending keys from the deltalog, page by page. */
  readMs: number;
  /** Fetching their attributes from the dataset. */
  fetchMs: number;
  /** Destination calls, waits for rate limits included. */
  callMs: number;
  /** Committing delivered batches with their checkpoints. */
  commitMs: number;
  /** Of commitMs: writing the batches' row-level change log (run_changes). */
  changeLogMs: number;
}

export const NO_TIMINGS: RunTimings = {
  deltalogMs: 0,
  planMs: 0,
  readMs: 0,
  fetchMs: 0,
  callMs: 0,
  commitMs: 0,
  changeLogMs: 0,
};

/** Adds `spent` to the run's timings (once per step or phase: a read-modify-write is cheap enough). */
export async function addRunTimings(db: Db, runId: number, spent: Partial<RunTimings>): Promise<void> {
  await db.transaction(async (trx) => {
    const row = (await trx('refresh_runs').where({ id: runId }).first('timings')) as
      { timings: string | null } | undefined;
    if (!row) return;
    const sum: RunTimings = {
      ...NO_TIMINGS,
      ...(row.timings ? (JSON.parse(row.timings) as RunTimings) : {}),
    };
    for (const [name, ms] of Object.entries(spent) as [keyof RunTimings, number][])
      sum[name] += Math.round(ms);
    await trx('refresh_runs')
      .where({ id: runId })
      .update({ timings: JSON.stringify(sum) });
  });
}

export interface RunCounters extends DestinationCounts {
  records_sent?: number;
  rejected?: number;
  deferred?: number;
  api_calls?: number;
  failed_calls?: number;
  rate_limit_waits?: number;
  bytes_sent?: number;
}

type Executor = Db | Knex.Transaction;

/** Why a run still marked running is closed when the next one begins. */
export const ABANDONED =
  'abandoned: its workflow ended without recording an outcome (terminated, or timed out)';

/**
 * Create the run for a workflow execution, or return it if a retried activity already did.
 * Refreshes of one connector never overlap (one workflow id), so any other run of the connector
 * still marked running belongs to a workflow that ended without finishing it: it is closed as
 * failed, so run lists never show a ghost run.
 */
export async function beginRun(
  db: Db,
  run: { connectorId: string; tenant: string; workflowId: string; workflowRunId: string; trigger: string },
  now: number,
): Promise<number> {
  const abandoned = db('refresh_runs')
    .where({ connector_id: run.connectorId, status: 'running' })
    .whereNot({ workflow_run_id: run.workflowRunId });
  await db('checkpoints').whereIn('run_id', abandoned.clone().select('id')).delete();
  await abandoned.update({ status: 'failed', error: ABANDONED, finished_at: now });
  await db('refresh_runs')
    .insert({
      connector_id: run.connectorId,
      tenant: run.tenant,
      workflow_id: run.workflowId,
      workflow_run_id: run.workflowRunId,
      trigger: run.trigger,
      status: 'running',
      started_at: now,
    })
    .onConflict('workflow_run_id')
    .ignore();
  const row = (await db('refresh_runs').where({ workflow_run_id: run.workflowRunId }).first('id')) as {
    id: number;
  };
  await db('connector_state').where({ connector_id: run.connectorId }).update({ last_run_id: row.id });
  return row.id;
}

export async function getRun(db: Executor, runId: number): Promise<RunRow> {
  const row = (await db('refresh_runs').where({ id: runId }).first()) as RunRow | undefined;
  if (!row) throw new Error(`no refresh run with id ${runId}`);
  return normaliseRun(row);
}

/** A connector's runs, newest first, `limit` at a time (before `beforeRunId` for the next page). */
export async function listRuns(
  db: Db,
  connectorId: string,
  limit = 20,
  beforeRunId?: number,
): Promise<RunRow[]> {
  const query = db('refresh_runs').where({ connector_id: connectorId }).orderBy('id', 'desc').limit(limit);
  if (beforeRunId !== undefined) query.where('id', '<', beforeRunId);
  return ((await query) as RunRow[]).map(normaliseRun);
}

/** mysql2 and better-sqlite3 disagree on numeric types; callers get plain numbers. */
function normaliseRun(row: RunRow): RunRow {
  const numeric = [
    'snapshot_at',
    'started_at',
    'finished_at',
    'dataset_size',
    'additions',
    'deletions',
    'updates',
    'records_sent',
    'rejected',
    'deferred',
    'api_calls',
    'failed_calls',
    'rate_limit_waits',
    'bytes_sent',
    'quarantined',
    'deletions_held',
    'last_failure_at',
    'direct_push_rows',
  ] as const;
  const out = { ...row } as Record<string, unknown>;
  for (const column of numeric) if (out[column] !== null) out[column] = Number(out[column]);
  return out as unknown as RunRow;
}

export async function recordSnapshot(
  db: Db,
  runId: number,
  snapshotAt: number,
  badRows: BadRowReport,
  compare?: CompareRecord,
) {
  await db('refresh_runs')
    .where({ id: runId })
    .update({
      snapshot_at: snapshotAt,
      bad_rows: JSON.stringify(badRows),
      ...(compare ? { compare: JSON.stringify(compare) } : {}),
    });
}

/** The deltalog update skipped the compare: this run's first push reads `rows` rows from the dataset. */
export async function recordDirectPush(db: Db, runId: number, rows: number): Promise<void> {
  await db('refresh_runs').where({ id: runId }).update({ direct_push_rows: rows });
}

export async function recordPlan(
  db: Db,
  runId: number,
  plan: {
    strategy: string | null;
    reason: string;
    additions: number;
    updates: number;
    deletions: number;
    datasetSize: number;
  },
) {
  await db('refresh_runs')
    .where({ id: runId })
    .update({
      strategy: plan.strategy,
      strategy_reason: plan.reason.slice(0, 500),
      additions: plan.additions,
      updates: plan.updates,
      deletions: plan.deletions,
      dataset_size: plan.datasetSize,
    });
}

/** API calls of one destination call, by endpoint (`users:add`, `jobs:run`, …), and failures. */
export async function incrementEndpointCalls(db: Executor, runId: number, tallies: EndpointTallies) {
  for (const [endpoint, tally] of Object.entries(tallies)) {
    if (tally.calls === 0 && tally.failed === 0) continue;
    const add = {
      calls: tally.calls,
      failed: tally.failed,
      rate_limited: tally.rateLimited,
      retried: tally.retried,
    };
    await db('run_api_calls')
      .insert({ run_id: runId, endpoint: endpoint.slice(0, 64), ...add })
      .onConflict(['run_id', 'endpoint'])
      .merge(
        Object.fromEntries(
          Object.entries(add).map(([column, value]) => [
            column,
            db.raw(`run_api_calls.${column} + ?`, [value]),
          ]),
        ),
      );
  }
}

/**
 * The calls of one destination operation (core/api-calls.ts tallies): the run's totals and its
 * endpoints, in one go. A send batch records them in its own transaction, with its records and
 * cursor; any other operation (truncate, create, swap, a page of members; an operation that ended
 * in an error) in a transaction of their own.
 */
export async function recordCalls(
  db: Executor,
  runId: number,
  tallies: EndpointTallies,
  /** The batch's own counters (records sent, rejected…), written in the same statement. */
  counters: RunCounters = {},
): Promise<void> {
  if (Object.keys(tallies).length === 0 && Object.keys(counters).length === 0) return;
  const total = totalOf(tallies);
  const write = async (trx: Executor) => {
    await incrementRunCounters(trx, runId, {
      ...counters,
      api_calls: total.calls,
      failed_calls: total.failed,
      rate_limit_waits: total.rateLimited,
    });
    await incrementEndpointCalls(trx, runId, tallies);
  };
  if (db.isTransaction) await write(db);
  else await db.transaction(write);
}

export async function endpointCalls(db: Db, runId: number): Promise<EndpointTallies> {
  const rows = (await db('run_api_calls').where({ run_id: runId }).orderBy('endpoint')) as {
    endpoint: string;
    calls: number;
    failed: number;
    rate_limited: number;
    retried: number;
  }[];
  return Object.fromEntries(
    rows.map((r) => [
      r.endpoint,
      {
        calls: Number(r.calls),
        failed: Number(r.failed),
        rateLimited: Number(r.rate_limited),
        retried: Number(r.retried),
      },
    ]),
  );
}

export async function recordRunDetails(
  db: Db,
  runId: number,
  details: { estimates?: unknown; drift?: unknown; quarantined?: number },
) {
  const update: Record<string, unknown> = {};
  if (details.estimates !== undefined) update.estimates = JSON.stringify(details.estimates);
  if (details.drift !== undefined) update.drift = JSON.stringify(details.drift);
  if (details.quarantined !== undefined) update.quarantined = details.quarantined;
  if (Object.keys(update).length > 0) await db('refresh_runs').where({ id: runId }).update(update);
}

export async function incrementRunCounters(db: Executor, runId: number, counters: RunCounters) {
  const nonZero = Object.fromEntries(Object.entries(counters).filter(([, v]) => v !== undefined && v !== 0));
  if (Object.keys(nonZero).length > 0) await db('refresh_runs').where({ id: runId }).increment(nonZero);
}

/** Keep the error an attempt failed with on the run: a retry may succeed, or the run end without it. */
export async function recordFailure(db: Db, runId: number, message: string, now: number): Promise<void> {
  await db('refresh_runs')
    .where({ id: runId })
    .update({ last_failure: message.slice(0, 2000), last_failure_at: now });
}

/** When the run's `phase` last committed a batch (undefined: never). */
export async function lastProgressAt(db: Db, runId: number, phase: string): Promise<number | undefined> {
  const row = (await db('checkpoints').where({ run_id: runId, phase }).first('updated_at')) as
    { updated_at: unknown } | undefined;
  return row ? Number(row.updated_at) : undefined;
}

/**
 * Close the run. A run succeeds when the share of API calls that succeeded meets the call
 * threshold and the share of records delivered (of those sent: delivered or rejected) meets the
 * record threshold; only then does the connector's `last_succeeded_at` advance (to the run's
 * snapshot time). A run whose every call worked but whose records were all refused has failed.
 */
export async function finishRun(
  db: Db,
  runId: number,
  outcome: { status?: RunStatus; error?: string; successThreshold: number; recordSuccessThreshold?: number },
  now: number,
): Promise<RunRow> {
  const run = await getRun(db, runId);
  if (run.status !== 'running') return run; // a retried finish: already done
  const verdict = outcome.status
    ? undefined
    : judge(run, outcome.successThreshold, outcome.recordSuccessThreshold ?? 0);
  const status = outcome.status ?? (verdict ? 'failed' : 'succeeded');
  // A run that failed or was cancelled while an activity was being retried: say what it met.
  const retrying =
    status === 'failed' &&
    outcome.error !== undefined &&
    run.last_failure &&
    !outcome.error.includes(run.last_failure);
  const error =
    [outcome.error ?? verdict, retrying ? `last error while retrying: ${run.last_failure}` : undefined]
      .filter(Boolean)
      .join('; ') || null;
  await db.transaction(async (trx) => {
    await trx('refresh_runs').where({ id: runId }).update({ status, error, finished_at: now });
    if (status === 'succeeded' || status === 'noop') {
      await trx('connector_state')
        .where({ connector_id: run.connector_id })
        .update({ last_succeeded_at: run.snapshot_at ?? now });
    }
    await trx('checkpoints').where({ run_id: runId }).delete();
  });
  return getRun(db, runId);
}

/** Why the run falls short of its thresholds, or undefined when it meets both. */
function judge(run: RunRow, callThreshold: number, recordThreshold: number): string | undefined {
  const percent = (share: number) => `${+(share * 100).toFixed(2)}%`;
  if (!meetsThreshold(run, callThreshold)) {
    return `${run.failed_calls} of ${run.api_calls} API calls failed (threshold ${percent(callThreshold)} success)`;
  }
  if (!meetsRecordThreshold(run, recordThreshold)) {
    const refused = run.rejected - run.deferred;
    return `${refused} of ${run.records_sent + refused} records were rejected (threshold ${percent(recordThreshold)} delivered)`;
  }
  return undefined;
}

export function meetsThreshold(run: Pick<RunRow, 'api_calls' | 'failed_calls'>, threshold: number): boolean {
  if (run.api_calls === 0) return true;
  return (run.api_calls - run.failed_calls) / run.api_calls >= threshold;
}

/** Deferred rejections (the destination's "not now", not the record's fault) count neither way. */
export function meetsRecordThreshold(
  run: Pick<RunRow, 'records_sent' | 'rejected' | 'deferred'>,
  threshold: number,
): boolean {
  const handled = run.records_sent + run.rejected - run.deferred;
  if (handled === 0) return true;
  return run.records_sent / handled >= threshold;
}

// --- checkpoints: the cursor of a send phase, saved with every committed batch ---------------

export interface Checkpoint {
  cursor: string;
  recordsDone: number;
}

export async function loadCheckpoint(db: Db, runId: number, phase: string): Promise<Checkpoint | undefined> {
  const row = (await db('checkpoints').where({ run_id: runId, phase }).first()) as
    { cursor: string; records_done: number } | undefined;
  return row && { cursor: row.cursor, recordsDone: Number(row.records_done) };
}

export async function saveCheckpoint(
  trx: Executor,
  runId: number,
  phase: string,
  checkpoint: Checkpoint,
  now: number,
): Promise<void> {
  await trx('checkpoints')
    .insert({
      run_id: runId,
      phase,
      cursor: checkpoint.cursor,
      records_done: checkpoint.recordsDone,
      updated_at: now,
    })
    .onConflict(['run_id', 'phase'])
    .merge(['cursor', 'records_done', 'updated_at']);
}
