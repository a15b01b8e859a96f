import type { Buggify } from '../buggify.ts';
import type { Clock, Disk, Logger, Primitives, Store, StoreFactory, StoreOp } from '../drivers.ts';

/** The drivers the filesystem engine needs. */
export interface EngineDrivers {
  clock: Clock;
  storeFactory: StoreFactory;
  disk: Disk;
  primitives: Primitives;
  logger: Logger;
}

export interface EngineOptions {
  metaPath: string;
  blockDataPath: string;
  blockSizeBytes: number;
  hashName: string;
  /** Codec id (Primitives.codecs) used for new blocks. */
  codec: number;
  deduplication: boolean;
  cacheSizeBytes: number;
  commitIntervalMs: number;
  /** 0: fsync commits durably; 1: only when the inode has uncommitted changes; 2: fsync is a no-op. */
  syncRelax: 0 | 1 | 2;
  lmdbMapSizeBytes: number;
  /** Open the data file read-only and never commit (lessfsck without repair). */
  readOnly: boolean;
  /**
   * A replication slave: every mutation from users is refused with EPERM; the
   * engine changes only by applying the master's transactions.
   */
  replica?: boolean;
  /**
   * Write the data file through the page cache, not past it: a batch-mode
   * master copies every new block into its log at the commit, reading back
   * what it just wrote (BENCHMARKS.md, live section 2026-12-06 05:27).
   */
  pageCacheData?: boolean;
  /**
   * Bytes of a file set aside under META_PATH (SPACE_RESERVE_FILE) while the
   * disks have room, and deleted when a data write or a commit fails for want
   * of space: the metadata store, which may share the disk, then has room to
   * commit the deletes that free space. 0 (the simulator's default): none.
   */
  spaceReserveBytes?: number;
  /**
   * A deleted file with more blocks than this has them released in steps of
   * this many, each in the transaction open at the time, with commits between
   * (FsEngine's release of large files); a smaller one at once. Default
   * RELEASE_STEP_BLOCKS.
   */
  releaseStepBlocks?: number;
  /**
   * Store operations one commit may carry (STORE_COMMIT_OPS_MAX by default;
   * tests pass a store's smaller limit): a commit starts when the open
   * transaction holds a quarter of this many changes, and writers and
   * metadata changes made through the mount wait at half.
   */
  commitOpsMax?: number;
  /** Rare-path hooks; only the simulator passes them (default BUGGIFY_OFF: never fire). */
  buggify?: Buggify;
}

export interface Stat {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  sizeBytes: number;
  atimeMs: number;
  mtimeMs: number;
  ctimeMs: number;
  rdev: number;
  blocks512: number;
  blockSizeBytes: number;
}

export interface Statfs {
  blockSizeBytes: number;
  totalBlocks: number;
  freeBlocks: number;
  availBlocks: number;
  files: number;
  freeFiles: number;
  nameMaxBytes: number;
  /** Bytes of unique block data stored (after dedup and compression). */
  storedBytes: number;
  /** Unique blocks stored. */
  uniqueBlocks: number;
}

export interface DirEntry {
  name: string;
  ino: number;
  /** mode & S_IFMT */
  type: number;
}

export interface SetAttr {
  mode?: number;
  uid?: number;
  gid?: number;
  sizeBytes?: number;
  atimeMs?: number;
  mtimeMs?: number;
}

/** What a commit observer sees of a transaction about to be committed. */
export interface CommitContext {
  txn: number;
  /** The store operations of this transaction (the store below is still at txn - 1). */
  ops: readonly StoreOp[];
  /** The store as of the previous transaction. */
  before: Store;
  nextIno: number;
  timeMs: number;
  /** Stored bytes of a block record's extent (its bytes are durable in the data file). */
  readStored(offsetBytes: number, storedBytes: number): Promise<Uint8Array>;
  /** CRC-32 of the stored bytes of a block new in this transaction, by extent offset, when the observer asked for them. */
  storedCrc32(offsetBytes: number): number | undefined;
}

/**
 * Sees every transaction of the engine (the replication log). Called inside the
 * commit: no other commit runs meanwhile.
 */
export interface CommitObserver {
  /**
   * Before the store commit of ctx.txn: make its record durable. Returns store
   * operations to commit with it (the observer's own meta). A throw fails the
   * commit, which is retried with the same txn.
   */
  beforeCommit(ctx: CommitContext): Promise<StoreOp[]>;
  /** After the store commit of txn is durable. */
  afterCommit(txn: number): Promise<void>;
  /** A commit is about to start (before the write cache is frozen): may delay it. */
  commitStarting?(): Promise<void>;
  /** A commit ended, committed or failed. */
  commitEnded?(): void;
  /** Compute the CRC-32 of every new block's stored bytes when it is stored (CommitContext.storedCrc32). */
  readonly wantsStoredCrc32?: boolean;
}

export interface CommitInfo {
  txn: number;
  reason: string;
  ops: number;
  newBlocks: number;
  timing?: { writesMs: number; dataSyncMs: number; syncOnlyMs: number; logOnlyMs: number; storeMs: number };
}
