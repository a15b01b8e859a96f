// lessfsck on a real store (LMDB + data file) that a test corrupts: what it
// reports, what repair does, and that no repair loses data it can verify.

import { execFile } from 'node:child_process';
import { openSync, readFileSync, statSync, closeSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { toHex } from '../../src/core/bytes.ts';
import { fsck, formatFsckReport, type FsckReport } from '../../src/core/fs/fsck.ts';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { blockmapKey, decodeBlock, decodeInode, encodeBlock, DATA_FILE, direntKey, encodeInode, inoKey, META, metaKey, ROOT_INO, T, TABLES } from '../../src/core/fs/schema.ts';
import type { Store } from '../../src/core/drivers.ts';
import type { EngineOptions } from '../../src/core/fs/types.ts';
import { CODEC_LZ4, CODEC_NONE } from '../../src/real/primitives.ts';
import { RealHarness, SimHarness } from '../support/harness.ts';

const BS = 4096;
const ROOT = join(import.meta.dirname, '../..');

/** Block i of a test file: distinct per (seed, i), compressible. */
function blockData(seed: number, i: number): Uint8Array {
  return new Uint8Array(Buffer.from(`file ${seed} block ${i} `.repeat(BS)).subarray(0, BS));
}

function fileData(seed: number, blocks: number): Uint8Array {
  const out = new Uint8Array(blocks * BS);
  for (let i = 0; i < blocks; i++) out.set(blockData(seed, i), i * BS);
  return out;
}

let h: RealHarness;
afterEach(() => h?.cleanup());

/** A formatted store holding /a (seed 1) of `blocks` blocks; returns its inode. */
async function storeWithFile(options: Partial<EngineOptions>, blocks: number): Promise<number> {
  h = new RealHarness(options);
  await h.format();
  const engine = await h.open();
  const fs = new PathFs(engine);
  const ino = fs.create('/a').ino;
  await fs.write('/a', 0, fileData(1, blocks));
  await engine.close();
  return ino;
}

async function withStore<R>(fn: (store: Store) => Promise<R>): Promise<R> {
  const store = await h.drivers().storeFactory.open({ path: h.options.metaPath, tables: TABLES, mapSizeBytes: h.options.lmdbMapSizeBytes });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** The block key and raw record of block `bno` of `ino`. */
async function blockOf(ino: number, bno: number): Promise<{ key: Uint8Array; value: Uint8Array }> {
  return withStore(async (store) => {
    const key = store.get(T.blockmap, blockmapKey(ino, bno));
    if (!key) throw new Error(`no block ${bno} of ${ino}`);
    const value = store.get(T.block, key);
    if (!value) throw new Error(`no record for block ${bno} of ${ino}`);
    return { key: key.slice(), value: value.slice() };
  });
}

async function putRecord(key: Uint8Array, value: Uint8Array): Promise<void> {
  await withStore((store) => store.commit([{ table: T.block, key, value }], { durable: true }));
}

const dataPath = (): string => join(h.options.blockDataPath, DATA_FILE);

function overwriteData(offsetBytes: number, bytes: Uint8Array): void {
  const fd = openSync(dataPath(), 'r+');
  try {
    writeSync(fd, bytes, 0, bytes.length, offsetBytes);
  } finally {
    closeSync(fd);
  }
}

const check = (thorough = true): Promise<FsckReport> => fsck(h.drivers(), h.options, { thorough, repair: false });
const repair = (): Promise<FsckReport> => fsck(h.drivers(), h.options, { thorough: false, repair: true });
const codes = (r: FsckReport): string[] => r.problems.map((p) => p.code);

async function readA(): Promise<Uint8Array> {
  const engine = await h.open();
  try {
    return await new PathFs(engine).readFile('/a');
  } finally {
    await engine.close();
  }
}

/** A lessfs.cfg for the harness's store, with `extra` lines. */
function configFile(extra = ''): string {
  const cfg = join(h.dir, 'lessfs.cfg');
  writeFileSync(cfg, `BLOCKDATA_PATH=${h.options.blockDataPath}\nMETA_PATH=${h.options.metaPath}\nBLKSIZE=${BS}\n${extra}`);
  return cfg;
}

/** Run the lessfsck command on `cfg`. */
function lessfsckWith(cfg: string): (args: string[]) => Promise<{ code: number; stdout: string }> {
  return async (args) => {
    try {
      const r = await promisify(execFile)(process.execPath, [join(ROOT, 'bin', 'lessfsck.js'), ...args, '-c', cfg], { timeout: 30_000 });
      return { code: 0, stdout: r.stdout };
    } catch (err) {
      const e = err as { code: number; stdout: string };
      return { code: e.code, stdout: e.stdout };
    }
  };
}

describe('lessfsck: block records that do not decode', () => {
  it('names the version byte it found and the one expected', async () => {
    const ino = await storeWithFile({}, 2);
    const { key, value } = await blockOf(ino, 1);
    value[0] = 7;
    await putRecord(key, value);
    const r = await check();
    expect(r.problems[0].code).toBe('EBLOCK');
    expect(r.problems[0].message).toContain('block record of 22 bytes, version 7: expected 22 bytes, version 1');
  });

  it('a bad version byte over intact compressed data: the record is rebuilt, nothing becomes a hole', async () => {
    const ino = await storeWithFile({ codec: CODEC_LZ4 }, 4);
    const { key, value } = await blockOf(ino, 2);
    const rec = decodeBlock(value);
    expect(rec.codec).toBe(CODEC_LZ4);
    expect(rec.storedBytes).toBeLessThan(BS);
    value[0] = 0;
    await putRecord(key, value);

    const r = await check();
    expect(codes(r)).toEqual(['EBLOCK']);
    expect(r.problems[0].message).toContain(`its data is intact at ${rec.offsetBytes}+${rec.storedBytes} (lz4, ${BS} bytes, matches its key)`);
    expect(r.problems[0].message).toContain('repair rebuilds the record with refcount 1');
    expect({ verified: r.blocksVerified, failed: r.blocksFailed }).toEqual({ verified: 4, failed: 0 });

    const fixed = await repair();
    expect(codes(fixed)).toEqual(['EBLOCK']);
    expect(fixed.problems[0].repaired).toBe(true);
    expect(codes(await check())).toEqual([]);
    expect(decodeBlock((await blockOf(ino, 2)).value)).toEqual(rec);
    expect(await readA()).toEqual(fileData(1, 4));
  });

  it('records of the wrong length, two side by side, and one whose offset is wrong too: each found by its data', async () => {
    const blocks = 6;
    const ino = await storeWithFile({ codec: CODEC_NONE }, blocks);
    const all: Array<{ key: Uint8Array; value: Uint8Array }> = [];
    for (let bno = 0; bno < blocks; bno++) all.push(await blockOf(ino, bno));
    // Two neighbours, the later one first in key order (the order the check
    // meets them): it is found only once the first one claims its extent.
    const first = all.findIndex((b, i) => i + 1 < blocks && toHex(all[i + 1].key) < toHex(b.key));
    expect(first).toBeGreaterThanOrEqual(0);
    const b1 = all[first];
    const b2 = all[first + 1];
    const b4 = all[(first + 3) % blocks];
    const [r1, r2, r4] = [b1, b2, b4].map((b) => decodeBlock(b.value));
    expect(r2.offsetBytes).toBe(r1.offsetBytes + BS);
    await putRecord(b1.key, b1.value.subarray(0, 9));
    await putRecord(b2.key, new Uint8Array(0));
    const moved = b4.value.slice();
    moved[0] = 2;
    moved.set([0, 0, 0, 0, 0, 0x10, 0, 0], 14); // offset 1 MiB: past the data end
    await putRecord(b4.key, moved);

    const r = await check();
    expect(codes(r)).toEqual(['EBLOCK', 'EBLOCK', 'EBLOCK']);
    const text = formatFsckReport(r);
    expect(text).toContain('block record of 9 bytes, version 1: expected 22 bytes, version 1');
    expect(text).toContain('block record of 0 bytes, no version byte: expected 22 bytes, version 1');
    expect(text).toContain('block record of 22 bytes, version 2: expected 22 bytes, version 1');
    for (const rec of [r1, r2, r4]) expect(text).toContain(`its data is intact at ${rec.offsetBytes}+${rec.storedBytes} (none, ${BS} bytes`);

    await repair();
    expect(codes(await check())).toEqual([]);
    for (const [b, rec] of [[b1, r1], [b2, r2], [b4, r4]] as const) {
      expect(decodeBlock((await withStore(async (s) => s.get(T.block, b.key)?.slice())) as Uint8Array)).toEqual(rec);
    }
    expect(await readA()).toEqual(fileData(1, blocks));
  });

  it('data that is not found anywhere: the report says it is lost, repair makes holes of it and keeps the rest', async () => {
    const ino = await storeWithFile({}, 3);
    const { key, value } = await blockOf(ino, 1);
    const rec = decodeBlock(value);
    value[0] = 3;
    await putRecord(key, value);
    overwriteData(rec.offsetBytes, new Uint8Array(BS).fill(0x55));

    const r = await check(false);
    expect(codes(r)).toEqual(['EBLOCK', 'EMISSINGBLOCK', 'ELEAK', 'ECOUNTERS']);
    expect(r.problems[0].message).toContain(`its data was not found in ${dataPath()} (nothing there matches its key)`);
    expect(r.problems[0].message).toContain('1 file block(s) refer to it and lose their data (repair removes the record; they become holes)');
    expect(r.problems[1].message).toMatch(/^block 1 of inode \d+ points at block [0-9a-f]+, whose record does not decode and whose data was not found \(data lost; repair makes it a hole\)$/);

    const fixed = await repair();
    expect(fixed.problems.every((p) => p.repaired)).toBe(true);
    expect(codes(await check())).toEqual([]);
    const expected = fileData(1, 3);
    expected.fill(0, BS, 2 * BS);
    expect(await readA()).toEqual(expected);
  });

  it('a record no file refers to is removed by repair', async () => {
    await storeWithFile({}, 1);
    await putRecord(new Uint8Array(32).fill(0xab), new Uint8Array([9, 1, 2]));
    const r = await check();
    expect(codes(r)).toEqual(['EBLOCK']);
    expect(r.problems[0].message).toContain('no file refers to it (repair removes the record)');
    expect((await repair()).problems[0].repaired).toBe(true);
    expect(codes(await check())).toEqual([]);
  });

  it('through the command: exit 1 on the check, 0 after the repair, the file intact', async () => {
    const ino = await storeWithFile({}, 2);
    const { key, value } = await blockOf(ino, 0);
    value[0] = 0xff;
    await putRecord(key, value);
    const lessfsck = lessfsckWith(configFile());
    const a = await lessfsck(['-t']);
    expect(a.code).toBe(1);
    expect(a.stdout).toContain('PROBLEM EBLOCK');
    expect(a.stdout).toContain('version 255: expected 22 bytes, version 1');
    expect(a.stdout).not.toContain('EMISSINGBLOCK');
    const b = await lessfsck(['-r']);
    expect(b.code).toBe(0);
    expect(b.stdout).toContain('REPAIRED EBLOCK');
    const c = await lessfsck(['-t']);
    expect(c.code).toBe(0);
    expect(c.stdout).toContain('2 blocks read back: 2 verified against their hashes, 0 failed');
    expect(await readA()).toEqual(fileData(1, 2));
  });
});

describe('lessfsck -t: reading blocks back', () => {
  it('counts a block that fails as failed, not verified', async () => {
    const ino = await storeWithFile({}, 3);
    const rec = decodeBlock((await blockOf(ino, 1)).value);
    overwriteData(rec.offsetBytes + 100, new Uint8Array([0xee]));
    const r = await check();
    expect(codes(r)).toEqual(['EBADBLOCK']);
    expect({ verified: r.blocksVerified, failed: r.blocksFailed }).toEqual({ verified: 2, failed: 1 });
    expect(formatFsckReport(r)).toContain('3 blocks read back: 2 verified against their hashes, 1 failed');
  });

  it('a truncated data file: every block past its end is an error naming the file, its size and the extent; the rest are read back', async () => {
    const ino = await storeWithFile({}, 14);
    const recs = [];
    for (let bno = 0; bno < 14; bno++) recs.push(decodeBlock((await blockOf(ino, bno)).value));
    const byOffset = [...recs].sort((a, b) => a.offsetBytes - b.offsetBytes);
    const size = byOffset[2].offsetBytes; // the first two blocks stay whole
    expect(statSync(dataPath()).size).toBeGreaterThan(size);
    truncateSync(dataPath(), size);

    const r = await check();
    expect({ verified: r.blocksVerified, failed: r.blocksFailed }).toEqual({ verified: 2, failed: 12 });
    const past = r.problems.filter((p) => p.code === 'EDATAFILE');
    expect(codes(r).every((c) => c === 'EDATAFILE')).toBe(true);
    expect(past).toHaveLength(11);
    for (const [i, rec] of byOffset.slice(2, 12).entries()) {
      expect(past[i].message).toMatch(
        new RegExp(`^${dataPath()} has ${size} bytes, but block [0-9a-f]+ is stored at ${rec.offsetBytes}\\+${rec.storedBytes} \\(to ${rec.offsetBytes + rec.storedBytes}\\): the file is truncated$`),
      );
    }
    const last = byOffset[13];
    expect(past[10].message).toBe(`${dataPath()} has ${size} bytes: 2 more blocks lie past its end (12 in all, stored blocks reach ${last.offsetBytes + last.storedBytes})`);
    expect(formatFsckReport(r)).toContain('14 blocks read back: 2 verified against their hashes, 12 failed');
    // Nothing to repair that would not lose data: the problems stay.
    expect((await repair()).problems.every((p) => !p.repaired)).toBe(true);
    expect(readFileSync(dataPath()).length).toBe(size);
  });
});

describe('lessfsck -r on a replicating filesystem', () => {
  /** Take /a out of the root directory: a problem repair fixes (it goes to /lost+found). */
  const txnOf = (stdout: string): number => Number(/^transaction (\d+),/.exec(stdout)?.[1]);
  /** A store whose /a is out of the root directory (repair puts it in /lost+found), the command for it as `role`, and its txn. */
  async function brokenAs(role: 'master' | 'slave'): Promise<{ lessfsck: ReturnType<typeof lessfsckWith>; before: number }> {
    await storeWithFile({}, 1);
    await withStore((store) => store.commit([{ table: T.dirent, key: direntKey(ROOT_INO, 'a'), value: undefined }], { durable: true }));
    const lessfsck = lessfsckWith(configFile(`REPLICATION=masterslave\nREPLICATION_ROLE=${role}\nREPLICATION_PARTNER_IP=-1\n`));
    return { lessfsck, before: txnOf((await lessfsck([])).stdout) };
  }
  const replicationMeta = (): Promise<unknown> => withStore(async (store) => {
    const v = store.get(T.meta, metaKey(META.replication));
    return v === undefined ? undefined : JSON.parse(Buffer.from(v).toString('utf8'));
  });

  it('a master: the repair is a transaction of its own, recorded as not logged, and the report warns; the store\'s record wins over REPLICATION=off', async () => {
    const { lessfsck: master, before } = await brokenAs('master');
    const a = await master(['-r']);
    expect(a.code).toBe(0);
    expect(a.stdout).toContain('REPAIRED');
    expect(txnOf(a.stdout)).toBe(before + 1);
    expect(a.stdout).toContain(`\nWARNING: this filesystem is a replication master: the repair is txn ${before + 1}, committed without the replication log, so its slave cannot get it; re-seed the slave`);
    expect(await replicationMeta()).toEqual({ role: 'master', repairTxns: [before + 1] });
    // Nothing to repair: nothing committed, no warning.
    const clean = await master(['-r']);
    expect(txnOf(clean.stdout)).toBe(before + 1);
    expect(clean.stdout).not.toContain('WARNING');
    // Checked with REPLICATION=off: the store says it is a master.
    await putRecord(new Uint8Array(32).fill(0xab), new Uint8Array([9, 1, 2]));
    const b = await lessfsckWith(configFile())(['-r']);
    expect(txnOf(b.stdout)).toBe(before + 2);
    expect(b.stdout).toContain(`WARNING: this filesystem is a replication master: the repair is txn ${before + 2}`);
    expect(await replicationMeta()).toEqual({ role: 'master', repairTxns: [before + 1, before + 2] });
  });

  it('a slave: the report warns that it no longer matches its master; the repair is recorded in its meta; its txn stays the master\'s', async () => {
    const { lessfsck: slave, before } = await brokenAs('slave');
    const r = await slave(['-r']);
    expect(r.code).toBe(0);
    expect(txnOf(r.stdout)).toBe(before);
    expect(r.stdout).toContain('\nWARNING: this filesystem is a replication slave: the repair changed it outside replication (at master txn 0), so it no longer matches its master; re-seed it from a copy of the master');
    expect(r.stdout).toContain('its status shows repaired_at_txn 0 until it is re-seeded');
    // Nothing applied yet: the slave position is master txn 0.
    expect(await replicationMeta()).toEqual({ role: 'slave', repairedAtTxn: 0 });
    // A slave that has applied up to master txn 7: recorded there, and a later repair keeps the first.
    await withStore((store) => store.commit([{ table: T.meta, key: metaKey(META.replication), value: new TextEncoder().encode(JSON.stringify({ role: 'slave', fsId: 'm', txn: 7, sequence: 2 })) }], { durable: true }));
    await putRecord(new Uint8Array(32).fill(0xab), new Uint8Array([9, 1, 2]));
    expect((await slave(['-r'])).stdout).toContain('(at master txn 7)');
    expect(await replicationMeta()).toEqual({ role: 'slave', fsId: 'm', txn: 7, sequence: 2, repairedAtTxn: 7 });
    await withStore((store) => store.commit([{ table: T.meta, key: metaKey(META.replication), value: new TextEncoder().encode(JSON.stringify({ role: 'slave', fsId: 'm', txn: 9, sequence: 3, repairedAtTxn: 7 })) }], { durable: true }));
    await putRecord(new Uint8Array(32).fill(0xac), new Uint8Array([9, 1, 2]));
    expect((await slave(['-r'])).stdout).toContain('(at master txn 7)');
    expect(await replicationMeta()).toEqual({ role: 'slave', fsId: 'm', txn: 9, sequence: 3, repairedAtTxn: 7 });
  });

  it('without replication: no warning, the txn stays', async () => {
    await storeWithFile({}, 1);
    await putRecord(new Uint8Array(32).fill(0xab), new Uint8Array([9, 1, 2]));
    const before = (await check()).txn;
    const r = await repair();
    expect(r.problems.some((p) => p.repaired)).toBe(true);
    expect(r.txn).toBe(before);
    expect(r.warnings).toEqual([]);
  });
});

describe('lessfsck: inode records', () => {
  it('a record under the wrong key is judged and repaired under the key it was found at; the inode it names is not overwritten', async () => {
    h = new RealHarness({});
    await h.format();
    const engine = await h.open();
    const fs = new PathFs(engine);
    const a = fs.create('/a').ino;
    const b = fs.create('/b').ino;
    await fs.write('/b', 0, blockData(2, 0));
    await engine.close();
    expect(b).toBeGreaterThan(a);
    // b's record claims to be a, and b's nlink is wrong too (a repair rewrites b).
    const [aBefore, bBefore] = await withStore(async (store) => [store.get(T.inode, inoKey(a))?.slice(), store.get(T.inode, inoKey(b))?.slice()]);
    const wrong = decodeInode(bBefore as Uint8Array);
    await withStore((store) => store.commit([{ table: T.inode, key: inoKey(b), value: encodeInode({ ...wrong, ino: a, nlink: 3 }).slice() }], { durable: true }));
    const r = await repair();
    expect(r.problems.map((p) => [p.code, p.message])).toEqual([
      ['EINODE', `inode record under key ${b} says ino ${a}`],
      ['ENLINK', `inode ${b} has nlink 3, expected 1`],
    ]);
    // a is untouched (its record was rewritten with b's before); b got nlink 1.
    const [aAfter, bAfter] = await withStore(async (store) => [store.get(T.inode, inoKey(a))?.slice(), store.get(T.inode, inoKey(b))?.slice()]);
    expect(aAfter).toEqual(aBefore);
    expect(decodeInode(bAfter as Uint8Array)).toEqual({ ...wrong, ino: a, nlink: 1 });
  });
});

describe('lessfsck: memory', () => {
  // Inodes and blocks are held in typed arrays outside the V8 heap (about 60
  // bytes a block, 50 an inode); as Maps of decoded records keyed by hex
  // strings they took ~2.2 KB a block and ~1.4 KB an inode, ~150 MB of heap
  // for this store, and the check ran out of a 64 MB heap.
  it('checks 60,000 unique blocks and 12,000 files within a 64 MB V8 heap', async () => {
    const files = 12_000;
    const blocksPerFile = 5;
    h = new RealHarness({ codec: CODEC_LZ4 });
    await h.format();
    const engine = await h.open();
    // Unique blocks that compress to a few bytes: a small data file.
    const block = new Uint8Array(BS);
    const view = new DataView(block.buffer);
    for (let f = 0; f < files; f++) {
      const ino = engine.mknod(ROOT_INO, `f${f}`, 0o100644, 0, 0).ino;
      for (let i = 0; i < blocksPerFile; i++) {
        view.setFloat64(0, 1 + f * blocksPerFile + i); // not 0: a zero block is a hole
        await engine.write(ino, i * BS, block.slice());
      }
    }
    await engine.close();
    const cfg = configFile('COMPRESSION=lz4\n');
    const r = await promisify(execFile)(process.execPath, ['--max-old-space-size=64', join(ROOT, 'bin', 'lessfsck.js'), '-c', cfg], { timeout: 120_000 }).catch((err: { code: number; stdout: string; stderr: string }) => err);
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain(`${files + 1} inodes, ${files} directory entries, ${files * blocksPerFile} block references, ${files * blocksPerFile} unique blocks`);
    expect(r.stdout).toContain('clean: no problems found');
  }, 180_000);
});

describe('lessfsck -r: a repair larger than one commit', () => {
  // Every refcount of the store wrong (a metadata store restored beside the
  // wrong data, say): one operation per block. A repair used to be one
  // commit, which a store refuses past STORE_COMMIT_OPS_MAX (EINVAL, nothing
  // repaired, for ever). Here the store takes 400 operations per commit.
  it('is committed in pieces the store takes, and leaves the store clean (seed 43)', async () => {
    const sh = new SimHarness(43, { commitOpsMax: 400 }, { store: { commitOpsMax: 400 } });
    await sh.format();
    const fs = new PathFs(await sh.open());
    const files = 700;
    const content = (i: number): Uint8Array => {
      const b = new Uint8Array(sh.options.blockSizeBytes).fill(7);
      new DataView(b.buffer).setUint32(0, i + 1);
      return b;
    };
    for (let i = 0; i < files; i++) {
      fs.create(`/f${i}`);
      await sh.run(fs.write(`/f${i}`, 0, content(i)));
    }
    await sh.run(fs.engine.close());
    const d = sh.drivers();
    const store = await sh.run(d.storeFactory.open({ path: sh.options.metaPath, tables: TABLES, mapSizeBytes: sh.options.lmdbMapSizeBytes }));
    const wrong = [...store.range(T.block)].map(({ key, value }) => ({ table: T.block, key, value: encodeBlock({ ...decodeBlock(value), refcount: 3 }) }));
    expect(wrong.length).toBe(files);
    for (let at = 0; at < wrong.length; at += 300) await sh.run(store.commit(wrong.slice(at, at + 300), { durable: true }));
    await sh.run(store.close());
    const repaired = await sh.run(fsck(d, sh.options, { thorough: false, repair: true }));
    expect(repaired.problems.filter((p) => p.code === 'EREFCOUNT' && p.repaired).length).toBe(files);
    expect((await sh.run(fsck(d, sh.options, { thorough: true, repair: false }))).problems).toEqual([]);
    const again = new PathFs(await sh.open());
    expect(Buffer.from(await sh.run(again.read('/f699', 0, sh.options.blockSizeBytes))).equals(Buffer.from(content(699)))).toBe(true);
    await sh.run(again.engine.close());
  });
});
