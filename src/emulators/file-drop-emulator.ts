import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  nodeFileDropIo,
  readFileDropManifest,
  readFileDropRecords,
  useFileDropIo,
  type FileDropIo,
  type FileDropManifest,
} from '../connectors/file-drop';
import type { Attributes } from '../connectors/types';

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

export interface FileDropEmulatorStats {
  /** Operations attempted, by operation, faulted ones included. */
  calls: Partial<Record<FileOperation, number>>;
  /** Faults that took effect, by fault. */
  faults: Partial<Record<keyof FileDropFaults, number>>;
}

export interface FileDropEmulator {
  directory: string;
  /** The faulty operations, for createFileDropDestination(config, { io }). */
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
  let stats: FileDropEmulatorStats = { calls: {}, faults: {} };

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
      stats = { calls: {}, faults: {} };
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
