import { constants } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { DIRECT_ALIGN_BYTES, type Disk, type DiskSpace, type DiskStat, type FileHandle, type OpenFileOptions } from '../core/drivers.ts';
import { assert, DiskError, errorCode } from '../core/errors.ts';

/** Largest single read or write (bounds the buffer a read allocates). */
export const REAL_DISK_IO_LENGTH_MAX_BYTES = 256 << 20;

/** What open(O_DIRECT) and a direct write answer where the file system or device cannot do it as asked. */
const DIRECT_UNSUPPORTED = new Set(['EINVAL', 'EOPNOTSUPP', 'ENOTSUP']);

/**
 * Memory for buffers that O_DIRECT reads and writes take, per RealDisk:
 * reserved a chunk at a time as buffers are asked for, touched as used. Its
 * users (block-buffer pools, span buffers) keep and recycle what they take.
 */
export const ALIGNED_ARENA_BYTES = 1 << 30;
const ALIGNED_CHUNK_BYTES = 64 << 20;
const WASM_PAGE_BYTES = 64 * 1024;
/** WebAssembly.Memory (not in this project's TypeScript lib). */
type WasmMemory = { readonly buffer: ArrayBuffer };
const WasmMemoryCtor = (globalThis as unknown as { WebAssembly: { Memory: new (d: { initial: number; maximum: number }) => WasmMemory } }).WebAssembly.Memory;

/**
 * Buffers whose addresses are multiples of DIRECT_ALIGN_BYTES, which O_DIRECT
 * needs and Node's allocator does not promise (a 128 KiB Buffer starts 16 bytes
 * into a page). A WebAssembly.Memory starts on a page boundary: buffers are
 * carved from one chunk of it after another, in order, and never given back
 * (their users recycle them). A chunk never grows: growing would detach the
 * views already handed out.
 */
export class AlignedArena {
  private readonly chunks = new Set<ArrayBuffer>();
  private chunk: Uint8Array | undefined;
  private chunkNextBytes = 0;
  private reservedBytes = 0;
  private failed = false;

  constructor(
    private readonly capacityBytes = ALIGNED_ARENA_BYTES,
    private readonly chunkBytes = ALIGNED_CHUNK_BYTES,
  ) {}

  /** A zero-filled buffer, or undefined when the arena is used up (or could not be reserved). */
  take(bytes: number): Uint8Array | undefined {
    if (!(Number.isSafeInteger(bytes) && bytes > 0 && bytes % DIRECT_ALIGN_BYTES === 0)) {
      throw new RangeError(`aligned buffer of ${bytes} bytes: expected a positive multiple of ${DIRECT_ALIGN_BYTES}`);
    }
    if (this.failed) return undefined;
    if (!this.chunk || this.chunkNextBytes + bytes > this.chunk.length) {
      // A new chunk (what is left of the last one goes unused).
      const chunkBytes = Math.max(bytes, Math.min(this.chunkBytes, this.capacityBytes - this.reservedBytes));
      if (this.reservedBytes + chunkBytes > this.capacityBytes) return undefined;
      const pages = Math.ceil(chunkBytes / WASM_PAGE_BYTES);
      let memory: WasmMemory;
      try {
        memory = new WasmMemoryCtor({ initial: pages, maximum: pages });
      } catch (err) {
        // Address space for it refused (V8 limits wasm reservations): plain memory then, through the page cache.
        if (!(err instanceof RangeError)) throw err;
        this.failed = true;
        return undefined;
      }
      this.chunks.add(memory.buffer);
      this.chunk = new Uint8Array(memory.buffer, 0, chunkBytes);
      this.chunkNextBytes = 0;
      this.reservedBytes += chunkBytes;
    }
    const out = this.chunk.subarray(this.chunkNextBytes, this.chunkNextBytes + bytes);
    this.chunkNextBytes += bytes;
    return out;
  }

  /** Whether an O_DIRECT write may take these bytes as they are. */
  writable(bytes: Uint8Array): boolean {
    return this.readable(bytes, bytes.length);
  }

  /** Whether an O_DIRECT read of length bytes (a multiple of DIRECT_ALIGN_BYTES) may land in into. */
  readable(into: Uint8Array, length: number): boolean {
    return this.chunks.has(into.buffer as ArrayBuffer) && into.byteOffset % DIRECT_ALIGN_BYTES === 0 && length % DIRECT_ALIGN_BYTES === 0 && length <= into.length;
  }
}

/**
 * Disk on node:fs/promises. Paths must be absolute. Node's system errors become
 * DiskError with the same errno code and the path.
 */
export class RealDisk implements Disk {
  /** `arena`: where aligned buffers come from (tests give their own). */
  constructor(private readonly arena = new AlignedArena()) {}

  alignedBuffer(bytes: number): Uint8Array | undefined {
    return this.arena.take(bytes);
  }

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
    let direct: fsp.FileHandle | undefined;
    if (options.direct && !options.readOnly) {
      try {
        direct = await fsp.open(path, constants.O_RDWR | constants.O_DIRECT);
      } catch (err) {
        // A file system without O_DIRECT (EINVAL, EOPNOTSUPP): every write through the page cache.
        if (!DIRECT_UNSUPPORTED.has(errorCode(err) ?? '')) {
          await fh.close();
          throw toDiskError(err, path);
        }
      }
    }
    return new RealFileHandle(path, fh, options.readOnly === true, direct ? { fh: direct, arena: this.arena } : undefined);
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

