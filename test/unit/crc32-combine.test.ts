// crc32Combine against zlib's CRC-32 of the concatenation itself.

import fc from 'fast-check';
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { crc32Combine } from '../../src/core/crc32-combine.ts';

describe('crc32Combine', () => {
  it('CRC-32(A || B) from CRC-32(A), CRC-32(B) and |B|, as zlib computes it whole', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 5000 }), (a, b) => {
        const whole = new Uint8Array(a.length + b.length);
        whole.set(a);
        whole.set(b, a.length);
        expect(crc32Combine(crc32(a), crc32(b), b.length)).toBe(crc32(whole));
      }),
    );
  });

  it('holds at block sizes (128 KiB, 256 KiB) and for an empty B', () => {
    for (const n of [131072, 262144, 131071]) {
      const a = Uint8Array.from({ length: 37 }, (_, i) => i * 7);
      const b = Uint8Array.from({ length: n }, (_, i) => (i * 2654435761) >>> 24);
      const whole = new Uint8Array(a.length + n);
      whole.set(a);
      whole.set(b, a.length);
      expect(crc32Combine(crc32(a), crc32(b), n)).toBe(crc32(whole));
    }
    expect(crc32Combine(0x12345678, 0, 0)).toBe(0x12345678);
  });
});
