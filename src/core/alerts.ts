import type { Db } from '../db';
import type { AlertRules } from './alert-rules';
import type { RunSummary } from './summaries';

/**
 * Alerts on a connector's runs: rules evaluated when a run finishes (and when one starts waiting
 * for approval), and the time budget of a success also between runs (the alert watchdog), so a
 * connector whose refreshes stopped altogether alerts too. Delivered to webhooks by the worker
 * (activities/alerts.ts). A rule alerts when it starts firing and then stays quiet until it
 * recovers: a connector failing every hour alerts once, and once more when it is healthy again
 * ("resolved"). Each change is kept until it is delivered (at least once; `pending`).
 */

export type { AlertRules };
export type AlertRule = 'failedRun' | 'rejectedShare' | 'countDeviation' | 'awaitingApproval' | 'noSuccess';

/** A rule's verdict on a run: firing (with what to say) or not. */
export interface Verdict {
  rule: AlertRule;
  firing: boolean;
  message?: string;
}

/** What to deliver: a rule that started firing, or one that recovered. */
export interface Alert {
  connectorId: string;
  tenant: string;
  rule: AlertRule;
  state: 'firing' | 'resolved';
  message: string;
  runId: number | null;
  at: number;
}

/** Default seconds between the alert watchdog's sweeps of a tenant (`worker --alert-check-seconds`). */
export const ALERT_CHECK_SECONDS = 300;

/** Runs whose dataset size makes the median a count deviation is measured against. */
const RECENT_RUNS = 10;

/** The rules' verdicts on a finished run. */
export async function judgeFinishedRun(
  db: Db,
  connectorKey: string,
  rules: AlertRules,
  run: RunSummary,
  lastSucceededAt: number | null,
  now: number,
): Promise<Verdict[]> {
  const verdicts: Verdict[] = [];
  if (rules.failedRun) {
    const failed = run.status === 'failed';
    verdicts.push({
      rule: 'failedRun',
      firing: failed,
      message: `run ${run.runId} failed: ${run.error ?? 'no reason given'}`,
    });
  }
  if (rules.rejectedShareAbove !== undefined) {
    const handled = run.recordsSent + run.rejected;
    const share = handled === 0 ? 0 : run.rejected / handled;
    verdicts.push({
      rule: 'rejectedShare',
      firing: share > rules.rejectedShareAbove,
      message: `run ${run.runId}: the destination rejected ${run.rejected} of ${handled} records (${(share * 100).toFixed(1)}%, threshold ${(rules.rejectedShareAbove * 100).toFixed(1)}%)`,
    });
  }
  if (rules.countDeviationFactor !== undefined && run.datasetSize !== null) {
    const median = await recentMedianSize(db, connectorKey, run.runId);
    const factor = rules.countDeviationFactor;
    const deviates =
      median !== undefined &&
      median > 0 &&
      (run.datasetSize > median * factor || run.datasetSize < median / factor);
    verdicts.push({
      rule: 'countDeviation',
      firing: deviates,
      message: `run ${run.runId}: the dataset holds ${run.datasetSize} records, the recent runs' median ${median ?? '?'} (more than ${factor}× off)`,
    });
  }
  if (rules.awaitingApproval) verdicts.push({ rule: 'awaitingApproval', firing: false });
  if (rules.noSuccessWithinHours !== undefined) {
    const succeeded = run.status === 'succeeded' || run.status === 'noop';
    const since = lastSucceededAt ?? (await firstRunStart(db, connectorKey));
    verdicts.push(overdueVerdict(rules.noSuccessWithinHours, since, lastSucceededAt, now, succeeded));
  }
  return verdicts;
}

/**
 * Between runs (the alert watchdog): whether the connector has gone without a success for longer
 * than its budget, counted as after a run (from its last success, else its first run's start),
 * and from when it was saved when it never ran. Undefined when the rules set no budget.
 */
export async function judgeOverdue(
  db: Db,
  connectorKey: string,
  rules: AlertRules,
  connector: { lastSucceededAt: number | null; createdAt: number },
  now: number,
): Promise<Verdict | undefined> {
  if (rules.noSuccessWithinHours === undefined) return undefined;
  const since = connector.lastSucceededAt ?? (await firstRunStart(db, connectorKey)) ?? connector.createdAt;
  return overdueVerdict(rules.noSuccessWithinHours, since, connector.lastSucceededAt, now, false);
}

function overdueVerdict(
  hours: number,
  since: number | null,
  lastSucceededAt: number | null,
  now: number,
  succeededNow: boolean,
): Verdict {
  return {
    rule: 'noSuccess',
    firing: !succeededNow && since !== null && now - since > hours * 3_600_000,
    message: `no successful refresh for more than ${hours} h (last: ${lastSucceededAt ? new Date(lastSucceededAt).toISOString() : 'never'})`,
  };
}

interface AlertStateRow {
  rule: AlertRule;
  pending: 'firing' | 'resolved' | null;
  message: string | null;
  run_id: number | string | null;
  changed_at: number | string | null;
}

