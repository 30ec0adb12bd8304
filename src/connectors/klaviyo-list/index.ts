import { httpTarget } from '../kit/index';
import { defineDestination } from '../kit/module';
import { createKlaviyoListDestination } from './destination';
import { KLAVIYO_TYPE, klaviyoListConfigSchema } from './settings';

/**
 * The `klaviyo-list` destination module: a Klaviyo list of profiles keyed by e-mail
 * (destination.ts, over the API calls of api.ts), its settings (settings.ts) and its emulator
 * (emulator.ts).
 */

export {
  createKlaviyoListDestination,
  KLAVIYO_PROFILE_FIELDS,
  memberBytesPerJob,
  PROFILE_OVERHEAD_BYTES,
  type KlaviyoListOptions,
} from './destination';
export {
  KLAVIYO_TYPE,
  klaviyoListConfigSchema,
  type KlaviyoListConfig,
  type KlaviyoListConfigInput,
} from './settings';

export const klaviyoListDestination = defineDestination({
  type: KLAVIYO_TYPE,
  configSchema: klaviyoListConfigSchema,
  create: (config, context) => createKlaviyoListDestination(config, context),
  targets: (config) => [httpTarget('destination.baseUrl', config.baseUrl)],
});
