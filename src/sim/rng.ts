import { createHash } from 'node:crypto';
import type { Rng } from '../core/drivers.ts';

/**
 * Seeded PRNG (sfc32). `split(label)` derives a child from this stream's *seed*
 * and the label, not from its current state, so extra draws in one component
 * never perturb another's stream.
 */
export class SimRng implements Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  readonly seedPath: string;

  constructor(seed: number | bigint | string, label = '') {
    this.seedPath = label === '' ? String(seed) : `${String(seed)}/${label}`;
    const h = createHash('sha256').update(this.seedPath).digest();
    this.a = h.readUInt32LE(0);
    this.b = h.readUInt32LE(4);
    this.c = h.readUInt32LE(8);
    this.d = h.readUInt32LE(12) | 1;
    for (let i = 0; i < 12; i++) this.u32();
  }

  u32(): number {
    let { a, b, c, d } = this;
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    this.a = a;
    this.b = b;
    this.c = c;
    this.d = d;
    return t >>> 0;
  }

  float(): number {
    return this.u32() / 4294967296;
  }

  int(maxExclusive: number): number {
    if (!(maxExclusive > 0)) throw new RangeError(`int(${maxExclusive}): bound must be > 0`);
    return Math.floor(this.float() * maxExclusive);
  }

  bytes(length: number): Uint8Array {
    const out = new Uint8Array(length);
    let i = 0;
    for (; i + 4 <= length; i += 4) {
      const v = this.u32();
      out[i] = v & 0xff;
      out[i + 1] = (v >>> 8) & 0xff;
      out[i + 2] = (v >>> 16) & 0xff;
      out[i + 3] = v >>> 24;
    }
    for (; i < length; i++) out[i] = this.u32() & 0xff;
    return out;
  }

  split(label: string): SimRng {
    return new SimRng(this.seedPath, label);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return p > 0 && this.float() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('pick from an empty list');
    return items[this.int(items.length)];
  }
}
