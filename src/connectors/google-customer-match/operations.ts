import type { CountryCode } from 'libphonenumber-js';
import { normalizeEmail, normalizeName, normalizePhone, sha256Hex } from '../../core/identifiers';
import { notAcknowledged } from '../kit/index';
import {
  DestinationError,
  type AttributeValue,
  type Attributes,
  type MatchEstimate,
  type Rejection,
} from '../../core/destination';
import { googleAdsErrorsOf } from './ads-api';
import type { GoogleCustomerMatchConfig } from './settings';

/**
 * What goes into an offline user data job: the dataset key normalised and hashed the Customer
 * Match way (never sent raw), the optional address identifier, one operation per record, and
 * Google's per-operation verdict on them (partial failures).
 */

// --- Wire shapes ---------------------------------------------------------------------------------

export interface UserIdentifier {
  hashedEmail?: string;
  hashedPhoneNumber?: string;
  addressInfo?: { hashedFirstName: string; hashedLastName: string; countryCode: string; postalCode: string };
}

export type JobOperation =
  | { create: { userIdentifiers: UserIdentifier[] } }
  | { remove: { userIdentifiers: UserIdentifier[] } }
  | { removeAll: true };

export type JobStatus = 'PENDING' | 'RUNNING' | 'SUCCESS' | 'FAILED';

/**
 * Google's OfflineUserDataJobMatchRateRange values as percent bounds, both included
 * (enums/offline_user_data_job_match_rate_range.proto); UNSPECIFIED and UNKNOWN say nothing.
 */
const MATCH_RATE_RANGES: Record<string, readonly [number, number]> = {
  MATCH_RANGE_LESS_THAN_20: [0, 19],
  MATCH_RANGE_20_TO_30: [20, 30],
  MATCH_RANGE_31_TO_40: [31, 40],
  MATCH_RANGE_41_TO_50: [41, 50],
  MATCH_RANGE_51_TO_60: [51, 60],
  MATCH_RANGE_61_TO_70: [61, 70],
  MATCH_RANGE_71_TO_80: [71, 80],
  MATCH_RANGE_81_TO_90: [81, 90],
  MATCH_RANGE_91_TO_100: [91, 100],
};

/** A job's match_rate_range as the engine's estimate for `records` records, if it says one. */
export function matchEstimateOf(range: string | undefined, records: number): MatchEstimate | undefined {
  const bounds = range === undefined ? undefined : MATCH_RATE_RANGES[range];
  if (!bounds || records === 0) return undefined;
  return { records, lowPercent: bounds[0], highPercent: bounds[1] };
}

/** The partialFailureError of an addOperations answer (a google.rpc.Status). */
export type PartialFailure = { code?: number; message?: string; details?: unknown[] } | undefined;

/** One operation and the record it stands for (none for removeAll). */
export interface Prepared {
  operation: JobOperation;
  key: string | null;
}

// --- Identifiers ----------------------------------------------------------------------------------

export type Identify = (key: string) => { identifier: UserIdentifier } | { reason: string };

/** Normalise + hash the dataset key as Google's Customer Match rules say; null-safe. */
export function identifierFor(
  config: Pick<GoogleCustomerMatchConfig, 'keyType' | 'defaultCountry' | 'removeGmailDots'>,
): Identify {
  if (config.keyType === 'phone') {
    return (key) => {
      const phone = normalizePhone(key, config.defaultCountry as CountryCode | undefined);
      if (phone === null) {
        return {
          reason: `not a valid phone number${config.defaultCountry ? '' : ' (without + and country code it needs defaultCountry)'}`,
        };
      }
      return { identifier: { hashedPhoneNumber: sha256Hex(phone) } };
    };
  }
  return (key) => {
    const email = normalizeEmail(key, { removeGmailDots: config.removeGmailDots });
    return email === null
      ? { reason: 'not a valid e-mail address' }
      : { identifier: { hashedEmail: sha256Hex(email) } };
  };
}

