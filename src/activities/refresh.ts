import { Context } from '@temporalio/activity';
import { connectorKey, InvalidConnectorError, type ConnectorDefinition } from '../connectors/definition';
import { loadConnector } from '../connectors/store';
import { DestinationError, type BatchOutcome, type Destination } from '../connectors/types';
import { isCallFailure, rateLimitWaitsOf, talliesOfFailure, talliesOfOutcome } from '../core/api-calls';
import type { DatasetReader } from '../core/dataset';
import {
  badRowTotal,
  commitSwapped,
  datasetSize,
  markRemoteEmptied,
  pendingCounts,
  previewUpdate,
  purgeCommittedDeletions,
  quarantinedAbsent,
  quarantinedCount,
  reconcileWithRemote,
  remoteSize,
  sampleRecordBytes,
  saveRemoteKeys,
  updateDeltalog as updateDeltalogTable,
  type BadRowReport,
} from '../core/deltalog';
import { checkMassDelete, type GuardCheck } from '../core/guard';
import { planRefresh as plan, PlanningError, type StrategyChoice } from '../core/plan';
import {
  beginRun as beginRunRow,
  finishRun as finishRunRow,
  getRun,
  lastProgressAt,
  recordCalls,
  loadCheckpoint,
  recordFailure,
  recordPlan,
  recordRunDetails,
  recordSnapshot,
  saveCheckpoint,
  type RunStatus,
} from '../core/runs';
import {
  batchSizeFor,
  operationOf,
  sendPhase,
  type SendPhase,
  type SendProgress,
  type SendTotals,
} from '../core/sender';
import {
  summarizeRun,
  type DryRunPlan,
  type GuardDecision,
  type PlanSummary,
  type RunSummary,
} from '../core/summaries';
import type { Db } from '../db';
import { observeDestination } from '../observability/destination';
import { safeObserver, sendIncrements } from '../observability/observer';
import { connectorProblems, withEgressPolicy, type TenantPolicy } from '../tenancy';
import {
  callerTenant,
  FailureBudgetExceeded,
  failClearly,
  failClearlyWhileHeartbeating,
  keepHeartbeating,
  type ActivityDependencies,
} from './support';

/**
 * The refresh's activities. They receive ids and return counts: record data moves only between
 * the database and the destination, never through workflow history. Each acts for the tenant its
 * workflow's namespace serves (see callerTenant); `tenant` in an input only chooses among the
 * namespace's tenants.
 */

export interface ConnectorRef {
  connectorId: string;
  /** The caller's tenant; absent in runs recorded before tenants were checked by namespace. */
  tenant?: string;
}

export interface RunRef extends ConnectorRef {
  runId: number;
}

const LIST_PAGE_SIZE = 1000;

