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

type List = Map<string, Attributes>;

/**
 * An in-process destination holding its lists in Maps: the reference remote for engine tests,
 * and a quick stand-in for users' own tests. Supports every capability unless told otherwise,
 * including new list + swap (several lists, one of them live).
 */
export class MemoryDestination implements Destination {
  readonly type = 'memory';
  readonly lists = new Map<string, List>([['main', new Map()]]);
  liveListId = 'main';
  readonly calls = { add: 0, remove: 0, truncate: 0, list: 0, createList: 0, swapList: 0, deleteList: 0 };
  readonly recordsReceived = { add: 0, remove: 0 };
  faults: MemoryFaults = {};
  /** A reason to reject a record (not applied), or null to accept it; deferred: refused for now. */
  reject: (key: string) => string | { reason: string; deferred: true } | null = () => null;

  constructor(
    readonly limits: Destination['limits'] = { recordsPerCall: 100 },
    readonly capabilities: Capabilities = {
      add: true,
      remove: true,
      truncate: true,
      listMembers: true,
      updateAttributes: true,
      createList: true,
    },
  ) {}

  /** The live list's members. */
  get members(): List {
    return this.listNamed(this.liveListId);
  }

  async add(members: Member[]): Promise<BatchOutcome> {
    return this.addTo(this.liveListId, members);
  }

  async remove(keys: string[]): Promise<BatchOutcome> {
    return this.mutate('remove', keys.length, (rejected) => {
      for (const key of keys) {
        const verdict = this.reject(key);
        if (verdict)
          rejected.push(typeof verdict === 'string' ? { key, reason: verdict } : { key, ...verdict });
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

  async createList(name: string) {
    const listId = `list-${name}`;
    // Idempotent: a retried create finds the list it made, with what was already added.
    const outcome = this.mutate('createList', 0, () =>
      this.lists.set(listId, this.lists.get(listId) ?? new Map()),
    );
    return { listId, outcome };
  }

  forList(listId: string): Destination {
    return { ...this, add: (members: Member[]) => this.addTo(listId, members) } as unknown as Destination;
  }

  async swapList(listId: string): Promise<BatchOutcome> {
    return this.mutate('swapList', 0, () => {
      this.listNamed(listId);
      this.liveListId = listId;
    });
  }

  async deleteList(listId: string): Promise<BatchOutcome> {
    return this.mutate('deleteList', 0, () => {
      if (listId !== this.liveListId) this.lists.delete(listId);
    });
  }

  async close(): Promise<void> {}

  private listNamed(listId: string): List {
    const list = this.lists.get(listId);
    if (!list) throw new DestinationError(`memory destination: no list '${listId}'`, 'fatal', 404);
    return list;
  }

  private addTo(listId: string, members: Member[]): Promise<BatchOutcome> {
    return Promise.resolve(
      this.mutate('add', members.length, (rejected) => {
        const list = this.listNamed(listId);
        for (const { key, attributes } of members) {
          const verdict = this.reject(key);
          if (verdict)
            rejected.push(typeof verdict === 'string' ? { key, reason: verdict } : { key, ...verdict });
          else list.set(key, { ...attributes });
        }
      }),
    );
  }

  private mutate(
    kind: Exclude<keyof MemoryDestination['calls'], 'list'>,
    records: number,
    apply: (rejected: BatchOutcome['rejected']) => void,
  ): BatchOutcome {
    this.calls[kind] += 1;
    if (kind === 'add' || kind === 'remove') this.recordsReceived[kind] += records;
    if (records > this.limits.recordsPerCall) {
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
