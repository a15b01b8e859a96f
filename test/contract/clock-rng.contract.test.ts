import { describe, it, expect, vi, afterEach } from 'vitest';
import fc from 'fast-check';
import type { Clock, Rng } from '../../src/core/drivers.ts';
import { createRealClock, realClock } from '../../src/real/clock.ts';
import { RealRng } from '../../src/real/rng.ts';
import { Domain, Scheduler } from '../../src/sim/scheduler.ts';
import { SimRng } from '../../src/sim/rng.ts';

// One contract, run against the real and the simulated driver alike.

interface ClockHarness {
  clock: Clock;
  /** Let the timers due within delayMs (from now) fire. */
  wait(delayMs: number): Promise<void>;
  /**
   * How early by nowMs() a timer may fire. Node starts a timer from libuv's cached
   * loop time, which lags Date.now() by however long the current tick has run.
   */
  earlyToleranceMs: number;
}

const clockHarnesses: Record<string, () => ClockHarness> = {
  real: () => ({
    clock: realClock,
    // A generous margin past the delay: timers are late under load, never early.
    wait: (delayMs) => new Promise((resolve) => setTimeout(resolve, delayMs + 50)),
    earlyToleranceMs: 5,
  }),
  sim: () => {
    const scheduler = new Scheduler({ seed: 'clock-contract' });
    return {
      clock: scheduler.clock(),
      wait: (delayMs) => scheduler.run({ untilMs: scheduler.nowMs() + delayMs }),
      earlyToleranceMs: 0,
    };
  },
};

for (const [name, makeHarness] of Object.entries(clockHarnesses)) {
  describe(`Clock contract: ${name}`, () => {
    it('fires timers in order of delay, equal delays in the order they were set', async () => {
      const h = makeHarness();
      const fired: string[] = [];
      const delaysMs: [string, number][] = [
        ['c30', 30],
        ['a0', 0],
        ['b10', 10],
        ['b10-second', 10],
        ['d45', 45],
        ['a0-second', 0],
        ['c20', 20],
      ];
      for (const [label, delayMs] of delaysMs) h.clock.setTimer(delayMs, () => fired.push(label));
      expect(fired).toEqual([]); // never inline
      await h.wait(60);
      expect(fired).toEqual(['a0', 'a0-second', 'b10', 'b10-second', 'c20', 'c30', 'd45']);
    });

    it('does not fire a timer before its delay has passed on nowMs()', async () => {
      const h = makeHarness();
      const startMs = h.clock.nowMs();
      let firedAtMs = -1;
      let seenAt5Ms = 0;
      h.clock.setTimer(25, () => {
        firedAtMs = h.clock.nowMs();
      });
      h.clock.setTimer(5, () => {
        seenAt5Ms = firedAtMs;
      });
      await h.wait(40);
      expect(seenAt5Ms).toBe(-1);
      expect(firedAtMs).toBeGreaterThanOrEqual(startMs + 25 - h.earlyToleranceMs);
    });

    it('cancel stops a pending timer; cancelling twice or after firing is harmless', async () => {
      const h = makeHarness();
      const fired: string[] = [];
      const keep = h.clock.setTimer(5, () => fired.push('keep'));
      const drop = h.clock.setTimer(5, () => fired.push('drop'));
      const dropLater = h.clock.setTimer(30, () => fired.push('dropLater'));
      drop.cancel();
      drop.cancel();
      h.clock.setTimer(10, () => {
        expect(fired).toEqual(['keep']);
        keep.cancel(); // already fired
        dropLater.cancel(); // pending, from inside another timer
      });
      await h.wait(50);
      expect(fired).toEqual(['keep']);
    });

    it('runs timers set from inside a timer callback', async () => {
      const h = makeHarness();
      const fired: string[] = [];
      h.clock.setTimer(5, () => {
        fired.push('outer');
        h.clock.setTimer(0, () => fired.push('inner-0'));
        h.clock.setTimer(10, () => fired.push('inner-10'));
        expect(fired).toEqual(['outer']); // still not inline
      });
      await h.wait(40);
      expect(fired).toEqual(['outer', 'inner-0', 'inner-10']);
    });

    it('keeps nowMs monotonic across timers', async () => {
      const h = makeHarness();
      const seenMs: number[] = [h.clock.nowMs()];
      for (const delayMs of [0, 3, 3, 7, 12]) h.clock.setTimer(delayMs, () => seenMs.push(h.clock.nowMs()));
      await h.wait(30);
      seenMs.push(h.clock.nowMs());
      expect(seenMs.length).toBe(7);
      for (let i = 1; i < seenMs.length; i++) expect(seenMs[i]).toBeGreaterThanOrEqual(seenMs[i - 1]);
      expect(seenMs[6] - seenMs[0]).toBeGreaterThanOrEqual(12 - h.earlyToleranceMs);
    });

    it('rejects negative and non-finite delays', () => {
      const h = makeHarness();
      for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
        expect(() => h.clock.setTimer(bad, () => undefined)).toThrow(RangeError);
      }
    });
  });
}

