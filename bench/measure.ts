// Measuring helpers shared by sections: medians, rates, the block generator
// every variant pays for, and the page-cache warm-up this VM needs.

import { randomFillSync } from 'node:crypto';
import type { BenchContext, Figure } from './section.ts';
import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
/** Rates are in MB/s of 10^6 bytes, as dd prints them. */
export const MB = 1e6;

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of no samples');
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export function mbPerS(bytes: number, ms: number): number {
  if (!(ms > 0)) throw new Error(`non-positive duration ${ms} ms`);
  return bytes / MB / (ms / 1000);
}

/** Collect garbage if node runs with --expose-gc (npm run bench does), so one variant's garbage is not another's cost. */
export function collectGarbage(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) gc();
}

/**
 * Fresh, unique 128 KiB (or any size) blocks at the price of one copy each:
 * a copy of a slice of a small random pool with the block index stamped in.
 * Every variant (plain write, sha256, ingest) pays this same cost per block,
 * and every block is a new Buffer, since the engine keeps the buffers it gets.
 */
export class BlockSource {
  private readonly pool: Buffer;

  constructor(
    readonly blockBytes: number,
    poolBytes = 8 * MiB,
  ) {
    if (!(blockBytes >= 16 && poolBytes >= blockBytes && poolBytes % blockBytes === 0)) {
      throw new Error(`bad block source geometry: block ${blockBytes} B, pool ${poolBytes} B`);
    }
    this.pool = Buffer.allocUnsafeSlow(poolBytes);
    randomFillSync(this.pool);
  }

  /** Block `index`: the same bytes every call, distinct from every other index below 2^32. */
  block(index: number): Buffer {
    return this.blockInto(index, Buffer.allocUnsafeSlow(this.blockBytes));
  }

  /** Block `index` written into `target` (a block-sized buffer), which is returned. */
  blockInto<T extends Uint8Array>(index: number, target: T): T {
    if (!(Number.isInteger(index) && index >= 0 && index < 2 ** 32)) throw new Error(`block index ${index} out of range`);
    const from = (index * this.blockBytes) % this.pool.length;
    target.set(this.pool.subarray(from, from + this.blockBytes));
    new DataView(target.buffer, target.byteOffset, 4).setUint32(0, index, true);
    return target;
  }
}

/**
 * Write and delete a file of `bytes` in `dir`. On this VM free memory is given
 * back to the host, and the first touch of fresh page-cache pages is slow: the
 * first GiB written in a run would otherwise measure the hypervisor.
 */
export function warmPageCache(dir: string, bytes: number): void {
  const path = join(dir, 'warm-up');
  const chunk = Buffer.alloc(MiB, 0x5a);
  const fd = openSync(path, 'w');
  try {
    for (let written = 0; written < bytes; written += chunk.length) writeSync(fd, chunk);
  } finally {
    closeSync(fd);
    rmSync(path, { force: true });
  }
}

export function fmt(value: number, unit: string): string {
  if (unit === '×') return value.toFixed(2);
  if (Math.abs(value) >= 100) return value.toFixed(0);
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

/** `--NAME` in MiB (default 64 MiB with --quick, else 1 GiB), a positive whole number of blocks. */
export function sizeFlagBytes(ctx: BenchContext, name: string, blockBytes: number): number {
  const flag = ctx.flag(name);
  const bytes = flag !== undefined ? Number(flag) * MiB : ctx.quick ? 64 * MiB : GiB;
  if (!(Number.isInteger(bytes / blockBytes) && bytes > 0)) throw new Error(`--${name} must be a positive whole number of MiB, got '${flag}'`);
  return bytes;
}

/** A figure from one value per round: the median, with every sample. */
export function roundFigure<R>(rounds: readonly R[], label: string, pick: (x: R) => number, unit: string, note?: string): Figure {
  const samples = rounds.map(pick);
  return { label, value: median(samples), unit, samples, note };
}
