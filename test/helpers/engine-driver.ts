import { connectorKey } from '../../src/core/connector';
import { loadConnector } from '../../src/core/connector-store';
import { directReader } from '../../src/core/dataset';
import { capabilitiesOf } from '../../src/core/destination';
import { noopObserver } from '../../src/core/observer';
import type { StrategyChoice } from '../../src/core/plan';
import * as engine from '../../src/core/refresh';
import type { SendPhase, SendTotals } from '../../src/core/sender';
import type { RunSummary } from '../../src/core/summaries';
import type { Db } from '../../src/db';
import { runRefresh, type RefreshSteps, type RunRef } from '../../src/workflows/refresh-steps';
import type { MemoryDestination } from './memory-destination';

/**
 * Runs a refresh through the workflow's own sequence (src/workflows/refresh-steps.ts), each step
 * the same engine function (src/core/refresh) the activity of that step calls, without Temporal.
 * It can stop the run after any step (the workflow terminated between two activities), make a
 * send die mid-way and then retry it (what Temporal does on an activity retry; the database's
 * checkpoint decides where it resumes) or give up on it (the failure budget ran out), and answer
 * the mass-delete guard. The workflow itself, with the same sequence, is tested on a real server
 * in refresh.test.ts.
 */

export type Interruption =
  | { kind: 'none' }
  | { kind: 'stop-after-step'; step: number }
  | { kind: 'fail-send'; afterCalls: number; applyBeforeFailing: boolean; retry: boolean };

/** What the operator answers when the guard holds a run's deletions (no answer: a timeout). */
export type GuardAnswer = 'approve' | 'reject' | 'timeout';

export interface DriverResult {
  completed: boolean;
  status?: string;
  strategy?: string | null;
  rejected?: number;
  deletionsHeld?: number;
  steps: string[];
}

/** The single tenant of these tests. */
const TENANT = 'default';
let runCounter = 0;

