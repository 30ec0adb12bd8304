import { InvalidArgumentError, Option, type Command } from 'commander';
import type { CliContext, GlobalOptions } from './context';
import { usageError } from './exit-codes';

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
    )
    .addOption(
      new Option(
        '-o, --output <format>',
        "how commands print data: table (people), json or yaml (scripts); a command's --json is -o json",
      )
        .choices(OUTPUT_FORMATS)
        .env('DELTASYNC_OUTPUT')
        .default('table'),
    );
}

export const OUTPUT_FORMATS = ['table', 'json', 'yaml'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

function rootOf(command: Command): Command {
  let root = command;
  while (root.parent) root = root.parent;
  return root;
}

/** How printJson prints: set once per command from the global --output (main.ts). */
let structuredFormat: 'json' | 'yaml' = 'json';

/**
 * Before a command runs: `--output json|yaml` switches its data output on, as its own `--json`
 * would; a command that prints no data refuses them rather than ignore them.
 */
export function applyOutputFormat(command: Command): void {
  const { output, json } = command.optsWithGlobals<{ output?: OutputFormat; json?: boolean }>();
  structuredFormat = json || output !== 'yaml' ? 'json' : 'yaml';
  if (output === undefined || output === 'table') return;
  if (!command.options.some((o) => o.long === '--json')) {
    // Set for every command (DELTASYNC_OUTPUT): those that print no data just print as they do.
    if (rootOf(command).getOptionValueSource('output') !== 'cli') return;
    throw usageError(`'${command.name()}' prints no data: --output ${output} does not apply to it`);
  }
  command.setOptionValue('json', true);
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

/** Data for scripts: JSON, or YAML with --output yaml. */
export function printJson(value: unknown): void {
  if (structuredFormat === 'yaml') {
    // yaml is loaded only by the commands that print it.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const YAML = require('yaml') as typeof import('yaml');
    process.stdout.write(YAML.stringify(value));
    return;
  }
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}
