import { afterEach, describe, expect, it } from 'vitest';
import { FsError } from '../../src/core/errors.ts';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { fsck } from '../../src/core/fs/fsck.ts';
import { T, TABLES } from '../../src/core/fs/schema.ts';
import { poolData } from '../../src/sim/workload.ts';
import { RealHarness, SimHarness, type Harness } from '../support/harness.ts';

const backends: Array<[string, () => Harness]> = [
  ['sim', () => new SimHarness(42)],
  ['real', () => new RealHarness()],
];

const code = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (err) {
    if (err instanceof FsError) return err.code;
    throw err;
  }
  return undefined;
};

describe.each(backends)('engine on %s drivers', (_name, make) => {
  let h: Harness;
  afterEach(() => h?.cleanup());

  it('stores, reads back, dedups and survives a remount', async () => {
    h = make();
    await h.format();
    let engine = await h.open();
    let fs = new PathFs(engine);
    fs.mkdir('/dir');
    fs.create('/dir/a');
    fs.create('/dir/b');
    const data = poolData(4096, 1, 4096 * 5 + 123);
    await h.run(fs.write('/dir/a', 0, data));
    await h.run(fs.write('/dir/b', 0, data));
    expect(await h.run(fs.readFile('/dir/a'))).toEqual(data);
    await h.run(engine.commit());
    const st = await h.run(engine.statfs());
    // Patterns 1..5 fill the 5 full blocks; the tail falls on pattern 0 (zeros),
    // which is a hole. b adds nothing: every block deduplicates.
    expect(st.uniqueBlocks).toBe(5);
    await h.run(engine.close());
    engine = await h.open();
    fs = new PathFs(engine);
    expect(await h.run(fs.readFile('/dir/b'))).toEqual(data);
    expect(fs.readdir('/dir').map((e) => e.name)).toEqual(['a', 'b']);
    fs.unlink('/dir/a');
    fs.unlink('/dir/b');
    await h.run(engine.close());
    const report = await h.run(fsck(h.drivers(), h.options, { thorough: true, repair: false }));
    expect(report.problems).toEqual([]);
    expect(report.uniqueBlocks).toBe(0);
    // The freed extents are free space; lose one entry and lessfsck finds the leak and repairs it.
    const store = await h.run(h.drivers().storeFactory.open({ path: h.options.metaPath, tables: TABLES, mapSizeBytes: h.options.lmdbMapSizeBytes }));
    const free = [...store.range(T.freespace)];
    expect(free.length).toBeGreaterThan(0);
    await h.run(store.commit([{ table: T.freespace, key: free[0].key, value: undefined }], { durable: true }));
    await h.run(store.close());
    const leaked = await h.run(fsck(h.drivers(), h.options, { thorough: false, repair: true }));
    expect(leaked.problems.map((p) => p.code)).toEqual(['ELEAK']);
    expect(leaked.problems[0].message).toMatch(/belong to no block and are not free/);
    const after = await h.run(fsck(h.drivers(), h.options, { thorough: true, repair: false }));
    expect(after.problems).toEqual([]);
  });

  it('names over 255 bytes are ENAMETOOLONG; a set-group-ID directory passes on its group', async () => {
    h = make();
    await h.format();
    const engine = await h.open();
    const fs = new PathFs(engine);
    expect(code(() => fs.stat(`/${'x'.repeat(256)}`))).toBe('ENAMETOOLONG');
    expect(code(() => fs.create(`/${'é'.repeat(128)}`))).toBe('ENAMETOOLONG');
    expect(code(() => fs.stat(`/${'x'.repeat(255)}`))).toBe('ENOENT');
    fs.mkdir('/g', 0o2775, { uid: 0, gid: 50 });
    const f = fs.create('/g/f', 0o644, { uid: 7, gid: 7 });
    expect(f.gid).toBe(50);
    const sub = fs.mkdir('/g/sub', 0o755, { uid: 7, gid: 7 });
    expect({ gid: sub.gid, setgid: (sub.mode & 0o2000) !== 0 }).toEqual({ gid: 50, setgid: true });
    await h.run(engine.close());
  });

  it('unaligned writes, truncate and sparse files', async () => {
    h = make();
    await h.format();
    const engine = await h.open();
    const fs = new PathFs(engine);
    fs.create('/f');
    await h.run(fs.write('/f', 10_000, new Uint8Array([1, 2, 3])));
    const all = await h.run(fs.readFile('/f'));
    expect(all.length).toBe(10_003);
    expect(all.subarray(0, 10_000).every((b) => b === 0)).toBe(true);
    expect([...all.subarray(10_000)]).toEqual([1, 2, 3]);
    await h.run(fs.truncate('/f', 10_001));
    await h.run(fs.truncate('/f', 20_000));
    const t = await h.run(fs.readFile('/f'));
    expect(t.length).toBe(20_000);
    expect(t[10_000]).toBe(1);
    expect(t[10_001]).toBe(0);
    expect(code(() => fs.rmdir('/f'))).toBe('ENOTDIR');
    expect(code(() => fs.unlink('/nope'))).toBe('ENOENT');
    await h.run(engine.close());
    const report = await h.run(fsck(h.drivers(), h.options, { thorough: true, repair: false }));
    expect(report.problems).toEqual([]);
  });
});
