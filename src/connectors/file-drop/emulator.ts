import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Attributes } from '../../core/destination';
import type { ContractHarness } from '../kit/contract';
import {
  FILE_DROP_ENDPOINTS,
  MANIFEST,
  readFileDropManifest,
  readFileDropRecords,
  type FileDropManifest,
} from './destination';
import { nodeFileDropIo, useFileDropIo, type FileDropIo } from './io';

/**
 * The file-drop destination's "service" is the file system itself. This emulator is a directory
 * plus the file operations file-drop uses, wrapped with switchable, counted faults: an operation
 * that fails before doing anything, one that fails after doing its work (written but
 * unacknowledged), and a write torn halfway (a crash mid-write). While it runs, destinations built
 * for its directory (by the worker's factory too) use the faulty operations.
 */

export type FileOperation = keyof FileDropIo;

export interface FileDropFaults {
  /** The next `calls` operations `op` fail with `code` (default EIO) before doing anything. */
  fail?: { op: FileOperation; calls: number; code?: string };
  /** The next `calls` operations `op` do their work, then fail with `code` (default EIO). */
  failAfter?: { op: FileOperation; calls: number; code?: string };
  /** The next `calls` appends write only the first half of their bytes, then fail with EIO. */
  tornWrite?: { calls: number };
}

/** The file-drop endpoints that change files: what it counts as calls when it writes. */
export type FileChange = (typeof FILE_DROP_ENDPOINTS)[
  'create' | 'append' | 'truncate' | 'rename' | 'manifest' | 'remove'];

export interface FileDropEmulatorStats {
  /** Operations attempted, by operation, faulted ones included. */
  calls: Partial<Record<FileOperation, number>>;
  /**
   * Operations attempted (faulted ones included) that change a list file or the manifest, by the
   * name file-drop counts them under: its bookkeeping (the `.last-add` side file, a CSV header
   * written with the first records) and its reads left out.
   */
  changes: Partial<Record<FileChange, number>>;
  /** Faults that took effect, by fault. */
  faults: Partial<Record<keyof FileDropFaults, number>>;
}

export interface FileDropEmulator {
  directory: string;
  /** The faulty operations, for createFileDropDestination(config, context, { io }). */
  io: FileDropIo;
  /** The current list (from manifest.json): key → attributes. */
  members(): Promise<Map<string, Attributes>>;
  manifest(): Promise<FileDropManifest | null>;
  /** File names in the directory, sorted. */
  files(): string[];
  stats(): FileDropEmulatorStats;
  resetStats(): void;
  faults: {
    set(faults: FileDropFaults): void;
    clear(name?: keyof FileDropFaults): void;
    get(): FileDropFaults;
  };
  /** Stops injecting faults; removes the directory if the emulator created it. */
  close(): Promise<void>;
}

/** The current members of a file-drop directory, as a reader following manifest.json sees them. */
export async function readFileDrop(directory: string): Promise<Map<string, Attributes>> {
  const records = await readFileDropRecords(directory);
  return new Map(records.map((r) => [r.key, r.attributes]));
}

