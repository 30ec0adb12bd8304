/**
 * Braze's published limits for `POST /users/track`, each with the page it is written on. Braze
 * publishes no machine-readable spec: these are also the `x-limits` (and `maxItems`) of the fixture
 * table test/vendor-specs/braze/users-track.openapi.json, and
 * test/connectors/braze-attributes.test.ts checks the two agree. The emulator enforces them and
 * the connector's settings are capped by them.
 */

/** The fixture table (Braze's reference pages in OpenAPI form) the emulator validates against. */
export const BRAZE_SPEC_DOCUMENT = 'test/vendor-specs/braze/users-track.openapi.json';

/**
 * Objects per request: up to 75 in total across attributes, events and purchases, as the current
 * Track users page puts it (https://www.braze.com/docs/de/api/endpoints/user_data/post_user_track,
 * and the ko and ja pages; in the English page as crawled, and for customers on legacy rate limits,
 * 75 per array: https://www.braze.com/docs/api/endpoints/user_data/post_user_track/). The connector
 * sends attributes only, so either reading gives it 75 per request.
 */
export const MAX_OBJECTS_PER_REQUEST = 75;

/**
 * The same on Monthly Active Users - CY 24-25 contracts: "Each request may batch up to 50 updates
 * combined across attribute, event, or purchase objects" —
 * https://www.braze.com/docs/api/endpoints/user_data/post_user_track/#monthly-active-users-cy-24-25
 */
export const MAX_OBJECTS_PER_REQUEST_MAU_CY_24_25 = 50;

/**
 * "Requests: 3,000 requests per three seconds", per workspace, answered 429 with the
 * X-RateLimit-Limit / -Remaining / -Reset (UTC epoch seconds) headers every answer carries —
 * https://www.braze.com/docs/api/api_limits/
 */
export const RATE_LIMIT = { requests: 3000, windowSeconds: 3 } as const;
