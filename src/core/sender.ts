import type { Db } from '../db';
import type { ConnectorDefinition } from './connector';
import {
  capabilitiesOf,
  DestinationError,
  type Destination,
  type BatchResult,
  type Member,
  type Rejection,
} from './destination';
import { addEstimate, type EstimatedMatches } from './match-estimate';
import { changeLogRows, writeChangeLog, type ChangeLogRow, type LoggedChange } from './change-log';
import { jsonBytes, splitByLimits } from './batching';
import { directReader, type DatasetReader } from './dataset';
import {
  adoptInFlight,
  clearInFlight,
  commitDelivered,
  fetchRecords,
  insertDirectPush,
  markInFlight,
  readDatasetPage,
  markFilled,
  readChangesetPage,
  recordFillRejections,
  recordRejections,
  recordSentHashes,
  type ChangesetKind,
  type ChangesetRow,
} from './deltalog';
import { addTallies, measureOperation, totalOf, type EndpointTallies, type Measured } from './api-calls';
import { noopObserver, type EngineObserver } from './observer';
import { PlanningError } from './plan';
import { settle, type RunMeter } from './refresh/calls';
import { addRunTimings, loadCheckpoint, recordCalls, saveCheckpoint } from './runs';

/**
 * Sending: walk a changeset in key order, page by page; split each page into calls that fit the
 * destination's record and byte limits (no batch handed to `add` or `remove` exceeds
 * `limits.recordsPerCall` or `limits.bytesPerCall`; a record larger than `bytesPerCall` on its
 * own is rejected, never sent); after every call, record its outcome and what it cost (measured
 * around the call, core/refresh/calls.ts) in the same transaction as the cursor. A retried or restarted send resumes after the last recorded call
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
  /** What the destination counted itself as received, and as invalid among them (0: it does not say). */
  reportedReceived?: number;
  reportedInvalid?: number;
  /** The destination's match estimates, summed (see EstimatedMatches); absent where it gives none. */
  estimated?: EstimatedMatches;
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
  /** Told of every call's cost and every committed batch (metrics). */
  observer?: EngineObserver;
  /** Stop between calls when aborted (activity cancellation, worker shutdown). */
  signal?: AbortSignal;
  /**
   * A direct first push (upserts or full, the deltalog empty): pages come from the dataset in its
   * key order and each delivered batch is written to the deltalog committed (insertDirectPush).
   */
  direct?: boolean;
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
  /** A direct first push: the hash of what is sent, written to the deltalog with the outcome. */
  hash?: string;
  /** Rejected without a call: larger on its own than the destination accepts in one call. */
  tooLarge?: string;
  /** What it adds to a call's body, in bytes (0 when it is not sent). */
  bytes: number;
  /** The destination held it before this send: an upsert of it is an update, not an addition. */
  onRemote?: boolean;
}

/** How a phase writes: the operation, its endpoint, and the call. */
interface Writer {
  endpoint: 'add' | 'remove';
  send(batch: { members: Member[]; keys: string[] }): Promise<BatchResult>;
}

/**
 * Deletions go through `remove`; every other phase through `add` (fill: of the list being built).
 * A destination without the method cannot run the phase.
 */
function writerFor(destination: Destination, phase: SendPhase): Writer {
  if (phase === 'deletions') {
    const remove = destination.remove?.bind(destination);
    if (!remove) throw new PlanningError('this destination cannot remove members');
    return { endpoint: 'remove', send: ({ keys }) => remove(keys) };
  }
  const add = destination.add?.bind(destination);
  if (!add) throw new PlanningError('this destination cannot add members');
  return { endpoint: 'add', send: ({ members }) => add(members) };
}

