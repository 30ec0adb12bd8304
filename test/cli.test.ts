import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import YAML from 'yaml';
import type { DeltasyncClient } from '../src/client';
import { parseConnector } from '../src/connectors/definition';
import { createHttpListDestination } from '../src/connectors/http-list';
import type { DestinationFactory } from '../src/connectors/registry';
import { createCustomersTable, seedCustomers } from '../src/demo/customers';
import { startHttpListEmulator, type HttpListEmulator } from '../src/emulators/http-list-emulator';
import { refreshWorkflowId } from '../src/workflows/shared';
import { createTestDatabase, type TestDatabase } from './helpers/databases';
import { trustedTenants } from './helpers/secrets';
import { startTemporal, type TemporalHarness } from './helpers/temporal';

/**
 * The `deltasync` CLI as people and scripts use it: the real CLI in a child process, against a
 * real Temporal dev server, with a worker (MariaDB, http-list emulator) running in this process.
 */

const ROOT = path.join(__dirname, '..');
const TOKEN = 'cli-token';
let temporal: TemporalHarness;
let emulator: HttpListEmulator;
let t: TestDatabase;
let client: DeltasyncClient;
let stopWorker: () => void;
let workerDone: Promise<unknown>;
const destinations: DestinationFactory = (config) => {
  if (config.type !== 'http-list') throw new Error('http-list only');
  return createHttpListDestination(config, () => TOKEN, { baseDelayMs: 5, maxDelayMs: 20 });
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

/** Run the CLI against this file's dev server and worker queue (stderr is a pipe, not a TTY). */
function cli(args: string[], options: { global?: boolean } = {}): Promise<CliResult> {
  const globals =
    options.global === false ? [] : ['--address', temporal.server.address, '--task-queue', client.taskQueue];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...globals, ...args], {
      cwd: ROOT,
      env: cliEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    const startedAt = Date.now();
    child.on('close', (code) => {
      if (process.env.CLI_TEST_DEBUG)
        console.log(`${Date.now() - startedAt} ms: deltasync ${args.join(' ')}`);
      resolve({ code, stdout, stderr });
    });
  });
}

const json = <T>(result: CliResult): T => {
  assert.equal(result.code, 0, `exit ${result.code}: ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
};

/** The fixture connector, pointed at this test's emulator, as a file the CLI can read. */
function connectorFile(overrides: Record<string, unknown> = {}, name = 'connector.yaml'): string {
  const definition = YAML.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'connector.yaml'), 'utf8'));
  definition.destination.baseUrl = emulator.url;
  Object.assign(definition, overrides);
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
    assert.match(
      lines[0]!,
      /^run +status +strategy +additions +deletions +updates +rejected +quarantined +API calls +duration/,
    );
    assert.match(lines.at(-1)!, /^ *\d+ +succeeded +diff +300 +0 +0 +0 +0 +3 /);
    assert.equal(emulator.members('yaml-list').size, 300);

    const runs = json<{ status: string; additions: number; apiCalls: number }[]>(
      await cli(['runs', 'yaml-customers', '--json']),
    );
    assert.equal(runs.length, 1);
    assert.equal(runs[0]!.status, 'succeeded');
    assert.equal(runs[0]!.additions, 300);
    assert.equal(runs[0]!.apiCalls, 3);
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

    const decision = json<{ approved: boolean; by: string; note: string }>(
      await cli(['approve', id, '--by', 'alice', '--note', 'expected cleanup', '--json']),
    );
    assert.deepEqual(decision, { approved: true, by: 'alice', note: 'expected cleanup' });
    await client.temporal.workflow.getHandle(refreshWorkflowId('default', id)).result();
    assert.equal(emulator.members(`${id}-list`).size, 70);

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
      assert.match(result.stdout, /^ *\d+ +failed +diff +5,000 /m);
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
      assert.match(result.stdout, /^ *\d+ +failed +diff +5 /m);
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
