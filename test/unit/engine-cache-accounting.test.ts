// The write cache's byte accounting: what writers wait on against CACHESIZE
// must be what the cache holds. Writes that cover no whole block (a pipe's
// odd-sized writes) leave every block dirty until a commit freezes the cache
// and hashes them all at once; those bytes must then count once, as the new
// blocks they became (before the fix they counted as dirty buffers too until
// the commit ended: 231 MiB counted at CACHESIZE=128 on a real mount).

import { describe, expect, it } from 'vitest';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { poolData } from '../../src/sim/workload.ts';
import { SimHarness } from '../support/harness.ts';

const BS = 4096;
const CACHE = 64 * BS;
const WRITE = 3000;

describe('write cache accounting', () => {
  it('dirty blocks hashed by a commit count once; the cache stays within CACHESIZE; the write queue holds only cached blocks', async () => {
    const h = new SimHarness(5, { cacheSizeBytes: CACHE });
    await h.format();
    const engine = await h.open();
    const fs = new PathFs(engine);
    let steps = 0;
    let maxCounted = 0;
    let maxQueued = 0;
    const check = (): void => {
      const a = engine.writeCacheAccounting();
      steps++;
      maxCounted = Math.max(maxCounted, a.countedBytes);
      maxQueued = Math.max(maxQueued, a.queuedWriteBytes);
      if (a.countedBytes !== a.heldBytes) throw new Error(`step ${steps}: write cache counts ${a.countedBytes} bytes, holds ${a.heldBytes}`);
      if (a.queuedWriteBytes > a.newBlockExtentBytes) throw new Error(`step ${steps}: write queue ${a.queuedWriteBytes} bytes, new blocks in the cache ${a.newBlockExtentBytes}`);
    };
    // At every step of the simulation, and after every write.
    h.scheduler.traceSink = check;
    try {
      // Four writers, each 1 MiB in writes of 3000 bytes (none covers a whole block).
      const writers = [0, 1, 2, 3].map(async (w) => {
        const path = `/f${w}`;
        fs.create(path);
        const data = poolData(BS, 10 + w, 1 << 20);
        for (let off = 0; off < data.length; off += WRITE) {
          await fs.write(path, off, data.slice(off, off + WRITE));
          check();
        }
      });
      await h.run(Promise.all(writers));
      await h.run(engine.commit());
      expect(steps).toBeGreaterThan(1000);
      // Each writer may add one write (two partial blocks) past its wait for room.
      expect(maxCounted).toBeLessThanOrEqual(CACHE + 4 * 2 * BS);
      // A commit queues the blocks it hashes at once, past the queue's 8 MiB
      // room limit if there are that many: they are the cache's (checked above).
      expect(maxQueued).toBeGreaterThan(0);
      for (let w = 0; w < 4; w++) expect(Buffer.from(await h.run(fs.readFile(`/f${w}`))).equals(poolData(BS, 10 + w, 1 << 20)), `/f${w}`).toBe(true);
    } finally {
      h.scheduler.traceSink = undefined;
      await h.run(engine.close());
    }
  });
});
