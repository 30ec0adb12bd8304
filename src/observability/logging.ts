import type { Context as ActivityContext } from '@temporalio/activity';
import {
  IllegalStateError,
  Runtime,
  type ActivityInterceptorsFactory,
  type Logger as TemporalLogger,
  type LogLevel,
  type LogMetadata,
} from '@temporalio/worker';
import { describeError, withLogContext, type LogContext, type Logger } from '../logging';
import { connectorOfId } from '../temporal/names';

/**
 * Temporal's logs as deltasync's JSON lines: the SDK's own (worker, workflow and activity
 * loggers) and, forwarded, Temporal Core's. Every line an activity writes carries its connector
 * and run ids: deltasync's lines through the log context, the SDK's through the activity logger's
 * attributes.
 */

const PINO_METHOD = {
  TRACE: 'trace',
  DEBUG: 'debug',
  INFO: 'info',
  WARN: 'warn',
  ERROR: 'error',
} as const satisfies Record<LogLevel, string>;

/** The Temporal SDK's Logger interface, writing to a pino logger. */
export class PinoTemporalLogger implements TemporalLogger {
  constructor(private readonly target: Logger) {}

  log(level: LogLevel, message: string, meta?: LogMetadata): void {
    const method = PINO_METHOD[level] ?? 'info';
    if (!this.target.isLevelEnabled(method)) return;
    this.target[method]({ ...plainFields(meta), temporal: true }, message);
  }
  trace(message: string, meta?: LogMetadata): void {
    this.log('TRACE', message, meta);
  }
  debug(message: string, meta?: LogMetadata): void {
    this.log('DEBUG', message, meta);
  }
  info(message: string, meta?: LogMetadata): void {
    this.log('INFO', message, meta);
  }
  warn(message: string, meta?: LogMetadata): void {
    this.log('WARN', message, meta);
  }
  error(message: string, meta?: LogMetadata): void {
    this.log('ERROR', message, meta);
  }
}

/** String-keyed metadata (symbols, like the SDK's timestamp, dropped), errors as JSON objects. */
function plainFields(meta: LogMetadata | undefined): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(meta ?? {})) {
    fields[key] = value instanceof Error ? describeError(value) : value;
  }
  return fields;
}

/** Temporal Core's own verbosity for a pino level: warnings unless debugging. */
function coreLevel(level: string): LogLevel {
  if (level === 'trace') return 'DEBUG';
  if (level === 'debug') return 'INFO';
  return 'WARN';
}

/**
 * Install the Temporal Runtime with `logger` as its logger, Core's logs forwarded to it. Must run
 * before any connection or worker exists in this process; returns false (and changes nothing) when
 * a Runtime is installed already, e.g. by a test harness.
 *
 * `shutdownSignals` as in RuntimeOptions: the SDK shuts workers down on these signals (default:
 * SIGINT, SIGTERM, SIGQUIT, SIGUSR2); pass [] to handle signals yourself.
 */
export function installTemporalLogging(
  logger: Logger,
  options: {
    shutdownSignals?: NodeJS.Signals[];
    /** host:port on which the SDK serves its own Prometheus metrics (task slots, schedule-to-start latency). */
    sdkMetricsAddress?: string;
  } = {},
): boolean {
  try {
    Runtime.install({
      logger: new PinoTemporalLogger(logger),
      telemetryOptions: {
        logging: { filter: { core: coreLevel(logger.level), other: 'ERROR' }, forward: {} },
        ...(options.sdkMetricsAddress
          ? { metrics: { prometheus: { bindAddress: options.sdkMetricsAddress } } }
          : {}),
      },
      ...(options.shutdownSignals ? { shutdownSignals: options.shutdownSignals } : {}),
    });
    return true;
  } catch (error) {
    if (error instanceof IllegalStateError) return false;
    throw error;
  }
}

/**
 * Log every activity's start and end (connector, run id, phase, counts: never records, cursors or
 * secrets), and put the connector and run ids on every line logged while it runs, through pino
 * and through the SDK's activity logger.
 */
