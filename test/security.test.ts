import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import Redis from 'ioredis';
import knex from 'knex';
import { DeltasyncClient, type RunSummary } from '../src/client';
import { InvalidConnectorError, parseConnector, type ConnectorInput } from '../src/core/connector';
import { validateConnector } from '../src/connectors/catalog';
import { createDestinationFactory } from '../src/connectors/registry';
import { UnknownConnectorError } from '../src/core/connector-store';
import { databaseConfig, migrateToLatest, type Db } from '../src/db';
import { startHttpListEmulator, type HttpListEmulator } from '../src/connectors/http-list/emulator';
import { startOpsServer } from '../src/observability/server';
import { TenantDirectory } from '../src/tenancy';
import { createDatasetAccess, viewName } from '../src/tenancy/datasets';
import { createSecretStore, type SecretStore } from '../src/tenancy/secrets';
import { refreshWorkflowId } from '../src/workflows/shared';
import { mysqlServerUrl } from './helpers/databases';
import { historyText } from './helpers/histories';
import { adminConnection, TEST_USERS, urlFor } from './helpers/tenant-databases';
import { startTemporal, type TemporalHarness } from './helpers/temporal';

/**
 * Tenants as a security boundary, tried as an attacker would (docs/security.md). One worker, as
 * deltasync's least-privilege database user, serves tenants a and b in namespaces of their own
 * (`sec-a`, `sec-b`) and tenants c and d sharing one (`sec-shared`), on the real Temporal dev
 * server and MariaDB. Tenant a is hostile. Every attempt is refused with a clear message, and the
 * victim's data, destination, schedule and runs are untouched.
 */

const P = `sec_${process.pid}_${Date.now().toString(36)}`;
const DB = {
  deltasync: `${P}_ds`,
  aData: `${P}_a_data`,
  aViews: `${P}_a_views`,
  bData: `${P}_b_data`,
  bViews: `${P}_b_views`,
  bOut: `${P}_b_out`,
  cData: `${P}_c_data`,
  cViews: `${P}_c_views`,
  dData: `${P}_d_data`,
  dViews: `${P}_d_views`,
};
const REDIS_PREFIX = `sec-${process.pid}`;
const SECRET_FILE_TEXT = `top-secret-${process.pid}@server.example`;

let temporal: TemporalHarness;
let admin: Db;
let workerDb: Db;
let emuA: HttpListEmulator;
let emuB: HttpListEmulator;
let attacker: RecordingServer;
let metricsLike: RecordingServer;
let redis: Redis;
let roots: { a: string; b: string; c: string; d: string };
let secretFile: string;
let taskQueue: string;
let secrets: SecretStore;
let tenants: TenantDirectory;
let stopWorker: () => void;
let workerDone: Promise<unknown>;

/** Clients as each tenant would hold them: a namespace (what Temporal authorizes) and a tenant. */
let a: DeltasyncClient;
let b: DeltasyncClient;
let c: DeltasyncClient;
const clientOf = (namespace: string, tenant: string) =>
  new DeltasyncClient(temporal.clientIn(namespace), { taskQueue, tenant });

