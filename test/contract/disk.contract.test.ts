import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Disk } from '../../src/core/drivers.ts';
import { DiskError } from '../../src/core/errors.ts';
import { RealDisk } from '../../src/real/disk.ts';
import { SimDiskMedium } from '../../src/sim/disk.ts';
import { SimRng } from '../../src/sim/rng.ts';
import { Domain, Scheduler } from '../../src/sim/scheduler.ts';
import { drivenDisk, realRunner, simRunner, type DrivenDisk, type Runner } from '../support/driven-disk.ts';

// One body of tests, run against every Disk driver: what core may rely on.

interface DiskUnderTest {
  disk: Disk;
  run: Runner;
  /** An existing, empty directory to work in. */
  root: string;
  cleanup(): Promise<void>;
}

type DiskFactory = () => Promise<DiskUnderTest>;

function simFactory(seed: number, latencyMsMin: number, latencyMsMax: number): DiskFactory {
  return async () => {
    const scheduler = new Scheduler({ seed });
    const medium = new SimDiskMedium(scheduler, scheduler.rng.split('disk'), { latencyMsMin, latencyMsMax });
    const disk = medium.driver(new Domain('node'));
    const run = simRunner(scheduler);
    await run(disk.mkdir('/work'));
    return { disk, run, root: '/work', cleanup: async () => undefined };
  };
}

const realFactory: DiskFactory = async () => {
  const root = await mkdtemp(join(tmpdir(), 'lessfs-disk-contract-'));
  return { disk: new RealDisk(), run: realRunner, root, cleanup: () => rm(root, { recursive: true, force: true }) };
};

async function errorOf(promise: Promise<unknown>): Promise<DiskError> {
  const outcome = await promise.then(
    () => ({ ok: true as const }),
    (err: unknown) => ({ ok: false as const, err }),
  );
  if (outcome.ok) throw new Error('expected the operation to fail');
  expect(outcome.err).toBeInstanceOf(DiskError);
  return outcome.err as DiskError;
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<DiskError> {
  const err = await errorOf(promise);
  expect(err.code).toBe(code);
  return err;
}

const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values);
const text = (s: string): Uint8Array => new TextEncoder().encode(s);

function pattern(length: number, salt: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (i * 31 + salt) & 0xff;
  return out;
}

