import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import YAML from 'yaml';
import { ServiceError, WorkflowFailedError } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure, RetryState } from '@temporalio/common';
import { describeFailure } from '../src/cli/errors';
import { runsTable } from '../src/cli/format';
import { ADMIN_TIMEOUT_MS, WorkerTimeoutError, type DeltasyncClient, type RunSummary } from '../src/client';
import { parseConnector } from '../src/core/connector';
import { destinationModule } from '../src/connectors/catalog';
import { createDestinationContext } from '../src/connectors/kit/module';
import type { DestinationFactory } from '../src/connectors/registry';
import { createCustomersTable, seedCustomers } from '../src/demo/customers';
import { startHttpListEmulator, type HttpListEmulator } from '../src/connectors/http-list/emulator';
import { startDevServer } from '../src/temporal/dev-server';
import { refreshWorkflowId } from '../src/temporal/names';
import { createTestDatabase, type TestDatabase } from './helpers/databases';
import { historyText } from './helpers/histories';
import { trustedTenants } from './helpers/secrets';
import { startTemporal, type TemporalHarness } from './helpers/temporal';
import { startWorkerProcess } from './helpers/worker-process';

/**
 * The `deltasync` CLI as people and scripts use it: the real CLI in a child process, against a
 * real Temporal dev server, with a worker (MariaDB, http-list emulator) running in this process.
 */

const ROOT = path.join(__dirname, '..');
const TOKEN = 'cli-token';
/** A secret name whose value the emulator refuses (for `validate --online`). */
const WRONG_TOKEN_SECRET = 'CLI_WRONG_TOKEN';
let temporal: TemporalHarness;
let emulator: HttpListEmulator;
let t: TestDatabase;
let client: DeltasyncClient;
let stopWorker: () => void;
let workerDone: Promise<unknown>;
/** http-list as the worker builds it (every secret is the emulator's token but one), short backoffs. */
const destinations: DestinationFactory = (config, { listId }) => {
  const module = destinationModule(config.type);
  if (config.type !== 'http-list' || !module) throw new Error('http-list only');
  const context = createDestinationContext({
    secrets: (name) => (name === WRONG_TOKEN_SECRET ? 'not-the-token' : TOKEN),
    listId,
    retry: { baseDelayMs: 5, maxDelayMs: 20 },
  });
  return module.create(module.configSchema.parse(config), context);
};

before(async () => {
  [temporal, emulator, t] = await Promise.all([
    startTemporal(),
    startHttpListEmulator({ token: TOKEN }),
    createTestDatabase('mysql'),
  ]);
  await createCustomersTable(t.db);
  await seedCustomers(t.db, 300);
  // One worker for the whole file; the CLI reaches it through the dev server and its task queue.
  let ready!: () => void;
  const started = new Promise<void>((resolve) => (ready = resolve));
  workerDone = temporal.withWorker(
    { db: t.db, destinations, tenants: trustedTenants('default', 'other') },
    (c) => {
      client = c;
      ready();
      return new Promise<void>((resolve) => (stopWorker = resolve));
    },
  );
  await started;
});
after(async () => {
  stopWorker?.();
  await workerDone;
  await emulator.close();
  await t.drop();
  await temporal.stop();
});

/** The environment without settings that would override the flags under test. */
const cliEnv = Object.fromEntries(
  Object.entries(process.env).filter(
    ([name]) =>
      !['DELTASYNC_TENANT', 'TEMPORAL_ADDRESS', 'DELTASYNC_TASK_QUEUE', 'TEMPORAL_NAMESPACE'].includes(name),
  ),
);

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface CliOptions {
  /** False: no --address and --task-queue (the test passes its own, or needs none). */
  global?: boolean;
  address?: string;
  taskQueue?: string;
  /**
   * Kill the CLI after this long (default 2 minutes): a test of "nothing hangs" then fails with a
   * message instead of waiting for the test runner's own timeout.
   */
  killAfterMs?: number;
  /** Record the modules the CLI process loaded (its require cache when it exits). */
  recordModules?: boolean;
}

/** Writes the require cache's file names, one a line, to $LOADED_MODULES_FILE as the process exits. */
const MODULE_RECORDER = `
process.on('exit', () => {
  require('node:fs').writeFileSync(process.env.LOADED_MODULES_FILE, Object.keys(require.cache).join('\\n'));
});
`;

