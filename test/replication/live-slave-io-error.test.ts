// A live slave whose own disks fail its master's transactions with an I/O
// error (not ENOSPC; docs/replication-protocol.md, "An I/O error on the
// slave"): it never acknowledges what is not durable, drops it, refuses its
// master for a wait that doubles up to a minute, then takes the stream again
// from its durable txn, and converges once the disk works, without a restart.
// A failed fsync of its data file stops its engine: it stops taking the
// stream with one line, refuses its master with "remount this slave", and
// converges after a remount.

import { describe, expect, it } from 'vitest';
import { cluster, convergedAndClean, loggedSince, status, writeFiles } from './live-slave-support.ts';

describe('a live slave whose disks fail with I/O errors', () => {
  it('block writes failing with EIO: drops what is not durable, refuses the master with a growing wait, bounded log and effort, converges once the disk works (seed 51)', async () => {
    const { c, fs } = await cluster(51);
    const slave = c.engineOf(c.slave);
    const disk = c.slave.machine.disk;
    const r = c.receiver!;
    const durable = r.durableTxn;
    disk.setOptions({ writeErrorProbability: 1, faultPathPrefix: '/slave/dta', faultOps: ['write'] });
    await writeFiles(c, fs, 2, 2, 64);
    await c.advance(20_000);
    expect(r.durableTxn).toBe(durable);
    expect(c.sender!.backlog).toBe(true);
    const lines = { slave: c.slave.machine.logger.lines.length, master: c.master.machine.logger.lines.length };
    const connections = r.stats.connections;
    // Ten minutes of a failing disk while the master goes on writing.
    let refusedSeen = false;
    let stoppedSeen = false;
    for (let i = 0; i < 20; i++) {
      await writeFiles(c, fs, 10 + i, 1, 16);
      await c.advance(30_000);
      // Never acknowledged, never made durable; what is not durable is dropped between attempts.
      expect(r.durableTxn).toBe(durable);
      expect(status(c.master.node!.control.status()).slave_txn).toBe(String(durable));
      const ms = status(c.master.node!.control.status());
      if (/^the slave refused the connection: on this slave an I\/O error of its disks \(EIO.*\) failed the master's transactions; it dropped the transactions after txn \d+ it had not made durable and takes them again in \d+ s/.test(ms.last_error ?? '')) refusedSeen = true;
      if (/^an I\/O error of this slave's disks \(EIO.*\): the stream is taken again in \d+ s \(\d+ attempts? failed/.test(status(c.slave.node!.control.status()).stream_stopped ?? '')) {
        stoppedSeen = true;
        // Nothing held in memory while it waits.
        expect(slave.pendingChanges).toBe(0);
      }
    }
    expect(refusedSeen).toBe(true);
    expect(stoppedSeen).toBe(true);
    expect(r.stats.ioErrors).toBeGreaterThanOrEqual(8);
    expect(r.stats.ioErrors).toBeLessThanOrEqual(20);
    // Attempts a minute apart at most (the master's own backoff is 5 s): few connections.
    expect(r.stats.connections - connections).toBeLessThanOrEqual(160);
    const slaveLines = loggedSince(c, 'slave', lines.slave);
    const masterLines = loggedSince(c, 'master', lines.master);
    // Its stop and resume lines at most once a minute each (40 lines in all on the slave, 33 on the master, with the connections').
    expect(slaveLines.filter((l) => /I\/O error/.test(l)).length, slaveLines.join('\n')).toBeLessThanOrEqual(22);
    expect(slaveLines.length, slaveLines.join('\n')).toBeLessThanOrEqual(48);
    expect(masterLines.length, masterLines.join('\n')).toBeLessThanOrEqual(40);
    disk.setOptions({ writeErrorProbability: 0 });
    await convergedAndClean(c, slave);
    expect(c.slave.machine.logger.lines.some((l) => /\[0\] replication: txn \d+ is durable: this slave's disks work again after \d+ I\/O errors in a row/.test(l))).toBe(true);
  }, 120_000);

  it('store commits failing with EIO (room enough): the same, and converges once the store works (seed 52)', async () => {
    const { c, fs } = await cluster(52);
    const slave = c.engineOf(c.slave);
    const store = c.slave.machine.store;
    const r = c.receiver!;
    const durable = r.durableTxn;
    store.setOptions({ commitErrorProbability: 1 });
    await writeFiles(c, fs, 2, 2, 16);
    await c.advance(60_000);
    expect(r.durableTxn).toBe(durable);
    expect(status(c.master.node!.control.status()).last_error).toMatch(/^the slave refused the connection: on this slave an I\/O error of its disks \(EIO: commit .*\) failed the master's transactions/);
    expect(status(c.slave.node!.control.status()).stream_stopped).toMatch(/^an I\/O error of this slave's disks \(EIO: commit/);
    expect(slave.pendingChanges).toBe(0);
    expect(r.stats.ioErrors).toBeGreaterThanOrEqual(2);
    store.setOptions({ commitErrorProbability: 0 });
    await writeFiles(c, fs, 3, 1, 16);
    await convergedAndClean(c, slave);
  }, 120_000);

  it('a failed fsync of the data file stops the engine: one line, "remount this slave" on both sides, no flood, no busy loop; after a remount it converges (seed 53)', async () => {
    const { c, fs } = await cluster(53);
    const disk = c.slave.machine.disk;
    const r = c.receiver!;
    disk.setOptions({ writeErrorProbability: 1, faultPathPrefix: '/slave/dta', faultOps: ['sync'] });
    const lines = { slave: c.slave.machine.logger.lines.length, master: c.master.machine.logger.lines.length };
    await writeFiles(c, fs, 2, 2, 16);
    await c.advance(20_000);
    expect(c.engineOf(c.slave).stopped).toBe(true);
    const first = loggedSince(c, 'slave', lines.slave);
    expect(first.filter((l) => /remount this slave/.test(l)), first.join('\n')).toHaveLength(1);
    expect(status(c.slave.node!.control.status()).stream_stopped).toMatch(/^remount this slave: fsync of the block data file failed/);
    expect(status(c.master.node!.control.status()).last_error).toMatch(/^the slave refused the connection: remount this slave: fsync of the block data file failed/);
    const later = { slave: c.slave.machine.logger.lines.length, master: c.master.machine.logger.lines.length };
    const connections = r.stats.connections;
    for (let i = 0; i < 20; i++) {
      await writeFiles(c, fs, 10 + i, 1, 16);
      await c.advance(30_000);
    }
    expect(r.stats.connections - connections).toBeLessThanOrEqual(160);
    expect(loggedSince(c, 'slave', later.slave)).toEqual([]);
    expect(loggedSince(c, 'master', later.master)).toEqual([]);
    // The remount: the process ends (a stopped engine cannot close cleanly), the disk works again.
    c.fail(c.slave, 'crash');
    disk.setOptions({ writeErrorProbability: 0 });
    const slave = await c.open(c.slave);
    await convergedAndClean(c, slave);
  }, 120_000);
});
