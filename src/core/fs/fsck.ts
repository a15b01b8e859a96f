// lessfsck: check (and optionally repair) the invariants of an unmounted
// filesystem (DESIGN §3):
//  - every block refcount equals the number of block-map references to it;
//  - no stored block without references; no reference to a missing block;
//  - every dirent points to a live inode of the type it says; nlink matches;
//  - every inode is reachable (or listed as an orphan with nlink 0);
//  - file size covers the block map;
//  - block extents lie inside the data file's allocated region and never
//    overlap each other or a free extent, and together with the free extents
//    cover it (no leaked space); the saved counters match;
//  - every block record decodes (one that does not is rebuilt from its data
//    when that is found in the data file and hashes to the block's key);
//  - thorough: every stored block decompresses and hashes to its key.
// Repair never drops data it can verify: unreachable inodes go to /lost+found,
// sizes grow to cover their blocks, refcounts and counters are recomputed,
// undecodable block records are rebuilt from their verified data; only a block
// whose data cannot be found becomes a hole (reported as lost).
// A repair never goes through the replication log: on a master it is a
// transaction of its own, recorded as not logged (the next mount says the
// slave must be re-seeded); on a slave it makes the store differ from its
// master. Either way the report warns.
// Memory: a fixed number of bytes per inode and per block (fsck-tables.ts),
// plus the problems found and the repair's store operations.

import type { FileHandle, StoreOp } from '../drivers.ts';
import { equalBytes, readU64, toHex, utf8 } from '../bytes.ts';
import { FormatError } from '../errors.ts';
import { STORE_COMMIT_OPS_MAX } from '../store-rules.ts';
import { contentEnd, joinPath } from './engine.ts';
import { BlockStatus, BlockTable, CREATED, DIRTY, InodeTable, ORPHAN } from './fsck-tables.ts';
import {
  alignExtent,
  blockmapBlockNo,
  DATA_FILE,
  decodeBlock,
  decodeBlockFields,
  decodeDirent,
  decodeFreeKey,
  decodeInode,
  decodeJson,
  direntKey,
  direntName,
  EMPTY,
  EXTENT_ALIGN_BYTES,
  encodeBlock,
  encodeDirent,
  encodeInode,
  encodeJson,
  freeKey,
  inoKey,
  isDir,
  isLnk,
  isReg,
  META,
  metaKey,
  ROOT_INO,
  S_IFDIR,
  S_IFMT,
  T,
  TABLES,
  type BlockRecord,
  type FormatInfo,
  type Inode,
  type NodeState,
} from './schema.ts';
import type { EngineDrivers, EngineOptions } from './types.ts';
import type { MasterReplicationMeta } from '../replication/master-log.ts';
import type { SlaveReplicationMeta } from '../replication/slave.ts';

export interface FsckProblem {
  code: string;
  message: string;
  repaired: boolean;
}

export interface FsckReport {
  problems: FsckProblem[];
  inodes: number;
  dirents: number;
  blockRefs: number;
  uniqueBlocks: number;
  storedBytes: number;
  /** Thorough: blocks read back that decompress and hash to their keys. */
  blocksVerified: number;
  /** Thorough: blocks that could not be read back or do not match their keys. */
  blocksFailed: number;
  txn: number;
  wasClean: boolean;
  /** What a repair means for replication (a master's or slave's store repaired): say it. */
  warnings: string[];
}

export interface FsckOptions {
  thorough: boolean;
  repair: boolean;
  /** REPLICATION_ROLE when the config has REPLICATION=masterslave; the store's replication meta wins when it names a role. */
  replicationRole?: 'master' | 'slave';
}

