// A live slave whose disk fills mid-stream (docs/replication-protocol.md,
// "A full disk on the slave"): it drops the transactions it has not made
// durable, refuses its master with the reason (which the master's status
// shows) while the disk has no more room than when it filled, and takes the
// stream again from its last durable txn once room appears, without a
// restart. A tester's report: 8 MiB freed on the slave's full disk did not
// unwedge it (its accepted blocks did not fit the free space past the floor a
// retry leaves the metadata store), only a restart did, and the master showed
// last_error "-" meanwhile.

import { describe, expect, it } from 'vitest';
import { SimRng } from '../../src/sim/rng.ts';
import { BS, cluster, convergedAndClean, loggedSince, MiB, status, unique, writeFiles } from './live-slave-support.ts';

describe('a live slave whose disk fills mid-stream', () => {
  it('converges without a restart once room appears, when its accepted blocks would not fit past the retry floor (seed 41)', async () => {
    const { c, fs } = await cluster(41);
    const slave = c.engineOf(c.slave);
    const disk = c.slave.machine.disk;
    // 128 KiB of room; then 4 MiB of new blocks arrive.
    const used0 = disk.usedBytes();
    disk.setCapacity(used0 + 32 * BS);
    await writeFiles(c, fs, 2, 8, 128);
    await c.advance(30_000);
    expect(c.sender!.backlog).toBe(true);

    const stalled = { master: status(c.master.node!.control.status()), slave: status(c.slave.node!.control.status()) };

    // Room for all of it, but less than its blocks plus the floor a retry keeps (256 KiB).
    disk.setCapacity(used0 + 4 * MiB + 200 * 1024);
    await convergedAndClean(c, slave);
    // The operator's view while it was stuck: on the master, why the slave does not advance.
    expect(stalled.master.last_error).toMatch(/^the slave refused the connection: on this slave the disk under \/slave\/dta is full \(ENOSPC.*\); it dropped the transactions after txn \d+ it had not made durable and takes them again once/);
    expect(stalled.master.connection).toMatch(/backoff|connecting|handshake/);
    expect(stalled.slave.stream_stopped).toMatch(/^the disk under \/slave\/dta is full/);
  }, 120_000);

  it('while the disk stays full it keeps refusing with bounded effort and a bounded log, holds nothing in memory, and converges when room comes (seed 43)', async () => {
    const { c, fs } = await cluster(43);
    const slave = c.engineOf(c.slave);
    const disk = c.slave.machine.disk;
    disk.setCapacity(disk.usedBytes() + 32 * BS);
    await writeFiles(c, fs, 2, 2, 64);
    await c.advance(20_000);
    const r = c.receiver!;
    expect(r.stats.stalls).toBe(1);
    const durable = r.durableTxn;
    const lines = { slave: c.slave.machine.logger.lines.length, master: c.master.machine.logger.lines.length };
    const connections = r.stats.connections;
    // Ten minutes of a full disk while the master goes on writing.
    for (let i = 0; i < 20; i++) {
      await writeFiles(c, fs, 10 + i, 1, 64);
      await c.advance(30_000);
      expect(slave.pendingChanges).toBe(0);
      expect(r.durableTxn).toBe(durable);
      expect(r.appliedTxn).toBe(durable);
    }
    // The master's reconnects back off to 5 s (plus jitter): about 120 in ten minutes.
    expect(r.stats.connections - connections).toBeLessThanOrEqual(160);
    const since = (n: 'slave' | 'master'): string[] => loggedSince(c, n, lines[n]);
    // One line a minute of the refusal on the slave, one on the master for all of them.
    expect(since('slave').length).toBeLessThanOrEqual(12);
    expect(since('master').length).toBeLessThanOrEqual(2);
    const st = status(c.master.node!.control.status());
    expect(st.last_error).toMatch(/slave refused the connection: on this slave the disk under \/slave\/dta is full/);
    expect(st.slave_txn).toBe(String(durable));
    disk.setCapacity(1 << 30);
    await convergedAndClean(c, slave);
  }, 120_000);

  it('a store commit that fails for want of space (META_PATH full) stops the stream the same way (seed 47)', async () => {
    const { c, fs } = await cluster(47);
    const slave = c.engineOf(c.slave);
    const disk = c.slave.machine.disk;
    const store = c.slave.machine.store;
    // The data writes fit; the store's commits fail with EIO on a disk with no room left (LMDB's failed page spill).
    disk.setCapacity(disk.usedBytes() + 64 * 1024);
    store.setOptions({ commitErrorProbability: 1 });
    await writeFiles(c, fs, 2, 1, 4);
    await c.advance(20_000);
    const r = c.receiver!;
    expect(r.stats.stalls).toBe(1);
    expect(c.slave.machine.logger.lines.some((l) => /the disk under \/slave\/mta is full .*stopped taking the master's transactions/.test(l))).toBe(true);
    expect(status(c.master.node!.control.status()).last_error).toMatch(/slave refused the connection: on this slave the disk under \/slave\/mta is full/);
    store.setOptions({ commitErrorProbability: 0 });
    await c.advance(20_000);
    expect(c.sender!.backlog).toBe(true);
    disk.setCapacity(disk.usedBytes() + 2 * MiB);
    await convergedAndClean(c, slave);
  }, 120_000);

  it('the slave disk fills and empties at random while the master writes, deletes and overwrites: it converges every time (seeds 100..111)', async () => {
    let stalls = 0;
    for (let seed = 100; seed < 112; seed++) {
      const { c, fs } = await cluster(seed);
      const slave = c.engineOf(c.slave);
      const disk = c.slave.machine.disk;
      const rng = new SimRng(seed).split('full-disk');
      const files: string[] = [];
      for (let step = 0; step < 40; step++) {
        const r = rng.int(10);
        if (r < 2) disk.setCapacity(disk.usedBytes() + rng.int(64) * BS);
        else if (r < 3) disk.setCapacity(disk.usedBytes() + (1 + rng.int(6)) * MiB);
        else if (r < 4 && files.length > 0) fs.unlink(files.splice(rng.int(files.length), 1)[0] as string);
        else {
          const name = `/s${step}`;
          if (!files.includes(name)) fs.create(name);
          files.push(name);
          await c.run(fs.write(name, rng.int(4) * BS, unique(seed * 1000 + step, 1 + rng.int(96))));
        }
        if (rng.chance(0.3)) await c.run(c.engineOf(c.master).commit());
        await c.advance(rng.int(3000));
      }
      await c.run(c.engineOf(c.master).commit());
      disk.setCapacity(1 << 30);
      const receiver = c.receiver!;
      await convergedAndClean(c, slave);
      stalls += receiver.stats.stalls;
    }
    expect(stalls).toBeGreaterThanOrEqual(12);
  }, 300_000);
});
