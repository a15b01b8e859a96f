// Block buffers recycled between writers and the engine: a buffer handed back
// after its block reached the data file is reused for the next write, so any
// path that still referred to it would read someone else's bytes. Write many
// blocks through the pool (unique, duplicate, zero, compressed), read back
// while writes are in flight and after commits, compare with a model.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { fsck } from '../../src/core/fs/fsck.ts';
import { poolData } from '../../src/sim/workload.ts';
import { SimHarness } from '../support/harness.ts';

const BS = 4096;

describe('BlockBufferPool with an aligned source (a replica\'s O_DIRECT data file)', () => {
  it('takes new buffers from the source while it has them, keeps every one of them, and tells buffers apart by their start', async () => {
    const { BlockBufferPool } = await import('../../src/core/fs/buffer-pool.ts');
    const arena = new Uint8Array(4 * BS);
    let next = 0;
    const source = (n: number): Uint8Array | undefined => {
      if (next + n > arena.length) return undefined;
      const b = arena.subarray(next, next + n);
      next += n;
      return b;
    };
    const pool = new BlockBufferPool(BS, 2, source);
    const taken = Array.from({ length: 6 }, () => pool.take());
    expect(taken.slice(0, 4).map((b) => b.buffer === arena.buffer)).toEqual([true, true, true, true]);
    expect(taken.slice(4).map((b) => b.buffer === arena.buffer)).toEqual([false, false]);
    expect(taken.every((b) => pool.owns(b.subarray(0, 10)))).toBe(true);
    // A view of the arena that does not start a buffer is not the pool's.
    expect(pool.owns(arena.subarray(100, 200))).toBe(false);
    expect(pool.whole(taken[2].subarray(0, 7)).byteOffset).toBe(2 * BS);
    for (const b of taken) pool.give(b.subarray(0, 1));
    // All 4 aligned buffers kept (their memory is not returned to the source), plain ones up to keepMax.
    expect(pool.idle).toBe(4 + 0);
    expect(new Set(Array.from({ length: 4 }, () => pool.take().byteOffset))).toEqual(new Set([0, BS, 2 * BS, 3 * BS]));
  });
});

describe('recycled block buffers', () => {
  it('never corrupt stored or cached data (property over seeds and patterns)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 100_000 }),
        fc.array(fc.record({ bno: fc.nat(15), pattern: fc.nat(6), read: fc.boolean(), commit: fc.boolean() }), { minLength: 1, maxLength: 60 }),
        fc.constantFrom(0, 2),
        async (seed, steps, codec) => {
          const h = new SimHarness(seed, { codec, cacheSizeBytes: 6 * BS }, { disk: { latencyMsMin: 0, latencyMsMax: 3 } });
          await h.format();
          const engine = await h.open();
          const fs = new PathFs(engine);
          const ino = fs.create('/f').ino;
          const model = new Uint8Array(16 * BS);
          let size = 0;
          for (const s of steps) {
            // pattern 6 = zeros (a hole); the rest come from the shared pool of patterns
            const content = s.pattern === 6 ? new Uint8Array(BS) : poolData(BS, s.pattern, BS);
            const buf = engine.buffers.take();
            buf.set(content);
            const w = engine.write(ino, s.bno * BS, buf);
            model.set(content, s.bno * BS);
            size = Math.max(size, (s.bno + 1) * BS);
            // write() resolves once the block is in the cache; its data-file
            // write is usually still in flight: a read now is served from memory.
            await h.run(w);
            if (s.read) expect(await h.run(engine.read(ino, 0, size))).toEqual(model.subarray(0, size));
            if (s.commit) await h.run(engine.commit());
          }
          expect(await h.run(engine.read(ino, 0, size))).toEqual(model.subarray(0, size));
          await h.run(engine.close());
          const again = await h.open();
          expect(await h.run(again.read(ino, 0, size))).toEqual(model.subarray(0, size));
          await h.run(again.close());
          const report = await h.run(fsck(h.drivers(), h.options, { thorough: true, repair: false }));
          expect(report.problems).toEqual([]);
        },
      ),
      { numRuns: Math.ceil(Number(process.env.LESSFS_PROP_RUNS ?? 60) / 4) },
    );
  });
});