export async function sendPhase(options: SendOptions): Promise<SendProgress> {
  const { db, connector, destination, runId, phase } = options;
  const writer = writerFor(destination, phase);
  const meter: RunMeter = {
    db,
    runId,
    observer: options.observer ?? noopObserver,
    destination: connector.destination.type,
  };
  // A retried direct push: what its last attempt left in flight is pending from now on.
  if (options.direct) await adoptInFlight(db, options.connectorKey, (options.now ?? Date.now)());
  const start = (await loadCheckpoint(db, runId, phase)) ?? { cursor: '', recordsDone: 0 };
  const cursor = start.cursor;
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
  const splitBudget: SplitBudget = {
    left: destination.limits.splitRefusedBatches === false ? 0 : connector.policy.splitCallBudget,
  };
  const maxBytes = destination.limits.bytesPerCall;
  const sizeOf = (item: Item) => item.bytes;

  const spent = { readMs: 0, fetchMs: 0, callMs: 0, commitMs: 0, changeLogMs: 0 };
  const timed = async <T>(part: keyof typeof spent, work: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    try {
      return await work();
    } finally {
      spent[part] += performance.now() - started;
    }
  };

  /** One page of the changeset after `after`, with what is sent for each of its keys. */
  const readPage = async (after: string): Promise<Item[]> => {
    const unsized = options.direct ? await readDatasetItems(after) : await readChangesetItems(after);
    // Each record's size is measured once: batching, the byte limit and the run's bytes use it.
    return unsized.map((item): Item => {
      const bytes = item.member ? jsonBytes(item.member) : phase === 'deletions' ? jsonBytes(item.key) : 0;
      if (maxBytes === undefined || bytes <= maxBytes) return { ...item, bytes };
      const tooLarge = `record is ${bytes} bytes, more than the destination accepts in one call (${maxBytes} bytes)`;
      return { ...item, tooLarge, bytes: 0 };
    });
  };

  /** A direct first push reads the dataset itself, attributes and hashes in the same statement. */
  const readDatasetItems = async (after: string): Promise<Omit<Item, 'bytes'>[]> => {
    const source = sourceOf(options);
    const records = await timed('readMs', () =>
      source.read((executor) => readDatasetPage(executor, source.dataset, after, maxRecords)),
    );
    return records.map(({ key, attributes, hash }) => ({ key, member: { key, attributes }, hash }));
  };

  const readChangesetItems = async (after: string): Promise<Omit<Item, 'bytes'>[]> => {
    const page = await timed('readMs', () =>
      readChangesetPage(
        db,
        options.connectorKey,
        changesetOf[phase],
        after,
        maxRecords,
        connector.policy.maxAttempts,
      ),
    );
    if (page.length === 0) return [];
    return timed('fetchMs', () => itemsOf(options, page));
  };

  /** The phase's batches in key order, the next page read while this one's calls go out. */
  async function* batches(): AsyncGenerator<Item[]> {
    let next = readPage(cursor);
    try {
      for (;;) {
        const items = await next;
        if (items.length === 0) return;
        next = readPage(items[items.length - 1]!.key);
        next.catch(() => undefined); // awaited on the next turn, or below when the send stops first
        yield* splitByLimits(items, { maxRecords, maxBytes }, sizeOf);
      }
    } finally {
      // A send that stops leaves no read of the next page running behind it.
      await next.catch(() => undefined);
    }
  }

  /** Records one delivered call, in order: its outcome, cost and cursor in one transaction. */
  const commit = async (batch: Item[], result: CallResult, logRows: ChangeLogRow[]) => {
    const total = totalOf(result.tallies);
    const bytes = total.calls > 0 ? batch.reduce((sum, item) => sum + sizeOf(item), 0) : 0;
    spent.changeLogMs += await timed('commitMs', () =>
      whileDatabaseUnavailable(options.signal, () =>
        record(options, batch, result, logRows, bytes, progress.recordsDone + batch.length),
      ),
    );
    meter.observer.onBatch(meter.destination, {
      delivered: result.delivered.length,
      rejected: result.rejected.length,
      ...(result.reported ? { reported: result.reported } : {}),
      ...(result.estimated ? { estimated: result.estimated } : {}),
    });
    progress.recordsDone += batch.length;
    progress.batches += 1;
    progress.delivered += result.delivered.length;
    progress.rejected += result.rejected.length;
    progress.skipped += result.skipped;
    progress.apiCalls += total.calls;
    progress.failedCalls += total.failed;
    progress.rateLimitWaits += total.rateLimited;
    progress.bytesSent += bytes;
    if (result.reported) {
      progress.reportedReceived = (progress.reportedReceived ?? 0) + result.reported.received;
      progress.reportedInvalid = (progress.reportedInvalid ?? 0) + result.reported.invalid;
    }
    if (result.estimated) progress.estimated = addEstimate(progress.estimated, result.estimated);
    await options.onBatch?.({ ...progress });
  };

  /*
   * A pipeline of bounded depth: the next page is read while the current one's calls go out, and
   * up to `maxConcurrent` batches are in flight at once. A batch is in flight from its call until
   * its commit; commits happen strictly in key order (a chain), so the checkpoint only ever moves
   * over delivered, recorded batches, and a stop or crash re-sends at most the batches in flight
   * (one, for a destination that takes one call at a time).
   */
  // A fill writes a session or a list being built, whose batches go in order (Meta's batch_seq):
  // one at a time, whatever the account allows.
  const depth = phase === 'fill' ? 1 : Math.max(1, destination.limits.maxConcurrent ?? 1);
  // `policy.changeLogDays: 0` keeps no change log: none is written.
  const keepsChangeLog = connector.policy.changeLogDays > 0;
  const inFlight = new Set<Promise<void>>();
  let committed: Promise<void> = Promise.resolve();
  let failure: { error: unknown } | undefined;
  try {
    for await (const batch of batches()) {
      while (inFlight.size >= depth && !failure) await Promise.race(inFlight);
      if (failure) break;
      options.signal?.throwIfAborted();
      const call = timed('callMs', async () => {
        if (options.direct)
          await markInFlight(
            db,
            runId,
            options.connectorKey,
            batch.map((item) => item.key),
          );
        return deliver(meter, writer, phase, batch, splitBudget);
      });
      call.catch(() => undefined); // its failure is met in the chain below
      // The batch's change-log rows are compressed while the batch before it commits.
      const logged = call.then((result) =>
        keepsChangeLog
          ? changeLogRows({
              runId,
              connectorKey: options.connectorKey,
              changes: changesOf(phase, batch, result),
            })
          : [],
      );
      logged.catch(() => undefined);
      // After an earlier batch failed, this link still waits for its own call: nothing is left
      // running when the send returns.
      committed = committed.then(
        async () => commit(batch, await call, await logged),
        async (error: unknown) => {
          await call.catch(() => undefined);
          throw error;
        },
      );
      const done = committed.then(
        () => undefined,
        (error: unknown) => {
          failure ??= { error };
        },
      );
      inFlight.add(done);
      void done.then(() => inFlight.delete(done));
    }
  } finally {
    // Whatever stopped the loop, the calls already made are waited for and recorded in order
    // (a call that failed stops the chain there: what follows it stays pending).
    await Promise.allSettled([...inFlight]);
  }
  if (failure) throw failure.error;
  await addRunTimings(db, runId, spent);
  return progress;
}

