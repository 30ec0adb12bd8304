/**
 * bench/receiver.ts in a child process of its own (an http-list emulator with its own CPU thread
 * and heap), and the IPC through which a benchmark checks its lists.
 */
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { Attributes } from '../src/core/destination';
import type { AccountCalls, ReceiverAnswer, ReceiverRequest } from './receiver';

const ROOT = path.join(__dirname, '..');

export interface Receiver {
  url: string;
  token: string;
  /** The list's size, and its members among `keys` (null: not a member). */
  check(list: string, keys: string[]): Promise<{ count: number; members: Record<string, Attributes | null> }>;
  /** Calls per account (lists named `<account>.<anything>`). */
  calls(): Promise<AccountCalls[]>;
  stop(): Promise<void>;
}

export async function startReceiver(options: { latencyMs?: number } = {}): Promise<Receiver> {
  const token = randomBytes(16).toString('hex');
  const child: ChildProcess = spawn(
    process.execPath,
    // Two lists of up to 5M members each, plus a copy per check.
    ['--max-old-space-size=12288', '--import', 'tsx', path.join('bench', 'receiver.ts')],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        BENCH_RECEIVER_TOKEN: token,
        BENCH_RECEIVER_LATENCY_MS: String(options.latencyMs ?? 0),
      },
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /receiver listening on (\S+)/.exec(output);
      if (match) resolve(match[1]!);
    });
    child.once('exit', (code) =>
      reject(new Error(`the receiver exited (${code}) before it listened:\n${output}`)),
    );
  });
  let nextId = 0;
  const waiting = new Map<number, (answer: ReceiverAnswer) => void>();
  child.on('message', (answer: ReceiverAnswer) => {
    waiting.get(answer.id)?.(answer);
    waiting.delete(answer.id);
  });
  const ask = async (request: ReceiverRequest): Promise<ReceiverAnswer> => {
    const answer = await new Promise<ReceiverAnswer>((resolve, reject) => {
      waiting.set(request.id, resolve);
      child.send(request, (error) => error && reject(error));
    });
    if (answer.op === 'error') throw new Error(`receiver: ${answer.message}`);
    return answer;
  };
  return {
    url,
    token,
    async check(list, keys) {
      const answer = await ask({ id: nextId++, op: 'check', list, keys });
      if (answer.op !== 'check') throw new Error(`receiver: unexpected answer ${answer.op}`);
      return answer;
    },
    async calls() {
      const answer = await ask({ id: nextId++, op: 'calls' });
      if (answer.op !== 'calls') throw new Error(`receiver: unexpected answer ${answer.op}`);
      return answer.accounts;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const killLater = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await ask({ id: nextId++, op: 'close' }).catch(() => child.kill('SIGTERM'));
      await exited;
      clearTimeout(killLater);
    },
  };
}

/** One POST as a person writes it: JSON in, status checked, the answer's counts checked. */
export async function postToList(
  receiver: Receiver,
  list: string,
  action: 'add' | 'remove',
  body: object,
  records: number,
) {
  const response = await fetch(`${receiver.url}/lists/${list}/members:${action}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${receiver.token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!response.ok)
    throw new Error(`members:${action} answered ${response.status}: ${await response.text()}`);
  const answer = (await response.json()) as { accepted?: number; rejected?: unknown[] };
  if ((answer.rejected?.length ?? 0) > 0 || (action === 'add' && answer.accepted !== records))
    throw new Error(
      `members:${action} did not take all ${records} records: ${JSON.stringify(answer).slice(0, 200)}`,
    );
}