describe('Clock: sim specifics', () => {
  it('fires any set of timers sorted by (delay, order set) and at exactly their virtual time', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.nat({ max: 1000 }), { maxLength: 60 }), fc.array(fc.nat(), { maxLength: 20 }), async (delaysMs, cancels) => {
        const scheduler = new Scheduler({ seed: 1 });
        const clock = scheduler.clock();
        const fired: { index: number; atMs: number }[] = [];
        const handles = delaysMs.map((delayMs, index) => clock.setTimer(delayMs, () => fired.push({ index, atMs: clock.nowMs() })));
        const cancelled = new Set(delaysMs.length === 0 ? [] : cancels.map((c) => c % delaysMs.length));
        for (const i of cancelled) handles[i].cancel();
        await scheduler.run();
        const expected = delaysMs
          .map((delayMs, index) => ({ index, atMs: delayMs }))
          .filter((e) => !cancelled.has(e.index))
          .sort((x, y) => x.atMs - y.atMs || x.index - y.index);
        expect(fired).toEqual(expected);
      }),
      { numRuns: 100 },
    );
  });

  it("drops a dead domain's timers", async () => {
    const scheduler = new Scheduler({ seed: 2 });
    const domain = new Domain('node-a');
    const fired: string[] = [];
    scheduler.clock(domain).setTimer(10, () => fired.push('dead'));
    scheduler.clock().setTimer(10, () => fired.push('alive'));
    domain.kill();
    await scheduler.run();
    expect(fired).toEqual(['alive']);
  });
});

describe('Clock: real specifics', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('chains timers longer than setTimeout allows instead of firing them at once', () => {
    vi.useFakeTimers();
    const fired: number[] = [];
    realClock.setTimer(2 ** 31 + 1000, () => fired.push(1));
    vi.advanceTimersByTime(2 ** 31 - 1);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(1000);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual([1]);
  });

  it('cancels a chained long timer', () => {
    vi.useFakeTimers();
    const fired: number[] = [];
    const handle = realClock.setTimer(2 ** 31 + 1000, () => fired.push(1));
    vi.advanceTimersByTime(2 ** 31);
    handle.cancel();
    vi.advanceTimersByTime(2000);
    expect(fired).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('never lets nowMs go backwards when the wall clock does', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const clock = createRealClock();
    vi.setSystemTime(new Date('2030-01-01T00:00:10Z'));
    const before = clock.nowMs();
    vi.setSystemTime(new Date('2030-01-01T00:00:05Z'));
    expect(clock.nowMs()).toBe(before);
    vi.setSystemTime(new Date('2030-01-01T00:00:11Z'));
    expect(clock.nowMs()).toBe(before + 1000);
  });
});

// ---------------------------------------------------------------- Rng

const rngFactories: Record<string, () => Rng> = {
  real: () => new RealRng(),
  sim: () => new SimRng('rng-contract'),
};

function firstU32s(rng: Rng, count: number): number[] {
  return Array.from({ length: count }, () => rng.u32());
}

