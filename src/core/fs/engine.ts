// The deduplicating filesystem engine: inodes, directories, block maps, the
// dedup block store and the write cache, over a Store and a Disk. The sim and
// the real mount call it identically.
//
// Crash safety rests on three orderings:
//  1. New block bytes are written to the data file and fsynced before the store
//     commit that points at them.
//  2. The allocator's state (data end, free extents) is saved in the same commit
//     as the pointers, and space freed in commit N is reused only after N is durable.
//  3. A commit is one atomic store transaction; after power loss the node is at
//     the last durable commit, never between two.

import { BUGGIFY_OFF, buggifyDelay, type Buggify } from '../buggify.ts';
import { DIRECT_ALIGN_BYTES, type FileHandle, type Store, type StoreOp, type TimerHandle } from '../drivers.ts';
import { binaryKey, equalBytes, readU64, Slabs, toHex, u64 } from '../bytes.ts';
import { assert, FormatError, FsError, AssertionError } from '../errors.ts';
import { Allocator, type Extent } from './allocator.ts';
import { RepeatLimiter } from '../repeat-limiter.ts';
import { STORE_COMMIT_OPS_MAX } from '../store-rules.ts';
import { Layer } from './layers.ts';
import { BlockBufferPool } from './buffer-pool.ts';
import { ReadQueue, WriteQueue } from './write-queue.ts';
import { BlockReadCache, type CachedBlock } from './read-cache.ts';
import {
  alignExtent,
  blockmapBlockNo,
  blockmapIno,
  blockmapKey,
  DATA_FILE,
  decodeBlock,
  decodeDirent,
  decodeInode,
  decodeJson,
  direntKey,
  direntName,
  EMPTY,
  encodeBlock,
  encodeDirent,
  encodeInode,
  encodeJson,
  FORMAT_VERSION,
  freeKey,
  inoKey,
  isDir,
  isLnk,
  isReg,
  META,
  metaKey,
  ROOT_INO,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  T,
  TABLES,
  type BlockRecord,
  type FormatInfo,
  type Inode,
  type NodeState,
} from './schema.ts';
import type { CommitContext, CommitInfo, CommitObserver, DirEntry, EngineDrivers, EngineOptions, SetAttr, Stat, Statfs } from './types.ts';
import { utf8 } from '../bytes.ts';

const NAME_MAX_BYTES = 255;
/** Tables a master's transactions change on a slave (block and freespace are each node's own). */
const REPLICA_TABLES: ReadonlySet<string> = new Set([T.inode, T.dirent, T.blockmap, T.symlink, T.orphan]);

/** A block new in a master transaction, as the master stored it. */
export interface ReplicatedBlock {
  key: Uint8Array;
  codec: number;
  rawLength: number;
  /** The stored bytes; undefined when they were handed to stageReplicatedBlock as they arrived. */
  stored: Uint8Array | undefined;
}

/**
 * A live slave's block of a transaction still arriving: its bytes are already
 * on their way to the data file (stageReplicatedBlock), its record waits for
 * the COMMIT (applyReplicated).
 */
interface StagedBlock {
  key: Uint8Array;
  extent: Extent;
  storedBytes: number;
  /**
   * Whether the freespace table, seen through the active layer, lists the
   * extent as free: a freeze records every staged extent as free (the state it
   * commits moves the data end past it, and nothing points at it yet), so a
   * crash before the COMMIT leaves it free, not lost.
   */
  listed: boolean;
}

/** One master transaction as a slave applies it. */
export interface ReplicatedTxn {
  txn: number;
  nextIno: number;
  kvs: readonly { table: string; key: Uint8Array; value: Uint8Array | undefined }[];
  blocks: readonly ReplicatedBlock[];
}
/** Write-cache cost charged per metadata entry of a layer (key, value, maps). */
const LAYER_ENTRY_BYTES = 256;
/** EngineOptions.releaseStepBlocks by default. */
export const RELEASE_STEP_BLOCKS = 65_536;
const S_ISGID = 0o2000;
/**
 * Blocks fetched ahead of a sequential reader (at most a quarter of the read
 * cache). The kernel sends a FUSE mount's reads one at a time (128 KiB each,
 * its read-ahead window), so the data file must be ahead by more than one
 * read of READ_SPAN_BLOCKS for the disk's latency to hide behind the round trips.
 */
const READ_AHEAD_BLOCKS = 64;
/** Blocks adjacent in the data file are read ahead together, up to this many per read. */
const READ_SPAN_BLOCKS = 32;
/** Data-file reads in flight (in order, so the kernel's read-ahead follows them). */
const READS_INFLIGHT_MAX = 2;
/** Share of CACHESIZE a live master keeps of its newest blocks for its sender (FsEngine.recent). */
const RECENT_BLOCKS_SHARE = 1;
const CODEC_NONE = 0;
/** readyBlockContent: the block must be loaded first. */
const NOT_READY = Symbol('not ready');
/**
 * Entries of the engine's decoded-metadata caches (inodes; directory entries)
 * before they are emptied. Both mirror what the layers and the store say and
 * are updated wherever the engine changes an inode or a directory entry.
 */
const INODE_CACHE_MAX = 16384;
const DIRENT_CACHE_MAX = 65536;
/** Dirent cache: the name does not exist (as stored: ino * 16 + type). */
const DIRENT_ABSENT = -1;

/**
 * Bytes [from, to) of the file, which fall in the block starting at blockStart
 * with this content (undefined: a hole), into target (file offset targetStart).
 */
function copyPart(target: Uint8Array, targetStart: number, content: Uint8Array | undefined, blockStart: number, from: number, to: number): void {
  // Content may be shorter than the block (a short dirty buffer): zeros after it.
  const part = content ? content.subarray(Math.min(from - blockStart, content.length), Math.min(to - blockStart, content.length)) : undefined;
  if (part) target.set(part, from - targetStart);
  target.fill(0, from - targetStart + (part?.length ?? 0), to - targetStart);
}
/**
 * Data-file bytes written since the last sync after which a sync starts in the
 * background: the disk writes them back while the cache fills, so a commit's
 * own sync finds little left (measured: the final fsync of a 1 GiB ingest was a
 * third of its time).
 */
const DATA_PRESYNC_BYTES = 32 * 1024 * 1024;

/**
 * While the data disk is full, free space on it up to this much is left to the
 * metadata store and the replication log (which grow on it too) when new data
 * is admitted.
 */
const DATA_DISK_MARGIN_BYTES = 1 << 20;
/** Free space a retry of blocks already accepted leaves on a full disk (the store's next commit), at least; half the space reserve if that is more. */
const RETRY_FLOOR_BYTES = 256 * 1024;
/** The space reserve under META_PATH (EngineOptions.spaceReserveBytes). */
export const SPACE_RESERVE_FILE = 'space-reserve';

/** The write cache of one transaction. */
class TxLayer extends Layer {
  /** Partially written blocks: ino -> block number -> full block of bytes. */
  readonly dirty = new Map<number, Map<number, Uint8Array>>();
  /** Bytes of blocks new in this transaction, by data-file offset, until durable. */
  readonly newBlocks = new Map<number, Uint8Array>();
  /** Data-file writes of newBlocks in flight, and who waits for them to finish. */
  writesInFlight = 0;
  private writeWaiters: Array<() => void> = [];

  writeStarted(): void {
    this.writesInFlight++;
  }

  writeDone(): void {
    if (--this.writesInFlight === 0) {
      const w = this.writeWaiters;
      this.writeWaiters = [];
      for (const f of w) f();
    }
  }

  writesDrained(): Promise<void> {
    if (this.writesInFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.writeWaiters.push(resolve));
  }

  /** Write-cache bytes: buffered data plus an estimate of the metadata entries. */
  get cacheBytes(): number {
    return this.dataBytes + this.size * LAYER_ENTRY_BYTES;
  }
  writeError: unknown = undefined;
  readonly quarantine: Extent[] = [];
  /** New blocks allocated in this transaction (their bytes may already be on disk). */
  newBlockCount = 0;
  /** Their stored bytes. */
  newStoredBytes = 0;
  /** CRC-32 of their stored bytes by extent offset (when the observer wants them). */
  readonly storedCrc32 = new Map<number, number>();
  /** Inodes changed in this transaction (SYNC_RELAX=1). */
  readonly touched = new Set<number>();
  /** Bytes of dirty buffers and of new blocks not yet written. */
  dataBytes = 0;
  changes = 0;
  /** Bytes of new data taken while the data disk is full (FsEngine.admitNewData). */
  admittedBytes = 0;

  /**
   * Take in the transaction below this one (the frozen layer, its writes
   * drained), so both commit as one: its entries where this layer has none,
   * its unwritten blocks, its freed extents and its counts.
   */
  absorb(older: TxLayer): void {
    assert(older.writesInFlight === 0 && older.dirty.size === 0, 'absorbing a layer with writes in flight or dirty buffers');
    for (const op of older.toOps()) {
      if (this.own(op.table, op.key) === undefined) this.put(op.table, op.key, op.value);
    }
    for (const [offset, bytes] of older.newBlocks) this.newBlocks.set(offset, bytes);
    this.dataBytes += older.dataBytes;
    this.writeError ??= older.writeError;
    this.quarantine.push(...older.quarantine);
    this.newBlockCount += older.newBlockCount;
    this.newStoredBytes += older.newStoredBytes;
    for (const [offset, crc] of older.storedCrc32) this.storedCrc32.set(offset, crc);
    for (const ino of older.touched) this.touched.add(ino);
    this.changes += older.changes;
    this.below = older.below;
  }
}

export interface FormatOptions {
  /** Erase an existing filesystem instead of refusing. */
  force: boolean;
  fsId: string;
  uid?: number;
  gid?: number;
}

export class FsEngine {
  private active: TxLayer;
  private frozen: TxLayer | undefined;
  private commitRunning: Promise<void> | undefined;
  /** Writers waiting for the next freeze (or the running commit's end). */
  private freezeWaiters: Array<() => void> = [];
  private timer: TimerHandle | undefined;
  private closed = false;
  /** A data sync failed: nothing more is committed (see runCommit). */
  private failure: unknown = undefined;
  /**
   * Set when a data-file write failed with ENOSPC. Until the disk has room
   * again, new data is taken only as far as room is known — whole free
   * extents in the data file, and the disk's free space at the last check —
   * so the write cache takes nothing more it could not write (admitNewData).
   */
  private dataDiskFull: { diskFreeBytes: number; path: string; storeFull: boolean } | undefined;
  /** The space reserve (EngineOptions.spaceReserveBytes) is on the disk. */
  private spaceReserveHeld = false;
  /** Its release (an unlink) under way: what a free-space check waits for. */
  private spaceReserveRelease: Promise<void> | undefined;
  /** Log lines of repeated events (one per kind a minute). */
  private readonly repeats = new RepeatLimiter(() => this.drivers.clock.nowMs());
  /** Deleted files whose blocks are being released in steps (destroyInode), by inode number. */
  private readonly releasing = new Set<number>();
  /** The task releasing them (releaseLarge), while it runs. */
  private releaseRun: Promise<void> | undefined;
  /** How far the data file is written (its size at open, then the end of every write that succeeded). */
  private dataFileEndBytes = 0;
  /** Data-file bytes written since the last background sync started. */
  private unsyncedDataBytes = 0;
  private presyncRunning: Promise<void> | undefined;
  private readonly openCounts = new Map<number, number>();
  /**
   * Decoded inodes as the active layer's view shows them, so a getattr or a
   * path walk does not decode the same record again. Set by putInode, dropped
   * by destroyInode, emptied by applyReplicated (which writes records itself).
   * The objects are shared: code that changes an inode builds a new one (or
   * puts the changed one back at once).
   */
  private readonly inodeCache = new Map<number, Inode>();
  /**
   * Directory entries by parent and name: ino * 16 + type, or DIRENT_ABSENT
   * for a name known not to exist (the kernel's lookup of a name about to be
   * created, then create's own check). Kept in step by addDirent and
   * removeDirent, emptied by applyReplicated.
   */
  private readonly direntCache = new Map<number, Map<string, number>>();
  private direntCacheSize = 0;
  /**
   * Store operations in the open transaction at which a commit starts, and at
   * which writers (and metadata changes through the mount: metadataRoom) wait
   * for one, whatever CACHESIZE: one commit must stay within the store's
   * STORE_COMMIT_OPS_MAX (a deduplicated write adds entries but no bytes, so
   * CACHESIZE above 256 MiB did not bound them).
   */
  private readonly opsPressure: number;
  private readonly opsFull: number;
  /** Dirty buffers of small writes (they live until the commit that stores them). */
  private readonly dirtySlabs = new Slabs(256 * 1024);
  /**
   * Bumped whenever a name goes away or is replaced (unlink, rmdir, rename)
   * and when replication rewrites the tree: a cache of resolved paths
   * (PathFs) is valid while this stays the same. Names only added keep it.
   */
  namesGeneration = 0;
  /**
   * Called (synchronously) whenever an inode or a directory entry changes, or
   * replication rewrites the tree: whatever caches attributes or names above
   * the engine (the mount's listed attributes, served by the FUSE threads)
   * must drop them before the change is answered. With ino: only that
   * inode's attributes changed (or a name was added for it); without:
   * names may have gone or moved, or anything may have changed. Also
   * called with ino before that inode's block map or dirty blocks change
   * (what was read of it may be stale: the mount's reads served from the
   * data file by the FUSE threads, see extentsOf).
   */
  onMetadataChange: ((ino?: number) => void) | undefined;
  /**
   * Called (synchronously) when any file's content may have changed at once
   * (replication rewrote the tree, a slave dropped the transactions it had
   * not made durable), before that is answered: what the mount handed its
   * FUSE threads of where blocks are (extentsOf) must not be used again.
   * Changes to one inode call onMetadataChange(ino) instead.
   */
  onContentChange: (() => void) | undefined;
  private readonly locks = new Map<number, Promise<void>>();
  private readonly truncating = new Set<number>();
  /** Per inode: where its last read ended and how far blocks are fetched ahead. */
  private readonly readAhead = new Map<number, { endBytes: number; fetchedTo: number }>();
  /** Slave: blocks of the transaction arriving, written ahead of its COMMIT (by binary key). */
  private readonly staged = new Map<string, StagedBlock>();
  /** Recently read blocks by key; a quarter of CACHESIZE. */
  private readonly readCache: BlockReadCache;
  /** READ_AHEAD_BLOCKS, or less with a small cache. */
  private readonly readAheadBlocks: number;
  /** Sees every transaction (the replication log); set before the mount commit by open(). */
  private observer: CommitObserver | undefined;
  /**
   * A live master's newest blocks, kept after their data-file writes by
   * extent offset (oldest first) until RECENT_BLOCKS_SHARE of CACHESIZE is
   * full: its sender sends them from here (the data file is written past the
   * page cache, and reading them back from the disk competes with the writes).
   */
  private readonly recent = new Map<number, Uint8Array>();
  private recentBytes = 0;
  /** While > 0 the commit timer does not start commits (a live slave commits when its master says). */
  private commitHolds = 0;
  /** Told when a commit starts and ends (the simulator checks master and slave never overlap). */
  commitPhases: ((phase: 'start' | 'end', reason: string) => void) | undefined;
  /**
   * Told when a frozen transaction whose data writes failed is folded back
   * and frozen again under the same number, with every change made since
   * (unfreeze): the number then stands for a later tree (the simulator's
   * oracle forgets the trees it noted for it).
   */
  txnRefrozen: ((txn: number) => void) | undefined;
  /** Awaited by every write before it enters the cache (MAX_BACKLOG_SIZE on a live master). */
  writeThrottle: (() => Promise<void> | undefined) | undefined;
  /** Would writeThrottle hold a write now? (asks without queuing a waiter) */
  writesHeld: (() => boolean) | undefined;
  lastCommit: CommitInfo | undefined;
  private readonly writer: WriteQueue;
  /** Block buffers recycled between callers of write() and the data-file writer. */
  readonly buffers: BlockBufferPool;
  private readonly reader: ReadQueue;
  /** Rare-path hooks (simulation only; BUGGIFY_OFF on a real mount). */
  readonly buggify: Buggify;

