import { STATUS_CODES } from 'node:http';
import type { z } from 'zod';
import { HttpDestinationError, type Answer, type RetryOptions, type Verdict } from '../kit/http';
import type { HttpAccount, HttpClient } from '../kit/module';
import type { DestinationError } from '../../core/destination';

/**
 * A small client for Meta's Graph API (graph.facebook.com), shared by Meta destinations.
 *
 * Requests, retries, the account's throttle and the counting of calls are the destination
 * context's HTTP client's (connectors/kit/module.ts); this module tells it how to read Graph's
 * answers, which do not follow plain HTTP status semantics: throttling arrives as a 400/403 whose
 * JSON body carries error code 4, 17, 32, 613 or 80000-80014 (80003 for custom audiences), and
 * Meta says how long to stay away in the X-Business-Use-Case-Usage header.
 *
 *   throttled (codes above, or 429)     → wait (Meta's estimate, else backoff), count the wait
 *   5xx, is_transient, network error    → back off with jitter, retry, finally 'retryable'
 *   credentials (102, 104, 190, 10, 200, 270, 294), listed fatal code/subcode pairs → 'fatal'
 *   anything else                        → 'batch' (this call's records fail, the run goes on)
 *
 * An error a call expects (`GraphCall.answers`) is its answer rather than its failure: the call
 * counts as a successful one, and the caller gets the error to turn into rejections.
 */

/** Graph error codes that mean "slow down": app, user, page, ad-account and BUC limits. */
export const GRAPH_RATE_LIMIT_CODES: ReadonlySet<number> = new Set([
  4,
  17,
  32,
  613,
  ...Array.from({ length: 15 }, (_, i) => 80000 + i),
]);
/** Token and permission problems: an operator has to act. */
const CREDENTIAL_CODES: ReadonlySet<number> = new Set([10, 102, 104, 190, 200, 270, 294]);

export interface GraphErrorBody {
  message?: string;
  type?: string;
  code?: number;
  error_subcode?: number;
  is_transient?: boolean;
  error_user_title?: string;
  error_user_msg?: string;
  fbtrace_id?: string;
}

/** A Graph API failure, with Meta's code and subcode for callers that react to specific ones. */
export class MetaGraphError extends HttpDestinationError {
  readonly code?: number;
  readonly subcode?: number;

  constructor(message: string, kind: DestinationError['kind'], status: number | undefined, body?: unknown) {
    super(message, kind, status, body);
    this.name = 'MetaGraphError';
    const error = graphErrorOf(body);
    this.code = error?.code;
    this.subcode = error?.error_subcode;
  }

  static from(err: HttpDestinationError): MetaGraphError {
    return new MetaGraphError(err.message, err.kind, err.status, err.body);
  }

  is(code: number, subcode?: number): boolean {
    return this.code === code && (subcode === undefined || this.subcode === subcode);
  }
}

/**
 * Meta blocks for a minute or more once it throttles, so backing off from a quarter of a second
 * would only spend the allowed waits; its own estimate may be long, hence the larger cap.
 */
const graphRetryDefaults: RetryOptions = {
  rateLimitBaseDelayMs: 2_000,
  rateLimitMaxDelayMs: 300_000,
  maxWaitMs: 900_000,
  timeoutMs: 60_000,
};

/** The request defaults of a Graph account (for `context.http`): Meta's retry policy and words. */
export function graphRequestDefaults(service: string): NonNullable<HttpAccount['defaults']> {
  return { ...graphRetryDefaults, service, rateLimitTerm: 'throttled' };
}

/** A Graph error code, optionally narrowed to one subcode. */
export interface GraphErrorCode {
  code: number;
  subcode?: number;
}

export interface GraphClientConfig {
  /** Prefix of messages, e.g. the destination type. */
  service: string;
  /** `https://graph.facebook.com/v25.0`. */
  baseUrl: string;
  /** The token, resolved lazily; throws a fatal DestinationError when the secret is missing. */
  accessToken: () => string;
  /**
   * The account's HTTP client (`context.http` with graphRequestDefaults): throttled, retried and
   * counted by the destination's context.
   */
  http: HttpClient;
  /** What to check when the token is refused. */
  credentialsHint: string;
  /** More errors that stop the refresh, with what to do about them. */
  fatalErrors?: (GraphErrorCode & { hint: (path: string) => string })[];
}

export interface GraphCall {
  method: 'GET' | 'POST' | 'DELETE';
  /** Below the version, e.g. `1234/users`. */
  path: string;
  /** Sent as JSON. */
  body?: unknown;
  /**
   * Errors that answer this call rather than fail it (Meta refusing a removal that would make an
   * audience too small): not retried, counted as a successful call, and thrown to the caller as
   * a MetaGraphError of kind 'batch' to turn into rejections.
   */
  answers?: GraphErrorCode[];
}

export interface GraphClient {
  /**
   * One logical call, counted at `endpoint` (`users:add`, …), retried per the policy above, its
   * answer checked against `schema`.
   */
  request<T>(endpoint: string, call: GraphCall, schema: z.ZodType<T>): Promise<{ body: T }>;
}

