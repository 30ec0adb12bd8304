import { createHash } from 'node:crypto';
import path from 'node:path';
import { meteredCall } from '../../core/api-calls';
import {
  DestinationError,
  type BatchResult,
  type Destination,
  type Limits,
  type Member,
  type MemberPage,
  type Rejection,
} from '../../core/destination';
import { fullJitterBackoff, realSleep } from '../kit/http';
import type { DestinationContext } from '../kit/module';
import {
  csvFields,
  csvRow,
  fileFormats,
  MalformedFileError,
  ndjsonLine,
  parseRecords,
  type FileFormat,
  type FileRecord,
} from './format';
import { errorCode, fileDropIoFor, nodeFileDropIo, type FileDropIo } from './io';
import { FILE_DROP_TYPE, fileDropConfigSchema, type FileDropConfigInput } from './settings';

/**
 * `file-drop`: every refresh writes a complete new file into a directory that another system
 * picks up, and `manifest.json` names the current one. Files are never changed once delivered, so
 * the destination is upload-only: its live list has no add, remove or truncate, and every refresh
 * is a new list + swap:
 *
 *   replaceList.create(name)  `${prefix}-${name}.${format}.partial`, created empty (kept if it exists)
 *   forList(id).add           appends the records, fsync'ed before the call returns
 *   replaceList.swap(id)      renames .partial to the final name, then replaces manifest.json
 *                             atomically (temp file + rename) with { current, format, records,
 *                             sha256, createdAt }
 *   replaceList.retire(id)    removes a previous file (never the one the manifest names)
 *   listMembers               pages of the current file (or of a list being built)
 *   check                     the directory exists and may be written; what the manifest names
 *
 * Readers must start from manifest.json: a file it does not name may be incomplete. One
 * connector per directory (the manifest's name is fixed).
 *
 * Calls: each change to a list file counts as one call at its name (create, append, truncate,
 * rename, manifest, remove), each page read as `listMembers`; reads made on the way and the side
 * file below are bookkeeping, not calls. A retried write is a second call.
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

/** The endpoints, as the run counts their calls. */
export const FILE_DROP_ENDPOINTS = {
  create: 'create',
  append: 'append',
  truncate: 'truncate',
  rename: 'rename',
  manifest: 'manifest',
  remove: 'remove',
  list: 'listMembers',
  check: 'check',
} as const;

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

