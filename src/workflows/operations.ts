import { proxyActivities } from '@temporalio/workflow';
import type { AdminOperation, AdminResult } from '../activities/admin';
import type { AdminActivities, TriggerActivities } from './activity-types';
import { NON_RETRYABLE_ERRORS } from './shared';

/**
 * Short workflows behind the client: connector management, and the starts that schedules and
 * change triggers make. They carry definitions, ids and counts, never records.
 */

/**
 * All attempts together end within 90 s: before the 2-minute execution timeout the client gives
 * a connector operation (ADMIN_TIMEOUT_MS in src/client), so the caller hears the activity's own
 * last failure (e.g. the database it could not reach) rather than only "timed out".
 */
const { connectorAdmin, startRefresh } = proxyActivities<AdminActivities & TriggerActivities>({
  startToCloseTimeout: '1 minute',
  scheduleToCloseTimeout: '90 seconds',
  retry: { maximumAttempts: 5, nonRetryableErrorTypes: NON_RETRYABLE_ERRORS },
});

export async function manageConnectors(operation: AdminOperation): Promise<AdminResult> {
  return connectorAdmin(operation);
}

export interface TriggerInput {
  connectorId: string;
  tenant: string;
  /** `schedule` or `change`. */
  trigger: string;
}

/**
 * What a Temporal Schedule (or a change trigger) starts: the connector's refresh, or — when one
 * is running — nothing new: the running refresh already covers this start.
 */
export async function triggeredRefresh(input: TriggerInput) {
  return startRefresh(input);
}
