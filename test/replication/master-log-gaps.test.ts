// Log files that held transactions the master committed, and are gone at
// mount: the live replog.dta (deleted or lost), or a rotated replog.dta-N
// before the newest (a master ships in ascending order, so one missing in the
// middle was never shipped). The mount is refused, naming the files and their
// txns, until it is mounted once with --accept-replog-gap; files that were
// shipped in order, and a live log that held no committed transaction (it was
// rotated after the last commit), are no gap.

import { describe, expect, it } from 'vitest';
import { joinPath } from '../../src/core/fs/engine.ts';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { decodeHeader, scanLiveLog, validateRotatedFile } from '../../src/core/replication/log-file.ts';
import { LIVE_LOG_NAME, readFileWhole, rotatedLogName } from '../../src/core/replication/master-log.ts';
import { BatchCluster } from '../../src/sim/batch-cluster.ts';
import { LiveCluster } from '../../src/sim/live-cluster.ts';
import { Scheduler } from '../../src/sim/scheduler.ts';
import { poolData } from '../../src/sim/workload.ts';
import { nodePrimitives as p } from '../../src/real/primitives.ts';

const BS = 4096;
const statusField = (status: string, key: string): string | undefined => new RegExp(`^${key}: (.*)$`, 'm').exec(status)?.[1];

/** Mount refusals: the error, or undefined when it mounted. */
async function refusal(open: () => Promise<unknown>): Promise<(Error & { code?: string }) | undefined> {
  return open().then(
    () => undefined,
    (e: unknown) => e as Error & { code?: string },
  );
}