/** Run the CLI against this file's dev server and worker queue (stderr is a pipe, not a TTY). */
function cli(
  args: string[],
  options: CliOptions = {},
): Promise<CliResult & { ms: number; modules: string[] }> {
  const address = options.address ?? temporal.server.address;
  const taskQueue = options.taskQueue ?? client.taskQueue;
  const globals = options.global === false ? [] : ['--address', address, '--task-queue', taskQueue];
  const recording = options.recordModules
    ? fs.mkdtempSync(path.join(os.tmpdir(), 'ds-cli-modules-'))
    : undefined;
  const record = recording
    ? {
        args: ['--require', path.join(recording, 'record-modules.cjs')],
        env: { LOADED_MODULES_FILE: path.join(recording, 'loaded.txt') },
      }
    : { args: [], env: {} };
  if (recording) fs.writeFileSync(path.join(recording, 'record-modules.cjs'), MODULE_RECORDER);
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [...record.args, '--import', 'tsx', 'src/cli/main.ts', ...globals, ...args],
      { cwd: ROOT, env: { ...cliEnv, ...record.env }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    const startedAt = Date.now();
    const limit = options.killAfterMs ?? 120_000;
    const killer = setTimeout(() => {
      stderr += `[test: killed after ${limit} ms: the CLI hung]\n`;
      child.kill('SIGKILL');
    }, limit);
    child.on('close', (code) => {
      clearTimeout(killer);
      const ms = Date.now() - startedAt;
      if (process.env.CLI_TEST_DEBUG) console.log(`${ms} ms: deltasync ${args.join(' ')}\n${stderr}`);
      let modules: string[] = [];
      if (recording) {
        modules = fs.readFileSync(path.join(recording, 'loaded.txt'), 'utf8').split('\n');
        fs.rmSync(recording, { recursive: true, force: true });
      }
      resolve({ code, stdout, stderr, ms, modules });
    });
  });
}

