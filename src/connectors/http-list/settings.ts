import { z } from 'zod';
import { pathSegment, secretName, serviceUrl } from '../kit/index';

/** The settings of an `http-list` destination: all that validating a connector needs. */

export const HTTP_LIST_TYPE = 'http-list';

export const httpListOperations = ['add', 'remove', 'truncate', 'list'] as const;
export type HttpListOperation = (typeof httpListOperations)[number];

export const httpListConfigSchema = z.object({
  type: z.literal(HTTP_LIST_TYPE),
  baseUrl: serviceUrl('baseUrl'),
  listId: pathSegment,
  /** Name of the secret holding the bearer token, never the token itself. */
  tokenSecret: secretName,
  /** The endpoints the list offers; the destination has exactly the matching methods. */
  supports: z
    .array(z.enum(httpListOperations))
    .min(1)
    .default([...httpListOperations]),
  /** Records per add or remove call: the destination's limit, so the engine never hands over more. */
  recordsPerCall: z.number().int().min(1).max(100_000).default(1000),
  /** Spacing of calls for this account (shared by every connector using the same base URL and token). */
  callsPerSecond: z.number().positive().optional(),
});

export type HttpListConfig = z.output<typeof httpListConfigSchema>;
export type HttpListConfigInput = z.input<typeof httpListConfigSchema>;
