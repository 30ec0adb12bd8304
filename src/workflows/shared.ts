import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/**
 * Names shared by the workflow, the worker and the client. Kept free of Node-only imports so
 * the workflow bundle can include it.
 */

export const TASK_QUEUE = 'deltasync';

/**
 * One workflow id per connector: a second start while one runs attaches to the running one.
 * Connector ids are unique per tenant, so the id names both: `deltasync-refresh-crm@acme`
 * (neither part may contain `@`).
 */
export function refreshWorkflowId(tenant: string, connectorId: string): string {
  return `deltasync-refresh-${connectorId}@${tenant}`;
}

/** The tenant and connector a deltasync workflow or schedule id names (`<prefix>-<id>@<tenant>`). */
export function connectorOfId(
  prefix: string,
  id: string,
): { tenant: string; connectorId: string } | undefined {
  const match = new RegExp(`^${prefix}-(.+)@([^@]+)$`).exec(id);
  return match ? { connectorId: match[1]!, tenant: match[2]! } : undefined;
}

/** Custom search attributes: find a connector's runs in the Temporal Web UI with these. */
export const searchAttributes = {
  connectorId: defineSearchAttributeKey('DeltasyncConnectorId', SearchAttributeType.KEYWORD),
  destination: defineSearchAttributeKey('DeltasyncDestination', SearchAttributeType.KEYWORD),
  strategy: defineSearchAttributeKey('DeltasyncStrategy', SearchAttributeType.KEYWORD),
  tenant: defineSearchAttributeKey('DeltasyncTenant', SearchAttributeType.KEYWORD),
  outcome: defineSearchAttributeKey('DeltasyncOutcome', SearchAttributeType.KEYWORD),
};

/** Error types that retrying cannot fix; the activity fails at once with the message. */
export const NON_RETRYABLE_ERRORS = [
  'DestinationFatal',
  'PlanningError',
  'InvalidConnectorError',
  'UnknownConnectorError',
  'FailureBudgetExceeded',
];
