import { httpTarget } from '../kit/index';
import { defineDestination } from '../kit/module';
import { createBrazeAttributesDestination } from './destination';
import { BRAZE_TYPE, brazeAttributesConfigSchema } from './settings';

/**
 * The `braze-attributes` destination module: users flagged by a membership attribute through
 * Braze's /users/track (destination.ts), its settings (settings.ts) and its emulator (emulator.ts).
 */

export { createBrazeAttributesDestination } from './destination';
export {
  BRAZE_TYPE,
  brazeAttributesConfigSchema,
  type BrazeAttributesConfig,
  type BrazeAttributesConfigInput,
} from './settings';

export const brazeAttributesDestination = defineDestination({
  type: BRAZE_TYPE,
  configSchema: brazeAttributesConfigSchema,
  create: (config, context) => createBrazeAttributesDestination(config, context),
  targets: (config) => [httpTarget('destination.restEndpoint', config.restEndpoint)],
});
