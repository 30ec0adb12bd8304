import { spawn, type ChildProcess } from 'node:child_process';
import { WORKER_HEAP_MB } from '../../src/cli/commands/local';
import path from 'node:path';

/**
 * A real `deltasync worker` in a process of its own, as operators run it: the fault tests kill
 * it with SIGKILL mid-send and start another. Its JSON logs are kept for failure messages.
 */
export interface WorkerProcess {
  pid: number;
  /** Resolves with the exit code (or the signal) once the process has ended. */
  exited: Promise<number | NodeJS.Signals | null>;
  kill(signal?: NodeJS.Signals): void;
  logs(): string;
}

const ROOT = path.join(__dirname, '..', '..');

export async function startWorkerProcess(options: {
  address: string;
  taskQueue: string;
  databaseUrl: string;
  env?: Record<string, string>;
}): Promise<WorkerProcess> {
  const child: ChildProcess = spawn(
    process.execPath,
    [
      // As bin/deltasync starts a worker.
      `--max-old-space-size=${WORKER_HEAP_MB}`,
      ...(process.env.BENCH_WORKER_FLAGS ? process.env.BENCH_WORKER_FLAGS.split(' ') : []),
      '--import',
      'tsx',
      'src/cli/main.ts',
      'worker',
      '--address',
      options.address,
      '--task-queue',
      options.taskQueue,
      '--metrics-port',
      '0',
      '--shutdown-grace',
      '0',
    ],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        DELTASYNC_DATABASE_URL: options.databaseUrl,
        DELTASYNC_LOG_LEVEL: 'info',
        ...options.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | NodeJS.Signals | null>((resolve) =>
    child.on('close', (code, signal) => resolve(code ?? signal)),
  );
  // Ready once it says so (after bundling the workflows and connecting), or failed.
  const deadline = Date.now() + 120_000;
  while (!output.includes('worker service started')) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`the worker exited before it started:\n${output}`);
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the worker did not start within 2 minutes:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    pid: child.pid!,
    exited,
    kill: (signal = 'SIGKILL') => child.kill(signal),
    logs: () => output,
  };
}
