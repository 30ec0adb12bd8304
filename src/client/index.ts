import {
  ApplicationFailure,
  Client,
  Connection,
  isGrpcDeadlineError,
  WorkflowFailedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  WorkflowUpdateRPCTimeoutOrCancelledError,
  type WorkflowHandle,
} from '@temporalio/client';
import { UnknownConnectorError, type ListedConnector } from '../core/connector-store';
import { digestOf, type ChangeFilter, type ChangePage, type RunChange } from '../core/change-log';
import { newRecipient } from '../core/sealed';
import { defaultPayloadConverter, fromPayloadsAtIndex, TimeoutFailure } from '@temporalio/common';
import type { AdminOperation, AdminResult, OnlineCheck, RunSamples } from '../activities/admin';
import { InvalidConnectorError, type ConnectorDefinition, type ConnectorInput } from '../core/connector';
import { validateConnector } from '../connectors/catalog';
import type { StrategyChoice } from '../core/plan';
import type { DryRunPlan, GuardDecision, RunSummary } from '../core/summaries';
import type { SendProgress } from '../core/sender';
import type { manageConnectors } from '../workflows/operations';
import {
  approveUpdate,
  progressQuery,
  rejectUpdate,
  type DecisionInput,
  type planConnector,
  type RefreshProgress,
  type refreshConnector,
} from '../workflows/refresh';
import {
  datasetChangedSignal,
  stopWatchSignal,
  WATCH_DEFAULTS,
  watchStatusQuery,
  watchWorkflowId,
  type watchConnector,
  type WatchInput,
  type WatchOptions,
  type WatchStatus,
} from '../workflows/watch';
import { TenantNotServedError } from '../tenancy/policy';
import { refreshWorkflowId, searchAttributes, TASK_QUEUE } from '../temporal/names';
import { refreshPriority, type RefreshUrgency } from '../temporal/priority';
import { isRunning, startOrAttachRefresh } from '../temporal/refresh-starter';
import { loadConnectorFile } from './connector-files';
import { SchedulesClient } from './schedules';

export type {
  ChangeFilter,
  ChangePage,
  RunChange,
  OnlineCheck,
  ConnectorDefinition,
  ListedConnector,
  ConnectorInput,
  DryRunPlan,
  GuardDecision,
  RunSummary,
  RefreshProgress,
  SendProgress,
  WatchOptions,
  WatchStatus,
};

/** The connector's change watcher, as `watch()` found or started it. */
export interface WatchHandle {
  workflowId: string;
  /** The watcher's first run (it continues as new now and then; the workflow id stays). */
  runId: string;
  /** True when a watcher was running already; it keeps its settings (`unwatch` first to change them). */
  alreadyWatching: boolean;
}
export { loadConnectorFile, TenantNotServedError };

export interface RefreshOptions {
  /** Force a strategy for this run (`diff`, `full`, `truncate`, …); default: the connector's policy. */
  strategy?: StrategyChoice;
  /** Recorded on the run: `manual`, `schedule`, `change`, or your own label. */
  trigger?: string;
  /**
   * Its place in the task queue when workers are busy: `interactive` (default for refreshes
   * started here), `live`, `scheduled` or `backfill` (bulk reloads nobody waits for).
   */
  urgency?: RefreshUrgency;
}

/** Live progress: the workflow's phase and plan, plus the running send's last heartbeat. */
export interface LiveProgress extends RefreshProgress {
  status: string;
  /** Counters of the send phase in flight, from its heartbeat (null between phases). */
  sending: SendProgress | null;
  /** The running step is being retried: its attempt and the error the last attempt met. */
  retrying: { activity: string; attempt: number; lastFailure: string } | null;
}

export interface RefreshHandle {
  workflowId: string;
  runId: string;
  /** True when a refresh of this connector was already running and this call joined it. */
  attached: boolean;
  result(): Promise<RunSummary>;
  progress(): Promise<LiveProgress>;
}

export interface ClientOptions {
  /** Task queue the deltasync workers poll (default `deltasync`). */
  taskQueue?: string;
  /** Every call is scoped to this tenant's connectors (default `default`). */
  tenant?: string;
  /**
   * How long a query or an update (progress, approve, reject, watch status) waits for a worker's
   * answer before failing with {@link WorkerTimeoutError} (default 30 s).
   */
  answerTimeoutMs?: number;
}

