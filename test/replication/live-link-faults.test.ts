// Live replication under link faults (DESIGN §6): partitions and repairs,
// holds, resets, stalls, bit flips, slow and narrow links, chunks split at any
// byte, during a seeded workload on the master that commits as it goes. At
// every check point the slave's tree is the master's tree at the txn the
// slave applied (a txn the master committed durably), transactions are
// applied in order exactly once, master and slave never commit at the same
// instant; once the link heals the slave converges, the backlog reads 0,
// replog.dta is empty and lessfsck -t is clean on both.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { SimNetOptions } from '../../src/sim/net.ts';
import { LinkCuts, LiveCluster, LiveOracle, liveOp } from '../../src/sim/live-cluster.ts';
import { SimRng } from '../../src/sim/rng.ts';
import { Scheduler } from '../../src/sim/scheduler.ts';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { FRAME_TYPE } from '../../src/core/replication/frames.ts';
import { poolData } from '../../src/sim/workload.ts';

const BS = 4096;

export interface LinkFaultCase {
  seed: number;
  ops: number;
  net: Partial<SimNetOptions>;
  /** Per operation: chance to partition (or hold) the link, lifted a few operations later. */
  cutProbability: number;
  commitIntervalMs: number;
  secret?: string;
}

/** Net options of a seed: every fault kind in some runs, several at once in most. */
export function linkFaultCase(seed: number, ops = 80): LinkFaultCase {
  const r = new SimRng(seed).split('case');
  const latencyMsMin = r.int(5);
  return {
    seed,
    ops,
    net: {
      latencyMsMin,
      latencyMsMax: latencyMsMin + r.pick([0, 5, 40, 200]),
      bitFlipProbability: r.pick([0, 0, 0.002, 0.01, 0.05]),
      resetProbability: r.pick([0, 0, 0.002, 0.01]),
      stallProbability: r.pick([0, 0.02, 0.1]),
      stallMsMax: r.pick([50, 500, 3000]),
      bandwidthBytesPerMs: r.pick([0, 0, 20, 500]),
      splitProbability: r.pick([0, 0.2, 0.8]),
      partitionTimeoutMs: r.pick([2_000, 30_000]),
    },
    cutProbability: r.pick([0, 0.03, 0.08]),
    commitIntervalMs: r.pick([100, 700, 3000]),
    secret: r.chance(0.5) ? 'a-live-secret' : undefined,
  };
}

/** Network faults that happened in a run, by kind (from the scheduler's trace). */
export type FaultCounts = Record<'bitflip' | 'reset' | 'stall' | 'partition' | 'hold', number>;

export async function runLinkFaultCase(k: LinkFaultCase): Promise<{ problems: string[]; oracle: LiveOracle; cluster: LiveCluster; faults: FaultCounts }> {
  const sched = new Scheduler({ seed: k.seed });
  const faults: FaultCounts = { bitflip: 0, reset: 0, stall: 0, partition: 0, hold: 0 };
  sched.traceSink = (line) => {
    const m = /^net (bitflip|reset|stall|partition|hold) /.exec(line);
    if (m) faults[m[1] as keyof FaultCounts]++;
  };
  const c = new LiveCluster(sched, k.seed, {
    net: k.net,
    secret: k.secret,
    engine: { commitIntervalMs: k.commitIntervalMs, cacheSizeBytes: 24 * BS },
  });
  const o = new LiveOracle(c, BS);
  const rng = new SimRng(k.seed).split('workload');
  await c.format();
  await c.open(c.slave);
  await c.open(c.master);
  await o.masterOpened();
  const cuts = new LinkCuts(c, k.cutProbability);
  for (let i = 0; i < k.ops; i++) {
    cuts.step(i, rng);
    const op = liveOp(rng, o.model, BS);
    const outcome = await o.runOp(op);
    if (outcome !== 'done') throw new Error(`seed=${k.seed}: op ${i} ${JSON.stringify(op)} ${outcome}`);
    await o.idle(rng.int(400));
    if (i % 8 === 7) await o.checkSlave();
  }
  await o.finish();
  sched.traceSink = undefined;
  return { problems: o.problems, oracle: o, cluster: c, faults };
}

const runs = Number(process.env.LESSFS_PROP_RUNS ?? 40);

