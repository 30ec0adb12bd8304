import type { z } from 'zod';
import type { Destination, DestinationContext, SecretResolver, Target } from './types';

/**
 * Everything deltasync needs to know about a destination type: its config schema (validated when
 * a connector is saved) and how to build it in the worker. Adding a destination = writing one of
 * these and listing it in catalog.ts (see docs/connectors.md).
 */
export interface DestinationModule<Schema extends z.ZodObject<{ type: z.ZodLiteral<string> }>> {
  type: z.output<Schema>['type'];
  /** One line for docs and `deltasync destinations`: the API class it represents. */
  description: string;
  configSchema: Schema;
  create(config: z.output<Schema>, context: DestinationContext): Destination;
  /**
   * Everything a connector with this config writes to (origins, directories, tables, keys), for
   * the tenants policy. `secrets` sees only the connector's tenant's secrets; a target that lives
   * in a secret (a database URL) is read from it.
   */
  targets(config: z.output<Schema>, secrets: SecretResolver): Target[];
}

export function defineDestination<Schema extends z.ZodObject<{ type: z.ZodLiteral<string> }>>(
  module: DestinationModule<Schema>,
): DestinationModule<Schema> {
  return module;
}
