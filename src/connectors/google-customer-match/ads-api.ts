import { STATUS_CODES } from 'node:http';
import {
  HttpDestinationError,
  parseRetryAfter,
  type Answer,
  type JsonResponse,
  type RetryOptions,
  type Verdict,
} from '../kit/http';
import type { HttpAccount, HttpClient } from '../kit/module';

/**
 * The Google Ads REST transport (googleads.googleapis.com/{version}/…): JSON over HTTPS with a
 * developer token and an OAuth access token. Requests, retries, the account's throttle and the
 * counting of calls are the destination context's HTTP client's (connectors/kit/module.ts); this
 * module tells it how to read Google's error body. Google answers most refusals with a
 * generic "Request contains an invalid argument." and puts the real reason in
 * `error.details[].errors[].errorCode` (GoogleAdsFailure), and its rate-limit wait in
 * `quotaErrorDetails.retryDelay` rather than a Retry-After header.
 */

export interface GoogleAdsCredentials {
  developerToken: () => string;
  accessToken: () => string;
  /** Manager account the access token acts through (the `login-customer-id` header). */
  loginCustomerId?: string;
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
  /** Prefix of error messages (default: the account's, see googleRequestDefaults). */
  service?: string;
  /**
   * Error codes that answer this request rather than fail it (a job that exists already, an
   * operation an earlier attempt added): not retried, counted as a successful call, and thrown
   * to the caller as a GoogleAdsApiError of kind 'batch' to react to.
   */
  answers?: string[];
  /**
   * A successful answer that still reports a failure that stands (a job found FAILED): the call
   * counts as a failed one, and the request ends in a GoogleAdsApiError of that kind, with the
   * answer as its body.
   */
  refuse?: (body: unknown) => { kind: 'fatal' | 'batch'; message: string } | undefined;
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
  /** The `errorCode`s of the answer that ended the request, e.g. `databaseError.CONCURRENT_MODIFICATION`. */
  readonly codes: string[];

  constructor(err: HttpDestinationError) {
    super(err.message, err.kind, err.status, err.body);
    this.name = 'GoogleAdsApiError';
    this.codes = googleAdsErrorsOf(rpcStatusOf(err.body)).map((e) => e.code);
  }
}

/** Longer than requestJson's defaults: one request may carry 100,000 identifiers. */
const googleRetryDefaults: RetryOptions = {
  baseDelayMs: 1000,
  maxDelayMs: 60_000,
  maxWaitMs: 300_000,
  timeoutMs: 120_000,
};

/** The request defaults of a Google Ads account (for `context.http`): Google's retry policy. */
export function googleRequestDefaults(service: string): NonNullable<HttpAccount['defaults']> {
  return { ...googleRetryDefaults, service };
}

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

/**
 * One logical request through `http` (the account's client), counted at `endpoint`, retried per
 * the policy above.
 */
export async function googleAdsRequest<T>(
  http: HttpClient,
  endpoint: string,
  request: GoogleAdsRequest,
): Promise<JsonResponse<T>> {
  const { credentials } = request;
  // Read before the request: a secret that cannot be read is fatal, not a network error.
  const accessToken = credentials.accessToken();
  const developerToken = credentials.developerToken();
  const url = `${request.baseUrl.replace(/\/+$/, '')}/${request.apiVersion}/${request.path}`;
  let response: JsonResponse<T>;
  try {
    response = await http.request<T>(endpoint, {
      method: 'POST',
      url,
      body: request.body,
      ...(request.service ? { service: request.service } : {}),
      headers: {
        authorization: `Bearer ${accessToken}`,
        'developer-token': developerToken,
        ...(credentials.loginCustomerId ? { 'login-customer-id': credentials.loginCustomerId } : {}),
      },
      redactValues: [developerToken],
      classify: (answer) => verdictOf(answer, request),
    });
  } catch (err) {
    throw err instanceof HttpDestinationError ? new GoogleAdsApiError(err) : err;
  }
  if (response.status >= 300) {
    // One of the errors the request expects (see `answers`): already counted as an answer.
    const errors = googleAdsErrorsOf(rpcStatusOf(response.body));
    const what = describe(response.status, response.body, '', errors);
    const message = `${request.service ?? 'google-ads'}: ${what} (${response.status} from POST ${url})`;
    throw new GoogleAdsApiError(new HttpDestinationError(message, 'batch', response.status, response.body));
  }
  return response;
}

/** Google's answer read by its error codes first, its HTTP status second. */
function verdictOf(
  { status, headers, body, text }: Answer,
  { hint, answers, refuse }: Pick<GoogleAdsRequest, 'hint' | 'answers' | 'refuse'>,
): Verdict | undefined {
  // A success (unless the caller refuses it); requestJson still checks that it is JSON.
  if (status >= 200 && status < 300) return refuse?.(body);
  const errors = googleAdsErrorsOf(rpcStatusOf(body));
  const codes = errors.map((e) => e.code);
  if (codes.length > 0 && codes.every((code) => answers?.includes(code))) return { kind: 'ok' };
  const what = describe(status, body, text, errors);
  if (status === 429 || codes.some((c) => c.startsWith('quotaError.RESOURCE'))) {
    const retryAfterMs =
      errors.find((e) => e.retryDelayMs !== undefined)?.retryDelayMs ??
      parseRetryAfter(headers.get('retry-after'), Date.now());
    return { kind: 'rateLimited', retryAfterMs, reason: `${status} ${what}` };
  }
  if (status >= 500 || status === 408 || codes.some((c) => TRANSIENT_CODE.some((p) => p.test(c)))) {
    return { kind: 'retry', reason: `${status} ${what}` };
  }
  const fatal = status === 401 || status === 403 || status === 404 || codes.some(isFatalCode);
  if (!fatal) return { kind: 'batch', message: what };
  return { kind: 'fatal', message: hint ? `${what} — ${hint}` : what };
}

function isFatalCode(code: string): boolean {
  return FATAL_CODE.some((pattern) => pattern.test(code));
}

/** "INVALID_ARGUMENT: offlineUserDataJobError.INVALID_USER_LIST_ID: …" */
function describe(status: number, body: unknown, text: string, errors: GoogleAdsErrorItem[]): string {
  const rpc = rpcStatusOf(body);
  const name = rpc?.status ?? STATUS_CODES[status] ?? '';
  const detail =
    errors.length > 0
      ? errors
          .slice(0, 3)
          .map((e) => `${e.code}: ${e.message}`)
          .join('; ')
      : (rpc?.message ?? text.trim().slice(0, 200));
  return [name, detail].filter(Boolean).join(': ');
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

/** The google.rpc.Status of an error body (`{"error": Status}`). */
function rpcStatusOf(body: unknown): RpcStatus | undefined {
  if (!body || typeof body !== 'object') return undefined;
  const error = (body as { error?: unknown }).error;
  return error && typeof error === 'object' ? (error as RpcStatus) : undefined;
}

/** A protobuf Duration in JSON ("30s", "1.5s") in milliseconds. */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)s$/.exec(text.trim());
  return match ? Math.round(Number(match[1]) * 1000) : undefined;
}
