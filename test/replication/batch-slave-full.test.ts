// A watchdir slave whose disk fills while it applies a shipped file
// (docs/replication-log.md, "A full disk on a batch slave"). Before: the
// commit failed with ENOSPC, the file was logged as refused ("nothing applied
// from it", untrue: its transactions stayed in the write cache), and the next
// poll took the position of that cache for durable, skipped the file as
// applied and renamed it -processed, and the next file too: a power loss then
// lost both files for good (the slave waited for a file renamed away).
// Now nothing of the file is kept unless all of it is durable, the file stays
// under its name, one line names the full disk, and the file is applied again
// by itself once there is room, without a restart.

import { describe, expect, it } from 'vitest';
import { parseRotatedLogName, processedLogName } from '../../src/core/replication/master-log.ts';
import { SimRng } from '../../src/sim/rng.ts';
import { advance, BS, cluster, completes, consistent, MiB, status } from './batch-slave-support.ts';

describe('a watchdir slave whose disk fills while it applies a file', () => {
  it('keeps nothing of the file, leaves it in place, says why, and applies it once room appears, without a restart (seed 7)', async () => {
    const { c, h } = await cluster(7, 3, 256);
    const disk = c.slave.machine.disk;
    const engine = await c.open(c.slave, true);
    // Room for the first file's 1 MiB of blocks, not the second's.
    disk.setCapacity(disk.usedBytes() + 1.5 * MiB);
    const watch = c.slave.node!.watchdir!;
    await advance(c, 10_000);
    expect(await consistent(c, h, 'full')).toBe(1);
    expect(await c.watchNames()).toEqual([processedLogName(1), h.files[1].name, h.files[2].name]);
    const lines = c.slave.machine.logger.lines;
    expect(lines.some((l) => /\[0\] replog\.dta-2 was not applied: ENOSPC: .*the disk under \/slave\/dta is full.*; nothing of it was kept \(this slave stays at replog\.dta-1, txn \d+\); it stays in \/slave\/incoming and is applied again once/.test(l)), lines.join('\n')).toBe(true);
    const st = status(c.slave.node!.control.status());
    expect(st.applying_stopped).toMatch(/^the disk under \/slave\/dta is full: replog\.dta-2 waits for room/);
    expect(st.last_error).toMatch(/replog\.dta-2 was not applied: ENOSPC/);
    expect(st.files_refused).toBe('0');
    expect(watch.backlog).toBe(true);
    // Advice that fits a slave: its mount is read-only, nothing on it can be deleted.
    expect(lines.some((l) => /\[0\] disk full \(.*\): this slave takes no more of its master's transactions until the disk under \/slave\/dta has room again; free space on that disk outside lessfs, or grow it: a slave's files cannot be deleted, its mount is read-only$/.test(l)), lines.join('\n')).toBe(true);
    expect(lines.filter((l) => /delete data|deletes are committed/.test(l))).toEqual([]);

    // Ten minutes of a full disk: one attempt, no data written, a line or two.
    const before = { lines: lines.length, stalls: watch.stats.stalls, written: disk.usedBytes() };
    for (let i = 0; i < 20; i++) {
      await advance(c, 30_000);
      expect(engine.pendingChanges).toBe(0);
    }
    expect(watch.stats.stalls).toBe(before.stalls);
    expect(disk.usedBytes()).toBe(before.written);
    expect(lines.slice(before.lines).filter((l) => /\[[01]\]/.test(l))).toEqual([]);
    expect(await consistent(c, h, 'still full')).toBe(1);

    disk.setCapacity(1 << 30);
    await completes(c, h, engine);
    expect(lines.some((l) => /the disk has room again .*: applying replog\.dta-2 again/.test(l))).toBe(true);
  }, 120_000);

  it('room that does not cover the file\'s blocks is not tried; enough room is (seed 8)', async () => {
    const { c, h } = await cluster(8, 2, 512);
    const disk = c.slave.machine.disk;
    const engine = await c.open(c.slave, true);
    disk.setCapacity(disk.usedBytes() + 2.5 * MiB);
    const watch = c.slave.node!.watchdir!;
    await advance(c, 10_000);
    expect(await consistent(c, h, 'full')).toBe(1);
    expect(watch.stats.stalls).toBe(1);
    // 1.5 MiB more: past the 1 MiB of the live rule, short of the file's 2 MiB of blocks.
    disk.setCapacity(disk.options.capacityBytes + 1.5 * MiB);
    await advance(c, 30_000);
    expect(watch.stats.stalls).toBe(1);
    expect(await consistent(c, h, 'some room')).toBe(1);
    disk.setCapacity(disk.options.capacityBytes + 4 * MiB);
    await completes(c, h, engine);
    expect(watch.stats.stalls).toBe(1);
  }, 120_000);

  it('power loss while it waits for room: the files are still there and applied after (seed 9)', async () => {
    const { c, h } = await cluster(9, 3, 256);
    const disk = c.slave.machine.disk;
    await c.open(c.slave, true);
    disk.setCapacity(disk.usedBytes() + 1.5 * MiB);
    await advance(c, 10_000);
    expect(await consistent(c, h, 'full')).toBe(1);
    c.slave.machine.powerLoss();
    c.dropped(c.slave);
    const engine = await c.open(c.slave, true);
    await advance(c, 10_000);
    expect(await consistent(c, h, 'full after power loss')).toBe(1);
    expect(await c.watchNames()).toEqual([processedLogName(1), h.files[1].name, h.files[2].name]);
    disk.setCapacity(1 << 30);
    await completes(c, h, engine);
  }, 120_000);

  it('a store commit that fails for want of space (META_PATH full) is dropped and retried the same way (seed 10)', async () => {
    const { c, h } = await cluster(10, 2, 16);
    const disk = c.slave.machine.disk;
    const store = c.slave.machine.store;
    const engine = await c.open(c.slave, true);
    // The data writes fit; the store's commits fail with EIO on a disk with no room left (LMDB's failed page spill).
    disk.setCapacity(disk.usedBytes() + 512 * 1024);
    store.setOptions({ commitErrorProbability: 1 });
    await advance(c, 10_000);
    expect(await consistent(c, h, 'store full')).toBe(0);
    expect(c.slave.node!.watchdir!.stats.stalls).toBe(1);
    expect(status(c.slave.node!.control.status()).applying_stopped).toMatch(/^the disk under \/slave\/mta is full: replog\.dta-1 waits for room/);
    store.setOptions({ commitErrorProbability: 0 });
    disk.setCapacity(disk.usedBytes() + 4 * MiB);
    await completes(c, h, engine);
  }, 120_000);

  it('the disk fills and empties at random, with power losses: never a file renamed before it is durable, and it completes (seeds 20..27)', async () => {
    let stalls = 0;
    for (let seed = 20; seed < 28; seed++) {
      const { c, h } = await cluster(seed, 6, 256);
      const disk = c.slave.machine.disk;
      const rng = new SimRng(seed).split('full-disk');
      let engine = await c.open(c.slave, true);
      for (let step = 0; step < 30; step++) {
        const r = rng.int(10);
        if (r < 5) disk.setCapacity(disk.usedBytes() + rng.int(128) * BS);
        else if (r < 7) disk.setCapacity(disk.usedBytes() + (1 + rng.int(3)) * MiB);
        else if (r < 8) {
          stalls += c.slave.node!.watchdir!.stats.stalls;
          c.slave.machine.powerLoss();
          c.dropped(c.slave);
          disk.setCapacity(Math.max(disk.options.capacityBytes, disk.usedBytes() + 64 * 1024));
          engine = await c.open(c.slave, true);
        }
        await advance(c, rng.int(3000));
        await consistent(c, h, `seed=${seed} step=${step}`, false);
      }
      stalls += c.slave.node!.watchdir!.stats.stalls;
      disk.setCapacity(1 << 30);
      await completes(c, h, engine);
      expect(h.files.every((f) => parseRotatedLogName(f.name) === f.sequence)).toBe(true);
    }
    expect(stalls).toBeGreaterThanOrEqual(8);
  }, 300_000);
});
