import { pendingCounts, quarantinedAbsent, reconcileWithRemote, saveRemoteKeys } from '../deltalog';
import type { Destination } from '../destination';
import { PlanningError } from '../plan';
import { loadCheckpoint, recordCalls, recordRunDetails, saveCheckpoint } from '../runs';
import type { DriftCounts } from '../summaries';
import { observed, runMeter, settle } from './calls';
import type { Attempt, Engine, RunScope } from './engine';
import { withinFailureBudget } from './failure-budget';
import { LIST_PAGE_SIZE } from './planning';

/** A snapshot checkpoint whose last page has been read. */
const DONE = '\u0000done';

/**
 * Reconcile, first half: read the remote membership into the database, page by page. Each page,
 * the destination's page token and the page's calls are saved together; a retry continues from
 * the token (kept in the database: a token may well be a record key).
 */
export async function snapshotRemote(
  engine: Engine,
  scope: RunScope,
  destination: Destination,
  options: { attempt?: Attempt; onPage?: (progress: { keys: number }) => void } = {},
): Promise<{ keys: number }> {
  const { db, now } = engine;
  const { runId } = scope;
  const saved = await loadCheckpoint(db, runId, 'snapshot');
  if (saved?.cursor === DONE) return { keys: saved.recordsDone };
  let cursor: string | null = saved ? saved.cursor : null;
  let keys = saved?.recordsDone ?? 0;
  await withinFailureBudget(engine, scope, 'snapshot', options.attempt, async () => {
    const listMembers = destination.listMembers?.bind(destination);
    if (!listMembers) throw new PlanningError('this destination cannot list its members');
    const meter = runMeter(engine, scope);
    const limit = Math.min(LIST_PAGE_SIZE, destination.limits.recordsPerCall);
    do {
      const measured = await observed(meter, 'listMembers', () => listMembers(cursor, limit));
      const page = await settle(meter, measured);
      cursor = page.next;
      keys += page.keys.length;
      const checkpoint = { cursor: cursor ?? DONE, recordsDone: keys };
      await db.transaction(async (trx) => {
        await saveRemoteKeys(trx, runId, page.keys);
        await saveCheckpoint(trx, runId, 'snapshot', checkpoint, now());
        await recordCalls(trx, runId, measured.tallies);
      });
      options.onPage?.({ keys });
    } while (cursor !== null);
  });
  return { keys };
}

/** Reconcile, second half: correct the deltalog with what the remote holds; report the drift. */
export async function reconcileDeltalog(
  engine: Engine,
  scope: RunScope,
): Promise<{ drift: DriftCounts; additions: number; updates: number; deletions: number }> {
  const { db, now } = engine;
  const { key, runId } = scope;
  const { maxAttempts } = scope.connector.policy;
  const found = await reconcileWithRemote(db, key, runId, now());
  // Quarantined keys are not drift (the deltalog knows they are not there), but a list without
  // drift still lacks them: say how many.
  const drift = { ...found, quarantined: await quarantinedAbsent(db, key, maxAttempts) };
  await recordRunDetails(db, runId, { drift });
  const pending = await pendingCounts(db, key, { maxAttempts });
  // Counts only: the drift's sample keys stay on the run record.
  return {
    drift: { extra: drift.extra, missing: drift.missing, quarantined: drift.quarantined },
    ...pending,
  };
}
