// lessfsck on a real store (LMDB + data file) that a test corrupts: what it
// reports, what repair does, and that no repair loses data it can verify.

import { execFile } from 'node:child_process';
import { openSync, readFileSync, statSync, closeSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { fsck, formatFsckReport, type FsckReport } from '../../src/core/fs/fsck.ts';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { blockmapKey, decodeBlock, DATA_FILE, T, TABLES } from '../../src/core/fs/schema.ts';
import type { Store } from '../../src/core/drivers.ts';
import type { EngineOptions } from '../../src/core/fs/types.ts';
import { CODEC_LZ4, CODEC_NONE } from '../../src/real/primitives.ts';
import { RealHarness } from '../support/harness.ts';

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
