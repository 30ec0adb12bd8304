import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities, type Activities, type RunSummary } from '../../src/activities';
import type { Db } from '../../src/db';
import type { StrategyChoice } from '../../src/core/plan';
import type { SendTotals } from '../../src/core/sender';
import type { MemoryDestination } from '../../src/emulators/memory-destination';
import { createTenancy, TenantDirectory } from '../../src/tenancy';
import { runRefresh, type RefreshSteps, type RunRef } from '../../src/workflows/refresh-steps';
import { anySecret } from './secrets';

/**
 * Runs a refresh through the workflow's own sequence (src/workflows/refresh-steps.ts), calling
 * the real activities inside the SDK's activity test environment, without a Temporal server. It
 * can stop the run after any step (the workflow terminated between two activities), make a send
 * die mid-way and then retry it with the last heartbeat (what Temporal does on an activity retry)
 * or give up on it (the failure budget ran out), and answer the mass-delete guard. The workflow
 * itself, with the same sequence, is tested on a real server in refresh.test.ts.
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

let runCounter = 0;

export function createDriver(db: Db, destination: MemoryDestination) {
  const tenancy = createTenancy({ db, directory: TenantDirectory.singleTenant(), secrets: anySecret() });
  const activities: Activities = createActivities({ db, tenancy, destinations: () => destination });

  return async function refresh(
    connectorId: string,
    strategy: StrategyChoice,
    interruption: Interruption,
    guardAnswer: GuardAnswer = 'approve',
  ): Promise<DriverResult> {
    const execution = { workflowId: 'wf', runId: `run-${process.pid}-${runCounter++}` };
    const done: string[] = [];
    const inEnv = <T>(fn: () => Promise<T>, heartbeatDetails?: unknown): Promise<T> =>
      new MockActivityEnvironment(
        { ...inDefault, workflowExecution: execution, heartbeatDetails },
        { logger: silent },
      ).run(fn);
    /** One activity, unless the run is to stop before it. */
    const step =
      <A extends unknown[], R>(name: string, call: (...args: A) => Promise<R>) =>
      async (...args: A): Promise<R> => {
        if (interruption.kind === 'stop-after-step' && done.length >= interruption.step) throw STOPPED;
        const result = await inEnv(() => call(...args));
        done.push(name);
        return result;
      };

    const steps: RefreshSteps = {
      beginRun: step('begin', activities.beginRun),
      updateDeltalog: step('update', activities.updateDeltalog),
      planRefresh: step('plan', activities.planRefresh),
      recordGuardDecision: step('guard', activities.recordGuardDecision),
      truncateRemote: step('truncate', activities.truncateRemote),
      createList: step('createList', activities.createList),
      swapList: step('swap', activities.swapList),
      snapshotRemote: step('snapshot', activities.snapshotRemote),
      reconcileDeltalog: step('reconcile', activities.reconcileDeltalog),
      sendChanges: step('send', (ref: RunRef, { phase }) => sendWithRetry({ ...ref, phase })),
      finishRun: step('finish', activities.finishRun),
      runJanitor: step('janitor', activities.runJanitor),
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
          if (error !== STOPPED) await inEnv(() => activities.finishRun({ ...ref, status: 'failed' }));
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

    /** A send that may die mid-way; on "retry" it runs again with the last heartbeat, like Temporal. */
    async function sendWithRetry(ref: Parameters<Activities['sendChanges']>[0]): Promise<SendTotals> {
      if (interruption.kind !== 'fail-send') return activities.sendChanges(ref);
      destination.faults = {
        failAfterCalls: interruption.afterCalls,
        applyBeforeFailing: interruption.applyBeforeFailing,
      };
      let lastHeartbeat: unknown;
      const env = new MockActivityEnvironment(
        { ...inDefault, workflowExecution: execution },
        { logger: silent },
      );
      env.on('heartbeat', (details: unknown) => (lastHeartbeat = details));
      try {
        return await env.run(() => activities.sendChanges(ref));
      } catch (error) {
        destination.faults = {};
        if (!(error instanceof Error) || !/injected failure/.test(error.message)) throw error;
        if (!interruption.retry) throw GAVE_UP;
        return inEnv(() => activities.sendChanges(ref), lastHeartbeat);
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
/** Activities take their tenant from the namespace: the single tenant `default` lives in `default`. */
const inDefault = { namespace: 'default' };
const quiet = () => undefined;
/** Injected failures are the point of these tests; the SDK's warnings about them are noise. */
const silent = { log: quiet, trace: quiet, debug: quiet, info: quiet, warn: quiet, error: quiet };