before(async () => {
  temporal = await startTemporal({ namespaces: ['sec-a', 'sec-b', 'sec-shared'] });
  admin = adminConnection();
  for (const name of Object.values(DB)) await admin.raw('CREATE DATABASE ??', [name]);
  await grantTestRights();
  await seedTenantData();

  // deltasync's own schema, migrated by an administrator; the worker then runs as its own user.
  const ownUrl = new URL(mysqlServerUrl);
  ownUrl.pathname = `/${DB.deltasync}`;
  const migrator = knex(databaseConfig(ownUrl.toString()));
  await migrateToLatest(migrator);
  await migrator.destroy();
  workerDb = knex(databaseConfig(urlFor('worker', DB.deltasync), { statementTimeoutMs: 60_000 }));

  [emuA, emuB, attacker, metricsLike] = await Promise.all([
    startHttpListEmulator({ token: 'token-a' }),
    startHttpListEmulator({ token: 'token-b' }),
    recordingServer((req, res) => {
      // An allowed host of tenant a that redirects to the worker's own endpoints.
      if (req.url?.startsWith('/redirect/')) {
        res.writeHead(302, { location: `${metricsLike.url}/metrics?from=redirect` });
        return res.end();
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"accepted":0,"rejected":[]}');
    }),
    recordingServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('deltasync_records_sent_total{tenant="b"} 20\n');
    }),
  ]);
  redis = new Redis('redis://127.0.0.1:6379/0');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ds-sec-'));
  roots = { a: path.join(tmp, 'a'), b: path.join(tmp, 'b'), c: path.join(tmp, 'c'), d: path.join(tmp, 'd') };
  for (const root of Object.values(roots)) fs.mkdirSync(root);
  // A server file only the database server's administrator may read (LOAD_FILE needs FILE).
  secretFile = path.join(tmp, 'server-secret.txt');
  fs.writeFileSync(secretFile, SECRET_FILE_TEXT);
  fs.chmodSync(tmp, 0o755);

  const env = {
    DELTASYNC_SECRET_A__LIST_TOKEN: 'token-a',
    DELTASYNC_SECRET_A__DATASET_DB: urlFor('a', DB.aViews),
    DELTASYNC_SECRET_B__LIST_TOKEN: 'token-b',
    DELTASYNC_SECRET_B__TENANTB_TOKEN: 'token-b',
    DELTASYNC_SECRET_B__DATASET_DB: urlFor('b', DB.bViews),
    DELTASYNC_SECRET_B__OUT_DB: urlFor('b', DB.bOut),
    DELTASYNC_SECRET_C__LIST_TOKEN: 'token-a',
    DELTASYNC_SECRET_C__DATASET_DB: urlFor('c', DB.cViews),
    DELTASYNC_SECRET_D__LIST_TOKEN: 'token-b',
    DELTASYNC_SECRET_D__D_ONLY: 'd-secret',
    DELTASYNC_SECRET_D__DATASET_DB: urlFor('d', DB.dViews),
    // The worker's own configuration, as it would sit in its environment.
    DELTASYNC_DATABASE_URL: urlFor('worker', DB.deltasync),
    HOME: '/root',
  };
  secrets = createSecretStore(env, undefined);
  const redisKeys = (tenant: string) => [
    { host: '127.0.0.1', port: 6379, db: 0, keyPrefix: `${REDIS_PREFIX}-${tenant}:` },
  ];
  tenants = TenantDirectory.fromPolicy({
    tenants: {
      a: {
        namespace: 'sec-a',
        database: { urlSecret: 'DATASET_DB', statementTimeoutSeconds: 2 },
        destinations: {
          origins: [origin(emuA.url), origin(attacker.url)],
          fileRoots: [roots.a],
          redisKeys: redisKeys('a'),
        },
      },
      b: {
        namespace: 'sec-b',
        database: { urlSecret: 'DATASET_DB' },
        destinations: {
          origins: [origin(emuB.url)],
          fileRoots: [roots.b],
          sqlTables: [{ host: '127.0.0.1', port: 3306, database: DB.bOut, tables: ['*'] }],
          redisKeys: redisKeys('b'),
        },
      },
      c: {
        namespace: 'sec-shared',
        database: { urlSecret: 'DATASET_DB' },
        destinations: { origins: [origin(emuA.url)], fileRoots: [roots.c] },
      },
      d: {
        namespace: 'sec-shared',
        database: { urlSecret: 'DATASET_DB' },
        destinations: { origins: [origin(emuB.url)], fileRoots: [roots.d] },
      },
    },
  });

  let ready!: () => void;
  const started = new Promise<void>((resolve) => (ready = resolve));
  workerDone = temporal.withWorker(
    { db: workerDb, destinations: createDestinationFactory(secrets.forTenant), tenants, secrets },
    (base) => {
      taskQueue = base.taskQueue;
      ready();
      return new Promise<void>((resolve) => (stopWorker = resolve));
    },
  );
  await started;
  a = clientOf('sec-a', 'a');
  b = clientOf('sec-b', 'b');
  c = clientOf('sec-shared', 'c');
  await setUpVictim();
});

