/**
 * Names shared by the workflow, the worker and the client. Kept free of Node-only imports so
 * the workflow bundle can include it.
 */

// What callers, the worker and the logs call things in Temporal: defined below the workflows.
export {
  connectorOfId,
  QUOTA_EXHAUSTED,
  REFRESH_WORKFLOW,
  refreshWorkflowId,
  searchAttributes,
  TASK_QUEUE,
  type RefreshInput,
} from '../temporal/names';

/** Error types that retrying cannot fix; the activity fails at once with the message. */
export const NON_RETRYABLE_ERRORS = [
  'DestinationFatal',
  'PlanningError',
  'InvalidConnectorError',
  'UnknownConnectorError',
  'FailureBudgetExceeded',
  'QuotaExhausted',
];
