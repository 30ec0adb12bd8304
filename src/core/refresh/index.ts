/**
 * The refresh engine, step by step, free of Temporal: each function is one step of the method
 * (src/workflows/refresh-steps.ts says in which order they run). The activities wrap them
 * (tenant, destination, heartbeats, error classification); the engine's property test calls
 * them directly.
 */
export type { Attempt, ConnectorScope, Engine, RunScope } from './engine';
export { callDestination, observed, runMeter, settle, type RunMeter } from './calls';
export {
  describeFailure,
  FailureBudgetExceeded,
  isRetriedFailure,
  withinFailureBudget,
} from './failure-budget';
export { beginRun, finishRun, runJanitor, updateDeltalog, type RunStart } from './run-record';
export { LIST_PAGE_SIZE, planRun, previewRun, recordGuardDecision } from './planning';
export { createList, listBeingBuilt, liveListId, swapList, truncateList } from './replace-list';
export { sendChanges, type SendRequest } from './send';
export { reconcileDeltalog, snapshotRemote } from './reconcile';
export { checkDestination } from './check';
