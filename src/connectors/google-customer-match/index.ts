import { httpTarget } from '../kit/index';
import { defineDestination } from '../kit/module';
import { createGoogleCustomerMatchDestination } from './destination';
import { GOOGLE_CUSTOMER_MATCH_TYPE, googleCustomerMatchConfigSchema } from './settings';

/**
 * The `google-customer-match` destination module: a Customer Match user list written by offline
 * user data jobs (destination.ts, operations.ts, ads-api.ts), its settings (settings.ts) and its
 * emulator (emulator.ts).
 */

export {
  createGoogleCustomerMatchDestination,
  CUSTOMER_MATCH_ENDPOINTS,
  externalIdFor,
  type CustomerMatchDestination,
  type CustomerMatchEndpoint,
} from './destination';
export {
  addressIdentifier,
  chunksByIdentifiers,
  identifierFor,
  type JobOperation,
  type JobStatus,
  type UserIdentifier,
} from './operations';
export {
  GOOGLE_ADS_BASE_URL,
  GOOGLE_CUSTOMER_MATCH_TYPE,
  googleCustomerMatchConfigSchema,
  type GoogleCustomerMatchConfig,
  type GoogleCustomerMatchConfigInput,
} from './settings';

export const googleCustomerMatchDestination = defineDestination({
  type: GOOGLE_CUSTOMER_MATCH_TYPE,
  configSchema: googleCustomerMatchConfigSchema,
  create: (config, context) => createGoogleCustomerMatchDestination(config, context),
  targets: (config) => [httpTarget('destination.baseUrl', config.baseUrl)],
});
