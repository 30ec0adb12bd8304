import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  brazeAttributesConfigSchema,
  createBrazeAttributesDestination,
  type BrazeAttributesConfigInput,
} from '../../src/connectors/braze-attributes/index';
import type { RetryOptions } from '../../src/connectors/kit/http';
import { createSecretStore } from '../../src/tenancy/secrets';
import { saveConnector } from '../../src/core/connector-store';
import { capabilitiesOf, DestinationError, type Member } from '../../src/core/destination';
import {
  startBrazeEmulator,
  type BrazeEmulator,
  type BrazeEmulatorOptions,
} from '../../src/connectors/braze-attributes/emulator';
import {
  BRAZE_SPEC_DOCUMENT,
  MAX_OBJECTS_PER_REQUEST,
  MAX_OBJECTS_PER_REQUEST_MAU_CY_24_25,
  RATE_LIMIT,
} from '../../src/connectors/braze-attributes/vendor-limits';
import { openApiCheck, takeSpecViolations } from '../../src/connectors/kit/vendor-spec';
import { projectRoot } from '../../src/paths';
import { datasetMembers, refreshScenario } from '../helpers/destination-scenario';
import { counted, countedFailure, testContext } from '../helpers/destination-context';
import {
  closeAfterEach,
  type DestinationSetup,
  fixedSecrets,
  rejection,
  startOfNextSecond,
} from '../helpers/destinations';
import { startFakeServer } from '../helpers/fake-http';

const apiKey = 'braze-rest-7d1f0c2a9e';
const FLAG = 'in_deltasync_crm';
const secrets = fixedSecrets({ BRAZE_KEY: apiKey });
const track = closeAfterEach();

async function setup(
  config: Partial<BrazeAttributesConfigInput> = {},
  emulator: Partial<BrazeEmulatorOptions> = {},
  retry: RetryOptions = {},
): Promise<DestinationSetup<BrazeEmulator>> {
  const emu = track(await startBrazeEmulator({ apiKey, ...emulator }));
  const { context, waits } = testContext(secrets, { retry });
  const dest = track(
    createBrazeAttributesDestination(
      {
        type: 'braze-attributes',
        restEndpoint: emu.url,
        apiKeySecret: 'BRAZE_KEY',
        membershipAttribute: FLAG,
        ...config,
      },
      context,
    ),
  );
  return { emu, dest, waits };
}

const userId = (i: number) => `u-${String(i).padStart(4, '0')}`;

function users(count: number, from = 0): Member[] {
  return Array.from({ length: count }, (_, i) => ({
    key: userId(from + i),
    attributes: { first_name: `U${from + i}`, tier: i % 2 ? 'gold' : 'basic', points: from + i },
  }));
}

