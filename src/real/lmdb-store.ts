// Store on LMDB (lmdb-js 3.5.6): one environment per path, one named table
// (LMDB database) per Store table, binary keys and values.
//
// What was checked on lmdb-js 3.5.6 (scratch scripts, strace) and shapes this file:
// - `transaction(cb)` is NOT atomic when cb throws: writes made before the throw
//   are committed. `childTransaction(cb)` runs cb in an abortable child txn, so a
//   commit applies whole or not at all. lmdb-js batches every async transaction
//   of one event turn into a single LMDB txn; each stays its own child txn.
// - The callback runs on the main thread while lmdb's writer thread holds the
//   write txn; the commit and its I/O happen on the writer thread.
// - lmdb-js grows the map automatically (open with mapSize 1 MiB, write 4 MiB:
//   no MDB_MAP_FULL), so LMDB_MAPSIZE is enforced here as a quota (checkQuota).
// - Durability, syncMode 'overlapping' (lmdb-js default): each commit writes its
//   meta page marked unflushed, then the writer thread fdatasyncs and writes a
//   flushed meta through an O_DSYNC fd; `db.flushed` resolves after that (strace:
//   the fdatasync precedes the durable commit's resolution). Opening with
//   overlappingSync sets MDB_PREVSNAPSHOT: if the newest meta is unflushed and
//   the boot id changed (a reboot), LMDB rolls back to the last flushed txn;
//   after a process crash (same boot) it keeps the last committed one. That is
//   the Store contract. The cost: every commit is fsynced (off the main thread),
//   so even a non-durable commit takes about as long as a durable one.
// - syncMode 'explicit' (`noSync` + `env.sync(cb)`, which runs mdb_env_sync(force)
//   = fdatasync on a libuv thread): commits do no fsync at all; a durable commit
//   or sync() issues one. Fastest for bursts, but with MDB_NOSYNC LMDB may write
//   a meta page to disk before the data pages it points to, so a power loss
//   between syncs can corrupt the environment (LMDB docs on MDB_NOSYNC), not only
//   lose the undurable tail. Hence not the default.
// - Empty keys throw "Zero length key is not allowed in LMDB"; keys > 1978 bytes
//   throw; both are rejected up front with EINVAL (store-rules.ts), as in the sim.
// - getRange with reverse:true and no `end` stops *before* the key [0x00] (its
//   default end is that key, exclusive): reverse ranges always pass inclusiveEnd.
// - put() of a SharedArrayBuffer-backed Buffer segfaults (PLATFORM.md): keys and
//   values are copied into fresh plain Buffers when commit() is called.

import { resolve as resolvePath } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import type { RangeOptions, Store, StoreEntry, StoreFactory, StoreOp, StoreOpenOptions } from '../core/drivers.ts';
import { assert } from '../core/errors.ts';
import { STORE_TABLES_MAX, StoreError, checkKey, checkOpenOptions, checkOps, checkRange, checkTable } from '../core/store-rules.ts';

export type LmdbSyncMode = 'overlapping' | 'explicit';

export interface LmdbStoreFactoryOptions {
  /** How commits become durable; see the head of this file. Default 'overlapping'. */
  syncMode?: LmdbSyncMode;
  /** LMDB maxDbs (named tables per environment). Default STORE_TABLES_MAX. */
  maxDbs?: number;
}

type BinaryDb = Database<Buffer, Buffer>;

/** Parts of lmdb-js 3.5.6's root database that index.d.ts does not declare. */
interface RootExtras {
  sync(callback: (error?: Error) => void): void;
}

/** What lmdb-js 3.5.6's getStats() returns for a named table (mdb_stat), in part. */
interface LmdbDbStats {
  pageSize: number;
  treeBranchPageCount: number;
  treeLeafPageCount: number;
  overflowPages: number;
}

/** Environments open in this process: LMDB must not open one twice. */
const openPaths = new Set<string>();

