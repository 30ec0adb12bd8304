import { httpTarget } from '../kit/index';
import { defineDestination } from '../kit/module';
import { createHubspotListDestination } from './destination';
import { HUBSPOT_TYPE, hubspotListConfigSchema } from './settings';

/**
 * The `hubspot-list` destination module: a MANUAL or SNAPSHOT list of HubSpot's CRM Lists v3 API
 * (destination.ts), its settings (settings.ts) and its emulator (emulator.ts).
 */

export { createHubspotListDestination, HUBSPOT_ENDPOINTS } from './destination';
export {
  HUBSPOT_TYPE,
  hubspotListConfigSchema,
  type HubspotListConfig,
  type HubspotListConfigInput,
} from './settings';

export const hubspotListDestination = defineDestination({
  type: HUBSPOT_TYPE,
  configSchema: hubspotListConfigSchema,
  create: (config, context) => createHubspotListDestination(config, context),
  targets: (config) => [httpTarget('destination.baseUrl', config.baseUrl)],
});
