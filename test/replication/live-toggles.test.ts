// Turning live replication off and on without unmounting (REPLICATION_ENABLED,
// `echo 0|1 > /.lessfs/replication/enabled`), on the master and on the slave:
// while either side is off nothing reaches the slave (its applied txn stays
// where it was), the master keeps logging (backlog reads 1, replog.dta
// grows); once both are on again the backlog drains, replog.dta is trimmed to
// size 0 and the trees agree.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { LiveCluster, LiveOracle, liveOp, type LiveNode } from '../../src/sim/live-cluster.ts';
import { SimRng } from '../../src/sim/rng.ts';
import { Scheduler } from '../../src/sim/scheduler.ts';
import { poolData } from '../../src/sim/workload.ts';
import { FRAME_TYPE } from '../../src/core/replication/frames.ts';

const BS = 4096;

async function setEnabled(c: LiveCluster, n: LiveNode, on: boolean): Promise<void> {
  await c.run(n.node!.control.setEnabled(on));
  expect(n.node!.control.enabled()).toBe(on);
}

async function cluster(seed: number): Promise<{ c: LiveCluster; fs: PathFs; ok: boolean }> {
  const c = new LiveCluster(new Scheduler({ seed }), seed, { engine: { commitIntervalMs: 500 } });
  await c.format();
  await c.open(c.slave);
  const m = await c.open(c.master);
  const fs = new PathFs(m);
  fs.mkdir('/d');
  await c.run(m.commit());
  return { c, fs, ok: await c.converge(30_000) };
}

async function writeAndCommit(c: LiveCluster, fs: PathFs, name: string, pool: number): Promise<void> {
  fs.create(name);
  await c.run(fs.write(name, 0, poolData(BS, pool, 3 * BS + pool)));
  await c.run(c.engineOf(c.master).commit());
}