after(async () => {
  stopWorker?.();
  await workerDone;
  await Promise.all([emuA?.close(), emuB?.close(), attacker?.close(), metricsLike?.close()]);
  const keys = await redis.keys(`${REDIS_PREFIX}-*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
  await workerDb?.destroy();
  for (const name of Object.values(DB)) await admin.raw('DROP DATABASE IF EXISTS ??', [name]);
  for (const { user } of Object.values(TEST_USERS)) {
    await admin.raw(`REVOKE ALL PRIVILEGES, GRANT OPTION FROM ?@'%'`, [user]).catch(() => undefined);
  }
  await admin.destroy();
  await temporal.stop();
});

// --- The victim: tenant b's connectors, lists, files, tables, keys and schedule ---------------

const B_KEYS = Array.from({ length: 20 }, (_, i) => `b-${String(i).padStart(2, '0')}@b.example`);

async function setUpVictim() {
  const dataset = { table: `${DB.bData}.customers`, key: 'email', attributes: ['name'] };
  await b.connectors.create({
    id: 'crm',
    dataset,
    destination: { type: 'http-list', baseUrl: emuB.url, listId: 'b-list', tokenSecret: 'LIST_TOKEN' },
  });
  await b.connectors.create({
    id: 'b-drop',
    dataset,
    destination: { type: 'file-drop', directory: roots.b },
  });
  await b.connectors.create({
    id: 'b-table',
    dataset,
    destination: { type: 'sql-table', urlSecret: 'OUT_DB', table: 'members' },
  });
  await b.connectors.create({
    id: 'b-set',
    dataset,
    destination: { type: 'redis-set', url: 'redis://127.0.0.1:6379/0', key: `${REDIS_PREFIX}-b:set` },
  });
  for (const id of ['crm', 'b-drop', 'b-table', 'b-set']) {
    const run = await b.refresh(id);
    assert.equal(run.status, 'succeeded', `${id}: ${run.error ?? ''}`);
  }
  await b.schedules.create('crm', { cron: ['0 3 * * *'] }, { paused: true, note: 'b owns this' });
  victim = await victimState();
}

let victim: Awaited<ReturnType<typeof victimState>>;

async function victimState() {
  const manifest = fs.readFileSync(path.join(roots.b, 'manifest.json'), 'utf8');
  const table = (await admin(`${DB.bOut}.members`).select().orderByRaw('1')) as unknown[];
  const schedule = await b.schedules.describe('crm');
  return {
    list: [...emuB.members('b-list').keys()].sort(),
    files: fs.readdirSync(roots.b).sort(),
    manifest,
    table,
    set: (await redis.smembers(`${REDIS_PREFIX}-b:set`)).sort(),
    schedule: { paused: schedule.paused, note: schedule.note, spec: JSON.stringify(schedule.spec) },
    runs: (await b.runs('crm')).map((r) => r.runId),
    definition: JSON.stringify(await b.connectors.get('crm')),
  };
}

async function assertVictimUntouched() {
  assert.deepEqual(
    await victimState(),
    victim,
    "tenant b's data, destinations, schedule and runs are untouched",
  );
  assert.deepEqual(victim.list, B_KEYS);
}

// --- Attacks -------------------------------------------------------------------------------------

describe('secrets: a connector can name only its own tenant’s secrets', () => {
  for (const name of ['TENANTB_TOKEN', 'DELTASYNC_DATABASE_URL', 'HOME']) {
    test(`tokenSecret ${name} is refused before anything is sent`, async () => {
      const input = hostileHttpList(`steal-${name.toLowerCase().replace(/_/g, '-')}`, { tokenSecret: name });
      const error = await creationError(a, input);
      assert.match(
        error.message,
        new RegExp(`destination\\.tokenSecret: tenant 'a' has no secret '${name}'`),
      );
      assert.match(
        error.message,
        new RegExp(`DELTASYNC_SECRET_A__${name}`),
        'says where the secret would go',
      );

      // A definition that reached the database some other way fails its run the same way.
      await plantConnector('a', input);
      const refused = await refreshError(a, input.id!);
      assert.match(refused.message, new RegExp(`tenant 'a' has no secret '${name}'`));
      const [run] = await a.runs(input.id!);
      assert.equal(run?.status, 'failed', 'the refusal is on the run record');
      assert.equal(attacker.requests.length, 0, 'nothing reached the attacker’s server');
    });
  }

  test('a secret value or a lower-case name is not a secret name', async () => {
    const error = await creationError(a, hostileHttpList('steal-literal', { tokenSecret: 'token-b' }));
    assert.match(error.message, /destination\.tokenSecret: must name a secret/);
    assert.ok(!error.message.includes('token-b') || /must name a secret/.test(error.message));
    await assertVictimUntouched();
  });
});

describe('datasets: what a tenant reads is decided by its own database grants', () => {
  const refusedDatasets: [string, ConnectorInput['dataset']][] = [
    [
      'another tenant’s table by SELECT',
      { sql: `SELECT email, ssn FROM ${DB.bData}.customers`, key: 'email', attributes: ['ssn'] },
    ],
    ['another tenant’s table by name', { table: `${DB.bData}.customers`, key: 'email', attributes: ['ssn'] }],
    [
      'deltasync’s deltalog (every tenant’s keys)',
      { sql: `SELECT record_key AS email FROM ${DB.deltasync}.deltalog`, key: 'email', attributes: [] },
    ],
    [
      'deltasync’s connectors (every definition)',
      { table: `${DB.deltasync}.connectors`, key: 'id', attributes: ['definition'] },
    ],
    [
      'the server’s accounts',
      { sql: "SELECT CONCAT(User, '@', Host) AS email FROM mysql.user", key: 'email', attributes: [] },
    ],
  ];
  for (const [what, dataset] of refusedDatasets) {
    test(`${what} is refused`, async () => {
      const error = await creationError(a, { ...legitA(`read-${slug(what)}`), dataset });
      assert.match(
        error.message,
        /dataset: cannot read it with tenant 'a''s database access: .*(denied|no rights)/i,
      );
      assert.ok(!error.message.includes('CREATE'), 'the database’s words, not deltasync’s statement');
      await assertVictimUntouched();
    });
  }

  test('LOAD_FILE runs with the tenant’s rights: a server file never reaches a list', async () => {
    const [[asRoot]] = (await admin.raw('SELECT LOAD_FILE(?) AS f', [secretFile])) as [
      [{ f: Buffer | null }],
    ];
    assert.equal(
      asRoot.f?.toString(),
      SECRET_FILE_TEXT,
      'an administrator could read it: the attack is real',
    );
    const input = {
      ...legitA('load-file'),
      dataset: { sql: `SELECT LOAD_FILE('${secretFile}') AS email`, key: 'email', attributes: [] },
    };
    await a.connectors.create(input);
    const run = await a.refresh('load-file');
    assert.equal(run.badRows, 1, 'the tenant may not read files: NULL, a bad row');
    assert.equal(run.recordsSent, 0);
    assert.equal(emuA.members('load-file').size, 0);
    assert.ok(!JSON.stringify(attacker.requests).includes('top-secret'));
  });

  test('SLEEP in a dataset is stopped by the tenant’s statement time limit, with a clear error', async () => {
    await a.connectors.create({
      ...legitA('slow'),
      dataset: {
        sql: `SELECT email, name FROM ${DB.aData}.customers WHERE SLEEP(2) = 0`,
        key: 'email',
        attributes: ['name'],
      },
    });
    const started = Date.now();
    const error = await refreshError(a, 'slow');
    assert.match(error.message, /took longer than the statement time limit \(2 s\)/);
    assert.match(error.message, /statementTimeoutSeconds for tenant 'a'/);
    assert.ok(Date.now() - started < 30_000, 'stopped, not waited out (10 rows × 2 s × 2 statements)');
  });

  test('a view the tenant re-creates as SQL SECURITY INVOKER is never read', async () => {
    await a.connectors.create(legitA('swap-view'));
    assert.equal((await a.refresh('swap-view')).recordsSent, 10);
    // The tenant's own database user replaces the view behind deltasync's back, so that it would
    // run with deltasync's rights (which could read the file, or other tenants' views).
    const definition = parseConnector({ ...legitA('swap-view'), tenant: 'a' });
    const swap = async () => {
      const tenantA = knex(databaseConfig(urlFor('a', DB.aViews)));
      await tenantA.raw(
        `CREATE OR REPLACE SQL SECURITY INVOKER VIEW ?? AS SELECT CONCAT(LOAD_FILE(?), '') AS email, 'x' AS name`,
        [viewName(definition), secretFile],
      );
      await tenantA.destroy();
    };

    // Between two reads: every read checks the view under its metadata lock first.
    await swap();
    const access = createDatasetAccess({ db: workerDb, secretsOf: () => secrets.forTenant('a') });
    const reader = await access.reader(tenants.get('a')!, definition);
    await assert.rejects(
      reader.read((executor) => executor.raw(`SELECT * FROM ${reader.dataset.table}`)),
      /no longer runs with tenant 'a''s own rights \(SQL SECURITY INVOKER, definer deltasync_test_tenant_a@%\): nothing was read/,
    );
    await access.close();

    // Before a run: the run re-creates the view from the definition, and sends the real data.
    const healed = await a.refresh('swap-view');
    assert.equal(healed.status, 'noop', 'the data behind the re-created view has not changed');
    const keys = [...emuA.members('swap-view').keys()];
    assert.equal(keys.length, 10);
    assert.ok(!keys.some((k) => k.includes('top-secret')), 'the server file never reached the list');
  });

  test("a tenant with its own database user cannot have triggers installed, on its tables or another tenant's", async () => {
    // Triggers are created with the worker's rights: tenant a naming tenant c's table must not
    // get deltasync to alter it.
    const access = createDatasetAccess({ db: workerDb, secretsOf: () => secrets.forTenant('a') });
    try {
      for (const table of [`${DB.aData}.customers`, `${DB.cData}.customers`]) {
        const connector = parseConnector({
          ...legitA('followed'),
          tenant: 'a',
          dataset: {
            ...legitA('followed').dataset,
            changes: { source: 'triggers', tables: [{ table, key: 'email' }] },
          },
        });
        const problems = await access.prepare(tenants.get('a')!, connector);
        assert.match(
          problems[0]!,
          /^dataset\.changes: change sources are not available to a tenant that reads through its own database user/,
        );
      }
    } finally {
      await access.close();
    }
    const [triggers] = (await admin.raw(
      'SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA IN (?, ?)',
      [DB.aData, DB.cData],
    )) as [unknown[]];
    assert.deepEqual(triggers, []);
  });

  test('a tenant database user that would not be a boundary is refused, saying what to fix', async () => {
    const problemsWith = async (url: string) => {
      const access = createDatasetAccess({ db: workerDb, secretsOf: () => () => url });
      try {
        return await access.prepare(tenants.get('a')!, parseConnector({ ...legitA('probe'), tenant: 'a' }));
      } finally {
        await access.close();
      }
    };
    assert.match((await problemsWith(urlFor('worker', DB.aViews)))[0]!, /database user is deltasync's own/);
    assert.match(
      (await problemsWith(urlFor('worker', DB.deltasync)))[0]!,
      /database user is deltasync's own|views would be created in deltasync's own database/,
    );
    await admin.raw(`GRANT SELECT ON ??.* TO ?@'%'`, [DB.deltasync, TEST_USERS.c.user]);
    try {
      assert.match(
        (await problemsWith(urlFor('c', DB.cViews)))[0]!,
        /can read deltasync's own tables .*: revoke its grants there/,
      );
    } finally {
      await admin.raw(`REVOKE SELECT ON ??.* FROM ?@'%'`, [DB.deltasync, TEST_USERS.c.user]);
    }
  });

  test('a dataset that is not a SELECT is refused, and changes nothing', async () => {
    const error = await creationError(a, {
      ...legitA('writer'),
      dataset: { sql: `DELETE FROM ${DB.aData}.customers`, key: 'email', attributes: [] },
    });
    assert.match(error.message, /dataset: cannot read it/);
    const [[{ n }]] = (await admin.raw(`SELECT COUNT(*) AS n FROM ${DB.aData}.customers`)) as [
      [{ n: number }],
    ];
    assert.equal(Number(n), 10);
  });
});

describe('destinations: a tenant writes only what its allowlist names', () => {
  test('another tenant’s HTTP host', async () => {
    const error = await creationError(a, {
      ...legitA('to-b-host'),
      destination: { ...httpListOf(emuB.url, 'b-list') },
    });
    assert.match(
      error.message,
      /destination\.baseUrl: http:\/\/127\.0\.0\.1:\d+ is not among the origins this tenant may call/,
    );
    await assertVictimUntouched();
  });

  test('another tenant’s database table, by URL or by its secret', async () => {
    const byUrl = await creationError(a, {
      ...legitA('to-b-table'),
      destination: {
        type: 'sql-table',
        url: `mysql://${TEST_USERS.b.user}@127.0.0.1:3306/${DB.bOut}`,
        table: 'members',
      },
    });
    assert.match(
      byUrl.message,
      new RegExp(`table ${DB.bOut}\\.members on 127\\.0\\.0\\.1:3306 is not one this tenant may write`),
    );
    const bySecret = await creationError(a, {
      ...legitA('to-b-table-2'),
      destination: { type: 'sql-table', urlSecret: 'OUT_DB', table: 'members' },
    });
    assert.match(bySecret.message, /tenant 'a' has no secret 'OUT_DB'/);
    await assertVictimUntouched();
  });

  test('another tenant’s directory: directly, through .. and through a symbolic link', async () => {
    fs.symlinkSync(roots.b, path.join(roots.a, 'link-to-b'));
    for (const directory of [roots.b, path.join(roots.a, '..', 'b'), path.join(roots.a, 'link-to-b')]) {
      const error = await creationError(a, {
        ...legitA('to-b-dir'),
        destination: { type: 'file-drop', directory },
      });
      assert.match(
        error.message,
        /destination\.directory: .* is not under a directory this tenant may write/,
      );
    }
    await assertVictimUntouched();
  });

  test('another tenant’s Redis keys', async () => {
    const error = await creationError(a, {
      ...legitA('to-b-set'),
      destination: { type: 'redis-set', url: 'redis://127.0.0.1:6379/0', key: `${REDIS_PREFIX}-b:set` },
    });
    assert.match(
      error.message,
      /key '.*-b:set' in Redis 127\.0\.0\.1:6379\/0 is not one this tenant may write/,
    );
    await assertVictimUntouched();
  });

  test('its own allowed destinations work', async () => {
    await a.connectors.create({
      ...legitA('own-set'),
      destination: { type: 'redis-set', url: 'redis://127.0.0.1:6379/0', key: `${REDIS_PREFIX}-a:set` },
    });
    assert.equal((await a.refresh('own-set')).recordsSent, 10);
    assert.equal(await redis.scard(`${REDIS_PREFIX}-a:set`), 10);
  });
});

