import type { Db } from '../db';
import type { ConnectorDefinition } from '../connectors/definition';
import { DestinationError, type BatchOutcome, type Destination, type Member } from '../connectors/types';
import { jsonBytes, splitByLimits } from './batching';
import { directReader, type DatasetReader } from './dataset';
import {
  commitDelivered,
  fetchRecords,
  markFilled,
  readChangesetPage,
  recordFillRejections,
  recordRejections,
  recordSentHashes,
  type ChangesetKind,
  type ChangesetRow,
} from './deltalog';
import { talliesOfFailure, talliesOfOutcome, totalOf, type EndpointTallies } from './api-calls';
import { incrementEndpointCalls, incrementRunCounters, loadCheckpoint, saveCheckpoint } from './runs';

/**
 * Sending: walk a changeset in key order, page by page; split each page into calls that fit the
 * destination's record and byte limits; after every call, record its outcome in the same
 * transaction as the cursor. A retried or restarted send resumes after the last recorded call
 * (the database's checkpoint, never a heartbeat that may lag it), so at most the call in flight is
 * sent twice. Progress reports carry counts only: the cursor is a record key, and what an activity
 * heartbeats can end up in workflow history.
 */

/**
 * upserts: pending additions and updates; deletions: pending deletions; full: the whole dataset;
 * fill: the whole dataset into a new list (committed only when the new list is swapped in).
 */
export type SendPhase = 'upserts' | 'deletions' | 'full' | 'fill';

const changesetOf: Record<SendPhase, ChangesetKind> = {
  upserts: 'upserts',
  deletions: 'deletions',
  full: 'dataset',
  fill: 'dataset',
};

export interface SendProgress {
  phase: SendPhase;
  /** Records handled in this phase so far (delivered, rejected or failed), across retries. */
  recordsDone: number;
  batches: number;
  delivered: number;
  rejected: number;
  /** Keys pending in the deltalog that the dataset no longer supplies (left pending). */
  skipped: number;
  apiCalls: number;
  failedCalls: number;
  rateLimitWaits: number;
  bytesSent: number;
}

/** What a finished send phase reports to the workflow: its counts. */
export type SendTotals = SendProgress;

export interface SendOptions {
  db: Db;
  connector: ConnectorDefinition;
  /** The connector's rows in the deltalog (`<tenant>/<id>`; see connectorKey). */
  connectorKey: string;
  destination: Destination;
  runId: number;
  phase: SendPhase;
  /** How to read the dataset's attributes (default: straight from `connector.dataset`). */
  source?: DatasetReader;
  now?: () => number;
  /** Called after every recorded call (heartbeat here). */
  onBatch?: (progress: SendProgress) => void | Promise<void>;
  /** Stop between calls when aborted (activity cancellation, worker shutdown). */
  signal?: AbortSignal;
}

/** The destination operation a send phase calls (and the endpoint its calls count at). */
export function operationOf(phase: SendPhase): 'add' | 'remove' {
  return phase === 'deletions' ? 'remove' : 'add';
}

export function batchSizeFor(connector: ConnectorDefinition, destination: Destination): number {
  const limit = destination.limits.recordsPerCall;
  return Math.max(1, Math.min(connector.policy.batchSize ?? limit, limit));
}

/** One record of a page: the key, and what is sent for it (nothing when the dataset lost it). */
interface Item {
  key: string;
  member?: Member;
  /** Delivered without a call: an attribute change for a destination that keeps no attributes. */
  nothingToSend?: boolean;
  /** Set when the row changed after the deltalog update read it: the hash of what is sent now. */
  newHash?: string;
}

