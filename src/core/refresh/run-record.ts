import { trimChangeLog } from '../change-log';
import { InvalidConnectorError, type ConnectorDefinition } from '../connector';
import {
  adoptInFlight,
  badRowTotal,
  inspectForDirectPush,
  purgeCommittedDeletions,
  validRows,
  type BadRowReport,
} from '../deltalog';
import { forgetTracking, type CompareRecord } from '../change-tracking';
import type { DatasetReader } from '../dataset';
import { applyAllSharedRowsNext, compareForConnector } from '../shared-compare';
import type { StrategyChoice } from '../plan';
import {
  addRunTimings,
  beginRun as beginRunRow,
  recordDirectPush,
  finishRun as finishRunRow,
  recordSnapshot,
  type RunStatus,
} from '../runs';
import { summarizeRun, type RunSummary } from '../summaries';
import type { ConnectorScope, Engine, RunScope } from './engine';

/** The run record around a refresh: opening it, the deltalog update, closing it, the janitor. */

export interface RunStart {
  /** The connector's key (`<tenant>/<id>`). */
  key: string;
  tenant: string;
  workflowId: string;
  /** One run per workflow execution: a retried begin finds the run it opened. */
  workflowRunId: string;
  trigger: string;
}

/**
 * Open (or, on retry, find) the run, then ask whether the connector may run (`problems`: its
 * secrets, its destination's targets, its dataset, as the tenants policy sees them). A connector
 * that may not fails here, on its run record, before anything is read or sent.
 */
export async function beginRun(
  engine: Engine,
  start: RunStart,
  problems: () => Promise<string[]>,
): Promise<number> {
  const { db, now } = engine;
  const runId = await beginRunRow(
    db,
    {
      connectorId: start.key,
      tenant: start.tenant,
      workflowId: start.workflowId,
      workflowRunId: start.workflowRunId,
      trigger: start.trigger,
    },
    now(),
  );
  const found = await problems();
  if (found.length > 0) {
    const error = new InvalidConnectorError(found);
    await finishRunRow(db, runId, { status: 'failed', error: error.message, successThreshold: 1 }, now());
    throw error;
  }
  return runId;
}

/** What decides whether a first push may skip the compare, besides the deltalog and the dataset. */
export interface DeltalogUpdateOptions {
  /** The run's strategy (the connector's when the run names none). */
  strategy: StrategyChoice;
  /** The destination adds members in place (a first push then sends every row as an addition). */
  canAdd: boolean;
  /** When the refresh was asked for (its workflow's start): a shared compare begun since serves it. */
  askedAt?: number;
}

/**
 * Step 1 (FIG. 4): full compare of the dataset against the deltalog, in the database. A first
 * push that is a plain diff (the deltalog empty, the key unique, the destination adding in
 * place) skips it: the send reads the dataset directly (see inspectForDirectPush).
 */
export async function updateDeltalog(
  engine: Engine,
  scope: RunScope,
  source: DatasetReader,
  options: DeltalogUpdateOptions,
) {
  const { db, now } = engine;
  let snapshotAt = now();
  const started = performance.now();
  // What an earlier direct push left in flight is pending first; the deltalog is then not empty.
  const adopted = await adoptInFlight(db, scope.key, snapshotAt);
  const direct = directPushPossible(options) ? await inspectForDirectPush(db, scope.key, source) : undefined;
  let badRows: BadRowReport;
  let compare: CompareRecord;
  if (direct) {
    await recordDirectPush(db, scope.runId, validRows(direct));
    // The next refresh compares in full, and takes the change source's positions from there.
    await forgetTracking(db, scope.key);
    await applyAllSharedRowsNext(db, scope.key);
    badRows = direct;
    compare = { mode: 'direct', reason: 'first push: the dataset is read directly' };
  } else {
    // Adopted keys were sent without a journal noting them: only a full compare re-checks them.
    const mustCompare = adopted > 0 ? `${adopted} keys of an interrupted first push to re-check` : undefined;
    const update = await compareForConnector(db, {
      connectorKey: scope.key,
      tenant: scope.connector.tenant,
      declared: scope.connector.dataset,
      reader: source,
      requestedAt: snapshotAt,
      askedAt: options.askedAt,
      mustCompare,
      clock: engine.now,
    });
    ({ report: badRows, compare } = update);
    // A shared compare may have read the dataset a moment before this refresh asked.
    snapshotAt = update.asOf ?? snapshotAt;
  }
  await recordSnapshot(db, scope.runId, snapshotAt, badRows, compare);
  await addRunTimings(db, scope.runId, { deltalogMs: performance.now() - started });
  return { snapshotAt, datasetRows: badRows.datasetRows, badRows: badRowTotal(badRows), direct: !!direct };
}

/** Truncate, new list + swap and reconcile work on a compared deltalog; a diff or full push need not. */
function directPushPossible({ strategy, canAdd }: DeltalogUpdateOptions): boolean {
  return canAdd && (strategy === 'auto' || strategy === 'diff' || strategy === 'full');
}

/** Step 4 (FIG. 5): close the run; the success thresholds decide `last_succeeded_at`. */
export async function finishRun(
  engine: Engine,
  scope: { connector: ConnectorDefinition; runId: number },
  outcome: { status?: RunStatus; error?: string },
): Promise<RunSummary> {
  const { db, now, observer } = engine;
  const { connector } = scope;
  const finishedAt = now();
  const run = await finishRunRow(
    db,
    scope.runId,
    {
      status: outcome.status,
      error: outcome.error,
      successThreshold: connector.policy.successThreshold,
      recordSuccessThreshold: connector.policy.recordSuccessThreshold,
    },
    finishedAt,
  );
  // Observed once, by the call that closed the run (a retried finish returns it unchanged).
  if (run.finished_at === finishedAt) {
    const seconds = (finishedAt - run.started_at) / 1000;
    observer.onRunFinished(connector.destination.type, run.strategy, run.status, seconds);
  }
  return summarizeRun(db, run);
}

/**
 * The janitor: purge committed deletions older than the retention window, and the change log
 * older than its own.
 */
export async function runJanitor(engine: Engine, scope: ConnectorScope) {
  const { retentionDays, changeLogDays } = scope.connector.policy;
  const purged = await purgeCommittedDeletions(
    engine.db,
    scope.key,
    engine.now() - retentionDays * 86_400_000,
  );
  const changeLogTrimmed = await trimChangeLog(
    engine.db,
    scope.key,
    engine.now() - changeLogDays * 86_400_000,
  );
  return { purged, changeLogTrimmed };
}
