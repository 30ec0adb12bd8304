import type { CalendarSpec } from '@temporalio/client';
import type { Command } from 'commander';
import type { ScheduleSpecInput } from '../../client/schedules';
import { notFound, usageError } from '../exit-codes';
import { describeSchedule, schedulesTable } from '../format';
import { connect, print, printJson } from '../options';

interface SpecFlags {
  every?: string;
  cron?: string[];
  calendar?: string[];
  timezone?: string;
  jitter?: string;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** `deltasync schedules …`: periodic refreshes on Temporal Schedules, one per connector. */
export function registerSchedules(program: Command): void {
  const schedules = program
    .command('schedules')
    .description('Periodic refreshes on Temporal Schedules (one schedule per connector)');

  const withSpec = (command: Command) =>
    command
      .option('--every <duration>', "an interval: '1h', '15m', '30 minutes'")
      .option('--cron <expression>', "a cron expression, e.g. '0 3 * * *' (repeatable)", collect)
      .option(
        '--calendar <json>',
        'a calendar spec as JSON, e.g. \'{"hour":3,"dayOfWeek":"MONDAY"}\' (an object or an array; repeatable)',
        collect,
      )
      .option(
        '--timezone <zone>',
        "IANA time zone for --cron and --calendar, e.g. 'Europe/Berlin' (default UTC)",
      )
      .option('--jitter <duration>', "random delay added to each start, e.g. '5m'")
      .option('--json', 'print JSON for scripts');

  withSpec(
    schedules
      .command('create <connector>')
      .description('Refresh a connector on a schedule (give --every, --cron or --calendar)'),
  )
    .option('--paused', 'create it paused')
    .option('--note <text>', 'a note on its state (e.g. why it is paused)')
    .addHelpText(
      'after',
      '\nExamples:\n  deltasync schedules create crm-customers --every 1h --jitter 5m\n' +
        "  deltasync schedules create crm-customers --cron '0 3 * * *' --timezone Europe/Berlin",
    )
    .action(
      async (
        id: string,
        opts: SpecFlags & { paused?: boolean; note?: string; json?: boolean },
        cmd: Command,
      ) => {
        const spec = await specOf(opts);
        const ctx = await connect(cmd);
        await ctx.withWorker(() => ctx.client.connectors.get(id)); // only the tenant's own connectors
        const schedule = await scheduleCall(id, ctx.options.tenant, () =>
          ctx.client.schedules.create(id, spec, { paused: opts.paused, note: opts.note }),
        );
        if (opts.json) printJson(schedule);
        else print(`created schedule of ${id}\n${describeSchedule(schedule)}`);
      },
    );

  withSpec(
    schedules
      .command('update <connector>')
      .description("Replace a schedule's spec (its paused state and note stay)"),
  ).action(async (id: string, opts: SpecFlags & { json?: boolean }, cmd: Command) => {
    const spec = await specOf(opts);
    const ctx = await connect(cmd);
    const schedule = await scheduleCall(id, ctx.options.tenant, () => ctx.client.schedules.update(id, spec));
    if (opts.json) printJson(schedule);
    else print(`updated schedule of ${id}\n${describeSchedule(schedule)}`);
  });

  schedules
    .command('pause <connector>')
    .description('Pause a schedule (no starts until unpaused)')
    .option('--note <text>', 'why (shown by list and describe, and in the Temporal UI)')
    .action(async (id: string, opts: { note?: string }, cmd: Command) => {
      const ctx = await connect(cmd);
      await scheduleCall(id, ctx.options.tenant, () => ctx.client.schedules.pause(id, opts.note));
      print(`paused schedule of ${id}${opts.note ? ` (${opts.note})` : ''}`);
    });

  schedules
    .command('unpause <connector>')
    .description('Resume a paused schedule')
    .option('--note <text>', 'a note on its state')
    .action(async (id: string, opts: { note?: string }, cmd: Command) => {
      const ctx = await connect(cmd);
      await scheduleCall(id, ctx.options.tenant, () => ctx.client.schedules.unpause(id, opts.note));
      print(`unpaused schedule of ${id}`);
    });

  schedules
    .command('trigger <connector>')
    .description('Start a refresh now, as the schedule would (attaches if one is running; works when paused)')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const ctx = await connect(cmd);
      await scheduleCall(id, ctx.options.tenant, () => ctx.client.schedules.trigger(id));
      print(`triggered the schedule of ${id}`);
    });

  schedules
    .command('backfill <connector>')
    .description('Make the starts the schedule would have made between two times (e.g. after an outage)')
    .requiredOption('--from <time>', 'start, ISO 8601 (e.g. 2026-03-01T00:00:00Z)')
    .requiredOption('--to <time>', 'end, ISO 8601')
    .action(async (id: string, opts: { from: string; to: string }, cmd: Command) => {
      const from = isoTime('--from', opts.from);
      const to = isoTime('--to', opts.to);
      if (from >= to) throw usageError('--from must be before --to');
      const ctx = await connect(cmd);
      await scheduleCall(id, ctx.options.tenant, () => ctx.client.schedules.backfill(id, from, to));
      print(`backfilling the schedule of ${id} from ${from.toISOString()} to ${to.toISOString()}`);
    });

  schedules
    .command('delete <connector>')
    .description("Delete a connector's schedule (the connector stays)")
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const ctx = await connect(cmd);
      await scheduleCall(id, ctx.options.tenant, () => ctx.client.schedules.delete(id));
      print(`deleted schedule of ${id}`);
    });

  schedules
    .command('list')
    .description("The tenant's schedules: spec, state, next run, note")
    .option('--json', 'print JSON for scripts')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const ctx = await connect(cmd);
      const all = await ctx.client.schedules.list();
      if (opts.json) printJson(all);
      else if (all.length === 0) print(`no schedules in tenant '${ctx.options.tenant}'`);
      else print(schedulesTable(all));
    });

  schedules
    .command('describe <connector>')
    .description("A schedule's spec, state, next and recent runs")
    .option('--json', 'print JSON for scripts')
    .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
      const ctx = await connect(cmd);
      const schedule = await scheduleCall(id, ctx.options.tenant, () => ctx.client.schedules.describe(id));
      if (opts.json) printJson(schedule);
      else print(describeSchedule(schedule));
    });
}