/** One fault kind at a time, so each is exercised whatever fast-check draws. */
const NAMED: Array<{ name: string; net: Partial<SimNetOptions>; cutProbability?: number; secret?: string; seen?: Array<keyof FaultCounts> }> = [
  { name: 'bit flips', net: { bitFlipProbability: 0.01 }, seen: ['bitflip'] },
  { name: 'bit flips, authenticated', net: { bitFlipProbability: 0.01 }, secret: 'flip-secret', seen: ['bitflip'] },
  { name: 'resets', net: { resetProbability: 0.03 }, seen: ['reset'] },
  { name: 'stalls', net: { stallProbability: 0.05, stallMsMax: 2000 }, seen: ['stall'] },
  { name: 'slow and narrow link', net: { latencyMsMin: 50, latencyMsMax: 300, bandwidthBytesPerMs: 50 } },
  { name: 'chunks split at any byte', net: { splitProbability: 0.9 }, secret: 'split-secret' },
  { name: 'partitions and holds', net: { partitionTimeoutMs: 2000 }, cutProbability: 0.1, seen: ['partition', 'hold'] },
];

describe('live replication under link faults', () => {
  for (const [i, n] of NAMED.entries()) {
    it(`${n.name} (seed ${101 + i})`, async () => {
      const k: LinkFaultCase = { seed: 101 + i, ops: 60, net: n.net, cutProbability: n.cutProbability ?? 0, commitIntervalMs: 500, secret: n.secret };
      const { problems, oracle, cluster, faults } = await runLinkFaultCase(k);
      expect(problems, `reproduce: ${JSON.stringify(k)}`).toEqual([]);
      expect(oracle.slaveChecks).toBeGreaterThan(0);
      expect(cluster.commitsSeen.slave).toBeGreaterThan(2);
      for (const kind of n.seen ?? []) expect(faults[kind], `${n.name}: no ${kind} happened (${JSON.stringify(faults)})`).toBeGreaterThan(0);
    });
  }

  it('every fault kind, seeded (fast-check over seeds)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 1_000_000 }), async (seed) => {
        const k = linkFaultCase(seed);
        const { problems, oracle } = await runLinkFaultCase(k);
        expect(problems, `reproduce: seed=${seed} ${JSON.stringify(k)}`).toEqual([]);
        expect(oracle.slaveChecks).toBeGreaterThan(0);
      }),
      { numRuns: runs, seed: Number(process.env.LESSFS_PROP_SEED ?? 4242) },
    );
  });
});

// The it.fails tests below show known bugs. Their set-up steps do not
// assert: when a step does not happen as planned (a changed schedule), the
// test returns early and passes, and vitest reports the it.fails as
// unexpectedly passing, rather than counting a broken set-up as the bug.

/** A cluster with one file written and replicated (slave durable at the master's txn); undefined if it did not converge. */
async function steadyCluster(seed: number, opts: ConstructorParameters<typeof LiveCluster>[2] = {}): Promise<{ c: LiveCluster; fs: PathFs; ok: boolean }> {
  const c = new LiveCluster(new Scheduler({ seed }), seed, { engine: { commitIntervalMs: 600_000 }, ...opts });
  await c.format();
  await c.open(c.slave);
  const m = await c.open(c.master);
  const fs = new PathFs(m);
  fs.mkdir('/d');
  fs.create('/d/f0');
  await c.run(fs.write('/d/f0', 0, poolData(BS, 1, 2 * BS)));
  await c.run(m.commit());
  return { c, fs, ok: await c.converge(30_000) };
}

/** Run the scheduler until cond holds (bounded by virtual time); whether it does. */
async function until(c: LiveCluster, cond: () => boolean, maxMs = 30_000): Promise<boolean> {
  await c.scheduler.run({ untilMs: c.scheduler.nowMs() + maxMs, done: cond });
  return cond();
}

