// Driver interfaces: everything nondeterministic or slow enters src/core through
// these, passed in at construction. src/sim implements them deterministically
// (seeded, virtual time, crash and fault injection); src/real with timers, LMDB,
// node:fs and node:net. Core never picks a driver itself.

// ---------------------------------------------------------------- Clock

export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds since the epoch (real) or since the simulation began (sim). */
  nowMs(): number;
  /** Run fn once after delayMs. Callbacks run as their own event, never inline. */
  setTimer(delayMs: number, fn: () => void): TimerHandle;
}

// ---------------------------------------------------------------- Rng

export interface Rng {
  /** Uniform 32-bit unsigned integer. */
  u32(): number;
  /** Uniform float in [0, 1). */
  float(): number;
  /** Uniform integer in [0, maxExclusive). */
  int(maxExclusive: number): number;
  /** Fill a buffer with random bytes. */
  bytes(length: number): Uint8Array;
  /** An independent stream derived from this one and a label (per component). */
  split(label: string): Rng;
}

// ---------------------------------------------------------------- Store

/** A write to one named table. `value: undefined` deletes the key. */
export interface StoreOp {
  table: string;
  key: Uint8Array;
  value: Uint8Array | undefined;
}

export interface RangeOptions {
  /** Inclusive lower bound (default: table start). */
  start?: Uint8Array;
  /** Exclusive upper bound (default: table end). */
  end?: Uint8Array;
  limit?: number;
  reverse?: boolean;
}

export interface StoreEntry {
  key: Uint8Array;
  value: Uint8Array;
}

/**
 * Transactional ordered key-value store with named tables, with LMDB's
 * semantics. Keys are compared bytewise (unsigned, shorter-prefix first).
 *
 * - Reads are synchronous and see the last *committed* state.
 * - `commit(ops)` applies all ops atomically; the promise resolves once they are
 *   committed (visible, and surviving a process crash). If `durable` is true it
 *   resolves only once they also survive a power loss.
 * - `sync()` makes every commit so far durable.
 * - Power loss reverts to the last durable commit; a process crash keeps
 *   everything committed. A commit in flight at a crash is all-or-nothing.
 * - Commits complete in the order they were issued.
 */
