import {
  ActivityFailure,
  ApplicationFailure,
  continueAsNew,
  log,
  proxyActivities,
  setCurrentDetails,
  sleep,
} from '@temporalio/workflow';
import type { AlertActivities } from './activity-types';
import type { AlertWatchdogInput } from '../temporal/names';
import { NON_RETRYABLE_ERRORS } from './shared';

/**
 * The alert watchdog: one per tenant, started by the worker service. Every `everySeconds` it
 * sweeps the tenant's connectors (activities/alerts.ts): alerts a webhook did not take are sent
 * again, and a connector without a success within its `noSuccessWithinHours` alerts even when
 * no run finishes (its schedule stopped, its runs hang). History holds counts only.
 */

/** Sweeps per workflow run before it continues as new, keeping each history short. */
const SWEEPS_PER_RUN = 200;

const { sweepAlerts } = proxyActivities<AlertActivities>({
  startToCloseTimeout: '30 minutes',
  // Each webhook is retried for about 10 s; a page of connectors heartbeats as it goes.
  heartbeatTimeout: '2 minutes',
  retry: { initialInterval: '5 seconds', maximumAttempts: 3, nonRetryableErrorTypes: NON_RETRYABLE_ERRORS },
});

export async function alertWatchdog(input: AlertWatchdogInput): Promise<void> {
  const sweeps = input.sweepsPerRun ?? SWEEPS_PER_RUN;
  for (let i = 0; i < sweeps; i++) {
    try {
      const result = await sweepAlerts({ tenant: input.tenant });
      setCurrentDetails(
        `last sweep: ${result.connectors} connectors, ${result.delivered} alerts delivered, ${result.pending} waiting for a webhook`,
      );
    } catch (error) {
      // A tenant this namespace no longer serves will not come back by retrying: stop watching.
      if (
        error instanceof ActivityFailure &&
        error.cause instanceof ApplicationFailure &&
        error.cause.type === 'TenantNotServedError'
      ) {
        log.warn('alert watchdog stops', { tenant: input.tenant, reason: error.cause.message });
        return;
      }
      // Any other failed sweep (database down) is tried again at the next turn.
      setCurrentDetails(`last sweep failed: ${error instanceof Error ? error.message : String(error)}`);
    }
    await sleep(input.everySeconds * 1000);
  }
  await continueAsNew<typeof alertWatchdog>(input);
}
