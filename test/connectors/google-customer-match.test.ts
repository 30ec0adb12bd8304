import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { describe, test } from 'node:test';
import type { ConnectorInput } from '../../src/core/connector';
import { saveConnector } from '../../src/core/connector-store';
import {
  createGoogleCustomerMatchDestination,
  externalIdFor,
  googleCustomerMatchConfigSchema,
  googleCustomerMatchDestination,
  type GoogleCustomerMatchConfigInput,
} from '../../src/connectors/google-customer-match/index';
import { parseDuration } from '../../src/connectors/google-customer-match/ads-api';
import {
  GOOGLE_ADS_API_VERSION,
  JOB_STATES,
  MAX_IDENTIFIERS_PER_OPERATION,
  MAX_IDENTIFIERS_PER_REQUEST,
} from '../../src/connectors/google-customer-match/vendor-limits';
import { takeSpecViolations } from '../../src/connectors/kit/vendor-spec';
import { projectRoot } from '../../src/paths';
import { createDestinationFactory } from '../../src/connectors/registry';
import { createDestinationContext } from '../../src/connectors/kit/module';
import { totalOf } from '../../src/core/api-calls';
import {
  capabilitiesOf,
  DestinationError,
  type Attributes,
  type Member,
  type SecretResolver,
} from '../../src/core/destination';
import { normalizeEmail, normalizeName, sha256Hex } from '../../src/core/identifiers';
import { listRuns } from '../../src/core/runs';
import { matchEstimateOf } from '../../src/connectors/google-customer-match/operations';
import {
  googleAdsSpec,
  matchRateRangeFor,
  startGoogleCustomerMatchEmulator,
  type CustomerMatchEmulator,
  type CustomerMatchEmulatorOptions,
} from '../../src/connectors/google-customer-match/emulator';
import { counted, countedFailure, testContext } from '../helpers/destination-context';
import { refreshScenario } from '../helpers/destination-scenario';
import { closeAfterEach, fixedSecrets, rejection } from '../helpers/destinations';
import { freePort, startFakeServer } from '../helpers/fake-http';

/**
 * google-customer-match against its emulator: one job per batch, Google's job rules, partial
 * failures, FAILED jobs, rate limits, 5xx, fatal errors, new list + swap via remove_all; then
 * refresh workflows on the real Temporal dev server with MariaDB.
 */

const DEV_TOKEN = 'dev-token-QWERTY';
const ACCESS_TOKEN = 'ya29.secret-access-token';
const CUSTOMER = '1234567890';
const LIST = '5550001';
const secrets = fixedSecrets({ GADS_DEVELOPER_TOKEN: DEV_TOKEN, GADS_ACCESS_TOKEN: ACCESS_TOKEN });
const track = closeAfterEach();

/** The config for the user list LIST of the API at `url` (the emulator's, or a fake server's). */
function baseConfig({ url }: { url: string }): GoogleCustomerMatchConfigInput {
  return {
    type: 'google-customer-match',
    customerId: '123-456-7890',
    userListId: LIST,
    developerTokenSecret: 'GADS_DEVELOPER_TOKEN',
    accessTokenSecret: 'GADS_ACCESS_TOKEN',
    baseUrl: url,
    // Polls are not waited for in these tests: their interval is 0.
    pollIntervalMs: 0,
    maxPollIntervalMs: 0,
  };
}

async function setup(
  config: Partial<GoogleCustomerMatchConfigInput> = {},
  emulatorOptions: Partial<CustomerMatchEmulatorOptions> = {},
  resolver: SecretResolver = secrets,
) {
  const emu = track(
    await startGoogleCustomerMatchEmulator({
      developerToken: DEV_TOKEN,
      accessToken: ACCESS_TOKEN,
      userLists: { [CUSTOMER]: [LIST, '5550002'] },
      ...emulatorOptions,
    }),
  );
  const { context, waits: retryWaits } = testContext(resolver, { retry: { baseDelayMs: 100 } });
  const dest = createGoogleCustomerMatchDestination({ ...baseConfig(emu), ...config }, context);
  // Retries and rate-limit waits (polls are not retry waits).
  const waits = () => [...retryWaits];
  return { emu, dest, waits };
}

const emailHash = (email: string) => sha256Hex(normalizeEmail(email)!);
/** Calls by endpoint, whatever became of them. */
const callsOf = (tallies: Record<string, { calls: number }>) =>
  Object.fromEntries(Object.entries(tallies).map(([endpoint, tally]) => [endpoint, tally.calls]));
const members = (...emails: string[]): Member[] => emails.map((key) => ({ key, attributes: {} }));
const memberKeys = (emu: CustomerMatchEmulator, list = LIST) => [...emu.members(list).keys()].sort();
const hashes = (...emails: string[]) => emails.map(emailHash).sort();

