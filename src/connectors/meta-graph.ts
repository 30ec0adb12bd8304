import type { z } from 'zod';
import { fullJitterBackoff, HttpDestinationError, realSleep, type Sleep } from './http';
import { DestinationError } from './types';

/**
 * A small client for Meta's Graph API (graph.facebook.com), shared by Meta destinations.
 *
 * It exists because Graph does not speak plain HTTP status semantics: throttling arrives as a
 * 400/403 whose JSON body carries error code 4, 17, 32, 613 or 80000-80014 (80003 for custom
 * audiences), and Meta says how long to stay away in the X-Business-Use-Case-Usage header. The
 * shared `requestJson` classifies by status only, so this loop reuses its backoff pieces
 * (full-jitter exponential backoff, HttpDestinationError with the call's cost) around its own
 * classification:
 *
 *   throttled (codes above, or 429)     → wait (Meta's estimate, else backoff), count the wait
 *   5xx, is_transient, network error    → back off with jitter, retry, finally 'retryable'
 *   credentials (102, 104, 190, 10, 200, 270, 294), listed fatal code/subcode pairs → 'fatal'
 *   anything else                        → 'batch' (this call's records fail, the run goes on)
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
  constructor(
    message: string,
    kind: DestinationError['kind'],
    status: number | undefined,
    apiCalls: number,
    rateLimitWaits: number,
    readonly code?: number,
    readonly subcode?: number,
  ) {
    super(message, kind, status, apiCalls, rateLimitWaits);
    this.name = 'MetaGraphError';
  }

  is(code: number, subcode?: number): boolean {
    return this.code === code && (subcode === undefined || this.subcode === subcode);
  }
}

export interface GraphRetryOptions {
  sleep?: Sleep;
  /** Source of randomness for jitter, in [0, 1). */
  random?: () => number;
  /** Attempts for 5xx, transient and network errors, the first one included. */
  maxAttempts?: number;
  /** Throttling answers waited for before giving up on a call. */
  maxRateLimitWaits?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Backoff when throttled and Meta gives no estimate (it blocks for a minute or more). */
  rateLimitBaseDelayMs?: number;
  rateLimitMaxDelayMs?: number;
  /** Cap on any single wait, Meta's own estimate included. */
  maxWaitMs?: number;
  /** Per-attempt timeout; a timed-out attempt counts as a network error. */
  timeoutMs?: number;
}

const retryDefaults: Required<Omit<GraphRetryOptions, 'sleep' | 'random'>> = {
  maxAttempts: 5,
  maxRateLimitWaits: 10,
  baseDelayMs: 250,
  maxDelayMs: 10_000,
  rateLimitBaseDelayMs: 2_000,
  rateLimitMaxDelayMs: 300_000,
  maxWaitMs: 900_000,
  timeoutMs: 60_000,
};

export interface GraphClientConfig {
  /** Prefix of messages, e.g. the destination type. */
  service: string;
  /** `https://graph.facebook.com/v25.0`. */
  baseUrl: string;
  /** The token, resolved lazily; throws a fatal DestinationError when the secret is missing. */
  accessToken: () => string;
  /** Runs one logical call (retries included) under the account's throttle. */
  schedule: <T>(work: () => Promise<T>) => Promise<T>;
  /** What to check when the token is refused. */
  credentialsHint: string;
  /** More errors that stop the refresh, with what to do about them. */
  fatalErrors?: { code: number; subcode?: number; hint: (path: string) => string }[];
  retry?: GraphRetryOptions;
}

export interface GraphCall {
  method: 'GET' | 'POST' | 'DELETE';
  /** Below the version, e.g. `1234/users`. */
  path: string;
  /** Sent as JSON. */
  body?: unknown;
}

export interface GraphResult<T> {
  body: T;
  /** HTTP calls made, retries included. */
  apiCalls: number;
  /** Throttling answers waited for. */
  rateLimitWaits: number;
}

