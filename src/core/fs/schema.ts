// On-disk schema: table names and the binary encoding of every record.
// Integers are big-endian so keys sort numerically (LMDB compares bytewise).

import { fromUtf8, readF64, readU32, readU64, Slabs, u64, utf8, writeF64, writeU32, writeU64 } from '../bytes.ts';
import { FormatError } from '../errors.ts';

export const FORMAT_VERSION = 1;

export const T = {
  inode: 'inode', // ino(8) -> Inode
  dirent: 'dirent', // parent(8) + name -> ino(8) + type(1)
  blockmap: 'blockmap', // ino(8) + blockno(8) -> block key
  block: 'block', // block key -> BlockRecord
  symlink: 'symlink', // ino(8) -> target
  meta: 'meta', // name -> value
  freespace: 'freespace', // length(8) + offset(8) -> '' (free extents of the data file)
  orphan: 'orphan', // ino(8) -> '' (nlink 0 but still open at the last commit)
} as const;

export const TABLES: readonly string[] = Object.values(T);

export const ROOT_INO = 1;

// POSIX file type bits.
export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const S_IFIFO = 0o010000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
export const S_IFSOCK = 0o140000;

export const isDir = (mode: number): boolean => (mode & S_IFMT) === S_IFDIR;
export const isReg = (mode: number): boolean => (mode & S_IFMT) === S_IFREG;
export const isLnk = (mode: number): boolean => (mode & S_IFMT) === S_IFLNK;

export interface Inode {
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
  /** Parent directory (directories only; 0 otherwise). */
  parent: number;
}

const INODE_BYTES = 1 + 4 * 5 + 8 * 5 + 8;

/** Inode records live in the write cache until a commit: allocated in slabs. */
const inodeRecords = new Slabs(16 * 1024);

export function encodeInode(inode: Inode): Uint8Array {
  const out = inodeRecords.take(INODE_BYTES);
  out[0] = 1; // record version
  writeU32(out, 1, inode.mode);
  writeU32(out, 5, inode.uid);
  writeU32(out, 9, inode.gid);
  writeU32(out, 13, inode.nlink);
  writeU32(out, 17, inode.rdev);
  writeU64(out, 21, inode.sizeBytes);
  writeF64(out, 29, inode.atimeMs);
  writeF64(out, 37, inode.mtimeMs);
  writeF64(out, 45, inode.ctimeMs);
  writeU64(out, 53, inode.parent);
  writeU64(out, 61, inode.ino);
  return out;
}

export function decodeInode(bytes: Uint8Array): Inode {
  if (bytes.length !== INODE_BYTES || bytes[0] !== 1) {
    throw new FormatError('ECORRUPT', `inode record of ${bytes.length} bytes, version ${bytes[0]}: expected ${INODE_BYTES} bytes, version 1`);
  }
  return {
    ino: readU64(bytes, 61),
    mode: readU32(bytes, 1),
    uid: readU32(bytes, 5),
    gid: readU32(bytes, 9),
    nlink: readU32(bytes, 13),
    sizeBytes: readU64(bytes, 21),
    atimeMs: readF64(bytes, 29),
    mtimeMs: readF64(bytes, 37),
    ctimeMs: readF64(bytes, 45),
    rdev: readU32(bytes, 17),
    parent: readU64(bytes, 53),
  };
}

export const inoKey = (ino: number): Uint8Array => u64(ino);

export function direntKey(parent: number, name: string): Uint8Array {
  const n = utf8(name);
  const out = new Uint8Array(8 + n.length);
  writeU64(out, 0, parent);
  out.set(n, 8);
  return out;
}

export function direntName(key: Uint8Array): string {
  return fromUtf8(key.subarray(8));
}

export interface Dirent {
  ino: number;
  /** File type bits (mode & S_IFMT) >> 12. */
  type: number;
}

export function encodeDirent(d: Dirent): Uint8Array {
  const out = new Uint8Array(9);
  writeU64(out, 0, d.ino);
  out[8] = d.type;
  return out;
}

export function decodeDirent(bytes: Uint8Array): Dirent {
  if (bytes.length !== 9) throw new FormatError('ECORRUPT', `dirent record of ${bytes.length} bytes: expected 9`);
  return { ino: readU64(bytes, 0), type: bytes[8] };
}