export interface AlertSubject {
  connectorKey: string;
  connectorId: string;
  tenant: string;
}

/**
 * The alerts the verdicts call for, with the connector's firing rules brought up to date: a rule
 * that starts firing alerts, one that stops firing resolves, one that keeps firing says nothing.
 * Each change stays `pending` until markDelivered; a resolved rule's row goes with its delivery.
 */
export async function alertsFor(
  db: Db,
  who: AlertSubject,
  verdicts: Verdict[],
  runId: number | null,
  now: number,
): Promise<Alert[]> {
  const rows = (await db('alert_states')
    .where({ connector_id: who.connectorKey })
    .select('rule', 'pending')) as Pick<AlertStateRow, 'rule' | 'pending'>[];
  // A resolution not yet delivered is no longer firing.
  const firing = new Set(rows.filter((r) => r.pending !== 'resolved').map((r) => r.rule));
  const undelivered = new Set(rows.filter((r) => r.pending === 'firing').map((r) => r.rule));
  const alerts: Alert[] = [];
  for (const verdict of verdicts) {
    if (verdict.firing === firing.has(verdict.rule)) continue; // no change: nothing to say
    if (!verdict.firing && undelivered.has(verdict.rule)) {
      // It recovers before anyone heard it fire: nothing to say either way.
      await db('alert_states').where({ connector_id: who.connectorKey, rule: verdict.rule }).delete();
      continue;
    }
    const alert: Alert = {
      connectorId: who.connectorId,
      tenant: who.tenant,
      rule: verdict.rule,
      state: verdict.firing ? 'firing' : 'resolved',
      message: verdict.firing ? (verdict.message ?? verdict.rule) : `${verdict.rule} resolved`,
      runId,
      at: now,
    };
    const change = { pending: alert.state, message: alert.message, run_id: runId, changed_at: now };
    if (verdict.firing) {
      await db('alert_states')
        .insert({ connector_id: who.connectorKey, rule: verdict.rule, firing_since: now, ...change })
        .onConflict(['connector_id', 'rule'])
        .merge({ firing_since: now, ...change });
    } else {
      await db('alert_states').where({ connector_id: who.connectorKey, rule: verdict.rule }).update(change);
    }
    alerts.push(alert);
  }
  return alerts;
}

/** The alert reached every webhook: a firing rule stays (quiet), a resolved one is forgotten. */
export async function markDelivered(db: Db, connectorKey: string, alert: Alert): Promise<void> {
  // Only this change: a newer one (changed_at) is still to be delivered.
  const row = db('alert_states').where({
    connector_id: connectorKey,
    rule: alert.rule,
    pending: alert.state,
    changed_at: alert.at,
  });
  if (alert.state === 'resolved') await row.delete();
  else await row.update({ pending: null });
}

/** Changes of the connector's rules not yet delivered (a webhook was down, a worker stopped). */
export async function undeliveredAlerts(db: Db, who: AlertSubject): Promise<Alert[]> {
  const rows = (await db('alert_states')
    .where({ connector_id: who.connectorKey })
    .whereNotNull('pending')
    .orderBy('rule')) as AlertStateRow[];
  return rows.map((row) => ({
    connectorId: who.connectorId,
    tenant: who.tenant,
    rule: row.rule,
    state: row.pending!,
    message: row.message ?? row.rule,
    runId: row.run_id === null ? null : Number(row.run_id),
    at: Number(row.changed_at),
  }));
}

/** A generic JSON body, or Slack's incoming-webhook body (`text`). */
export function webhookBody(alert: Alert, format: 'json' | 'slack'): unknown {
  if (format === 'json') return { source: 'deltasync', ...alert, at: new Date(alert.at).toISOString() };
  const icon = alert.state === 'firing' ? ':rotating_light:' : ':white_check_mark:';
  return {
    text: `${icon} deltasync ${alert.tenant}/${alert.connectorId}: ${alert.state === 'firing' ? alert.message : `${alert.rule} resolved`}`,
  };
}

async function recentMedianSize(
  db: Db,
  connectorKey: string,
  beforeRunId: number,
): Promise<number | undefined> {
  const rows = (await db('refresh_runs')
    .where({ connector_id: connectorKey })
    .where('id', '<', beforeRunId)
    .whereIn('status', ['succeeded', 'noop'])
    .whereNotNull('dataset_size')
    .orderBy('id', 'desc')
    .limit(RECENT_RUNS)
    .select('dataset_size')) as { dataset_size: number }[];
  if (rows.length === 0) return undefined;
  const sizes = rows.map((r) => Number(r.dataset_size)).sort((a, b) => a - b);
  const mid = Math.floor(sizes.length / 2);
  return sizes.length % 2 ? sizes[mid]! : (sizes[mid - 1]! + sizes[mid]!) / 2;
}

async function firstRunStart(db: Db, connectorKey: string): Promise<number | null> {
  const row = (await db('refresh_runs')
    .where({ connector_id: connectorKey })
    .min({ started: 'started_at' })
    .first()) as { started: number | null } | undefined;
  return row?.started === null || row?.started === undefined ? null : Number(row.started);
}
