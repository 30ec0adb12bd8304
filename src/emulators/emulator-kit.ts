import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';

/**
 * Shared plumbing for the vendor API emulators (Klaviyo, Braze): a JSON server on node:http,
 * the counted faults every emulator offers, and fixed-window rate limiting like the vendors'.
 * Each emulator keeps its own routes, validation and storage; this file holds only what they
 * would otherwise copy from each other.
 */

/** A reply to send: status, JSON body (none for 204), extra headers. */
export interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export interface JsonServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

/**
 * Serves `handle` on a free port (or the one given). Bodies are read whole before `handle` runs;
 * a handler that throws answers 500, as a crashing service would.
 */
export async function startJsonServer(
  options: { port?: number; host?: string },
  handle: (req: http.IncomingMessage, raw: string) => Promise<Reply>,
  onReply: (status: number) => void,
): Promise<JsonServer> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      handle(req, Buffer.concat(chunks).toString('utf8'))
        .catch((err: unknown): Reply => ({ status: 500, body: { message: String(err) } }))
        .then((reply) => {
          onReply(reply.status);
          const body = reply.body === undefined ? '' : JSON.stringify(reply.body);
          res.writeHead(reply.status, {
            ...(body ? { 'content-type': 'application/json' } : {}),
            ...reply.headers,
          });
          res.end(body);
        });
    });
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // Clients keep sockets alive; drop them so close() doesn't wait for their idle timeout.
        server.closeAllConnections();
      }),
  };
}

/** Faults every emulator can be told to produce; each counted one is used up call by call. */
export interface CommonFaults {
  /** The next `calls` calls are refused as rate limited (how depends on the vendor). */
  rateLimit?: { calls: number; retryAfterSeconds: number };
  /** The next `calls` calls answer 5xx without applying anything. */
  serverError?: { calls: number; status?: 500 | 502 | 503 | 504 };
  /** The next `calls` mutating calls apply their change, then answer 500: delivered, unacknowledged. */
  applyThenFail?: { calls: number };
  /** After `successfulCalls` more successful mutating calls, every mutating call fails until cleared. */
  failAfter?: { successfulCalls: number; status?: number };
  /** Added before every answer. */
  latencyMs?: number;
}

type CountedFault = 'rateLimit' | 'serverError' | 'applyThenFail';

/**
 * The fault switchboard of one emulator: `set` merges (copies, so the caller's object is not
 * counted down under its feet), `clear` removes one fault or all, `take` uses up one call.
 */
export class FaultBoard<F extends CommonFaults> {
  private active: F = {} as F;

  get current(): F {
    return this.active;
  }

  set(next: F): void {
    this.active = { ...this.active, ...copyFaults(next) };
  }

  clear(name?: keyof F): void {
    if (name) delete this.active[name];
    else this.active = {} as F;
  }

  snapshot(): F {
    return copyFaults(this.active);
  }

  /** Uses up one call of a counted fault; true when the fault applies to this call. */
  take(name: CountedFault): boolean {
    const fault = this.active[name];
    if (!fault || fault.calls <= 0) return false;
    fault.calls--;
    if (fault.calls === 0) delete this.active[name];
    return true;
  }

  /** True once `failAfter` has let its successful calls through: the service is "down". */
  down(): boolean {
    const failAfter = this.active.failAfter;
    return failAfter !== undefined && failAfter.successfulCalls <= 0;
  }

  /** Counts a successful mutating call against `failAfter`. */
  succeeded(): void {
    if (this.active.failAfter) this.active.failAfter.successfulCalls--;
  }

  async latency(): Promise<void> {
    if (this.active.latencyMs) await delay(this.active.latencyMs);
  }
}

/** Functions (record-level rejection rules) are kept as they are; counters are deep-copied. */
function copyFaults<F extends object>(faults: F): F {
  const copy: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(faults)) {
    copy[name] = typeof value === 'function' ? value : structuredClone(value);
  }
  return copy as F;
}

export interface Window {
  /** Requests allowed per window. */
  limit: number;
  /** Window length in milliseconds; windows start on multiples of it (fixed, not rolling). */
  ms: number;
}

export interface WindowState {
  limit: number;
  remaining: number;
  /** When the window resets, in milliseconds since the epoch. */
  resetAtMs: number;
}

/**
 * Fixed-window rate limiting per key, several windows at once (Klaviyo: 1 s burst and 1 min
 * steady; Braze: 3 s). A refused request does not count against the windows.
 */
export class FixedWindowLimiter {
  private readonly counts = new Map<string, { start: number; count: number }>();

  constructor(
    private readonly windows: Window[],
    private readonly now: () => number = Date.now,
  ) {}

  /** Counts a request; undefined when allowed, else the state of the first full window. */
  take(key: string): WindowState | undefined {
    const states = this.windows.map((window, i) => this.state(`${key}#${i}`, window));
    const full = states.find((state) => state.remaining <= 0);
    if (full) return full;
    this.windows.forEach((window, i) => this.counts.get(`${key}#${i}`)!.count++);
    return undefined;
  }

  /** The longest window's state after the last request, for rate-limit response headers. */
  report(key: string): WindowState {
    const last = this.windows.length - 1;
    return this.state(`${key}#${last}`, this.windows[last]!);
  }

  private state(id: string, window: Window): WindowState {
    const now = this.now();
    const start = Math.floor(now / window.ms) * window.ms;
    let entry = this.counts.get(id);
    if (!entry || entry.start !== start) {
      entry = { start, count: 0 };
      this.counts.set(id, entry);
    }
    return { limit: window.limit, remaining: window.limit - entry.count, resetAtMs: start + window.ms };
  }
}

/** Whole seconds until `atMs`, at least 1 (a Retry-After of 0 invites a hot loop). */
export function secondsUntil(atMs: number, nowMs: number = Date.now()): number {
  return Math.max(1, Math.ceil((atMs - nowMs) / 1000));
}

/** Cursors are opaque to clients; inside, they are a position in the emulator's own order. */
export function encodeCursor(position: number): string {
  return Buffer.from(JSON.stringify({ after: position })).toString('base64url');
}

export function decodeCursor(cursor: string): number | null {
  try {
    const decoded: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    const after = decoded && typeof decoded === 'object' ? (decoded as Record<string, unknown>).after : null;
    return typeof after === 'number' && Number.isInteger(after) ? after : null;
  } catch {
    return null;
  }
}
