import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { StrategyChoice } from '../core/plan';
import { refreshPriority, urgencyOf, type RefreshUrgency } from './priority';
import { REFRESH_WORKFLOW, refreshWorkflowId, searchAttributes, type RefreshInput } from './names';

/**
 * Start a connector's refresh, or attach to the one running: the one place every start goes
 * through (the client, the CLI, schedules and change triggers). One workflow id per connector,
 * started with `USE_EXISTING`, means two callers never run two refreshes of one list at once.
 * The workflow is started by its type's name, so nothing here imports workflow code.
 */

export interface RefreshStart {
  connectorId: string;
  /** The connector's tenant (connector ids are unique per tenant). */
  tenant: string;
  /** The task queue the tenant's workers poll. */
  taskQueue: string;
  /** Force a strategy for this run; otherwise the connector's policy. */
  strategy?: StrategyChoice;
  /** Recorded on the run: `manual`, `schedule`, `change`, `cli`, … */
  trigger: string;
  /** Its place in the task queue; default: from the trigger (see priority.ts). */
  urgency?: RefreshUrgency;
}

export interface StartedRefresh {
  workflowId: string;
  /** The run started, or the running one attached to. */
  runId: string;
  /** True when a refresh of this connector was already running and this start joined it. */
  attached: boolean;
}

/** Start the connector's refresh workflow in `temporal`'s namespace, or attach to the running one. */
export async function startOrAttachRefresh(temporal: Client, start: RefreshStart): Promise<StartedRefresh> {
  const workflowId = refreshWorkflowId(start.tenant, start.connectorId);
  const wasRunning = await isRunning(temporal, workflowId);
  const input: RefreshInput = {
    connectorId: start.connectorId,
    strategy: start.strategy,
    trigger: start.trigger,
    tenant: start.tenant,
  };
  const handle = await temporal.workflow.start(REFRESH_WORKFLOW, {
    workflowId,
    taskQueue: start.taskQueue,
    args: [input],
    workflowIdConflictPolicy: 'USE_EXISTING',
    typedSearchAttributes: [
      { key: searchAttributes.connectorId, value: start.connectorId },
      { key: searchAttributes.tenant, value: start.tenant },
    ],
    staticSummary: `refresh connector **${start.connectorId}**`,
    priority: refreshPriority(start.tenant, start.urgency ?? urgencyOf(start.trigger)),
  });
  return { workflowId, runId: handle.firstExecutionRunId, attached: wasRunning };
}

/** Whether a workflow of this id is running now. */
export async function isRunning(temporal: Client, workflowId: string): Promise<boolean> {
  try {
    const description = await temporal.workflow.getHandle(workflowId).describe();
    return description.status.name === 'RUNNING';
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return false;
    throw error;
  }
}
