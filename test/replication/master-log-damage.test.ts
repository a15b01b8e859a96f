// A master's replog.dta damaged after its transactions were committed is
// refused at mount, never cut like the torn tail a crash leaves: the log is
// made durable before the store commit it describes, so a frame of a committed
// transaction that fails its check was damaged afterwards, and cutting it
// would silently lose what the slave still needs. A real torn tail (the
// incomplete or damaged last append of a transaction the store never
// committed) is still cut quietly.

import { describe, expect, it } from 'vitest';
import { breakAndRepair, masterWithTwoFiles } from './batch-support.ts';
import { FsEngine, joinPath } from '../../src/core/fs/engine.ts';
import { T } from '../../src/core/fs/schema.ts';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { encodeRecordFrame, FRAME_TYPE } from '../../src/core/replication/frames.ts';
import { scanLiveLog } from '../../src/core/replication/log-file.ts';
import { LIVE_LOG_NAME, readFileWhole, writeFileDurably } from '../../src/core/replication/master-log.ts';
import { BatchCluster } from '../../src/sim/batch-cluster.ts';
import { LiveCluster } from '../../src/sim/live-cluster.ts';
import type { SimMachine } from '../../src/sim/node-env.ts';
import { Scheduler } from '../../src/sim/scheduler.ts';
import { poolData } from '../../src/sim/workload.ts';
import { nodePrimitives as p } from '../../src/real/primitives.ts';
import type { FsEngine as Engine } from '../../src/core/fs/engine.ts';
import type { EngineOptions } from '../../src/core/fs/types.ts';

const BS = 4096;

/** What the tests need of either cluster: a master to open and close, its machine and options. */
interface Master {
  run<T>(promise: Promise<T>): Promise<T>;
  open(): Promise<Engine>;
  close(): Promise<void>;
  machine: SimMachine;
  options: EngineOptions;
  status(): string;
  /** The next mounts run as `lessfs --accept-replog-gap` (true) or without it. */
  acceptGap(on: boolean): void;
}

type Cluster = LiveCluster | BatchCluster;

/** The Master of a cluster whose master node is opened by `open` and closed by `close`. */
function masterOf(c: Cluster, open: () => Promise<Engine>, close: () => Promise<void>): Master & { format(): Promise<void> } {
  const n = c.master;
  return {
    run: (x) => c.run(x),
    format: () => c.format(),
    open,
    close,
    machine: n.machine,
    options: n.options,
    status: () => n.node!.control.status(),
    acceptGap: (on) => {
      n.repl = { ...n.repl, acceptReplogGap: on };
    },
  };
}

function liveMaster(seed: number): Master & { format(): Promise<void> } {
  // The slave is never opened: everything the master commits stays in its log.
  const c = new LiveCluster(new Scheduler({ seed }), seed);
  // A refused mount ends the process: its network endpoint goes with it.
  return masterOf(c, () =>
    c.open(c.master).catch((err: unknown) => {
      c.fail(c.master, 'crash');
      throw err;
    }),
    () => c.close(c.master),
  );
}

function batchMaster(seed: number): Master & { format(): Promise<void> } {
  const c = new BatchCluster(new Scheduler({ seed }), seed);
  return masterOf(
    c,
    () => c.open(c.master),
    () => c.close(c.master),
  );
}

const logPath = (m: Master): string => joinPath(m.options.blockDataPath, LIVE_LOG_NAME);
const readLog = (m: Master): Promise<Uint8Array> => m.run(readFileWhole(m.machine.drivers().disk, logPath(m)));
const writeLog = (m: Master, bytes: Uint8Array): Promise<void> => m.run(writeFileDurably(m.machine.drivers().disk, logPath(m), bytes));

/** A master with a few committed transactions in replog.dta (one with a block of each size class), closed. */
async function masterWithLog(make: (seed: number) => Master & { format(): Promise<void> }): Promise<{ m: Master; storeTxn: number }> {
  const m = make(21);
  await m.format();
  const e = await m.open();
  const fs = new PathFs(e);
  fs.create('/a');
  await m.run(fs.write('/a', 0, poolData(BS, 1, 3 * BS)));
  await m.run(e.commit());
  fs.mkdir('/d');
  fs.create('/d/b');
  await m.run(fs.write('/d/b', 0, poolData(BS, 2, 100)));
  await m.run(e.commit());
  await m.close();
  return { m, storeTxn: e.txn };
}

const statusField = (status: string, key: string): string | undefined => new RegExp(`^${key}: (.*)$`, 'm').exec(status)?.[1];

