import type { ConnectorSchedule } from '../client/schedules';
import type { LiveProgress, RunChange, RunSummary } from '../client';
import type { ListedConnector } from '../core/connector-store';

/** Plain-text tables and numbers for people; scripts use --json instead. */

export const formatCount = (n: number | null | undefined) => (n ?? 0).toLocaleString('en-US');

export function formatDuration(ms: number | null): string {
  if (ms === null) return '-';
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** Columns of numbers (and durations) are right-aligned, everything else left-aligned. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const numeric = headers.map(
    (_, i) => rows.some((r) => r[i] !== '-') && rows.every((r) => /^(-|[\d,.]+( ms| s)?)$/.test(r[i] ?? '')),
  );
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** Runs under labels of the caller's choosing (the demo's "1 first", "2 changes"). */
export function runTable(runs: { label: string; summary: RunSummary }[]): string {
  return table(
    ['run', 'status', 'strategy', 'additions', 'deletions', 'updates', 'API calls', 'duration'],
    runs.map(({ label, summary: s }) => [
      label,
      s.status,
      s.strategy ?? '-',
      formatCount(s.additions),
      formatCount(s.deletions),
      formatCount(s.updates),
      formatCount(s.apiCalls),
      formatDuration(s.durationMs),
    ]),
  );
}

/** A connector's runs, as `deltasync runs` and `refresh --wait` show them. */
export function runsTable(runs: RunSummary[]): string {
  const withTrigger = runs.some((r) => triggerOf(r) !== undefined);
  const headers = ['run', 'status', 'strategy', 'additions', 'deletions', 'updates', 'rejected'];
  headers.push('quarantined', 'API calls', 'duration', 'held deletions', ...(withTrigger ? ['trigger'] : []));
  return table(
    headers,
    runs.map((s) => [
      String(s.runId),
      s.status,
      s.strategy ?? '-',
      formatCount(s.additions),
      formatCount(s.deletions),
      formatCount(s.updates),
      formatCount(s.rejected),
      formatCount(s.quarantined),
      formatCount(s.apiCalls),
      formatDuration(s.durationMs),
      formatCount(s.deletionsHeld),
      ...(withTrigger ? [triggerOf(s) ?? '-'] : []),
    ]),
  );
}

/** What started a run (`manual`, `cli`, `schedule`, `change`), when the summary carries it. */
function triggerOf(run: RunSummary): string | undefined {
  const value = (run as RunSummary & { trigger?: unknown }).trigger;
  return typeof value === 'string' ? value : undefined;
}

export function connectorsTable(connectors: ListedConnector[]): string {
  return table(
    ['id', 'destination', 'dataset', 'key', 'strategy', 'last success'],
    connectors.map((c) => [
      c.id,
      c.destination.type,
      c.dataset.table ?? 'sql',
      c.dataset.key,
      c.policy.strategy,
      c.lastSucceededAt === null ? 'never' : new Date(c.lastSucceededAt).toISOString(),
    ]),
  );
}

export function schedulesTable(schedules: ConnectorSchedule[]): string {
  return table(
    ['connector', 'spec', 'state', 'next run', 'note'],
    schedules.map((s) => [
      s.connectorId,
      describeSpec(s.spec),
      s.paused ? 'paused' : 'active',
      s.paused ? '-' : (s.nextRuns[0]?.toISOString() ?? '-'),
      s.note ?? '',
    ]),
  );
}

export function describeSchedule(s: ConnectorSchedule): string {
  return [
    `connector:   ${s.connectorId}`,
    `schedule id: ${s.scheduleId}`,
    `spec:        ${describeSpec(s.spec)}`,
    `state:       ${s.paused ? 'paused' : 'active'}${s.note ? ` (${s.note})` : ''}`,
    `next runs:   ${
      s.nextRuns
        .slice(0, 3)
        .map((d) => d.toISOString())
        .join(', ') || '-'
    }`,
    `recent runs: ${
      s.recentRuns
        .slice(-3)
        .map((d) => d.toISOString())
        .join(', ') || '-'
    }`,
  ].join('\n');
}

function describeSpec(spec: ConnectorSchedule['spec']): string {
  const parts: string[] = [];
  for (const interval of spec.intervals ?? []) parts.push(`every ${formatMs(Number(interval.every))}`);
  for (const calendar of spec.calendars ?? []) parts.push(`at ${describeCalendar(calendar)}`);
  const times = parts.join(', ') || '-';
  const extras = [
    ...(spec.timezone ? [spec.timezone] : []),
    ...(spec.jitter ? [`jitter ${formatMs(Number(spec.jitter))}`] : []),
  ];
  return extras.length ? `${times} (${extras.join(', ')})` : times;
}

