import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { openApiCheck, protoCheck, type SpecExchange } from '../../src/connectors/kit/vendor-spec';

/** The checker the emulators hold to the vendors' specs: what it lets pass, and what it refuses. */

const exchange = (
  body: unknown,
  query = '',
  headers: Record<string, string> = { revision: '1' },
): SpecExchange => ({
  endpoint: 'add',
  method: 'POST',
  pathname: '/3.0/lists/L1/members',
  query: new URLSearchParams(query),
  headers,
  body,
});

describe('openApiCheck', () => {
  const check = openApiCheck({
    document: 'test/fixtures/vendor-spec/mini.openapi.json',
    operations: { add: 'POST /lists/{listId}/members', unchecked: null },
  });

  test('a request as the spec describes it passes (allOf parts, nullable, base path before the template)', () => {
    assert.deepEqual(
      check.request(exchange({ members: [{ email: 'a@example.com', status: null }] }, 'limit=10')),
      [],
    );
    assert.deepEqual(
      check.request(
        exchange({ members: [{ email: 'a@example.com', status: 'pending' }], extra: { k: 'v' } }),
      ),
      [],
    );
  });

  test("OAS 3.1's nullable object (oneOf: [{type: object}, {type: null}] beside properties) is closed by its properties", () => {
    assert.deepEqual(check.request(exchange({ members: [], tags: { a: 'x' } })), []);
    assert.deepEqual(check.request(exchange({ members: [], tags: null })), []);
    assert.match(
      check.request(exchange({ members: [], tags: { b: 'x' } })).join(),
      /field 'b' is not in the spec/,
    );
  });

  test('a field the spec does not list is refused, also inside an allOf', () => {
    const problems = check.request(
      exchange({ members: [{ email: 'a@example.com', status_if_new: 'subscribed' }] }),
    );
    assert.deepEqual(problems, ["request body at /members/0: field 'status_if_new' is not in the spec"]);
    assert.match(
      check.request(exchange({ members: [], update: true })).join(),
      /field 'update' is not in the spec/,
    );
  });

  test('missing required fields, wrong types, limits, query and headers are refused', () => {
    assert.match(check.request(exchange({})).join(), /required field 'members' is missing/);
    assert.match(
      check.request(exchange({ members: [{}] })).join(),
      /at \/members\/0: required field 'email'/,
    );
    assert.match(
      check.request(exchange({ members: [{ email: 'not an address' }] })).join(),
      /must match format "email"/,
    );
    assert.match(
      check.request(exchange({ members: [1, 2, 3].map(() => ({ email: 'a@example.com' })) })).join(),
      /must NOT have more than 2 items/,
    );
    assert.match(check.request(exchange({ members: [] }, 'limit=ten')).join(), /query 'limit'/);
    assert.match(
      check.request(exchange({ members: [] }, 'limit=101')).join(),
      /query 'limit': must be <= 100/,
    );
    assert.match(
      check.request(exchange({ members: [] }, 'page=2')).join(),
      /query parameter 'page' is not in the spec/,
    );
    assert.match(check.request(exchange({ members: [] }, '', {})).join(), /header 'revision' is required/);
    assert.match(check.request(exchange(undefined)).join(), /request body is required/);
    assert.match(
      check.request({ ...exchange({ members: [] }), pathname: '/lists/L1/other' }).join(),
      /does not match/,
    );
    assert.match(
      check.request({ ...exchange({ members: [] }), method: 'PUT' }).join(),
      /PUT is not the operation's method \(POST\)/,
    );
  });

  test('answers are checked against the documented status', () => {
    assert.deepEqual(check.response(exchange({}), { status: 200, body: { added: 2 } }), []);
    assert.match(
      check.response(exchange({}), { status: 200, body: { added: 2, total: 3 } }).join(),
      /field 'total' is not in the spec/,
    );
    assert.match(check.response(exchange({}), { status: 204, body: { added: 1 } }).join(), /carries no body/);
    assert.deepEqual(
      check.response(exchange({}), { status: 429, body: { anything: true } }),
      [],
      'undocumented status: nothing to hold it to',
    );
    assert.deepEqual(check.request({ ...exchange({ nonsense: 1 }), endpoint: 'unchecked' }), []);
  });

  test('an operation missing from the document is a setup error, not a silent pass', () => {
    assert.throws(
      () =>
        openApiCheck({
          document: 'test/fixtures/vendor-spec/mini.openapi.json',
          operations: { x: 'GET /nowhere' },
        }),
      /has no operation GET \/nowhere/,
    );
  });
});

describe('protoCheck', () => {
  const check = protoCheck({
    root: 'test/fixtures/vendor-spec',
    files: ['mini.proto'],
    operations: {
      run: { request: 'mini.v1.RunJobRequest', response: 'mini.v1.Job', pathFields: ['resource_name'] },
    },
  });
  const run = (body: unknown): SpecExchange => ({ ...exchange(body), endpoint: 'run' });

  test('a REST-JSON body of the message passes (camelCase or proto names, int64 as string)', () => {
    assert.deepEqual(
      check.request(run({ job: { status: 'PENDING', size: '12', email: 'x' }, validateOnly: true })),
      [],
    );
    assert.deepEqual(check.request(run({ job: {}, validate_only: false })), []);
  });

  test('unknown fields, missing REQUIRED fields, bad enums, two of a oneof are refused', () => {
    assert.match(
      check.request(run({ job: {}, dryRun: true })).join(),
      /field 'dryRun' is not in mini.v1.RunJobRequest/,
    );
    assert.match(check.request(run({})).join(), /required field 'job' is missing/);
    assert.match(
      check.request(run(undefined)).join(),
      /required field 'job' is missing/,
      'a POST without a body',
    );
    assert.match(check.request(run({ job: { status: 'FINISHED' } })).join(), /'FINISHED' is not one of/);
    assert.match(
      check.request(run({ job: { email: 'a', phone: 'b' } })).join(),
      /more than one of oneof 'id'/,
    );
    assert.match(check.request(run({ job: { size: 'big' } })).join(), /size: must be an integer/);
    assert.match(
      check.response(run({}), { status: 200, body: { resourceName: 'r', stat: 'DONE' } }).join(),
      /'stat' is not in mini.v1.Job/,
    );
  });
});

describe('openApiCheck, error documents', () => {
  test('a `default` response served as */* is checked', () => {
    const check = openApiCheck({
      document: 'test/fixtures/vendor-spec/mini.openapi.json',
      operations: { remove: 'DELETE /lists/{listId}/members' },
    });
    const exchange: SpecExchange = {
      endpoint: 'remove',
      method: 'DELETE',
      pathname: '/lists/L1/members',
      query: new URLSearchParams(),
      headers: {},
      body: undefined,
    };
    assert.deepEqual(check.response(exchange, { status: 404, body: { message: 'no such list' } }), []);
    assert.match(
      check.response(exchange, { status: 404, body: { message: 'x', status: 'error' } }).join(),
      /field 'status' is not in the spec/,
    );
    assert.deepEqual(check.response(exchange, { status: 204 }), []);
  });
});
