import type { Client } from '@temporalio/client';
import {
  ALERT_WATCHDOG_WORKFLOW,
  alertWatchdogWorkflowId,
  searchAttributes,
  type AlertWatchdogInput,
} from './names';

/**
 * Start the tenant's alert watchdog, or leave the running one be (`USE_EXISTING`): every worker
 * service calls this for the tenants it serves when it starts, and one watchdog per tenant runs.
 * To change a running watchdog's interval, terminate it (`temporal workflow terminate --workflow-id
 * deltasync-alert-watchdog@<tenant>`): the next worker to start starts it with its own.
 */
export async function ensureAlertWatchdog(
  temporal: Client,
  start: { tenant: string; everySeconds: number; taskQueue: string; sweepsPerRun?: number },
): Promise<{ workflowId: string; runId: string; taskQueue: string }> {
  const input: AlertWatchdogInput = {
    tenant: start.tenant,
    everySeconds: start.everySeconds,
    ...(start.sweepsPerRun === undefined ? {} : { sweepsPerRun: start.sweepsPerRun }),
  };
  const workflowId = alertWatchdogWorkflowId(start.tenant);
  const handle = await temporal.workflow.start(ALERT_WATCHDOG_WORKFLOW, {
    workflowId,
    taskQueue: start.taskQueue,
    args: [input],
    workflowIdConflictPolicy: 'USE_EXISTING',
    typedSearchAttributes: [{ key: searchAttributes.tenant, value: start.tenant }],
    staticSummary: `alert watchdog of tenant **${start.tenant}**: every ${start.everySeconds} s`,
  });
  // A watchdog already running may poll another task queue (workers moved to a new one).
  const { taskQueue } = await handle.describe();
  return { workflowId, runId: handle.firstExecutionRunId, taskQueue };
}