/**
 * Connector operations (save, get, list, delete, runs) are short workflows run by a worker. This
 * is their workflow execution timeout: Temporal closes one no worker finished in this time, so
 * none is left waiting for a worker that is gone, and a caller's wait for it ends. It leaves the
 * operation's activity its own retries (5 attempts, each at most 1 minute, 90 s in all), so a
 * database the worker cannot reach is still reported as such.
 */
export const ADMIN_TIMEOUT_MS = 2 * 60_000;
/** A dry run reads the dataset once; a large one takes minutes, never this long. */
export const PLAN_TIMEOUT_MS = 60 * 60_000;
const ANSWER_TIMEOUT_MS = 30_000;
/** How long after a workflow's execution timeout the client still waits to hear it closed. */
const CLOSE_MARGIN_MS = 15_000;
/** Terminating a withdrawn operation is one short call to Temporal. */
const TERMINATE_TIMEOUT_MS = 5_000;

/**
 * The typed entry point for platform teams. It needs only a connection to Temporal: the worker
 * does the database work. Every call is scoped to one tenant.
 *
 * @example
 * const client = await DeltasyncClient.connect({ address: 'localhost:7233', tenant: 'growth' });
 * await client.connectors.apply(loadConnectorFile('connectors/crm.yaml'));
 * const run = await client.startRefresh('crm-customers');
 * for await (const progress of client.watchProgress('crm-customers')) console.log(progress.phase);
 * const summary = await run.result(); // { status: 'succeeded', additions: 120, ... }
 */
export class DeltasyncClient {
  readonly taskQueue: string;
  readonly tenant: string;
  readonly answerTimeoutMs: number;
  /** Create, update, delete, list and validate connectors. */
  readonly connectors: ConnectorsClient;
  /** Periodic refreshes on Temporal Schedules. */
  readonly schedules: SchedulesClient;
  /** The short workflows (connector operations, dry runs) this client waits for. */
  private readonly pending = new Set<WorkflowHandle>();

  constructor(
    readonly temporal: Client,
    options: ClientOptions | string = {},
  ) {
    const settings = typeof options === 'string' ? { taskQueue: options } : options;
    this.taskQueue = settings.taskQueue ?? TASK_QUEUE;
    this.tenant = settings.tenant ?? 'default';
    this.answerTimeoutMs = settings.answerTimeoutMs ?? ANSWER_TIMEOUT_MS;
    this.connectors = new ConnectorsClient(this);
    this.schedules = new SchedulesClient(temporal, this.taskQueue, this.tenant, (id) =>
      this.connectors.get(id),
    );
  }

  static async connect(
    options: ClientOptions & { address?: string; namespace?: string } = {},
  ): Promise<DeltasyncClient> {
    const connection = await Connection.connect({
      address: options.address ?? process.env.TEMPORAL_ADDRESS ?? 'localhost:7233',
    });
    const client = new Client({ connection, namespace: options.namespace ?? process.env.TEMPORAL_NAMESPACE });
    return new DeltasyncClient(client, options);
  }

  /**
   * Start a refresh, or attach to the one already running for this connector: one workflow id per
   * connector means two callers never run two refreshes of one list at once.
   */
  async startRefresh(connectorId: string, options: RefreshOptions = {}): Promise<RefreshHandle> {
    const { workflowId, runId, attached } = await startOrAttachRefresh(this.temporal, {
      connectorId,
      tenant: this.tenant,
      taskQueue: this.taskQueue,
      strategy: options.strategy,
      trigger: options.trigger ?? 'manual',
      urgency: options.urgency,
    });
    const pinned = this.temporal.workflow.getHandle<typeof refreshConnector>(workflowId, runId);
    return {
      workflowId,
      runId,
      attached,
      // A connector of another tenant (or none) fails the run at its first step: say so plainly.
      result: () =>
        pinned.result().catch((error: unknown) => Promise.reject(asConnectorError(error, connectorId))),
      progress: () => this.progressOf(pinned),
    };
  }

  /** Start (or attach to) a refresh and wait for its summary. */
  async refresh(connectorId: string, options: RefreshOptions = {}): Promise<RunSummary> {
    return (await this.startRefresh(connectorId, options)).result();
  }

