import net from 'node:net';
import type { AddressInfo } from 'node:net';
import Redis from 'ioredis';
import type { ContractHarness } from '../kit/contract';

/**
 * A fault-injecting proxy in front of a real Redis, for testing the redis-set destination (and
 * anything else speaking RESP) against the real server's semantics while it misbehaves the way
 * production Redis does: refused and dropped connections, LOADING / BUSY answers, "max number of
 * clients reached", hung commands, and commands applied whose answer never arrives.
 *
 * Point the client at `url`; everything it sends is parsed into commands (counted by name) and
 * forwarded unless a fault takes it. Answers come back in order, injected ones included, so
 * pipelining keeps working. `members(key)` and `cleanup(prefix)` talk to the real server directly.
 */

export interface RedisFaults {
  /** The next `calls` new connections are answered "-ERR max number of clients reached" and closed. */
  maxClients?: { calls: number };
  /**
   * The next `calls` matching commands get this error answer instead of reaching Redis (default
   * "LOADING Redis is loading the dataset in memory", Redis's answer while it starts up).
   */
  replyError?: { calls: number; message?: string };
  /** The next `calls` matching commands: the connection is closed instead of forwarding them. */
  dropConnection?: { calls: number };
  /** The next `calls` matching commands reach Redis, then the connection closes before the answer. */
  applyThenDrop?: { calls: number };
  /** The next `calls` matching commands are swallowed: never forwarded, never answered. */
  stall?: { calls: number };
  /**
   * Commands the faults apply to (upper case). Default: every command except the connection
   * handshake (AUTH, HELLO, INFO, SELECT, CLIENT, PING, QUIT) and those queued inside MULTI.
   */
  commands?: string[];
}

export interface RedisEmulatorStats {
  /** Commands received from clients, by name (upper case), faulted ones included. */
  calls: Record<string, number>;
  /** Faults that took effect, by fault. */
  faults: Record<string, number>;
  connections: number;
}

export interface RedisSetEmulatorOptions {
  /** The real Redis behind the proxy (default redis://127.0.0.1:6379). */
  target?: string;
  /** 0 (default) picks a free port. */
  port?: number;
  host?: string;
}

export interface RedisSetEmulator {
  /** redis:// URL of the proxy (with the target's credentials and database). */
  url: string;
  port: number;
  /** The members of a set on the real server (empty when the key does not exist). */
  members(key: string): Promise<Set<string>>;
  /** Direct client to the real server, for setting up and inspecting state. */
  redis: Redis;
  /** Deletes every key starting with `prefix` on the real server. */
  cleanup(prefix: string): Promise<void>;
  stats(): RedisEmulatorStats;
  resetStats(): void;
  faults: {
    /** Merges into the active faults; counters start from the values given. */
    set(faults: RedisFaults): void;
    clear(name?: keyof RedisFaults): void;
    get(): RedisFaults;
  };
  close(): Promise<void>;
}

type CountedFault = 'maxClients' | 'replyError' | 'dropConnection' | 'applyThenDrop' | 'stall';

const handshake = new Set(['AUTH', 'HELLO', 'INFO', 'SELECT', 'CLIENT', 'PING', 'QUIT']);

