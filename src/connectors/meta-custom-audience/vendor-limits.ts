/**
 * What Meta documents about Custom Audience uploads, as constants the connector and the emulator
 * share. Each cites its source; the fixture table test/vendor-specs/meta/
 * marketing-api-custom-audience.openapi.json carries the same values (x-limits, x-errors,
 * CustomAudienceStatus) and a test holds the two together.
 */

const GUIDE =
  'https://developers.facebook.com/documentation/ads-commerce/marketing-api/audiences/guides/custom-audiences';
const USERS_REFERENCE =
  'https://developers.facebook.com/documentation/ads-commerce/marketing-api/reference/custom-audience/users';
const AUDIENCE_REFERENCE =
  'https://developers.facebook.com/documentation/ads-commerce/marketing-api/reference/custom-audience';

/** The fixture table the emulator validates its traffic against (path from the repository root). */
export const META_SPEC_DOCUMENT = 'test/vendor-specs/meta/marketing-api-custom-audience.openapi.json';

export const META_SOURCES = {
  guide: GUIDE,
  usersReference: USERS_REFERENCE,
  audienceReference: AUDIENCE_REFERENCE,
};

/**
 * People per call of /users and /usersreplace: "only a maximum of 10000 at a time"
 * (USERS_REFERENCE; x-limits.usersPerCall, Payload.data maxItems).
 */
export const MAX_USERS_PER_CALL = 10_000;

/**
 * A replace session lasts at most 90 minutes from its first batch: later batches are refused
 * (2650/1870158) and the audience is replaced with what arrived in time (GUIDE#replace-api;
 * x-limits.replaceSessionMinutes).
 */
export const REPLACE_SESSION_MS = 90 * 60_000;

/** usersreplace takes only audiences of fewer than 100 million people (GUIDE#replace-api). */
export const REPLACE_MAX_AUDIENCE_SIZE = 100_000_000;

/** invalid_entry_samples holds "up to 100 samples" (GUIDE, response of /users). */
export const MAX_INVALID_ENTRY_SAMPLES = 100;

/**
 * batch_seq 1 starts a replace session; the other batches of a session may carry any number
 * but 1, duplicates included (GUIDE#session-fields; x-limits.firstBatchSeq).
 */
export const FIRST_BATCH_SEQ = 1;

/**
 * operation_status codes of a Custom Audience the connector acts on (AUDIENCE_REFERENCE, Fields:
 * operation_status; fixture CustomAudienceStatus.code).
 */
export const OPERATION_STATUS = {
  /** "Normal. There is no updating or issues found". */
  normal: 200,
  /** "Replace in progress": /users writes and a second replace must wait (GUIDE#replace-api). */
  replaceInProgress: 414,
  /** "Replace failed" (the guide: "If your replacement operation is incomplete"). */
  replaceFailed: 415,
  /** "The audience has been flagged for integrity reasons." */
  flagged: 471,
} as const;

/** The descriptions Meta gives those codes (AUDIENCE_REFERENCE). */
export const OPERATION_STATUS_TEXT: Record<number, string> = {
  200: 'Normal. There is no updating or issues found',
  414: 'Replace in progress',
  415: 'Replace failed',
  471: 'The audience has been flagged for integrity reasons.',
};

/** "All errors returned from the /{custom-audience-id}/usersreplace endpoint have the error code 2650" (GUIDE). */
export const REPLACE_ERROR_CODE = 2650;

/** The usersreplace error subcodes the guide lists ("Replace users API common errors"; fixture x-errors). */
export const REPLACE_ERROR_SUBCODES = {
  /** "Audience Update In Progress": wait for the audience to be "Normal" and try again. */
  audienceUpdateInProgress: 1870145,
  /** "Replace Session Timed Out": the 90 minutes are over; the audience gets what arrived so far. */
  sessionTimedOut: 1870158,
  /** "Invalid Upload Batch for Replace": "The first batch_seq was not detected." */
  firstBatchMissing: 1870147,
  /** "Replace Session Finished": a batch after the one with last_batch_flag. */
  sessionFinished: 1870159,
  /** "Something Went Wrong": "Your customer list was not fully updated." */
  somethingWentWrong: 1870148,
  /** "DFCA Size Not Supported For Replace": 100 million people or more. */
  sizeNotSupported: 1870144,
} as const;

/** The titles Meta gives those subcodes (GUIDE), as error_user_title. */
export const REPLACE_ERROR_TITLES: Record<number, string> = {
  1870145: 'Audience Update In Progress',
  1870158: 'Replace Session Timed Out',
  1870147: 'Invalid Upload Batch for Replace',
  1870159: 'Replace Session Finished',
  1870148: 'Something Went Wrong',
  1870144: 'DFCA Size Not Supported For Replace',
};

/**
 * A /users write while a replace runs. The guide only says not to ("Don't add or remove users
 * via /users during an ongoing replace operation"); the answer Meta gives is NOT documented.
 * The emulator answers with the replace endpoint's "Audience Update In Progress" (2650/1870145),
 * and the connector, which reads operation_status before and after a replace, treats that
 * answer as "wait for the replace" too.
 */
export const USERS_LOCKED = {
  code: REPLACE_ERROR_CODE,
  subcode: REPLACE_ERROR_SUBCODES.audienceUpdateInProgress,
};

/**
 * "Audience Upload Blocked": writes to an audience flagged with operation_status 471
 * (USERS_REFERENCE and the usersreplace reference, "Flagged custom and lookalike audiences").
 */
export const UPLOAD_BLOCKED = { code: 100, subcode: 1713230 };

/**
 * Meta refusing removals that would leave an audience too small ("Audience Size too Low": "You
 * cannot remove users from this audience because it will result in a low audience size.").
 * NOT in Meta's reference pages, which list only code 200 "Permissions error" for these calls,
 * nor is the threshold published; the message is reported from the real API in
 * https://github.com/grouparoo/grouparoo/pull/1108 (2020). The subcode 1870047 is as this project
 * recorded it earlier; no public source confirms it.
 */
export const AUDIENCE_TOO_SMALL = { code: 200, subcode: 1870047 };
