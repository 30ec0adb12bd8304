import { setTimeout as sleep } from 'node:timers/promises';
import { alertsFor, judgeFinishedRun, webhookBody, type Alert, type Verdict } from '../core/alerts';
import type { AlertRules } from '../core/alert-rules';
import type { RunSummary } from '../core/summaries';
import type { Db } from '../db';
import { logger } from '../logging';
import type { Tenancy } from '../tenancy';
import { disallowedTargets } from '../tenancy/egress';
import type { OpenedConnector } from './support';

/**
 * Alerts from the worker: the rules of the connector (else of its tenant) judged when a run
 * finishes or starts waiting for approval, delivered to the tenant's webhooks. A webhook is a
 * secret of the tenant and, like a destination, must be among the origins the tenant may call.
 * Delivery is retried with backoff and never fails the run: a dead webhook is logged, not fatal.
 */
export interface Alerter {
  runFinished(opened: OpenedConnector, run: RunSummary): Promise<Alert[]>;
  awaitingApproval(opened: OpenedConnector, runId: number, reason: string): Promise<Alert[]>;
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

export function createAlerter({
  db,
  tenancy,
  now = Date.now,
  backoffMs = BACKOFF_MS,
}: AlerterOptions): Alerter {
  const rulesOf = (opened: OpenedConnector): AlertRules | undefined =>
    opened.connector.policy.alerts ?? opened.tenant.alerts;

  const raise = async (opened: OpenedConnector, rules: AlertRules, verdicts: Verdict[], runId: number) => {
    const who = { connectorKey: opened.key, connectorId: opened.connector.id, tenant: opened.tenant.id };
    const alerts = await alertsFor(db, who, verdicts, runId, now());
    for (const alert of alerts) await deliver(opened, rules, alert);
    return alerts;
  };

  /** To every webhook at once: a slow or failing one does not hold back the others. */
  const deliver = async (opened: OpenedConnector, rules: AlertRules, alert: Alert) => {
    const secrets = tenancy.secrets.forTenant(opened.tenant.id);
    await Promise.all(
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
          return;
        }
        const refused = disallowedTargets(opened.tenant.destinations, [{ kind: 'http', url, field }]);
        if (refused.length > 0) {
          logger.warn(
            { connectorId: alert.connectorId, problem: refused[0] },
            'alert not delivered: webhook not allowed',
          );
          return;
        }
        await post(url, webhookBody(alert, webhook.format), alert, backoffMs);
      }),
    );
  };

  return {
    async runFinished(opened, run) {
      const rules = rulesOf(opened);
      if (!rules) return [];
      const state = (await db('connector_state')
        .where({ connector_id: opened.key })
        .first('last_succeeded_at')) as { last_succeeded_at: number | null } | undefined;
      const lastSucceededAt = state?.last_succeeded_at == null ? null : Number(state.last_succeeded_at);
      const verdicts = await judgeFinishedRun(db, opened.key, rules, run, lastSucceededAt, now());
      return raise(opened, rules, verdicts, run.runId);
    },
    async awaitingApproval(opened, runId, reason) {
      const rules = rulesOf(opened);
      if (!rules?.awaitingApproval) return [];
      const message = `run ${runId} waits for approval: ${reason}; 'deltasync approve ${opened.connector.id}' or 'deltasync reject ${opened.connector.id}'`;
      return raise(opened, rules, [{ rule: 'awaitingApproval', firing: true, message }], runId);
    },
  };
}

/** POST, retried on network errors, 429 and 5xx; a 4xx is the webhook's final word. */
async function post(url: string, body: unknown, alert: Alert, backoffMs: number[]): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    let problem: string;
    try {
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(DELIVERY_TIMEOUT_MS),
      });
      if (response.ok) return;
      problem = `HTTP ${response.status}`;
      if (response.status < 500 && response.status !== 429) break;
    } catch (error) {
      problem = error instanceof Error ? error.message : String(error);
    }
    if (attempt >= backoffMs.length) {
      logger.warn(
        { connectorId: alert.connectorId, rule: alert.rule, problem },
        'alert not delivered after retries',
      );
      return;
    }
    await sleep(backoffMs[attempt]!);
  }
  logger.warn({ connectorId: alert.connectorId, rule: alert.rule }, 'alert refused by the webhook');
}
