import { Context } from '@temporalio/activity';
import { Client } from '@temporalio/client';
import { loadConnector } from '../core/connector-store';
import { changeMarker } from '../core/change-marker';
import { changeSourceMarker } from '../core/change-tracking';
import type { ConnectorDefinition } from '../core/connector';
import type { TenantPolicy } from '../tenancy';
import { TASK_QUEUE } from '../temporal/names';
import { startOrAttachRefresh } from '../temporal/refresh-starter';
import { callerTenant, failClearly, type ActivityDependencies } from './support';

/**
 * Schedules and change triggers start refreshes through this activity: start the connector's
 * refresh workflow, or attach to the one running, by the same start-or-attach as every other
 * caller (temporal/refresh-starter.ts). Starts of one connector from any source (schedule,
 * change, code, CLI) thus never run two refreshes at once. The refresh starts in the namespace
 * the trigger runs in, for the tenant that namespace serves.
 */
export function createTriggerActivities({
  db,
  tenancy,
  temporal,
  taskQueue,
}: Pick<ActivityDependencies, 'db' | 'tenancy' | 'temporal' | 'taskQueue'>) {
  const clients = new Map<string, Client>();
  const clientIn = (namespace: string) => {
    if (!temporal) throw new Error('this worker was built without a Temporal client for triggered refreshes');
    let client = clients.get(namespace);
    if (!client) {
      client = new Client({ connection: temporal.connection, namespace });
      clients.set(namespace, client);
    }
    return client;
  };

  return {
    async startRefresh(input: { connectorId: string; tenant: string; trigger: string }) {
      return failClearly(async () => {
        const tenant = callerTenant(tenancy, input.tenant);
        await loadConnector(db, tenant.id, input.connectorId); // this tenant's, or not found
        return startOrAttachRefresh(clientIn(Context.current().info.namespace), {
          connectorId: input.connectorId,
          tenant: tenant.id,
          taskQueue: taskQueue ?? TASK_QUEUE,
          trigger: input.trigger,
        });
      });
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
        const tenant = callerTenant(tenancy, input.tenant);
        const connector = await loadConnector(db, tenant.id, input.connectorId);
        // A change source answers from its journal or watermark, without reading the dataset.
        const marker =
          (await changeSourceMarker(db, connector.dataset, input.previous, Date.now())) ??
          (await checksumMarker(tenant, connector));
        return { marker, changed: input.previous !== null && marker !== input.previous };
      });
    },
  };

  /** Without a change source: a count and a checksum of the dataset, read through the tenant's reader. */
  async function checksumMarker(tenant: TenantPolicy, connector: ConnectorDefinition): Promise<string> {
    const reader = await tenancy.datasets.reader(tenant, connector);
    return reader.read((executor) =>
      changeMarker(executor, reader.dataset, connector.policy.changeTrigger?.markerColumn),
    );
  }
}