export interface Store {
  readonly tables: readonly string[];
  get(table: string, key: Uint8Array): Uint8Array | undefined;
  /** Ordered entries of a table; keys and values are copies the caller may keep. */
  range(table: string, options?: RangeOptions): Iterable<StoreEntry>;
  commit(ops: readonly StoreOp[], options: { durable: boolean }): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

export interface StoreOpenOptions {
  /** Directory (real) or name (sim) of the environment. */
  path: string;
  tables: readonly string[];
  /** Upper bound on the map size in bytes (LMDB_MAPSIZE), 0 = driver default. */
  mapSizeBytes?: number;
}

export interface StoreFactory {
  open(options: StoreOpenOptions): Promise<Store>;
}

// ---------------------------------------------------------------- Disk

export interface DiskStat {
  sizeBytes: number;
  isDirectory: boolean;
  /**
   * Changes when the file is written or truncated, or another file takes its
   * name (inode and modification time). Lets a poller tell a file it already
   * judged from a new one of the same size.
   */
  changeTag: string;
}

export interface DiskSpace {
  totalBytes: number;
  freeBytes: number;
}

export interface FileHandle {
  readonly path: string;
  /**
   * Read up to length bytes at position; shorter only at end of file. With
   * `into` (at least length bytes) the bytes land there and the result is a
   * view of it: a caller that reuses its buffers touches no fresh memory.
   */
  read(positionBytes: number, length: number, into?: Uint8Array): Promise<Uint8Array>;
  /**
   * Read into the targets back to back from position (one scattered read where
   * the OS has it); resolves with the bytes read, short only at end of file.
   * The targets must not be touched until it settles.
   */
  readv(positionBytes: number, targets: readonly Uint8Array[]): Promise<number>;
  /** Write all of data at position (extending the file as needed). */
  write(positionBytes: number, data: Uint8Array): Promise<void>;
  /** Write the chunks back to back from position (one gathered write where the OS has it). */
  writev(positionBytes: number, chunks: readonly Uint8Array[]): Promise<void>;
  /** Append data at the current end; resolves with the offset it was written at. */
  append(data: Uint8Array): Promise<number>;
  sizeBytes(): Promise<number>;
  truncate(lengthBytes: number): Promise<void>;
  /** Make the file's contents and length durable. */
  sync(): Promise<void>;
  close(): Promise<void>;
}

export interface OpenFileOptions {
  /** Create the file if it does not exist (default false: ENOENT). */
  create?: boolean;
  /** Fail with EEXIST if it exists (with create). */
  exclusive?: boolean;
  /** Open read-only. */
  readOnly?: boolean;
  /**
   * Writes that can bypass the page cache do (O_DIRECT): those at a multiple
   * of DIRECT_ALIGN_BYTES, a multiple of it long, from buffers of
   * Disk.alignedBuffer. So do reads `into` such a buffer at such a position
   * when the buffer has room for the length rounded up to DIRECT_ALIGN_BYTES
   * (only the length asked for comes back). Others go through the page cache
   * as usual; sync() makes both durable. A driver without it ignores the option.
   */
  direct?: boolean;
}

/** Offsets and lengths of writes a `direct` handle sends past the page cache are multiples of this. */
export const DIRECT_ALIGN_BYTES = 512;

/**
 * Files addressed by absolute POSIX paths. Errors are DiskError with an errno
 * code (ENOENT, EEXIST, ENOSPC, EIO, ENOTDIR, EISDIR, ENOTEMPTY, EACCES).
 * Creating, renaming and unlinking a directory entry is durable only after
 * `syncDir` of its parent directory.
 */
export interface Disk {
  open(path: string, options?: OpenFileOptions): Promise<FileHandle>;
  stat(path: string): Promise<DiskStat | undefined>;
  readdir(path: string): Promise<string[]>;
  mkdir(path: string, options?: { recursive?: boolean }): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  syncDir(path: string): Promise<void>;
  space(path: string): Promise<DiskSpace>;
  /**
   * A zero-filled buffer of `bytes` (a multiple of DIRECT_ALIGN_BYTES) that a
   * `direct` handle writes past the page cache; undefined when the driver has
   * none (left). Plain memory works everywhere, through the page cache.
   */
  alignedBuffer?(bytes: number): Uint8Array | undefined;
}

// ---------------------------------------------------------------- Net

export interface Connection {
  readonly remote: string;
  /**
   * Queue bytes; false when the send buffer is over its high-water mark.
   * `owned`: the caller hands the bytes over and never touches them again, so
   * the driver may keep them without a copy. `onSent` (with owned): called
   * once the driver no longer needs them (handed to the OS, copied, or the
   * connection gone): then the caller may reuse the buffer.
   */
  write(data: Uint8Array, owned?: boolean, onSent?: () => void): boolean;
  /** Close after queued bytes are sent. */
  end(): void;
  /** Close at once, dropping queued bytes. */
  destroy(): void;
  /**
   * Bytes as they arrive. With `borrow`, a chunk may be a view of a buffer the
   * driver reuses after the handler returns: the handler copies what it keeps.
   */
  onData(handler: (chunk: Uint8Array) => void, options?: { borrow?: boolean }): void;
  /** Called once when the queued bytes drain below the high-water mark. */
  onDrain(handler: () => void): void;
  /** Called exactly once when the connection is closed for any reason. */
  onClose(handler: (error?: Error) => void): void;
}

export interface Listener {
  readonly port: number;
  close(): Promise<void>;
}

export interface Net {
  /** Listen on host:port (port 0 picks a free one). */
  listen(host: string, port: number, onConnection: (conn: Connection) => void): Promise<Listener>;
  /** Connect; rejects with a NetError (ECONNREFUSED, ETIMEDOUT...) on failure. */
  connect(host: string, port: number, options?: { timeoutMs?: number }): Promise<Connection>;
}

// ---------------------------------------------------------------- Primitives

/**
 * Pure byte functions core needs but must not import from node:* (hashes,
 * checksums, compression). Deterministic; sim and real share one implementation.
 */
export interface Primitives {
  /** Supported hash names, e.g. sha256. */
  readonly hashNames: readonly string[];
  hash(name: string, data: Uint8Array): Uint8Array;
  hmac(name: string, key: Uint8Array, data: Uint8Array): Uint8Array;
  /** CRC-32 (IEEE), as an unsigned number; `seed` continues a running CRC. */
  crc32(data: Uint8Array, seed?: number): number;
  /** Supported codecs, by stable id. */
  readonly codecs: readonly CodecInfo[];
  compress(codecId: number, data: Uint8Array): Uint8Array;
  decompress(codecId: number, data: Uint8Array, rawLength: number): Uint8Array;
}

export interface CodecInfo {
  /** Stored with every block: never renumber. */
  id: number;
  name: string;
}

// ---------------------------------------------------------------- Logger

export type LogLevel = 0 | 1 | 2 | 3 | 4 | 5;

/** One line per event. Level as lessfs DEBUG: 0 errors only … 5 everything. */
export interface Logger {
  log(level: LogLevel, message: string): void;
}

/** The drivers one node is built from. */
export interface Drivers {
  clock: Clock;
  rng: Rng;
  storeFactory: StoreFactory;
  disk: Disk;
  net: Net;
  primitives: Primitives;
  logger: Logger;
}