export async function fsck(drivers: EngineDrivers, options: EngineOptions, fsckOptions: FsckOptions): Promise<FsckReport> {
  const store = await drivers.storeFactory.open({ path: options.metaPath, tables: TABLES, mapSizeBytes: options.lmdbMapSizeBytes });
  let dataFile: FileHandle | undefined;
  try {
    const fmtBytes = store.get(T.meta, metaKey(META.format));
    if (!fmtBytes) throw new FormatError('ENOTFORMATTED', `${options.metaPath} holds no lessfs filesystem: run mklessfs first`);
    const format = decodeJson<FormatInfo>(fmtBytes, 'format');
    if (format.blockSizeBytes !== options.blockSizeBytes) {
      throw new FormatError('EBLKSIZE', `${options.metaPath} was formatted with BLKSIZE=${format.blockSizeBytes} but the configuration says BLKSIZE=${options.blockSizeBytes}`);
    }
    const stateBytes = store.get(T.meta, metaKey(META.state));
    if (!stateBytes) throw new FormatError('ECORRUPT', `${options.metaPath}: meta record 'state' is missing`);
    const state = decodeJson<NodeState>(stateBytes, 'state');
    const cleanBytes = store.get(T.meta, metaKey(META.clean));
    const bs = format.blockSizeBytes;
    const problems: FsckProblem[] = [];
    const ops: StoreOp[] = [];
    const repair = fsckOptions.repair;
    const problem = (code: string, message: string, fix?: () => void): void => {
      if (repair && fix) fix();
      problems.push({ code, message, repaired: repair && fix !== undefined });
    };

    // Inodes: the fields the checks need, one row each (fsck-tables.ts). A
    // record is decoded whole again only when a repair rewrites it.
    let inodeCount = 0;
    for (const _ of store.range(T.inode)) inodeCount++;
    const inodes = new InodeTable(inodeCount + 1); // + a lost+found the repair may make
    for (const { key, value } of store.range(T.inode)) {
      const ino = readU64(key);
      let inode: Inode;
      try {
        inode = decodeInode(value);
      } catch (err) {
        problem('EINODE', `inode ${ino}: ${(err as Error).message}`);
        continue;
      }
      if (inode.ino !== ino) problem('EINODE', `inode record under key ${ino} says ino ${inode.ino}`);
      if (ino >= state.nextIno) {
        problem('ENEXTINO', `inode ${ino} is not below the next inode number ${state.nextIno}`, () => { state.nextIno = ino + 1; });
      }
      inodes.add(ino, inode);
    }
    const rootRow = inodes.find(ROOT_INO);
    if (rootRow < 0 || !isDir(inodes.mode[rootRow])) throw new FormatError('ECORRUPT', 'the root directory (inode 1) is missing or not a directory');
    for (const { key } of store.range(T.orphan)) {
      const row = inodes.find(readU64(key));
      if (row >= 0) inodes.flags[row] |= ORPHAN;
    }
    const typeOf = (row: number): number => (inodes.mode[row] & S_IFMT) >> 12;
    const changed = (row: number): void => { inodes.flags[row] |= DIRTY; };

    // Directory entries.
    let dirents = 0;
    for (const { key, value } of store.range(T.dirent)) {
      dirents++;
      const parent = readU64(key);
      const name = (): string => direntName(key);
      const d = decodeDirent(value);
      const parentRow = inodes.find(parent);
      const target = inodes.find(d.ino);
      if (parentRow < 0 || !isDir(inodes.mode[parentRow])) {
        problem('EDIRENT', `entry '${name()}' in ${parent}, which is not a live directory`, () => ops.push({ table: T.dirent, key, value: undefined }));
        continue;
      }
      if (target < 0) {
        problem('EDANGLING', `entry '${name()}' in directory ${parent} points at missing inode ${d.ino}`, () => ops.push({ table: T.dirent, key, value: undefined }));
        continue;
      }
      if (d.type !== typeOf(target)) {
        problem('ETYPE', `entry '${name()}' in ${parent} has type ${d.type}, inode ${d.ino} has ${typeOf(target)}`, () =>
          ops.push({ table: T.dirent, key, value: encodeDirent({ ino: d.ino, type: typeOf(target) }) }));
      }
      if (isDir(inodes.mode[target])) {
        if (inodes.dirParent[target] >= 0) {
          problem('EDIRLINK', `directory ${d.ino} has a second entry '${name()}' in ${parent}`, () => ops.push({ table: T.dirent, key, value: undefined }));
          continue;
        }
        inodes.dirParent[target] = parent;
        inodes.subdirs[parentRow]++;
      } else {
        inodes.links[target]++;
      }
    }

    // Reachability and link counts.
    let lostFound = -1;
    const reattach = (row: number): void => {
      if (lostFound < 0) {
        const existing = store.get(T.dirent, direntKey(ROOT_INO, 'lost+found'));
        const ino = existing ? decodeDirent(existing).ino : state.nextIno++;
        lostFound = inodes.find(ino);
        if (lostFound < 0) {
          const made: Inode = { ino, mode: S_IFDIR | 0o700, uid: 0, gid: 0, nlink: 2, sizeBytes: 0, atimeMs: 0, mtimeMs: 0, ctimeMs: 0, rdev: 0, parent: ROOT_INO };
          lostFound = inodes.add(ino, made, CREATED | DIRTY);
          ops.push({ table: T.dirent, key: direntKey(ROOT_INO, 'lost+found'), value: encodeDirent({ ino, type: S_IFDIR >> 12 }) });
          inodes.subdirs[rootRow]++;
          inodes.dirParent[lostFound] = ROOT_INO;
        }
      }
      const ino = inodes.ino[row];
      const lostFoundIno = inodes.ino[lostFound];
      ops.push({ table: T.dirent, key: direntKey(lostFoundIno, `#${ino}`), value: encodeDirent({ ino, type: typeOf(row) }) });
      if (isDir(inodes.mode[row])) {
        inodes.parent[row] = lostFoundIno;
        changed(row);
        inodes.dirParent[row] = lostFoundIno;
        inodes.subdirs[lostFound]++;
      } else {
        inodes.links[row] = 1;
      }
    };
    for (let row = 0, rows = inodes.size; row < rows; row++) {
      const ino = inodes.ino[row];
      if (ino === ROOT_INO) continue;
      const n = isDir(inodes.mode[row]) ? (inodes.dirParent[row] >= 0 ? 1 : 0) : inodes.links[row];
      if (n === 0) {
        if (inodes.flags[row] & ORPHAN && inodes.nlink[row] === 0) continue; // deleted at next mount
        problem('EUNREACHABLE', `inode ${ino} (nlink ${inodes.nlink[row]}) is not in any directory`, () => reattach(row));
      }
    }
    for (let row = 0; row < inodes.size; row++) {
      const ino = inodes.ino[row];
      const mode = inodes.mode[row];
      if (isDir(mode)) {
        const want = 2 + inodes.subdirs[row];
        const parent = ino === ROOT_INO ? ROOT_INO : inodes.dirParent[row] >= 0 ? inodes.dirParent[row] : undefined;
        if (parent !== undefined && inodes.parent[row] !== parent) {
          problem('EPARENT', `directory ${ino} records parent ${inodes.parent[row]} but is listed in ${parent}`, () => { inodes.parent[row] = parent; changed(row); });
        }
        if (inodes.nlink[row] !== want) problem('ENLINK', `directory ${ino} has nlink ${inodes.nlink[row]}, expected ${want}`, () => { inodes.nlink[row] = want; changed(row); });
      } else {
        const want = inodes.links[row];
        if (want === 0 && inodes.flags[row] & ORPHAN) continue;
        if (inodes.nlink[row] !== want) problem('ENLINK', `inode ${ino} has nlink ${inodes.nlink[row]}, expected ${want}`, () => { inodes.nlink[row] = want; changed(row); });
      }
      if (isLnk(mode) && !store.get(T.symlink, inoKey(ino))) {
        problem('ESYMLINK', `symlink ${ino} has no target`, () => ops.push({ table: T.symlink, key: inoKey(ino), value: utf8('?') }));
      }
    }
    for (const { key } of store.range(T.symlink)) {
      const ino = readU64(key);
      const row = inodes.find(ino);
      if (row < 0 || !isLnk(inodes.mode[row])) problem('ESYMLINK', `symlink target record for ${ino}, which is not a symlink`, () => ops.push({ table: T.symlink, key, value: undefined }));
    }

    // Block records: every key, in key order (fsck-tables.ts). One that does
    // not decode is kept aside: its data may still be in the data file, and
    // then the record is rebuilt rather than lost.
    let blockCount = 0;
    let blockKeyBytes = 0;
    let keyWidth: number | undefined;
    for (const { key } of store.range(T.block)) {
      if (blockCount++ === 0) keyWidth = key.length;
      else if (key.length !== keyWidth) keyWidth = undefined;
      blockKeyBytes += key.length;
    }
    const blocks = new BlockTable(blockCount, blockKeyBytes, keyWidth);
    const badRecords = new Map<number, { value: Uint8Array; why: string }>();
    for (const { key, value } of store.range(T.block)) {
      let rec: BlockRecord | undefined;
      try {
        rec = decodeBlock(value);
      } catch (err) {
        badRecords.set(blocks.size, { value, why: (err as Error).message });
      }
      blocks.add(key, rec);
    }

    // Block maps. An entry whose block has no decodable record (yet) is
    // resolved after the rebuild below, in a second pass over the maps.
    const checkSize = (row: number, bno: number): void => {
      if (bno * bs >= inodes.sizeBytes[row]) {
        problem('ESIZE', `inode ${inodes.ino[row]} has size ${inodes.sizeBytes[row]} but maps block ${bno}`, () => { inodes.sizeBytes[row] = (bno + 1) * bs; changed(row); });
      }
    };
    let blockRefs = 0;
    let unresolved = 0;
    let lastIno = -1;
    let lastRow = -1;
    /** The row of a block map entry's live regular file, or -1. */
    const fileRow = (ino: number): number => {
      if (ino !== lastIno) {
        lastIno = ino;
        lastRow = inodes.find(ino);
        if (lastRow >= 0 && !isReg(inodes.mode[lastRow])) lastRow = -1;
      }
      return lastRow;
    };
    for (const { key, value } of store.range(T.blockmap)) {
      blockRefs++;
      const ino = readU64(key);
      const bno = blockmapBlockNo(key);
      const row = fileRow(ino);
      if (row < 0) {
        problem('ESTRAYMAP', `block map entry ${bno} of ${ino}, which is not a live regular file`, () => ops.push({ table: T.blockmap, key, value: undefined }));
        continue;
      }
      const b = blocks.find(value);
      if (b >= 0) blocks.refs[b]++;
      if (!blocks.has(b)) {
        unresolved++;
        continue;
      }
      checkSize(row, bno);
    }

    const dataPath = joinPath(options.blockDataPath, DATA_FILE);
    const st = await drivers.disk.stat(dataPath);
    const openData = async (): Promise<FileHandle> => (dataFile ??= await drivers.disk.open(dataPath, { readOnly: true }));
    const codecName = (id: number): string => drivers.primitives.codecs.find((c) => c.id === id)?.name ?? `codec ${id}`;
    /**
     * Why the data file's bytes at rec's extent are not block `key` (they must
     * decompress to rawBytes bytes that hash to the key), or undefined if they are.
     */
    const mismatch = async (file: FileHandle, key: Uint8Array, rec: BlockRecord): Promise<string | undefined> => {
      const stored = await file.read(rec.offsetBytes, rec.storedBytes);
      if (stored.length < rec.storedBytes) return `lies past the end of ${dataPath}`;
      let raw: Uint8Array;
      try {
        raw = rec.codec === 0 ? stored : drivers.primitives.decompress(rec.codec, stored, rec.rawBytes);
      } catch (err) {
        return `does not decompress: ${(err as Error).message}`;
      }
      return raw.length === rec.rawBytes && matchesKey(raw, key) ? undefined : 'does not match its hash (data corrupted on disk)';
    };
    const matchesKey = (raw: Uint8Array, key: Uint8Array): boolean => {
      const hash = drivers.primitives.hash(format.hashName, raw);
      return hash.length <= key.length && equalBytes(hash, key.subarray(0, hash.length));
    };

    // Free extents, in key order (length, offset).
    let freeCount = 0;
    for (const _ of store.range(T.freespace)) freeCount++;
    const freeOffset = new Float64Array(freeCount);
    const freeLength = new Float64Array(freeCount);
    freeCount = 0;
    for (const { key } of store.range(T.freespace)) {
      const { lengthBytes, offsetBytes } = decodeFreeKey(key);
      freeOffset[freeCount] = offsetBytes;
      freeLength[freeCount++] = lengthBytes;
    }
    const freeList = (rows: Uint32Array): ExtentList => ({
      length: rows.length,
      start: (i) => freeOffset[rows[i]],
      end: (i) => freeOffset[rows[i]] + freeLength[rows[i]],
    });
    /** Free extents (those for which `keep` holds) by offset, then length. */
    const freeByOffset = (keep: (f: number) => boolean): Uint32Array => {
      const rows: number[] = [];
      for (let f = 0; f < freeCount; f++) if (keep(f)) rows.push(f);
      return Uint32Array.from(rows).sort((a, b) => freeOffset[a] - freeOffset[b] || freeLength[a] - freeLength[b]);
    };
    const blockList = (rows: Uint32Array): ExtentList => ({ length: rows.length, start: (i) => blocks.offsetBytes[rows[i]], end: (i) => blocks.extentEnd(rows[i]) });

    // Records that do not decode. Unreferenced ones go; a referenced one is
    // rebuilt if its data is found and verified against its key (refcount from
    // the block maps); only data that cannot be found becomes holes.
    const referencedBad: number[] = [];
    for (const [b, bad] of badRecords) {
      if (blocks.refs[b] > 0) {
        referencedBad.push(b);
        continue;
      }
      problem('EBLOCK', `block ${blocks.hex(b)}: ${bad.why}; no file refers to it (repair removes the record)`, () =>
        ops.push({ table: T.block, key: blocks.key(b), value: undefined }));
    }
    /** Rows rebuilt, in the order they were. */
    const rebuilt: number[] = [];
    if (referencedBad.length > 0 && st) {
      const file = await openData();
      // Space no decodable record or free extent claims: where lost blocks can be.
      const claimedBlocks = blockList(blocks.byOffset());
      const claimedFree = freeList(freeByOffset(() => true));
      const found: Extent[] = [];
      const foundList: ExtentList = { get length() { return found.length; }, start: (i) => found[i].start, end: (i) => found[i].end };
      const plausible = (r: BlockRecord): boolean =>
        r.storedBytes > 0 && r.storedBytes <= bs && r.rawBytes > 0 && r.rawBytes <= bs && drivers.primitives.codecs.some((c) => c.id === r.codec);
      const find = async (b: number, refcount: number): Promise<BlockRecord | undefined> => {
        const key = blocks.key(b);
        const fields = decodeBlockFields((badRecords.get(b) as { value: Uint8Array }).value);
        const inside = (r: BlockRecord, end: number): boolean => r.offsetBytes + alignExtent(r.storedBytes) <= end;
        if (fields && plausible(fields) && inside(fields, state.dataEndBytes) && !(await mismatch(file, key, fields))) {
          return { ...fields, refcount };
        }
        // Not where the record says: try the start of each unclaimed region,
        // with the record's lengths and codec if it has them, and as an
        // uncompressed block (its stored bytes end at its last non-zero byte).
        for (const gap of gapsBelow([claimedBlocks, claimedFree, foundList], state.dataEndBytes)) {
          if (fields && plausible(fields)) {
            const moved = { ...fields, offsetBytes: gap.start, refcount };
            if (inside(moved, gap.end) && !(await mismatch(file, key, moved))) return moved;
          }
          const window = await file.read(gap.start, Math.min(bs, gap.end - gap.start));
          const tried = new Set<number>();
          for (let upTo = EXTENT_ALIGN_BYTES; upTo < window.length + EXTENT_ALIGN_BYTES; upTo += EXTENT_ALIGN_BYTES) {
            const n = contentEnd(window.subarray(0, Math.min(upTo, window.length)));
            if (n === 0 || tried.has(n)) continue;
            tried.add(n);
            if (matchesKey(window.subarray(0, n), key)) return { refcount, codec: 0, storedBytes: n, rawBytes: n, offsetBytes: gap.start };
          }
        }
        return undefined;
      };
      // A record found claims its extent, which may be where the next one starts.
      let pending = referencedBad;
      for (let progress = true; progress && pending.length > 0; ) {
        progress = false;
        const left: number[] = [];
        for (const b of pending) {
          const refcount = blocks.refs[b];
          const rec = await find(b, refcount);
          if (!rec) {
            left.push(b);
            continue;
          }
          progress = true;
          blocks.setRecord(b, rec, BlockStatus.Rebuilt);
          rebuilt.push(b);
          const extent = { start: rec.offsetBytes, end: blocks.extentEnd(b) };
          found.splice(sortedIndex(found, extent.start), 0, extent);
          problem(
            'EBLOCK',
            `block ${blocks.hex(b)}: ${(badRecords.get(b) as { why: string }).why}; its data is intact at ${rec.offsetBytes}+${rec.storedBytes} (${codecName(rec.codec)}, ${rec.rawBytes} bytes, matches its key): ` +
              `repair rebuilds the record with refcount ${refcount}`,
            () => ops.push({ table: T.block, key: blocks.key(b), value: encodeBlock(rec) }),
          );
        }
        pending = left;
      }
    }
    for (const b of referencedBad) {
      if (blocks.has(b)) continue;
      blocks.status[b] = BlockStatus.Lost;
      problem(
        'EBLOCK',
        `block ${blocks.hex(b)}: ${(badRecords.get(b) as { why: string }).why}; its data was not found in ${dataPath} (nothing there matches its key): ` +
          `${blocks.refs[b]} file block(s) refer to it and lose their data (repair removes the record; they become holes)`,
        () => ops.push({ table: T.block, key: blocks.key(b), value: undefined }),
      );
    }
    badRecords.clear();
    // The block map entries left unresolved above, in the same order.
    if (unresolved > 0) {
      lastIno = -1;
      for (const { key, value } of store.range(T.blockmap)) {
        const row = fileRow(readU64(key));
        if (row < 0) continue;
        const b = blocks.find(value);
        if (b >= 0 && blocks.status[b] === BlockStatus.Good) continue;
        const bno = blockmapBlockNo(key);
        if (blocks.has(b)) {
          checkSize(row, bno);
          continue;
        }
        const what = b >= 0 ? `block ${blocks.hex(b)}, whose record does not decode and whose data was not found` : `missing block ${toHex(value)}`;
        problem('EMISSINGBLOCK', `block ${bno} of inode ${inodes.ino[row]} points at ${what} (data lost; repair makes it a hole)`, () =>
          ops.push({ table: T.blockmap, key, value: undefined }));
      }
    }

    // Blocks, extents, counters: the records in key order, then the rebuilt ones.
    let storedBytes = 0;
    let uniqueBlocks = 0;
    const checkBlock = (b: number): void => {
      const n = blocks.refs[b];
      const offset = blocks.offsetBytes[b];
      const len = blocks.extentEnd(b) - offset;
      if (n === 0) {
        problem('EUNREFERENCED', `block ${blocks.hex(b)} has refcount ${blocks.refcount[b]} but no references`, () => {
          ops.push({ table: T.block, key: blocks.key(b), value: undefined });
          if (offset + len <= state.dataEndBytes) ops.push({ table: T.freespace, key: freeKey(len, offset), value: EMPTY });
        });
        return;
      }
      if (blocks.refcount[b] !== n) {
        problem('EREFCOUNT', `block ${blocks.hex(b)} has refcount ${blocks.refcount[b]}, expected ${n}`, () =>
          ops.push({ table: T.block, key: blocks.key(b), value: encodeBlock({ ...blocks.record(b), refcount: n }) }));
      }
      if (offset + len > state.dataEndBytes) {
        problem('EEXTENT', `block ${blocks.hex(b)} lies at ${offset}+${len}, past the data end ${state.dataEndBytes}`);
      }
      storedBytes += len;
      uniqueBlocks++;
    };
    for (let b = 0; b < blocks.size; b++) if (blocks.status[b] === BlockStatus.Good) checkBlock(b);
    for (const b of rebuilt) checkBlock(b);
    for (let f = 0; f < freeCount; f++) {
      if (freeOffset[f] + freeLength[f] > state.dataEndBytes) {
        problem('EFREE', `free extent ${freeOffset[f]}+${freeLength[f]} lies past the data end ${state.dataEndBytes}`, () =>
          ops.push({ table: T.freespace, key: freeKey(freeLength[f], freeOffset[f]), value: undefined }));
      }
    }
    // Referenced blocks and free extents inside the data end must not overlap
    // (blocks first where two start together).
    const byOffset = blocks.byOffset();
    const freeInside = freeByOffset((f) => freeOffset[f] + freeLength[f] <= state.dataEndBytes);
    const describe = (list: number, i: number): string =>
      list === 0 ? `block ${blocks.hex(byOffset[i])}` : `free extent ${freeOffset[freeInside[i]]}+${freeLength[freeInside[i]]}`;
    let prev: { list: number; i: number; end: number } | undefined;
    mergeSorted([blockList(byOffset), freeList(freeInside)], (list, i, start, end) => {
      if (list === 0 && blocks.refs[byOffset[i]] === 0) return;
      if (prev && start < prev.end) problem('EOVERLAP', `${describe(prev.list, prev.i)} overlaps ${describe(list, i)}`);
      prev = { list, i, end };
    });
    // Every byte below the data end is a block's or free: anything else is
    // space no allocation can reach again (leaked).
    for (const g of gapsBelow([blockList(byOffset), freeList(freeInside)], state.dataEndBytes)) {
      problem('ELEAK', `data file bytes ${g.start}+${g.end - g.start} belong to no block and are not free (leaked space)`, () =>
        ops.push({ table: T.freespace, key: freeKey(g.end - g.start, g.start), value: EMPTY }));
    }
    if (state.blockCount !== uniqueBlocks || state.storedBytes !== storedBytes) {
      problem('ECOUNTERS', `saved counters say ${state.blockCount} blocks / ${state.storedBytes} bytes, found ${uniqueBlocks} / ${storedBytes}`, () => {
        state.blockCount = uniqueBlocks;
        state.storedBytes = storedBytes;
      });
    }

    // The data file holds every referenced block; thorough: read each back.
    let blocksVerified = 0;
    let blocksFailed = 0;
    const storedEnd = (b: number): number => blocks.offsetBytes[b] + blocks.storedBytes[b];
    if (!st) {
      problem('EDATAFILE', `${dataPath} is missing`);
      if (fsckOptions.thorough) for (const b of byOffset) if (blocks.refs[b] > 0) blocksFailed++;
    } else {
      let past = 0;
      let reach = 0;
      for (const b of byOffset) {
        if (blocks.refs[b] === 0 || storedEnd(b) <= st.sizeBytes) continue;
        if (past++ < PAST_END_LISTED) {
          problem('EDATAFILE', `${dataPath} has ${st.sizeBytes} bytes, but block ${blocks.hex(b)} is stored at ${blocks.offsetBytes[b]}+${blocks.storedBytes[b]} (to ${storedEnd(b)}): the file is truncated`);
        }
        reach = Math.max(reach, storedEnd(b));
      }
      if (past > PAST_END_LISTED) {
        problem('EDATAFILE', `${dataPath} has ${st.sizeBytes} bytes: ${past - PAST_END_LISTED} more blocks lie past its end (${past} in all, stored blocks reach ${reach})`);
      }
      if (fsckOptions.thorough) {
        blocksFailed = past;
        for (const b of byOffset) {
          if (blocks.refs[b] === 0 || storedEnd(b) > st.sizeBytes) continue;
          const why = await mismatch(await openData(), blocks.key(b), blocks.record(b));
          if (why === undefined) {
            blocksVerified++;
          } else {
            blocksFailed++;
            problem('EBADBLOCK', `block ${blocks.hex(b)} at ${blocks.offsetBytes[b]} ${why}`);
          }
        }
      }
    }

    const warnings: string[] = [];
    if (repair && problems.some((p) => p.repaired)) {
      const replBytes = store.get(T.meta, metaKey(META.replication));
      const repl = replBytes ? decodeJson<{ role?: unknown }>(replBytes, 'replication') : undefined;
      const role = repl?.role === 'master' || repl?.role === 'slave' ? repl.role : fsckOptions.replicationRole;
      if (role === 'master') {
        // A transaction of its own, which the log does not hold: the store's txn
        // passes the log's, and the meta tells the next mount why.
        state.txn++;
        const master = (repl ?? { role: 'master' }) as Partial<MasterReplicationMeta>;
        const meta: Partial<MasterReplicationMeta> = { ...master, role: 'master', repairTxns: [...(master.repairTxns ?? []), state.txn] };
        ops.push({ table: T.meta, key: metaKey(META.replication), value: encodeJson(meta) });
        warnings.push(
          `this filesystem is a replication master: the repair is txn ${state.txn}, committed without the replication log, so its slave cannot get it; ` +
            're-seed the slave from a copy of this master (the next mount says so too, and its slave refuses the transaction gap)',
        );
      } else if (role === 'slave') {
        // Recorded, so that its mounts and status say it until it is re-seeded;
        // its txn stays the master's (the repair is no master transaction).
        const slave = (repl ?? { role: 'slave' }) as Partial<SlaveReplicationMeta>;
        const at = slave.repairedAtTxn ?? slave.txn ?? 0;
        ops.push({ table: T.meta, key: metaKey(META.replication), value: encodeJson({ ...slave, role: 'slave', repairedAtTxn: at }) });
        warnings.push(
          `this filesystem is a replication slave: the repair changed it outside replication (at master txn ${at}), so it no longer matches its master; ` +
            're-seed it from a copy of the master (transactions applied from now on may be refused as diverged, or build on the difference); ' +
            `the repair is recorded: its mounts say so and its status shows repaired_at_txn ${at} until it is re-seeded`,
        );
      }
      // Only the inodes a repair changed: each read back whole from the store.
      for (let row = 0; row < inodes.size; row++) {
        if ((inodes.flags[row] & DIRTY) === 0) continue;
        const key = inoKey(inodes.ino[row]);
        const stored = inodes.flags[row] & CREATED ? undefined : store.get(T.inode, key);
        const base: Inode = stored ? decodeInode(stored) : { ino: inodes.ino[row], mode: 0, uid: 0, gid: 0, nlink: 0, sizeBytes: 0, atimeMs: 0, mtimeMs: 0, ctimeMs: 0, rdev: 0, parent: 0 };
        ops.push({ table: T.inode, key, value: encodeInode(inodes.inode(row, base)) });
      }
      ops.push({ table: T.meta, key: metaKey(META.state), value: encodeJson(state) });
      const all = dedupeOps(ops);
      // One commit may carry only so many operations (STORE_COMMIT_OPS_MAX): a
      // repair of more (every refcount of a large store wrong) goes in pieces.
      // The meta (state, the replication record of the repair) goes in the
      // first, so a repair cut short is still recorded as one; running
      // lessfsck -r again finishes it.
      const piece = Math.max(1, Math.floor((options.commitOpsMax ?? STORE_COMMIT_OPS_MAX) / 2));
      const isMeta = (op: StoreOp): boolean => op.table === T.meta;
      const ordered = [...all.filter(isMeta), ...all.filter((op) => !isMeta(op))];
      for (let at = 0; at < ordered.length; at += piece) await store.commit(ordered.slice(at, at + piece), { durable: true });
    }
    return {
      problems,
      inodes: inodes.size,
      dirents,
      blockRefs,
      uniqueBlocks,
      storedBytes,
      blocksVerified,
      blocksFailed,
      txn: state.txn,
      wasClean: cleanBytes !== undefined && cleanBytes[0] === 0x31,
      warnings,
    };
  } finally {
    await dataFile?.close();
    await store.close();
  }
}

