/**
 * Google's published limits and version for the Customer Match calls deltasync makes, each with
 * where it is written. SPEC is the Google Ads API protos of google-ads-node@25.1.0 as extracted into
 * test/vendor-specs/google-ads/ (see SOURCE.md there); paths below are relative to
 * test/vendor-specs/google-ads/google/ads/googleads/v25/. The emulator enforces these, the
 * settings' bounds and defaults use them, and test/connectors/google-customer-match.test.ts checks
 * that they still say what the spec says.
 */

/**
 * The REST version the connector speaks by default and the emulator answers: the newest version
 * whose protos npm carries (google-ads-node@25.1.0 has only v25). v25 was released in July 2026 and
 * is projected to sunset in August 2027 (https://developers.google.com/ads/blog/posts/2025/09/more-frequent-releases-coming-for).
 * v26 exists (released October 2026) but no package the project can reach publishes its protos, so
 * a v26 default could not be checked against Google's own definitions.
 */
export const GOOGLE_ADS_API_VERSION = 'v25';

/**
 * "Maximum number of user identifiers allowed per request is 100,000 and per operation is 20."
 * (SPEC errors/offline_user_data_job_error.proto, OfflineUserDataJobError.TOO_MANY_USER_IDENTIFIERS).
 * Counted over every UserData of one AddOfflineUserDataJobOperationsRequest; a job takes as many
 * requests as it needs ("send multiple requests with the same job resource_name") and has no
 * published cap of its own.
 */
export const MAX_IDENTIFIERS_PER_REQUEST = 100_000;

/** The per-operation half of the same sentence: one UserData (one person) carries at most 20. */
export const MAX_IDENTIFIERS_PER_OPERATION = 20;

/**
 * The states of an offline user data job (SPEC enums/offline_user_data_job_status.proto), in the
 * order a job goes through them. FAILED: "Uploaded data has failed to be processed. Some
 * operations may have been successfully processed." — a FAILED job may have applied part of its
 * operations.
 */
export const JOB_STATES = ['PENDING', 'RUNNING', 'SUCCESS', 'FAILED'] as const;