  private constructor(
    private readonly drivers: EngineDrivers,
    readonly options: EngineOptions,
    private readonly store: Store,
    private readonly dataFile: FileHandle,
    readonly format: FormatInfo,
    private state: NodeState,
    private allocator: Allocator,
    /** The previous session ended without a clean unmount. */
    readonly recovered: boolean,
  ) {
    this.active = new TxLayer(store);
    this.buggify = options.buggify ?? BUGGIFY_OFF;
    const opsMax = options.commitOpsMax ?? STORE_COMMIT_OPS_MAX;
    this.opsPressure = Math.floor(opsMax / 4);
    this.opsFull = Math.floor(opsMax / 2);
    this.writer = new WriteQueue(dataFile, undefined, this.buggify, drivers.clock);
    // A live slave holds arriving blocks in these buffers until their data-file
    // writes finish (stageReplicatedBlock): the master's send window plus the
    // write queue's backlog, when the disk is slower than the link.
    const keepBytes = options.replica === true ? 48 << 20 : 16 << 20;
    // A replica writes its data file past the page cache (see directDataWrites): its block buffers come from the disk's aligned memory.
    const aligned = this.directDataWrites && drivers.disk.alignedBuffer ? (n: number) => drivers.disk.alignedBuffer?.(n) : undefined;
    this.buffers = new BlockBufferPool(options.blockSizeBytes, Math.max(8, Math.floor(keepBytes / options.blockSizeBytes)), aligned);
    this.reader = new ReadQueue(dataFile, READS_INFLIGHT_MAX);
    const cacheBlocks = Math.max(2, Math.floor(options.cacheSizeBytes / 4 / options.blockSizeBytes));
    this.readAheadBlocks = Math.min(READ_AHEAD_BLOCKS, Math.floor(cacheBlocks / 4));
    this.readCache = new BlockReadCache(options.blockSizeBytes, cacheBlocks, Math.min(cacheBlocks, READ_SPAN_BLOCKS));
  }

  // ------------------------------------------------------------ lifecycle

  /** Create a new, empty filesystem (mklessfs). */
  static async format(drivers: EngineDrivers, options: EngineOptions, fmt: FormatOptions): Promise<FormatInfo> {
    validateGeometry(options, drivers);
    const store = await drivers.storeFactory.open({ path: options.metaPath, tables: TABLES, mapSizeBytes: options.lmdbMapSizeBytes });
    try {
      const existing = store.get(T.meta, metaKey(META.format));
      const ops = [];
      if (existing) {
        if (!fmt.force) {
          const info = decodeJson<FormatInfo>(existing, 'format');
          throw new FormatError('EEXIST', `${options.metaPath} already holds a lessfs filesystem (id ${info.fsId}, BLKSIZE ${info.blockSizeBytes}); use -f to overwrite it`);
        }
        for (const table of TABLES) {
          for (const { key } of store.range(table)) ops.push({ table, key, value: undefined });
        }
      }
      await mkdirDurable(drivers, options.blockDataPath);
      const dataPath = joinPath(options.blockDataPath, DATA_FILE);
      const file = await drivers.disk.open(dataPath, { create: true });
      await file.truncate(0);
      await file.sync();
      await file.close();
      await drivers.disk.syncDir(options.blockDataPath);
      const now = drivers.clock.nowMs();
      const info: FormatInfo = {
        formatVersion: FORMAT_VERSION,
        blockSizeBytes: options.blockSizeBytes,
        hashName: options.hashName,
        fsId: fmt.fsId,
        createdMs: now,
      };
      const root: Inode = {
        ino: ROOT_INO, mode: S_IFDIR | 0o755, uid: fmt.uid ?? 0, gid: fmt.gid ?? 0, nlink: 2, sizeBytes: 0,
        atimeMs: now, mtimeMs: now, ctimeMs: now, rdev: 0, parent: ROOT_INO,
      };
      const state: NodeState = { txn: 0, nextIno: ROOT_INO + 1, dataEndBytes: 0, storedBytes: 0, blockCount: 0, nextUniq: 1 };
      ops.push(
        { table: T.meta, key: metaKey(META.format), value: encodeJson(info) },
        { table: T.meta, key: metaKey(META.state), value: encodeJson(state) },
        { table: T.meta, key: metaKey(META.clean), value: utf8('1') },
        { table: T.inode, key: inoKey(ROOT_INO), value: encodeInode(root) },
      );
      await store.commit(ops, { durable: true });
      return info;
    } finally {
      await store.close();
    }
  }

  /**
   * Open a formatted filesystem; recovers if the last session was not clean.
   * `attach` is called before the first commit of the session (which every
   * mount makes) and may return an observer of every commit from then on.
   */
  static async open(
    drivers: EngineDrivers,
    options: EngineOptions,
    attach?: (engine: FsEngine) => Promise<CommitObserver | undefined>,
  ): Promise<FsEngine> {
    validateGeometry(options, drivers);
    const store = await drivers.storeFactory.open({ path: options.metaPath, tables: TABLES, mapSizeBytes: options.lmdbMapSizeBytes });
    let dataFile: FileHandle | undefined;
    try {
      const fmtBytes = store.get(T.meta, metaKey(META.format));
      if (!fmtBytes) {
        throw new FormatError('ENOTFORMATTED', `${options.metaPath} holds no lessfs filesystem: run mklessfs first`);
      }
      const format = decodeJson<FormatInfo>(fmtBytes, 'format');
      if (format.formatVersion !== FORMAT_VERSION) {
        throw new FormatError('EVERSION', `${options.metaPath} has format version ${format.formatVersion}; this lessfs-ts reads version ${FORMAT_VERSION}`);
      }
      if (format.blockSizeBytes !== options.blockSizeBytes) {
        throw new FormatError('EBLKSIZE', `${options.metaPath} was formatted with BLKSIZE=${format.blockSizeBytes} but the configuration says BLKSIZE=${options.blockSizeBytes}; BLKSIZE cannot change after mklessfs`);
      }
      if (format.hashName !== options.hashName) {
        throw new FormatError('EFORMAT', `${options.metaPath} was formatted with HASHNAME=${format.hashName} but the configuration says HASHNAME=${options.hashName}; HASHNAME cannot change after mklessfs`);
      }
      const stateBytes = store.get(T.meta, metaKey(META.state));
      if (!stateBytes) throw new FormatError('ECORRUPT', `${options.metaPath}: meta record 'state' is missing`);
      const state = decodeJson<NodeState>(stateBytes, 'state');
      const cleanBytes = store.get(T.meta, metaKey(META.clean));
      const wasClean = cleanBytes !== undefined && cleanBytes[0] === 0x31;
      const dataPath = joinPath(options.blockDataPath, DATA_FILE);
      const st = await drivers.disk.stat(dataPath);
      if (!st) {
        throw new FormatError('ECORRUPT', `${dataPath} is missing: the block data of this filesystem is gone (BLOCKDATA_PATH wrong?)`);
      }
      dataFile = await drivers.disk.open(dataPath, { readOnly: options.readOnly, direct: FsEngine.directDataWritesFor(options) });
      const allocator = Allocator.load(state.dataEndBytes, store.range(T.freespace));
      // After a process crash the store may hold commits whose sync never
      // finished: make them durable before an observer (the replication log)
      // builds on them, or a power loss now could take them back from under it.
      if (!wasClean && !options.readOnly) await store.sync();
      const engine = new FsEngine(drivers, options, store, dataFile, format, state, allocator, !wasClean);
      engine.dataFileEndBytes = Math.min(st.sizeBytes, state.dataEndBytes);
      if (!options.readOnly) await engine.findSpaceReserve();
      if (attach) {
        try {
          engine.observer = await engine.withSpaceReserve(() => attach(engine));
        } catch (err) {
          await engine.dataFile.close().catch(() => undefined);
          dataFile = undefined;
          throw err;
        }
      }
      if (!options.readOnly) {
        await engine.startSession(wasClean, st.sizeBytes);
        await engine.keepSpaceReserve();
      }
      engine.armTimer();
      return engine;
    } catch (err) {
      await dataFile?.close();
      await store.close();
      throw err;
    }
  }

  private async startSession(wasClean: boolean, dataFileBytes: number): Promise<void> {
    const { logger } = this.drivers;
    if (!wasClean) {
      logger.log(1, `unclean shutdown detected: recovering ${this.options.metaPath} at transaction ${this.state.txn}`);
      if (dataFileBytes > this.state.dataEndBytes) {
        // Bytes past the allocated end were written by a transaction that never
        // committed; nothing points at them.
        logger.log(2, `recovery: dropping ${dataFileBytes - this.state.dataEndBytes} bytes of uncommitted block data`);
        await this.dataFile.truncate(this.state.dataEndBytes);
        await this.dataFile.sync();
      }
    }
    // Inodes unlinked while open in the last session are deleted now (on a
    // slave the master decides: its deletion arrives as a transaction).
    let orphans = 0;
    for (const { key } of this.options.replica ? [] : this.store.range(T.orphan)) {
      const ino = readU64(key);
      const inode = this.findInode(ino);
      if (inode && inode.nlink === 0) this.destroyInode(inode);
      else this.active.del(T.orphan, key);
      orphans++;
    }
    if (orphans > 0) logger.log(1, `recovery: removed ${orphans} orphaned inode(s)`);
    this.active.put(T.meta, metaKey(META.clean), utf8('0'));
    this.active.changes++;
    await this.withSpaceReserve(() => this.commit('mount'));
  }

