// The batch master's log under conditions other than power loss: rotation on
// its timer (and not when there is nothing to rotate, nor while disabled),
// failing store commits and disk writes (a transaction appended to the log
// whose store commit failed must be re-appended, never shipped twice or
// half), a lost replog.dta, and transactions committed without replication.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fsck } from '../../src/core/fs/fsck.ts';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { FsEngine, joinPath } from '../../src/core/fs/engine.ts';
import { validateRotatedFile } from '../../src/core/replication/log-file.ts';
import { LIVE_LOG_NAME } from '../../src/core/replication/master-log.ts';
import { BatchCluster } from '../../src/sim/batch-cluster.ts';
import { SimRng } from '../../src/sim/rng.ts';
import { Scheduler } from '../../src/sim/scheduler.ts';
import { applyToFs, fsDigest, poolData, randomOp } from '../../src/sim/workload.ts';
import { nodePrimitives } from '../../src/real/primitives.ts';

const BS = 4096;
const RUNS = Number(process.env.LESSFS_PROP_RUNS ?? 10);

/** Every rotated file validates, sequences and txn ranges are contiguous; returns the files' bytes in order. */
async function checkedFiles(c: BatchCluster): Promise<{ name: string; bytes: Uint8Array; first: number; last: number }[]> {
  const out: { name: string; bytes: Uint8Array; first: number; last: number }[] = [];
  let nextTxn = 1;
  let nextSeq = 1;
  for (const f of await c.masterFiles()) {
    expect(f.sequence).toBe(nextSeq++);
    const bytes = await c.readMasterFile(f.name);
    const v = validateRotatedFile(nodePrimitives, bytes, { fsId: c.master.engine?.format.fsId ?? `master-${c.seed}`, blockSizeBytes: BS, sequence: f.sequence, fileName: f.name });
    expect(v.header.firstTxn, f.name).toBe(nextTxn);
    nextTxn = v.trailer.lastTxn + 1;
    out.push({ name: f.name, bytes, first: v.header.firstTxn, last: v.trailer.lastTxn });
  }
  return out;
}

async function applyAll(c: BatchCluster, files: { name: string; bytes: Uint8Array }[], from = 0): Promise<void> {
  for (const f of files.slice(from)) {
    const out = await c.run(c.slave.node!.slaveApplier!.applyFile(f.bytes, f.name, Number(f.name.split('-')[1])));
    expect(out.kind, f.name).toBe('applied');
  }
}

async function expectClean(c: BatchCluster): Promise<void> {
  for (const n of [c.master, c.slave]) {
    const rep = await c.run(fsck(n.machine.drivers(), n.options, { thorough: true, repair: false }));
    expect(rep.problems, n.machine.options.name).toEqual([]);
  }
}

