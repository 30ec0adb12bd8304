import { measureCalls, totalOf, type EndpointTallies } from '../../src/core/api-calls';
import type { SecretResolver } from '../../src/core/destination';
import { createDestinationContext, type DestinationContext } from '../../src/connectors/kit/module';
import type { RetryOptions } from '../../src/connectors/kit/http';
import { recordedSleep } from './destinations';

/**
 * A destination context for tests: the worker's own machinery (throttle, retries, metering), with
 * a sleep that records the waits asked for instead of waiting.
 */
export function testContext(
  secrets: SecretResolver,
  options: { listId?: string; retry?: RetryOptions } = {},
): { context: DestinationContext; waits: number[] } {
  const { waits, sleep } = recordedSleep();
  const context = createDestinationContext({
    secrets,
    listId: options.listId,
    retry: { sleep, random: () => 0.5, ...options.retry },
  });
  return { context, waits };
}

/** What `work` resolved to and the calls it made, as the run would count them; rethrows its error. */
export async function counted<T>(
  work: () => Promise<T>,
): Promise<{ value: T; tallies: EndpointTallies; calls: number; rateLimitWaits: number; retried: number }> {
  const measured = await measureCalls(work);
  if (!measured.ok) throw measured.error;
  const total = totalOf(measured.tallies);
  return {
    value: measured.value,
    tallies: measured.tallies,
    calls: total.calls,
    rateLimitWaits: total.rateLimited,
    retried: total.retried,
  };
}

/** The calls a failing `work` made before its error, and the error. */
export async function countedFailure(
  work: () => Promise<unknown>,
): Promise<{ error: unknown; tallies: EndpointTallies; calls: number }> {
  const measured = await measureCalls(work);
  if (measured.ok) throw new Error('expected the operation to fail');
  return { error: measured.error, tallies: measured.tallies, calls: totalOf(measured.tallies).calls };
}
