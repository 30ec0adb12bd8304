import type { Db } from '../db';
import { parseConnector, type ConnectorDefinition, type ConnectorInput } from './definition';

/** Connectors live in our database; definitions are validated on the way in and on the way out. */

export async function saveConnector(
  db: Db,
  input: ConnectorInput,
  now = Date.now(),
): Promise<ConnectorDefinition> {
  const connector = parseConnector(input);
  const row = {
    id: connector.id,
    tenant: connector.tenant,
    destination_type: connector.destination.type,
    definition: JSON.stringify(connector),
    updated_at: now,
  };
  await db('connectors')
    .insert({ ...row, created_at: now })
    .onConflict('id')
    .merge(row);
  await db('connector_state').insert({ connector_id: connector.id }).onConflict('connector_id').ignore();
  return connector;
}

export async function loadConnector(db: Db, id: string): Promise<ConnectorDefinition> {
  const row = (await db('connectors').where({ id }).first()) as { definition: string } | undefined;
  if (!row) throw new UnknownConnectorError(id);
  return parseConnector(JSON.parse(row.definition));
}

export async function listConnectors(db: Db): Promise<ConnectorDefinition[]> {
  const rows = (await db('connectors').orderBy('id')) as { definition: string }[];
  return rows.map((row) => parseConnector(JSON.parse(row.definition)));
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
