import type { z } from 'zod';
import type { Destination, Limits, SecretResolver, Target } from '../../core/destination';
import { requestJson, retryPolicy, type JsonRequest, type JsonResponse, type RetryOptions } from './http';
import { createThrottle, type Throttle } from './throttle';

export type { Throttle } from './throttle';

/**
 * How a destination type is built: its settings schema (validated when a connector is saved),
 * what it writes to (for the tenants policy), and how the worker builds it. Adding a destination
 * = a folder with one of these, listed in catalog.ts (see docs/connectors.md).
 */
export interface DestinationModule<Schema extends SettingsSchema = SettingsSchema> {
  type: z.output<Schema>['type'];
  configSchema: Schema;
  create(config: z.output<Schema>, context: DestinationContext): Destination;
  /**
   * Everything a connector with this config writes to (origins, directories, tables, keys), for
   * the tenants policy. `secrets` sees only the connector's tenant's secrets; a target that lives
   * in a secret (a database URL) is read from it.
   */
  targets(config: z.output<Schema>, secrets: SecretResolver): Target[];
}

type SettingsSchema = z.ZodObject<{ type: z.ZodLiteral<string> }>;

export function defineDestination<Schema extends SettingsSchema>(
  module: DestinationModule<Schema>,
): DestinationModule<Schema> {
  return module;
}

/**
 * What a destination is built with. Secrets are its tenant's only. `http` is the one way a
 * destination makes HTTP calls: every request it makes is held to the account's rate limit and
 * concurrency cap (shared by every connector of the worker that writes to that account), retried
 * by the shared policy, refused when the tenant may not reach its host, and counted by endpoint.
 */
export interface DestinationContext {
  secrets: SecretResolver;
  /** The list the connector points at now (after a swap), when it differs from the config's. */
  listId?: string;
  http(account: HttpAccount): HttpClient;
  /**
   * The same limits for calls that are not HTTP (a Redis command, a SQL statement); count each
   * with meteredCall (core/api-calls.ts).
   */
  throttle: Throttle;
  /**
   * Overrides of the retry policy (tests: a sleep that does not wait), for destinations whose
   * protocol is not HTTP and so retry in a loop of their own; `http` applies them itself.
   */
  retry: RetryOptions;
}

/** Who the calls are for and how they behave: the account's limits and the request defaults. */
export interface HttpAccount {
  /** Identifies the rate-limit budget, e.g. `meta:act_123`; scoped to the tenant by the worker. */
  account: string;
  limits: Limits;
  /** Defaults of every request (service name, hints, classify, retry knobs). */
  defaults?: Omit<JsonRequest, 'method' | 'url' | 'body' | 'endpoint'>;
}

export interface HttpClient {
  /** One logical request, counted at `endpoint` (e.g. `users:add`). */
  request<T = unknown>(endpoint: string, request: JsonRequest): Promise<JsonResponse<T>>;
}

export interface ContextOptions {
  secrets: SecretResolver;
  listId?: string;
  /** Shared by every destination of the process; default: a throttle of this context's own. */
  throttle?: Throttle;
  /** Overrides of the retry policy for every request (tests: a sleep that does not wait). */
  retry?: RetryOptions;
}

/** A context: the worker builds one per destination, tests build their own. */
export function createDestinationContext(options: ContextOptions): DestinationContext {
  const throttle = options.throttle ?? createThrottle();
  return {
    secrets: options.secrets,
    listId: options.listId,
    throttle,
    retry: options.retry ?? {},
    http: ({ account, limits, defaults = {} }) => ({
      request: (endpoint, request) =>
        throttle(account, limits, () =>
          requestJson({ ...defaults, ...request, ...retryPolicy(options.retry ?? {}), endpoint }),
        ),
    }),
  };
}
