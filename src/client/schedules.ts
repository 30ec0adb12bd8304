import {
  ScheduleNotFoundError,
  ScheduleOverlapPolicy,
  type CalendarSpec,
  type Client,
  type ScheduleDescription,
  type ScheduleOptions,
} from '@temporalio/client';
import type { TriggerInput, triggeredRefresh } from '../workflows/operations';
import { connectorOfId, searchAttributes } from '../temporal/names';

/**
 * Periodic refreshes on Temporal Schedules, one schedule per connector. A schedule starts a
 * short `triggeredRefresh` workflow, which starts the connector's refresh or, when one is running,
 * attaches to it: scheduled, programmatic and change-triggered starts never overlap.
 */

export interface ScheduleSpecInput {
  /** Every N: `'1h'`, `'15 minutes'`, or milliseconds. */
  every?: string | number;
  /** Cron expressions, e.g. `'0 3 * * *'` (03:00 every day). */
  cron?: string[];
  /** Calendar specs, e.g. `{ hour: 3, dayOfWeek: 'MONDAY' }`. */
  calendars?: CalendarSpec[];
  /** IANA time zone for cron and calendar specs, e.g. `'Europe/Berlin'` (default UTC). */
  timezone?: string;
  /** Random delay added to each start, spreading schedules that share a minute. */
  jitter?: string | number;
}

export interface ConnectorSchedule {
  connectorId: string;
  scheduleId: string;
  paused: boolean;
  note: string | undefined;
  spec: ScheduleDescription['spec'];
  nextRuns: Date[];
  recentRuns: Date[];
}

/** A tenant's schedule of a connector (ids are unique per tenant, so the id names both). */
export function scheduleIdOf(tenant: string, connectorId: string): string {
  return `deltasync-schedule-${connectorId}@${tenant}`;
}

export class SchedulesClient {
  constructor(
    private readonly temporal: Client,
    private readonly taskQueue: string,
    private readonly tenant: string,
    /** Throws unless the tenant has this connector (asked of a worker, which checks the tenant). */
    private readonly ensureConnector: (connectorId: string) => Promise<unknown>,
  ) {}

  /** Refresh `connectorId` on this spec. Only a connector of this tenant can have a schedule. */
  async create(
    connectorId: string,
    spec: ScheduleSpecInput,
    options: { paused?: boolean; note?: string } = {},
  ): Promise<ConnectorSchedule> {
    await this.ensureConnector(connectorId);
    await this.temporal.schedule.create(this.options(connectorId, spec, options));
    return this.describe(connectorId);
  }

  /** Replace the spec (and keep the schedule's state). */
  async update(connectorId: string, spec: ScheduleSpecInput): Promise<ConnectorSchedule> {
    await this.handle(connectorId).update((previous) => ({ ...previous, spec: toSpec(spec) }));
    return this.describe(connectorId);
  }

  async delete(connectorId: string): Promise<void> {
    await this.handle(connectorId).delete();
  }

  async pause(connectorId: string, note = 'paused from deltasync'): Promise<void> {
    await this.handle(connectorId).pause(note);
  }

  async unpause(connectorId: string, note = 'unpaused from deltasync'): Promise<void> {
    await this.handle(connectorId).unpause(note);
  }

  /** Start a refresh now, as the schedule would (attaching if one runs). */
  async trigger(connectorId: string): Promise<void> {
    await this.handle(connectorId).trigger(ScheduleOverlapPolicy.ALLOW_ALL);
  }

  /** Run the starts the schedule would have made in this time range (e.g. after an outage). */
  async backfill(connectorId: string, start: Date, end: Date): Promise<void> {
    await this.handle(connectorId).backfill({ start, end, overlap: ScheduleOverlapPolicy.ALLOW_ALL });
  }

  async describe(connectorId: string): Promise<ConnectorSchedule> {
    const description = await this.handle(connectorId).describe();
    return {
      connectorId,
      scheduleId: description.scheduleId,
      paused: description.state.paused,
      note: description.state.note,
      spec: description.spec,
      nextRuns: description.info.nextActionTimes,
      recentRuns: description.info.recentActions.map((action) => action.takenAt),
    };
  }

  /** This tenant's schedules (Temporal lists them a page at a time). */
  async list(): Promise<ConnectorSchedule[]> {
    const schedules: ConnectorSchedule[] = [];
    for await (const summary of this.temporal.schedule.list()) {
      const named = connectorOfId('deltasync-schedule', summary.scheduleId);
      if (named?.tenant !== this.tenant) continue;
      const schedule = await this.describe(named.connectorId).catch(() => undefined);
      if (schedule) schedules.push(schedule);
    }
    return schedules;
  }

  /** The schedule of one of this tenant's connectors (another tenant's does not exist here). */
  private handle(connectorId: string) {
    const handle = this.temporal.schedule.getHandle(scheduleIdOf(this.tenant, connectorId));
    const tenant = this.tenant;
    const checked = async () => {
      const description = await handle.describe();
      if (description.typedSearchAttributes.get(searchAttributes.tenant) !== tenant) {
        throw new ScheduleNotFoundError(
          `no schedule for connector '${connectorId}' in tenant '${tenant}'`,
          handle.scheduleId,
        );
      }
      return description;
    };
    return {
      describe: checked,
      update: async (fn: Parameters<typeof handle.update>[0]) => (await checked(), handle.update(fn)),
      delete: async () => (await checked(), handle.delete()),
      pause: async (note: string) => (await checked(), handle.pause(note)),
      unpause: async (note: string) => (await checked(), handle.unpause(note)),
      trigger: async (overlap: ScheduleOverlapPolicy) => (await checked(), handle.trigger(overlap)),
      backfill: async (options: Parameters<typeof handle.backfill>[0]) => (
        await checked(),
        handle.backfill(options)
      ),
    };
  }

  private options(
    connectorId: string,
    spec: ScheduleSpecInput,
    state: { paused?: boolean; note?: string },
  ): ScheduleOptions {
    const input: TriggerInput = { connectorId, tenant: this.tenant, trigger: 'schedule' };
    return {
      scheduleId: scheduleIdOf(this.tenant, connectorId),
      spec: toSpec(spec),
      action: {
        type: 'startWorkflow',
        workflowType: 'triggeredRefresh' satisfies (typeof triggeredRefresh)['name'],
        args: [input],
        taskQueue: this.taskQueue,
        workflowId: `deltasync-scheduled-${connectorId}@${this.tenant}`,
        typedSearchAttributes: [
          { key: searchAttributes.connectorId, value: connectorId },
          { key: searchAttributes.tenant, value: this.tenant },
        ],
      },
      // The triggered workflow only starts or attaches, so it is short; skipping a start while the
      // previous trigger is still finishing loses nothing.
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 hour' },
      state: { paused: state.paused ?? false, note: state.note },
      typedSearchAttributes: [
        { key: searchAttributes.connectorId, value: connectorId },
        { key: searchAttributes.tenant, value: this.tenant },
      ],
    };
  }
}

function toSpec(input: ScheduleSpecInput): ScheduleOptions['spec'] {
  if (!input.every && !input.cron?.length && !input.calendars?.length) {
    throw new Error('a schedule needs `every`, `cron` or `calendars`');
  }
  return {
    intervals: input.every ? [{ every: input.every as never }] : [],
    cronExpressions: input.cron ?? [],
    calendars: input.calendars ?? [],
    timezone: input.timezone,
    jitter: input.jitter as never,
  };
}
