/**
 * The destination port, owned by the core: what the engine needs of an external list, and nothing
 * of how a destination is built (that is connectors/kit/module.ts).
 */

export type AttributeValue = string | number | boolean | null;
export type Attributes = Record<string, AttributeValue>;

export interface Member {
  key: string;
  attributes: Attributes;
}

/**
 * What a destination can do, derived from the methods it has (see capabilitiesOf): the planner
 * picks strategies from it.
 */
export interface Capabilities {
  /** Add members (an add of an existing key updates its attributes). */
  add: boolean;
  /** Remove members by key. */
  remove: boolean;
  /** Empty the whole list in one operation. */
  truncate: boolean;
  /** Read the members back (keys, paginated). */
  listMembers: boolean;
  /** The destination keeps attributes, so an attribute change must be sent. */
  updateAttributes: boolean;
  /** Build a new list and swap it in (new list + swap). */
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
  /**
   * False: a batch refused as a whole is not split to isolate its bad records (the sender's
   * default is to split). For APIs where one call costs a slow job, so a split costs minutes.
   */
  splitRefusedBatches?: boolean;
  /**
   * `truncate` empties only lists holding fewer members than this (HubSpot: 100,000); the planner
   * does not choose truncate + reload for a list at or over it (undefined: no published limit).
   */
  truncateMaxMembers?: number;
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

/**
 * What one batch call achieved: the keys the destination refused or did not acknowledge; every
 * other key of the batch was delivered. What the call cost is not the destination's to report:
 * the HTTP client it was given counts every call (core/api-calls.ts).
 */
export interface BatchResult {
  rejected: Rejection[];
  /**
   * What the destination itself counted in this call, where its API says (Meta: num_received and
   * num_invalid_entries): the run's match rate is made of these.
   */
  report?: DestinationReport;
  /**
   * The destination's estimate of the share of the call's records it matched to its users, as a
   * range of percentages (Google's match_rate_range of a Customer Match job), where it gives one.
   */
  matchEstimate?: MatchEstimate;
}

export interface DestinationReport {
  received: number;
  invalid: number;
}

export interface MatchEstimate {
  /** The records the estimate is about. */
  records: number;
  /** The matched share lies between these percentages (both included). */
  lowPercent: number;
  highPercent: number;
}

export interface MemberPage {
  keys: string[];
  next: string | null;
}

/**
 * New list + swap, for destinations that cannot change a list in place. `create` makes an empty
 * list and returns its id; it must be idempotent for the same `name`, since a retried activity
 * calls it again. Members are added through `forList(id)`; `swap` makes it the live list and says
 * where the live list is now (`liveListId` when the swap moves the new list onto the old one's
 * id, a rename; otherwise the new list's id); `retire` deletes a list no longer used.
 */
export interface ReplaceList {
  create(name: string): Promise<{ listId: string }>;
  /** The same destination, writing to another list of the same account. */
  forList(listId: string): Destination;
  swap(listId: string): Promise<{ liveListId?: string }>;
  retire(listId: string): Promise<void>;
}

/**
 * The port every destination implements: the engine only ever talks to a list through this.
 * A list is changed in place (`add` and `remove`) or, upload-only, by building a new one
 * (`replaceList`); every other capability is an optional method, and its presence is the
 * capability (capabilitiesOf). Batches handed to `add` and `remove` always fit `limits`.
 */
export interface Destination {
  readonly type: string;
  readonly limits: Limits;
  add?(members: Member[]): Promise<BatchResult>;
  remove?(keys: string[]): Promise<BatchResult>;
  /** Empty the whole list in one operation. */
  truncate?(): Promise<void>;
  /** Read the members back, a page at a time (`cursor` null: the first page). */
  listMembers?(cursor: string | null, limit: number): Promise<MemberPage>;
  replaceList?: ReplaceList;
  /** The destination stores member keys only: an attribute change need not be sent. */
  readonly keysOnly?: boolean;
  /**
   * Are the credentials good and the list reachable? Resolves with what was checked (one line,
   * e.g. "list 42 reachable, 1,200 members"); rejects with a DestinationError that says what to fix.
   */
  check(): Promise<string>;
  /** Release sockets and pools. */
  close(): Promise<void>;
}

/** A destination that changes its list in place; the sender writes through it. */
export type WritableDestination = Destination & Required<Pick<Destination, 'add' | 'remove'>>;

export function capabilitiesOf(destination: Destination): Capabilities {
  return {
    add: destination.add !== undefined,
    remove: destination.remove !== undefined,
    truncate: destination.truncate !== undefined,
    listMembers: destination.listMembers !== undefined,
    updateAttributes: destination.keysOnly !== true,
    createList: destination.replaceList !== undefined,
  };
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

/**
 * The account's quota for a period (a day) is used up: no retry can succeed before `resumeAt`,
 * so the run pauses until then instead of burning its retries (HubSpot's DAILY policy).
 */
export class QuotaExhaustedError extends Error {
  constructor(
    /** What ran out and when it comes back, for the operator (the vendor's policy name). */
    readonly reason: string,
    readonly resumeAt: Date,
  ) {
    super(`${reason}; the run pauses until ${resumeAt.toISOString()}`);
    this.name = 'QuotaExhaustedError';
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
