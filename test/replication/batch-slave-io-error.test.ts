// A watchdir slave whose own disks fail a file's block writes or commit with
// an I/O error (not ENOSPC; docs/replication-log.md, "An I/O error on a batch
// slave"). Before: the file was dropped whole but handled as a refusal, looked
// at again only when the file or the slave's position changed: in effect a
// slave stuck until a restart after one transient EIO. Now the file stays
// under its name and is tried again with a doubling wait (up to a minute),
// the failure is shown in the status while it lasts, and the file is applied
// without a restart once the disk works again. A failed fsync of the data
// file stops the engine (nothing may commit after it): that is not retried,
// and the status and log say the slave must be remounted.

import { describe, expect, it } from 'vitest';
import { processedLogName } from '../../src/core/replication/master-log.ts';
import { advance, cluster, completes, consistent, status } from './batch-slave-support.ts';

const levelLines = (lines: readonly string[]): string[] => lines.filter((l) => /\[[01]\]/.test(l));

describe('a watchdir slave whose disk fails a file with an I/O error', () => {
  it('block writes failing with EIO: the file is dropped, tried again with a growing wait, and applied once the disk works, without a restart (seed 11)', async () => {
    const { c, h } = await cluster(11, 3, 256);
    const disk = c.slave.machine.disk;
    const engine = await c.open(c.slave, true);
    disk.setOptions({ writeErrorProbability: 1, faultPathPrefix: '/slave/dta' });
    const watch = c.slave.node!.watchdir!;
    await advance(c, 5_000);
    expect(await consistent(c, h, 'failing')).toBe(0);
    expect(await c.watchNames()).toEqual(h.files.map((f) => f.name));
    const lines = c.slave.machine.logger.lines;
    expect(lines.some((l) => /\[0\] replog\.dta-1 was not applied: EIO: .*; nothing of it was kept \(this slave stays at txn 0, no file applied yet\); an I\/O error of this slave's disks: it stays in \/slave\/incoming and is tried again in 2 s/.test(l)), lines.join('\n')).toBe(true);
    let st = status(c.slave.node!.control.status());
    expect(st.applying_stopped).toMatch(/^an I\/O error: replog\.dta-1 is tried again in \d+ s \(\d+ attempts? failed/);
    expect(st.last_error).toMatch(/replog\.dta-1 was not applied: EIO/);
    expect(st.files_refused).toBe('0');
    expect(watch.backlog).toBe(true);

    // Ten minutes of a failing disk: attempts a minute apart at most, a log line a minute at most.
    const before = { lines: lines.length, attempts: watch.stats.ioErrors };
    for (let i = 0; i < 20; i++) {
      await advance(c, 30_000);
      expect(engine.pendingChanges).toBe(0);
      expect(await consistent(c, h, `failing, ${i}`)).toBe(0);
    }
    const attempts = watch.stats.ioErrors - before.attempts;
    expect(attempts).toBeGreaterThanOrEqual(10);
    expect(attempts).toBeLessThanOrEqual(16);
    expect(levelLines(lines.slice(before.lines)).length).toBeLessThanOrEqual(11);
    st = status(c.slave.node!.control.status());
    expect(st.applying_stopped).toMatch(/^an I\/O error: replog\.dta-1 is tried again in \d+ s \(\d+ attempts failed over 1\d min: EIO/);

    disk.setOptions({ writeErrorProbability: 0 });
    await completes(c, h, engine);
    expect(c.slave.machine.logger.lines.some((l) => /\[0\] applied replog\.dta-1 after \d+ attempts failed with I\/O errors/.test(l))).toBe(true);
  }, 120_000);

  it('store commits failing with EIO (room enough): retried the same way, never renamed before durable (seed 12)', async () => {
    const { c, h } = await cluster(12, 3, 16);
    const store = c.slave.machine.store;
    const engine = await c.open(c.slave, true);
    store.setOptions({ commitErrorProbability: 1 });
    await advance(c, 20_000);
    expect(await consistent(c, h, 'store failing')).toBe(0);
    expect(await c.watchNames()).toEqual(h.files.map((f) => f.name));
    expect(status(c.slave.node!.control.status()).applying_stopped).toMatch(/^an I\/O error: replog\.dta-1 is tried again/);
    expect(c.slave.node!.watchdir!.stats.ioErrors).toBeGreaterThanOrEqual(3);
    store.setOptions({ commitErrorProbability: 0 });
    await completes(c, h, engine);
  }, 120_000);

  it('a failed fsync of the data file stops the engine: not tried again, the status and the log say to remount, and after a remount it completes (seed 14)', async () => {
    const { c, h } = await cluster(14, 3, 256);
    const disk = c.slave.machine.disk;
    await c.open(c.slave, true);
    disk.setOptions({ writeErrorProbability: 1, faultPathPrefix: '/slave/dta', faultOps: ['sync'] });
    const watch = c.slave.node!.watchdir!;
    await advance(c, 5_000);
    const lines = c.slave.machine.logger.lines;
    expect(lines.some((l) => /\[0\] replog\.dta-1 was not applied: .*: this slave applies no more files until it is remounted/.test(l)), lines.join('\n')).toBe(true);
    const st = status(c.slave.node!.control.status());
    expect(st.applying_stopped).toMatch(/^remount this slave: .*replog\.dta-1 was not applied/);
    expect(st.files_refused).toBe('0');
    expect(await c.watchNames()).toEqual(h.files.map((f) => f.name));
    const before = { lines: lines.length, attempts: watch.stats.ioErrors };
    await advance(c, 600_000);
    expect(watch.stats.ioErrors).toBe(before.attempts);
    expect(levelLines(lines.slice(before.lines))).toEqual([]);
    // The remount: the process ends (the stopped engine cannot close cleanly), the disk works again.
    c.slave.machine.crash();
    c.dropped(c.slave);
    disk.setOptions({ writeErrorProbability: 0 });
    const engine = await c.open(c.slave, true);
    await completes(c, h, engine);
  }, 120_000);
});
