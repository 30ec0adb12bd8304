import { InvalidTenantsPolicyError, TenantNotServedError } from '../tenancy/policy';
import {
  isGrpcServiceError,
  ScheduleAlreadyRunning,
  ScheduleNotFoundError,
  ServiceError,
  WorkflowNotFoundError,
} from '@temporalio/client';
import { ApplicationFailure, NamespaceNotFoundError, TemporalFailure } from '@temporalio/common';
import { NoRunningRefreshError, NothingToApproveError, WorkerTimeoutError } from '../client';
import { InvalidConnectorError } from '../core/connector';
import { UnknownConnectorError } from '../core/connector-store';
import { describeCliError, EXIT, type ExitCode } from './exit-codes';

export {
  CliError,
  EXIT,
  EXIT_CODES_HELP,
  notFound,
  unavailable,
  usageError,
  type ExitCode,
} from './exit-codes';

/*
 * How a failure is told to people: one line (or a few) and an exit code (exit-codes.ts). Loaded
 * only when a command fails with something other than the CLI's own errors: it knows the error
 * types of the Temporal client, the client and the worker.
 */

/**
 * Signs, in an error's code or message, that a database could not be reached. Only read on
 * failures a worker reported (or on errors of this process's own database, for `worker` and
 * `demo`): the same words (ECONNREFUSED) describe a refused Temporal connection, which is
 * recognised by its type first.
 */
const DATABASE_DOWN =
  /ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ETIMEDOUT|ER_ACCESS_DENIED_ERROR|ER_BAD_DB_ERROR|Access denied for user|Unknown database|SQLITE_CANTOPEN|PROTOCOL_CONNECTION_LOST/;

/** Signs that Temporal could not be reached (the native worker connection's transport errors). */
const TEMPORAL_DOWN = /tonic::transport|tcp connect error|Failed to connect before the deadline/;

/** gRPC status codes meaning "the server is not there (now)". */
const GRPC_UNAVAILABLE = 14;
const GRPC_DEADLINE_EXCEEDED = 4;
const GRPC_INVALID_ARGUMENT = 3;
const GRPC_NOT_FOUND = 5;

/**
 * What to print (one line per entry, each prefixed `deltasync: `) and which exit code to use.
 * Never a stack trace: these are operators' messages.
 */
