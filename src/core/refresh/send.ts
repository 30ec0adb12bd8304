import type { DatasetReader } from '../dataset';
import type { Destination } from '../destination';
import { sendPhase, type SendPhase, type SendProgress, type SendTotals } from '../sender';
import { getRun } from '../runs';
import type { Attempt, Engine, RunScope } from './engine';
import { withinFailureBudget } from './failure-budget';
import { listBeingBuilt } from './replace-list';

export interface SendRequest {
  /** The destination bound to the live list (`fill` writes to the list being built through it). */
  destination: Destination;
  source: DatasetReader;
  phase: SendPhase;
  attempt?: Attempt;
  /** After every recorded call, with counts only (heartbeat here). */
  onBatch?: (progress: SendProgress) => void;
  /** Stop between calls when aborted (activity cancellation, worker shutdown). */
  signal?: AbortSignal;
}

/**
 * Step 3: send one phase, recording every call; a retry resumes after the last call the database
 * recorded (see core/sender.ts).
 */
export async function sendChanges(
  engine: Engine,
  scope: RunScope,
  request: SendRequest,
): Promise<SendTotals> {
  const { phase } = request;
  return withinFailureBudget(engine, scope, phase, request.attempt, async () => {
    const destination =
      phase === 'fill'
        ? await listBeingBuilt(engine.db, scope.key, request.destination)
        : request.destination;
    // A direct first push (see updateDeltalog) sends the dataset itself.
    const direct =
      (phase === 'upserts' || phase === 'full') &&
      (await getRun(engine.db, scope.runId)).direct_push_rows !== null;
    return sendPhase({
      direct,
      db: engine.db,
      connector: scope.connector,
      connectorKey: scope.key,
      destination,
      source: request.source,
      runId: scope.runId,
      phase,
      now: engine.now,
      observer: engine.observer,
      onBatch: request.onBatch,
      signal: request.signal,
    });
  });
}
