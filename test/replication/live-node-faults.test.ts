// Live replication under node faults (DESIGN §6): kill -9 and power loss of
// the master, of the slave, and of both at the same instant, at seeded
// scheduler steps of a workload (mid-frame, mid-apply, mid-commit, mid-trim),
// with torn and reordered unsynced writes. After each fault the failed nodes
// reopen: the master is at a txn it had committed, not before its last fsync
// or commit (its tree is one the oracle allows for that txn); the slave is at
// a txn the master committed, with the master's tree of that txn, and at
// least at the txn its master was told was durable on it. Then the link
// heals, the slave converges, the backlog reads 0, replog.dta is empty, and
// lessfsck -t is clean on both.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import type { SimDiskOptions } from '../../src/sim/disk.ts';
import { LiveCluster, LiveOracle, liveOp } from '../../src/sim/live-cluster.ts';
import { SimRng } from '../../src/sim/rng.ts';
import { Scheduler } from '../../src/sim/scheduler.ts';
import type { SimStoreOptions } from '../../src/sim/store.ts';
import { poolData } from '../../src/sim/workload.ts';

const BS = 4096;

type Who = 'master' | 'slave' | 'both';
type Kind = 'crash' | 'power';

export interface NodeFault {
  /** Before this operation index. */
  atOp: number;
  /** Scheduler events after that operation starts (the fault may land in the operation, the idle time after it, or later). */
  afterSteps: number;
  who: Who;
  kind: Kind;
  masterFirst: boolean;
}

export interface NodeFaultCase {
  seed: number;
  ops: number;
  faults: NodeFault[];
  commitIntervalMs: number;
  syncLatencyMsMax: number;
  secret: string | undefined;
}

export function nodeFaultCase(seed: number, ops = 50): NodeFaultCase {
  const r = new SimRng(seed).split('case');
  const n = 1 + r.int(3);
  const faults: NodeFault[] = [];
  for (let i = 0; i < n; i++) {
    faults.push({
      atOp: r.int(ops),
      afterSteps: r.int(120),
      who: r.pick(['master', 'slave', 'both'] as const),
      kind: r.pick(['crash', 'power'] as const),
      masterFirst: r.chance(0.3),
    });
  }
  faults.sort((a, b) => a.atOp - b.atOp);
  return { seed, ops, faults, commitIntervalMs: r.pick([100, 500, 2000]), syncLatencyMsMax: r.pick([6, 60, 400]), secret: r.chance(0.5) ? 'node-fault-secret' : undefined };
}

const DISK: Partial<SimDiskOptions> = { latencyMsMin: 0, latencyMsMax: 2, tornWriteProbability: 0.3, reorderProbability: 0.3 };

export async function runNodeFaultCase(k: NodeFaultCase): Promise<{ problems: string[]; faultsRun: string[]; oracle: LiveOracle }> {
  const store: Partial<SimStoreOptions> = { commitLatencyMsMin: 1, commitLatencyMsMax: 4, syncLatencyMsMin: 1, syncLatencyMsMax: k.syncLatencyMsMax };
  const sched = new Scheduler({ seed: k.seed });
  const c = new LiveCluster(sched, k.seed, {
    engine: { commitIntervalMs: k.commitIntervalMs, cacheSizeBytes: 24 * BS },
    masterNode: { disk: DISK, store },
    slaveNode: { disk: DISK, store },
    net: { latencyMsMin: 1, latencyMsMax: 20 },
    secret: k.secret,
  });
  const o = new LiveOracle(c, BS);
  const rng = new SimRng(k.seed).split('workload');
  await c.format();
  await c.open(c.slave);
  await c.open(c.master);
  await o.masterOpened();
  const queue = [...k.faults];
  const faultsRun: string[] = [];
  let crashAt: number | undefined;
  for (let i = 0; i < k.ops; i++) {
    if (crashAt === undefined && queue.length > 0 && queue[0].atOp <= i) crashAt = sched.stepsRun + queue[0].afterSteps;
    const stop = (): boolean => crashAt !== undefined && sched.stepsRun >= crashAt;
    const op = liveOp(rng, o.model, BS);
    const outcome = await o.runOp(op, stop);
    if (outcome === 'stuck') throw new Error(`seed=${k.seed}: op ${i} ${JSON.stringify(op)} never completed`);
    if (outcome === 'done') await o.idle(rng.int(300), stop);
    if (stop()) {
      const f = queue.shift() as NodeFault;
      crashAt = undefined;
      faultsRun.push(`${sched.nowMs()} ms op ${i} (${outcome === 'stopped' ? `mid ${op.op}` : 'idle'}): ${f.who} ${f.kind}`);
      await o.fault(f.who, f.kind, f.masterFirst);
      await o.checkSlave();
    }
    if (i % 10 === 9) await o.checkSlave();
  }
  // Faults not reached by the end of the workload land during idle time after it.
  while (queue.length > 0) {
    const f = queue.shift() as NodeFault;
    const at = sched.stepsRun + f.afterSteps;
    await o.idle(60_000, () => sched.stepsRun >= at);
    faultsRun.push(`${sched.nowMs()} ms after the workload: ${f.who} ${f.kind}`);
    await o.fault(f.who, f.kind, f.masterFirst);
  }
  await o.finish();
  return { problems: o.problems, faultsRun, oracle: o };
}

