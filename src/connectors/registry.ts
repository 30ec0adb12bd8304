import { destinationModules } from './catalog';
import type { DestinationConfig } from './definition';
import { createSecretResolver } from './secrets';
import { createThrottle } from './throttle';
import type { Destination, DestinationContext, SecretResolver, Throttle } from './types';

/**
 * Builds the destination a connector's config describes. Runs in the worker: secrets are
 * resolved here, and every destination of the worker shares one throttle per account.
 */
export type DestinationFactory = (config: DestinationConfig, options?: { listId?: string }) => Destination;

export function createDestinationFactory(
  secrets: SecretResolver = createSecretResolver(),
  throttle: Throttle = createThrottle(),
): DestinationFactory {
  return (config, options = {}) => {
    const context: DestinationContext = { secrets, throttle, listId: options.listId };
    const module = destinationModules.find((m) => m.type === config.type);
    if (!module) throw new Error(`unknown destination type '${config.type}'`);
    // The schema that validated `config` is this module's, so the config has its shape.
    return module.create(config as never, context);
  };
}