export class LmdbStoreFactory implements StoreFactory {
  private readonly syncMode: LmdbSyncMode;
  private readonly maxDbs: number;

  constructor(options: LmdbStoreFactoryOptions = {}) {
    this.syncMode = options.syncMode ?? 'overlapping';
    if (this.syncMode !== 'overlapping' && this.syncMode !== 'explicit') {
      throw new RangeError(`LmdbStoreFactory: syncMode must be 'overlapping' or 'explicit', got ${String(this.syncMode)}`);
    }
    this.maxDbs = options.maxDbs ?? STORE_TABLES_MAX;
    if (!Number.isSafeInteger(this.maxDbs) || this.maxDbs < 1 || this.maxDbs > 32_000) {
      throw new RangeError(`LmdbStoreFactory: maxDbs must be an integer in 1..32000, got ${this.maxDbs}`);
    }
  }

  async open(options: StoreOpenOptions): Promise<Store> {
    checkOpenOptions(options);
    const path = resolvePath(options.path);
    if (options.tables.length > this.maxDbs) {
      throw new StoreError('EINVAL', path, `open: ${options.tables.length} tables, maxDbs is ${this.maxDbs}`);
    }
    if (openPaths.has(path)) throw new StoreError('EBUSY', path, 'open: environment is already open in this process');
    const mapSizeBytes = options.mapSizeBytes ?? 0;
    let root: RootDatabase<Buffer, Buffer>;
    try {
      root = open<Buffer, Buffer>({
        path,
        // A directory even when META_PATH has a dot in it (lmdb-js would guess a file).
        noSubdir: false,
        maxDbs: this.maxDbs,
        keyEncoding: 'binary',
        encoding: 'binary',
        // Commits are explicit (childTransaction); the event-turn batch's own
        // commit promise, which nothing holds, was an unhandled rejection
        // whenever a commit failed (a full disk).
        eventTurnBatching: false,
        ...(this.syncMode === 'explicit' ? { noSync: true, overlappingSync: false } : { overlappingSync: true }),
        ...(mapSizeBytes > 0 ? { mapSize: mapSizeBytes } : {}),
      });
    } catch (error) {
      throw mapLmdbError(path, error, 'open');
    }
    openPaths.add(path);
    try {
      const dbs = new Map<string, BinaryDb>();
      for (const table of options.tables) {
        dbs.set(table, root.openDB<Buffer, Buffer>(table, { keyEncoding: 'binary', encoding: 'binary' }));
      }
      return new LmdbStore(path, root, dbs, options.tables, this.syncMode, mapSizeBytes);
    } catch (error) {
      openPaths.delete(path);
      await root.close();
      throw mapLmdbError(path, error, 'open');
    }
  }
}

/** Where keyForGet copies keys (LMDB keys are at most 511 bytes). */
const getKeyScratch = Buffer.allocUnsafeSlow(512);

/**
 * A plain Buffer with the key's bytes, for a lookup that uses it at once (the
 * next call reuses it). A copy into one scratch buffer: a view over
 * `key.buffer` would make V8 move a small on-heap key (every inode, dirent
 * and block-map key) off the heap first.
 */
function keyForGet(key: Uint8Array): Buffer {
  if (key.length > getKeyScratch.length) return Buffer.from(key);
  getKeyScratch.set(key);
  return getKeyScratch.subarray(0, key.length);
}

