import { createHash, randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import {
  csvFields,
  csvRow,
  fileFormats,
  MalformedFileError,
  ndjsonLine,
  parseRecords,
  type FileFormat,
  type FileRecord,
} from './file-drop-format';
import { fullJitterBackoff, realSleep, type Sleep } from './http';
import { defineDestination } from './module';
import { unthrottled } from './throttle';
import {
  DestinationError,
  type BatchOutcome,
  type Destination,
  type Limits,
  type Member,
  type MemberPage,
  type Rejection,
  type Throttle,
} from './types';

/**
 * `file-drop`: every refresh writes a complete new file into a directory that another system
 * picks up, and `manifest.json` names the current one. Files are never changed once delivered, so
 * the only strategy is new list + swap:
 *
 *   createList(name)  `${prefix}-${name}.${format}.partial`, created empty (kept if it exists)
 *   forList(id).add   appends the records, fsync'ed before the call returns
 *   swapList(id)      renames .partial to the final name, then replaces manifest.json atomically
 *                     (temp file + rename) with { current, format, records, sha256, createdAt }
 *   deleteList(id)    removes a previous file (never the one the manifest names)
 *
 * Readers must start from manifest.json: a file it does not name may be incomplete. One
 * connector per directory (the manifest's name is fixed).
 *
 * Resuming a fill: the engine records each add() after it returns and, after a crash, sends again
 * from the last recorded one, so only the last add() in a file can be unacknowledged. Before
 * writing, each add() notes where it starts in a side file (`….partial.last-add`); the next add()
 * looks at the records written from there: if they share a key with the new batch (the engine is
 * sending that batch again) or end in a torn record (a crash mid-write), they are cut off first.
 * Keys of recorded calls never come again (the cursor moves past them), so nothing else is cut.
 *
 * Acknowledgement: the file system's. An add() returns only after every byte of the call is
 * written (short writes are continued, never taken for whole ones) and fsync'ed; a failed write
 * or fsync throws, so no record of that call counts as delivered. No partial answer exists to
 * misread: the records a call returns are the CSV ones refused before writing, by name.
 */

export const MANIFEST = 'manifest.json';
const lastAddSuffix = '.last-add';

export const fileDropConfigSchema = z.object({
  type: z.literal('file-drop'),
  /** An existing directory the worker can write to (not created: a missing mount must not go unnoticed). */
  directory: z
    .string()
    .min(1)
    .refine((dir) => path.isAbsolute(dir), 'directory must be an absolute path'),
  format: z.enum(fileFormats).default('ndjson'),
  filePrefix: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/, 'filePrefix: letters, digits, ., _ and -, at most 100')
    .default('list'),
  /** Records appended per call (one write + fsync). */
  recordsPerCall: z.number().int().min(1).max(1_000_000).default(10_000),
});

export type FileDropConfig = z.output<typeof fileDropConfigSchema>;
export type FileDropConfigInput = z.input<typeof fileDropConfigSchema>;

export interface FileDropManifest {
  /** File name (inside the directory) of the current list. */
  current: string;
  format: FileFormat;
  /** Records in the file (the CSV header not counted). */
  records: number;
  /** SHA-256 of the file's bytes, hex. */
  sha256: string;
  /** When the file became current (ISO 8601). */
  createdAt: string;
}

// --- File system access -------------------------------------------------------------------------

/** The file operations file-drop uses; the emulator wraps them with faults. Paths are absolute. */
export interface FileDropIo {
  /** Size in bytes, or null when the file does not exist. */
  size(file: string): Promise<number | null>;
  /** Up to `length` bytes from `position` (fewer at the end of the file). */
  read(file: string, position: number, length: number): Promise<Buffer>;
  /** Creates the file empty unless it exists (contents kept); durable. */
  create(file: string): Promise<void>;
  /** Writes `data` at `position` and fsyncs. */
  append(file: string, position: number, data: Buffer): Promise<void>;
  truncate(file: string, length: number): Promise<void>;
  /** Replaces the file's contents atomically: temp file, fsync, rename, fsync the directory. */
  replace(file: string, data: Buffer): Promise<void>;
  /** Renames and fsyncs the directory. */
  rename(from: string, to: string): Promise<void>;
  /** Removes the file; false when it did not exist. */
  remove(file: string): Promise<boolean>;
  isDirectory(dir: string): Promise<boolean>;
}