const json = <T>(result: CliResult): T => {
  assert.equal(result.code, 0, `exit ${result.code}: ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
};

/** The fixture connector, pointed at this test's emulator, as a file the CLI can read. */
function connectorFile(
  overrides: Record<string, unknown> = {},
  name = 'connector.yaml',
  destination: Record<string, unknown> = {},
): string {
  const definition = YAML.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'connector.yaml'), 'utf8'));
  definition.destination.baseUrl = emulator.url;
  Object.assign(definition, overrides);
  Object.assign(definition.destination, destination);
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ds-cli-')), name);
  fs.writeFileSync(file, YAML.stringify(definition));
  return file;
}

/**
 * The fixture connector over a customers table of its own (`<id>_customers`, `rows` rows) and a
 * list of its own (`<id>-list`), created through the client. Returns the table's name.
 */
async function customersConnector(id: string, rows: number): Promise<string> {
  const table = `${id.replace(/-/g, '_')}_customers`;
  await createCustomersTable(t.db, table);
  await seedCustomers(t.db, rows, { table });
  const definition = YAML.parse(fs.readFileSync(connectorFile({ id }), 'utf8'));
  definition.dataset.table = table;
  definition.destination.listId = `${id}-list`;
  await client.connectors.create(parseConnector(definition));
  return table;
}

describe('deltasync CLI', () => {
  test('connectors apply -f a YAML file, then list --json; another tenant sees nothing', async () => {
    const applied = await cli(['connectors', 'apply', '-f', connectorFile()]);
    assert.equal(applied.code, 0, applied.stderr);
    assert.match(applied.stdout, /applied connector yaml-customers \(http-list, tenant default\)/);

    const [listed, other] = await Promise.all([
      cli(['connectors', 'list', '--json']),
      cli(['--tenant', 'other', 'connectors', 'list', '--json']),
    ]);
    const connectors = json<{ id: string; tenant: string }[]>(listed);
    assert.deepEqual(
      connectors.map((c) => [c.id, c.tenant]),
      [['yaml-customers', 'default']],
    );
    assert.deepEqual(json(other), [], 'another tenant sees nothing');
    assert.equal(json<{ lastSucceededAt: number | null }[]>(listed)[0]!.lastSucceededAt, null);
    const table = await cli(['connectors', 'list']);
    assert.match(table.stdout, /last success/);
    assert.match(table.stdout, /yaml-customers .* never$/m, 'never refreshed');
  });

  test('bad input, unknown connectors and an unreachable Temporal: one line, documented exit codes', async () => {
    const bad = connectorFile({ id: 'Bad Id' }, 'bad-connector.yaml');
    const [invalid, unknown, otherTenant, unreachable, help] = await Promise.all([
      cli(['connectors', 'validate', '-f', bad], { global: false }),
      cli(['refresh', 'no-such-connector', '--wait']),
      cli(['--tenant', 'other', 'runs', 'yaml-customers']),
      cli(['--address', '127.0.0.1:1', '--connect-timeout', '1', 'connectors', 'list'], { global: false }),
      cli(['--help'], { global: false }),
    ]);
    assert.equal(invalid.code, 2);
    assert.match(invalid.stderr, /^deltasync: bad-connector\.yaml: id: lower-case letters/);
    assert.equal(invalid.stdout, '');

    assert.equal(unknown.code, 4, unknown.stderr);
    assert.equal(unknown.stderr, "deltasync: no connector with id 'no-such-connector' in tenant 'default'\n");
    assert.equal(otherTenant.code, 4, otherTenant.stderr);
    assert.match(otherTenant.stderr, /no connector with id 'yaml-customers' in tenant 'other'/);

    assert.equal(unreachable.code, 3);
    assert.equal(unreachable.stderr.trimEnd().split('\n').length, 1, unreachable.stderr);
    assert.match(unreachable.stderr, /^deltasync: cannot reach Temporal at 127\.0\.0\.1:1/);

    for (const failed of [invalid, unknown, otherTenant, unreachable]) {
      assert.doesNotMatch(failed.stderr, /^\s+at /m, 'no stack traces');
    }
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Exit codes:\n {2}0 {2}ok\n {2}1 .*\n {2}2 .*\n {2}3 .*\n {2}4 {2}not found/);
    assert.match(help.stdout, /--tenant <name>/);
  });

  test('connectors validate --online: the worker checks the tenant and calls the destination, one line each', async () => {
    const good = connectorFile({ id: 'online-ok' }, 'online-ok.yaml');
    const refused = connectorFile({ id: 'online-refused' }, 'online-refused.yaml', {
      tokenSecret: WRONG_TOKEN_SECRET,
    });
    const [ok, wrongToken, saved, unknown, asJson] = await Promise.all([
      cli(['connectors', 'validate', '--online', '-f', good]),
      cli(['connectors', 'validate', '--online', '-f', refused]),
      cli(['connectors', 'validate', '--online', 'yaml-customers']), // saved by the first test
      cli(['connectors', 'validate', '--online', 'no-such-connector']),
      cli(['connectors', 'validate', '--online', '--json', good, refused]),
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^online-ok\.yaml: connector online-ok \(http-list\): ok: \S.*\n$/);
    assert.equal(ok.stderr, '');

    assert.equal(wrongToken.code, 1, wrongToken.stderr);
    assert.equal(wrongToken.stdout, '');
    assert.equal(wrongToken.stderr.trimEnd().split('\n').length, 1, wrongToken.stderr);
    assert.match(
      wrongToken.stderr,
      /^deltasync: online-refused\.yaml: connector online-refused \(http-list\): destination check failed: .*(401|unauthori|token)/i,
    );
    assert.doesNotMatch(wrongToken.stderr, /not-the-token|cli-token/, 'no secret value is printed');

    assert.equal(saved.code, 0, saved.stderr);
    assert.match(saved.stdout, /^connector yaml-customers \(http-list\): ok: /);
    assert.equal(unknown.code, 4, unknown.stderr);
    assert.match(unknown.stderr, /no connector with id 'no-such-connector' in tenant 'default'/);

    assert.equal(asJson.code, 1, 'one of the two checks failed');
    const checks = JSON.parse(asJson.stdout) as { connectorId: string; ok: boolean; message: string }[];
    assert.deepEqual(
      checks.map((c) => [c.connectorId, c.ok]),
      [
        ['online-ok', true],
        ['online-refused', false],
      ],
    );
    const listed = json<{ id: string }[]>(await cli(['connectors', 'list', '--json']));
    assert.ok(!listed.some((c) => c.id.startsWith('online-')), 'validating saves nothing');
  });

  test('--help, usage errors and connectors list load no destination module, driver or progress bar', async () => {
    const [help, usage, connectorsHelp, destinationTypes, list] = await Promise.all([
      cli(['--help'], { global: false, recordModules: true }),
      cli(['refresh'], { global: false, recordModules: true }),
      cli(['connectors', 'validate', '--help'], { global: false, recordModules: true }),
      cli(['destinations'], { global: false, recordModules: true }),
      cli(['connectors', 'list'], { recordModules: true }),
    ]);
    assert.equal(help.code, 0, help.stderr);
    assert.equal(usage.code, 2, usage.stderr);
    assert.equal(destinationTypes.code, 0, destinationTypes.stderr);
    assert.equal(list.code, 0, list.stderr);
    const packageOf = (file: string) => /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(file)?.[1];
    const loaded = (run: { modules: string[] }) => ({
      packages: new Set(run.modules.map(packageOf).filter((name) => name !== undefined)),
      destinationModules: run.modules.filter((file) => /src\/connectors\/(?!catalog\.)/.test(file)),
    });
    const drivers = ['knex', 'mysql2', 'better-sqlite3', 'ioredis', 'bottleneck', 'cli-progress'];
    for (const run of [help, usage, connectorsHelp, destinationTypes, list]) {
      const { packages, destinationModules } = loaded(run);
      assert.ok(packages.has('commander'), 'the recorder sees what the CLI loads');
      assert.deepEqual(destinationModules, []);
      assert.deepEqual(
        drivers.filter((name) => packages.has(name)),
        [],
      );
    }
    // Nothing but commander until a command does something (`destinations` reads the catalog).
    for (const run of [help, usage, connectorsHelp]) {
      const { packages } = loaded(run);
      assert.deepEqual(
        [...packages].filter((name) => !['commander', 'tsx', 'esbuild'].includes(name)),
        [],
      );
    }
    assert.ok(loaded(list).packages.has('@temporalio/client'));
  });

  test('refresh --follow --progress bar draws a bar from the progress query, then prints the run', async () => {
    const result = await cli(['refresh', 'yaml-customers', '--follow', '--progress', 'bar']);
    assert.equal(result.code, 0, result.stderr);
    if (process.env.CLI_TEST_DEBUG) console.log(result.stderr, result.stdout);
    const bars = result.stderr.split('\n').filter((line) => /\|[█░]+\|/.test(line));
    assert.ok(bars.length > 0, result.stderr);
    assert.match(
      bars.at(-1)!,
      /^yaml-customers done +\|█+\| 300\/300 records · 3 batches · 0 rejected · 0 rate-limit waits$/,
    );
    const lines = result.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^run +status +strategy +changes +sent +rej +quar +calls +time$/);
    assert.match(lines.at(-1)!, /^ *\d+ +succeeded +diff +\+300 ~0 -0 +300 +0 +0 +3 +[\d.]+ (ms|s)$/);
    assert.equal(emulator.members('yaml-list').size, 300);

    const runs = json<{ status: string; additions: number; apiCalls: number }[]>(
      await cli(['runs', 'yaml-customers', '--json']),
    );
    assert.equal(runs.length, 1);
    assert.equal(runs[0]!.status, 'succeeded');
    assert.equal(runs[0]!.additions, 300);
    assert.equal(runs[0]!.apiCalls, 3);
  });

  test('runs --details: the last error and samples of the bad rows, which never sit in history in the clear', async () => {
    const id = 'cli-bad-rows';
    const table = 'cli_bad_rows_customers';
    await createCustomersTable(t.db, table);
    await seedCustomers(t.db, 20, { table });
    const definition = YAML.parse(fs.readFileSync(connectorFile({ id }), 'utf8'));
    const columns = (definition.dataset.attributes as string[]).join(', ');
    definition.dataset = {
      sql:
        `SELECT customer_key, ${columns} FROM ${table} UNION ALL ` +
        `SELECT customer_key, ${columns} FROM ${table} WHERE customer_key = 'cust-0000002' UNION ALL ` +
        `SELECT NULL, ${columns} FROM ${table} WHERE customer_key = 'cust-0000003'`,
      key: 'customer_key',
      attributes: definition.dataset.attributes,
    };
    definition.destination.listId = `${id}-list`;
    await client.connectors.create(parseConnector(definition));
    await client.refresh(id);
    const { email } = (await t.db(table).where({ customer_key: 'cust-0000003' }).first('email')) as {
      email: string;
    };

    const details = await cli(['runs', id, '--details']);
    assert.equal(details.code, 0, details.stderr);
    assert.match(details.stdout, /^run \d+: succeeded, diff, /);
    assert.match(details.stdout, /^ {2}bad rows {2}2 \(not sent\)$/m);
    assert.match(details.stdout, /^ {4}duplicate key: "cust-0000002"$/m);
    assert.match(details.stdout, new RegExp(`^ {4}no key: \\{.*"${email}".*\\}$`, 'm'));
    for await (const workflow of client.temporal.workflow.list({
      query: "WorkflowType = 'manageConnectors'",
    })) {
      const history = await client.temporal.workflow
        .getHandle(workflow.workflowId, workflow.runId)
        .fetchHistory();
      assert.ok(!historyText(history).includes(email), `${workflow.workflowId} holds a bad row's value`);
    }
  });

  test('every table of runs fits 80 columns, whatever the counts', () => {
    const huge = {
      runId: 123456,
      status: 'succeeded',
      strategy: 'truncate',
      additions: 12_345_678,
      updates: 999_999,
      deletions: 1_000_000,
      recordsSent: 12_345_678,
      rejected: 54_321,
      quarantined: 12_345,
      apiCalls: 123_457,
      durationMs: 9 * 3600_000,
    } as unknown as RunSummary;
    for (const line of runsTable([huge]).split('\n')) assert.ok(line.length <= 80, `${line.length}: ${line}`);
  });

  test('--output json|yaml|table is one convention for every command that prints data', async () => {
    const asJson = json<{ runId: number }[]>(await cli(['runs', 'yaml-customers', '--json']));
    const yaml = await cli(['-o', 'yaml', 'runs', 'yaml-customers']);
    assert.equal(yaml.code, 0, yaml.stderr);
    assert.deepEqual(YAML.parse(yaml.stdout), asJson);
    assert.deepEqual(json(await cli(['runs', 'yaml-customers', '--output', 'json'])), asJson);
    const listed = await cli(['--output', 'yaml', 'connectors', 'list']);
    assert.ok((YAML.parse(listed.stdout) as { id: string }[]).some((c) => c.id === 'yaml-customers'));
    const table = await cli(['runs', 'yaml-customers', '-o', 'table']);
    assert.match(table.stdout, /^run +status/);
    const refused = await cli(['-o', 'json', 'dev-server'], { global: false });
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /'dev-server' prints no data: --output json does not apply to it/);
  });

  test('an unknown command is an error with exit 2 and the nearest name, also with --help', async () => {
    const cases: [string[], RegExp][] = [
      [['frobnicate', '--help'], /^deltasync: unknown command 'frobnicate'\n$/],
      [['runz', 'x'], /^deltasync: unknown command 'runz' \(did you mean 'runs'\?\)\n$/],
      [['--tenant', 'x', 'rnus', 'y', '--help'], /unknown command 'rnus' \(did you mean 'runs'\?\)/],
      [['schedules', 'lst', '--help'], /^deltasync: unknown command 'lst' \(did you mean 'list'\?\)\n$/],
    ];
    for (const [args, stderr] of cases) {
      const result = await cli(args, { global: false });
      assert.equal(result.code, 2, args.join(' '));
      assert.equal(result.stdout, '', 'no help printed');
      assert.match(result.stderr, stderr);
    }
    assert.equal((await cli(['schedules', 'list', '--help'], { global: false })).code, 0);
  });

  test('changes: why a customer is on the list, by key, outcome or run, as a table, JSON or CSV; never in history in the clear', async () => {
    const { customer_key: key } = (await t
      .db('demo_customers')
      .orderBy('customer_key')
      .first('customer_key')) as {
      customer_key: string;
    };
    const byKey = json<{ runId: number; outcome: string; key: string }[]>(
      await cli(['changes', 'yaml-customers', '--key', key, '--json']),
    );
    assert.equal(byKey.length, 1);
    assert.equal(byKey[0]!.outcome, 'added');
    assert.equal(byKey[0]!.key, key);

    const table = await cli(['changes', 'yaml-customers', '--outcome', 'added', '--limit', '5']);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^RUN +WHEN +OUTCOME +KEY +REASON$/);
    assert.equal(lines.filter((line) => / added /.test(line)).length, 5);
    assert.match(lines.at(-1)!, /first 5; --all or --limit for more/);

    const csv = await cli(['changes', 'yaml-customers', '--all', '--csv', '--run', String(byKey[0]!.runId)]);
    const rows = csv.stdout.trimEnd().split('\n');
    assert.equal(rows[0], 'run,at,outcome,key,reason');
    assert.equal(rows.length, 301, 'the run added 300 keys');

    const none = await cli(['changes', 'yaml-customers', '--key', 'nobody@example.com']);
    assert.equal(none.code, 0);
    assert.match(none.stdout, /no run of yaml-customers logged key 'nobody@example.com'/);
    const bad = await cli(['changes', 'yaml-customers', '--outcome', 'lost']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /Allowed choices are added, updated, removed, rejected, held/);

    // The pages went back through workflow results, sealed for the CLI's one-off key.
    let histories = 0;
    for await (const workflow of client.temporal.workflow.list({
      query: "WorkflowType = 'manageConnectors'",
    })) {
      const history = await client.temporal.workflow
        .getHandle(workflow.workflowId, workflow.runId)
        .fetchHistory();
      assert.doesNotMatch(historyText(history), new RegExp(key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
      histories += 1;
    }
    assert.ok(histories >= 4, `${histories} connector operations listed`);
  });

  test('schedules create, pause with a note, list --json, delete', async () => {
    const created = json<{ connectorId: string; paused: boolean }>(
      await cli([
        'schedules',
        'create',
        'yaml-customers',
        '--cron',
        '0 3 * * *',
        '--timezone',
        'Europe/Berlin',
        '--json',
      ]),
    );
    assert.equal(created.connectorId, 'yaml-customers');
    assert.equal(created.paused, false);

    const paused = await cli(['schedules', 'pause', 'yaml-customers', '--note', 'maintenance window']);
    assert.equal(paused.code, 0, paused.stderr);
    const [listed, table] = await Promise.all([
      cli(['schedules', 'list', '--json']),
      cli(['schedules', 'list']),
    ]);
    const schedules =
      json<{ connectorId: string; paused: boolean; note: string; spec: { timezone: string } }[]>(listed);
    assert.deepEqual(
      schedules.map((s) => [s.connectorId, s.paused, s.note, s.spec.timezone]),
      [['yaml-customers', true, 'maintenance window', 'Europe/Berlin']],
    );
    assert.match(
      table.stdout,
      /yaml-customers +at 0 3 \* \* \* \(Europe\/Berlin\) +paused +- +maintenance window/,
    );

    const deleted = await cli(['schedules', 'delete', 'yaml-customers']);
    assert.equal(deleted.code, 0, deleted.stderr);
    const gone = await cli(['schedules', 'describe', 'yaml-customers']);
    assert.equal(gone.code, 4, gone.stderr);
    assert.match(gone.stderr, /^deltasync: .*yaml-customers/);
  });

  test('approve a refresh held by the mass-delete guard: the deletions go out', async () => {
    const id = 'cli-guarded';
    const table = await customersConnector(id, 100);
    await client.refresh(id);
    await t.db(table).where('customer_key', '<=', 'cust-0000030').delete(); // 30% of the list

    const started = json<{ attached: boolean; workflowId: string }>(await cli(['refresh', id, '--json']));
    assert.equal(started.attached, false);
    let phase = '';
    for (let tries = 0; phase !== 'awaiting approval' && tries < 40; tries++) {
      const progress = json<{ phase: string; plan: { guard: { reason: string } } | null }>(
        await cli(['progress', id, '--json']),
      );
      phase = progress.phase;
      if (phase === 'awaiting approval') assert.match(progress.plan!.guard.reason, /30% of the list/);
      else await sleep(250);
    }
    assert.equal(phase, 'awaiting approval');
    assert.equal(emulator.members(`${id}-list`).size, 100, 'nothing deleted while waiting');
    // Someone following the run is told why it waits and how to decide.
    const following = cli(['refresh', id, '--follow', '--progress', 'bar']);
    await sleep(1500);

    const decision = json<{ approved: boolean; by: string; note: string }>(
      await cli(['approve', id, '--by', 'alice', '--note', 'expected cleanup', '--json']),
    );
    assert.deepEqual(decision, { approved: true, by: 'alice', note: 'expected cleanup' });
    await client.temporal.workflow.getHandle(refreshWorkflowId('default', id)).result();
    assert.equal(emulator.members(`${id}-list`).size, 70);
    const followed = await following;
    assert.equal(followed.code, 0, followed.stderr);
    assert.match(
      followed.stderr,
      /^cli-guarded awaiting approval: .*30% of the list.*; run 'deltasync approve cli-guarded' to send the deletions or 'deltasync reject cli-guarded' to keep them pending \(no decision within \d+ s rejects\)$/m,
    );

    const [runs, again] = await Promise.all([cli(['runs', id, '--json']), cli(['approve', id])]);
    const [latest] = json<{ deletions: number; deletionsHeld: number; guard: { by: string } }[]>(runs);
    assert.equal(latest!.deletions, 30);
    assert.equal(latest!.deletionsHeld, 0);
    assert.equal(latest!.guard.by, 'alice');
    assert.equal(again.code, 4, 'nothing is waiting any more');
    assert.match(again.stderr, /no refresh of 'cli-guarded' is waiting for approval/);
  });

  test('cancel stops the running refresh and reports what it delivered; with none running, exit 4', async () => {
    const id = 'cli-cancel';
    await customersConnector(id, 5000);
    emulator.faults.set({ latencyMs: 200 }); // 50 calls of 100 records: about 10 s
    try {
      const handle = await client.startRefresh(id);
      while (((await handle.progress()).sending?.recordsDone ?? 0) < 300) await sleep(100);
      const result = await cli(['cancel', id]);
      assert.equal(result.code, 0, result.stderr);
      const delivered = emulator.members(`${id}-list`).size;
      assert.ok(delivered >= 300 && delivered < 5000, `stopped mid-send (${delivered} of 5,000)`);
      const count = delivered.toLocaleString('en-US');
      assert.match(
        result.stdout,
        new RegExp(`^${id}'s refresh stopped: ${count} records delivered and committed`),
      );
      assert.match(result.stdout, /^ *\d+ +failed +diff +\+5,000 ~0 -0 +[\d,]+ /m);
      assert.equal(
        (await client.temporal.workflow.getHandle(handle.workflowId).describe()).status.name,
        'CANCELLED',
      );

      const none = await cli(['cancel', id]);
      assert.equal(none.code, 4);
      assert.match(none.stderr, /no refresh of 'cli-cancel' is running/);
    } finally {
      emulator.faults.clear('latencyMs');
    }
  });

  test('a refresh that fails prints its run, one line on stderr, and exits with 1', async () => {
    await seedCustomers(t.db, 5, { first: 1000 });
    emulator.faults.set({ failAfter: { successfulCalls: 0, status: 400 } }); // every call refused
    try {
      const result = await cli(['refresh', 'yaml-customers', '--wait']);
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stdout, /^ *\d+ +failed +diff +\+5 ~0 -0 +0 +5 /m);
      assert.equal(result.stderr.trimEnd().split('\n').length, 1, result.stderr);
      assert.match(result.stderr, /^deltasync: refresh of yaml-customers failed: /);
    } finally {
      emulator.faults.clear('failAfter');
    }
  });

  test('dev-server stays up until it is stopped, then exits 0', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ds-dev-server-'));
    const [port, uiPort] = [await freePort(), await freePort()];
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'src/cli/main.ts',
        'dev-server',
        '--port',
        String(port),
        '--ui-port',
        String(uiPort),
      ],
      { cwd: ROOT, env: { ...cliEnv, DELTASYNC_DATA_DIR: dataDir }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    try {
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const deadline = Date.now() + 60_000;
      while (!output.includes('Ctrl-C stops it') && Date.now() < deadline) await sleep(100);
      assert.match(output, new RegExp(`Temporal dev server on 127\\.0\\.0\\.1:${port}`));
      await sleep(6_000); // it used to exit about 4 s after saying it runs
      assert.equal(child.exitCode, null, 'still running');
      assert.ok(await accepts(port), 'the gRPC port answers');
      assert.ok(await accepts(uiPort), 'the Web UI answers');
    } finally {
      child.kill('SIGINT');
    }
    assert.equal(await exited, 0, 'Ctrl-C stops it cleanly');
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
});

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Issue 9, requirement 6: nothing hangs, every error named. A worker killed with SIGKILL stays
 * listed as a poller of its task queue for minutes, Temporal can be gone before or during a
 * command, and a worker can be alive but slow: each ends (or keeps waiting) with its own message.
 */
