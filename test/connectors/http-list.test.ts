import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  createHttpListDestination,
  httpListConfigSchema,
  type HttpListConfigInput,
} from '../../src/connectors/http-list/index';
import { HttpDestinationError, parseRetryAfter, type RetryOptions } from '../../src/connectors/kit/http';
import {
  capabilitiesOf,
  QuotaExhaustedError,
  type Attributes,
  type Destination,
  type SecretResolver,
} from '../../src/core/destination';
import { startHttpListEmulator, type HttpListEmulator } from '../../src/connectors/http-list/emulator';
import { counted, countedFailure, testContext } from '../helpers/destination-context';
import {
  allKeys,
  closeAfterEach,
  fixedSecrets,
  rejection,
  sampleMembers as members,
} from '../helpers/destinations';
import { freePort, startFakeServer } from '../helpers/fake-http';

const token = 'tok-3f9a1c7e5b';
const secrets = fixedSecrets({ LIST_TOKEN: token });
const track = closeAfterEach();

/** A destination with every method (the default `supports`): add, remove, truncate, listMembers. */
type FullDestination = Destination &
  Required<Pick<Destination, 'add' | 'remove' | 'truncate' | 'listMembers'>>;

function full(dest: Destination): FullDestination {
  assert.ok(dest.add && dest.remove && dest.truncate && dest.listMembers, 'every operation supported');
  return dest as FullDestination;
}

/** An http-list destination built the way the worker builds it, with a sleep that only records. */
function httpList(
  config: HttpListConfigInput,
  secretResolver: SecretResolver = secrets,
  retry: RetryOptions = {},
): { dest: FullDestination; waits: number[] } {
  const { context, waits } = testContext(secretResolver, { retry });
  const dest = createHttpListDestination(config, context);
  return { dest: dest as FullDestination, waits };
}

async function setup(
  config: Partial<HttpListConfigInput> = {},
  emulator: { maxRecordsPerCall?: number; lists?: string[] } = {},
  secretResolver = secrets,
): Promise<{ emu: HttpListEmulator; dest: FullDestination; waits: number[] }> {
  const emu = track(await startHttpListEmulator({ token, ...emulator }));
  const { dest, waits } = httpList(
    { type: 'http-list', baseUrl: emu.url, listId: 'audience', tokenSecret: 'LIST_TOKEN', ...config },
    secretResolver,
    { baseDelayMs: 100 },
  );
  return { emu, dest: track(dest), waits };
}

const noCalls = { failed: 0, rateLimited: 0, retried: 0 };

