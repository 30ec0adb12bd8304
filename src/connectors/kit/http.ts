import { STATUS_CODES } from 'node:http';
import { requestRefusal } from './request-guard';
import { countCall } from '../../core/api-calls';
import { DestinationError, QuotaExhaustedError } from '../../core/destination';

/**
 * Shared HTTP plumbing for destinations that speak JSON over HTTP. It owns the retry policy so
 * every connector behaves the same way: 429 waits as long as the server asks, 5xx and network
 * failures back off exponentially with full jitter, credentials problems stop the refresh, and
 * any other 4xx fails only the batch in hand. APIs that say these things in the body instead
 * (Meta's error codes, Google's quota errors) read their answers through `classify`.
 */

export type Sleep = (ms: number) => Promise<void>;

export const realSleep: Sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export interface JsonRequest {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  url: string;
  headers?: Record<string, string>;
  /** Sent as JSON when present. */
  body?: unknown;
  /** Prefix of error messages, e.g. the destination type ('http-list'). */
  service?: string;
  /**
   * The name every attempt of this request is counted under (`users:add`, `jobs:run`, …) in the
   * run's calls and the metrics; default `request`.
   */
  endpoint?: string;
  /** What an operator should check, per status, appended to fatal messages (e.g. 401: 'bad token …'). */
  hints?: Partial<Record<number, string>>;
  /** Attempts for 5xx and network errors, the first one included. */
  maxAttempts?: number;
  /** Times a 429 is waited for before giving up on this request. */
  maxRateLimitWaits?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /**
   * Backoff for a rate limit that comes without a wait (default: baseDelayMs and maxDelayMs).
   * Some services block for minutes once throttled, where a 5xx passes in a second.
   */
  rateLimitBaseDelayMs?: number;
  rateLimitMaxDelayMs?: number;
  /** Cap on any single wait, including a server-requested Retry-After. */
  maxWaitMs?: number;
  /**
   * A rate limit that asks for a longer wait than this is a used-up quota (Google's daily
   * operations, a Retry-After of hours): no retry can pass sooner, so the run pauses until then
   * (QuotaExhaustedError) instead of retrying early. Default 15 minutes.
   */
  pauseBeyondMs?: number;
  /** Per-attempt timeout; a timed-out attempt counts as a network error. */
  timeoutMs?: number;
  sleep?: Sleep;
  /** Source of randomness for jitter, in [0, 1). */
  random?: () => number;
  /** Awaited before every attempt, retries included: the hook for a calls-per-second limiter. */
  beforeAttempt?: () => Promise<void>;
  /**
   * Credentials that must never appear in a message, besides the values of the authorization
   * and API-key headers (which are always redacted): a key inside a Basic header, a token under a
   * scheme or header of the service's own (`Klaviyo-API-Key …`, `developer-token`).
   */
  redactValues?: string[];
  /** The service's own word for a rate limit, in messages (Meta's documentation says 'throttled'). */
  rateLimitTerm?: string;
  /**
   * The destination's own reading of an answer, before the status-based policy: for APIs that
   * signal rate limits or errors in the body (error codes, retry delays, quota policy names).
   * Return undefined to fall back to the default handling.
   */
  classify?: (answer: Answer) => Verdict | undefined;
}

/** One HTTP answer as `classify` sees it (`body` is the parsed JSON, or undefined). */
export interface Answer {
  status: number;
  headers: Headers;
  body: unknown;
  text: string;
}

/**
 * What to do with an answer. `reason` describes the answer in the message when retries run out
 * (default: the status and the server's message); `message` is the whole explanation of a refusal.
 */
export type Verdict =
  | { kind: 'ok' }
  | { kind: 'rateLimited'; retryAfterMs?: number; reason?: string }
  | { kind: 'retry'; reason?: string }
  /** A quota that only resets at `resumeAt` (a daily limit): not retried; the run pauses until then. */
  | { kind: 'quotaExhausted'; resumeAt: Date; reason: string }
  | { kind: 'fatal' | 'batch'; message: string };

export interface JsonResponse<T> {
  status: number;
  body: T;
}

/**
 * A DestinationError with the parsed JSON body of the answer that ended it (if any), for callers
 * that react to the error codes a service puts there. What the request cost was counted as it
 * went (countCall), so the error need not carry it.
 */
