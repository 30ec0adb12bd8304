import { createHash, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { gunzipSync, gzip as gzipCallback } from 'node:zlib';
import type { Knex } from 'knex';
import type { Db } from '../db';

type Executor = Db | Knex.Transaction;

const gzip = promisify(gzipCallback);

/**
 * The row-level change log of runs: for every delivered batch, which keys it added, updated or
 * removed, and which the destination rejected (with its reason) or held for later. Written in the
 * batch's own commit, one row per outcome with its keys compressed together (a 1,000-key batch is
 * one insert of a few kilobytes), kept `policy.changeLogDays` and trimmed by the janitor. Keys and
 * reasons only: attribute values never enter it. This is what answers "why is this customer not
 * in the audience?" (`deltasync changes <connector> --key …`).
 */

export const OUTCOMES = ['added', 'updated', 'removed', 'rejected', 'held'] as const;
export type Outcome = (typeof OUTCOMES)[number];

export interface LoggedChange {
  key: string;
  outcome: Outcome;
  /** Why it was rejected or held. */
  reason?: string;
}

export interface RunChange extends LoggedChange {
  runId: number;
  /** When the batch was committed (epoch ms). */
  at: number;
}

/** One outcome's keys of one batch, compressed, as run_changes stores them (less the commit time). */
export interface ChangeLogRow {
  run_id: number;
  connector_id: string;
  outcome: Outcome;
  first_key: string;
  last_key: string;
  key_count: number;
  payload: Buffer;
}

/**
 * One batch's outcomes, grouped by outcome into one row each. Compression runs on libuv's thread
 * pool, so the sender prepares a batch's rows while the batch before it commits, and the commit
 * itself only inserts them (writeChangeLog).
 */
export async function changeLogRows(batch: {
  runId: number;
  connectorKey: string;
  changes: LoggedChange[];
}): Promise<ChangeLogRow[]> {
  const byOutcome = new Map<Outcome, LoggedChange[]>();
  for (const change of batch.changes) {
    const group = byOutcome.get(change.outcome) ?? [];
    group.push(change);
    byOutcome.set(change.outcome, group);
  }
  return Promise.all(
    [...byOutcome].map(async ([outcome, changes]) => {
      const keys = changes.map((c) => c.key);
      const withReasons = outcome === 'rejected' || outcome === 'held';
      const { first, last } = keyRange(keys);
      return {
        run_id: batch.runId,
        connector_id: batch.connectorKey,
        outcome,
        first_key: first,
        last_key: last,
        key_count: keys.length,
        payload: await gzip(JSON.stringify(withReasons ? changes.map((c) => [c.key, c.reason ?? '']) : keys)),
      };
    }),
  );
}

/** Inside the batch's commit: its prepared change-log rows, stamped with the commit's time. */
export async function writeChangeLog(trx: Executor, rows: ChangeLogRow[], now: number): Promise<void> {
  if (rows.length === 0) return;
  await trx('run_changes').insert(rows.map((row) => ({ ...row, created_at: now })));
}

/**
 * The smallest and largest key in UTF-8 byte order (utf8mb4_bin's and SQLite's BINARY, the order
 * `--key` lookups compare in), in one pass.
 */
function keyRange(keys: string[]): { first: string; last: string } {
  let first = Buffer.from(keys[0]!, 'utf8');
  let last = first;
  for (let i = 1; i < keys.length; i++) {
    const key = Buffer.from(keys[i]!, 'utf8');
    if (Buffer.compare(key, first) < 0) first = key;
    if (Buffer.compare(key, last) > 0) last = key;
  }
  return { first: first.toString('utf8'), last: last.toString('utf8') };
}

export interface ChangeFilter {
  runId?: number;
  outcome?: Outcome;
  /** Only this key (its batches are found by their key range). */
  key?: string;
  /** From `next` of the previous page. */
  cursor?: string;
  /** Changes per page (default 500). */
  limit?: number;
}

export interface ChangePage {
  changes: RunChange[];
  /** Pass as `cursor` for the next page; absent on the last one. */
  next?: string;
}

/** Batch rows read per round while filling a page. */
const ROWS_PER_ROUND = 50;

/**
 * The connector's logged changes, newest batch first (within a batch, in the batch's order),
 * one page at a time. A cursor is `<batch id>:<position>`: where the next page starts.
 */
export async function listRunChanges(
  db: Db,
  connectorKey: string,
  filter: ChangeFilter = {},
): Promise<ChangePage> {
  const limit = filter.limit ?? 500;
  let [beforeId, skip] = parseCursor(filter.cursor);
  const changes: RunChange[] = [];
  for (;;) {
    let query = db('run_changes')
      .where({ connector_id: connectorKey })
      .orderBy('id', 'desc')
      .limit(ROWS_PER_ROUND)
      .select('id', 'run_id', 'outcome', 'payload', 'created_at');
    if (beforeId !== undefined) query = query.where('id', '<=', beforeId);
    if (filter.runId !== undefined) query = query.where({ run_id: filter.runId });
    if (filter.outcome) query = query.where({ outcome: filter.outcome });
    if (filter.key !== undefined)
      query = query.where('first_key', '<=', filter.key).where('last_key', '>=', filter.key);
    const rows = (await query) as {
      id: number;
      run_id: number;
      outcome: Outcome;
      payload: Buffer;
      created_at: number;
    }[];
    for (const row of rows) {
      const entries = decode(row.outcome, row.payload);
      for (let i = row.id === beforeId ? skip : 0; i < entries.length; i++) {
        const entry = entries[i]!;
        if (filter.key !== undefined && entry.key !== filter.key) continue;
        if (changes.length === limit) return { changes, next: `${row.id}:${i}` };
        changes.push({ ...entry, runId: Number(row.run_id), at: Number(row.created_at) });
      }
    }
    if (rows.length < ROWS_PER_ROUND) return { changes };
    beforeId = Number(rows[rows.length - 1]!.id) - 1;
    skip = 0;
  }
}

/**
 * A key as a client may name it in a request that passes through workflow history: a SHA-256 of
 * a random salt and the key, so that the history holds neither the key nor a digest a dictionary
 * could reverse without guessing the key itself.
 */
export interface KeyDigest {
  salt: string;
  sha256: string;
}

export function digestOf(key: string): KeyDigest {
  const salt = randomBytes(16).toString('hex');
  return {
    salt,
    sha256: createHash('sha256')
      .update(salt + key, 'utf8')
      .digest('hex'),
  };
}

/**
 * The connector's key with this digest, found in its deltalog (every key a run can have sent is
 * there until its deletion is purged, policy.retentionDays): one pass over the connector's rows.
 */
export async function keyOfDigest(
  db: Db,
  connectorKey: string,
  digest: KeyDigest,
): Promise<string | undefined> {
  const row = (await db('deltalog')
    .where({ connector_id: connectorKey })
    .whereRaw('SHA2(CONCAT(?, record_key), 256) = ?', [digest.salt, digest.sha256])
    .first('record_key')) as { record_key: string } | undefined;
  return row?.record_key;
}

/** The janitor: drop what was logged before `before` (epoch ms). */
export async function trimChangeLog(db: Db, connectorKey: string, before: number): Promise<number> {
  return db('run_changes').where({ connector_id: connectorKey }).where('created_at', '<', before).delete();
}

function decode(outcome: Outcome, payload: Buffer): LoggedChange[] {
  const parsed = JSON.parse(gunzipSync(payload).toString('utf8')) as unknown[];
  return parsed.map((entry) =>
    Array.isArray(entry)
      ? { key: String(entry[0]), outcome, ...(entry[1] ? { reason: String(entry[1]) } : {}) }
      : { key: String(entry), outcome },
  );
}

function parseCursor(cursor: string | undefined): [number | undefined, number] {
  if (cursor === undefined) return [undefined, 0];
  const match = /^(\d+):(\d+)$/.exec(cursor);
  if (!match) throw new RangeError(`not a cursor of this log: '${cursor}'`);
  return [Number(match[1]), Number(match[2])];
}
