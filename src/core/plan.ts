import type { Capabilities } from './destination';
import type { PendingCounts } from './deltalog';

/**
 * Strategy planning ([0061]-[0081]): is a refresh needed, and which way of sending is cheapest
 * among those the destination's API allows? Pure: counts in, decision out.
 */

export const STRATEGIES = ['diff', 'full', 'truncate', 'newList', 'reconcile'] as const;
export type Strategy = (typeof STRATEGIES)[number];
export type StrategyChoice = Strategy | 'auto';

/** `auto` chooses among these; a reconcile (reading the whole remote list) is always on request. */
const AUTO_CANDIDATES: Strategy[] = ['diff', 'full', 'truncate', 'newList'];

export const STRATEGY_LABELS: Record<Strategy, string> = {
  diff: 'diff',
  full: 'full push + deletes',
  truncate: 'truncate + reload',
  newList: 'new list + swap',
  reconcile: 'reconcile',
};

export interface PlanInput {
  capabilities: Capabilities;
  recordsPerCall: number;
  bytesPerCall?: number;
  /** The destination truncates only lists holding fewer members than this (Limits.truncateMaxMembers). */
  truncateMaxMembers?: number;
  /** Every pending change (what a diff would send). */
  pending: PendingCounts;
  /** Pending changes inside the time horizon (what decides whether a refresh is needed). */
  pendingInHorizon: PendingCounts;
  /** Keys in the dataset (what a full push, a reload or a new list sends). */
  datasetSize: number;
  /** Keys the deltalog believes the remote list holds (what a reconcile reads back). */
  remoteSize: number;
  /** Average size of one record (key + attributes) and of one key, as sent, in bytes. */
  recordBytes: number;
  keyBytes: number;
  /** Keys per page when reading the remote list. */
  listPageSize: number;
  /** Lists a new list + swap would retire: the one an earlier swap made live, one left half-built. */
  listsToRetire?: number;
  /** Forced by the connector or the run; `auto` picks the cheapest allowed. */
  strategy: StrategyChoice;
}

export interface Cost {
  calls: number;
  records: number;
  bytes: number;
}

export interface Plan {
  needed: boolean;
  strategy: Strategy | null;
  reason: string;
  /** Predicted cost per strategy; null where the destination does not allow it. */
  estimates: Record<Strategy, Cost | null>;
}

export class PlanningError extends Error {
  override name = 'PlanningError';
}

/** Records per call once the byte limit is taken into account. */
function perCall(input: PlanInput, bytesPerRecord: number): number {
  if (!input.bytesPerCall || bytesPerRecord <= 0) return input.recordsPerCall;
  return Math.max(1, Math.min(input.recordsPerCall, Math.floor(input.bytesPerCall / bytesPerRecord)));
}

/** Sending `records` records of `size` bytes each: calls, records and bytes. */
function sending(input: PlanInput, records: number, size: number): Cost {
  return { calls: Math.ceil(records / perCall(input, size)), records, bytes: records * size };
}

function plus(...costs: Cost[]): Cost {
  return costs.reduce((a, b) => ({
    calls: a.calls + b.calls,
    records: a.records + b.records,
    bytes: a.bytes + b.bytes,
  }));
}

const fixedCalls = (calls: number): Cost => ({ calls, records: 0, bytes: 0 });

