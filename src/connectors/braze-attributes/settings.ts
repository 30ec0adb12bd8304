import { z } from 'zod';
import { secretName, serviceUrl } from '../kit/index';
import { MAX_OBJECTS_PER_REQUEST, RATE_LIMIT } from './vendor-limits';

/** The settings of a `braze-attributes` destination: all that validating a connector needs. */

export const BRAZE_TYPE = 'braze-attributes';

/** Braze's window (3,000 requests per 3 seconds) as the worker's throttle counts it: per second. */
const MAX_CALLS_PER_SECOND = RATE_LIMIT.requests / RATE_LIMIT.windowSeconds;

/** Keys of an attributes object that identify the user or steer the request. */
export const RESERVED_ATTRIBUTES = [
  'external_id',
  'braze_id',
  'user_alias',
  '_update_existing_only',
  'push_token_import',
];

export const brazeAttributesConfigSchema = z.object({
  type: z.literal(BRAZE_TYPE),
  /** The workspace's REST endpoint, e.g. https://rest.iad-01.braze.com (per Braze instance). */
  restEndpoint: serviceUrl('restEndpoint'),
  /** Name of the secret holding the REST API key (needs `users.track`), never the key itself. */
  apiKeySecret: secretName,
  /** Custom attribute marking membership; give every connector its own (in_deltasync_<connector>). */
  membershipAttribute: z
    .string()
    .min(1)
    .max(255)
    .refine((name) => !name.startsWith('$'), 'custom attribute names cannot start with $')
    .refine(
      (name) => !RESERVED_ATTRIBUTES.includes(name),
      'membershipAttribute cannot be an identifier field',
    ),
  /**
   * Attribute objects per request: 75, or 50 on Monthly Active Users CY 24-25 contracts
   * (vendor-limits.ts). It is the destination's recordsPerCall: the engine never hands over a
   * larger batch.
   */
  objectsPerRequest: z.number().int().min(1).max(MAX_OBJECTS_PER_REQUEST).default(MAX_OBJECTS_PER_REQUEST),
  /** /users/track allows 3,000 requests per 3 seconds per workspace (vendor-limits.ts). */
  callsPerSecond: z.number().positive().max(MAX_CALLS_PER_SECOND).default(MAX_CALLS_PER_SECOND),
});

export type BrazeAttributesConfig = z.output<typeof brazeAttributesConfigSchema>;
export type BrazeAttributesConfigInput = z.input<typeof brazeAttributesConfigSchema>;