describe('http-list destination against the emulator', () => {
  test('add, upsert, remove, truncate and list round trip', async () => {
    const { emu, dest } = await setup();
    assert.deepEqual(capabilitiesOf(full(dest)), {
      add: true,
      updateAttributes: true,
      remove: true,
      truncate: true,
      listMembers: true,
      createList: false,
    });

    const added = await counted(() => dest.add(members('c@x', 'a@x', 'b@x')));
    assert.deepEqual(added.value, { rejected: [] });
    assert.deepEqual(added.tallies, { add: { calls: 1, ...noCalls } });
    assert.deepEqual(emu.members('audience').get('a@x'), { rank: 1, vip: false, note: null });

    await dest.add([{ key: 'a@x', attributes: { rank: 99 } }]);
    assert.deepEqual(emu.members('audience').get('a@x'), { rank: 99 });
    assert.deepEqual((await dest.listMembers(null, 10)).keys, ['a@x', 'b@x', 'c@x']);

    // Removing a key the list never had is fine: removes are idempotent.
    const removed = await counted(() => dest.remove(['b@x', 'never@x']));
    assert.deepEqual(removed.value, { rejected: [] });
    assert.deepEqual(removed.tallies, { remove: { calls: 1, ...noCalls } });
    assert.deepEqual([...emu.members('audience').keys()].sort(), ['a@x', 'c@x']);

    const truncated = await counted(() => dest.truncate());
    assert.deepEqual(truncated.tallies, { truncate: { calls: 1, ...noCalls } });
    assert.equal(emu.members('audience').size, 0);
    assert.deepEqual(await dest.listMembers(null, 10), { keys: [], next: null });

    const stats = emu.stats();
    assert.deepEqual(stats.calls, { add: 2, remove: 1, truncate: 1, list: 2 });
    assert.deepEqual(stats.recordsReceived, { add: 4, remove: 2, truncate: 0, list: 0 });
  });

  test('recordsPerCall is the limit the engine holds batches to: one batch, one call', async () => {
    const { emu, dest } = await setup({ recordsPerCall: 2 });
    assert.equal(dest.limits.recordsPerCall, 2);
    const { calls } = await counted(() => dest.add(members('a', 'b')));
    assert.equal(calls, 1);
    assert.equal(emu.stats().calls.add, 1);
    assert.equal(emu.members('audience').size, 2);
  });

  test('pages through more than one page in key order, with an encoded list id', async () => {
    const listId = 'list/ü 1:x';
    const { emu, dest } = await setup({ listId });
    const keys = Array.from({ length: 25 }, (_, i) => `k${String(i).padStart(2, '0')}`);
    await dest.add(members(...[...keys].reverse()));
    assert.equal(emu.members(listId).size, 25);

    const { keys: listed, pages } = await allKeys(dest, 10);
    assert.equal(pages, 3);
    assert.deepEqual(listed, keys);
  });

  test('waits for Retry-After on 429 and retries', async () => {
    const { emu, dest, waits } = await setup();
    emu.faults.set({ rateLimit: { calls: 2, retryAfterSeconds: 3 } });
    const outcome = await counted(() => dest.add(members('a@x')));
    assert.deepEqual(waits, [3000, 3000]);
    assert.equal(outcome.rateLimitWaits, 2);
    assert.equal(outcome.calls, 3);
    assert.deepEqual(outcome.tallies, { add: { calls: 3, failed: 0, rateLimited: 2, retried: 0 } });
    assert.equal(emu.members('audience').size, 1);
  });

  test('caps a long Retry-After; one of over 15 minutes pauses the run instead', async () => {
    const { emu, dest, waits } = await setup();
    emu.faults.set({ rateLimit: { calls: 1, retryAfterSeconds: 600 } });
    await dest.add(members('a@x'));
    assert.deepEqual(waits, [60_000]);

    emu.faults.set({ rateLimit: { calls: 1, retryAfterSeconds: 3600 } });
    await assert.rejects(dest.add(members('b@x')), (error: unknown) => {
      assert.ok(error instanceof QuotaExhaustedError, String(error));
      assert.match(error.reason, /http-list: quota used up \(asked to wait 60 min\)/);
      return true;
    });
    assert.deepEqual(waits, [60_000], 'the hour is not waited for inside the activity');
  });

  test('retries 5xx with backoff, then succeeds', async () => {
    const { emu, dest, waits } = await setup();
    emu.faults.set({ serverError: { calls: 2, status: 503 } });
    const outcome = await counted(() => dest.add(members('a@x')));
    // Full jitter with random() = 0.5 and a 100 ms base: half of 100, then half of 200.
    assert.deepEqual(waits, [50, 100]);
    assert.equal(outcome.calls, 3);
    assert.equal(outcome.rateLimitWaits, 0);
    assert.equal(outcome.retried, 2);
    assert.equal(emu.members('audience').size, 1);
  });

  test('persistent 5xx becomes a retryable error after maxAttempts calls', async () => {
    const { emu, dest } = await setup();
    emu.faults.set({ serverError: { calls: 100 } });
    const failure = await countedFailure(() => dest.add(members('a@x')));
    const err = failure.error;
    assert.ok(err instanceof HttpDestinationError);
    assert.equal(err.kind, 'retryable');
    assert.equal(err.status, 500);
    assert.equal(failure.calls, 5);
    assert.equal(emu.stats().calls.add, 5);
    assert.equal(emu.members('audience').size, 0);
  });

  test('network errors are retried, then retryable', async () => {
    const baseUrl = `http://127.0.0.1:${await freePort()}`;
    const { dest, waits } = httpList(
      { type: 'http-list', baseUrl, listId: 'audience', tokenSecret: 'LIST_TOKEN' },
      secrets,
      { maxAttempts: 3 },
    );
    const err = await rejection(dest.add(members('a@x')));
    assert.equal(err.kind, 'retryable');
    assert.match(err.message, /network error/);
    assert.equal(waits.length, 2);
  });

  test('applyThenFail: the change lands but the error surfaces', async () => {
    const { emu, dest } = await setup();
    emu.faults.set({ applyThenFail: { calls: 5 } });
    const err = await rejection(dest.add(members('a@x', 'b@x')));
    assert.equal(err.kind, 'retryable');
    // Delivered but unacknowledged: exactly why re-sending must be safe.
    assert.deepEqual([...emu.members('audience').keys()].sort(), ['a@x', 'b@x']);
  });

  test('applyThenFail once: the retry re-applies idempotently and succeeds', async () => {
    const { emu, dest } = await setup();
    emu.faults.set({ applyThenFail: { calls: 1 } });
    const outcome = await counted(() => dest.add(members('a@x', 'b@x')));
    assert.equal(outcome.calls, 2);
    assert.deepEqual(outcome.value.rejected, []);
    assert.equal(emu.members('audience').size, 2);
    assert.equal(emu.stats().recordsReceived.add, 4);
  });

  test('401 is fatal, names the secret and never shows the token', async () => {
    const { dest } = await setup({ tokenSecret: 'WRONG_TOKEN' }, {}, (name) =>
      name === 'WRONG_TOKEN' ? 'not-the-right-token' : secrets(name),
    );
    const err = await rejection(dest.add(members('a@x')));
    assert.equal(err.kind, 'fatal');
    assert.equal(err.status, 401);
    assert.match(
      err.message,
      /^http-list: 401 Unauthorized from POST http:\/\/.*\/lists\/audience\/members:add/,
    );
    assert.match(err.message, /invalid token/);
    assert.match(err.message, /WRONG_TOKEN/);
    assert.doesNotMatch(err.message, /not-the-right-token/);
  });

  test('a server echoing the token in its error does not leak it into the message', async () => {
    const server = track(
      await startFakeServer((req, res) => {
        res.writeHead(403, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: `token ${req.headers.authorization} may not write` }));
      }),
    );
    const { dest } = httpList({
      type: 'http-list',
      baseUrl: server.url,
      listId: 'l',
      tokenSecret: 'LIST_TOKEN',
    });
    const err = await rejection(dest.remove(['a']));
    assert.equal(err.kind, 'fatal');
    assert.match(err.message, /403 Forbidden/);
    assert.match(err.message, /may not write/);
    assert.ok(!err.message.includes(token), err.message);
  });

  test('a missing secret is fatal and names the secret', async () => {
    const { dest } = await setup({ tokenSecret: 'NOT_SET' });
    const err = await rejection(dest.add(members('a@x')));
    assert.equal(err.kind, 'fatal');
    assert.match(err.message, /NOT_SET/);
  });

  test('an oversized batch fails just the batch, with the server message', async () => {
    const { emu, dest } = await setup({ recordsPerCall: 10 }, { maxRecordsPerCall: 3 });
    const err = await rejection(dest.add(members('a', 'b', 'c', 'd', 'e')));
    assert.equal(err.kind, 'batch');
    assert.equal(err.status, 400);
    assert.match(err.message, /too many records in one call: 5 \(at most 3\)/);
    assert.equal(emu.stats().calls.add, 1, '4xx other than 429 is not retried');
    assert.equal(emu.members('audience').size, 0);
  });

  test('per-record rejections come back in the result of the call', async () => {
    const { emu, dest } = await setup();
    emu.faults.set({ reject: (key) => (key.endsWith('@bad.example') ? 'invalid email domain' : null) });
    const added = await dest.add(members('a@x', 'b@bad.example', 'c@x'));
    assert.deepEqual(added.rejected, [{ key: 'b@bad.example', reason: 'invalid email domain' }]);
    assert.deepEqual([...emu.members('audience').keys()].sort(), ['a@x', 'c@x']);

    const removed = await dest.remove(['a@x', 'z@bad.example']);
    assert.deepEqual(removed.rejected, [{ key: 'z@bad.example', reason: 'invalid email domain' }]);
    assert.deepEqual([...emu.members('audience').keys()], ['c@x']);
  });

  test('operations outside `supports` are absent, so the engine never calls them', async () => {
    const { emu, dest } = await setup({ supports: ['add'] });
    assert.deepEqual(capabilitiesOf(dest), {
      add: true,
      updateAttributes: true,
      remove: false,
      truncate: false,
      listMembers: false,
      createList: false,
    });
    const partial: Destination = dest;
    assert.equal(partial.remove, undefined);
    assert.equal(partial.truncate, undefined);
    assert.equal(partial.listMembers, undefined);
    assert.deepEqual(emu.stats().calls, { add: 0, remove: 0, truncate: 0, list: 0 });

    const removeOnly = httpList({
      type: 'http-list',
      baseUrl: emu.url,
      listId: 'l',
      tokenSecret: 'LIST_TOKEN',
      supports: ['remove'],
    }).dest as Destination;
    assert.equal(capabilitiesOf(removeOnly).add, false);
    assert.equal(capabilitiesOf(removeOnly).updateAttributes, false);
    assert.equal(removeOnly.add, undefined);
  });

  test('callsPerSecond spaces calls out', async () => {
    const { dest } = await setup({ callsPerSecond: 10 });
    assert.equal(dest.limits.callsPerSecond, 10);
    const started = Date.now();
    await dest.add(members('a'));
    await dest.add(members('b'));
    await dest.add(members('c'));
    // The account's throttle lets one call through every 100 ms: the third goes ~200 ms after the first.
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 190, `three calls at 10 per second took ${elapsed} ms`);
  });
});

