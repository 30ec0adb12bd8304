import { Client, Connection, WorkflowNotFoundError, type WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter, fromPayloadsAtIndex } from '@temporalio/common';
import type { DryRunPlan, RunSummary } from '../activities';
import type { StrategyChoice } from '../core/plan';
import type { SendProgress } from '../core/sender';
import {
  progressQuery,
  type planConnector,
  type RefreshProgress,
  type refreshConnector,
} from '../workflows/refresh';
import { refreshWorkflowId, searchAttributes, TASK_QUEUE } from '../workflows/shared';

export type { DryRunPlan, RunSummary, RefreshProgress, SendProgress };

export interface RefreshOptions {
  /** Force a strategy for this run (`diff`, `full`, `truncate`); default: the connector's policy. */
  strategy?: StrategyChoice;
  /** Recorded on the run: `manual`, `schedule`, `change`, or your own label. */
  trigger?: string;
}

/** Live progress: the workflow's phase and plan, plus the running send's last heartbeat. */
export interface LiveProgress extends RefreshProgress {
  status: string;
  /** Counters of the send phase in flight, from its heartbeat (null between phases). */
  sending: SendProgress | null;
}

export interface RefreshHandle {
  workflowId: string;
  runId: string;
  /** True when a refresh of this connector was already running and this call joined it. */
  attached: boolean;
  result(): Promise<RunSummary>;
  progress(): Promise<LiveProgress>;
}

/**
 * The typed entry point for platform teams: start or attach to a connector's refresh, follow its
 * progress, await its result.
 *
 * @example
 * const client = await DeltasyncClient.connect({ address: 'localhost:7233' });
 * const run = await client.startRefresh('crm-customers');
 * console.log(await run.progress());
 * const summary = await run.result(); // { status: 'succeeded', additions: 120, ... }
 */
export class DeltasyncClient {
  constructor(
    readonly temporal: Client,
    readonly taskQueue: string = TASK_QUEUE,
  ) {}

  static async connect(
    options: { address?: string; namespace?: string; taskQueue?: string } = {},
  ): Promise<DeltasyncClient> {
    const connection = await Connection.connect({
      address: options.address ?? process.env.TEMPORAL_ADDRESS ?? 'localhost:7233',
    });
    const client = new Client({ connection, namespace: options.namespace ?? process.env.TEMPORAL_NAMESPACE });
    return new DeltasyncClient(client, options.taskQueue);
  }

  /**
   * Start a refresh, or attach to the one already running for this connector: one workflow id per
   * connector means two callers never run two refreshes of one list at once.
   */
  async startRefresh(connectorId: string, options: RefreshOptions = {}): Promise<RefreshHandle> {
    const workflowId = refreshWorkflowId(connectorId);
    const wasRunning = await this.isRunning(workflowId);
    const handle = await this.temporal.workflow.start<typeof refreshConnector>('refreshConnector', {
      workflowId,
      taskQueue: this.taskQueue,
      args: [{ connectorId, strategy: options.strategy, trigger: options.trigger ?? 'manual' }],
      workflowIdConflictPolicy: 'USE_EXISTING',
      typedSearchAttributes: [{ key: searchAttributes.connectorId, value: connectorId }],
      staticSummary: `refresh connector **${connectorId}**`,
    });
    const runId = handle.firstExecutionRunId;
    const pinned = this.temporal.workflow.getHandle<typeof refreshConnector>(workflowId, runId);
    return {
      workflowId,
      runId,
      attached: wasRunning,
      result: () => pinned.result(),
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
    return this.temporal.workflow.execute<typeof planConnector>('planConnector', {
      workflowId: `deltasync-plan-${connectorId}-${Date.now().toString(36)}`,
      taskQueue: this.taskQueue,
      args: [{ connectorId, strategy: options.strategy }],
      typedSearchAttributes: [{ key: searchAttributes.connectorId, value: connectorId }],
      staticSummary: `dry-run plan for **${connectorId}**`,
    });
  }

  /** Progress of the connector's latest refresh (running or finished). */
  async progress(connectorId: string): Promise<LiveProgress> {
    return this.progressOf(this.temporal.workflow.getHandle(refreshWorkflowId(connectorId)));
  }

  private async progressOf(handle: WorkflowHandle<typeof refreshConnector>): Promise<LiveProgress> {
    const [state, description] = await Promise.all([handle.query(progressQuery), handle.describe()]);
    const pending = description.raw.pendingActivities?.find(
      (a) => a.activityType?.name === 'sendChanges' && a.heartbeatDetails?.payloads?.length,
    );
    const sending = pending
      ? fromPayloadsAtIndex<SendProgress>(defaultPayloadConverter, 0, pending.heartbeatDetails?.payloads)
      : null;
    return { ...state, status: description.status.name, sending };
  }

  private async isRunning(workflowId: string): Promise<boolean> {
    try {
      const description = await this.temporal.workflow.getHandle(workflowId).describe();
      return description.status.name === 'RUNNING';
    } catch (error) {
      if (error instanceof WorkflowNotFoundError) return false;
      throw error;
    }
  }
}
