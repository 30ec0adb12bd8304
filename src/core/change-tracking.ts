import type { Knex } from 'knex';
import type { Db } from '../db';
import { removeUnfollowedSources, triggerSource, unionOfKeys, type FollowedSource } from './change-source';
import { binlogSource } from './change-binlog';
import { watermarkSource } from './change-watermark';
import { datasetSignature, type DatasetDefinition, type DatasetReader, type TouchedKeys } from './dataset';
import {
  badRowTotal,
  datasetKeyCount,
  updateDeltalog,
  updateDeltalogFromChanges,
  type BadRowReport,
  type CompareTarget,
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
  /** Compared once for several connectors with this dataset (src/core/shared-compare.ts). */
  shared?: { connectors: number; ranCompare: boolean };
  /**
   * Keys a full compare found changed that the change source had not reported (writes that
   * bypassed the triggers, journal rows lost). Absent when there was nothing to measure against.
   */
  drift?: number;
}

export interface TrackedUpdate {
  report: BadRowReport;
  compare: CompareRecord;
  /** When the dataset was read, if before the refresh's own snapshot time (a shared compare). */
  asOf?: number;
}

interface TrackingRow {
  signature: string;
  full_compare_at: number | string;
  dataset_keys: number | string;
  bad_rows: string;
}

/**
 * What a position was taken for: the dataset's signature without the safety net's cadence (a new
 * cadence keeps the positions).
 */
function signatureOf(dataset: DatasetDefinition): string {
  return datasetSignature({
    ...dataset,
    changes: dataset.changes && { ...dataset.changes, fullCompareHours: 0 },
  });
}

/**
 * The change marker of a dataset that has a change source (undefined: it has none, and the watcher
 * uses the checksum marker of core/change-marker.ts, a full scan). One part per followed table,
 * each cheap; the triggers' part moves only when there are writes no refresh has claimed.
 */
export async function changeSourceMarker(
  db: Db,
  dataset: DatasetDefinition,
  previous: string | null,
  now: number,
): Promise<string | undefined> {
  const sources = followedSources(db, dataset);
  if (sources.length === 0) return undefined;
  // Installs the triggers on the watcher's first check, so that it sees the very first writes.
  for (const source of sources) await source.prepare(now);
  const earlier = previous?.startsWith('sources|') ? previous.slice('sources|'.length).split('|') : [];
  const parts: string[] = [];
  for (const [i, source] of sources.entries()) parts.push(await source.marker(earlier[i] ?? null));
  return `sources|${parts.join('|')}`;
}

/** The sources a dataset declares, one per followed table. */
export function followedSources(db: Db, dataset: DatasetDefinition): FollowedSource[] {
  const changes = dataset.changes;
  if (!changes) return [];
  if (changes.source === 'triggers' || changes.source === 'binlog') {
    const follow = changes.source === 'triggers' ? triggerSource : binlogSource;
    return (changes.tables ?? [{ table: dataset.table!, key: dataset.key }]).map((t) => follow(db, t));
  }
  // The stamped tables are one source: their watermarks go forward or back together.
  return [
    watermarkSource(
      db,
      changes.tables ?? [{ table: dataset.table!, key: dataset.key, column: changes.column! }],
    ),
  ];
}

/**
 * `target` is what is compared: a connector's deltalog, or a compare shared by several connectors
 * (which then follows the change sources in their stead). `declared` is the dataset as configured
 * (it names the change source); `reader` is how its rows are read. `mustCompare`, when set, is why
 * a full compare is needed regardless (keys an interrupted first push adopted, which no change
 * source reported). `fence` runs inside each transaction that writes compared rows, before it
 * commits, with the stamp those rows carry.
 */
