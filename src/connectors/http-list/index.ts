import { httpTarget } from '../kit/index';
import { defineDestination } from '../kit/module';
import { createHttpListDestination } from './destination';
import { HTTP_LIST_TYPE, httpListConfigSchema } from './settings';

/**
 * The `http-list` destination module: a list behind a small JSON API (destination.ts), its
 * settings (settings.ts) and its emulator (emulator.ts).
 */

export { createHttpListDestination, HTTP_LIST_ENDPOINTS } from './destination';
export {
  HTTP_LIST_TYPE,
  httpListConfigSchema,
  httpListOperations,
  type HttpListConfig,
  type HttpListConfigInput,
  type HttpListOperation,
} from './settings';

export const httpListDestination = defineDestination({
  type: HTTP_LIST_TYPE,
  configSchema: httpListConfigSchema,
  create: (config, context) => createHttpListDestination(config, context),
  targets: (config) => [httpTarget('destination.baseUrl', config.baseUrl)],
});
