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
//  - thorough: every stored block decompresses and hashes to its key.
// Repair never drops referenced data: unreachable inodes go to /lost+found,
// sizes grow to cover their blocks, refcounts and counters are recomputed.

import type { StoreOp } from '../drivers.ts';
import { readU64, toHex, utf8 } from '../bytes.ts';
import { FormatError } from '../errors.ts';
import { joinPath } from './engine.ts';
import {
  alignExtent,
  blockmapBlockNo,
  DATA_FILE,
  decodeBlock,
  decodeDirent,
  decodeFreeKey,
  decodeInode,
  decodeJson,
  direntKey,
  direntName,
  EMPTY,
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
}

export interface FsckOptions {
  thorough: boolean;
  repair: boolean;
}

export async function fsck(drivers: EngineDrivers, options: EngineOptions, fsckOptions: FsckOptions): Promise<FsckReport> {
  const store = await drivers.storeFactory.open({ path: options.metaPath, tables: TABLES, mapSizeBytes: options.lmdbMapSizeBytes });
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

    // Inodes.
    const inodes = new Map<number, Inode>();
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
      inodes.set(ino, inode);
    }
    const root = inodes.get(ROOT_INO);
    if (!root || !isDir(root.mode)) throw new FormatError('ECORRUPT', 'the root directory (inode 1) is missing or not a directory');
    const orphans = new Set<number>();
    for (const { key } of store.range(T.orphan)) orphans.add(readU64(key));

    // Directory entries.
    const links = new Map<number, number>();
    const subdirs = new Map<number, number>();
    const dirParent = new Map<number, number>();
    let dirents = 0;
    for (const { key, value } of store.range(T.dirent)) {
      dirents++;
      const parent = readU64(key);
      const name = direntName(key);
      const d = decodeDirent(value);
      const parentInode = inodes.get(parent);
      const target = inodes.get(d.ino);
      if (!parentInode || !isDir(parentInode.mode)) {
        problem('EDIRENT', `entry '${name}' in ${parent}, which is not a live directory`, () => ops.push({ table: T.dirent, key, value: undefined }));
        continue;
      }
      if (!target) {
        problem('EDANGLING', `entry '${name}' in directory ${parent} points at missing inode ${d.ino}`, () => ops.push({ table: T.dirent, key, value: undefined }));
        continue;
      }
      if (d.type !== (target.mode & S_IFMT) >> 12) {
        problem('ETYPE', `entry '${name}' in ${parent} has type ${d.type}, inode ${d.ino} has ${(target.mode & S_IFMT) >> 12}`, () =>
          ops.push({ table: T.dirent, key, value: encodeDirent({ ino: d.ino, type: (target.mode & S_IFMT) >> 12 }) }));
      }
      if (isDir(target.mode)) {
        if (dirParent.has(d.ino)) {
          problem('EDIRLINK', `directory ${d.ino} has a second entry '${name}' in ${parent}`, () => ops.push({ table: T.dirent, key, value: undefined }));
          continue;
        }
        dirParent.set(d.ino, parent);
        subdirs.set(parent, (subdirs.get(parent) ?? 0) + 1);
      } else {
        links.set(d.ino, (links.get(d.ino) ?? 0) + 1);
      }
    }

    // Reachability and link counts.
    let lostFound: Inode | undefined;
    const reattach = (inode: Inode): void => {
      if (!lostFound) {
        const existing = store.get(T.dirent, direntKey(ROOT_INO, 'lost+found'));
        const ino = existing ? decodeDirent(existing).ino : state.nextIno++;
        lostFound = inodes.get(ino);
        if (!lostFound) {
          lostFound = { ino, mode: S_IFDIR | 0o700, uid: 0, gid: 0, nlink: 2, sizeBytes: 0, atimeMs: 0, mtimeMs: 0, ctimeMs: 0, rdev: 0, parent: ROOT_INO };
          inodes.set(ino, lostFound);
          ops.push({ table: T.dirent, key: direntKey(ROOT_INO, 'lost+found'), value: encodeDirent({ ino, type: S_IFDIR >> 12 }) });
          subdirs.set(ROOT_INO, (subdirs.get(ROOT_INO) ?? 0) + 1);
          dirParent.set(ino, ROOT_INO);
        }
      }
      const name = `#${inode.ino}`;
      ops.push({ table: T.dirent, key: direntKey(lostFound.ino, name), value: encodeDirent({ ino: inode.ino, type: (inode.mode & S_IFMT) >> 12 }) });
      if (isDir(inode.mode)) {
        inode.parent = lostFound.ino;
        dirParent.set(inode.ino, lostFound.ino);
        subdirs.set(lostFound.ino, (subdirs.get(lostFound.ino) ?? 0) + 1);
      } else {
        links.set(inode.ino, 1);
      }
    };
    for (const inode of [...inodes.values()]) {
      if (inode.ino === ROOT_INO) continue;
      const n = isDir(inode.mode) ? (dirParent.has(inode.ino) ? 1 : 0) : (links.get(inode.ino) ?? 0);
      if (n === 0) {
        if (orphans.has(inode.ino) && inode.nlink === 0) continue; // deleted at next mount
        problem('EUNREACHABLE', `inode ${inode.ino} (nlink ${inode.nlink}) is not in any directory`, () => reattach(inode));
      }
    }
    for (const inode of inodes.values()) {
      if (isDir(inode.mode)) {
        const want = 2 + (subdirs.get(inode.ino) ?? 0);
        const parent = inode.ino === ROOT_INO ? ROOT_INO : dirParent.get(inode.ino);
        if (parent !== undefined && inode.parent !== parent) {
          problem('EPARENT', `directory ${inode.ino} records parent ${inode.parent} but is listed in ${parent}`, () => { inode.parent = parent; });
        }
        if (inode.nlink !== want) problem('ENLINK', `directory ${inode.ino} has nlink ${inode.nlink}, expected ${want}`, () => { inode.nlink = want; });
      } else {
        const want = links.get(inode.ino) ?? 0;
        if (want === 0 && orphans.has(inode.ino)) continue;
        if (inode.nlink !== want) problem('ENLINK', `inode ${inode.ino} has nlink ${inode.nlink}, expected ${want}`, () => { inode.nlink = want; });
      }
      if (isLnk(inode.mode) && !store.get(T.symlink, inoKey(inode.ino))) {
        problem('ESYMLINK', `symlink ${inode.ino} has no target`, () => ops.push({ table: T.symlink, key: inoKey(inode.ino), value: utf8('?') }));
      }
    }
    for (const { key } of store.range(T.symlink)) {
      const ino = readU64(key);
      const inode = inodes.get(ino);
      if (!inode || !isLnk(inode.mode)) problem('ESYMLINK', `symlink target record for ${ino}, which is not a symlink`, () => ops.push({ table: T.symlink, key, value: undefined }));
    }

    // Block maps.
    const refs = new Map<string, number>();
    let blockRefs = 0;
    const blocks = new Map<string, { key: Uint8Array; rec: BlockRecord }>();
    for (const { key, value } of store.range(T.block)) {
      try {
        blocks.set(toHex(key), { key, rec: decodeBlock(value) });
      } catch (err) {
        problem('EBLOCK', `block ${toHex(key)}: ${(err as Error).message}`);
      }
    }
    for (const { key, value } of store.range(T.blockmap)) {
      blockRefs++;
      const ino = readU64(key);
      const bno = blockmapBlockNo(key);
      const inode = inodes.get(ino);
      if (!inode || !isReg(inode.mode)) {
        problem('ESTRAYMAP', `block map entry ${bno} of ${ino}, which is not a live regular file`, () => ops.push({ table: T.blockmap, key, value: undefined }));
        continue;
      }
      const hk = toHex(value);
      if (!blocks.has(hk)) {
        problem('EMISSINGBLOCK', `block ${bno} of inode ${ino} points at missing block ${hk} (data lost; repair makes it a hole)`, () =>
          ops.push({ table: T.blockmap, key, value: undefined }));
        continue;
      }
      refs.set(hk, (refs.get(hk) ?? 0) + 1);
      if (bno * bs >= inode.sizeBytes) {
        problem('ESIZE', `inode ${ino} has size ${inode.sizeBytes} but maps block ${bno}`, () => { inode.sizeBytes = (bno + 1) * bs; });
      }
    }

    // Blocks, extents, counters.
    const extents: Array<{ start: number; end: number; what: string }> = [];
    const unreferenced: typeof extents = [];
    let storedBytes = 0;
    let uniqueBlocks = 0;
    for (const [hk, { key, rec }] of blocks) {
      const n = refs.get(hk) ?? 0;
      const len = alignExtent(Math.max(1, rec.storedBytes));
      if (n === 0) {
        unreferenced.push({ start: rec.offsetBytes, end: rec.offsetBytes + len, what: `block ${hk}` });
        problem('EUNREFERENCED', `block ${hk} has refcount ${rec.refcount} but no references`, () => {
          ops.push({ table: T.block, key, value: undefined });
          if (rec.offsetBytes + len <= state.dataEndBytes) ops.push({ table: T.freespace, key: freeKey(len, rec.offsetBytes), value: EMPTY });
        });
        continue;
      }
      if (rec.refcount !== n) {
        problem('EREFCOUNT', `block ${hk} has refcount ${rec.refcount}, expected ${n}`, () =>
          ops.push({ table: T.block, key, value: encodeBlock({ ...rec, refcount: n }) }));
      }
      if (rec.offsetBytes + len > state.dataEndBytes) {
        problem('EEXTENT', `block ${hk} lies at ${rec.offsetBytes}+${len}, past the data end ${state.dataEndBytes}`);
      }
      extents.push({ start: rec.offsetBytes, end: rec.offsetBytes + len, what: `block ${hk}` });
      storedBytes += len;
      uniqueBlocks++;
    }
    for (const { key } of store.range(T.freespace)) {
      const { lengthBytes, offsetBytes } = decodeFreeKey(key);
      if (offsetBytes + lengthBytes > state.dataEndBytes) {
        problem('EFREE', `free extent ${offsetBytes}+${lengthBytes} lies past the data end ${state.dataEndBytes}`, () => ops.push({ table: T.freespace, key, value: undefined }));
        continue;
      }
      extents.push({ start: offsetBytes, end: offsetBytes + lengthBytes, what: `free extent ${offsetBytes}+${lengthBytes}` });
    }
    extents.sort((a, b) => a.start - b.start);
    for (let i = 1; i < extents.length; i++) {
      if (extents[i].start < extents[i - 1].end) {
        problem('EOVERLAP', `${extents[i - 1].what} overlaps ${extents[i].what}`);
      }
    }
    // Every byte below the data end is a block's or free: anything else is
    // space no allocation can reach again (leaked).
    let covered = 0;
    const gaps: Array<{ start: number; end: number }> = [];
    for (const e of [...extents, ...unreferenced].sort((a, b) => a.start - b.start)) {
      if (e.start > covered) gaps.push({ start: covered, end: Math.min(e.start, state.dataEndBytes) });
      covered = Math.max(covered, e.end);
    }
    if (covered < state.dataEndBytes) gaps.push({ start: covered, end: state.dataEndBytes });
    for (const g of gaps) {
      if (g.end <= g.start) continue;
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
    const dataPath = joinPath(options.blockDataPath, DATA_FILE);
    const st = await drivers.disk.stat(dataPath);
    const referenced = [...blocks].filter(([hk]) => refs.has(hk)).sort(([, a], [, b]) => a.rec.offsetBytes - b.rec.offsetBytes);
    if (!st) {
      problem('EDATAFILE', `${dataPath} is missing`);
      if (fsckOptions.thorough) blocksFailed = referenced.length;
    } else {
      const past = referenced.filter(([, { rec }]) => rec.offsetBytes + rec.storedBytes > st.sizeBytes);
      for (const [hk, { rec }] of past.slice(0, PAST_END_LISTED)) {
        problem('EDATAFILE', `${dataPath} has ${st.sizeBytes} bytes, but block ${hk} is stored at ${rec.offsetBytes}+${rec.storedBytes} (to ${rec.offsetBytes + rec.storedBytes}): the file is truncated`);
      }
      if (past.length > PAST_END_LISTED) {
        const reach = Math.max(...past.map(([, { rec }]) => rec.offsetBytes + rec.storedBytes));
        problem('EDATAFILE', `${dataPath} has ${st.sizeBytes} bytes: ${past.length - PAST_END_LISTED} more blocks lie past its end (${past.length} in all, stored blocks reach ${reach})`);
      }
      if (fsckOptions.thorough) {
        blocksFailed = past.length;
        const file = await drivers.disk.open(dataPath, { readOnly: true });
        try {
          for (const [hk, { key, rec }] of referenced) {
            if (rec.offsetBytes + rec.storedBytes > st.sizeBytes) continue;
            const stored = await file.read(rec.offsetBytes, rec.storedBytes);
            let raw: Uint8Array;
            try {
              raw = rec.codec === 0 ? stored : drivers.primitives.decompress(rec.codec, stored, rec.rawBytes);
            } catch (err) {
              problem('EBADBLOCK', `block ${hk} does not decompress: ${(err as Error).message}`);
              blocksFailed++;
              continue;
            }
            const hash = drivers.primitives.hash(format.hashName, raw);
            if (raw.length !== rec.rawBytes || toHex(hash) !== toHex(key.subarray(0, hash.length))) {
              problem('EBADBLOCK', `block ${hk} at ${rec.offsetBytes} does not match its hash (data corrupted on disk)`);
              blocksFailed++;
              continue;
            }
            blocksVerified++;
          }
        } finally {
          await file.close();
        }
      }
    }

    if (repair && problems.some((p) => p.repaired)) {
      for (const inode of inodes.values()) ops.push({ table: T.inode, key: inoKey(inode.ino), value: encodeInode(inode) });
      ops.push({ table: T.meta, key: metaKey(META.state), value: encodeJson(state) });
      await store.commit(dedupeOps(ops), { durable: true });
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
    };
  } finally {
    await store.close();
  }
}

/** Blocks past the end of a truncated data file reported one by one; the rest as a count. */
const PAST_END_LISTED = 10;

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
  return lines.join('\n');
}
