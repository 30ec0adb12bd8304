/**
 * A destination's estimate of the share of records it matched to its users, summed over calls
 * (records, and records × percent at each bound of each call's range), read back as one range.
 * Imports nothing: the CLI formats it without loading the engine.
 */

export interface RunMatchEstimate {
  records: number;
  lowPercent: number;
  highPercent: number;
}

/** A summed estimate (see EstimatedMatches in core/sender.ts) as a range over its records. */
export function weightedEstimate(sum: {
  records: number;
  lowSum: number;
  highSum: number;
}): RunMatchEstimate | null {
  if (sum.records <= 0) return null;
  const percent = (total: number) => Math.round((total / sum.records) * 10) / 10;
  return { records: sum.records, lowPercent: percent(sum.lowSum), highPercent: percent(sum.highSum) };
}
