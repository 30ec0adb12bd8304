import type { GuardDecision, PlanSummary, RunSummary } from '../core/summaries';
import type { GuardCheck } from '../core/guard';
import type { StrategyChoice } from '../core/plan';
import type { SendPhase, SendTotals } from '../core/sender';

/**
 * The method, step by step: update the deltalog, plan, hold deletions at the mass-delete guard
 * if it asks, send by the planned strategy, commit, janitor. This is the one place that says in
 * which order the steps run. The refresh workflow runs it with its activities proxied through
 * Temporal; the engine's property test runs it with the same activities called directly, so what
 * it checks is this sequence, not a copy of it.
 *
 * It knows nothing of Temporal: everything Temporal-specific (timeouts, summaries, queries, the
 * approval updates, search attributes) stays in the workflow, behind `steps` and `hooks`.
 */

export interface RunRef {
  connectorId: string;
  tenant: string;
  runId: number;
}

/** A send phase, with what the plan expects of it (for the step's summary in the Web UI). */
export interface SendRequest {
  phase: SendPhase;
  records: number;
  batchSize: number;
}

/** The activities a refresh calls, as the sequence calls them. */
export interface RefreshSteps {
  beginRun(input: {
    connectorId: string;
    trigger: string;
    tenant?: string;
  }): Promise<{ runId: number; tenant: string; destinationType: string }>;
  updateDeltalog(ref: RunRef & { strategy?: StrategyChoice; askedAt?: number }): Promise<unknown>;
  planRefresh(ref: RunRef & { strategy?: StrategyChoice }): Promise<PlanSummary>;
  recordGuardDecision(
    ref: RunRef & { guard: GuardCheck; decision: GuardDecision; strategy?: string | null },
  ): Promise<unknown>;
  truncateRemote(ref: RunRef): Promise<unknown>;
  createList(ref: RunRef): Promise<unknown>;
  swapList(ref: RunRef): Promise<unknown>;
  snapshotRemote(ref: RunRef): Promise<unknown>;
  reconcileDeltalog(ref: RunRef): Promise<{ additions: number; updates: number; deletions: number }>;
  sendChanges(ref: RunRef, send: SendRequest): Promise<SendTotals>;
  finishRun(ref: RunRef & { status?: 'noop' }): Promise<RunSummary>;
  runJanitor(ref: { connectorId: string; tenant: string }): Promise<unknown>;
}

export type RefreshPhase =
  | 'starting'
  | 'updating deltalog'
  | 'planning'
  | 'truncating'
  | 'building new list'
  | 'swapping'
  | 'reconciling'
  | 'awaiting approval'
  | 'paused'
  | SendPhase
  | 'committing'
  | 'done'
  | 'failed';

/** What the sequence tells its runner as it goes, and the decisions it asks of it. */
export interface RefreshHooks {
  enter(phase: RefreshPhase): void;
  started(run: { runId: number; tenant: string; destinationType: string }): void;
  planned(plan: PlanSummary): void;
  /** The guard stopped the run: the decision, or undefined when none came in time. */
  awaitDecision(guard: NonNullable<PlanSummary['guard']>): Promise<GuardDecision | undefined>;
  strategyChosen(strategy: string): void;
  sent(totals: SendTotals): void;
  finished(result: RunSummary): void;
  /** The error that fails a run whose calls or records fell below the thresholds. */
  belowThreshold(result: RunSummary): Error;
  /** Anything failed: record it on the run (the sequence rethrows the error afterwards). */
  failed(ref: RunRef, error: unknown): Promise<void>;
}

export interface RefreshRequest {
  connectorId: string;
  strategy?: StrategyChoice;
  trigger?: string;
  tenant?: string;
  /** When the refresh was asked for (epoch ms; the workflow's start). */
  askedAt?: number;
}

export async function runRefresh(
  input: RefreshRequest,
  steps: RefreshSteps,
  hooks: RefreshHooks,
): Promise<RunSummary> {
  const run = await steps.beginRun({
    connectorId: input.connectorId,
    trigger: input.trigger ?? 'manual',
    ...(input.tenant ? { tenant: input.tenant } : {}),
  });
  hooks.started(run);
  const ref: RunRef = { connectorId: input.connectorId, tenant: run.tenant, runId: run.runId };

  try {
    hooks.enter('updating deltalog');
    await steps.updateDeltalog({
      ...ref,
      strategy: input.strategy,
      ...(input.askedAt === undefined ? {} : { askedAt: input.askedAt }),
    });

    hooks.enter('planning');
    const plan = await steps.planRefresh({ ...ref, strategy: input.strategy });
    hooks.planned(plan);
    if (!plan.needed || plan.strategy === null) return await finish('noop');
    let strategy = plan.strategy;
    let sendDeletions = true;
    if (plan.guard?.triggered) {
      hooks.enter('awaiting approval');
      const final = (await hooks.awaitDecision(plan.guard)) ?? { approved: false, by: 'timeout' };
      // Rejected: the deletions stay pending. What else can go out depends on the destination:
      // a diff without them where it can add in place; nothing where it can only replace the
      // whole list (a new list would drop the held keys). Runs recorded before this field: diff.
      const heldRuns = final.approved
        ? strategy
        : plan.withDeletionsHeld === undefined
          ? 'diff'
          : plan.withDeletionsHeld;
      await steps.recordGuardDecision({ ...ref, guard: plan.guard, decision: final, strategy: heldRuns });
      if (!final.approved) {
        sendDeletions = false;
        if (heldRuns === null) return await finish('noop');
        strategy = heldRuns;
      }
    }
    hooks.strategyChosen(strategy);

    const send = async (phase: SendPhase, records: number) => {
      if (records === 0 && phase !== 'full' && phase !== 'fill') return;
      hooks.enter(phase);
      hooks.sent(await steps.sendChanges(ref, { phase, records, batchSize: plan.batchSize }));
    };
    switch (strategy) {
      case 'truncate':
        hooks.enter('truncating');
        await steps.truncateRemote(ref);
        await send('upserts', plan.datasetSize);
        break;
      case 'full':
        await send('full', plan.datasetSize);
        await send('deletions', plan.deletions);
        break;
      case 'newList':
        hooks.enter('building new list');
        await steps.createList(ref);
        await send('fill', plan.datasetSize);
        hooks.enter('swapping');
        await steps.swapList(ref);
        break;
      case 'reconcile': {
        hooks.enter('reconciling');
        await steps.snapshotRemote(ref);
        const fixed = await steps.reconcileDeltalog(ref);
        await send('upserts', fixed.additions + fixed.updates);
        await send('deletions', fixed.deletions);
        break;
      }
      default:
        await send('upserts', plan.additions + plan.updates);
        if (sendDeletions) await send('deletions', plan.deletions);
    }

    hooks.enter('committing');
    const result = await finish();
    await steps.runJanitor({ connectorId: input.connectorId, tenant: run.tenant });
    if (result.status === 'failed') throw hooks.belowThreshold(result);
    return result;
  } catch (error) {
    await hooks.failed(ref, error);
    throw error;
  }

  async function finish(status?: 'noop') {
    const result = await steps.finishRun({ ...ref, status });
    hooks.finished(result);
    return result;
  }
}
