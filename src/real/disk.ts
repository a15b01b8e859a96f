import { constants } from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { Disk, DiskSpace, DiskStat, FileHandle, OpenFileOptions } from '../core/drivers.ts';
import { assert, DiskError, errorCode } from '../core/errors.ts';

/** Largest single read or write (bounds the buffer a read allocates). */
export const REAL_DISK_IO_LENGTH_MAX_BYTES = 256 << 20;

/**
 * Disk on node:fs/promises. Paths must be absolute. Node's system errors become
 * DiskError with the same errno code and the path.
 */
export class RealDisk implements Disk {
  async open(path: string, options: OpenFileOptions = {}): Promise<FileHandle> {
    checkPath(path);
    let flags = options.readOnly ? constants.O_RDONLY : constants.O_RDWR;
    if (options.create) flags |= constants.O_CREAT;
    if (options.create && options.exclusive) flags |= constants.O_EXCL;
    const fh = await wrap(path, () => fsp.open(path, flags, 0o644));
    if (options.readOnly) {
      // open(2) accepts a directory read-only; the contract says EISDIR, as for read-write.
      let isDirectory: boolean;
      try {
        isDirectory = (await fh.stat()).isDirectory();
      } catch (err) {
        await fh.close();
        throw toDiskError(err, path);
      }
      if (isDirectory) {
        await wrap(path, () => fh.close());
        throw new DiskError('EISDIR', path, 'open: is a directory');
      }
    }
    return new RealFileHandle(path, fh, options.readOnly === true);
  }

  async stat(path: string): Promise<DiskStat | undefined> {
    checkPath(path);
    let st;
    try {
      st = await fsp.stat(path);
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return undefined;
      throw toDiskError(err, path);
    }
    return { sizeBytes: st.isDirectory() ? 0 : st.size, isDirectory: st.isDirectory(), changeTag: `${st.dev}:${st.ino}:${st.mtimeMs}:${st.ctimeMs}:${st.size}` };
  }

  async readdir(path: string): Promise<string[]> {
    checkPath(path);
    const names = await wrap(path, () => fsp.readdir(path));
    return names.sort();
  }

  async mkdir(path: string, options: { recursive?: boolean } = {}): Promise<void> {
    checkPath(path);
    await wrap(path, () => fsp.mkdir(path, { recursive: options.recursive === true }));
  }

  async rename(from: string, to: string): Promise<void> {
    checkPath(from);
    checkPath(to);
    await wrap(`${from} -> ${to}`, () => fsp.rename(from, to));
  }

  async unlink(path: string): Promise<void> {
    checkPath(path);
    await wrap(path, () => fsp.unlink(path));
  }

  async syncDir(path: string): Promise<void> {
    checkPath(path);
    const fh = await wrap(path, () => fsp.open(path, constants.O_RDONLY | constants.O_DIRECTORY));
    let syncError: unknown;
    try {
      await fh.sync();
    } catch (err) {
      syncError = err;
    }
    // Close even when fsync failed; report the fsync failure first, since that is
    // the one that says the directory may not be durable.
    try {
      await fh.close();
    } catch (err) {
      if (syncError === undefined) throw toDiskError(err, path);
    }
    if (syncError !== undefined) throw toDiskError(syncError, path);
  }

  async space(path: string): Promise<DiskSpace> {
    checkPath(path);
    const st = await wrap(path, () => fsp.statfs(path));
    const totalBytes = st.blocks * st.bsize;
    const freeBytes = st.bavail * st.bsize;
    assert(freeBytes <= totalBytes, `statfs(${path}): free ${freeBytes} > total ${totalBytes}`);
    return { totalBytes, freeBytes };
  }
}

/**
 * A file opened on a RealDisk. Appends, truncates and size queries go through
 * one queue per handle so `append` can return its offset from a cached size
 * without a stat per call. The cache assumes this handle is the file's only
 * writer and that no write extending the file runs concurrently with an append.
 */
