import { Option, type Command } from 'commander';
import type { DeltasyncClient } from '../../client';
import { notFound } from '../exit-codes';
import { connect, positiveNumber, print, printJson } from '../options';

type WatchStatusOf = NonNullable<Awaited<ReturnType<DeltasyncClient['watchStatus']>>>;

/** Change-triggered refreshes: a watcher per connector, and notifications from ingestion jobs. */
export function registerTriggers(program: Command): void {
  program
    .command('watch <connector>')
    .description(
      'Refresh the connector when its dataset changes (besides any schedule): start its watcher, ' +
        'or show it with --status',
    )
    .summary('Refresh when the dataset changes (start the watcher; --status shows it)')
    .addOption(new Option('--poll-seconds <n>', 'seconds between change checks').argParser(positiveNumber))
    .addOption(
      new Option('--debounce-seconds <n>', 'quiet seconds after the last change before refreshing').argParser(
        nonNegative,
      ),
    )
    .addOption(
      new Option(
        '--max-wait-seconds <n>',
        "refresh at the latest this long after a burst's first change",
      ).argParser(positiveNumber),
    )
    .option('--status', "only show the watcher's state (starts nothing)")
    .option('--json', 'print JSON for scripts')
    .addHelpText(
      'after',
      "\nUnset options come from the connector's policy.changeTrigger. A running watcher keeps its\n" +
        "settings: 'deltasync unwatch' it first to change them.",
    )
    .action(
      async (
        id: string,
        opts: {
          pollSeconds?: number;
          debounceSeconds?: number;
          maxWaitSeconds?: number;
          status?: boolean;
          json?: boolean;
        },
        cmd: Command,
      ) => {
        const ctx = await connect(cmd);
        if (opts.status) {
          const status = await ctx.withWorker(() => ctx.client.watchStatus(id));
          if (!status) throw notFound(`connector ${id} has never been watched`);
          return opts.json ? printJson(status) : print(describeWatch(status));
        }
        const handle = await ctx.withWorker(() =>
          ctx.client.watch(id, {
            ...(opts.pollSeconds !== undefined ? { pollSeconds: opts.pollSeconds } : {}),
            ...(opts.debounceSeconds !== undefined ? { debounceSeconds: opts.debounceSeconds } : {}),
            ...(opts.maxWaitSeconds !== undefined ? { maxWaitSeconds: opts.maxWaitSeconds } : {}),
          }),
        );
        if (opts.json) return printJson(handle);
        print(
          handle.alreadyWatching
            ? `${id} is watched already (workflow ${handle.workflowId}); it keeps its settings`
            : `watching ${id} for changes (workflow ${handle.workflowId})`,
        );
      },
    );

  program
    .command('unwatch <connector>')
    .description("Stop the connector's change watcher (a refresh it started keeps running)")
    .option('--json', 'print JSON for scripts')
    .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
      const ctx = await connect(cmd);
      const stopped = await ctx.withWorker(() => ctx.client.unwatch(id));
      if (opts.json) return printJson({ connectorId: id, stopped });
      print(stopped ? `stopped watching ${id}` : `${id} was not being watched`);
    });

  program
    .command('notify <connector>')
    .description(
      "Tell the connector's watcher its dataset changed (for ingestion jobs, after a load); " +
        'a burst of notifications starts one refresh after the debounce',
    )
    .summary("Tell the connector's watcher its dataset changed")
    .option('--note <text>', "a short label, e.g. 'orders import 2026-03-01' (no record data)")
    .action(async (id: string, opts: { note?: string }, cmd: Command) => {
      const ctx = await connect(cmd);
      await ctx.withWorker(() => ctx.client.notifyChange(id, opts.note));
      print(`notified the watcher of ${id}`);
    });
}

function nonNegative(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) return positiveNumber(value);
  return n;
}

function describeWatch(s: WatchStatusOf): string {
  const time = (ms: number | null) => (ms === null ? '-' : new Date(ms).toISOString());
  return [
    `connector:   ${s.connectorId}`,
    `watcher:     ${s.running ? 'running' : 'stopped'} (poll ${s.pollSeconds} s, debounce ${s.debounceSeconds} s, ` +
      `max wait ${s.maxWaitSeconds} s)`,
    `last check:  ${time(s.lastCheckAt)}`,
    `last change: ${time(s.lastChangeAt)}${s.lastNote ? ` (${s.lastNote})` : ''}`,
    `pending:     ${s.pending ? `${s.pendingChanges} change(s) since ${time(s.pendingSince)}` : 'no'}`,
    `refreshes:   ${s.triggers} started${s.lastTrigger ? `, last ${time(s.lastTrigger.at)}` : ''}`,
    ...(s.lastError ? [`last error:  ${s.lastError}`] : []),
  ].join('\n');
}