export const nodeFileDropIo: FileDropIo = {
  async size(file) {
    try {
      return (await fsp.stat(file)).size;
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return null;
      throw err;
    }
  },
  async read(file, position, length) {
    const handle = await fsp.open(file, 'r');
    try {
      const buffer = Buffer.alloc(length);
      const { bytesRead } = await handle.read(buffer, 0, length, position);
      return buffer.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  },
  async create(file) {
    const handle = await fsp.open(file, 'a');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await syncDirectory(path.dirname(file));
  },
  async append(file, position, data) {
    const handle = await fsp.open(file, 'r+');
    try {
      for (let written = 0; written < data.length;) {
        const { bytesWritten } = await handle.write(data, written, data.length - written, position + written);
        written += bytesWritten;
      }
      await handle.sync();
    } finally {
      await handle.close();
    }
  },
  async truncate(file, length) {
    const handle = await fsp.open(file, 'r+');
    try {
      await handle.truncate(length);
      await handle.sync();
    } finally {
      await handle.close();
    }
  },
  async replace(file, data) {
    const temp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    const handle = await fsp.open(temp, 'w');
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fsp.rename(temp, file);
    await syncDirectory(path.dirname(file));
  },
  async rename(from, to) {
    await fsp.rename(from, to);
    await syncDirectory(path.dirname(to));
  },
  async remove(file) {
    try {
      await fsp.unlink(file);
      return true;
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return false;
      throw err;
    }
  },
  async isDirectory(dir) {
    try {
      return (await fsp.stat(dir)).isDirectory();
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return false;
      throw err;
    }
  },
};

/** A rename or a new file survives a power cut only once its directory entry is fsync'ed. */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await fsp.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * For tests: file operations to use for one directory instead of the real ones (what the
 * emulator's faults hook into when the destination is built by the worker's factory). Returns
 * the function that removes it again.
 */
const ioOverrides = new Map<string, FileDropIo>();
export function useFileDropIo(directory: string, io: FileDropIo): () => void {
  const key = path.resolve(directory);
  ioOverrides.set(key, io);
  return () => {
    if (ioOverrides.get(key) === io) ioOverrides.delete(key);
  };
}

// --- The destination ----------------------------------------------------------------------------

export interface FileDropOptions {
  throttle?: Throttle;
  io?: FileDropIo;
  now?: () => Date;
  sleep?: Sleep;
  /** Attempts for transient I/O errors (EIO, EAGAIN, EBUSY, …), the first one included. */
  maxAttempts?: number;
  baseDelayMs?: number;
}

/** Transient I/O errors: worth another try. Everything else needs an operator. */
const transientCodes = new Set([
  'EIO',
  'EAGAIN',
  'EBUSY',
  'EMFILE',
  'ENFILE',
  'ESTALE',
  'ETIMEDOUT',
  'EINTR',
]);

export function createFileDropDestination(
  input: FileDropConfigInput,
  options: FileDropOptions = {},
): Destination {
  const config = fileDropConfigSchema.parse(input);
  const directory = path.resolve(config.directory);
  const io = options.io ?? ioOverrides.get(directory) ?? nodeFileDropIo;
  const limits: Limits = { recordsPerCall: config.recordsPerCall };
  const account = `file-drop:${directory}`;
  const throttle = options.throttle ?? unthrottled;
  const at = (file: string) => path.join(directory, file);
  /** CSV columns per file being built, read from its header once. */
  const headers = new Map<string, string[]>();

  /** One file operation under the throttle, retried on transient I/O errors, counted. */
  async function run<T>(what: string, work: () => Promise<T>): Promise<T> {
    const maxAttempts = options.maxAttempts ?? 3;
    for (let attempt = 1; ; attempt++) {
      try {
        return await throttle(account, limits, work);
      } catch (err) {
        const code = errorCode(err);
        if (!transientCodes.has(code ?? '') || attempt >= maxAttempts) throw toDestinationError(err, what);
        const delay = fullJitterBackoff(attempt - 1, options.baseDelayMs ?? 50, 1000);
        await (options.sleep ?? realSleep)(delay);
      }
    }
  }

  function toDestinationError(err: unknown, what: string): DestinationError {
    if (err instanceof DestinationError) return err;
    const code = errorCode(err);
    const detail = err instanceof Error ? err.message : String(err);
    if (err instanceof MalformedFileError) {
      return new DestinationError(`file-drop: ${what} in ${directory}: ${detail}`, 'fatal');
    }
    if (transientCodes.has(code ?? '')) {
      return new DestinationError(`file-drop: ${what} in ${directory} failed: ${detail}`, 'retryable');
    }
    const hint =
      code === 'ENOSPC' || code === 'EDQUOT'
        ? ': the disk is full; free space, then run the refresh again'
        : code === 'EACCES' || code === 'EPERM' || code === 'EROFS'
          ? ': the worker may not write there; fix the permissions or the mount'
          : '';
    return new DestinationError(`file-drop: ${what} in ${directory} failed: ${detail}${hint}`, 'fatal');
  }

  async function requireDirectory(): Promise<void> {
    if (!(await io.isDirectory(directory))) {
      throw new DestinationError(
        `file-drop: directory ${directory} does not exist; create it (or mount it) and run the refresh again`,
        'fatal',
      );
    }
  }

  // --- names ----------------------------------------------------------------------------------

  function fileFor(name: string): string {
    return `${config.filePrefix}-${name.replace(/[^A-Za-z0-9._-]/g, '_')}.${config.format}`;
  }

  /** A list id is a file name this destination made: `${prefix}-….ndjson|csv`, no directories. */
  function ownFile(listId: string): string {
    const named = /^[A-Za-z0-9._-]+\.(ndjson|csv)$/.test(listId);
    if (!named || !listId.startsWith(`${config.filePrefix}-`)) {
      throw new DestinationError(
        `file-drop: '${listId}' is not a file of this connector (${config.filePrefix}-….ndjson or .csv)`,
        'fatal',
      );
    }
    return listId;
  }

  // --- the list being built -------------------------------------------------------------------

  async function createList(name: string) {
    const file = fileFor(name);
    const calls: Record<string, number> = {};
    await run(`create ${file}`, async () => {
      await requireDirectory();
      // Already renamed by a swap: nothing left to create.
      if ((await io.size(at(file))) !== null) return;
      // An existing .partial is kept: the engine resumes its fill from the checkpoint.
      count(calls, 'create');
      await io.create(at(`${file}.partial`));
    });
    return { listId: file, outcome: outcome(calls) };
  }

  async function append(file: string, members: Member[]): Promise<BatchOutcome> {
    const partial = at(`${file}.partial`);
    // Counted across attempts: a retried write is a second call.
    const calls: Record<string, number> = {};
    const result = await run(`append to ${file}.partial`, async () => {
      let size = await io.size(partial);
      if (size === null) throw notBeingBuilt(file, await io.size(at(file)));
      const cut = await unacknowledgedTail(file, size, members);
      if (cut !== null) {
        count(calls, 'truncate');
        await io.truncate(partial, cut);
        size = cut;
      }
      if (size === 0 && formatOf(file) === 'csv' && members.length > 0) {
        const header = Buffer.from(csvRow(csvColumnsFor(file, members[0]!)));
        await io.append(partial, 0, header);
        size = header.length;
      }
      const { bytes, rejected } = await encode(file, members);
      // Where this call's records start, durable before they are written (see the top comment).
      await io.replace(`${partial}${lastAddSuffix}`, Buffer.from(JSON.stringify({ offset: size })));
      count(calls, 'append');
      await io.append(partial, size, bytes);
      return { rejected };
    });
    return { ...outcome(calls), rejected: result.rejected };
  }

  /**
   * Where to cut the .partial before appending `members`: the start of the previous add() when
   * its records were not acknowledged (the engine sends them again, or the write was torn), else
   * null. Without a side file no add() has written records yet: whatever is there is at most a
   * torn CSV header, and goes.
   */
  async function unacknowledgedTail(file: string, size: number, members: Member[]): Promise<number | null> {
    const partial = at(`${file}.partial`);
    const lastAdd = await readLastAdd(partial);
    if (lastAdd === null) {
      headers.delete(file);
      return size > 0 ? 0 : null;
    }
    if (lastAdd >= size) return null;
    const tail = await io.read(partial, lastAdd, size - lastAdd);
    const format = formatOf(file)!;
    const columns = format === 'csv' ? await csvHeader(file) : null;
    const records = parseRecords(tail, 0, format, columns);
    const torn = (records.at(-1)?.end ?? 0) < tail.length;
    const sending = new Set(members.map((m) => m.key));
    return torn || records.some((r) => sending.has(r.key)) ? lastAdd : null;
  }

  async function readLastAdd(partial: string): Promise<number | null> {
    const sideFile = `${partial}${lastAddSuffix}`;
    const size = await io.size(sideFile);
    if (size === null) return null;
    const { offset } = JSON.parse((await io.read(sideFile, 0, size)).toString('utf8')) as {
      offset?: unknown;
    };
    if (typeof offset !== 'number')
      throw new MalformedFileError(`${path.basename(sideFile)} holds no offset`);
    return offset;
  }

  /** A new CSV file's columns: the key, then the first member's attribute names. */
  function csvColumnsFor(file: string, first: Member): string[] {
    const names = Object.keys(first.attributes);
    if (names.includes('key')) {
      throw new DestinationError(
        "file-drop: an attribute named 'key' would clash with the CSV key column; rename it in the dataset",
        'fatal',
      );
    }
    const columns = ['key', ...names];
    headers.set(file, columns);
    return columns;
  }

  /** The bytes to append, and the records CSV cannot hold (attributes outside its header). */
  async function encode(file: string, members: Member[]) {
    const rejected: Rejection[] = [];
    if (formatOf(file) === 'ndjson')
      return { bytes: Buffer.from(members.map(ndjsonLine).join('')), rejected };
    const columns = members.length > 0 ? await csvHeader(file) : [];
    const attributeColumns = new Set(columns.slice(1));
    let text = '';
    for (const member of members) {
      const extra = Object.keys(member.attributes).filter((name) => !attributeColumns.has(name));
      if (extra.length > 0) {
        rejected.push({
          key: member.key,
          reason: `attribute ${extra.join(', ')} is not a column of ${file}`,
        });
      } else {
        text += csvRow([member.key, ...columns.slice(1).map((name) => member.attributes[name])]);
      }
    }
    return { bytes: Buffer.from(text), rejected };
  }

  /** The CSV columns (key first) of a file being built, from its header row, read once. */
  async function csvHeader(file: string): Promise<string[]> {
    const known = headers.get(file);
    if (known) return known;
    const { names } = await readCsvColumns(io, at(`${file}.partial`));
    headers.set(file, names);
    return names;
  }

  // --- swap and retire ----------------------------------------------------------------------------

  async function swapList(listId: string): Promise<BatchOutcome> {
    const file = ownFile(listId);
    const calls: Record<string, number> = {};
    await run(`swap in ${file}`, async () => {
      const partial = at(`${file}.partial`);
      if ((await io.size(partial)) !== null) {
        count(calls, 'rename');
        await io.rename(partial, at(file));
      } else if ((await io.size(at(file))) === null) {
        throw notBeingBuilt(file, null);
      }
      await io.remove(`${partial}${lastAddSuffix}`);
      // A retry after a crash between the rename and the manifest finds the file renamed.
      const manifest = await readManifestWith(io, directory);
      if (manifest?.current === file) return;
      const summary = await summarize(io, at(file));
      const next: FileDropManifest = {
        current: file,
        format: formatOf(file)!,
        ...summary,
        createdAt: (options.now?.() ?? new Date()).toISOString(),
      };
      count(calls, 'manifest');
      await io.replace(at(MANIFEST), Buffer.from(`${JSON.stringify(next, null, 2)}\n`));
    });
    return outcome(calls);
  }

  async function deleteList(listId: string): Promise<BatchOutcome> {
    const file = ownFile(listId);
    const calls: Record<string, number> = {};
    await run(`delete ${file}`, async () => {
      const manifest = await readManifestWith(io, directory);
      if (manifest?.current === file) {
        throw new DestinationError(
          `file-drop: refusing to delete ${file}: manifest.json names it as current`,
          'fatal',
        );
      }
      for (const name of [file, `${file}.partial`, `${file}.partial${lastAddSuffix}`]) {
        if (await io.remove(at(name))) count(calls, 'remove');
      }
    });
    return outcome(calls);
  }

  // --- reading ----------------------------------------------------------------------------------

  /** Pages of a list's keys; the cursor holds the file name and a byte offset. */
  async function listMembers(list: string | null, cursor: string | null, limit: number): Promise<MemberPage> {
    return run('read', async () => {
      const file = await fileToRead(list);
      const from = cursor === null ? { file, offset: 0 } : parseCursor(cursor);
      if (from.file !== file) {
        throw new DestinationError(
          `file-drop: the list changed from ${from.file} to ${file ?? 'nothing'} while it was being read; read it again from the start`,
          'fatal',
        );
      }
      if (file === null) return { keys: [], next: null };
      const page = await readPage(io, directory, file, from.offset, limit);
      return {
        keys: page.records.map((r) => r.key),
        next: page.next === null ? null : encodeCursor(file, page.next),
      };
    });
  }

  /** The file to read: the manifest's current one, or a list being built (its .partial until the swap). */
  async function fileToRead(file: string | null): Promise<string | null> {
    if (file === null) return (await readManifestWith(io, directory))?.current ?? null;
    return (await io.size(at(`${file}.partial`))) !== null ? `${file}.partial` : file;
  }

  /** The live list (file null: whatever the manifest names), or a list being built. */
  function bound(file: string | null): Destination {
    const refuse = (operation: string) => async (): Promise<never> => {
      throw new DestinationError(
        `file-drop: cannot ${operation} ${file ?? 'the current file'}: a delivered file is never changed; refreshes write a new file (strategy newList)`,
        'fatal',
      );
    };
    return {
      type: 'file-drop',
      capabilities: {
        // Only a list being built (forList) takes records; the live file is read-only.
        add: file !== null,
        remove: false,
        truncate: false,
        listMembers: true,
        updateAttributes: false,
        createList: true,
      },
      limits,
      add: file === null ? refuse('add to') : (members) => append(file, members),
      remove: refuse('remove from'),
      truncate: refuse('truncate'),
      listMembers: (cursor, limit) => listMembers(file, cursor, limit),
      createList,
      forList: (listId) => bound(ownFile(listId)),
      swapList,
      deleteList,
      close: async () => undefined,
    };
  }

  // The manifest says which file is current; context.listId (the engine's copy of it) is not used.
  return bound(null);
}

function notBeingBuilt(file: string, finalSize: number | null): DestinationError {
  return new DestinationError(
    finalSize === null
      ? `file-drop: no list ${file} is being built (createList first)`
      : `file-drop: ${file} was already swapped in; a delivered file is never changed`,
    'fatal',
  );
}

function count(calls: Record<string, number>, operation: string): void {
  calls[operation] = (calls[operation] ?? 0) + 1;
}

/** What an operation cost, by file operation (create, append, truncate, rename, manifest, remove). */
function outcome(calls: Record<string, number>): BatchOutcome {
  const apiCalls = Object.values(calls).reduce((sum, n) => sum + n, 0);
  return { rejected: [], apiCalls, rateLimitWaits: 0, callsByEndpoint: calls };
}

/** The format of a file by its name (a .partial file: by the name it will have). */
function formatOf(file: string): FileFormat | undefined {
  const name = file.replace(/\.partial$/, '');
  return fileFormats.find((format) => name.endsWith(`.${format}`));
}

function errorCode(err: unknown): string | undefined {
  const code = err && typeof err === 'object' ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : undefined;
}

// --- Cursors ------------------------------------------------------------------------------------

function encodeCursor(file: string, offset: number): string {
  return Buffer.from(JSON.stringify({ file, offset })).toString('base64url');
}

function parseCursor(cursor: string): { file: string; offset: number } {
  try {
    const parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as {
      file?: unknown;
      offset?: unknown;
    };
    if (typeof parsed.file === 'string' && typeof parsed.offset === 'number') {
      return { file: parsed.file, offset: parsed.offset };
    }
  } catch {
    // fall through
  }
  throw new DestinationError(`file-drop: invalid cursor '${cursor}'`, 'fatal');
}

// --- Reading files (also for tests and users, through readFileDrop) ----------------------------

const chunkSize = 256 * 1024;

/** Up to `limit` records of `file` from byte `offset` (0: the start, past any CSV header). */
async function readPage(
  io: FileDropIo,
  directory: string,
  file: string,
  offset: number,
  limit: number,
): Promise<{ records: FileRecord[]; next: number | null }> {
  const full = path.join(directory, file);
  const size = await io.size(full);
  if (size === null)
    throw new DestinationError(
      `file-drop: ${file} named in manifest.json is missing from ${directory}`,
      'fatal',
    );
  const format = formatOf(file)!;
  const columns = format === 'csv' ? await readCsvColumns(io, full) : null;
  let position = offset === 0 && columns ? columns.end : offset;
  const records: FileRecord[] = [];
  let buffer = Buffer.alloc(0);
  let bufferStart = position;
  while (records.length < limit && position < size) {
    const more = await io.read(full, bufferStart + buffer.length, chunkSize);
    buffer = Buffer.concat([buffer, more]);
    const found = parseRecords(
      buffer,
      position - bufferStart,
      format,
      columns?.names ?? null,
      limit - records.length,
    );
    for (const record of found) records.push({ ...record, end: record.end + bufferStart });
    if (found.length > 0) position = records.at(-1)!.end;
    const atEnd = bufferStart + buffer.length >= size;
    if (found.length === 0 && atEnd) {
      throw new MalformedFileError(`${file} ends with an incomplete record at byte ${position}`);
    }
    buffer = buffer.subarray(position - bufferStart);
    bufferStart = position;
  }
  return { records, next: position < size ? position : null };
}

async function readCsvColumns(io: FileDropIo, file: string): Promise<{ names: string[]; end: number }> {
  const head = await io.read(file, 0, chunkSize);
  const row = csvFields(head, 0);
  if (!row) throw new MalformedFileError(`${path.basename(file)} has no complete CSV header`);
  return { names: row.fields.map((name) => name ?? ''), end: row.end };
}

/** Records and SHA-256 of a whole file, read in chunks. */
async function summarize(io: FileDropIo, file: string): Promise<{ records: number; sha256: string }> {
  const size = (await io.size(file)) ?? 0;
  const hash = createHash('sha256');
  for (let position = 0; position < size; position += chunkSize) {
    hash.update(await io.read(file, position, Math.min(chunkSize, size - position)));
  }
  let records = 0;
  let cursor: number | null = 0;
  while (cursor !== null) {
    const page = await readPage(io, path.dirname(file), path.basename(file), cursor, 100_000);
    records += page.records.length;
    cursor = page.next;
  }
  return { records, sha256: hash.digest('hex') };
}

async function readManifestWith(io: FileDropIo, directory: string): Promise<FileDropManifest | null> {
  const file = path.join(directory, MANIFEST);
  const size = await io.size(file);
  if (size === null) return null;
  try {
    return JSON.parse((await io.read(file, 0, size)).toString('utf8')) as FileDropManifest;
  } catch {
    throw new MalformedFileError(`${MANIFEST} is not valid JSON`);
  }
}

/** The manifest of a file-drop directory, or null before the first swap. */
export async function readFileDropManifest(
  directory: string,
  io: FileDropIo = nodeFileDropIo,
): Promise<FileDropManifest | null> {
  return readManifestWith(io, path.resolve(directory));
}

/** Every record of one file of a file-drop directory (the current one by default), in file order. */
export async function readFileDropRecords(
  directory: string,
  file?: string,
  io: FileDropIo = nodeFileDropIo,
): Promise<Member[]> {
  const dir = path.resolve(directory);
  const name = file ?? (await readManifestWith(io, dir))?.current;
  if (!name) return [];
  const members: Member[] = [];
  let cursor: number | null = 0;
  while (cursor !== null) {
    const page = await readPage(io, dir, name, cursor, 100_000);
    members.push(...page.records.map(({ key, attributes }) => ({ key, attributes })));
    cursor = page.next;
  }
  return members;
}

export const fileDropDestination = defineDestination({
  type: 'file-drop',
  description:
    'files in a directory (ndjson or csv): every refresh writes a new file and manifest.json names the current one (new list + swap only)',
  configSchema: fileDropConfigSchema,
  create: (config, context) => createFileDropDestination(config, { throttle: context.throttle }),
  targets: (config) => [{ kind: 'file', field: 'destination.directory', path: config.directory }],
});
