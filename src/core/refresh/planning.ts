import type { Db } from '../../db';
import type { DatasetReader } from '../dataset';
import {
  badRowTotal,
  deltalogSizes,
  pendingCounts,
  pendingSummary,
  previewUpdate,
  sampleRecordBytes,
  type BadRowReport,
  type PendingCounts,
  validRows,
} from '../deltalog';
import { capabilitiesOf, type Destination } from '../destination';
import { checkMassDelete, type GuardCheck } from '../guard';
import { planRefresh, type StrategyChoice } from '../plan';
import { addRunTimings, getRun, recordPlan, recordRunDetails } from '../runs';
import { batchSizeFor } from '../sender';
import type { DryRunPlan, GuardDecision, PlanSummary } from '../summaries';
import type { ConnectorScope, Engine, RunScope } from './engine';
import { listsToRetire } from './replace-list';

/** Step 2: is a refresh needed, and by which strategy; the dry run; the mass-delete guard. */

/** Keys per page when reading the remote list (a reconcile's snapshot). */
export const LIST_PAGE_SIZE = 1000;

/** What planning counts: pending changes (all, and inside the horizon), the list's sizes. */
async function planningCounts(
  engine: Engine,
  store: Db,
  scope: ConnectorScope,
  known: { directPush?: number; snapshot?: BadRowReport } = {},
): Promise<PlanningCounts> {
  const { connector, key } = scope;
  const { horizonDays, maxAttempts } = connector.policy;
  // A direct first push (see updateDeltalog): every valid row of the dataset is an addition.
  if (known.directPush !== undefined) {
    const pending = { additions: known.directPush, updates: 0, deletions: 0 };
    return { pending, pendingInHorizon: pending, size: known.directPush, remote: 0, quarantined: 0 };
  }
  const summary = await pendingSummary(store, key, maxAttempts);
  const { pending, quarantined } = summary;
  const since = horizonDays === undefined ? undefined : engine.now() - horizonDays * 86_400_000;
  const pendingInHorizon =
    since === undefined ? pending : await pendingCounts(store, key, { since, maxAttempts });
  const { dataset: size, remote } = await listSizes(store, key, known.snapshot, summary);
  return { pending, pendingInHorizon, size, remote, quarantined };
}

/**
 * The dataset's and the remote list's sizes. After a deltalog update the dataset's size is known
 * from its inspection (every valid key, when none repeats), and the remote's follows from the
 * pending rows alone (listed in the pending index): no walk of the whole list for a small diff.
 * Otherwise (keys that repeat, no inspection) both are counted.
 */
async function listSizes(
  store: Db,
  key: string,
  snapshot: BadRowReport | undefined,
  pending: { inDataset: number; onRemote: number },
): Promise<{ dataset: number; remote: number }> {
  if (!snapshot || snapshot.duplicateKeys > 0) return deltalogSizes(store, key);
  const dataset = validRows(snapshot);
  return { dataset, remote: dataset - pending.inDataset + pending.onRemote };
}

interface PlanningCounts {
  pending: PendingCounts;
  pendingInHorizon: PendingCounts;
  size: number;
  remote: number;
  quarantined: number;
}

