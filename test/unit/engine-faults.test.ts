// Bad conditions the engine must survive without losing data: a full disk,
// failing commits, and determinism of the whole stack under one seed.

import { describe, expect, it } from 'vitest';
import { FsEngine, SPACE_RESERVE_FILE } from '../../src/core/fs/engine.ts';
import { fsck } from '../../src/core/fs/fsck.ts';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { SimRng } from '../../src/sim/rng.ts';
import { applyToFs, fsDigest, poolData, randomOp } from '../../src/sim/workload.ts';
import { SimHarness } from '../support/harness.ts';

const BS = 4096;

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code;
  }
}

describe('full disk (seed 11)', () => {
  it('fsync fails with ENOSPC, nothing is lost, and it succeeds once space is back', async () => {
    const h = new SimHarness(11);
    await h.format();
    const engine = await h.open();
    const fs = new PathFs(engine);
    fs.create('/keep');
    const keep = poolData(BS, 1, 3 * BS);
    await h.run(fs.write('/keep', 0, keep));
    await h.run(fs.fsync('/keep'));
    // Room for one more block; /big brings two new ones (patterns 4 and 5).
    h.machine.disk.setCapacity(h.machine.disk.usedBytes() + BS);
    fs.create('/big');
    const big = poolData(BS, 2, 8 * BS);
    await h.run(fs.write('/big', 0, big));
    expect(await h.run(codeOf(fs.fsync('/big')))).toBe('ENOSPC');
    // Everything is still readable from the cache, and the durable file is intact.
    expect(await h.run(fs.readFile('/big'))).toEqual(big);
    expect(await h.run(fs.readFile('/keep'))).toEqual(keep);
    h.machine.disk.setCapacity(1 << 30);
    await h.run(fs.fsync('/big'));
    await h.run(engine.close());
    const again = new PathFs(await h.open());
    expect(await h.run(again.readFile('/big'))).toEqual(big);
    expect(await h.run(again.readFile('/keep'))).toEqual(keep);
    await h.run(again.engine.close());
    const report = await h.run(fsck(h.drivers(), h.options, { thorough: true, repair: false }));
    expect(report.problems).toEqual([]);
  });
});

describe('failing store commits (seed 5)', () => {
  it('a commit that fails applies nothing and is retried with everything in it', async () => {
    const h = new SimHarness(5, {}, { store: { commitErrorProbability: 0.5 } });
    await h.format().catch(() => undefined);
    // format itself may hit the injected error: retry until it lands
    let engine;
    for (let i = 0; !engine; i++) {
      expect(i).toBeLessThan(20);
      try {
        engine = await h.open();
      } catch (err) {
        if ((err as { code?: string }).code === 'ENOTFORMATTED') await h.format().catch(() => undefined);
        else if ((err as { code?: string }).code !== 'EIO') throw err;
      }
    }
    const fs = new PathFs(engine);
    const files = new Map<string, Uint8Array>();
    for (let i = 0; i < 12; i++) {
      const name = `/f${i}`;
      fs.create(name);
      const data = poolData(BS, i % 5, BS * (1 + (i % 3)) + i);
      await h.run(fs.write(name, 0, data));
      files.set(name, data);
      await h.run(fs.fsync(name).catch((err: unknown) => {
        if (!(err instanceof Error) || (err as { code?: string }).code !== 'EIO') throw err;
      }));
    }
    for (let i = 0; ; i++) {
      expect(i).toBeLessThan(50);
      if ((await h.run(codeOf(engine.fsync()))) === undefined) break;
    }
    for (const [name, data] of files) expect(await h.run(fs.readFile(name))).toEqual(data);
  });
});

describe('determinism', () => {
  async function traceOf(seed: number): Promise<{ hash: string; digest: string }> {
    const h = new SimHarness(seed, { commitIntervalMs: 20, cacheSizeBytes: 8 * BS }, {
      disk: { latencyMsMin: 0, latencyMsMax: 3 },
      store: { commitLatencyMsMin: 1, commitLatencyMsMax: 5 },
    });
    await h.format();
    const engine = await h.open();
    const fs = new PathFs(engine);
    const rng = new SimRng(seed).split('ops');
    for (let i = 0; i < 150; i++) {
      const op = randomOp(rng, BS);
      if (op.op === 'commit') await h.run(engine.commit());
      else await h.run(applyToFs(fs, op, BS));
      await h.scheduler.run({ untilMs: h.scheduler.nowMs() + rng.int(10) });
    }
    const digest = await h.run(fsDigest(fs));
    await h.run(engine.close());
    return { hash: h.scheduler.traceHash(), digest };
  }

  it('same seed => same trace hash and same tree (seeds 1, 2)', async () => {
    const a = await traceOf(1);
    const b = await traceOf(1);
    expect(b).toEqual(a);
    const c = await traceOf(2);
    expect(c.hash).not.toBe(a.hash);
  });
});

