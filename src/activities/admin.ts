import {
  connectorKey,
  InvalidConnectorError,
  parseConnector,
  type ConnectorDefinition,
  type ConnectorInput,
} from '../connectors/definition';
import {
  deleteConnector,
  listConnectors,
  loadConnector,
  saveConnector,
  UnknownConnectorError,
  type ListedConnector,
} from '../connectors/store';
import { listRuns } from '../core/runs';
import { summarizeRun, type RunSummary } from '../core/summaries';
import { connectorProblems } from '../tenancy';
import { callerTenant, failClearly, type ActivityDependencies } from './support';

/**
 * Connector management, run by the worker on behalf of clients: platform teams only need to
 * reach Temporal, not the database. Every operation acts for the tenant its namespace serves:
 * another tenant's connectors do not exist for it, and its ids are its own (two tenants may both
 * have a `crm`; neither can tell).
 */

export type AdminOperation =
  | { kind: 'save'; tenant: string; connector: ConnectorInput; mode: 'create' | 'update' | 'upsert' }
  | { kind: 'get'; tenant: string; id: string }
  | { kind: 'list'; tenant: string; afterId?: string; limit?: number }
  | { kind: 'delete'; tenant: string; id: string }
  | { kind: 'runs'; tenant: string; id: string; limit: number; beforeRunId?: number };

export type AdminResult =
  | { kind: 'connector'; connector: ConnectorDefinition }
  | { kind: 'connectors'; connectors: ListedConnector[] }
  | { kind: 'deleted'; id: string }
  | { kind: 'runs'; runs: RunSummary[] };

/** Largest page `list` returns: an activity result stays far below Temporal's payload limits. */
export const MAX_LIST_PAGE = 500;

export function createAdminActivities({ db, tenancy }: Pick<ActivityDependencies, 'db' | 'tenancy'>) {
  return {
    async connectorAdmin(op: AdminOperation): Promise<AdminResult> {
      return failClearly(() => run(op));
    },
  };

  async function run(op: AdminOperation): Promise<AdminResult> {
    const tenant = callerTenant(tenancy, op.tenant);
    switch (op.kind) {
      case 'save': {
        const connector = parseConnector({ ...op.connector, tenant: op.connector.tenant ?? tenant.id });
        if (connector.tenant !== tenant.id) {
          throw new InvalidConnectorError([
            `tenant: '${connector.tenant}' is not this client's tenant '${tenant.id}'`,
          ]);
        }
        const exists = await loadConnector(db, tenant.id, connector.id).then(
          () => true,
          () => false,
        );
        if (op.mode === 'create' && exists)
          throw new InvalidConnectorError([`id: connector '${connector.id}' exists already`]);
        if (op.mode === 'update' && !exists) throw new UnknownConnectorError(connector.id, tenant.id);
        const problems = await connectorProblems(tenancy, tenant, connector);
        if (problems.length > 0) throw new InvalidConnectorError(problems);
        return { kind: 'connector', connector: await saveConnector(db, connector) };
      }
      case 'get':
        return { kind: 'connector', connector: await loadConnector(db, tenant.id, op.id) };
      case 'list':
        return {
          kind: 'connectors',
          connectors: await listConnectors(db, tenant.id, {
            afterId: op.afterId,
            limit: Math.min(op.limit ?? MAX_LIST_PAGE, MAX_LIST_PAGE),
          }),
        };
      case 'delete': {
        const connector = await loadConnector(db, tenant.id, op.id);
        await deleteConnector(db, tenant.id, op.id);
        await tenancy.datasets.forget(tenant, connector);
        return { kind: 'deleted', id: op.id };
      }
      case 'runs': {
        await loadConnector(db, tenant.id, op.id);
        const runs = await listRuns(db, connectorKey(tenant.id, op.id), op.limit, op.beforeRunId);
        return { kind: 'runs', runs: await Promise.all(runs.map((run) => summarizeRun(db, run))) };
      }
    }
  }
}