/**
 * A schedule operation with its errors said for this CLI: which connector's schedule is missing,
 * and the SDK's spec errors (a cron field out of range) as bad input.
 */
async function scheduleCall<T>(id: string, tenant: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    const { ScheduleNotFoundError } = await import('@temporalio/client');
    if (error instanceof ScheduleNotFoundError) {
      throw notFound(`no schedule for connector '${id}' in tenant '${tenant}'`);
    }
    if (error instanceof TypeError || error instanceof RangeError) {
      throw usageError(`invalid schedule spec: ${error.message}`);
    }
    throw error;
  }
}

/** The spec flags, checked here so a bad value is exit code 2 with the flag named. */
async function specOf(opts: SpecFlags): Promise<ScheduleSpecInput> {
  const { msToNumber } = await import('@temporalio/common/lib/time.js');
  const duration = (flag: string, value: string): string => {
    try {
      if (msToNumber(value as never) <= 0) throw new Error('not positive');
    } catch {
      throw usageError(`${flag} '${value}': not a duration (e.g. 90s, 15m, 1h, '2 days')`);
    }
    return value;
  };
  if (!opts.every && !opts.cron?.length && !opts.calendar?.length) {
    throw usageError('a schedule needs --every, --cron or --calendar');
  }
  const spec: ScheduleSpecInput = {};
  if (opts.every) spec.every = duration('--every', opts.every);
  if (opts.jitter) spec.jitter = duration('--jitter', opts.jitter);
  if (opts.cron?.length) {
    for (const cron of opts.cron) {
      const fields = cron.trim().split(/\s+/).length;
      if (!cron.trim().startsWith('@') && (fields < 5 || fields > 7)) {
        throw usageError(`--cron '${cron}': expected 5 fields (minute hour day-of-month month day-of-week)`);
      }
    }
    spec.cron = opts.cron;
  }
  if (opts.calendar?.length) spec.calendars = opts.calendar.flatMap(calendarOf);
  if (opts.timezone) {
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: opts.timezone });
    } catch {
      throw usageError(`--timezone '${opts.timezone}': not an IANA time zone (e.g. Europe/Berlin)`);
    }
    spec.timezone = opts.timezone;
  }
  return spec;
}

function calendarOf(json: string): CalendarSpec[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (error) {
    throw usageError(`--calendar: not valid JSON: ${(error as Error).message}`);
  }
  const list = Array.isArray(parsed) ? parsed : [parsed];
  if (!list.every((c) => typeof c === 'object' && c !== null && !Array.isArray(c))) {
    throw usageError('--calendar: expected a JSON object such as {"hour":3} or an array of them');
  }
  return list as CalendarSpec[];
}

function isoTime(flag: string, value: string): Date {
  const date = new Date(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(date.getTime())) {
    throw usageError(`${flag} '${value}': not an ISO 8601 time (e.g. 2026-03-01T00:00:00Z)`);
  }
  return date;
}