interface Extent {
  start: number;
  end: number;
}

/** Extents sorted by start, read by position (a view of typed-array columns). */
interface ExtentList {
  readonly length: number;
  start(i: number): number;
  end(i: number): number;
}

/** Blocks past the end of a truncated data file reported one by one; the rest as a count. */
const PAST_END_LISTED = 10;

/** Visit the extents of sorted lists in order of start (the earlier list first where two start together). */
function mergeSorted(lists: readonly ExtentList[], visit: (list: number, i: number, start: number, end: number) => void): void {
  const at = lists.map(() => 0);
  for (;;) {
    let pick = -1;
    let pickStart = Infinity;
    for (let l = 0; l < lists.length; l++) {
      if (at[l] >= lists[l].length) continue;
      const s = lists[l].start(at[l]);
      if (pick < 0 || s < pickStart) {
        pick = l;
        pickStart = s;
      }
    }
    if (pick < 0) return;
    const i = at[pick]++;
    visit(pick, i, pickStart, lists[pick].end(i));
  }
}

/** The non-empty stretches of [0, end) that no extent of the lists covers. */
function gapsBelow(lists: readonly ExtentList[], end: number): Extent[] {
  let covered = 0;
  const gaps: Extent[] = [];
  mergeSorted(lists, (_list, _i, start, extentEnd) => {
    if (start > covered) gaps.push({ start: covered, end: Math.min(start, end) });
    covered = Math.max(covered, extentEnd);
  });
  if (covered < end) gaps.push({ start: covered, end });
  return gaps.filter((g) => g.end > g.start);
}

