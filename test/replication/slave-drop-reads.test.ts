// Readers of a slave's mount while the slave drops what it has not made
// durable (FsEngine.discardUncommitted: a full disk, docs/replication-protocol.md
// "A full disk on the slave"). A read resolves a file's blocks against the
// tree it sees and then reads their extents; the drop puts the durable tree
// back and truncates the data file to its durable end. A read that resolved
// against the dropped tree must still get that tree's bytes (never EIO from
// an extent cut under it), and a read after the drop sees the durable tree.

import { describe, expect, it } from 'vitest';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { validateRotatedFile } from '../../src/core/replication/log-file.ts';
import { toReplicatedTxn } from '../../src/core/replication/slave.ts';
import { BatchCluster } from '../../src/sim/batch-cluster.ts';
import { Scheduler } from '../../src/sim/scheduler.ts';
import { fsDigest, uniqueData } from '../../src/sim/workload.ts';

const BS = 4096;

const unique = (tag: number, blocks: number): Uint8Array => uniqueData(BS, tag, blocks);

async function dropDuringReads(seed: number): Promise<{ failures: string[]; reads: number }> {
  const sched = new Scheduler({ seed });
  const c = new BatchCluster(sched, seed, {
    engine: { commitIntervalMs: 600_000 },
    slaveNode: { disk: { latencyMsMin: 0, latencyMsMax: 4 } },
  });
  await c.format();
  const m = await c.open(c.master);
  const fs = new PathFs(m);
  fs.create('/old');
  await c.run(fs.write('/old', 0, unique(1, 16)));
  await c.run(c.master.node!.control.rotate!());
  fs.create('/new');
  const fresh = unique(2, 48);
  await c.run(fs.write('/new', 0, fresh));
  await c.run(fs.write('/old', 0, unique(3, 16)));
  await c.run(c.master.node!.control.rotate!());
  const [first, second] = await c.masterFiles();
  const slave = await c.open(c.slave);
  const applier = c.slave.node!.slaveApplier!;
  await c.run(applier.applyFile(await c.readMasterFile(first.name), first.name, first.sequence));
  const sfs = new PathFs(slave);
  const durable = await c.run(fsDigest(sfs));
  const oldBefore = await c.run(sfs.readFile('/old'));
  // The second file applied to the write cache only, its blocks written (not synced): what a drop takes back.
  const file = validateRotatedFile(c.slave.machine.drivers().primitives, await c.readMasterFile(second.name), { fsId: m.format.fsId, blockSizeBytes: BS });
  for (const tx of file.transactions) slave.applyReplicated(toReplicatedTxn(tx), { ...applier.position(), txn: tx.txn });
  await sched.run({ untilMs: sched.nowMs() + 200 });
  const oldAfter = await c.run(sfs.readFile('/old'));
  expect(equal(oldAfter, oldBefore)).toBe(false);

  // Reads of both files, cold (from the data file) and whole, then the drop at once.
  const failures: string[] = [];
  let reads = 0;
  const results: Promise<void>[] = [];
  for (const [path, before, after] of [['/new', undefined, fresh], ['/old', oldBefore, oldAfter]] as const) {
    for (let k = 0; k < 4; k++) {
      const off = k * 12 * BS;
      const p = sfs.read(path, off, 12 * BS).then(
        (got) => {
          reads++;
          const expected = [before, after].filter((b) => b !== undefined).map((b) => b.subarray(off, off + got.length));
          if (!expected.some((e) => equal(e, got))) failures.push(`${path} at ${off}: neither tree's bytes`);
        },
        (err: unknown) => {
          failures.push(`${path} at ${off}: ${(err as Error).message}`);
        },
      );
      results.push(p);
    }
  }
  const drop = slave.discardUncommitted();
  await c.run(Promise.all([drop, ...results]));
  // After the drop: the durable tree, read whole.
  expect(await c.run(fsDigest(sfs))).toBe(durable);
  expect(equal(await c.run(sfs.readFile('/old')), oldBefore)).toBe(true);
  await c.close(c.slave);
  expect((await c.fsck(c.slave)).problems).toEqual([]);
  return { failures, reads };
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

describe('reads of a slave during a drop of its uncommitted transactions', () => {
  it('see the tree they resolved against or the durable one, never EIO (seeds 1..12)', async () => {
    for (let seed = 1; seed <= 12; seed++) {
      const { failures, reads } = await dropDuringReads(seed);
      expect(failures, `seed=${seed}`).toEqual([]);
      expect(reads, `seed=${seed}`).toBe(8);
    }
  }, 120_000);
});
