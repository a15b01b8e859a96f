// The real Rng: the operating system's CSPRNG via node:crypto. Used for what
// must be unpredictable (fs ids, nonces, backoff jitter); never by the simulator,
// which draws from a seeded SimRng instead.

import { randomFillSync } from 'node:crypto';
import type { Rng } from '../core/drivers.ts';

/** Bytes fetched from the OS per refill: one syscall serves ~1000 u32 draws. */
const POOL_BYTES = 4096;
/** Largest single bytes() request (randomFillSync allows 2 GiB; nothing here needs more than a few KiB). */
export const RNG_BYTES_MAX = 64 * 1024 * 1024;
const TWO_32 = 4294967296;

export class RealRng implements Rng {
  private readonly pool = new Uint8Array(POOL_BYTES);
  private poolPos = POOL_BYTES;

  /** `label` only names the stream for debugging: OS randomness needs no derivation. */
  constructor(readonly label = '') {}

  u32(): number {
    if (this.poolPos + 4 > POOL_BYTES) this.refill();
    const p = this.pool;
    const i = this.poolPos;
    this.poolPos = i + 4;
    return (p[i] | (p[i + 1] << 8) | (p[i + 2] << 16) | (p[i + 3] << 24)) >>> 0;
  }

  float(): number {
    // 53 random bits, so every double in [0, 1) on a 2^-53 grid is reachable.
    const hi = this.u32() >>> 5; // 27 bits
    const lo = this.u32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  int(maxExclusive: number): number {
    if (!Number.isSafeInteger(maxExclusive) || maxExclusive <= 0) {
      throw new RangeError(`int(${maxExclusive}): bound must be a positive safe integer`);
    }
    if (maxExclusive <= TWO_32) {
      // Rejection sampling: drop the top partial range so every value is equally likely.
      const limit = TWO_32 - (TWO_32 % maxExclusive);
      for (;;) {
        const v = this.u32();
        if (v < limit) return v % maxExclusive;
      }
    }
    const limit = Number.MAX_SAFE_INTEGER - (Number.MAX_SAFE_INTEGER % maxExclusive);
    for (;;) {
      const v = (this.u32() & 0x1fffff) * TWO_32 + this.u32(); // 53 bits
      if (v < limit) return v % maxExclusive;
    }
  }

  bytes(length: number): Uint8Array {
    if (!Number.isSafeInteger(length) || length < 0 || length > RNG_BYTES_MAX) {
      throw new RangeError(`bytes(${length}): length must be an integer in 0..${RNG_BYTES_MAX}`);
    }
    const out = new Uint8Array(length);
    if (length > POOL_BYTES / 4) {
      randomFillSync(out);
      return out;
    }
    if (this.poolPos + length > POOL_BYTES) this.refill();
    out.set(this.pool.subarray(this.poolPos, this.poolPos + length));
    this.poolPos += length;
    return out;
  }

  split(label: string): RealRng {
    return new RealRng(this.label === '' ? label : `${this.label}/${label}`);
  }

  private refill(): void {
    randomFillSync(this.pool);
    this.poolPos = 0;
  }
}
