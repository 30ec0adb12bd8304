import { STATUS_CODES } from 'node:http';
import { fullJitterBackoff, HttpDestinationError, parseRetryAfter, realSleep, type Sleep } from './http';
import type { DestinationError } from './types';

/**
 * The Google Ads REST transport (googleads.googleapis.com/{version}/…): JSON over HTTPS with a
 * developer token and an OAuth access token. It follows the retry policy of http.ts (429 waits,
 * 5xx and network errors back off with full jitter, credential problems stop the refresh) and
 * reuses its helpers, but reads Google's error body to decide: Google answers most refusals with
 * a generic "Request contains an invalid argument." and puts the real reason in
 * `error.details[].errors[].errorCode` (GoogleAdsFailure), and its rate-limit wait in
 * `quotaErrorDetails.retryDelay` rather than a Retry-After header. requestJson in http.ts cannot
 * see that body, hence this small loop of its own.
 */

export interface GoogleAdsCredentials {
  developerToken: () => string;
  accessToken: () => string;
  /** Manager account the access token acts through (the `login-customer-id` header). */
  loginCustomerId?: string;
}

export interface GoogleAdsRetryOptions {
  sleep?: Sleep;
  random?: () => number;
  /** Attempts for 5xx, concurrent-modification and network errors, the first one included. */
  maxAttempts?: number;
  /** Times a RESOURCE_EXHAUSTED is waited for before giving up on this request. */
  maxRateLimitWaits?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Cap on any single wait, including a server-requested retryDelay. */
  maxWaitMs?: number;
  timeoutMs?: number;
}

export interface GoogleAdsRequest {
  /** Base URL without version, e.g. https://googleads.googleapis.com. */
  baseUrl: string;
  apiVersion: string;
  /** Path after the version, e.g. `customers/123/offlineUserDataJobs:create`. */
  path: string;
  body: unknown;
  credentials: GoogleAdsCredentials;
  /** Appended to fatal messages: what the operator should check. */
  hint?: string;
  /** Prefix of error messages (default 'google-ads'). */
  service?: string;
}

export interface GoogleAdsResponse<T> {
  body: T;
  apiCalls: number;
  rateLimitWaits: number;
}

/** One error of a GoogleAdsFailure, flattened: `offlineUserDataJobError.INVALID_SHA256_FORMAT`. */
export interface GoogleAdsErrorItem {
  code: string;
  message: string;
  /** Index of the operation the error is about (first `operations[i]` path element). */
  operationIndex?: number;
  retryDelayMs?: number;
}

/** An HTTP refusal with Google's error codes, so callers can react to specific ones. */
export class GoogleAdsApiError extends HttpDestinationError {
  constructor(
    message: string,
    kind: DestinationError['kind'],
    status: number | undefined,
    apiCalls: number,
    rateLimitWaits: number,
    readonly codes: string[],
  ) {
    super(message, kind, status, apiCalls, rateLimitWaits);
    this.name = 'GoogleAdsApiError';
  }
}

const defaults = {
  maxAttempts: 5,
  maxRateLimitWaits: 10,
  baseDelayMs: 1000,
  maxDelayMs: 60_000,
  maxWaitMs: 300_000,
  timeoutMs: 120_000,
};

/**
 * Error codes that no retry or other batch can fix: the list, the account or the credentials are
 * wrong. Everything else a 400 carries fails only the batch in hand.
 */
const FATAL_CODE = [
  /^authenticationError\./,
  /^authorizationError\./,
  /^headerError\./,
  /^notAllowlistedError\./,
  /^offlineUserDataJobError\.(INVALID_USER_LIST_ID|INVALID_USER_LIST_TYPE|CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS|INCOMPATIBLE_UPLOAD_KEY_TYPE)$/,
  /^userDataError\.OPERATIONS_FOR_CUSTOMER_MATCH_NOT_ALLOWED$/,
  /^requestError\.INVALID_CUSTOMER_ID$/,
];

/** Transient by nature although not a 5xx: two writers touched the same list at once. */
const TRANSIENT_CODE = [/^databaseError\.CONCURRENT_MODIFICATION$/, /^internalError\./];

type Attempt =
  | { done: true; body: unknown }
  | { done: false; rateLimited: boolean; retryAfterMs?: number; failure: string; status?: number };

