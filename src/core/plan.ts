import type { Capabilities } from '../connectors/types';
import type { PendingCounts } from './deltalog';

/**
 * Strategy planning ([0061]-[0081]): is a refresh needed, and which way of sending is cheapest
 * among those the destination's API allows? Pure: counts in, decision out.
 */

export const STRATEGIES = ['diff', 'full', 'truncate'] as const;
export type Strategy = (typeof STRATEGIES)[number];
export type StrategyChoice = Strategy | 'auto';

export const STRATEGY_LABELS: Record<Strategy, string> = {
  diff: 'diff',
  full: 'full push + deletes',
  truncate: 'truncate + reload',
};

export interface PlanInput {
  capabilities: Capabilities;
  recordsPerCall: number;
  /** Every pending change (what a diff would send). */
  pending: PendingCounts;
  /** Pending changes inside the time horizon (what decides whether a refresh is needed). */
  pendingInHorizon: PendingCounts;
  /** Keys in the dataset (what a full push or a reload would send). */
  datasetSize: number;
  /** Forced by the connector or the run; `auto` picks the cheapest allowed. */
  strategy: StrategyChoice;
}

export interface Plan {
  needed: boolean;
  strategy: Strategy | null;
  reason: string;
  /** Predicted API calls per strategy; null where the destination does not allow it. */
  estimatedCalls: Record<Strategy, number | null>;
}

export class PlanningError extends Error {
  override name = 'PlanningError';
}

const calls = (records: number, perCall: number) => Math.ceil(records / perCall);

/** Predicted calls for each strategy, or null when the destination cannot carry it out. */
export function estimateCalls(input: PlanInput): Record<Strategy, number | null> {
  const { capabilities: can, recordsPerCall: b, pending, datasetSize } = input;
  const upserts = pending.additions + pending.updates;
  const deletesOk = pending.deletions === 0 || can.remove;
  return {
    diff: can.add && deletesOk ? calls(upserts, b) + calls(pending.deletions, b) : null,
    full: can.add && deletesOk ? calls(datasetSize, b) + calls(pending.deletions, b) : null,
    truncate: can.add && can.truncate ? 1 + calls(datasetSize, b) : null,
  };
}

export function planRefresh(input: PlanInput): Plan {
  const estimatedCalls = estimateCalls(input);
  const inHorizon = input.pendingInHorizon;
  const changes = inHorizon.additions + inHorizon.updates + inHorizon.deletions;

  if (input.strategy !== 'auto') {
    const forced = input.strategy;
    if (estimatedCalls[forced] === null) {
      throw new PlanningError(
        `strategy '${forced}' (${STRATEGY_LABELS[forced]}) is not possible with this destination: ${missingCapability(forced, input)}`,
      );
    }
    return { needed: true, strategy: forced, reason: `forced: ${STRATEGY_LABELS[forced]}`, estimatedCalls };
  }

  if (changes === 0) {
    return { needed: false, strategy: null, reason: 'no pending changes inside the horizon', estimatedCalls };
  }

  const allowed = STRATEGIES.filter((s) => estimatedCalls[s] !== null);
  if (allowed.length === 0) {
    if (!input.capabilities.add) {
      throw new PlanningError('no strategy is possible with this destination: it cannot add members');
    }
    throw new PlanningError(
      `cannot deliver ${input.pending.deletions} pending deletions: the destination supports neither remove nor truncate`,
    );
  }
  // Ties go to the earlier strategy in STRATEGIES: the diff disturbs the remote list least.
  const best = allowed.reduce((a, b) => (estimatedCalls[b]! < estimatedCalls[a]! ? b : a));
  const summary = allowed.map((s) => `${STRATEGY_LABELS[s]} ${estimatedCalls[s]}`).join(', ');
  return {
    needed: true,
    strategy: best,
    reason: `cheapest in API calls (${summary})`,
    estimatedCalls,
  };
}

function missingCapability(strategy: Strategy, input: PlanInput): string {
  const can = input.capabilities;
  if (!can.add) return 'it cannot add members';
  if (strategy === 'truncate') return 'it cannot truncate the list';
  return `it cannot remove members and ${input.pending.deletions} deletions are pending`;
}