/** How the dataset is read: the given reader, or the connector's dataset as it is. */
const sourceOf = (options: SendOptions): DatasetReader =>
  options.source ?? directReader(options.db, options.connector.dataset);

/** Deletions send keys; every other phase sends the dataset's current attributes. */
async function itemsOf(options: SendOptions, page: ChangesetRow[]): Promise<Omit<Item, 'bytes'>[]> {
  if (options.phase === 'deletions') return page.map((row) => ({ key: row.record_key }));
  // A destination that keeps no attributes already holds a key that is on it: nothing to send.
  const skipUpdates = options.phase === 'upserts' && !capabilitiesOf(options.destination).updateAttributes;
  const toFetch = page.filter((row) => !(skipUpdates && row.on_remote)).map((row) => row.record_key);
  const source = sourceOf(options);
  const records = await source.read((executor) => fetchRecords(executor, source.dataset, toFetch));
  return page.map(({ record_key: key, on_remote, attr_hash }) => {
    const onRemote = Boolean(on_remote);
    if (skipUpdates && onRemote) return { key, nothingToSend: true, onRemote };
    const found = records.get(key);
    if (!found) return { key };
    const member = { key, attributes: found.attributes };
    return found.hash === attr_hash
      ? { key, member, onRemote }
      : { key, member, newHash: found.hash, onRemote };
  });
}

interface CallResult {
  delivered: string[];
  rejected: Rejection[];
  /** What the call cost, by endpoint and outcome. */
  tallies: EndpointTallies;
  skipped: number;
  /** What the destination counted itself, over the calls that reported it (see BatchResult). */
  reported?: { calls: number; received: number; invalid: number };
  estimated?: EstimatedMatches;
}