  /**
   * A step of mounting (opening the replication log, the mount commit) that
   * fails for want of room while the space reserve is on the disk: the disk
   * is full (noteDataDiskFull, which releases the reserve, as it is there
   * for this), and the step runs once more in that room. A master that
   * filled its disk and crashed then mounts, and deletes can follow.
   */
  private async withSpaceReserve<T>(step: () => Promise<T>): Promise<T> {
    try {
      return await step();
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'ENOSPC') throw err;
      if (this.spaceReserveHeld) this.noteDataDiskFull(err, dirOf((err as { path?: unknown }).path) ?? this.options.blockDataPath);
      if (this.spaceReserveRelease === undefined) throw err;
      await this.spaceReserveRelease;
      return await step();
    }
  }

  /** Commit everything, mark clean and release the store. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.timer?.cancel();
    this.timer = undefined;
    try {
      if (!this.options.readOnly && this.failure === undefined) {
        // Handles still open at unmount are released: orphans go now.
        for (const ino of [...this.openCounts.keys()]) {
          this.openCounts.set(ino, 1);
          this.release(ino);
        }
        // Large deleted files are released to the end (in steps, with commits).
        await this.releaseDone();
        this.active.put(T.meta, metaKey(META.clean), utf8('1'));
        this.active.changes++;
        await this.commit('unmount');
      }
    } finally {
      this.closed = true;
      for (const offset of [...this.recent.keys()]) this.dropRecent(offset);
      await this.presyncRunning?.catch(() => undefined);
      await this.dataFile.close();
      await this.store.close();
    }
  }

  private armTimer(): void {
    if (this.options.readOnly || this.closed) return;
    this.timer = this.drivers.clock.setTimer(this.options.commitIntervalMs, () => {
      this.timer = undefined;
      // Stopped after a failed data sync: nothing commits until a remount (it said so once).
      if (this.closed || this.failure !== undefined) return;
      const due = (this.active.changes > 0 || this.frozen) && this.commitHolds === 0;
      // While the data disk is full, its space is checked at this pace too (commits check it as well).
      const run = (due ? this.commit('interval') : Promise.resolve()).then(() => this.checkDataDisk());
      run.then(
        () => this.armTimer(),
        (err: unknown) => {
          this.drivers.logger.log(0, `commit at interval failed: ${(err as Error).message}; will retry`);
          this.armTimer();
        },
      );
    });
  }

  // ------------------------------------------------------------ commits

  /** Commit the write cache as one durable transaction. */
  async commit(reason = 'request'): Promise<void> {
    // Serialise: one commit in flight; a request during it commits after it.
    while (this.commitRunning) {
      await this.commitRunning.catch(() => undefined);
    }
    // After a failed data sync a later sync may succeed without the pages
    // the kernel dropped: no commit may follow it (checkOpen says why).
    if (this.failure !== undefined) this.checkOpen();
    if (!this.dirty) return;
    const run = (async () => {
      // A frozen transaction left by a failed commit goes first, then the cache.
      if (this.frozen) await this.runCommit(reason);
      if (this.dirty) await this.runCommit(reason);
    })();
    this.commitRunning = run;
    try {
      await run;
    } finally {
      this.commitRunning = undefined;
      this.wakeFreezeWaiters();
    }
  }

  private wakeFreezeWaiters(): void {
    const waiters = this.freezeWaiters;
    if (waiters.length === 0) return;
    this.freezeWaiters = [];
    for (const w of waiters) w();
  }

  private async runCommit(reason: string): Promise<void> {
    if (this.observer?.commitStarting) await this.observer.commitStarting();
    this.commitPhases?.('start', reason);
    try {
      await this.runCommitInner(reason);
    } finally {
      this.commitPhases?.('end', reason);
      this.observer?.commitEnded?.();
    }
  }

  private async runCommitInner(reason: string): Promise<void> {
    if (this.frozen?.writeError !== undefined) this.unfreeze();
    if (!this.frozen) this.freeze();
    const layer = this.frozen as TxLayer;
    const info: CommitInfo = { txn: this.state.txn, reason, ops: 0, newBlocks: layer.newBlockCount };
    const clock = this.drivers.clock;
    const t0 = clock.nowMs();
    await layer.writesDrained();
    // Data writes that failed (in an earlier attempt, or just now: EIO,
    // ENOSPC) are retried once here; their bytes are still in memory.
    if (layer.writeError !== undefined) await this.retryFailedWrites(layer, info.txn);
    // Nothing is committed while a data write is failing; the next attempt retries.
    if (layer.writeError !== undefined) throw layer.writeError;
    const t1 = clock.nowMs();
    // The data sync and the replication log's append (which reads the new
    // blocks back from the page cache) run together: both are durable before
    // the store commit, which is all the ordering asks.
    const dataSync = layer.newBlockCount > 0 ? this.dataFile.sync() : Promise.resolve();
    const ops = layer.toOps();
    info.ops = ops.length;
    let observed: Promise<StoreOp[]> = Promise.resolve([]);
    if (this.observer) {
      const ctx: CommitContext = {
        txn: info.txn,
        ops,
        before: this.store,
        nextIno: (decodeJson<NodeState>(layer.own(T.meta, metaKey(META.state)) as Uint8Array, 'state')).nextIno,
        timeMs: t1,
        readStored: (offsetBytes, storedBytes) => this.readStoredExact(offsetBytes, storedBytes),
        storedCrc32: (offsetBytes) => layer.storedCrc32.get(offsetBytes),
      };
      observed = this.observer.beforeCommit(ctx);
    }
    let syncEnd = t1;
    let logEnd = t1;
    const [synced, logged] = await Promise.allSettled([dataSync.then(() => (syncEnd = clock.nowMs())), observed.then((v) => ((logEnd = clock.nowMs()), v))]);
    if (synced.status === 'rejected') {
      // After a failed fsync the kernel may have dropped the dirty pages, and
      // their bytes are no longer in memory: stop rather than commit pointers
      // to data that may not exist. A remount resumes from the last durable commit.
      const err: unknown = synced.reason;
      this.failure = err;
      this.drivers.logger.log(0, `fsync of the block data file failed (${(err as Error).message}): the filesystem stops; remount to recover from transaction ${this.state.txn - 1}`);
      throw err;
    }
    if (logged.status === 'rejected') {
      const err: unknown = logged.reason;
      // The replication log shares a disk with the data: out of room, it is full as for a data write.
      if ((err as { code?: unknown }).code === 'ENOSPC') this.noteDataDiskFull(err, dirOf((err as { path?: unknown }).path) ?? this.options.blockDataPath);
      throw err;
    }
    ops.push(...(logged.value as StoreOp[]));
    // Widens the window where the log holds a transaction the store has not (recovery drops it).
    if (this.buggify.fires('slow-commit')) await buggifyDelay(this.buggify, 'slow-commit', clock, 2000);
    const t2 = clock.nowMs();
    await this.store.commit(ops, { durable: true }).catch(async (err: unknown) => {
      throw await this.storeCommitFailure(err);
    });
    info.timing = { writesMs: t1 - t0, dataSyncMs: t2 - t1, syncOnlyMs: syncEnd - t1, logOnlyMs: logEnd - t1, storeMs: clock.nowMs() - t2 };
    if (this.dataDiskFull?.storeFull) this.dataDiskFull = { ...this.dataDiskFull, storeFull: false };
    // Durable: reads fall through to the store now, freed space may be reused.
    this.active.below = this.store;
    this.frozen = undefined;
    this.allocator.release(layer.quarantine);
    this.lastCommit = info;
    if (this.observer) {
      // The transaction is durable whatever happens here: an observer's failure
      // is its own (it logs and retries), never the commit's.
      await this.observer.afterCommit(info.txn).catch((err: unknown) => {
        this.drivers.logger.log(0, `after commit of txn ${info.txn}: ${(err as Error).message}`);
      });
    }
    await this.checkDataDisk();
    const tm = info.timing;
    this.drivers.logger.log(3, `commit txn ${info.txn} (${reason}): ${info.ops} ops, ${info.newBlocks} new blocks; waited ${tm?.writesMs} ms for data writes, ${tm?.dataSyncMs} ms data sync with the replication log (sync ${tm?.syncOnlyMs} ms, log ${tm?.logOnlyMs} ms), ${tm?.storeMs} ms store commit`);
  }

  /**
   * Run fn while no commit runs and none starts (log rotation). Commits
   * requested meanwhile wait for it.
   */
  async withCommitLock<R>(fn: () => Promise<R>): Promise<R> {
    while (this.commitRunning) {
      await this.commitRunning.catch(() => undefined);
    }
    const run = fn();
    const done = run.then(() => undefined, () => undefined);
    this.commitRunning = done;
    try {
      return await run;
    } finally {
      if (this.commitRunning === done) this.commitRunning = undefined;
      this.wakeFreezeWaiters();
    }
  }

  /** Keep the commit timer from committing until the returned function is called. */
  holdCommits(): () => void {
    this.commitHolds++;
    let released = false;
    return () => {
      if (!released) this.commitHolds--;
      released = true;
    };
  }

  /**
   * A buffer that readExtent fills past the page cache (aligned memory of the
   * disk, when the data file is written direct), or undefined. It reads
   * lengths rounded up to DIRECT_ALIGN_BYTES: ask for that much room.
   */
  extentReadBuffer(bytes: number): Uint8Array | undefined {
    return this.directDataWrites ? this.drivers.disk.alignedBuffer?.(Math.ceil(bytes / DIRECT_ALIGN_BYTES) * DIRECT_ALIGN_BYTES) : undefined;
  }

  /**
   * Bytes of the data file: committed blocks' extents (a live master's sender
   * resolving BLOCKREFs); into `into` when given (then a view of it).
   */
  async readExtent(offsetBytes: number, lengthBytes: number, into?: Uint8Array): Promise<Uint8Array> {
    const bytes = await this.reader.read(offsetBytes, lengthBytes, into);
    if (bytes.length !== lengthBytes) throw new FsError('EIO', `short read of the data file: ${bytes.length} of ${lengthBytes} bytes at ${offsetBytes}`);
    return bytes;
  }

  /** Keep freed extents that `pinned` matches from reuse (Allocator pins); also applied to the free list now. */
  pinExtents(pinned: (extent: Extent) => boolean): void {
    this.allocator.setPins(pinned);
  }

  /** Pins were dropped: release held extents no longer pinned. */
  unpinExtents(): void {
    this.allocator.unpin();
  }

  /** Freed extents kept from reuse by pins: count and bytes. */
  get pinnedFree(): { extents: number; bytes: number } {
    return { extents: this.allocator.heldExtents, bytes: this.allocator.heldBytes };
  }

  /**
   * A block's stored bytes if memory has them: its data-file write is in
   * flight, or it is among a live master's recent blocks. Only for reading
   * at once: the buffer is recycled when the block leaves memory.
   */
  storedInMemory(offsetBytes: number): Uint8Array | undefined {
    return this.active.newBlocks.get(offsetBytes) ?? this.frozen?.newBlocks.get(offsetBytes) ?? this.recent.get(offsetBytes);
  }

  /**
   * Keep a live master's block after its write (see recent); the oldest go
   * back to the pool. The limit counts the memory an entry holds, not its
   * stored length: a pool buffer is held whole, and a block written in pieces
   * lives in a view of a shared slab (dirtySlabs), which would keep the whole
   * slab alive, so such a block is kept as an exact copy. Counted by stored
   * length, a stream of small files held about 5 times CACHESIZE here (a
   * 564,593-file ingest on a live master: 690 MB of slabs at CACHESIZE=128).
   */
  private keepRecent(offsetBytes: number, stored: Uint8Array): void {
    const limit = Math.floor(this.options.cacheSizeBytes * RECENT_BLOCKS_SHARE);
    if (!this.observer?.wantsStoredCrc32 || stored.length > limit) {
      this.buffers.give(stored);
      return;
    }
    const kept = this.buffers.owns(stored) || stored.byteLength === stored.buffer.byteLength ? stored : stored.slice();
    this.dropRecent(offsetBytes);
    this.recent.set(offsetBytes, kept);
    this.recentBytes += this.recentHeld(kept);
    while (this.recentBytes > limit) {
      const [oldest, bytes] = this.recent.entries().next().value as [number, Uint8Array];
      this.recent.delete(oldest);
      this.recentBytes -= this.recentHeld(bytes);
      this.buffers.give(bytes);
    }
  }

  /** Memory a recent block holds: its pool buffer whole, else its own bytes. */
  private recentHeld(bytes: Uint8Array): number {
    return this.buffers.owns(bytes) ? this.options.blockSizeBytes : bytes.byteLength;
  }

  /** The block at offsetBytes is freed (its extent may be reused): no copy of it may outlive it. */
  private dropRecent(offsetBytes: number): void {
    const bytes = this.recent.get(offsetBytes);
    if (!bytes) return;
    this.recent.delete(offsetBytes);
    this.recentBytes -= this.recentHeld(bytes);
    this.buffers.give(bytes);
  }

  /**
   * Stored bytes of the data file from offsetBytes on (one extent, or a span
   * of several): from memory when they are one block memory has, else the file.
   */
  private async readStoredExact(offsetBytes: number, storedBytes: number): Promise<Uint8Array> {
    const inMemory = this.storedInMemory(offsetBytes);
    if (inMemory && inMemory.length >= storedBytes) return inMemory.slice(0, storedBytes);
    const bytes = await this.reader.read(offsetBytes, storedBytes);
    if (bytes.length !== storedBytes) throw new FsError('EIO', `short read of a stored block: ${bytes.length} of ${storedBytes} bytes at ${offsetBytes}`);
    return bytes;
  }

  /** Turn the active layer into the committing one and open a fresh one. */
  private freeze(): void {
    assert(!this.frozen, 'freeze with a transaction already frozen');
    this.flushDirty(this.active);
    this.state = { ...this.state, txn: this.state.txn + 1, dataEndBytes: this.allocator.dataEndBytes };
    this.active.put(T.meta, metaKey(META.state), encodeJson(this.state));
    for (const st of this.staged.values()) {
      if (st.listed) continue;
      this.active.put(T.freespace, freeKey(st.extent.lengthBytes, st.extent.offsetBytes), EMPTY);
      st.listed = true;
    }
    this.frozen = this.active;
    this.active = new TxLayer(this.frozen);
    this.wakeFreezeWaiters();
  }

  /**
   * Write a transaction's failed blocks again. A block freed again in it (its
   * file deleted or overwritten since) is referred to by nothing: it needs no
   * write. On a full disk the writes are retried only when it has room for
   * them past the margin: retried at every commit, they would take the space
   * that deletes free (and the reserve released for the store) as soon as it
   * appears, and the deletes could never commit.
   */
  private async retryFailedWrites(layer: TxLayer, txn: number): Promise<void> {
    layer.writeError = undefined;
    await layer.writesDrained();
    const freed = new Set(layer.quarantine.map((e) => e.offsetBytes));
    let retryBytes = 0;
    for (const [offset, bytes] of [...layer.newBlocks]) {
      if (freed.has(offset)) {
        layer.newBlocks.delete(offset);
        layer.dataBytes -= bytes.length;
        layer.storedCrc32.delete(offset);
        this.buffers.give(bytes);
      } else {
        retryBytes += bytes.length;
      }
    }
    await this.checkDataDisk();
    const full = this.dataDiskFull;
    // Blocks already accepted may use the disk down to a small floor (the
    // store's own next pages), not the margin new data leaves: deletes queued
    // behind them commit only with them.
    const floor = Math.max(RETRY_FLOOR_BYTES, Math.floor((this.options.spaceReserveBytes ?? 0) / 2));
    if (full && retryBytes > 0 && retryBytes > full.diskFreeBytes - floor) {
      layer.writeError = new FsError('ENOSPC', `the disk under ${full.path} is full: ${layer.newBlocks.size} new blocks (${retryBytes} bytes) of txn ${txn}, written before the disk filled, wait for room (${full.diskFreeBytes} bytes free, ${floor} kept for the metadata store); ${this.roomAdvice}`);
      return;
    }
    for (const [offset, bytes] of [...layer.newBlocks]) {
      layer.newBlocks.delete(offset);
      layer.dataBytes -= bytes.length;
      this.issueWrite(layer, offset, bytes);
    }
    await layer.writesDrained();
  }

  /**
   * The frozen transaction could not write its new blocks (ENOSPC, EIO): fold
   * it into the active layer, to retry both as one transaction under its
   * number. Blocks the later changes freed then need no write at all, and the
   * deletes that make room commit with what needs it. Kept apart, the frozen
   * transaction could never commit on a full disk: its blocks need the space
   * that only the deletes queued behind it give back.
   */
  private unfreeze(): void {
    const frozen = this.frozen as TxLayer;
    this.active.absorb(frozen);
    this.frozen = undefined;
    this.state = { ...this.state, txn: this.state.txn - 1 };
    this.txnRefrozen?.(this.state.txn + 1);
  }

  /**
   * A data write (path BLOCKDATA_PATH) or a store commit (META_PATH) failed for
   * want of space. A full store also refuses new names and inodes
   * (checkMetaRoom) until a commit lands: they would pile up uncommitted.
   */
  private noteDataDiskFull(err: unknown, path = this.options.blockDataPath): void {
    const storeFull = path === this.options.metaPath;
    if (this.dataDiskFull) {
      this.dataDiskFull.diskFreeBytes = 0;
      if (storeFull) this.dataDiskFull = { ...this.dataDiskFull, path, storeFull };
      return;
    }
    this.dataDiskFull = { diskFreeBytes: 0, path, storeFull };
    const refused = this.options.replica
      ? `this slave takes no more of its master's transactions until the disk under ${path} has room again; ${this.roomAdvice}`
      : `new data${storeFull ? ', files and directories are' : ' is'} refused with ENOSPC until deletes are committed (their space is reused) or the disk under ${path} has room again`;
    this.drivers.logger.log(0, `disk full (${(err as Error).message}): ${refused}`);
    this.releaseSpaceReserve();
  }

  /**
   * What to do about a full disk. A slave's mount is read-only and its
   * master's deletes reach it only through the transactions it cannot take:
   * room comes from outside lessfs. How it then resumes (by itself, or
   * replogtool run again) its caller says.
   */
  private get roomAdvice(): string {
    return this.options.replica
      ? 'free space on that disk outside lessfs, or grow it: a slave\'s files cannot be deleted, its mount is read-only'
      : 'delete data to make room, or the file being written when the disk filled';
  }

  /** Operations that add names or inodes fail with ENOSPC while the store cannot commit for want of space. */
  private checkMetaRoom(what: string): void {
    if (this.dataDiskFull?.storeFull) throw new FsError('ENOSPC', `${what}: the disk under ${this.options.metaPath} is full: the metadata store cannot commit; delete data to make room`);
  }

  /**
   * What a failed store commit reports. Out of space, it is a full disk as a
   * data write's ENOSPC is (the store often shares the disk); LMDB reports
   * some of those as EIO (a failed page spill), so an EIO with the disk
   * under META_PATH all but full is taken for one and reported as ENOSPC.
   */
  private async storeCommitFailure(err: unknown): Promise<unknown> {
    const code = (err as { code?: unknown }).code;
    if (code === 'EIO') {
      const space = await this.drivers.disk.space(this.options.metaPath).catch(() => undefined);
      if (space && space.freeBytes < DATA_DISK_MARGIN_BYTES) {
        err = new FsError('ENOSPC', `the disk under ${this.options.metaPath} is full (${space.freeBytes} bytes free): ${(err as Error).message}`);
      }
    }
    if ((err as { code?: unknown }).code === 'ENOSPC' && (err as { detail?: unknown }).detail !== 'MDB_MAP_FULL') this.noteDataDiskFull(err, this.options.metaPath);
    return err;
  }

  private get spaceReservePath(): string {
    return joinPath(this.options.metaPath, SPACE_RESERVE_FILE);
  }

  /** At open: the space reserve a session before set aside is still there (the first ENOSPC, the mount commit's included, releases it). */
  private async findSpaceReserve(): Promise<void> {
    const bytes = this.options.spaceReserveBytes ?? 0;
    if (bytes > 0 && (await this.drivers.disk.stat(this.spaceReservePath))?.sizeBytes === bytes) this.spaceReserveHeld = true;
  }

  /** Set the space reserve aside (EngineOptions.spaceReserveBytes), if it is not there; a disk without room for it is logged. */
  private async keepSpaceReserve(): Promise<void> {
    const bytes = this.options.spaceReserveBytes ?? 0;
    if (bytes <= 0 || this.options.readOnly) return;
    const { disk, logger } = this.drivers;
    const path = this.spaceReservePath;
    if ((await disk.stat(path))?.sizeBytes === bytes) {
      this.spaceReserveHeld = true;
      return;
    }
    const f = await disk.open(path, { create: true });
    try {
      await f.truncate(0);
      const chunk = new Uint8Array(Math.min(bytes, 1 << 20));
      for (let at = 0; at < bytes; at += chunk.length) await f.write(at, chunk.subarray(0, Math.min(chunk.length, bytes - at)));
      await f.sync();
      this.spaceReserveHeld = true;
    } catch (err) {
      logger.log(1, `could not set ${bytes} bytes aside in ${path} (${(err as Error).message}): a full disk may keep deletes from committing`);
      await f.truncate(0).catch(() => undefined);
    } finally {
      await f.close();
    }
  }

  /** A write or a commit failed for want of space: give the reserve's space to the metadata store. */
  private releaseSpaceReserve(): void {
    if (!this.spaceReserveHeld) return;
    this.spaceReserveHeld = false;
    const path = this.spaceReservePath;
    this.spaceReserveRelease = this.drivers.disk.unlink(path).then(
      () =>
        this.drivers.logger.log(
          0,
          `released the ${this.options.spaceReserveBytes} bytes set aside in ${path}, ${this.options.replica === true ? "so that the metadata store can commit what is already on the disk" : 'so that deletes can commit'}`,
        ),
      (err: unknown) => this.drivers.logger.log(0, `could not release the space set aside in ${path}: ${(err as Error).message}`),
    );
  }

  /**
   * While the data disk is full: take `bytes` of new data if room is known
   * for it (true), else fail with ENOSPC (orThrow) or return false, before anything changes. Counted against the
   * active layer (its blocks' extents are taken when they are stored: a
   * conservative count until the next freeze).
   */
  private admitNewData(bytes: number, orThrow = true): boolean {
    const full = this.dataDiskFull;
    if (!full || bytes === 0) return true;
    const room = this.knownRoom(full);
    if (bytes > room) {
      if (!orThrow) return false;
      throw new FsError('ENOSPC', `the disk under ${full.path} is full: no room for ${bytes} bytes of new data (${Math.max(0, room)} known free); delete data to make room`);
    }
    this.active.admittedBytes += bytes;
    return true;
  }

  /**
   * Where a free extent must end to be taken: while the data disk is full,
   * by the data file's written end. Past it (extents of blocks whose writes
   * failed, then freed) the disk has nothing yet, and writing there needs
   * the room it lacks.
   */
  private get allocationLimit(): number {
    return this.dataDiskFull ? this.dataFileEndBytes : Infinity;
  }

  /** Free space on the data disk that new data leaves to the metadata store and the replication log. */
  private get diskMarginBytes(): number {
    return Math.max(DATA_DISK_MARGIN_BYTES, 2 * (this.options.spaceReserveBytes ?? 0));
  }

  /** Room for new data while the data disk is full: whole free extents it backs, the disk's free space past the margin, less what the active layer took. */
  private knownRoom(full: { diskFreeBytes: number }): number {
    const inFile = this.allocator.roomFor(this.options.blockSizeBytes, this.allocationLimit);
    return inFile + Math.max(0, full.diskFreeBytes - this.diskMarginBytes) - this.active.admittedBytes;
  }

  /**
   * While the data disk is full, a write that would not fit waits for the
   * commit of deletes not yet committed (the space they free is reused only
   * then), so `rm big; cp new .` works as on a local disk.
   */
  /**
   * For a write about to be acknowledged before it is stored (the mount's
   * write-behind): while the disk is full, wait for pending deletes' commit
   * if the write needs their room, then fail with ENOSPC if room for it is
   * still not known. A refused write is then reported by the write itself,
   * not by a later call (which a short write can hide from the caller).
   */
  async roomForWrite(offsetBytes: number, lengthBytes: number): Promise<void> {
    if (!this.dataDiskFull || lengthBytes === 0) return;
    await this.awaitFreedRoom(offsetBytes, lengthBytes);
    const full = this.dataDiskFull;
    if (!full) return;
    const bs = this.options.blockSizeBytes;
    const need = (Math.floor((offsetBytes + lengthBytes - 1) / bs) - Math.floor(offsetBytes / bs) + 1) * bs;
    const room = this.knownRoom(full);
    if (need > room) throw new FsError('ENOSPC', `the disk under ${full.path} is full: no room for ${need} bytes of new data (${Math.max(0, room)} known free); delete data to make room`);
  }

  /** A disk filled up (roomForWrite has something to check). */
  get diskFull(): boolean {
    return this.dataDiskFull !== undefined;
  }

  /** The directory (BLOCKDATA_PATH or META_PATH) whose disk filled up last, while the engine takes it to be full. */
  get fullDiskPath(): string | undefined {
    return this.dataDiskFull?.path;
  }

  private async awaitFreedRoom(offsetBytes: number, lengthBytes: number): Promise<void> {
    if (!this.dataDiskFull) return;
    const bs = this.options.blockSizeBytes;
    const need = (Math.floor((offsetBytes + lengthBytes - 1) / bs) - Math.floor(offsetBytes / bs) + 1) * bs;
    const freeing = this.active.quarantine.length > 0 || (this.frozen?.quarantine.length ?? 0) > 0;
    if (!freeing || this.knownRoom(this.dataDiskFull) >= need) return;
    await this.commit('disk full').catch((err: unknown) => {
      const line = this.repeats.pass('room commit', `commit for room on the full disk failed: ${(err as Error).message}`);
      if (line !== undefined) this.drivers.logger.log(1, line);
    });
  }

  /** While the data disk is full: check its free space again, and leave that state when it has room. */
  private async checkDataDisk(): Promise<void> {
    if (!this.dataDiskFull) return;
    const path = this.dataDiskFull.path;
    const { freeBytes } = await this.drivers.disk.space(path);
    const full = this.dataDiskFull;
    if (!full || full.path !== path) return;
    full.diskFreeBytes = freeBytes;
    // Room for a full write cache of new blocks and the margin: back to normal.
    if (freeBytes >= this.options.cacheSizeBytes + this.diskMarginBytes && !full.storeFull) {
      this.dataDiskFull = undefined;
      this.drivers.logger.log(0, `the disk under ${path} has room again (${Math.floor(freeBytes / 1048576)} MiB free): new data is taken again`);
      await this.keepSpaceReserve();
    }
  }

  /**
   * Hash and store every partially written block of a layer. A dirty buffer
   * stops counting as one here: what it becomes (a new block until its write
   * completes, or nothing when deduplicated or a hole) storeBlock counts.
   */
  private flushDirty(layer: TxLayer): void {
    for (const [ino, blocks] of layer.dirty) {
      for (const [bno, bytes] of blocks) {
        layer.dataBytes -= bytes.length;
        this.storeBlock(ino, bno, bytes);
      }
    }
    layer.dirty.clear();
  }

  private cacheBytesTotal(): number {
    return this.active.cacheBytes + (this.frozen?.cacheBytes ?? 0);
  }

  /** Backpressure: wait while the cache is full; start a commit when half full. */
  private async cacheRoom(): Promise<void> {
    const limit = this.options.cacheSizeBytes;
    for (let i = 0; this.cacheBytesTotal() >= limit || this.active.size >= this.opsFull; i++) {
      if (!(i < 1000)) throw new AssertionError(`write cache did not drain: active ${this.active.cacheBytes} frozen ${this.frozen?.cacheBytes} changes ${this.active.changes} dirty ${this.active.dirty.size} limit ${limit}`);
      await this.commit('cache full');
    }
    // A replicating master also bounds what one transaction carries in new
    // blocks (what a slave holds until the COMMIT): at CACHESIZE of them a
    // writer waits until a commit has taken the transaction (frozen it), not
    // for the commit to end — writes go on into the next one meanwhile.
    for (let i = 0; this.observer !== undefined && this.active.newStoredBytes >= limit; i++) {
      if (!(i < 1000)) throw new AssertionError(`transaction did not shrink: ${this.active.newStoredBytes} bytes of new blocks, limit ${limit}`);
      const frozenOrDone = new Promise<void>((resolve) => this.freezeWaiters.push(resolve));
      if (!this.commitRunning) {
        this.commit('transaction size').catch((err: unknown) => {
          this.drivers.logger.log(0, `commit on transaction size failed: ${(err as Error).message}`);
        });
      }
      await frozenOrDone;
    }
    this.commitOnPressure();
  }

  /**
   * Metadata changes through the mount (create, unlink, rename, chmod…) wait
   * here while the open transaction holds half of what one commit may carry
   * (undefined: no wait): they never wait in cacheRoom, and a burst of them
   * faster than commits land (an rm -rf of a million files, thousands of
   * parallel creates) would otherwise pass STORE_COMMIT_OPS_MAX and make a
   * commit the store refuses. Each wait ends after a commit took the
   * transaction; requests already past it may add their few entries.
   */
  metadataRoom(): Promise<void> | undefined {
    if (this.active.size < this.opsFull) return undefined;
    return (async () => {
      for (let i = 0; this.active.size >= this.opsFull; i++) {
        if (!(i < 1000)) throw new AssertionError(`open transaction did not shrink: ${this.active.size} changes, limit ${this.opsFull}`);
        await this.commit('transaction size');
      }
    })();
  }

  /**
   * The open transaction holds a quarter of what one commit may carry: a
   * caller that makes one transaction of many (a batch slave applying a
   * large file) commits before it adds more.
   */
  get transactionLarge(): boolean {
    return this.active.size >= this.opsPressure;
  }

  /** cacheRoom would not wait now. */
  private cacheHasRoom(): boolean {
    const limit = this.options.cacheSizeBytes;
    return this.cacheBytesTotal() < limit && this.active.size < this.opsFull && !(this.observer !== undefined && this.active.newStoredBytes >= limit);
  }

  /** Start a commit in the background when the cache is half full (or the transaction big). */
  private commitOnPressure(buggify = true): void {
    const limit = this.options.cacheSizeBytes;
    const bigTxn = this.observer !== undefined && this.active.newStoredBytes >= limit / 2;
    if (!this.commitRunning && (this.active.cacheBytes >= limit / 2 || this.active.size >= this.opsPressure || bigTxn || (buggify && this.buggify.fires('early-commit')))) {
      this.commit('cache pressure').catch((err: unknown) => {
        this.drivers.logger.log(0, `commit on cache pressure failed: ${(err as Error).message}`);
      });
    }
  }

  /** fsync: make this inode's changes (or everything) durable, per SYNC_RELAX. */
  async fsync(ino?: number): Promise<void> {
    this.checkOpen();
    if (this.options.readOnly) return;
    const relax = this.options.syncRelax;
    if (relax === 2) return;
    if (relax === 1 && ino !== undefined) {
      const pending = this.active.touched.has(ino) || this.active.dirty.has(ino) || this.frozen?.touched.has(ino);
      if (!pending) return;
    }
    await this.commit('fsync');
  }

  // ------------------------------------------------------------ inodes

  /** True once a failed data sync stopped the filesystem (every call fails with EIO; remount to recover). */
  get stopped(): boolean {
    return this.failure !== undefined;
  }

  /** The failed data sync that stopped the filesystem, if it stopped. */
  get stoppedBy(): unknown {
    return this.failure;
  }

  /** Throws EIO once the engine is closed or stopped. */
  checkOpen(): void {
    if (this.closed) throw new FsError('EIO', 'filesystem is closed');
    if (this.failure !== undefined) throw new FsError('EIO', `filesystem stopped after a failed data sync: ${(this.failure as Error).message}`);
  }

  private checkWritable(): void {
    this.checkOpen();
    if (this.options.replica) throw new FsError('EPERM', 'read-only filesystem: a replication slave changes only through its master');
    if (this.options.readOnly) throw new FsError('EPERM', 'filesystem opened read-only');
    // Metadata changes (create, unlink, rename, chmod...) start a commit too
    // when the open transaction is large: they add entries, not data, and
    // never wait in cacheRoom (an rm -rf of a million files in one commit
    // interval would pass what one commit may carry; through the mount they
    // wait in metadataRoom at half of it). No buggify draw here:
    // the simulator's seeded stream stays that of the data paths.
    this.commitOnPressure(false);
  }

  private findInode(ino: number): Inode | undefined {
    const cached = this.inodeCache.get(ino);
    if (cached) return cached;
    const bytes = this.active.get(T.inode, inoKey(ino));
    if (!bytes) return undefined;
    const inode = decodeInode(bytes);
    if (this.inodeCache.size >= INODE_CACHE_MAX) this.inodeCache.clear();
    this.inodeCache.set(ino, inode);
    return inode;
  }

  private inode(ino: number): Inode {
    const i = this.findInode(ino);
    if (!i) throw new FsError('ENOENT', `inode ${ino} does not exist`);
    return i;
  }

  private putInode(inode: Inode): void {
    this.active.put(T.inode, inoKey(inode.ino), encodeInode(inode));
    this.onMetadataChange?.(inode.ino);
    if (this.inodeCache.size >= INODE_CACHE_MAX) this.inodeCache.clear();
    this.inodeCache.set(inode.ino, inode);
    this.active.touched.add(inode.ino);
    this.active.changes++;
  }

  private now(): number {
    return this.drivers.clock.nowMs();
  }

  getattr(ino: number): Stat {
    this.checkOpen();
    return this.toStat(this.inode(ino));
  }

  private toStat(i: Inode): Stat {
    return {
      ino: i.ino, mode: i.mode, uid: i.uid, gid: i.gid, nlink: i.nlink, sizeBytes: i.sizeBytes,
      atimeMs: i.atimeMs, mtimeMs: i.mtimeMs, ctimeMs: i.ctimeMs, rdev: i.rdev,
      blocks512: Math.ceil(i.sizeBytes / 512), blockSizeBytes: this.options.blockSizeBytes,
    };
  }

  private dirInode(ino: number): Inode {
    const d = this.inode(ino);
    if (!isDir(d.mode)) throw new FsError('ENOTDIR', `inode ${ino} is not a directory`);
    return d;
  }

  lookup(parent: number, name: string): Stat {
    this.checkOpen();
    this.dirInode(parent);
    if (name === '.') return this.getattr(parent);
    if (name === '..') return this.getattr(this.inode(parent).parent);
    // Too long a name is ENAMETOOLONG, not ENOENT (the kernel passes FUSE names up
    // to 1024 bytes). A string of at most 85 UTF-16 units has at most 255 UTF-8 bytes.
    if (name.length > NAME_MAX_BYTES / 3 && utf8(name).length > NAME_MAX_BYTES) {
      throw new FsError('ENAMETOOLONG', `name of ${utf8(name).length} bytes (max ${NAME_MAX_BYTES})`);
    }
    const d = this.findDirent(parent, name);
    if (!d) throw new FsError('ENOENT', `no entry '${name}' in directory ${parent}`);
    return this.getattr(d.ino);
  }

  /**
   * lookup's inode number, or undefined where lookup throws ENOENT; other
   * errors throw as from lookup. The common case reads one directory entry.
   */
  lookupIno(parent: number, name: string): number | undefined {
    this.checkOpen();
    if (name !== '.' && name !== '..' && name.length <= NAME_MAX_BYTES / 3) {
      // Only directories hold entries: a hit proves parent is one.
      const d = this.direntIno(parent, name);
      if (d !== undefined) return d;
      const dir = this.findInode(parent);
      if (dir && isDir(dir.mode)) return undefined;
    }
    try {
      return this.lookup(parent, name).ino;
    } catch (err) {
      if (err instanceof FsError && err.code === 'ENOENT') return undefined;
      throw err;
    }
  }

  private findDirent(parent: number, name: string): { ino: number; type: number } | undefined {
    const v = this.direntValue(parent, name);
    return v === DIRENT_ABSENT ? undefined : { ino: Math.floor(v / 16), type: v % 16 };
  }

  private direntIno(parent: number, name: string): number | undefined {
    const v = this.direntValue(parent, name);
    return v === DIRENT_ABSENT ? undefined : Math.floor(v / 16);
  }

  /** The entry's ino * 16 + type, or DIRENT_ABSENT, through the dirent cache. */
  private direntValue(parent: number, name: string): number {
    const cached = this.direntCache.get(parent)?.get(name);
    if (cached !== undefined) return cached;
    const bytes = this.active.get(T.dirent, direntKey(parent, name));
    let v = DIRENT_ABSENT;
    if (bytes) {
      const d = decodeDirent(bytes);
      v = d.ino * 16 + d.type;
    }
    this.cacheDirent(parent, name, v);
    return v;
  }

  /** Record what the layers now say of (parent, name). */
  private cacheDirent(parent: number, name: string, v: number): void {
    if (this.direntCacheSize >= DIRENT_CACHE_MAX) {
      this.direntCache.clear();
      this.direntCacheSize = 0;
    }
    let names = this.direntCache.get(parent);
    if (!names) {
      names = new Map();
      this.direntCache.set(parent, names);
    }
    if (!names.has(name)) this.direntCacheSize++;
    names.set(name, v);
  }

  /** Forget every cached inode and directory entry (records were written around putInode and addDirent). */
  private dropMetadataCaches(): void {
    this.namesGeneration++;
    this.onMetadataChange?.();
    this.onContentChange?.();
    this.inodeCache.clear();
    this.direntCache.clear();
    this.direntCacheSize = 0;
  }

  readdir(ino: number): DirEntry[] {
    this.checkOpen();
    this.dirInode(ino);
    return this.active.scanPrefix(T.dirent, inoKey(ino)).map(({ key, value }) => {
      const d = decodeDirent(value);
      return { name: direntName(key), ino: d.ino, type: d.type << 12 };
    });
  }

  private checkName(name: string): void {
    if (name.length === 0 || name === '.' || name === '..') throw new FsError('EINVAL', `invalid name '${name}'`);
    if (name.includes('/') || name.includes('\0')) throw new FsError('EINVAL', `name '${name}' contains '/' or NUL`);
    if (name.length > NAME_MAX_BYTES / 3 && utf8(name).length > NAME_MAX_BYTES) throw new FsError('ENAMETOOLONG', `name of ${utf8(name).length} bytes (max ${NAME_MAX_BYTES})`);
  }

  private addDirent(parent: number, name: string, inode: Inode): void {
    const type = (inode.mode & S_IFMT) >> 12;
    this.active.put(T.dirent, direntKey(parent, name), encodeDirent({ ino: inode.ino, type }));
    this.onMetadataChange?.(inode.ino);
    this.cacheDirent(parent, name, inode.ino * 16 + type);
    this.active.changes++;
  }

  private removeDirent(parent: number, name: string): void {
    this.namesGeneration++;
    this.active.del(T.dirent, direntKey(parent, name));
    this.onMetadataChange?.();
    this.cacheDirent(parent, name, DIRENT_ABSENT);
  }

  private touchDir(dir: Inode, nlinkDelta = 0): void {
    const now = this.now();
    this.putInode({ ...dir, nlink: dir.nlink + nlinkDelta, mtimeMs: now, ctimeMs: now });
  }

  private newInode(parent: number, name: string, mode: number, uid: number, gid: number, rdev: number): Inode {
    this.checkWritable();
    this.checkMetaRoom(`create '${name}'`);
    const dir = this.dirInode(parent);
    this.checkName(name);
    if (this.findDirent(parent, name)) throw new FsError('EEXIST', `'${name}' exists in directory ${parent}`);
    const now = this.now();
    const ino = this.state.nextIno;
    this.state = { ...this.state, nextIno: ino + 1 };
    const directory = isDir(mode);
    // A set-group-ID directory hands its group to new entries and its
    // set-group-ID bit to new subdirectories (Linux semantics).
    if ((dir.mode & S_ISGID) !== 0) {
      gid = dir.gid;
      if (directory) mode |= S_ISGID;
    }
    const inode: Inode = {
      ino, mode, uid, gid, nlink: directory ? 2 : 1, sizeBytes: 0,
      atimeMs: now, mtimeMs: now, ctimeMs: now, rdev, parent: directory ? parent : 0,
    };
    this.putInode(inode);
    this.addDirent(parent, name, inode);
    this.touchDir(dir, directory ? 1 : 0);
    return inode;
  }

  /** Create a regular file, fifo, device or socket. */
  mknod(parent: number, name: string, mode: number, uid: number, gid: number, rdev = 0): Stat {
    if ((mode & S_IFMT) === 0) mode |= S_IFREG;
    if (isDir(mode) || isLnk(mode)) throw new FsError('EINVAL', 'mknod cannot make directories or symlinks');
    return this.toStat(this.newInode(parent, name, mode, uid, gid, rdev));
  }

  mkdir(parent: number, name: string, mode: number, uid: number, gid: number): Stat {
    return this.toStat(this.newInode(parent, name, S_IFDIR | (mode & 0o7777), uid, gid, 0));
  }

  symlink(parent: number, name: string, target: string, uid: number, gid: number): Stat {
    const bytes = utf8(target);
    if (bytes.length === 0 || bytes.length > 4095) throw new FsError('ENAMETOOLONG', `symlink target of ${bytes.length} bytes (1..4095)`);
    const inode = this.newInode(parent, name, S_IFLNK | 0o777, uid, gid, 0);
    inode.sizeBytes = bytes.length;
    this.putInode(inode);
    this.active.put(T.symlink, inoKey(inode.ino), bytes);
    return this.toStat(inode);
  }

  readlink(ino: number): string {
    this.checkOpen();
    const inode = this.inode(ino);
    if (!isLnk(inode.mode)) throw new FsError('EINVAL', `inode ${ino} is not a symlink`);
    const bytes = this.active.get(T.symlink, inoKey(ino));
    if (!bytes) throw new FsError('EIO', `symlink ${ino} has no target record`);
    return new TextDecoder().decode(bytes);
  }

  link(ino: number, newParent: number, newName: string): Stat {
    this.checkWritable();
    this.checkMetaRoom(`link '${newName}'`);
    const inode = this.inode(ino);
    if (isDir(inode.mode)) throw new FsError('EPERM', 'hard links to directories are not allowed');
    const dir = this.dirInode(newParent);
    this.checkName(newName);
    if (this.findDirent(newParent, newName)) throw new FsError('EEXIST', `'${newName}' exists in directory ${newParent}`);
    const updated = { ...inode, nlink: inode.nlink + 1, ctimeMs: this.now() };
    this.putInode(updated);
    this.addDirent(newParent, newName, updated);
    this.touchDir(dir);
    return this.toStat(updated);
  }

  unlink(parent: number, name: string): void {
    this.checkWritable();
    const dir = this.dirInode(parent);
    const d = this.findDirent(parent, name);
    if (!d) throw new FsError('ENOENT', `no entry '${name}' in directory ${parent}`);
    const inode = this.inode(d.ino);
    if (isDir(inode.mode)) throw new FsError('EISDIR', `'${name}' is a directory`);
    this.removeDirent(parent, name);
    this.touchDir(dir);
    this.dropLink(inode);
  }

  /** One name of inode is gone: decrement nlink, delete when unreferenced. */
  private dropLink(inode: Inode): void {
    const nlink = inode.nlink - 1;
    if (!(nlink >= 0)) throw new AssertionError(`nlink of ${inode.ino} below zero`);
    if (nlink === 0 && !this.openCounts.has(inode.ino)) {
      this.destroyInode(inode);
      return;
    }
    this.putInode({ ...inode, nlink, ctimeMs: this.now() });
    if (nlink === 0) this.active.put(T.orphan, inoKey(inode.ino), EMPTY);
  }

  rmdir(parent: number, name: string): void {
    this.checkWritable();
    const dir = this.dirInode(parent);
    const d = this.findDirent(parent, name);
    if (!d) throw new FsError('ENOENT', `no entry '${name}' in directory ${parent}`);
    const inode = this.inode(d.ino);
    if (!isDir(inode.mode)) throw new FsError('ENOTDIR', `'${name}' is not a directory`);
    if (this.active.scanPrefix(T.dirent, inoKey(inode.ino)).length > 0) {
      throw new FsError('ENOTEMPTY', `directory '${name}' is not empty`);
    }
    this.removeDirent(parent, name);
    this.touchDir(dir, -1);
    this.destroyInode(inode);
  }

  /** rename(2), including replacing an existing target and moving directories. */
  rename(oldParent: number, oldName: string, newParent: number, newName: string, flags: { noReplace?: boolean } = {}): void {
    this.checkWritable();
    this.dirInode(oldParent);
    this.dirInode(newParent);
    this.checkName(newName);
    const d = this.findDirent(oldParent, oldName);
    if (!d) throw new FsError('ENOENT', `no entry '${oldName}' in directory ${oldParent}`);
    const moving = this.inode(d.ino);
    const target = this.findDirent(newParent, newName);
    if (target && target.ino === moving.ino) return; // same file: POSIX says do nothing
    if (target && flags.noReplace) throw new FsError('EEXIST', `'${newName}' exists`);
    if (isDir(moving.mode)) {
      // A directory cannot move into its own subtree.
      for (let p = newParent, hops = 0; ; hops++) {
        assert(hops < 1_000_000, 'directory parent chain loops');
        if (p === moving.ino) throw new FsError('EINVAL', `cannot move directory '${oldName}' into itself`);
        if (p === ROOT_INO) break;
        p = this.inode(p).parent;
      }
    }
    let replaced: Inode | undefined;
    if (target) {
      replaced = this.inode(target.ino);
      if (isDir(replaced.mode)) {
        if (!isDir(moving.mode)) throw new FsError('EISDIR', `'${newName}' is a directory`);
        if (this.active.scanPrefix(T.dirent, inoKey(replaced.ino)).length > 0) {
          throw new FsError('ENOTEMPTY', `directory '${newName}' is not empty`);
        }
      } else if (isDir(moving.mode)) {
        throw new FsError('ENOTDIR', `'${newName}' is not a directory`);
      }
    }
    const now = this.now();
    this.removeDirent(oldParent, oldName);
    const movedDir = isDir(moving.mode);
    const updated = { ...moving, ctimeMs: now, parent: movedDir ? newParent : moving.parent };
    this.putInode(updated);
    this.addDirent(newParent, newName, updated);
    if (replaced) {
      if (isDir(replaced.mode)) {
        this.destroyInode(replaced);
      } else {
        this.dropLink(replaced);
      }
    }
    // Directory link counts: '..' of a moved directory changes parent.
    const srcDelta = movedDir && oldParent !== newParent ? -1 : 0;
    const replacedDirDelta = replaced && isDir(replaced.mode) ? -1 : 0;
    if (oldParent === newParent) {
      this.touchDir(this.inode(oldParent), replacedDirDelta);
    } else {
      this.touchDir(this.inode(oldParent), srcDelta);
      this.touchDir(this.inode(newParent), (movedDir ? 1 : 0) + replacedDirDelta);
    }
  }

  async setattr(ino: number, attrs: SetAttr): Promise<Stat> {
    this.checkWritable();
    if (attrs.sizeBytes !== undefined) await this.truncate(ino, attrs.sizeBytes);
    const inode = this.inode(ino);
    const now = this.now();
    const updated: Inode = { ...inode, ctimeMs: now };
    if (attrs.mode !== undefined) updated.mode = (inode.mode & S_IFMT) | (attrs.mode & 0o7777);
    if (attrs.uid !== undefined) updated.uid = attrs.uid;
    if (attrs.gid !== undefined) updated.gid = attrs.gid;
    if (attrs.atimeMs !== undefined) updated.atimeMs = attrs.atimeMs;
    if (attrs.mtimeMs !== undefined) updated.mtimeMs = attrs.mtimeMs;
    this.putInode(updated);
    return this.toStat(updated);
  }

  open(ino: number): void {
    this.checkOpen();
    this.inode(ino);
    this.openCounts.set(ino, (this.openCounts.get(ino) ?? 0) + 1);
  }

  release(ino: number): void {
    const n = this.openCounts.get(ino);
    if (n === undefined) return;
    if (n > 1) {
      this.openCounts.set(ino, n - 1);
      return;
    }
    this.openCounts.delete(ino);
    if (this.options.readOnly || this.closed) return;
    const inode = this.findInode(ino);
    if (inode && inode.nlink === 0) this.destroyInode(inode);
  }

  /** Inodes write-locked by a running truncation (/.lessfs/locks). */
  lockedInodes(): number[] {
    return [...this.truncating].sort((a, b) => a - b);
  }

  /**
   * Remove an inode and everything it owns, and its orphan record. A file of
   * more than releaseStepBlocks blocks stays an orphan (nlink 0, no name)
   * whose blocks are released in steps (releaseLarge): all at once, their
   * changes could pass what one commit may carry (STORE_COMMIT_OPS_MAX; a
   * 128 GiB file at BLKSIZE 128K, 4 GiB at 4K) and every commit would fail.
   */
  private destroyInode(inode: Inode): void {
    const key = inoKey(inode.ino);
    if (isReg(inode.mode)) {
      const entries = this.active.scanPrefix(T.blockmap, key);
      const step = this.options.releaseStepBlocks ?? RELEASE_STEP_BLOCKS;
      this.onMetadataChange?.(inode.ino);
      this.dropDirty(inode.ino, 0);
      if (entries.length > step) {
        this.putInode({ ...inode, nlink: 0, ctimeMs: this.now() });
        this.active.put(T.orphan, key, EMPTY);
        this.releasing.add(inode.ino);
        this.releaseLarge();
        return;
      }
      for (const { key: bk, value } of entries) {
        this.active.del(T.blockmap, bk);
        this.derefBlock(value);
      }
    }
    this.forgetInode(inode);
  }

  /** Start the task that releases the blocks of large deleted files, unless it runs. */
  private releaseLarge(): void {
    if (this.releaseRun || this.options.readOnly) return;
    this.releaseRun = this.releaseSteps().finally(() => {
      this.releaseRun = undefined;
    });
  }

  /**
   * Release the blocks of the files in `releasing`, releaseStepBlocks at a
   * time, each step its own event (other requests go on between steps), a
   * commit whenever the open transaction holds four steps' changes (at most opsPressure). An orphan
   * until its last step: a crash leaves it to the next mount, which releases
   * it the same way (stepPause between steps).
   */
  private async releaseSteps(): Promise<void> {
    const step = this.options.releaseStepBlocks ?? RELEASE_STEP_BLOCKS;
    const stopped = (): boolean => this.closed || this.failure !== undefined;
    while (this.releasing.size > 0 && !stopped()) {
      await this.stepPause(step, 'release of a large deleted file');
      if (stopped()) return;
      const ino = this.releasing.values().next().value as number;
      const inode = this.findInode(ino);
      if (!inode || inode.nlink !== 0) {
        this.releasing.delete(ino);
        continue;
      }
      const entries = this.active.scanPrefix(T.blockmap, inoKey(ino));
      const n = Math.min(step, entries.length);
      this.onMetadataChange?.(ino);
      for (let i = 0; i < n; i++) {
        this.active.del(T.blockmap, entries[i].key);
        this.derefBlock(entries[i].value);
      }
      this.active.touched.add(ino);
      this.active.changes++;
      if (entries.length <= step) {
        this.releasing.delete(ino);
        this.forgetInode(inode);
        this.drivers.logger.log(2, `released the last ${n} blocks of deleted inode ${ino}`);
        if (this.releasing.size === 0) await this.stepPause(0, 'release of a large deleted file');
      }
    }
  }

  /**
   * Between two steps of a large release (a delete's or a truncation's): a
   * commit when the open transaction holds four steps' changes (a step
   * changes up to three records per block: map entry, block, free extent; at
   * most opsPressure), else a turn of the event loop for other requests. A
   * failed commit keeps its changes for the next: wait a second and go on
   * (logged once a minute). step 0: commit whatever is open.
   */
  private async stepPause(step: number, reason: string): Promise<void> {
    if (this.active.size < Math.min(this.opsPressure, 4 * step)) {
      await new Promise<void>((resolve) => this.drivers.clock.setTimer(0, resolve));
      return;
    }
    try {
      await this.commit(reason);
    } catch (err) {
      if (this.closed || this.failure !== undefined) return;
      const line = this.repeats.pass('release commit', `${reason}: commit failed (${(err as Error).message}); trying again`);
      if (line) this.drivers.logger.log(0, line);
      await new Promise<void>((resolve) => this.drivers.clock.setTimer(1000, resolve));
    }
  }

  /** Wait until the blocks of every large deleted file are released (or the engine stops). */
  async releaseDone(): Promise<void> {
    while (this.releaseRun) await this.releaseRun;
  }

  /** The last of destroyInode: the inode record, its orphan record and caches. */
  private forgetInode(inode: Inode): void {
    const key = inoKey(inode.ino);
    this.active.del(T.orphan, key);
    if (isLnk(inode.mode)) this.active.del(T.symlink, key);
    this.active.del(T.inode, key);
    this.onMetadataChange?.(inode.ino);
    this.inodeCache.delete(inode.ino);
    const names = this.direntCache.get(inode.ino);
    if (names) {
      this.direntCacheSize -= names.size;
      this.direntCache.delete(inode.ino);
    }
    this.active.touched.add(inode.ino);
    this.active.changes++;
  }

  /** Forget partially written blocks [fromBlock, toBlock) of ino. */
  private dropDirty(ino: number, fromBlock: number, toBlock = Infinity): void {
    const blocks = this.active.dirty.get(ino);
    if (!blocks) return;
    for (const bno of [...blocks.keys()]) {
      if (bno >= fromBlock && bno < toBlock) {
        this.active.dataBytes -= (blocks.get(bno) as Uint8Array).length;
        blocks.delete(bno);
      }
    }
    if (blocks.size === 0) this.active.dirty.delete(ino);
  }

  // ------------------------------------------------------------ blocks

  private blockKeyFor(bytes: Uint8Array): Uint8Array {
    const hash = this.drivers.primitives.hash(this.options.hashName, bytes);
    if (this.options.deduplication) return hash;
    const key = new Uint8Array(hash.length + 8);
    key.set(hash);
    key.set(u64(this.state.nextUniq), hash.length);
    this.state = { ...this.state, nextUniq: this.state.nextUniq + 1 };
    return key;
  }

  /** Point block `bno` of `ino` at these bytes (a full block), deduplicating. */
  private storeBlock(ino: number, bno: number, bytes: Uint8Array): void {
    if (!(bytes.length <= this.options.blockSizeBytes)) throw new AssertionError(`block of ${bytes.length} bytes`);
    const mapKey = blockmapKey(ino, bno);
    const old = this.active.get(T.blockmap, mapKey);
    this.onMetadataChange?.(ino);
    // Trailing zeros are not stored (a file's short last block, sparse tails):
    // the key hashes the trimmed bytes, reads pad them back with zeros.
    const end = contentEnd(bytes);
    bytes = bytes.subarray(0, end);
    if (end === 0) {
      // All-zero blocks are holes: nothing stored, reads give zeros.
      if (old) {
        this.active.del(T.blockmap, mapKey);
        this.derefBlock(old);
      }
      this.active.changes++;
      this.buffers.give(bytes);
      return;
    }
    const key = this.blockKeyFor(bytes);
    if (old && equalBytes(old, key)) {
      this.buffers.give(bytes);
      return;
    }
    const recBytes = this.active.get(T.block, key);
    if (recBytes) {
      const rec = decodeBlock(recBytes);
      if (!(rec.refcount > 0)) throw new AssertionError(`block ${toHex(key)} with refcount 0`);
      this.active.put(T.block, key, encodeBlock({ ...rec, refcount: rec.refcount + 1 }));
      this.buffers.give(bytes); // deduplicated: these bytes are not kept
    } else {
      this.addBlock(key, bytes);
    }
    this.active.put(T.blockmap, mapKey, key);
    this.active.changes++;
    if (old) this.derefBlock(old);
  }

  private addBlock(key: Uint8Array, raw: Uint8Array): void {
    let codec = this.options.codec;
    let stored = raw;
    if (codec !== CODEC_NONE) {
      const c = this.drivers.primitives.compress(codec, raw);
      if (c.length < raw.length) {
        stored = c;
        this.buffers.give(raw); // only the compressed copy is kept
      } else {
        codec = CODEC_NONE;
      }
    }
    // No copy: write() takes ownership of full-block buffers it is given.
    const extent = this.allocator.allocate(stored.length, this.active, this.allocationLimit);
    const rec: BlockRecord = { refcount: 1, codec, storedBytes: stored.length, rawBytes: raw.length, offsetBytes: extent.offsetBytes };
    this.active.put(T.block, key, encodeBlock(rec));
    const layer = this.active;
    layer.newBlockCount++;
    layer.newStoredBytes += stored.length;
    if (this.observer?.wantsStoredCrc32) layer.storedCrc32.set(extent.offsetBytes, this.drivers.primitives.crc32(stored));
    this.issueWrite(layer, extent.offsetBytes, stored);
    this.state = {
      ...this.state,
      storedBytes: this.state.storedBytes + extent.lengthBytes,
      blockCount: this.state.blockCount + 1,
    };
  }

  /**
   * Write a new block's bytes to the data file. They stay in memory (for reads)
   * until the write completes; then reads go to the file and the cache space is
   * free again. A failed write keeps them for the commit to retry.
   */
  private issueWrite(layer: TxLayer, offsetBytes: number, stored: Uint8Array): void {
    layer.newBlocks.set(offsetBytes, stored);
    layer.dataBytes += stored.length;
    layer.writeStarted();
    this.writer.write(offsetBytes, this.directDataWrites ? this.padded(stored) : stored).then(
      () => {
        if (layer.newBlocks.get(offsetBytes) === stored) {
          layer.newBlocks.delete(offsetBytes);
          layer.dataBytes -= stored.length;
          // The data file has the bytes and nothing else refers to this buffer
          // (reads of new blocks get copies): it can carry the next write, once
          // a live master's sender no longer needs it.
          this.keepRecent(offsetBytes, stored);
        }
        this.unsyncedDataBytes += stored.length;
        this.dataFileEndBytes = Math.max(this.dataFileEndBytes, offsetBytes + stored.length);
        this.presyncMaybe();
        layer.writeDone();
      },
      (err: unknown) => {
        layer.writeError = err;
        if ((err as { code?: unknown }).code === 'ENOSPC') this.noteDataDiskFull(err);
        layer.writeDone();
      },
    );
  }

  /**
   * The data file is written past the page cache where the disk can
   * (OpenFileOptions.direct): blocks are written once and read rarely, and
   * copying each into the page cache cost more CPU than anything else but
   * hashing (docs/architecture.md). Such writes must be a multiple of
   * DIRECT_ALIGN_BYTES long: extents are (EXTENT_ALIGN_BYTES), so a block in
   * one of the pool's buffers is written with its extent's tail, zeroed. Not
   * with EngineOptions.pageCacheData (a batch master).
   */
  private static directDataWritesFor(options: EngineOptions): boolean {
    return !options.readOnly && options.pageCacheData !== true;
  }

  private get directDataWrites(): boolean {
    return FsEngine.directDataWritesFor(this.options);
  }

  private padded(stored: Uint8Array): Uint8Array {
    const length = alignExtent(stored.length);
    if (length === stored.length || length > this.options.blockSizeBytes || !this.buffers.owns(stored)) return stored;
    const whole = this.buffers.whole(stored);
    whole.fill(0, stored.length, length);
    return whole.subarray(0, length);
  }

  private derefBlock(key: Uint8Array): void {
    const recBytes = this.active.get(T.block, key);
    if (!(recBytes)) throw new AssertionError(`block map points at missing block ${toHex(key)}`);
    const rec = decodeBlock(recBytes);
    if (!(rec.refcount > 0)) throw new AssertionError(`refcount of ${toHex(key)} already 0`);
    if (rec.refcount > 1) {
      this.active.put(T.block, key, encodeBlock({ ...rec, refcount: rec.refcount - 1 }));
      return;
    }
    this.active.del(T.block, key);
    // Its extent may be reused: no cached copy may outlive the block.
    this.readCache.drop(binaryKey(key));
    this.dropRecent(rec.offsetBytes);
    const lengthBytes = alignExtent(Math.max(1, rec.storedBytes));
    this.allocator.freeInto({ offsetBytes: rec.offsetBytes, lengthBytes }, this.active, this.active.quarantine);
    this.state = { ...this.state, storedBytes: this.state.storedBytes - lengthBytes, blockCount: this.state.blockCount - 1 };
  }

  // ------------------------------------------------------------ replica

  /**
   * Slave: whether new blocks' data-file writes are backed up (the data file
   * is slower than the link); dataWritesRoom() resolves when they are not.
   * The receiver then holds back its progress acknowledgements, so the
   * master's send window, not the slave's memory, absorbs the difference.
   */
  get dataWritesBacklogged(): boolean {
    return this.writer.backlogged;
  }

  dataWritesRoom(): Promise<void> {
    return this.writer.room();
  }

  /**
   * fsync the data file now, outside any commit: what it writes early a later
   * commit's sync need not wait for (masters and slaves alike; a live slave so
   * keeps the commits its master waits for short).
   */
  private async presyncData(): Promise<void> {
    this.checkOpen();
    try {
      await this.dataFile.sync();
    } catch (err) {
      // As for a commit's sync: the kernel may have dropped the dirty pages,
      // and a later fsync would not say so. Stop before any commit points at them.
      this.failure ??= err;
      this.drivers.logger.log(0, `background fsync of the block data file failed (${(err as Error).message}): the filesystem stops; remount to recover from transaction ${this.state.txn}`);
      throw err;
    }
  }

  /** Past DATA_PRESYNC_BYTES written since the last one, start a background sync of the data file. */
  private presyncMaybe(): void {
    if (this.unsyncedDataBytes < DATA_PRESYNC_BYTES || this.presyncRunning || this.closed || this.failure !== undefined) return;
    this.unsyncedDataBytes = 0;
    this.presyncRunning = this.presyncData()
      .catch(() => undefined) // presyncData stopped the engine and said so
      .finally(() => {
        this.presyncRunning = undefined;
      });
  }

  /** The last transaction made durable (what a remount starts from). */
  get durableTxn(): number {
    return this.lastCommit?.txn ?? 0;
  }

  /** Changes in the write cache not yet committed (a live master commits soon after writes stop). */
  get pendingChanges(): number {
    return this.active.changes;
  }

  /** The replication meta as of the last durable commit. */
  durableReplicationMeta(): unknown {
    const bytes = this.store.get(T.meta, metaKey(META.replication));
    return bytes ? decodeJson<unknown>(bytes, 'replication') : undefined;
  }

  /** What this node keeps about replication (opaque JSON of src/core/replication), if anything. */
  replicationMeta(): unknown {
    const bytes = this.active.get(T.meta, metaKey(META.replication));
    return bytes ? decodeJson<unknown>(bytes, 'replication') : undefined;
  }

  /** Slave: record its replication position (committed with the next commit). */
  setReplicationMeta(replicationMeta: unknown): void {
    this.checkOpen();
    assert(this.options.replica === true, 'setReplicationMeta on a node that is not a replica');
    this.active.put(T.meta, metaKey(META.replication), encodeJson(replicationMeta));
    this.active.changes++;
  }

  /**
   * Slave: apply one transaction of the master, and record `replicationMeta`
   * with it. Synchronous on the write cache (readers see the state before or
   * after the transaction, never between); new blocks' bytes are written to the
   * data file in the background and are durable before the next commit. Block
   * refcounts are derived from the block-map changes, as the master derived
   * them. Everything is checked before anything changes: a transaction that
   * does not fit this node's state (a slave that diverged) throws
   * ECORRUPT and leaves the cache as it was.
   */
  /**
   * Live slave: write a block of the transaction still arriving to the data
   * file now, so only its records wait for the COMMIT (applyReplicated) and
   * receiving overlaps writing. Returns whether the engine took `stored` (then
   * it is the engine's: a buffer of `buffers` goes back to the pool once
   * written); false when the bytes are not needed (this node holds the block,
   * or it is staged already) or cannot be right (applyReplicated refuses them).
   *
   * The extent is allocated as for any new block. Until the transaction
   * applies it is free in every state a commit makes durable (freeze lists
   * it), so a crash, a lost connection or a refused transaction loses no
   * space; dropStagedBlocks() frees what the transaction did not use.
   */
  stageReplicatedBlock(key: Uint8Array, rawLength: number, stored: Uint8Array): boolean {
    this.checkOpen();
    assert(this.options.replica === true, 'stageReplicatedBlock on a node that is not a replica');
    if (rawLength > this.options.blockSizeBytes || rawLength < 1) return false;
    const k = binaryKey(key);
    if (this.staged.has(k) || this.active.get(T.block, key)) return false;
    const extent = this.allocator.allocate(stored.length, this.active, this.allocationLimit);
    this.staged.set(k, { key, extent, storedBytes: stored.length, listed: false });
    this.issueWrite(this.active, extent.offsetBytes, stored);
    return true;
  }

  /** Staged blocks (stageReplicatedBlock) no transaction applied: free their extents. */
  dropStagedBlocks(): void {
    if (this.staged.size === 0 || this.closed) return;
    for (const st of this.staged.values()) this.releaseStaged(st);
    this.staged.clear();
  }

  /**
   * Free a staged extent in the active layer's transaction. Reused only once
   * that transaction is durable (quarantine): by then the write of its bytes,
   * issued in this layer or an older one, has finished (each commit drains
   * its layer's writes, retrying failed ones), so no stale write can land on
   * the extent's next owner.
   */
  private releaseStaged(st: StagedBlock): void {
    this.dropRecent(st.extent.offsetBytes);
    this.allocator.freeInto(st.extent, this.active, this.active.quarantine);
  }

  /**
   * Live slave: the error of a failed data write of the transactions not yet
   * committed (ENOSPC: want of space; else an I/O error of the disk), else
   * undefined. They cannot commit until a retry of those writes succeeds,
   * and the master still holds them.
   */
  get replicaWriteError(): unknown {
    // Asked for every frame a slave receives: no allocation.
    return this.active.writeError ?? this.frozen?.writeError;
  }

  /**
   * Slave: drop every change since the last durable commit — the
   * master's transactions applied to the write cache, their blocks (written,
   * being written or failed), staged blocks — and truncate the data file to
   * the durable allocator end, as a restart does (an unclean start). A live
   * slave's master still holds those transactions (it forgets only what the
   * slave acknowledged as durable) and sends them again; a batch slave's
   * file is still in its watch directory. Waits for a commit in progress,
   * for every data write in flight (none may land on an extent after it is
   * handed out again) and for the reads issued before (none may find its
   * extent cut). The replication position (replicationMeta) is the durable one again.
   */
  async discardUncommitted(): Promise<void> {
    this.checkOpen();
    assert(this.options.replica === true && this.observer === undefined, 'discardUncommitted on a node that is not a slave');
    if (this.failure !== undefined) throw this.failure;
    return this.withCommitLock(async () => {
      for (const layer of [this.frozen, this.active]) await layer?.writesDrained();
      const dropped = [this.frozen, this.active].filter((l): l is TxLayer => l !== undefined);
      assert(dropped.every((l) => l.writesInFlight === 0 && l.dirty.size === 0), 'a slave layer with writes in flight or dirty buffers');
      for (const layer of dropped) for (const bytes of layer.newBlocks.values()) this.buffers.give(bytes);
      const stateBytes = this.store.get(T.meta, metaKey(META.state));
      if (!stateBytes) throw new FormatError('ECORRUPT', `${this.options.metaPath}: meta record 'state' is missing`);
      this.state = decodeJson<NodeState>(stateBytes, 'state');
      this.allocator = Allocator.load(this.state.dataEndBytes, this.store.range(T.freespace));
      this.staged.clear();
      this.frozen = undefined;
      this.active = new TxLayer(this.store);
      this.dropMetadataCaches();
      this.readAhead.clear();
      this.wakeFreezeWaiters();
      // Reads from here on resolve against the durable tree. A read that
      // resolved a block of a dropped transaction before (a reader of the
      // slave's mount) reads its extent first: cut under it, it would fail
      // with EIO, where its reader should see the tree it started in.
      await this.reader.settled();
      // What the dropped transactions wrote past the durable end is nobody's:
      // give its space back (the metadata store may share the disk).
      const endBytes = this.state.dataEndBytes;
      this.dataFileEndBytes = Math.min(this.dataFileEndBytes, endBytes);
      const sizeBytes = await this.dataFile.sizeBytes();
      if (sizeBytes > endBytes) {
        await this.dataFile.truncate(endBytes);
        this.drivers.logger.log(2, `dropped ${sizeBytes - endBytes} bytes of uncommitted block data past ${endBytes}`);
      }
    });
  }

  /**
   * Free bytes on the disks under BLOCKDATA_PATH and META_PATH now (after a
   * release of the space reserve under way), and which one is full, if the
   * engine still takes one to be (checked here: it leaves that state when
   * the disk has room for a full write cache).
   */
  async diskRoom(): Promise<{ fullPath: string | undefined; dataFreeBytes: number; metaFreeBytes: number }> {
    await this.spaceReserveRelease;
    await this.checkDataDisk();
    const { disk } = this.drivers;
    const [data, meta] = await Promise.all([disk.space(this.options.blockDataPath), disk.space(this.options.metaPath)]);
    return { fullPath: this.dataDiskFull?.path, dataFreeBytes: data.freeBytes, metaFreeBytes: meta.freeBytes };
  }

  applyReplicated(tx: ReplicatedTxn, replicationMeta: unknown): void {
    this.checkOpen();
    assert(this.options.replica === true, 'applyReplicated on a node that is not a replica');
    const diverged = (what: string): FormatError =>
      new FormatError('ECORRUPT', `master txn ${tx.txn} does not fit this slave: ${what}; the slave has diverged from its master (re-seed it from a copy of the master)`);
    // Blocks new on the master; a key this node already holds keeps its bytes.
    const added = new Map<string, ReplicatedBlock>();
    for (const b of tx.blocks) {
      if (b.rawLength > this.options.blockSizeBytes || b.rawLength < 1) throw diverged(`block ${toHex(b.key)} of ${b.rawLength} bytes (BLKSIZE ${this.options.blockSizeBytes})`);
      const k = binaryKey(b.key);
      if (added.has(k) || this.active.get(T.block, b.key)) continue;
      if (b.stored === undefined && !this.staged.has(k)) throw diverged(`block ${toHex(b.key)} arrived without its bytes`);
      added.set(k, b);
    }
    const deltas = new Map<string, { key: Uint8Array; delta: number }>();
    const bump = (key: Uint8Array, d: number): void => {
      const k = binaryKey(key);
      const e = deltas.get(k);
      if (e) e.delta += d;
      else deltas.set(k, { key, delta: d });
    };
    for (const kv of tx.kvs) {
      if (!REPLICA_TABLES.has(kv.table)) throw diverged(`a change to table '${kv.table}', which is not replicated`);
      if (kv.table !== T.blockmap) continue;
      this.onMetadataChange?.(blockmapIno(kv.key));
      const old = this.active.get(T.blockmap, kv.key);
      if (old && kv.value && equalBytes(old, kv.value)) continue;
      if (kv.value) bump(kv.value, +1);
      if (old) bump(old, -1);
    }
    const counts = new Map<string, { key: Uint8Array; rec: BlockRecord | undefined; count: number }>();
    for (const [k, { key, delta }] of deltas) {
      const recBytes = this.active.get(T.block, key);
      const rec = recBytes ? decodeBlock(recBytes) : undefined;
      const base = rec ? rec.refcount : added.has(k) ? 0 : undefined;
      if (base === undefined) throw diverged(`the block map references block ${toHex(key)}, which neither this slave nor the transaction holds`);
      if (base + delta < 0) throw diverged(`block ${toHex(key)} would drop to refcount ${base + delta}`);
      counts.set(k, { key, rec, count: base + delta });
    }
    // Checked: now change.
    const layer = this.active;
    this.dropMetadataCaches();
    for (const kv of tx.kvs) {
      if (kv.value) layer.put(kv.table, kv.key, kv.value);
      else layer.del(kv.table, kv.key);
      if (kv.table === T.inode) layer.touched.add(readU64(kv.key));
    }
    for (const [k, b] of added) {
      const count = counts.get(k)?.count ?? 0;
      if (count === 0) {
        this.drivers.logger.log(4, `master txn ${tx.txn}: block ${toHex(b.key)} arrived without a reference; not stored`);
        continue;
      }
      const st = this.staged.get(k);
      let extent: Extent;
      let storedBytes: number;
      if (st) {
        // Its bytes are written (or being written) already; it stops being free.
        this.staged.delete(k);
        extent = st.extent;
        storedBytes = st.storedBytes;
        if (st.listed) layer.del(T.freespace, freeKey(extent.lengthBytes, extent.offsetBytes));
      } else {
        const stored = b.stored as Uint8Array;
        storedBytes = stored.length;
        extent = this.allocator.allocate(storedBytes, layer, this.allocationLimit);
        this.issueWrite(layer, extent.offsetBytes, stored);
      }
      layer.put(T.block, b.key, encodeBlock({ refcount: count, codec: b.codec, storedBytes, rawBytes: b.rawLength, offsetBytes: extent.offsetBytes }));
      layer.newBlockCount++;
      this.state = { ...this.state, storedBytes: this.state.storedBytes + extent.lengthBytes, blockCount: this.state.blockCount + 1 };
    }
    // What the transaction staged and did not use (a block without a reference).
    this.dropStagedBlocks();
    for (const [k, { key, rec, count }] of counts) {
      if (!rec || added.has(k)) continue;
      if (count > 0) {
        if (count !== rec.refcount) layer.put(T.block, key, encodeBlock({ ...rec, refcount: count }));
        continue;
      }
      layer.del(T.block, key);
      this.readCache.drop(k);
      const lengthBytes = alignExtent(Math.max(1, rec.storedBytes));
      this.dropRecent(rec.offsetBytes);
      this.allocator.freeInto({ offsetBytes: rec.offsetBytes, lengthBytes }, layer, layer.quarantine);
      this.state = { ...this.state, storedBytes: this.state.storedBytes - lengthBytes, blockCount: this.state.blockCount - 1 };
    }
    this.state = { ...this.state, nextIno: Math.max(this.state.nextIno, tx.nextIno) };
    layer.put(T.meta, metaKey(META.replication), encodeJson(replicationMeta));
    layer.changes++;
  }

  /** The raw bytes of a stored block. */
  async readBlock(key: Uint8Array): Promise<Uint8Array> {
    const recBytes = this.active.get(T.block, key);
    if (!recBytes) throw new FsError('EIO', `block ${toHex(key)} is referenced but not stored`);
    const rec = decodeBlock(recBytes);
    let stored = this.storedInMemory(rec.offsetBytes);
    // A copy: the buffer goes back to the pool once written, and the read cache keeps what we return.
    if (stored) stored = stored.slice();
    if (!stored) {
      stored = await this.reader.read(rec.offsetBytes, rec.storedBytes);
      if (stored.length !== rec.storedBytes) {
        throw new FsError('EIO', `short read of block ${toHex(key)}: ${stored.length} of ${rec.storedBytes} bytes at ${rec.offsetBytes}`);
      }
    }
    let raw = stored;
    if (rec.codec !== CODEC_NONE) {
      try {
        raw = this.drivers.primitives.decompress(rec.codec, stored, rec.rawBytes);
      } catch (err) {
        throw new FsError('EIO', `block ${toHex(key)} does not decompress: ${(err as Error).message}`);
      }
    }
    if (raw.length === this.options.blockSizeBytes) return raw;
    const full = new Uint8Array(this.options.blockSizeBytes);
    full.set(raw);
    return full;
  }

  /** Block bno's content if it can be had without waiting (undefined: a hole), else NOT_READY. */
  private readyBlockContent(ino: number, bno: number): Uint8Array | undefined | typeof NOT_READY {
    const dirty = this.active.dirty.get(ino)?.get(bno);
    if (dirty) return dirty;
    const key = this.active.get(T.blockmap, blockmapKey(ino, bno));
    if (!key) return undefined;
    return this.readCache.get(binaryKey(key))?.ready ?? NOT_READY;
  }

  /**
   * `use` the current content of block bno of ino (undefined: a hole) and
   * resolve with its result. The bytes are valid only during `use` (a cached
   * block's buffer is recycled after), which must copy what it keeps.
   */
  private async withBlockContent<R>(ino: number, bno: number, use: (content: Uint8Array | undefined) => R): Promise<R> {
    const dirty = this.active.dirty.get(ino)?.get(bno);
    if (dirty) return use(dirty);
    const key = this.active.get(T.blockmap, blockmapKey(ino, bno));
    if (!key) return use(undefined);
    const e = this.cachedBlock(key);
    e.pins++;
    try {
      return use(await e.bytes);
    } finally {
      this.readCache.unpin(e);
    }
  }

  // ------------------------------------------------------------ data

  private async withLock<R>(ino: number, fn: () => Promise<R>): Promise<R> {
    const prev = this.locks.get(ino) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => { release = r; });
    const chained = prev.then(() => mine);
    this.locks.set(ino, chained);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.locks.get(ino) === chained) this.locks.delete(ino);
    }
  }

  async read(ino: number, offsetBytes: number, length: number): Promise<Uint8Array> {
    const inode = this.readableInode(ino);
    const n = Math.max(0, Math.min(inode.sizeBytes, offsetBytes + length) - offsetBytes);
    const out = new Uint8Array(n);
    await this.readInto(ino, offsetBytes, out);
    return out;
  }

  private readableInode(ino: number): Inode {
    this.checkOpen();
    const inode = this.inode(ino);
    if (!isReg(inode.mode)) throw new FsError(isDir(inode.mode) ? 'EISDIR' : 'EINVAL', `inode ${ino} is not a regular file`);
    return inode;
  }

  /**
   * Read into `target` (up to its length) from offsetBytes; resolves with the
   * number of bytes read (short only at end of file). Holes read as zeros.
   * readAhead false: the blocks after these are not fetched ahead (a reader
   * that reads them elsewhere: the mount's libfuse threads, see extentsOf).
   */
  async readInto(ino: number, offsetBytes: number, target: Uint8Array, readAhead = true): Promise<number> {
    const inode = this.readableInode(ino);
    if (offsetBytes >= inode.sizeBytes || target.length === 0) return 0;
    const end = Math.min(inode.sizeBytes, offsetBytes + target.length);
    const bs = this.options.blockSizeBytes;
    const parts: Array<Promise<void>> = [];
    const first = Math.floor(offsetBytes / bs);
    let bno = first;
    for (; bno * bs < end; bno++) {
      const blockStart = bno * bs;
      const from = Math.max(offsetBytes, blockStart);
      const to = Math.min(end, blockStart + bs);
      // A block already in the cache (a read-ahead hit) is copied at once.
      const ready = this.readyBlockContent(ino, bno);
      if (ready !== NOT_READY) copyPart(target, offsetBytes, ready, blockStart, from, to);
      else parts.push(this.withBlockContent(ino, bno, (content) => copyPart(target, offsetBytes, content, blockStart, from, to)));
    }
    // Sequential reader (the kernel's read-ahead may reorder it a little): keep
    // readAheadBlocks fetched ahead of it, topping up a span at a time.
    const ra = this.readAhead.get(ino);
    const ahead = readAhead ? this.readAheadBlocks : 0;
    if (ra && Math.abs(offsetBytes - ra.endBytes) <= Math.max(ahead, 1) * bs) {
      const from = Math.max(bno, ra.fetchedTo);
      const to = bno + ahead;
      if (ahead > 0 && to - from >= Math.min(READ_SPAN_BLOCKS, ahead)) {
        this.prefetch(ino, from, to, inode.sizeBytes);
        ra.fetchedTo = to;
      }
      ra.endBytes = end;
    } else {
      this.readAhead.set(ino, { endBytes: end, fetchedTo: bno });
      if (this.readAhead.size > 1024) this.readAhead.delete(this.readAhead.keys().next().value as number);
    }
    if (parts.length === 1) await parts[0];
    else if (parts.length > 1) await Promise.all(parts);
    return end - offsetBytes;
  }

  private prefetch(ino: number, fromBlock: number, toBlock: number, sizeBytes: number): void {
    const bs = this.options.blockSizeBytes;
    const dirty = this.active.dirty.get(ino);
    const keys: Uint8Array[] = [];
    for (let bno = fromBlock; bno < toBlock && bno * bs < sizeBytes; bno++) {
      if (dirty?.has(bno)) continue;
      const key = this.active.get(T.blockmap, blockmapKey(ino, bno));
      if (key && !this.readCache.has(binaryKey(key))) keys.push(key);
    }
    this.loadBlocks(keys);
  }

  /**
   * Where blocks fromBlock.. (up to count, not past the end of the file) of
   * regular file ino are in the data file now, for a reader outside the
   * engine (the mount's FUSE threads, which pread them): per block the byte
   * offset and stored length of an uncompressed block whose bytes are in the
   * data file, [0, 0] for a hole, [0, -1] for one only the engine can read
   * for now (dirty, or its write still in flight), [0, -2] for a compressed
   * one (only the engine ever reads it). Bytes past a stored
   * length read as zeros. Valid until onMetadataChange(ino) or
   * onContentChange() is next called: every change to the inode's block map
   * or dirty blocks calls it first, and an extent is rewritten only once the
   * change that freed it is committed, after that call.
   */
  extentsOf(ino: number, fromBlock: number, count: number): { sizeBytes: number; extents: Float64Array } {
    const inode = this.readableInode(ino);
    const bs = this.options.blockSizeBytes;
    const n = Math.max(0, Math.min(count, Math.ceil(inode.sizeBytes / bs) - fromBlock));
    const extents = new Float64Array(2 * n);
    const dirty = this.active.dirty.get(ino);
    for (let i = 0; i < n; i++) {
      const bno = fromBlock + i;
      extents[2 * i + 1] = -1;
      if (dirty?.has(bno)) continue;
      const key = this.active.get(T.blockmap, blockmapKey(ino, bno));
      if (!key) {
        extents[2 * i + 1] = 0;
        continue;
      }
      const recBytes = this.active.get(T.block, key);
      if (!recBytes) continue;
      const rec = decodeBlock(recBytes);
      if (rec.codec !== CODEC_NONE) extents[2 * i + 1] = -2;
      if (rec.codec !== CODEC_NONE || rec.storedBytes > bs || rec.storedBytes === 0 || this.storedInMemory(rec.offsetBytes) !== undefined) continue;
      extents[2 * i] = rec.offsetBytes;
      extents[2 * i + 1] = rec.storedBytes;
    }
    return { sizeBytes: inode.sizeBytes, extents };
  }

  /** The data file's path (the mount's FUSE threads read blocks from it, see extentsOf). */
  get dataFilePath(): string {
    return joinPath(this.options.blockDataPath, DATA_FILE);
  }

  /** The read-cache entry of a block, loading it if it is not cached. */
  private cachedBlock(key: Uint8Array): CachedBlock {
    const e = this.readCache.get(binaryKey(key));
    if (e) return e;
    this.loadBlocks([key]);
    return this.readCache.get(binaryKey(key)) as CachedBlock;
  }

  /**
   * Start loading blocks (not cached) into the read cache. Uncompressed blocks
   * on disk go into recycled buffers, and runs of them adjacent in the data
   * file (as a sequentially written file's blocks are) share one read. A
   * failed load leaves the cache; its readers see the error.
   */
  private loadBlocks(keys: readonly Uint8Array[]): void {
    const bs = this.options.blockSizeBytes;
    let run: Array<{ rec: BlockRecord; buf: Uint8Array; settle: (p: Promise<Uint8Array>) => void }> = [];
    const flush = (): void => {
      if (run.length === 0) return;
      const blocks = run;
      run = [];
      const read = this.reader.readv(blocks[0].rec.offsetBytes, blocks.map((b) => b.buf.subarray(0, b.rec.storedBytes)));
      // Each block's bytes settle with the shared read; a short read fails the blocks it cut.
      let end = 0;
      for (const b of blocks) {
        const blockEnd = (end += b.rec.storedBytes);
        b.settle(read.then((got) => {
          if (got < blockEnd) throw new FsError('EIO', `short read of a stored block: ${Math.max(0, got - blockEnd + b.rec.storedBytes)} of ${b.rec.storedBytes} bytes at ${b.rec.offsetBytes}`);
          b.buf.fill(0, b.rec.storedBytes);
          return b.buf;
        }));
      }
    };
    for (const key of keys) {
      const k = binaryKey(key);
      if (this.readCache.has(k)) continue;
      const recBytes = this.active.get(T.block, key);
      const rec = recBytes ? decodeBlock(recBytes) : undefined;
      const inMemory = rec !== undefined && this.storedInMemory(rec.offsetBytes) !== undefined;
      if (!rec || inMemory || rec.codec !== CODEC_NONE || rec.storedBytes > bs) {
        const p = this.readBlock(key);
        const entry = this.readCache.add(k, p, undefined, 0);
        p.catch(() => this.readCache.drop(k, entry));
        continue;
      }
      const last = run[run.length - 1];
      if (last && (last.rec.offsetBytes + last.rec.storedBytes !== rec.offsetBytes || run.length >= READ_SPAN_BLOCKS)) flush();
      // The entry exists (pinned by its load, which writes into buf) before its bytes do.
      const buf = this.readCache.buffer();
      let settle!: (p: Promise<Uint8Array>) => void;
      const bytes = new Promise<Uint8Array>((r) => { settle = r; });
      const entry = this.readCache.add(k, bytes, buf, 1);
      bytes.then(
        () => this.readCache.unpin(entry),
        () => {
          this.readCache.drop(k, entry);
          this.readCache.unpin(entry);
        },
      );
      run.push({ rec, buf, settle });
    }
    flush();
  }

  /**
   * Write data at offsetBytes. The engine takes ownership of `data` (full
   * blocks are stored without a copy): the caller must not modify it afterwards.
   */
  async write(ino: number, offsetBytes: number, data: Uint8Array): Promise<number> {
    this.checkWritable();
    if (data.length === 0) return 0;
    if (this.writeThrottle) await this.writeThrottle();
    await this.cacheRoom();
    await this.writer.room();
    await this.awaitFreedRoom(offsetBytes, data.length);
    return this.withLock(ino, async () => {
      const initial = this.inode(ino);
      if (!isReg(initial.mode)) throw new FsError(isDir(initial.mode) ? 'EISDIR' : 'EINVAL', `inode ${ino} is not a regular file`);
      const bs = this.options.blockSizeBytes;
      const end = offsetBytes + data.length;
      const first = Math.floor(offsetBytes / bs);
      const last = Math.floor((end - 1) / bs);
      // Load the partially covered edge blocks first; everything after is
      // synchronous, so a commit never sees half of this write's metadata. A
      // commit during a load flushes the dirty buffers, so check again.
      const edges = new Map<number, Uint8Array>();
      for (let round = 0; ; round++) {
        assert(round < 100, 'edge blocks of a write kept changing');
        const missing = [...new Set([first, last])].filter((bno) => {
          const s = bno * bs;
          const covered = offsetBytes <= s && end >= s + bs;
          return !covered && !edges.has(bno) && !this.active.dirty.get(ino)?.has(bno);
        });
        if (missing.length === 0) break;
        for (const bno of missing) {
          const s = bno * bs;
          // A dirty buffer is only as long as its content (a small file's
          // block does not cost BLKSIZE of cache); it grows as writes extend it.
          const fill = (content: Uint8Array | undefined): Uint8Array => {
            const buf = new Uint8Array(dirtyLength(Math.max(content?.length ?? 0, Math.min(end, s + bs) - s), bs));
            if (content) buf.set(content);
            return buf;
          };
          edges.set(bno, s < this.inode(ino).sizeBytes ? await this.withBlockContent(ino, bno, fill) : fill(undefined));
        }
      }
      const current = this.inode(ino); // may have changed while loading (setattr)
      this.admitNewData(this.newDataBlocks(ino, first, last) * bs);
      for (let bno = first; bno <= last; bno++) {
        const s = bno * bs;
        const from = Math.max(offsetBytes, s);
        const to = Math.min(end, s + bs);
        const chunk = data.subarray(from - offsetBytes, to - offsetBytes);
        if (from === s && to === s + bs) {
          this.dropDirty(ino, bno, bno + 1);
          this.storeBlock(ino, bno, chunk);
          continue;
        }
        this.onMetadataChange?.(ino);
        let blocks = this.active.dirty.get(ino);
        let buf = blocks?.get(bno);
        if (!buf) {
          buf = edges.get(bno);
          if (!(buf)) throw new AssertionError(`edge block ${bno} not loaded`);
          if (!blocks) {
            blocks = new Map();
            this.active.dirty.set(ino, blocks);
          }
          blocks.set(bno, buf);
          this.active.dataBytes += buf.length;
        }
        if (buf.length < to - s) {
          const grown = new Uint8Array(dirtyLength(to - s, bs));
          grown.set(buf);
          this.active.dataBytes += grown.length - buf.length;
          (blocks as Map<number, Uint8Array>).set(bno, grown);
          buf = grown;
        }
        buf.set(chunk, from - s);
      }
      const now = this.now();
      this.putInode({ ...current, sizeBytes: Math.max(current.sizeBytes, end), mtimeMs: now, ctimeMs: now });
      return data.length;
    });
  }

  /** Blocks first..last of ino a write may make new: all but those already dirty in the active layer. */
  private newDataBlocks(ino: number, first: number, last: number): number {
    if (!this.dataDiskFull) return 0;
    const dirty = this.active.dirty.get(ino);
    let n = 0;
    for (let bno = first; bno <= last; bno++) if (dirty?.has(bno) !== true) n++;
    return n;
  }

  /**
   * write() done synchronously when nothing would wait: the write covers no
   * whole block (nothing to hash), the cache and the data-file queue have
   * room, no write or truncation of ino is running, no throttle holds writes,
   * and every block it touches is already a dirty buffer or lies past the end
   * of the file (nothing to load). Returns false, having changed nothing,
   * otherwise. `data` is copied (the caller keeps it), as write() does for
   * partial blocks.
   */
  writeNow(ino: number, offsetBytes: number, data: Uint8Array): boolean {
    this.checkWritable();
    const len = data.length;
    if (len === 0) return true;
    if (this.locks.has(ino) || !this.cacheHasRoom() || this.writer.backlogged) return false;
    if (this.writesHeld?.() === true) return false;
    const current = this.inode(ino);
    if (!isReg(current.mode)) throw new FsError(isDir(current.mode) ? 'EISDIR' : 'EINVAL', `inode ${ino} is not a regular file`);
    const bs = this.options.blockSizeBytes;
    const end = offsetBytes + len;
    const first = Math.floor(offsetBytes / bs);
    const last = Math.floor((end - 1) / bs);
    const blocks = this.active.dirty.get(ino);
    for (let bno = first; bno <= last; bno++) {
      const s = bno * bs;
      if (offsetBytes <= s && end >= s + bs) return false; // a whole block: hashed by write()
      if (s < current.sizeBytes && blocks?.has(bno) !== true) return false; // content to load
    }
    // A full data disk: write() waits for deletes to commit, or refuses.
    if (!this.admitNewData(this.newDataBlocks(ino, first, last) * bs, false)) return false;
    this.onMetadataChange?.(ino);
    let dirty = blocks;
    if (!dirty) {
      dirty = new Map();
      this.active.dirty.set(ino, dirty);
    }
    for (let bno = first; bno <= last; bno++) {
      const s = bno * bs;
      const from = Math.max(offsetBytes, s);
      const to = Math.min(end, s + bs);
      let buf = dirty.get(bno);
      if (!buf || buf.length < to - s) {
        const grown = this.dirtySlabs.take(dirtyLength(Math.max(buf?.length ?? 0, to - s), bs));
        if (buf) grown.set(buf);
        this.active.dataBytes += grown.length - (buf?.length ?? 0);
        dirty.set(bno, grown);
        buf = grown;
      }
      buf.set(data.subarray(from - offsetBytes, to - offsetBytes), from - s);
    }
    const now = this.now();
    this.putInode({ ...current, sizeBytes: Math.max(current.sizeBytes, end), mtimeMs: now, ctimeMs: now });
    this.commitOnPressure();
    return true;
  }

  async truncate(ino: number, sizeBytes: number): Promise<void> {
    this.checkWritable();
    if (!(sizeBytes >= 0) || !Number.isSafeInteger(sizeBytes)) throw new FsError('EINVAL', `bad size ${sizeBytes}`);
    await this.withLock(ino, async () => {
      const inode = this.inode(ino);
      if (isDir(inode.mode)) throw new FsError('EISDIR', `inode ${ino} is a directory`);
      if (!isReg(inode.mode)) throw new FsError('EINVAL', `inode ${ino} is not a regular file`);
      this.truncating.add(ino);
      try {
        const bs = this.options.blockSizeBytes;
        let tail: Uint8Array | undefined;
        const tailBno = Math.floor(sizeBytes / bs);
        if (sizeBytes < inode.sizeBytes && sizeBytes % bs !== 0) {
          tail = await this.withBlockContent(ino, tailBno, (content) => {
            if (!content) return undefined;
            const t = new Uint8Array(bs);
            t.set(content.subarray(0, sizeBytes % bs));
            return t;
          });
        }
        const current = this.inode(ino);
        if (sizeBytes < current.sizeBytes) {
          const keepBlocks = Math.ceil(sizeBytes / bs);
          const after = keepBlocks > 0 ? blockmapKey(ino, keepBlocks - 1) : undefined;
          const cut = this.active.scanPrefix(T.blockmap, inoKey(ino), after);
          // A large cut goes from the end in steps, with commits between, as a
          // large delete does (releaseSteps); the size changes last, so a crash
          // in between leaves the old size with the released tail reading as
          // zeros (holes), never blocks of another file.
          const step = this.options.releaseStepBlocks ?? RELEASE_STEP_BLOCKS;
          for (let end = cut.length; end > 0; end -= step) {
            this.onMetadataChange?.(ino);
            for (let i = Math.max(0, end - step); i < end; i++) {
              const { key, value } = cut[i];
              assert(blockmapBlockNo(key) >= keepBlocks, 'truncate scan went below the cut');
              this.active.del(T.blockmap, key);
              this.derefBlock(value);
            }
            if (end > step) {
              this.active.touched.add(ino);
              this.active.changes++;
              await this.stepPause(step, 'truncation of a large file');
            }
          }
          this.dropDirty(ino, keepBlocks);
          const dirtyTail = this.active.dirty.get(ino)?.get(tailBno);
          if (dirtyTail) dirtyTail.fill(0, sizeBytes % bs);
          else if (tail) this.storeBlock(ino, tailBno, tail);
        }
        const now = this.now();
        this.putInode({ ...current, sizeBytes, mtimeMs: now, ctimeMs: now });
      } finally {
        this.truncating.delete(ino);
      }
    });
  }

  // ------------------------------------------------------------ statistics

  /** Bytes of free extents in the data file: room for new blocks without growing it. */
  get reusableDataBytes(): number {
    return this.allocator.freeBytes;
  }

  async statfs(): Promise<Statfs> {
    this.checkOpen();
    const space = await this.drivers.disk.space(this.options.blockDataPath);
    const bs = this.options.blockSizeBytes;
    const used = this.state.storedBytes;
    return {
      blockSizeBytes: bs,
      // Free extents of the data file count in both (df's used = total - free
      // would go negative after deletes: a tester saw "Used -356M").
      totalBlocks: Math.floor((used + space.freeBytes + this.allocator.freeBytes) / bs),
      freeBlocks: Math.floor((space.freeBytes + this.allocator.freeBytes) / bs),
      availBlocks: Math.floor((space.freeBytes + this.allocator.freeBytes) / bs),
      files: this.state.nextIno,
      freeFiles: 0xffffffff - this.state.nextIno,
      nameMaxBytes: NAME_MAX_BYTES,
      storedBytes: used,
      uniqueBlocks: this.state.blockCount,
    };
  }

  /** Stored size of a file's blocks (after dedup/compression) for lessfs_stats. */
  fileStoredBytes(ino: number): number {
    let n = 0;
    for (const { value } of this.active.scanPrefix(T.blockmap, inoKey(ino))) {
      const rec = this.active.get(T.block, value);
      if (rec) n += decodeBlock(rec).storedBytes;
    }
    return n;
  }

  get txn(): number {
    return this.state.txn;
  }

  get nodeState(): Readonly<NodeState> {
    return this.state;
  }

  /** Read-through view (cache over store), for fsck and digests. */
  get view(): Layer {
    return this.active;
  }

  /**
   * The write cache's data bytes, of the open and the committing transaction
   * together: as counted (what writers wait on against CACHESIZE) and as held
   * (the dirty buffers, and the new blocks whose data-file write has not
   * completed); and the bytes queued in the data-file write queue and not yet
   * issued, every one of them a new block held here (written with its
   * extent's tail: newBlockExtentBytes). For tests.
   */
  writeCacheAccounting(): { countedBytes: number; heldBytes: number; newBlockExtentBytes: number; queuedWriteBytes: number } {
    let heldBytes = 0;
    let newBlockExtentBytes = 0;
    for (const layer of this.frozen ? [this.active, this.frozen] : [this.active]) {
      for (const blocks of layer.dirty.values()) for (const b of blocks.values()) heldBytes += b.length;
      for (const b of layer.newBlocks.values()) {
        heldBytes += b.length;
        newBlockExtentBytes += alignExtent(b.length);
      }
    }
    const countedBytes = this.active.dataBytes + (this.frozen?.dataBytes ?? 0);
    return { countedBytes, heldBytes, newBlockExtentBytes, queuedWriteBytes: this.writer.queuedBytesNow };
  }

  /** Whether anything is uncommitted. */
  get dirty(): boolean {
    return this.active.changes > 0 || this.active.dirty.size > 0 || this.frozen !== undefined;
  }
}