for (const [mode, make] of [['live', liveMaster], ['batch', batchMaster]] as const) {
  describe(`a ${mode} master's replog.dta at mount`, () => {
    for (const where of ['a record frame of an earlier transaction', 'the COMMIT of the last committed transaction'] as const) {
      it(`a flipped byte in ${where} refuses the mount, names file, offset and txn, and changes nothing`, async () => {
        const { m, storeTxn } = await masterWithLog(make);
        const before = await readLog(m);
        const scan = scanLiveLog(p, before);
        expect(scan.tail).toBeUndefined();
        expect(scan.lastTxn).toBe(storeTxn);
        const t = where.startsWith('a record') ? scan.transactions.find((x) => x.records.length > 0 && x.txn < storeTxn)! : scan.transactions[scan.transactions.length - 1];
        const frame = where.startsWith('a record') ? t.records[0] : t.commitFrame;
        const damaged = before.slice();
        damaged[frame.offsetBytes + frame.sizeBytes - 3] ^= 0x10;
        await writeLog(m, damaged);
        const lines = m.machine.logger.lines.length;
        const err = await m.open().then(
          () => undefined,
          (e: unknown) => e as Error & { code?: string },
        );
        expect(err, 'the mount is refused').toBeDefined();
        expect(err!.code).toBe('ECORRUPT');
        expect(err!.message).toContain(logPath(m));
        expect(err!.message).toContain(`offset ${frame.offsetBytes}`);
        expect(err!.message).toContain(`txn ${t.txn}`);
        expect(err!.message).toMatch(/re-seed/);
        expect(err!.message).not.toMatch(/without replication/);
        // Nothing was cut, rotated or renamed: the damaged log is there to inspect.
        expect(await readLog(m)).toEqual(damaged);
        const names = await m.run(m.machine.drivers().disk.readdir(m.options.blockDataPath));
        expect(names.filter((n) => n.startsWith('replog'))).toEqual([LIVE_LOG_NAME]);
        expect(m.machine.logger.lines.slice(lines).join('\n')).not.toMatch(/torn tail|cannot be replicated/);
        expect(err!.message).toContain('--accept-replog-gap');
        // What the error says to do works: with the log moved aside the master is still refused (its
        // transactions are gone) until it is mounted once with --accept-replog-gap, on a new sequence.
        const disk = m.machine.drivers().disk;
        await m.run(disk.rename(joinPath(m.options.blockDataPath, LIVE_LOG_NAME), joinPath(m.options.blockDataPath, `${LIVE_LOG_NAME}.damaged`)));
        await expect(m.open()).rejects.toThrow(/replog\.dta \(the live log of sequence 1; txns up to \d+\)/);
        m.acceptGap(true);
        const e = await m.open();
        expect(m.machine.logger.lines.slice(lines).join('\n')).toMatch(/accepted by --accept-replog-gap.*must be re-seeded/);
        expect(scanLiveLog(p, await readLog(m)).header?.firstTxn).toBe(storeTxn + 1);
        expect(e.txn).toBe(storeTxn + 1);
        await m.close();
      });
    }

    for (const tear of ['an incomplete frame', 'a whole frame with a bad CRC'] as const) {
      it(`${tear} of a transaction the store never committed is a torn tail: cut quietly, as before`, async () => {
        const { m, storeTxn } = await masterWithLog(make);
        const before = await readLog(m);
        const scan = scanLiveLog(p, before);
        // The next transaction's first record, as its append would have written it.
        const last = scan.transactions[scan.transactions.length - 1];
        const kv = scan.transactions.flatMap((x) => x.decoded).find((r) => r.type === FRAME_TYPE.KV)!;
        const next = encodeRecordFrame(p, storeTxn + 1, kv);
        const torn = next.slice();
        if (tear === 'a whole frame with a bad CRC') torn[torn.length - 2] ^= 0x01;
        const tail = tear === 'an incomplete frame' ? torn.subarray(0, torn.length - 5) : torn;
        const withTail = new Uint8Array(before.length + tail.length);
        withTail.set(before);
        withTail.set(tail, before.length);
        expect(last.endOffsetBytes).toBe(before.length);
        await writeLog(m, withTail);
        const lines = m.machine.logger.lines.length;
        const e = await m.open();
        const said = m.machine.logger.lines.slice(lines);
        expect(said.some((l) => / \[1\] replication log: cutting a torn tail of \d+ bytes at offset \d+/.test(l))).toBe(true);
        expect(said.filter((l) => / \[0\] /.test(l))).toEqual([]);
        expect(statusField(m.status(), 'last_error')).toBe('-');
        expect(e.txn).toBe(storeTxn + 1); // the mount's own commit went on from the store's txn
        await m.close();
        expect(scanLiveLog(p, await readLog(m)).tail).toBeUndefined();
      });
    }
  });
}