/**
 * Calls a send may still spend splitting batches the destination refuses as a whole
 * (`policy.splitCallBudget`), shared by the batches of one send phase.
 */
export interface SplitBudget {
  left: number;
}

/**
 * One batch's delivery, measured. A call the destination refuses as a whole (a 4xx that is not
 * about credentials or the list) is split in halves and each half sent again, down to the records
 * it refuses, while the phase's split budget lasts: one bad record no longer holds back the rest.
 * What stays refused (a single record, or a part left when the budget ran out) fails only its
 * records: they stay pending with the reason, and the run's record threshold decides. Every call
 * is counted (see reclassifySplitRefusals for their outcomes). Fatal and retryable errors
 * propagate to the activity, the calls' cost recorded on the run first.
 */
async function deliver(
  meter: RunMeter,
  writer: Writer,
  phase: SendPhase,
  batch: Item[],
  budget: SplitBudget,
): Promise<CallResult> {
  const sendable = batch.filter((item) => !item.tooLarge);
  const members = phase === 'deletions' ? [] : sendable.flatMap((item) => (item.member ? [item.member] : []));
  const keys = phase === 'deletions' ? sendable.map((item) => item.key) : members.map((m) => m.key);
  const tooLarge = batch.flatMap((item) => (item.tooLarge ? [{ key: item.key, reason: item.tooLarge }] : []));
  const unsent = batch.filter((item) => item.nothingToSend).map((item) => item.key);
  const skipped = batch.length - keys.length - unsent.length - tooLarge.length;
  if (keys.length === 0) return { delivered: unsent, rejected: tooLarge, tallies: {}, skipped };
  // Each call measured on its own (a destination that meters nothing still counts one per call).
  const tallies: EndpointTallies = {};
  let split = 0;
  let standing = 0;
  const reported = { calls: 0, received: 0, invalid: 0 };
  let estimated: EstimatedMatches | undefined;
  const isolating = async (part: {
    members: Member[];
    keys: string[];
  }): Promise<{ rejected: Rejection[] }> => {
    const call = await measureOperation(writer.endpoint, () => writer.send(part));
    addTallies(tallies, call.tallies);
    if (call.ok) {
      if (call.value.report) {
        reported.calls += 1;
        reported.received += call.value.report.received;
        reported.invalid += call.value.report.invalid;
      }
      const estimate = call.value.matchEstimate;
      if (estimate) {
        estimated = addEstimate(estimated, {
          records: estimate.records,
          lowSum: estimate.records * estimate.lowPercent,
          highSum: estimate.records * estimate.highPercent,
        });
      }
      return call.value;
    }
    const error = call.error;
    if (!(error instanceof DestinationError) || error.kind !== 'batch') throw error;
    if (part.keys.length < 2 || budget.left < 2) {
      standing += 1;
      const reason = `${part.keys.length > 1 ? 'batch' : 'record'} refused: ${error.message}`;
      return { rejected: part.keys.map((key) => ({ key, reason })) };
    }
    budget.left -= 2;
    split += 1;
    const half = Math.ceil(part.keys.length / 2);
    // Members and keys are in the same order (deletions send keys only).
    const first = await isolating({ keys: part.keys.slice(0, half), members: part.members.slice(0, half) });
    const second = await isolating({ keys: part.keys.slice(half), members: part.members.slice(half) });
    return { rejected: [...first.rejected, ...second.rejected] };
  };
  let measured: Measured<{ rejected: Rejection[] }>;
  try {
    measured = { ok: true, value: await isolating({ members, keys }), tallies };
  } catch (error) {
    measured = { ok: false, error, tallies };
  }
  reclassifySplitRefusals(tallies, writer.endpoint, split, standing);
  if (Object.keys(tallies).length > 0) meter.observer.onCalls(meter.destination, tallies);
  const { rejected } = await settle(meter, measured);
  const refused = new Set(rejected.map((r) => r.key));
  const delivered = [...unsent, ...keys.filter((k) => !refused.has(k))];
  return {
    delivered,
    rejected: [...tooLarge, ...rejected],
    tallies: measured.tallies,
    skipped,
    ...(reported.calls > 0 ? { reported } : {}),
    ...(estimated ? { estimated } : {}),
  };
}

