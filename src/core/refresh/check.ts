import type { Destination } from '../destination';
import type { EngineObserver } from '../observer';
import { observed } from './calls';

/**
 * Are the destination's credentials good and its list reachable (`check()`, one cheap read)?
 * Resolves with what was checked, rejects with what to fix. Outside any run: its calls are
 * reported to the observer only.
 */
export async function checkDestination(
  observer: EngineObserver,
  destinationType: string,
  destination: Destination,
): Promise<string> {
  const measured = await observed({ observer, destination: destinationType }, 'check', () =>
    destination.check(),
  );
  if (!measured.ok) throw measured.error;
  return measured.value;
}
