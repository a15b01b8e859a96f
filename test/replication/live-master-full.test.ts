// A live master whose disk (data file, metadata and replication log on one
// disk) is full. Found by `lessfs-sim --faults all` once full disks were
// simulated (seed 10): a master that crashed while its disk was full could not
// be mounted again: the mount commit's append to replog.dta failed with
// ENOSPC, and nothing released the space reserve set aside for exactly that,
// so the user could not mount to delete files. Now a commit whose log append
// fails for want of room puts the engine in its full-disk state (which
// releases the reserve) as a data write's ENOSPC does, and the mount commit
// is retried once with that room.

import { describe, expect, it } from 'vitest';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { LiveCluster } from '../../src/sim/live-cluster.ts';
import { Scheduler } from '../../src/sim/scheduler.ts';
import { BS, convergedAndClean, MiB, unique } from './live-slave-support.ts';

async function masterWithReserve(seed: number): Promise<{ c: LiveCluster; fs: PathFs }> {
  const c = new LiveCluster(new Scheduler({ seed }), seed, {
    engine: { cacheSizeBytes: 1 * MiB, commitIntervalMs: 1000, spaceReserveBytes: 16 * BS },
    net: { latencyMsMin: 1, latencyMsMax: 5 },
  });
  await c.format();
  await c.open(c.slave);
  const fs = new PathFs(await c.open(c.master));
  for (let i = 0; i < 4; i++) {
    fs.create(`/f${i}`);
    await c.run(fs.write(`/f${i}`, 0, unique(i + 1, 16)));
  }
  await c.run(c.engineOf(c.master).commit());
  expect(await c.converge()).toBe(true);
  return { c, fs };
}

describe('a live master whose disk is full', () => {
  it('mounts again after a crash with no byte free: the mount commit takes the space reserve, and deletes then commit (seed 61)', async () => {
    const { c } = await masterWithReserve(61);
    const disk = c.master.machine.disk;
    expect(await c.run(c.master.machine.drivers().disk.stat('/master/mta/space-reserve').then((s) => s?.sizeBytes))).toBe(16 * BS);
    disk.setCapacity(disk.usedBytes());
    c.fail(c.master, 'crash');
    const lines = c.master.machine.logger.lines.length;
    const m = await c.open(c.master);
    const logged = c.master.machine.logger.lines.slice(lines).join('\n');
    expect(logged).toMatch(/disk full \(ENOSPC: write: no space left .*replog\.dta[^)]*\)/);
    expect(logged).toMatch(/released the 65536 bytes set aside/);
    // Still full: new data is refused, deletes commit and free room.
    const fs = new PathFs(m);
    fs.create('/new');
    await expect(c.run(fs.write('/new', 0, unique(9, 64)))).rejects.toMatchObject({ code: 'ENOSPC' });
    fs.unlink('/f0');
    fs.unlink('/f1');
    await c.run(m.commit());
    expect(m.durableTxn).toBe(m.txn);
    disk.setCapacity(1 << 30);
    await convergedAndClean(c, c.engineOf(c.slave));
  }, 60_000);

  it('a commit whose log append fails for want of room fails with ENOSPC, commits nothing, and lands once there is room (seed 62)', async () => {
    const { c, fs } = await masterWithReserve(62);
    const m = c.engineOf(c.master);
    const disk = c.master.machine.disk;
    const before = m.durableTxn;
    // Room for the new blocks, not for the log's copy of them.
    fs.create('/g');
    await c.run(fs.write('/g', 0, unique(20, 8)));
    disk.setCapacity(disk.usedBytes() + 8 * BS + 100);
    const err = await c.run(m.commit().then(() => undefined, (e: unknown) => e));
    expect(err).toMatchObject({ code: 'ENOSPC' });
    expect(m.durableTxn).toBe(before);
    expect(m.diskFull).toBe(true);
    disk.setCapacity(1 << 30);
    await c.advance(5_000);
    await c.run(m.commit());
    expect(m.durableTxn).toBeGreaterThan(before);
    expect(await c.run(fs.read('/g', 0, 8 * BS))).toEqual(unique(20, 8));
    await convergedAndClean(c, c.engineOf(c.slave));
  }, 60_000);
});
