import {
  ActivityCancellationType,
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  condition,
  defineQuery,
  defineUpdate,
  isCancellation,
  patched,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  sleep,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { StrategyChoice } from '../core/plan';
import type { SendPhase, SendTotals } from '../core/sender';
import type { DryRunPlan, GuardDecision, PlanSummary, RunSummary } from '../core/summaries';
import type { RefreshActivities } from './activity-types';
import { runRefresh, type RefreshPhase } from './refresh-steps';
import { NON_RETRYABLE_ERRORS, QUOTA_EXHAUSTED, searchAttributes, type RefreshInput } from './shared';

export type { RefreshPhase } from './refresh-steps';

/**
 * One refresh of one connector, step by step as in the method: update the deltalog, plan, send
 * (by the planned strategy), commit, janitor. Every step is an activity; their order lives in
 * refresh-steps.ts (which the engine's property test runs too), and this file gives it Temporal:
 * timeouts, summaries, the progress query, the approval updates, search attributes and memo. It
 * stays deterministic, and its history holds ids and counts, never records.
 */

export type { RefreshInput };

export interface RefreshProgress {
  connectorId: string;
  runId: number | null;
  phase: RefreshPhase;
  plan: PlanSummary | null;
  /** Totals of the send phases that have finished (live numbers come from the activity heartbeat). */
  completedPhases: SendTotals[];
  /** Set while the run waits for a destination quota to reset (a daily limit): why, and until when. */
  paused?: { reason: string; until: string };
}

export const progressQuery = defineQuery<RefreshProgress>('progress');

/** Who decides on a guarded run, and why (shown on the run). */
export interface DecisionInput {
  by?: string;
  note?: string;
}
/** Let the deletions of a run waiting at the mass-delete guard go out. */
export const approveUpdate = defineUpdate<GuardDecision, [DecisionInput]>('approve');
/** Hold them back: the run sends the rest; the deletions stay pending for a later decision. */
export const rejectUpdate = defineUpdate<GuardDecision, [DecisionInput]>('reject');

const retry = {
  initialInterval: '1 second',
  backoffCoefficient: 2,
  maximumInterval: '1 minute',
  nonRetryableErrorTypes: NON_RETRYABLE_ERRORS,
};

const stepOptions = { startToCloseTimeout: '2 hours', heartbeatTimeout: '1 minute', retry };
/**
 * Sends and destination calls heartbeat after every batch and every 5 s while one call runs: a
 * worker that died is noticed within 20 s and another takes over, resuming from the database.
 */
const sendOptions = { startToCloseTimeout: '24 hours', heartbeatTimeout: '20 seconds', retry };
/**
 * The compare is one long statement; on SQLite it holds the worker's event loop, so heartbeats
 * stop while it runs. It gets a longer heartbeat timeout.
 */
const statementOptions = { ...sendOptions, heartbeatTimeout: '2 minutes' };
/**
 * A cancelled run closes only once its running activity has stopped (a send stops between calls,
 * after committing the call in flight). Otherwise the next refresh of the connector could start
 * while the cancelled send still delivers and commits, and the run would miss its last batches.
 */
const waitForStop = { cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED };
const activities = {
  current: {
    steps: proxyActivities<RefreshActivities>({ ...stepOptions, ...waitForStop }),
    sending: proxyActivities<RefreshActivities>({ ...sendOptions, ...waitForStop }),
  },
  /** Runs recorded before the change closed at once on cancellation; they replay with this. */
  beforeWaitingForStop: {
    steps: proxyActivities<RefreshActivities>(stepOptions),
    sending: proxyActivities<RefreshActivities>(sendOptions),
  },
};

export async function refreshConnector(input: RefreshInput): Promise<RunSummary> {
  const progress: RefreshProgress = {
    connectorId: input.connectorId,
    runId: null,
    phase: 'starting',
    plan: null,
    completedPhases: [],
  };
  setHandler(progressQuery, () => progress);
  const enter = (phase: RefreshPhase) => {
    progress.phase = phase;
    setCurrentDetails(`**${input.connectorId}**: ${phase}`);
  };

  let decision: GuardDecision | undefined;
  let awaitingApproval = false;
  const decide = (approved: boolean) => ({
    validator: (_input: DecisionInput) => {
      if (!awaitingApproval) throw new Error('no deletions of this run are waiting for approval');
    },
    handler: ({ by, note }: DecisionInput) => {
      decision = { approved, by: by ?? 'unknown', ...(note ? { note } : {}) };
      return decision;
    },
  });
  const approve = decide(true);
  const reject = decide(false);
  setHandler(approveUpdate, approve.handler, { validator: approve.validator });
  setHandler(rejectUpdate, reject.handler, { validator: reject.validator });

  const { steps, sending } = patched('cancel-waits-for-activities')
    ? activities.current
    : activities.beforeWaitingForStop;

  /**
   * A step that talks to the destination, paused and tried again when the account's quota for the
   * period is used up (retries cannot succeed before the reset): the run sleeps in Temporal until
   * the reset, saying why, and resumes from its last committed batch.
   */
  const pausingOnQuota = async <T>(step: () => Promise<T>): Promise<T> => {
    for (;;) {
      try {
        return await step();
      } catch (error) {
        const quota = quotaExhausted(error);
        if (!quota) throw error;
        const phase = progress.phase;
        progress.phase = 'paused';
        progress.paused = { reason: quota.reason, until: quota.resumeAt };
        setCurrentDetails(
          `**${input.connectorId}** is paused: ${quota.reason}. It resumes at ${quota.resumeAt} by itself.`,
        );
        await sleep(Math.max(1_000, Date.parse(quota.resumeAt) - Date.now()));
        progress.paused = undefined;
        enter(phase);
      }
    }
  };

  return runRefresh(
    // Asked for when the workflow started: a compare shared with other connectors that began
    // since then serves this refresh (core/shared-compare.ts).
    { ...input, askedAt: workflowInfo().startTime.getTime() },
    {
      beginRun: (request) => steps.beginRun(request),
      updateDeltalog: (ref) =>
        steps.updateDeltalog.executeWithOptions(
          options('update the deltalog (full compare)', statementOptions),
          [ref],
        ),
      planRefresh: (request) => steps.planRefresh(request),
      recordGuardDecision: (request) => steps.recordGuardDecision(request),
      truncateRemote: (ref) =>
        pausingOnQuota(() =>
          steps.truncateRemote.executeWithOptions(options('truncate the remote list'), [ref]),
        ),
      createList: (ref) =>
        pausingOnQuota(() => steps.createList.executeWithOptions(options('create a new remote list'), [ref])),
      swapList: (ref) =>
        pausingOnQuota(() =>
          steps.swapList.executeWithOptions(options('swap the new list in, retire the old one'), [ref]),
        ),
      snapshotRemote: (ref) =>
        pausingOnQuota(() =>
          sending.snapshotRemote.executeWithOptions(options('read the remote list'), [ref]),
        ),
      reconcileDeltalog: (ref) => steps.reconcileDeltalog(ref),
      sendChanges: (ref, { phase, records, batchSize }) =>
        pausingOnQuota(() =>
          sending.sendChanges.executeWithOptions(
            options(
              `send ${records.toLocaleString('en-US')} ${WHAT_IS_SENT[phase]} in ~${Math.ceil(records / batchSize)} calls`,
            ),
            [{ ...ref, phase }],
          ),
        ),
      finishRun: (request) => steps.finishRun(request),
      runJanitor: (ref) => steps.runJanitor(ref),
    },
    {
      enter,
      started(run) {
        progress.runId = run.runId;
        upsertSearchAttributes([
          { key: searchAttributes.connectorId, value: input.connectorId },
          { key: searchAttributes.destination, value: run.destinationType },
          { key: searchAttributes.tenant, value: run.tenant },
        ]);
      },
      planned(plan) {
        progress.plan = plan;
      },
      async awaitDecision(guard) {
        setCurrentDetails(
          `**${input.connectorId}** is waiting for approval: ${guard.reason}. ` +
            `Send the update \`approve\` or \`reject\` (no decision within ${guard.approvalTimeoutSeconds} s rejects).`,
        );
        awaitingApproval = true;
        const decided = await condition(() => decision !== undefined, guard.approvalTimeoutSeconds * 1000);
        awaitingApproval = false;
        return decided ? decision : undefined;
      },
      strategyChosen(strategy) {
        upsertSearchAttributes([{ key: searchAttributes.strategy, value: strategy }]);
      },
      sent(totals) {
        progress.completedPhases.push(totals);
      },
      finished(result) {
        progress.phase = 'done';
        setCurrentDetails(`**${input.connectorId}**: ${result.status}`);
        upsertSearchAttributes([{ key: searchAttributes.outcome, value: result.status }]);
        // Runs recorded before the memo existed replay without it.
        if (patched('run-summary-memo')) upsertMemo({ summary: memoOf(result) });
      },
      belowThreshold: (result) =>
        ApplicationFailure.nonRetryable(result.error ?? 'refresh failed', 'BelowSuccessThreshold', result),
      async failed(ref, error) {
        progress.phase = 'failed';
        // Record the failure on the run even when the workflow is being cancelled.
        await CancellationScope.nonCancellable(() =>
          steps.finishRun({ ...ref, status: 'failed', error: describeError(error) }),
        );
        // A cancelled activity can also end in a timeout (its worker died): still a cancelled run.
        const cancelled = isCancellation(error) || CancellationScope.current().consideredCancelled;
        upsertSearchAttributes([
          { key: searchAttributes.outcome, value: cancelled ? 'cancelled' : 'failed' },
        ]);
      },
    },
  );
}

const WHAT_IS_SENT: Record<SendPhase, string> = {
  upserts: 'additions and updates',
  deletions: 'deletions',
  full: 'records (full push)',
  fill: 'records into the new list',
};

/** The run's summary for the Web UI's memo: counts only, never records. */
function memoOf(run: RunSummary) {
  return {
    status: run.status,
    strategy: run.strategy,
    additions: run.additions,
    updates: run.updates,
    deletions: run.deletions,
    deletionsHeld: run.deletionsHeld,
    rejected: run.rejected,
    quarantined: run.quarantined,
    apiCalls: run.apiCalls,
    durationMs: run.durationMs,
  };
}

/** The quota an activity found used up (QuotaExhaustedError, see activities/support.ts), if that is why it failed. */
function quotaExhausted(error: unknown): { reason: string; resumeAt: string } | undefined {
  const cause = error instanceof ActivityFailure ? error.cause : undefined;
  if (!(cause instanceof ApplicationFailure) || cause.type !== QUOTA_EXHAUSTED) return undefined;
  const details = cause.details?.[0] as { reason?: unknown; resumeAt?: unknown } | undefined;
  if (typeof details?.reason !== 'string' || typeof details.resumeAt !== 'string') return undefined;
  return { reason: details.reason, resumeAt: details.resumeAt };
}

/** Per-call options with the activity's summary (the send's timeouts unless told otherwise). */
function options(summary: string, timeouts: typeof sendOptions = sendOptions) {
  return { ...timeouts, summary };
}

function describeError(error: unknown): string {
  if (error instanceof Error)
    return `${error.name}: ${error.message}${error.cause instanceof Error ? ` (${error.cause.message})` : ''}`;
  return String(error);
}

/** A dry run: what a refresh would send now, by which strategy, in how many calls. Sends nothing. */
export async function planConnector(input: {
  connectorId: string;
  tenant?: string;
  strategy?: StrategyChoice;
}): Promise<DryRunPlan> {
  return activities.current.steps.previewPlan.executeWithOptions(
    options(`dry-run plan for ${input.connectorId}`, statementOptions),
    [input],
  );
}