describe('the client: checks run in the worker, by namespace', () => {
  test('another tenant’s connector, runs, progress, schedule and updates do not exist for a', async () => {
    await assert.rejects(a.connectors.get('crm'), UnknownConnectorError);
    await assert.rejects(a.runs('crm'), UnknownConnectorError);
    await assert.rejects(a.progress('crm'), /not found/i, 'b’s refresh workflow is in another namespace');
    await assert.rejects(a.refresh('crm'), UnknownConnectorError);
    await assert.rejects(a.schedules.create('crm', { every: '1h' }), UnknownConnectorError);
    await assert.rejects(a.schedules.describe('crm'), /not found/i);
    await assert.rejects(a.approve('crm'), UnknownConnectorError);
    await assert.rejects(a.cancel('crm'), UnknownConnectorError);
    await assertVictimUntouched();
  });

  test('ids are per tenant: a may have its own `crm`, and learns nothing of b’s', async () => {
    const own = await a.connectors.create({ ...legitA('crm') });
    assert.equal(own.tenant, 'a');
    assert.equal((await a.refresh('crm')).recordsSent, 10);
    assert.deepEqual([...emuA.members('crm').keys()].sort().slice(0, 1), ['a-00@a.example']);
    await assertVictimUntouched();
  });

  test('claiming tenant b from a’s namespace is refused by the worker', async () => {
    const claimsB = clientOf('sec-a', 'b');
    for (const attempt of [
      () => claimsB.connectors.list(),
      () => claimsB.connectors.get('crm'),
      () => claimsB.refresh('crm'),
      () => claimsB.connectors.create({ ...legitA('squat'), tenant: 'b' }),
    ]) {
      await assert.rejects(
        attempt(),
        /tenant 'b' is not served in Temporal namespace 'sec-a' \(it serves: a\)/,
      );
    }
    // The same through the raw Temporal API, bypassing deltasync's client altogether.
    const raw = temporal.clientIn('sec-a');
    await assert.rejects(
      raw.workflow.execute('refreshConnector', {
        workflowId: `raw-${P}`,
        taskQueue,
        args: [{ connectorId: 'crm', tenant: 'b' }],
      }),
      (error: unknown) => /not served/.test(causeMessage(error)),
    );
    await assert.rejects(
      raw.workflow.execute('manageConnectors', {
        workflowId: `raw-admin-${P}`,
        taskQueue,
        args: [{ kind: 'get', tenant: 'b', id: 'crm' }],
      }),
      (error: unknown) => /not served/.test(causeMessage(error)),
    );
    await assertVictimUntouched();
  });
});