export async function updateFollowingChanges(
  db: Db,
  target: CompareTarget,
  declared: DatasetDefinition,
  reader: DatasetReader,
  now: number,
  mustCompare?: string,
  fence: (trx: Knex.Transaction, stamp: number) => Promise<void> = async () => undefined,
): Promise<TrackedUpdate> {
  // The follower's id in the change tables: the connector's key, or the shared compare's id.
  const connectorKey = followerOf(target);
  const sources = followedSources(db, declared);
  if (sources.length === 0) {
    await forgetTracking(db, connectorKey);
    const report = await updateDeltalog(db, target, reader, now, (trx) => fence(trx, now));
    return { report, compare: FULL_WITHOUT_SOURCE };
  }
  const lost: string[] = [];
  for (const source of sources) {
    const prepared = await source.prepare(now);
    if (prepared.lost) lost.push(prepared.lost);
  }
  await forgetTracking(db, connectorKey, new Set(sources.map((s) => s.sourceId)));
  const claims = new Map<string, string>();
  for (const source of sources) claims.set(source.sourceId, await source.claim(connectorKey));

  const positions = await positionsOf(db, connectorKey);
  await reserve(db, connectorKey, sources, positions, claims);
  const state = (await db('change_tracking').where({ connector_id: connectorKey }).first()) as
    TrackingRow | undefined;
  const signature = signatureOf(declared);
  const continued =
    !!state && state.signature === signature && sources.every((s) => positions.has(s.sourceId));
  const touched = touchedAcross(sources, positions, claims, connectorKey);
  const advanced = new Map(
    sources.map((s) => [s.sourceId, s.advance(positions.get(s.sourceId), claims.get(s.sourceId)!)]),
  );

  const fullBecause =
    mustCompare ??
    (await whyFullCompare({
      state,
      signature,
      sources,
      positions,
      claims,
      lost,
      now,
      hours: declared.changes!.fullCompareHours,
    }));
  if (!fullBecause) {
    const counted = await updateDeltalogFromChanges(db, target, reader, touched, now, async (trx, result) => {
      await fence(trx, now);
      await savePositions(trx, connectorKey, advanced);
      await trx('change_tracking')
        .where({ connector_id: connectorKey })
        .update({ dataset_keys: trx.raw('dataset_keys + ?', [result.datasetKeysDelta]) });
    });
    for (const source of sources) await source.trim();
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

  // The source's changes first, a millisecond earlier: what the full compare still changes after
  // them (stamped `now`) is what the change source missed.
  if (continued)
    await updateDeltalogFromChanges(db, target, reader, touched, now - 1, (trx) => fence(trx, now - 1));
  const report = await updateDeltalog(db, target, reader, now, (trx) => fence(trx, now), touched);
  const drift = continued ? await changedAt(db, target, now) : undefined;
  const datasetKeys = await datasetKeyCount(db, target);
  await db.transaction(async (trx) => {
    await savePositions(trx, connectorKey, advanced);
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
  for (const source of sources) await source.trim();
  return {
    report,
    compare: { mode: 'full', reason: fullBecause, ...(drift === undefined ? {} : { drift }) },
  };
}

function followerOf(target: CompareTarget): string {
  return typeof target === 'string' ? target : target.sharedCompare;
}

const FULL_WITHOUT_SOURCE: CompareRecord = { mode: 'full', reason: 'the dataset declares no change source' };

/** The keys touched in every source since the connector's position there. */
function touchedAcross(
  sources: FollowedSource[],
  positions: Map<string, string>,
  claims: Map<string, string>,
  follower: string,
): TouchedKeys {
  return unionOfKeys(
    sources.map((s) => s.touched(positions.get(s.sourceId), claims.get(s.sourceId)!, follower)),
  );
}

async function whyFullCompare(input: {
  state: TrackingRow | undefined;
  signature: string;
  sources: FollowedSource[];
  positions: Map<string, string>;
  claims: Map<string, string>;
  lost: string[];
  now: number;
  hours: number;
}): Promise<string | undefined> {
  const { state, sources, positions } = input;
  if (!state) return 'first compare with the change source';
  if (state.signature !== input.signature) return "the dataset's definition changed";
  for (const source of sources)
    if (!positions.has(source.sourceId)) return `a new change source on ${source.table}`;
  if (input.lost.length > 0) return input.lost[0];
  for (const source of sources) {
    const broken = await source.discontinuity(
      positions.get(source.sourceId)!,
      input.claims.get(source.sourceId)!,
    );
    if (broken) return broken;
  }
  const dueAt = Number(state.full_compare_at) + input.hours * 3600_000;
  if (input.now >= dueAt) return `the safety net's full compare (every ${input.hours} h)`;
  return undefined;
}

/**
 * A source the connector has no position in yet: hold the journal from this claim on until its
 * full compare saves the position (another follower trims only below every row, held or not).
 */
async function reserve(
  db: Db,
  connectorKey: string,
  sources: FollowedSource[],
  positions: Map<string, string>,
  claims: Map<string, string>,
) {
  for (const source of sources) {
    const { sourceId } = source;
    if (positions.has(sourceId)) continue;
    await db('change_positions')
      .insert({
        connector_id: connectorKey,
        source_id: sourceId,
        position: source.advance(undefined, claims.get(sourceId)!),
        applied: false,
      })
      .onConflict(['connector_id', 'source_id'])
      .ignore();
  }
}

/** The positions the connector has applied up to (not those only held for a first compare). */
async function positionsOf(db: Db, connectorKey: string): Promise<Map<string, string>> {
  const rows = (await db('change_positions').where({ connector_id: connectorKey, applied: true })) as {
    source_id: string;
    position: string;
  }[];
  return new Map(rows.map((row) => [row.source_id, row.position]));
}

async function savePositions(trx: Knex.Transaction, connectorKey: string, positions: Map<string, string>) {
  for (const [sourceId, position] of positions)
    await trx('change_positions')
      .insert({ connector_id: connectorKey, source_id: sourceId, position, applied: true })
      .onConflict(['connector_id', 'source_id'])
      .merge({ position, applied: true });
}

/**
 * Rows stamped at `at`: what the full compare changed. A deltalog's are pending, read through the
 * pending index; a shared compare's through its stamp index.
 */
async function changedAt(db: Db, target: CompareTarget, at: number): Promise<number> {
  const query =
    typeof target === 'string'
      ? db('deltalog').where({ connector_id: target, updated_at: at }).whereNull('committed_at')
      : db('shared_compare_rows').where({ compare_id: target.sharedCompare, updated_at: at });
  const [row] = (await query.count({ n: '*' })) as { n: number | string }[];
  return Number(row?.n ?? 0);
}

/**
 * Stop following the sources not in `keep` (all, without it): the connector's positions go, its
 * tracking state too when it follows nothing, and a source nobody follows any more is removed
 * (triggers dropped, journal deleted). Also what deleting a connector does.
 */
export async function forgetTracking(db: Db, connectorKey: string, keep = new Set<string>()): Promise<void> {
  const rows = (await db('change_positions').where({ connector_id: connectorKey }).select('source_id')) as {
    source_id: string;
  }[];
  const dropped = rows.map((row) => row.source_id).filter((sourceId) => !keep.has(sourceId));
  // Most refreshes follow what they followed before: nothing to forget, no statement to send.
  if (dropped.length === 0) return;
  await db('change_positions').where({ connector_id: connectorKey }).whereIn('source_id', dropped).delete();
  if (keep.size === 0) await db('change_tracking').where({ connector_id: connectorKey }).delete();
  await removeUnfollowedSources(db, dropped);
}
