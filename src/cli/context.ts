import { Client, Connection } from '@temporalio/client';
import { Command, InvalidArgumentError, Option } from 'commander';
import { DeltasyncClient } from '../client';
import { unavailable } from './errors';

/** Options every command takes (before or after the command name). */
export interface GlobalOptions {
  tenant: string;
  address: string;
  namespace: string;
  taskQueue: string;
  connectTimeout: number;
}

export function addGlobalOptions(program: Command): Command {
  return program
    .addOption(
      new Option('--tenant <name>', 'tenant whose connectors, runs and schedules to act on')
        .env('DELTASYNC_TENANT')
        .default('default'),
    )
    .addOption(
      new Option('--address <host:port>', 'Temporal frontend address')
        .env('TEMPORAL_ADDRESS')
        .default('localhost:7233'),
    )
    .addOption(
      new Option('--namespace <name>', 'Temporal namespace').env('TEMPORAL_NAMESPACE').default('default'),
    )
    .addOption(
      new Option('--task-queue <name>', 'task queue the deltasync workers poll')
        .env('DELTASYNC_TASK_QUEUE')
        .default('deltasync'),
    )
    .addOption(
      new Option('--connect-timeout <seconds>', 'give up reaching Temporal after this long')
        .argParser(positiveNumber)
        .default(10),
    );
}

export const globalsOf = (command: Command) => command.optsWithGlobals<GlobalOptions>();

/** A connected, tenant-scoped client, plus what commands need around it. */
export interface CliContext {
  options: GlobalOptions;
  client: DeltasyncClient;
  /**
   * Await work that needs a deltasync worker (connector management, runs, refresh results). When it
   * takes a while and nobody polls the task queue, fail with exit code 3 instead of hanging.
   */
  withWorker<T>(work: Promise<T>): Promise<T>;
}

const openConnections: Connection[] = [];

export async function connect(command: Command): Promise<CliContext> {
  const options = globalsOf(command);
  let connection: Connection;
  try {
    connection = await Connection.connect({
      address: options.address,
      connectTimeout: options.connectTimeout * 1000,
    });
  } catch (error) {
    throw unavailable(
      `cannot reach Temporal at ${options.address} (${error instanceof Error ? error.message : String(error)})`,
    );
  }
  openConnections.push(connection);
  const temporal = new Client({ connection, namespace: options.namespace });
  const client = new DeltasyncClient(temporal, { taskQueue: options.taskQueue, tenant: options.tenant });
  return {
    options,
    client,
    withWorker: (work) => watchForWorker(temporal, options, work),
  };
}

/** Close what `connect` opened, so the process can exit. */
export async function closeConnections(): Promise<void> {
  await Promise.all(openConnections.splice(0).map((c) => c.close().catch(() => undefined)));
}

const WORKER_CHECK_AFTER_MS = 3000;

async function watchForWorker<T>(temporal: Client, options: GlobalOptions, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const watchdog = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      void hasPollers(temporal, options).then((polled) => {
        if (!polled) {
          reject(
            unavailable(
              `no worker is polling task queue '${options.taskQueue}' in namespace '${options.namespace}' ` +
                `at ${options.address}; start one with 'deltasync worker' (what was asked runs once one does)`,
            ),
          );
        }
      });
    }, WORKER_CHECK_AFTER_MS);
  });
  try {
    return await Promise.race([work, watchdog]);
  } finally {
    clearTimeout(timer);
  }
}

async function hasPollers(temporal: Client, options: GlobalOptions): Promise<boolean> {
  try {
    const answer = await temporal.workflowService.describeTaskQueue({
      namespace: options.namespace,
      taskQueue: { name: options.taskQueue },
      taskQueueType: 1, // TASK_QUEUE_TYPE_WORKFLOW
    });
    return (answer.pollers?.length ?? 0) > 0;
  } catch {
    return true; // cannot tell: keep waiting rather than fail a working setup
  }
}

export function positiveInt(value: string): number {
  const n = Number(value.replace(/_/g, ''));
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('must be a positive whole number');
  return n;
}

export function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a positive number');
  return n;
}

export function nonNegativeNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('must be 0 or a positive number');
  return n;
}

/** Write one JSON document (scripts) or text (people) to stdout. */
export function print(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}
