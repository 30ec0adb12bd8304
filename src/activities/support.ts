import { ApplicationFailure, Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import { InvalidConnectorError } from '../connectors/definition';
import type { DestinationFactory } from '../connectors/registry';
import { UnknownConnectorError } from '../connectors/store';
import { DestinationError } from '../connectors/types';
import { PlanningError } from '../core/plan';
import type { Db } from '../db';
import type { RefreshObserver } from '../observability/observer';
import {
  DatasetAccessError,
  StatementTimeoutError,
  TenantNotServedError,
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
}

/**
 * The tenant the running activity acts for. Temporal's authorization decides who may reach a
 * namespace; the tenants policy decides which tenants a namespace holds. A workflow's input may
 * name its tenant (needed where tenants share a namespace), but never one its namespace lacks.
 */
export function callerTenant(tenancy: Tenancy, claimed?: string): TenantPolicy {
  return tenancy.directory.resolve(Context.current().info.namespace, claimed);
}

/** A send kept failing, without committing a batch, for longer than its connector's budget. */
export class FailureBudgetExceeded extends Error {
  override name = 'FailureBudgetExceeded';
}

/** Errors that retrying cannot fix become non-retryable failures with an operator-readable type. */
export async function failClearly<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof DestinationError && error.kind === 'fatal') {
      throw ApplicationFailure.nonRetryable(error.message, 'DestinationFatal');
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

/** For one long destination call (truncate, create, swap): heartbeats while it runs. */
export function failClearlyWhileHeartbeating<T>(work: () => Promise<T>): Promise<T> {
  return failClearly(() => keepHeartbeating(work));
}
