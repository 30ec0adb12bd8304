import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import type { StrategyChoice } from '../core/plan';

/**
 * What the workflows, the worker, the client, the logs and the dev server all call things in
 * Temporal: the task queue, the refresh workflow's type, id and input, and the search attributes.
 * It sits below all of them (a caller starts a workflow by its type's name and never imports
 * workflow code), and imports nothing Node-only, so the workflow bundle can include it.
 */

export const TASK_QUEUE = 'deltasync';

/** The refresh workflow's type name (src/workflows/refresh.ts `refreshConnector`). */
export const REFRESH_WORKFLOW = 'refreshConnector';

/** The alert watchdog's type name (src/workflows/alert-watchdog.ts `alertWatchdog`), one per tenant. */
export const ALERT_WATCHDOG_WORKFLOW = 'alertWatchdog';

export function alertWatchdogWorkflowId(tenant: string): string {
  return `deltasync-alert-watchdog@${tenant}`;
}

/** What the alert watchdog is started with. */
export interface AlertWatchdogInput {
  tenant: string;
  everySeconds: number;
  /** Sweeps before continuing as new (default 200; tests lower it). */
  sweepsPerRun?: number;
}

/** What a refresh workflow is started with. */
export interface RefreshInput {
  connectorId: string;
  /** Force a strategy for this run; otherwise the connector's policy (default `auto`). */
  strategy?: StrategyChoice;
  /** Who asked: manual, schedule, change, … (stored on the run). */
  trigger?: string;
  /**
   * The caller's tenant. The worker takes the tenant from the namespace the workflow runs in;
   * this only chooses among a namespace's tenants (and may not name one it does not serve).
   */
  tenant?: string;
}

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

/** The failure type of a step that found the destination's quota used up until a reset. */
export const QUOTA_EXHAUSTED = 'QuotaExhausted';
