import type { SecretResolver, Target } from '../../core/destination';
import { resolveSecret } from '../kit/index';
import { defineDestination } from '../kit/module';
import { createRedisSetDestination } from './destination';
import { REDIS_SET_TYPE, redisSetConfigSchema, type RedisSetConfig } from './settings';

/**
 * The `redis-set` destination module: one Redis set (destination.ts), its settings (settings.ts)
 * and its emulator (emulator.ts: a fault-injecting proxy in front of a real Redis).
 */

export { createRedisSetDestination, REDIS_SET_ENDPOINTS } from './destination';
export {
  buildKeyPrefix,
  REDIS_SET_TYPE,
  redisSetConfigSchema,
  swapMarkerKey,
  type RedisSetConfig,
  type RedisSetConfigInput,
} from './settings';

export const redisSetDestination = defineDestination({
  type: REDIS_SET_TYPE,
  configSchema: redisSetConfigSchema,
  create: (config, context) => createRedisSetDestination(config, context),
  targets: (config, secrets) => [redisTarget(config, secrets)],
});

/** The set and the keys beside it (`<key>:build:…`, `<key>:swapped`), for the tenants policy. */
function redisTarget(config: RedisSetConfig, secrets: SecretResolver): Target {
  const url = new URL(config.url ?? resolveSecret(secrets, config.urlSecret!, 'redis-set: urlSecret'));
  return {
    kind: 'redis',
    field: 'destination.key',
    host: url.hostname,
    port: Number(url.port || 6379),
    db: Number(url.pathname.replace(/^\//, '') || 0),
    keys: [config.key],
  };
}