  /**
   * Reconcile: read the remote list, correct what drifted from the deltalog (keys added or
   * removed behind our back), then send the corrections. The run's summary reports the drift.
   */
  async reconcile(connectorId: string, options: Omit<RefreshOptions, 'strategy'> = {}): Promise<RunSummary> {
    return this.refresh(connectorId, { ...options, strategy: 'reconcile' });
  }

  /**
   * A dry run: what a refresh would send now, by which strategy (and what each allowed strategy
   * would cost), without sending anything or changing the deltalog.
   */
  async plan(connectorId: string, options: { strategy?: StrategyChoice } = {}): Promise<DryRunPlan> {
    await this.connectors.get(connectorId); // tenant check
    return this.untilClosed<DryRunPlan>(`the dry run of '${connectorId}'`, PLAN_TIMEOUT_MS, () =>
      this.temporal.workflow.start<typeof planConnector>('planConnector', {
        workflowId: `deltasync-plan-${connectorId}@${this.tenant}-${Date.now().toString(36)}`,
        taskQueue: this.taskQueue,
        args: [{ connectorId, tenant: this.tenant, strategy: options.strategy }],
        workflowExecutionTimeout: PLAN_TIMEOUT_MS,
        typedSearchAttributes: [
          { key: searchAttributes.connectorId, value: connectorId },
          { key: searchAttributes.tenant, value: this.tenant },
        ],
        staticSummary: `dry-run plan for **${connectorId}**`,
      }),
    );
  }

  /**
   * Progress of the connector's latest refresh (running or finished). A worker answers it; throws
   * {@link WorkerTimeoutError} when none does within `answerTimeoutMs`.
   */
  async progress(connectorId: string): Promise<LiveProgress> {
    return this.progressOf(this.temporal.workflow.getHandle(this.refreshId(connectorId)));
  }