describe('a log behind the store after a mount without replication', () => {
  it('says that transactions were committed without replication, and status shows it', async () => {
    const { m, storeTxn } = await masterWithLog(batchMaster);
    const plain = await m.run(FsEngine.open(m.machine.drivers(), m.options));
    new PathFs(plain).create('/c');
    await m.run(plain.close());
    const lines = m.machine.logger.lines.length;
    await m.open();
    const said = m.machine.logger.lines.slice(lines).join('\n');
    const gap = `transactions ${storeTxn + 1}..${plain.txn}`;
    expect(said).toContain(`${gap} were committed without replication`);
    expect(said).toMatch(/a slave must be re-seeded/);
    expect(statusField(m.status(), 'last_error')).toContain(gap);
    await m.close();
  });
});

describe('a master repaired by lessfsck -r', () => {
  /** A batch master with replog.dta-1 applied by its slave and more transactions in replog.dta; closed. */
  async function replicated(): Promise<{ c: BatchCluster; logged: number }> {
    const c = new BatchCluster(new Scheduler({ seed: 5 }), 5);
    const logged = await masterWithTwoFiles(c, { rotateLast: false });
    await c.open(c.slave);
    await c.run(c.slave.node!.slaveApplier!.applyFile(await c.readMasterFile('replog.dta-1'), 'replog.dta-1', 1));
    await c.close(c.slave);
    return { c, logged };
  }

  it('the repair is a transaction of its own, and the next mount names it as the cause of the gap; the slave refuses the gap', async () => {
    const { c, logged } = await replicated();
    const report = await breakAndRepair((p) => c.run(p), c.master, 'master');
    expect(report.problems.some((p) => p.repaired)).toBe(true);
    expect(report.txn).toBe(logged + 1);
    expect(report.warnings).toEqual([expect.stringContaining(`the repair is txn ${logged + 1}, committed without the replication log`)]);
    const lines = c.master.machine.logger.lines.length;
    await c.open(c.master);
    const said = c.master.machine.logger.lines.slice(lines).join('\n');
    expect(said).toContain(`replog.dta ends at txn ${logged}: the database was repaired by lessfsck -r at txn ${logged + 1}, which the log does not hold and cannot replicate; a slave must be re-seeded`);
    expect(said).not.toContain('REPLICATION=off');
    expect(statusField(c.master.node!.control.status(), 'last_error')).toContain(`repaired by lessfsck -r at txn ${logged + 1}`);
    new PathFs(c.engineOf(c.master)).create('/c');
    await c.run(c.engineOf(c.master).commit());
    await c.rotate();
    await c.close(c.master);
    // replog.dta-2 holds what was logged before the repair; replog.dta-3 starts after it.
    expect((await c.masterFiles()).map((f) => f.name)).toEqual(['replog.dta-1', 'replog.dta-2', 'replog.dta-3']);
    await c.open(c.slave);
    const applier = c.slave.node!.slaveApplier!;
    await c.run(applier.applyFile(await c.readMasterFile('replog.dta-2'), 'replog.dta-2', 2));
    await expect(c.run(applier.applyFile(await c.readMasterFile('replog.dta-3'), 'replog.dta-3', 3))).rejects.toThrow(
      `transaction gap: the file starts at txn ${logged + 2}, but this slave is at txn ${logged}`,
    );
    await c.close(c.slave);
  });

  it('a repair and a mount without replication: the mount names both', async () => {
    const { c, logged } = await replicated();
    await breakAndRepair((p) => c.run(p), c.master, 'master');
    const plain = await c.run(FsEngine.open(c.master.machine.drivers(), c.master.options));
    new PathFs(plain).create('/c');
    await c.run(plain.close());
    const lines = c.master.machine.logger.lines.length;
    await c.open(c.master);
    const said = c.master.machine.logger.lines.slice(lines).join('\n');
    expect(said).toContain(
      `the database was repaired by lessfsck -r at txn ${logged + 1}, and the other ${plain.txn - logged - 1} of transactions ${logged + 1}..${plain.txn} were committed without replication (by a mount with REPLICATION=off); none of them can be replicated; a slave must be re-seeded`,
    );
    await c.close(c.master);
  });
});
