import type { Db } from '../db';
import {
  InvalidConnectorError,
  parseConnector,
  type ConnectorDefinition,
  type ConnectorInput,
} from '../connectors/definition';
import { listConnectors, loadConnector, saveConnector, UnknownConnectorError } from '../connectors/store';
import { keyColumn, sourceFrom } from '../core/dataset';
import { listRuns } from '../core/runs';
import { failClearly, summarizeRun, type RunSummary } from '.';

/**
 * Connector management, run by the worker on behalf of clients: platform teams only need to
 * reach Temporal, not the database. Every operation is scoped to one tenant.
 */

export type AdminOperation =
  | { kind: 'save'; tenant: string; connector: ConnectorInput; mode: 'create' | 'update' | 'upsert' }
  | { kind: 'get'; tenant: string; id: string }
  | { kind: 'list'; tenant: string }
  | { kind: 'delete'; tenant: string; id: string }
  | { kind: 'runs'; tenant: string; id: string; limit: number };

export type AdminResult =
  | { kind: 'connector'; connector: ConnectorDefinition }
  | { kind: 'connectors'; connectors: ConnectorDefinition[] }
  | { kind: 'deleted'; id: string }
  | { kind: 'runs'; runs: RunSummary[] };

export function createAdminActivities({ db }: { db: Db }) {
  /** A connector of this tenant; another tenant's connector does not exist for this caller. */
  async function ownConnector(tenant: string, id: string): Promise<ConnectorDefinition> {
    const connector = await loadConnector(db, id);
    if (connector.tenant !== tenant) throw new UnknownConnectorError(id, tenant);
    return connector;
  }

  return {
    async connectorAdmin(op: AdminOperation): Promise<AdminResult> {
      return failClearly(() => run(op));
    },
  };

  async function run(op: AdminOperation): Promise<AdminResult> {
    switch (op.kind) {
      case 'save': {
        const connector = parseConnector({ ...op.connector, tenant: op.connector.tenant ?? op.tenant });
        if (connector.tenant !== op.tenant) {
          throw new InvalidConnectorError([
            `tenant: '${connector.tenant}' is not this client's tenant '${op.tenant}'`,
          ]);
        }
        const existing = await loadConnector(db, connector.id).catch(() => undefined);
        if (existing && existing.tenant !== op.tenant) {
          throw new InvalidConnectorError([`id: '${connector.id}' is taken by another tenant`]);
        }
        if (op.mode === 'create' && existing)
          throw new InvalidConnectorError([`id: connector '${connector.id}' exists already`]);
        if (op.mode === 'update' && !existing) throw new UnknownConnectorError(connector.id, op.tenant);
        await checkDataset(db, connector);
        return { kind: 'connector', connector: await saveConnector(db, connector) };
      }
      case 'get':
        return { kind: 'connector', connector: await ownConnector(op.tenant, op.id) };
      case 'list':
        return {
          kind: 'connectors',
          connectors: (await listConnectors(db)).filter((c) => c.tenant === op.tenant),
        };
      case 'delete': {
        await ownConnector(op.tenant, op.id);
        await deleteConnector(db, op.id);
        return { kind: 'deleted', id: op.id };
      }
      case 'runs': {
        await ownConnector(op.tenant, op.id);
        const runs = await listRuns(db, op.id, op.limit);
        return { kind: 'runs', runs: await Promise.all(runs.map((run) => summarizeRun(db, run))) };
      }
    }
  }
}

/** The dataset must be readable with the declared key and attribute columns. */
async function checkDataset(db: Db, connector: ConnectorDefinition): Promise<void> {
  const columns = [connector.dataset.key, ...connector.dataset.attributes];
  const source = sourceFrom(connector.dataset);
  const key = keyColumn(connector.dataset);
  try {
    await db.raw(
      `SELECT ${columns.map(() => '??').join(', ')} FROM ${source.sql} WHERE ${key.sql} IS NULL AND 1 = 0`,
      [...columns.map((c) => `src.${c}`), ...source.bindings, ...key.bindings],
    );
  } catch (error) {
    const reason = error instanceof Error ? error.message.split('\n')[0] : String(error);
    throw new InvalidConnectorError([`dataset: cannot read it in the database: ${reason}`]);
  }
}

/**
 * Forget a connector: its definition, state and deltalog (the remote list is left as it is).
 * Its run history stays for audit.
 */
async function deleteConnector(db: Db, id: string): Promise<void> {
  await db.transaction(async (trx) => {
    await trx('deltalog').where({ connector_id: id }).delete();
    await trx('connector_state').where({ connector_id: id }).delete();
    await trx('connectors').where({ id }).delete();
  });
}