  /** Progress of the running refresh, every `intervalMs`, until it ends. */
  async *watchProgress(connectorId: string, intervalMs = 500): AsyncGenerator<LiveProgress> {
    for (;;) {
      const progress = await this.progress(connectorId);
      yield progress;
      if (progress.status !== 'RUNNING') return;
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  }

  /** Let the deletions of a run waiting at the mass-delete guard go out. */
  async approve(connectorId: string, decision: DecisionInput = {}): Promise<GuardDecision> {
    return this.decide(connectorId, true, decision);
  }

  /** Hold the deletions of a guarded run back; they stay pending and the run sends the rest. */
  async reject(connectorId: string, decision: DecisionInput = {}): Promise<GuardDecision> {
    return this.decide(connectorId, false, decision);
  }

  /**
   * Ask the connector's running refresh to stop. The send stops between calls: the call in flight
   * finishes and is committed, then nothing more goes out. The run closes (workflow status
   * Canceled, outcome `cancelled`, recorded as failed) only once its activity has stopped, so a
   * refresh started afterwards never overlaps it. What was not sent stays pending for the next
   * refresh. Throws {@link NoRunningRefreshError} when no refresh of the connector is running.
   *
   * @example
   * const cancelled = await client.cancel('crm-customers');
   * const run = await cancelled.stopped(); // { status: 'failed', additions: 3000, error: '… cancelled' }
   */
  async cancel(connectorId: string): Promise<CancelledRefresh> {
    await this.connectors.get(connectorId); // tenant check
    const workflowId = this.refreshId(connectorId);
    const handle = this.temporal.workflow.getHandle<typeof refreshConnector>(workflowId);
    try {
      const description = await handle.describe();
      if (description.status.name !== 'RUNNING') throw new NoRunningRefreshError(connectorId);
      const pinned = this.temporal.workflow.getHandle<typeof refreshConnector>(workflowId, description.runId);
      await pinned.cancel();
      return {
        workflowId,
        runId: description.runId,
        stopped: async () => {
          await pinned.result().catch(() => undefined); // ends in a cancellation (or its own outcome)
          const { runId } = await pinned.query(progressQuery);
          const runs = await this.runs(connectorId, { limit: 5 });
          return runs.find((run) => run.runId === runId) ?? null;
        },
      };
    } catch (error) {
      // Never started, or ended between the describe and the cancel.
      if (error instanceof WorkflowNotFoundError) throw new NoRunningRefreshError(connectorId);
      throw error;
    }
  }

  /**
   * The connector's runs, newest first, with their outcomes: `limit` of them (default 20), before
   * run `beforeRunId` for the next page.
   */
  async runs(
    connectorId: string,
    options: { limit?: number; beforeRunId?: number } = {},
  ): Promise<RunSummary[]> {
    const limit = options.limit ?? 20;
    const runs: RunSummary[] = [];
    let beforeRunId = options.beforeRunId;
    while (runs.length < limit) {
      const result = await this.admin({
        kind: 'runs',
        tenant: this.tenant,
        id: connectorId,
        limit: Math.min(limit - runs.length, RUNS_PAGE),
        ...(beforeRunId === undefined ? {} : { beforeRunId }),
      });
      const page = result.kind === 'runs' ? result.runs : [];
      runs.push(...page);
      if (page.length < RUNS_PAGE) break;
      beforeRunId = page[page.length - 1]!.runId;
    }
    return runs;
  }

  /**
   * The connector's runs with their bad-row samples (rows without a key, keys too long,
   * duplicated keys: dataset values, so they come sealed for this call only).
   */
  async runDetails(
    connectorId: string,
    options: { limit?: number } = {},
  ): Promise<(RunSummary & { badRowSamples: RunSamples['badRows'] })[]> {
    const recipient = newRecipient();
    const result = await this.admin({
      kind: 'runs',
      tenant: this.tenant,
      id: connectorId,
      limit: Math.min(options.limit ?? 20, RUNS_PAGE),
      recipient: recipient.publicKey,
    });
    if (result.kind !== 'runs' || !result.samples) throw new Error(`unexpected answer to a runs request`);
    const samples = new Map(recipient.open<RunSamples[]>(result.samples).map((s) => [s.runId, s.badRows]));
    return result.runs.map((run) => ({ ...run, badRowSamples: samples.get(run.runId) ?? null }));
  }

  /**
   * The connector's change log (kept `policy.changeLogDays`): which keys its runs added, updated
   * or removed, and which the destination rejected or held, and why; newest first, one page at a
   * time (`next` is the cursor of the following page). Filter by run, outcome or key: "why is
   * this customer not on the list?" is `changes(id, { key })`.
   */
  async changes(connectorId: string, filter: ChangeFilter = {}): Promise<ChangePage> {
    const recipient = newRecipient();
    const { key, ...rest } = filter;
    const result = await this.admin({
      kind: 'changes',
      tenant: this.tenant,
      id: connectorId,
      filter: rest,
      ...(key === undefined ? {} : { keyDigest: digestOf(key) }),
      recipient: recipient.publicKey,
    });
    if (result.kind !== 'changes') throw new Error(`unexpected answer '${result.kind}' to a changes request`);
    return recipient.open<ChangePage>(result.page);
  }

  /** Every change of the log that matches, page after page. */
  async *allChanges(
    connectorId: string,
    filter: Omit<ChangeFilter, 'cursor'> = {},
  ): AsyncGenerator<RunChange> {
    let cursor: string | undefined;
    do {
      const page = await this.changes(connectorId, { ...filter, cursor });
      yield* page.changes;
      cursor = page.next;
    } while (cursor);
  }

  /**
   * Refresh this connector when its dataset changes, besides any schedule: start its watcher.
   * The watcher reads the dataset's change marker every `pollSeconds` (see the connector policy's
   * `changeTrigger`) and takes `notifyChange` signals; once `debounceSeconds` pass without a
   * further change, it starts one refresh (trigger `change`) — or attaches to the running one and
   * follows up after it, so refreshes of one connector never overlap and no change is missed.
   * Idempotent: while a watcher runs, this returns it unchanged. Options override the policy.
   *
   * @example
   * await client.watch('crm-customers', { pollSeconds: 30, debounceSeconds: 10 });
   */
  async watch(connectorId: string, options: WatchOptions = {}): Promise<WatchHandle> {
    const input = await this.watcherInput(connectorId, options); // tenant check
    const workflowId = this.watchId(connectorId);
    const alreadyWatching = await isRunning(this.temporal, workflowId);
    const handle = await this.temporal.workflow.start<typeof watchConnector>('watchConnector', {
      ...this.watcherStart(connectorId, input),
      workflowIdConflictPolicy: 'USE_EXISTING',
    });
    return { workflowId, runId: handle.firstExecutionRunId, alreadyWatching };
  }

  /**
   * Stop the connector's watcher and wait until it has ended: no change-triggered refresh starts
   * after this returns (a refresh it started keeps running). False when no watcher was running.
   */
  async unwatch(connectorId: string): Promise<boolean> {
    await this.connectors.get(connectorId); // tenant check
    const handle = this.temporal.workflow.getHandle<typeof watchConnector>(this.watchId(connectorId));
    try {
      await handle.signal(stopWatchSignal);
    } catch (error) {
      if (error instanceof WorkflowNotFoundError) return false; // never started, or ended already
      throw error;
    }
    // The watcher ends once a worker hands it the signal: a short wait, with a deadline.
    await this.answered(`the watcher of '${connectorId}' to stop`, ADMIN_TIMEOUT_MS, () => handle.result());
    return true;
  }

  /**
   * Tell the connector's watcher that its dataset changed (for ingestion processes, right after a
   * load): a burst of notifications starts one refresh after the debounce. Starts the watcher
   * with the connector's policy when none runs. `note` is a short label shown in `watchStatus`
   * (e.g. `'orders import 2024-06-01'`); it is kept in workflow history, so no record data.
   */
  async notifyChange(connectorId: string, note?: string): Promise<void> {
    const workflowId = this.watchId(connectorId);
    const signalArgs: [string?] = note === undefined ? [] : [note];
    // Fast path, for frequent notifications: a running watcher of this tenant takes the signal.
    const running = await this.temporal.workflow
      .getHandle(workflowId)
      .describe()
      .catch((error: unknown) => {
        if (error instanceof WorkflowNotFoundError) return undefined;
        throw error;
      });
    if (
      running?.status.name === 'RUNNING' &&
      running.typedSearchAttributes.get(searchAttributes.tenant) === this.tenant
    ) {
      try {
        await this.temporal.workflow.getHandle(workflowId).signal(datasetChangedSignal, ...signalArgs);
        return;
      } catch (error) {
        if (!(error instanceof WorkflowNotFoundError)) throw error; // it just ended: start it again
      }
    }
    const input = await this.watcherInput(connectorId, {}); // tenant check
    await this.temporal.workflow.signalWithStart<typeof watchConnector, [string?]>('watchConnector', {
      ...this.watcherStart(connectorId, input),
      signal: datasetChangedSignal,
      signalArgs,
    });
  }

  /**
   * The watcher's state: when it last checked the marker and saw a change, whether a change is
   * pending, its last refresh start. Null when the connector was never watched (or the watcher's
   * history has expired); `running` false once it stopped.
   */
  async watchStatus(connectorId: string): Promise<(WatchStatus & { running: boolean }) | null> {
    await this.connectors.get(connectorId); // tenant check
    const handle = this.temporal.workflow.getHandle<typeof watchConnector>(this.watchId(connectorId));
    try {
      const [status, description] = await Promise.all([
        this.answered(`the status query of '${connectorId}''s watcher`, this.answerTimeoutMs, () =>
          handle.query(watchStatusQuery),
        ),
        handle.describe(),
      ]);
      return { ...status, running: description.status.name === 'RUNNING' };
    } catch (error) {
      if (error instanceof WorkflowNotFoundError) return null;
      throw error;
    }
  }

  /**
   * @internal: one connector-management operation, run by a worker. Throws
   * {@link WorkerTimeoutError} when no worker finished it within {@link ADMIN_TIMEOUT_MS}.
   */
  async admin(operation: AdminOperation): Promise<AdminResult> {
    try {
      return await this.untilClosed<AdminResult>(
        `connector operation '${operation.kind}'`,
        ADMIN_TIMEOUT_MS,
        () =>
          this.temporal.workflow.start<typeof manageConnectors>('manageConnectors', {
            workflowId: `deltasync-admin-${operation.kind}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`,
            taskQueue: this.taskQueue,
            args: [operation],
            workflowExecutionTimeout: ADMIN_TIMEOUT_MS,
            typedSearchAttributes: [{ key: searchAttributes.tenant, value: this.tenant }],
          }),
      );
    } catch (error) {
      throw asConnectorError(error, ('id' in operation ? operation.id : undefined) ?? '');
    }
  }

  /**
   * Withdraw the connector operations and dry runs this client is waiting for, because the caller
   * gave up on them (no worker polls the task queue): their workflows are terminated, so none
   * runs later by surprise or stays open. Refreshes are never withdrawn. The calls waiting for
   * them fail with a `WorkflowFailedError` (terminated).
   */
  async withdrawPending(reason: string): Promise<number> {
    const pending = [...this.pending];
    this.pending.clear();
    await Promise.all(
      pending.map(
        (handle) =>
          this.temporal.connection
            .withDeadline(Date.now() + TERMINATE_TIMEOUT_MS, () => handle.terminate(reason))
            .catch(() => undefined), // ended meanwhile, or Temporal is gone: its timeout ends it
      ),
    );
    return pending.length;
  }

  /**
   * Start a short workflow and wait for its result. Temporal closes it at `timeoutMs` (its
   * execution timeout), so the wait ends too; the deadline a little later covers a close that
   * never reaches us.
   */
  private async untilClosed<R>(
    what: string,
    timeoutMs: number,
    start: () => Promise<WorkflowHandle>,
  ): Promise<R> {
    const handle = await start();
    this.pending.add(handle);
    try {
      return (await this.temporal.connection.withDeadline(Date.now() + timeoutMs + CLOSE_MARGIN_MS, () =>
        handle.result(),
      )) as R;
    } catch (error) {
      const timedOut = error instanceof WorkflowFailedError && error.cause instanceof TimeoutFailure;
      if (timedOut || isGrpcDeadlineError(error)) {
        throw new WorkerTimeoutError(what, this.taskQueue, timeoutMs);
      }
      throw error;
    } finally {
      this.pending.delete(handle);
    }
  }

  /** Wait at most `timeoutMs` for what only a worker can answer (a query, an update, a close). */
  private async answered<R>(what: string, timeoutMs: number, call: () => Promise<R>): Promise<R> {
    try {
      return await this.temporal.connection.withDeadline(Date.now() + timeoutMs, call);
    } catch (error) {
      if (isGrpcDeadlineError(error) || error instanceof WorkflowUpdateRPCTimeoutOrCancelledError) {
        throw new WorkerTimeoutError(what, this.taskQueue, timeoutMs);
      }
      throw error;
    }
  }

  private async decide(connectorId: string, approved: boolean, input: DecisionInput): Promise<GuardDecision> {
    await this.connectors.get(connectorId); // tenant check
    const handle = this.temporal.workflow.getHandle(this.refreshId(connectorId));
    try {
      return await this.answered(
        `the ${approved ? 'approval' : 'rejection'} of '${connectorId}'`,
        this.answerTimeoutMs,
        () => handle.executeUpdate(approved ? approveUpdate : rejectUpdate, { args: [input] }),
      );
    } catch (error) {
      // Finished, never started, or running but not at the guard: the same answer for the caller.
      if (error instanceof WorkflowNotFoundError || error instanceof WorkflowUpdateFailedError) {
        throw new NothingToApproveError(connectorId);
      }
      throw error;
    }
  }

  private async progressOf(handle: WorkflowHandle<typeof refreshConnector>): Promise<LiveProgress> {
    const [state, description] = await Promise.all([
      this.answered(`the progress query of ${handle.workflowId}`, this.answerTimeoutMs, () =>
        handle.query(progressQuery),
      ),
      handle.describe(),
    ]);
    const pending = description.raw.pendingActivities?.find(
      (a) => a.activityType?.name === 'sendChanges' && a.heartbeatDetails?.payloads?.length,
    );
    const sending = pending
      ? fromPayloadsAtIndex<SendProgress>(defaultPayloadConverter, 0, pending.heartbeatDetails?.payloads)
      : null;
    const failing = description.raw.pendingActivities?.find(
      (a) => (a.attempt ?? 1) > 1 && a.lastFailure?.message,
    );
    const retrying = failing
      ? {
          activity: failing.activityType?.name ?? '?',
          attempt: failing.attempt ?? 0,
          lastFailure: failing.lastFailure!.message!,
        }
      : null;
    return { ...state, status: description.status.name, sending, retrying };
  }

  /** The watcher's settings: options, else the connector's `changeTrigger` policy, else defaults. */
  private async watcherInput(connectorId: string, options: WatchOptions): Promise<WatchInput> {
    const policy = (await this.connectors.get(connectorId)).policy.changeTrigger;
    const maxWaitSeconds = options.maxWaitSeconds ?? policy?.maxWaitSeconds;
    const input: WatchInput = {
      connectorId,
      tenant: this.tenant,
      pollSeconds: options.pollSeconds ?? policy?.pollSeconds ?? WATCH_DEFAULTS.pollSeconds,
      debounceSeconds: options.debounceSeconds ?? policy?.debounceSeconds ?? WATCH_DEFAULTS.debounceSeconds,
      ...(maxWaitSeconds === undefined ? {} : { maxWaitSeconds }),
    };
    const bad = [
      !(input.pollSeconds! >= 1) && 'pollSeconds must be at least 1',
      !(input.debounceSeconds! >= 0) && 'debounceSeconds must be >= 0',
      maxWaitSeconds !== undefined && !(maxWaitSeconds > 0) && 'maxWaitSeconds must be > 0',
    ].filter((problem): problem is string => typeof problem === 'string');
    if (bad.length > 0) throw new RangeError(`watch ${connectorId}: ${bad.join('; ')}`);
    return input;
  }

  private watcherStart(connectorId: string, input: WatchInput) {
    return {
      workflowId: this.watchId(connectorId),
      taskQueue: this.taskQueue,
      args: [input] as [WatchInput],
      typedSearchAttributes: [
        { key: searchAttributes.connectorId, value: connectorId },
        { key: searchAttributes.tenant, value: this.tenant },
      ],
      staticSummary: `refresh connector **${connectorId}** when its dataset changes`,
      priority: refreshPriority(this.tenant, 'live'),
    };
  }

  /** This tenant's refresh workflow of a connector (ids are unique per tenant). */
  private refreshId(connectorId: string): string {
    return refreshWorkflowId(this.tenant, connectorId);
  }

  private watchId(connectorId: string): string {
    return watchWorkflowId(this.tenant, connectorId);
  }
}

/** Connectors and runs are read from the worker in pages of these (activity results stay small). */
const CONNECTORS_PAGE = 500;
const RUNS_PAGE = 100;

/** A refresh asked to stop; see {@link DeltasyncClient.cancel}. */
export interface CancelledRefresh {
  workflowId: string;
  runId: string;
  /**
   * Resolves once the run has stopped (its send committed the call in flight) with its record:
   * what it delivered before it stopped. Null if it stopped before it opened a run record.
   */
  stopped(): Promise<RunSummary | null>;
}

export class NoRunningRefreshError extends Error {
  override name = 'NoRunningRefreshError';
  constructor(readonly connectorId: string) {
    super(`no refresh of '${connectorId}' is running`);
  }
}

/**
 * What only a worker can do (a connector operation, a dry run, a query, an update) was not done
 * within its time limit, although Temporal answered: the workers are gone, stuck or overloaded.
 */
export class WorkerTimeoutError extends Error {
  override name = 'WorkerTimeoutError';
  constructor(
    readonly what: string,
    readonly taskQueue: string,
    readonly timeoutMs: number,
  ) {
    super(
      `${what}: no worker on task queue '${taskQueue}' completed it within ${Math.round(timeoutMs / 1000)} s`,
    );
  }
}

export class NothingToApproveError extends Error {
  override name = 'NothingToApproveError';
  constructor(readonly connectorId: string) {
    super(`no refresh of '${connectorId}' is waiting for approval`);
  }
}

/** The worker's validation errors, raised again as the same error types for the caller. */
function asConnectorError(error: unknown, connectorId: string): unknown {
  let cause: unknown = error;
  while (cause instanceof Error && cause.cause && !(cause instanceof ApplicationFailure)) cause = cause.cause;
  if (!(cause instanceof ApplicationFailure)) return error;
  if (cause.type === 'InvalidConnectorError') {
    return new InvalidConnectorError((cause.details?.[0] as string[] | undefined) ?? [cause.message]);
  }
  if (cause.type === 'UnknownConnectorError') {
    const tenant = /in tenant '([^']+)'/.exec(cause.message)?.[1];
    return new UnknownConnectorError(connectorId, tenant);
  }
  if (cause.type === 'TenantNotServedError') {
    // The worker serves no such tenant in this namespace: nothing of it exists for the caller.
    const asked = cause.details?.[0] as { tenant: string; namespace: string; served: string[] } | undefined;
    if (asked) return new TenantNotServedError(asked.tenant, asked.namespace, asked.served);
  }
  return error;
}