describe('braze-attributes destination against the emulator', () => {
  test('add sets the attributes and the membership flag; the flagged users are the list', async () => {
    const { emu, dest } = await setup();
    assert.deepEqual(capabilitiesOf(dest), {
      add: true,
      updateAttributes: true,
      remove: true,
      truncate: false,
      listMembers: false,
      createList: false,
    });
    assert.deepEqual(dest.limits, { recordsPerCall: 75, callsPerSecond: 1000 });
    emu.setUsers(new Map([['outsider', { first_name: 'O' }]]));

    const { value: outcome, tallies } = await counted(() => dest.add!(users(2)));
    assert.deepEqual(outcome, { rejected: [] });
    assert.deepEqual(tallies, { 'users/track': { calls: 1, failed: 0, rateLimited: 0, retried: 0 } });
    assert.deepEqual(
      emu.members(FLAG),
      new Map([
        [userId(0), { first_name: 'U0', tier: 'basic', points: 0 }],
        [userId(1), { first_name: 'U1', tier: 'gold', points: 1 }],
      ]),
    );
    assert.deepEqual(emu.users().get(userId(0)), {
      first_name: 'U0',
      tier: 'basic',
      points: 0,
      [FLAG]: true,
    });
    assert.deepEqual(emu.users().get('outsider'), { first_name: 'O' }, 'other users are untouched');
  });

  test('objectsPerRequest is the record limit: a full batch is one request', async () => {
    const { emu, dest } = await setup();
    assert.equal((await counted(() => dest.add!(users(75)))).calls, 1);
    assert.equal(emu.members(FLAG).size, 75);

    const mau = await setup({ objectsPerRequest: 50 }, { maxObjectsPerRequest: 50 });
    assert.equal(mau.dest.limits.recordsPerCall, 50, 'the engine never hands over more than 50');
    assert.equal((await counted(() => mau.dest.add!(users(50)))).calls, 1);
    assert.equal(mau.emu.members(FLAG).size, 50);
    assert.equal(mau.emu.stats().statuses[400], undefined);
  });

  test('an update overwrites attributes, and a null removes one', async () => {
    const { emu, dest } = await setup();
    await dest.add!(users(1));
    await dest.add!([{ key: userId(0), attributes: { first_name: 'Renamed', tier: 'gold', points: null } }]);
    assert.deepEqual(emu.members(FLAG).get(userId(0)), { first_name: 'Renamed', tier: 'gold' });
  });

  test('remove clears the flag (null) in update-only mode: attributes stay, no user is created', async () => {
    const { emu, dest } = await setup();
    await dest.add!(users(3));
    const outcome = await dest.remove!([userId(1), 'never-seen']);
    assert.deepEqual(outcome.rejected, []);
    assert.deepEqual([...emu.members(FLAG).keys()], [userId(0), userId(2)]);
    assert.deepEqual(
      emu.users().get(userId(1)),
      { first_name: 'U1', tier: 'gold', points: 1 },
      'no flag left behind',
    );
    assert.equal(emu.users().has('never-seen'), false);
  });

  test('partial success: indexed errors are record-level rejections, the rest is applied', async () => {
    const { emu, dest } = await setup();
    emu.faults.set({
      reject: (id) =>
        id === userId(3) || id === userId(80) ? 'provided external_id is blacklisted and disallowed' : null,
    });
    const first = await dest.add!(users(75));
    assert.deepEqual(first.rejected, [
      { key: userId(3), reason: 'provided external_id is blacklisted and disallowed' },
    ]);
    const second = await dest.add!(users(25, 75));
    assert.deepEqual(second.rejected, [
      { key: userId(80), reason: 'provided external_id is blacklisted and disallowed' },
    ]);
    assert.equal(emu.members(FLAG).size, 98);
    assert.equal(emu.members(FLAG).has(userId(80)), false, 'the index is mapped within its own request');
  });

  test('objects attributes_processed does not cover stay pending, the rest of the batch is delivered', async () => {
    const { emu, dest } = await setup({ objectsPerRequest: 3 });
    // The first request refuses u-0001 and silently drops u-0002: it processes 1 of the 2 objects
    // it did not refuse, and does not say which. The second request is acknowledged in full.
    emu.faults.set({ shortAck: { calls: 1 }, reject: (id) => (id === userId(1) ? 'invalid' : null) });
    const short = await dest.add!(users(3));
    const whole = await dest.add!(users(3, 3));
    const notAcknowledged =
      'not acknowledged: Braze processed 1 of the 2 attribute objects it did not refuse';
    assert.deepEqual(short.rejected, [
      { key: userId(1), reason: 'invalid' },
      { key: userId(0), reason: notAcknowledged },
      { key: userId(2), reason: notAcknowledged },
    ]);
    assert.deepEqual(whole.rejected, []);
    assert.deepEqual([...emu.members(FLAG).keys()].sort(), [userId(0), userId(3), userId(4), userId(5)]);

    emu.faults.set({ shortAck: { calls: 1 } });
    const removal = await dest.remove!([userId(3), userId(4)]);
    assert.deepEqual(
      removal.rejected.map((r) => r.key),
      [userId(3), userId(4)],
      'removals are counted the same way',
    );
  });

  test('429: waits until X-RateLimit-Reset (Braze sends no Retry-After) and counts the waits', async () => {
    const { emu, dest, waits } = await setup();
    emu.faults.set({ rateLimit: { calls: 2, retryAfterSeconds: 3 } });
    const outcome = await counted(() => dest.add!(users(1)));
    // The emulator's window resets about 3 s ahead, in whole epoch seconds.
    assert.equal(waits.length, 2);
    for (const wait of waits) assert.ok(wait > 1500 && wait <= 4000, `waited ${wait} ms`);
    assert.equal(outcome.rateLimitWaits, 2);
    assert.equal(outcome.calls, 3);
    assert.equal(emu.members(FLAG).size, 1);
  });

  test('5xx is retried with backoff; a persistent 5xx becomes retryable with what it cost', async () => {
    const { emu, dest, waits } = await setup({}, {}, { baseDelayMs: 100 });
    emu.faults.set({ serverError: { calls: 2, status: 502 } });
    const retried = await counted(() => dest.add!(users(1)));
    assert.equal(retried.calls, 3);
    assert.equal(retried.retried, 2);
    assert.deepEqual(waits, [50, 100]);

    emu.faults.set({ serverError: { calls: 100 } });
    const { error, calls } = await countedFailure(() => dest.add!(users(1, 1)));
    assert.ok(error instanceof DestinationError);
    assert.equal(error.kind, 'retryable');
    assert.equal(calls, 5);
  });

  test('a delivered but unacknowledged request is sent again and applies idempotently', async () => {
    const { emu, dest } = await setup();
    emu.faults.set({ applyThenFail: { calls: 1 } });
    const outcome = await counted(() => dest.add!(users(2)));
    assert.equal(outcome.calls, 2);
    assert.equal(emu.stats().attributesApplied, 4);
    assert.equal(emu.members(FLAG).size, 2);
  });

  test('a refused key is fatal, names the secret and never shows the key', async () => {
    const { emu } = await setup();
    const dest = createBrazeAttributesDestination(
      {
        type: 'braze-attributes',
        restEndpoint: emu.url,
        apiKeySecret: 'OTHER_KEY',
        membershipAttribute: FLAG,
      },
      testContext(() => 'not-the-key-123').context,
    );
    const err = await rejection(dest.add!(users(1)));
    assert.equal(err.kind, 'fatal');
    assert.equal(err.status, 401);
    assert.match(err.message, /Invalid API key/);
    assert.match(err.message, /OTHER_KEY/);
    assert.ok(!err.message.includes('not-the-key-123'));
  });

  test('a fatal 400 fails just the batch, with Braze’s message', async () => {
    const { dest } = await setup({}, { maxObjectsPerRequest: 50 });
    const err = await rejection(dest.add!(users(60)));
    assert.equal(err.kind, 'batch');
    assert.equal(err.status, 400);
    assert.match(err.message, /Max Input Length Exceeded/);
  });

  test('dataset attributes that clash with identifiers or the flag are fatal', async () => {
    const { emu, dest } = await setup();
    for (const name of ['external_id', '_update_existing_only', FLAG]) {
      const err = await rejection(dest.add!([{ key: 'a', attributes: { [name]: 'x' } }]));
      assert.equal(err.kind, 'fatal');
      assert.match(err.message, new RegExp(`'${name}' clashes`));
    }
    assert.equal(emu.stats().calls['users/track'], 0);
  });

  test('no list members and no truncate: Braze cannot list users by attribute', async () => {
    const { dest } = await setup();
    assert.equal(dest.listMembers, undefined);
    assert.equal(dest.truncate, undefined);
    assert.equal(dest.replaceList, undefined);
  });

  test('check() proves the endpoint, the key and its permission, and changes nothing', async () => {
    const { emu, dest } = await setup();
    emu.setUsers(new Map([['deltasync-check', { first_name: 'Real' }]]));
    const { value: line, calls } = await counted(() => dest.check());
    assert.match(
      line,
      /accepts the key in 'BRAZE_KEY' for \/users\/track; members are the users with in_deltasync_crm = true/,
    );
    assert.equal(calls, 1);
    assert.deepEqual(emu.users(), new Map([['deltasync-check', { first_name: 'Real' }]]), 'nothing written');
    assert.equal(emu.members(FLAG).size, 0);
  });

  test('check() refuses a wrong key or a wrong endpoint, fatally, with what to fix', async () => {
    const { emu } = await setup();
    const settings = {
      type: 'braze-attributes' as const,
      restEndpoint: emu.url,
      apiKeySecret: 'BRAZE_KEY',
      membershipAttribute: FLAG,
    };
    const wrongKey = createBrazeAttributesDestination(settings, testContext(() => 'stale-key-0000').context);
    const refused = await rejection(wrongKey.check());
    assert.equal(refused.kind, 'fatal');
    assert.equal(refused.status, 401);
    assert.match(
      refused.message,
      /^braze-attributes: .*check the secret named in apiKeySecret \('BRAZE_KEY'\)/,
    );
    assert.ok(!refused.message.includes('stale-key-0000'));

    const wrongEndpoint = createBrazeAttributesDestination(
      { ...settings, restEndpoint: `${emu.url}/not-braze` },
      testContext(secrets).context,
    );
    const missing = await rejection(wrongEndpoint.check());
    assert.equal(missing.kind, 'fatal');
    assert.equal(missing.status, 404);
    assert.match(missing.message, /check restEndpoint/);

    const noSecret = createBrazeAttributesDestination(
      { ...settings, apiKeySecret: 'NOT_SET' },
      testContext(secrets).context,
    );
    const unset = await rejection(noSecret.check());
    assert.equal(unset.kind, 'fatal');
    assert.match(unset.message, /NOT_SET/);
  });
});

