import { destinationModules } from './catalog';
import type { DestinationConfig } from './definition';
import { createThrottle } from './throttle';
import type { Destination, DestinationContext, SecretResolver, Throttle } from './types';

/**
 * Builds the destination a connector's config describes. Runs in the worker: secrets are resolved
 * here, among the connector's tenant's secrets only (`secretsOf`), and every destination of the
 * worker shares one throttle per account (accounts of different tenants never share a budget).
 */
export type DestinationFactory = (
  config: DestinationConfig,
  options: { tenant: string; listId?: string },
) => Destination;

export function createDestinationFactory(
  secretsOf: (tenant: string) => SecretResolver,
  throttle: Throttle = createThrottle(),
): DestinationFactory {
  return (config, options) => {
    const context: DestinationContext = {
      secrets: secretsOf(options.tenant),
      throttle: (account, limits, call) => throttle(`${options.tenant}|${account}`, limits, call),
      listId: options.listId,
    };
    const module = destinationModules.find((m) => m.type === config.type);
    if (!module) throw new Error(`unknown destination type '${config.type}'`);
    // The schema that validated `config` is this module's, so the config has its shape.
    return module.create(config as never, context);
  };
}
