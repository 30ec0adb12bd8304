import { measureOperation, type Measured } from '../api-calls';
import { recordCalls } from '../runs';
import type { Db } from '../../db';
import type { EngineObserver } from '../observer';
import type { Engine, RunScope } from './engine';

/**
 * The one measurement of what a run's destination operations cost. Every operation the engine
 * runs (a send batch, truncate, create/swap/retire, a page of members) goes through `observed`:
 * measured (core/api-calls.ts), reported to the observer, and the same tallies are written to the
 * run, by `callDestination` or, for a send batch, in the batch's own transaction. A failed
 * operation's calls were made all the same: they are written before its error goes up.
 */
export interface RunMeter {
  db: Db;
  runId: number;
  observer: EngineObserver;
  /** The destination type, as the metrics label it. */
  destination: string;
}

export function runMeter(engine: Engine, scope: RunScope): RunMeter {
  return {
    db: engine.db,
    runId: scope.runId,
    observer: engine.observer,
    destination: scope.connector.destination.type,
  };
}

/** `work` (one destination operation) measured, its calls reported to the observer. */
export async function observed<T>(
  meter: Pick<RunMeter, 'observer' | 'destination'>,
  endpoint: string,
  work: () => Promise<T>,
): Promise<Measured<T>> {
  const measured = await measureOperation(endpoint, work);
  if (Object.keys(measured.tallies).length > 0) meter.observer.onCalls(meter.destination, measured.tallies);
  return measured;
}

/**
 * The value of a measured operation. A failed one's calls go on the run before its error goes up;
 * the database may be what failed, so a write that fails here does not hide the error.
 */
export async function settle<T>(meter: RunMeter, measured: Measured<T>): Promise<T> {
  if (measured.ok) return measured.value;
  await recordCalls(meter.db, meter.runId, measured.tallies).catch(() => undefined);
  throw measured.error;
}

/** A destination operation outside a send batch: observed, and its calls written to the run. */
export async function callDestination<T>(
  meter: RunMeter,
  endpoint: string,
  work: () => Promise<T>,
): Promise<T> {
  const measured = await observed(meter, endpoint, work);
  const value = await settle(meter, measured);
  await recordCalls(meter.db, meter.runId, measured.tallies);
  return value;
}
