// Reads from the data file through a real mount: after a read reaches lessfs,
// the libfuse threads answer the reads of the file's next blocks themselves
// (pread of the data file), and every change made through the mount shows in
// the very next read. Each read opens the file anew, so the kernel's page
// cache of the file is dropped (fuse-native does not keep it) and every read
// is a FUSE request.

import { createHash, randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMount, type LessfsMount, stopThenCleanup } from '../support/mount.ts';

const BS = 131072;
let m: LessfsMount;
let off: LessfsMount;

beforeAll(async () => {
  // DEBUG 5 logs every request the JS handlers get ("fuse read PATH").
  [m, off] = await Promise.all([
    startMount({ config: { DEBUG: 5 } }),
    startMount({ config: { DEBUG: 5, FUSE_READ_TABLE: 'off' } }),
  ]);
}, 60_000);

afterAll(async () => {
  await Promise.allSettled([stopThenCleanup(m), stopThenCleanup(off)]);
}, 60_000);

/** read requests for path that reached the JS handlers after the log had `from` bytes. */
function jsReads(mount: LessfsMount, from: number, name: string): number {
  return mount.currentLogText().slice(from).split('\n').filter((l) => l.endsWith(`fuse read /${name}`)).length;
}

/** The file's bytes, read through a fresh handle in 128 KiB reads. */
async function readAll(path: string): Promise<Buffer> {
  const fh = await fsp.open(path, 'r');
  try {
    const parts: Buffer[] = [];
    for (let pos = 0; ; ) {
      const buf = Buffer.alloc(BS);
      const { bytesRead } = await fh.read(buf, 0, BS, pos);
      if (bytesRead === 0) break;
      parts.push(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
    return Buffer.concat(parts);
  } finally {
    await fh.close();
  }
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('reads served from the data file', () => {
  it('a sequential read of 24 MiB: a few reads reach lessfs, the rest are answered by the libfuse threads, bytes equal', async () => {
    const data = randomBytes(24 << 20);
    for (const mount of [m, off]) await fsp.writeFile(mount.path('seq'), data);
    const from = m.currentLogText().length;
    const fromOff = off.currentLogText().length;
    expect(sha(await readAll(m.path('seq')))).toBe(sha(data));
    expect(sha(await readAll(off.path('seq')))).toBe(sha(data));
    const requests = (24 << 20) / BS;
    // One read per window of 64 blocks reaches JS (and the first); without the table, every one.
    expect(jsReads(m, from, 'seq')).toBeLessThan(requests / 8);
    expect(jsReads(off, fromOff, 'seq')).toBeGreaterThanOrEqual(requests);
  }, 120_000);

  it('every change through the mount shows in the next read: overwrites, small writes, truncates, holes, a file renamed over it', async () => {
    const path = m.path('changing');
    let model = Buffer.from(randomBytes(20 * BS));
    await fsp.writeFile(path, model);
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const from = m.currentLogText().length;
    let reads = 0;
    for (let round = 0; round < 40; round++) {
      expect(sha(await readAll(path)), `round ${round}`).toBe(sha(model));
      reads += Math.ceil(model.length / BS);
      const kind = rand(5);
      if (kind === 0 || kind === 1) {
        // Whole blocks (queued, stored, the old extents freed) or a few bytes anywhere.
        const at = kind === 0 ? rand(24) * BS : rand(model.length + BS);
        const bytes = randomBytes(kind === 0 ? BS * (1 + rand(3)) : 1 + rand(3000));
        const fh = await fsp.open(path, 'r+');
        await fh.write(bytes, 0, bytes.length, at);
        await fh.close();
        if (at + bytes.length > model.length) model = Buffer.concat([model, Buffer.alloc(at + bytes.length - model.length)]);
        bytes.copy(model, at);
      } else if (kind === 2) {
        const size = rand(26 * BS);
        await fsp.truncate(path, size);
        model = size <= model.length ? model.subarray(0, size) : Buffer.concat([model, Buffer.alloc(size - model.length)]);
      } else if (kind === 3) {
        // Another file takes extents this one freed (a commit in between makes them reusable).
        await fsp.writeFile(m.path(`filler${round}`), randomBytes(4 * BS));
      } else {
        const next = Buffer.from(randomBytes(rand(12) * BS + rand(BS)));
        await fsp.writeFile(m.path('replacement'), next);
        await fsp.rename(m.path('replacement'), path);
        model = next;
      }
    }
    expect(sha(await readAll(path))).toBe(sha(model));
    // The libfuse threads answered a good share of them (each round's first read of a window goes to JS).
    expect(jsReads(m, from, 'changing')).toBeLessThan(reads * 0.8);
  }, 180_000);

  it('readers concurrent with writers that free and reuse extents never get bytes of another file or block, nor a version older than one written before the read', async () => {
    // Every 4 KiB of every block written says which file and block it belongs to
    // and its version; a read served from an extent another file took, or from
    // a block's old extent, would show it. Commits every second make freed
    // extents reusable while the readers run.
    const c = await startMount({ config: { COMMIT_INTERVAL: 1, CACHESIZE: 8 } });
    try {
      await concurrentReadersAndWriters(c);
    } finally {
      await stopThenCleanup(c);
    }
  }, 180_000);
});

async function concurrentReadersAndWriters(m: LessfsMount): Promise<void> {
  const FILES = ['ca', 'cb', 'cc'];
  const BLOCKS = 12;
  const tagged = (file: string, block: number, version: number): Buffer => {
    const b = Buffer.alloc(BS);
    for (let at = 0; at < BS; at += 4096) b.write(`${file}:${block}:${version}:`.padEnd(64, '.'), at);
    return b;
  };
  let version = 0;
  // Per file and block: the version of the last write that ended (0 after a truncation cut the block).
  const floor = new Map<string, number>();
  for (const f of FILES) {
    const fh = await fsp.open(m.path(f), 'w');
    for (let b = 0; b < BLOCKS; b++) await fh.write(tagged(f, b, version), 0, BS, b * BS);
    await fh.close();
  }
  let seed = 99;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  let stop = false;
  let checked = 0;
  const problems: string[] = [];
  const reader = async (): Promise<void> => {
    while (!stop) {
      const f = FILES[rand(FILES.length)];
      const before = new Map(floor);
      const got = await readAll(m.path(f));
      for (let at = 0; at < got.length; at += 4096) {
        const chunk = got.subarray(at, at + 64).toString('latin1');
        if (/^\0+$/.test(chunk)) continue; // a hole (truncated, then extended)
        const [file, block, v] = chunk.split(':');
        const b = Math.floor(at / BS);
        if (file !== f || Number(block) !== b) problems.push(`${f} at ${at}: ${chunk.replace(/\.+$/, '')}`);
        else if (Number(v) < (before.get(`${f}:${b}`) ?? 0)) problems.push(`${f} block ${b}: version ${v}, older than ${before.get(`${f}:${b}`)} written before the read`);
        checked++;
      }
    }
  };
  const writer = async (): Promise<void> => {
    for (let i = 0; i < 150; i++) {
      const f = FILES[rand(FILES.length)];
      const kind = rand(6);
      version++;
      if (kind < 4) {
        const fh = await fsp.open(m.path(f), 'r+');
        const b = rand(BLOCKS);
        const v = version;
        await fh.write(tagged(f, b, v), 0, BS, b * BS);
        await fh.close();
        floor.set(`${f}:${b}`, v);
      } else if (kind === 4) {
        const keep = rand(BLOCKS);
        await fsp.truncate(m.path(f), keep * BS);
        for (let b = keep; b < BLOCKS; b++) floor.set(`${f}:${b}`, 0);
      } else {
        // Churn: a filler takes freed extents, the last one is deleted.
        await fsp.writeFile(m.path(`churn${i}`), randomBytes(3 * BS));
        await fsp.rm(m.path(`churn${i - 1}`), { force: true });
      }
    }
  };
  const readers = [reader(), reader()];
  try {
    await writer();
  } finally {
    stop = true;
    await Promise.all(readers);
  }
  expect(problems.slice(0, 5)).toEqual([]);
  expect(checked).toBeGreaterThan(1000);
}