function mapLmdbError(path: string, error: unknown, what: string): StoreError {
  if (error instanceof StoreError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const sysCode = error && typeof error === 'object' && 'code' in error ? String((error as { code: unknown }).code) : undefined;
  const mdbCode = /MDB_[A-Z_]+/.exec(message)?.[0];
  if (mdbCode === 'MDB_MAP_FULL') {
    return new StoreError('ENOSPC', path, `${what}: LMDB map is full (${message}): raise LMDB_MAPSIZE`, { detail: mdbCode, cause: error });
  }
  if (sysCode === 'ENOSPC' || /No space left on device/i.test(message)) {
    return new StoreError('ENOSPC', path, `${what}: disk full (${message})`, { detail: 'ENOSPC', cause: error });
  }
  return new StoreError('EIO', path, `${what}: ${message}`, { detail: mdbCode ?? sysCode, cause: error });
}

/**
 * lmdb-js rejects a failed commit with "Commit failed (see commitError for
 * details)" and puts the cause (ENOSPC, EIO) in a second promise,
 * error.commitError, rejected at the same time: take the cause from it. It
 * must be handled here in any case, or its rejection is unhandled and ends the
 * process (measured: a disk that fills up under META_PATH killed the mount).
 */
async function commitCause(error: unknown): Promise<unknown> {
  const pending = error !== null && typeof error === 'object' ? (error as { commitError?: unknown }).commitError : undefined;
  if (!(pending instanceof Promise)) return error;
  let cause: unknown;
  pending.then(
    () => undefined,
    (e: unknown) => {
      cause = e;
    },
  );
  // One turn of the microtask queue: the reaction above runs first when the
  // cause is already there (as lmdb-js 3.5.6 does it); else it stays handled.
  await Promise.resolve();
  return cause ?? error;
}

/** How long close() waits for lmdb-js after a failed commit (see close). */
const CLOSE_AFTER_FAILURE_WAIT_MS = 2000;

class LmdbStore implements Store {
  readonly tables: readonly string[];
  private readonly tableSet: ReadonlySet<string>;
  private closed = false;
  /** The last commit failed (close() then does not wait for lmdb-js for ever). */
  private lastCommitFailed = false;
  /** Settles after the last issued commit or sync has settled: keeps them in order. */
  private tail: Promise<void> = Promise.resolve();
  /** Key+value bytes put by commits issued and not yet committed (for the map quota). */
  private pendingBytes = 0;
  // explicit mode: one fdatasync at a time; requests made while one runs share the next.
  private flushTail: Promise<void> = Promise.resolve();
  private flushWaiting: Promise<void> | undefined;
  /**
   * The read transaction get() uses, held from the first get after a commit
   * settles until the next one settles (or close). lmdb-js's own per-call
   * default renews a shared read transaction on every event-loop turn that
   * reads and arms a setTimeout(0) to reset it: measured on the FUSE mount's
   * create storm (one lookup of each new name), ~7 µs of main-thread CPU per
   * file. Holding one is safe here: this process is the environment's only
   * writer, and every commit releases it before its caller sees the commit
   * settle, so a get never reads a snapshot older than the last settled
   * commit (the engine keeps a commit's changes in memory until then).
   */
  private readTxn: ReturnType<RootDatabase['useReadTransaction']> | undefined;

  constructor(
    private readonly path: string,
    private readonly root: RootDatabase<Buffer, Buffer>,
    private readonly dbs: ReadonlyMap<string, BinaryDb>,
    tables: readonly string[],
    private readonly syncMode: LmdbSyncMode,
    private readonly mapSizeBytes: number,
  ) {
    this.tables = Object.freeze([...tables]);
    this.tableSet = new Set(tables);
  }

  get(table: string, key: Uint8Array): Uint8Array | undefined {
    this.checkOpen('get');
    checkTable(this.path, this.tableSet, table);
    checkKey(this.path, key, 'get');
    const db = this.db(table);
    const transaction = this.readTxn ?? (this.readTxn = this.root.useReadTransaction());
    const value = db.get(keyForGet(key), { transaction } as Parameters<BinaryDb['get']>[1]);
    // A fresh copy: lmdb-js may hand out views of buffers it reuses.
    return value === undefined ? undefined : new Uint8Array(value);
  }

  range(table: string, options: RangeOptions = {}): Iterable<StoreEntry> {
    this.checkOpen('range');
    checkTable(this.path, this.tableSet, table);
    checkRange(this.path, options);
    const db = this.db(table);
    const { start, end, limit, reverse } = options;
    if ((end !== undefined && end.length === 0) || limit === 0) return [];
    // lmdb-js distinguishes a missing option from an undefined one: only set what is given.
    const lmdbRange: {
      start?: Buffer;
      end?: Buffer;
      limit?: number;
      reverse?: boolean;
      exclusiveStart?: boolean;
      inclusiveEnd?: boolean;
    } = {};
    // Copies: lmdb-js reads the bounds at the first next(), the caller may have reused them by then.
    const lower = start !== undefined && start.length > 0 ? Buffer.from(start) : undefined;
    const upper = end !== undefined ? Buffer.from(end) : undefined;
    if (reverse) {
      // lmdb-js reverse ranges run from `start` (upper) down to `end` (lower).
      lmdbRange.reverse = true;
      if (upper) {
        lmdbRange.start = upper;
        lmdbRange.exclusiveStart = true;
      }
      if (lower) lmdbRange.end = lower;
      lmdbRange.inclusiveEnd = true;
    } else {
      if (lower) lmdbRange.start = lower;
      if (upper) lmdbRange.end = upper;
    }
    if (limit !== undefined) lmdbRange.limit = limit;
    const iterable = db.getRange(lmdbRange);
    return {
      *[Symbol.iterator](): Iterator<StoreEntry> {
        for (const entry of iterable) yield { key: new Uint8Array(entry.key), value: new Uint8Array(entry.value) };
      },
    };
  }

  commit(ops: readonly StoreOp[], options: { durable: boolean }): Promise<void> {
    try {
      this.checkOpen('commit');
      checkOps(this.path, this.tableSet, ops);
    } catch (error) {
      return Promise.reject(error);
    }
    const durable = options.durable === true;
    // Fresh plain Buffers now: the caller may reuse its arrays once commit() returns,
    // and lmdb-js must never see a SharedArrayBuffer.
    const writes = ops.map((op) => ({
      db: this.db(op.table),
      key: Buffer.from(op.key),
      value: op.value === undefined ? undefined : Buffer.from(op.value),
    }));
    let putBytes = 0;
    for (const w of writes) if (w.value !== undefined) putBytes += w.key.length + w.value.length;
    const quotaError = this.checkQuota(putBytes);
    let work: Promise<void>;
    if (quotaError) {
      work = Promise.reject(quotaError);
    } else {
      this.pendingBytes += putBytes;
      const committed = this.root
        .childTransaction(() => {
          for (const w of writes) {
            if (w.value === undefined) w.db.removeSync(w.key);
            else w.db.putSync(w.key, w.value);
          }
        })
        .then(
          () => {
            this.lastCommitFailed = false;
          },
          async (error: unknown) => {
            this.lastCommitFailed = true;
            throw await commitCause(error);
          },
        );
      // First reaction on `committed`: the held read transaction goes before
      // anything that waits for this commit can read.
      const settled = committed.finally(() => {
        this.pendingBytes -= putBytes;
        this.releaseReadTxn();
      });
      work = durable ? settled.then(() => this.flush()) : settled.then(() => undefined);
    }
    return this.inOrder(work, 'commit');
  }

  sync(): Promise<void> {
    try {
      this.checkOpen('sync');
    } catch (error) {
      return Promise.reject(error);
    }
    // Everything issued before this call must be committed before the flush covers it.
    const work = this.tail.then(() => this.flush());
    return this.inOrder(work, 'sync');
  }

  private releaseReadTxn(): void {
    const txn = this.readTxn;
    if (txn === undefined) return;
    this.readTxn = undefined;
    txn.done();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.tail;
      await this.flushTail;
      this.releaseReadTxn();
      const closing = this.root.close();
      if (!this.lastCommitFailed) {
        await closing;
      } else {
        // After a failed commit lmdb-js 3.5.6's close waits for the flush of
        // that commit, which never comes (measured: forever on a full disk,
        // and a process with nothing else to do then ends with exit code 13).
        let timer: NodeJS.Timeout | undefined;
        const gaveUp = await Promise.race([
          closing.then(() => false),
          new Promise<boolean>((resolve) => {
            timer = setTimeout(() => resolve(true), CLOSE_AFTER_FAILURE_WAIT_MS);
          }),
        ]).finally(() => clearTimeout(timer));
        if (gaveUp) throw new StoreError('EIO', this.path, `close: the last commit failed and LMDB did not finish closing within ${CLOSE_AFTER_FAILURE_WAIT_MS} ms; the environment is left to the process exit (everything committed before stays)`);
      }
    } finally {
      openPaths.delete(this.path);
    }
  }

  /** Settle `work` only after everything issued before it has settled. */
  private inOrder(work: Promise<void>, what: string): Promise<void> {
    const previous = this.tail;
    const result = work.then(
      () => previous,
      async (error: unknown) => {
        await previous;
        throw mapLmdbError(this.path, error, what);
      },
    );
    // The tail only orders; each outcome reaches its caller through `result`.
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  /** Make every committed txn durable. */
  private flush(): Promise<void> {
    if (this.syncMode === 'overlapping') {
      // Resolves once the last commit is fdatasynced and its flushed meta written.
      return Promise.resolve(this.root.flushed).then(() => undefined);
    }
    if (this.flushWaiting) return this.flushWaiting;
    const waiting: Promise<void> = this.flushTail
      .then(() => {
        // From here on, a new request needs a new fdatasync: this one may have missed it.
        if (this.flushWaiting === waiting) this.flushWaiting = undefined;
        return new Promise<void>((resolve, reject) => {
          (this.root as unknown as RootExtras).sync((error) => (error ? reject(mapLmdbError(this.path, error, 'sync')) : resolve()));
        });
      });
    this.flushWaiting = waiting;
    this.flushTail = waiting.then(
      () => undefined,
      () => undefined,
    );
    return waiting;
  }

  /**
   * LMDB_MAPSIZE as a quota, since lmdb-js grows the map instead of failing with
   * MDB_MAP_FULL. Counted: the pages the opened tables use now (branch, leaf and
   * overflow pages: deleted data is credited at once, unlike LMDB's high-water
   * page number, which even a delete-only commit raises) plus the key+value bytes
   * put by commits in flight and by this one. A commit that puts nothing is
   * always admitted, so space can be freed when full. The map file itself can be
   * somewhat larger (free list, pages awaiting reuse).
   */
  private checkQuota(putBytes: number): StoreError | undefined {
    if (this.mapSizeBytes <= 0 || putBytes === 0) return undefined;
    let pages = 0;
    let pageSize = 0;
    for (const db of this.dbs.values()) {
      const stats = db.getStats() as LmdbDbStats;
      pages += stats.treeBranchPageCount + stats.treeLeafPageCount + stats.overflowPages;
      pageSize = stats.pageSize;
    }
    assert(pageSize > 0, 'lmdb getStats: pageSize');
    const usedBytes = pages * pageSize;
    if (usedBytes + this.pendingBytes + putBytes <= this.mapSizeBytes) return undefined;
    return new StoreError(
      'ENOSPC',
      this.path,
      `commit putting ${putBytes} bytes: ${usedBytes} bytes in use and ${this.pendingBytes} pending exceed the map size ${this.mapSizeBytes}: raise LMDB_MAPSIZE`,
      { detail: 'MDB_MAP_FULL' },
    );
  }

  private db(table: string): BinaryDb {
    const db = this.dbs.get(table);
    assert(db !== undefined, `lmdb store ${this.path}: table ${table} checked but not opened`);
    return db;
  }

  private checkOpen(what: string): void {
    if (this.closed) throw new StoreError('ECLOSED', this.path, `${what}: store is closed`);
  }
}
