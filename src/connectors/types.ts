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
  /** Sustained calls per second the destination allows (undefined: no published limit). */
  callsPerSecond?: number;
}

export interface Rejection {
  key: string;
  reason: string;
}

/** What one batch call achieved. Keys not listed in `rejected` were delivered. */
export interface BatchOutcome {
  rejected: Rejection[];
  /** HTTP (or equivalent) calls made for this batch, retries included. */
  apiCalls: number;
  /** Times the destination told us to slow down (429 or equivalent) while sending this batch. */
  rateLimitWaits: number;
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
  /** Release sockets and pools. */
  close(): Promise<void>;
}

/**
 * A failure the batch cannot recover from by retrying (bad credentials, missing list, invalid
 * request). `fatal` errors stop the refresh; non-fatal ones fail only the batch in hand.
 */
export class DestinationError extends Error {
  constructor(
    message: string,
    readonly kind: 'fatal' | 'batch' | 'retryable',
    readonly status?: number,
  ) {
    super(message);
    this.name = 'DestinationError';
  }
}

/** Looks up a credential by name; connectors store names, never values. */
export type SecretResolver = (name: string) => string;