/** Where an extent starting at `start` goes in `sorted` (after those that start there too). */
function sortedIndex(sorted: readonly Extent[], start: number): number {
  let i = sorted.length;
  while (i > 0 && sorted[i - 1].start > start) i--;
  return i;
}

/** Last write to a key wins, as it would within one transaction. */
function dedupeOps(ops: StoreOp[]): StoreOp[] {
  const byKey = new Map<string, StoreOp>();
  for (const op of ops) byKey.set(`${op.table}/${toHex(op.key)}`, op);
  return [...byKey.values()];
}

export function formatFsckReport(r: FsckReport): string {
  const lines = [
    `transaction ${r.txn}, ${r.wasClean ? 'cleanly unmounted' : 'NOT cleanly unmounted'}`,
    `${r.inodes} inodes, ${r.dirents} directory entries, ${r.blockRefs} block references, ${r.uniqueBlocks} unique blocks (${r.storedBytes} bytes stored)`,
  ];
  if (r.blocksVerified + r.blocksFailed > 0) {
    lines.push(`${r.blocksVerified + r.blocksFailed} blocks read back: ${r.blocksVerified} verified against their hashes, ${r.blocksFailed} failed`);
  }
  for (const p of r.problems) lines.push(`${p.repaired ? 'REPAIRED' : 'PROBLEM'} ${p.code}: ${p.message}`);
  lines.push(r.problems.length === 0 ? 'clean: no problems found' : `${r.problems.length} problem(s) found`);
  for (const w of r.warnings) lines.push(`WARNING: ${w}`);
  return lines.join('\n');
}