describe('live replication: link faults around commits', () => {
  // BUG (src/core/replication/sender.ts onClosed, ~line 390): when the
  // connection drops while the slave is inside a commit the master asked for,
  // the master releases its own waiting commit at once, although the slave is
  // still committing: both nodes commit at the same instant (DESIGN §4). Seen
  // in the property above (seeds 13, 140, 241, 289 of linkFaultCase: a reset
  // or a bit flip in a slave ACK). Here: a partition outlasting
  // partitionTimeoutMs while the slave's commit waits for a slow fsync.
  it('a connection lost while the slave commits does not let the master commit at the same instant (seed 31)', async () => {
    const { c, fs, ok } = await steadyCluster(31, {
      net: { partitionTimeoutMs: 500 },
      slaveNode: { store: { syncLatencyMsMin: 3000, syncLatencyMsMax: 3000 } },
    });
    expect(!ok, 'the set-up step happened').toBe(false);
    const m = c.engineOf(c.master);
    fs.create('/d/f1');
    await c.run(fs.write('/d/f1', 0, poolData(BS, 2, BS)));
    await c.run(m.commit());
    // The slave applies it; a heartbeat then asks the slave to commit (a 3 s fsync).
    expect(!(await until(c, () => c.slave.committing === 'master')), 'the set-up step happened').toBe(false);
    fs.create('/d/f2');
    const writing = fs.write('/d/f2', 0, poolData(BS, 3, BS));
    expect(!(await until(c, () => c.slave.committing === 'master' && c.engineOf(c.master).dirty, 100)), 'the set-up step happened').toBe(false);
    void writing;
    const committing = m.commit(); // waits for the slave's commit
    c.network.partition('master', 'slave');
    await c.run(committing);
    c.network.repair('master', 'slave');
    expect(c.overlaps).toEqual([]);
  });

  // BUG (src/core/replication/sender.ts, NAK handler ~line 468 and
  // maybeAskSlaveCommit ~line 254): a COMMIT_NOW that follows a damaged frame
  // is skipped by the slave while it looks for the RESYNC marker, and is never
  // sent again: `slaveCommitting` stays set, so no later heartbeat asks again.
  // The slave applies everything but never commits; while the master is idle
  // the backlog never drains and replog.dta is never trimmed (the next master
  // commit stalls slaveCommitWaitMs = 10 s, then drops the connection).
  // Seen in the property above: seeds 197, 525, 831, 862, 936.
  it('a COMMIT_NOW lost behind a damaged frame is asked again: the slave commits and the backlog drains (seed 32)', async () => {
    // A commit interval of 2 s makes the master ask for a slave commit every
    // second even with a little data in flight (not only when the link is idle).
    const { c, fs, ok } = await steadyCluster(32, { engine: { commitIntervalMs: 2000 } });
    expect(!ok, 'the set-up step happened').toBe(false);
    const m = c.engineOf(c.master);
    const s = c.sender!;
    // Txn T+1 applied on the slave, not yet committed there.
    fs.create('/d/f1');
    await c.run(fs.write('/d/f1', 0, poolData(BS, 2, BS)));
    await c.run(m.commit());
    const t1 = c.master.node!.masterLog!.committedTxn;
    expect(!(await until(c, () => s.slaveAppliedTxn === t1, 1000)) || s.ackedTxn !== t1 - 1, 'the set-up step happened').toBe(false);
    // T+2 and the COMMIT_NOW for T+1 wait on a held link; the first chunk through is damaged.
    c.network.hold('master', 'slave');
    fs.create('/d/f2');
    await c.run(fs.write('/d/f2', 0, poolData(BS, 3, BS)));
    await c.run(m.commit());
    // A heartbeat while the master is quiet asks the slave to commit T+1: that COMMIT_NOW queues behind T+2.
    let askedWhileHeld = false;
    c.tamper = (from, bytes) => {
      if (from === 'master' && bytes.length >= 17 && bytes[8] === FRAME_TYPE.COMMIT_NOW) askedWhileHeld = true;
      return bytes;
    };
    await c.advance(2500);
    c.tamper = undefined;
    expect(!askedWhileHeld, 'the set-up step happened').toBe(false);
    c.network.options.bitFlipProbability = 1;
    c.scheduler.traceSink = (line) => {
      if (line.startsWith('net bitflip')) c.network.options.bitFlipProbability = 0;
    };
    c.network.release('master', 'slave');
    const nakked = await until(c, () => c.receiver!.stats.naksSent === 1, 5000);
    c.scheduler.traceSink = undefined;
    expect(!nakked, 'the set-up step happened').toBe(false);
    expect(await c.converge(60_000)).toBe(true);
    expect(c.master.node!.masterLog!.sizeBytes).toBe(0);
  });
});

describe('live replication: damaged slave frames', () => {
  // BUG (src/core/replication/sender.ts onData ~line 434: lastHeardMs is
  // refreshed by every chunk, and the master's WireIn accepts slave frames up
  // to WIRE_FRAME_BYTES_MAX = 1 MiB): one damaged bit in the length of a
  // slave ACK (18 -> 65554 here) makes the master wait for 64 KiB more of
  // slave bytes before it can judge the frame. The slave sends a 26-byte ACK
  // a second, so that takes ~40 minutes (up to 11 hours for a 1 MiB length);
  // every ACK refreshes lastHeardMs, so the peer timeout never fires, and no
  // ACK is understood: the slave is never asked to commit, the backlog never
  // drains. Found by the property above with bigger blocks and caches (seed 33
  // of linkFaultCase with BS=65536). Fix: count as "heard" only whole, valid
  // frames (a stuck partial frame then ends in the peer timeout and a
  // reconnect), and give the master's WireIn a small frame limit for what a
  // slave sends (ACK, NAK, HELLO: a few KiB).
  it('a damaged length in a slave ACK does not stall replication (seed 33)', async () => {
    const { c, fs, ok } = await steadyCluster(33);
    expect(!ok, 'the set-up step happened').toBe(false);
    let damaged = false;
    c.tamper = (from, bytes) => {
      if (from === 'slave' && !damaged && bytes.length >= 26 && bytes[8] === FRAME_TYPE.ACK) {
        bytes[1] ^= 0x01;
        damaged = true;
      }
      return bytes;
    };
    fs.create('/d/f1');
    await c.run(fs.write('/d/f1', 0, poolData(BS, 2, 3 * BS)));
    await c.run(c.engineOf(c.master).commit());
    await c.advance(3000);
    c.tamper = undefined;
    expect(!damaged, 'the set-up step happened').toBe(false);
    expect(await c.converge(60_000)).toBe(true);
    expect(await c.digest(c.slave)).toBe(await c.digest(c.master));
  });
});