/** Connector management: validated here, saved by a worker (which also checks the dataset). */
export class ConnectorsClient {
  constructor(private readonly client: DeltasyncClient) {}

  /** Validate a definition without saving it; throws InvalidConnectorError naming each bad field. */
  validate(input: unknown): ConnectorDefinition {
    return validateConnector(input);
  }

  /**
   * Validate online, in a worker (which holds the secrets): the tenant's checks (its secrets, its
   * allowlist, its database access to the dataset), then the destination's own `check()`: the
   * credentials work and the list is reachable. Takes a saved connector's id, or a definition
   * (validated here first, never saved). Resolves with `ok` and one line either way; throws
   * InvalidConnectorError for a definition or tenant problem, UnknownConnectorError for an id.
   */
  async validateOnline(connector: string | ConnectorInput): Promise<OnlineCheck> {
    const tenant = this.client.tenant;
    let operation: AdminOperation;
    if (typeof connector === 'string') operation = { kind: 'check', tenant, id: connector };
    else {
      const definition = validateConnector({ ...connector, tenant: connector.tenant ?? tenant });
      if (definition.tenant !== tenant) {
        throw new InvalidConnectorError([
          `tenant: '${definition.tenant}' is not this client's tenant '${tenant}'`,
        ]);
      }
      operation = { kind: 'check', tenant, connector: definition };
    }
    const result = await this.client.admin(operation);
    if (result.kind !== 'checked') throw new Error('unexpected answer');
    return result.check;
  }

