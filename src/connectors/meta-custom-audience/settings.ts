import { z } from 'zod';
import { secretName, serviceUrl } from '../kit/index';
import { MAX_USERS_PER_CALL } from './vendor-limits';

/** The settings of a `meta-custom-audience` destination: all that validating a connector needs. */

export const META_TYPE = 'meta-custom-audience';

/** Multi-key schema columns this destination can fill from attributes (Meta's names). */
export const metaIdentifierKeys = [
  'EMAIL',
  'PHONE',
  'FN',
  'LN',
  'FI',
  'GEN',
  'DOBY',
  'DOBM',
  'DOBD',
  'CT',
  'ST',
  'ZIP',
  'COUNTRY',
] as const;
export type MetaIdentifierKey = (typeof metaIdentifierKeys)[number];

const columnName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_$.]*$/, 'must be an attribute name of the dataset (a plain identifier)');

export const metaCustomAudienceConfigSchema = z
  .object({
    type: z.literal(META_TYPE),
    /** Graph API root; only tests and proxies change it. */
    graphUrl: serviceUrl('graphUrl').default('https://graph.facebook.com'),
    apiVersion: z
      .string()
      .regex(/^v\d+\.\d+$/, 'apiVersion looks like v25.0')
      .default('v25.0'),
    /** The ad account that owns the audience; its rate budget is shared by all its audiences. */
    adAccountId: z.string().regex(/^act_\d+$/, 'adAccountId looks like act_1234567890'),
    audienceId: z.string().regex(/^\d+$/, 'audienceId is the numeric id of the Custom Audience'),
    /** Name of the secret holding a (system-user) access token with ads_management. */
    accessTokenSecret: secretName,
    /** What the dataset key is. */
    keyType: z.enum(['email', 'phone']).default('email'),
    /** Country for phone numbers written without a country code (ISO 3166-1 alpha-2, e.g. DE). */
    defaultCountry: z
      .string()
      .regex(/^[A-Z]{2}$/, 'defaultCountry is an ISO 3166-1 alpha-2 code such as DE')
      .optional(),
    /** Extra identifier columns, Meta key → attribute name, e.g. { PHONE: 'phone', FN: 'first_name' }. */
    attributeMap: z.partialRecord(z.enum(metaIdentifierKeys), columnName).default({}),
    /** Meta accepts at most 10,000 people per call (vendor-limits.ts): one batch is one call. */
    recordsPerCall: z.number().int().min(1).max(MAX_USERS_PER_CALL).default(MAX_USERS_PER_CALL),
    callsPerSecond: z.number().positive().optional(),
    maxConcurrent: z.number().int().positive().optional(),
  })
  .refine((c) => c.attributeMap[primaryKeyOf(c.keyType)] === undefined, {
    message: 'attributeMap must not map the key column itself (the dataset key is already that identifier)',
    path: ['attributeMap'],
  });

export type MetaCustomAudienceConfig = z.output<typeof metaCustomAudienceConfigSchema>;
export type MetaCustomAudienceConfigInput = z.input<typeof metaCustomAudienceConfigSchema>;

/** The Meta key the dataset key is. */
export function primaryKeyOf(keyType: 'email' | 'phone'): MetaIdentifierKey {
  return keyType === 'email' ? 'EMAIL' : 'PHONE';
}
