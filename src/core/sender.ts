import type { Db } from '../db';
import type { ConnectorDefinition } from '../connectors/definition';
import { DestinationError, type BatchOutcome, type Destination, type Member } from '../connectors/types';
import {
  commitDelivered,
  fetchAttributes,
  readChangesetPage,
  recordRejections,
  type ChangesetKind,
  type ChangesetRow,
} from './deltalog';
import { incrementRunCounters, loadCheckpoint, saveCheckpoint } from './runs';

/**
 * Sending: walk a changeset in key order, one destination call per page, and commit each
 * delivered page in the same transaction as the cursor. A retried or restarted send resumes after
 * the last committed page, so at most the page in flight is sent twice.
 */

/** upserts: pending additions and updates; deletions: pending deletions; full: the whole dataset. */
export type SendPhase = 'upserts' | 'deletions' | 'full';

const changesetOf: Record<SendPhase, ChangesetKind> = {
  upserts: 'upserts',
  deletions: 'deletions',
  full: 'dataset',
};

export interface SendProgress {
  phase: SendPhase;
  /** Last key of the last committed page; the next page starts after it. */
  cursor: string;
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
}

export interface SendOptions {
  db: Db;
  connector: ConnectorDefinition;
  destination: Destination;
  runId: number;
  phase: SendPhase;
  /** Where a previous attempt got to (from its heartbeat); otherwise the saved checkpoint. */
  resumeFrom?: { cursor: string; recordsDone: number };
  now?: () => number;
  /** Called after every committed page (heartbeat here). */
  onBatch?: (progress: SendProgress) => void | Promise<void>;
  /** Stop between pages when aborted (activity cancellation, worker shutdown). */
  signal?: AbortSignal;
}

export function batchSizeFor(connector: ConnectorDefinition, destination: Destination): number {
  const limit = destination.limits.recordsPerCall;
  return Math.max(1, Math.min(connector.policy.batchSize ?? limit, limit));
}

export async function sendPhase(options: SendOptions): Promise<SendProgress> {
  const { db, connector, destination, runId, phase } = options;
  const now = options.now ?? Date.now;
  const start = options.resumeFrom ??
    (await loadCheckpoint(db, runId, phase)) ?? { cursor: '', recordsDone: 0 };
  const progress: SendProgress = {
    phase,
    cursor: start.cursor,
    recordsDone: start.recordsDone,
    batches: 0,
    delivered: 0,
    rejected: 0,
    skipped: 0,
    apiCalls: 0,
    failedCalls: 0,
    rateLimitWaits: 0,
  };
  const pageSize = batchSizeFor(connector, destination);

  for (;;) {
    options.signal?.throwIfAborted();
    const page = await readChangesetPage(
      db,
      connector.id,
      changesetOf[phase],
      progress.cursor,
      pageSize,
      connector.policy.maxAttempts,
    );
    if (page.length === 0) return progress;
    const result = await deliverPage(options, page);
    const cursor = page[page.length - 1]!.record_key;
    await db.transaction(async (trx) => {
      await commitDelivered(trx, connector.id, result.delivered, now());
      await recordRejections(trx, connector.id, result.outcome.rejected);
      await incrementRunCounters(trx, runId, {
        records_sent: result.delivered.length,
        rejected: result.outcome.rejected.length,
        api_calls: result.outcome.apiCalls,
        failed_calls: result.failedCalls,
        rate_limit_waits: result.outcome.rateLimitWaits,
      });
      await saveCheckpoint(
        trx,
        runId,
        phase,
        { cursor, recordsDone: progress.recordsDone + page.length },
        now(),
      );
    });
    progress.cursor = cursor;
    progress.recordsDone += page.length;
    progress.batches += 1;
    progress.delivered += result.delivered.length;
    progress.rejected += result.outcome.rejected.length;
    progress.skipped += result.skipped;
    progress.apiCalls += result.outcome.apiCalls;
    progress.failedCalls += result.failedCalls;
    progress.rateLimitWaits += result.outcome.rateLimitWaits;
    await options.onBatch?.({ ...progress });
  }
}

interface PageResult {
  delivered: string[];
  outcome: BatchOutcome;
  failedCalls: number;
  skipped: number;
}

/**
 * One destination call for one page. A call the destination refuses as a whole (a 4xx that is
 * not about credentials or the list) fails only this page: its records stay pending with the
 * reason, and the run's success threshold decides. Fatal and retryable errors propagate.
 */
async function deliverPage(options: SendOptions, page: ChangesetRow[]): Promise<PageResult> {
  const { db, connector, destination } = options;
  const keys = page.map((row) => row.record_key);
  let members: Member[] | undefined;
  let skipped = 0;
  if (options.phase !== 'deletions') {
    const attributes = await fetchAttributes(db, connector.dataset, keys);
    members = [];
    for (const key of keys) {
      const found = attributes.get(key);
      if (found) members.push({ key, attributes: found });
    }
    skipped = keys.length - members.length;
  }
  const sentKeys = members ? members.map((m) => m.key) : keys;
  if (sentKeys.length === 0) {
    return {
      delivered: [],
      outcome: { rejected: [], apiCalls: 0, rateLimitWaits: 0 },
      failedCalls: 0,
      skipped,
    };
  }
  try {
    const outcome = members ? await destination.add(members) : await destination.remove(keys);
    const rejected = new Set(outcome.rejected.map((r) => r.key));
    return { delivered: sentKeys.filter((k) => !rejected.has(k)), outcome, failedCalls: 0, skipped };
  } catch (error) {
    if (!(error instanceof DestinationError) || error.kind !== 'batch') throw error;
    const reason = `batch refused: ${error.message}`;
    return {
      delivered: [],
      outcome: { rejected: sentKeys.map((key) => ({ key, reason })), apiCalls: 1, rateLimitWaits: 0 },
      failedCalls: 1,
      skipped,
    };
  }
}