describe('braze-attributes wire format and answers', () => {
  async function server(answer: (body: unknown) => { status: number; body: unknown }) {
    const seen: { url: string; auth?: string; body: unknown }[] = [];
    const srv = track(
      await startFakeServer((req, res, raw) => {
        const body = JSON.parse(raw) as unknown;
        seen.push({ url: req.url!, auth: req.headers.authorization, body });
        const reply = answer(body);
        res.writeHead(reply.status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(reply.body));
      }),
    );
    const dest = createBrazeAttributesDestination(
      {
        type: 'braze-attributes',
        restEndpoint: `${srv.url}/`,
        apiKeySecret: 'BRAZE_KEY',
        membershipAttribute: FLAG,
      },
      testContext(secrets).context,
    );
    return { seen, dest };
  }

  test('sends exactly the documented attribute objects', async () => {
    const { seen, dest } = await server(() => ({
      status: 201,
      body: { message: 'success', attributes_processed: 1 },
    }));
    await dest.add!([{ key: 'u1', attributes: { first_name: 'A', points: 2, note: null } }]);
    await dest.remove!(['u1']);
    assert.deepEqual(seen, [
      {
        url: '/users/track',
        auth: `Bearer ${apiKey}`,
        body: { attributes: [{ external_id: 'u1', first_name: 'A', points: 2, note: null, [FLAG]: true }] },
      },
      {
        url: '/users/track',
        auth: `Bearer ${apiKey}`,
        body: { attributes: [{ external_id: 'u1', [FLAG]: null, _update_existing_only: true }] },
      },
    ]);
    // Every body follows the fixture table of Braze's pages, the check() one included.
    await dest.check();
    const check = openApiCheck({
      document: BRAZE_SPEC_DOCUMENT,
      operations: { track: 'POST /users/track' },
    });
    for (const { body } of seen) {
      const exchange = {
        endpoint: 'track',
        method: 'POST',
        pathname: '/users/track',
        query: new URLSearchParams(),
        headers: {},
        body,
      };
      assert.deepEqual(check.request(exchange), [], JSON.stringify(body));
    }
  });

  test("'queued' (maintenance) from the emulator: 202 without counts, every object accepted and applied", async () => {
    const { emu, dest } = await setup();
    emu.faults.set({ queued: { calls: 1 } });
    assert.deepEqual((await dest.add!(users(3))).rejected, []);
    assert.equal(emu.members(FLAG).size, 3);
    assert.equal(emu.stats().statuses[202], 1);
  });

  test("'queued' (maintenance) counts as accepted; an error that names no object refuses the batch", async () => {
    const queued = await server(() => ({ status: 202, body: { message: 'queued' } }));
    assert.deepEqual((await queued.dest.add!(users(2))).rejected, []);

    const vague = await server(() => ({
      status: 201,
      body: { message: 'success', errors: ['something went wrong'] },
    }));
    const err = await rejection(vague.dest.add!(users(2)));
    assert.equal(err.kind, 'batch');
    assert.match(err.message, /error for no object/);
  });

  test('a success without attributes_processed acknowledges no object', async () => {
    const { dest } = await server(() => ({ status: 201, body: { message: 'success' } }));
    const outcome = await dest.add!(users(2));
    assert.deepEqual(outcome.rejected, [
      {
        key: userId(0),
        reason:
          'not acknowledged: no attributes_processed count for the 2 attribute objects Braze did not refuse',
      },
      {
        key: userId(1),
        reason:
          'not acknowledged: no attributes_processed count for the 2 attribute objects Braze did not refuse',
      },
    ]);
  });
});