export class HttpDestinationError extends DestinationError {
  constructor(
    message: string,
    kind: DestinationError['kind'],
    status: number | undefined,
    readonly body?: unknown,
  ) {
    super(message, kind, status);
    this.name = 'HttpDestinationError';
  }
}

/** The knobs of the retry policy, as connectors pass them through for tests and tuning. */
export type RetryOptions = Pick<
  JsonRequest,
  | 'sleep'
  | 'random'
  | 'maxAttempts'
  | 'maxRateLimitWaits'
  | 'baseDelayMs'
  | 'maxDelayMs'
  | 'rateLimitBaseDelayMs'
  | 'rateLimitMaxDelayMs'
  | 'maxWaitMs'
  | 'pauseBeyondMs'
  | 'timeoutMs'
>;

const retryKeys = [
  'sleep',
  'random',
  'maxAttempts',
  'maxRateLimitWaits',
  'baseDelayMs',
  'maxDelayMs',
  'rateLimitBaseDelayMs',
  'rateLimitMaxDelayMs',
  'maxWaitMs',
  'pauseBeyondMs',
  'timeoutMs',
] as const satisfies readonly (keyof RetryOptions)[];

/**
 * The retry knobs among a connector's options (which also hold its throttle, list id, …), over
 * the connector's own defaults. A knob given as undefined counts as not given.
 */
export function retryPolicy(options: RetryOptions, connectorDefaults: RetryOptions = {}): RetryOptions {
  const policy: Record<string, unknown> = { ...connectorDefaults };
  for (const key of retryKeys) if (options[key] !== undefined) policy[key] = options[key];
  return policy as RetryOptions;
}

const defaults = {
  service: 'http',
  maxAttempts: 5,
  maxRateLimitWaits: 10,
  baseDelayMs: 250,
  maxDelayMs: 10_000,
  maxWaitMs: 60_000,
  pauseBeyondMs: 15 * 60_000,
  timeoutMs: 30_000,
  rateLimitTerm: 'rate limited',
};

type Options = JsonRequest & typeof defaults;

/** What one attempt came to: the answer, a reason to try again, or a refusal that retrying cannot fix. */
type AttemptResult =
  | { outcome: 'done'; status: number; body: unknown }
  | {
      outcome: 'again';
      rateLimited: boolean;
      retryAfterMs?: number;
      failure: string;
      status?: number;
      body?: unknown;
    }
  | { outcome: 'refused'; kind: 'fatal' | 'batch'; message: string; status: number; body: unknown }
  | { outcome: 'quotaExhausted'; resumeAt: Date; reason: string };

/**
 * One logical request, retried as the policy above says. Resolves with the parsed JSON body and
 * what it cost; rejects with an HttpDestinationError whose `kind` tells the engine what to do.
 */
