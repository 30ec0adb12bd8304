import { z } from 'zod';
import { secretName, serviceUrl } from '../kit/index';

/** The settings of a `hubspot-list` destination: all that validating a connector needs. */

export const HUBSPOT_TYPE = 'hubspot-list';

export const hubspotListConfigSchema = z.object({
  type: z.literal(HUBSPOT_TYPE),
  /** The ILS list id (the list's Details in HubSpot), not the legacy v1 list id. */
  listId: z.string().regex(/^\d+$/, 'listId must be the numeric ILS list id (see the list’s Details)'),
  /** Name of the secret holding the private app's access token, never the token itself. */
  tokenSecret: secretName,
  baseUrl: serviceUrl('baseUrl').default('https://api.hubapi.com'),
  /**
   * Record ids per membership call: the destination's recordsPerCall, so the engine never hands
   * over more. HubSpot publishes no limit for membership calls; 10,000 ids is about 110 kB of JSON.
   */
  recordsPerCall: z.number().int().min(1).max(100_000).default(10_000),
  /** Spacing of calls for this account (shared by every connector using the same token). */
  callsPerSecond: z.number().positive().max(100).default(10),
  /**
   * The HubSpot account's time zone (Settings > Account defaults), an IANA name: HubSpot resets
   * the daily API limit at midnight there (https://developers.hubspot.com/apisbytier), so a run
   * that used it up pauses until then.
   */
  accountTimeZone: z
    .string()
    .refine(isTimeZone, 'accountTimeZone must be an IANA time zone name, e.g. America/New_York')
    .default('UTC'),
});

function isTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

export type HubspotListConfig = z.output<typeof hubspotListConfigSchema>;
export type HubspotListConfigInput = z.input<typeof hubspotListConfigSchema>;