/** The counts and the destination's limits → the planner's decision, the guard's verdict, the summary. */
async function decide(
  engine: Engine,
  store: Db,
  scope: ConnectorScope,
  source: DatasetReader,
  destination: Destination,
  strategy: StrategyChoice | undefined,
  { pending, pendingInHorizon, size, remote, quarantined }: PlanningCounts,
): Promise<PlanSummary> {
  const { connector, key } = scope;
  const capabilities = capabilitiesOf(destination);
  const batchSize = batchSizeFor(connector, destination);
  // Inside a dry run's transaction, the sample reads through it; otherwise through the reader.
  const sample = store.isTransaction
    ? await sampleRecordBytes(store, source.dataset)
    : await source.read((executor) => sampleRecordBytes(executor, source.dataset));
  const decision = planRefresh({
    capabilities,
    recordsPerCall: batchSize,
    bytesPerCall: destination.limits.bytesPerCall,
    truncateMaxMembers: destination.limits.truncateMaxMembers,
    pending,
    pendingInHorizon,
    datasetSize: size,
    remoteSize: remote,
    ...sample,
    listPageSize: Math.min(LIST_PAGE_SIZE, destination.limits.recordsPerCall),
    listsToRetire: capabilities.createList ? await listsToRetire(store, key) : 0,
    strategy: strategy ?? connector.policy.strategy,
  });
  return {
    needed: decision.needed,
    strategy: decision.strategy,
    reason: decision.reason,
    ...pending,
    datasetSize: size,
    remoteSize: remote,
    batchSize,
    estimates: decision.estimates,
    guard: {
      ...checkMassDelete(connector.policy.massDeleteGuard, {
        deletions: decision.needed ? pending.deletions : 0,
        remoteSize: remote,
        datasetSize: size,
      }),
      approvalTimeoutSeconds: connector.policy.massDeleteGuard.approvalTimeoutSeconds,
    },
    quarantined,
    withDeletionsHeld: pending.additions + pending.updates === 0 || capabilities.add ? 'diff' : null,
  };
}

/** Plan the run; the choice, its reason and the estimates go on the run record. */
export async function planRun(
  engine: Engine,
  scope: RunScope,
  source: DatasetReader,
  destination: Destination,
  strategy?: StrategyChoice,
): Promise<PlanSummary> {
  const started = performance.now();
  // What this run's deltalog update recorded: a direct first push, or the dataset's inspection.
  const run = await getRun(engine.db, scope.runId);
  const counts = await planningCounts(engine, engine.db, scope, {
    directPush: run.direct_push_rows ?? undefined,
    snapshot: run.bad_rows ? (JSON.parse(run.bad_rows) as BadRowReport) : undefined,
  });
  const summary = await decide(engine, engine.db, scope, source, destination, strategy, counts);
  await addRunTimings(engine.db, scope.runId, { planMs: performance.now() - started });
  await recordPlan(engine.db, scope.runId, summary);
  await recordRunDetails(engine.db, scope.runId, {
    estimates: summary.estimates,
    quarantined: summary.quarantined,
  });
  return summary;
}

/**
 * A dry run: the deltalog update and the plan inside a transaction that is rolled back. What a
 * refresh would send, by which strategy, in how many calls; changes nothing, calls nothing.
 */
export async function previewRun(
  engine: Engine,
  scope: ConnectorScope,
  source: DatasetReader,
  destination: Destination,
  strategy?: StrategyChoice,
): Promise<DryRunPlan> {
  const { connector, key } = scope;
  return previewUpdate(engine.db, key, source, engine.now(), async (preview, report: BadRowReport) => ({
    connectorId: connector.id,
    ...(await decide(
      engine,
      preview,
      scope,
      source,
      destination,
      strategy,
      await planningCounts(engine, preview, scope, { snapshot: report }),
    )),
    badRows: badRowTotal(report),
  }));
}

/**
 * The mass-delete guard's decision; rejected deletions stay pending (held, not lost). The run
 * record then names what runs instead (`strategy`: a diff without them, or nothing at all).
 */
export async function recordGuardDecision(
  engine: Engine,
  input: { runId: number; guard: GuardCheck; decision: GuardDecision; strategy?: string | null },
): Promise<void> {
  const { runId, guard, decision, strategy } = input;
  const held = !decision.approved;
  await engine
    .db('refresh_runs')
    .where({ id: runId })
    .update({
      guard: JSON.stringify({ ...guard, ...decision, decidedAt: engine.now() }),
      deletions_held: held ? guard.deletions : 0,
      ...(held && strategy !== undefined
        ? {
            strategy,
            strategy_reason:
              strategy === null
                ? 'deletions held by the mass-delete guard; this destination can only replace the whole list, so nothing was sent'
                : 'deletions held by the mass-delete guard: additions and updates only',
          }
        : {}),
    });
}