describe('batch master log', () => {
  it('rotates on its timer when the log holds transactions, not when empty, not while disabled', async () => {
    const sched = new Scheduler({ seed: 7 });
    const c = new BatchCluster(sched, 7, { master: { rotateReplogIntervalS: 10 } });
    await c.format();
    const m = await c.open(c.master);
    const fs = new PathFs(m);
    // The mount's own transaction is in the log: the first tick rotates it.
    await sched.run({ untilMs: sched.nowMs() + 10_500 });
    expect((await c.masterFiles()).map((f) => f.sequence)).toEqual([1]);
    // Nothing new: no rotation.
    await sched.run({ untilMs: sched.nowMs() + 30_000 });
    expect((await c.masterFiles()).map((f) => f.sequence)).toEqual([1]);
    // Uncommitted changes count: the timer commits and rotates them.
    fs.create('/x');
    await c.run(fs.write('/x', 0, poolData(BS, 1, 3 * BS)));
    await sched.run({ untilMs: sched.nowMs() + 10_500 });
    expect((await c.masterFiles()).map((f) => f.sequence)).toEqual([1, 2]);
    // Disabled: the timer leaves the log alone; a request still rotates.
    await c.run(c.master.node!.control.setEnabled(false));
    fs.create('/y');
    await c.run(m.commit());
    await sched.run({ untilMs: sched.nowMs() + 30_000 });
    expect((await c.masterFiles()).map((f) => f.sequence)).toEqual([1, 2]);
    expect(c.master.node!.control.backlog()).toBe(true);
    await c.run(c.master.node!.control.rotate!());
    expect((await c.masterFiles()).map((f) => f.sequence)).toEqual([1, 2, 3]);
    expect(c.master.node!.control.backlog()).toBe(false);
    expect(c.master.node!.control.sequence()).toBe(4);
    await c.open(c.slave);
    await applyAll(c, await checkedFiles(c));
    expect(await c.run(fsDigest(new PathFs(c.slave.engine!)))).toBe(await c.run(fsDigest(fs)));
    await c.close(c.master);
    await c.close(c.slave);
    await expectClean(c);
  });

  it('failing store commits and disk writes: every rotated file is whole and the slave converges', async () => {
    let injected = 0;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 1_000_000 }), async (seed) => {
        const sched = new Scheduler({ seed });
        const c = new BatchCluster(sched, seed, { master: { rotateReplogSizeBytes: 6 * BS } });
        await c.format();
        let m = await c.open(c.master);
        let fs = new PathFs(m);
        const rng = new SimRng(seed).split('ops');
        c.master.machine.store.setOptions({ commitErrorProbability: 0.25 });
        c.master.machine.disk.setOptions({ writeErrorProbability: 0.03 });
        let failures = 0;
        for (let i = 0; i < 40; i++) {
          const op = randomOp(rng, BS);
          if (op.op === 'commit' || op.op === 'remount') await c.run(m.commit('op')).catch(() => failures++);
          // fsync reaches the log: a failed log write or sync fails it (retried by the next commit).
          else await c.run(applyToFs(fs, op, BS)).catch(() => failures++);
          if (i % 5 === 4) {
            await c.run(m.commit('test')).catch(() => failures++);
            await c.run(c.master.node!.control.rotate!()).catch(() => failures++);
          }
        }
        c.master.machine.store.setOptions({ commitErrorProbability: 0 });
        c.master.machine.disk.setOptions({ writeErrorProbability: 0 });
        if (m.stopped) {
          // A failed data sync stops the filesystem (EIO on every call): the operator restarts the mount,
          // which recovers from the last durable commit. The log must hold together across that too.
          c.master.machine.crash();
          c.dropped(c.master);
          m = await c.open(c.master);
          fs = new PathFs(m);
        }
        await c.run(m.commit('healed'));
        await c.run(c.master.node!.control.rotate!());
        const files = await checkedFiles(c);
        // The live log continues right after the last rotated file and matches the store.
        expect(c.master.node!.masterLog!.lastTxn).toBe(m.txn);
        expect(files[files.length - 1].last).toBe(m.txn);
        await c.open(c.slave);
        await applyAll(c, files);
        expect(await c.run(fsDigest(new PathFs(c.slave.engine!)))).toBe(await c.run(fsDigest(fs)));
        await c.close(c.master);
        await c.close(c.slave);
        await expectClean(c);
        injected += failures;
      }),
      { numRuns: RUNS },
    );
    // The faults must have bitten, or this proves nothing.
    expect(injected).toBeGreaterThan(0);
  });

  it('a lost replog.dta refuses the mount; accepted (--accept-replog-gap), a new sequence starts and a slave behind it refuses the gap', async () => {
    const sched = new Scheduler({ seed: 3 });
    const c = new BatchCluster(sched, 3);
    await c.format();
    let m = await c.open(c.master);
    new PathFs(m).create('/a');
    await c.run(c.master.node!.control.rotate!()); // file 1
    new PathFs(m).create('/b');
    await c.close(c.master);
    const disk = c.master.machine.drivers().disk;
    await c.run(disk.unlink(joinPath(c.master.options.blockDataPath, LIVE_LOG_NAME))); // /b's txns lost
    await expect(c.open(c.master)).rejects.toThrow(/replication log files are missing .*: replog\.dta \(the live log of sequence 2; txns/);
    c.master.repl = { ...c.master.repl, acceptReplogGap: true };
    m = await c.open(c.master);
    expect(c.master.machine.logger.lines.some((l) => /is missing \(the log of sequence 2/.test(l))).toBe(true);
    expect(c.master.node!.control.sequence()).toBe(3);
    new PathFs(m).create('/c');
    await c.run(c.master.node!.control.rotate!()); // file 3
    const names = (await c.masterFiles()).map((f) => f.name);
    expect(names).toEqual(['replog.dta-1', 'replog.dta-3']);
    await c.open(c.slave);
    const applier = c.slave.node!.slaveApplier!;
    await c.run(applier.applyFile(await c.readMasterFile('replog.dta-1'), 'replog.dta-1', 1));
    await expect(c.run(applier.applyFile(await c.readMasterFile('replog.dta-3'), 'replog.dta-3', 3))).rejects.toThrow(/ESEQUENCE.*sequence gap/);
    expect(applier.position().sequence).toBe(1);
    await c.close(c.master);
    await c.close(c.slave);
  });

  it('transactions committed with replication off: the log is closed and a new sequence starts after them', async () => {
    const sched = new Scheduler({ seed: 4 });
    const c = new BatchCluster(sched, 4);
    await c.format();
    let m = await c.open(c.master);
    new PathFs(m).create('/a');
    await c.close(c.master); // live log of sequence 1 holds the mount, /a, unmount
    // A mount without replication: two more transactions the log never sees.
    const plain = await c.run(FsEngine.open(c.master.machine.drivers(), c.master.options));
    new PathFs(plain).create('/b');
    await c.run(plain.close());
    m = await c.open(c.master);
    expect(c.master.machine.logger.lines.some((l) => /cannot be replicated; a slave must be re-seeded/.test(l))).toBe(true);
    expect((await c.masterFiles()).map((f) => f.name)).toEqual(['replog.dta-1']);
    expect(c.master.node!.control.sequence()).toBe(2);
    expect(c.master.node!.masterLog!.lastTxn).toBe(m.txn);
    await c.close(c.master);
  });
});