describe('http-list check()', () => {
  test('reads one member page: the token and the list in one call', async () => {
    const { emu, dest } = await setup({}, { lists: ['audience'] });
    const empty = await counted(() => dest.check());
    assert.match(empty.value, /^http-list list 'audience' at http:\/\/127\.0\.0\.1:\d+ reachable \(empty\)$/);
    assert.deepEqual(empty.tallies, { check: { calls: 1, ...noCalls } });
    await dest.add(members('a@x'));
    assert.match(await dest.check(), /reachable \(has members\)$/);
    assert.deepEqual(emu.stats().calls, { add: 1, remove: 0, truncate: 0, list: 2 });
  });

  test('a list that cannot be read is checked with an add of no records', async () => {
    const { emu, dest } = await setup({ supports: ['add', 'remove'] });
    assert.match(await dest.check(), /reachable \(an empty add was accepted\)$/);
    assert.deepEqual(emu.stats().calls, { add: 1, remove: 0, truncate: 0, list: 0 });
    assert.equal(emu.members('audience').size, 0);
  });

  test('a wrong token is fatal and names the secret to fix', async () => {
    const { dest } = await setup({}, {}, fixedSecrets({ LIST_TOKEN: 'tok-wrong-9b2d' }));
    const err = await rejection(dest.check());
    assert.equal(err.kind, 'fatal');
    assert.equal(err.status, 401);
    assert.match(
      err.message,
      /^http-list: 401 Unauthorized.*bad token — check the secret named in tokenSecret \('LIST_TOKEN'\)/,
    );
    assert.doesNotMatch(err.message, /tok-wrong-9b2d/);
  });

  test('a missing secret is fatal before any call', async () => {
    const { emu, dest } = await setup({ tokenSecret: 'NOT_SET' });
    const err = await rejection(dest.check());
    assert.equal(err.kind, 'fatal');
    assert.match(err.message, /NOT_SET/);
    assert.equal(emu.stats().calls.list, 0);
  });

  test('a list that does not exist is fatal and says to check listId', async () => {
    const { dest } = await setup({ listId: 'gone' }, { lists: ['audience'] });
    const err = await rejection(dest.check());
    assert.equal(err.kind, 'fatal');
    assert.equal(err.status, 404);
    assert.match(
      err.message,
      /no such list: gone — no such endpoint or list — check baseUrl and listId \('gone'\)/,
    );
  });
});