for (const [name, makeRng] of Object.entries(rngFactories)) {
  describe(`Rng contract: ${name}`, () => {
    it('u32 is an unsigned 32-bit integer and reaches the high half', () => {
      const rng = makeRng();
      let high = 0;
      for (let i = 0; i < 10_000; i++) {
        const v = rng.u32();
        expect(Number.isInteger(v) && v >= 0 && v <= 0xffffffff).toBe(true);
        if (v >= 2 ** 31) high++;
      }
      expect(high).toBeGreaterThan(4000);
      expect(high).toBeLessThan(6000);
    });

    it('float is in [0, 1) with mean near 1/2', () => {
      const rng = makeRng();
      let sum = 0;
      for (let i = 0; i < 10_000; i++) {
        const v = rng.float();
        expect(v >= 0 && v < 1).toBe(true);
        sum += v;
      }
      expect(Math.abs(sum / 10_000 - 0.5)).toBeLessThan(0.03);
    });

    it('int(n) is an integer in [0, n), for any n, and roughly uniform', () => {
      const rng = makeRng();
      fc.assert(
        fc.property(fc.integer({ min: 1, max: 2 ** 40 }), (n) => {
          for (let i = 0; i < 20; i++) {
            const v = rng.int(n);
            expect(Number.isInteger(v) && v >= 0 && v < n).toBe(true);
          }
        }),
        { numRuns: 200 },
      );
      for (let i = 0; i < 100; i++) expect(rng.int(1)).toBe(0);
      // 10 buckets × 1000 expected: ±200 is over 6 standard deviations.
      const counts = new Array<number>(10).fill(0);
      for (let i = 0; i < 10_000; i++) counts[rng.int(10)]++;
      for (const c of counts) expect(Math.abs(c - 1000)).toBeLessThan(200);
    });

    it('int rejects a bound that is not positive', () => {
      const rng = makeRng();
      expect(() => rng.int(0)).toThrow(RangeError);
      expect(() => rng.int(-5)).toThrow(RangeError);
    });

    it('bytes(n) returns n varied bytes', () => {
      const rng = makeRng();
      expect(rng.bytes(0)).toEqual(new Uint8Array(0));
      for (const n of [1, 3, 4, 5, 100, 1000, 5000, 70_000]) {
        const b = rng.bytes(n);
        expect(b).toBeInstanceOf(Uint8Array);
        expect(b.length).toBe(n);
      }
      const big = rng.bytes(64 * 1024);
      let sum = 0;
      const seen = new Set<number>();
      for (const v of big) {
        sum += v;
        seen.add(v);
      }
      expect(seen.size).toBe(256);
      expect(Math.abs(sum / big.length - 127.5)).toBeLessThan(3);
      // Consecutive calls do not repeat each other.
      expect(Buffer.from(rng.bytes(32)).equals(Buffer.from(rng.bytes(32)))).toBe(false);
    });

    it('split streams differ from each other and from the parent', () => {
      const parent = makeRng();
      const a = parent.split('a');
      const b = parent.split('b');
      const streams = [firstU32s(parent, 8), firstU32s(a, 8), firstU32s(b, 8)].map((s) => s.join(','));
      expect(new Set(streams).size).toBe(3);
      // A child is an Rng in its own right.
      const grandchild = a.split('x');
      expect(grandchild.int(10)).toBeLessThan(10);
      expect(grandchild.bytes(4).length).toBe(4);
    });
  });
}

describe('Rng: sim specifics', () => {
  it('the same seed gives the same streams, different seeds different ones', () => {
    fc.assert(
      fc.property(fc.oneof(fc.integer(), fc.string({ maxLength: 20 })), (seed) => {
        const x = new SimRng(seed);
        const y = new SimRng(seed);
        expect(firstU32s(x, 16)).toEqual(firstU32s(y, 16));
        expect(x.float()).toBe(y.float());
        expect(x.int(1000)).toBe(y.int(1000));
        expect(Array.from(x.bytes(37))).toEqual(Array.from(y.bytes(37)));
        expect(firstU32s(x.split('disk'), 8)).toEqual(firstU32s(y.split('disk'), 8));
        const other = new SimRng(`${String(seed)}-other`);
        expect(firstU32s(other, 8)).not.toEqual(firstU32s(new SimRng(seed), 8));
      }),
      { numRuns: 100 },
    );
  });

  it('split depends on the seed and label only: draws on either side do not perturb the other', () => {
    const parent = new SimRng(7);
    const child = parent.split('net');
    const childFirst = firstU32s(child, 8);
    firstU32s(child, 500);
    // Splitting, and drawing from the child, leave the parent's stream alone...
    expect(firstU32s(parent, 8)).toEqual(firstU32s(new SimRng(7), 8));
    // ...and the parent's draws do not change what a child gets.
    const busy = new SimRng(7);
    firstU32s(busy, 1000);
    expect(firstU32s(busy.split('net'), 8)).toEqual(childFirst);
    expect(firstU32s(busy.split('disk'), 8)).not.toEqual(childFirst);
  });
});

describe('Rng: real specifics', () => {
  it('two instances draw different streams', () => {
    expect(firstU32s(new RealRng(), 8)).not.toEqual(firstU32s(new RealRng(), 8));
  });

  it('rejects a bound or length it cannot serve', () => {
    const rng = new RealRng();
    expect(() => rng.int(2 ** 53)).toThrow(RangeError);
    expect(() => rng.int(2.5)).toThrow(RangeError);
    expect(() => rng.bytes(-1)).toThrow(RangeError);
    expect(() => rng.bytes(1.5)).toThrow(RangeError);
  });

  it('split returns a RealRng', () => {
    expect(new RealRng().split('x')).toBeInstanceOf(RealRng);
  });
});