describe('batch master: missing log files at mount', () => {
  /** A batch master with `rotations` rotated files (each after one committed write) and one more transaction in replog.dta; closed. */
  async function master(seed: number, rotations: number): Promise<BatchCluster> {
    const c = new BatchCluster(new Scheduler({ seed }), seed);
    await c.format();
    const e = await c.open(c.master);
    const fs = new PathFs(e);
    for (let i = 0; i <= rotations; i++) {
      fs.create(`/f${i}`);
      await c.run(fs.write(`/f${i}`, 0, poolData(BS, i + 1, BS + 100)));
      await c.run(e.commit());
      if (i < rotations) await c.rotate();
    }
    await c.close(c.master);
    return c;
  }
  const dirOf = (c: BatchCluster): string => c.master.options.blockDataPath;
  const disk = (c: BatchCluster) => c.master.machine.drivers().disk;
  const remove = (c: BatchCluster, name: string): Promise<void> => c.run(disk(c).unlink(joinPath(dirOf(c), name)));
  const names = async (c: BatchCluster): Promise<string[]> => (await c.run(disk(c).readdir(dirOf(c)))).filter((n) => n.startsWith('replog')).sort();
  const range = async (c: BatchCluster, name: string) => {
    const files = await c.masterFiles();
    const f = files.find((x) => x.name === name);
    if (!f) throw new Error(`${name} not on disk`);
    const bytes = await c.readMasterFile(name);
    const v = validateRotatedFile(p, bytes, { fsId: decodeHeader(p, bytes).fsId, blockSizeBytes: BS, fileName: name });
    return { firstTxn: v.header.firstTxn, lastTxn: v.trailer.lastTxn };
  };
  const liveFirstTxn = async (c: BatchCluster): Promise<number> =>
    scanLiveLog(p, await c.run(readFileWhole(disk(c), joinPath(dirOf(c), LIVE_LOG_NAME)))).header!.firstTxn;

  it('replog.dta deleted: refused, naming it and the txns only it held; nothing changed; --accept-replog-gap mounts once, on a new sequence, and the gap stays accepted', async () => {
    const c = await master(3, 1);
    const one = await range(c, 'replog.dta-1');
    const first = await liveFirstTxn(c);
    expect(first).toBe(one.lastTxn + 1);
    await remove(c, LIVE_LOG_NAME);
    const before = await names(c);
    const err = await refusal(() => c.open(c.master));
    expect(err, 'the mount is refused').toBeDefined();
    expect(err!.code).toBe('ECORRUPT');
    // The mount's own commit made the last logged txn one past the write's.
    expect(err!.message).toMatch(new RegExp(`replication log files are missing from ${dirOf(c)}: replog\\.dta \\(the live log of sequence 2; txns ${first}\\.\\.\\d+\\)`));
    expect(err!.message).toMatch(/re-seed the slave/);
    expect(err!.message).toContain('--accept-replog-gap');
    expect(err!.message).not.toMatch(/live master/);
    expect(await names(c)).toEqual(before);

    c.master.repl = { ...c.master.repl, acceptReplogGap: true };
    const lines = c.master.machine.logger.lines.length;
    const e = await c.open(c.master);
    const said = c.master.machine.logger.lines.slice(lines).join('\n');
    expect(said).toMatch(/ \[0\] replication log: log files missing, accepted by --accept-replog-gap: replog\.dta \(the live log of sequence 2; txns/);
    expect(statusField(c.master.node!.control.status(), 'last_error')).toMatch(/accepted by --accept-replog-gap/);
    expect(c.master.node!.masterLog!.sequence).toBe(3); // never 2 again: it may have been seen
    expect(await liveFirstTxn(c)).toBe(e.txn); // the mount's commit went into the new log
    await c.rotate();
    await c.close(c.master);
    expect((await c.masterFiles()).map((f) => f.name)).toEqual(['replog.dta-1', 'replog.dta-3']);

    // The skipped sequence 2 is no longer a gap: the next mounts need no option.
    c.master.repl = { ...c.master.repl, acceptReplogGap: false };
    await c.open(c.master);
    new PathFs(c.engineOf(c.master)).create('/later');
    await c.run(c.engineOf(c.master).commit());
    await c.close(c.master);
    await c.open(c.master);
    await c.close(c.master);
  });

  it('replog.dta deleted right after a rotation (it held no committed transaction): mounts, same sequence, no gap', async () => {
    const c = await master(4, 1);
    await c.open(c.master);
    await c.rotate(); // the mount's own transaction goes to replog.dta-2; replog.dta (sequence 3) holds none
    c.master.machine.crash(); // before an unmount commit goes into it
    c.dropped(c.master);
    await remove(c, LIVE_LOG_NAME);
    const lines = c.master.machine.logger.lines.length;
    await c.open(c.master);
    const said = c.master.machine.logger.lines.slice(lines);
    expect(said.join('\n')).toMatch(/replog\.dta is missing; the rotated files hold every transaction committed with the log/);
    expect(said.filter((l) => / \[0\] /.test(l))).toEqual([]);
    expect(c.master.node!.masterLog!.sequence).toBe(3);
    expect(statusField(c.master.node!.control.status(), 'last_error')).toBe('-');
    await c.close(c.master);
  });

  it('a rotated file missing before the newest: refused, naming it and its txns from its neighbours', async () => {
    const c = await master(5, 3);
    const one = await range(c, 'replog.dta-1');
    const three = await range(c, 'replog.dta-3');
    await remove(c, 'replog.dta-2');
    const err = await refusal(() => c.open(c.master));
    expect(err?.code).toBe('ECORRUPT');
    expect(err!.message).toContain(`: replog.dta-2 (txns ${one.lastTxn + 1}..${three.firstTxn - 1}).`);
    expect(err!.message).toMatch(/deleted or lost before it was shipped/);
    expect(err!.message).toContain(`a slave that has applied txn ${three.firstTxn - 1} already has them`);
    // The newest rotated file missing too: one run up to the live log.
    const live = await liveFirstTxn(c);
    await remove(c, 'replog.dta-3');
    const err2 = await refusal(() => c.open(c.master));
    expect(err2!.message).toContain(`: replog.dta-2 .. replog.dta-3 (txns ${one.lastTxn + 1}..${live - 1}).`);
  });

  it('files shipped in order (moved away from the oldest on) are no gap', async () => {
    const c = await master(6, 3);
    await remove(c, 'replog.dta-1');
    await remove(c, 'replog.dta-2');
    await c.open(c.master);
    await c.close(c.master);
    await remove(c, 'replog.dta-3');
    await c.open(c.master);
    await c.close(c.master);
  });

  it('an empty rotated file missing is a gap too (a slave needs every sequence), and accepting it records it', async () => {
    const c = await master(7, 1);
    await c.open(c.master);
    await c.rotate(); // replog.dta-2: the mount's transaction
    await c.rotate(); // replog.dta-3: none
    await c.rotate(); // replog.dta-4: none
    await c.close(c.master);
    await remove(c, 'replog.dta-3');
    const err = await refusal(() => c.open(c.master));
    expect(err!.message).toContain(': replog.dta-3 (no transactions, but a slave needs every sequence in order).');
    c.master.repl = { ...c.master.repl, acceptReplogGap: true };
    await c.open(c.master);
    await c.close(c.master);
    c.master.repl = { ...c.master.repl, acceptReplogGap: false };
    await c.open(c.master);
    await c.close(c.master);
  });

  it('--accept-replog-gap with nothing missing changes nothing', async () => {
    const c = await master(8, 1);
    c.master.repl = { ...c.master.repl, acceptReplogGap: true };
    const lines = c.master.machine.logger.lines.length;
    await c.open(c.master);
    expect(c.master.machine.logger.lines.slice(lines).join('\n')).toMatch(/--accept-replog-gap given, but no log file is missing/);
    expect(c.master.node!.masterLog!.sequence).toBe(2);
    await c.close(c.master);
    expect(rotatedLogName(1)).toBe('replog.dta-1');
  });
});

describe('live master: replog.dta missing at mount', () => {
  it('refused (its slave may not have acknowledged what it held); --accept-replog-gap mounts on a new sequence', async () => {
    const c = new LiveCluster(new Scheduler({ seed: 9 }), 9);
    await c.format();
    // The slave is never opened: everything the master commits stays in its log.
    const e = await c.open(c.master);
    const fs = new PathFs(e);
    fs.create('/a');
    await c.run(fs.write('/a', 0, poolData(BS, 1, 3 * BS)));
    await c.run(e.commit());
    await c.close(c.master);
    const logged = e.txn;
    const disk = c.master.machine.drivers().disk;
    await c.run(disk.unlink(joinPath(c.master.options.blockDataPath, LIVE_LOG_NAME)));
    const err = await refusal(() =>
      c.open(c.master).catch((x: unknown) => {
        c.fail(c.master, 'crash'); // a refused mount ends the process
        throw x;
      }),
    );
    expect(err?.code).toBe('ECORRUPT');
    expect(err!.message).toContain(`: replog.dta (the live log of sequence 1; txns up to ${logged}).`);
    expect(err!.message).toMatch(/a live master keeps in replog\.dta what its slave has not acknowledged/);
    expect(err!.message).toContain(`a slave that has applied txn ${logged} already has them`);
    c.master.repl = { ...c.master.repl, acceptReplogGap: true };
    await c.open(c.master);
    expect(c.master.node!.masterLog!.sequence).toBe(2);
    expect(statusField(c.master.node!.control.status(), 'last_error')).toMatch(/accepted by --accept-replog-gap/);
    await c.close(c.master);
  });
});
