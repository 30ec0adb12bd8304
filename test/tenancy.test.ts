import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import knex from 'knex';
import { validateConnector } from '../src/connectors/catalog';
import { updateDeltalog } from '../src/core/deltalog';
import { databaseConfig, migrateToLatest, sqliteStatementTimeoutAvailable, type Db } from '../src/db';
import { createTenancy, StatementTimeoutError, TenantDirectory } from '../src/tenancy';
import { disallowedTargets, withEgressPolicy } from '../src/tenancy/egress';
import { requestJson } from '../src/connectors/kit/http';
import { DestinationError } from '../src/core/destination';
import { InvalidTenantsPolicyError, TenantNotServedError } from '../src/tenancy/policy';
import { describeFailure } from '../src/cli/errors';
import { createWorkers } from '../src/worker';
import { dialects, mysqlServerUrl } from './helpers/databases';
import { anySecret } from './helpers/secrets';

/**
 * The tenancy rules that need no Temporal server: statement time limits on both dialects, the
 * tenants policy (namespaces, what it refuses), the allowlist's matching, and the embedded
 * SQLite database staying single-tenant.
 */

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ds-tenancy-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A migrated database whose every statement stops after `ms`. */
async function limitedDatabase(
  dialect: 'sqlite' | 'mysql',
  ms: number,
): Promise<{ db: Db; drop(): Promise<void> }> {
  if (dialect === 'sqlite') {
    const url = `sqlite://${path.join(dir, `limited-${Date.now()}.sqlite`)}`;
    const migrator = knex(databaseConfig(url));
    await migrateToLatest(migrator);
    await migrator.destroy();
    const db = knex(databaseConfig(url, { statementTimeoutMs: ms }));
    return { db, drop: () => db.destroy() };
  }
  const name = `ds_limit_${process.pid}_${Date.now().toString(36)}`;
  const admin = knex(databaseConfig(mysqlServerUrl));
  await admin.raw('CREATE DATABASE ??', [name]);
  const url = new URL(mysqlServerUrl);
  url.pathname = `/${name}`;
  const migrator = knex(databaseConfig(url.toString()));
  await migrateToLatest(migrator);
  await migrator.destroy();
  const db = knex(databaseConfig(url.toString(), { statementTimeoutMs: ms }));
  return {
    db,
    drop: async () => {
      await db.destroy();
      await admin.raw('DROP DATABASE ??', [name]);
      await admin.destroy();
    },
  };
}

/** A dataset that never finishes on its own: an endless recursive count, or SLEEP per row. */
function endless(dialect: 'sqlite' | 'mysql'): string {
  return dialect === 'sqlite'
    ? "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT 'k' || x AS k FROM c WHERE x < 0"
    : "SELECT CONCAT('k', seq) AS k FROM seq_1_to_100 WHERE SLEEP(1) = 0";
}

for (const dialect of dialects) {
  describe(`statement time limits (${dialect})`, () => {
    test('a dataset that runs past the limit is stopped with a clear error, and the database stays usable', async () => {
      assert.ok(
        dialect === 'mysql' || sqliteStatementTimeoutAvailable(),
        'setup builds the SQLite extension',
      );
      const { db, drop } = await limitedDatabase(dialect, 1_000);
      try {
        const directory = TenantDirectory.fromPolicy({
          tenants: { default: { namespace: 'default' } },
          statementTimeoutSeconds: 1,
        });
        const tenancy = createTenancy({ db, directory, secrets: anySecret() });
        const connector = validateConnector({
          id: 'endless',
          dataset: { sql: endless(dialect), key: 'k', attributes: [] },
          destination: { type: 'http-list', baseUrl: 'http://127.0.0.1:1', listId: 'l', tokenSecret: 'T' },
        });
        const tenant = directory.get('default')!;
        const reader = await tenancy.datasets.reader(tenant, connector);
        const started = Date.now();
        await assert.rejects(updateDeltalog(db, 'default/endless', reader, 1), (error: unknown) => {
          assert.ok(error instanceof StatementTimeoutError, String(error));
          assert.match(error.message, /took longer than the statement time limit \(1 s\) and was stopped/);
          return true;
        });
        assert.ok(Date.now() - started < 15_000, `stopped after ${Date.now() - started} ms`);
        const [row] = (await db('deltalog').count({ n: '*' })) as { n: unknown }[];
        assert.equal(Number(row?.n), 0, 'the interrupted compare left nothing behind');
        await tenancy.datasets.close();
      } finally {
        await drop();
      }
    });

    test('a dataset that is not a SELECT is refused before anything runs', async () => {
      const { db, drop } = await limitedDatabase(dialect, 10_000);
      try {
        await db.schema.createTable('people', (t) => t.string('k').primary());
        await db('people').insert([{ k: 'a' }, { k: 'b' }]);
        const tenancy = createTenancy({
          db,
          directory: TenantDirectory.singleTenant(),
          secrets: anySecret(),
        });
        const connector = validateConnector({
          id: 'writer',
          dataset: { sql: 'DELETE FROM people', key: 'k', attributes: [] },
          destination: { type: 'http-list', baseUrl: 'http://127.0.0.1:1', listId: 'l', tokenSecret: 'T' },
        });
        const problems = await tenancy.datasets.prepare(
          TenantDirectory.singleTenant().get('default')!,
          connector,
        );
        assert.equal(problems.length, 1);
        assert.match(problems[0]!, /^dataset: cannot read it in the database/);
        assert.equal((await db('people')).length, 2, 'nothing was deleted');
      } finally {
        await drop();
      }
    });
  });
}