export function createRefreshActivities(dependencies: ActivityDependencies) {
  const { db, destinations, tenancy, now = Date.now } = dependencies;
  const observer = safeObserver(dependencies.observer);

  /** The caller's tenant and its connector (another tenant's does not exist for this caller). */
  async function open(ref: ConnectorRef) {
    const tenant = callerTenant(tenancy, ref.tenant);
    const connector = await loadConnector(db, tenant.id, ref.connectorId);
    return { tenant, connector, key: connectorKey(tenant.id, connector.id) };
  }

  /**
   * `use` with the destination bound to the list the connector points at now, its secrets its
   * tenant's, every HTTP request it makes held to its tenant's allowlist, its calls observed.
   */
  async function withDestination<T>(
    tenant: TenantPolicy,
    connector: ConnectorDefinition,
    use: (d: Destination) => Promise<T>,
  ): Promise<T> {
    const state = await connectorState(connectorKey(tenant.id, connector.id));
    const destination = observeDestination(
      destinations(connector.destination, { tenant: tenant.id, listId: state.remote_list_id ?? undefined }),
      observer,
    );
    try {
      return await withEgressPolicy(tenant.id, tenant.destinations, () => use(destination));
    } finally {
      await destination.close();
    }
  }

  async function connectorState(key: string) {
    return ((await db('connector_state').where({ connector_id: key }).first()) ?? {}) as {
      remote_list_id?: string | null;
      pending_list_id?: string | null;
    };
  }

  /** Pending counts, sizes and the destination's limits → the planner's decision. */
  async function decide(
    store: Db,
    key: string,
    connector: ConnectorDefinition,
    reader: DatasetReader,
    destination: Destination,
    strategy: StrategyChoice | undefined,
  ): Promise<PlanSummary> {
    const { horizonDays, maxAttempts } = connector.policy;
    const pending = await pendingCounts(store, key, { maxAttempts });
    const since = horizonDays === undefined ? undefined : now() - horizonDays * 86_400_000;
    const pendingInHorizon =
      since === undefined ? pending : await pendingCounts(store, key, { since, maxAttempts });
    const size = await datasetSize(store, key);
    const remote = await remoteSize(store, key);
    const batchSize = batchSizeFor(connector, destination);
    // Inside a dry run's transaction, the sample reads through it; otherwise through the reader.
    const sample = store.isTransaction
      ? await sampleRecordBytes(store, reader.dataset)
      : await reader.read((executor) => sampleRecordBytes(executor, reader.dataset));
    const decision = plan({
      capabilities: destination.capabilities,
      recordsPerCall: batchSize,
      bytesPerCall: destination.limits.bytesPerCall,
      pending,
      pendingInHorizon,
      datasetSize: size,
      remoteSize: remote,
      ...sample,
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
      quarantined: await quarantinedCount(store, key, maxAttempts),
      withDeletionsHeld:
        pending.additions + pending.updates === 0 || destination.capabilities.add ? 'diff' : null,
    };
  }

  async function countCalls(runId: number, outcome: BatchOutcome, endpoint: string) {
    await recordCalls(db, runId, talliesOfOutcome(outcome, endpoint), outcome.rateLimitWaits);
  }

  /**
   * `work` (an attempt of an activity that talks to the destination), held to the connector's
   * failure budget: a retry that finds nothing committed since the activity was first scheduled
   * (or since its last committed batch) for longer than `failureBudgetSeconds` fails the run with
   * the last error, instead of retrying forever. Each failed attempt leaves its error on the run.
   */
  async function withinFailureBudget<T>(
    ref: RunRef,
    connector: ConnectorDefinition,
    step: { name: string; endpoint: string },
    work: () => Promise<T>,
  ) {
    const info = Context.current().info;
    if (info.attempt > 1) {
      const since = Math.max(
        info.scheduledTimestampMs,
        (await lastProgressAt(db, ref.runId, step.name)) ?? 0,
      );
      const budget = connector.policy.failureBudgetSeconds;
      if (now() - since > budget * 1000) {
        const { last_failure } = await getRun(db, ref.runId);
        throw new FailureBudgetExceeded(
          `${step.name}: nothing was delivered for ${Math.round((now() - since) / 1000)} s over ${info.attempt - 1} ` +
            `attempts (failureBudgetSeconds ${budget}); last error: ${last_failure ?? 'none recorded'}`,
        );
      }
    }
    try {
      return await work();
    } catch (error) {
      // The calls of a failed attempt were made all the same: the run counts them. The database
      // may be what failed, so a write that fails here does not hide the error.
      await Promise.all([
        isCallFailure(error) &&
          recordCalls(db, ref.runId, talliesOfFailure(error, step.endpoint), rateLimitWaitsOf(error)),
        isRetriedFailure(error) && recordFailure(db, ref.runId, describeFailure(error), now()),
      ]).catch(() => undefined);
      throw error;
    }
  }

  /** The list being built by new list + swap, written through the live destination's account. */
  async function pendingList(key: string, live: Destination): Promise<Destination> {
    const { pending_list_id } = await connectorState(key);
    if (!pending_list_id || !live.forList) throw new Error('no list is being built for this connector');
    return live.forList(pending_list_id);
  }

  return {
    /**
     * Open (or, on retry, find) this workflow execution's run record, then check the connector
     * may run as its tenant: its secrets, its destination's targets, its dataset. A connector that
     * may not fails here, on its run record, before anything is read or sent.
     */
    async beginRun(input: ConnectorRef & { trigger: string }) {
      return failClearly(async () => {
        const { tenant, connector, key } = await open(input);
        const { workflowExecution } = Context.current().info;
        if (!workflowExecution) throw new Error('beginRun must run inside a refresh workflow');
        const runId = await beginRunRow(
          db,
          {
            connectorId: key,
            tenant: tenant.id,
            workflowId: workflowExecution.workflowId,
            workflowRunId: workflowExecution.runId,
            trigger: input.trigger,
          },
          now(),
        );
        const problems = await connectorProblems(tenancy, tenant, connector);
        if (problems.length > 0) {
          const error = new InvalidConnectorError(problems);
          await finishRunRow(
            db,
            runId,
            { status: 'failed', error: error.message, successThreshold: 1 },
            now(),
          );
          throw error;
        }
        return { runId, tenant: tenant.id, destinationType: connector.destination.type };
      });
    },

    /** Step 1 (FIG. 4): full compare of the dataset against the deltalog, in the database. */
    async updateDeltalog(ref: RunRef) {
      return failClearly(() =>
        keepHeartbeating(async () => {
          const { tenant, connector, key } = await open(ref);
          const snapshotAt = now();
          const reader = await tenancy.datasets.reader(tenant, connector);
          const badRows = await updateDeltalogTable(db, key, reader, snapshotAt);
          await recordSnapshot(db, ref.runId, snapshotAt, badRows);
          return { snapshotAt, datasetRows: badRows.datasetRows, badRows: badRowTotal(badRows) };
        }),
      );
    },

    /** Step 2: is a refresh needed, and by which strategy? The choice and its reason go on the run. */
    async planRefresh(ref: RunRef & { strategy?: StrategyChoice }): Promise<PlanSummary> {
      return failClearly(async () => {
        const { tenant, connector, key } = await open(ref);
        const reader = await tenancy.datasets.reader(tenant, connector);
        const summary = await withDestination(tenant, connector, (destination) =>
          decide(db, key, connector, reader, destination, ref.strategy),
        );
        await recordPlan(db, ref.runId, { ...summary, strategy: summary.strategy });
        await recordRunDetails(db, ref.runId, {
          estimates: summary.estimates,
          quarantined: await quarantinedCount(db, key, connector.policy.maxAttempts),
        });
        return summary;
      });
    },

    /**
     * The mass-delete guard's decision; rejected deletions stay pending (held, not lost). The run
     * record then names what runs instead (`strategy`: a diff without them, or nothing at all).
     */
    async recordGuardDecision({
      runId,
      guard,
      decision,
      strategy,
    }: RunRef & { guard: GuardCheck; decision: GuardDecision; strategy?: string | null }) {
      const held = !decision.approved;
      await db('refresh_runs')
        .where({ id: runId })
        .update({
          guard: JSON.stringify({ ...guard, ...decision, decidedAt: now() }),
          deletions_held: held ? guard.deletions : 0,
          ...(held && strategy !== undefined
            ? {
                strategy,
                strategy_reason:
                  strategy === null
                    ? 'deletions held by the mass-delete guard; this destination can only replace the whole list, so nothing was sent'
                    : 'deletions held by the mass-delete guard: additions and updates only',
              }
            : {}),
        });
    },

    /** A dry run: what a refresh would send, by which strategy, in how many calls; changes nothing. */
    async previewPlan(input: ConnectorRef & { strategy?: StrategyChoice }): Promise<DryRunPlan> {
      return failClearly(() =>
        keepHeartbeating(async () => {
          const { tenant, connector, key } = await open(input);
          const problems = await connectorProblems(tenancy, tenant, connector);
          if (problems.length > 0) throw new InvalidConnectorError(problems);
          const reader = await tenancy.datasets.reader(tenant, connector);
          return withDestination(tenant, connector, (destination) =>
            previewUpdate(db, key, reader, now(), async (preview, report: BadRowReport) => ({
              connectorId: connector.id,
              ...(await decide(preview, key, connector, reader, destination, input.strategy)),
              badRows: badRowTotal(report),
              quarantined: await quarantinedCount(preview, key, connector.policy.maxAttempts),
            })),
          );
        }),
      );
    },

    /** Truncate + reload, first half: empty the remote list; every key becomes pending again. */
    async truncateRemote(ref: RunRef) {
      return failClearlyWhileHeartbeating(async () => {
        const { tenant, connector, key } = await open(ref);
        const outcome = await withinFailureBudget(
          ref,
          connector,
          { name: 'truncate', endpoint: 'truncate' },
          () => withDestination(tenant, connector, (destination) => destination.truncate()),
        );
        await countCalls(ref.runId, outcome, 'truncate');
        await markRemoteEmptied(db, key, now());
      });
    },

    /** New list + swap, first step: an empty list to fill (the same one again on a retry). */
    async createList(ref: RunRef) {
      return failClearlyWhileHeartbeating(async () => {
        const { tenant, connector, key } = await open(ref);
        const { pending_list_id: abandoned } = await connectorState(key);
        const budget = { name: 'createList', endpoint: 'createList' };
        const { listId, outcome } = await withinFailureBudget(ref, connector, budget, () =>
          withDestination(tenant, connector, async (destination) => {
            if (!destination.createList) throw new PlanningError('this destination cannot create lists');
            const created = await destination.createList(`run-${ref.runId}`);
            // A list an earlier, failed run left half-built is of no use any more.
            if (abandoned && abandoned !== created.listId && destination.deleteList) {
              await countCalls(ref.runId, await destination.deleteList(abandoned), 'deleteList');
            }
            return created;
          }),
        );
        await countCalls(ref.runId, outcome, 'createList');
        await db('connector_state').where({ connector_id: key }).update({ pending_list_id: listId });
        return { listId };
      });
    },

    /**
     * Step 3: send one phase, recording every call; a retry resumes after the last call the
     * database recorded. The heartbeat carries counts only (what a heartbeat holds can reach
     * workflow history), and the result too.
     */
    async sendChanges(ref: RunRef & { phase: SendPhase }): Promise<SendTotals> {
      return failClearly(async () => {
        const context = Context.current();
        const { tenant, connector, key } = await open(ref);
        const source = await tenancy.datasets.reader(tenant, connector);
        // A single call can take long (Google runs jobs for hours): the timer keeps heartbeating.
        let latest: SendProgress | undefined;
        const increments = sendIncrements();
        return keepHeartbeating(
          () =>
            withinFailureBudget(ref, connector, { name: ref.phase, endpoint: operationOf(ref.phase) }, () =>
              withDestination(tenant, connector, async (live) => {
                const destination = ref.phase === 'fill' ? await pendingList(key, live) : live;
                return sendPhase({
                  db,
                  connector,
                  connectorKey: key,
                  destination,
                  source,
                  runId: ref.runId,
                  phase: ref.phase,
                  now,
                  onBatch: (progress) => {
                    latest = progress;
                    context.heartbeat(progress);
                    observer.onBatch(connector.destination.type, increments(progress));
                  },
                  signal: context.cancellationSignal,
                });
              }),
            ),
          () => latest,
        );
      });
    },

    /**
     * New list + swap, last step: make the filled list the live one, retire the list the
     * connector pointed at before (never the list named in the config), commit.
     */
    async swapList(ref: RunRef) {
      return failClearlyWhileHeartbeating(async () => {
        const { tenant, connector, key } = await open(ref);
        const state = await connectorState(key);
        if (!state.pending_list_id) return { listId: state.remote_list_id ?? null }; // swapped already
        const listId = state.pending_list_id;
        const budget = { name: 'swapList', endpoint: 'swapList' };
        const liveListId = await withinFailureBudget(ref, connector, budget, () =>
          withDestination(tenant, connector, async (live) => {
            if (!live.swapList || !live.deleteList)
              throw new PlanningError('this destination cannot swap lists');
            const swapped = await live.swapList(listId);
            await countCalls(ref.runId, swapped, 'swapList');
            const liveId = swapped.liveListId ?? listId;
            if (state.remote_list_id && state.remote_list_id !== liveId) {
              await countCalls(ref.runId, await live.deleteList(state.remote_list_id), 'deleteList');
            }
            return liveId;
          }),
        );
        await commitSwapped(db, key, now());
        await db('connector_state')
          .where({ connector_id: key })
          .update({ remote_list_id: liveListId, pending_list_id: null });
        return { listId: liveListId };
      });
    },

    /**
     * Reconcile, first half: read the remote membership into the database, page by page. Each
     * page and the destination's page token are saved together; a retry continues from the token
     * (kept in the database: a token may well be a record key).
     */
    async snapshotRemote(ref: RunRef) {
      return failClearly(async () => {
        const context = Context.current();
        const { tenant, connector } = await open(ref);
        const saved = await loadCheckpoint(db, ref.runId, 'snapshot');
        if (saved?.cursor === DONE) return { keys: saved.recordsDone };
        let cursor: string | null = saved ? saved.cursor : null;
        let keys = saved?.recordsDone ?? 0;
        const budget = { name: 'snapshot', endpoint: 'listMembers' };
        await withinFailureBudget(ref, connector, budget, () =>
          withDestination(tenant, connector, async (destination) => {
            const limit = Math.min(LIST_PAGE_SIZE, destination.limits.recordsPerCall);
            do {
              const page = await destination.listMembers(cursor, limit);
              cursor = page.next;
              keys += page.keys.length;
              const checkpoint = { cursor: cursor ?? DONE, recordsDone: keys };
              await db.transaction(async (trx) => {
                await saveRemoteKeys(trx, ref.runId, page.keys);
                await saveCheckpoint(trx, ref.runId, 'snapshot', checkpoint, now());
              });
              await countCalls(ref.runId, { rejected: [], apiCalls: 1, rateLimitWaits: 0 }, 'listMembers');
              context.heartbeat({ keys });
            } while (cursor !== null);
          }),
        );
        return { keys };
      });
    },

    /** Reconcile, second half: correct the deltalog with what the remote holds; report the drift. */
    async reconcileDeltalog(ref: RunRef) {
      return failClearly(async () => {
        const { connector, key } = await open(ref);
        const { maxAttempts } = connector.policy;
        const found = await reconcileWithRemote(db, key, ref.runId, now());
        // Quarantined keys are not drift (the deltalog knows they are not there), but a list
        // without drift still lacks them: say how many.
        const drift = { ...found, quarantined: await quarantinedAbsent(db, key, maxAttempts) };
        await recordRunDetails(db, ref.runId, { drift });
        const pending = await pendingCounts(db, key, { maxAttempts });
        // Counts only: the drift's sample keys stay on the run record.
        return {
          drift: { extra: drift.extra, missing: drift.missing, quarantined: drift.quarantined },
          ...pending,
        };
      });
    },

    /** Step 4 (FIG. 5): close the run; the success threshold decides `last_succeeded_at`. */
    async finishRun(ref: RunRef & { status?: RunStatus; error?: string }): Promise<RunSummary> {
      const { connector } = await open(ref);
      const finishedAt = now();
      const run = await finishRunRow(
        db,
        ref.runId,
        {
          status: ref.status,
          error: ref.error,
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
    },

    /** The janitor: purge committed deletions older than the retention window. */
    async runJanitor(ref: ConnectorRef) {
      const { connector, key } = await open(ref);
      const purged = await purgeCommittedDeletions(
        db,
        key,
        now() - connector.policy.retentionDays * 86_400_000,
      );
      return { purged };
    },
  };
}

/** A snapshot checkpoint whose last page has been read. */
const DONE = '\u0000done';

/** An error Temporal will retry the activity for (not a refusal that ends the run, not a cancel). */
function isRetriedFailure(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (error instanceof DestinationError) return error.kind !== 'fatal';
  return !['CancelledFailure', 'AbortError', 'FailureBudgetExceeded'].includes(error.name);
}

/** The error's message, with its cause's (a network error's code sits there). */
function describeFailure(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? ` (${error.cause.message})` : '';
  return `${error.message}${cause}`;
}