  /** Create a connector; fails if the id exists. */
  async create(input: ConnectorInput): Promise<ConnectorDefinition> {
    return this.save(input, 'create');
  }

  /** Replace an existing connector's definition; fails if it does not exist. */
  async update(input: ConnectorInput): Promise<ConnectorDefinition> {
    return this.save(input, 'update');
  }

  /** Create or update. */
  async apply(input: ConnectorInput): Promise<ConnectorDefinition> {
    return this.save(input, 'upsert');
  }

  /** Create or update from a YAML or JSON file. */
  async applyFile(file: string): Promise<ConnectorDefinition> {
    return this.apply(loadConnectorFile(file));
  }

  async get(id: string): Promise<ConnectorDefinition> {
    const result = await this.client.admin({ kind: 'get', tenant: this.client.tenant, id });
    if (result.kind !== 'connector') throw new Error('unexpected answer');
    return result.connector;
  }

  /** Every connector of the tenant, in id order (read from the worker a page at a time). */
  async list(): Promise<ListedConnector[]> {
    const all: ListedConnector[] = [];
    for await (const page of this.pages()) all.push(...page);
    return all;
  }

  /** The tenant's connectors a page at a time, in id order: for tenants with many thousands. */
  async *pages(pageSize = CONNECTORS_PAGE): AsyncGenerator<ListedConnector[]> {
    let afterId: string | undefined;
    for (;;) {
      const result = await this.client.admin({
        kind: 'list',
        tenant: this.client.tenant,
        limit: pageSize,
        ...(afterId === undefined ? {} : { afterId }),
      });
      const page = result.kind === 'connectors' ? result.connectors : [];
      if (page.length > 0) yield page;
      if (page.length < pageSize) return;
      afterId = page[page.length - 1]!.id;
    }
  }

  /**
   * Forget a connector (definition, state, deltalog; runs stay for audit) and delete its
   * schedule. The remote list is left as it is. Refused while a refresh of it runs.
   */
  async delete(id: string): Promise<void> {
    const running = await this.client.progress(id).then(
      (p) => p.status === 'RUNNING',
      () => false,
    );
    if (running)
      throw new Error(`connector '${id}' is being refreshed; cancel or wait for the refresh first`);
    await this.client.admin({ kind: 'delete', tenant: this.client.tenant, id });
    await this.client.schedules.delete(id).catch(() => undefined);
  }

  private async save(input: ConnectorInput, mode: 'create' | 'update' | 'upsert') {
    const connector = validateConnector({ ...input, tenant: input.tenant ?? this.client.tenant });
    if (connector.tenant !== this.client.tenant) {
      throw new InvalidConnectorError([
        `tenant: '${connector.tenant}' is not this client's tenant '${this.client.tenant}'`,
      ]);
    }
    const result = await this.client.admin({ kind: 'save', tenant: this.client.tenant, connector, mode });
    if (result.kind !== 'connector') throw new Error('unexpected answer');
    return result.connector;
  }
}
