/**
 * Mailchimp's published limits for the calls the `mailchimp-audience` connector makes, each with
 * where it is written. The emulator enforces them and the connector's settings are capped by them;
 * test/connectors/mailchimp-audience.test.ts checks the ones the OpenAPI document states against
 * that document (test/vendor-specs/mailchimp/, see SOURCE.md there).
 */

/** The extract of Mailchimp's Marketing API OpenAPI document the emulator validates against. */
export const MAILCHIMP_SPEC_DOCUMENT = 'test/vendor-specs/mailchimp/marketing-lists.openapi.json';

/**
 * Members per batch subscribe call (`POST /3.0/lists/{list_id}`): "Up to 500 members may be added
 * or updated with each API call." — the description of `members` in the request body
 * (paths['/3.0/lists/{list_id}'].post.requestBody, marketing-lists.openapi.json).
 */
export const MAX_MEMBERS_PER_BATCH = 500;

/**
 * Members per page of `GET /3.0/lists/{list_id}/members`: the `count` parameter's `maximum`
 * ("The number of records to return. Default value is 10. Maximum value is 1000"), same document.
 */
export const MAX_MEMBERS_PAGE = 1000;

/**
 * Requests in flight at once per account: 10 simultaneous connections, the 11th answered 429 —
 * "API limits" in Mailchimp's Marketing API fundamentals,
 * https://mailchimp.com/developer/marketing/docs/fundamentals/ (a guide page, not the OpenAPI
 * document; its wording was not re-read on 2026-12-04, only the number, through a third-party
 * digest of that page). Mailchimp publishes no request-rate limit and sends no rate-limit headers.
 */
export const MAX_SIMULTANEOUS_CONNECTIONS = 10;