export function createDriver(db: Db, destination: MemoryDestination) {
  const deps: engine.Engine = { db, now: Date.now, observer: noopObserver };

  /** The connector and its run, as an activity opens them. */
  async function scopeOf(ref: { connectorId: string; runId: number }) {
    const connector = await loadConnector(db, TENANT, ref.connectorId);
    const scope = { connector, key: connectorKey(TENANT, connector.id), runId: ref.runId };
    return { scope, source: directReader(db, connector.dataset) };
  }

  return async function refresh(
    connectorId: string,
    strategy: StrategyChoice,
    interruption: Interruption,
    guardAnswer: GuardAnswer = 'approve',
  ): Promise<DriverResult> {
    const workflowRunId = `run-${process.pid}-${runCounter++}`;
    const done: string[] = [];
    /** One step, unless the run is to stop before it. */
    const step =
      <A extends unknown[], R>(name: string, call: (...args: A) => Promise<R>) =>
      async (...args: A): Promise<R> => {
        if (interruption.kind === 'stop-after-step' && done.length >= interruption.step) throw STOPPED;
        const result = await call(...args);
        done.push(name);
        return result;
      };

    const steps: RefreshSteps = {
      beginRun: step('begin', async ({ connectorId: id, trigger }) => {
        const connector = await loadConnector(db, TENANT, id);
        const start = {
          key: connectorKey(TENANT, id),
          tenant: TENANT,
          workflowId: 'wf',
          workflowRunId,
          trigger,
        };
        const runId = await engine.beginRun(deps, start, () => Promise.resolve([]));
        return { runId, tenant: TENANT, destinationType: connector.destination.type };
      }),
      updateDeltalog: step('update', async (ref) => {
        const { scope, source } = await scopeOf(ref);
        return engine.updateDeltalog(deps, scope, source, {
          strategy: ref.strategy ?? scope.connector.policy.strategy,
          canAdd: capabilitiesOf(destination).add,
        });
      }),
      planRefresh: step('plan', async (ref) => {
        const { scope, source } = await scopeOf(ref);
        return engine.planRun(deps, scope, source, destination, ref.strategy);
      }),
      recordGuardDecision: step('guard', (input) => engine.recordGuardDecision(deps, input)),
      truncateRemote: step('truncate', async (ref) =>
        engine.truncateList(deps, (await scopeOf(ref)).scope, destination),
      ),
      createList: step('createList', async (ref) =>
        engine.createList(deps, (await scopeOf(ref)).scope, destination),
      ),
      swapList: step('swap', async (ref) => engine.swapList(deps, (await scopeOf(ref)).scope, destination)),
      snapshotRemote: step('snapshot', async (ref) =>
        engine.snapshotRemote(deps, (await scopeOf(ref)).scope, destination),
      ),
      reconcileDeltalog: step('reconcile', async (ref) =>
        engine.reconcileDeltalog(deps, (await scopeOf(ref)).scope),
      ),
      sendChanges: step('send', (ref: RunRef, { phase }) => sendWithRetry(ref, phase)),
      finishRun: step('finish', async (ref) =>
        engine.finishRun(deps, (await scopeOf(ref)).scope, { status: ref.status }),
      ),
      runJanitor: step('janitor', async (ref) => {
        const connector = await loadConnector(db, TENANT, ref.connectorId);
        return engine.runJanitor(deps, { connector, key: connectorKey(TENANT, connector.id) });
      }),
    };

    try {
      const summary = await runRefresh({ connectorId, strategy, trigger: 'test' }, steps, {
        enter: () => undefined,
        started: () => undefined,
        planned: () => undefined,
        awaitDecision: () =>
          Promise.resolve(
            guardAnswer === 'timeout' ? undefined : { approved: guardAnswer === 'approve', by: 'test' },
          ),
        strategyChosen: () => undefined,
        sent: () => undefined,
        finished: () => undefined,
        belowThreshold: (result) => new BelowThreshold(result),
        // As the workflow does: a failed run is recorded as failed. A stopped one records nothing.
        failed: async (ref, error) => {
          if (error !== STOPPED)
            await engine.finishRun(deps, (await scopeOf(ref)).scope, { status: 'failed' });
        },
      });
      return {
        completed: true,
        status: summary.status,
        strategy: summary.strategy,
        rejected: summary.rejected,
        deletionsHeld: summary.deletionsHeld,
        steps: done,
      };
    } catch (error) {
      if (error === STOPPED || error === GAVE_UP) return { completed: false, steps: done };
      // A run that fell below its thresholds completed, and failed.
      if (error instanceof BelowThreshold) {
        const { status, strategy, rejected, deletionsHeld } = error.summary;
        return { completed: true, status, strategy, rejected, deletionsHeld, steps: done };
      }
      throw error;
    }

    /** A send that may die mid-way; on "retry" it runs again, like Temporal retrying the activity. */
    async function sendWithRetry(ref: RunRef, phase: SendPhase): Promise<SendTotals> {
      const { scope, source } = await scopeOf(ref);
      const send = () => engine.sendChanges(deps, scope, { destination, source, phase });
      if (interruption.kind !== 'fail-send') return send();
      destination.faults = {
        failAfterCalls: interruption.afterCalls,
        applyBeforeFailing: interruption.applyBeforeFailing,
      };
      try {
        return await send();
      } catch (error) {
        destination.faults = {};
        if (!(error instanceof Error) || !/injected failure/.test(error.message)) throw error;
        if (!interruption.retry) throw GAVE_UP;
        return send();
      } finally {
        destination.faults = {};
      }
    }
  };
}

class BelowThreshold extends Error {
  constructor(readonly summary: RunSummary) {
    super(summary.error ?? 'below the success thresholds');
  }
}

/** The run stopped between two steps (its workflow terminated): nothing more happens. */
const STOPPED = new Error('stopped between steps');
/** A send that failed for good (its failure budget ran out): the run fails. */
const GAVE_UP = new Error('the send gave up');
