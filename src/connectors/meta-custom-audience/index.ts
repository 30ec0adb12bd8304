import { httpTarget } from '../kit/index';
import { defineDestination } from '../kit/module';
import { createMetaCustomAudienceDestination } from './destination';
import { META_TYPE, metaCustomAudienceConfigSchema } from './settings';

/**
 * The `meta-custom-audience` destination module: a Meta Custom Audience written through the
 * Marketing API (destination.ts, graph-api.ts, hashing.ts), its settings (settings.ts) and its
 * emulator (emulator.ts).
 */

export {
  createMetaCustomAudienceDestination,
  parseListId,
  replaceSessionId,
  type MetaAudienceDestination,
  type MetaEndpoint,
} from './destination';
export { metaHash, metaNormalizers } from './hashing';
export {
  META_TYPE,
  metaCustomAudienceConfigSchema,
  metaIdentifierKeys,
  type MetaCustomAudienceConfig,
  type MetaCustomAudienceConfigInput,
  type MetaIdentifierKey,
} from './settings';

export const metaCustomAudienceDestination = defineDestination({
  type: META_TYPE,
  configSchema: metaCustomAudienceConfigSchema,
  create: (config, context) => createMetaCustomAudienceDestination(config, context),
  targets: (config) => [httpTarget('destination.graphUrl', config.graphUrl)],
});