describe('writes continue while a commit is in flight (seed 3)', () => {
  it('a write issued during a slow commit lands in the next transaction', async () => {
    const h = new SimHarness(3, {}, { store: { commitLatencyMsMin: 50, commitLatencyMsMax: 50 } });
    await h.format();
    const engine = await h.open();
    const fs = new PathFs(engine);
    fs.create('/a');
    await h.run(fs.write('/a', 0, poolData(BS, 1, BS)));
    const txn = engine.txn;
    const committing = engine.commit();
    // The commit is frozen and in flight; the cache keeps taking writes.
    fs.create('/b');
    await h.run(fs.write('/b', 0, poolData(BS, 2, BS)));
    expect(engine.txn).toBe(txn + 1);
    await h.run(committing);
    expect(engine.dirty).toBe(true); // /b is in the next transaction
    await h.run(engine.commit());
    expect(engine.dirty).toBe(false);
    expect(engine.txn).toBe(txn + 2);
    expect(await h.run(fs.readFile('/b'))).toEqual(poolData(BS, 2, BS));
  });
});


describe('background data sync (seed 12)', () => {
  it('syncs the data file every 32 MiB written; a failed one stops the filesystem before any commit points at the lost pages', async () => {
    const h = new SimHarness(12, { blockSizeBytes: 131072, cacheSizeBytes: 256 << 20, commitIntervalMs: 3_600_000 });
    await h.format();
    const d = h.drivers();
    let syncs = 0;
    let failSyncs = false;
    // The data file's handle counts its syncs, and fails them on demand (EIO after writeback trouble).
    const open = async (path: string, options?: { create?: boolean; readOnly?: boolean }) => {
        const f = await d.disk.open(path, options);
        if (!path.endsWith('/blockdata.dta')) return f;
        return new Proxy(f, {
          get(target, prop, receiver) {
            if (prop === 'sync') {
              return async () => {
                syncs++;
                if (failSyncs) throw Object.assign(new Error('EIO: writeback failed'), { code: 'EIO' });
                return target.sync();
              };
            }
            const v = Reflect.get(target, prop, receiver);
            return typeof v === 'function' ? v.bind(target) : v;
          },
        });
    };
    const disk = new Proxy(d.disk, {
      get(target, prop) {
        if (prop === 'open') return open;
        const v = Reflect.get(target, prop);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    const drivers = { ...d, disk };
    const engine = await h.run(FsEngine.open(drivers, h.options));
    const fs = new PathFs(engine);
    fs.create('/a');
    const chunk = 1 << 20;
    // Unique blocks (no two deduplicate).
    const bytes = (i: number): Uint8Array => {
      const out = new Uint8Array(chunk);
      const view = new DataView(out.buffer);
      for (let j = 0; j < chunk; j += 4) view.setUint32(j, Math.imul(i * chunk + j + 1, 0x9e3779b1) >>> 0);
      return out;
    };
    for (let i = 0; i < 40; i++) await h.run(fs.write('/a', i * chunk, bytes(i)));
    await h.run(h.scheduler.run({ untilMs: h.scheduler.nowMs() + 30_000 }));
    // 40 MiB of new blocks, nothing committed yet: at least one sync ran on its own.
    expect(syncs).toBeGreaterThanOrEqual(1);
    failSyncs = true;
    // Writes go on until the stop (then every call fails with EIO).
    for (let i = 40; i < 80 && !engine.stopped; i++) await h.run(Promise.resolve().then(() => fs.write('/a', i * chunk, bytes(i))).catch(() => undefined));
    await h.run(h.scheduler.run({ untilMs: h.scheduler.nowMs() + 30_000 }));
    expect(engine.stopped).toBe(true);
    expect(await h.run(codeOf(Promise.resolve().then(() => fs.fsync('/a'))))).toBe('EIO');
    expect(h.machine.logger.lines.some((l) => /background fsync of the block data file failed \(EIO: writeback failed\): the filesystem stops/.test(l))).toBe(true);
  });
});

describe('a failed fsync of the data file (seed 15)', () => {
  it('no commit follows it, not even once the disk works again: the interval timer stops and a remount recovers the durable state', async () => {
    const h = new SimHarness(15, { commitIntervalMs: 1000 });
    await h.format();
    const engine = await h.open();
    const fs = new PathFs(engine);
    fs.create('/a');
    const a = poolData(BS, 1, 4 * BS);
    await h.run(fs.write('/a', 0, a));
    await h.run(fs.fsync('/a'));
    h.machine.disk.setOptions({ writeErrorProbability: 1, faultPathPrefix: h.options.blockDataPath, faultOps: ['sync'] });
    fs.create('/b');
    await h.run(fs.write('/b', 0, poolData(BS, 2, 4 * BS)));
    expect(await h.run(codeOf(fs.fsync('/b')))).toBe('EIO');
    expect(engine.stopped).toBe(true);
    // The next sync would succeed, but the kernel may have dropped /b's pages at the failed one.
    h.machine.disk.setOptions({ writeErrorProbability: 0 });
    const lines = h.machine.logger.lines.length;
    await h.scheduler.run({ untilMs: h.scheduler.nowMs() + 60_000 });
    expect(h.machine.logger.lines.slice(lines).filter((l) => /\[0\]/.test(l))).toEqual([]);
    expect(await h.run(codeOf(engine.commit('request')))).toBe('EIO');
    h.machine.crash();
    const again = new PathFs(await h.open());
    expect(await h.run(again.readFile('/a'))).toEqual(a);
    expect(again.exists('/b')).toBe(false);
    await h.run(again.engine.close());
  });
});

describe('data disk filled by the filesystem itself (seeds 13, 14)', () => {
  /** Blocks no other block deduplicates with. */
  const unique = (tag: number, blocks: number): Uint8Array => {
    const out = new Uint8Array(blocks * BS);
    const view = new DataView(out.buffer);
    for (let j = 0; j < out.length; j += 4) view.setUint32(j, Math.imul(tag * 0x10000 + j + 1, 0x9e3779b1) >>> 0);
    return out;
  };

  /**
   * A filesystem with keptBlocks fsynced in /kept, whose disk then has room
   * for two more blocks: /fill brings eight, and its fsync fails with ENOSPC.
   */
  async function filledDisk(h: SimHarness, keptBlocks: number, opened?: () => Promise<void>): Promise<{ engine: FsEngine; fs: PathFs; kept: Uint8Array }> {
    await h.format();
    const engine = await h.open();
    await opened?.();
    const fs = new PathFs(engine);
    fs.create('/kept');
    const kept = unique(1, keptBlocks);
    await h.run(fs.write('/kept', 0, kept));
    await h.run(fs.fsync('/kept'));
    h.machine.disk.setCapacity(h.machine.disk.usedBytes() + 2 * BS);
    fs.create('/fill');
    await h.run(fs.write('/fill', 0, unique(2, 8)).catch(() => undefined));
    expect(await h.run(codeOf(fs.fsync('/fill')))).toBe('ENOSPC');
    return { engine, fs, kept };
  }

  /** Close, reopen: the root holds exactly these files with these bytes, and a thorough fsck is clean. */
  async function remountedHolds(h: SimHarness, engine: FsEngine, files: Record<string, Uint8Array>): Promise<void> {
    await h.run(engine.close());
    const again = new PathFs(await h.open());
    expect(again.engine.readdir(1).map((e) => `/${e.name}`).sort()).toEqual(Object.keys(files).sort());
    for (const [name, bytes] of Object.entries(files)) expect(await h.run(again.readFile(name))).toEqual(bytes);
    await h.run(again.engine.close());
    const report = await h.run(fsck(h.drivers(), h.options, { thorough: true, repair: false }));
    expect(report.problems).toEqual([]);
  }

  it('deleting the file whose blocks could not be written lets commits and new writes go on; nothing fsynced is lost', async () => {
    const h = new SimHarness(13, { spaceReserveBytes: 8192 });
    const reserve = `${h.options.metaPath}/${SPACE_RESERVE_FILE}`;
    const disk = h.drivers().disk;
    const { engine, fs, kept: keep } = await filledDisk(h, 3, async () => {
      expect((await h.run(disk.stat(reserve)))?.sizeBytes).toBe(8192);
    });
    // The reserve went to the store (which may share the disk) at the first failed write.
    expect(await h.run(disk.stat(reserve))).toBeUndefined();
    expect(h.machine.logger.lines.some((l) => l.includes(`released the 8192 bytes set aside in ${reserve}`))).toBe(true);
    // The disk stays full: only deleting data makes room.
    fs.unlink('/fill');
    await h.run(engine.commit());
    expect(engine.dirty).toBe(false);
    fs.create('/new');
    const fresh = unique(3, 2);
    await h.run(fs.write('/new', 0, fresh));
    await h.run(fs.fsync('/new'));
    await remountedHolds(h, engine, { '/kept': keep, '/new': fresh });
  });

  it('while the data disk is full, new data that does not fit fails with ENOSPC at once; after deletes, a write waits for their commit and takes the space', async () => {
    const h = new SimHarness(14);
    const { engine, fs } = await filledDisk(h, 6);
    // A data write failed for want of space: new data is refused when it is written, not later.
    fs.create('/more');
    expect(await h.run(codeOf(Promise.resolve().then(() => fs.write('/more', 0, unique(3, 4)))))).toBe('ENOSPC');
    expect(h.machine.logger.lines.some((l) => /disk full \(/.test(l))).toBe(true);
    fs.unlink('/fill');
    fs.unlink('/kept');
    fs.unlink('/more');
    // /kept's six blocks are free inside the data file once the deletes are
    // committed: the write waits for that commit and takes them.
    fs.create('/new');
    const fresh = unique(4, 5);
    await h.run(fs.write('/new', 0, fresh));
    await h.run(fs.fsync('/new'));
    await remountedHolds(h, engine, { '/new': fresh });
  });

  it('a full metadata store refuses new files and directories (deletes go on) until a commit lands', async () => {
    const h = new SimHarness(15);
    await h.format();
    const engine = await h.open();
    const fs = new PathFs(engine);
    fs.create('/a');
    await h.run(fs.fsync('/a'));
    // The store's commits fail with EIO (as LMDB's failed page spill does) on a disk with no room left.
    h.machine.disk.setCapacity(h.machine.disk.usedBytes());
    h.machine.store.setOptions({ commitErrorProbability: 1 });
    fs.create('/b');
    const failed = await h.run(codeOf(fs.fsync('/b')));
    expect(failed).toBe('ENOSPC');
    expect(h.machine.logger.lines.some((l) => /disk full \(ENOSPC: the disk under \/lessfs\/mta is full/.test(l) && l.includes('files and directories are refused'))).toBe(true);
    expect(() => fs.create('/c')).toThrow(/ENOSPC: create 'c': the disk under \/lessfs\/mta is full/);
    expect(() => fs.mkdir('/d')).toThrow(/ENOSPC/);
    expect(() => fs.link('/a', '/e')).toThrow(/ENOSPC/);
    fs.unlink('/b'); // deletes go on
    h.machine.store.setOptions({ commitErrorProbability: 0 });
    h.machine.disk.setCapacity(1 << 30);
    await h.run(engine.commit());
    fs.create('/c');
    await h.run(fs.fsync('/c'));
    await h.run(engine.close());
    expect((await h.open()).readdir(1).map((e) => e.name).sort()).toEqual(['a', 'c']);
  });

  it('blocks accepted before the disk filled are retried into free space down to a small floor, so the delete of another file commits with them', async () => {
    const h = new SimHarness(16);
    const { engine, fs, kept } = await filledDisk(h, 3);
    // /fill stays; its unwritten blocks wait. Deleting /kept (3 blocks, durable)
    // commits with them once they fit: here the disk's own free space (the
    // capacity leaves room for them past the small floor) takes them.
    h.machine.disk.setCapacity(h.machine.disk.usedBytes() + 300 * 1024 + 6 * BS);
    fs.unlink('/kept');
    await h.run(engine.commit());
    expect(engine.dirty).toBe(false);
    expect(kept.length).toBe(3 * BS);
    await remountedHolds(h, engine, { '/fill': unique(2, 8) });
  });

  it('statfs after deletes: used (total - free) is the stored bytes, never negative', async () => {
    const h = new SimHarness(17);
    await h.format();
    const engine = await h.open();
    const fs = new PathFs(engine);
    fs.create('/a');
    fs.create('/b');
    await h.run(fs.write('/a', 0, unique(1, 8)));
    await h.run(fs.write('/b', 0, unique(2, 2)));
    await h.run(engine.commit());
    fs.unlink('/a');
    await h.run(engine.commit());
    const st = await h.run(engine.statfs());
    expect((st.totalBlocks - st.freeBlocks) * st.blockSizeBytes).toBe(st.storedBytes);
    expect(st.storedBytes).toBe(2 * BS);
    await h.run(engine.close());
  });
});

