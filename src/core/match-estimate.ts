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

/**
 * Match estimates added over calls: the records they cover and, at each bound of each call's
 * range, records × percent, so that the phase's (or run's) range is each sum over `records`.
 */
export interface EstimatedMatches {
  records: number;
  lowSum: number;
  highSum: number;
}

export function addEstimate(into: EstimatedMatches | undefined, more: EstimatedMatches): EstimatedMatches {
  return {
    records: (into?.records ?? 0) + more.records,
    lowSum: (into?.lowSum ?? 0) + more.lowSum,
    highSum: (into?.highSum ?? 0) + more.highSum,
  };
}

/** A summed estimate as a range over its records. */
export function weightedEstimate(sum: EstimatedMatches): RunMatchEstimate | null {
  if (sum.records <= 0) return null;
  const percent = (total: number) => Math.round((total / sum.records) * 10) / 10;
  return { records: sum.records, lowPercent: percent(sum.lowSum), highPercent: percent(sum.highSum) };
}
