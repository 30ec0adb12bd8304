import { Context } from '@temporalio/activity';
import { InvalidConnectorError } from '../core/connector';
import { capabilitiesOf, type Destination } from '../core/destination';
import type { StrategyChoice } from '../core/plan';
import * as engine from '../core/refresh';
import type { RunStatus } from '../core/runs';
import type { SendPhase, SendProgress, SendTotals } from '../core/sender';
import type { DryRunPlan, GuardDecision, PlanSummary, RunSummary } from '../core/summaries';
import type { GuardCheck } from '../core/guard';
import { safeObserver } from '../observability/observer';
import { createAlerter } from './alerts';
import { connectorProblems } from '../tenancy';
import {
  connectorAccess,
  currentAttempt,
  failClearly,
  failClearlyWhileHeartbeating,
  keepHeartbeating,
  keepReporting,
  type ActivityDependencies,
  type OpenedConnector,
} from './support';

/**
 * The refresh's activities: short wrappers around the engine (src/core/refresh), which holds every
 * decision and every statement. Each opens the connector for the caller's tenant (see
 * callerTenant; `tenant` in an input only chooses among the namespace's tenants), builds its
 * destination, calls one engine step, heartbeats, and classifies errors for Temporal. They receive
 * ids and return counts: record data moves only between the database and the destination.
 */

export interface ConnectorRef {
  connectorId: string;
  /** The caller's tenant; absent in runs recorded before tenants were checked by namespace. */
  tenant?: string;
}

export interface RunRef extends ConnectorRef {
  runId: number;
}

