import { z } from 'zod';
import {
  DestinationError,
  SECRET_NAME,
  type Rejection,
  type SecretResolver,
  type Target,
} from '../../core/destination';

/**
 * Plumbing that the destination connectors share: settings, reading secrets, and checking an
 * answer's shape. Each piece is here because several connectors did it the same way.
 */

/** The name of a secret (never its value): upper-case letters, digits and _. */
export const secretName = z
  .string()
  .regex(
    SECRET_NAME,
    'must name a secret: upper-case letters, digits and _ (e.g. CRM_TOKEN), not the secret itself',
  );

/**
 * The root URL of a service: http(s), and nothing that could change where a request goes or
 * carry a credential: no user:password (secrets go by name), no query and no fragment (appending
 * a path to `…/metrics?` or `…#` would call another endpoint).
 */
export function serviceUrl(field: string) {
  return z
    .url({ protocol: /^https?$/, error: `${field} must be an http:// or https:// URL` })
    .refine((url) => {
      const u = new URL(url);
      return u.username === '' && u.password === '';
    }, `${field} must not contain a user or password: put credentials in a secret and name it`)
    .refine((url) => !url.includes('?') && !url.includes('#'), `${field} must not contain ? or #`);
}

/**
 * An id that becomes one segment of a request path: percent-encoded where used, and never `.` or
 * `..`, which URL parsing would resolve to another path.
 */
export const pathSegment = z
  .string()
  .min(1)
  .max(255)
  .refine((id) => id !== '.' && id !== '..', 'must not be . or ..');

/** An HTTP target for the tenants policy. */
export function httpTarget(field: string, url: string): Target {
  return { kind: 'http', field, url };
}

/**
 * A secret's value, or a fatal error: without its credentials a destination cannot do anything,
 * so retrying is pointless. The resolver's message names the secret; `context` starts the
 * message (the destination type, perhaps with the config field).
 */
export function resolveSecret(secrets: SecretResolver, name: string, context: string): string {
  try {
    return secrets(name);
  } catch (err) {
    throw new DestinationError(`${context}: ${err instanceof Error ? err.message : String(err)}`, 'fatal');
  }
}

/**
 * A secret read on first use, inside the activity, and then kept: a missing secret fails the run
 * that needs it, not the building of the connector.
 */
export function lazySecret(secrets: SecretResolver, name: string, context: string): () => string {
  let value: string | undefined;
  return () => (value ??= resolveSecret(secrets, name, context));
}

/**
 * A successful answer checked against what the connector expects. Anything else means the base
 * URL points at something that is not the service (a proxy, another API): fatal, since every call
 * would find the same. `context` starts the message, e.g. "unexpected answer from GET … (is
 * baseUrl X?)".
 */
export function parseAnswer<T>(
  schema: z.ZodType<T>,
  response: { body: unknown; status?: number },
  context: string,
): T {
  const parsed = schema.safeParse(response.body);
  if (parsed.success) return parsed.data;
  throw new DestinationError(`${context}: ${z.prettifyError(parsed.error)}`, 'fatal', response.status);
}

/**
 * Rejections for the records an answer does not acknowledge: every key of `keys` that `rejected`
 * does not already refuse, with the same "not acknowledged: …" reason. The engine keeps them
 * pending and sends them again; re-sending is safe, committing an unconfirmed record is not.
 */
export function notAcknowledged(
  keys: Iterable<string>,
  rejected: readonly Rejection[],
  why: string,
): Rejection[] {
  const refused = new Set(rejected.map((r) => r.key));
  const reason = `not acknowledged: ${why}`;
  return [...keys].filter((key) => !refused.has(key)).map((key) => ({ key, reason }));
}
