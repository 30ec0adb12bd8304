import { createHash, randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { dialectOf, type Db } from '../db';
import {
  forgetTracking,
  updateFollowingChanges,
  type CompareRecord,
  type TrackedUpdate,
} from './change-tracking';
import { datasetSignature, type DatasetDefinition, type DatasetReader } from './dataset';
import type { BadRowReport } from './deltalog';

/**
 * One compare for many connectors. Connectors of one tenant whose datasets are the same (rows,
 * key, attributes, change source) share a compare of the dataset into `shared_compare_rows`: the
 * compare's statements, written to a table with the deltalog's compare columns and no delivery
 * state, each changed row stamped with a number that only grows. Each connector then applies the
 * rows stamped after its own position to its own deltalog (one statement bounded by the change),
 * so its deltalog ends as a compare of its own would leave it and its delivery stays its own.
 *
 * A refresh cycle of twenty connectors runs one compare: the first to take the lease compares;
 * the others wait, then use that compare because it began after they were asked for (their
 * workflows started: `askedAt`), so it saw every write committed before. Such a run's snapshot is
 * the compare's start when earlier, so `last_succeeded_at` never claims a later view than it had.
 * The compare's commit checks that no later compare committed first (a fence), so a lease that
 * ran out under a stalled worker cannot make a member skip rows.
 */

/** A tenant's compare of one dataset (never shared across tenants: the tenant is in the id). */
export function sharedCompareId(tenant: string, signature: string): string {
  return `cmp-${createHash('sha256').update(`${tenant}\u0000${signature}`).digest('hex').slice(0, 40)}`;
}

/** How many other connectors of the tenant have this dataset. */
async function datasetPeers(db: Db, tenant: string, connectorKey: string, signature: string) {
  const [row] = (await db('connectors')
    .where({ tenant, dataset_signature: signature })
    .whereNot({ id: connectorKey })
    .count({ n: '*' })) as { n: number | string }[];
  return Number(row?.n ?? 0);
}

/**
 * A direct first push writes the deltalog from the dataset, past the shared rows: they never learn
 * of the keys it pushed (nor, later, of their removal). So its next shared apply compares the whole
 * deltalog with every shared row, as a connector new to the group does, and sends what differs.
 */
export async function applyAllSharedRowsNext(db: Db, connectorKey: string): Promise<void> {
  await db('shared_compare_members')
    .where({ connector_id: connectorKey })
    .update({ applied_stamp: NOT_APPLIED });
}

export interface ConnectorCompareInput {
  connectorKey: string;
  tenant: string;
  /** The dataset as configured (it names the change source); `reader` is how its rows are read. */
  declared: DatasetDefinition;
  reader: DatasetReader;
  /** The refresh's snapshot time: the stamp of its own compare. */
  requestedAt: number;
  /**
   * When the refresh was asked for (its workflow's start; default `requestedAt`): a shared compare
   * begun since then saw every write committed before it, and serves it.
   */
  askedAt?: number;
  /** Why the deltalog must be checked against the whole dataset, if it must. */
  mustCompare?: string;
  clock: () => number;
}

/**
 * Step 1's compare for a connector: its own, or, when other connectors of its tenant have the same
 * dataset, one compare shared by all of them, applied to its deltalog.
 */
export async function compareForConnector(db: Db, input: ConnectorCompareInput): Promise<TrackedUpdate> {
  const { connectorKey, tenant, declared } = input;
  const signature = datasetSignature(declared);
  // Connectors saved before signatures were kept get theirs on their first refresh.
  await db('connectors')
    .where({ id: connectorKey })
    .where((q) => q.whereNull('dataset_signature').orWhereNot('dataset_signature', signature))
    .update({ dataset_signature: signature });
  const peers = await datasetPeers(db, tenant, connectorKey, signature);
  if (peers === 0) {
    const own = await updateFollowingChanges(
      db,
      connectorKey,
      declared,
      input.reader,
      input.requestedAt,
      input.mustCompare,
    );
    await leaveSharedCompare(db, connectorKey);
    return own;
  }
  return updateThroughSharedCompare(db, { ...input, connectors: peers + 1 });
}

type SharedUpdateInput = ConnectorCompareInput & { connectors: number };

/** How long a lease holds without renewal, and how often the leaseholder renews it. */
const LEASE_MS = 120_000;
const RENEW_MS = 20_000;
/** How often a waiting refresh looks again. */
const POLL_MS = 200;

interface SharedCompareRow {
  stamp: number | string;
  compared_from: number | string;
  trimmed_stamp: number | string;
  report: string | null;
  compare: string | null;
}

/**
 * Step 1 for a connector that shares its dataset: make sure a compare begun since the refresh was
 * asked for has run (run it, or wait for the one running), then apply what it changed to the
 * deltalog.
 */
async function updateThroughSharedCompare(db: Db, input: SharedUpdateInput): Promise<TrackedUpdate> {
  const compareId = sharedCompareId(input.tenant, datasetSignature(input.declared));
  const { position, left } = await join(db, compareId, input);
  const { row, ranCompare } = await compareSince(db, compareId, input);
  // The shared compare follows the change sources now; the connector's own positions go (after
  // the compare, so that sources it alone followed are not removed and reinstalled).
  await forgetTracking(db, input.connectorKey);
  if (left) await dropIfUnused(db, left);
  const after = input.mustCompare ? undefined : position;
  await applySharedRows(db, input.connectorKey, compareId, after, Number(row.stamp), input.clock());
  await trimRemovedRows(db, compareId);
  const compare = JSON.parse(row.compare!) as CompareRecord;
  return {
    report: JSON.parse(row.report!) as BadRowReport,
    compare: { ...compare, shared: { connectors: input.connectors, ranCompare } },
    asOf: Math.min(input.requestedAt, Number(row.compared_from)),
  };
}

/** Position meaning "not applied yet": the next apply compares with every shared row. */
const NOT_APPLIED = -1;

/**
 * Become a member before anything else, so the compare cannot be dropped meanwhile (a compare
 * and its members change under the compare row's lock). Returns the position the connector has
 * (undefined: none yet) and the compare it left, if it was a member of another.
 */
async function join(db: Db, compareId: string, input: SharedUpdateInput) {
  // Inserted before the transaction: a duplicate insert's shared lock, then the lock below, would
  // deadlock two joiners.
  await db('shared_compares')
    .insert({ compare_id: compareId, tenant: input.tenant })
    .onConflict('compare_id')
    .ignore();
  return db.transaction(async (trx) => {
    if (!(await lockCompare(trx, compareId)))
      throw new Error(`the shared compare ${compareId} was just removed; retry`);
    const member = (await trx('shared_compare_members')
      .where({ connector_id: input.connectorKey })
      .first()) as { compare_id: string; applied_stamp: number | string } | undefined;
    if (member?.compare_id === compareId) {
      const stamp = Number(member.applied_stamp);
      return { position: stamp === NOT_APPLIED ? undefined : stamp, left: undefined };
    }
    const row = { compare_id: compareId, applied_stamp: NOT_APPLIED };
    await trx('shared_compare_members')
      .insert({ connector_id: input.connectorKey, ...row })
      .onConflict('connector_id')
      .merge(row);
    return { position: undefined, left: member?.compare_id };
  });
}

async function lockCompare(trx: Knex.Transaction, compareId: string) {
  const query = trx('shared_compares').where({ compare_id: compareId });
  if (dialectOf(trx as unknown as Db) === 'mysql') query.forUpdate();
  return (await query.first()) as SharedCompareRow | undefined;
}

/** Wait for, or run, a compare that began at or after the refresh asked. */
async function compareSince(
  db: Db,
  compareId: string,
  input: SharedUpdateInput,
): Promise<{ row: SharedCompareRow; ranCompare: boolean }> {
  const holder = randomUUID();
  const serves = (row: SharedCompareRow) =>
    Number(row.compared_from) >= (input.askedAt ?? input.requestedAt) && row.report !== null;
  for (;;) {
    const row = await readCompare(db, compareId);
    if (serves(row)) return { row, ranCompare: false };
    if (await takeLease(db, compareId, holder, input.clock())) {
      let ranCompare = false;
      try {
        // The compare whose lease this follows may have finished since the read above.
        const latest = await readCompare(db, compareId);
        if (!serves(latest)) {
          await runCompare(db, compareId, holder, input, latest);
          ranCompare = true;
        }
      } finally {
        await db('shared_compares').where({ compare_id: compareId, leased_by: holder }).update({
          leased_by: null,
          lease_until: 0,
        });
      }
      return { row: await readCompare(db, compareId), ranCompare };
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

async function readCompare(db: Db, compareId: string): Promise<SharedCompareRow> {
  return (await db('shared_compares').where({ compare_id: compareId }).first()) as SharedCompareRow;
}

async function takeLease(db: Db, compareId: string, holder: string, now: number): Promise<boolean> {
  const taken = await db('shared_compares')
    .where({ compare_id: compareId })
    .where('lease_until', '<', now)
    .update({ leased_by: holder, lease_until: now + LEASE_MS });
  return taken === 1;
}

/** Compare under the lease; `previous` is the group's row as the lease found it. */
async function runCompare(
  db: Db,
  compareId: string,
  holder: string,
  input: SharedUpdateInput,
  previous: SharedCompareRow,
) {
  const renew = setInterval(() => {
    void db('shared_compares')
      .where({ compare_id: compareId, leased_by: holder })
      .update({ lease_until: input.clock() + LEASE_MS })
      .catch(() => undefined);
  }, RENEW_MS);
  try {
    const comparedFrom = input.clock();
    // Two stamps per compare (the change source's pre-pass takes the one below), always growing.
    const stamp = Math.max(comparedFrom, Number(previous.stamp) + 2);
    const target = { sharedCompare: compareId };
    const tracked = await updateFollowingChanges(
      db,
      target,
      input.declared,
      input.reader,
      stamp,
      undefined,
      (trx, at) => fence(trx, compareId, at),
    );
    await restampRechecks(db, compareId, stamp, comparedFrom);
    await db('shared_compares')
      .where({ compare_id: compareId })
      .update({
        compared_from: comparedFrom,
        report: JSON.stringify(tracked.report),
        compare: JSON.stringify(tracked.compare),
      });
  } finally {
    clearInterval(renew);
  }
}

/**
 * Inside each compare transaction, before it commits: its rows become visible with the stamp
 * they carry, so no compare with a later stamp may have committed first (members may already
 * have applied past it). Locking the row also serializes two compares that overlap.
 */
async function fence(trx: Knex.Transaction, compareId: string, stamp: number): Promise<void> {
  const row = await lockCompare(trx, compareId);
  if (!row) throw new Error(`the shared compare ${compareId} was removed while it ran; retry`);
  if (Number(row.stamp) >= stamp)
    throw new Error(`a later compare of ${compareId} committed first (stamp ${row.stamp} ≥ ${stamp}); retry`);
  await trx('shared_compares').where({ compare_id: compareId }).update({ stamp });
}

/**
 * Keys a member sent with attributes newer than the shared compare had seen: stamp them with this
 * compare, so every member checks them again (the dataset may have gone back to what the shared
 * rows hold, which no compare would see as a change). Those noted before this compare began are done.
 */
async function restampRechecks(db: Db, compareId: string, stamp: number, comparedFrom: number) {
  const noted = db('shared_compare_rechecks').where({ compare_id: compareId }).select('record_key');
  await db('shared_compare_rows')
    .where({ compare_id: compareId })
    .whereIn('record_key', noted)
    .update({ updated_at: stamp });
  await db('shared_compare_rechecks')
    .where({ compare_id: compareId })
    .where('noted_at', '<', comparedFrom)
    .delete();
}

/**
 * The shared rows stamped after the connector's position (`after`), applied to its deltalog
 * exactly as its own compare would: a key that entered or changed becomes pending with the shared
 * hash, a key that left becomes a pending deletion (its hash kept). Without a position, the
 * deltalog is compared with every shared row instead. The position moves in the same transaction.
 */
async function applySharedRows(
  db: Db,
  connectorKey: string,
  compareId: string,
  after: number | undefined,
  upTo: number,
  now: number,
) {
  const dialect = dialectOf(db);
  // READ COMMITTED, as the compare: reading the shared rows must not lock them (nor the gaps of
  // other members' deltalogs) against the members applying beside this one.
  await db.transaction(
    async (trx) => {
      const since = after === undefined ? [] : [after, upTo];
      await trx.raw(applyStatement(dialect, after !== undefined), [
        connectorKey,
        now,
        connectorKey,
        compareId,
        ...since,
      ]);
      if (after === undefined) {
        const bindings =
          dialect === 'mysql' ? [compareId, now, connectorKey] : [now, compareId, connectorKey];
        await trx.raw(removeAbsentStatement(dialect), bindings);
      }
      await trx('shared_compare_members')
        .where({ connector_id: connectorKey })
        .update({ applied_stamp: upTo });
    },
    dialect === 'mysql' ? { isolationLevel: 'read committed' } : undefined,
  );
}

const PENDING_AGAIN = 'committed_at = NULL, attempts = 0, last_error = NULL';

function applyStatement(dialect: 'mysql' | 'sqlite', sinceStamp: boolean): string {
  const insert =
    'INSERT INTO deltalog (connector_id, record_key, in_dataset, attr_hash, updated_at, on_remote, committed_at, attempts)';
  const select = `SELECT ?, s.record_key, s.in_dataset, s.attr_hash, ?, 0, NULL, 0
    FROM shared_compare_rows s LEFT JOIN deltalog dl ON dl.connector_id = ? AND dl.record_key = s.record_key
    WHERE s.compare_id = ? ${sinceStamp ? 'AND s.updated_at > ? AND s.updated_at <= ?' : ''}
      AND ((s.in_dataset = 1 AND (dl.record_key IS NULL OR dl.in_dataset = 0 OR dl.attr_hash IS NULL OR dl.attr_hash <> s.attr_hash))
        OR (s.in_dataset = 0 AND dl.in_dataset = 1))`;
  // A key that left keeps its hash, as the compare's own removal does.
  const onConflict =
    dialect === 'mysql'
      ? `ON DUPLICATE KEY UPDATE attr_hash = CASE WHEN VALUES(in_dataset) = 1 THEN VALUES(attr_hash) ELSE deltalog.attr_hash END,
         in_dataset = VALUES(in_dataset), updated_at = VALUES(updated_at), ${PENDING_AGAIN}`
      : `ON CONFLICT (connector_id, record_key) DO UPDATE SET
         attr_hash = CASE WHEN excluded.in_dataset = 1 THEN excluded.attr_hash ELSE deltalog.attr_hash END,
         in_dataset = excluded.in_dataset, updated_at = excluded.updated_at, ${PENDING_AGAIN}`;
  return `${insert} ${select} ${onConflict}`;
}

/** Keys the deltalog holds in the dataset that no shared row does (a full apply only). */
function removeAbsentStatement(dialect: 'mysql' | 'sqlite'): string {
  return dialect === 'mysql'
    ? `UPDATE deltalog dl LEFT JOIN shared_compare_rows s
         ON s.compare_id = ? AND s.record_key = dl.record_key AND s.in_dataset = 1
       SET dl.in_dataset = 0, dl.updated_at = ?, ${PENDING_AGAIN.replace(/(\w+) =/g, 'dl.$1 =')}
       WHERE dl.connector_id = ? AND dl.in_dataset = 1 AND s.record_key IS NULL`
    : `UPDATE deltalog SET in_dataset = 0, updated_at = ?, ${PENDING_AGAIN}
       WHERE NOT EXISTS (SELECT 1 FROM shared_compare_rows s
         WHERE s.compare_id = ? AND s.record_key = deltalog.record_key AND s.in_dataset = 1)
       AND connector_id = ? AND in_dataset = 1`;
}

/**
 * Removed keys every member has applied are of no further use: deleted, from the last trim's
 * stamp on (a range of the stamp index, so the work follows the change).
 */
async function trimRemovedRows(db: Db, compareId: string) {
  const [bounds] = (await db('shared_compare_members')
    .where({ compare_id: compareId })
    .min({ low: 'applied_stamp' })) as { low: number | string | null }[];
  const row = await readCompare(db, compareId);
  const upTo = Number(bounds?.low ?? 0);
  const from = Number(row.trimmed_stamp);
  if (upTo <= from) return;
  await db('shared_compare_rows')
    .where({ compare_id: compareId, in_dataset: false })
    .where('updated_at', '>', from)
    .where('updated_at', '<=', upTo)
    .delete();
  await db('shared_compares').where({ compare_id: compareId }).update({ trimmed_stamp: upTo });
}

/**
 * The connector stops applying a shared compare (it shares its dataset no more, or is deleted);
 * a compare nobody applies is removed with its rows and change positions.
 */
export async function leaveSharedCompare(db: Db, connectorKey: string): Promise<void> {
  const member = (await db('shared_compare_members')
    .where({ connector_id: connectorKey })
    .first('compare_id')) as { compare_id: string } | undefined;
  if (!member) return;
  await db('shared_compare_members').where({ connector_id: connectorKey }).delete();
  await dropIfUnused(db, member.compare_id);
}

async function dropIfUnused(db: Db, compareId: string) {
  const dropped = await db.transaction(async (trx) => {
    if (!(await lockCompare(trx, compareId))) return false;
    if (await trx('shared_compare_members').where({ compare_id: compareId }).first('connector_id'))
      return false;
    await trx('shared_compare_rechecks').where({ compare_id: compareId }).delete();
    await trx('shared_compare_rows').where({ compare_id: compareId }).delete();
    await trx('shared_compares').where({ compare_id: compareId }).delete();
    return true;
  });
  if (dropped) await forgetTracking(db, compareId);
}
