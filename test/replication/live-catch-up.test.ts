// A live slave that was down while its master made many transactions
// catches up the backlog in bounded commits (docs/replication-protocol.md,
// "Commits: only when the master says"). Before, the master asked for a
// slave commit only with under 1 MiB in flight or when quiet with nothing in
// flight; streaming a backlog neither holds, so the slave applied it all into
// one uncommitted state whose commit exceeded the store's operations per
// commit (EINVAL): it dropped everything, the master reconnected, and the same
// happened again for ever. Here the slave's store takes at most
// OPS_MAX operations per commit (SimStoreOptions.commitOpsMax) and the
// master's catch-up bound is scaled down with it.

import { describe, expect, it } from 'vitest';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { LiveCluster } from '../../src/sim/live-cluster.ts';
import { Scheduler } from '../../src/sim/scheduler.ts';

const OPS_MAX = 3000;
const CATCH_UP_RECORDS = 300;

/** Bytes no other call gives (every 4 KiB block a new one). */
function uniqueData(lengthBytes: number, tag: number): Uint8Array {
  const out = new Uint8Array(lengthBytes);
  const view = new DataView(out.buffer);
  for (let at = 0; at + 8 <= lengthBytes; at += 8) {
    view.setUint32(at, tag);
    view.setUint32(at + 4, at);
  }
  return out;
}

/** Operations of each commit the master asked the slave for, from its log lines. */
function slaveCommitOps(c: LiveCluster, what: 'ops' | 'new blocks' = 'ops'): number[] {
  const ops: number[] = [];
  for (const line of c.slave.machine.logger.lines) {
    const m = / commit txn \d+ \(master\): (\d+) ops, (\d+) new blocks/.exec(line);
    if (m) ops.push(Number(what === 'ops' ? m[1] : m[2]));
  }
  return ops;
}

describe('live slave catching up a large backlog', () => {
  for (const seed of [11, 12, 13]) {
    it(`commits in bounded pieces and converges (seed ${seed})`, async () => {
      const sched = new Scheduler({ seed });
      const c = new LiveCluster(sched, seed, { slaveNode: { store: { commitOpsMax: OPS_MAX } }, catchUpCommitRecords: CATCH_UP_RECORDS });
      await c.format();
      const m = await c.open(c.master);
      const fs = new PathFs(m);
      // The slave is down: ~60 transactions of ~100 store operations each
      // pile up in the master's log, about twice what one slave commit may hold.
      for (let d = 0; d < 60; d++) {
        fs.mkdir(`/d${d}`);
        for (let i = 0; i < 20; i++) {
          fs.create(`/d${d}/f${i}`);
          await c.run(fs.write(`/d${d}/f${i}`, 0, uniqueData(600, 1000 * d + i)));
        }
        await c.run(m.commit());
      }
      expect(m.durableTxn).toBeGreaterThan(60);
      await c.open(c.slave);
      expect(await c.converge(300_000)).toBe(true);
      expect(await c.digest(c.slave)).toBe(await c.digest(c.master));
      const ops = slaveCommitOps(c);
      expect(ops.length).toBeGreaterThan(1);
      expect(ops.reduce((a, b) => a + b, 0)).toBeGreaterThan(OPS_MAX);
      expect(Math.max(...ops)).toBeLessThanOrEqual(OPS_MAX);
      expect(c.slave.node!.liveReceiver!.stats.commits).toBe(ops.length);
      expect(c.slave.machine.logger.lines.filter((l) => /commit asked by the master failed/.test(l))).toEqual([]);
      expect(c.overlaps).toEqual([]);
      expect(c.applyViolations).toEqual([]);
      expect(c.master.node!.masterLog!.sizeBytes).toBe(0);
      await c.close(c.master);
      await c.close(c.slave);
      for (const n of [c.master, c.slave]) expect((await c.fsck(n)).problems).toEqual([]);
    });
  }

  it('keeps the bound while the master goes on writing during the catch-up', async () => {
    const seed = 21;
    const sched = new Scheduler({ seed });
    const c = new LiveCluster(sched, seed, { slaveNode: { store: { commitOpsMax: OPS_MAX } }, catchUpCommitRecords: CATCH_UP_RECORDS });
    await c.format();
    const m = await c.open(c.master);
    const fs = new PathFs(m);
    const batch = async (d: number): Promise<void> => {
      fs.mkdir(`/d${d}`);
      for (let i = 0; i < 20; i++) {
        fs.create(`/d${d}/f${i}`);
        await c.run(fs.write(`/d${d}/f${i}`, 0, uniqueData(600, 1000 * d + i)));
      }
      await c.run(m.commit());
    };
    for (let d = 0; d < 50; d++) await batch(d);
    await c.open(c.slave);
    // The master commits now and then while it streams the backlog.
    for (let d = 50; d < 80; d++) {
      await batch(d);
      await c.advance(20);
    }
    expect(await c.converge(300_000)).toBe(true);
    expect(await c.digest(c.slave)).toBe(await c.digest(c.master));
    const ops = slaveCommitOps(c);
    expect(ops.length).toBeGreaterThan(1);
    expect(Math.max(...ops)).toBeLessThanOrEqual(OPS_MAX);
    expect(c.overlaps).toEqual([]);
    expect(c.applyViolations).toEqual([]);
    await c.close(c.master);
    await c.close(c.slave);
    for (const n of [c.master, c.slave]) expect((await c.fsck(n)).problems).toEqual([]);
  });

  it('bounds the bytes of a catch-up commit too (large blocks)', async () => {
    const seed = 31;
    const BS = 4096;
    const BYTES = 256 * 1024;
    const sched = new Scheduler({ seed });
    const c = new LiveCluster(sched, seed, { catchUpCommitBytes: BYTES });
    await c.format();
    const m = await c.open(c.master);
    const fs = new PathFs(m);
    // 40 transactions of 16 new blocks each (2.5 MiB) while the slave is down.
    for (let d = 0; d < 40; d++) {
      for (let i = 0; i < 4; i++) {
        fs.create(`/f${d}-${i}`);
        await c.run(fs.write(`/f${d}-${i}`, 0, uniqueData(4 * BS, 1000 * d + i)));
      }
      await c.run(m.commit());
    }
    await c.open(c.slave);
    expect(await c.converge(300_000)).toBe(true);
    expect(await c.digest(c.slave)).toBe(await c.digest(c.master));
    const blocks = slaveCommitOps(c, 'new blocks');
    expect(blocks.reduce((a, b) => a + b, 0)).toBe(640);
    // At most twice the bound and a transaction on each side of it.
    expect(Math.max(...blocks)).toBeLessThanOrEqual((2 * BYTES) / BS + 2 * 16);
    expect(c.overlaps).toEqual([]);
    await c.close(c.master);
    await c.close(c.slave);
    for (const n of [c.master, c.slave]) expect((await c.fsck(n)).problems).toEqual([]);
  });
});
