import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { counted, countedFailure } from '../helpers/destination-context';
import { HttpDestinationError, requestJson, retryPolicy } from '../../src/connectors/kit/http';
import { QuotaExhaustedError } from '../../src/core/destination';

/** The shared HTTP machinery's destination hook: reading rate limits and errors from the body. */

let server: http.Server;
let url: string;
const answers: { status: number; body: unknown }[] = [];

before(async () => {
  server = http.createServer((_req, res) => {
    const next = answers.shift() ?? { status: 200, body: { ok: true } };
    res.writeHead(next.status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(next.body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/x`;
});
after(() => new Promise<void>((resolve) => server.close(() => resolve())));

// Like Meta: throttling is a 400 with code 17 in the body; code 190 is a bad token.
const classify = ({ body }: { body: unknown }) => {
  const code = (body as { error?: { code?: number } } | undefined)?.error?.code;
  if (code === 17) return { kind: 'rateLimited' as const, retryAfterMs: 1234 };
  if (code === 190) return { kind: 'fatal' as const, message: 'invalid access token' };
  return undefined;
};

test('classify turns a body-coded throttle into a rate-limit wait, then succeeds', async () => {
  answers.push({ status: 400, body: { error: { code: 17 } } }, { status: 200, body: { done: 1 } });
  const waits: number[] = [];
  const { value: response, tallies } = await counted(() =>
    requestJson({
      method: 'POST',
      url,
      body: {},
      classify,
      endpoint: 'post',
      sleep: async (ms) => void waits.push(ms),
    }),
  );
  assert.deepEqual(response.body, { done: 1 });
  assert.deepEqual(tallies, { post: { calls: 2, rateLimited: 1, retried: 0, failed: 0 } });
  assert.deepEqual(waits, [1234]);
});

test('classify can make an answer fatal; undefined falls back to the status policy', async () => {
  answers.push({ status: 400, body: { error: { code: 190 } } });
  await assert.rejects(requestJson({ method: 'GET', url, classify, service: 'meta' }), (error: unknown) => {
    assert.ok(error instanceof HttpDestinationError);
    assert.equal(error.kind, 'fatal');
    assert.match(error.message, /^meta: invalid access token \(400 from GET/);
    return true;
  });
  answers.push({ status: 400, body: { error: { code: 1 } } });
  await assert.rejects(requestJson({ method: 'GET', url, classify }), (error: unknown) => {
    assert.equal((error as HttpDestinationError).kind, 'batch', 'an unclassified 400 fails the batch');
    return true;
  });
});

test('the error carries the body of the answer that ended the request', async () => {
  answers.push({ status: 400, body: { error: { code: 190, detail: 'x' } } });
  await assert.rejects(requestJson({ method: 'GET', url, classify }), (error: unknown) => {
    assert.ok(error instanceof HttpDestinationError);
    assert.deepEqual(error.body, { error: { code: 190, detail: 'x' } });
    return true;
  });
  answers.push({ status: 422, body: { errors: [{ code: 'invalid' }] } });
  await assert.rejects(requestJson({ method: 'GET', url }), (error: unknown) => {
    assert.deepEqual((error as HttpDestinationError).body, { errors: [{ code: 'invalid' }] });
    return true;
  });
});

test('rate limits back off on their own base; give-ups name the last answer in the service vocabulary', async () => {
  answers.push(...Array.from({ length: 3 }, () => ({ status: 400, body: { error: { code: 17 } } })));
  const throttled = ({ body }: { body: unknown }) =>
    (body as { error?: { code?: number } }).error?.code === 17
      ? { kind: 'rateLimited' as const, reason: 'code 17: slow down' }
      : undefined;
  const waits: number[] = [];
  const failure = await countedFailure(() =>
    requestJson({
      endpoint: 'read',
      method: 'GET',
      url,
      classify: throttled,
      service: 'meta',
      rateLimitTerm: 'throttled',
      maxRateLimitWaits: 2,
      baseDelayMs: 10,
      rateLimitBaseDelayMs: 1000,
      random: () => 0.5,
      sleep: async (ms) => void waits.push(ms),
    }),
  );
  const error = failure.error;
  assert.ok(error instanceof HttpDestinationError);
  assert.equal(error.kind, 'retryable');
  // Three calls: two answered "throttled" and waited for, the last one given up on (retried later).
  assert.deepEqual(failure.tallies, { read: { calls: 3, rateLimited: 2, retried: 1, failed: 0 } });
  assert.match(error.message, /^meta: GET .*: still throttled after 2 waits: code 17: slow down$/);
  assert.deepEqual(error.body, { error: { code: 17 } });
  assert.deepEqual(waits, [500, 1000], 'full jitter from rateLimitBaseDelayMs, not baseDelayMs');
});

test('redactValues keeps credentials outside the authorization header out of messages', async () => {
  answers.push({ status: 400, body: { message: 'unknown key pk_secret_123 for dev-token-XYZ' } });
  await assert.rejects(
    requestJson({
      method: 'GET',
      url,
      headers: { authorization: 'Klaviyo-API-Key pk_secret_123', 'developer-token': 'dev-token-XYZ' },
      redactValues: ['pk_secret_123', 'dev-token-XYZ'],
    }),
    (error: unknown) => {
      assert.match((error as Error).message, /unknown key \*\*\* for \*\*\*/);
      return true;
    },
  );
});

test('retryPolicy keeps only the retry knobs, over connector defaults, ignoring undefined', () => {
  const options = { throttle: () => undefined, listId: 'x', baseDelayMs: undefined, maxAttempts: 3 };
  assert.deepEqual(retryPolicy(options, { baseDelayMs: 1000, timeoutMs: 5 }), {
    baseDelayMs: 1000,
    timeoutMs: 5,
    maxAttempts: 3,
  });
});

test('a rate limit that asks for a wait of hours is a used-up quota: no retry, the run pauses until then', async () => {
  // Like Google's daily operations quota: RESOURCE_EXHAUSTED with a retryDelay of hours.
  const hours = { status: 400, body: { error: { code: 17 } } };
  answers.push(hours);
  const waits: number[] = [];
  const started = Date.now();
  const { error, tallies } = await countedFailure(() =>
    requestJson({
      method: 'POST',
      url,
      body: {},
      endpoint: 'post',
      service: 'vendor',
      classify: () => ({ kind: 'rateLimited', retryAfterMs: 3 * 3600_000 }),
      sleep: async (ms) => void waits.push(ms),
    }),
  );
  assert.ok(error instanceof QuotaExhaustedError, String(error));
  assert.match(error.reason, /^vendor: quota used up \(asked to wait 180 min\)/);
  assert.ok(error.resumeAt.getTime() >= started + 3 * 3600_000);
  assert.deepEqual(waits, [], 'nothing was waited for in the activity');
  assert.deepEqual(tallies, { post: { calls: 1, rateLimited: 1, retried: 0, failed: 0 } });

  // A wait within the threshold is still waited for, and the call made again.
  answers.push(hours, { status: 200, body: { done: 1 } });
  const shortWaits: number[] = [];
  const short = await requestJson({
    method: 'POST',
    url,
    body: {},
    classify: ({ status }) => (status === 400 ? { kind: 'rateLimited', retryAfterMs: 600_000 } : undefined),
    sleep: async (ms) => void shortWaits.push(ms),
  });
  assert.deepEqual(short.body, { done: 1 });
  assert.deepEqual(shortWaits, [60_000], 'capped at maxWaitMs, then retried');
});