export async function startFileDropEmulator(options: { directory?: string } = {}): Promise<FileDropEmulator> {
  const created = options.directory === undefined;
  const directory = options.directory ?? fs.mkdtempSync(path.join(os.tmpdir(), 'file-drop-'));
  let faults: FileDropFaults = {};
  let stats: FileDropEmulatorStats = { calls: {}, changes: {}, faults: {} };

  function take(name: keyof FileDropFaults, op: FileOperation): boolean {
    const fault = faults[name];
    if (!fault || fault.calls <= 0) return false;
    if ('op' in fault && fault.op !== op) return false;
    if (name === 'tornWrite' && op !== 'append') return false;
    fault.calls--;
    if (fault.calls === 0) delete faults[name];
    stats.faults[name] = (stats.faults[name] ?? 0) + 1;
    return true;
  }

  function injected(op: FileOperation, file: string, code = 'EIO'): Error {
    return Object.assign(new Error(`${code}: injected fault on ${op} ${path.basename(file)}`), { code });
  }

  /** Wraps one operation: counts it, and applies the faults that match. */
  function wrap<K extends FileOperation>(op: K): FileDropIo[K] {
    const real = nodeFileDropIo[op] as (...args: unknown[]) => Promise<unknown>;
    const wrapped = async (...args: unknown[]) => {
      const file = String(args[0]);
      stats.calls[op] = (stats.calls[op] ?? 0) + 1;
      const change = changeOf(op, file, args[1]);
      if (change) stats.changes[change] = (stats.changes[change] ?? 0) + 1;
      const failing = faults.fail;
      if (failing && take('fail', op)) throw injected(op, file, failing.code);
      if (take('tornWrite', op)) {
        const [, position, data] = args as [string, number, Buffer];
        await nodeFileDropIo.append(file, position, data.subarray(0, Math.floor(data.length / 2)));
        throw injected(op, file);
      }
      const result = await real(...args);
      const failingAfter = faults.failAfter;
      if (failingAfter && take('failAfter', op)) throw injected(op, file, failingAfter.code);
      return result;
    };
    return wrapped as FileDropIo[K];
  }

  const io: FileDropIo = {
    size: wrap('size'),
    read: wrap('read'),
    create: wrap('create'),
    append: wrap('append'),
    truncate: wrap('truncate'),
    replace: wrap('replace'),
    rename: wrap('rename'),
    remove: wrap('remove'),
    isDirectory: wrap('isDirectory'),
    writable: wrap('writable'),
  };
  const release = useFileDropIo(directory, io);

  return {
    directory,
    io,
    members: () => readFileDrop(directory),
    manifest: () => readFileDropManifest(directory),
    files: () => fs.readdirSync(directory).sort(),
    stats: () => structuredClone(stats),
    resetStats: () => {
      stats = { calls: {}, changes: {}, faults: {} };
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
      release();
      if (created) fs.rmSync(directory, { recursive: true, force: true });
    },
  };
}

/** What file-drop counts an operation as (see FileDropEmulatorStats.changes), or undefined. */
function changeOf(op: FileOperation, file: string, position: unknown): FileChange | undefined {
  const name = path.basename(file);
  if (name.endsWith('.last-add')) return undefined;
  switch (op) {
    case 'create':
    case 'truncate':
    case 'rename':
    case 'remove':
      return op;
    case 'append':
      // A new CSV file's header row goes out with its first records, in the same call.
      return name.endsWith('.csv.partial') && position === 0 ? undefined : 'append';
    case 'replace':
      return name === MANIFEST ? 'manifest' : undefined;
    default:
      return undefined;
  }
}

// --- The shared contract suite --------------------------------------------------------------------

/**
 * The shared destination contract suite's view of this emulator (test/connectors/contract.test.ts):
 * a fresh directory per start, ndjson files. file-drop is upload-only, so the suite writes through
 * new list + swap. The file system has no rate limit, acknowledges a write whole or fails it, and
 * refuses no ndjson record, so those cases are absent; its transient failure is an EIO on append,
 * retried. The calls received are the changes file-drop counts (`changes`): the suite compares
 * them over writes only, since a page read is one call made of several file reads.
 */
export const contractHarness: ContractHarness = {
  type: 'file-drop',
  async start() {
    const emu = await startFileDropEmulator();
    return {
      settings: { type: 'file-drop', directory: emu.directory, filePrefix: 'contract' },
      secrets: {},
      key: (i) => `member-${i}`,
      attributes: (i) => ({ segment: i % 2 === 0 ? 'even' : 'odd' }),
      members: async () => [...(await emu.members()).keys()],
      serverError: (calls) => emu.faults.set({ fail: { op: 'append', calls, code: 'EIO' } }),
      received: () => Object.values(emu.stats().changes).reduce((sum, calls) => sum + calls, 0),
      close: () => emu.close(),
    };
  },
};
