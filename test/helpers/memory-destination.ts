import { meteredCall } from '../../src/core/api-calls';
import { jsonBytes } from '../../src/core/batching';
import {
  DestinationError,
  type Attributes,
  type BatchResult,
  type Capabilities,
  type Destination,
  type Member,
  type MemberPage,
  type Rejection,
  type ReplaceList,
} from '../../src/core/destination';

export interface MemoryFaults {
  /** After this many more successful mutating calls, every mutating call fails (retryable). */
  failAfterCalls?: number;
  /** When failing, apply the change first (delivered but unacknowledged: the worst case). */
  applyBeforeFailing?: boolean;
}

type List = Map<string, Attributes>;

/** Every capability: the MemoryDestination's default. */
export const EVERYTHING: Capabilities = {
  add: true,
  remove: true,
  truncate: true,
  listMembers: true,
  updateAttributes: true,
  createList: true,
};

/**
 * An in-process destination holding its lists in Maps: the reference remote for engine tests,
 * and a quick stand-in for users' own tests. Has every capability unless told otherwise (a
 * capability switched off leaves its method undefined, as on any destination), including new
 * list + swap (several lists, one of them live). Every operation counts as one call at its own
 * endpoint (`meteredCall`), as a destination that does not speak HTTP counts its calls.
 */
export class MemoryDestination implements Destination {
  readonly type = 'memory';
  readonly lists = new Map<string, List>([['main', new Map()]]);
  liveListId = 'main';
  readonly calls = { add: 0, remove: 0, truncate: 0, list: 0, createList: 0, swapList: 0, retireList: 0 };
  readonly recordsReceived = { add: 0, remove: 0 };
  faults: MemoryFaults = {};
  /** A reason to refuse a whole call for one of its records (nothing applied), or null. */
  refuseBatchFor: (key: string) => string | null = () => null;
  /** A reason to reject a record (not applied), or null to accept it; deferred: refused for now. */
  reject: (key: string) => string | { reason: string; deferred: true } | null = () => null;

  readonly add?: (members: Member[]) => Promise<BatchResult>;
  readonly remove?: (keys: string[]) => Promise<BatchResult>;
  readonly truncate?: () => Promise<void>;
  readonly listMembers?: (cursor: string | null, limit: number) => Promise<MemberPage>;
  readonly replaceList?: ReplaceList;
  readonly keysOnly: boolean;

  constructor(
    readonly limits: Destination['limits'] = { recordsPerCall: 100 },
    capabilities: Capabilities = EVERYTHING,
  ) {
    this.keysOnly = !capabilities.updateAttributes;
    if (capabilities.add) this.add = (members) => this.addTo(this.liveListId, members);
    if (capabilities.remove) this.remove = (keys) => this.removeFrom(this.liveListId, keys);
    if (capabilities.truncate)
      this.truncate = () => this.mutate('truncate', [], () => this.members.clear()).then(() => undefined);
    if (capabilities.listMembers) this.listMembers = (cursor, limit) => this.page(cursor, limit);
    if (capabilities.createList) this.replaceList = this.replacement();
  }

  /** The live list's members. */
  get members(): List {
    return this.listNamed(this.liveListId);
  }

  check(): Promise<string> {
    return meteredCall(
      'check',
      async () => `memory list ${this.liveListId} reachable, ${this.members.size} members`,
    );
  }

  async close(): Promise<void> {}

  private page(cursor: string | null, limit: number): Promise<MemberPage> {
    return meteredCall('listMembers', async () => {
      this.calls.list += 1;
      const keys = [...this.members.keys()].sort().filter((k) => cursor === null || k > cursor);
      const page = keys.slice(0, limit);
      return { keys: page, next: keys.length > limit ? page[page.length - 1]! : null };
    });
  }

  private replacement(): ReplaceList {
    return {
      // Idempotent: a retried create finds the list it made, with what was already added.
      create: async (name) => {
        const listId = `list-${name}`;
        await this.mutate('createList', [], () =>
          this.lists.set(listId, this.lists.get(listId) ?? new Map()),
        );
        return { listId };
      },
      forList: (listId) => ({
        type: this.type,
        limits: this.limits,
        add: (members) => this.addTo(listId, members),
        remove: (keys) => this.removeFrom(listId, keys),
        check: () =>
          meteredCall('check', async () => `memory list ${listId}: ${this.listNamed(listId).size} members`),
        close: async () => {},
      }),
      swap: async (listId) => {
        await this.mutate('swapList', [], () => {
          this.listNamed(listId);
          this.liveListId = listId;
        });
        return {};
      },
      retire: async (listId) => {
        await this.mutate('retireList', [], () => {
          if (listId !== this.liveListId) this.lists.delete(listId);
        });
      },
    };
  }

  private listNamed(listId: string): List {
    const list = this.lists.get(listId);
    if (!list) throw new DestinationError(`memory destination: no list '${listId}'`, 'fatal', 404);
    return list;
  }

  private addTo(listId: string, members: Member[]): Promise<BatchResult> {
    return this.mutate('add', members, (rejected) => {
      const list = this.listNamed(listId);
      for (const { key, attributes } of members) {
        const verdict = this.verdict(key);
        if (verdict) rejected.push(verdict);
        else list.set(key, { ...attributes });
      }
    });
  }

  private removeFrom(listId: string, keys: string[]): Promise<BatchResult> {
    return this.mutate('remove', keys, (rejected) => {
      const list = this.listNamed(listId);
      for (const key of keys) {
        const verdict = this.verdict(key);
        if (verdict) rejected.push(verdict);
        else list.delete(key);
      }
    });
  }

  private verdict(key: string): Rejection | null {
    const verdict = this.reject(key);
    if (!verdict) return null;
    return typeof verdict === 'string' ? { key, reason: verdict } : { key, ...verdict };
  }

  /**
   * One call: refused as a whole when the batch exceeds the limits (the engine must never send
   * one), failing when a fault is injected, otherwise applied.
   */
  private mutate(
    kind: Exclude<keyof MemoryDestination['calls'], 'list'>,
    batch: (Member | string)[],
    apply: (rejected: Rejection[]) => void,
  ): Promise<BatchResult> {
    return meteredCall(kind, async () => {
      this.calls[kind] += 1;
      if (kind === 'add' || kind === 'remove') this.recordsReceived[kind] += batch.length;
      if (batch.length > this.limits.recordsPerCall) {
        throw new DestinationError(
          `${batch.length} records exceed the limit of ${this.limits.recordsPerCall}`,
          'batch',
          400,
        );
      }
      const bytes = batch.reduce((sum, item) => sum + jsonBytes(item), 0);
      if (this.limits.bytesPerCall !== undefined && bytes > this.limits.bytesPerCall) {
        throw new DestinationError(
          `${bytes} bytes exceed the limit of ${this.limits.bytesPerCall} bytes per call`,
          'batch',
          413,
        );
      }
      for (const item of batch) {
        const refusal = this.refuseBatchFor(typeof item === 'string' ? item : item.key);
        if (refusal) throw new DestinationError(refusal, 'batch', 400);
      }
      const rejected: Rejection[] = [];
      const budget = this.faults.failAfterCalls;
      if (budget !== undefined && budget <= 0) {
        if (this.faults.applyBeforeFailing) apply(rejected);
        throw new DestinationError(`memory destination: injected failure on ${kind}`, 'retryable', 503);
      }
      if (budget !== undefined) this.faults.failAfterCalls = budget - 1;
      apply(rejected);
      return { rejected };
    });
  }
}