/** Seams for tests: the file operations (default: the emulator's for its directory, else the real ones) and the clock. */
export interface FileDropOptions {
  io?: FileDropIo;
  now?: () => Date;
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

const defaults = { maxAttempts: 3, baseDelayMs: 50, maxDelayMs: 1000 };

/** One change to a list file, counted as one call of `endpoint`. */
type FileCall = <T>(endpoint: string, operation: () => Promise<T>) => Promise<T>;

export function createFileDropDestination(
  input: FileDropConfigInput,
  context: DestinationContext,
  options: FileDropOptions = {},
): Destination {
  const config = fileDropConfigSchema.parse(input);
  const directory = path.resolve(config.directory);
  const io = options.io ?? fileDropIoFor(directory);
  const retry = context.retry;
  const limits: Limits = { recordsPerCall: config.recordsPerCall };
  const at = (file: string) => path.join(directory, file);
  /** CSV columns per file being built, read from its header once. */
  const headers = new Map<string, string[]>();

  /**
   * One operation, retried on transient I/O errors; the changes it makes go through `call`, which
   * counts each (its failure too, as retried or failed as the error says).
   */
  async function run<T>(what: string, work: (call: FileCall) => Promise<T>): Promise<T> {
    const call: FileCall = (endpoint, operation) =>
      meteredCall(endpoint, () =>
        operation().catch((err: unknown) => {
          throw toDestinationError(err, what);
        }),
      );
    const maxAttempts = retry.maxAttempts ?? defaults.maxAttempts;
    for (let attempt = 1; ; attempt++) {
      try {
        return await work(call);
      } catch (err) {
        const error = toDestinationError(err, what);
        if (error.kind !== 'retryable' || attempt >= maxAttempts) throw error;
        const delay = fullJitterBackoff(
          attempt - 1,
          retry.baseDelayMs ?? defaults.baseDelayMs,
          retry.maxDelayMs ?? defaults.maxDelayMs,
          retry.random,
        );
        await (retry.sleep ?? realSleep)(delay);
      }
    }
  }

  function toDestinationError(err: unknown, what: string): DestinationError {
    if (err instanceof DestinationError) return err;
    const code = errorCode(err);
    const detail = err instanceof Error ? err.message : String(err);
    if (err instanceof MalformedFileError) {
      return new DestinationError(`${FILE_DROP_TYPE}: ${what} in ${directory}: ${detail}`, 'fatal');
    }
    if (transientCodes.has(code ?? '')) {
      return new DestinationError(
        `${FILE_DROP_TYPE}: ${what} in ${directory} failed: ${detail}`,
        'retryable',
      );
    }
    const hint =
      code === 'ENOSPC' || code === 'EDQUOT'
        ? ': the disk is full; free space, then run the refresh again'
        : code === 'EACCES' || code === 'EPERM' || code === 'EROFS'
          ? ': the worker may not write there; fix the permissions or the mount'
          : '';
    return new DestinationError(
      `${FILE_DROP_TYPE}: ${what} in ${directory} failed: ${detail}${hint}`,
      'fatal',
    );
  }

  async function requireDirectory(): Promise<void> {
    if (!(await io.isDirectory(directory))) {
      throw new DestinationError(
        `${FILE_DROP_TYPE}: directory ${directory} does not exist; create it (or mount it) and run the refresh again`,
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
        `${FILE_DROP_TYPE}: '${listId}' is not a file of this connector (${config.filePrefix}-….ndjson or .csv)`,
        'fatal',
      );
    }
    return listId;
  }

  // --- the list being built -------------------------------------------------------------------

  async function create(name: string): Promise<{ listId: string }> {
    const file = fileFor(name);
    await run(`create ${file}`, async (call) => {
      await requireDirectory();
      // Already renamed by a swap: nothing left to create.
      if ((await io.size(at(file))) !== null) return;
      // An existing .partial is kept: the engine resumes its fill from the checkpoint.
      await call(FILE_DROP_ENDPOINTS.create, () => io.create(at(`${file}.partial`)));
    });
    return { listId: file };
  }

  async function append(file: string, members: Member[]): Promise<BatchResult> {
    const partial = at(`${file}.partial`);
    return run(`append to ${file}.partial`, async (call) => {
      let size = await io.size(partial);
      if (size === null) throw notBeingBuilt(file, await io.size(at(file)));
      const cut = await unacknowledgedTail(file, size, members);
      if (cut !== null) {
        await call(FILE_DROP_ENDPOINTS.truncate, () => io.truncate(partial, cut));
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
      const start = size;
      await call(FILE_DROP_ENDPOINTS.append, () => io.append(partial, start, bytes));
      return { rejected };
    });
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
        `${FILE_DROP_TYPE}: an attribute named 'key' would clash with the CSV key column; rename it in the dataset`,
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

  async function swap(listId: string): Promise<{ liveListId?: string }> {
    const file = ownFile(listId);
    await run(`swap in ${file}`, async (call) => {
      const partial = at(`${file}.partial`);
      if ((await io.size(partial)) !== null) {
        await call(FILE_DROP_ENDPOINTS.rename, () => io.rename(partial, at(file)));
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
      await call(FILE_DROP_ENDPOINTS.manifest, () =>
        io.replace(at(MANIFEST), Buffer.from(`${JSON.stringify(next, null, 2)}\n`)),
      );
    });
    // The new file is the live list, under its own name.
    return {};
  }

  async function retire(listId: string): Promise<void> {
    const file = ownFile(listId);
    await run(`delete ${file}`, async (call) => {
      const manifest = await readManifestWith(io, directory);
      if (manifest?.current === file) {
        throw new DestinationError(
          `${FILE_DROP_TYPE}: refusing to delete ${file}: manifest.json names it as current`,
          'fatal',
        );
      }
      for (const name of [file, `${file}.partial`]) {
        if ((await io.size(at(name))) !== null)
          await call(FILE_DROP_ENDPOINTS.remove, () => io.remove(at(name)));
      }
      await io.remove(at(`${file}.partial${lastAddSuffix}`));
    });
  }

  // --- reading ----------------------------------------------------------------------------------

  /** Pages of a list's keys; the cursor holds the file name and a byte offset. */
  async function listMembers(list: string | null, cursor: string | null, limit: number): Promise<MemberPage> {
    return run('read', (call) =>
      call(FILE_DROP_ENDPOINTS.list, async () => {
        const file = await fileToRead(list);
        const from = cursor === null ? { file, offset: 0 } : parseCursor(cursor);
        if (from.file !== file) {
          throw new DestinationError(
            `${FILE_DROP_TYPE}: the list changed from ${from.file} to ${file ?? 'nothing'} while it was being read; read it again from the start`,
            'fatal',
          );
        }
        if (file === null) return { keys: [], next: null };
        const page = await readPage(io, directory, file, from.offset, limit);
        return {
          keys: page.records.map((r) => r.key),
          next: page.next === null ? null : encodeCursor(file, page.next),
        };
      }),
    );
  }

  /** The file to read: the manifest's current one, or a list being built (its .partial until the swap). */
  async function fileToRead(file: string | null): Promise<string | null> {
    if (file === null) return (await readManifestWith(io, directory))?.current ?? null;
    return (await io.size(at(`${file}.partial`))) !== null ? `${file}.partial` : file;
  }

  /** The directory is there and writable; says which list is live, from the manifest. */
  async function check(): Promise<string> {
    return run('check', (call) =>
      call(FILE_DROP_ENDPOINTS.check, async () => {
        await requireDirectory();
        if (!(await io.writable(directory))) {
          throw new DestinationError(
            `${FILE_DROP_TYPE}: the worker may not write to directory ${directory}; fix the permissions or the mount`,
            'fatal',
          );
        }
        const manifest = await readManifestWith(io, directory);
        const live = manifest
          ? `manifest.json names ${manifest.current} (${manifest.records} records)`
          : 'no list delivered yet (no manifest.json)';
        return `${FILE_DROP_TYPE}: directory ${directory} reachable and writable; ${live}`;
      }),
    );
  }

  /** The live list (file null: whatever the manifest names), or a list being built (it alone takes records). */
  function bound(file: string | null): Destination {
    return {
      type: FILE_DROP_TYPE,
      limits,
      ...(file === null ? {} : { add: (members: Member[]) => append(file, members) }),
      listMembers: (cursor, limit) => listMembers(file, cursor, limit),
      replaceList: {
        create,
        forList: (listId) => bound(ownFile(listId)),
        swap,
        retire,
      },
      check,
      close: async () => undefined,
    };
  }

  // The manifest says which file is current; context.listId (the engine's copy of it) is not used.
  return bound(null);
}

function notBeingBuilt(file: string, finalSize: number | null): DestinationError {
  return new DestinationError(
    finalSize === null
      ? `${FILE_DROP_TYPE}: no list ${file} is being built (create it first: replaceList.create)`
      : `${FILE_DROP_TYPE}: ${file} was already swapped in; a delivered file is never changed`,
    'fatal',
  );
}

/** The format of a file by its name (a .partial file: by the name it will have). */
function formatOf(file: string): FileFormat | undefined {
  const name = file.replace(/\.partial$/, '');
  return fileFormats.find((format) => name.endsWith(`.${format}`));
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
  throw new DestinationError(`${FILE_DROP_TYPE}: invalid cursor '${cursor}'`, 'fatal');
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
      `${FILE_DROP_TYPE}: ${file} named in manifest.json is missing from ${directory}`,
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
