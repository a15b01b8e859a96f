// A rotated log file with more changes than one store commit may carry (a
// master that created a million files between rotations): the batch slave
// applied each file in one commit, which the store refused (`EINVAL`, past
// STORE_COMMIT_OPS_MAX) at every attempt, so the slave never got past that
// file. Now a large file is made durable in pieces that end at its
// transactions, and a power loss between pieces goes on from the last one.
// Here the stores take 3,000 operations per commit and the engines use that
// limit (EngineOptions.commitOpsMax); the master's 2,400 creates and a
// rename of half of them make one file of ~8,000 changes.

import { describe, expect, it } from 'vitest';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { processedLogName } from '../../src/core/replication/master-log.ts';
import { BatchCluster } from '../../src/sim/batch-cluster.ts';
import { Scheduler } from '../../src/sim/scheduler.ts';
import { uniqueData } from '../../src/sim/workload.ts';
import { advance, BS, POLL_MS } from './batch-slave-support.ts';

const OPS_MAX = 3000;

function commitOps(lines: readonly string[]): { reason: string; ops: number }[] {
  return lines.flatMap((l) => {
    const m = /commit txn \d+ \(([^)]*)\): (\d+) ops/.exec(l);
    return m ? [{ reason: m[1], ops: Number(m[2]) }] : [];
  });
}

async function largeFile(seed: number): Promise<{ c: BatchCluster; digest: string; lastTxn: number }> {
  const store = { commitOpsMax: OPS_MAX };
  const c = new BatchCluster(new Scheduler({ seed }), seed, {
    watchdirPollMs: POLL_MS,
    engine: { commitIntervalMs: 1000, cacheSizeBytes: 4 << 20, commitOpsMax: OPS_MAX },
    masterNode: { store },
    slaveNode: { store },
  });
  await c.format();
  const m = await c.open(c.master);
  const fs = new PathFs(m);
  fs.mkdir('/a');
  fs.mkdir('/b');
  for (let i = 0; i < 2400; i++) {
    fs.create(`/a/f${i}`);
    if (i % 100 === 0) await c.run(fs.write(`/a/f${i}`, 0, uniqueData(BS, seed * 10_000 + i, 1)));
    if (i % 20 === 19) await advance(c, 1);
  }
  for (let i = 0; i < 2400; i += 2) {
    fs.rename(`/a/f${i}`, `/b/g${i}`);
    if (i % 40 === 38) await advance(c, 1);
  }
  await c.run(m.commit());
  await c.rotate();
  const chain = await c.masterLogChain();
  expect(chain.files.length).toBe(1);
  const digest = await c.digest(c.master);
  await c.close(c.master);
  const f = chain.files[0];
  expect(f.lastTxn - f.firstTxn, 'the file holds many master transactions').toBeGreaterThan(3);
  await c.deliver(f.name, f.bytes);
  return { c, digest, lastTxn: f.lastTxn };
}

const PART = 'replicate, part of a large file';

/** Run until the slave has committed `n` pieces of the file. */
async function untilParts(c: BatchCluster, n: number): Promise<void> {
  const parts = (): number => commitOps(c.slave.machine.logger.lines).filter((x) => x.reason === PART).length;
  await c.scheduler.run({ untilMs: c.scheduler.nowMs() + 60_000, done: () => parts() >= n });
  expect(parts()).toBeGreaterThanOrEqual(n);
}

/** Run until the slave (its node now) has applied the file; it holds the master's tree, renamed it, and is clean. */
async function appliedWhole(c: BatchCluster, digest: string, lastTxn: number): Promise<void> {
  const applier = c.slave.node!.slaveApplier!;
  await c.scheduler.run({ untilMs: c.scheduler.nowMs() + 120_000, done: () => applier.position().sequence === 1 && !c.slave.node!.watchdir!.backlog });
  expect(applier.durablePosition()).toMatchObject({ sequence: 1, txn: lastTxn });
  expect(await c.digest(c.slave)).toBe(digest);
  expect(await c.watchNames()).toEqual([processedLogName(1)]);
  await c.close(c.slave);
  expect((await c.fsck(c.slave)).problems).toEqual([]);
}

describe('a batch slave applies a file too large for one commit', () => {
  it('in pieces within the store\'s limit, each ending at a master transaction (seed 31)', async () => {
    const { c, digest, lastTxn } = await largeFile(31);
    const master = commitOps(c.master.machine.logger.lines);
    expect(master.reduce((n, x) => n + x.ops, 0), 'the file is larger than one commit may carry').toBeGreaterThan(2 * OPS_MAX);
    await c.open(c.slave, true);
    const lines = c.slave.machine.logger.lines;
    await appliedWhole(c, digest, lastTxn);
    expect(lines.filter((l) => /\[0\]/.test(l)), lines.join('\n')).toEqual([]);
    const commits = commitOps(lines);
    expect(commits.filter((x) => x.reason === PART).length, JSON.stringify(commits)).toBeGreaterThanOrEqual(2);
    for (const x of commits) expect(x.ops, JSON.stringify(commits)).toBeLessThanOrEqual(OPS_MAX);
  }, 120_000);

  it('a full disk after some pieces: they stay, the message says so, the rest is applied once there is room (seed 33)', async () => {
    const { c, digest, lastTxn } = await largeFile(33);
    await c.open(c.slave, true);
    const applier = c.slave.node!.slaveApplier!;
    const lines = c.slave.machine.logger.lines;
    await untilParts(c, 1);
    const disk = c.slave.machine.disk;
    disk.setCapacity(disk.usedBytes() + 64 * 1024);
    c.slave.machine.store.setOptions({ commitErrorProbability: 1 });
    await advance(c, 10_000);
    const durable = applier.durablePosition();
    expect(durable.sequence).toBe(0);
    expect(durable.txn).toBeGreaterThan(1);
    const said = lines.filter((l) => /replog\.dta-1 was not applied whole: .*; its transactions up to txn \d+ are applied and durable \(it was too large for one commit\), the rest was dropped and is applied from txn \d+ next time/.test(l));
    expect(said.length, lines.join('\n')).toBeGreaterThanOrEqual(1);
    expect(said[0]).toContain(`up to txn ${durable.txn} are applied`);
    c.slave.machine.store.setOptions({ commitErrorProbability: 0 });
    disk.setCapacity(1 << 30);
    await appliedWhole(c, digest, lastTxn);
  }, 120_000);

  it('a power loss between pieces keeps the pieces made durable, and the file is applied from there (seed 32)', async () => {
    const { c, digest, lastTxn } = await largeFile(32);
    await c.open(c.slave, true);
    await untilParts(c, 2);
    c.slave.machine.powerLoss();
    c.dropped(c.slave);
    await c.open(c.slave, true);
    const resumedAt = c.slave.node!.slaveApplier!.durablePosition();
    expect(resumedAt.sequence, 'the file is not applied whole yet').toBe(0);
    expect(resumedAt.txn, 'the pieces made durable stay').toBeGreaterThan(1);
    await appliedWhole(c, digest, lastTxn);
  }, 120_000);
});