export async function sendPhase(options: SendOptions): Promise<SendProgress> {
  const { db, connector, destination, runId, phase } = options;
  const start = (await loadCheckpoint(db, runId, phase)) ?? { cursor: '', recordsDone: 0 };
  let cursor = start.cursor;
  const progress: SendProgress = {
    phase,
    recordsDone: start.recordsDone,
    batches: 0,
    delivered: 0,
    rejected: 0,
    skipped: 0,
    apiCalls: 0,
    failedCalls: 0,
    rateLimitWaits: 0,
    bytesSent: 0,
  };
  const maxRecords = batchSizeFor(connector, destination);
  const maxBytes = destination.limits.bytesPerCall;
  const sizeOf = (item: Item) =>
    item.member ? jsonBytes(item.member) : phase === 'deletions' ? jsonBytes(item.key) : 0;

  for (;;) {
    const page = await readChangesetPage(
      db,
      options.connectorKey,
      changesetOf[phase],
      cursor,
      maxRecords,
      connector.policy.maxAttempts,
    );
    if (page.length === 0) return progress;
    const items = await itemsOf(options, page);
    for (const batch of splitByLimits(items, { maxRecords, maxBytes }, sizeOf)) {
      options.signal?.throwIfAborted();
      const result = await deliver(options, batch);
      const bytes = batch.reduce((sum, item) => sum + sizeOf(item), 0);
      await whileDatabaseUnavailable(options.signal, () =>
        record(options, batch, result, bytes, progress.recordsDone + batch.length),
      );
      cursor = batch[batch.length - 1]!.key;
      progress.recordsDone += batch.length;
      progress.batches += 1;
      progress.delivered += result.delivered.length;
      progress.rejected += result.outcome.rejected.length;
      progress.skipped += result.skipped;
      progress.apiCalls += result.outcome.apiCalls;
      progress.failedCalls += result.failedCalls;
      progress.rateLimitWaits += result.outcome.rateLimitWaits;
      progress.bytesSent += result.outcome.apiCalls > 0 ? bytes : 0;
      await options.onBatch?.({ ...progress });
    }
  }
}

/** Deletions send keys; every other phase sends the dataset's current attributes. */
async function itemsOf(options: SendOptions, page: ChangesetRow[]): Promise<Item[]> {
  if (options.phase === 'deletions') return page.map((row) => ({ key: row.record_key }));
  // A destination that keeps no attributes already holds a key that is on it: nothing to send.
  const skipUpdates = options.phase === 'upserts' && !options.destination.capabilities.updateAttributes;
  const toFetch = page.filter((row) => !(skipUpdates && row.on_remote)).map((row) => row.record_key);
  const source = options.source ?? directReader(options.db, options.connector.dataset);
  const records = await source.read((executor) => fetchRecords(executor, source.dataset, toFetch));
  return page.map(({ record_key: key, on_remote, attr_hash }) => {
    if (skipUpdates && on_remote) return { key, nothingToSend: true };
    const found = records.get(key);
    if (!found) return { key };
    const member = { key, attributes: found.attributes };
    return found.hash === attr_hash ? { key, member } : { key, member, newHash: found.hash };
  });
}

interface CallResult {
  delivered: string[];
  outcome: BatchOutcome;
  failedCalls: number;
  /** What the call cost, by endpoint and outcome. */
  tallies: EndpointTallies;
  skipped: number;
}

const NO_CALL: BatchOutcome = { rejected: [], apiCalls: 0, rateLimitWaits: 0 };

/**
 * One destination call. A call the destination refuses as a whole (a 4xx that is not about
 * credentials or the list) fails only these records: they stay pending with the reason, and the
 * run's success threshold decides. Fatal and retryable errors propagate to the activity.
 */