type Attempt =
  | { done: true; body: unknown }
  | { done: false; rateLimited: boolean; waitMs?: number; failure: string; status?: number };

export interface GraphClient {
  /** One logical call, retried per the policy above, its answer checked against `schema`. */
  request<T>(call: GraphCall, schema: z.ZodType<T>): Promise<GraphResult<T>>;
}

export function createGraphClient(config: GraphClientConfig): GraphClient {
  const retry = { ...retryDefaults, ...definedOnly(config.retry ?? {}) };
  const sleep = config.retry?.sleep ?? realSleep;
  const random = config.retry?.random ?? Math.random;

  async function request<T>(call: GraphCall, schema: z.ZodType<T>): Promise<GraphResult<T>> {
    const result = await config.schedule(() => withRetries(call));
    const parsed = schema.safeParse(result.body);
    if (!parsed.success) {
      const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
      throw new MetaGraphError(
        `${config.service}: unexpected answer from ${target(call)} (is the Graph URL right?): ${issues.join('; ')}`,
        'fatal',
        undefined,
        result.apiCalls,
        result.rateLimitWaits,
      );
    }
    return { ...result, body: parsed.data };
  }

  async function withRetries(call: GraphCall): Promise<GraphResult<unknown>> {
    let apiCalls = 0;
    let rateLimitWaits = 0;
    let failures = 0;
    for (;;) {
      apiCalls++;
      const attempt = await attemptOnce(call).catch((err: unknown) => {
        // Fatal and batch errors leave at once, carrying what the call cost so far.
        if (!(err instanceof MetaGraphError)) throw err;
        throw new MetaGraphError(
          err.message,
          err.kind,
          err.status,
          apiCalls,
          rateLimitWaits,
          err.code,
          err.subcode,
        );
      });
      if (attempt.done) return { body: attempt.body, apiCalls, rateLimitWaits };
      let waitMs: number;
      if (attempt.rateLimited) {
        if (rateLimitWaits >= retry.maxRateLimitWaits) {
          throw giveUp(call, `still throttled after ${rateLimitWaits} waits: ${attempt.failure}`, attempt, {
            apiCalls,
            rateLimitWaits,
          });
        }
        waitMs =
          attempt.waitMs ??
          fullJitterBackoff(rateLimitWaits, retry.rateLimitBaseDelayMs, retry.rateLimitMaxDelayMs, random);
        rateLimitWaits++;
      } else {
        failures++;
        if (failures >= retry.maxAttempts) {
          throw giveUp(call, `${attempt.failure} (gave up after ${apiCalls} calls)`, attempt, {
            apiCalls,
            rateLimitWaits,
          });
        }
        waitMs = fullJitterBackoff(failures - 1, retry.baseDelayMs, retry.maxDelayMs, random);
      }
      await sleep(Math.min(waitMs, retry.maxWaitMs));
    }
  }

  async function attemptOnce(call: GraphCall): Promise<Attempt> {
    let response: Response;
    let text: string;
    try {
      response = await fetch(`${config.baseUrl}/${call.path}`, {
        method: call.method,
        headers: {
          accept: 'application/json',
          ...(call.body === undefined ? {} : { 'content-type': 'application/json' }),
          // A header rather than ?access_token=, so the token stays out of URLs and their logs.
          authorization: `Bearer ${config.accessToken()}`,
        },
        body: call.body === undefined ? undefined : JSON.stringify(call.body),
        signal: AbortSignal.timeout(retry.timeoutMs),
      });
      text = await response.text();
    } catch (err) {
      if (err instanceof DestinationError) throw err; // the secret could not be resolved
      // Connection refused or reset, timeout: the request may or may not have arrived.
      return { done: false, rateLimited: false, failure: `network error: ${networkCause(err)}` };
    }
    const { status } = response;
    const body = parseJson(text);
    const error = graphErrorOf(body);
    if (status < 400 && !error) {
      if (body === undefined) throw fail(call, 'fatal', status, `answer is not JSON: ${text.slice(0, 200)}`);
      return { done: true, body };
    }
    const failure = describeFailure(status, error, text);
    if (status === 429 || (error?.code !== undefined && GRAPH_RATE_LIMIT_CODES.has(error.code))) {
      return { done: false, rateLimited: true, waitMs: regainAccessMs(response.headers), failure, status };
    }
    if (status >= 500 || error?.is_transient === true)
      return { done: false, rateLimited: false, failure, status };
    throw classify(call, status, error, failure);
  }

  /** A refusal that retrying cannot fix: the whole refresh (fatal) or just this call (batch). */
  function classify(call: GraphCall, status: number, error: GraphErrorBody | undefined, failure: string) {
    const code = error?.code;
    const subcode = error?.error_subcode;
    const listed = config.fatalErrors?.find(
      (f) => f.code === code && (f.subcode === undefined || f.subcode === subcode),
    );
    let kind: DestinationError['kind'] = 'batch';
    let hint: string | undefined;
    if (listed) [kind, hint] = ['fatal', listed.hint(call.path)];
    else if (code !== undefined && CREDENTIAL_CODES.has(code))
      [kind, hint] = ['fatal', config.credentialsHint];
    else if (status === 401 || status === 403 || status === 404) kind = 'fatal';
    return fail(call, kind, status, `${failure}${hint ? ` — ${hint}` : ''}`, code, subcode);
  }

  function fail(
    call: GraphCall,
    kind: DestinationError['kind'],
    status: number | undefined,
    reason: string,
    code?: number,
    subcode?: number,
  ): MetaGraphError {
    return new MetaGraphError(
      redact(`${config.service}: ${target(call)}: ${reason}`),
      kind,
      status,
      1,
      0,
      code,
      subcode,
    );
  }

  function giveUp(
    call: GraphCall,
    reason: string,
    last: { status?: number },
    cost: { apiCalls: number; rateLimitWaits: number },
  ): MetaGraphError {
    const message = redact(`${config.service}: ${target(call)}: ${reason}`);
    return new MetaGraphError(message, 'retryable', last.status, cost.apiCalls, cost.rateLimitWaits);
  }

  function target(call: GraphCall): string {
    return `${call.method} ${config.baseUrl}/${call.path}`;
  }

  /** Belt and braces: never let the token come back in a message, even if the server echoes it. */
  function redact(message: string): string {
    let token: string;
    try {
      token = config.accessToken();
    } catch {
      return message;
    }
    return token.length >= 4 ? message.split(token).join('***') : message;
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

/** "400 Graph error 613/1487742 (OAuthException): There have been too many calls … [fbtrace_id …]" */
function describeFailure(status: number, error: GraphErrorBody | undefined, text: string): string {
  if (!error) return `${status}: ${text.trim().slice(0, 200)}`;
  const code = `${error.code ?? '?'}${error.error_subcode ? `/${error.error_subcode}` : ''}`;
  const detail = [error.message, error.error_user_msg].filter(Boolean).join(': ');
  const trace = error.fbtrace_id ? ` [fbtrace_id ${error.fbtrace_id}]` : '';
  return `${status} Graph error ${code}${error.type ? ` (${error.type})` : ''}: ${detail}${trace}`;
}

function parseJson(text: string): unknown {
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function graphErrorOf(body: unknown): GraphErrorBody | undefined {
  if (!body || typeof body !== 'object') return undefined;
  const error = (body as { error?: unknown }).error;
  return error && typeof error === 'object' ? (error as GraphErrorBody) : undefined;
}

function networkCause(err: unknown): string {
  if (err instanceof Error) {
    if (err.name === 'TimeoutError') return 'timed out';
    const cause = (err as Error & { cause?: unknown }).cause;
    return cause instanceof Error ? cause.message : err.message;
  }
  return String(err);
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