describe('deltasync CLI: nothing hangs, every error named', () => {
  test('after kill -9 of the only worker, progress, runs and refresh --wait end with exit 3 and leave no admin workflow running', async () => {
    const taskQueue = `cli-dead-worker-${process.pid}`;
    const worker = await startWorkerProcess({
      address: temporal.server.address,
      taskQueue,
      databaseUrl: t.url,
    });
    try {
      const listed = await cli(['connectors', 'list', '--json'], { taskQueue });
      assert.equal(listed.code, 0, `the worker answers before it is killed: ${listed.stderr}`);
    } finally {
      worker.kill('SIGKILL');
    }
    assert.equal(await worker.exited, 'SIGKILL');

    const results = await Promise.all(
      [
        ['progress', 'yaml-customers'],
        ['runs', 'yaml-customers'],
        ['refresh', 'yaml-customers', '--wait'],
      ].map((args) => cli(args, { taskQueue, killAfterMs: 90_000 })),
    );
    for (const result of results) {
      assert.ok(result.ms < 30_000, `ended in ${result.ms} ms (bounded): ${result.stderr}`);
      assert.equal(result.code, 3, result.stderr);
      assert.equal(result.stderr.trimEnd().split('\n').length, 1, result.stderr);
      assert.match(result.stderr, new RegExp(`worker on task queue '${taskQueue}' stopped polling`));
      assert.doesNotMatch(result.stderr, /database/);
    }

    // Every admin workflow these commands started has ended: the CLI withdrew what it gave up on.
    const admin = await eventually(async () => {
      const found: { workflowId: string; runId: string }[] = [];
      for await (const w of client.temporal.workflow.list({ query: 'WorkflowType = "manageConnectors"' })) {
        if (w.taskQueue === taskQueue) found.push(w);
      }
      return found.length >= 4 ? found : undefined; // the list before the kill, then one per command
    });
    for (const w of admin) {
      const { status, raw } = await client.temporal.workflow.getHandle(w.workflowId, w.runId).describe();
      assert.notEqual(status.name, 'RUNNING', `admin workflow ${w.workflowId} is left running`);
      // And had it not been withdrawn, Temporal would have closed it: it has an execution timeout.
      assert.equal(Number(raw.executionConfig?.workflowExecutionTimeout?.seconds), ADMIN_TIMEOUT_MS / 1000);
    }
  });

  test('Temporal stopped, before or during a command: exit 3 naming Temporal and its address, never the database', async () => {
    const server = await startDevServer();
    const taskQueue = `cli-temporal-gone-${process.pid}`;
    let stopped = false;
    try {
      // A poller that takes the CLI's workflow task and never answers: the CLI is then waiting on
      // Temporal for the result when Temporal goes away.
      const taken = (async () => {
        for (;;) {
          // Temporal wants a deadline on a long poll; it answers empty after 60 s without a task.
          const task = await server.env.client.connection.withDeadline(Date.now() + 70_000, () =>
            server.env.client.workflowService.pollWorkflowTaskQueue({
              namespace: 'default',
              taskQueue: { name: taskQueue },
              identity: 'test-poller-that-never-answers',
            }),
          );
          if (task.taskToken?.length) return;
        }
      })();
      const during = cli(['runs', 'yaml-customers'], {
        address: server.address,
        taskQueue,
        killAfterMs: 90_000,
      });
      await taken;
      await server.stop();
      stopped = true;
      const stoppedAt = Date.now();
      const result = await during;
      const afterStop = Date.now() - stoppedAt;
      if (process.env.CLI_TEST_DEBUG) console.log(`the CLI ended ${afterStop} ms after Temporal stopped`);
      assert.ok(afterStop < 60_000, `ended ${afterStop} ms after Temporal stopped: ${result.stderr}`);
      assert.equal(result.code, 3, result.stderr);
      assert.equal(result.stderr.trimEnd().split('\n').length, 1, result.stderr);
      assert.match(result.stderr, new RegExp(`Temporal at ${server.address}`));
      assert.doesNotMatch(result.stderr, /database/);
    } finally {
      if (!stopped) await server.stop();
    }

    const before = await cli(['--connect-timeout', '2', 'runs', 'yaml-customers'], {
      address: server.address,
      taskQueue,
    });
    assert.equal(before.code, 3, before.stderr);
    assert.match(before.stderr, new RegExp(`^deltasync: cannot reach Temporal at ${server.address}`));
    assert.doesNotMatch(before.stderr, /database/);
  });

  test('a Temporal connection error is named as Temporal; a database error from the worker as the database', () => {
    const refused = 'No connection established. Last error: connect ECONNREFUSED 127.0.0.1:7233';
    const grpc = Object.assign(new Error(`14 UNAVAILABLE: ${refused}`), {
      code: 14,
      details: refused,
      metadata: {},
    });
    const temporalDown = describeFailure(
      new ServiceError('Failed to get Workflow execution history', { cause: grpc }),
      {
        address: '127.0.0.1:7233',
      },
    );
    assert.equal(temporalDown.code, 3);
    assert.match(temporalDown.lines.join('\n'), /Temporal at 127\.0\.0\.1:7233/);
    assert.doesNotMatch(temporalDown.lines.join('\n'), /database/);

    const dbDown = new WorkflowFailedError(
      'Workflow execution failed',
      new ActivityFailure(
        'Activity task failed',
        'connectorAdmin',
        '1',
        RetryState.MAXIMUM_ATTEMPTS_REACHED,
        'worker@host',
        ApplicationFailure.create({ message: 'connect ECONNREFUSED 127.0.0.1:3306', type: 'Error' }),
      ),
      RetryState.NON_RETRYABLE_FAILURE,
    );
    const database = describeFailure(dbDown, { address: '127.0.0.1:7233' });
    assert.equal(database.code, 3);
    assert.match(database.lines.join('\n'), /^database unavailable/);
    assert.doesNotMatch(database.lines.join('\n'), /Temporal/);

    const busy = describeFailure(new WorkerTimeoutError("connector operation 'runs'", 'deltasync', 120_000));
    assert.equal(busy.code, 3);
    assert.deepEqual(busy.lines, [
      "connector operation 'runs': no worker on task queue 'deltasync' completed it within 120 s: " +
        'the worker is stuck or overloaded',
    ]);
  });

  test('a slow worker (alive, its database busy) is waited for, not reported as dead', async () => {
    const id = 'cli-slow-worker';
    await customersConnector(id, 10);
    // The worker's `runs` query blocks on a table lock for longer than a dead worker is given.
    const connection = await t.db.client.acquireConnection();
    let unlocked = false;
    const unlock = async () => {
      if (unlocked) return;
      unlocked = true;
      await t.db.raw('UNLOCK TABLES').connection(connection);
      t.db.client.releaseConnection(connection);
    };
    try {
      await t.db.raw('LOCK TABLES refresh_runs WRITE').connection(connection);
      const running = cli(['runs', id, '--json'], { killAfterMs: 90_000 });
      await sleep(20_000);
      await unlock();
      const result = await running;
      assert.equal(result.code, 0, result.stderr);
      assert.ok(Array.isArray(JSON.parse(result.stdout)));
      assert.match(result.stderr, /waiting for the worker on task queue '.+': it is alive/);
      assert.doesNotMatch(result.stderr, /stopped polling/);
    } finally {
      await unlock();
    }
  });
});

