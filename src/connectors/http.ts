import { STATUS_CODES } from 'node:http';
import { DestinationError } from './types';

/**
 * Shared HTTP plumbing for destinations that speak JSON over HTTP. It owns the retry policy so
 * every connector behaves the same way: 429 waits as long as the server asks, 5xx and network
 * failures back off exponentially with full jitter, credentials problems stop the refresh, and
 * any other 4xx fails only the batch in hand.
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
  /** What an operator should check, per status, appended to fatal messages (e.g. 401: 'bad token …'). */
  hints?: Partial<Record<number, string>>;
  /** Attempts for 5xx and network errors, the first one included. */
  maxAttempts?: number;
  /** Times a 429 is waited for before giving up on this request. */
  maxRateLimitWaits?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Cap on any single wait, including a server-requested Retry-After. */
  maxWaitMs?: number;
  /** Per-attempt timeout; a timed-out attempt counts as a network error. */
  timeoutMs?: number;
  sleep?: Sleep;
  /** Source of randomness for jitter, in [0, 1). */
  random?: () => number;
  /** Awaited before every attempt, retries included: the hook for a calls-per-second limiter. */
  beforeAttempt?: () => Promise<void>;
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

export type Verdict =
  | { kind: 'ok' }
  | { kind: 'rateLimited'; retryAfterMs?: number }
  | { kind: 'retry' }
  | { kind: 'fatal' | 'batch'; message: string };

export interface JsonResponse<T> {
  status: number;
  body: T;
  /** HTTP calls made, retries included. */
  apiCalls: number;
  /** 429 answers that were waited for. */
  rateLimitWaits: number;
}

/** A DestinationError that still reports what the failed request cost, for the run's counters. */
export class HttpDestinationError extends DestinationError {
  constructor(
    message: string,
    kind: DestinationError['kind'],
    status: number | undefined,
    override readonly apiCalls: number,
    override readonly rateLimitWaits: number,
  ) {
    super(message, kind, status);
    this.name = 'HttpDestinationError';
  }
}

const defaults = {
  service: 'http',
  maxAttempts: 5,
  maxRateLimitWaits: 10,
  baseDelayMs: 250,
  maxDelayMs: 10_000,
  maxWaitMs: 60_000,
  timeoutMs: 30_000,
};

/** What one attempt came to: either a final answer or a reason to try again. */
type AttemptResult =
  | { done: true; status: number; body: unknown }
  | { done: false; rateLimited: boolean; retryAfterMs?: number; failure: string; status?: number };

type Options = JsonRequest & typeof defaults;

/**
 * One logical request, retried as the policy above says. Resolves with the parsed JSON body and
 * what it cost; rejects with an HttpDestinationError whose `kind` tells the engine what to do.
 */
