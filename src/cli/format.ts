import type { RunSummary } from '../activities';

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
    (_, i) => rows.length > 0 && rows.every((r) => /^(-|[\d,.]+( ms| s)?)$/.test(r[i] ?? '')),
  );
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

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