function diskContract(name: string, factory: DiskFactory): void {
  describe(`Disk contract: ${name}`, () => {
    let t: DiskUnderTest;
    let d: DrivenDisk;
    let root: string;
    const p = (...parts: string[]): string => [root, ...parts].join('/');

    beforeEach(async () => {
      t = await factory();
      d = drivenDisk(t.disk, t.run);
      root = t.root;
    });
    afterEach(async () => {
      await t.cleanup();
    });

    describe('open', () => {
      it('fails with ENOENT for a missing file, and creates it with create', async () => {
        const err = await expectCode(d.open(p('a')), 'ENOENT');
        expect(err.path).toBe(p('a'));
        expect(err.message.split('ENOENT').length - 1, err.message).toBe(1); // the code once, not "ENOENT: ENOENT: …"
        const fh = await d.open(p('a'), { create: true });
        expect(fh.path).toBe(p('a'));
        expect(await fh.sizeBytes()).toBe(0);
        await fh.close();
        expect(await d.stat(p('a'))).toMatchObject({ sizeBytes: 0, isDirectory: false });
      });

      it('keeps existing contents when opened again with create', async () => {
        const fh = await d.open(p('a'), { create: true });
        await fh.write(0, text('hello'));
        await fh.close();
        const again = await d.open(p('a'), { create: true });
        expect(await again.read(0, 100)).toEqual(text('hello'));
        await again.close();
      });

      it('fails with EEXIST for create+exclusive on an existing file', async () => {
        await (await d.open(p('a'), { create: true, exclusive: true })).close();
        await expectCode(d.open(p('a'), { create: true, exclusive: true }), 'EEXIST');
      });

      it('fails with ENOENT when the parent directory is missing, ENOTDIR when it is a file', async () => {
        await expectCode(d.open(p('nodir', 'a'), { create: true }), 'ENOENT');
        await (await d.open(p('f'), { create: true })).close();
        await expectCode(d.open(p('f', 'a'), { create: true }), 'ENOTDIR');
      });

      it('fails with EISDIR on a directory, read-only or not', async () => {
        await d.mkdir(p('dir'));
        await expectCode(d.open(p('dir')), 'EISDIR');
        await expectCode(d.open(p('dir'), { readOnly: true }), 'EISDIR');
      });

      it('rejects relative paths with EINVAL', async () => {
        await expectCode(d.open('relative/path', { create: true }), 'EINVAL');
        await expectCode(d.stat('relative'), 'EINVAL');
      });
    });

    describe('read and write', () => {
      it('reads back what was written, short only at end of file', async () => {
        const fh = await d.open(p('f'), { create: true });
        const data = pattern(10_000, 7);
        await fh.write(0, data);
        expect(await fh.sizeBytes()).toBe(10_000);
        expect(await fh.read(0, 10_000)).toEqual(data);
        expect(await fh.read(100, 50)).toEqual(data.slice(100, 150));
        expect(await fh.read(9_990, 100)).toEqual(data.slice(9_990));
        expect((await fh.read(10_000, 10)).length).toBe(0);
        expect((await fh.read(20_000, 10)).length).toBe(0);
        expect((await fh.read(0, 0)).length).toBe(0);
        // Into a caller's buffer: a view of it, short only at end of file.
        const into = new Uint8Array(200).fill(0xee);
        const got = await fh.read(100, 50, into);
        expect(got.buffer).toBe(into.buffer);
        expect(got).toEqual(data.slice(100, 150));
        expect(into[50]).toBe(0xee);
        expect(await fh.read(9_990, 100, into)).toEqual(data.slice(9_990));
        await expect(fh.read(0, 300, into)).rejects.toThrow(RangeError);
        await fh.close();
      });

      it('overwrites in place without changing the size', async () => {
        const fh = await d.open(p('f'), { create: true });
        await fh.write(0, text('abcdefgh'));
        await fh.write(2, text('XY'));
        expect(await fh.read(0, 8)).toEqual(text('abXYefgh'));
        expect(await fh.sizeBytes()).toBe(8);
        await fh.close();
      });

      it('writev writes its chunks back to back, past the end included', async () => {
        const fh = await d.open(p('f'), { create: true });
        await fh.write(0, text('0123456789'));
        await fh.writev(4, [text('ab'), text(''), text('cdef'), text('ghij')]);
        expect(await fh.read(0, 100)).toEqual(text('0123abcdefghij'));
        const big = [new Uint8Array(300_000).fill(7), new Uint8Array(5).fill(8)];
        await fh.writev(20, big);
        const back = await fh.read(20, 300_005);
        expect(back.length).toBe(300_005);
        expect(back[299_999]).toBe(7);
        expect(back[300_004]).toBe(8);
        expect(await fh.read(14, 6)).toEqual(new Uint8Array(6));
        await fh.close();
      });

      it('readv reads into its targets back to back, short only at end of file', async () => {
        const fh = await d.open(p('f'), { create: true });
        await fh.write(0, text('0123456789'));
        const a = new Uint8Array(3);
        const b = new Uint8Array(0);
        const c = new Uint8Array(4);
        expect(await fh.readv(1, [a, b, c])).toBe(7);
        expect(a).toEqual(text('123'));
        expect(c).toEqual(text('4567'));
        const e = new Uint8Array(4).fill(9);
        const f = new Uint8Array(4).fill(9);
        expect(await fh.readv(6, [e, f])).toBe(4);
        expect(e).toEqual(text('6789'));
        expect(f).toEqual(new Uint8Array(4).fill(9));
        expect(await fh.readv(20, [new Uint8Array(2)])).toBe(0);
        const big = [new Uint8Array(200_000), new Uint8Array(100_000)];
        await fh.write(10, new Uint8Array(300_000).fill(5));
        expect(await fh.readv(10, big)).toBe(300_000);
        expect(big[0][199_999]).toBe(5);
        expect(big[1][99_999]).toBe(5);
        await fh.close();
      });

      it('zero-fills a hole when writing past the end', async () => {
        const fh = await d.open(p('f'), { create: true });
        await fh.write(0, bytes(1, 2));
        await fh.write(6, bytes(9));
        expect(await fh.read(0, 100)).toEqual(bytes(1, 2, 0, 0, 0, 0, 9));
        await fh.close();
      });

      it('returns data the caller cannot alias, and copies data it is given', async () => {
        const fh = await d.open(p('f'), { create: true });
        const data = bytes(1, 2, 3);
        await fh.write(0, data);
        data[0] = 99;
        const got = await fh.read(0, 3);
        expect(got).toEqual(bytes(1, 2, 3));
        got[1] = 77;
        expect(await fh.read(0, 3)).toEqual(bytes(1, 2, 3));
        await fh.close();
      });

      it('rejects negative positions and lengths with EINVAL', async () => {
        const fh = await d.open(p('f'), { create: true });
        await expectCode(fh.read(-1, 1), 'EINVAL');
        await expectCode(fh.read(0, -1), 'EINVAL');
        await expectCode(fh.write(-5, bytes(1)), 'EINVAL');
        await expectCode(fh.truncate(-1), 'EINVAL');
        await fh.close();
      });

      it('sees writes through another handle on the same file', async () => {
        const a = await d.open(p('f'), { create: true });
        const b = await d.open(p('f'));
        await a.write(0, text('shared'));
        expect(await b.read(0, 6)).toEqual(text('shared'));
        await a.close();
        await b.close();
      });
    });

    describe('append', () => {
      it('returns the offset each append was written at', async () => {
        const fh = await d.open(p('log'), { create: true });
        expect(await fh.append(text('abc'))).toBe(0);
        expect(await fh.append(text('de'))).toBe(3);
        expect(await fh.append(new Uint8Array(0))).toBe(5);
        expect(await fh.append(text('f'))).toBe(5);
        expect(await fh.read(0, 100)).toEqual(text('abcdef'));
        await fh.close();
      });

      it('appends after existing contents and after truncate', async () => {
        const w = await d.open(p('log'), { create: true });
        await w.write(0, text('12345'));
        await w.close();
        const fh = await d.open(p('log'));
        expect(await fh.append(text('6'))).toBe(5);
        await fh.truncate(2);
        expect(await fh.append(text('x'))).toBe(2);
        expect(await fh.read(0, 10)).toEqual(text('12x'));
        await fh.close();
      });

      it('gives concurrent appends distinct offsets in issue order', async () => {
        const fh = await d.open(p('log'), { create: true });
        const chunks = Array.from({ length: 20 }, (_, i) => pattern(100 + i * 13, i));
        const offsets = await t.run(Promise.all(chunks.map((c) => fh.raw.append(c))));
        let expected = 0;
        for (let i = 0; i < chunks.length; i++) {
          expect(offsets[i]).toBe(expected);
          expect(await fh.read(expected, chunks[i].length)).toEqual(chunks[i]);
          expected += chunks[i].length;
        }
        expect(await fh.sizeBytes()).toBe(expected);
        await fh.close();
      });
    });

    describe('direct handles (OpenFileOptions.direct)', () => {
      it('read back every write, aligned or not, from aligned memory or not, also after a reopen', async () => {
        const fh = await d.open(p('data'), { create: true, direct: true });
        const aligned = (n: number, salt: number): Uint8Array => {
          const b = t.disk.alignedBuffer?.(n) ?? new Uint8Array(n);
          expect(b).toEqual(new Uint8Array(n)); // zero-filled
          b.set(pattern(n, salt));
          return b;
        };
        const model = new Uint8Array(64 * 1024);
        const put = async (at: number, data: Uint8Array, gathered?: Uint8Array[]): Promise<void> => {
          if (gathered) await t.run(fh.raw.writev(at, gathered));
          else await fh.write(at, data);
          model.set(data, at);
        };
        await put(0, aligned(8192, 1));
        await put(8192, pattern(4096, 2)); // plain memory
        await put(4096, aligned(1024, 3)); // aligned buffer over a part written before
        await put(12_288 + 100, aligned(512, 4)); // an unaligned position
        const a = aligned(2048, 5);
        const b = aligned(1536, 6);
        await put(16_384, new Uint8Array([...a, ...b]), [a, b]); // gathered, aligned
        const c = pattern(700, 7);
        await put(20_000, new Uint8Array([...a.subarray(0, 512), ...c]), [a.subarray(0, 512), c]); // gathered, mixed
        await t.run(fh.raw.sync());
        const size = 20_000 + 512 + 700;
        expect(await fh.sizeBytes()).toBe(size);
        expect(await fh.read(0, size)).toEqual(model.subarray(0, size));
        await fh.close();
        const again = await d.open(p('data'), { direct: true });
        expect(await again.read(0, size)).toEqual(model.subarray(0, size));
        await again.close();
      });
    });

    describe('truncate and size', () => {
      it('shrinks, then extends with zeros', async () => {
        const fh = await d.open(p('f'), { create: true });
        await fh.write(0, pattern(1000, 1));
        await fh.truncate(10);
        expect(await fh.sizeBytes()).toBe(10);
        expect(await fh.read(0, 1000)).toEqual(pattern(1000, 1).slice(0, 10));
        await fh.truncate(20);
        const after = await fh.read(0, 1000);
        expect(after.length).toBe(20);
        expect(after.slice(0, 10)).toEqual(pattern(1000, 1).slice(0, 10));
        expect(after.slice(10)).toEqual(new Uint8Array(10));
        expect((await d.stat(p('f')))?.sizeBytes).toBe(20);
        await fh.truncate(0);
        expect(await fh.sizeBytes()).toBe(0);
        await fh.close();
      });
    });

    describe('handles', () => {
      it('read-only handles read but refuse changes with EBADF', async () => {
        const w = await d.open(p('f'), { create: true });
        await w.write(0, text('ro'));
        await w.close();
        const fh = await d.open(p('f'), { readOnly: true });
        expect(await fh.read(0, 2)).toEqual(text('ro'));
        await expectCode(fh.write(0, text('x')), 'EBADF');
        await expectCode(fh.append(text('x')), 'EBADF');
        await expectCode(fh.truncate(0), 'EBADF');
        expect(await fh.read(0, 2)).toEqual(text('ro'));
        await fh.close();
      });

      it('fails with EBADF after close', async () => {
        const fh = await d.open(p('f'), { create: true });
        await fh.close();
        await expectCode(fh.read(0, 1), 'EBADF');
        await expectCode(fh.write(0, bytes(1)), 'EBADF');
        await expectCode(fh.append(bytes(1)), 'EBADF');
        await expectCode(fh.sizeBytes(), 'EBADF');
        await expectCode(fh.truncate(0), 'EBADF');
        await expectCode(fh.sync(), 'EBADF');
        await expectCode(fh.close(), 'EBADF');
      });

      it('syncs files and directories', async () => {
        const fh = await d.open(p('f'), { create: true });
        await fh.write(0, text('durable'));
        await fh.sync();
        await fh.close();
        await d.syncDir(root);
        await expectCode(d.syncDir(p('missing')), 'ENOENT');
      });
    });

    describe('stat changeTag', () => {
      it('changes when the file is written, truncated, or replaced under its name; not when only read', async () => {
        const fh = await d.open(p('a'), { create: true });
        await fh.write(0, text('abcd'));
        const t1 = (await d.stat(p('a')))?.changeTag;
        await fh.read(0, 4);
        expect((await d.stat(p('a')))?.changeTag).toBe(t1);
        await new Promise((r) => setTimeout(r, 5)); // real mtimes tick; the sim counts writes
        await fh.write(1, text('X'));
        const t2 = (await d.stat(p('a')))?.changeTag;
        expect(t2).not.toBe(t1);
        await new Promise((r) => setTimeout(r, 5));
        await fh.truncate(2);
        const t3 = (await d.stat(p('a')))?.changeTag;
        expect(t3).not.toBe(t2);
        await fh.close();
        const other = await d.open(p('b'), { create: true });
        await other.write(0, text('ab'));
        await other.close();
        await d.rename(p('b'), p('a'));
        expect((await d.stat(p('a')))?.changeTag).not.toBe(t3);
      });
    });

    describe('rename', () => {
      it('moves a file to a new name', async () => {
        const fh = await d.open(p('a'), { create: true });
        await fh.write(0, text('A'));
        await fh.close();
        await d.rename(p('a'), p('b'));
        expect(await d.stat(p('a'))).toBeUndefined();
        const b = await d.open(p('b'));
        expect(await b.read(0, 10)).toEqual(text('A'));
        await b.close();
      });

      it('replaces an existing file, and open handles follow the file they opened', async () => {
        const a = await d.open(p('a'), { create: true });
        await a.write(0, text('new'));
        const b = await d.open(p('b'), { create: true });
        await b.write(0, text('old!'));
        await d.rename(p('a'), p('b'));
        expect(await d.readdir(root)).toEqual(['b']);
        const reread = await d.open(p('b'));
        expect(await reread.read(0, 10)).toEqual(text('new'));
        await a.write(3, text('er'));
        expect(await reread.read(0, 10)).toEqual(text('newer'));
        expect(await b.read(0, 10)).toEqual(text('old!'));
        await Promise.all([a.close(), b.close(), reread.close()]);
      });

      it('moves a file between directories and a directory with its children', async () => {
        await d.mkdir(p('x'));
        await d.mkdir(p('y'));
        await (await d.open(p('x', 'f'), { create: true })).close();
        await d.rename(p('x', 'f'), p('y', 'g'));
        expect(await d.readdir(p('x'))).toEqual([]);
        expect(await d.readdir(p('y'))).toEqual(['g']);
        await d.rename(p('y'), p('x', 'z'));
        expect(await d.readdir(p('x', 'z'))).toEqual(['g']);
        expect(await d.stat(p('y'))).toBeUndefined();
      });

      it('renaming a file onto itself changes nothing', async () => {
        await (await d.open(p('a'), { create: true })).close();
        await d.rename(p('a'), p('a'));
        expect(await d.readdir(root)).toEqual(['a']);
      });

      it('fails with POSIX errors', async () => {
        await expectCode(d.rename(p('missing'), p('b')), 'ENOENT');
        await (await d.open(p('f'), { create: true })).close();
        await expectCode(d.rename(p('f'), p('nodir', 'f')), 'ENOENT');
        await d.mkdir(p('dir'));
        await d.mkdir(p('full'));
        await (await d.open(p('full', 'x'), { create: true })).close();
        await expectCode(d.rename(p('f'), p('dir')), 'EISDIR');
        await expectCode(d.rename(p('dir'), p('f')), 'ENOTDIR');
        await expectCode(d.rename(p('dir'), p('full')), 'ENOTEMPTY');
        await expectCode(d.rename(p('full'), p('full', 'sub')), 'EINVAL');
        // A failed rename changes nothing.
        expect(await d.readdir(root)).toEqual(['dir', 'f', 'full']);
        expect(await d.readdir(p('full'))).toEqual(['x']);
        // An empty directory may be replaced by a directory.
        await d.rename(p('full'), p('dir'));
        expect(await d.readdir(root)).toEqual(['dir', 'f']);
        expect(await d.readdir(p('dir'))).toEqual(['x']);
      });
    });

    describe('unlink', () => {
      it('removes the name; an open handle keeps the contents', async () => {
        const fh = await d.open(p('f'), { create: true });
        await fh.write(0, text('still here'));
        await d.unlink(p('f'));
        expect(await d.stat(p('f'))).toBeUndefined();
        expect(await d.readdir(root)).toEqual([]);
        expect(await fh.read(0, 100)).toEqual(text('still here'));
        await fh.close();
        await expectCode(d.open(p('f')), 'ENOENT');
      });

      it('fails with ENOENT for a missing file and EISDIR for a directory', async () => {
        await expectCode(d.unlink(p('missing')), 'ENOENT');
        await d.mkdir(p('dir'));
        await expectCode(d.unlink(p('dir')), 'EISDIR');
        expect(await d.readdir(root)).toEqual(['dir']);
      });
    });

    describe('readdir, mkdir and stat', () => {
      it('lists names sorted', async () => {
        for (const name of ['zeta', 'alpha', 'Beta', 'm10', 'm9']) await (await d.open(p(name), { create: true })).close();
        await d.mkdir(p('dir'));
        expect(await d.readdir(root)).toEqual(['Beta', 'alpha', 'dir', 'm10', 'm9', 'zeta']);
      });

      it('readdir fails with ENOENT and ENOTDIR', async () => {
        await expectCode(d.readdir(p('missing')), 'ENOENT');
        await (await d.open(p('f'), { create: true })).close();
        await expectCode(d.readdir(p('f')), 'ENOTDIR');
      });

      it('mkdir creates one level, or a chain with recursive', async () => {
        await d.mkdir(p('a'));
        expect(await d.stat(p('a'))).toMatchObject({ isDirectory: true });
        await expectCode(d.mkdir(p('a')), 'EEXIST');
        await expectCode(d.mkdir(p('b', 'c')), 'ENOENT');
        await d.mkdir(p('b', 'c', 'd'), { recursive: true });
        await d.mkdir(p('b', 'c', 'd'), { recursive: true });
        await d.mkdir(p('b', 'c'), { recursive: true });
        expect(await d.readdir(p('b'))).toEqual(['c']);
        expect(await d.readdir(p('b', 'c'))).toEqual(['d']);
      });

      it('mkdir refuses a file in the way', async () => {
        await (await d.open(p('f'), { create: true })).close();
        await expectCode(d.mkdir(p('f')), 'EEXIST');
        await expectCode(d.mkdir(p('f'), { recursive: true }), 'EEXIST');
        await expectCode(d.mkdir(p('f', 'g')), 'ENOTDIR');
        await expectCode(d.mkdir(p('f', 'g', 'h'), { recursive: true }), 'ENOTDIR');
      });

      it('stat reports size and kind, undefined when missing', async () => {
        const fh = await d.open(p('f'), { create: true });
        await fh.write(0, pattern(123, 0));
        await fh.close();
        expect(await d.stat(p('f'))).toMatchObject({ sizeBytes: 123, isDirectory: false });
        expect(await d.stat(root)).toMatchObject({ isDirectory: true });
        expect(await d.stat(p('missing'))).toBeUndefined();
        expect(await d.stat(p('missing', 'deeper'))).toBeUndefined();
        await expectCode(d.stat(p('f', 'x')), 'ENOTDIR');
      });
    });

    describe('space', () => {
      it('reports total and free bytes', async () => {
        const s = await d.space(root);
        expect(s.totalBytes).toBeGreaterThan(0);
        expect(s.freeBytes).toBeGreaterThanOrEqual(0);
        expect(s.freeBytes).toBeLessThanOrEqual(s.totalBytes);
        await expectCode(d.space(p('missing')), 'ENOENT');
      });
    });
  });
}