const runs = Number(process.env.LESSFS_PROP_RUNS ?? 30);

describe('live replication under node faults', () => {
  it('crash and power loss of master, slave or both at seeded steps (fast-check over seeds)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 1_000_000 }), async (seed) => {
        const k = nodeFaultCase(seed);
        const { problems, faultsRun } = await runNodeFaultCase(k);
        expect(problems, `reproduce: seed=${seed} ${JSON.stringify(k)}\nfaults: ${faultsRun.join('; ')}`).toEqual([]);
      }),
      { numRuns: runs, seed: Number(process.env.LESSFS_PROP_SEED ?? 777) },
    );
  });

  // Many points of one scripted run: each of the six fault kinds at a seeded
  // sample of scheduler steps (a fault per run, all in the first 40 operations).
  for (const who of ['master', 'slave', 'both'] as const) {
    for (const kind of ['crash', 'power'] as const) {
      it(`${who} ${kind} at sampled steps of seed 9`, async () => {
        const pick = new SimRng(`${who}/${kind}`).split('steps');
        for (let point = 0; point < 4; point++) {
          const k: NodeFaultCase = {
            seed: 9,
            ops: 40,
            faults: [{ atOp: pick.int(30), afterSteps: pick.int(150), who, kind, masterFirst: point % 2 === 1 }],
            commitIntervalMs: 300,
            syncLatencyMsMax: 30,
            secret: undefined,
          };
          const { problems, faultsRun } = await runNodeFaultCase(k);
          expect(faultsRun.length, JSON.stringify(k)).toBe(1);
          expect(problems, `reproduce: ${JSON.stringify(k)}\nfault: ${faultsRun.join('; ')}`).toEqual([]);
        }
      });
    }
  }

  // BUG (src/core/replication/receiver.ts ack() ~line 329 and durableTxn()
  // ~line 324, via FsEngine.durableReplicationMeta() in src/core/fs/engine.ts
  // ~line 1015): the slave reports as durable the txn it reads back from its
  // store, which includes a commit the store has applied but not yet made
  // durable (LMDB: `transaction` resolved, `flushed` not yet; the sim store:
  // applied, sync pending). An ACK sent in that window (on a HEARTBEAT, or
  // after applying a frame that arrived during the slave's commit) tells the
  // master the txn is durable; the master trims replog.dta; the slave loses
  // power, comes back at the previous txn, and the master refuses it for good:
  // "the slave is at txn 0 but replog.dta starts at txn 3: the slave must be
  // re-seeded". Meanwhile /.lessfs/replication/backlog reads 0 (ackedTxn is
  // never lowered after a refused handshake). Also found by the property
  // above (runNodeFaultCase, seed 56 of the explorer: slave power loss mid
  // commit). Fix: acknowledge what a finished commit made durable — the
  // receiver records the txn of its last completed engine.commit() (or the
  // engine keeps the meta of its last durable commit) and ACKs/HELLOs that.
  it('a txn the slave acknowledged as durable survives its power loss (seed 41, slow slave fsync)', async () => {
    const c = new LiveCluster(new Scheduler({ seed: 41 }), 41, {
      engine: { commitIntervalMs: 600_000 },
      slaveNode: { store: { syncLatencyMsMin: 2500, syncLatencyMsMax: 2500 } },
    });
    await c.format();
    await c.open(c.slave);
    const m = await c.open(c.master);
    const fs = new PathFs(m);
    fs.mkdir('/d');
    fs.create('/d/f0');
    await c.run(fs.write('/d/f0', 0, poolData(BS, 1, 2 * BS)));
    await c.run(m.commit());
    const txn = c.master.node!.masterLog!.committedTxn;
    // Acknowledged and trimmed. (Set-up steps do not assert: if one does not
    // happen, the test passes and vitest reports the it.fails as passing.)
    await c.scheduler.run({ untilMs: c.scheduler.nowMs() + 20_000, done: () => c.sender!.ackedTxn === txn && c.master.node!.masterLog!.sizeBytes === 0 });
    expect(c.sender!.ackedTxn !== txn, 'the set-up step happened').toBe(false);
    c.fail(c.slave, 'power');
    await c.open(c.slave);
    expect(c.slave.node!.slaveApplier!.durablePosition().txn).toBeGreaterThanOrEqual(txn);
    await c.advance(10_000);
    expect(await c.digest(c.slave)).toBe(await c.digest(c.master));
  });

  it('a recovered master with no slave up waits for one, then commits saying so (not blaming a slave commit)', async () => {
    const c = new LiveCluster(new Scheduler({ seed: 5 }), 5, { engine: { commitIntervalMs: 600_000 } });
    await c.format();
    const m = await c.open(c.master);
    const fs = new PathFs(m);
    fs.create('/f');
    await c.run(fs.write('/f', 0, poolData(BS, 1, BS)));
    await c.run(m.commit());
    c.fail(c.master, 'crash');
    const m2 = await c.open(c.master);
    expect(m2.recovered).toBe(true);
    new PathFs(m2).create('/g');
    await c.run(m2.commit());
    const lines = c.master.machine.logger.lines.join('\n');
    expect(lines).toContain("no slave answered within 10000 ms of this master's recovery");
    expect(lines).not.toContain('did not finish the commit');
    expect(lines).not.toContain('dropping the connection');
  });
});
