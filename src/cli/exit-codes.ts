import { CommanderError } from 'commander';

/**
 * Exit codes scripts can rely on (also listed by `deltasync --help`), and the errors the CLI
 * raises itself. Cheap to load: every command file uses it at registration; what describes other
 * failures (errors.ts) loads only when a command fails.
 *
 * | code | meaning                                                                              |
 * | ---- | ------------------------------------------------------------------------------------ |
 * | 0    | ok (a refresh that ran and succeeded, or had nothing to send)                        |
 * | 1    | the refresh failed (below its success threshold, or a destination refused it), an    |
 * |      | online check failed, or another operation failed for a reason not listed below       |
 * | 2    | bad input: unknown command or option, bad value, invalid connector definition        |
 * | 3    | unavailable: Temporal unreachable (named with its address), no worker polling the    |
 * |      | task queue, the worker stopped polling (dead) or did not finish in time, or the      |
 * |      | worker's database unreachable                                                        |
 * | 4    | not found: no such connector (in this tenant), schedule, refresh (or none running to |
 * |      | cancel) or pending approval                                                          |
 */
export const EXIT = { ok: 0, failed: 1, usage: 2, unavailable: 3, notFound: 4 } as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export const EXIT_CODES_HELP = `
Exit codes:
  0  ok
  1  the refresh failed (or an online check, or another operation)
  2  bad input: usage, option values, invalid connector definition
  3  unavailable: Temporal, a worker (none polls, or it stopped polling) or its database
  4  not found: connector (in this tenant), schedule, refresh (none running to cancel),
     or nothing awaiting approval`;

/** An error the CLI raises itself, with the exit code it stands for. */
export class CliError extends Error {
  override name = 'CliError';
  constructor(
    message: string,
    readonly code: ExitCode,
  ) {
    super(message);
  }
}

export const usageError = (message: string) => new CliError(message, EXIT.usage);
export const notFound = (message: string) => new CliError(message, EXIT.notFound);
export const unavailable = (message: string) => new CliError(message, EXIT.unavailable);

export type Described = { code: ExitCode; lines: string[] };

/**
 * The CLI's own errors and commander's (usage, and help or version already printed); undefined
 * for anything else, which errors.ts describes.
 */
export function describeCliError(error: unknown): Described | undefined {
  if (error instanceof CliError) return { code: error.code, lines: [error.message] };
  if (error instanceof CommanderError) {
    return {
      code: error.exitCode === 0 ? EXIT.ok : EXIT.usage,
      lines: isCommanderPrinted(error) ? [] : [error.message.replace(/^error: /, '')],
    };
  }
  return undefined;
}

/** Help and version: commander printed them and ends with this "error". */
export function isCommanderPrinted(error: unknown): boolean {
  return (
    error instanceof CommanderError &&
    ['commander.help', 'commander.helpDisplayed', 'commander.version'].includes(error.code)
  );
}
