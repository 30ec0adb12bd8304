import { z } from 'zod';
import { secretName } from '../kit/index';

/** The settings of a `redis-set` destination: all that validating a connector needs. */

export const REDIS_SET_TYPE = 'redis-set';

const maxMembersPerCommand = 100_000;

export const redisSetConfigSchema = z
  .object({
    type: z.literal(REDIS_SET_TYPE),
    /** Name of a secret holding the redis:// or rediss:// URL (use it whenever there is a password). */
    urlSecret: secretName.optional(),
    /** The URL itself, allowed only without a password (e.g. redis://127.0.0.1:6379/0). */
    url: z
      .string()
      .regex(/^rediss?:\/\//, 'url must start with redis:// or rediss://')
      .refine((url) => !hasPassword(url), {
        message: 'url must not contain a password: store the URL in a secret and name it in urlSecret',
      })
      .optional(),
    /** The set's key. Build keys `${key}:build:…` and the marker `${key}:swapped` sit next to it. */
    key: z.string().min(1).max(512),
    /** Members per SADD/SREM command: the destination's limit, so the engine never hands over more. */
    recordsPerCall: z.number().int().min(1).max(maxMembersPerCommand).default(10_000),
  })
  .refine((config) => (config.url === undefined) !== (config.urlSecret === undefined), {
    message: 'give exactly one of url (no password) or urlSecret (name of a secret holding the URL)',
    path: ['url'],
  });

export type RedisSetConfig = z.output<typeof redisSetConfigSchema>;
export type RedisSetConfigInput = z.input<typeof redisSetConfigSchema>;

function hasPassword(url: string): boolean {
  try {
    return new URL(url).password !== '';
  } catch {
    return false;
  }
}

export function buildKeyPrefix(key: string): string {
  return `${key}:build:`;
}

export function swapMarkerKey(key: string): string {
  return `${key}:swapped`;
}