describe('google-customer-match destination', () => {
  test('one batch is one job: create, addOperations, run, poll until SUCCESS', async () => {
    const { emu, dest } = await setup({ consent: { adUserData: 'GRANTED', adPersonalization: 'GRANTED' } });
    const outcome = await counted(() =>
      dest.add(members('ann@example.com', 'bob@example.com', 'cy@example.com')),
    );
    assert.deepEqual(outcome.value.rejected, []);
    assert.deepEqual(callsOf(outcome.tallies), {
      'offlineUserDataJobs:create': 1,
      'offlineUserDataJobs:addOperations': 1,
      'offlineUserDataJobs:run': 1,
      'googleAds:search': 2, // RUNNING, then SUCCESS
    });
    assert.equal(outcome.calls, 5);
    assert.deepEqual(memberKeys(emu), hashes('ann@example.com', 'bob@example.com', 'cy@example.com'));
    const [job] = emu.jobs();
    assert.equal(job!.status, 'SUCCESS');
    assert.equal(job!.userList, `customers/${CUSTOMER}/userLists/${LIST}`);
    assert.deepEqual(job!.operations, { create: 3, remove: 0, removeAll: 0 });
    assert.deepEqual(job!.consent, { adUserData: 'GRANTED', adPersonalization: 'GRANTED' });

    const removed = await dest.remove(['bob@example.com']);
    assert.deepEqual(removed.rejected, []);
    assert.deepEqual(memberKeys(emu), hashes('ann@example.com', 'cy@example.com'));
    const removeJob = emu.jobs()[1]!;
    assert.deepEqual(removeJob.operations, { create: 0, remove: 1, removeAll: 0 });
    assert.equal(removeJob.consent, undefined, 'removals carry no consent');
  });

  test('only hashed identifiers leave; keys are normalised the Customer Match way', async () => {
    const { emu, dest } = await setup();
    await dest.add(members('  Dana.Smith@GMail.com ', 'erin@example.com'));
    // Trimmed and lower-cased; the dots stay (Google's Customer Match rules do not drop them).
    assert.deepEqual(
      memberKeys(emu),
      [sha256Hex('dana.smith@gmail.com'), sha256Hex('erin@example.com')].sort(),
    );
    const wire = emu
      .requests()
      .map((r) => r.body)
      .join('\n');
    assert.doesNotMatch(wire, /@/, 'no raw e-mail address in any request body');
    assert.doesNotMatch(wire, /dana/i);

    const dots = await setup({ removeGmailDots: true });
    await dots.dest.add(members('Dana.Smith@gmail.com'));
    assert.deepEqual(memberKeys(dots.emu), [sha256Hex('danasmith@gmail.com')]);
  });

  test('phone keys are sent as hashed E.164; unusable keys are record-level rejections', async () => {
    const { emu, dest } = await setup({ keyType: 'phone', defaultCountry: 'DE' });
    const outcome = await dest.add(members('0151 23456789', '+1 (800) 555-0102', 'call me maybe'));
    assert.deepEqual(outcome.rejected, [{ key: 'call me maybe', reason: 'not a valid phone number' }]);
    assert.deepEqual(memberKeys(emu), [sha256Hex('+4915123456789'), sha256Hex('+18005550102')].sort());
    assert.equal(emu.stats().identifiersAccepted, 2, 'the unusable key was never sent');

    const email = await setup();
    const bad = await email.dest.add(members('not-an-email', 'ok@example.com'));
    assert.deepEqual(bad.rejected, [{ key: 'not-an-email', reason: 'not a valid e-mail address' }]);
    const none = await counted(() => email.dest.add(members('still not one')));
    assert.equal(none.calls, 0, 'a batch of unusable keys makes no call');
  });

  test('mailing address from attributes: a second identifier, names hashed, updated on re-add', async () => {
    const address = { firstName: 'first', lastName: 'last', countryCode: 'country', postalCode: 'zip' };
    const { emu, dest } = await setup({ address });
    const alex: Attributes = { first: ' Alex ', last: 'Quinn', country: 'us', zip: '94045' };
    await dest.add([
      { key: 'alex@example.com', attributes: alex },
      { key: 'kim@example.com', attributes: { first: 'Kim', last: null, country: 'DE', zip: '10115' } },
    ]);
    const stored = emu.members(LIST);
    assert.deepEqual(stored.get(emailHash('alex@example.com')), [
      { hashedEmail: emailHash('alex@example.com') },
      {
        addressInfo: {
          hashedFirstName: sha256Hex(normalizeName('Alex')!),
          hashedLastName: sha256Hex('quinn'),
          countryCode: 'US',
          postalCode: '94045',
        },
      },
    ]);
    assert.equal(stored.get(emailHash('kim@example.com'))!.length, 1, 'incomplete address: key only');

    await dest.add([{ key: 'alex@example.com', attributes: { ...alex, zip: '94107' } }]);
    const updated = emu.members(LIST).get(emailHash('alex@example.com'))!;
    assert.equal(updated[1]!.addressInfo!.postalCode, '94107');
    assert.equal(emu.members(LIST).size, 2);
  });

  test('splits addOperations at identifiersPerRequest; Google refuses larger requests', async () => {
    const address = { firstName: 'f', lastName: 'l', countryCode: 'c', postalCode: 'z' };
    const withAddress = (n: number): Member[] =>
      Array.from({ length: n }, (_, i) => ({
        key: `p${i}@example.com`,
        attributes: { f: 'A', l: 'B', c: 'NL', z: `10${i}` },
      }));
    const { emu, dest } = await setup({ address, identifiersPerRequest: 4 }, { maxIdentifiersPerRequest: 4 });
    const outcome = await counted(() => dest.add(withAddress(5))); // 10 identifiers: 2 + 2 + 1 records
    assert.equal(callsOf(outcome.tallies)['offlineUserDataJobs:addOperations'], 3);
    assert.equal(emu.jobs().length, 1, 'still one job');
    assert.equal(emu.members(LIST).size, 5);

    const tooBig = await setup({ address, identifiersPerRequest: 6 }, { maxIdentifiersPerRequest: 4 });
    const err = await rejection(tooBig.dest.add(withAddress(3)));
    assert.equal(err.kind, 'batch');
    assert.equal(err.status, 400);
    assert.match(err.message, /offlineUserDataJobError\.TOO_MANY_USER_IDENTIFIERS/);
    assert.equal(tooBig.emu.stats().calls['offlineUserDataJobs:addOperations'], 1, 'a 400 is not retried');
  });

  test('the real limit: 100,001 records go out in two addOperations requests of one job', async () => {
    // A job (one batch) may hold more records than one request may carry identifiers.
    const { emu, dest } = await setup({ recordsPerCall: 200_000 });
    const many = Array.from({ length: 100_001 }, (_, i) => ({ key: `u${i}@example.com`, attributes: {} }));
    const outcome = await counted(() => dest.add(many));
    assert.equal(callsOf(outcome.tallies)['offlineUserDataJobs:addOperations'], 2);
    assert.equal(emu.stats().jobs.run, 1);
    assert.equal(emu.members(LIST).size, 100_001);
  });

  test('partial failures become rejections of exactly those records; the rest is applied', async () => {
    const { emu, dest } = await setup();
    const bad = new Set([emailHash('bad1@example.com'), emailHash('bad2@example.com')]);
    emu.faults.set({
      reject: (id) => (id.hashedEmail && bad.has(id.hashedEmail) ? 'INVALID_SHA256_FORMAT' : null),
    });
    const outcome = await dest.add(
      members('a@example.com', 'bad1@example.com', 'b@example.com', 'bad2@example.com'),
    );
    assert.deepEqual(
      outcome.rejected.map((r) => r.key),
      ['bad1@example.com', 'bad2@example.com'],
    );
    assert.match(
      outcome.rejected[0]!.reason,
      /^offlineUserDataJobError\.INVALID_SHA256_FORMAT: The SHA256 encoded value is malformed\.$/,
    );
    assert.deepEqual(memberKeys(emu), hashes('a@example.com', 'b@example.com'));

    emu.resetStats();
    const allBad = await dest.add(members('bad1@example.com'));
    assert.equal(allBad.rejected.length, 1);
    assert.equal(emu.stats().calls['offlineUserDataJobs:run'], 0, 'a job with nothing valid is not run');
  });

  test("an upload's job gives Google's match rate range: the batch carries it for the records uploaded", async () => {
    // Jobs of more than two people match 55%, smaller ones 95% (the emulator's stand-in for Google).
    const { emu, dest } = await setup({}, { matchRate: (job) => (job.operations.create > 2 ? 0.55 : 0.95) });
    const upload = await dest.add(members('ann@example.com', 'bob@example.com', 'cy@example.com'));
    assert.deepEqual(upload.matchEstimate, { records: 3, lowPercent: 51, highPercent: 60 });
    // A key with no usable identifier never reaches the job: the estimate covers the one that did.
    const small = await dest.add(members('dee@example.com', 'not an e-mail'));
    assert.equal(small.rejected.length, 1);
    assert.deepEqual(small.matchEstimate, { records: 1, lowPercent: 91, highPercent: 100 });
    const removal = await dest.remove(['bob@example.com']);
    assert.equal(removal.matchEstimate, undefined, 'a removal is matched to no one');
    assert.deepEqual(
      emu.jobs().map((job) => job.operations.create),
      [3, 1, 0],
    );
  });

  test('a partial failure that names no operation leaves its whole request unacknowledged', async () => {
    const { emu, dest } = await setup({ identifiersPerRequest: 2 });
    const bad = emailHash('bad@example.com');
    emu.faults.set({
      reject: (id) => (id.hashedEmail === bad ? 'INVALID_SHA256_FORMAT' : null),
      unnamedPartialFailures: { calls: 1 },
    });
    // Two addOperations requests: [a, bad] fails one operation without saying which; [c, d] is clean.
    const outcome = await dest.add(
      members('a@example.com', 'bad@example.com', 'c@example.com', 'd@example.com'),
    );
    assert.deepEqual(
      outcome.rejected.map((r) => r.key),
      ['a@example.com', 'bad@example.com'],
    );
    for (const { reason } of outcome.rejected) {
      assert.match(
        reason,
        /^not acknowledged: addOperations reported a partial failure \(3 .+\) without naming the operations$/,
      );
    }
    // The job ran for what Google took: 'a' is on the list, delivered but not acknowledged.
    assert.deepEqual(memberKeys(emu), hashes('a@example.com', 'c@example.com', 'd@example.com'));

    const again = await dest.add(members('a@example.com', 'bad@example.com'));
    assert.deepEqual(
      again.rejected.map((r) => r.key),
      ['bad@example.com'],
      'sent again, the named failure is the only rejection',
    );
  });

  test('a FAILED job is retried once with a new job, then succeeds', async () => {
    const { emu, dest } = await setup();
    emu.faults.set({ failJobs: { jobs: 1, reason: 'UNKNOWN' } });
    const outcome = await counted(() => dest.add(members('a@example.com', 'b@example.com')));
    assert.deepEqual(outcome.value.rejected, []);
    assert.deepEqual(
      emu.jobs().map((j) => j.status),
      ['FAILED', 'SUCCESS'],
    );
    assert.equal(callsOf(outcome.tallies)['offlineUserDataJobs:create'], 2);
    assert.equal(callsOf(outcome.tallies)['offlineUserDataJobs:run'], 2);
    assert.equal(totalOf(outcome.tallies).failed, 0, 'a job tried again is no failed call');
    assert.equal(emu.members(LIST).size, 2);
  });

  test('a batch whose jobs keep FAILING fails as a batch; what Google applied of it is sent again', async () => {
    const { emu, dest } = await setup({ maxJobAttempts: 2 });
    // Google: a FAILED job's "operations may have been successfully processed" — here the first.
    emu.faults.set({ failJobs: { jobs: 5, reason: 'UNKNOWN', applyFirst: 1 } });
    const { error, tallies } = await countedFailure(() =>
      dest.add(members('a@example.com', 'b@example.com')),
    );
    const err = error as DestinationError;
    assert.ok(err instanceof DestinationError);
    assert.equal(err.kind, 'batch', 'not fatal (the list is fine), not endless (a retry would fail alike)');
    assert.match(
      err.message,
      /^google-customer-match: job .* ended FAILED \(failure reason UNKNOWN\) after 2 job\(s\); Google may have applied part of the batch, whose records stay pending and are sent again$/,
    );
    assert.doesNotMatch(err.message, /was not applied/);
    assert.deepEqual(memberKeys(emu), hashes('a@example.com'), 'applied in part, as FAILED allows');
    assert.equal(emu.stats().jobs.failed, 2);
    // The poll that found the last job FAILED is the call that failed; the first job's was an answer.
    assert.equal(tallies['googleAds:search']!.failed, 1);
    assert.equal(totalOf(tallies).failed, 1);
  });

  test('waits for retryDelay on RESOURCE_EXHAUSTED, also while polling', async () => {
    const { emu, dest, waits } = await setup();
    emu.faults.set({
      rateLimit: { calls: 2, retryDelaySeconds: 3, endpoint: 'offlineUserDataJobs:addOperations' },
    });
    const outcome = await counted(() => dest.add(members('a@example.com')));
    assert.deepEqual(waits(), [3000, 3000], 'the delay from quotaErrorDetails.retryDelay');
    assert.equal(outcome.rateLimitWaits, 2);
    assert.deepEqual(outcome.tallies['offlineUserDataJobs:addOperations'], {
      calls: 3,
      failed: 0,
      rateLimited: 2,
      retried: 0,
    });

    emu.faults.set({
      rateLimit: { calls: 1, retryDelaySeconds: 7, endpoint: 'googleAds:search', retryAfterHeader: true },
    });
    const again = await counted(() => dest.add(members('b@example.com')));
    assert.equal(again.rateLimitWaits, 1);
    assert.deepEqual(waits().slice(2), [7000]);
    assert.equal(emu.members(LIST).size, 2);
  });

  test('persistent RESOURCE_EXHAUSTED ends retryable', async () => {
    const { emu, dest } = await setup();
    emu.faults.set({ rateLimit: { calls: 100, retryDelaySeconds: 1 } });
    const err = await rejection(dest.add(members('a@example.com')));
    assert.equal(err.kind, 'retryable');
    assert.equal(err.status, 429);
    assert.match(err.message, /still rate limited after 10 waits/);
  });

  test('5xx and CONCURRENT_MODIFICATION back off with full jitter, then succeed', async () => {
    const { emu, dest, waits } = await setup();
    emu.faults.set({ serverError: { calls: 2, status: 503, endpoint: 'offlineUserDataJobs:run' } });
    const outcome = await counted(() => dest.add(members('a@example.com')));
    // random() = 0.5, base 100 ms: half of 100, then half of 200.
    assert.deepEqual(waits(), [50, 100]);
    assert.deepEqual(outcome.tallies['offlineUserDataJobs:run'], {
      calls: 3,
      failed: 0,
      rateLimited: 0,
      retried: 2,
    });
    assert.equal(outcome.rateLimitWaits, 0);
    assert.equal(emu.stats().jobs.run, 1);

    emu.faults.set({ concurrentModification: { calls: 1, endpoint: 'offlineUserDataJobs:create' } });
    const again = await counted(() => dest.add(members('b@example.com')));
    assert.equal(callsOf(again.tallies)['offlineUserDataJobs:create'], 2);
    assert.equal(emu.members(LIST).size, 2);
  });

  test('persistent 5xx becomes retryable after maxAttempts calls', async () => {
    const { emu, dest } = await setup();
    emu.faults.set({ serverError: { calls: 100 } });
    const { error: err, calls } = await countedFailure(() => dest.add(members('a@example.com')));
    assert.ok(err instanceof DestinationError);
    assert.equal(err.kind, 'retryable');
    assert.equal(err.status, 500);
    assert.match(err.message, /internalError\.INTERNAL_ERROR.*gave up after 5 calls/);
    assert.equal(emu.stats().calls['offlineUserDataJobs:create'], 5);
    assert.equal(calls, 5, 'every attempt counted');
  });

  test('network errors are retried, then retryable', async () => {
    const config = baseConfig({ url: `http://127.0.0.1:${await freePort()}` });
    const { context, waits } = testContext(secrets, { retry: { maxAttempts: 3 } });
    const dest = createGoogleCustomerMatchDestination(config, context);
    const err = await rejection(dest.add(members('a@example.com')));
    assert.equal(err.kind, 'retryable');
    assert.match(err.message, /network error.*gave up after 3 calls/);
    assert.equal(waits.length, 2);
  });

  test('a job that stays RUNNING past jobTimeoutMs ends retryable', async () => {
    const { dest } = await setup({ jobTimeoutMs: 0 }, { runningPolls: 1000 });
    const err = await rejection(dest.add(members('a@example.com')));
    assert.equal(err.kind, 'retryable');
    assert.match(err.message, /still RUNNING/);
  });

  test('bad credentials are fatal, name the secrets and never show a token', async () => {
    const wrongAccess = await setup({}, {}, (name) =>
      name === 'GADS_ACCESS_TOKEN' ? 'ya29.stale' : secrets(name),
    );
    const err = await rejection(wrongAccess.dest.add(members('a@example.com')));
    assert.equal(err.kind, 'fatal');
    assert.equal(err.status, 401);
    assert.match(err.message, /authenticationError\.OAUTH_TOKEN_INVALID/);
    assert.match(err.message, /GADS_ACCESS_TOKEN/);
    assert.doesNotMatch(err.message, /ya29\.stale/);

    const wrongDev = await setup({}, {}, (name) =>
      name === 'GADS_DEVELOPER_TOKEN' ? 'nope-token' : secrets(name),
    );
    const devErr = await rejection(wrongDev.dest.remove(['a@example.com']));
    assert.equal(devErr.kind, 'fatal');
    assert.match(devErr.message, /DEVELOPER_TOKEN_INVALID.*GADS_DEVELOPER_TOKEN/);

    const missing = await setup({ accessTokenSecret: 'NOT_SET' });
    const missingErr = await rejection(missing.dest.add(members('a@example.com')));
    assert.equal(missingErr.kind, 'fatal');
    assert.match(missingErr.message, /accessTokenSecret 'NOT_SET'/);
    assert.equal(missing.emu.stats().calls['offlineUserDataJobs:create'], 0);
  });

  test('a missing user list or customer is fatal, with what to check', async () => {
    const noList = await setup({ userListId: '999' });
    const err = await rejection(noList.dest.add(members('a@example.com')));
    assert.equal(err.kind, 'fatal');
    assert.match(err.message, /offlineUserDataJobError\.INVALID_USER_LIST_ID/);
    assert.match(err.message, /user list 999/);

    const noCustomer = await setup({ customerId: '999-999-9999' });
    const denied = await rejection(noCustomer.dest.add(members('a@example.com')));
    assert.equal(denied.kind, 'fatal');
    assert.equal(denied.status, 403);
    assert.match(denied.message, /USER_PERMISSION_DENIED/);
  });

  test('check() reads the user list once: a Customer Match list, and its size', async () => {
    const { emu, dest } = await setup();
    await dest.add(members('a@example.com', 'b@example.com'));
    emu.resetStats();
    const { value: line, tallies } = await counted(() => dest.check());
    assert.equal(
      line,
      `google-customer-match: user list ${LIST} ('Customer Match list ${LIST}') of customer ${CUSTOMER} reachable (about 2 members for search)`,
    );
    assert.deepEqual(tallies, { 'googleAds:search': { calls: 1, failed: 0, rateLimited: 0, retried: 0 } });
    assert.equal(emu.stats().jobs.created, 0, 'nothing written');
  });

  test('check() refuses bad credentials, a missing list or customer, fatally, with what to fix', async () => {
    const wrongAccess = await setup({}, {}, (name) =>
      name === 'GADS_ACCESS_TOKEN' ? 'ya29.stale' : secrets(name),
    );
    const refused = await rejection(wrongAccess.dest.check());
    assert.equal(refused.kind, 'fatal');
    assert.match(refused.message, /^google-customer-match: .*OAUTH_TOKEN_INVALID.*GADS_ACCESS_TOKEN/);
    assert.doesNotMatch(refused.message, /ya29\.stale/);

    const noList = await setup({ userListId: '999' });
    const missing = await rejection(noList.dest.check());
    assert.equal(missing.kind, 'fatal');
    assert.match(missing.message, /customer 1234567890 has no user list 999 — check userListId/);

    const noCustomer = await setup({ customerId: '999-999-9999' });
    const denied = await rejection(noCustomer.dest.check());
    assert.equal(denied.kind, 'fatal');
    assert.match(denied.message, /USER_PERMISSION_DENIED/);

    const noSecret = await setup({ developerTokenSecret: 'NOT_SET' });
    const unset = await rejection(noSecret.dest.check());
    assert.equal(unset.kind, 'fatal');
    assert.match(unset.message, /developerTokenSecret 'NOT_SET'/);
    assert.equal(noSecret.emu.stats().calls['googleAds:search'], 0);
  });

  test('a server echoing the tokens does not leak them into the message', async () => {
    const server = track(
      await startFakeServer((req, res) => {
        res.writeHead(400, { 'content-type': 'application/json' });
        const echo = `${req.headers.authorization} / ${String(req.headers['developer-token'])}`;
        res.end(JSON.stringify({ error: { code: 400, message: echo, status: 'INVALID_ARGUMENT' } }));
      }),
    );
    const dest = createGoogleCustomerMatchDestination(baseConfig(server), testContext(secrets).context);
    const err = await rejection(dest.add(members('a@example.com')));
    assert.equal(err.kind, 'batch');
    assert.ok(!err.message.includes(ACCESS_TOKEN) && !err.message.includes(DEV_TOKEN), err.message);
  });

  test('truncate is a job whose only operation is remove_all', async () => {
    const { emu, dest } = await setup();
    await dest.add(members('a@example.com', 'b@example.com'));
    const outcome = await counted(() => dest.truncate());
    assert.equal(emu.members(LIST).size, 0);
    assert.deepEqual(emu.jobs()[1]!.operations, { create: 0, remove: 0, removeAll: 1 });
    assert.equal(callsOf(outcome.tallies)['offlineUserDataJobs:run'], 1);

    emu.faults.set({ failJobs: { jobs: 2 } });
    const err = await rejection(dest.truncate());
    assert.equal(err.kind, 'retryable', 'no batch to fail: the activity is retried later');
    assert.match(err.message, /remove_all job .* ended FAILED/);
  });

  test('new list + swap: a remove_all job filled page by page, swapped in at once', async () => {
    const { emu, dest } = await setup();
    await dest.add(members('stale1@example.com', 'keep@example.com', 'stale2@example.com'));

    const replace = dest.replaceList;
    const created = await counted(() => replace.create('refresh-42'));
    const job = created.value.listId;
    assert.match(job, new RegExp(`^customers/${CUSTOMER}/offlineUserDataJobs/\\d+$`));
    assert.equal(callsOf(created.tallies)['offlineUserDataJobs:create'], 1);
    const again = await counted(() => replace.create('refresh-42'));
    assert.equal(again.value.listId, job, 'the same name finds the same job (a retried activity)');
    assert.equal(emu.stats().jobs.created, 2, 'one job for the add, one for the new list');
    assert.equal(
      again.tallies['offlineUserDataJobs:addOperations']?.failed,
      0,
      'remove_all found: an answer',
    );

    const replacement = replace.forList(job);
    const page1 = await replacement.add!(members('keep@example.com', 'new1@example.com'));
    const page2 = await replacement.add!(members('new2@example.com', 'broken-key'));
    assert.deepEqual(page1.rejected, []);
    assert.deepEqual(page2.rejected, [{ key: 'broken-key', reason: 'not a valid e-mail address' }]);
    const removal = await counted(() => replacement.remove!(['x@example.com']));
    assert.deepEqual(removal.value, { rejected: [] });
    assert.equal(removal.calls, 0);
    assert.deepEqual(
      memberKeys(emu),
      hashes('stale1@example.com', 'keep@example.com', 'stale2@example.com'),
      'nothing changes before the swap',
    );
    const jobState = emu.jobs().find((j) => j.resourceName === job)!;
    assert.deepEqual(jobState.operations, { create: 3, remove: 0, removeAll: 1 });
    const userList = `customers/${CUSTOMER}/userLists/${LIST}`;
    assert.equal(jobState.externalId, externalIdFor(userList, 'refresh-42'));

    const swapped = await counted(() => replace.swap(job));
    assert.deepEqual(swapped.value, {}, 'the connector then points at the job, i.e. the same user list');
    assert.equal(callsOf(swapped.tallies)['offlineUserDataJobs:run'], 1);
    assert.deepEqual(memberKeys(emu), hashes('keep@example.com', 'new1@example.com', 'new2@example.com'));
    await replace.swap(job); // a retried swap finds the job done
    assert.equal(emu.stats().jobs.run, 2);
    const retired = await counted(() => replace.retire('customers/1234567890/offlineUserDataJobs/1'));
    assert.equal(retired.calls, 0);
    // The same name in a later refresh: that job ran, so the next generation's job is made.
    const later = await replace.create('refresh-42');
    assert.notEqual(later.listId, job);
    assert.equal((await replace.create('refresh-42')).listId, later.listId);
    const laterJob = emu.jobs().find((j) => j.resourceName === later.listId)!;
    assert.equal(laterJob.externalId, externalIdFor(userList, 'refresh-42', 1));
    assert.deepEqual(laterJob.operations, { create: 0, remove: 0, removeAll: 1 });
  });

  test('a FAILED replacement job stops the refresh and says the list may be partly replaced', async () => {
    const { emu, dest } = await setup();
    await dest.add(members('old@example.com'));
    const { listId: job } = await dest.replaceList.create('refresh-43');
    await dest.replaceList.forList(job).add!(members('new@example.com'));
    emu.faults.set({ failJobs: { jobs: 1, reason: 'UNKNOWN' } });
    const { error, tallies } = await countedFailure(() => dest.replaceList.swap(job));
    const err = error as DestinationError;
    assert.ok(err instanceof DestinationError);
    assert.equal(err.kind, 'fatal');
    assert.equal(totalOf(tallies).failed, 1, 'the poll that found the job FAILED');
    // The job's first operation, remove_all, was processed before it failed: the old member is gone
    // and the new one never came. Google allows exactly that of a FAILED job.
    assert.deepEqual(memberKeys(emu), []);
    assert.doesNotMatch(err.message, /keeps its previous members/);
    assert.match(
      err.message,
      /replacement job .* ended FAILED \(failure reason UNKNOWN\); Google may have applied part of it, so the user list may hold neither the old nor the new members — run the refresh again/,
    );
    const late = await rejection(dest.replaceList.forList(job).add!(members('late@example.com')));
    assert.equal(late.kind, 'fatal', 'a job that already ran cannot be filled');
    assert.match(late.message, /was already run; start a new list/);
  });

  test('capabilities, listMembers and the list a swapped connector points at', async () => {
    const { emu } = await setup();
    const factory = createDestinationFactory(() => secrets);
    const config = googleCustomerMatchConfigSchema.parse(baseConfig(emu));
    const afterSwap = factory(config, {
      tenant: 'default',
      listId: `customers/${CUSTOMER}/offlineUserDataJobs/42`,
    });
    assert.deepEqual(capabilitiesOf(afterSwap), {
      add: true,
      remove: true,
      truncate: true,
      listMembers: false,
      updateAttributes: false,
      createList: true,
    });
    assert.equal(afterSwap.limits.recordsPerCall, 100_000);
    const withAddress = {
      ...config,
      address: { firstName: 'f', lastName: 'l', countryCode: 'c', postalCode: 'z' },
    };
    assert.equal(
      capabilitiesOf(factory(withAddress, { tenant: 'default' })).updateAttributes,
      true,
      'the address is kept and updatable',
    );
    await afterSwap.add!(members('a@example.com'));
    assert.equal(emu.members(LIST).size, 1, 'after a swap the connector still writes the configured list');
    const other = factory(config, { tenant: 'default', listId: '5550002' });
    await other.add!(members('b@example.com'));
    assert.equal(emu.members('5550002').size, 1);
    assert.equal(afterSwap.listMembers, undefined, 'Customer Match lists cannot be read back');
  });

  test('every call goes through the throttle of account google-ads:{customerId}', async () => {
    const { emu } = await setup();
    const accounts: string[] = [];
    const dest = googleCustomerMatchDestination.create(
      googleCustomerMatchConfigSchema.parse(baseConfig(emu)),
      createDestinationContext({
        secrets,
        throttle: (account, _limits, call) => {
          accounts.push(account);
          return call();
        },
      }),
    );
    await dest.add!(members('a@example.com'));
    assert.equal(accounts.length, 5);
    assert.ok(accounts.every((a) => a === 'google-ads:1234567890'));
  });
});

