import type { Client } from '@temporalio/client';
import { DeltasyncClient } from '../client';

/**
 * Schedules and change triggers start refreshes through this activity: start the connector's
 * refresh workflow, or attach to the one running. Starts of one connector from any source
 * (schedule, change, code, CLI) thus never run two refreshes at once.
 */
export function createTriggerActivities({ temporal, taskQueue }: { temporal?: Client; taskQueue?: string }) {
  return {
    async startRefresh(input: { connectorId: string; tenant: string; trigger: string }) {
      if (!temporal)
        throw new Error('this worker was built without a Temporal client for triggered refreshes');
      const client = new DeltasyncClient(temporal, { taskQueue, tenant: input.tenant });
      const handle = await client.startRefresh(input.connectorId, { trigger: input.trigger });
      return { workflowId: handle.workflowId, runId: handle.runId, attached: handle.attached };
    },
  };
}
