import { setTimeout as sleep } from 'node:timers/promises';
import { Context } from '@temporalio/activity';
import {
  alertsFor,
  judgeFinishedRun,
  judgeOverdue,
  markDelivered,
  undeliveredAlerts,
  webhookBody,
  type Alert,
  type AlertSubject,
  type Verdict,
} from '../core/alerts';
import type { AlertRules } from '../core/alert-rules';
import type { RunSummary } from '../core/summaries';
import type { Db } from '../db';
import { logger } from '../logging';
import type { Tenancy, TenantPolicy } from '../tenancy';
import { connectorKey, type ConnectorDefinition } from '../core/connector';
import { listConnectors } from '../core/connector-store';
import { disallowedTargets } from '../tenancy/egress';
import {
  callerTenant,
  failClearly,
  keepHeartbeating,
  type ActivityDependencies,
  type OpenedConnector,
} from './support';

/**
 * Alerts from the worker: the rules of the connector (else of its tenant) judged when a run
 * finishes or starts waiting for approval, and by the alert watchdog between runs (`sweep`),
 * delivered to the tenant's webhooks. A webhook is a secret of the tenant and, like a destination,
 * must be among the origins the tenant may call. Delivery is retried with backoff and never fails
 * the run; an alert a webhook did not take in time stays pending and the next sweep sends it again.
 */
export interface Alerter {
  runFinished(opened: OpenedConnector, run: RunSummary): Promise<Alert[]>;
  awaitingApproval(opened: OpenedConnector, runId: number, reason: string): Promise<Alert[]>;
  /**
   * The tenant's connectors between runs: alerts not delivered yet are sent again, and a
   * connector without a success within its budget alerts even when no run finishes.
   */
  sweep(tenant: TenantPolicy, progress?: SweepProgress): Promise<SweepResult>;
}

export interface SweepProgress {
  /** Resume after this connector id (a retried sweep, from its heartbeat). */
  afterId?: string;
  /** A connector was swept. */
  onConnector?: (connectorId: string) => void;
}

/** How a delivery is tried: waits between attempts, and webhooks already found down (a sweep's). */
interface Delivery {
  backoffMs: number[];
  down?: Set<string>;
}

export interface SweepResult {
  connectors: number;
  /** Alerts delivered by this sweep (new ones and ones sent again). */
  delivered: number;
  /** Alerts still waiting for a webhook. */
  pending: number;
}

export interface AlerterOptions {
  db: Db;
  tenancy: Tenancy;
  now?: () => number;
  /** Waits between delivery attempts (tests pass short ones). */
  backoffMs?: number[];
}

const BACKOFF_MS = [500, 2_000, 8_000];
const DELIVERY_TIMEOUT_MS = 10_000;
/** Connectors read per page by a sweep. */
const SWEEP_PAGE = 200;

