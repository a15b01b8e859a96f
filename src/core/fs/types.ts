import type { Clock, Disk, Logger, Primitives, StoreFactory } from '../drivers.ts';

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
  /** Refuse every mutation with EPERM (a replication slave). */
  readOnly: boolean;
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

export interface CommitInfo {
  txn: number;
  reason: string;
  ops: number;
  newBlocks: number;
  timing?: { writesMs: number; dataSyncMs: number; storeMs: number };
}