describe('braze emulator', () => {
  let emu: BrazeEmulator;
  before(async () => {
    emu = await startBrazeEmulator({ apiKey, rateLimit: { requests: 2, windowSeconds: 1 } });
  });
  after(() => emu.close());

  const track = (body: unknown) =>
    fetch(`${emu.url}/users/track`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  test('fixed rate-limit window with X-RateLimit headers (reset in epoch seconds), no Retry-After', async () => {
    await startOfNextSecond();
    const first = await track({ attributes: [{ external_id: 'a', x: 1 }] });
    assert.equal(first.status, 201);
    assert.equal(first.headers.get('x-ratelimit-limit'), '2');
    assert.equal(first.headers.get('x-ratelimit-remaining'), '1');
    const reset = Number(first.headers.get('x-ratelimit-reset'));
    assert.ok(reset * 1000 > Date.now() && reset * 1000 <= Date.now() + 1000, `reset ${reset}`);
    assert.equal((await track({ events: [{ external_id: 'a', name: 'e' }] })).status, 201);
    const limited = await track({ attributes: [{ external_id: 'a', x: 2 }] });
    assert.equal(limited.status, 429);
    assert.equal(limited.headers.get('retry-after'), null);
    assert.equal(limited.headers.get('x-ratelimit-remaining'), '0');
    assert.deepEqual(emu.users().get('a'), { x: 1 });
  });

  test('validates requests the way Braze documents', async () => {
    // Behind the spec check (see below), the emulator's own checks answer as Braze does: an
    // object without identifier is a non-fatal error, more than 75 objects a fatal 400.
    const own = await startBrazeEmulator({ apiKey, specCheck: false });
    try {
      const track = (body: unknown) =>
        fetch(`${own.url}/users/track`, {
          method: 'POST',
          headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
      const empty = await track({ attributes: [] });
      assert.equal(empty.status, 400);
      assert.match(((await empty.json()) as { message: string }).message, /Valid data must be provided/);
      const partial = await track({ attributes: [{ first_name: 'no id' }, { external_id: 'b', y: true }] });
      assert.deepEqual(await partial.json(), {
        message: 'success',
        attributes_processed: 1,
        errors: [
          {
            type: "'external_id' or 'braze_id' or 'user_alias' or 'email' or 'phone' is required",
            input_array: 'attributes',
            index: 0,
          },
        ],
      });
      await startOfNextSecond();
      const tooMany = await track({
        attributes: Array.from({ length: 76 }, (_, i) => ({ external_id: `c${i}` })),
      });
      assert.equal(tooMany.status, 400);
      assert.match(((await tooMany.json()) as { message: string }).message, /Max Input Length Exceeded/);
      const combined = await track({
        attributes: [{ external_id: 'd', x: 1 }],
        events: Array.from({ length: 75 }, () => ({ external_id: 'd', name: 'e' })),
      });
      assert.equal(combined.status, 400, 'at most 75 objects across the three arrays');
      own.faults.set({ serverError: { calls: 1 } });
      assert.deepEqual(own.faults.get(), { serverError: { calls: 1 } });
      own.faults.clear();
      assert.deepEqual(own.faults.get(), {});
    } finally {
      await own.close();
    }
  });

  test("refuses, 400, what Braze's pages do not document, before applying anything", async () => {
    await startOfNextSecond();
    const refused = [
      // api_key in the body: an old version of the page had it; the current one does not.
      { api_key: apiKey, attributes: [{ external_id: 'e', x: 1 }] },
      { attributes: [{ external_id: 'e', _update_existing_only: 'yes' }] },
      { attributes: [{ first_name: 'no identifier' }] },
      { attributes: Array.from({ length: 76 }, (_, i) => ({ external_id: `e${i}` })) },
    ];
    for (const body of refused) {
      const answer = await track(body);
      assert.equal(answer.status, 400, JSON.stringify(body).slice(0, 80));
      const fatal = (await answer.json()) as { message: string; errors: string[] };
      assert.equal(fatal.message, 'Bad Request');
      assert.ok(fatal.errors.length > 0);
    }
    assert.equal(emu.users().get('e'), undefined, 'nothing applied');
    const taken = takeSpecViolations();
    assert.deepEqual(
      taken.map((v) => [v.emulator, v.endpoint, v.direction]),
      refused.map(() => ['braze-attributes', 'users/track', 'request']),
    );
    assert.match(taken[0]!.problems.join(), /field 'api_key' is not in the spec/);
    assert.match(taken[1]!.problems.join(), /_update_existing_only: must be boolean/);
    assert.match(taken[3]!.problems.join(), /must NOT have more than 75 items/);
  });

  test('email and phone beside an external_id are profile fields: stored, not taken as identifiers', async () => {
    await startOfNextSecond();
    const answer = await track({
      attributes: [{ external_id: 'f', email: 'f@example.com', phone: '+15043277269', first_name: 'F' }],
    });
    assert.equal(answer.status, 201);
    assert.deepEqual(emu.users().get('f'), {
      email: 'f@example.com',
      phone: '+15043277269',
      first_name: 'F',
    });
  });

  test('events and purchases are counted apart: events_processed, purchases_processed', async () => {
    await startOfNextSecond();
    const answer = await track({
      events: [{ external_id: 'g', name: 'e', time: '2026-12-04T00:00:00Z' }],
      purchases: [
        { external_id: 'g', product_id: 'p', currency: 'USD', price: 1, time: '2026-12-04T00:00:00Z' },
        { external_id: 'g', product_id: 'q', currency: 'USD', price: 2, time: '2026-12-04T00:00:00Z' },
      ],
    });
    assert.deepEqual(await answer.json(), {
      message: 'success',
      events_processed: 1,
      purchases_processed: 2,
    });
  });
});

describe("braze-attributes and the fixture table of Braze's reference pages", () => {
  type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  const doc = JSON.parse(readFileSync(path.join(projectRoot, BRAZE_SPEC_DOCUMENT), 'utf8')) as Json;
  const operation = doc.paths['/users/track'].post as Json;
  const limit = (name: string) => (operation['x-limits'] as Json[]).find((l) => l.name === name);

  test('the limits in vendor-limits.ts are the ones the table cites', () => {
    assert.equal(limit('objectsPerRequest')?.value, MAX_OBJECTS_PER_REQUEST);
    assert.equal(
      limit('objectsPerRequestMonthlyActiveUsersCY2425')?.value,
      MAX_OBJECTS_PER_REQUEST_MAU_CY_24_25,
    );
    assert.deepEqual(
      {
        requests: limit('requestsPerWindow')?.value,
        windowSeconds: limit('requestsPerWindow')?.windowSeconds,
      },
      RATE_LIMIT,
    );
    const request = doc.components.schemas.TrackRequest as Json;
    for (const array of ['attributes', 'events', 'purchases'])
      assert.equal(request.properties[array].maxItems, MAX_OBJECTS_PER_REQUEST);
    // Each limit names its source, and each operation its page and retrieval date.
    for (const l of operation['x-limits'] as Json[])
      assert.match(String(l.source), /https:\/\/(www\.)?braze\.com\/docs\//);
    assert.match(
      operation.externalDocs.url as string,
      /^https:\/\/www\.braze\.com\/docs\/api\/endpoints\/user_data\/post_user_track\/$/,
    );
    assert.equal(operation['x-retrieved'], '2026-12-04');
    // The connector's settings are capped by them.
    const base = {
      type: 'braze-attributes',
      restEndpoint: 'https://rest.iad-01.braze.com',
      apiKeySecret: 'K',
      membershipAttribute: 'in_x',
    } as const;
    const parsed = brazeAttributesConfigSchema.parse(base);
    assert.equal(parsed.objectsPerRequest, MAX_OBJECTS_PER_REQUEST);
    assert.equal(parsed.callsPerSecond, RATE_LIMIT.requests / RATE_LIMIT.windowSeconds);
  });
});

describe('braze-attributes config', () => {
  test('schema applies defaults and rejects bad values', () => {
    const parsed = brazeAttributesConfigSchema.parse({
      type: 'braze-attributes',
      restEndpoint: 'https://rest.iad-01.braze.com',
      apiKeySecret: 'K',
      membershipAttribute: FLAG,
    });
    assert.equal(parsed.objectsPerRequest, 75);
    const bad = brazeAttributesConfigSchema.safeParse({
      ...parsed,
      objectsPerRequest: 76,
      membershipAttribute: '$flag',
    });
    assert.deepEqual(bad.error?.issues.map((issue) => issue.path.join('.')).sort(), [
      'membershipAttribute',
      'objectsPerRequest',
    ]);
    assert.equal(
      brazeAttributesConfigSchema.safeParse({ ...parsed, membershipAttribute: 'external_id' }).success,
      false,
    );
  });
});

describe('braze-attributes refresh workflow on the Temporal dev server (mysql)', () => {
  const scenario = refreshScenario({
    emulator: () => startBrazeEmulator({ apiKey }),
    dataset: async (db) => {
      await db.schema.createTable('braze_users', (table) => {
        table.string('external_id', 64).primary().collate('utf8mb4_bin');
        table.string('first_name', 64).notNullable();
        table.string('tier', 16).notNullable();
        table.integer('points').nullable();
      });
      await db('braze_users').insert(
        Array.from({ length: 100 }, (_, i) => ({
          external_id: userId(i),
          first_name: `U${i}`,
          tier: 'basic',
          points: i,
        })),
      );
    },
  });

  /** The dataset as the flagged users should hold it; a null attribute is absent in Braze. */
  const expected = () => datasetMembers(scenario.db, 'braze_users', 'external_id');

  test('two refreshes with additions, deletions and updates, through a 429 and a 503, end equal', async () => {
    const { emu: emulator, db } = scenario;
    emulator.setUsers(new Map([['outsider', { first_name: 'O' }]]));
    await saveConnector(db, {
      id: 'braze-crm',
      dataset: { table: 'braze_users', key: 'external_id', attributes: ['first_name', 'tier', 'points'] },
      destination: {
        type: 'braze-attributes',
        restEndpoint: emulator.url,
        apiKeySecret: 'BRAZE_KEY',
        membershipAttribute: FLAG,
      },
    });
    // Built the way the worker builds it: catalog, secret resolver, shared throttle.
    await scenario.withWorker(
      createSecretStore({ DELTASYNC_SECRET_DEFAULT__BRAZE_KEY: apiKey }, undefined).forTenant('default'),
      async (client) => {
        emulator.faults.set({
          rateLimit: { calls: 1, retryAfterSeconds: 1 },
          serverError: { calls: 1, status: 503 },
        });
        const first = await client.refresh('braze-crm');
        assert.equal(first.status, 'succeeded', first.error ?? '');
        assert.deepEqual([first.additions, first.updates, first.deletions], [100, 0, 0]);
        assert.equal(first.rateLimitWaits, 1);
        assert.equal(first.callsByEndpoint['users/track']?.calls, 4, 'two pages of ≤ 75, one 429, one 503');
        assert.deepEqual(emulator.members(FLAG), await expected());

        await db('braze_users')
          .whereIn('external_id', [userId(1), userId(2), userId(3)])
          .delete();
        await db('braze_users').insert(
          [100, 101].map((i) => ({ external_id: userId(i), first_name: `U${i}`, tier: 'gold', points: i })),
        );
        await db('braze_users')
          .whereIn('external_id', [userId(10), userId(11)])
          .update({ tier: 'gold' });
        await db('braze_users')
          .where({ external_id: userId(12) })
          .update({ points: null });
        emulator.faults.set({ serverError: { calls: 1, status: 500 } });

        const second = await client.refresh('braze-crm');
        assert.equal(second.status, 'succeeded', second.error ?? '');
        assert.deepEqual([second.additions, second.updates, second.deletions], [2, 3, 3]);
        assert.deepEqual(emulator.members(FLAG), await expected());
        assert.deepEqual(
          emulator.users().get(userId(1)),
          { first_name: 'U1', tier: 'basic', points: 1 },
          'unflagged, kept',
        );
        assert.deepEqual(emulator.users().get('outsider'), { first_name: 'O' });
      },
    );
  });
});
