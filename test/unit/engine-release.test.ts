// Deleting a file with more blocks than one commit may carry: its blocks are
// released in steps (FsEngine.destroyInode, releaseStepBlocks), each commit
// stays small, other operations go on between steps, and a crash in the
// middle leaves an orphan the next mount finishes.

import { describe, expect, it } from 'vitest';
import { fsck } from '../../src/core/fs/fsck.ts';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { SimHarness } from '../support/harness.ts';

const BS = 4096;
const STEP = 100;
const BLOCKS = 1000;

/** Blocks no other block deduplicates with. */
function unique(tag: number, blocks: number): Uint8Array {
  const out = new Uint8Array(blocks * BS);
  const view = new DataView(out.buffer);
  for (let j = 0; j < out.length; j += 4) view.setUint32(j, Math.imul(tag * 0x10000 + j + 1, 0x9e3779b1) >>> 0);
  return out;
}

/** Store operations of each commit the log reports, from line `from` on. */
function commitOps(lines: readonly string[], from = 0): { reason: string; ops: number }[] {
  const out: { reason: string; ops: number }[] = [];
  for (const l of lines.slice(from)) {
    const m = /commit txn \d+ \(([^)]*)\): (\d+) ops/.exec(l);
    if (m) out.push({ reason: m[1], ops: Number(m[2]) });
  }
  return out;
}

async function setUp(seed: number): Promise<{ h: SimHarness; fs: PathFs; big: Uint8Array; keep: Uint8Array }> {
  const h = new SimHarness(seed, { releaseStepBlocks: STEP, cacheSizeBytes: 64 << 20 });
  await h.format();
  const fs = new PathFs(await h.open());
  const big = unique(1, BLOCKS);
  const keep = unique(2, 10);
  fs.create('/big');
  fs.create('/keep');
  for (let at = 0; at < big.length; at += 32 * BS) await h.run(fs.write('/big', at, big.subarray(at, at + 32 * BS)));
  await h.run(fs.write('/keep', 0, keep));
  await h.run(fs.fsync());
  return { h, fs, big, keep };
}

