import type { Db } from '../db/index';
import { connectorKey, parseConnector, type ConnectorDefinition, type ConnectorInput } from './connector';
import { datasetSignature } from './dataset';

/**
 * Connectors live in our database, keyed by `<tenant>/<id>` (see connectorKey); definitions are
 * validated on the way in and on the way out. Every read names the tenant.
 */

export async function saveConnector(
  db: Db,
  input: ConnectorInput,
  now = Date.now(),
): Promise<ConnectorDefinition> {
  const connector = parseConnector(input);
  const key = connectorKey(connector.tenant, connector.id);
  const row = {
    id: key,
    tenant: connector.tenant,
    destination_type: connector.destination.type,
    definition: JSON.stringify(connector),
    // Connectors of a tenant with one signature share their compare (core/shared-compare.ts).
    dataset_signature: datasetSignature(connector.dataset),
    updated_at: now,
  };
  await db('connectors')
    .insert({ ...row, created_at: now })
    .onConflict('id')
    .merge(row);
  await db('connector_state').insert({ connector_id: key }).onConflict('connector_id').ignore();
  return connector;
}

export async function loadConnector(db: Db, tenant: string, id: string): Promise<ConnectorDefinition> {
  const row = (await db('connectors')
    .where({ id: connectorKey(tenant, id) })
    .first()) as { definition: string } | undefined;
  if (!row) throw new UnknownConnectorError(id, tenant);
  return parseConnector(JSON.parse(row.definition));
}

/** A tenant's connectors, in id order, `limit` at a time after `afterId`. */
/**
 * A connector as listed: its definition, and when the dataset it last delivered in full was read
 * (`last_succeeded_at`: the snapshot of its last run that met the thresholds; null: never). A
 * mark that stops advancing is a connector that stopped delivering.
 */
export type ListedConnector = ConnectorDefinition & { lastSucceededAt: number | null; createdAt: number };

export async function listConnectors(
  db: Db,
  tenant: string,
  page: { afterId?: string; limit?: number } = {},
): Promise<ListedConnector[]> {
  const query = db('connectors')
    .leftJoin('connector_state', 'connector_state.connector_id', 'connectors.id')
    .where('connectors.tenant', tenant)
    .orderBy('connectors.id')
    .select('connectors.definition', 'connectors.created_at', 'connector_state.last_succeeded_at');
  if (page.afterId !== undefined) query.where('connectors.id', '>', connectorKey(tenant, page.afterId));
  if (page.limit !== undefined) query.limit(page.limit);
  const rows = (await query) as { definition: string; created_at: unknown; last_succeeded_at: unknown }[];
  return rows.map((row) => ({
    ...parseConnector(JSON.parse(row.definition)),
    lastSucceededAt: row.last_succeeded_at === null ? null : Number(row.last_succeeded_at),
    createdAt: Number(row.created_at),
  }));
}

/**
 * Forget a connector: its definition, state and deltalog (the remote list is left as it is).
 * Its run history stays for audit.
 */
export async function deleteConnector(db: Db, tenant: string, id: string): Promise<void> {
  const key = connectorKey(tenant, id);
  await db.transaction(async (trx) => {
    await trx('deltalog').where({ connector_id: key }).delete();
    await trx('connector_state').where({ connector_id: key }).delete();
    await trx('connectors').where({ id: key }).delete();
  });
}

export class UnknownConnectorError extends Error {
  override name = 'UnknownConnectorError';
  constructor(
    readonly connectorId: string,
    readonly tenant?: string,
  ) {
    super(`no connector with id '${connectorId}'${tenant ? ` in tenant '${tenant}'` : ''}`);
  }
}