class RealFileHandle implements FileHandle {
  private closed = false;
  private sizeCacheBytes: number | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly path: string,
    private readonly fh: fsp.FileHandle,
    private readonly readOnly: boolean,
  ) {}

  async read(positionBytes: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    this.checkOpen('read', false);
    checkInteger(positionBytes, 'read position', this.path, Number.MAX_SAFE_INTEGER);
    checkInteger(length, 'read length', this.path, REAL_DISK_IO_LENGTH_MAX_BYTES);
    if (into && into.length < length) throw new RangeError(`read of ${length} bytes into a buffer of ${into.length}`);
    const out = into ? into.subarray(0, length) : new Uint8Array(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await wrap(this.path, () => this.fh.read(out, got, length - got, positionBytes + got));
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return got === length ? out : into ? out.subarray(0, got) : out.slice(0, got);
  }

  async readv(positionBytes: number, targets: readonly Uint8Array[]): Promise<number> {
    this.checkOpen('read', false);
    checkInteger(positionBytes, 'read position', this.path, Number.MAX_SAFE_INTEGER);
    let total = 0;
    for (const t of targets) total += t.length;
    checkInteger(total, 'read length', this.path, REAL_DISK_IO_LENGTH_MAX_BYTES);
    let rest: readonly Uint8Array[] = targets.filter((t) => t.length > 0);
    let got = 0;
    while (rest.length > 0) {
      const parts = rest;
      const { bytesRead } = await wrap(this.path, () => this.fh.readv(parts as Uint8Array[], positionBytes + got));
      if (bytesRead === 0) break;
      got += bytesRead;
      // A short read (a signal, a huge span): go on from where it stopped.
      let skip = bytesRead;
      let i = 0;
      while (i < parts.length && skip >= parts[i].length) skip -= parts[i++].length;
      rest = i < parts.length ? [parts[i].subarray(skip), ...parts.slice(i + 1)] : [];
    }
    return got;
  }

  async write(positionBytes: number, data: Uint8Array): Promise<void> {
    this.checkOpen('write', true);
    checkInteger(positionBytes, 'write position', this.path, Number.MAX_SAFE_INTEGER - data.length);
    checkInteger(data.length, 'write length', this.path, REAL_DISK_IO_LENGTH_MAX_BYTES);
    await this.writeAll(positionBytes, data);
    if (this.sizeCacheBytes !== undefined) {
      this.sizeCacheBytes = Math.max(this.sizeCacheBytes, positionBytes + data.length);
    }
  }

  async writev(positionBytes: number, chunks: readonly Uint8Array[]): Promise<void> {
    this.checkOpen('writev', true);
    let total = 0;
    for (const c of chunks) total += c.length;
    checkInteger(positionBytes, 'writev position', this.path, Number.MAX_SAFE_INTEGER - total);
    checkInteger(total, 'writev length', this.path, REAL_DISK_IO_LENGTH_MAX_BYTES);
    let pending = [...chunks];
    let position = positionBytes;
    while (pending.length > 0) {
      const batch = pending;
      let { bytesWritten } = await wrap(this.path, () => this.fh.writev(batch, position));
      assert(bytesWritten > 0, `writev(${this.path}): wrote 0 bytes at ${position}`);
      position += bytesWritten;
      // A short gathered write: continue after what was written.
      const rest: Uint8Array[] = [];
      for (const c of batch) {
        if (bytesWritten >= c.length) {
          bytesWritten -= c.length;
          continue;
        }
        rest.push(bytesWritten > 0 ? c.subarray(bytesWritten) : c);
        bytesWritten = 0;
      }
      pending = rest;
    }
    if (this.sizeCacheBytes !== undefined) this.sizeCacheBytes = Math.max(this.sizeCacheBytes, position);
  }

  append(data: Uint8Array): Promise<number> {
    return this.serial('append', true, async () => {
      checkInteger(data.length, 'append length', this.path, REAL_DISK_IO_LENGTH_MAX_BYTES);
      const positionBytes = await this.cachedSize();
      // A failed write may have written part of data: forget the size rather than guess.
      this.sizeCacheBytes = undefined;
      await this.writeAll(positionBytes, data);
      this.sizeCacheBytes = positionBytes + data.length;
      return positionBytes;
    });
  }

  sizeBytes(): Promise<number> {
    return this.serial('size', false, async () => {
      this.sizeCacheBytes = undefined;
      return this.cachedSize();
    });
  }

  truncate(lengthBytes: number): Promise<void> {
    return this.serial('truncate', true, async () => {
      checkInteger(lengthBytes, 'truncate length', this.path, Number.MAX_SAFE_INTEGER);
      this.sizeCacheBytes = undefined;
      await wrap(this.path, () => this.fh.truncate(lengthBytes));
      this.sizeCacheBytes = lengthBytes;
    });
  }

  async sync(): Promise<void> {
    this.checkOpen('sync', false);
    // fsync, not fdatasync: the length changes of appends and truncates must be durable too.
    await wrap(this.path, () => this.fh.sync());
  }

  async close(): Promise<void> {
    this.checkOpen('close', false);
    this.closed = true;
    await this.queue;
    await wrap(this.path, () => this.fh.close());
  }

  private checkOpen(what: string, mutates: boolean): void {
    if (this.closed) throw new DiskError('EBADF', this.path, `${what}: handle is closed`);
    if (mutates && this.readOnly) throw new DiskError('EBADF', this.path, `${what}: handle is read-only`);
  }

  private serial<T>(what: string, mutates: boolean, fn: () => Promise<T>): Promise<T> {
    try {
      this.checkOpen(what, mutates);
    } catch (err) {
      return Promise.reject(err);
    }
    const result = this.queue.then(fn);
    // The queue only orders; each caller gets its own outcome through `result`.
    this.queue = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  private async cachedSize(): Promise<number> {
    if (this.sizeCacheBytes === undefined) {
      this.sizeCacheBytes = (await wrap(this.path, () => this.fh.stat())).size;
    }
    return this.sizeCacheBytes;
  }

  private async writeAll(positionBytes: number, data: Uint8Array): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await wrap(this.path, () =>
        this.fh.write(data, done, data.length - done, positionBytes + done),
      );
      assert(bytesWritten > 0, `write(${this.path}): wrote 0 bytes at ${positionBytes + done}`);
      done += bytesWritten;
    }
  }
}

function checkPath(path: string): void {
  if (typeof path !== 'string' || !path.startsWith('/') || path.includes('\0')) {
    throw new DiskError('EINVAL', String(path), 'path must be absolute');
  }
}

function checkInteger(value: number, what: string, path: string, max: number): void {
  if (!Number.isSafeInteger(value) || value < 0 || value > max) {
    throw new DiskError('EINVAL', path, `${what} must be an integer in [0, ${max}], got ${value}`);
  }
}

/** Node system errors (errno codes) become DiskError; anything else is a bug and passes through. */
function toDiskError(err: unknown, path: string): unknown {
  if (err instanceof DiskError) return err;
  const code = errorCode(err);
  if (code === undefined || !/^E[A-Z0-9]+$/.test(code)) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new DiskError(code, path, message);
}

async function wrap<T>(path: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toDiskError(err, path);
  }
}