export function estimateCosts(input: PlanInput): Record<Strategy, Cost | null> {
  const { capabilities: can, pending, datasetSize } = input;
  // A destination that keeps no attributes gets nothing for an attribute change.
  const upserts = pending.additions + (can.updateAttributes ? pending.updates : 0);
  const canUpsert = upserts === 0 || can.add;
  const canDelete = pending.deletions === 0 || can.remove;
  const deletions = sending(input, pending.deletions, input.keyBytes);
  const reload = sending(input, datasetSize, input.recordBytes);
  const diff = canUpsert && canDelete ? plus(sending(input, upserts, input.recordBytes), deletions) : null;
  return {
    diff,
    full: can.add && canDelete ? plus(reload, deletions) : null,
    truncate:
      can.truncate && (datasetSize === 0 || can.add) && !tooLargeToTruncate(input)
        ? plus(fixedCalls(1), reload)
        : null,
    // create the list, fill it, swap, retire what an earlier swap or a failed run left (never
    // the configured list, so the first swap retires nothing)
    newList: can.createList ? plus(fixedCalls(2 + (input.listsToRetire ?? 0)), reload) : null,
    reconcile:
      can.listMembers && diff
        ? plus(fixedCalls(Math.ceil(input.remoteSize / input.listPageSize) || 1), diff)
        : null,
  };
}

/** The remote list is at or over the size the destination's truncate accepts. */
function tooLargeToTruncate(input: PlanInput): boolean {
  return input.truncateMaxMembers !== undefined && input.remoteSize >= input.truncateMaxMembers;
}

function truncateLimitNote(input: PlanInput): string {
  const limit = input.truncateMaxMembers!.toLocaleString('en-US');
  return `the destination empties only lists of fewer than ${limit} members and this one holds ${input.remoteSize.toLocaleString('en-US')}`;
}

/** Cheaper first: fewer calls, then fewer records, then fewer bytes, then the list's order. */
function cheaper(a: Cost, b: Cost): boolean {
  if (a.calls !== b.calls) return a.calls < b.calls;
  if (a.records !== b.records) return a.records < b.records;
  return a.bytes < b.bytes;
}

export function planRefresh(input: PlanInput): Plan {
  const estimates = estimateCosts(input);
  const inHorizon = input.pendingInHorizon;
  const changes = inHorizon.additions + inHorizon.updates + inHorizon.deletions;

  if (input.strategy !== 'auto') {
    const forced = input.strategy;
    if (estimates[forced] === null) {
      throw new PlanningError(
        `strategy '${forced}' (${STRATEGY_LABELS[forced]}) is not possible with this destination: ${missingCapability(forced, input)}`,
      );
    }
    return { needed: true, strategy: forced, reason: `forced: ${STRATEGY_LABELS[forced]}`, estimates };
  }

  if (changes === 0) {
    return { needed: false, strategy: null, reason: 'no pending changes inside the horizon', estimates };
  }

  const allowed = AUTO_CANDIDATES.filter((s) => estimates[s] !== null);
  if (allowed.length === 0) {
    throw new PlanningError(
      `no strategy can deliver the pending changes: ${missingCapability('diff', input)}`,
    );
  }
  const best = allowed.reduce((a, b) => (cheaper(estimates[b]!, estimates[a]!) ? b : a));
  const summary = allowed.map((s) => `${STRATEGY_LABELS[s]} ${estimates[s]!.calls}`).join(', ');
  // A strategy ruled out by a published limit is named, so nobody wonders why it was not taken.
  const ruledOut =
    input.capabilities.truncate && tooLargeToTruncate(input)
      ? `; ${STRATEGY_LABELS.truncate} ruled out: ${truncateLimitNote(input)}`
      : '';
  return { needed: true, strategy: best, reason: `cheapest in API calls (${summary})${ruledOut}`, estimates };
}

function missingCapability(strategy: Strategy, input: PlanInput): string {
  const can = input.capabilities;
  switch (strategy) {
    case 'truncate':
      if (!can.truncate) return 'it cannot truncate the list';
      return tooLargeToTruncate(input) ? truncateLimitNote(input) : 'it cannot add members';
    case 'newList':
      return 'it cannot create a replacement list';
    case 'reconcile':
      if (!can.listMembers) return 'it cannot list its members';
      break;
  }
  if (!can.add && input.pending.additions + input.pending.updates > 0) return 'it cannot add members';
  if (!can.add && strategy === 'full') return 'it cannot add members';
  return `it cannot remove members and ${input.pending.deletions} deletions are pending (it supports neither remove nor truncate)`;
}
