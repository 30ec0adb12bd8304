import { AsyncLocalStorage } from 'node:async_hooks';
import pino, { type DestinationStream, type Logger } from 'pino';

export type { Logger };

/**
 * Structured JSON logs (to stderr). Never log record data or secret values: log connector ids,
 * run ids and counts. This is the one place that creates pino loggers; the level comes from
 * DELTASYNC_LOG_LEVEL (trace, debug, info, warn, error, fatal, silent; default info).
 */

/** Fields every line logged while an activity runs carries (see withLogContext). */
export interface LogContext {
  connectorId?: string;
  tenant?: string;
  runId?: number;
  activity?: string;
  workflowId?: string;
  attempt?: number;
}

const logContext = new AsyncLocalStorage<LogContext>();

/** Run `work` with `fields` added to every line any pino logger writes inside it (sync or async). */
export function withLogContext<T>(fields: LogContext, work: () => T): T {
  return logContext.run({ ...logContext.getStore(), ...fields }, work);
}

export interface LoggerOptions {
  /** Default: DELTASYNC_LOG_LEVEL, else info. */
  level?: string;
  /** Default: stderr. Tests pass a stream to read the lines back. */
  destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? process.env.DELTASYNC_LOG_LEVEL ?? 'info',
      base: { service: 'deltasync' },
      // The activity's connector and run ids; a field the log call names itself wins.
      mixin: () => ({ ...logContext.getStore() }),
    },
    options.destination ?? pino.destination(2),
  );
}

/**
 * An error's type, message and stack only. Not its other properties: an HTTP error keeps the
 * destination's answer, which may name records.
 */
export function describeError(error: unknown): { type: string; message: string; stack?: string } {
  if (!(error instanceof Error)) return { type: typeof error, message: String(error) };
  return { type: error.name, message: error.message, ...(error.stack ? { stack: error.stack } : {}) };
}

export const logger = createLogger();
