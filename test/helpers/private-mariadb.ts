import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createConnection } from 'mysql2/promise';
import { freePort } from './fake-http';

/**
 * A MariaDB server of one test's own: its own data directory and port, so a test can kill it
 * with SIGKILL mid-send and start it again on the same data without disturbing the shared
 * server at 127.0.0.1:3306 that every other test file uses.
 *
 * Root connects over TCP with an empty password (`--auth-root-authentication-method=normal`).
 * When the tests run as root, mariadbd must be told so (`--user=root`); it refuses otherwise.
 */
export interface PrivateMariaDb {
  port: number;
  /** `mysql://root@127.0.0.1:<port>/`: the server, no database (see createTestDatabase). */
  url: string;
  /** Kill the server process with `signal` (default SIGKILL) and wait until it has gone. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Start it again on the same data directory and port; resolves once it answers queries. */
  start(): Promise<void>;
  /** Kill it and delete its data directory. */
  stop(): Promise<void>;
}

/** The first of `names` found on PATH or in the usual sbin folders. */
function findBinary(names: string[]): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/local/sbin'];
  for (const name of names) {
    for (const dir of dirs) {
      const candidate = path.join(dir, name);
      try {
        fs.accessSync(candidate, fs.constants.X_OK);
        return candidate;
      } catch {
        // not here
      }
    }
  }
  return undefined;
}

export async function startPrivateMariaDb(): Promise<PrivateMariaDb> {
  const server = findBinary(['mariadbd', 'mysqld']);
  const install = findBinary(['mariadb-install-db', 'mysql_install_db']);
  if (!server || !install) {
    throw new Error(
      'a private MariaDB needs mariadbd and mariadb-install-db (apt-get install mariadb-server)',
    );
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deltasync-mariadb-'));
  const datadir = path.join(dir, 'data');
  const asRoot = process.getuid?.() === 0 ? ['--user=root'] : [];
  const installed = spawnSync(
    install,
    [
      '--no-defaults',
      `--datadir=${datadir}`,
      '--auth-root-authentication-method=normal',
      '--skip-test-db',
      ...asRoot,
    ],
    { encoding: 'utf8' },
  );
  if (installed.status !== 0) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`${install} failed (${installed.status}):\n${installed.stdout}\n${installed.stderr}`);
  }
  const port = await freePort();
  const errorLog = path.join(dir, 'error.log');
  const args = [
    '--no-defaults',
    `--datadir=${datadir}`,
    `--port=${port}`,
    `--socket=${path.join(dir, 'sock')}`,
    `--pid-file=${path.join(dir, 'mariadbd.pid')}`,
    `--log-error=${errorLog}`,
    '--bind-address=127.0.0.1',
    // Small: the machine is shared, and the test's tables are a few thousand rows.
    '--innodb-buffer-pool-size=32M',
    ...asRoot,
  ];
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const logTail = () => {
    try {
      return fs.readFileSync(errorLog, 'utf8').split('\n').slice(-15).join('\n');
    } catch {
      return '(no error log)';
    }
  };

  async function start(): Promise<void> {
    const started = spawn(server!, args, { stdio: 'ignore' });
    child = started;
    exited = new Promise((resolve) => started.once('exit', () => resolve()));
    // Crash recovery after a SIGKILL replays InnoDB's redo log: seconds, not minutes.
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (started.exitCode !== null || started.signalCode !== null) {
        throw new Error(
          `mariadbd exited at start (${started.exitCode ?? started.signalCode}):\n${logTail()}`,
        );
      }
      try {
        const connection = await createConnection({ host: '127.0.0.1', port, user: 'root' });
        await connection.query('SELECT 1');
        await connection.end();
        return;
      } catch (error) {
        if (Date.now() > deadline) {
          started.kill('SIGKILL');
          throw new Error(`mariadbd did not answer within 60 s (${String(error)}):\n${logTail()}`);
        }
        await sleep(100);
      }
    }
  }

  async function kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (child && child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  }

  await start();
  return {
    port,
    url: `mysql://root@127.0.0.1:${port}/`,
    kill,
    start,
    async stop() {
      await kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
