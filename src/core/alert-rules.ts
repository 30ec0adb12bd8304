import { z } from 'zod';
import { SECRET_NAME } from './destination';

/**
 * Alert rules, as a connector's policy (or its tenant's policy) sets them: which runs alert and
 * where the alerts go. Evaluated by core/alerts.ts.
 */
export const alertRulesSchema = z
  .object({
    /** Where alerts go: a secret holding the webhook URL (Slack's are credentials), and its format. */
    webhooks: z
      .array(
        z
          .object({
            urlSecret: z.string().regex(SECRET_NAME, 'a secret name: A-Z, 0-9 and _'),
            format: z.enum(['json', 'slack']).default('json'),
          })
          .strict(),
      )
      .min(1),
    /** A run that failed. */
    failedRun: z.boolean().default(true),
    /** A run whose rejected records exceed this share of the records it sent. */
    rejectedShareAbove: z.number().min(0).max(1).optional(),
    /** A run whose dataset size is more than this factor above or below the recent runs' median. */
    countDeviationFactor: z.number().gt(1).optional(),
    /** A run waiting for approval at the mass-delete guard. */
    awaitingApproval: z.boolean().default(true),
    /**
     * No successful run for this many hours, counted from the last success, else the first run,
     * else when the connector was saved: judged when a run finishes and by the alert watchdog.
     */
    noSuccessWithinHours: z.number().positive().optional(),
  })
  .strict();

export type AlertRules = z.output<typeof alertRulesSchema>;