/** Ask until `probe` answers (visibility catches up within seconds), at most 20 s. */
async function eventually<T>(probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const answer = await probe();
    if (answer !== undefined) return answer;
    if (Date.now() > deadline) throw new Error('not within 20 s');
    await sleep(500);
  }
}

describe('bin/deltasync worker', () => {
  /** The heap limit a worker started by bin/deltasync reports, in MB. */
  function heapLimitMb(env: Record<string, string>): number {
    const { NODE_OPTIONS: _ignored, ...inherited } = process.env;
    const help = execFileSync(path.join('bin', 'deltasync'), ['worker', '--help'], {
      env: { ...inherited, ...env },
      encoding: 'utf8',
    });
    const match = /heap limit: (\d+) MB/.exec(help);
    assert.ok(match, help);
    return Number(match[1]);
  }

  test('caps the V8 heap (Node alone allows gigabytes); DELTASYNC_WORKER_HEAP_MB or NODE_OPTIONS set another cap', () => {
    const byDefault = heapLimitMb({});
    // 256 MB of old space and V8's young generation; Node's own default here is about 4 GB.
    assert.ok(byDefault > 256 && byDefault < 400, `default ${byDefault} MB`);
    assert.equal(heapLimitMb({ DELTASYNC_WORKER_HEAP_MB: '512' }) - byDefault, 256);
    assert.ok(heapLimitMb({ NODE_OPTIONS: '--max-old-space-size=1024' }) > 1024);
  });

  test('refuses a heap setting that is not a number of megabytes, with exit 2 and the variable named', () => {
    for (const value of ['abc', '256 --inspect', '0']) {
      const { NODE_OPTIONS: _ignored, ...inherited } = process.env;
      const result = spawnSync(path.join('bin', 'deltasync'), ['worker', '--help'], {
        env: { ...inherited, DELTASYNC_WORKER_HEAP_MB: value },
        encoding: 'utf8',
      });
      assert.equal(result.status, 2, value);
      assert.match(result.stderr, /DELTASYNC_WORKER_HEAP_MB must be a whole number of megabytes/);
    }
  });
});
