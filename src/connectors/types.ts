/**
 * The one interface every destination implements. The engine only ever talks to a list through
 * this; what a list can do is declared in `capabilities`, and the planner picks strategies from it.
 */

export type AttributeValue = string | number | boolean | null;
export type Attributes = Record<string, AttributeValue>;

export interface Member {
  key: string;
  attributes: Attributes;
}

export interface Capabilities {
  /** Add members (an add of an existing key updates its attributes). */
  add: boolean;
  /** Remove members by key. */
  remove: boolean;
  /** Empty the whole list in one operation. */
  truncate: boolean;
  /** Read the members back (keys, paginated). */
  listMembers: boolean;
  /** Update attributes of existing members without re-adding them. */
  updateAttributes: boolean;
  /** Create a new list (for new-list-and-swap). */
  createList: boolean;
}

export interface Limits {
  /** Most records the destination accepts in one call. */
  recordsPerCall: number;
  /** Largest request body in bytes (undefined: no published limit); batches are split to fit. */
  bytesPerCall?: number;
  /** Sustained calls per second the destination allows (undefined: no published limit). */
  callsPerSecond?: number;
  /** Calls in flight at once per account (undefined: no published limit). */
  maxConcurrent?: number;
}

export interface Rejection {
  key: string;
  reason: string;
  /**
   * The destination refuses it for now for reasons outside the record (an audience that would
   * become too small): it stays pending with the reason, without using up an attempt, so it is
   * never quarantined for it.
   */
  deferred?: boolean;
}

/** What one batch call achieved. Keys not listed in `rejected` were delivered. */
export interface BatchOutcome {
  rejected: Rejection[];
  /** HTTP (or equivalent) calls made for this batch, retries included. */
  apiCalls: number;
  /**
   * The same calls by endpoint (`users:add`, `jobs:run`, …) when a batch needs more than one
   * kind of call; without it, all calls count for the operation (`add`, `remove`, `truncate`).
   */
  callsByEndpoint?: Record<string, number>;
  /**
   * Of those calls, by endpoint, the ones retried inside the batch: answered 429 (or equivalent)
   * and waited for, or failed (5xx, network) and tried again. The rest of the calls succeeded.
   */
  retriesByEndpoint?: Record<string, CallRetries>;
  /** Times the destination told us to slow down (429 or equivalent) while sending this batch. */
  rateLimitWaits: number;
}

/** Calls of one endpoint that were retried: rate-limited ones, and failed ones tried again. */
export interface CallRetries {
  rateLimited: number;
  retried: number;
}

export interface MemberPage {
  keys: string[];
  next: string | null;
}

export interface Destination {
  readonly type: string;
  readonly capabilities: Capabilities;
  readonly limits: Limits;
  add(members: Member[]): Promise<BatchOutcome>;
  remove(keys: string[]): Promise<BatchOutcome>;
  truncate(): Promise<BatchOutcome>;
  listMembers(cursor: string | null, limit: number): Promise<MemberPage>;
  /**
   * New list + swap, for destinations that cannot change a list in place (capability
   * `createList`). `createList` makes an empty list and returns its id; it must be idempotent for
   * the same `name`, since a retried activity calls it again. Members are then added to it
   * through `forList(id)`; `swapList` makes it the live one; `deleteList` retires the old one.
   */
  createList?(name: string): Promise<{ listId: string; outcome: BatchOutcome }>;
  /** The same destination, writing to another list of the same account. */
  forList?(listId: string): Destination;
  /**
   * Returns where the live list is now: `liveListId` when a swap moves the new list onto the old
   * one's id (a rename), otherwise the new list's id is the live one.
   */
  swapList?(listId: string): Promise<BatchOutcome & { liveListId?: string }>;
  deleteList?(listId: string): Promise<BatchOutcome>;
  /** Release sockets and pools. */
  close(): Promise<void>;
}

/** What the worker hands a destination when it builds one. */
export interface DestinationContext {
  secrets: SecretResolver;
  /** The list the connector points at now (after a swap), when it differs from the config's. */
  listId?: string;
  /**
   * Run one call under the worker-wide rate limit and concurrency cap of an account, shared by
   * every activity of this worker that talks to it. `account` identifies it (e.g.
   * `meta:act_123`); the limits come from the destination.
   */
  throttle: Throttle;
}

export type Throttle = <T>(account: string, limits: Limits, call: () => Promise<T>) => Promise<T>;

/**
 * A failure the batch cannot recover from by retrying (bad credentials, missing list, invalid
 * request). `fatal` errors stop the refresh; non-fatal ones fail only the batch in hand.
 */
export class DestinationError extends Error {
  /** What the failed attempt cost, when the destination knows (for the run's counters). */
  apiCalls?: number;
  rateLimitWaits?: number;
  callsByEndpoint?: Record<string, number>;
  retriesByEndpoint?: Record<string, CallRetries>;

  constructor(
    message: string,
    readonly kind: 'fatal' | 'batch' | 'retryable',
    readonly status?: number,
  ) {
    super(message);
    this.name = 'DestinationError';
  }
}

/**
 * A secret's name as connectors write it (`tokenSecret: CRM_TOKEN`): upper-case letters, digits
 * and _. The worker looks a name up among the connector's tenant's secrets only.
 */
export const SECRET_NAME = /^[A-Z][A-Z0-9_]{0,127}$/;

/** Looks up a credential by name; connectors store names, never values. */
export type SecretResolver = (name: string) => string;

/**
 * Something a destination writes to, as its module declares it: the tenants policy must allow
 * every target before a connector is saved or a refresh sends anything. `field` names the setting
 * it comes from, for error messages.
 */
export type Target =
  | { kind: 'http'; field: string; url: string }
  | { kind: 'file'; field: string; path: string }
  | { kind: 'mysql'; field: string; host: string; port: number; database: string; table: string }
  | { kind: 'redis'; field: string; host: string; port: number; db: number; keys: string[] };
