import { ApplicationFailure, Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import { createAdminActivities } from './admin';
import { createTriggerActivities } from './triggers';
import type { Db } from '../db';
import { loadConnector, UnknownConnectorError } from '../connectors/store';
import { InvalidConnectorError, type ConnectorDefinition } from '../connectors/definition';
import type { DestinationFactory } from '../connectors/registry';
import { DestinationError, type BatchOutcome, type Destination } from '../connectors/types';
import {
  badRowTotal,
  commitSwapped,
  datasetSize,
  markRemoteEmptied,
  pendingCounts,
  previewUpdate,
  purgeCommittedDeletions,
  quarantinedCount,
  reconcileWithRemote,
  remoteSize,
  sampleRecordBytes,
  saveRemoteKeys,
  updateDeltalog as updateDeltalogTable,
  type BadRowReport,
  type DriftReport,
} from '../core/deltalog';
import {
  planRefresh as plan,
  PlanningError,
  type Cost,
  type Strategy,
  type StrategyChoice,
} from '../core/plan';
import {
  beginRun as beginRunRow,
  endpointCalls,
  finishRun as finishRunRow,
  incrementEndpointCalls,
  incrementRunCounters,
  recordPlan,
  recordRunDetails,
  recordSnapshot,
  type RunRow,
  type RunStatus,
} from '../core/runs';
import { checkMassDelete, type GuardCheck } from '../core/guard';
import { batchSizeFor, sendPhase, type SendPhase, type SendProgress, type SendTotals } from '../core/sender';
import { observeDestination } from '../observability/destination';
import { safeObserver, sendIncrements, type RefreshObserver } from '../observability/observer';

/**
 * The refresh's activities. They receive ids and return counts: record data moves only between
 * the database and the destination, never through workflow history.
 */

export interface ActivityDependencies {
  db: Db;
  destinations: DestinationFactory;
  now?: () => number;
  /** For triggered refreshes (schedules, change triggers): start or attach through Temporal. */
  temporal?: Client;
  taskQueue?: string;
  /** Metrics: API calls, records sent, rejections, rate-limit waits, run durations. */
  observer?: RefreshObserver;
}

export interface RunRef {
  connectorId: string;
  runId: number;
}

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

export interface RunSummary {
  runId: number;
  connectorId: string;
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
  callsByEndpoint: Record<string, { calls: number; failed: number }>;
  rateLimitWaits: number;
  badRows: number;
  drift: DriftReport | null;
  /** Deletions the mass-delete guard held back (they stay pending), and its decision. */
  deletionsHeld: number;
  guard: (GuardCheck & GuardDecision & { decidedAt: number }) | null;
  durationMs: number | null;
  error: string | null;
}

const HEARTBEAT_EVERY_MS = 10_000;
const LIST_PAGE_SIZE = 1000;

export function createActivities(dependencies: ActivityDependencies) {
  return {
    ...createRefreshActivities(dependencies),
    ...createAdminActivities(dependencies),
    ...createTriggerActivities(dependencies),
  };
}

function createRefreshActivities(dependencies: ActivityDependencies) {
  const { db, destinations, now = Date.now } = dependencies;
  const observer = safeObserver(dependencies.observer);

  /** The destination bound to the list the connector points at now (its calls observed). */
  async function liveDestination(connector: ConnectorDefinition): Promise<Destination> {
    const state = await connectorState(connector.id);
    return observeDestination(
      destinations(connector.destination, { listId: state.remote_list_id ?? undefined }),
      observer,
    );
  }

  async function withDestination<T>(connector: ConnectorDefinition, use: (d: Destination) => Promise<T>) {
    const destination = await liveDestination(connector);
    try {
      return await use(destination);
    } finally {
      await destination.close();
    }
  }

  async function connectorState(connectorId: string) {
    return ((await db('connector_state').where({ connector_id: connectorId }).first()) ?? {}) as {
      remote_list_id?: string | null;
      pending_list_id?: string | null;
    };
  }

  /** Pending counts, sizes and the destination's limits → the planner's decision. */
  async function decide(
    store: Db,
    connector: ConnectorDefinition,
    destination: Destination,
    strategy: StrategyChoice | undefined,
  ): Promise<PlanSummary> {
    const { horizonDays, maxAttempts } = connector.policy;
    const pending = await pendingCounts(store, connector.id, { maxAttempts });
    const since = horizonDays === undefined ? undefined : now() - horizonDays * 86_400_000;
    const pendingInHorizon =
      since === undefined ? pending : await pendingCounts(store, connector.id, { since, maxAttempts });
    const size = await datasetSize(store, connector.id);
    const remote = await remoteSize(store, connector.id);
    const batchSize = batchSizeFor(connector, destination);
    const decision = plan({
      capabilities: destination.capabilities,
      recordsPerCall: batchSize,
      bytesPerCall: destination.limits.bytesPerCall,
      pending,
      pendingInHorizon,
      datasetSize: size,
      remoteSize: remote,
      ...(await sampleRecordBytes(store, connector.dataset)),
      listPageSize: Math.min(LIST_PAGE_SIZE, destination.limits.recordsPerCall),
      strategy: strategy ?? connector.policy.strategy,
    });
    return {
      needed: decision.needed,
      strategy: decision.strategy,
      reason: decision.reason,
      ...pending,
      datasetSize: size,
      remoteSize: remote,
      batchSize,
      estimates: decision.estimates,
      guard: {
        ...checkMassDelete(connector.policy.massDeleteGuard, {
          deletions: decision.needed ? pending.deletions : 0,
          remoteSize: remote,
          datasetSize: size,
        }),
        approvalTimeoutSeconds: connector.policy.massDeleteGuard.approvalTimeoutSeconds,
      },
    };
  }

  async function countCalls(runId: number, outcome: BatchOutcome, endpoint: string) {
    await incrementRunCounters(db, runId, {
      api_calls: outcome.apiCalls,
      rate_limit_waits: outcome.rateLimitWaits,
    });
    await incrementEndpointCalls(db, runId, outcome.callsByEndpoint ?? { [endpoint]: outcome.apiCalls });
  }

  return {
    /** Open (or, on retry, find) this workflow execution's run record. */
    async beginRun(input: { connectorId: string; trigger: string; tenant?: string }) {
      return failClearly(async () => {
        const connector = await loadConnector(db, input.connectorId);
        if (input.tenant && connector.tenant !== input.tenant) {
          throw new UnknownConnectorError(input.connectorId, input.tenant);
        }
        const { workflowExecution } = Context.current().info;
        if (!workflowExecution) throw new Error('beginRun must run inside a refresh workflow');
        const runId = await beginRunRow(
          db,
          {
            connectorId: connector.id,
            tenant: connector.tenant,
            workflowId: workflowExecution.workflowId,
            workflowRunId: workflowExecution.runId,
            trigger: input.trigger,
          },
          now(),
        );
        return { runId, tenant: connector.tenant, destinationType: connector.destination.type };
      });
    },

    /** Step 1 (FIG. 4): full compare of the dataset against the deltalog, in the database. */
    async updateDeltalog({ connectorId, runId }: RunRef) {
      return failClearly(() =>
        keepHeartbeating(async () => {
          const connector = await loadConnector(db, connectorId);
          const snapshotAt = now();
          const badRows = await updateDeltalogTable(db, connectorId, connector.dataset, snapshotAt);
          await recordSnapshot(db, runId, snapshotAt, badRows);
          return { snapshotAt, datasetRows: badRows.datasetRows, badRows: badRowTotal(badRows) };
        }),
      );
    },

    /** Step 2: is a refresh needed, and by which strategy? The choice and its reason go on the run. */
    async planRefresh({
      connectorId,
      runId,
      strategy,
    }: RunRef & { strategy?: StrategyChoice }): Promise<PlanSummary> {
      return failClearly(async () => {
        const connector = await loadConnector(db, connectorId);
        const summary = await withDestination(connector, (destination) =>
          decide(db, connector, destination, strategy),
        );
        await recordPlan(db, runId, { ...summary, strategy: summary.strategy });
        await recordRunDetails(db, runId, {
          estimates: summary.estimates,
          quarantined: await quarantinedCount(db, connectorId, connector.policy.maxAttempts),
        });
        return summary;
      });
    },

    /** The mass-delete guard's decision; rejected deletions stay pending (held, not lost). */
    async recordGuardDecision({
      runId,
      guard,
      decision,
    }: RunRef & { guard: GuardCheck; decision: GuardDecision }) {
      await db('refresh_runs')
        .where({ id: runId })
        .update({
          guard: JSON.stringify({ ...guard, ...decision, decidedAt: now() }),
          deletions_held: decision.approved ? 0 : guard.deletions,
        });
    },

    /** A dry run: what a refresh would send, by which strategy, in how many calls; changes nothing. */
    async previewPlan({
      connectorId,
      strategy,
    }: {
      connectorId: string;
      strategy?: StrategyChoice;
    }): Promise<DryRunPlan> {
      return failClearly(() =>
        keepHeartbeating(async () => {
          const connector = await loadConnector(db, connectorId);
          return withDestination(connector, (destination) =>
            previewUpdate(
              db,
              connectorId,
              connector.dataset,
              now(),
              async (preview, report: BadRowReport) => ({
                connectorId,
                ...(await decide(preview, connector, destination, strategy)),
                badRows: badRowTotal(report),
                quarantined: await quarantinedCount(preview, connectorId, connector.policy.maxAttempts),
              }),
            ),
          );
        }),
      );
    },

    /** Truncate + reload, first half: empty the remote list; every key becomes pending again. */
    async truncateRemote({ connectorId, runId }: RunRef) {
      return failClearlyWhileHeartbeating(async () => {
        const connector = await loadConnector(db, connectorId);
        const outcome = await withDestination(connector, (destination) => destination.truncate());
        await countCalls(runId, outcome, 'truncate');
        await markRemoteEmptied(db, connectorId, now());
      });
    },

    /** New list + swap, first step: an empty list to fill (the same one again on a retry). */
    async createList({ connectorId, runId }: RunRef) {
      return failClearlyWhileHeartbeating(async () => {
        const connector = await loadConnector(db, connectorId);
        const { pending_list_id: abandoned } = await connectorState(connectorId);
        const { listId, outcome } = await withDestination(connector, async (destination) => {
          if (!destination.createList) throw new PlanningError('this destination cannot create lists');
          const created = await destination.createList(`run-${runId}`);
          // A list an earlier, failed run left half-built is of no use any more.
          if (abandoned && abandoned !== created.listId && destination.deleteList) {
            await countCalls(runId, await destination.deleteList(abandoned), 'deleteList');
          }
          return created;
        });
        await countCalls(runId, outcome, 'createList');
        await db('connector_state').where({ connector_id: connectorId }).update({ pending_list_id: listId });
        return { listId };
      });
    },

    /** Step 3: send one phase, recording every call; resumes from its heartbeat. */
    async sendChanges({ connectorId, runId, phase }: RunRef & { phase: SendPhase }): Promise<SendTotals> {
      return failClearly(async () => {
        const context = Context.current();
        const connector = await loadConnector(db, connectorId);
        const resumeFrom = context.info.heartbeatDetails as SendProgress | undefined;
        // A single call can take long (Google runs jobs for hours): the timer keeps heartbeating
        // with the last cursor, so a retry still resumes where the last recorded call ended.
        let latest: SendProgress | undefined = resumeFrom;
        const increments = sendIncrements();
        const { cursor: _lastKey, ...totals } = await keepHeartbeating(
          () =>
            withDestination(connector, async (live) => {
              const destination = phase === 'fill' ? await pendingList(connectorId, live) : live;
              return sendPhase({
                db,
                connector,
                destination,
                runId,
                phase,
                resumeFrom,
                now,
                onBatch: (progress) => {
                  latest = progress;
                  context.heartbeat(progress);
                  observer.onBatch(connector.destination.type, increments(progress));
                },
                signal: context.cancellationSignal,
              });
            }),
          () => latest,
        );
        return totals; // the result goes into the workflow's history: counts only
      });
    },

    /**
     * New list + swap, last step: make the filled list the live one, retire the list the
     * connector pointed at before (never the list named in the config), commit.
     */
    async swapList({ connectorId, runId }: RunRef) {
      return failClearlyWhileHeartbeating(async () => {
        const connector = await loadConnector(db, connectorId);
        const state = await connectorState(connectorId);
        if (!state.pending_list_id) return { listId: state.remote_list_id ?? null }; // swapped already
        const listId = state.pending_list_id;
        const liveListId = await withDestination(connector, async (live) => {
          const swapped = await live.swapList!(listId);
          await countCalls(runId, swapped, 'swapList');
          const liveId = swapped.liveListId ?? listId;
          if (state.remote_list_id && state.remote_list_id !== liveId) {
            await countCalls(runId, await live.deleteList!(state.remote_list_id), 'deleteList');
          }
          return liveId;
        });
        await commitSwapped(db, connectorId, now());
        await db('connector_state')
          .where({ connector_id: connectorId })
          .update({ remote_list_id: liveListId, pending_list_id: null });
        return { listId: liveListId };
      });
    },

    /** Reconcile, first half: read the remote membership into the database, page by page. */
    async snapshotRemote({ connectorId, runId }: RunRef) {
      return failClearly(async () => {
        const context = Context.current();
        const connector = await loadConnector(db, connectorId);
        let { cursor, keys } = (context.info.heartbeatDetails as { cursor: string | null; keys: number }) ?? {
          cursor: null,
          keys: 0,
        };
        await withDestination(connector, async (destination) => {
          const limit = Math.min(LIST_PAGE_SIZE, destination.limits.recordsPerCall);
          do {
            const page = await destination.listMembers(cursor, limit);
            await saveRemoteKeys(db, runId, page.keys);
            await countCalls(runId, { rejected: [], apiCalls: 1, rateLimitWaits: 0 }, 'listMembers');
            cursor = page.next;
            keys += page.keys.length;
            context.heartbeat({ cursor, keys });
          } while (cursor !== null);
        });
        return { keys };
      });
    },

    /** Reconcile, second half: correct the deltalog with what the remote holds; report the drift. */
    async reconcileDeltalog({ connectorId, runId }: RunRef) {
      return failClearly(async () => {
        const connector = await loadConnector(db, connectorId);
        const drift = await reconcileWithRemote(db, connectorId, runId, now());
        await recordRunDetails(db, runId, { drift });
        const pending = await pendingCounts(db, connectorId, { maxAttempts: connector.policy.maxAttempts });
        return { drift, ...pending };
      });
    },

    /** Step 4 (FIG. 5): close the run; the success threshold decides `last_succeeded_at`. */
    async finishRun({
      connectorId,
      runId,
      status,
      error,
    }: RunRef & { status?: RunStatus; error?: string }): Promise<RunSummary> {
      const connector = await loadConnector(db, connectorId);
      const finishedAt = now();
      const run = await finishRunRow(
        db,
        runId,
        { status, error, successThreshold: connector.policy.successThreshold },
        finishedAt,
      );
      // Observed once, by the call that closed the run (a retried finish returns it unchanged).
      if (run.finished_at === finishedAt) {
        const seconds = (finishedAt - run.started_at) / 1000;
        observer.onRunFinished(connector.destination.type, run.strategy, run.status, seconds);
      }
      return summarizeRun(db, run);
    },

    /** The janitor: purge committed deletions older than the retention window. */
    async runJanitor({ connectorId }: { connectorId: string }) {
      const connector = await loadConnector(db, connectorId);
      const purged = await purgeCommittedDeletions(
        db,
        connectorId,
        now() - connector.policy.retentionDays * 86_400_000,
      );
      return { purged };
    },
  };

  /** The list being built by new list + swap, written through the live destination's account. */
  async function pendingList(connectorId: string, live: Destination): Promise<Destination> {
    const { pending_list_id } = await connectorState(connectorId);
    if (!pending_list_id || !live.forList) throw new Error('no list is being built for this connector');
    return live.forList(pending_list_id);
  }
}

export type Activities = ReturnType<typeof createActivities>;

/** For one long destination call (truncate, create, swap): heartbeats while it runs. */
function failClearlyWhileHeartbeating<T>(work: () => Promise<T>): Promise<T> {
  return failClearly(() => keepHeartbeating(work));
}

/** A run as the client and the workflow report it. */
export async function summarizeRun(db: Db, run: RunRow): Promise<RunSummary> {
  return {
    runId: run.id,
    connectorId: run.connector_id,
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
    drift: run.drift ? JSON.parse(run.drift) : null,
    deletionsHeld: run.deletions_held,
    guard: run.guard ? JSON.parse(run.guard) : null,
    durationMs: run.finished_at === null ? null : run.finished_at - run.started_at,
    error: run.error,
  };
}

/** Errors that retrying cannot fix become non-retryable failures with an operator-readable type. */
export async function failClearly<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof DestinationError && error.kind === 'fatal') {
      throw ApplicationFailure.nonRetryable(error.message, 'DestinationFatal');
    }
    if (error instanceof InvalidConnectorError) {
      // The problems travel as details, so the client can raise the same error for its caller.
      throw ApplicationFailure.create({
        message: error.message,
        type: error.name,
        nonRetryable: true,
        details: [error.problems],
      });
    }
    if (error instanceof PlanningError || error instanceof UnknownConnectorError) {
      throw ApplicationFailure.nonRetryable(error.message, error.name);
    }
    throw error;
  }
}

/**
 * Long single statements and long destination calls cannot heartbeat from inside; a timer does it
 * while they run, repeating the latest details (a heartbeat replaces the previous details).
 */
async function keepHeartbeating<T>(
  work: () => Promise<T>,
  details: () => unknown = () => undefined,
): Promise<T> {
  const context = Context.current();
  const timer = setInterval(() => context.heartbeat(details()), HEARTBEAT_EVERY_MS);
  try {
    return await work();
  } finally {
    clearInterval(timer);
  }
}