describe('google-customer-match wire format', () => {
  test('sends the documented requests, headers and bodies', async () => {
    const seen: { url: string; headers: http.IncomingHttpHeaders; body: unknown }[] = [];
    let polls = 0;
    const server = track(
      await startFakeServer((req, res, text) => {
        seen.push({ url: req.url!, headers: req.headers, body: JSON.parse(text) });
        const job = 'customers/1234567890/offlineUserDataJobs/77';
        const answer = req.url!.endsWith(':create')
          ? { resourceName: job }
          : req.url!.endsWith(':search')
            ? {
                results: [
                  { offlineUserDataJob: { resourceName: job, status: polls++ ? 'SUCCESS' : 'RUNNING' } },
                ],
              }
            : req.url!.endsWith(':run')
              ? { name: 'customers/1234567890/operations/77' }
              : {};
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(answer));
      }),
    );
    const dest = createGoogleCustomerMatchDestination(
      {
        ...baseConfig(server),
        loginCustomerId: '111-222-3333',
        apiVersion: 'v21',
      },
      testContext(secrets).context,
    );
    await dest.remove(['Ann@Example.com']);

    const job = 'customers/1234567890/offlineUserDataJobs/77';
    assert.deepEqual(
      seen.map((s) => [s.url, s.body]),
      [
        [
          '/v21/customers/1234567890/offlineUserDataJobs:create',
          {
            job: {
              type: 'CUSTOMER_MATCH_USER_LIST',
              customerMatchUserListMetadata: { userList: `customers/1234567890/userLists/${LIST}` },
            },
          },
        ],
        [
          `/v21/${job}:addOperations`,
          {
            enablePartialFailure: true,
            operations: [{ remove: { userIdentifiers: [{ hashedEmail: sha256Hex('ann@example.com') }] } }],
          },
        ],
        [`/v21/${job}:run`, {}],
        ...[1, 2].map(() => [
          '/v21/customers/1234567890/googleAds:search',
          {
            query:
              'SELECT offline_user_data_job.resource_name, offline_user_data_job.status, offline_user_data_job.failure_reason, ' +
              'offline_user_data_job.operation_metadata.match_rate_range ' +
              `FROM offline_user_data_job WHERE offline_user_data_job.resource_name = '${job}' LIMIT 1`,
          },
        ]),
      ],
    );
    for (const { headers } of seen) {
      assert.equal(headers.authorization, `Bearer ${ACCESS_TOKEN}`);
      assert.equal(headers['developer-token'], DEV_TOKEN);
      assert.equal(headers['login-customer-id'], '1112223333');
    }

    // An upload asks for Google's match rate estimate when its job is created.
    seen.length = 0;
    polls = 0;
    await dest.add(members('Bo@Example.com'));
    assert.deepEqual(seen[0]!.body, {
      job: {
        type: 'CUSTOMER_MATCH_USER_LIST',
        customerMatchUserListMetadata: { userList: `customers/1234567890/userLists/${LIST}` },
      },
      enableMatchRateRangePreview: true,
    });
  });
});