diskContract('SimDisk seed=1 latency 0..3 ms', simFactory(1, 0, 3));
diskContract('SimDisk seed=2 latency 0 ms', simFactory(2, 0, 0));
diskContract('SimDisk seed=3 latency 0.5..7.5 ms', simFactory(3, 0.5, 7.5));
diskContract('RealDisk (temp dir)', realFactory);

describe('RealDisk: O_DIRECT writes', () => {
  it('go past the page cache only from aligned memory at aligned positions and lengths; the rest through it', async () => {
    const { mkdtemp: mk, rm: remove } = await import('node:fs/promises');
    const dir = await mk(join(tmpdir(), 'lessfs-direct-'));
    try {
      const disk = new RealDisk();
      const fh = (await disk.open(join(dir, 'data'), { create: true, direct: true })) as unknown as {
        write(at: number, b: Uint8Array): Promise<void>;
        writev(at: number, b: Uint8Array[]): Promise<void>;
        read(at: number, n: number): Promise<Uint8Array>;
        close(): Promise<void>;
        directStats?: { directWrites: number; bufferedWrites: number };
      };
      const stats = fh.directStats;
      expect(stats).toBeDefined();
      const buf = disk.alignedBuffer(4096) as Uint8Array;
      buf.fill(9);
      await fh.write(0, buf);
      await fh.writev(4096, [buf.subarray(0, 512), buf.subarray(512, 1024)]);
      // Where O_DIRECT is refused (tmpfs) every write goes through the page cache.
      const direct = stats!.directWrites;
      expect(direct === 2 || (direct === 0 && stats!.bufferedWrites === 2)).toBe(true);
      await fh.write(8192, new Uint8Array(512).fill(1)); // plain memory
      await fh.write(512 * 17 + 1, buf.subarray(0, 512)); // unaligned position
      await fh.write(9216, buf.subarray(0, 100)); // unaligned length
      await fh.write(9728, buf.subarray(8, 520)); // unaligned address
      expect(stats!.directWrites).toBe(direct);
      expect(stats!.bufferedWrites).toBe(4 + (2 - direct));
      expect(await fh.read(0, 4096)).toEqual(new Uint8Array(4096).fill(9));
      await fh.close();
    } finally {
      await remove(dir, { recursive: true, force: true });
    }
  });

  it('a direct write the kernel refuses (EINVAL) is written through the page cache, and direct writes stop', async () => {
    const { AlignedArena } = await import('../../src/real/disk.ts');
    const { mkdtemp: mk, rm: remove } = await import('node:fs/promises');
    // An arena that lets a misaligned buffer through, as a device with 4 KiB sectors would refuse a 512-aligned one.
    class LenientArena extends AlignedArena {
      override writable(b: Uint8Array): boolean {
        return b.length % 512 === 0;
      }
    }
    const arena = new LenientArena();
    const dir = await mk(join(tmpdir(), 'lessfs-direct-'));
    try {
      const disk = new RealDisk(arena);
      const fh = (await disk.open(join(dir, 'data'), { create: true, direct: true })) as unknown as {
        write(at: number, b: Uint8Array): Promise<void>;
        writev(at: number, b: Uint8Array[]): Promise<void>;
        read(at: number, n: number): Promise<Uint8Array>;
        close(): Promise<void>;
        directStats: { directWrites: number; bufferedWrites: number; refused: boolean };
      };
      const buf = disk.alignedBuffer(8192) as Uint8Array;
      for (let i = 0; i < buf.length; i++) buf[i] = i % 251;
      const misaligned = buf.subarray(16, 16 + 4096);
      await fh.write(0, misaligned);
      await fh.writev(4096, [misaligned.subarray(0, 512), misaligned.subarray(512, 1024)]);
      expect(await fh.read(0, 4096)).toEqual(misaligned);
      expect(await fh.read(4096, 1024)).toEqual(misaligned.subarray(0, 1024));
      // Where the file system has no O_DIRECT at all, nothing was tried direct.
      if (fh.directStats.directWrites > 0) {
        expect(fh.directStats.refused).toBe(true);
        expect(fh.directStats.directWrites).toBe(1);
        expect(fh.directStats.bufferedWrites).toBe(1);
      }
      await fh.close();
    } finally {
      await remove(dir, { recursive: true, force: true });
    }
  });

  it('reads into aligned memory at aligned positions go past the page cache, see buffered writes, and stop at the end of the file', async () => {
    const { mkdtemp: mk, rm: remove } = await import('node:fs/promises');
    const dir = await mk(join(tmpdir(), 'lessfs-direct-read-'));
    try {
      const disk = new RealDisk();
      const fh = (await disk.open(join(dir, 'data'), { create: true, direct: true })) as unknown as {
        write(at: number, b: Uint8Array): Promise<void>;
        read(at: number, n: number, into?: Uint8Array): Promise<Uint8Array>;
        close(): Promise<void>;
        directStats: { directWrites: number; directReads: number; refused: boolean };
      };
      const src = disk.alignedBuffer(8192) as Uint8Array;
      for (let i = 0; i < src.length; i++) src[i] = (i * 7) % 253;
      await fh.write(0, src); // direct where the file system can
      const tail = new Uint8Array(700).fill(5);
      await fh.write(8192, tail); // plain memory, unaligned length: through the page cache, still dirty there
      const into = disk.alignedBuffer(16384) as Uint8Array;
      into.fill(0xee);
      // 1000 bytes asked for: 1024 read (the rounded-up length fits), 1000 come back.
      const a = await fh.read(512, 1000, into);
      expect(a.length).toBe(1000);
      expect(a.buffer).toBe(into.buffer);
      expect(a).toEqual(src.subarray(512, 1512));
      const supported = fh.directStats.directReads === 1;
      // Where O_DIRECT is refused (tmpfs) nothing is read direct.
      expect(supported || fh.directStats.directWrites === 0).toBe(true);
      // Across the page-cache write and past the end of the file (8892 bytes).
      const b = await fh.read(4096, 8192, into);
      expect(b.length).toBe(8892 - 4096);
      expect(b.subarray(0, 4096)).toEqual(src.subarray(4096));
      expect(b.subarray(4096)).toEqual(tail);
      expect(fh.directStats.directReads).toBe(supported ? 2 : 0);
      // Not direct: no room for the rounded-up length, an unaligned position, plain memory, an unaligned address.
      expect(await fh.read(0, 1000, into.subarray(0, 1000))).toEqual(src.subarray(0, 1000));
      expect(await fh.read(100, 512, into)).toEqual(src.subarray(100, 612));
      expect(await fh.read(0, 512, new Uint8Array(512))).toEqual(src.subarray(0, 512));
      expect(await fh.read(0, 512, into.subarray(8))).toEqual(src.subarray(0, 512));
      expect(fh.directStats.directReads).toBe(supported ? 2 : 0);
      await fh.close();
    } finally {
      await remove(dir, { recursive: true, force: true });
    }
  });

  it('the arena reserves memory a chunk at a time, up to its capacity; every chunk\'s buffers are direct-capable', async () => {
    const { AlignedArena } = await import('../../src/real/disk.ts');
    const arena = new AlignedArena(3 * 65536, 65536);
    const a = arena.take(65536 - 512) as Uint8Array;
    // Does not fit in what is left of the first chunk: a second one.
    const b = arena.take(1024) as Uint8Array;
    expect(b.buffer).not.toBe(a.buffer);
    expect(b.byteOffset).toBe(0);
    // Larger than a chunk: a chunk of its own, if the capacity allows.
    expect(arena.take(2 * 65536)).toBeUndefined();
    const c = arena.take(65536) as Uint8Array;
    expect(arena.take(512)).toBeUndefined();
    for (const x of [a, b, c]) {
      expect(arena.writable(x)).toBe(true);
      expect(arena.readable(x, x.length)).toBe(true);
    }
    expect(arena.readable(b, 1536)).toBe(false);
    expect(arena.readable(b.subarray(0, 1000), 1000)).toBe(false);
  });

  it('aligned buffers: multiples of 512 only, zero-filled, until the arena is used up', async () => {
    const { AlignedArena } = await import('../../src/real/disk.ts');
    const arena = new AlignedArena(4096);
    expect(() => arena.take(100)).toThrow(/multiple of 512/);
    const a = arena.take(2048) as Uint8Array;
    const b = arena.take(2048) as Uint8Array;
    expect(a).toEqual(new Uint8Array(2048));
    expect(b.byteOffset).toBe(a.byteOffset + 2048);
    expect(arena.take(512)).toBeUndefined();
    expect(arena.writable(a)).toBe(true);
    expect(arena.writable(a.subarray(1))).toBe(false);
    expect(arena.writable(new Uint8Array(512))).toBe(false);
  });
});