describe('http-list acknowledgements', () => {
  test('records an answer does not acknowledge stay pending, not delivered', async () => {
    const answers = [
      { accepted: 3, rejected: [] },
      { accepted: 1, rejected: [] },
      { accepted: 1, rejected: [{ key: 'b', reason: 'invalid e-mail' }] },
    ];
    const server = track(
      await startFakeServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(answers.shift()));
      }),
    );
    const { dest } = httpList({
      type: 'http-list',
      baseUrl: server.url,
      listId: 'l',
      tokenSecret: 'LIST_TOKEN',
    });
    assert.deepEqual((await dest.add(members('a', 'b', 'c'))).rejected, [], 'all three taken');
    const short = await dest.add(members('a', 'b', 'c'));
    assert.deepEqual(
      short.rejected.map((r) => r.key),
      ['a', 'b', 'c'],
      'one of three taken, and which one is not said: none counts as delivered',
    );
    assert.match(short.rejected[0]!.reason, /^not acknowledged: the list took 1 of the 3 records/);
    const mixed = await dest.add(members('a', 'b', 'c'));
    assert.deepEqual(
      mixed.rejected.map((r) => [r.key, r.reason.split(':')[0]]),
      [
        ['b', 'invalid e-mail'],
        ['a', 'not acknowledged'],
        ['c', 'not acknowledged'],
      ],
    );
  });
});