export async function requestJson<T = unknown>(request: JsonRequest): Promise<JsonResponse<T>> {
  const options = withDefaults(request);
  const sleep = request.sleep ?? realSleep;
  const random = request.random ?? Math.random;
  const endpoint = request.endpoint ?? 'request';
  let apiCalls = 0;
  let rateLimitWaits = 0;
  let failedAttempts = 0;
  // Every attempt counts once; the one that ends in an error counts as failed when the failure
  // stands, and as retried when Temporal will try the activity again.
  const fail = (
    message: string,
    kind: DestinationError['kind'],
    last: { status?: number; body?: unknown },
  ) => {
    if (apiCalls > 0) countCall(endpoint, kind === 'retryable' ? 'retried' : 'failed');
    return new HttpDestinationError(
      redact(`${options.service}: ${message}`, options),
      kind,
      last.status,
      last.body,
    );
  };

  // Whoever runs this call (the worker, for a tenant) may hold it to the hosts it may reach.
  const refused = requestRefusal(options.url);
  if (refused) throw fail(refused, 'fatal', {});
  for (;;) {
    await request.beforeAttempt?.();
    apiCalls++;
    const result = await attempt(options);
    if (result.outcome === 'done') {
      countCall(endpoint, 'ok');
      return { status: result.status, body: result.body as T };
    }
    if (result.outcome === 'refused') throw fail(result.message, result.kind, result);
    if (result.outcome === 'quotaExhausted') {
      countCall(endpoint, 'rate_limited');
      throw new QuotaExhaustedError(redact(`${options.service}: ${result.reason}`, options), result.resumeAt);
    }

    let delayMs: number;
    if (
      result.rateLimited &&
      result.retryAfterMs !== undefined &&
      result.retryAfterMs > options.pauseBeyondMs
    ) {
      countCall(endpoint, 'rate_limited');
      const wait = `asked to wait ${Math.round(result.retryAfterMs / 60_000)} min`;
      throw new QuotaExhaustedError(
        redact(`${options.service}: quota used up (${wait}): ${result.failure}`, options),
        new Date(Date.now() + result.retryAfterMs),
      );
    }
    if (result.rateLimited) {
      if (rateLimitWaits >= options.maxRateLimitWaits) {
        const reason = `still ${options.rateLimitTerm} after ${rateLimitWaits} waits: ${result.failure}`;
        throw fail(`${target(options)}: ${reason}`, 'retryable', result);
      }
      delayMs =
        result.retryAfterMs ??
        fullJitterBackoff(
          rateLimitWaits,
          options.rateLimitBaseDelayMs ?? options.baseDelayMs,
          options.rateLimitMaxDelayMs ?? options.maxDelayMs,
          random,
        );
      rateLimitWaits++;
      countCall(endpoint, 'rate_limited');
    } else {
      failedAttempts++;
      if (failedAttempts >= options.maxAttempts) {
        const reason = `${result.failure} (gave up after ${apiCalls} calls)`;
        throw fail(`${target(options)}: ${reason}`, 'retryable', result);
      }
      delayMs = fullJitterBackoff(failedAttempts - 1, options.baseDelayMs, options.maxDelayMs, random);
      countCall(endpoint, 'retried');
    }
    await sleep(Math.min(delayMs, options.maxWaitMs));
  }
}

/** Defaults fill in absent and explicitly undefined settings alike. */
function withDefaults(request: JsonRequest): Options {
  const given = Object.fromEntries(Object.entries(request).filter(([, value]) => value !== undefined));
  return { ...defaults, ...(given as JsonRequest) };
}

async function attempt(options: Options): Promise<AttemptResult> {
  let response: Response;
  let text: string;
  try {
    response = await fetch(options.url, {
      // A redirect could lead anywhere (another host, the worker's own endpoints): never follow one.
      redirect: 'manual',
      method: options.method,
      headers: {
        accept: 'application/json',
        ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
        ...options.headers,
      },
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      signal: AbortSignal.timeout(options.timeoutMs),
    });
    text = await response.text();
  } catch (err) {
    // Connection refused or reset, DNS failure, timeout: the request may or may not have arrived.
    return { outcome: 'again', rateLimited: false, failure: `network error: ${networkCause(err)}` };
  }

  const { status } = response;
  if (status >= 300 && status < 400) {
    const message = `${status} from ${target(options)}: redirects are not followed (to ${redirectOrigin(response)}); set the destination's URL to the address that answers`;
    return { outcome: 'refused', kind: 'fatal', message, status, body: undefined };
  }
  const body = lenientJson(text);
  const verdict = options.classify?.({ status, headers: response.headers, body, text });
  if (verdict) return fromVerdict(options, response, text, body, verdict);
  if (status === 429) {
    const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'), Date.now());
    const failure = describeStatus(response, text);
    return { outcome: 'again', rateLimited: true, retryAfterMs, failure, status, body };
  }
  // 408 is the server timing out our request: as transient as a 503, despite being a 4xx.
  if (status >= 500 || status === 408) {
    return { outcome: 'again', rateLimited: false, failure: describeStatus(response, text), status, body };
  }
  if (status >= 400) return clientError(options, response, text, body);
  return success(options, response, text, body);
}

function fromVerdict(
  options: Options,
  response: Response,
  text: string,
  body: unknown,
  verdict: Verdict,
): AttemptResult {
  const { status } = response;
  switch (verdict.kind) {
    case 'ok':
      return success(options, response, text, body);
    case 'rateLimited':
    case 'retry':
      return {
        outcome: 'again',
        rateLimited: verdict.kind === 'rateLimited',
        retryAfterMs: verdict.kind === 'rateLimited' ? verdict.retryAfterMs : undefined,
        failure: verdict.reason ?? describeStatus(response, text),
        status,
        body,
      };
    case 'quotaExhausted':
      return { outcome: 'quotaExhausted', resumeAt: verdict.resumeAt, reason: verdict.reason };
    default: {
      const message = `${verdict.message} (${status} from ${target(options)})`;
      return { outcome: 'refused', kind: verdict.kind, message, status, body };
    }
  }
}

