// Drive the real engine (LMDB + node:fs, no FUSE) the way the FUSE layer does:
// 128 KiB writes of buffers the engine then owns.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { FsEngine } from '../src/core/fs/engine.ts';
import { PathFs } from '../src/core/fs/path-fs.ts';
import type { EngineOptions } from '../src/core/fs/types.ts';
import { realEngineDrivers } from '../src/real/drivers.ts';
import type { BlockSource } from './measure.ts';

export interface BenchFs {
  engine: FsEngine;
  fs: PathFs;
  options: EngineOptions;
}

/** Format a new filesystem in `dir` (which must exist and be empty) and open it. */
export async function formatAndOpen(dir: string, blockSizeBytes: number, cacheSizeBytes: number): Promise<BenchFs> {
  const drivers = realEngineDrivers({ log: () => undefined });
  const options: EngineOptions = {
    metaPath: join(dir, 'mta'),
    blockDataPath: join(dir, 'dta'),
    blockSizeBytes,
    hashName: 'sha256',
    codec: 0,
    deduplication: true,
    cacheSizeBytes,
    // Long enough that only fsync and cache pressure commit during a measurement.
    commitIntervalMs: 30_000,
    syncRelax: 0,
    lmdbMapSizeBytes: 0,
    readOnly: false,
  };
  mkdirSync(options.metaPath, { recursive: true });
  await FsEngine.format(drivers, options, { force: false, fsId: 'bench' });
  const engine = await FsEngine.open(drivers, options);
  return { engine, fs: new PathFs(engine), options };
}

/**
 * Create `path` and write blocks [0, bytes / blockBytes) of `source` to it,
 * then fsync (a durable commit). Returns the time of the writes and of the fsync.
 * `onBlock` runs after each write (RSS sampling).
 */
export async function writeFileOf(
  b: BenchFs,
  path: string,
  source: BlockSource,
  bytes: number,
  onBlock?: (index: number) => void,
  /**
   * Give the event loop a turn after each block, as a mount does: FUSE hands
   * over each write in its own callback, so I/O completions (a live sender's
   * reads) run between writes. Without it the writes chain through resolved
   * promises and starve every other task of the process.
   */
  yieldPerBlock = false,
): Promise<{ writeMs: number; fsyncMs: number }> {
  const bs = source.blockBytes;
  if (bs !== b.options.blockSizeBytes || bytes % bs !== 0) throw new Error(`size ${bytes} is not whole blocks of ${b.options.blockSizeBytes}`);
  const ino = b.fs.create(path).ino;
  const blocks = bytes / bs;
  const t0 = performance.now();
  for (let i = 0; i < blocks; i++) {
    // Each block goes into one of the engine's recycled block buffers, as the
    // FUSE layer's copy of a write does.
    const n = await b.engine.write(ino, i * bs, source.blockInto(i, b.engine.buffers.take()));
    if (n !== bs) throw new Error(`short write at block ${i}: ${n} of ${bs} bytes`);
    onBlock?.(i);
    if (yieldPerBlock) await new Promise<void>((resolve) => setImmediate(resolve));
  }
  const t1 = performance.now();
  await b.engine.fsync(ino);
  const t2 = performance.now();
  return { writeMs: t1 - t0, fsyncMs: t2 - t1 };
}

/** Read back a few blocks of `path` and compare with `source`: a benchmark of a broken write path is worthless. */
export async function checkBlocks(b: BenchFs, path: string, source: BlockSource, bytes: number): Promise<void> {
  const bs = source.blockBytes;
  const blocks = bytes / bs;
  const ino = b.fs.resolve(path);
  const size = b.engine.getattr(ino).sizeBytes;
  if (size !== bytes) throw new Error(`${path}: size ${size}, expected ${bytes}`);
  for (const i of [0, 1, Math.floor(blocks / 2), blocks - 1]) {
    const got = await b.engine.read(ino, i * bs, bs);
    if (Buffer.compare(Buffer.from(got.buffer, got.byteOffset, got.byteLength), source.block(i)) !== 0) {
      throw new Error(`${path}: block ${i} reads back different bytes`);
    }
  }
}