describe('http-list wire format', () => {
  test('sends exactly the documented requests', async () => {
    const seen: { method: string; url: string; auth: string | undefined; body: string }[] = [];
    const answers: Record<string, unknown> = {
      'members:add': { accepted: 1, rejected: [] },
      'members:remove': { removed: 1, rejected: [] },
      ':truncate': {},
    };
    const server = track(
      await startFakeServer((req, res, body) => {
        seen.push({ method: req.method!, url: req.url!, auth: req.headers.authorization, body });
        const path = req.url!.split('?')[0]!;
        const answer = Object.entries(answers).find(([suffix]) => path.endsWith(suffix))?.[1] ?? {
          keys: ['k1'],
          next: req.url!.includes('cursor=') ? null : 'c/2',
        };
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(answer));
      }),
    );
    const { dest } = httpList({
      type: 'http-list',
      baseUrl: `${server.url}/v1/`,
      listId: 'a b',
      tokenSecret: 'LIST_TOKEN',
    });

    await dest.add([{ key: 'k1', attributes: { n: 1 } }]);
    await dest.remove(['k1']);
    await dest.truncate();
    const first = await dest.listMembers(null, 50);
    await dest.listMembers(first.next, 50);

    assert.deepEqual(
      seen.map(({ method, url, body }) => [method, url, body]),
      [
        ['POST', '/v1/lists/a%20b/members:add', '{"members":[{"key":"k1","attributes":{"n":1}}]}'],
        ['POST', '/v1/lists/a%20b/members:remove', '{"keys":["k1"]}'],
        ['POST', '/v1/lists/a%20b:truncate', ''],
        ['GET', '/v1/lists/a%20b/members?limit=50', ''],
        ['GET', '/v1/lists/a%20b/members?cursor=c%2F2&limit=50', ''],
      ],
    );
    assert.ok(seen.every((request) => request.auth === `Bearer ${token}`));
  });
});

