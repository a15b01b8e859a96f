// lessfsck's in-memory tables: a fixed number of bytes per inode and per
// unique block, in typed arrays, so a store of tens of millions of blocks can
// be checked (Maps of decoded records keyed by hex strings took ~1.4 KB per
// inode and ~2.2 KB per block). Both tables are filled from the store's ranges,
// which come in key order: a key's row is found by binary search.

import { toHex } from '../bytes.ts';
import { AssertionError } from '../errors.ts';
import { alignExtent, type BlockRecord, type Inode } from './schema.ts';

/** What lessfsck knows of a block key. */
export const BlockStatus = {
  /** The record decodes. */
  Good: 0,
  /** The record does not decode (yet). */
  Bad: 1,
  /** The record did not decode; its data was found and verified, the record rebuilt. */
  Rebuilt: 2,
  /** The record did not decode and its data was not found. */
  Lost: 3,
} as const;
export type BlockStatus = (typeof BlockStatus)[keyof typeof BlockStatus];

/** Bytewise, unsigned, a prefix first: the store's key order. */
function compareRange(a: Uint8Array, aStart: number, aEnd: number, b: Uint8Array): number {
  const n = Math.min(aEnd - aStart, b.length);
  for (let i = 0; i < n; i++) {
    const d = a[aStart + i] - b[i];
    if (d !== 0) return d;
  }
  return aEnd - aStart - b.length;
}

/**
 * Every key of the block table, in key order, with its record's fields and the
 * number of block-map references counted to it: the key itself, 26 bytes of
 * columns, and 8 bytes of key offset only when keys differ in length (a store
 * whose DEDUPLICATION setting changed).
 */
export class BlockTable {
  private count = 0;
  private keyEnd = 0;
  private readonly keys: Uint8Array;
  /** Row i's key is keys[keyStart[i], keyStart[i + 1]); undefined when every key has keyWidth bytes. */
  private readonly keyStart: Float64Array | undefined;
  readonly status: Uint8Array;
  readonly refcount: Uint32Array;
  readonly codec: Uint8Array;
  readonly storedBytes: Uint32Array;
  readonly rawBytes: Uint32Array;
  readonly offsetBytes: Float64Array;
  /** References counted from the block maps of live regular files. */
  readonly refs: Uint32Array;

  /**
   * Room for `capacity` keys of `keyBytesTotal` bytes in all; `keyWidth` is
   * their length when they all have the same (then no offsets are kept).
   */
  constructor(
    readonly capacity: number,
    keyBytesTotal: number,
    private readonly keyWidth: number | undefined,
  ) {
    if (keyWidth !== undefined && keyWidth * capacity !== keyBytesTotal) {
      throw new AssertionError(`block table: ${capacity} keys of ${keyWidth} bytes are not ${keyBytesTotal} bytes`);
    }
    this.keys = new Uint8Array(keyBytesTotal);
    this.keyStart = keyWidth === undefined ? new Float64Array(capacity + 1) : undefined;
    this.status = new Uint8Array(capacity);
    this.refcount = new Uint32Array(capacity);
    this.codec = new Uint8Array(capacity);
    this.storedBytes = new Uint32Array(capacity);
    this.rawBytes = new Uint32Array(capacity);
    this.offsetBytes = new Float64Array(capacity);
    this.refs = new Uint32Array(capacity);
  }

  get size(): number {
    return this.count;
  }

  /** Append the next key (keys must come in ascending order) with its record, or as Bad. */
  add(key: Uint8Array, rec: BlockRecord | undefined): number {
    const i = this.count;
    if (i >= this.capacity || this.keyEnd + key.length > this.keys.length || (this.keyWidth !== undefined && key.length !== this.keyWidth)) {
      throw new AssertionError(`block table: keys other than counted (${this.capacity} keys, ${this.keys.length} bytes): the store changed during the check`);
    }
    if (i > 0 && compareRange(this.keys, this.start(i - 1), this.keyEnd, key) >= 0) {
      throw new AssertionError(`block table: key ${toHex(key)} does not follow ${this.hex(i - 1)}`);
    }
    this.keys.set(key, this.keyEnd);
    this.keyEnd += key.length;
    if (this.keyStart) this.keyStart[i + 1] = this.keyEnd;
    this.count++;
    if (rec) this.setRecord(i, rec, BlockStatus.Good);
    else this.status[i] = BlockStatus.Bad;
    return i;
  }

  setRecord(i: number, rec: BlockRecord, status: BlockStatus): void {
    this.status[i] = status;
    this.refcount[i] = rec.refcount;
    this.codec[i] = rec.codec;
    this.storedBytes[i] = rec.storedBytes;
    this.rawBytes[i] = rec.rawBytes;
    this.offsetBytes[i] = rec.offsetBytes;
  }

