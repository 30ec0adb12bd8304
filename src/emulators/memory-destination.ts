import {
  DestinationError,
  type Attributes,
  type BatchOutcome,
  type Capabilities,
  type Destination,
  type Member,
  type MemberPage,
} from '../connectors/types';

export interface MemoryFaults {
  /** After this many more successful mutating calls, every mutating call fails (retryable). */
  failAfterCalls?: number;
  /** When failing, apply the change first (delivered but unacknowledged: the worst case). */
  applyBeforeFailing?: boolean;
}

/**
 * An in-process destination holding its list in a Map: the reference remote for engine tests,
 * and a quick stand-in for users' own tests. Supports every capability unless told otherwise.
 */
export class MemoryDestination implements Destination {
  readonly type = 'memory';
  readonly members = new Map<string, Attributes>();
  readonly calls = { add: 0, remove: 0, truncate: 0, list: 0 };
  readonly recordsReceived = { add: 0, remove: 0 };
  faults: MemoryFaults = {};
  /** A reason to reject a record (not applied), or null to accept it. */
  reject: (key: string) => string | null = () => null;

  constructor(
    readonly limits = { recordsPerCall: 100 },
    readonly capabilities: Capabilities = {
      add: true,
      remove: true,
      truncate: true,
      listMembers: true,
      updateAttributes: true,
      createList: false,
    },
  ) {}

  async add(members: Member[]): Promise<BatchOutcome> {
    return this.mutate('add', members.length, (rejected) => {
      for (const { key, attributes } of members) {
        const reason = this.reject(key);
        if (reason) rejected.push({ key, reason });
        else this.members.set(key, { ...attributes });
      }
    });
  }

  async remove(keys: string[]): Promise<BatchOutcome> {
    return this.mutate('remove', keys.length, (rejected) => {
      for (const key of keys) {
        const reason = this.reject(key);
        if (reason) rejected.push({ key, reason });
        else this.members.delete(key);
      }
    });
  }

  async truncate(): Promise<BatchOutcome> {
    return this.mutate('truncate', 0, () => this.members.clear());
  }

  async listMembers(cursor: string | null, limit: number): Promise<MemberPage> {
    this.calls.list += 1;
    const keys = [...this.members.keys()].sort().filter((k) => cursor === null || k > cursor);
    const page = keys.slice(0, limit);
    return { keys: page, next: keys.length > limit ? page[page.length - 1]! : null };
  }

  async close(): Promise<void> {}

  private mutate(
    kind: 'add' | 'remove' | 'truncate',
    records: number,
    apply: (rejected: BatchOutcome['rejected']) => void,
  ): BatchOutcome {
    this.calls[kind] += 1;
    if (kind !== 'truncate') this.recordsReceived[kind] += records;
    if (kind !== 'truncate' && records > this.limits.recordsPerCall) {
      throw new DestinationError(
        `${records} records exceed the limit of ${this.limits.recordsPerCall}`,
        'batch',
        400,
      );
    }
    const rejected: BatchOutcome['rejected'] = [];
    const budget = this.faults.failAfterCalls;
    if (budget !== undefined && budget <= 0) {
      if (this.faults.applyBeforeFailing) apply(rejected);
      throw new DestinationError(`memory destination: injected failure on ${kind}`, 'retryable', 503);
    }
    if (budget !== undefined) this.faults.failAfterCalls = budget - 1;
    apply(rejected);
    return { rejected, apiCalls: 1, rateLimitWaits: 0 };
  }
}