export function activityLogging(
  logger: Logger,
  options: {
    /**
     * The run id of a refresh workflow run, for the activities that are not given it (the
     * janitor); undefined when there is none yet.
     */
    runIdOf?: (workflowRunId: string) => Promise<number | undefined>;
  } = {},
): ActivityInterceptorsFactory {
  return (context: ActivityContext) => {
    // Until the arguments arrive, the connector id of a refresh is in its workflow id.
    const ofRefresh = connectorOfWorkflow(context.info.workflowExecution?.workflowId);
    const ids: LogContext = { ...ofRefresh };
    return {
      inbound: {
        async execute(input, next) {
          const argument = input.args[0];
          Object.assign(ids, idsOf(argument));
          const { info } = context;
          if (ids.runId === undefined && ofRefresh.connectorId && info.workflowExecution && options.runIdOf) {
            const runId = await options.runIdOf(info.workflowExecution.runId).catch(() => undefined);
            if (runId !== undefined) ids.runId = runId;
          }
          const fields: LogContext = {
            activity: info.activityType,
            attempt: info.attempt,
            ...(info.workflowExecution ? { workflowId: info.workflowExecution.workflowId } : {}),
            ...ids,
          };
          return withLogContext(fields, async () => {
            const started = performance.now();
            logger.info(
              { ...detailsOf(argument), ...(info.heartbeatDetails === undefined ? {} : { resumed: true }) },
              `${info.activityType} started`,
            );
            try {
              const result = await next(input);
              const counts = countsOf(result);
              if (counts.runId !== undefined && ids.runId === undefined) ids.runId = counts.runId as number;
              logger.info(
                { ...counts, durationMs: Math.round(performance.now() - started) },
                `${info.activityType} finished`,
              );
              return result;
            } catch (error) {
              const cancelled = context.cancellationSignal.aborted;
              logger[cancelled ? 'info' : 'warn'](
                {
                  durationMs: Math.round(performance.now() - started),
                  error: describeError(error),
                  ...(cancelled
                    ? { cancelled: String(context.cancellationSignal.reason ?? 'cancelled') }
                    : {}),
                },
                `${info.activityType} ${cancelled ? 'stopped' : 'failed'}`,
              );
              throw error;
            }
          });
        },
      },
      outbound: {
        getLogAttributes: (attributes, next) => next({ ...attributes, ...ids }),
      },
    };
  };
}

function connectorOfWorkflow(workflowId: string | undefined): LogContext {
  const named = workflowId === undefined ? undefined : connectorOfId('deltasync-refresh', workflowId);
  return named ? { connectorId: named.connectorId, tenant: named.tenant } : {};
}

/** Connector and run ids from an activity's argument (every refresh activity takes them). */
function idsOf(argument: unknown): Pick<LogContext, 'connectorId' | 'runId'> {
  if (!argument || typeof argument !== 'object') return {};
  const { connectorId, runId } = argument as Record<string, unknown>;
  return {
    ...(typeof connectorId === 'string' ? { connectorId } : {}),
    ...(typeof runId === 'number' ? { runId } : {}),
  };
}

/** The argument's safe details: the send phase, a forced strategy, a status to finish with. */
function detailsOf(argument: unknown): Record<string, string> {
  if (!argument || typeof argument !== 'object') return {};
  const details: Record<string, string> = {};
  for (const name of ['phase', 'strategy', 'status', 'trigger']) {
    const value = (argument as Record<string, unknown>)[name];
    if (typeof value === 'string') details[name] = value;
  }
  return details;
}

/** Strings a result may carry that are safe to log (never keys, cursors, list ids or messages). */
const SAFE_STRINGS = ['phase', 'strategy', 'status', 'destinationType'];

/** A result's counts: its top-level numbers and a few named strings, nothing else. */
function countsOf(result: unknown): Record<string, unknown> {
  if (!result || typeof result !== 'object') return {};
  const counts: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(result as Record<string, unknown>)) {
    if (typeof value === 'number' && Number.isFinite(value)) counts[name] = value;
    else if (typeof value === 'boolean') counts[name] = value;
    else if (typeof value === 'string' && SAFE_STRINGS.includes(name)) counts[name] = value;
  }
  return counts;
}
