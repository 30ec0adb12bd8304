import { z } from 'zod';
import { pathSegment, secretName, serviceUrl } from '../kit/index';
import { KLAVIYO_REVISION, PROFILES_PER_IMPORT_JOB, RATE_LIMITS } from './vendor-limits';

/** The settings of a `klaviyo-list` destination: all that validating a connector needs. */

export const KLAVIYO_TYPE = 'klaviyo-list';

export const klaviyoListConfigSchema = z.object({
  type: z.literal(KLAVIYO_TYPE),
  /** The list's id (six characters, e.g. `Y6nRLr`), from the list's URL or GET /api/lists. */
  listId: pathSegment,
  /** Name of the secret holding the private API key (`pk_…`), never the key itself. */
  apiKeySecret: secretName,
  baseUrl: serviceUrl('baseUrl').default('https://a.klaviyo.com'),
  /**
   * API revision sent in the `revision` header; the contract this destination was written for,
   * and the revision of the OpenAPI document the emulator checks against (vendor-limits.ts).
   */
  revision: z
    .string()
    .regex(/^\d{4}-\d{2}-\d{2}(\.[a-z0-9]+)?$/, 'revision must look like 2026-04-15')
    .default(KLAVIYO_REVISION),
  /**
   * Profiles per bulk import job (the destination's recordsPerCall: the engine never hands over
   * more): Klaviyo takes up to 10,000.
   */
  profilesPerJob: z.number().int().min(1).max(PROFILES_PER_IMPORT_JOB).default(PROFILES_PER_IMPORT_JOB),
  /**
   * Write calls per second (bulk imports, job status, removals: Klaviyo's 10/s burst, 150/min
   * steady per endpoint). Lower it when other integrations share the account's quota.
   */
  callsPerSecond: z
    .number()
    .positive()
    .max(RATE_LIMITS.bulk_import_profiles.burst)
    .default(RATE_LIMITS.bulk_import_profiles.steady / 60),
  /**
   * How long to wait for one bulk import job. Keep it under the send activity's 2-minute
   * heartbeat timeout: the engine heartbeats between pages, not while a page's job runs.
   */
  jobTimeoutSeconds: z.number().positive().max(3600).default(90),
});

export type KlaviyoListConfig = z.output<typeof klaviyoListConfigSchema>;
export type KlaviyoListConfigInput = z.input<typeof klaviyoListConfigSchema>;