/** The parsed body, or undefined when it is not JSON (an empty body included). */
function lenientJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function clientError(options: Options, response: Response, text: string, body: unknown): AttemptResult {
  const { status } = response;
  // Credentials, permissions and addressing problems won't fix themselves: stop the whole refresh.
  const kind = status === 401 || status === 403 || status === 404 ? 'fatal' : 'batch';
  const hint = options.hints?.[status];
  const message = `${describeStatus(response, text, options)}${hint ? ` — ${hint}` : ''}`;
  return { outcome: 'refused', kind, message, status, body };
}

function success(options: Options, response: Response, text: string, body: unknown): AttemptResult {
  const { status } = response;
  if (text.trim() === '') return { outcome: 'done', status, body: {} };
  if (body !== undefined) return { outcome: 'done', status, body };
  // A 2xx that is not JSON usually means the URL points at something else (a proxy, a web page).
  const message = `${status} from ${target(options)} is not JSON (is the base URL right?): ${text.slice(0, 200)}`;
  return { outcome: 'refused', kind: 'fatal', message, status, body };
}

function target(options: Options): string {
  return `${options.method} ${safeUrl(options.url)}`;
}

/** "401 Unauthorized from POST https://…: invalid token" — with the server's own explanation. */
function describeStatus(response: Response, text: string, options?: Options): string {
  const reason = response.statusText || STATUS_CODES[response.status] || '';
  const detail = serverMessage(text);
  const from = options ? ` from ${target(options)}` : '';
  return `${response.status} ${reason}`.trim() + from + (detail ? `: ${detail}` : '');
}

/** The `message` or `error` field of a JSON error body, else the start of the raw body. */
export function serverMessage(text: string): string {
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed && typeof parsed === 'object') {
      const { message, error } = parsed as Record<string, unknown>;
      if (typeof message === 'string') return message;
      if (typeof error === 'string') return error;
      if (
        error &&
        typeof error === 'object' &&
        typeof (error as Record<string, unknown>).message === 'string'
      ) {
        return (error as Record<string, string>).message!;
      }
    }
  } catch {
    // Not JSON: fall through to the raw text.
  }
  return text.trim().slice(0, 200);
}

/**
 * Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), in milliseconds;
 * undefined when absent or unreadable, so the caller falls back to its own backoff.
 */
export function parseRetryAfter(header: string | null, nowMs: number): number | undefined {
  if (header === null || header.trim() === '') return undefined;
  const value = header.trim();
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const date = Date.parse(value);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - nowMs);
}

/**
 * Exponential backoff with full jitter (a uniform wait between 0 and the exponential ceiling), so
 * many workers retrying at once spread out instead of hammering the server in lockstep.
 */
export function fullJitterBackoff(
  failedAttempts: number,
  baseDelayMs: number,
  maxDelayMs: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(maxDelayMs, baseDelayMs * 2 ** failedAttempts);
  return Math.floor(random() * ceiling);
}

function networkCause(err: unknown): string {
  if (err instanceof Error) {
    if (err.name === 'TimeoutError') return 'timed out';
    const cause = (err as Error & { cause?: unknown }).cause;
    if (cause instanceof Error) return cause.message;
    return err.message;
  }
  return String(err);
}

/** Where a redirect points, as an origin only (its path and query could carry anything). */
function redirectOrigin(response: Response): string {
  const location = response.headers.get('location');
  if (!location) return 'nowhere given';
  try {
    return new URL(location, response.url || undefined).origin;
  } catch {
    return 'an unparsable location';
  }
}

/** The URL without any user:password part, safe for messages. */
function safeUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    return parsed.toString();
  } catch {
    return url;
  }
}

/** Belt and braces: never let a credential sent in a header come back in a message. */
function redact(message: string, options: Options): string {
  const secrets = [...(options.redactValues ?? [])];
  for (const [name, value] of Object.entries(options.headers ?? {})) {
    if (!/^(authorization|x-api-key|api-key)$/i.test(name)) continue;
    secrets.push(value, value.replace(/^(Bearer|Basic|Token)\s+/i, ''));
  }
  let result = message;
  for (const secret of secrets) if (secret.length >= 4) result = result.split(secret).join('***');
  return result;
}