/** One logical request, retried per the policy above. */
export async function googleAdsRequest<T>(
  request: GoogleAdsRequest,
  retry: GoogleAdsRetryOptions = {},
): Promise<GoogleAdsResponse<T>> {
  const options = { ...defaults, ...definedOnly(retry) };
  const sleep = retry.sleep ?? realSleep;
  const random = retry.random ?? Math.random;
  let apiCalls = 0;
  let rateLimitWaits = 0;
  let failedAttempts = 0;

  for (;;) {
    apiCalls++;
    let result: Attempt;
    try {
      result = await attempt(request, options.timeoutMs);
    } catch (err) {
      if (err instanceof RefusedError) {
        throw new GoogleAdsApiError(err.message, err.kind, err.status, apiCalls, rateLimitWaits, err.codes);
      }
      throw err;
    }
    if (result.done) return { body: result.body as T, apiCalls, rateLimitWaits };

    let delayMs: number;
    if (result.rateLimited) {
      if (rateLimitWaits >= options.maxRateLimitWaits) {
        throw giveUp(
          request,
          `still rate limited after ${rateLimitWaits} waits`,
          result,
          apiCalls,
          rateLimitWaits,
        );
      }
      delayMs =
        result.retryAfterMs ??
        fullJitterBackoff(rateLimitWaits, options.baseDelayMs, options.maxDelayMs, random);
      rateLimitWaits++;
    } else {
      failedAttempts++;
      if (failedAttempts >= options.maxAttempts) {
        const reason = `${result.failure} (gave up after ${apiCalls} calls)`;
        throw giveUp(request, reason, result, apiCalls, rateLimitWaits);
      }
      delayMs = fullJitterBackoff(failedAttempts - 1, options.baseDelayMs, options.maxDelayMs, random);
    }
    await sleep(Math.min(delayMs, options.maxWaitMs));
  }
}

/** Thrown inside one attempt for a final refusal; converted to GoogleAdsApiError with the counts. */
class RefusedError extends Error {
  constructor(
    message: string,
    readonly kind: DestinationError['kind'],
    readonly status: number,
    readonly codes: string[],
  ) {
    super(message);
  }
}