export function createRefreshActivities(dependencies: ActivityDependencies) {
  const { db, tenancy, now = Date.now } = dependencies;
  const deps: engine.Engine = { db, now, observer: safeObserver(dependencies.observer) };

  const { open, withDestination } = connectorAccess(dependencies);
  const runOf = (opened: OpenedConnector, ref: RunRef): engine.RunScope => ({ ...opened, runId: ref.runId });
  const alerter = createAlerter({ db, tenancy, now, backoffMs: dependencies.alertBackoffMs });

  /** A step that replaces the list (truncate, create, swap): heartbeats while its call runs. */
  const listStep =
    <R>(step: (e: engine.Engine, run: engine.RunScope, d: Destination, a: engine.Attempt) => Promise<R>) =>
    (ref: RunRef): Promise<R> =>
      failClearlyWhileHeartbeating(() =>
        withDestination(ref, (destination, opened) =>
          step(deps, runOf(opened, ref), destination, currentAttempt()),
        ),
      );

  return {
    /** Open (or find) this execution's run, then check the connector may run as its tenant. */
    async beginRun(input: ConnectorRef & { trigger: string }) {
      return failClearly(async () => {
        const { tenant, connector, key } = await open(input);
        const { workflowExecution } = Context.current().info;
        if (!workflowExecution) throw new Error('beginRun must run inside a refresh workflow');
        const { workflowId, runId: workflowRunId } = workflowExecution;
        const start = { key, tenant: tenant.id, workflowId, workflowRunId, trigger: input.trigger };
        const runId = await engine.beginRun(deps, start, () => connectorProblems(tenancy, tenant, connector));
        return { runId, tenant: tenant.id, destinationType: connector.destination.type };
      });
    },

    /**
     * Step 1 (FIG. 4): full compare of the dataset against the deltalog, in the database (skipped
     * by a first push that can read the dataset directly: see engine.updateDeltalog).
     */
    async updateDeltalog(ref: RunRef & { strategy?: StrategyChoice; askedAt?: number }) {
      return failClearly(() =>
        keepHeartbeating(() =>
          withDestination(ref, async (destination, opened) =>
            engine.updateDeltalog(deps, runOf(opened, ref), await opened.source(), {
              strategy: ref.strategy ?? opened.connector.policy.strategy,
              canAdd: capabilitiesOf(destination).add,
              askedAt: ref.askedAt,
            }),
          ),
        ),
      );
    },

    /** Step 2: is a refresh needed, and by which strategy? The choice and its reason go on the run. */
    async planRefresh(ref: RunRef & { strategy?: StrategyChoice }): Promise<PlanSummary> {
      return failClearly(() =>
        withDestination(ref, async (destination, opened) => {
          const plan = await engine.planRun(
            deps,
            runOf(opened, ref),
            await opened.source(),
            destination,
            ref.strategy,
          );
          // The run will wait for an operator: tell them now, not when it times out.
          if (plan.guard?.triggered)
            await keepHeartbeating(() => alerter.awaitingApproval(opened, ref.runId, plan.guard!.reason));
          return plan;
        }),
      );
    },

    /** The mass-delete guard's decision, on the run record. */
    async recordGuardDecision(
      input: RunRef & { guard: GuardCheck; decision: GuardDecision; strategy?: string | null },
    ) {
      await engine.recordGuardDecision(deps, input);
    },

    /** A dry run: what a refresh would send, by which strategy, in how many calls; changes nothing. */
    async previewPlan(input: ConnectorRef & { strategy?: StrategyChoice }): Promise<DryRunPlan> {
      return failClearly(() =>
        keepHeartbeating(() =>
          withDestination(input, async (destination, opened) => {
            const problems = await connectorProblems(tenancy, opened.tenant, opened.connector);
            if (problems.length > 0) throw new InvalidConnectorError(problems);
            return engine.previewRun(deps, opened, await opened.source(), destination, input.strategy);
          }),
        ),
      );
    },

    /** Truncate + reload, first half: empty the remote list; every key becomes pending again. */
    truncateRemote: listStep(engine.truncateList),
    /** New list + swap, first step: an empty list to fill (the same one again on a retry). */
    createList: listStep(engine.createList),

    /**
     * Step 3: send one phase. The heartbeat carries counts only (what a heartbeat holds can reach
     * workflow history); a timer repeats it while one long call runs (Google runs jobs for hours).
     */
    async sendChanges(ref: RunRef & { phase: SendPhase }): Promise<SendTotals> {
      return failClearly(() =>
        keepReporting((onBatch: (progress: SendProgress) => void) =>
          withDestination(ref, async (destination, opened) =>
            engine.sendChanges(deps, runOf(opened, ref), {
              destination,
              source: await opened.source(),
              phase: ref.phase,
              attempt: currentAttempt(),
              onBatch,
              signal: Context.current().cancellationSignal,
            }),
          ),
        ),
      );
    },

    /** New list + swap, last step: the filled list becomes the live one; the old one is retired. */
    swapList: listStep(engine.swapList),

    /** Reconcile, first half: read the remote membership into the database, page by page. */
    async snapshotRemote(ref: RunRef) {
      return failClearly(() => {
        const context = Context.current();
        const onPage = (progress: { keys: number }) => context.heartbeat(progress);
        return withDestination(ref, (destination, opened) =>
          engine.snapshotRemote(deps, runOf(opened, ref), destination, { attempt: currentAttempt(), onPage }),
        );
      });
    },

    /** Reconcile, second half: correct the deltalog with what the remote holds; report the drift. */
    async reconcileDeltalog(ref: RunRef) {
      return failClearly(async () => engine.reconcileDeltalog(deps, runOf(await open(ref), ref)));
    },

    /** Step 4 (FIG. 5): close the run; the success threshold decides `last_succeeded_at`. */
    async finishRun(ref: RunRef & { status?: RunStatus; error?: string }): Promise<RunSummary> {
      const opened = await open(ref);
      const run = await engine.finishRun(deps, runOf(opened, ref), { status: ref.status, error: ref.error });
      // Webhooks may be slow or retried: the step heartbeats meanwhile (its timeout is a minute).
      await keepHeartbeating(() => alerter.runFinished(opened, run));
      return run;
    },

    /** The janitor: purge committed deletions older than the retention window. */
    async runJanitor(ref: ConnectorRef) {
      return engine.runJanitor(deps, await open(ref));
    },
  };
}
