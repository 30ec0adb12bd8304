import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { Option, type Command } from 'commander';
import type { RunChange, RunSummary } from '../../client';
import { OUTCOMES, type Outcome } from '../../core/change-log';
import { STRATEGIES, type StrategyChoice } from '../../core/plan';
import { CliError, EXIT, notFound } from '../exit-codes';
import { PROGRESS_MODES, type ProgressMode } from '../follow';
import {
  changesCsv,
  changesTable,
  describeProgress,
  describeRun,
  formatCount,
  runsTable,
  table,
} from '../format';
import { connect, positiveInt, print, printJson } from '../options';

interface RefreshFlags {
  strategy?: StrategyChoice;
  wait?: boolean;
  follow?: boolean;
  progress?: ProgressMode;
  json?: boolean;
}

/** Refreshes and what surrounds them: plan, progress, runs, the mass-delete guard's decisions. */
export function registerRefresh(program: Command): void {
  const refresh = program
    .command('refresh <connector>')
    .description('Start a refresh of a connector, or attach to the one running (one per connector)')
    .addOption(
      new Option('--strategy <strategy>', 'force a strategy for this run').choices(['auto', ...STRATEGIES]),
    );
  addWaitOptions(refresh).action((id: string, opts: RefreshFlags, cmd: Command) => runRefresh(id, opts, cmd));

  const reconcile = program
    .command('reconcile <connector>')
    .description(
      'Read the remote list, correct what drifted behind our back, then send the diff ' +
        '(refresh --strategy reconcile)',
    )
    .summary('Repair drift on the remote list (refresh --strategy reconcile)');
  addWaitOptions(reconcile).action((id: string, opts: RefreshFlags, cmd: Command) =>
    runRefresh(id, { ...opts, strategy: 'reconcile' }, cmd),
  );

  program
    .command('plan <connector>')
    .description('Dry run: what a refresh would send, by which strategy, in how many calls (sends nothing)')
    .addOption(new Option('--strategy <strategy>', 'plan a forced strategy').choices(['auto', ...STRATEGIES]))
    .option('--json', 'print JSON for scripts')
    .action(async (id: string, opts: { strategy?: StrategyChoice; json?: boolean }, cmd: Command) => {
      const ctx = await connect(cmd);
      const plan = await ctx.withWorker(() => ctx.client.plan(id, { strategy: opts.strategy }));
      if (opts.json) return printJson(plan);
      const verdict = plan.needed ? `would refresh by ${plan.strategy}` : 'nothing to send';
      print(
        `${id}: ${verdict} (${plan.reason})\n` +
          `pending: ${formatCount(plan.additions)} additions, ${formatCount(plan.updates)} updates, ` +
          `${formatCount(plan.deletions)} deletions; dataset ${formatCount(plan.datasetSize)}, ` +
          `bad rows ${formatCount(plan.badRows)}, quarantined ${formatCount(plan.quarantined)}\n` +
          (plan.guard?.triggered ? `guard: ${plan.guard.reason}: the run would wait for approval\n` : '') +
          `\n${table(
            ['strategy', 'API calls', 'records', 'bytes'],
            STRATEGIES.map((s) => {
              const cost = plan.estimates[s];
              if (!cost) return [`${s} (not possible)`, '-', '-', '-'];
              return [s, ...[cost.calls, cost.records, cost.bytes].map(formatCount)];
            }),
          )}`,
      );
    });

  program
    .command('progress <connector>')
    .description("Progress of the connector's latest refresh (running or finished): phase, plan, counters")
    .option('--watch', 'keep printing until the refresh ends')
    .option('--json', 'print JSON for scripts (one line per update with --watch)')
    .action(async (id: string, opts: { watch?: boolean; json?: boolean }, cmd: Command) => {
      const ctx = await connect(cmd);
      await ctx.withWorker(() => ctx.client.connectors.get(id)); // tenant check
      try {
        // Each answer comes from a worker (a query): each is watched, so a worker that dies while
        // the CLI watches ends the command instead of hanging it.
        if (!opts.watch) {
          const progress = await ctx.withWorker(() => ctx.client.progress(id));
          return opts.json ? printJson(progress) : print(describeProgress(id, progress));
        }
        let last = '';
        for (;;) {
          const progress = await ctx.withWorker(() => ctx.client.progress(id));
          const text = opts.json ? JSON.stringify(progress) : describeProgress(id, progress);
          if (text !== last) print(opts.json ? text : `${text}\n`);
          last = text;
          if (progress.status !== 'RUNNING') break;
          await sleep(WATCH_EVERY_MS);
        }
      } catch (error) {
        const { WorkflowNotFoundError } = await import('@temporalio/client');
        if (error instanceof WorkflowNotFoundError) throw notFound(`no refresh of '${id}' has run yet`);
        throw error;
      }
    });

  program
    .command('runs <connector>')
    .description("The connector's runs, newest first: outcome, strategy, counts, API calls, duration")
    .addOption(new Option('--limit <n>', 'how many runs').argParser(positiveInt).default(20))
    .option('--details', 'every field of each run, its last error and samples of its bad rows')
    .option('--json', 'print JSON for scripts')
    .action(async (id: string, opts: { limit: number; details?: boolean; json?: boolean }, cmd: Command) => {
      const ctx = await connect(cmd);
      const runs = await ctx.withWorker(() =>
        opts.details
          ? ctx.client.runDetails(id, { limit: opts.limit })
          : ctx.client.runs(id, { limit: opts.limit }),
      );
      if (opts.json) printJson(runs);
      else if (runs.length === 0) print(`no runs of ${id} yet`);
      else if (opts.details)
        print(runs.map((run) => describeRun(run as Parameters<typeof describeRun>[0])).join('\n\n'));
      else print(runsTable(runs));
    });

  program
    .command('changes <connector>')
    .description(
      "The connector's change log, newest first: which keys its runs added, updated or removed, and which " +
        'the destination rejected or held, and why (kept policy.changeLogDays, default 14)',
    )
    .summary('Which keys runs added, updated, removed, rejected or held, and why')
    .addOption(new Option('--run <id>', 'only this run (its id, as `runs` lists it)').argParser(positiveInt))
    .addOption(new Option('--outcome <outcome>', 'only this outcome').choices([...OUTCOMES]))
    .option('--key <key>', 'only this key: why is it (not) on the list?')
    .addOption(new Option('--limit <n>', 'at most this many changes').argParser(positiveInt).default(100))
    .option('--all', 'every change that matches (no limit)')
    .addOption(new Option('--json', 'print JSON for scripts').conflicts('csv'))
    .option('--csv', 'print CSV (run,at,outcome,key,reason)')
    .action(
      async (
        id: string,
        opts: {
          run?: number;
          outcome?: Outcome;
          key?: string;
          limit: number;
          all?: boolean;
          json?: boolean;
          csv?: boolean;
        },
        cmd: Command,
      ) => {
        const ctx = await connect(cmd);
        const filter = { runId: opts.run, outcome: opts.outcome, key: opts.key };
        const changes = await ctx.withWorker(async () => {
          const found: RunChange[] = [];
          for await (const change of ctx.client.allChanges(id, filter)) {
            found.push(change);
            if (!opts.all && found.length >= opts.limit) break;
          }
          return found;
        });
        if (opts.json) return printJson(changes);
        if (opts.csv) return print(changesCsv(changes));
        if (changes.length === 0) {
          return print(
            opts.key === undefined
              ? `no logged change of ${id} matches`
              : `no run of ${id} logged key '${opts.key}' (the log keeps policy.changeLogDays days): ` +
                  'no run sent it in that time, or it was never in the dataset',
          );
        }
        print(changesTable(changes));
        if (!opts.all && changes.length >= opts.limit)
          print(`(first ${opts.limit}; --all or --limit for more)`);
      },
    );

  for (const approved of [true, false]) {
    program
      .command(`${approved ? 'approve' : 'reject'} <connector>`)
      .description(
        approved
          ? 'Let the deletions of a refresh waiting at the mass-delete guard go out'
          : 'Hold back the deletions of a refresh waiting at the mass-delete guard (they stay pending; the rest is sent)',
      )
      .summary(
        approved
          ? 'Let a refresh held by the mass-delete guard send its deletions'
          : 'Keep the deletions of a refresh held by the mass-delete guard pending',
      )
      .option('--by <name>', 'who decides (recorded on the run)', currentUser())
      .option('--note <text>', 'why (recorded on the run)')
      .option('--json', 'print JSON for scripts')
      .action(async (id: string, opts: { by: string; note?: string; json?: boolean }, cmd: Command) => {
        const ctx = await connect(cmd);
        const input = { by: opts.by, ...(opts.note ? { note: opts.note } : {}) };
        const decision = await ctx.withWorker(() =>
          approved ? ctx.client.approve(id, input) : ctx.client.reject(id, input),
        );
        if (opts.json) return printJson(decision);
        print(
          decision.approved
            ? `approved: the deletions of ${id}'s refresh go out (by ${decision.by})`
            : `rejected: ${id}'s refresh sends the rest; its deletions stay pending (by ${decision.by})`,
        );
      });
  }

  program
    .command('cancel <connector>')
    .description(
      "Stop the connector's running refresh: the call in flight finishes and is committed, nothing " +
        'more is sent, and what was not sent stays pending for the next refresh',
    )
    .summary("Stop the connector's running refresh (what it delivered stays committed)")
    .option('--no-wait', 'return once the cancellation is requested, without waiting for the run to stop')
    .option('--json', 'print JSON for scripts')
    .action(async (id: string, opts: { wait: boolean; json?: boolean }, cmd: Command) => {
      const ctx = await connect(cmd);
      const cancelled = await ctx.withWorker(() => ctx.client.cancel(id));
      if (!opts.wait) {
        const requested = { workflowId: cancelled.workflowId, runId: cancelled.runId, stopped: false };
        return opts.json ? printJson(requested) : print(`cancellation of ${id}'s refresh requested`);
      }
      // Stopping waits for the send's call in flight: nothing new is queued, so only a worker that
      // stopped polling altogether ends this wait early.
      const run = await ctx.withWorker(() => cancelled.stopped(), {
        queuesWork: false,
        notice: false,
        leftBehind: `; ${id}'s refresh stops once a worker polls again`,
      });
      if (opts.json) return printJson({ workflowId: cancelled.workflowId, runId: cancelled.runId, run });
      print(
        run
          ? `${id}'s refresh stopped: ${formatCount(run.recordsSent)} records delivered and committed ` +
              `in ${formatCount(run.apiCalls)} calls; the rest stays pending for the next refresh\n` +
              runsTable([run])
          : `${id}'s refresh stopped before it started sending`,
      );
    });
}

