import { describe, expect, it } from 'vitest';
import { RepeatLimiter } from '../../src/core/repeat-limiter.ts';

describe('RepeatLimiter', () => {
  it('passes one line per kind per interval and counts what it held back', () => {
    let now = 0;
    const r = new RepeatLimiter(() => now, 60_000);
    expect(r.pass('a', 'first')).toBe('first');
    expect(r.pass('a', 'second')).toBeUndefined();
    expect(r.pass('b', 'other kind')).toBe('other kind');
    now = 30_000;
    expect(r.pass('a', 'third')).toBeUndefined();
    now = 61_000;
    expect(r.pass('a', 'fourth')).toBe('fourth (and 2 more like it in the 61 s before)');
    now = 200_000;
    expect(r.pass('a', 'fifth')).toBe('fifth');
  });
});
