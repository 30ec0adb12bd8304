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
  { id: number; op: 'check'; list: string; keys: string[] } | { id: number; op: 'close' };

export type ReceiverAnswer =
  | { id: number; op: 'check'; count: number; members: Record<string, Attributes | null> }
  | { id: number; op: 'close' }
  | { id: number; op: 'error'; message: string };

async function main(): Promise<void> {
  const token = process.env.BENCH_RECEIVER_TOKEN;
  if (!token) throw new Error('set BENCH_RECEIVER_TOKEN to the bearer token the receiver accepts');
  // The bench sends 1,000 records per call; a larger limit never refuses a hand-written loop.
  const receiver = await startHttpListEmulator({ token, maxRecordsPerCall: 10_000 });
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

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
