// The scheduler's run loop lets every promise continuation of an event run
// before the next event (drain(): without a turn of the event loop), and the
// trace hash does not depend on how the trace is cut into pieces.

import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { drain, Scheduler } from '../../src/sim/scheduler.ts';

describe('drain', () => {
  it('resolves only after a long chain of continuations, and before a timer or an immediate', async () => {
    const seen: string[] = [];
    let chain: Promise<void> = Promise.resolve();
    for (let i = 0; i < 500; i++) chain = chain.then(() => undefined);
    void chain.then(() => seen.push('chain'));
    // A chain that starts from inside another continuation.
    void Promise.resolve().then(async () => {
      for (let i = 0; i < 200; i++) await null;
      seen.push('nested');
    });
    setImmediate(() => seen.push('immediate'));
    await drain();
    seen.push('drained');
    expect(seen.length).toBe(3);
    expect([...seen.slice(0, 2)].sort()).toEqual(['chain', 'nested']);
    expect(seen[2]).toBe('drained');
  });
});

describe('Scheduler.run', () => {
  it('runs each event after the continuations of the one before it, in (time, sequence) order', async () => {
    const s = new Scheduler({ seed: 1 });
    const order: string[] = [];
    // Each event resolves a promise whose chain (50 steps) schedules the next event at the same instant.
    const hop = (n: number): void => {
      order.push(`event ${n}`);
      if (n === 40) return;
      let p: Promise<void> = Promise.resolve();
      for (let i = 0; i < 50; i++) p = p.then(() => undefined);
      void p.then(() => {
        order.push(`chain ${n}`);
        s.schedule(0, `hop ${n + 1}`, () => hop(n + 1));
      });
    };
    s.schedule(5, 'hop 0', () => hop(0));
    // Queued at the same instant right after hop 0: it runs once hop 0's chain has finished (and scheduled hop 1).
    s.schedule(5, 'other', () => order.push('other'));
    await s.run();
    expect(order.slice(0, 5)).toEqual(['event 0', 'chain 0', 'other', 'event 1', 'chain 1']);
    expect(order.filter((x) => x.startsWith('event')).length).toBe(41);
    expect(s.stepsRun).toBe(42);
  });

  it('a bounded run awaited through runUntilSettled stops at its untilMs: the loop around it runs nothing past it', async () => {
    const s = new Scheduler({ seed: 3 });
    const ran: number[] = [];
    const tick = (): void => {
      ran.push(s.nowMs());
      if (s.nowMs() < 10_000) s.schedule(100, 'tick', tick);
    };
    s.schedule(0, 'tick', tick);
    for (let round = 1; round <= 5; round++) {
      await s.runUntilSettled(s.run({ untilMs: round * 1000 + 50 }));
      expect(s.nowMs()).toBe(round * 1000 + 50);
      expect(ran[ran.length - 1]).toBe(round * 1000);
    }
    // A campaign makes thousands of short runs: each still sees every event once, in order.
    for (let i = 0; i < 4000 && s.pending() > 0; i++) await s.run({ untilMs: s.nowMs() + 2 });
    expect(ran).toEqual(Array.from({ length: 101 }, (_, i) => i * 100));
  });

  it('trace hash is the SHA-256 of every line, whatever the number of lines (flushed in pieces)', () => {
    const s = new Scheduler({ seed: 2 });
    const h = createHash('sha256');
    for (let i = 0; i < 20_000; i++) {
      const line = `line ${i} ${'x'.repeat(i % 17)}`;
      s.trace(line);
      h.update(`${line}\n`);
      if (i === 3 || i === 19_999) expect(s.traceHash()).toBe(`${h.copy().digest('hex').slice(0, 16)}:${i + 1}`);
    }
  });
});
