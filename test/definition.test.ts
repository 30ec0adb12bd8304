import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { InvalidConnectorError, parseConnector } from '../src/connectors/definition';
import { createSecretResolver } from '../src/connectors/secrets';

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
    parseConnector(input);
  } catch (error) {
    assert.ok(error instanceof InvalidConnectorError, `expected InvalidConnectorError, got ${String(error)}`);
    assert.equal(error.name, 'InvalidConnectorError');
    for (const problem of error.problems) assert.ok(error.message.includes(problem));
    return error.problems;
  }
  assert.fail('expected the definition to be rejected');
}

describe('parseConnector', () => {
  test('a valid http-list connector gets the defaults', () => {
    const connector = parseConnector(valid);
    assert.equal(connector.id, 'crm-audience');
    assert.equal(connector.tenant, 'default');
    assert.deepEqual(connector.dataset, valid.dataset);
    assert.deepEqual(connector.policy, {
      strategy: 'auto',
      retentionDays: 30,
      successThreshold: 0.99,
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
    const connector = parseConnector({
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
      successThreshold: 0.99,
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

  test('a bad id, key or attribute is named by its path', () => {
    for (const id of ['CRM', 'crm audience', '-crm', '', 'x'.repeat(129)]) {
      const problems = problemsOf({ ...valid, id });
      assert.equal(problems.length, 1, id);
      assert.match(problems[0]!, /^id: /, id);
    }
    assert.match(problemsOf({ ...valid, id: 'CRM' })[0]!, /lower-case letters, digits, _, \. and -/);
    assert.equal(parseConnector({ ...valid, id: 'x'.repeat(128) }).id.length, 128);

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

describe('secrets', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deltasync-secrets-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  let fileCounter = 0;
  const file = (text: string) => {
    const name = path.join(dir, `secrets-${fileCounter++}`);
    fs.writeFileSync(name, text);
    return name;
  };

  test('the environment is looked up first', () => {
    const secretsFile = file(JSON.stringify({ TOKEN: 'from-file', ONLY_FILE: 'file-value' }));
    const resolve = createSecretResolver({ TOKEN: 'from-env', EMPTY: '' }, secretsFile);
    assert.equal(resolve('TOKEN'), 'from-env');
    assert.equal(resolve('ONLY_FILE'), 'file-value');
    assert.throws(() => resolve('EMPTY'), /secret 'EMPTY' is not set/, 'an empty variable is not a value');
  });

  test('the secrets file defaults to DELTASYNC_SECRETS_FILE', () => {
    const secretsFile = file('TOKEN=abc\n');
    assert.equal(createSecretResolver({ DELTASYNC_SECRETS_FILE: secretsFile })('TOKEN'), 'abc');
  });

  test('a JSON secrets file', () => {
    const resolve = createSecretResolver(
      {},
      file(`\n  ${JSON.stringify({ LIST_TOKEN: 's3cr3t', DB_URL: 'mysql://u:p@h/db' })}`),
    );
    assert.equal(resolve('LIST_TOKEN'), 's3cr3t');
    assert.equal(resolve('DB_URL'), 'mysql://u:p@h/db');
  });

  test('a NAME=value secrets file', () => {
    const resolve = createSecretResolver(
      {},
      file(
        [
          '# comment',
          '',
          'PLAIN=value',
          '  SPACED  =  spaced value',
          'DOUBLE="with # hash"',
          "SINGLE='single'",
          'EQUALS=a=b=c',
          'CRLF=windows\r',
          'TRAILING=trailing   ',
          'QUOTED_TRAILING="quoted"  ',
          'EMPTY=',
        ].join('\n'),
      ),
    );
    assert.equal(resolve('PLAIN'), 'value');
    assert.equal(resolve('SPACED'), 'spaced value');
    assert.equal(resolve('DOUBLE'), 'with # hash');
    assert.equal(resolve('SINGLE'), 'single');
    assert.equal(resolve('EQUALS'), 'a=b=c');
    assert.equal(resolve('CRLF'), 'windows');
    assert.equal(resolve('TRAILING'), 'trailing', 'trailing blanks are not part of the value');
    assert.equal(resolve('QUOTED_TRAILING'), 'quoted');
    assert.equal(resolve('EMPTY'), '');
    assert.throws(() => resolve('comment'), /secret 'comment' is not set/);
  });

  test('a malformed JSON secrets file is reported without quoting its contents', () => {
    // The value's quotes forgotten: V8's message would quote the text around the error.
    const resolve = createSecretResolver({}, file('{"LIST_TOKEN": pw-12345}'));
    let message = '';
    assert.throws(
      () => resolve('LIST_TOKEN'),
      (error: unknown) => {
        message = error instanceof Error ? error.message : String(error);
        return true;
      },
    );
    assert.ok(!message.includes('pw-12345'), `the error quotes the file: ${message}`);
    assert.match(message, /secrets file .+ is not valid JSON/);
  });

  test('a missing secret names itself and never echoes other values', () => {
    const values = ['env-value-1', 'file-value-2', 'json-value-3'];
    const envFile = file(`OTHER=${values[1]}\n`);
    const jsonFile = file(JSON.stringify({ OTHER_JSON: values[2] }));
    for (const secretsFile of [envFile, jsonFile, undefined]) {
      const resolve = createSecretResolver({ SOMETHING: values[0] }, secretsFile);
      let message = '';
      assert.throws(
        () => resolve('LIST_TOKEN'),
        (error: unknown) => {
          message = error instanceof Error ? error.message : String(error);
          return true;
        },
      );
      assert.match(message, /secret 'LIST_TOKEN' is not set/);
      assert.match(message, /DELTASYNC_SECRETS_FILE/);
      for (const value of values) assert.ok(!message.includes(value), `message echoes ${value}`);
    }
  });
});
