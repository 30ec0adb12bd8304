import { InvalidArgumentError, Option, type Command } from 'commander';
import type { CliContext, GlobalOptions } from './context';

/**
 * What every command file uses, cheap to load: the global options, value parsers, output, and
 * `connect`, which loads the Temporal client (context.ts) only when a command runs that needs it.
 * `deltasync --help` thus loads commander and the command files, nothing else.
 */

export type { GlobalOptions };

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

let context: typeof import('./context') | undefined;

/** A connected, tenant-scoped client (see context.ts), loaded on first use. */
export async function connect(command: Command): Promise<CliContext> {
  context ??= await import('./context.js');
  return context.connect(globalsOf(command));
}

/** Close what `connect` opened, if anything, so the process can exit. */
export async function closeConnections(): Promise<void> {
  await context?.closeConnections();
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