export async function startRedisSetEmulator(
  options: RedisSetEmulatorOptions = {},
): Promise<RedisSetEmulator> {
  const target = new URL(options.target ?? 'redis://127.0.0.1:6379');
  const targetPort = Number(target.port || 6379);
  let faults: RedisFaults = {};
  let stats = emptyStats();
  const sockets = new Set<net.Socket>();

  /** Uses up one call of a counted fault; true when it applies. */
  function take(name: CountedFault): boolean {
    const fault = faults[name];
    if (!fault || fault.calls <= 0) return false;
    fault.calls--;
    if (fault.calls === 0) delete faults[name];
    stats.faults[name] = (stats.faults[name] ?? 0) + 1;
    return true;
  }

  function faultable(command: string, inMulti: boolean): boolean {
    if (faults.commands) return faults.commands.includes(command);
    return !handshake.has(command) && !inMulti;
  }

  const server = net.createServer((client) => {
    stats.connections++;
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => undefined);
    if (take('maxClients')) {
      // What Redis itself does over maxclients: one error line, then it closes the connection.
      client.end('-ERR max number of clients reached\r\n');
      return;
    }
    proxyConnection(client);
  });

  function proxyConnection(client: net.Socket) {
    const upstream = net.connect(targetPort, target.hostname);
    sockets.add(upstream);
    upstream.on('close', () => {
      sockets.delete(upstream);
      client.destroy();
    });
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());

    // Answers owed to the client, in command order: forwarded ones wait for Redis's reply.
    const owed: (
      { kind: 'forward'; dropAfter: boolean } | { kind: 'inject'; bytes: Buffer } | { kind: 'never' }
    )[] = [];
    const replies: Buffer[] = [];
    let fromClient: Buffer = Buffer.alloc(0);
    let fromServer: Buffer = Buffer.alloc(0);
    let inMulti = false;

    function flush() {
      while (owed.length > 0) {
        const next = owed[0]!;
        if (next.kind === 'never') return;
        if (next.kind === 'inject') {
          client.write(next.bytes);
        } else {
          const reply = replies.shift();
          if (!reply) return;
          if (next.dropAfter) {
            client.destroy();
            return;
          }
          client.write(reply);
        }
        owed.shift();
      }
    }

    client.on('data', (chunk: Buffer) => {
      fromClient = Buffer.concat([fromClient, chunk]);
      for (;;) {
        const end = respEnd(fromClient, 0);
        if (end === null) break;
        const raw = fromClient.subarray(0, end);
        fromClient = fromClient.subarray(end);
        const name = commandName(raw);
        stats.calls[name] = (stats.calls[name] ?? 0) + 1;
        if (!handle(raw, name)) return;
      }
      flush();
    });

    /** Forwards or faults one command; false when the connection was closed. */
    function handle(raw: Buffer, name: string): boolean {
      const canFault = faultable(name, inMulti);
      if (name === 'MULTI') inMulti = true;
      if (name === 'EXEC' || name === 'DISCARD') inMulti = false;
      if (canFault && take('dropConnection')) {
        client.destroy();
        return false;
      }
      // An injected answer to EXEC would leave Redis's side of the connection inside MULTI.
      const replyError = faults.replyError;
      if (canFault && name !== 'EXEC' && replyError && take('replyError')) {
        const message = replyError.message ?? 'LOADING Redis is loading the dataset in memory';
        owed.push({ kind: 'inject', bytes: Buffer.from(`-${message}\r\n`) });
        return true;
      }
      if (canFault && take('stall')) {
        owed.push({ kind: 'never' });
        return true;
      }
      owed.push({ kind: 'forward', dropAfter: canFault && take('applyThenDrop') });
      upstream.write(raw);
      return true;
    }

    upstream.on('data', (chunk: Buffer) => {
      fromServer = Buffer.concat([fromServer, chunk]);
      for (;;) {
        const end = respEnd(fromServer, 0);
        if (end === null) break;
        replies.push(fromServer.subarray(0, end));
        fromServer = fromServer.subarray(end);
      }
      flush();
    });
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const proxied = new URL(target);
  proxied.hostname = options.host ?? '127.0.0.1';
  proxied.port = String(port);
  const redis = new Redis(target.toString(), { lazyConnect: true });

  return {
    url: proxied.toString().replace(/\/$/, ''),
    port,
    redis,
    members: async (key) => new Set(await redis.smembers(key)),
    cleanup: async (prefix) => {
      if (prefix === '') throw new Error('cleanup needs a non-empty prefix');
      const keys: string[] = [];
      for await (const batch of redis.scanStream({ match: `${escapeGlob(prefix)}*`, count: 1000 })) {
        keys.push(...(batch as string[]));
      }
      if (keys.length > 0) await redis.del(...keys);
    },
    stats: () => structuredClone(stats),
    resetStats: () => {
      stats = emptyStats();
    },
    faults: {
      // Copies, so the caller's object is not counted down under its feet.
      set: (next) => {
        faults = { ...faults, ...structuredClone(next) };
      },
      clear: (name) => {
        if (name) delete faults[name];
        else faults = {};
      },
      get: () => structuredClone(faults),
    },
    close: async () => {
      redis.disconnect();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Commands received from clients, the connection handshake (AUTH, HELLO, INFO, SELECT, CLIENT,
 * PING, QUIT) left out: the commands a client sends on purpose, which redis-set counts as calls.
 */
export function commandsReceived(stats: RedisEmulatorStats): number {
  return Object.entries(stats.calls)
    .filter(([name]) => !handshake.has(name))
    .reduce((sum, [, calls]) => sum + calls, 0);
}

function emptyStats(): RedisEmulatorStats {
  return { calls: {}, faults: {}, connections: 0 };
}

function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

// --- RESP framing -----------------------------------------------------------------------------------

/**
 * Where the RESP value starting at `start` ends, or null while it is incomplete. Covers RESP2
 * (what ioredis speaks): simple strings, errors, integers, bulk strings and arrays.
 */
export function respEnd(buffer: Buffer, start: number): number | null {
  const lineEnd = buffer.indexOf('\r\n', start);
  if (lineEnd === -1) return null;
  const type = String.fromCharCode(buffer[start]!);
  const header = buffer.toString('latin1', start + 1, lineEnd);
  const afterHeader = lineEnd + 2;
  switch (type) {
    case '+':
    case '-':
    case ':':
      return afterHeader;
    case '$': {
      const length = Number(header);
      if (length < 0) return afterHeader;
      const end = afterHeader + length + 2;
      return buffer.length >= end ? end : null;
    }
    case '*': {
      const count = Number(header);
      let position = afterHeader;
      for (let i = 0; i < count; i++) {
        const next = respEnd(buffer, position);
        if (next === null) return null;
        position = next;
      }
      return position;
    }
    default:
      // An inline command (telnet style): one line.
      return afterHeader;
  }
}

/** The command name (first element) of a RESP array of bulk strings, upper case. */
function commandName(raw: Buffer): string {
  if (raw[0] !== 0x2a /* '*' */) return raw.toString('latin1').trim().split(/\s+/)[0]!.toUpperCase();
  const firstLine = raw.indexOf('\r\n');
  const lengthLine = raw.indexOf('\r\n', firstLine + 2);
  const length = Number(raw.toString('latin1', firstLine + 3, lengthLine));
  return raw.toString('utf8', lengthLine + 2, lengthLine + 2 + length).toUpperCase();
}

// --- The shared contract suite --------------------------------------------------------------------

let contractRuns = 0;

/**
 * The shared destination contract suite's view of this proxy (test/connectors/contract.test.ts):
 * a fresh proxy and key per start on the local Redis. Redis has no rate limit of its own (a
 * connection refused over maxclients is the nearest, and no command reaches the server to be
 * received), acknowledges every command whole (a SADD that changes fewer members is no short
 * acknowledgement) and refuses no member, so those cases are absent. Its transient failure is
 * the LOADING answer of a server starting up, which changes nothing.
 */
export const contractHarness: ContractHarness = {
  type: 'redis-set',
  async start() {
    const emu = await startRedisSetEmulator();
    const prefix = `deltasync-contract:${process.pid}:${contractRuns++}:`;
    const key = `${prefix}members`;
    return {
      settings: { type: 'redis-set', urlSecret: 'REDIS_SET_CONTRACT_URL', key },
      secrets: { REDIS_SET_CONTRACT_URL: emu.url },
      key: (i) => `member-${i}`,
      members: async () => [...(await emu.members(key))],
      serverError: (calls) =>
        emu.faults.set({ replyError: { calls, message: 'LOADING Redis is loading the dataset in memory' } }),
      received: () => commandsReceived(emu.stats()),
      close: async () => {
        await emu.cleanup(prefix);
        await emu.close();
      },
    };
  },
};
