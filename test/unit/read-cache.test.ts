import { afterEach, describe, expect, it } from 'vitest';
import { BlockReadCache } from '../../src/core/fs/read-cache.ts';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { RealHarness, SimHarness, type Harness } from '../support/harness.ts';

describe('BlockReadCache', () => {
  it('recycles a buffer only once its entry has left the cache and nobody holds it', async () => {
    const c = new BlockReadCache(8, 2, 4);
    const a = c.buffer();
    const ea = c.add('a', Promise.resolve(a), a, 1); // a load still writing into a
    const b = c.buffer();
    c.add('b', Promise.resolve(b), b, 0);
    ea.pins++; // a reader
    c.add('c', Promise.resolve(c.buffer()), undefined, 0); // evicts a: pinned, so kept
    expect(c.has('a')).toBe(false);
    expect(c.buffer()).not.toBe(a);
    c.unpin(ea); // the load ends
    expect(c.buffer()).not.toBe(a);
    c.unpin(ea); // the reader ends: a is free now
    expect(c.buffer()).toBe(a);
    c.drop('b');
    expect(c.buffer()).toBe(b);
    expect(c.size).toBe(1);
  });
});

/** Distinct bytes per (file, block): nothing deduplicates. */
function fileData(file: number, blockBytes: number, blocks: number): Uint8Array {
  const out = new Uint8Array(blockBytes * blocks);
  let x = (file + 1) * 0x9e3779b1;
  for (let i = 0; i < out.length; i++) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    out[i] = x & 0xff;
  }
  return out;
}

const backends: Array<[string, (cacheSizeBytes: number) => Harness]> = [
  ['sim', (cacheSizeBytes) => new SimHarness(7, { cacheSizeBytes })],
  ['real', (cacheSizeBytes) => new RealHarness({ cacheSizeBytes })],
];

describe.each(backends)('engine read-ahead on %s drivers', (_name, make) => {
  let h: Harness;
  afterEach(() => h?.cleanup());

  for (const cacheSizeBytes of [64 << 10, 1 << 20]) {
    it(`interleaved sequential readers, rewrites and truncates read the current bytes (cache ${cacheSizeBytes >> 10} KiB)`, async () => {
      h = make(cacheSizeBytes);
      await h.format();
      let engine = await h.open();
      let fs = new PathFs(engine);
      const bs = h.options.blockSizeBytes;
      const blocks = 150;
      const data = [0, 1, 2].map((f) => fileData(f, bs, blocks));
      for (let f = 0; f < 3; f++) {
        fs.create(`/f${f}`);
        await h.run(fs.write(`/f${f}`, 0, data[f].slice()));
      }
      await h.run(engine.close());
      engine = await h.open(); // cold: every block comes from the data file
      fs = new PathFs(engine);
      const inos = [0, 1, 2].map((f) => fs.resolve(`/f${f}`));
      for (const ino of inos) engine.open(ino);
      // Three sequential readers at once, in pieces of different sizes.
      const readAll = async (f: number, piece: number): Promise<Uint8Array> => {
        const out = new Uint8Array(data[f].length);
        for (let at = 0; at < out.length; at += piece) {
          const n = await engine.readInto(inos[f], at, out.subarray(at, Math.min(out.length, at + piece)));
          expect(n).toBe(Math.min(piece, out.length - at));
        }
        return out;
      };
      const got = await h.run(Promise.all([readAll(0, bs), readAll(1, 3 * bs + 100), readAll(2, bs / 2)]));
      for (let f = 0; f < 3; f++) expect(Buffer.compare(got[f], data[f])).toBe(0);
      // A reader half way through file 0 while its later blocks are rewritten and cut.
      const half = (blocks / 2) * bs;
      const out = new Uint8Array(half);
      await h.run(engine.readInto(inos[0], 0, out));
      await h.run(engine.readInto(inos[0], half, new Uint8Array(bs)));
      const fresh = fileData(9, bs, 10);
      await h.run(engine.write(inos[0], half + bs, fresh.slice()));
      await h.run(engine.truncate(inos[0], half + 5 * bs));
      await h.run(engine.commit());
      const tail = new Uint8Array(6 * bs);
      const n = await h.run(engine.readInto(inos[0], half, tail));
      expect(n).toBe(5 * bs);
      expect(Buffer.compare(tail.subarray(0, bs), data[0].subarray(half, half + bs))).toBe(0);
      expect(Buffer.compare(tail.subarray(bs, 5 * bs), fresh.subarray(0, 4 * bs))).toBe(0);
      // Files 1 and 2 again, and file 1 deleted under a cache that holds its blocks.
      const again = await h.run(Promise.all([readAll(1, 2 * bs), readAll(2, bs)]));
      expect(Buffer.compare(again[0], data[1])).toBe(0);
      expect(Buffer.compare(again[1], data[2])).toBe(0);
      for (const ino of inos) engine.release(ino);
      fs.unlink('/f1');
      fs.create('/g');
      await h.run(fs.write('/g', 0, data[2].slice()));
      expect(Buffer.compare(await h.run(fs.readFile('/g')), data[2])).toBe(0);
      await h.run(engine.close());
    });
  }
});
