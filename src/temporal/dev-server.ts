import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import type { SearchAttributeType } from '@temporalio/common';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { searchAttributes } from './names';
import { findTemporalCli } from './cli-binary';

export interface DevServerOptions {
  /** Persist workflow state in this SQLite file (omit for in-memory). */
  dbFilename?: string;
  /** gRPC port; omit for a free one. */
  port?: number;
  /** Serve the Web UI (on `uiPort`, default gRPC port + 1000). */
  ui?: boolean;
  uiPort?: number;
  /** Namespaces to create besides `default` (one per tenant, see docs/security.md). */
  namespaces?: string[];
}

export interface DevServer {
  env: TestWorkflowEnvironment;
  /** host:port of the frontend, for workers and clients in other processes. */
  address: string;
  uiUrl: string | undefined;
  stop(): Promise<void>;
}

/**
 * Task-queue priority and fairness (src/temporal/priority.ts): on by default in Temporal Cloud,
 * behind these dynamic-config switches on a self-hosted server (docs/deploying.md). Both hold
 * within a task-queue partition; with the server's default of four, a tenant's task may wait in
 * a busier partition, so the dev server (one worker machine) keeps one.
 */
export const PRIORITY_AND_FAIRNESS = [
  '--dynamic-config-value',
  'matching.useNewMatcher=true',
  '--dynamic-config-value',
  'matching.enableFairness=true',
  '--dynamic-config-value',
  'matching.numTaskqueueReadPartitions=1',
  '--dynamic-config-value',
  'matching.numTaskqueueWritePartitions=1',
];

/**
 * Start the real Temporal dev server (server, SQLite persistence and Web UI in one binary), with
 * deltasync's search attributes registered so runs can be found by connector in the UI.
 */
export async function startDevServer(options: DevServerOptions = {}): Promise<DevServer> {
  const cli = findTemporalCli();
  if (options.dbFilename) fs.mkdirSync(path.dirname(options.dbFilename), { recursive: true });
  const env = await TestWorkflowEnvironment.createLocal({
    server: {
      executable: cli ? { type: 'existing-path', path: cli } : { type: 'cached-download' },
      ip: '127.0.0.1',
      port: options.port,
      ui: options.ui ?? false,
      uiPort: options.uiPort,
      dbFilename: options.dbFilename,
      searchAttributes: Object.values(searchAttributes),
      log: { format: 'pretty', level: 'error' },
      extraArgs: [
        ...PRIORITY_AND_FAIRNESS,
        ...(options.namespaces ?? [])
          .filter((namespace) => namespace !== 'default')
          .flatMap((namespace) => ['--namespace', namespace]),
      ],
    },
  });
  const address = env.address;
  const port = Number(address.split(':').pop());
  const uiUrl = options.ui ? `http://127.0.0.1:${options.uiPort ?? port + 1000}` : undefined;
  return { env, address, uiUrl, stop: () => env.teardown() };
}

export interface DevServerProcessOptions {
  /** The SQLite file that holds the server's state across restarts. */
  dbFilename: string;
  /** gRPC port, kept across restarts; omit for a free one. */
  port?: number;
  /** Namespaces to create besides `default`. */
  namespaces?: string[];
}

/**
 * The dev server as a process of our own, for tests of a Temporal outage: `kill` it (SIGKILL by
 * default, no chance to flush or say goodbye) and `start` it again on the same port with the same
 * state file. Workers and clients reconnect by address. (startDevServer's server belongs to the
 * SDK, which can only tear it down for good.)
 */
export interface DevServerProcess {
  /** host:port of the frontend. */
  address: string;
  dbFilename: string;
  /** Whether the process runs (it may still be starting). */
  running(): boolean;
  /** Kill the server with `signal` (default SIGKILL) and wait until the process has gone. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Start it again (same port, same state); resolves once it serves the namespaces. */
  start(): Promise<void>;
  /** Stop it for good (SIGTERM; SIGKILL after 10 s). The state file stays. */
  stop(): Promise<void>;
}

export async function startDevServerProcess(options: DevServerProcessOptions): Promise<DevServerProcess> {
  const cli = findTemporalCli();
  if (!cli) throw new Error('no Temporal CLI found (run scripts/setup.sh, or set TEMPORAL_CLI_PATH)');
  fs.mkdirSync(path.dirname(options.dbFilename), { recursive: true });
  const port = options.port ?? (await freePort());
  const address = `127.0.0.1:${port}`;
  const namespaces = ['default', ...(options.namespaces ?? []).filter((n) => n !== 'default')];
  const args = [
    'server',
    'start-dev',
    '--ip',
    '127.0.0.1',
    '--port',
    String(port),
    '--headless',
    '--db-filename',
    options.dbFilename,
    '--log-format',
    'pretty',
    '--log-level',
    'error',
    // As the SDK starts it (see startDevServer): updates enabled, no version check.
    '--dynamic-config-value',
    'frontend.enableServerVersionCheck=false',
    '--dynamic-config-value',
    'frontend.enableUpdateWorkflowExecution=true',
    '--dynamic-config-value',
    'frontend.enableUpdateWorkflowExecutionAsyncAccepted=true',
    ...PRIORITY_AND_FAIRNESS,
    ...Object.values(searchAttributes).flatMap((key) => [
      '--search-attribute',
      `${key.name}=${cliTypeName[key.type]}`,
    ]),
    ...namespaces.slice(1).flatMap((namespace) => ['--namespace', namespace]),
  ];
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let output = '';

  const running = () => child !== undefined && child.exitCode === null && child.signalCode === null;

  async function start(): Promise<void> {
    if (running()) throw new Error('the dev server is already running');
    output = '';
    const started = spawn(cli!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    started.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    started.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child = started;
    exited = new Promise((resolve) => started.once('exit', () => resolve()));
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (!running()) throw new Error(`the Temporal dev server exited at start:\n${output}`);
      if (await serving(address, namespaces)) return;
      if (Date.now() > deadline) {
        started.kill('SIGKILL');
        throw new Error(`the Temporal dev server did not serve within 60 s:\n${output}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  async function kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (running()) child!.kill(signal);
    await exited;
  }

  await start();
  return {
    address,
    dbFilename: options.dbFilename,
    running,
    kill,
    start,
    async stop() {
      if (!running()) return;
      const killLater = setTimeout(() => child?.kill('SIGKILL'), 10_000);
      await kill('SIGTERM');
      clearTimeout(killLater);
    },
  };
}

/** The CLI's spelling of a search attribute type (`--search-attribute Name=Keyword`). */
const cliTypeName: Record<SearchAttributeType, string> = {
  TEXT: 'Text',
  KEYWORD: 'Keyword',
  INT: 'Int',
  DOUBLE: 'Double',
  BOOL: 'Bool',
  DATETIME: 'Datetime',
  KEYWORD_LIST: 'KeywordList',
};

/**
 * Whether the server at `address` answers, has its namespaces, and has deltasync's search
 * attributes (registered right after it starts listening, so a worker could otherwise be first).
 */
async function serving(address: string, namespaces: string[]): Promise<boolean> {
  let connection: Connection | undefined;
  try {
    connection = await Connection.connect({ address, connectTimeout: 1_000 });
    for (const namespace of namespaces) await connection.workflowService.describeNamespace({ namespace });
    const { customAttributes } = await connection.operatorService.listSearchAttributes({
      namespace: 'default',
    });
    const known = Object.keys(customAttributes ?? {});
    return Object.values(searchAttributes).every((key) => known.includes(key.name));
  } catch {
    return false;
  } finally {
    await connection?.close().catch(() => undefined);
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
