import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

/**
 * The file operations file-drop uses, one interface so the emulator can wrap them with faults:
 * the file system is file-drop's "service", and these are its calls. Paths are absolute.
 */
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
  /** May this process create and rename files in the directory? */
  writable(dir: string): Promise<boolean>;
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
  async writable(dir) {
    try {
      await fsp.access(dir, constants.W_OK | constants.X_OK);
      return true;
    } catch (err) {
      const code = errorCode(err);
      if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') return false;
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

/** The operations for `directory`: a test's override, else the real ones. */
export function fileDropIoFor(directory: string): FileDropIo {
  return ioOverrides.get(path.resolve(directory)) ?? nodeFileDropIo;
}

export function errorCode(err: unknown): string | undefined {
  const code = err && typeof err === 'object' ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : undefined;
}
