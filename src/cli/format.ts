import type { ConnectorSchedule } from '../client/schedules';
import type { LiveProgress, RunChange, RunSummary } from '../client';
import type { RunSamples } from '../activities/admin';
import type { ListedConnector } from '../core/connector-store';
import { weightedEstimate, type RunMatchEstimate } from '../core/match-estimate';

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
    (_, i) =>
      rows.some((r) => r[i] !== '-') &&
      rows.every((r) => /^(-|[\d,.]+[kM]?( ms| s)?|\d+m\d\ds|\d+h\d\dm)$/.test(r[i] ?? '')),
  );
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** A count in at most five characters, for tables that must fit 80 columns: 9,999 · 123k · 1.2M. */
export function compactCount(n: number | null | undefined): string {
  const v = n ?? 0;
  if (v < 10_000) return v.toLocaleString('en-US');
  if (v < 999_500) return `${Math.round(v / 1000)}k`;
  if (v < 9_950_000) return `${(v / 1_000_000).toFixed(1)}M`;
  return `${Math.round(v / 1_000_000)}M`;
}

/** A duration in at most seven characters: 850 ms · 12.3 s · 12m05s · 3h02m. */
export function compactDuration(ms: number | null): string {
  if (ms === null) return '-';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return clockTime(Math.round(ms / 1000));
}

/** Whole seconds as a clock reads them, shortest first: 8s · 1m15s · 1h06m. */
export function clockTime(seconds: number): string {
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, '0')}s`;
  return `${Math.floor(seconds / 3600)}h${String(Math.floor((seconds % 3600) / 60)).padStart(2, '0')}m`;
}

/** What a run changed: `+additions ~updates -deletions`. */
const changesOf = (s: RunSummary) =>
  `+${compactCount(s.additions)} ~${compactCount(s.updates)} -${compactCount(s.deletions)}`;

/** Runs under labels of the caller's choosing (the demo's "1 first", "2 changes"). */
export function runTable(runs: { label: string; summary: RunSummary }[]): string {
  return table(
    ['run', 'status', 'strategy', 'changes', 'sent', 'calls', 'time'],
    runs.map(({ label, summary: s }) => [
      label,
      s.status,
      s.strategy ?? '-',
      changesOf(s),
      compactCount(s.recordsSent),
      compactCount(s.apiCalls),
      compactDuration(s.durationMs),
    ]),
  );
}

/**
 * A connector's runs, as `deltasync runs` and `refresh --wait` show them, within 80 columns:
 * changes planned, records sent, rejected and quarantined, calls and time (`--details` and
 * `--json` carry the rest).
 */
export function runsTable(runs: RunSummary[]): string {
  return table(
    ['run', 'status', 'strategy', 'changes', 'sent', 'rej', 'quar', 'calls', 'time'],
    runs.map((s) => [
      String(s.runId),
      s.status,
      s.strategy ?? '-',
      changesOf(s),
      compactCount(s.recordsSent),
      compactCount(s.rejected),
      compactCount(s.quarantined),
      compactCount(s.apiCalls),
      compactDuration(s.durationMs),
    ]),
  );
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
        (s.reportedReceived
          ? `; the destination received ${formatCount(s.reportedReceived)}, ${formatCount(s.reportedInvalid)} invalid ` +
            `(${((1 - (s.reportedInvalid ?? 0) / s.reportedReceived) * 100).toFixed(1)}% matched)`
          : '') +
        estimateText(
          s.estimated && weightedEstimate(s.estimated),
          (range) => `; the destination estimates ${range} matched`,
        ) +
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

/** One run in full, for `runs --details`: every count, the guard, the last error, bad-row samples. */
export function describeRun(run: RunSummary & { badRowSamples?: RunSamples['badRows'] }): string {
  const lines = [
    `run ${run.runId}: ${run.status}${run.strategy ? `, ${run.strategy}` : ''}, ${compactDuration(run.durationMs)}`,
    `  changes   ${formatCount(run.additions)} additions, ${formatCount(run.updates)} updates, ${formatCount(run.deletions)} deletions` +
      (run.deletionsHeld ? ` (${formatCount(run.deletionsHeld)} deletions held)` : ''),
    `  sent      ${formatCount(run.recordsSent)} records in ${formatCount(run.apiCalls)} calls; ` +
      `${formatCount(run.rejected)} rejected, ${formatCount(run.quarantined)} quarantined`,
  ];
  if (run.matchRate) {
    const { received, invalid, rate } = run.matchRate;
    lines.push(
      `  matched   ${(rate * 100).toFixed(1)}%: the destination received ${formatCount(received)}, ${formatCount(invalid)} invalid`,
    );
  }
  lines.push(...estimateLines(run.matchEstimate));
  if (run.badRows > 0) {
    lines.push(`  bad rows  ${formatCount(run.badRows)} (not sent)`);
    const samples = run.badRowSamples;
    if (samples) {
      const show = (label: string, values: unknown[]) => {
        if (values.length > 0) lines.push(`    ${label}: ${values.map((v) => JSON.stringify(v)).join(', ')}`);
      };
      show('no key', samples.nullOrEmptyKey);
      show('key too long', samples.oversizedKey);
      show('duplicate key', samples.duplicateKey);
    }
  }
  if (run.error) lines.push(`  error     ${run.error}`);
  return lines.join('\n');
}

/** A match estimate ("51–60% of 2,500 records") put in words by `say`; empty without one. */
function estimateText(estimate: RunMatchEstimate | null | undefined, say: (range: string) => string): string {
  if (!estimate) return '';
  const { lowPercent, highPercent, records } = estimate;
  const range = lowPercent === highPercent ? `${lowPercent}%` : `${lowPercent}–${highPercent}%`;
  return say(`${range} of ${formatCount(records)} records`);
}

function estimateLines(estimate: RunMatchEstimate | null): string[] {
  return estimate
    ? [estimateText(estimate, (range) => `  matched   ${range} (the destination's estimate)`)]
    : [];
}
