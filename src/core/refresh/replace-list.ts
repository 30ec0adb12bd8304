import type { Db } from '../../db';
import { commitSwapped, markRemoteEmptied } from '../deltalog';
import type { Destination, ReplaceList } from '../destination';
import { PlanningError } from '../plan';
import { callDestination, runMeter } from './calls';
import type { Attempt, Engine, RunScope } from './engine';
import { withinFailureBudget } from './failure-budget';

/**
 * Replacing the whole remote list: truncate + reload's first half, and new list + swap's
 * create / fill / swap / retire. Which list a connector points at lives in `connector_state`:
 * `remote_list_id` once a swap moved it off the configured list, `pending_list_id` while a new
 * list is being built.
 */

interface ListState {
  remoteListId: string | null;
  pendingListId: string | null;
}

async function listState(db: Db, key: string): Promise<ListState> {
  const row = (await db('connector_state').where({ connector_id: key }).first()) as
    { remote_list_id?: string | null; pending_list_id?: string | null } | undefined;
  return { remoteListId: row?.remote_list_id ?? null, pendingListId: row?.pending_list_id ?? null };
}

/** The list the connector points at now, when a swap moved it off the configured one. */
export async function liveListId(db: Db, key: string): Promise<string | undefined> {
  return (await listState(db, key)).remoteListId ?? undefined;
}

/** How many lists a new list + swap would retire now: see `createList` and `swapList`. */
export async function listsToRetire(db: Db, key: string): Promise<number> {
  const { remoteListId, pendingListId } = await listState(db, key);
  return (remoteListId ? 1 : 0) + (pendingListId ? 1 : 0);
}

/** The list being built by new list + swap, written through the live destination's account. */
export async function listBeingBuilt(db: Db, key: string, live: Destination): Promise<Destination> {
  const { pendingListId } = await listState(db, key);
  if (!pendingListId) throw new Error('no list is being built for this connector');
  return replaceListOf(live).forList(pendingListId);
}

function replaceListOf(destination: Destination): ReplaceList {
  if (!destination.replaceList) throw new PlanningError('this destination cannot create and swap lists');
  return destination.replaceList;
}

/** Truncate + reload, first half: empty the remote list; every key becomes pending again. */
export async function truncateList(
  engine: Engine,
  scope: RunScope,
  destination: Destination,
  attempt?: Attempt,
): Promise<void> {
  await withinFailureBudget(engine, scope, 'truncate', attempt, () => {
    const truncate = destination.truncate?.bind(destination);
    if (!truncate) throw new PlanningError('this destination cannot truncate its list');
    return callDestination(runMeter(engine, scope), 'truncate', truncate);
  });
  await markRemoteEmptied(engine.db, scope.key, engine.now());
}

/**
 * New list + swap, first step: an empty list to fill (the same one again on a retry: `create`
 * is idempotent for the run's name). A list an earlier, failed run left half-built is retired.
 */
export async function createList(
  engine: Engine,
  scope: RunScope,
  destination: Destination,
  attempt?: Attempt,
): Promise<{ listId: string }> {
  const { pendingListId: abandoned } = await listState(engine.db, scope.key);
  const listId = await withinFailureBudget(engine, scope, 'createList', attempt, async () => {
    const replace = replaceListOf(destination);
    const meter = runMeter(engine, scope);
    const created = await callDestination(meter, 'createList', () => replace.create(`run-${scope.runId}`));
    if (abandoned && abandoned !== created.listId) {
      await callDestination(meter, 'retireList', () => replace.retire(abandoned));
    }
    return created.listId;
  });
  await engine.db('connector_state').where({ connector_id: scope.key }).update({ pending_list_id: listId });
  return { listId };
}

/**
 * New list + swap, last step: make the filled list the live one, retire the list the connector
 * pointed at before (never the list named in the config), commit what went into the new list.
 */
export async function swapList(
  engine: Engine,
  scope: RunScope,
  destination: Destination,
  attempt?: Attempt,
): Promise<{ listId: string | null }> {
  const { db, now } = engine;
  const state = await listState(db, scope.key);
  if (!state.pendingListId) return { listId: state.remoteListId }; // swapped already
  const listId = state.pendingListId;
  const liveId = await withinFailureBudget(engine, scope, 'swapList', attempt, async () => {
    const replace = replaceListOf(destination);
    const meter = runMeter(engine, scope);
    const swapped = await callDestination(meter, 'swapList', () => replace.swap(listId));
    const live = swapped.liveListId ?? listId;
    const previous = state.remoteListId;
    if (previous && previous !== live)
      await callDestination(meter, 'retireList', () => replace.retire(previous));
    return live;
  });
  await commitSwapped(db, scope.key, now());
  await db('connector_state')
    .where({ connector_id: scope.key })
    .update({ remote_list_id: liveId, pending_list_id: null });
  return { listId: liveId };
}