/** mkdir -p whose entries survive power loss (each parent is synced). */
async function mkdirDurable(drivers: EngineDrivers, path: string): Promise<void> {
  const parts = path.split('/').filter((p) => p.length > 0);
  let parent = '/';
  for (const part of parts) {
    const dir = joinPath(parent, part);
    if (!(await drivers.disk.stat(dir))) await drivers.disk.mkdir(dir);
    // Synced even if it existed: whoever made it may not have.
    await drivers.disk.syncDir(parent);
    parent = dir;
  }
}

/** The directory of a file path a driver error names (undefined: none named). */
function dirOf(path: unknown): string | undefined {
  if (typeof path !== 'string') return undefined;
  const slash = path.lastIndexOf('/');
  return slash > 0 ? path.slice(0, slash) : undefined;
}

export function joinPath(dir: string, name: string): string {
  return dir.endsWith('/') ? dir + name : `${dir}/${name}`;
}

/** Length of bytes without its trailing zeros (a word at a time where aligned). */
export function contentEnd(b: Uint8Array): number {
  let end = b.length;
  while (end > 0 && (b.byteOffset + end) % 4 !== 0) {
    if (b[end - 1] !== 0) return end;
    end--;
  }
  const firstWord = Math.ceil(b.byteOffset / 4);
  const words = (b.byteOffset + end) / 4 - firstWord;
  if (words > 0) {
    const w = new Uint32Array(b.buffer, firstWord * 4, words);
    let i = words;
    while (i > 0 && w[i - 1] === 0) i--;
    end = firstWord * 4 + i * 4 - b.byteOffset;
    if (i > 0) {
      while (b[end - 1] === 0) end--;
      return end;
    }
  }
  while (end > 0 && b[end - 1] === 0) end--;
  return end;
}

/** Size of a dirty buffer holding `needed` bytes of a block: power of two, 4 KiB..BLKSIZE. */
function dirtyLength(needed: number, blockSizeBytes: number): number {
  let n = 4096;
  while (n < needed) n *= 2;
  return Math.min(n, blockSizeBytes);
}

function validateGeometry(options: EngineOptions, drivers: EngineDrivers): void {
  const bs = options.blockSizeBytes;
  if (!(bs >= 4096 && bs <= 131072 && (bs & (bs - 1)) === 0)) {
    throw new FormatError('EBLKSIZE', `BLKSIZE=${bs} is invalid: expected a power of two between 4096 and 131072`);
  }
  if (!drivers.primitives.hashNames.includes(options.hashName)) {
    throw new FormatError('EFORMAT', `HASHNAME=${options.hashName} is not supported: expected one of ${drivers.primitives.hashNames.join(', ')}`);
  }
  if (!drivers.primitives.codecs.some((c) => c.id === options.codec)) {
    throw new FormatError('EFORMAT', `compression codec ${options.codec} is not supported`);
  }
}
