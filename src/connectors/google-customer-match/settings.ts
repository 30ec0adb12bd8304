import { z } from 'zod';
import { secretName, serviceUrl } from '../kit/index';
import { GOOGLE_ADS_API_VERSION, MAX_IDENTIFIERS_PER_REQUEST } from './vendor-limits';

/** The settings of a `google-customer-match` destination: all that validating a connector needs. */

export const GOOGLE_CUSTOMER_MATCH_TYPE = 'google-customer-match';

export const GOOGLE_ADS_BASE_URL = 'https://googleads.googleapis.com';

const customerIdSchema = z
  .string()
  .regex(/^\d{3}-?\d{3}-?\d{4}$/, 'must be a 10-digit Google Ads customer id (dashes allowed)')
  .transform((id) => id.replace(/-/g, ''));

const consentStatus = z.enum(['GRANTED', 'DENIED']);

export const googleCustomerMatchConfigSchema = z.object({
  type: z.literal(GOOGLE_CUSTOMER_MATCH_TYPE),
  /** The advertiser account that owns the user list. */
  customerId: customerIdSchema,
  /** The Customer Match (CRM-based, CONTACT_INFO) user list's id. */
  userListId: z.string().regex(/^\d+$/, 'must be the numeric user list id'),
  /** Manager account the OAuth user acts through, when the list's account is a client of it. */
  loginCustomerId: customerIdSchema.optional(),
  /** Name of the secret holding the developer token, never the token itself. */
  developerTokenSecret: secretName,
  /** Name of the secret holding an OAuth 2.0 access token with the adwords scope. */
  accessTokenSecret: secretName,
  /** What the dataset key is: an e-mail address or a phone number. */
  keyType: z.enum(['email', 'phone']).default('email'),
  /** Country for phone numbers written without +country code (ISO 3166 alpha-2). */
  defaultCountry: z
    .string()
    .regex(/^[A-Z]{2}$/, 'must be an ISO 3166-1 alpha-2 code like DE')
    .optional(),
  /**
   * Drop dots before @gmail.com/@googlemail.com. Google's Customer Match guide does not ask for
   * it (only trim + lower-case; its own sample keeps the dots), so it is off by default.
   */
  removeGmailDots: z.boolean().default(false),
  /** Dataset attributes holding a mailing address, sent as a second identifier on additions. */
  address: z
    .object({ firstName: z.string(), lastName: z.string(), countryCode: z.string(), postalCode: z.string() })
    .optional(),
  /** Consent for the uploaded data, set on jobs that add members (Google asks for it since v15). */
  consent: z.object({ adUserData: consentStatus, adPersonalization: consentStatus }).optional(),
  baseUrl: serviceUrl('baseUrl').default(GOOGLE_ADS_BASE_URL),
  /**
   * REST version. The default is the version whose protos the repository holds and the emulator
   * checks every request against (vendor-limits.ts; test/vendor-specs/google-ads/). Another
   * version works as long as Google serves it and the request fields are unchanged there.
   */
  apiVersion: z
    .string()
    .regex(/^v\d+$/)
    .default(GOOGLE_ADS_API_VERSION),
  /** Records per engine batch, i.e. per job. Google prefers few large jobs to many small ones. */
  recordsPerCall: z.number().int().min(1).max(1_000_000).default(100_000),
  /**
   * Identifiers per addOperations request: Google's limit is 100,000 (vendor-limits.ts). A job
   * (one batch) takes as many addOperations requests as its identifiers need.
   */
  identifiersPerRequest: z
    .number()
    .int()
    .min(1)
    .max(MAX_IDENTIFIERS_PER_REQUEST)
    .default(MAX_IDENTIFIERS_PER_REQUEST),
  callsPerSecond: z.number().positive().optional(),
  /**
   * Jobs tried per batch when one ends FAILED. Google gives no actionable reason for a failed
   * Customer Match job and a run job cannot be re-run, so a fresh job is worth one more try;
   * after that the batch fails as a whole (kind 'batch': nothing committed, records stay pending).
   */
  maxJobAttempts: z.number().int().min(1).max(10).default(2),
  /** First wait before polling a running job; doubles up to maxPollIntervalMs. */
  pollIntervalMs: z.number().int().min(0).default(5_000),
  maxPollIntervalMs: z.number().int().min(0).default(300_000),
  /** How long to wait for one job (Google: "6 hours or more" is possible). */
  jobTimeoutMs: z
    .number()
    .int()
    .min(0)
    .default(12 * 3_600_000),
});

export type GoogleCustomerMatchConfig = z.output<typeof googleCustomerMatchConfigSchema>;
export type GoogleCustomerMatchConfigInput = z.input<typeof googleCustomerMatchConfigSchema>;