describe('live replication: enable and disable', () => {
  for (const side of ['master', 'slave'] as const) {
    it(`disabled on the ${side}: nothing is sent, the master keeps logging; enabled: the backlog drains (seed 61)`, async () => {
      const { c, fs, ok } = await cluster(61);
      expect(ok).toBe(true);
      const n = side === 'master' ? c.master : c.slave;
      await setEnabled(c, n, false);
      const applied = c.receiver!.appliedTxn;
      const durable = c.slave.node!.slaveApplier!.durablePosition().txn;
      for (let i = 0; i < 5; i++) {
        await writeAndCommit(c, fs, `/d/f${i}`, i);
        await c.advance(3000);
        expect(c.receiver!.appliedTxn, `applied while disabled (${i})`).toBe(applied);
      }
      expect(c.slave.node!.slaveApplier!.durablePosition().txn).toBe(durable);
      expect(c.master.node!.control.backlog()).toBe(true);
      expect(c.master.node!.masterLog!.sizeBytes).toBeGreaterThan(0);
      expect(c.sender!.backlogBytes).toBeGreaterThan(0);
      if (side === 'master') {
        expect(c.master.node!.control.status()).toMatch(/connection: disabled/);
      } else {
        // The master keeps knocking and is told why it is refused.
        expect(c.slave.machine.logger.lines.some((l) => /replication is disabled on this slave/.test(l))).toBe(true);
        expect(c.sender!.lastError).toMatch(/disabled on this slave/);
      }
      await setEnabled(c, n, true);
      expect(await c.converge(30_000)).toBe(true);
      await c.advance(2000);
      expect(c.master.node!.control.backlog()).toBe(false);
      expect(c.slave.node!.control.backlog()).toBe(false);
      expect(c.master.node!.masterLog!.sizeBytes).toBe(0);
      expect(await c.digest(c.slave)).toBe(await c.digest(c.master));
      expect(c.overlaps).toEqual([]);
    });
  }

  it('toggles at random points of a workload on both sides (fast-check over seeds)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 1_000_000 }), async (seed) => {
        const c = new LiveCluster(new Scheduler({ seed }), seed, { engine: { commitIntervalMs: 400, cacheSizeBytes: 24 * BS }, net: { latencyMsMin: 1, latencyMsMax: 30 } });
        const o = new LiveOracle(c, BS);
        const rng = new SimRng(seed).split('toggles');
        await c.format();
        await c.open(c.slave);
        await c.open(c.master);
        await o.masterOpened();
        const off = { master: false, slave: false };
        let frozenAt: number | undefined;
        for (let i = 0; i < 60; i++) {
          if (rng.chance(0.12)) {
            const side = rng.pick(['master', 'slave'] as const);
            off[side] = !off[side];
            await setEnabled(c, side === 'master' ? c.master : c.slave, !off[side]);
            if (off.master || off.slave) frozenAt ??= c.receiver!.appliedTxn;
            else frozenAt = undefined;
          }
          const outcome = await o.runOp(liveOp(rng, o.model, BS));
          expect(outcome).toBe('done');
          await o.idle(rng.int(600));
          if (frozenAt !== undefined) {
            expect(c.receiver!.appliedTxn, `seed=${seed} op ${i}: the slave applied while replication is off (${JSON.stringify(off)})`).toBe(frozenAt);
          }
          if (off.master && c.master.node!.masterLog!.committedTxn > c.sender!.ackedTxn) expect(c.master.node!.control.backlog()).toBe(true);
          if (i % 10 === 9) await o.checkSlave();
        }
        await o.finish();
        expect(o.problems, `reproduce: seed=${seed}`).toEqual([]);
      }),
      { numRuns: Number(process.env.LESSFS_PROP_RUNS ?? 16), seed: Number(process.env.LESSFS_PROP_SEED ?? 1313) },
    );
  });

  // BUG (src/core/replication/sender.ts setEnabled(false) ~line 173 ->
  // closeSession -> onClosed -> releaseSlaveCommit): turning replication off
  // on the master while the slave is inside a commit the master asked for
  // lets the master's waiting commit start at once, while the slave still
  // commits. Same root cause as the link-fault case in live-link-faults
  // (connection loss releases the wait); the slave-side toggle
  // (receiver.setEnabled(false) closes the connection) does the same.
  for (const side of ['master', 'slave'] as const) {
    it(`turning replication off on the ${side} while the slave commits does not let the master commit at the same instant (seed 62)`, async () => {
      const c = new LiveCluster(new Scheduler({ seed: 62 }), 62, {
        engine: { commitIntervalMs: 600_000 },
        slaveNode: { store: { syncLatencyMsMin: 3000, syncLatencyMsMax: 3000 } },
      });
      await c.format();
      await c.open(c.slave);
      const m = await c.open(c.master);
      const fs = new PathFs(m);
      fs.mkdir('/d');
      await writeAndCommit(c, fs, '/d/f0', 1);
      await c.scheduler.run({ untilMs: c.scheduler.nowMs() + 30_000, done: () => c.slave.committing === 'master' });
      // Set-up steps do not assert: if one does not happen, the test passes and vitest reports the it.fails as passing.
      expect(c.slave.committing !== 'master', 'the set-up step happened').toBe(false);
      fs.create('/d/f1');
      const committing = m.commit(); // waits for the slave's commit
      await setEnabled(c, side === 'master' ? c.master : c.slave, false);
      await c.run(committing);
      expect(c.overlaps).toEqual([]);
    });
  }

  // BUG (src/core/replication/receiver.ts setEnabled ~line 118 and
  // onHandshake ~line 306): turning replication off on the slave closes only
  // the active connection; a connection in its handshake (HELLO stage 2
  // already sent) goes on, stage 3 does not look at the flag, and the master
  // becomes active and streams to a slave that is off: it applies
  // transactions while /.lessfs/replication/enabled reads 0. Found by the
  // property above (LESSFS_PROP_RUNS=150: seed 817334, "the slave applied
  // while replication is off"). Fix: setEnabled(false) closes the pending
  // handshakes too, and stage 3 refuses when disabled.
  it('a master whose handshake is under way when the slave is turned off is not accepted (seed 63)', async () => {
    const { c, fs, ok } = await cluster(63);
    expect(!ok, 'the set-up step happened').toBe(false);
    // Make the master connect again, and catch the slave's HELLO stage 2 going out.
    let hello2 = false;
    c.tamper = (from, bytes) => {
      if (from === 'slave' && bytes.length > 9 && bytes[8] === FRAME_TYPE.HELLO) hello2 = true;
      return bytes;
    };
    await setEnabled(c, c.master, false);
    await setEnabled(c, c.master, true);
    await c.scheduler.run({ untilMs: c.scheduler.nowMs() + 10_000, done: () => hello2 });
    c.tamper = undefined;
    expect(!hello2, 'the set-up step happened').toBe(false);
    await setEnabled(c, c.slave, false);
    const applied = c.receiver!.appliedTxn;
    await writeAndCommit(c, fs, '/d/late', 4);
    await c.advance(5000);
    expect(c.receiver!.connected).toBe(false);
    expect(c.receiver!.appliedTxn).toBe(applied);
  });
});