/**
 * Refusals inside a split are not failures of the call: the ones split were retried (what they
 * carried went out on later calls), the ones left standing answered for records that are now
 * rejections, counted as such. A refused batch that was never split stays a failed call.
 */
function reclassifySplitRefusals(
  tallies: EndpointTallies,
  endpoint: string,
  split: number,
  standing: number,
) {
  const tally = tallies[endpoint];
  if (!tally || split === 0) return;
  const retried = Math.min(split, tally.failed);
  tally.failed -= retried;
  tally.retried += retried;
  tally.failed -= Math.min(standing, tally.failed);
}

/**
 * The call's outcome, its cost and the cursor, in one transaction. Returns the milliseconds its
 * change-log write took (the log's share of the commit, kept in the run's timings).
 */
async function record(
  options: SendOptions,
  batch: Item[],
  result: CallResult,
  logRows: ChangeLogRow[],
  bytes: number,
  recordsDone: number,
): Promise<number> {
  const { db, runId, phase } = options;
  const key = options.connectorKey;
  const now = (options.now ?? Date.now)();
  let changeLogMs = 0;
  await db.transaction(async (trx) => {
    if (options.direct) {
      const refused = new Map(result.rejected.map((r) => [r.key, r]));
      const rows = batch.map(({ key, hash }) => {
        const rejection = refused.get(key);
        const outcome = rejection && { reason: rejection.reason, deferred: rejection.deferred ?? false };
        return { key, hash: hash!, ...(outcome ? { refused: outcome } : {}) };
      });
      await insertDirectPush(trx, key, rows, now);
      await clearInFlight(trx, runId, batch[0]!.key);
    } else if (phase === 'fill') {
      await markFilled(trx, key, result.delivered);
      await recordFillRejections(trx, key, result.rejected);
    } else {
      await commitDelivered(trx, key, result.delivered, now);
      await recordRejections(trx, key, result.rejected);
    }
    const delivered = new Set(result.delivered);
    const changed = batch.filter((item) => item.newHash !== undefined && delivered.has(item.key));
    await recordSentHashes(
      trx,
      key,
      changed.map((item) => ({ key: item.key, hash: item.newHash! })),
      now,
    );
    const logStarted = performance.now();
    await writeChangeLog(trx, logRows, now);
    changeLogMs = performance.now() - logStarted;
    await recordCalls(trx, runId, result.tallies, {
      records_sent: result.delivered.length,
      rejected: result.rejected.length,
      deferred: result.rejected.filter((r) => r.deferred).length,
      bytes_sent: bytes,
      reported_calls: result.reported?.calls,
      reported_received: result.reported?.received,
      reported_invalid: result.reported?.invalid,
      match_estimated_records: result.estimated?.records,
      match_estimated_low: result.estimated?.lowSum,
      match_estimated_high: result.estimated?.highSum,
    });
    await saveCheckpoint(trx, runId, phase, { cursor: batch[batch.length - 1]!.key, recordsDone }, now);
  });
  return changeLogMs;
}

/**
 * The batch's row-level outcomes for the change log: delivered keys by what the call did to them
 * (a deletion removed, an upsert added or updated), rejected ones with the destination's reason;
 * a rejection the destination asked to try later is held.
 */
function changesOf(phase: SendPhase, batch: Item[], result: CallResult): LoggedChange[] {
  const onRemote = new Set(batch.filter((item) => item.onRemote).map((item) => item.key));
  const delivered = result.delivered.map((key): LoggedChange => ({
    key,
    outcome: phase === 'deletions' ? 'removed' : phase !== 'fill' && onRemote.has(key) ? 'updated' : 'added',
  }));
  const refused = result.rejected.map(({ key, reason, deferred }): LoggedChange => ({
    key,
    outcome: deferred ? 'held' : 'rejected',
    reason,
  }));
  return [...delivered, ...refused];
}

/**
 * Runs `write` (recording a call that was made), trying again while the database is briefly
 * unreachable (a restart, a failover, a dropped connection): the batch is delivered, and giving
 * up now would send it again on the retry. Past the deadline the error goes up and the activity's
 * retry resends at most this batch. A write whose commit went through but whose answer was lost
 * is repeated harmlessly, except that the run's counters may count the call twice.
 */
async function whileDatabaseUnavailable<T>(
  signal: AbortSignal | undefined,
  write: () => Promise<T>,
): Promise<T> {
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
