import { createHash } from 'node:crypto';
import type { Knex } from 'knex';
import type { Db } from '../db';
import {
  claimChanges,
  ensureTriggers,
  removeUnfollowedSources,
  sourceFloor,
  touchedKeys,
  trackedTables,
  trimJournal,
  verifyJournal,
  type TrackedTable,
} from './change-source';
import type { DatasetDefinition, DatasetReader } from './dataset';
import {
  badRowTotal,
  datasetKeyCount,
  updateDeltalog,
  updateDeltalogFromChanges,
  type BadRowReport,
} from './deltalog';

/**
 * Step 1 with a change source: update the deltalog from the keys touched since the connector's
 * last refresh when the journal proves it saw every change, else by the full compare, which is
 * also the safety net on a cadence. Either way the deltalog ends as a full compare would leave it.
 */

/** How a run's deltalog was updated (kept on the run record, shown in its summary). */
export interface CompareRecord {
  mode: 'full' | 'incremental' | 'direct';
  reason: string;
  /** Keys the change source reported touched (an incremental update). */
  touchedKeys?: number;
  /**
   * Keys a full compare found changed that the change source had not reported (writes that
   * bypassed the triggers, journal rows lost). Absent when there was nothing to measure against.
   */
  drift?: number;
}

export interface TrackedUpdate {
  report: BadRowReport;
  compare: CompareRecord;
}

interface TrackingRow {
  signature: string;
  full_compare_at: number | string;
  dataset_keys: number | string;
  bad_rows: string;
}

/** What a position was taken for: the dataset's rows, key and attributes, and what is followed. */
function signatureOf(dataset: DatasetDefinition): string {
  const shape = {
    table: dataset.table ?? null,
    sql: dataset.sql ?? null,
    key: dataset.key,
    attributes: dataset.attributes,
    tables: trackedTables(dataset),
  };
  return createHash('sha256').update(JSON.stringify(shape)).digest('hex').slice(0, 32);
}

/**
 * `declared` is the connector's dataset as configured (it names the change source); `reader` is
 * how its rows are read. `mustCompare`, when set, is why a full compare is needed regardless (keys
 * an interrupted first push adopted, which no journal reported).
 */
export async function updateFollowingChanges(
  db: Db,
  connectorKey: string,
  declared: DatasetDefinition,
  reader: DatasetReader,
  now: number,
  mustCompare?: string,
): Promise<TrackedUpdate> {
  const tables = trackedTables(declared);
  if (tables.length === 0) {
    await forgetTracking(db, connectorKey);
    return { report: await updateDeltalog(db, connectorKey, reader, now), compare: FULL_WITHOUT_SOURCE };
  }
  const sources = await Promise.all(
    tables.map(async (table) => ({ table, ...(await ensureTriggers(db, table, now)) })),
  );
  await forgetTracking(db, connectorKey, new Set(sources.map((s) => s.sourceId)));
  // Claimed before anything is read: a change committed after its claim is in a later batch.
  const claims = new Map<string, number>();
  for (const { sourceId } of sources) claims.set(sourceId, (await claimChanges(db, sourceId)).batch);

  const positions = await positionsOf(db, connectorKey);
  const state = (await db('change_tracking').where({ connector_id: connectorKey }).first()) as
    TrackingRow | undefined;
  const signature = signatureOf(declared);
  const continued =
    !!state && state.signature === signature && sources.every((s) => positions.has(s.sourceId));
  const ranges = sources.map(({ sourceId }) => ({
    sourceId,
    after: positions.get(sourceId) ?? 0,
    upTo: claims.get(sourceId)!,
  }));

  const fullBecause =
    mustCompare ??
    (await whyFullCompare(db, {
      state,
      signature,
      sources,
      positions,
      claims,
      now,
      hours: declared.changes!.fullCompareHours,
    }));
  if (!fullBecause) {
    const counted = await updateDeltalogFromChanges(
      db,
      connectorKey,
      reader,
      touchedKeys(ranges),
      now,
      async (trx, result) => {
        await savePositions(trx, connectorKey, claims);
        await trx('change_tracking')
          .where({ connector_id: connectorKey })
          .update({ dataset_keys: trx.raw('dataset_keys + ?', [result.datasetKeysDelta]) });
      },
    );
    await trimAll(db, claims);
    const lastBadRows = JSON.parse(state!.bad_rows) as BadRowReport;
    const datasetKeys = Number(state!.dataset_keys) + counted.datasetKeysDelta;
    return {
      report: { ...lastBadRows, datasetRows: datasetKeys + badRowTotal(lastBadRows) },
      compare: {
        mode: 'incremental',
        reason: 'keys touched since the last refresh',
        touchedKeys: counted.touchedKeys,
      },
    };
  }

  // The journal's changes first, a millisecond earlier: what the full compare still changes after
  // them (stamped `now`) is what the change source missed.
  if (continued)
    await updateDeltalogFromChanges(
      db,
      connectorKey,
      reader,
      touchedKeys(ranges),
      now - 1,
      async () => undefined,
    );
  const report = await updateDeltalog(db, connectorKey, reader, now);
  const drift = continued ? await changedAt(db, connectorKey, now) : undefined;
  const datasetKeys = await datasetKeyCount(db, connectorKey);
  await db.transaction(async (trx) => {
    await savePositions(trx, connectorKey, claims);
    const row = {
      signature,
      full_compare_at: now,
      dataset_keys: datasetKeys,
      bad_rows: JSON.stringify(report),
    };
    await trx('change_tracking')
      .insert({ connector_id: connectorKey, ...row })
      .onConflict('connector_id')
      .merge(row);
  });
  await trimAll(db, claims);
  return {
    report,
    compare: { mode: 'full', reason: fullBecause, ...(drift === undefined ? {} : { drift }) },
  };
}