describe('google-customer-match emulator', () => {
  async function raw(emu: CustomerMatchEmulator, path: string, body: unknown) {
    const response = await fetch(`${emu.url}/${GOOGLE_ADS_API_VERSION}/customers/${CUSTOMER}/${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ACCESS_TOKEN}`, 'developer-token': DEV_TOKEN },
      body: JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as Record<string, any> }; // eslint-disable-line @typescript-eslint/no-explicit-any
  }
  const code = (body: Record<string, any>) => body.error.details[0].errors[0].errorCode; // eslint-disable-line @typescript-eslint/no-explicit-any
  const newJob = async (emu: CustomerMatchEmulator, externalId?: string) =>
    (
      await raw(emu, 'offlineUserDataJobs:create', {
        job: {
          type: 'CUSTOMER_MATCH_USER_LIST',
          externalId,
          customerMatchUserListMetadata: { userList: `customers/${CUSTOMER}/userLists/${LIST}` },
        },
      })
    ).body.resourceName as string;
  const create = (email: string) => ({ create: { userIdentifiers: [{ hashedEmail: emailHash(email) }] } });
  const remove = (email: string) => ({ remove: { userIdentifiers: [{ hashedEmail: emailHash(email) }] } });
  const jobPath = (job: string) => job.slice(`customers/${CUSTOMER}/`.length);

  test('enforces the job rules of the real API', async () => {
    const emu = track(
      await startGoogleCustomerMatchEmulator({
        developerToken: DEV_TOKEN,
        accessToken: ACCESS_TOKEN,
        userLists: { [CUSTOMER]: [LIST] },
      }),
    );
    const job = jobPath(await newJob(emu));
    const add = (operations: unknown[], enablePartialFailure = true) =>
      raw(emu, `${job}:addOperations`, { operations, enablePartialFailure });

    const late = await add([create('a@x.io'), { removeAll: true }]);
    assert.equal(late.status, 400);
    assert.deepEqual(code(late.body), { offlineUserDataJobError: 'INVALID_OPERATION_ORDER' });
    assert.equal((await add([{ removeAll: true }, create('a@x.io')])).status, 200, 'first is fine');
    const again = await add([{ removeAll: true }]);
    assert.deepEqual(code(again.body), { offlineUserDataJobError: 'INVALID_OPERATION_ORDER' });
    const mixed = await add([remove('b@x.io')]);
    assert.deepEqual(code(mixed.body), { offlineUserDataJobError: 'CONFLICTING_OPERATION' });

    const rawEmail = { create: { userIdentifiers: [{ hashedEmail: 'c@x.io' }] } };
    const partial = await add([create('d@x.io'), rawEmail]);
    assert.equal(partial.status, 200);
    const failure = partial.body.partialFailureError;
    assert.equal(failure.code, 3);
    assert.deepEqual(failure.details[0].errors[0].errorCode, {
      offlineUserDataJobError: 'INVALID_SHA256_FORMAT',
    });
    assert.deepEqual(failure.details[0].errors[0].location, {
      fieldPathElements: [{ fieldName: 'operations', index: 1 }],
    });
    const strict = await add([rawEmail], false);
    assert.equal(strict.status, 400, 'without partial failure the whole request is refused');

    const tooMany = await add([
      { create: { userIdentifiers: Array(21).fill({ hashedEmail: emailHash('e@x.io') }) } },
    ]);
    assert.deepEqual(tooMany.body.partialFailureError.details[0].errors[0].errorCode, {
      offlineUserDataJobError: 'TOO_MANY_USER_IDENTIFIERS',
    });

    assert.equal((await raw(emu, `${job}:run`, {})).status, 200);
    const started = await add([create('f@x.io')]);
    assert.deepEqual(code(started.body), { offlineUserDataJobError: 'JOB_ALREADY_STARTED' });
    assert.equal(emu.members(LIST).size, 0, 'nothing applied while RUNNING');
    emu.completeJobs();
    assert.deepEqual(memberKeys(emu), hashes('a@x.io', 'd@x.io'));

    await newJob(emu, '77');
    const duplicate = await raw(emu, 'offlineUserDataJobs:create', {
      job: {
        type: 'CUSTOMER_MATCH_USER_LIST',
        externalId: '77',
        customerMatchUserListMetadata: { userList: `customers/${CUSTOMER}/userLists/${LIST}` },
      },
    });
    assert.deepEqual(code(duplicate.body), { offlineUserDataJobError: 'EXTERNAL_UPDATE_ID_ALREADY_EXISTS' });
  });

  test("holds every request to Google's protos: off-spec bodies get Google's 400 and fail the run", async () => {
    const emu = track(
      await startGoogleCustomerMatchEmulator({
        developerToken: DEV_TOKEN,
        accessToken: ACCESS_TOKEN,
        userLists: { [CUSTOMER]: [LIST] },
      }),
    );
    const job = {
      type: 'CUSTOMER_MATCH_USER_LIST',
      customerMatchUserListMetadata: { userList: `customers/${CUSTOMER}/userLists/${LIST}` },
    };
    const unknown = await raw(emu, 'offlineUserDataJobs:create', { job, partialFailure: true });
    assert.equal(unknown.status, 400);
    assert.equal(unknown.body.error.status, 'INVALID_ARGUMENT');
    assert.equal(unknown.body.error.details[0]['@type'], 'type.googleapis.com/google.rpc.BadRequest');
    assert.match(unknown.body.error.details[0].fieldViolations[0].description, /'partialFailure' is not in/);
    const badEnum = await raw(emu, 'offlineUserDataJobs:create', { job: { ...job, type: 'CUSTOMER_MATCH' } });
    assert.equal(badEnum.status, 400);
    const jobName = jobPath(await newJob(emu));
    const missing = await raw(emu, `${jobName}:addOperations`, { enablePartialFailure: true });
    assert.equal(missing.status, 400);
    assert.match(missing.body.error.message, /required field 'operations' is missing/);
    const twoKinds = await raw(emu, `${jobName}:addOperations`, {
      operations: [{ create: { userIdentifiers: [{ hashedEmail: emailHash('a@x.io') }] }, removeAll: true }],
    });
    assert.match(twoKinds.body.error.message, /more than one of oneof 'operation'/);

    const violations = takeSpecViolations();
    assert.deepEqual(
      violations.map((v) => [v.emulator, v.endpoint, v.direction]),
      [
        ['google-customer-match', 'offlineUserDataJobs:create', 'request'],
        ['google-customer-match', 'offlineUserDataJobs:create', 'request'],
        ['google-customer-match', 'offlineUserDataJobs:addOperations', 'request'],
        ['google-customer-match', 'offlineUserDataJobs:addOperations', 'request'],
      ],
    );
    assert.equal(emu.jobs().length, 1, 'refused requests never reach the emulated API');
  });

  test('answers are held to the protos too: what the emulator used to send is off-spec', () => {
    const exchange = (endpoint: string) => ({
      endpoint,
      method: 'POST',
      pathname: `/${GOOGLE_ADS_API_VERSION}/customers/${CUSTOMER}/x`,
      query: new URLSearchParams(),
      headers: {},
      body: {},
    });
    // SearchGoogleAdsResponse has no requestId (Google sends it as the request-id header).
    assert.deepEqual(
      googleAdsSpec().response(exchange('googleAds:search'), {
        status: 200,
        body: { results: [], fieldMask: 'offlineUserDataJob.status', requestId: 'r1' },
      }),
      [
        `200 answer body: field 'requestId' is not in google.ads.googleads.${GOOGLE_ADS_API_VERSION}.services.SearchGoogleAdsResponse`,
      ],
    );
    // partialFailureError is a google.rpc.Status: code, message, details; no status name.
    const problems = googleAdsSpec().response(exchange('offlineUserDataJobs:addOperations'), {
      status: 200,
      body: { partialFailureError: { code: 3, message: 'm', status: 'INVALID_ARGUMENT', details: [] } },
    });
    assert.deepEqual(problems, [
      "200 answer body.partialFailureError: field 'status' is not in google.rpc.Status",
    ]);
  });

  test('serves the version of its protos only; other versions are not found', async () => {
    const emu = track(
      await startGoogleCustomerMatchEmulator({
        developerToken: DEV_TOKEN,
        accessToken: ACCESS_TOKEN,
        userLists: { [CUSTOMER]: [LIST] },
      }),
    );
    const response = await fetch(`${emu.url}/v26/customers/${CUSTOMER}/googleAds:search`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ACCESS_TOKEN}`, 'developer-token': DEV_TOKEN },
      body: JSON.stringify({ query: 'x' }),
    });
    assert.equal(response.status, 404);
  });

  test('job states PENDING → RUNNING → SUCCESS, read back by search; run answers an Operation', async () => {
    const emu = track(
      await startGoogleCustomerMatchEmulator({
        developerToken: DEV_TOKEN,
        accessToken: ACCESS_TOKEN,
        userLists: { [CUSTOMER]: [LIST] },
        runningPolls: 2,
      }),
    );
    const job = await newJob(emu);
    const status = async () =>
      (
        await raw(emu, 'googleAds:search', {
          query: `SELECT offline_user_data_job.status FROM offline_user_data_job WHERE offline_user_data_job.resource_name = '${job}'`,
        })
      ).body.results[0].offlineUserDataJob.status as string;
    const seen = [await status()];
    await raw(emu, `${jobPath(job)}:addOperations`, { operations: [create('a@x.io')] });
    const run = await raw(emu, `${jobPath(job)}:run`, {});
    assert.equal(run.body.name, `customers/${CUSTOMER}/operations/${job.split('/').pop()}`);
    assert.equal(
      run.body.metadata['@type'],
      `type.googleapis.com/google.ads.googleads.${GOOGLE_ADS_API_VERSION}.resources.OfflineUserDataJobMetadata`,
    );
    seen.push(await status(), await status(), await status());
    assert.deepEqual(seen, ['PENDING', 'RUNNING', 'RUNNING', 'SUCCESS']);
    assert.deepEqual(memberKeys(emu), hashes('a@x.io'));
    assert.deepEqual([...JOB_STATES], ['PENDING', 'RUNNING', 'SUCCESS', 'FAILED']);
  });

  test('match_rate_range: from RUNNING on, for uploads whose job asked for the preview, when selected', async () => {
    const emu = track(
      await startGoogleCustomerMatchEmulator({
        developerToken: DEV_TOKEN,
        accessToken: ACCESS_TOKEN,
        userLists: { [CUSTOMER]: [LIST] },
        matchRate: 0.72,
      }),
    );
    const preview = async (operation: object) => {
      const job = (
        await raw(emu, 'offlineUserDataJobs:create', {
          job: {
            type: 'CUSTOMER_MATCH_USER_LIST',
            customerMatchUserListMetadata: { userList: `customers/${CUSTOMER}/userLists/${LIST}` },
          },
          enableMatchRateRangePreview: true,
        })
      ).body.resourceName as string;
      await raw(emu, `${jobPath(job)}:addOperations`, { operations: [operation] });
      return job;
    };
    const range = async (
      job: string,
      field = 'offline_user_data_job.operation_metadata.match_rate_range',
    ) => {
      const row = (
        await raw(emu, 'googleAds:search', {
          query: `SELECT offline_user_data_job.status, ${field} FROM offline_user_data_job WHERE offline_user_data_job.resource_name = '${job}'`,
        })
      ).body.results[0].offlineUserDataJob;
      return `${row.status} ${row.operationMetadata?.matchRateRange ?? '-'}`;
    };
    const upload = await preview(create('a@x.io'));
    const seen = [await range(upload)];
    await raw(emu, `${jobPath(upload)}:run`, {});
    seen.push(await range(upload), await range(upload));
    assert.deepEqual(seen, ['PENDING -', 'RUNNING MATCH_RANGE_71_TO_80', 'SUCCESS MATCH_RANGE_71_TO_80']);
    assert.equal(await range(upload, 'offline_user_data_job.failure_reason'), 'SUCCESS -', 'not selected');

    const removal = await preview(remove('a@x.io'));
    await raw(emu, `${jobPath(removal)}:run`, {});
    assert.equal(await range(removal), 'RUNNING -', 'a removal uploads no one to match');
    const noPreview = await newJob(emu);
    await raw(emu, `${jobPath(noPreview)}:addOperations`, { operations: [create('b@x.io')] });
    await raw(emu, `${jobPath(noPreview)}:run`, {});
    assert.equal(await range(noPreview), 'RUNNING -', 'without the preview Google computes none');
  });

  test("match rate ranges mean what Google's enum says, on both sides", () => {
    // "Match rate range for offline data upload entity is between 20% and 30%." and so on.
    const proto = readFileSync(
      path.join(
        projectRoot,
        `test/vendor-specs/google-ads/google/ads/googleads/${GOOGLE_ADS_API_VERSION}/enums/offline_user_data_job_match_rate_range.proto`,
      ),
      'utf8',
    );
    const bounds = new Map<string, [number, number]>();
    // Each value with the comment above it (which may run over two lines).
    for (const [, comment, value] of proto.matchAll(
      /((?:[ \t]*\/\/[^\n]*\n)+)[ \t]*(MATCH_RANGE_\w+) = \d+;/g,
    )) {
      const percents = [...comment!.matchAll(/(\d+)%/g)].map((m) => Number(m[1]));
      bounds.set(value!, percents.length === 2 ? [percents[0]!, percents[1]!] : [percents[0]!, 100]);
    }
    assert.equal(bounds.size, 9, 'nine ranges, from less than 20% to 91% and more');
    for (let percent = 0; percent <= 100; percent++) {
      const value = matchRateRangeFor(percent / 100);
      const [low, high] = bounds.get(value)!;
      assert.ok(low <= percent && percent <= high, `${percent}% → ${value}`);
    }
    for (const [value, [low, high]] of bounds) {
      assert.deepEqual(matchEstimateOf(value, 7), { records: 7, lowPercent: low, highPercent: high }, value);
    }
    assert.equal(matchEstimateOf('UNKNOWN', 7), undefined);
    assert.equal(matchEstimateOf(undefined, 7), undefined);
  });

  test("the limits are Google's: the constants say what the protos say, and the emulator holds them", async () => {
    const specDir = path.join(
      projectRoot,
      `test/vendor-specs/google-ads/google/ads/googleads/${GOOGLE_ADS_API_VERSION}`,
    );
    const errors = readFileSync(path.join(specDir, 'errors/offline_user_data_job_error.proto'), 'utf8');
    const sentence =
      /Maximum number of user identifiers allowed per request is ([\d,]+) and per\s*\/\/\s*operation is (\d+)\.\s*TOO_MANY_USER_IDENTIFIERS/.exec(
        errors.replace(/\n\s*/g, ' '),
      );
    assert.ok(sentence, 'the TOO_MANY_USER_IDENTIFIERS comment is where it was');
    assert.equal(MAX_IDENTIFIERS_PER_REQUEST, Number(sentence[1]!.replace(/,/g, '')));
    assert.equal(MAX_IDENTIFIERS_PER_OPERATION, Number(sentence[2]));
    const statuses = readFileSync(path.join(specDir, 'enums/offline_user_data_job_status.proto'), 'utf8');
    const states = [...statuses.matchAll(/^\s+([A-Z_]+) = \d+;/gm)].map((m) => m[1]);
    assert.deepEqual(states, ['UNSPECIFIED', 'UNKNOWN', ...JOB_STATES]);

    const emu = track(
      await startGoogleCustomerMatchEmulator({
        developerToken: DEV_TOKEN,
        accessToken: ACCESS_TOKEN,
        userLists: { [CUSTOMER]: [LIST] },
      }),
    );
    const job = jobPath(await newJob(emu));
    const person = (n: number) => ({
      create: {
        userIdentifiers: Array.from({ length: n }, (_, i) => ({ hashedEmail: emailHash(`p${i}@x.io`) })),
      },
    });
    const perOperation = await raw(emu, `${job}:addOperations`, {
      enablePartialFailure: true,
      operations: [person(MAX_IDENTIFIERS_PER_OPERATION), person(MAX_IDENTIFIERS_PER_OPERATION + 1)],
    });
    assert.equal(perOperation.body.partialFailureError.details[0].errors.length, 1);
    assert.deepEqual(perOperation.body.partialFailureError.details[0].errors[0].location, {
      fieldPathElements: [{ fieldName: 'operations', index: 1 }],
    });
    const operations = Array.from(
      { length: MAX_IDENTIFIERS_PER_REQUEST / MAX_IDENTIFIERS_PER_OPERATION + 1 },
      () => person(MAX_IDENTIFIERS_PER_OPERATION),
    );
    const perRequest = await raw(emu, `${job}:addOperations`, { enablePartialFailure: true, operations });
    assert.equal(perRequest.status, 400);
    assert.deepEqual(code(perRequest.body), { offlineUserDataJobError: 'TOO_MANY_USER_IDENTIFIERS' });
  });

  test('429s carry retryDelay in Google format; faults count down and clear', async () => {
    const emu = track(
      await startGoogleCustomerMatchEmulator({
        developerToken: DEV_TOKEN,
        accessToken: ACCESS_TOKEN,
        userLists: { [CUSTOMER]: [LIST] },
      }),
    );
    emu.faults.set({
      rateLimit: { calls: 1, retryDelaySeconds: 12 },
      serverError: { calls: 2, status: 503 },
    });
    const limited = await raw(emu, 'googleAds:search', { query: 'x' });
    assert.equal(limited.status, 429);
    assert.equal(limited.body.error.status, 'RESOURCE_EXHAUSTED');
    const detail = limited.body.error.details[0].errors[0];
    assert.deepEqual(detail.errorCode, { quotaError: 'RESOURCE_TEMPORARILY_EXHAUSTED' });
    assert.equal(parseDuration(detail.details.quotaErrorDetails.retryDelay), 12_000);
    assert.deepEqual(emu.faults.get(), { serverError: { calls: 2, status: 503 } });
    assert.equal((await raw(emu, 'googleAds:search', { query: 'x' })).status, 503);
    emu.faults.clear();
    assert.deepEqual(emu.faults.get(), {});
    const badQuery = await raw(emu, 'googleAds:search', { query: 'SELECT campaign.id FROM campaign' });
    assert.equal(badQuery.status, 400);
    assert.deepEqual(emu.stats().statuses, { 400: 1, 429: 1, 503: 1 });
  });
});

describe('google-customer-match config', () => {
  test('the default API version is the one whose protos are in the repo (v26 has none published)', () => {
    const versions = readdirSync(path.join(projectRoot, 'test/vendor-specs/google-ads/google/ads/googleads'));
    assert.deepEqual(versions, [GOOGLE_ADS_API_VERSION]);
    const parsed = googleCustomerMatchConfigSchema.parse({
      type: 'google-customer-match',
      customerId: '1234567890',
      userListId: '42',
      developerTokenSecret: 'D',
      accessTokenSecret: 'A',
    });
    assert.equal(parsed.apiVersion, GOOGLE_ADS_API_VERSION);
  });

  test('defaults, id normalisation and validation', () => {
    const parsed = googleCustomerMatchConfigSchema.parse({
      type: 'google-customer-match',
      customerId: '123-456-7890',
      userListId: '42',
      developerTokenSecret: 'D',
      accessTokenSecret: 'A',
    });
    assert.equal(parsed.customerId, '1234567890');
    assert.equal(parsed.keyType, 'email');
    assert.equal(parsed.removeGmailDots, false);
    assert.equal(parsed.baseUrl, 'https://googleads.googleapis.com');
    assert.equal(parsed.identifiersPerRequest, 100_000);
    const bad = googleCustomerMatchConfigSchema.safeParse({
      ...parsed,
      customerId: '12345',
      userListId: 'list',
      identifiersPerRequest: 100_001,
      defaultCountry: 'germany',
    });
    assert.deepEqual(bad.error?.issues.map((i) => i.path.join('.')).sort(), [
      'customerId',
      'defaultCountry',
      'identifiersPerRequest',
      'userListId',
    ]);
  });
});

// --- Refresh workflows on the real Temporal dev server --------------------------------------------

interface Person {
  email: string;
  first_name: string;
  last_name: string;
  country: string;
  postal_code: string;
}

function person(n: number): Person {
  return {
    email: `person${n}@example.com`,
    first_name: `First${n}`,
    last_name: `Last${n}`,
    country: ['DE', 'US', 'FR'][n % 3]!,
    postal_code: String(10_000 + n),
  };
}

describe('refresh workflow with google-customer-match (mysql)', () => {
  const scenario = refreshScenario({
    emulator: () =>
      startGoogleCustomerMatchEmulator({
        developerToken: DEV_TOKEN,
        accessToken: ACCESS_TOKEN,
        userLists: {},
        // Full jobs (10 people) match 55%, smaller ones 95%: a run's estimate is weighted by job.
        matchRate: (job) => (job.operations.create >= 10 ? 0.55 : 0.95),
      }),
  });
  let listCounter = 0;

  async function connectorWith(
    id: string,
    rows: Person[],
    config: Partial<GoogleCustomerMatchConfigInput> = {},
  ) {
    const { emu, db } = scenario;
    const table = `people_${id.replace(/-/g, '_')}`;
    await db.schema.createTable(table, (tb) => {
      tb.string('email', 100).primary().collate('utf8mb4_bin');
      for (const column of ['first_name', 'last_name', 'country', 'postal_code']) tb.string(column, 50);
    });
    await db(table).insert(rows);
    const userListId = String(7_000_000 + listCounter++);
    emu.addUserList(CUSTOMER, userListId);
    const connector = {
      id,
      dataset: { table, key: 'email', attributes: ['first_name', 'last_name', 'country', 'postal_code'] },
      destination: {
        ...baseConfig(emu),
        userListId,
        recordsPerCall: 10,
        pollIntervalMs: 5,
        maxPollIntervalMs: 20,
        address: {
          firstName: 'first_name',
          lastName: 'last_name',
          countryCode: 'country',
          postalCode: 'postal_code',
        },
        ...config,
      },
      policy: { batchSize: 10 },
    };
    await saveConnector(db, connector as ConnectorInput);
    return { connector, table, userListId };
  }

  /** The user list holds exactly the dataset: hashed e-mails, with the current postal codes. */
  async function assertListEqualsDataset(table: string, userListId: string) {
    const rows = (await scenario.db(table).select()) as Person[];
    const listed = scenario.emu.members(userListId);
    assert.deepEqual([...listed.keys()].sort(), rows.map((r) => emailHash(r.email)).sort());
    for (const row of rows) {
      const address = listed.get(emailHash(row.email))![1]!.addressInfo!;
      assert.equal(address.postalCode, row.postal_code, `postal code of ${row.email}`);
      assert.equal(address.hashedLastName, sha256Hex(normalizeName(row.last_name)!));
    }
  }

  test('two refreshes: additions, deletions, attribute updates, a 429 and a 5xx on the way', async () => {
    const { emu, db } = scenario;
    const { connector, table, userListId } = await connectorWith(
      'gcm-diff',
      Array.from({ length: 25 }, (_, i) => person(i + 1)),
    );
    emu.faults.set({
      rateLimit: { calls: 1, retryDelaySeconds: 1, endpoint: 'offlineUserDataJobs:addOperations' },
      serverError: { calls: 1, status: 503, endpoint: 'offlineUserDataJobs:run' },
    });
    await scenario.withWorker(secrets, async (client) => {
      const first = await client.refresh(connector.id);
      assert.equal(first.status, 'succeeded');
      assert.deepEqual([first.additions, first.updates, first.deletions], [25, 0, 0]);
      assert.equal(first.rateLimitWaits, 1);
      assert.deepEqual(emu.faults.get(), {}, 'both faults were hit');
      await assertListEqualsDataset(table, userListId);
      // Jobs of 10, 10 and 5 people: 51–60% of 20 and 91–100% of 5, weighted.
      assert.deepEqual(first.matchEstimate, { records: 25, lowPercent: 59, highPercent: 68 });
      const [listed] = await client.runs(connector.id, { limit: 1 });
      assert.deepEqual(listed!.matchEstimate, first.matchEstimate);
      assert.equal(first.matchRate, null, 'Google counts no invalid entries');

      // Life goes on: 4 people leave, 3 arrive, 2 move house.
      await db(table)
        .whereIn('email', [
          'person2@example.com',
          'person9@example.com',
          'person17@example.com',
          'person24@example.com',
        ])
        .delete();
      await db(table).insert([person(101), person(102), person(103)]);
      await db(table)
        .whereIn('email', ['person5@example.com', 'person20@example.com'])
        .update({ postal_code: '99999' });
      const jobsBefore = emu.jobs().length;
      const second = await client.refresh(connector.id);
      assert.equal(second.status, 'succeeded');
      assert.deepEqual([second.additions, second.updates, second.deletions], [3, 2, 4]);
      assert.equal(emu.jobs().length - jobsBefore, 2, 'one job for the 5 upserts, one for the 4 removals');
      await assertListEqualsDataset(table, userListId);
      assert.deepEqual(
        second.matchEstimate,
        { records: 5, lowPercent: 91, highPercent: 100 },
        'the upload only: removals are matched to no one',
      );
    });
  });

  test('a FAILED job: its batch is not committed, the run fails, the next refresh delivers it', async () => {
    const { emu, db } = scenario;
    const { connector, table, userListId } = await connectorWith(
      'gcm-failed-job',
      Array.from({ length: 30 }, (_, i) => person(i + 200)),
      { maxJobAttempts: 1 },
    );
    emu.faults.set({ failJobs: { jobs: 1, reason: 'UNKNOWN' } });
    await scenario.withWorker(secrets, async (client) => {
      const run = await client.startRefresh(connector.id);
      await assert.rejects(run.result(), (err: Error) => /1 of \d+ API calls failed/.test(String(err.cause)));
      const [failed] = await listRuns(db, `default/${connector.id}`);
      assert.equal(failed!.status, 'failed');
      assert.equal(failed!.records_sent, 20, 'two of three batches delivered and committed');
      // The FAILED job applied half of its batch (Google: "Some operations may have been
      // successfully processed"); the whole batch stays pending all the same.
      assert.equal(emu.members(userListId).size, 25);
      const pending = await db('deltalog')
        .where({ connector_id: `default/${connector.id}` })
        .whereNull('committed_at');
      assert.equal(pending.length, 10, 'the failed batch stays pending');
      assert.match(String(pending[0].last_error), /ended FAILED \(failure reason UNKNOWN\)/);

      const retry = await client.refresh(connector.id);
      assert.equal(retry.status, 'succeeded');
      assert.deepEqual([retry.additions, retry.recordsSent], [10, 10]);
      await assertListEqualsDataset(table, userListId);
    });
  });
});