/** How often `progress --watch` asks. */
const WATCH_EVERY_MS = 500;

function addWaitOptions(command: Command): Command {
  return command
    .option('--wait', 'wait for the result and print it')
    .option('--follow', 'wait with a live progress bar (on stderr), then print the result')
    .addOption(
      new Option(
        '--progress <mode>',
        'implies --follow; bar: a bar even when stderr is not a terminal (a line per second), ' +
          'lines: a line per phase, none; default: bar on a terminal, else lines',
      ).choices(PROGRESS_MODES),
    )
    .option('--json', 'print JSON for scripts')
    .addHelpText(
      'after',
      '\nWithout --wait or --follow it prints the started run and returns. Exit code 1 when the run failed.',
    );
}

async function runRefresh(id: string, opts: RefreshFlags, cmd: Command): Promise<void> {
  const ctx = await connect(cmd);
  await ctx.withWorker(() => ctx.client.connectors.get(id)); // not found → exit 4 before anything starts
  const strategy = opts.strategy === 'auto' ? undefined : opts.strategy;
  const follow = opts.follow || opts.progress !== undefined;
  if (!opts.wait && !follow) {
    const handle = await ctx.client.startRefresh(id, { strategy, trigger: 'cli' });
    const started = {
      connectorId: id,
      workflowId: handle.workflowId,
      runId: handle.runId,
      attached: handle.attached,
    };
    if (opts.json) return printJson(started);
    return print(
      `${handle.attached ? 'attached to the running' : 'started'} refresh of ${id} ` +
        `(workflow ${handle.workflowId}, run ${handle.runId})`,
    );
  }
  const { followRefresh } = await import('../follow.js');
  let summary: RunSummary;
  // The start and the wait are watched as one: a new refresh puts a workflow task on the queue,
  // which a live worker takes at once; joining a running refresh queues nothing.
  let attached: boolean | undefined;
  try {
    summary = await ctx.withWorker(
      async () => {
        const handle = await ctx.client.startRefresh(id, { strategy, trigger: 'cli' });
        attached = handle.attached;
        if (handle.attached && !opts.json) process.stderr.write(`attached to the running refresh of ${id}\n`);
        return follow ? followRefresh(handle, id, { mode: opts.progress }) : handle.result();
      },
      {
        queuesWork: () => attached !== true,
        notice: false, // a refresh takes as long as it takes; --follow shows its progress
        leftBehind: `; the refresh of ${id} stays queued and goes on once a worker polls again`,
      },
    );
  } catch (error) {
    throw await refreshFailure(id, error, opts.json);
  }
  report(summary, opts.json);
  if (summary.status === 'failed') {
    throw new CliError(`refresh of ${id} failed${summary.error ? `: ${summary.error}` : ''}`, EXIT.failed);
  }
}

