import { Command } from 'commander';
import { version } from '../../package.json';
import { registerConnectors } from './commands/connectors';
import { registerLocal } from './commands/local';
import { registerRefresh } from './commands/refresh';
import { registerSchedules } from './commands/schedules';
import { registerTriggers } from './commands/triggers';
import { describeCliError, EXIT_CODES_HELP, isCommanderPrinted, usageError } from './exit-codes';
import { addGlobalOptions, applyOutputFormat, closeConnections } from './options';

/**
 * The `deltasync` CLI: the client's verbs for people (tables) and scripts (`--json`, exit codes).
 * Every command is scoped to one tenant (`--tenant`, DELTASYNC_TENANT) and talks to Temporal only;
 * the worker does the database work. Commands live in ./commands, one file per group.
 *
 * Exit codes (see exit-codes.ts): 0 ok · 1 the refresh (or operation) failed · 2 bad input, usage
 * or validation · 3 Temporal, the worker or the database unavailable · 4 not found.
 *
 * It starts like a native tool: this file and the command files load commander only; a command
 * loads what it uses (the Temporal client, a driver, a destination) when it runs, so `--help`,
 * usage errors and `destinations` never load them. Shipped compiled (`npm run build` → dist/).
 */
export function buildProgram(): Command {
  const program = new Command('deltasync')
    .description('Keep external lists equal to a canonical dataset (deltalog method on Temporal).')
    .version(version, '-V, --version')
    // Commander's own errors (unknown option, missing argument) come back here as exceptions, so
    // they print as one line and exit with code 2 like every other bad input.
    .exitOverride()
    .configureOutput({ outputError: () => undefined })
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false });
  addGlobalOptions(program);
  program.hook('preAction', (_program, action) => applyOutputFormat(action));
  program.addHelpText(
    'after',
    `
Commands by group:
  connectors apply|create|update -f <file>, get, list, delete, validate -f <file> [--online]
  refresh <id> [--wait|--follow], reconcile, plan, progress, runs, approve, reject
  schedules create|update|pause|unpause|trigger|backfill|delete|list|describe
  watch, unwatch, notify      refresh when the dataset changes
  worker, dev-server, demo, destinations
Every command takes --help, and --json where it prints data.
${EXIT_CODES_HELP}

Examples:
  deltasync connectors apply -f connectors/crm.yaml
  deltasync refresh crm-customers --follow
  deltasync --tenant growth runs crm-customers --json`,
  );

  registerConnectors(program);
  registerRefresh(program);
  registerSchedules(program);
  registerTriggers(program);
  registerLocal(program);
  return program;
}

export async function main(argv: string[] = process.argv): Promise<number> {
  const program = buildProgram();
  try {
    // Commander answers `deltasync nosuch --help` with the root help and exit 0; a typo is an error.
    refuseUnknownCommand(program, argv.slice(2));
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (error) {
    const { code, lines } =
      describeCliError(error) ??
      (await import('./errors.js')).describeFailure(
        error,
        program.opts<{ tenant?: string; address?: string }>(),
      );
    const hint = isCommanderUsage(error) ? ' (see --help)' : '';
    for (const line of lines) process.stderr.write(`deltasync: ${line}${hint}\n`);
    return code;
  } finally {
    await closeConnections();
  }
}

/**
 * An operand where a command is expected names none (at the top, or under a group such as
 * `schedules`): a usage error, with the nearest name.
 */
function refuseUnknownCommand(program: Command, args: string[]) {
  let current = program;
  const takesValue = (command: Command) =>
    new Set(command.options.filter((o) => o.required || o.optional).flatMap((o) => [o.long, o.short]));
  let withValue = takesValue(program);
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') return;
    if (arg.startsWith('-')) {
      if (withValue.has(arg)) i += 1;
      continue;
    }
    if (current.commands.length === 0) return;
    const next = current.commands.find((c) => c.name() === arg || c.aliases().includes(arg));
    if (!next) {
      if (arg === 'help') return;
      const nearest = nearestName(
        arg,
        current.commands.flatMap((c) => [c.name(), ...c.aliases()]),
      );
      throw usageError(`unknown command '${arg}'${nearest ? ` (did you mean '${nearest}'?)` : ''}`);
    }
    current = next;
    withValue = new Set([...withValue, ...takesValue(next)]);
  }
}

/** The name within two edits of `typed`, if any (the closest). */
function nearestName(typed: string, names: string[]): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const name of names) {
    const distance = editDistance(typed, name);
    if (distance <= 2 && (!best || distance < best.distance)) best = { name, distance };
  }
  return best?.name;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length]!;
}

const commanderCode = (error: unknown) => (error as { code?: unknown } | null)?.code;
const isCommanderUsage = (error: unknown) =>
  typeof commanderCode(error) === 'string' &&
  (commanderCode(error) as string).startsWith('commander.') &&
  !isCommanderPrinted(error);

if (require.main === module) {
  // Output piped into `head` that stops reading: the reader is done, so is the command.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPIPE') process.exit(0);
      throw error;
    });
  }
  void main().then((code) => {
    // A Temporal connection or a stray timer must not keep a finished command alive.
    process.stdout.write('', () => process.exit(code));
  });
}