export async function requestJson<T = unknown>(request: JsonRequest): Promise<JsonResponse<T>> {
  const options = withDefaults(request);
  const sleep = request.sleep ?? realSleep;
  const random = request.random ?? Math.random;
  let apiCalls = 0;
  let rateLimitWaits = 0;
  let failedAttempts = 0;

  for (;;) {
    await request.beforeAttempt?.();
    apiCalls++;
    let result: AttemptResult;
    try {
      result = await attempt(options);
    } catch (err) {
      if (err instanceof DestinationError) {
        throw new HttpDestinationError(err.message, err.kind, err.status, apiCalls, rateLimitWaits);
      }
      throw err;
    }
    if (result.done) return { status: result.status, body: result.body as T, apiCalls, rateLimitWaits };

    let delayMs: number;
    if (result.rateLimited) {
      if (rateLimitWaits >= options.maxRateLimitWaits) {
        throw giveUp(
          options,
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
        throw giveUp(
          options,
          `${result.failure} (gave up after ${apiCalls} calls)`,
          result,
          apiCalls,
          rateLimitWaits,
        );
      }
      delayMs = fullJitterBackoff(failedAttempts - 1, options.baseDelayMs, options.maxDelayMs, random);
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
    return { done: false, rateLimited: false, failure: `network error: ${networkCause(err)}` };
  }

  const { status } = response;
  const verdict = options.classify?.({ status, headers: response.headers, body: lenientJson(text), text });
  if (verdict) return fromVerdict(options, response, text, verdict);
  if (status === 429) {
    const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'), Date.now());
    return { done: false, rateLimited: true, retryAfterMs, failure: describeStatus(response, text), status };
  }
  // 408 is the server timing out our request: as transient as a 503, despite being a 4xx.
  if (status >= 500 || status === 408) {
    return { done: false, rateLimited: false, failure: describeStatus(response, text), status };
  }
  if (status >= 400) throw clientError(options, response, text);
  return { done: true, status, body: parseSuccessBody(options, response, text) };
}

function fromVerdict(options: Options, response: Response, text: string, verdict: Verdict): AttemptResult {
  const { status } = response;
  switch (verdict.kind) {
    case 'ok':
      return { done: true, status, body: parseSuccessBody(options, response, text) };
    case 'rateLimited':
      return {
        done: false,
        rateLimited: true,
        retryAfterMs: verdict.retryAfterMs,
        failure: describeStatus(response, text),
        status,
      };
    case 'retry':
      return { done: false, rateLimited: false, failure: describeStatus(response, text), status };
    default: {
      const message = `${options.service}: ${verdict.message} (${status} from ${target(options)})`;
      throw new DestinationError(redact(message, options.headers), verdict.kind, status);
    }
  }
}

function lenientJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function clientError(options: Options, response: Response, text: string): DestinationError {
  const { status } = response;
  // Credentials, permissions and addressing problems won't fix themselves: stop the whole refresh.
  const kind = status === 401 || status === 403 || status === 404 ? 'fatal' : 'batch';
  const hint = options.hints?.[status];
  const message = `${describeStatus(response, text, options)}${hint ? ` — ${hint}` : ''}`;
  return new DestinationError(redact(`${options.service}: ${message}`, options.headers), kind, status);
}

function parseSuccessBody(options: Options, response: Response, text: string): unknown {
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text);
  } catch {
    // A 2xx that is not JSON usually means the URL points at something else (a proxy, a web page).
    const message = `${options.service}: ${response.status} from ${target(options)} is not JSON (is the base URL right?): ${text.slice(0, 200)}`;
    throw new DestinationError(redact(message, options.headers), 'fatal', response.status);
  }
}

function giveUp(
  options: Options,
  reason: string,
  last: { status?: number },
  apiCalls: number,
  rateLimitWaits: number,
): HttpDestinationError {
  const message = `${options.service}: ${target(options)}: ${reason}`;
  return new HttpDestinationError(
    redact(message, options.headers),
    'retryable',
    last.status,
    apiCalls,
    rateLimitWaits,
  );
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

/**
 * Spaces calls to at most `callsPerSecond`. Slots are reserved before waiting, so concurrent
 * callers queue up behind each other instead of all firing when the first wait ends.
 */
export function createCallSpacer(
  callsPerSecond: number,
  sleep: Sleep = realSleep,
  now: () => number = Date.now,
): () => Promise<void> {
  const intervalMs = 1000 / callsPerSecond;
  let nextSlot = 0;
  return async () => {
    const current = now();
    const slot = Math.max(current, nextSlot);
    nextSlot = slot + intervalMs;
    if (slot > current) await sleep(slot - current);
  };
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
function redact(message: string, headers: Record<string, string> | undefined): string {
  let result = message;
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (!/^(authorization|x-api-key|api-key)$/i.test(name)) continue;
    for (const secret of [value, value.replace(/^(Bearer|Basic|Token)\s+/i, '')]) {
      if (secret.length >= 4) result = result.split(secret).join('***');
    }
  }
  return result;
}