export function describeFailure(
  error: unknown,
  context: { tenant?: string; address?: string } = {},
): { code: ExitCode; lines: string[] } {
  const own = describeCliError(error);
  if (own) return own;
  if (error instanceof InvalidConnectorError) return { code: EXIT.usage, lines: error.problems };
  if (error instanceof InvalidTenantsPolicyError)
    return { code: EXIT.usage, lines: error.message.split('\n') };
  if (error instanceof UnknownConnectorError) {
    // Say which tenant was searched: the connector may well exist in another one.
    const tenant = error.tenant ?? context.tenant;
    const scoped = error.tenant || !tenant ? error.message : `${error.message} in tenant '${tenant}'`;
    return { code: EXIT.notFound, lines: [scoped] };
  }
  if (error instanceof TenantNotServedError) {
    return { code: EXIT.notFound, lines: [`${error.message}: check --tenant and --namespace`] };
  }
  if (error instanceof NothingToApproveError || error instanceof NoRunningRefreshError) {
    return { code: EXIT.notFound, lines: [error.message] };
  }
  if (error instanceof ScheduleNotFoundError) return { code: EXIT.notFound, lines: [error.message] };
  if (error instanceof WorkflowNotFoundError) return { code: EXIT.notFound, lines: [error.message] };
  if (error instanceof NamespaceNotFoundError) return { code: EXIT.notFound, lines: [error.message] };
  if (error instanceof ScheduleAlreadyRunning) {
    return { code: EXIT.usage, lines: [`${error.message}; change it with 'schedules update'`] };
  }
  if (error instanceof WorkerTimeoutError) {
    return { code: EXIT.unavailable, lines: [`${error.message}: the worker is stuck or overloaded`] };
  }
  const at = context.address ? ` at ${context.address}` : '';
  const chain = causeChain(error);
  // What this process's Temporal client raised (a gRPC status, wrapped by the SDK in a
  // ServiceError), as opposed to failures a worker reported through Temporal (TemporalFailure).
  const clientSide = chain.slice(
    0,
    firstIndex(chain, (e) => e instanceof TemporalFailure),
  );
  const grpc = clientSide.find(isGrpcServiceError);
  if (grpc) {
    const code = grpc.code as number;
    const reason = grpc.details || grpc.message;
    if (code === GRPC_UNAVAILABLE || code === GRPC_DEADLINE_EXCEEDED) {
      return { code: EXIT.unavailable, lines: [`Temporal${at} is unavailable: ${firstLine(reason)}`] };
    }
    if (code === GRPC_INVALID_ARGUMENT) return { code: EXIT.usage, lines: [reason] };
    if (code === GRPC_NOT_FOUND) return { code: EXIT.notFound, lines: [reason] };
    return { code: EXIT.failed, lines: [`Temporal${at} refused the call: ${firstLine(reason)}`] };
  }
  const transport = clientSide.find(
    (e) => e instanceof Error && (e.name === 'TransportError' || TEMPORAL_DOWN.test(e.message)),
  );
  if (transport instanceof Error) {
    // The worker's native connection reports Rust transport errors: keep the readable part.
    const reason = /message: "([^"]+)"/.exec(transport.message)?.[1] ?? firstLine(transport.message);
    return { code: EXIT.unavailable, lines: [`cannot reach Temporal${at} (${reason})`] };
  }
  const innermost = rootCause(error);
  const message = innermost instanceof Error ? innermost.message : String(innermost);
  // A ServiceError whose cause is not a gRPC status still came from talking to Temporal: its
  // connection words are about Temporal's connection.
  const fromTemporalClient = clientSide.some((e) => e instanceof ServiceError);
  const errorCode = (innermost as { code?: unknown } | undefined)?.code;
  const databaseDown =
    DATABASE_DOWN.test(message) || (typeof errorCode === 'string' && DATABASE_DOWN.test(errorCode));
  if (fromTemporalClient) {
    return databaseDown
      ? { code: EXIT.unavailable, lines: [`Temporal${at} is unavailable: ${firstLine(message)}`] }
      : { code: EXIT.failed, lines: [`Temporal${at}: ${firstLine(message)}`] };
  }
  if (databaseDown) {
    const reported = chain.some((e) => e instanceof TemporalFailure) ? ' (reported by the worker)' : '';
    return { code: EXIT.unavailable, lines: [`database unavailable${reported}: ${firstLine(message)}`] };
  }
  return { code: EXIT.failed, lines: [firstLine(message)] };
}

/** The error and its causes, outermost first. */
function causeChain(error: unknown): unknown[] {
  const chain: unknown[] = [error];
  for (let current = error; chain.length < 10 && current instanceof Error && current.cause;) {
    current = current.cause;
    chain.push(current);
  }
  return chain;
}

function firstIndex<T>(items: T[], test: (item: T) => boolean): number {
  const index = items.findIndex(test);
  return index === -1 ? items.length : index;
}

/** The deepest cause: Temporal wraps an activity's error in ActivityFailure in WorkflowFailedError. */
export function rootCause(error: unknown): unknown {
  let current = error;
  for (let depth = 0; depth < 10; depth++) {
    const cause: unknown = current instanceof Error ? current.cause : undefined;
    if (!(cause instanceof Error)) break;
    current = cause;
  }
  return current;
}

/** The ApplicationFailure of this type somewhere in the cause chain, if any. */
export function applicationFailure(error: unknown, type: string): ApplicationFailure | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 10 && current instanceof Error; depth++) {
    if (current instanceof ApplicationFailure && current.type === type) return current;
    current = current.cause;
  }
  return undefined;
}

/** The first line, without grpc-js's trailing "Resolution note: …" about name resolution. */
const firstLine = (text: string) =>
  text
    .split('\n')[0]!
    .replace(/\s*Resolution note:.*$/, '')
    .trim();
