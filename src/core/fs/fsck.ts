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

import type { FileHandle, StoreOp } from '../drivers.ts';
import { readU64, toHex, utf8 } from '../bytes.ts';
import { FormatError } from '../errors.ts';
import { contentEnd, joinPath } from './engine.ts';
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

    // Block records. One that does not decode is kept aside: its data may still
    // be in the data file, and then the record is rebuilt rather than lost.
    const refs = new Map<string, number>();
    let blockRefs = 0;
    const blocks = new Map<string, { key: Uint8Array; rec: BlockRecord }>();
    const badRecords: BadRecord[] = [];
    for (const { key, value } of store.range(T.block)) {
      try {
        blocks.set(toHex(key), { key, rec: decodeBlock(value) });
      } catch (err) {
        badRecords.push({ key, value, why: (err as Error).message });
      }
    }

    // Block maps.
    const checkSize = (inode: Inode, ino: number, bno: number): void => {
      if (bno * bs >= inode.sizeBytes) {
        problem('ESIZE', `inode ${ino} has size ${inode.sizeBytes} but maps block ${bno}`, () => { inode.sizeBytes = (bno + 1) * bs; });
      }
    };
    /** Block map entries whose block has no decodable record (yet). */
    const unresolved: Array<{ key: Uint8Array; ino: number; bno: number; hk: string; inode: Inode }> = [];
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
      refs.set(hk, (refs.get(hk) ?? 0) + 1);
      if (!blocks.has(hk)) {
        unresolved.push({ key, ino, bno, hk, inode });
        continue;
      }
      checkSize(inode, ino, bno);
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
      return toHex(hash) === toHex(key.subarray(0, hash.length));
    };

    // Records that do not decode. Unreferenced ones go; a referenced one is
    // rebuilt if its data is found and verified against its key (refcount from
    // the block maps); only data that cannot be found becomes holes.
    const referencedBad = badRecords.filter((b) => refs.has(toHex(b.key)));
    for (const bad of badRecords) {
      if (refs.has(toHex(bad.key))) continue;
      problem('EBLOCK', `block ${toHex(bad.key)}: ${bad.why}; no file refers to it (repair removes the record)`, () =>
        ops.push({ table: T.block, key: bad.key, value: undefined }));
    }
    if (referencedBad.length > 0 && st) {
      const file = await openData();
      // Space no decodable record or free extent claims: where lost blocks can be.
      const claimed: Extent[] = [...blocks.values()].map(({ rec }) => blockExtent(rec));
      for (const { key } of store.range(T.freespace)) {
        const { lengthBytes, offsetBytes } = decodeFreeKey(key);
        claimed.push({ start: offsetBytes, end: offsetBytes + lengthBytes });
      }
      const plausible = (r: BlockRecord): boolean =>
        r.storedBytes > 0 && r.storedBytes <= bs && r.rawBytes > 0 && r.rawBytes <= bs && drivers.primitives.codecs.some((c) => c.id === r.codec);
      const find = async (bad: BadRecord, refcount: number): Promise<BlockRecord | undefined> => {
        const fields = decodeBlockFields(bad.value);
        const inside = (r: BlockRecord, end: number): boolean => r.offsetBytes + alignExtent(r.storedBytes) <= end;
        if (fields && plausible(fields) && inside(fields, state.dataEndBytes) && !(await mismatch(file, bad.key, fields))) {
          return { ...fields, refcount };
        }
        // Not where the record says: try the start of each unclaimed region,
        // with the record's lengths and codec if it has them, and as an
        // uncompressed block (its stored bytes end at its last non-zero byte).
        for (const gap of gapsBelow(claimed, state.dataEndBytes)) {
          if (fields && plausible(fields)) {
            const moved = { ...fields, offsetBytes: gap.start, refcount };
            if (inside(moved, gap.end) && !(await mismatch(file, bad.key, moved))) return moved;
          }
          const window = await file.read(gap.start, Math.min(bs, gap.end - gap.start));
          const tried = new Set<number>();
          for (let upTo = EXTENT_ALIGN_BYTES; upTo < window.length + EXTENT_ALIGN_BYTES; upTo += EXTENT_ALIGN_BYTES) {
            const n = contentEnd(window.subarray(0, Math.min(upTo, window.length)));
            if (n === 0 || tried.has(n)) continue;
            tried.add(n);
            if (matchesKey(window.subarray(0, n), bad.key)) return { refcount, codec: 0, storedBytes: n, rawBytes: n, offsetBytes: gap.start };
          }
        }
        return undefined;
      };
      // A record found claims its extent, which may be where the next one starts.
      let pending = referencedBad;
      for (let found = true; found && pending.length > 0; ) {
        found = false;
        const left: BadRecord[] = [];
        for (const bad of pending) {
          const hk = toHex(bad.key);
          const refcount = refs.get(hk) ?? 0;
          const rec = await find(bad, refcount);
          if (!rec) {
            left.push(bad);
            continue;
          }
          found = true;
          blocks.set(hk, { key: bad.key, rec });
          claimed.push(blockExtent(rec));
          problem(
            'EBLOCK',
            `block ${hk}: ${bad.why}; its data is intact at ${rec.offsetBytes}+${rec.storedBytes} (${codecName(rec.codec)}, ${rec.rawBytes} bytes, matches its key): ` +
              `repair rebuilds the record with refcount ${refcount}`,
            () => ops.push({ table: T.block, key: bad.key, value: encodeBlock(rec) }),
          );
        }
        pending = left;
      }
    }
    const lost = new Set<string>();
    for (const bad of referencedBad) {
      const hk = toHex(bad.key);
      if (blocks.has(hk)) continue;
      lost.add(hk);
      problem(
        'EBLOCK',
        `block ${hk}: ${bad.why}; its data was not found in ${dataPath} (nothing there matches its key): ` +
          `${refs.get(hk)} file block(s) refer to it and lose their data (repair removes the record; they become holes)`,
        () => ops.push({ table: T.block, key: bad.key, value: undefined }),
      );
    }
    for (const { key, ino, bno, hk, inode } of unresolved) {
      if (blocks.has(hk)) {
        checkSize(inode, ino, bno);
        continue;
      }
      const what = lost.has(hk) ? `block ${hk}, whose record does not decode and whose data was not found` : `missing block ${hk}`;
      problem('EMISSINGBLOCK', `block ${bno} of inode ${ino} points at ${what} (data lost; repair makes it a hole)`, () =>
        ops.push({ table: T.blockmap, key, value: undefined }));
    }

    // Blocks, extents, counters.
    const extents: Array<Extent & { what: string }> = [];
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
    for (const g of gapsBelow([...extents, ...unreferenced], state.dataEndBytes)) {
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
        for (const [hk, { key, rec }] of referenced) {
          if (rec.offsetBytes + rec.storedBytes > st.sizeBytes) continue;
          const why = await mismatch(await openData(), key, rec);
          if (why === undefined) {
            blocksVerified++;
          } else {
            blocksFailed++;
            problem('EBADBLOCK', `block ${hk} at ${rec.offsetBytes} ${why}`);
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

/** A block record that does not decode, and why. */
interface BadRecord {
  key: Uint8Array;
  value: Uint8Array;
  why: string;
}

/** Blocks past the end of a truncated data file reported one by one; the rest as a count. */
const PAST_END_LISTED = 10;

const blockExtent = (rec: BlockRecord): Extent => ({ start: rec.offsetBytes, end: rec.offsetBytes + alignExtent(Math.max(1, rec.storedBytes)) });

/** The non-empty stretches of [0, end) that none of the extents cover. */
function gapsBelow(extents: readonly Extent[], end: number): Extent[] {
  let covered = 0;
  const gaps: Extent[] = [];
  for (const e of [...extents].sort((a, b) => a.start - b.start)) {
    if (e.start > covered) gaps.push({ start: covered, end: Math.min(e.start, end) });
    covered = Math.max(covered, e.end);
  }
  if (covered < end) gaps.push({ start: covered, end });
  return gaps.filter((g) => g.end > g.start);
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