  /** Row of `key`, or -1. */
  find(key: Uint8Array): number {
    let lo = 0;
    let hi = this.count - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const c = compareRange(this.keys, this.start(mid), this.start(mid + 1), key);
      if (c === 0) return mid;
      if (c < 0) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /** Where row i's key starts in `keys` (row `size` : where the next would). */
  private start(i: number): number {
    return this.keyStart ? this.keyStart[i] : i * (this.keyWidth as number);
  }

  /** A view of row i's key (valid as long as the table). */
  key(i: number): Uint8Array {
    return this.keys.subarray(this.start(i), this.start(i + 1));
  }

  hex(i: number): string {
    return toHex(this.key(i));
  }

  /** A decodable (Good or Rebuilt) record: the block's data is where it says. */
  has(i: number): boolean {
    return i >= 0 && (this.status[i] === BlockStatus.Good || this.status[i] === BlockStatus.Rebuilt);
  }

  record(i: number): BlockRecord {
    return { refcount: this.refcount[i], codec: this.codec[i], storedBytes: this.storedBytes[i], rawBytes: this.rawBytes[i], offsetBytes: this.offsetBytes[i] };
  }

  /** Where row i's extent ends in the data file (stored extents are aligned, at least one unit). */
  extentEnd(i: number): number {
    return this.offsetBytes[i] + alignExtent(Math.max(1, this.storedBytes[i]));
  }

  /** The rows with decodable records, by offset (then row): 4 bytes per row. */
  byOffset(): Uint32Array {
    let n = 0;
    for (let i = 0; i < this.count; i++) if (this.has(i)) n++;
    const order = new Uint32Array(n);
    n = 0;
    for (let i = 0; i < this.count; i++) if (this.has(i)) order[n++] = i;
    const offsets = this.offsetBytes;
    return order.sort((a, b) => offsets[a] - offsets[b] || a - b);
  }
}

/** Inode flags. */
export const ORPHAN = 1;
/** Changed by a repair: rewritten at the commit. */
export const DIRTY = 2;
/** Made by the repair (lost+found): no record in the store yet. */
export const CREATED = 4;

/**
 * Every live inode, by row: the fields the checks need (49 bytes a row) and the
 * counts gathered from the directory entries. Rows [0, sorted) are in ino
 * order (the store's); rows after that were added by the repair.
 */
export class InodeTable {
  private count = 0;
  private sorted = 0;
  readonly ino: Float64Array;
  readonly mode: Uint32Array;
  readonly nlink: Uint32Array;
  readonly sizeBytes: Float64Array;
  readonly parent: Float64Array;
  readonly flags: Uint8Array;
  /** Entries naming a non-directory inode. */
  readonly links: Uint32Array;
  /** Subdirectories listed in a directory. */
  readonly subdirs: Uint32Array;
  /** The directory a directory is listed in, -1 when none (yet). */
  readonly dirParent: Float64Array;

  constructor(readonly capacity: number) {
    this.ino = new Float64Array(capacity);
    this.mode = new Uint32Array(capacity);
    this.nlink = new Uint32Array(capacity);
    this.sizeBytes = new Float64Array(capacity);
    this.parent = new Float64Array(capacity);
    this.flags = new Uint8Array(capacity);
    this.links = new Uint32Array(capacity);
    this.subdirs = new Uint32Array(capacity);
    this.dirParent = new Float64Array(capacity).fill(-1);
  }

  get size(): number {
    return this.count;
  }

  /** Append inode `ino` (the key it was found under); rows added by the repair may come in any order. */
  add(ino: number, inode: Inode, flags = 0): number {
    const i = this.count;
    if (i >= this.capacity) throw new AssertionError(`inode table: more inodes than counted (${this.capacity}): the store changed during the check`);
    if (this.sorted === i && (i === 0 || this.ino[i - 1] < ino) && (flags & CREATED) === 0) this.sorted++;
    else if (this.find(ino) >= 0) throw new AssertionError(`inode table: inode ${ino} twice`);
    this.ino[i] = ino;
    this.mode[i] = inode.mode;
    this.nlink[i] = inode.nlink;
    this.sizeBytes[i] = inode.sizeBytes;
    this.parent[i] = inode.parent;
    this.flags[i] = flags;
    this.count++;
    return i;
  }

  /** Row of inode `ino`, or -1. */
  find(ino: number): number {
    let lo = 0;
    let hi = this.sorted - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const v = this.ino[mid];
      if (v === ino) return mid;
      if (v < ino) lo = mid + 1;
      else hi = mid - 1;
    }
    for (let i = this.sorted; i < this.count; i++) if (this.ino[i] === ino) return i;
    return -1;
  }

  /** Row i as a record, its checked fields over `stored` (the record in the store, decoded). */
  inode(i: number, stored: Inode): Inode {
    return { ...stored, mode: this.mode[i], nlink: this.nlink[i], sizeBytes: this.sizeBytes[i], parent: this.parent[i] };
  }
}