describe('http-list emulator', () => {
  test('failAfter lets k mutating calls through, then fails until cleared', async () => {
    const { emu, dest } = await setup({}, {});
    emu.faults.set({ failAfter: { successfulCalls: 2 } });
    await dest.add(members('a'));
    await dest.listMembers(null, 10); // reads don't count
    await dest.add(members('b'));
    const err = await rejection(dest.add(members('c')));
    assert.equal(err.kind, 'retryable');
    assert.equal(err.status, 503);
    assert.deepEqual([...emu.members('audience').keys()].sort(), ['a', 'b']);
    assert.deepEqual((await dest.listMembers(null, 10)).keys, ['a', 'b']);

    emu.faults.clear('failAfter');
    await dest.add(members('c'));
    assert.equal(emu.members('audience').size, 3);
  });

  test('faults count down per call and can be inspected and cleared', async () => {
    const { emu, dest } = await setup();
    emu.faults.set({ serverError: { calls: 1 }, rateLimit: { calls: 1, retryAfterSeconds: 1 } });
    await dest.add(members('a'));
    assert.deepEqual(emu.faults.get(), {});
    assert.deepEqual(emu.stats().statuses, { 200: 1, 429: 1, 500: 1 });

    emu.faults.set({ serverError: { calls: 3 }, latencyMs: 1 });
    assert.deepEqual(emu.faults.get(), { serverError: { calls: 3 }, latencyMs: 1 });
    emu.faults.clear();
    assert.deepEqual(emu.faults.get(), {});
    emu.resetStats();
    assert.deepEqual(emu.stats().calls, { add: 0, remove: 0, truncate: 0, list: 0 });
  });

  test('answers malformed requests and bad cursors with 400 and a message', async () => {
    const { emu } = await setup();
    const post = (path: string, body: string) =>
      fetch(`${emu.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body });
    const cases: [Promise<Response>, RegExp][] = [
      [post('/lists/l/members:add', '{not json'), /not valid JSON/],
      [post('/lists/l/members:add', '{"members":[{"key":""}]}'), /key must be a non-empty string/],
      [post('/lists/l/members:add', '{"members":[{"key":"a","attributes":{"x":[1]}}]}'), /attributes\.x/],
      [post('/lists/l/members:remove', '{"members":[]}'), /'keys' array/],
      [
        fetch(`${emu.url}/lists/l/members?cursor=garbage&limit=5`, {
          headers: { authorization: `Bearer ${token}` },
        }),
        /invalid cursor/,
      ],
    ];
    for (const [response, message] of cases) {
      const answer = await response;
      assert.equal(answer.status, 400);
      assert.match(((await answer.json()) as { message: string }).message, message);
    }
    const unknown = await post('/nope', '{}');
    assert.equal(unknown.status, 404);
  });

  test('setMembers seeds a list that reads back in byte order', async () => {
    const { emu, dest } = await setup();
    emu.setMembers(
      'audience',
      new Map<string, Attributes>([
        ['é', {}],
        ['b', {}],
        ['B', {}],
        ['a', { x: 1 }],
      ]),
    );
    assert.deepEqual((await allKeys(dest, 2)).keys, ['B', 'a', 'b', 'é']);
    assert.deepEqual(emu.members('audience').get('a'), { x: 1 });
  });
});

describe('http-list config and helpers', () => {
  test('schema applies defaults and rejects bad values', () => {
    const parsed = httpListConfigSchema.parse({
      type: 'http-list',
      baseUrl: 'https://api.example.com',
      listId: 'l',
      tokenSecret: 'T',
    });
    assert.deepEqual(parsed.supports, ['add', 'remove', 'truncate', 'list']);
    assert.equal(parsed.recordsPerCall, 1000);
    const bad = httpListConfigSchema.safeParse({ ...parsed, baseUrl: 'ftp://x', recordsPerCall: 0 });
    assert.equal(bad.success, false);
    assert.deepEqual(bad.error?.issues.map((issue) => issue.path.join('.')).sort(), [
      'baseUrl',
      'recordsPerCall',
    ]);
  });

  test('parseRetryAfter reads seconds and HTTP dates', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    assert.equal(parseRetryAfter('7', now), 7000);
    assert.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:30 GMT', now), 30_000);
    assert.equal(parseRetryAfter('Wed, 31 Dec 2025 23:00:00 GMT', now), 0);
    assert.equal(parseRetryAfter(null, now), undefined);
    assert.equal(parseRetryAfter('soon', now), undefined);
  });
});