describe('the tenants policy', () => {
  const policy = (tenants: Record<string, unknown>) => TenantDirectory.fromPolicy({ tenants });

  test('a namespace decides the tenant; a claim chooses only among its tenants', () => {
    const directory = policy({
      a: { database: { urlSecret: 'DB' } },
      c: { namespace: 'shared', database: { urlSecret: 'DB' } },
      d: { namespace: 'shared', database: { urlSecret: 'DB' } },
    });
    assert.deepEqual(directory.namespaces(), ['a', 'shared'], 'a tenant without a namespace gets its id');
    assert.equal(directory.resolve('a').id, 'a', 'one tenant: no claim needed');
    assert.equal(directory.resolve('a', 'a').id, 'a');
    assert.throws(() => directory.resolve('a', 'c'), TenantNotServedError);
    assert.throws(
      () => directory.resolve('shared'),
      /tenant '\(none given\)' is not served in Temporal namespace 'shared'/,
    );
    assert.equal(directory.resolve('shared', 'd').id, 'd');
    assert.throws(() => directory.resolve('default', 'a'), /it serves: none/);
  });

  test('several tenants each need their own dataset access, or an explicit database: worker', () => {
    assert.throws(
      () => policy({ a: {}, b: { database: { urlSecret: 'DB' } } }),
      (error: unknown) =>
        error instanceof InvalidTenantsPolicyError &&
        /every tenant needs its own dataset access .* missing for 'a'/.test(error.message),
    );
    assert.equal(policy({ a: { database: 'worker' }, b: { database: 'worker' } }).tenants.length, 2);
    assert.equal(policy({ solo: {} }).tenants.length, 1, 'a single tenant may read with the worker’s user');
  });

  test('a bad file is refused with the field named', () => {
    const file = path.join(dir, 'tenants.yaml');
    fs.writeFileSync(file, 'tenants:\n  Bad_Id:\n    namespace: x\n');
    assert.throws(() => TenantDirectory.fromFile(file), /tenants\.Bad_Id: tenant ids are lower-case/);
    fs.writeFileSync(file, 'tenants:\n  a:\n    destinations:\n      origins: ["ftp://x"]\n');
    assert.throws(() => TenantDirectory.fromFile(file), /origins\.0: an origin is scheme:\/\/host\[:port\]/);
    assert.throws(
      () => TenantDirectory.fromFile(path.join(dir, 'missing.yaml')),
      /cannot read the tenants policy/,
    );
  });

  test('origins match scheme, host and port; * any port', () => {
    const allow = {
      origins: ['https://graph.facebook.com', 'http://127.0.0.1:*'],
      fileRoots: [],
      sqlTables: [],
      redisKeys: [],
    };
    const check = (url: string) => disallowedTargets(allow, [{ kind: 'http', field: 'f', url }]);
    assert.deepEqual(check('https://graph.facebook.com/v25.0'), []);
    assert.deepEqual(check('https://graph.facebook.com:443/x'), [], 'the default port is the same origin');
    assert.equal(check('http://graph.facebook.com').length, 1, 'another scheme');
    assert.equal(check('https://graph.facebook.com.evil.example').length, 1, 'another host');
    assert.equal(check('https://graph.facebook.com:8443').length, 1, 'another port');
    assert.deepEqual(check('http://127.0.0.1:4567/lists'), []);
    assert.deepEqual(disallowedTargets('any', [{ kind: 'http', field: 'f', url: 'http://x' }]), []);
  });
});

describe('the embedded SQLite database is single-tenant', () => {
  test('a worker on SQLite refuses a policy with several tenants', async () => {
    const db = knex(databaseConfig(`sqlite://${path.join(dir, 'single.sqlite')}`));
    try {
      const directory = TenantDirectory.fromPolicy({
        tenants: { a: { database: 'worker' }, b: { database: 'worker' } },
      });
      await assert.rejects(
        createWorkers({ connection: undefined as never, db, tenancy: createTenancy({ db, directory }) }),
        /the embedded SQLite database is single-tenant; .* names 2 tenants: set DELTASYNC_DATABASE_URL/,
      );
    } finally {
      await db.destroy();
    }
  });
});

describe('HTTP requests while a refresh runs', () => {
  test('every request is held to the tenant’s origins, whatever URL the destination builds', async () => {
    const allowlist = { origins: ['http://127.0.0.1:9'], fileRoots: [], sqlTables: [], redisKeys: [] };
    const attempt = (url: string) =>
      withEgressPolicy('a', allowlist, () =>
        requestJson({ service: 'test', method: 'GET', url, maxAttempts: 1 }),
      );
    await assert.rejects(attempt('http://169.254.169.254/latest/meta-data'), (error: unknown) => {
      assert.ok(error instanceof DestinationError);
      assert.equal(error.kind, 'fatal');
      assert.match(
        error.message,
        /refused to call http:\/\/169\.254\.169\.254: not among the origins tenant 'a' may call/,
      );
      return true;
    });
    // An allowed origin is called (nothing listens on port 9: a network error, not a refusal).
    await assert.rejects(
      attempt('http://127.0.0.1:9/x'),
      (error: unknown) => !/refused to call/.test(String(error)),
    );
  });
});

describe('the CLI on a tenant its namespace does not serve', () => {
  test('exit 4 with the tenant, the namespace and what to check', () => {
    const { code, lines } = describeFailure(new TenantNotServedError('b', 'sec-a', ['a']));
    assert.equal(code, 4);
    assert.deepEqual(lines, [
      "tenant 'b' is not served in Temporal namespace 'sec-a' (it serves: a): check --tenant and --namespace",
    ]);
  });
});