const FULL_WITHOUT_SOURCE: CompareRecord = { mode: 'full', reason: 'the dataset declares no change source' };

async function whyFullCompare(
  db: Db,
  input: {
    state: TrackingRow | undefined;
    signature: string;
    sources: { table: TrackedTable; sourceId: string; reinstalled: boolean }[];
    positions: Map<string, number>;
    claims: Map<string, number>;
    now: number;
    hours: number;
  },
): Promise<string | undefined> {
  const { state, sources, positions } = input;
  if (!state) return 'first compare with the change source';
  if (state.signature !== input.signature) return "the dataset's definition changed";
  for (const { table, sourceId, reinstalled } of sources) {
    const position = positions.get(sourceId);
    if (position === undefined) return `a new change source on ${table.table}`;
    if (reinstalled)
      return `the triggers on ${table.table} were missing (changes made meanwhile were not journalled)`;
    if (!(await verifyJournal(db, sourceId, input.claims.get(sourceId)!)))
      return `rows of the change journal of ${table.table} went missing`;
    if (position < (await sourceFloor(db, sourceId)))
      return `the change journal of ${table.table} cannot prove it saw every change since the last refresh`;
  }
  const dueAt = Number(state.full_compare_at) + input.hours * 3600_000;
  if (input.now >= dueAt) return `the safety net's full compare (every ${input.hours} h)`;
  return undefined;
}

async function positionsOf(db: Db, connectorKey: string): Promise<Map<string, number>> {
  const rows = (await db('change_positions').where({ connector_id: connectorKey })) as {
    source_id: string;
    batch: number | string;
  }[];
  return new Map(rows.map((row) => [row.source_id, Number(row.batch)]));
}

async function savePositions(trx: Knex.Transaction, connectorKey: string, claims: Map<string, number>) {
  for (const [sourceId, batch] of claims)
    await trx('change_positions')
      .insert({ connector_id: connectorKey, source_id: sourceId, batch })
      .onConflict(['connector_id', 'source_id'])
      .merge({ batch });
}

async function trimAll(db: Db, claims: Map<string, number>) {
  for (const sourceId of claims.keys()) await trimJournal(db, sourceId);
}

/** Pending rows stamped at `at`: what the full compare changed. Read through the pending index. */
async function changedAt(db: Db, connectorKey: string, at: number): Promise<number> {
  const [row] = (await db('deltalog')
    .where({ connector_id: connectorKey, updated_at: at })
    .whereNull('committed_at')
    .count({ n: '*' })) as { n: number | string }[];
  return Number(row?.n ?? 0);
}

/**
 * Stop following the sources not in `keep` (all, without it): the connector's positions go, its
 * tracking state too when it follows nothing, and a source nobody follows any more is removed
 * (triggers dropped, journal deleted). Also what deleting a connector does.
 */
export async function forgetTracking(db: Db, connectorKey: string, keep = new Set<string>()): Promise<void> {
  const positions = await positionsOf(db, connectorKey);
  const dropped = [...positions.keys()].filter((sourceId) => !keep.has(sourceId));
  if (dropped.length > 0)
    await db('change_positions').where({ connector_id: connectorKey }).whereIn('source_id', dropped).delete();
  if (keep.size === 0) await db('change_tracking').where({ connector_id: connectorKey }).delete();
  await removeUnfollowedSources(db, dropped);
}
