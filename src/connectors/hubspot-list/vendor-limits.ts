/**
 * HubSpot's published limits for the CRM Lists v3 calls deltasync makes, each with where it is
 * written. SPEC is HubSpot's OpenAPI document for CRM Lists v3 as extracted into
 * test/vendor-specs/hubspot/crm-lists-v3.openapi.json (see SOURCE.md there); the emulator enforces
 * these and the destination's `limits` use them. test/connectors/hubspot-list.test.ts checks that
 * the constants still say what the spec says.
 */

/**
 * `DELETE /crm/v3/lists/{listId}/memberships` "only supports lists that have less than 100,000
 * memberships" (SPEC paths['/crm/v3/lists/{listId}/memberships'].delete.description). A list at or
 * over it is emptied by paged removals instead (destination.ts, truncate).
 */
export const TRUNCATE_MAX_MEMBERS = 100_000;

/**
 * Largest page of `GET /crm/v3/lists/{listId}/memberships`: "The maximum `limit` is 250."
 * (SPEC paths['/crm/v3/lists/{listId}/memberships'].get.parameters[limit].description).
 */
export const MEMBERSHIPS_PAGE_MAX = 250;

/** The page size when `limit` is not given (SPEC …get.parameters[limit].schema.default). */
export const MEMBERSHIPS_PAGE_DEFAULT = 100;

/**
 * The ten-second ("burst") window of private apps: 190 calls per 10 seconds on Professional and
 * Enterprise (https://developers.hubspot.com/changelog/increasing-our-api-limits), 100 on Free and
 * Starter (https://developers.hubspot.com/apisbytier). A 429 names it `TEN_SECONDLY_ROLLING`.
 */
export const TEN_SECONDLY_LIMIT = 190;
export const TEN_SECONDLY_WINDOW_MS = 10_000;

/**
 * The daily budget of an Enterprise account's private apps: 1,000,000 calls
 * (https://developers.hubspot.com/changelog/increasing-our-api-limits; 250,000 on Free/Starter,
 * 650,000 on Professional). A 429 names it `DAILY`, and "the daily limits reset at midnight based
 * on the time zone setting of the HubSpot account" (https://developers.hubspot.com/apisbytier;
 * https://developers.hubspot.com/docs/api/usage-details): no retry can pass before then.
 */
export const DAILY_LIMIT = 1_000_000;

/**
 * The 429 body's `policyName` values (https://developers.hubspot.com/docs/api/usage-details: "The
 * message and policyName will indicate which limit you hit").
 */
export const RATE_LIMIT_POLICIES = ['TEN_SECONDLY_ROLLING', 'DAILY'] as const;
