import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { contentEnd } from '../../src/core/fs/engine.ts';

describe('contentEnd', () => {
  it('equals a byte-by-byte scan for any buffer, offset and zero tail', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.nat(40), fc.nat(7), (head, zeros, offset) => {
        const buf = new Uint8Array(offset + head.length + zeros);
        buf.set(head, offset);
        const view = buf.subarray(offset);
        let want = view.length;
        while (want > 0 && view[want - 1] === 0) want--;
        expect(contentEnd(view)).toBe(want);
      }),
      { numRuns: 2000 },
    );
  });
});
