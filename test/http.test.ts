import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { HttpDestinationError, requestJson } from '../src/connectors/http';

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
  const response = await requestJson({
    method: 'POST',
    url,
    body: {},
    classify,
    sleep: async (ms) => void waits.push(ms),
  });
  assert.deepEqual(response.body, { done: 1 });
  assert.equal(response.rateLimitWaits, 1);
  assert.equal(response.apiCalls, 2);
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
