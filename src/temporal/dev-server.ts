import fs from 'node:fs';
import path from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { searchAttributes } from '../workflows/shared';
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
      extraArgs: (options.namespaces ?? [])
        .filter((namespace) => namespace !== 'default')
        .flatMap((namespace) => ['--namespace', namespace]),
    },
  });
  const address = env.address;
  const port = Number(address.split(':').pop());
  const uiUrl = options.ui ? `http://127.0.0.1:${options.uiPort ?? port + 1000}` : undefined;
  return { env, address, uiUrl, stop: () => env.teardown() };
}