export function blockmapKey(ino: number, blockNo: number): Uint8Array {
  const out = new Uint8Array(16);
  writeU64(out, 0, ino);
  writeU64(out, 8, blockNo);
  return out;
}

export function blockmapBlockNo(key: Uint8Array): number {
  return readU64(key, 8);
}

export function blockmapIno(key: Uint8Array): number {
  return readU64(key, 0);
}

/** Where and how one unique block is stored. */
export interface BlockRecord {
  refcount: number;
  codec: number;
  storedBytes: number;
  rawBytes: number;
  offsetBytes: number;
}

const BLOCK_BYTES = 1 + 4 + 1 + 4 + 4 + 8;

export function encodeBlock(b: BlockRecord): Uint8Array {
  const out = new Uint8Array(BLOCK_BYTES);
  out[0] = 1;
  writeU32(out, 1, b.refcount);
  out[5] = b.codec;
  writeU32(out, 6, b.storedBytes);
  writeU32(out, 10, b.rawBytes);
  writeU64(out, 14, b.offsetBytes);
  return out;
}

export function decodeBlock(bytes: Uint8Array): BlockRecord {
  const rec = decodeBlockFields(bytes);
  if (!rec || bytes[0] !== 1) {
    const found = bytes.length > 0 ? `version ${bytes[0]}` : 'no version byte';
    throw new FormatError('ECORRUPT', `block record of ${bytes.length} bytes, ${found}: expected ${BLOCK_BYTES} bytes, version 1`);
  }
  return rec;
}

/**
 * The fields of a block record of the right length, whatever its version byte
 * says (lessfsck checks them against the data before trusting them).
 */
export function decodeBlockFields(bytes: Uint8Array): BlockRecord | undefined {
  if (bytes.length !== BLOCK_BYTES) return undefined;
  return {
    refcount: readU32(bytes, 1),
    codec: bytes[5],
    storedBytes: readU32(bytes, 6),
    rawBytes: readU32(bytes, 10),
    offsetBytes: readU64(bytes, 14),
  };
}

export function freeKey(lengthBytes: number, offsetBytes: number): Uint8Array {
  const out = new Uint8Array(16);
  writeU64(out, 0, lengthBytes);
  writeU64(out, 8, offsetBytes);
  return out;
}

export function decodeFreeKey(key: Uint8Array): { lengthBytes: number; offsetBytes: number } {
  return { lengthBytes: readU64(key, 0), offsetBytes: readU64(key, 8) };
}

export const EMPTY = new Uint8Array(0);

// ---------------------------------------------------------------- meta

export const META = {
  format: 'format', // JSON FormatInfo, written once by mklessfs
  state: 'state', // JSON NodeState, rewritten by every commit
  clean: 'clean', // '1' after a clean unmount, '0' while mounted
  replication: 'replication', // JSON of src/core/replication: a master's log position, a slave's applied position
} as const;

export const metaKey = (name: string): Uint8Array => utf8(name);

export interface FormatInfo {
  formatVersion: number;
  blockSizeBytes: number;
  hashName: string;
  fsId: string;
  createdMs: number;
}

/** Counters and allocator state saved in the same transaction as the pointers. */
export interface NodeState {
  txn: number;
  nextIno: number;
  /** End of the data file's allocated region: bytes past it belong to nothing. */
  dataEndBytes: number;
  /** Bytes of the data file holding live blocks. */
  storedBytes: number;
  /** Live unique blocks. */
  blockCount: number;
  /** Next suffix for block keys when DEDUPLICATION=off. */
  nextUniq: number;
}

export function encodeJson(value: unknown): Uint8Array {
  return utf8(JSON.stringify(value));
}

export function decodeJson<T>(bytes: Uint8Array, what: string): T {
  try {
    return JSON.parse(fromUtf8(bytes)) as T;
  } catch (err) {
    throw new FormatError('ECORRUPT', `meta record ${what} is not valid JSON: ${(err as Error).message}`);
  }
}

/** Data file of unique blocks, under BLOCKDATA_PATH. */
export const DATA_FILE = 'blockdata.dta';

/** Stored extents are multiples of this (a sector), so freed space fits reuse. */
export const EXTENT_ALIGN_BYTES = 512;

export const alignExtent = (n: number): number => Math.ceil(n / EXTENT_ALIGN_BYTES) * EXTENT_ALIGN_BYTES;
