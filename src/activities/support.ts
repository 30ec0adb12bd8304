import { ApplicationFailure, Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import { connectorKey, InvalidConnectorError, type ConnectorDefinition } from '../core/connector';
import type { DestinationFactory } from '../connectors/registry';
import { loadConnector, UnknownConnectorError } from '../core/connector-store';
import type { DatasetReader } from '../core/dataset';
import { DestinationError, QuotaExhaustedError, type Destination } from '../core/destination';
import { QUOTA_EXHAUSTED } from '../temporal/names';
import { PlanningError } from '../core/plan';
import { FailureBudgetExceeded, liveListId, type Attempt } from '../core/refresh';
import type { Db } from '../db';
import type { RefreshObserver } from '../observability/observer';
import {
  DatasetAccessError,
  StatementTimeoutError,
  TenantNotServedError,
  withEgressPolicy,
  type Tenancy,
  type TenantPolicy,
} from '../tenancy';

/** What every activity factory receives (tests hand in real or emulated parts). */
export interface ActivityDependencies {
  db: Db;
  destinations: DestinationFactory;
  /** Who callers are (namespace → tenant), their secrets, dataset access and allowlists. */
  tenancy: Tenancy;
  now?: () => number;
  /** For triggered refreshes (schedules, change triggers): start or attach through Temporal. */
  temporal?: Client;
  taskQueue?: string;
  /** Metrics: API calls, records sent, rejections, rate-limit waits, run durations. */
  observer?: RefreshObserver;
  /** Waits between attempts to deliver an alert (default 0.5, 2 and 8 s; tests pass short ones). */
  alertBackoffMs?: number[];
}

/** Which attempt of its activity this is, for the engine's failure budget. */
export function currentAttempt(): Attempt {
  const { attempt, scheduledTimestampMs } = Context.current().info;
  return { number: attempt, scheduledAt: scheduledTimestampMs };
}

/**
 * The caller's connectors: `open` finds one for the caller's tenant (another tenant's does not
 * exist for this caller); `withDestination` runs `use` with its destination, bound to the list the
 * connector points at now, its secrets its tenant's, every HTTP request it makes held to its
 * tenant's allowlist.
 */
export function connectorAccess({ db, tenancy, destinations }: ActivityDependencies) {
  async function open(ref: { connectorId: string; tenant?: string }) {
    const tenant = callerTenant(tenancy, ref.tenant);
    const connector = await loadConnector(db, tenant.id, ref.connectorId);
    const key = connectorKey(tenant.id, connector.id);
    return { tenant, connector, key, source: () => tenancy.datasets.reader(tenant, connector) };
  }

  async function withDestination<T>(
    ref: { connectorId: string; tenant?: string },
    use: (destination: Destination, opened: OpenedConnector) => Promise<T>,
  ): Promise<T> {
    const opened = await open(ref);
    const { tenant, connector, key } = opened;
    const listId = await liveListId(db, key);
    const destination = destinations(connector.destination, { tenant: tenant.id, listId });
    try {
      return await withEgressPolicy(tenant.id, tenant.destinations, () => use(destination, opened));
    } finally {
      await destination.close();
    }
  }

  return { open, withDestination };
}

/** A connector opened for its tenant: its key, and how its dataset is read. */
export interface OpenedConnector {
  tenant: TenantPolicy;
  connector: ConnectorDefinition;
  key: string;
  source: () => Promise<DatasetReader>;
}

/**
 * The tenant the running activity acts for. Temporal's authorization decides who may reach a
 * namespace; the tenants policy decides which tenants a namespace holds. A workflow's input may
 * name its tenant (needed where tenants share a namespace), but never one its namespace lacks.
 */
export function callerTenant(tenancy: Tenancy, claimed?: string): TenantPolicy {
  return tenancy.directory.resolve(Context.current().info.namespace, claimed);
}

export { FailureBudgetExceeded };

/** Errors that retrying cannot fix become non-retryable failures with an operator-readable type. */
export async function failClearly<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof DestinationError && error.kind === 'fatal') {
      throw ApplicationFailure.nonRetryable(error.message, 'DestinationFatal');
    }
    if (error instanceof QuotaExhaustedError) {
      // The workflow reads when the quota resets from the details, and sleeps until then.
      throw ApplicationFailure.create({
        message: error.message,
        type: QUOTA_EXHAUSTED,
        nonRetryable: true,
        details: [{ reason: error.reason, resumeAt: error.resumeAt.toISOString() }],
      });
    }
    if (error instanceof InvalidConnectorError) {
      // The problems travel as details, so the client can raise the same error for its caller.
      throw ApplicationFailure.create({
        message: error.message,
        type: error.name,
        nonRetryable: true,
        details: [error.problems],
      });
    }
    if (error instanceof TenantNotServedError) {
      // Who asked where travels as details, so the client raises the same error for its caller.
      const { tenant, namespace, served } = error;
      throw ApplicationFailure.create({
        message: error.message,
        type: error.name,
        nonRetryable: true,
        details: [{ tenant, namespace, served }],
      });
    }
    if (
      error instanceof PlanningError ||
      error instanceof UnknownConnectorError ||
      error instanceof StatementTimeoutError ||
      error instanceof FailureBudgetExceeded ||
      error instanceof DatasetAccessError
    ) {
      throw ApplicationFailure.nonRetryable(error.message, error.name);
    }
    throw error;
  }
}

/** Well inside the send's 20 s heartbeat timeout, while one long call or statement runs. */
const HEARTBEAT_EVERY_MS = 5_000;

/**
 * Long single statements and long destination calls cannot heartbeat from inside; a timer does it
 * while they run, repeating the latest details (a heartbeat replaces the previous details).
 */
export async function keepHeartbeating<T>(
  work: () => Promise<T>,
  details: () => unknown = () => undefined,
): Promise<T> {
  const context = Context.current();
  const timer = setInterval(() => context.heartbeat(details()), HEARTBEAT_EVERY_MS);
  try {
    return await work();
  } finally {
    clearInterval(timer);
  }
}

/**
 * `work`, handed `report` to heartbeat its progress after each step; while one long call or
 * statement runs, a timer repeats the latest report.
 */
export function keepReporting<T, P>(work: (report: (details: P) => void) => Promise<T>): Promise<T> {
  const context = Context.current();
  let latest: P | undefined;
  const report = (details: P) => {
    latest = details;
    context.heartbeat(details);
  };
  return keepHeartbeating(
    () => work(report),
    () => latest,
  );
}

/** For one long destination call (truncate, create, swap): heartbeats while it runs. */
export function failClearlyWhileHeartbeating<T>(work: () => Promise<T>): Promise<T> {
  return failClearly(() => keepHeartbeating(work));
}