  /**
   * Writes that went past the page cache (O_DIRECT), those that could not,
   * and whether direct writes were given up (one was refused: a device whose
   * sectors are larger than DIRECT_ALIGN_BYTES, say).
   */
  readonly directStats = { directWrites: 0, bufferedWrites: 0, directReads: 0, refused: false };

  constructor(
    readonly path: string,
    private readonly fh: fsp.FileHandle,
    private readonly readOnly: boolean,
    /** With OpenFileOptions.direct: a second descriptor opened O_DIRECT, for writes from the arena's buffers. */
    private readonly direct?: { fh: fsp.FileHandle; arena: AlignedArena },
  ) {}

  /** The descriptor a write of these chunks at position goes through. */
  private writerFor(positionBytes: number, chunks: readonly Uint8Array[]): fsp.FileHandle {
    const d = this.direct;
    if (!d) return this.fh;
    if (!this.directStats.refused && positionBytes % DIRECT_ALIGN_BYTES === 0 && chunks.every((c) => d.arena.writable(c))) {
      this.directStats.directWrites++;
      return d.fh;
    }
    this.directStats.bufferedWrites++;
    return this.fh;
  }

  async read(positionBytes: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    this.checkOpen('read', false);
    checkInteger(positionBytes, 'read position', this.path, Number.MAX_SAFE_INTEGER);
    checkInteger(length, 'read length', this.path, REAL_DISK_IO_LENGTH_MAX_BYTES);
    if (into && into.length < length) throw new RangeError(`read of ${length} bytes into a buffer of ${into.length}`);
    const d = this.direct;
    const directLength = Math.ceil(length / DIRECT_ALIGN_BYTES) * DIRECT_ALIGN_BYTES;
    if (d && into && length > 0 && !this.directStats.refused && positionBytes % DIRECT_ALIGN_BYTES === 0 && d.arena.readable(into, directLength)) {
      const got = await this.readDirect(d.fh, positionBytes, into.subarray(0, directLength));
      if (got !== undefined) return into.subarray(0, Math.min(got, length));
    }
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
    await this.writeAll(positionBytes, data, this.writerFor(positionBytes, [data]));
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
    let fh = this.writerFor(positionBytes, chunks);
    while (pending.length > 0) {
      const batch = pending;
      const via = fh;
      let { bytesWritten } = await this.directOr(via, () => via.writev(batch, position), () => this.fh.writev(batch, position));
      // The rest of a short write, wherever it stops, goes through the page cache.
      fh = this.fh;
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
    try {
      if (this.direct) await wrap(this.path, () => (this.direct as { fh: fsp.FileHandle }).fh.close());
    } finally {
      await wrap(this.path, () => this.fh.close());
    }
  }

  /**
   * Read into out (aligned, from the arena) past the page cache, up to its
   * length or the end of the file; undefined if the kernel refused (then
   * direct I/O stops on this handle and the caller reads through the cache).
   */
  private async readDirect(fh: fsp.FileHandle, positionBytes: number, out: Uint8Array): Promise<number | undefined> {
    let got = 0;
    try {
      while (got < out.length) {
        // A short direct read ends at the end of the file (or, after a signal, on an aligned boundary).
        const { bytesRead } = await fh.read(out, got, out.length - got, positionBytes + got);
        if (bytesRead === 0) break;
        got += bytesRead;
        if (got % DIRECT_ALIGN_BYTES !== 0) break;
      }
    } catch (err) {
      if (!DIRECT_UNSUPPORTED.has(errorCode(err) ?? '')) throw toDiskError(err, this.path);
      this.directStats.refused = true;
      return undefined;
    }
    this.directStats.directReads++;
    return got;
  }

  /**
   * Run a write through `via`; if that is the O_DIRECT descriptor and the
   * kernel refuses it as unsupported (EINVAL: an alignment the device does not
   * take), give up direct writes on this handle and write through the page
   * cache instead. Nothing was written by a refused call.
   */
  private async directOr<T>(via: fsp.FileHandle, direct: () => Promise<T>, buffered: () => Promise<T>): Promise<T> {
    if (via === this.fh) return wrap(this.path, buffered);
    try {
      return await direct();
    } catch (err) {
      if (!DIRECT_UNSUPPORTED.has(errorCode(err) ?? '')) throw toDiskError(err, this.path);
      this.directStats.refused = true;
      return wrap(this.path, buffered);
    }
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

  private async writeAll(positionBytes: number, data: Uint8Array, first: fsp.FileHandle = this.fh): Promise<void> {
    let done = 0;
    let fh = first;
    while (done < data.length) {
      const via = fh;
      const { bytesWritten } = await this.directOr(via, () => via.write(data, done, data.length - done, positionBytes + done), () =>
        this.fh.write(data, done, data.length - done, positionBytes + done),
      );
      // The rest of a short write, wherever it stops, goes through the page cache.
      fh = this.fh;
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
  // Node's own message starts with the code ("ENOSPC: no space left on device, write"); DiskError adds it once.
  return new DiskError(code, path, message.startsWith(`${code}: `) ? message.slice(code.length + 2) : message);
}

async function wrap<T>(path: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toDiskError(err, path);
  }
}
