import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { validateConnector } from '../src/connectors/catalog';
import { InvalidConnectorError } from '../src/core/connector';
import { createSecretStore } from '../src/tenancy/secrets';

/** Connector definitions (zod, with errors that name the field) and secret resolution. */

const valid = {
  id: 'crm-audience',
  dataset: { table: 'customers', key: 'email', attributes: ['name', 'country'] },
  destination: {
    type: 'http-list',
    baseUrl: 'https://lists.example.com/api',
    listId: 'list-1',
    tokenSecret: 'LIST_TOKEN',
  },
};

function problemsOf(input: unknown): string[] {
  try {
    validateConnector(input);
  } catch (error) {
    assert.ok(error instanceof InvalidConnectorError, `expected InvalidConnectorError, got ${String(error)}`);
    assert.equal(error.name, 'InvalidConnectorError');
    for (const problem of error.problems) assert.ok(error.message.includes(problem));
    return error.problems;
  }
  assert.fail('expected the definition to be rejected');
}

describe('validateConnector', () => {
  test('a valid http-list connector gets the defaults', () => {
    const connector = validateConnector(valid);
    assert.equal(connector.id, 'crm-audience');
    assert.equal(connector.tenant, 'default');
    assert.deepEqual(connector.dataset, valid.dataset);
    assert.deepEqual(connector.policy, {
      strategy: 'auto',
      retentionDays: 30,
      changeLogDays: 14,
      splitCallBudget: 100,
      successThreshold: 0.99,
      recordSuccessThreshold: 0.95,
      failureBudgetSeconds: 600,
      maxAttempts: 5,
      massDeleteGuard: { enabled: true, maxShare: 0.2, onEmptyDataset: true, approvalTimeoutSeconds: 86_400 },
    });
    assert.equal(connector.policy.batchSize, undefined);
    assert.equal(connector.policy.horizonDays, undefined);
    assert.equal(connector.destination.type, 'http-list');
    if (connector.destination.type !== 'http-list') return;
    assert.deepEqual(connector.destination.supports, ['add', 'remove', 'truncate', 'list']);
    assert.equal(connector.destination.recordsPerCall, 1000);
    assert.equal(connector.destination.tokenSecret, 'LIST_TOKEN');
  });

  test('given values win over defaults; attributes default to none', () => {
    const connector = validateConnector({
      ...valid,
      tenant: 'acme',
      dataset: { sql: 'SELECT email FROM customers WHERE active = 1', key: 'email' },
      policy: { strategy: 'truncate', batchSize: 50, horizonDays: 7, maxAttempts: 2 },
    });
    assert.equal(connector.tenant, 'acme');
    assert.deepEqual(connector.dataset.attributes, []);
    assert.equal(connector.dataset.table, undefined);
    assert.deepEqual(connector.policy, {
      strategy: 'truncate',
      batchSize: 50,
      horizonDays: 7,
      retentionDays: 30,
      changeLogDays: 14,
      splitCallBudget: 100,
      successThreshold: 0.99,
      recordSuccessThreshold: 0.95,
      failureBudgetSeconds: 600,
      maxAttempts: 2,
      massDeleteGuard: { enabled: true, maxShare: 0.2, onEmptyDataset: true, approvalTimeoutSeconds: 86_400 },
    });
  });

  test('a bad base URL is named by its path', () => {
    const problems = problemsOf({ ...valid, destination: { ...valid.destination, baseUrl: 'ftp://x' } });
    assert.deepEqual(problems, ['destination.baseUrl: baseUrl must be an http:// or https:// URL']);
  });

  test('a dataset needs exactly one of table and sql', () => {
    const both = problemsOf({ ...valid, dataset: { ...valid.dataset, sql: 'SELECT 1' } });
    assert.deepEqual(both, ['dataset: set exactly one of `table` and `sql`']);
    const neither = problemsOf({ ...valid, dataset: { key: 'email' } });
    assert.deepEqual(neither, ['dataset: set exactly one of `table` and `sql`']);
  });

  test('a change source is checked: its kind, its column or tables, and the tables of a SELECT', () => {
    const dataset = (changes: unknown, sql = false) => ({
      ...valid,
      dataset: sql ? { sql: 'SELECT 1 AS email', key: 'email', changes } : { ...valid.dataset, changes },
    });
    assert.deepEqual(problemsOf(dataset({ source: 'kafka' }))[0]?.split(':')[0], 'dataset.changes.source');
    assert.deepEqual(validateConnector(dataset({ source: 'binlog' })).dataset.changes, {
      source: 'binlog',
      fullCompareHours: 24,
    });
    assert.deepEqual(problemsOf(dataset({ source: 'binlog' }, true)), [
      'dataset.changes.tables: a `sql` dataset with `changes` names the base tables its rows depend on (`changes.tables`)',
    ]);
    assert.deepEqual(problemsOf(dataset({ source: 'watermark' })), [
      'dataset.changes: a watermark source names its column (`changes.column`) or its tables (`changes.tables`)',
    ]);
    assert.deepEqual(problemsOf(dataset({ source: 'triggers' }, true)), [
      'dataset.changes.tables: a `sql` dataset with `changes` names the base tables its rows depend on (`changes.tables`)',
    ]);
    const parsed = validateConnector(dataset({ source: 'watermark', column: 'updated_at' }));
    assert.deepEqual(parsed.dataset.changes, {
      source: 'watermark',
      column: 'updated_at',
      fullCompareHours: 24,
    });
  });

  test('a bad id, key or attribute is named by its path', () => {
    for (const id of ['CRM', 'crm audience', '-crm', '', 'x'.repeat(129)]) {
      const problems = problemsOf({ ...valid, id });
      assert.equal(problems.length, 1, id);
      assert.match(problems[0]!, /^id: /, id);
    }
    assert.match(problemsOf({ ...valid, id: 'CRM' })[0]!, /lower-case letters, digits, _, \. and -/);
    assert.equal(validateConnector({ ...valid, id: 'x'.repeat(128) }).id.length, 128);

    const injection = problemsOf({ ...valid, dataset: { ...valid.dataset, key: 'email; DROP TABLE x' } });
    assert.deepEqual(injection, ['dataset.key: must be a plain SQL identifier (letters, digits, _, $, .)']);
    const attribute = problemsOf({ ...valid, dataset: { ...valid.dataset, attributes: ['name', 'a b'] } });
    assert.match(attribute[0]!, /^dataset\.attributes\.1: /);
  });

  test('policy and destination problems are each listed with their path', () => {
    const problems = problemsOf({
      ...valid,
      destination: { ...valid.destination, listId: '', recordsPerCall: 0 },
      policy: { strategy: 'sometimes', successThreshold: 1.5, maxAttempts: 0 },
    });
    const paths = problems.map((p) => p.split(':')[0]).sort();
    assert.deepEqual(paths, [
      'destination.listId',
      'destination.recordsPerCall',
      'policy.maxAttempts',
      'policy.strategy',
      'policy.successThreshold',
    ]);
  });

  test('an unknown destination type and a missing object are reported', () => {
    const unknown = problemsOf({ ...valid, destination: { type: 'carrier-pigeon' } });
    assert.equal(unknown.length, 1);
    assert.match(unknown[0]!, /^destination\.type: /);
    const root = problemsOf(null);
    assert.match(root[0]!, /^\(root\): /);
  });

  test('a sql-table URL with a password is refused without echoing the password', () => {
    const problems = problemsOf({
      ...valid,
      destination: { type: 'sql-table', url: 'mysql://app:hunter2@db.example.com/lists', table: 'members' },
    });
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /^destination\.url: url must not contain a password/);
    assert.ok(!problems.join('\n').includes('hunter2'));
  });
});

