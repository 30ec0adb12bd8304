import type { DestinationConfig } from '../core/connector';
import type { Destination, Limits, SecretResolver } from '../core/destination';
import { destinationModule } from './catalog';
import { createDestinationContext, type Throttle } from './kit/module';
import { createThrottle } from './kit/throttle';

/**
 * Builds the destination a connector's config describes. Runs in the worker: secrets are resolved
 * here, among the connector's tenant's secrets only (`secretsOf`), and every destination of the
 * worker shares one throttle per account (accounts of different tenants never share a budget).
 * Where the operator set an account's budget (`budgetOf`, from the tenants policy), it replaces what
 * the connector declares, so every connector of the account is held to the same one.
 */
export type DestinationFactory = (
  config: DestinationConfig,
  options: { tenant: string; listId?: string },
) => Destination;

export function createDestinationFactory(
  secretsOf: (tenant: string) => SecretResolver,
  throttle: Throttle = createThrottle(),
  budgetOf: (tenant: string, account: string) => Partial<Limits> | undefined = () => undefined,
): DestinationFactory {
  return (config, options) => {
    const module = destinationModule(config.type);
    if (!module) throw new Error(`unknown destination type '${config.type}'`);
    const context = createDestinationContext({
      secrets: secretsOf(options.tenant),
      throttle: (account, limits, call) =>
        throttle(`${options.tenant}|${account}`, { ...limits, ...budgetOf(options.tenant, account) }, call),
      listId: options.listId,
    });
    return module.create(module.configSchema.parse(config), context);
  };
}
