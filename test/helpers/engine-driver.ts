import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities, type Activities } from '../../src/activities';
import type { Db } from '../../src/db';
import type { StrategyChoice } from '../../src/core/plan';
import type { SendPhase, SendTotals } from '../../src/core/sender';
import type { MemoryDestination } from '../../src/emulators/memory-destination';
import { createTenancy, TenantDirectory } from '../../src/tenancy';
import { anySecret } from './secrets';

/**
 * Runs a refresh the way the workflow sequences it, by calling the real activities inside the
 * SDK's activity test environment, without a Temporal server. It can stop after any step (a crash
 * between steps) and make a send die mid-way, then retry it with the last heartbeat (what Temporal
 * does on an activity retry). The workflow itself is tested on a real server in refresh.test.ts.
 */

export type Interruption =
  | { kind: 'none' }
  | { kind: 'stop-after-step'; step: number }
  | { kind: 'fail-send'; afterCalls: number; applyBeforeFailing: boolean; retry: boolean };

export interface DriverResult {
  completed: boolean;
  status?: string;
  strategy?: string | null;
  rejected?: number;
  steps: string[];
}

let runCounter = 0;

export function createDriver(db: Db, destination: MemoryDestination) {
  const tenancy = createTenancy({ db, directory: TenantDirectory.singleTenant(), secrets: anySecret() });
  const activities: Activities = createActivities({ db, tenancy, destinations: () => destination });
  const workflowExecution = () => ({ workflowId: 'wf', runId: `run-${process.pid}-${runCounter++}` });

  return async function refresh(
    connectorId: string,
    strategy: StrategyChoice,
    interruption: Interruption,
  ): Promise<DriverResult> {
    const execution = workflowExecution();
    const steps: string[] = [];
    const inEnv = <T>(fn: () => Promise<T>, heartbeatDetails?: unknown): Promise<T> =>
      new MockActivityEnvironment(
        { ...inDefault, workflowExecution: execution, heartbeatDetails },
        { logger: silent },
      ).run(fn);
    const step = async <T>(name: string, fn: () => Promise<T>): Promise<T | typeof STOP> => {
      if (interruption.kind === 'stop-after-step' && steps.length >= interruption.step) return STOP;
      const result = await inEnv(fn);
      steps.push(name);
      return result;
    };

    const run = await step('begin', () => activities.beginRun({ connectorId, trigger: 'test' }));
    if (run === STOP) return { completed: false, steps };
    const ref = { connectorId, runId: run.runId };
    if ((await step('update', () => activities.updateDeltalog(ref))) === STOP)
      return { completed: false, steps };
    const plan = await step('plan', () => activities.planRefresh({ ...ref, strategy }));
    if (plan === STOP) return { completed: false, steps };
    if (plan.needed && plan.strategy) {
      const before: Record<string, () => Promise<unknown>> = {
        truncate: () => activities.truncateRemote(ref),
        newList: () => activities.createList(ref),
        reconcile: async () => {
          await activities.snapshotRemote(ref);
          return activities.reconcileDeltalog(ref);
        },
      };
      const phases: Record<string, SendPhase[]> = {
        diff: ['upserts', 'deletions'],
        full: ['full', 'deletions'],
        truncate: ['upserts'],
        newList: ['fill'],
        reconcile: ['upserts', 'deletions'],
      };
      const first = before[plan.strategy];
      if (first && (await step(`before:${plan.strategy}`, first)) === STOP)
        return { completed: false, steps };
      for (const phase of phases[plan.strategy]!) {
        const sent = await step(`send:${phase}`, () => sendWithRetry(phase));
        if (sent === STOP || sent === FAILED) return { completed: false, steps };
      }
      if (plan.strategy === 'newList') {
        if ((await step('swap', () => activities.swapList(ref))) === STOP) return { completed: false, steps };
      }
    }
    const summary = await step('finish', () =>
      activities.finishRun({ ...ref, status: plan.needed ? undefined : 'noop' }),
    );
    if (summary === STOP) return { completed: false, steps };
    if ((await step('janitor', () => activities.runJanitor({ connectorId }))) === STOP)
      return { completed: false, steps };
    return {
      completed: true,
      status: summary.status,
      strategy: summary.strategy,
      rejected: summary.rejected,
      steps,
    };

    /** A send that may die mid-way; on "retry" it runs again with the last heartbeat, like Temporal. */
    async function sendWithRetry(phase: SendPhase): Promise<SendTotals | typeof FAILED> {
      if (interruption.kind !== 'fail-send') return inEnv(() => activities.sendChanges({ ...ref, phase }));
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
        return await env.run((): Promise<SendTotals> => activities.sendChanges({ ...ref, phase }));
      } catch (error) {
        destination.faults = {};
        if (!interruption.retry) return FAILED;
        if (!(error instanceof Error) || !/injected failure/.test(error.message)) throw error;
        return inEnv(() => activities.sendChanges({ ...ref, phase }), lastHeartbeat);
      } finally {
        destination.faults = {};
      }
    }
  };
}

const STOP = Symbol('stop');
/** Activities take their tenant from the namespace: the single tenant `default` lives in `default`. */
const inDefault = { namespace: 'default' };
const quiet = () => undefined;
/** Injected failures are the point of these tests; the SDK's warnings about them are noise. */
const silent = { log: quiet, trace: quiet, debug: quiet, info: quiet, warn: quiet, error: quiet };
const FAILED = Symbol('failed');
