import { describe, expect, it } from 'vitest';
import { ScratchBuffers } from '../../src/core/bytes.ts';

describe('ScratchBuffers', () => {
  it('sizes new buffers to the request (power of two, within min and max) and never gives one too small', () => {
    const s = new ScratchBuffers(4, 64 * 1024, 2 * 1024 * 1024);
    expect(s.take(100).byteLength).toBe(64 * 1024);
    expect(s.take(70_000).byteLength).toBe(128 * 1024);
    expect(s.take(2 * 1024 * 1024).byteLength).toBe(2 * 1024 * 1024);
    // Beyond the maximum: exactly what was asked.
    expect(s.take(3_000_001).byteLength).toBe(3_000_001);
  });

  it('reuses a kept buffer that is big enough, and only such a one', () => {
    const s = new ScratchBuffers(4, 1024, 1 << 20);
    const small = s.take(1000);
    const big = s.take(300_000);
    s.give(small);
    s.give(big);
    expect(s.take(2000)).toBe(big);
    expect(s.keptCount).toBe(1);
    expect(s.take(500)).toBe(small);
    expect(s.keptCount).toBe(0);
  });

  it('when full, keeps the bigger buffers', () => {
    const s = new ScratchBuffers(2, 1024, 1 << 20);
    const a = s.take(1024);
    const b = s.take(4096);
    const c = s.take(65_536);
    s.give(a);
    s.give(b);
    s.give(c);
    expect(s.keptCount).toBe(2);
    expect(s.take(60_000)).toBe(c);
    expect(s.take(4000)).toBe(b);
    expect(s.keptCount).toBe(0);
  });
});
