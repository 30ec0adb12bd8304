import { AsyncLocalStorage } from 'node:async_hooks';
import type { Attributes, Destination } from '../../core/destination';

/**
 * What the shared destination contract suite (test/connectors/contract.test.ts) needs of one
 * destination's emulator: where it listens, how to make it misbehave the way its vendor does, and
 * what it holds. Each destination's emulator.ts exports one; the suite runs the same cases on all.
 */
export interface ContractHarness {
  type: string;
  /** Starts the emulator (or, for SQL and Redis, a fresh table or key) for one test. */
  start(): Promise<ContractTarget>;
}

export interface ContractTarget {
  /** A connector's `destination` settings pointing at the emulator. */
  settings: { type: string } & Record<string, unknown>;
  /** The secrets those settings name, by name. */
  secrets: Record<string, string>;
  /** The i-th valid member key (an e-mail, a record id, …): distinct for distinct i. */
  key(i: number): string;
  /** Attributes a member needs or keeps (default: none). */
  attributes?(i: number): Attributes;
  /** The keys the live list holds now, as the connector keys them. */
  members(): Promise<string[]>;
  /**
   * The next `calls` calls are answered as rate limited (429 with the shortest wait the vendor
   * allows). Absent where the protocol has no rate limit (Redis, SQL, files).
   */
  rateLimit?(calls: number): void;
  /**
   * The next `calls` calls fail with a 5xx and change nothing. Absent where the emulated
   * protocol has no transient failure to inject.
   */
  serverError?(calls: number): void;
  /**
   * The next add is accepted but does not acknowledge every record (a count short, a member
   * missing from the answer). Absent where the protocol cannot acknowledge short (say why in the
   * module's Acknowledgement paragraph).
   */
  shortAcknowledgeNext?(): void;
  /** A key the vendor refuses as a record (an invalid e-mail, say); absent where nothing is refused per record. */
  refusedKey?(): string;
  /**
   * Calls the emulator has received so far (every attempt, retries included); for destinations
   * without an emulator, the calls (commands, statements) the destination made as it counts them.
   */
  received(): number;
  close(): Promise<void>;
}

/**
 * The same contract suite against the vendor's real service (a sandbox or test account), run by
 * `npm run test:sandbox` with credentials from the environment; never part of the default run.
 * Each destination with a vendor behind it exports one from its sandbox.ts.
 */
export interface SandboxHarness {
  type: string;
  /** The environment variables it needs, each with what it is. */
  requires: Record<string, string>;
  /** How to get a sandbox or test account and prepare the list, in one paragraph. */
  howTo: string;
  /**
   * A target on the real service built from those variables: `members()` reads the real list back
   * through the vendor's API, `received()` counts the calls the destination made, and no fault can
   * be injected. `close()` leaves the sandbox list empty.
   */
  start(env: Record<string, string>): Promise<ContractTarget>;
}

/** What a sandbox harness sees of the calls to its vendor (watchVendorCalls). */
export interface VendorCallWatch {
  /** Calls the suite's destination made to the vendor (the harness's own are not counted). */
  received(): number;
  /** Runs the harness's own calls (setup, reading the list back, cleanup): not counted. */
  ours<T>(work: () => Promise<T>): Promise<T>;
  /** Puts the real fetch back. */
  restore(): void;
}

/** One answered call to the vendor, as `observe` sees it (bodies parsed when JSON, else undefined). */
export interface VendorExchange {
  url: string;
  method: string;
  status: number;
  requestBody: unknown;
  responseBody: unknown;
}

/**
 * For sandbox harnesses: wraps fetch so that the calls to the vendor whose URL `matches` are
 * counted as `received()` (a real service cannot be asked what it received), and each answer,
 * the harness's own too, is shown to `observe` (Customer Match and Meta audiences cannot be read
 * back: their harnesses rebuild the list from what the vendor acknowledged).
 */
export function watchVendorCalls(options: {
  matches(url: string): boolean;
  observe?(exchange: VendorExchange): void;
}): VendorCallWatch {
  const internal = new AsyncLocalStorage<boolean>();
  let received = 0;
  const realFetch = globalThis.fetch;
  globalThis.fetch = async (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    if (!options.matches(url)) return realFetch(input, init);
    if (!internal.getStore()) received++;
    const response = await realFetch(input, init);
    if (options.observe) {
      options.observe({
        url,
        method: init?.method ?? 'GET',
        status: response.status,
        requestBody: typeof init?.body === 'string' ? parsedOrUndefined(init.body) : undefined,
        responseBody: parsedOrUndefined(await response.clone().text()),
      });
    }
    return response;
  };
  return {
    received: () => received,
    ours: (work) => internal.run(true, work),
    restore: () => {
      globalThis.fetch = realFetch;
    },
  };
}

function parsedOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * A sandbox target that releases its fetch watch and its own destination whatever happens:
 * `open` runs the harness's setup (its own calls, through `watch.ours`) and returns the target
 * with `cleanUp`, which the target's `close()` runs before releasing them. A setup that fails
 * releases them too.
 */
export async function sandboxTarget(
  watch: VendorCallWatch,
  own: { close(): Promise<void> },
  open: () => Promise<Omit<ContractTarget, 'received' | 'close'> & { cleanUp(): Promise<void> }>,
): Promise<ContractTarget> {
  const release = async () => {
    watch.restore();
    await own.close();
  };
  try {
    const { cleanUp, ...target } = await open();
    return {
      ...target,
      received: watch.received,
      close: async () => {
        try {
          await cleanUp();
        } finally {
          await release();
        }
      },
    };
  } catch (err) {
    await release();
    throw err;
  }
}

/** Every key of a list that can be read back, page by page (for sandbox harnesses' `members()`). */
export async function allMembers(
  destination: Pick<Destination, 'listMembers'>,
  pageSize: number,
): Promise<string[]> {
  const all: string[] = [];
  let cursor: string | null = null;
  do {
    const page = await destination.listMembers!(cursor, pageSize);
    all.push(...page.keys);
    cursor = page.next;
  } while (cursor !== null);
  return all;
}