describe('secrets, scoped by tenant', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deltasync-secrets-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  let fileCounter = 0;
  const file = (text: string) => {
    const name = path.join(dir, `secrets-${fileCounter++}`);
    fs.writeFileSync(name, text);
    return name;
  };

  test("a tenant's environment variable is looked up first, then its section of the file", () => {
    const secretsFile = file(
      JSON.stringify({
        acme: { TOKEN: 'from-file', ONLY_FILE: 'file-value' },
        other: { MINE: 'other-value' },
      }),
    );
    const store = createSecretStore(
      { DELTASYNC_SECRET_ACME__TOKEN: 'from-env', DELTASYNC_SECRET_ACME__EMPTY: '', TOKEN: 'worker-own' },
      secretsFile,
    );
    const acme = store.forTenant('acme');
    assert.equal(acme('TOKEN'), 'from-env');
    assert.equal(acme('ONLY_FILE'), 'file-value');
    assert.throws(
      () => acme('EMPTY'),
      /tenant 'acme' has no secret 'EMPTY'/,
      'an empty variable is not a value',
    );
    assert.throws(() => acme('MINE'), /tenant 'acme' has no secret 'MINE'/, "another tenant's secret");
    assert.equal(store.forTenant('other')('MINE'), 'other-value');
    assert.throws(
      () => store.forTenant('other')('TOKEN'),
      /no secret 'TOKEN'/,
      "the worker's own TOKEN is no one's",
    );
    assert.equal(store.has('acme', 'TOKEN'), true);
    assert.equal(store.has('other', 'TOKEN'), false);
  });

  test("the worker's own configuration is never a secret of any tenant", () => {
    const store = createSecretStore({
      DELTASYNC_DATABASE_URL: 'mysql://root:pw@db/deltasync',
      HOME: '/root',
      DELTASYNC_SECRET_B__TOKEN: 'b-token',
    });
    for (const name of ['DELTASYNC_DATABASE_URL', 'HOME', 'DELTASYNC_SECRET_B__TOKEN', 'B__TOKEN']) {
      assert.equal(store.has('a', name), false, name);
    }
    assert.equal(store.has('a', '../b/TOKEN'), false, 'not a secret name at all');
  });

  test('tenant ids with dashes map to underscores in variable names', () => {
    const store = createSecretStore({ DELTASYNC_SECRET_TENANT_A__LIST_TOKEN: 'a' });
    assert.equal(store.forTenant('tenant-a')('LIST_TOKEN'), 'a');
  });

  test('the secrets file defaults to DELTASYNC_SECRETS_FILE and may be YAML', () => {
    const secretsFile = file('default:\n  TOKEN: abc\n  PORT: 5432\n');
    const store = createSecretStore({ DELTASYNC_SECRETS_FILE: secretsFile });
    assert.equal(store.forTenant('default')('TOKEN'), 'abc');
    assert.equal(store.forTenant('default')('PORT'), '5432');
  });

  test('a secrets file not grouped by tenant is refused with the expected shape', () => {
    const store = createSecretStore({}, file(JSON.stringify({ LIST_TOKEN: 's3cr3t' })));
    assert.throws(() => store.forTenant('default')('LIST_TOKEN'), /must group secrets by tenant/);
  });

  test('a malformed secrets file is reported without quoting its contents', () => {
    // The value's quotes forgotten: the parser's message would quote the text around the error.
    const store = createSecretStore({}, file('{"default": {"LIST_TOKEN": pw-12345'));
    let message = '';
    assert.throws(
      () => store.forTenant('default')('LIST_TOKEN'),
      (error: unknown) => {
        message = error instanceof Error ? error.message : String(error);
        return true;
      },
    );
    assert.ok(!message.includes('pw-12345'), `the error quotes the file: ${message}`);
    assert.match(message, /secrets file .+ cannot be read/);
  });

  test('a missing secret says where to define it and never echoes other values', () => {
    const values = ['env-value-1', 'json-value-3'];
    const jsonFile = file(JSON.stringify({ default: { OTHER_JSON: values[1] } }));
    for (const secretsFile of [jsonFile, undefined]) {
      const resolve = createSecretStore(
        { DELTASYNC_SECRET_DEFAULT__SOMETHING: values[0] },
        secretsFile,
      ).forTenant('default');
      let message = '';
      assert.throws(
        () => resolve('LIST_TOKEN'),
        (error: unknown) => {
          message = error instanceof Error ? error.message : String(error);
          return true;
        },
      );
      assert.match(message, /tenant 'default' has no secret 'LIST_TOKEN'/);
      assert.match(message, /DELTASYNC_SECRET_DEFAULT__LIST_TOKEN/);
      assert.match(message, /DELTASYNC_SECRETS_FILE/);
      for (const value of values) assert.ok(!message.includes(value), `message echoes ${value}`);
    }
  });
});
