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
});