export function createGraphClient(config: GraphClientConfig): GraphClient {
  async function request<T>(endpoint: string, call: GraphCall, schema: z.ZodType<T>): Promise<{ body: T }> {
    const url = `${config.baseUrl}/${call.path}`;
    let result: { status: number; body: unknown };
    try {
      result = await config.http.request(endpoint, {
        method: call.method,
        url,
        body: call.body,
        // A header rather than ?access_token=, so the token stays out of URLs and their logs.
        headers: { authorization: `Bearer ${config.accessToken()}` },
        classify: (answer) => verdictOf(call, answer),
      });
    } catch (err) {
      throw err instanceof HttpDestinationError ? MetaGraphError.from(err) : err;
    }
    const error = graphErrorOf(result.body);
    if (result.status >= 400 || error) {
      // One of the errors the call expects (see `answers`): already counted as an answer.
      const what = describeFailure(result.status, error, '');
      const message = `${config.service}: ${what} (${result.status} from ${call.method} ${url})`;
      throw new MetaGraphError(message, 'batch', result.status, result.body);
    }
    const parsed = schema.safeParse(result.body);
    if (!parsed.success) {
      const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
      throw new MetaGraphError(
        `${config.service}: unexpected answer from ${call.method} ${url} (is the Graph URL right?): ${issues.join('; ')}`,
        'fatal',
        result.status,
      );
    }
    return { body: parsed.data };
  }

  /** Graph's answer read by its error code first, its HTTP status second. */
  function verdictOf(call: GraphCall, { status, headers, body, text }: Answer): Verdict | undefined {
    const error = graphErrorOf(body);
    // A success; requestJson still checks that it is JSON.
    if (status < 400 && !error) return undefined;
    if (error && call.answers?.some((expected) => matches(expected, error))) return { kind: 'ok' };
    const what = describeFailure(status, error, text);
    const reason = `${status} ${what}`;
    const code = error?.code;
    if (status === 429 || (code !== undefined && GRAPH_RATE_LIMIT_CODES.has(code))) {
      return { kind: 'rateLimited', retryAfterMs: regainAccessMs(headers), reason };
    }
    if (status >= 500 || error?.is_transient === true) return { kind: 'retry', reason };

    // A refusal that retrying cannot fix: the whole refresh (fatal) or just this call (batch).
    const listed = error && config.fatalErrors?.find((f) => matches(f, error));
    if (listed) return { kind: 'fatal', message: `${what} — ${listed.hint(call.path)}` };
    if (code !== undefined && CREDENTIAL_CODES.has(code)) {
      return { kind: 'fatal', message: `${what} — ${config.credentialsHint}` };
    }
    const fatal = status === 401 || status === 403 || status === 404;
    return { kind: fatal ? 'fatal' : 'batch', message: what };
  }

  return { request };
}

/**
 * Meta's own "come back later": X-Business-Use-Case-Usage gives, per business or ad account,
 * estimated_time_to_regain_access in minutes. A Retry-After in seconds is honoured as well.
 */
export function regainAccessMs(headers: Headers): number | undefined {
  const retryAfter = headers.get('retry-after')?.trim();
  if (retryAfter && /^\d+$/.test(retryAfter)) return Number(retryAfter) * 1000;
  const usage = headers.get('x-business-use-case-usage');
  if (!usage) return undefined;
  try {
    const parsed = JSON.parse(usage) as Record<string, { estimated_time_to_regain_access?: number }[]>;
    const minutes = Object.values(parsed)
      .flat()
      .map((entry) => entry.estimated_time_to_regain_access ?? 0);
    const longest = Math.max(0, ...minutes);
    return longest > 0 ? longest * 60_000 : undefined;
  } catch {
    return undefined;
  }
}

/** "Graph error 613/1487742 (OAuthException): There have been too many calls … [fbtrace_id …]" */
function describeFailure(status: number, error: GraphErrorBody | undefined, text: string): string {
  if (!error) return text.trim().slice(0, 200) || (STATUS_CODES[status] ?? 'no details');
  const code = `${error.code ?? '?'}${error.error_subcode ? `/${error.error_subcode}` : ''}`;
  const detail = [error.message, error.error_user_msg].filter(Boolean).join(': ');
  const trace = error.fbtrace_id ? ` [fbtrace_id ${error.fbtrace_id}]` : '';
  return `Graph error ${code}${error.type ? ` (${error.type})` : ''}: ${detail}${trace}`;
}

function matches(expected: GraphErrorCode, error: GraphErrorBody): boolean {
  return (
    expected.code === error.code &&
    (expected.subcode === undefined || expected.subcode === error.error_subcode)
  );
}

function graphErrorOf(body: unknown): GraphErrorBody | undefined {
  if (!body || typeof body !== 'object') return undefined;
  const error = (body as { error?: unknown }).error;
  return error && typeof error === 'object' ? (error as GraphErrorBody) : undefined;
}
