import type { Client } from '@temporalio/client';
import { DeltasyncClient } from '../client';
import { loadConnector, UnknownConnectorError } from '../connectors/store';
import { changeMarker } from '../core/change-marker';
import type { Db } from '../db';
import { failClearly } from '.';

/**
 * Schedules and change triggers start refreshes through this activity: start the connector's
 * refresh workflow, or attach to the one running. Starts of one connector from any source
 * (schedule, change, code, CLI) thus never run two refreshes at once.
 */
export function createTriggerActivities({
  db,
  temporal,
  taskQueue,
}: {
  db: Db;
  temporal?: Client;
  taskQueue?: string;
}) {
  return {
    async startRefresh(input: { connectorId: string; tenant: string; trigger: string }) {
      if (!temporal)
        throw new Error('this worker was built without a Temporal client for triggered refreshes');
      const client = new DeltasyncClient(temporal, { taskQueue, tenant: input.tenant });
      const handle = await client.startRefresh(input.connectorId, { trigger: input.trigger });
      return { workflowId: handle.workflowId, runId: handle.runId, attached: handle.attached };
    },

    /**
     * The change watcher's poll: the dataset's change marker (a row count and a digest, computed
     * in the database) and whether it differs from the one the watcher saw last. The first check
     * (`previous` null) only sets the baseline.
     */
    async checkChangeMarker(input: {
      connectorId: string;
      tenant: string;
      previous: string | null;
    }): Promise<{ marker: string; changed: boolean }> {
      return failClearly(async () => {
        const connector = await loadConnector(db, input.connectorId);
        if (connector.tenant !== input.tenant)
          throw new UnknownConnectorError(input.connectorId, input.tenant);
        const marker = await changeMarker(
          db,
          connector.dataset,
          connector.policy.changeTrigger?.markerColumn,
        );
        return { marker, changed: input.previous !== null && marker !== input.previous };
      });
    },
  };
}
