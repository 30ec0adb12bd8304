import { DestinationError, QuotaExhaustedError } from '../destination';
import { getRun, lastProgressAt, recordFailure } from '../runs';
import type { Attempt, Engine, RunScope } from './engine';

/** A step kept failing, without committing a batch, for longer than its connector's budget. */
export class FailureBudgetExceeded extends Error {
  override name = 'FailureBudgetExceeded';
}

/**
 * `work` (an attempt of a step that talks to the destination), held to the connector's failure
 * budget: a retry that finds nothing committed since the step was first scheduled (or since its
 * last committed batch) for longer than `failureBudgetSeconds` fails the run with the last error,
 * instead of retrying forever. Each failed attempt that will be retried leaves its error on the
 * run. Without an `attempt` (a caller that does not retry), there is no budget to keep.
 *
 * `step` names the checkpoint phase whose commits count as progress (a send phase, `snapshot`).
 */
export async function withinFailureBudget<T>(
  engine: Engine,
  scope: RunScope,
  step: string,
  attempt: Attempt | undefined,
  work: () => Promise<T>,
): Promise<T> {
  const { db, now } = engine;
  if (attempt && attempt.number > 1) {
    const since = Math.max(attempt.scheduledAt, (await lastProgressAt(db, scope.runId, step)) ?? 0);
    const budget = scope.connector.policy.failureBudgetSeconds;
    if (now() - since > budget * 1000) {
      const { last_failure } = await getRun(db, scope.runId);
      throw new FailureBudgetExceeded(
        `${step}: nothing was delivered for ${Math.round((now() - since) / 1000)} s over ${attempt.number - 1} ` +
          `attempts (failureBudgetSeconds ${budget}); last error: ${last_failure ?? 'none recorded'}`,
      );
    }
  }
  try {
    return await work();
  } catch (error) {
    // The database may be what failed: a write that fails here does not hide the error.
    // A used-up quota pauses the run: the run says why and until when.
    if (isRetriedFailure(error) || error instanceof QuotaExhaustedError) {
      await recordFailure(db, scope.runId, describeFailure(error), now()).catch(() => undefined);
    }
    throw error;
  }
}

/** An error the step will be retried for (not a refusal that ends the run, not a cancellation). */
export function isRetriedFailure(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (error instanceof DestinationError) return error.kind !== 'fatal';
  return !['CancelledFailure', 'AbortError', 'FailureBudgetExceeded'].includes(error.name);
}

/** The error's message, with its cause's (a network error's code sits there). */
export function describeFailure(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? ` (${error.cause.message})` : '';
  return `${error.message}${cause}`;
}
