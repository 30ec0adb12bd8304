import type { DestinationConfig } from './definition';
import { createHttpListDestination } from './http-list';
import { createSecretResolver } from './secrets';
import { createSqlTableDestination } from './sql-table';
import type { Destination, SecretResolver } from './types';

/** Builds the destination a connector's config describes; secrets are resolved here, in the worker. */
export type DestinationFactory = (config: DestinationConfig) => Destination;

export function createDestinationFactory(
  secrets: SecretResolver = createSecretResolver(),
): DestinationFactory {
  return (config) => {
    switch (config.type) {
      case 'http-list':
        return createHttpListDestination(config, secrets);
      case 'sql-table':
        return createSqlTableDestination(config, secrets);
    }
  };
}