function report(summary: RunSummary, json?: boolean) {
  if (json) printJson(summary);
  else print(runsTable([summary]));
}

/** A run below its success threshold carries its summary: print it, then fail with exit code 1. */
async function refreshFailure(id: string, error: unknown, json?: boolean): Promise<unknown> {
  const [{ WorkflowFailedError }, { applicationFailure, rootCause }] = await Promise.all([
    import('@temporalio/client'),
    import('../errors.js'),
  ]);
  const threshold = applicationFailure(error, 'BelowSuccessThreshold');
  const summary = threshold?.details?.[0] as RunSummary | undefined;
  if (threshold && summary) {
    report(summary, json);
    return new CliError(`refresh of ${id} failed: ${threshold.message}`, EXIT.failed);
  }
  // Anything else that is not the workflow's own failure (no worker, Temporal gone, not found) is
  // said as it is. The workflow's failure is the refresh's, whatever its cause (a destination's
  // network error is not our database being down).
  if (!(error instanceof WorkflowFailedError)) return error;
  const cause = rootCause(error);
  const message = cause instanceof Error ? cause.message.split('\n')[0] : String(cause);
  return new CliError(`refresh of ${id} failed: ${message}`, EXIT.failed);
}

function currentUser(): string {
  try {
    return os.userInfo().username || 'cli';
  } catch {
    return process.env.USER ?? 'cli';
  }
}
