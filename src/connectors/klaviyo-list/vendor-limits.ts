/**
 * Klaviyo's published limits for the calls deltasync makes, each with where it is written. SPEC is
 * Klaviyo's OpenAPI document of revision 2026-04-15, one file per operation, as extracted into
 * test/vendor-specs/klaviyo/apis/<operation>.json (see SOURCE.md there). The emulator enforces
 * these, the destination's limits use them, and test/connectors/klaviyo-list.test.ts checks that
 * they still say what the spec says.
 */

/** The revision the connector sends by default and the spec describes (SPEC info.version). */
export const KLAVIYO_REVISION = '2026-04-15';

/**
 * "Accepts up to 10,000 profiles per request. The maximum allowed payload size is 5MB. The maximum
 * allowed payload size per-profile is 100KB." (SPEC bulk_import_profiles.json, the operation's
 * description). 5MB is read as 5,000,000 bytes, the smaller of its two readings; 100KB likewise.
 */
export const PROFILES_PER_IMPORT_JOB = 10_000;
export const IMPORT_PAYLOAD_MAX_BYTES = 5_000_000;
export const PROFILE_MAX_BYTES = 100_000;

/**
 * "This endpoint accepts a maximum of 1000 profiles per call." (SPEC remove_profiles_from_list.json
 * and add_profiles_to_list.json, the operations' descriptions).
 */
export const PROFILES_PER_MEMBERSHIP_CALL = 1000;

/**
 * page[size] of get_profiles_for_list and get_errors_for_bulk_import_profiles_job: "Default: 20.
 * Min: 1. Max: 100." (SPEC, the parameter's schema: default 20, maximum 100).
 */
export const PAGE_SIZE_MAX = 100;
export const PAGE_SIZE_DEFAULT = 20;

/**
 * Rate limits per operation, burst per second and steady per minute (SPEC, each operation's
 * x-klaviyo-ratelimit). Klaviyo answers 429 with Retry-After past either.
 */
export const RATE_LIMITS = {
  get_list: { burst: 75, steady: 750 },
  get_profiles_for_list: { burst: 75, steady: 750 },
  add_profiles_to_list: { burst: 10, steady: 150 },
  remove_profiles_from_list: { burst: 10, steady: 150 },
  bulk_import_profiles: { burst: 10, steady: 150 },
  get_bulk_import_profiles_job: { burst: 10, steady: 150 },
  get_errors_for_bulk_import_profiles_job: { burst: 10, steady: 150 },
} as const;

/**
 * The states of a bulk import job (SPEC get_bulk_import_profiles_job.json,
 * ProfileImportJobResponseObjectResource.attributes.status): queued and processing while it runs,
 * then complete or cancelled.
 */
export const IMPORT_JOB_STATES = ['cancelled', 'complete', 'processing', 'queued'] as const;
