import { ApplicationFailure, Context } from '@temporalio/activity';
import type { Db } from '../db';
import { loadConnector, UnknownConnectorError } from '../connectors/store';
import { InvalidConnectorError, type ConnectorDefinition } from '../connectors/definition';
import type { DestinationFactory } from '../connectors/registry';
import { DestinationError, type Destination } from '../connectors/types';
import {
  badRowTotal,
  datasetSize,
  markRemoteEmptied,
  pendingCounts,
  purgeCommittedDeletions,
  updateDeltalog as updateDeltalogTable,
} from '../core/deltalog';
import { planRefresh as plan, PlanningError, type Strategy, type StrategyChoice } from '../core/plan';
import {
  beginRun as beginRunRow,
  finishRun as finishRunRow,
  incrementRunCounters,
  recordPlan,
  recordSnapshot,
  type RunStatus,
} from '../core/runs';
import { batchSizeFor, sendPhase, type SendPhase, type SendProgress } from '../core/sender';

/**
 * The refresh's activities. They receive ids and return counts: record data moves only between
 * the database and the destination, never through workflow history.
 */

export interface ActivityDependencies {
  db: Db;
  destinations: DestinationFactory;
  now?: () => number;
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
  batchSize: number;
  estimatedCalls: Record<Strategy, number | null>;
}

export interface RunSummary {
  runId: number;
  connectorId: string;
  status: RunStatus;
  strategy: string | null;
  strategyReason: string | null;
  datasetSize: number | null;
  additions: number;
  updates: number;
  deletions: number;
  recordsSent: number;
  rejected: number;
  apiCalls: number;
  failedCalls: number;
  rateLimitWaits: number;
  badRows: number;
  durationMs: number | null;
  error: string | null;
}

const HEARTBEAT_EVERY_MS = 10_000;

export function createActivities({ db, destinations, now = Date.now }: ActivityDependencies) {
  async function withDestination<T>(connector: ConnectorDefinition, use: (d: Destination) => Promise<T>) {
    const destination = destinations(connector.destination);
    try {
      return await use(destination);
    } finally {
      await destination.close();
    }
  }

  return {
    /** Open (or, on retry, find) this workflow execution's run record. */
    async beginRun(input: { connectorId: string; trigger: string }) {
      return failClearly(async () => {
        const connector = await loadConnector(db, input.connectorId);
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

    /** Step 2: is a refresh needed, and by which strategy? */
    async planRefresh({
      connectorId,
      runId,
      strategy,
    }: RunRef & { strategy?: StrategyChoice }): Promise<PlanSummary> {
      return failClearly(async () => {
        const connector = await loadConnector(db, connectorId);
        const { horizonDays, maxAttempts } = connector.policy;
        const pending = await pendingCounts(db, connectorId, { maxAttempts });
        const since = horizonDays === undefined ? undefined : now() - horizonDays * 86_400_000;
        const pendingInHorizon =
          since === undefined ? pending : await pendingCounts(db, connectorId, { since, maxAttempts });
        const size = await datasetSize(db, connectorId);
        return withDestination(connector, async (destination) => {
          const decision = plan({
            capabilities: destination.capabilities,
            recordsPerCall: batchSizeFor(connector, destination),
            pending,
            pendingInHorizon,
            datasetSize: size,
            strategy: strategy ?? connector.policy.strategy,
          });
          await recordPlan(db, runId, {
            ...pending,
            strategy: decision.strategy,
            reason: decision.reason,
            datasetSize: size,
          });
          return {
            needed: decision.needed,
            strategy: decision.strategy,
            reason: decision.reason,
            ...pending,
            datasetSize: size,
            batchSize: batchSizeFor(connector, destination),
            estimatedCalls: decision.estimatedCalls,
          };
        });
      });
    },

    /** Truncate + reload, first half: empty the remote list; every key becomes pending again. */
    async truncateRemote({ connectorId, runId }: RunRef) {
      return failClearly(async () => {
        const connector = await loadConnector(db, connectorId);
        const outcome = await withDestination(connector, (destination) => destination.truncate());
        await incrementRunCounters(db, runId, {
          api_calls: outcome.apiCalls,
          rate_limit_waits: outcome.rateLimitWaits,
        });
        await markRemoteEmptied(db, connectorId, now());
      });
    },

    /** Step 3: send one phase, committing every delivered batch; resumes from its heartbeat. */
    async sendChanges({ connectorId, runId, phase }: RunRef & { phase: SendPhase }): Promise<SendProgress> {
      return failClearly(async () => {
        const context = Context.current();
        const connector = await loadConnector(db, connectorId);
        const resumeFrom = context.info.heartbeatDetails as SendProgress | undefined;
        return withDestination(connector, (destination) =>
          sendPhase({
            db,
            connector,
            destination,
            runId,
            phase,
            resumeFrom,
            now,
            onBatch: (progress) => context.heartbeat(progress),
            signal: context.cancellationSignal,
          }),
        );
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
      const run = await finishRunRow(
        db,
        runId,
        { status, error, successThreshold: connector.policy.successThreshold },
        now(),
      );
      const badRows = run.bad_rows ? badRowTotal(JSON.parse(run.bad_rows)) : 0;
      return {
        runId: run.id,
        connectorId: run.connector_id,
        status: run.status,
        strategy: run.strategy,
        strategyReason: run.strategy_reason,
        datasetSize: run.dataset_size,
        additions: run.additions,
        updates: run.updates,
        deletions: run.deletions,
        recordsSent: run.records_sent,
        rejected: run.rejected,
        apiCalls: run.api_calls,
        failedCalls: run.failed_calls,
        rateLimitWaits: run.rate_limit_waits,
        badRows,
        durationMs: run.finished_at === null ? null : run.finished_at - run.started_at,
        error: run.error,
      };
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
}

export type Activities = ReturnType<typeof createActivities>;

/** Errors that retrying cannot fix become non-retryable failures with an operator-readable type. */
async function failClearly<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof DestinationError && error.kind === 'fatal') {
      throw ApplicationFailure.nonRetryable(error.message, 'DestinationFatal');
    }
    if (
      error instanceof PlanningError ||
      error instanceof InvalidConnectorError ||
      error instanceof UnknownConnectorError
    ) {
      throw ApplicationFailure.nonRetryable(error.message, error.name);
    }
    throw error;
  }
}

/** Long single statements cannot heartbeat from inside; a timer does it while they run. */
async function keepHeartbeating<T>(work: () => Promise<T>): Promise<T> {
  const context = Context.current();
  const timer = setInterval(() => context.heartbeat(), HEARTBEAT_EVERY_MS);
  try {
    return await work();
  } finally {
    clearInterval(timer);
  }
}