describe('live replication: limits', () => {
  // Was a bug (src/core/replication/sender.ts pump: "whole transactions up to
  // about SEND_CHUNK_BYTES (at least one)" in one log.read): a transaction is
  // as large as the write cache (CACHESIZE), and one larger than the disk
  // driver's largest read (64 MiB in the sim, 256 MiB for real files) failed
  // every send ("sending replog.dta: EINVAL: read length ...") forever. The
  // lead's change reads SEND_CHUNK_BYTES at a time. Here: an 8 MiB read limit
  // and one 12 MiB transaction, with and without frame MACs.
  for (const secret of [undefined, 'big-secret']) {
    it(`a transaction larger than the disk read limit still reaches the slave (seed 5, ${secret ? 'authenticated' : 'no secret'})`, async () => {
      const bs = 131072;
      const c = new LiveCluster(new Scheduler({ seed: 5 }), 5, {
        secret,
        engine: { blockSizeBytes: bs, commitIntervalMs: 600_000, cacheSizeBytes: 64 << 20 },
        masterNode: { disk: { ioLengthMaxBytes: 8 << 20 } },
      });
      await c.format();
      await c.open(c.slave);
      const m = await c.open(c.master);
      const fs = new PathFs(m);
      // 12 MiB of unique blocks.
      const data = new Uint8Array(12 << 20);
      const view = new DataView(data.buffer);
      for (let i = 0; i < data.length; i += 4) view.setUint32(i, Math.imul(i + 7, 0x9e3779b1) >>> 0);
      fs.create('/big');
      await c.run(fs.write('/big', 0, data));
      await c.run(m.commit());
      // The live log refers to the blocks (BLOCKREF); the sender streams them whole.
      const log = c.master.node!.masterLog!;
      expect(log.sizeBytes).toBeLessThan(64 << 10);
      expect(log.bytesAfter(0)).toBeGreaterThan(12 << 20);
      expect(await c.converge(60_000)).toBe(true);
      expect(await c.digest(c.slave)).toBe(await c.digest(c.master));
    });
  }

  // BUG (src/core/replication/receiver.ts onFrame ~line 340: inside a
  // transaction the slave ACKs only every PROGRESS_ACK_BYTES = 4 MiB (before
  // the lead's current change: only when a whole transaction was applied);
  // and sender.ts armHeartbeat ~line 414: "nothing heard from
  // the slave for peerTimeoutMs" drops the connection): a transaction that
  // takes longer than peerTimeoutMs (6 s) to cross the link never arrives.
  // The master hears nothing while the slave receives it (the master's own
  // HEARTBEATs queue behind the data), drops the connection, reconnects and
  // sends it again from its start, forever. Here 2 MiB at 100 KB/s; with the
  // default CACHESIZE (128 MiB) any link under ~170 Mbit/s can livelock
  // this way (and 4 MiB between progress ACKs at 100 KB/s is 40 s). Found by
  // the property above with bigger blocks and caches
  // (BS=65536, 16 MiB cache: seeds 2, 3, 10, 12, 23, 24, 28 of
  // linkFaultCase, all with bandwidthBytesPerMs 20). Fix: the slave ACKs
  // (applied txn, not committed) at least every heartbeatMs while whole
  // frames keep arriving, inside a transaction too — not while it skips to a
  // RESYNC marker, or a lost marker would never end in the peer timeout.
  it('a transaction that takes longer than the peer timeout to cross a slow link still arrives (seed 7)', async () => {
    const bs = 65536;
    const c = new LiveCluster(new Scheduler({ seed: 7 }), 7, {
      engine: { blockSizeBytes: bs, commitIntervalMs: 600_000, cacheSizeBytes: 8 << 20 },
      net: { bandwidthBytesPerMs: 100 },
    });
    await c.format();
    await c.open(c.slave);
    const m = await c.open(c.master);
    const fs = new PathFs(m);
    const data = new Uint8Array(2 << 20);
    const view = new DataView(data.buffer);
    for (let i = 0; i < data.length; i += 4) view.setUint32(i, Math.imul(i + 7, 0x9e3779b1) >>> 0);
    fs.create('/big');
    await c.run(fs.write('/big', 0, data));
    await c.run(m.commit());
    expect(await c.converge(120_000)).toBe(true);
    expect(await c.digest(c.slave)).toBe(await c.digest(c.master));
  });
});
