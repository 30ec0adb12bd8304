import { z } from 'zod';
import { secretName, serviceUrl } from '../kit/index';
import { MAX_MEMBERS_PER_BATCH, MAX_SIMULTANEOUS_CONNECTIONS } from './vendor-limits';

/** The settings of a `mailchimp-audience` destination: all that validating a connector needs. */

export const MAILCHIMP_TYPE = 'mailchimp-audience';

const SETTABLE_STATUS = ['subscribed', 'pending', 'transactional'] as const;

export const mailchimpAudienceConfigSchema = z.object({
  type: z.literal(MAILCHIMP_TYPE),
  /** The audience id (Audience > Settings > Audience name and defaults). */
  listId: z.string().regex(/^[0-9a-z]+$/i, 'listId must be the audience id, e.g. a1b2c3d4e5'),
  /** Name of the secret holding the API key (`…-us6`), never the key itself. */
  apiKeySecret: secretName,
  /** The data centre (`us6`); by default the suffix of the API key. */
  dataCenter: z
    .string()
    .regex(/^[a-z]+\d+$/, 'dataCenter looks like us6')
    .optional(),
  /** Overrides https://{dataCenter}.api.mailchimp.com (a proxy, or the emulator in tests). */
  baseUrl: serviceUrl('baseUrl').optional(),
  /** Dataset attribute → merge tag. Without it, each attribute goes to its upper-cased name. */
  mergeFields: z
    .record(z.string(), z.string().regex(/^[A-Z][A-Z0-9_]*$/, 'merge tags are upper case, e.g. FNAME'))
    .optional(),
  /** The status a contact new to the audience gets. */
  statusIfNew: z.enum(SETTABLE_STATUS).default('subscribed'),
  /**
   * Members per batch call (the destination's recordsPerCall: the engine never hands over more);
   * Mailchimp accepts at most 500 (vendor-limits.ts).
   */
  recordsPerCall: z.number().int().min(1).max(MAX_MEMBERS_PER_BATCH).default(MAX_MEMBERS_PER_BATCH),
  /** Simultaneous connections for this account; Mailchimp allows 10 (vendor-limits.ts). */
  maxConcurrent: z
    .number()
    .int()
    .min(1)
    .max(MAX_SIMULTANEOUS_CONNECTIONS)
    .default(MAX_SIMULTANEOUS_CONNECTIONS),
});

export type MailchimpAudienceConfig = z.output<typeof mailchimpAudienceConfigSchema>;
export type MailchimpAudienceConfigInput = z.input<typeof mailchimpAudienceConfigSchema>;

/** Where the account lives: `baseUrl`, else the data centre from the config or the key's suffix. */
export function mailchimpBaseUrl(
  config: Pick<MailchimpAudienceConfig, 'baseUrl' | 'dataCenter'>,
  apiKey: string,
): string | undefined {
  if (config.baseUrl) return config.baseUrl.replace(/\/+$/, '');
  const dataCenter = config.dataCenter ?? /-([a-z]+\d+)$/.exec(apiKey)?.[1];
  if (!dataCenter) return undefined;
  return `https://${dataCenter}.api.mailchimp.com`;
}