export function createAlerter({
  db,
  tenancy,
  now = Date.now,
  backoffMs = BACKOFF_MS,
}: AlerterOptions): Alerter {
  const rulesOf = (connector: ConnectorDefinition, tenant: TenantPolicy): AlertRules | undefined =>
    connector.policy.alerts ?? tenant.alerts;
  const subjectOf = (connector: ConnectorDefinition, tenant: TenantPolicy): AlertSubject => ({
    connectorKey: connectorKey(tenant.id, connector.id),
    connectorId: connector.id,
    tenant: tenant.id,
  });

  const raise = async (
    tenant: TenantPolicy,
    who: AlertSubject,
    rules: AlertRules,
    verdicts: Verdict[],
    runId: number | null,
  ) => {
    const alerts = await alertsFor(db, who, verdicts, runId, now());
    await deliverAll(tenant, who, rules, alerts, { backoffMs });
    return alerts;
  };

  /** Delivers in order; a change every webhook took is marked delivered. Returns how many were. */
  const deliverAll = async (
    tenant: TenantPolicy,
    who: AlertSubject,
    rules: AlertRules,
    alerts: Alert[],
    how: Delivery,
  ) => {
    let delivered = 0;
    for (const alert of alerts) {
      if (!(await deliver(tenant, rules, alert, how))) continue;
      await markDelivered(db, who.connectorKey, alert);
      delivered++;
    }
    return delivered;
  };

  /**
   * To every webhook at once: a slow or failing one does not hold back the others. False when a
   * webhook could not be reached in time (worth sending again); a webhook that cannot work (no
   * such secret, not allowed, a 4xx) is logged and counts as done: no retry would change that.
   */
  const deliver = async (
    tenant: TenantPolicy,
    rules: AlertRules,
    alert: Alert,
    how: Delivery,
  ): Promise<boolean> => {
    const secrets = tenancy.secrets.forTenant(tenant.id);
    const outcomes = await Promise.all(
      rules.webhooks.map(async (webhook, i) => {
        const field = `policy.alerts.webhooks[${i}].urlSecret`;
        let url: string;
        try {
          url = secrets(webhook.urlSecret);
        } catch (error) {
          logger.warn(
            { connectorId: alert.connectorId, field, error: String(error) },
            'alert not delivered: no such secret',
          );
          return true;
        }
        const refused = disallowedTargets(tenant.destinations, [{ kind: 'http', url, field }]);
        if (refused.length > 0) {
          logger.warn(
            { connectorId: alert.connectorId, problem: refused[0] },
            'alert not delivered: webhook not allowed',
          );
          return true;
        }
        if (how.down?.has(url)) return false;
        const taken = await post(url, webhookBody(alert, webhook.format), alert, how.backoffMs);
        if (!taken) how.down?.add(url);
        return taken;
      }),
    );
    return outcomes.every(Boolean);
  };

  return {
    async runFinished(opened, run) {
      const rules = rulesOf(opened.connector, opened.tenant);
      if (!rules) return [];
      const lastSucceededAt = await lastSuccessOf(opened.key);
      const verdicts = await judgeFinishedRun(db, opened.key, rules, run, lastSucceededAt, now());
      return raise(opened.tenant, subjectOf(opened.connector, opened.tenant), rules, verdicts, run.runId);
    },
    async awaitingApproval(opened, runId, reason) {
      const rules = rulesOf(opened.connector, opened.tenant);
      if (!rules?.awaitingApproval) return [];
      const message = `run ${runId} waits for approval: ${reason}; 'deltasync approve ${opened.connector.id}' or 'deltasync reject ${opened.connector.id}'`;
      const verdicts: Verdict[] = [{ rule: 'awaitingApproval', firing: true, message }];
      return raise(opened.tenant, subjectOf(opened.connector, opened.tenant), rules, verdicts, runId);
    },
    async sweep(tenant, progress = {}) {
      const result: SweepResult = { connectors: 0, delivered: 0, pending: 0 };
      // One attempt per post (the next sweep is the retry), and a webhook that failed is not
      // tried again in this sweep: a dead webhook costs one timeout per sweep, not one per alert.
      const how: Delivery = { backoffMs: [], down: new Set() };
      for (let afterId = progress.afterId; ;) {
        const page = await listConnectors(db, tenant.id, { afterId, limit: SWEEP_PAGE });
        for (const connector of page) {
          result.connectors++;
          const rules = rulesOf(connector, tenant);
          if (rules) await sweepConnector(tenant, connector, rules, how, result);
          progress.onConnector?.(connector.id);
        }
        if (page.length < SWEEP_PAGE) return result;
        afterId = page[page.length - 1]!.id;
      }
    },
  };

  async function sweepConnector(
    tenant: TenantPolicy,
    connector: ConnectorDefinition & { createdAt: number },
    rules: AlertRules,
    how: Delivery,
    result: SweepResult,
  ) {
    const who = subjectOf(connector, tenant);
    const undelivered = await undeliveredAlerts(db, who);
    let delivered = await deliverAll(tenant, who, rules, undelivered, how);
    let tried = undelivered.length;
    // Read now, not with the page: a run may have succeeded while the deliveries above waited.
    const lastSucceededAt = await lastSuccessOf(who.connectorKey);
    const overdue = await judgeOverdue(db, who.connectorKey, rules, { ...connector, lastSucceededAt }, now());
    if (overdue) {
      const alerts = await alertsFor(db, who, [overdue], null, now());
      delivered += await deliverAll(tenant, who, rules, alerts, how);
      tried += alerts.length;
    }
    result.delivered += delivered;
    result.pending += tried - delivered;
  }

  async function lastSuccessOf(key: string): Promise<number | null> {
    const state = (await db('connector_state').where({ connector_id: key }).first('last_succeeded_at')) as
      { last_succeeded_at: number | null } | undefined;
    return state?.last_succeeded_at == null ? null : Number(state.last_succeeded_at);
  }
}

/**
 * POST, retried on network errors, 429 and 5xx; a 4xx is the webhook's final word. True when
 * the webhook took it or refused it for good; false when it could not be reached in time.
 */
async function post(url: string, body: unknown, alert: Alert, backoffMs: number[]): Promise<boolean> {
  for (let attempt = 0; ; attempt++) {
    let problem: string;
    try {
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(DELIVERY_TIMEOUT_MS),
      });
      if (response.ok) return true;
      problem = `HTTP ${response.status}`;
      if (response.status < 500 && response.status !== 429) break;
    } catch (error) {
      problem = error instanceof Error ? error.message : String(error);
    }
    if (attempt >= backoffMs.length) {
      logger.warn(
        { connectorId: alert.connectorId, rule: alert.rule, problem },
        'alert not delivered after retries; the alert watchdog sends it again',
      );
      return false;
    }
    await sleep(backoffMs[attempt]!);
  }
  logger.warn({ connectorId: alert.connectorId, rule: alert.rule }, 'alert refused by the webhook');
  return true;
}

/**
 * The alert watchdog's activity (workflows/alert-watchdog.ts): one sweep of the caller's tenant.
 * It heartbeats the last connector swept, also while a webhook keeps it waiting, and a retried
 * sweep resumes after it. It returns counts only.
 */
export function createAlertActivities({ db, tenancy, now, alertBackoffMs }: ActivityDependencies) {
  const alerter = createAlerter({ db, tenancy, now, backoffMs: alertBackoffMs });
  return {
    async sweepAlerts(input: { tenant: string }): Promise<SweepResult> {
      return failClearly(async () => {
        const tenant = callerTenant(tenancy, input.tenant);
        const resumed = Context.current().info.heartbeatDetails as { afterId?: string } | undefined;
        let afterId = resumed?.afterId;
        const onConnector = (connectorId: string) => {
          afterId = connectorId;
          Context.current().heartbeat({ afterId });
        };
        return keepHeartbeating(
          () => alerter.sweep(tenant, { afterId, onConnector }),
          () => ({ afterId }),
        );
      });
    },
  };
}