describe('nothing personal or secret leaks', () => {
  test('credentials in URLs, . and .. ids, and ? or # in base URLs are refused', () => {
    const problems = (destination: Record<string, unknown>) => {
      try {
        validateConnector({ ...legitA('x'), destination: { ...httpListOf(emuA.url, 'l'), ...destination } });
        return '';
      } catch (error) {
        assert.ok(error instanceof InvalidConnectorError);
        return error.message;
      }
    };
    const withPassword = problems({ baseUrl: 'https://user:hunter2@lists.example.com/v1' });
    assert.match(withPassword, /baseUrl must not contain a user or password/);
    assert.ok(!withPassword.includes('hunter2'));
    assert.match(problems({ listId: '..' }), /listId: must not be \. or \.\./);
    assert.match(problems({ listId: '.' }), /listId: must not be \. or \.\./);
    assert.match(problems({ baseUrl: `${metricsLike.url}/metrics?` }), /baseUrl must not contain \? or #/);
    assert.match(problems({ baseUrl: `${metricsLike.url}/metrics#` }), /baseUrl must not contain \? or #/);
  });

  test('a redirect is not followed, and its target’s answer is never quoted', async () => {
    await a.connectors.create(
      hostileHttpList('redirected', { baseUrl: `${attacker.url}/redirect`, tokenSecret: 'LIST_TOKEN' }),
    );
    const error = await refreshError(a, 'redirected');
    assert.match(error.message, /redirects are not followed \(to http:\/\/127\.0\.0\.1:\d+\)/);
    assert.ok(!error.message.includes('deltasync_records_sent_total'));
    assert.equal(metricsLike.requests.length, 0, 'the redirect target was never called');
  });

  test('reconcile drift and bad-row samples stay in the database: history carries counts', async () => {
    await a.connectors.create({
      ...legitA('drifting'),
      dataset: {
        sql: `SELECT email, name FROM ${DB.aData}.customers UNION ALL SELECT NULL, 'no key'`,
        key: 'email',
        attributes: ['name'],
      },
    });
    await a.refresh('drifting');
    const stray = 'stray-person@private.example';
    const members = emuA.members('drifting');
    members.set(stray, {});
    emuA.setMembers('drifting', members);
    const run: RunSummary = await a.reconcile('drifting');
    assert.equal(run.drift?.extra, 1);
    assert.equal(run.badRows, 1);
    assert.deepEqual(
      Object.keys(run.drift!).sort(),
      ['extra', 'missing', 'quarantined'],
      'counts, no samples',
    );
    const history = await temporal
      .clientIn('sec-a')
      .workflow.getHandle(refreshWorkflowId('a', 'drifting'))
      .fetchHistory();
    const text = historyText(history);
    assert.ok(!text.includes(stray), 'the drift sample is not in workflow history');
    assert.ok(!text.includes('no key'), 'the bad-row sample is not in workflow history');
    const [row] = (await workerDb('refresh_runs').where({ id: run.runId })) as { drift: string }[];
    assert.ok(row!.drift.includes(stray), 'the sample is on the run record, in the database');
  });

  test('/metrics and /healthz listen on 127.0.0.1 unless told otherwise', async () => {
    const server = await startOpsServer({
      port: 0,
      logger: { error() {} } as never,
      health: async () => ({ healthy: true, details: {} }),
      metrics: async () => ({ contentType: 'text/plain', body: '' }),
    });
    try {
      const address = await new Promise<string>((resolve, reject) => {
        const probe = http.get(`http://127.0.0.1:${server.port}/healthz`, (res) => {
          res.resume();
          resolve((res.socket.localAddress ?? '') + '');
        });
        probe.on('error', reject);
      });
      assert.equal(address, '127.0.0.1');
      const external = Object.values(os.networkInterfaces())
        .flat()
        .find((i) => i && i.family === 'IPv4' && !i.internal);
      if (external) {
        await assert.rejects(
          fetch(`http://${external.address}:${server.port}/healthz`),
          'not on other interfaces',
        );
      }
    } finally {
      await server.close();
    }
  });
});

describe('tenants sharing a namespace still keep secrets, data and destinations apart', () => {
  test('c cannot use d’s secret, read d’s data or write d’s directory', async () => {
    const secret = await creationError(c, {
      ...legitC('c-steal'),
      destination: { ...httpListOf(emuA.url, 'c'), tokenSecret: 'D_ONLY' },
    });
    assert.match(secret.message, /tenant 'c' has no secret 'D_ONLY'/);
    const data = await creationError(c, {
      ...legitC('c-read'),
      dataset: { table: `${DB.dData}.customers`, key: 'email', attributes: [] },
    });
    assert.match(data.message, /cannot read it with tenant 'c''s database access/);
    const dir = await creationError(c, {
      ...legitC('c-write'),
      destination: { type: 'file-drop', directory: roots.d },
    });
    assert.match(dir.message, /is not under a directory this tenant may write/);
    await c.connectors.create(legitC('c-own'));
    assert.equal((await c.refresh('c-own')).recordsSent, 3);
  });

  test('as documented, a caller in a shared namespace may act as any tenant of it', async () => {
    // Temporal's authorization stops at the namespace: put tenants that must not see each other's
    // connectors and runs in namespaces of their own (docs/security.md).
    const claimsD = clientOf('sec-shared', 'd');
    assert.deepEqual(await claimsD.connectors.list(), []);
  });
});

// --- Helpers ------------------------------------------------------------------------------------

async function grantTestRights() {
  const { worker, a: ta, b: tb, c: tc, d: td } = TEST_USERS;
  const grant = (what: string, on: string, user: string) =>
    admin.raw(`GRANT ${what} ON ??.* TO ?@'%'`, [on, user]);
  await grant('ALL PRIVILEGES', DB.deltasync, worker.user);
  for (const views of [DB.aViews, DB.bViews, DB.cViews, DB.dViews]) await grant('SELECT', views, worker.user);
  const tenantGrants: [string, string, string][] = [
    [ta.user, DB.aData, DB.aViews],
    [tb.user, DB.bData, DB.bViews],
    [tc.user, DB.cData, DB.cViews],
    [td.user, DB.dData, DB.dViews],
  ];
  for (const [user, data, views] of tenantGrants) {
    await grant('SELECT', data, user);
    await grant('SELECT, CREATE VIEW, SHOW VIEW, DROP', views, user);
  }
  await grant('ALL PRIVILEGES', DB.bOut, tb.user);
}

async function seedTenantData() {
  const rows = (prefix: string, n: number) =>
    Array.from({ length: n }, (_, i) => ({
      email: `${prefix}-${String(i).padStart(2, '0')}@${prefix}.example`,
      name: `${prefix} person ${i}`,
      ssn: `${prefix}-ssn-${i}`,
    }));
  for (const [database, prefix, n] of [
    [DB.aData, 'a', 10],
    [DB.bData, 'b', 20],
    [DB.cData, 'c', 3],
    [DB.dData, 'd', 4],
  ] as const) {
    await admin.raw(
      'CREATE TABLE ??.customers (email VARCHAR(255) COLLATE utf8mb4_bin PRIMARY KEY, name VARCHAR(64), ssn VARCHAR(32))',
      [database],
    );
    await admin(`${database}.customers`).insert(rows(prefix, n));
  }
}

/** A well-behaved connector of tenant a over its own customers, to its own list. */
function legitA(id: string): ConnectorInput {
  return {
    id,
    dataset: { table: `${DB.aData}.customers`, key: 'email', attributes: ['name'] },
    destination: httpListOf(emuA.url, id),
  };
}

function legitC(id: string): ConnectorInput {
  return {
    id,
    dataset: { table: `${DB.cData}.customers`, key: 'email', attributes: ['name'] },
    destination: httpListOf(emuA.url, id),
  };
}

function httpListOf(baseUrl: string, listId: string) {
  return { type: 'http-list' as const, baseUrl, listId, tokenSecret: 'LIST_TOKEN' };
}

/** An http-list connector of tenant a pointed at the attacker's own server. */
function hostileHttpList(id: string, destination: Record<string, unknown>): ConnectorInput {
  return {
    ...legitA(id),
    destination: { ...httpListOf(attacker.url, id), ...destination } as ConnectorInput['destination'],
  };
}

/** Write a definition straight into the connectors table, as a crafted import would. */
async function plantConnector(tenant: string, input: ConnectorInput) {
  const definition = parseConnector({ ...input, tenant });
  const key = `${tenant}/${definition.id}`;
  await workerDb('connectors').insert({
    id: key,
    tenant,
    destination_type: definition.destination.type,
    definition: JSON.stringify(definition),
    created_at: 1,
    updated_at: 1,
  });
  await workerDb('connector_state').insert({ connector_id: key });
}

async function creationError(client: DeltasyncClient, input: ConnectorInput): Promise<Error> {
  try {
    await client.connectors.create(input);
  } catch (error) {
    assert.ok(error instanceof InvalidConnectorError, `expected an invalid connector, got ${String(error)}`);
    return error;
  }
  assert.fail(`creating ${input.id} should have been refused`);
}

async function refreshError(client: DeltasyncClient, id: string): Promise<Error> {
  try {
    await client.refresh(id);
  } catch (error) {
    return new Error(causeMessage(error));
  }
  assert.fail(`the refresh of ${id} should have failed`);
}

/** The innermost message of a workflow failure (the activity's own error). */
function causeMessage(error: unknown): string {
  let current: unknown = error;
  const messages: string[] = [];
  while (current instanceof Error) {
    messages.push(current.message);
    current = current.cause;
  }
  return messages.join(' <- ');
}

function origin(url: string): string {
  return new URL(url).origin;
}

function slug(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 40);
}

interface RecordingServer {
  url: string;
  requests: { method: string; url: string; authorization?: string }[];
  close(): Promise<void>;
}

async function recordingServer(handle: http.RequestListener): Promise<RecordingServer> {
  const requests: RecordingServer['requests'] = [];
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization });
    handle(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