type Calendar = NonNullable<ConnectorSchedule['spec']['calendars']>[number];
type Range = { start: number | string; end?: number | string; step?: number };

/** A calendar spec as cron-like fields (`minute hour day-of-month month day-of-week`). */
function describeCalendar(calendar: Calendar): string {
  const field = (ranges: readonly Range[] | undefined, first: number | string, last: number | string) => {
    if (!ranges?.length) return '*';
    return ranges
      .map((r) => {
        const end = r.end ?? r.start;
        const step = r.step && r.step > 1 ? `/${r.step}` : '';
        if (r.start === first && end === last) return `*${step}`;
        return `${short(r.start)}${end === r.start ? '' : `-${short(end)}`}${step}`;
      })
      .join(',');
  };
  const c = calendar as unknown as Record<string, readonly Range[] | undefined>;
  const seconds = field(c.second, 0, 59);
  return [
    ...(seconds === '0' ? [] : [`second ${seconds}`]),
    field(c.minute, 0, 59),
    field(c.hour, 0, 23),
    field(c.dayOfMonth, 1, 31),
    field(c.month, 'JANUARY', 'DECEMBER'),
    field(c.dayOfWeek, 'SUNDAY', 'SATURDAY'),
  ].join(' ');
}

const short = (v: number | string) => (typeof v === 'string' ? v.slice(0, 3).toLowerCase() : String(v));

function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return '?';
  const units: [number, string][] = [
    [86_400_000, 'd'],
    [3_600_000, 'h'],
    [60_000, 'm'],
    [1000, 's'],
  ];
  for (const [size, unit] of units) if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}

/** `deltasync progress` for people. */
export function describeProgress(connectorId: string, p: LiveProgress): string {
  const lines = [
    `${connectorId}: ${p.phase} (${p.status.toLowerCase()}${p.runId ? `, run ${p.runId}` : ''})`,
  ];
  if (p.plan) {
    lines.push(
      `plan:    ${p.plan.strategy ?? 'nothing to send'}: ${formatCount(p.plan.additions)} additions, ` +
        `${formatCount(p.plan.updates)} updates, ${formatCount(p.plan.deletions)} deletions ` +
        `(dataset ${formatCount(p.plan.datasetSize)}, list ${formatCount(p.plan.remoteSize)})` +
        (p.plan.quarantined ? `; ${formatCount(p.plan.quarantined)} quarantined, not sent` : ''),
    );
    if (p.plan.guard?.triggered) {
      lines.push(
        `guard:   ${p.plan.guard.reason}` +
          (p.phase === 'awaiting approval'
            ? `; 'deltasync approve ${connectorId}' or 'deltasync reject ${connectorId}' ` +
              `(no decision within ${p.plan.guard.approvalTimeoutSeconds} s rejects)`
            : ''),
      );
    }
  }
  if (p.paused) {
    lines.push(`paused:  ${p.paused.reason}; resumes by itself at ${p.paused.until}`);
  }
  if (p.retrying) {
    lines.push(
      `retrying: ${p.retrying.activity}, attempt ${p.retrying.attempt}; last error: ${p.retrying.lastFailure}`,
    );
  }
  const phases = [...p.completedPhases, ...(p.sending ? [p.sending] : [])];
  for (const s of phases) {
    lines.push(
      `${s.phase.padEnd(8)} ${formatCount(s.recordsDone)} records in ${formatCount(s.batches)} batches, ` +
        `${formatCount(s.rejected)} rejected, ${formatCount(s.rateLimitWaits)} rate-limit waits` +
        (s === p.sending ? ' (sending)' : ''),
    );
  }
  return lines.join('\n');
}

/** The change log: one line per key and outcome; reasons last, where long text belongs. */
export function changesTable(changes: RunChange[]): string {
  return table(
    ['RUN', 'WHEN', 'OUTCOME', 'KEY', 'REASON'],
    changes.map((c) => [
      String(c.runId),
      new Date(c.at).toISOString().replace('T', ' ').slice(0, 19),
      c.outcome,
      c.key,
      c.reason ?? '',
    ]),
  );
}

/** RFC 4180: fields with a comma, quote or line break are quoted, quotes doubled. */
export function changesCsv(changes: RunChange[]): string {
  const field = (value: string) => (/[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value);
  const lines = changes.map((c) =>
    [String(c.runId), new Date(c.at).toISOString(), c.outcome, c.key, c.reason ?? ''].map(field).join(','),
  );
  return ['run,at,outcome,key,reason', ...lines].join('\n');
}