async function attempt(request: GoogleAdsRequest, timeoutMs: number): Promise<Attempt> {
  // Outside the try: a secret that cannot be read is fatal, not a network error.
  const headers = headersOf(request.credentials);
  let response: Response;
  let text: string;
  try {
    response = await fetch(urlOf(request), {
      method: 'POST',
      headers,
      body: JSON.stringify(request.body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    text = await response.text();
  } catch (err) {
    // Refused, reset, DNS, timeout: the request may or may not have arrived.
    return { done: false, rateLimited: false, failure: `network error: ${networkCause(err)}` };
  }
  const { status } = response;
  if (status >= 200 && status < 300) return { done: true, body: parseBody(request, status, text) };

  const errors = parseGoogleAdsErrors(text);
  const codes = errors.map((e) => e.code);
  const failure = describe(request, response, text, errors);
  if (status === 429 || codes.some((c) => c.startsWith('quotaError.RESOURCE'))) {
    const retryAfterMs =
      errors.find((e) => e.retryDelayMs !== undefined)?.retryDelayMs ??
      parseRetryAfter(response.headers.get('retry-after'), Date.now());
    return { done: false, rateLimited: true, retryAfterMs, failure, status };
  }
  if (status >= 500 || status === 408 || codes.some((c) => TRANSIENT_CODE.some((p) => p.test(c)))) {
    return { done: false, rateLimited: false, failure, status };
  }
  const fatal = status === 401 || status === 403 || status === 404 || codes.some(isFatalCode);
  const message = redact(
    `${request.service ?? 'google-ads'}: ${failure}${fatal && request.hint ? ` — ${request.hint}` : ''}`,
    request,
  );
  throw new RefusedError(message, fatal ? 'fatal' : 'batch', status, codes);
}

function isFatalCode(code: string): boolean {
  return FATAL_CODE.some((pattern) => pattern.test(code));
}

function urlOf(request: GoogleAdsRequest): string {
  return `${request.baseUrl.replace(/\/+$/, '')}/${request.apiVersion}/${request.path}`;
}

function headersOf(credentials: GoogleAdsCredentials): Record<string, string> {
  return {
    accept: 'application/json',
    'content-type': 'application/json',
    authorization: `Bearer ${credentials.accessToken()}`,
    'developer-token': credentials.developerToken(),
    ...(credentials.loginCustomerId ? { 'login-customer-id': credentials.loginCustomerId } : {}),
  };
}

function parseBody(request: GoogleAdsRequest, status: number, text: string): unknown {
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text);
  } catch {
    const message = `${request.service ?? 'google-ads'}: ${status} from POST ${urlOf(request)} is not JSON (is baseUrl right?): ${text.slice(0, 200)}`;
    throw new RefusedError(redact(message, request), 'fatal', status, []);
  }
}

/** "400 INVALID_ARGUMENT from POST …: offlineUserDataJobError.INVALID_USER_LIST_ID: …". */
function describe(
  request: GoogleAdsRequest,
  response: Response,
  text: string,
  errors: GoogleAdsErrorItem[],
): string {
  const head = `${response.status} ${statusName(text) ?? response.statusText ?? STATUS_CODES[response.status] ?? ''}`;
  const detail =
    errors.length > 0
      ? errors
          .slice(0, 3)
          .map((e) => `${e.code}: ${e.message}`)
          .join('; ')
      : (topMessage(text) ?? text.trim().slice(0, 200));
  return `${head.trim()} from POST ${urlOf(request)}${detail ? `: ${detail}` : ''}`;
}

function giveUp(
  request: GoogleAdsRequest,
  reason: string,
  last: { status?: number },
  apiCalls: number,
  rateLimitWaits: number,
): GoogleAdsApiError {
  const message = redact(`${request.service ?? 'google-ads'}: POST ${urlOf(request)}: ${reason}`, request);
  return new GoogleAdsApiError(message, 'retryable', last.status, apiCalls, rateLimitWaits, []);
}

// --- Google's error format ------------------------------------------------------------------------

interface RpcStatus {
  code?: number;
  message?: string;
  status?: string;
  details?: unknown[];
}

/**
 * The errors of a google.rpc.Status, as found in an error body (`{"error": Status}`) or in a
 * `partialFailureError`. Each GoogleAdsFailure detail lists errors whose `errorCode` is a
 * one-field object (`{"offlineUserDataJobError": "INVALID_SHA256_FORMAT"}`).
 */
export function googleAdsErrorsOf(status: RpcStatus | undefined): GoogleAdsErrorItem[] {
  const items: GoogleAdsErrorItem[] = [];
  for (const detail of status?.details ?? []) {
    const errors = (detail as { errors?: unknown }).errors;
    if (!Array.isArray(errors)) continue;
    for (const error of errors as RawError[]) items.push(flatten(error));
  }
  return items;
}

interface RawError {
  errorCode?: Record<string, string>;
  message?: string;
  location?: { fieldPathElements?: { fieldName?: string; index?: number }[] };
  details?: { quotaErrorDetails?: { retryDelay?: string } };
}

function flatten(error: RawError): GoogleAdsErrorItem {
  const [family, value] = Object.entries(error.errorCode ?? {})[0] ?? ['unknown', 'UNKNOWN'];
  const first = error.location?.fieldPathElements?.[0];
  const delay = error.details?.quotaErrorDetails?.retryDelay;
  return {
    code: `${family}.${value}`,
    message: error.message ?? '',
    operationIndex: first?.fieldName === 'operations' ? first.index : undefined,
    retryDelayMs: delay === undefined ? undefined : parseDuration(delay),
  };
}

export function parseGoogleAdsErrors(text: string): GoogleAdsErrorItem[] {
  try {
    return googleAdsErrorsOf((JSON.parse(text) as { error?: RpcStatus }).error);
  } catch {
    return [];
  }
}

/** A protobuf Duration in JSON ("30s", "1.5s") in milliseconds. */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)s$/.exec(text.trim());
  return match ? Math.round(Number(match[1]) * 1000) : undefined;
}

function statusName(text: string): string | undefined {
  try {
    return (JSON.parse(text) as { error?: RpcStatus }).error?.status;
  } catch {
    return undefined;
  }
}

function topMessage(text: string): string | undefined {
  try {
    return (JSON.parse(text) as { error?: RpcStatus }).error?.message;
  } catch {
    return undefined;
  }
}

// --- Odds and ends --------------------------------------------------------------------------------

function networkCause(err: unknown): string {
  if (err instanceof Error) {
    if (err.name === 'TimeoutError') return 'timed out';
    const cause = (err as Error & { cause?: unknown }).cause;
    return cause instanceof Error ? cause.message : err.message;
  }
  return String(err);
}

/** Never let a token come back in a message, even when a server echoes it. */
function redact(message: string, request: GoogleAdsRequest): string {
  let result = message;
  for (const read of [request.credentials.accessToken, request.credentials.developerToken]) {
    let secret: string;
    try {
      secret = read();
    } catch {
      continue;
    }
    if (secret.length >= 4) result = result.split(secret).join('***');
  }
  return result;
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