describe('release of a large deleted file in steps (seeds 21, 22)', () => {
  it('each commit carries at most a few steps of changes; the blocks are all freed; fsck is clean', async () => {
    const { h, fs, keep } = await setUp(21);
    const before = await h.run(fs.engine.statfs());
    const from = h.machine.logger.lines.length;
    fs.unlink('/big');
    expect(fs.exists('/big')).toBe(false);
    // Other operations go on while the blocks are released.
    fs.create('/during');
    await h.run(fs.write('/during', 0, keep));
    await h.run(fs.engine.releaseDone());
    await h.run(fs.fsync());
    const commits = commitOps(h.machine.logger.lines, from);
    const release = commits.filter((c) => c.reason.startsWith('release'));
    expect(release.length, JSON.stringify(commits)).toBeGreaterThanOrEqual(BLOCKS / (4 * STEP));
    // A step changes a block map entry, a block record and its free extent.
    for (const c of commits) expect(c.ops, JSON.stringify(commits)).toBeLessThanOrEqual(4 * STEP + 3 * STEP + 50);
    const after = await h.run(fs.engine.statfs());
    expect(before.uniqueBlocks).toBeGreaterThanOrEqual(BLOCKS);
    expect(after.uniqueBlocks).toBe(10); // /keep's, which /during shares
    expect(await h.run(fs.readFile('/during'))).toEqual(keep);
    await h.run(fs.engine.close());
    const report = await h.run(fsck(h.drivers(), h.options, { thorough: true, repair: false }));
    expect(report.problems).toEqual([]);
  });

  it('a crash in the middle leaves an orphan that the next mount releases the same way', async () => {
    const { h, fs, keep } = await setUp(22);
    const uniqueBefore = (await h.run(fs.engine.statfs())).uniqueBlocks;
    const from = h.machine.logger.lines.length;
    fs.unlink('/big');
    await h.run(fs.fsync('/keep'));
    const released = (): number => commitOps(h.machine.logger.lines, from).filter((c) => c.reason.startsWith('release')).length;
    await h.scheduler.run({ done: () => released() >= 2, untilMs: h.scheduler.nowMs() + 600_000 });
    expect(released()).toBeGreaterThanOrEqual(2);
    h.machine.crash();
    // lessfsck after the crash, before a mount: the orphan is no problem.
    const between = await h.run(fsck(h.drivers(), h.options, { thorough: true, repair: false }));
    expect(between.problems).toEqual([]);
    const again = new PathFs(await h.open());
    expect(again.exists('/big')).toBe(false);
    await h.run(again.engine.releaseDone());
    await h.run(again.fsync());
    expect(uniqueBefore).toBeGreaterThanOrEqual(BLOCKS);
    expect((await h.run(again.engine.statfs())).uniqueBlocks).toBe(10); // /keep's
    expect(await h.run(again.readFile('/keep'))).toEqual(keep);
    await h.run(again.engine.close());
    const report = await h.run(fsck(h.drivers(), h.options, { thorough: true, repair: false }));
    expect(report.problems).toEqual([]);
  });

  it('a truncation of a large file goes from the end in steps, the size changes last, and a crash between steps shows no other file\'s blocks (seed 23)', async () => {
    const { h, fs, big, keep } = await setUp(23);
    const from = h.machine.logger.lines.length;
    const cutAt = 3 * BS + 100;
    const truncating = fs.truncate('/big', cutAt);
    // Writes to another file go on meanwhile; one to /big waits for the truncation.
    await h.run(fs.write('/keep', 0, keep));
    const later = fs.write('/big', cutAt, keep.subarray(0, 10));
    await h.run(truncating);
    await h.run(later);
    const commits = commitOps(h.machine.logger.lines, from);
    expect(commits.filter((c) => c.reason.startsWith('truncation')).length, JSON.stringify(commits)).toBeGreaterThanOrEqual(2);
    for (const c of commits) expect(c.ops, JSON.stringify(commits)).toBeLessThanOrEqual(4 * STEP + 3 * STEP + 50);
    const want = new Uint8Array(cutAt + 10);
    want.set(big.subarray(0, cutAt));
    want.set(keep.subarray(0, 10), cutAt);
    expect(await h.run(fs.readFile('/big'))).toEqual(want);
    await h.run(fs.engine.close());
    expect((await h.run(fsck(h.drivers(), h.options, { thorough: true, repair: false }))).problems).toEqual([]);

    // Crash between steps: the old size, the released tail reads as zeros.
    const c = await setUp(24);
    const at = c.h.machine.logger.lines.length;
    void c.fs.truncate('/big', 0).catch(() => undefined);
    const steps = (): number => commitOps(c.h.machine.logger.lines, at).filter((x) => x.reason.startsWith('truncation')).length;
    await c.h.scheduler.run({ done: () => steps() >= 2, untilMs: c.h.scheduler.nowMs() + 600_000 });
    expect(steps()).toBeGreaterThanOrEqual(2);
    c.h.machine.crash();
    const again = new PathFs(await c.h.open());
    const seen = await c.h.run(again.readFile('/big'));
    expect(seen.length).toBe(c.big.length);
    for (let b = 0; b < BLOCKS; b++) {
      const got = seen.subarray(b * BS, (b + 1) * BS);
      if (!got.every((x) => x === 0)) expect(Buffer.from(got).equals(Buffer.from(c.big.subarray(b * BS, (b + 1) * BS))), `block ${b}`).toBe(true);
    }
    expect(seen.subarray((BLOCKS - 1) * BS).every((x) => x === 0)).toBe(true);
    expect(seen.subarray(0, BS)).toEqual(c.big.subarray(0, BS));
    await c.h.run(again.engine.close());
    expect((await c.h.run(fsck(c.h.drivers(), c.h.options, { thorough: true, repair: false }))).problems).toEqual([]);
  });
});

describe('metadata changes start a commit when the open transaction is large (seed 25)', () => {
  it('creating thousands of files between commit intervals never makes a commit larger than the store takes', async () => {
    // 1 MiB cache: a commit starts at 512 KiB of counted entries (256 bytes each);
    // the store takes 3,000 operations per commit.
    const h = new SimHarness(25, { cacheSizeBytes: 1 << 20, commitIntervalMs: 600_000 }, { store: { commitOpsMax: 3000 } });
    await h.format();
    const fs = new PathFs(await h.open());
    const from = h.machine.logger.lines.length;
    for (let i = 0; i < 3000; i++) {
      fs.create(`/f${i}`);
      if (i % 20 === 19) await h.scheduler.run({ untilMs: h.scheduler.nowMs() + 1 });
    }
    await h.run(fs.fsync());
    const commits = commitOps(h.machine.logger.lines, from);
    expect(commits.filter((c) => c.reason === 'cache pressure').length, JSON.stringify(commits)).toBeGreaterThanOrEqual(2);
    for (const c of commits) expect(c.ops, JSON.stringify(commits)).toBeLessThanOrEqual(3000);
    expect(h.machine.logger.lines.slice(from).filter((l) => /failed/.test(l))).toEqual([]);
    await h.run(fs.engine.close());
    const again = new PathFs(await h.open());
    expect(again.exists('/f2999')).toBe(true);
    await h.run(again.engine.close());
  });
});

