import pino from 'pino';

/**
 * Structured JSON logs (to stderr). Never log record data or secret values: log connector ids,
 * run ids and counts.
 */
export const logger = pino(
  { level: process.env.DELTASYNC_LOG_LEVEL ?? 'info', base: { service: 'deltasync' } },
  pino.destination(2),
);