async function deliver(options: SendOptions, batch: Item[]): Promise<CallResult> {
  const { destination, phase } = options;
  const members = phase === 'deletions' ? [] : batch.flatMap((item) => (item.member ? [item.member] : []));
  const sentKeys = phase === 'deletions' ? batch.map((item) => item.key) : members.map((m) => m.key);
  const unsent = batch.filter((item) => item.nothingToSend).map((item) => item.key);
  const skipped = batch.length - sentKeys.length - unsent.length;
  const operation = operationOf(phase);
  if (sentKeys.length === 0)
    return { delivered: unsent, outcome: NO_CALL, failedCalls: 0, tallies: {}, skipped };
  try {
    const outcome =
      phase === 'deletions' ? await destination.remove(sentKeys) : await destination.add(members);
    const rejected = new Set(outcome.rejected.map((r) => r.key));
    const delivered = [...unsent, ...sentKeys.filter((k) => !rejected.has(k))];
    return { delivered, outcome, failedCalls: 0, tallies: talliesOfOutcome(outcome, operation), skipped };
  } catch (error) {
    if (!(error instanceof DestinationError) || error.kind !== 'batch') throw error;
    const reason = `batch refused: ${error.message}`;
    const tallies = talliesOfFailure(error, operation);
    const total = totalOf(tallies);
    return {
      delivered: unsent,
      outcome: {
        rejected: sentKeys.map((key) => ({ key, reason })),
        apiCalls: total.calls,
        rateLimitWaits: error.rateLimitWaits ?? 0,
      },
      failedCalls: total.failed,
      tallies,
      skipped,
    };
  }
}

/** The call's outcome, its cost and the cursor, in one transaction. */
async function record(
  options: SendOptions,
  batch: Item[],
  result: CallResult,
  bytes: number,
  recordsDone: number,
) {
  const { db, runId, phase } = options;
  const key = options.connectorKey;
  const now = (options.now ?? Date.now)();
  await db.transaction(async (trx) => {
    if (phase === 'fill') {
      await markFilled(trx, key, result.delivered);
      await recordFillRejections(trx, key, result.outcome.rejected);
    } else {
      await commitDelivered(trx, key, result.delivered, now);
      await recordRejections(trx, key, result.outcome.rejected);
    }
    const delivered = new Set(result.delivered);
    const changed = batch.filter((item) => item.newHash !== undefined && delivered.has(item.key));
    await recordSentHashes(
      trx,
      key,
      changed.map((item) => ({ key: item.key, hash: item.newHash! })),
    );
    await incrementRunCounters(trx, runId, {
      records_sent: result.delivered.length,
      rejected: result.outcome.rejected.length,
      deferred: result.outcome.rejected.filter((r) => r.deferred).length,
      api_calls: result.outcome.apiCalls,
      failed_calls: result.failedCalls,
      rate_limit_waits: result.outcome.rateLimitWaits,
      bytes_sent: result.outcome.apiCalls > 0 ? bytes : 0,
    });
    await incrementEndpointCalls(trx, runId, result.tallies);
    await saveCheckpoint(trx, runId, phase, { cursor: batch[batch.length - 1]!.key, recordsDone }, now);
  });
}

/**
 * Runs `write` (recording a call that was made), trying again while the database is briefly
 * unreachable (a restart, a failover, a dropped connection): the batch is delivered, and giving
 * up now would send it again on the retry. Past the deadline the error goes up and the activity's
 * retry resends at most this batch. A write whose commit went through but whose answer was lost
 * is repeated harmlessly, except that the run's counters may count the call twice.
 */
async function whileDatabaseUnavailable(signal: AbortSignal | undefined, write: () => Promise<void>) {
  const deadline = Date.now() + DATABASE_RETRY_MS;
  for (let delayMs = 500; ; delayMs = Math.min(delayMs * 2, 5_000)) {
    try {
      return await write();
    } catch (error) {
      if (!isTransientDatabaseError(error) || Date.now() + delayMs > deadline) throw error;
      signal?.throwIfAborted();
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}
const DATABASE_RETRY_MS = 120_000;

const TRANSIENT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'PROTOCOL_CONNECTION_LOST',
  'ER_SERVER_SHUTDOWN',
  'ER_CON_COUNT_ERROR',
  'ER_LOCK_DEADLOCK',
  'ER_LOCK_WAIT_TIMEOUT',
  'SQLITE_BUSY',
]);

/** A connection-level or contention error that a moment later may well not happen again. */
export function isTransientDatabaseError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const { code, fatal } = error as { code?: unknown; fatal?: unknown };
  if (typeof code === 'string' && TRANSIENT_CODES.has(code)) return true;
  // mysql2 marks errors that closed the connection `fatal`; knex's pool times out while the
  // server is gone.
  return fatal === true || error.name === 'KnexTimeoutError';
}
