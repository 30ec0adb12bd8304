/**
 * The http-list receiver of `bench/push.ts`: the project's http-list emulator
 * (src/connectors/http-list/emulator.ts) in a process of its own, so that neither the plain loop
 * nor the worker shares a CPU thread or a heap with the server they send to.
 *
 *   BENCH_RECEIVER_TOKEN=secret npx tsx bench/receiver.ts     # prints `receiver listening on <url>`
 *
 * Started by bench/push.ts with an IPC channel, it also answers the bench's checks there (a list's
 * size and its members among a sample of keys), so that the lists can be
 * compared with the dataset without paging millions of keys over HTTP. Stops on SIGTERM/SIGINT
 * or when the parent asks (`{ op: 'close' }`).
 */
import { startHttpListEmulator } from '../src/connectors/http-list/emulator';
import type { Attributes } from '../src/core/destination';

/** What bench/push.ts asks over IPC; each request carries an id its answer repeats. */
export type ReceiverRequest =
  | { id: number; op: 'check'; list: string; keys: string[] }
  | { id: number; op: 'calls' }
  | { id: number; op: 'close' };

/**
 * The calls of one account (lists `<account>.<anything>`): how many, the most that arrived within
 * any one second, and the most answered at once.
 */
export interface AccountCalls {
  account: string;
  calls: number;
  busiestSecond: number;
  peakConcurrent: number;
}

export type ReceiverAnswer =
  | { id: number; op: 'check'; count: number; members: Record<string, Attributes | null> }
  | { id: number; op: 'calls'; accounts: AccountCalls[] }
  | { id: number; op: 'close' }
  | { id: number; op: 'error'; message: string };

async function main(): Promise<void> {
  const token = process.env.BENCH_RECEIVER_TOKEN;
  if (!token) throw new Error('set BENCH_RECEIVER_TOKEN to the bearer token the receiver accepts');
  // The bench sends 1,000 records per call; a larger limit never refuses a hand-written loop.
  const calls = new Map<string, { startedAt: number; endedAt: number }[]>();
  const receiver = await startHttpListEmulator({
    token,
    maxRecordsPerCall: 10_000,
    onCall: ({ listId, startedAt, endedAt }) => {
      const account = listId.split('.')[0]!;
      let log = calls.get(account);
      if (!log) calls.set(account, (log = []));
      log.push({ startedAt, endedAt });
    },
  });
  // Each call takes this long to answer, as a remote API would (0: at once).
  const latencyMs = Number(process.env.BENCH_RECEIVER_LATENCY_MS ?? 0);
  if (latencyMs > 0) receiver.faults.set({ latencyMs });
  let closing = false;
  const close = async () => {
    if (closing) return;
    closing = true;
    await receiver.close();
    process.disconnect?.();
  };
  process.once('SIGTERM', () => void close());
  process.once('SIGINT', () => void close());
  // Started by the bench: go when it goes, even if it could not say so.
  process.once('disconnect', () => void close());

  process.on('message', (message: ReceiverRequest) => {
    const answer = (): ReceiverAnswer => {
      switch (message.op) {
        case 'check': {
          // members() copies the list: one copy per check, released right after.
          const members = receiver.members(message.list);
          const sample: Record<string, Attributes | null> = {};
          for (const key of message.keys) sample[key] = members.get(key) ?? null;
          return { id: message.id, op: 'check', count: members.size, members: sample };
        }
        case 'calls':
          return {
            id: message.id,
            op: 'calls',
            accounts: [...calls].map(([account, log]) => accountCalls(account, log)),
          };
        case 'close':
          return { id: message.id, op: 'close' };
      }
    };
    let reply: ReceiverAnswer;
    try {
      reply = answer();
    } catch (error) {
      reply = { id: message.id, op: 'error', message: (error as Error).message };
    }
    process.send?.(reply, undefined, undefined, () => {
      if (message.op === 'close') void close();
    });
  });

  process.stdout.write(`receiver listening on ${receiver.url}\n`);
}

function accountCalls(account: string, log: { startedAt: number; endedAt: number }[]): AccountCalls {
  const starts = log.map((c) => c.startedAt).sort((a, b) => a - b);
  let busiestSecond = 0;
  for (let i = 0, j = 0; i < starts.length; i++) {
    while (starts[i]! - starts[j]! >= 1000) j++;
    busiestSecond = Math.max(busiestSecond, i - j + 1);
  }
  // Ends before starts at the same millisecond: a call answered as the next arrives did not overlap it.
  const events = log.flatMap((c) => [
    [c.startedAt, 1],
    [c.endedAt, -1],
  ]) as [number, number][];
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let running = 0;
  let peakConcurrent = 0;
  for (const [, change] of events) peakConcurrent = Math.max(peakConcurrent, (running += change));
  return { account, calls: log.length, busiestSecond, peakConcurrent };
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