/** The address identifier, when every part is present; otherwise none (the key still matches). */
export function addressIdentifier(
  mapping: NonNullable<GoogleCustomerMatchConfig['address']>,
  attributes: Attributes,
): UserIdentifier | undefined {
  const text = (value: AttributeValue | undefined) =>
    value === null || value === undefined ? '' : String(value).trim();
  const firstName = normalizeName(text(attributes[mapping.firstName]));
  const lastName = normalizeName(text(attributes[mapping.lastName]));
  const countryCode = text(attributes[mapping.countryCode]).toUpperCase();
  const postalCode = text(attributes[mapping.postalCode]);
  if (firstName === null || lastName === null || !/^[A-Z]{2}$/.test(countryCode) || postalCode === '') {
    return undefined;
  }
  // Names are hashed; country and postal code are sent as they are (Google's rules).
  return {
    addressInfo: {
      hashedFirstName: sha256Hex(firstName),
      hashedLastName: sha256Hex(lastName),
      countryCode,
      postalCode,
    },
  };
}

export function prepareOperations(
  kind: 'create' | 'remove',
  records: { key: string; attributes?: Attributes }[],
  identify: Identify,
  config: GoogleCustomerMatchConfig,
): { prepared: Prepared[]; unusable: Rejection[] } {
  const prepared: Prepared[] = [];
  const unusable: Rejection[] = [];
  for (const record of records) {
    const result = identify(record.key);
    if ('reason' in result) {
      unusable.push({ key: record.key, reason: result.reason });
      continue;
    }
    const identifiers = [result.identifier];
    // A removal names the person by the key alone; the address only helps matching on upload.
    const address =
      kind === 'create' && config.address && record.attributes
        ? addressIdentifier(config.address, record.attributes)
        : undefined;
    if (address) identifiers.push(address);
    const userData = { userIdentifiers: identifiers };
    prepared.push({
      operation: kind === 'create' ? { create: userData } : { remove: userData },
      key: record.key,
    });
  }
  return { prepared, unusable };
}

function identifierCount(operation: JobOperation): number {
  if ('create' in operation) return operation.create.userIdentifiers.length;
  if ('remove' in operation) return operation.remove.userIdentifiers.length;
  return 0;
}

/** Consecutive chunks of at most `limit` identifiers (removeAll counts as none). */
export function chunksByIdentifiers<T extends { operation: JobOperation }>(items: T[], limit: number): T[][] {
  const chunks: T[][] = [];
  let current: T[] = [];
  let count = 0;
  for (const item of items) {
    const size = identifierCount(item.operation);
    if (current.length > 0 && count + size > limit) {
      chunks.push(current);
      current = [];
      count = 0;
    }
    current.push(item);
    count += size;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

/**
 * partialFailureError → one rejection per failed operation, with Google's codes as the reason.
 * A failure that names no operation (no GoogleAdsFailure errors in its details) says some
 * operations failed but not which: none of the request's records is acknowledged.
 */
export function partialFailures(status: PartialFailure, chunk: Prepared[]): Rejection[] {
  if (!status) return [];
  const errors = googleAdsErrorsOf(status);
  if (errors.length === 0) {
    const failed = (status.code ?? 0) !== 0 || (status.details?.length ?? 0) > 0 || !!status.message;
    if (!failed) return [];
    const what = [status.code, status.message].filter((part) => part !== undefined).join(' ');
    const why = `addOperations reported a partial failure (${what || 'no detail'}) without naming the operations`;
    // remove_all stands for no record: whether it was taken decides the whole job.
    const keys = chunk.map((p) => p.key);
    if (keys.includes(null)) throw new DestinationError(`google-customer-match: ${why}`, 'batch');
    return notAcknowledged(keys as string[], [], why);
  }
  const reasons = new Map<string, string[]>();
  for (const error of errors) {
    const key = error.operationIndex === undefined ? undefined : chunk[error.operationIndex]?.key;
    if (key === undefined || key === null) {
      // An error we cannot pin on a record: refuse the whole request rather than guess.
      throw new DestinationError(
        `google-customer-match: addOperations reported ${error.code}: ${error.message} outside any operation`,
        'batch',
      );
    }
    reasons.set(key, [...(reasons.get(key) ?? []), `${error.code}: ${error.message}`]);
  }
  return [...reasons].map(([key, list]) => ({ key, reason: list.join('; ') }));
}
