// MIN_SPACE_FREE on the simulated disk: below the threshold, new data is
// refused with ENOSPC and one log line says so; above it, writes resume.

import { describe, expect, it } from 'vitest';
import { SpaceGuard } from '../../src/core/space-guard.ts';
import { SimMachine } from '../../src/sim/node-env.ts';
import { SimRng } from '../../src/sim/rng.ts';
import { Scheduler } from '../../src/sim/scheduler.ts';

describe('SpaceGuard (seed 9)', () => {
  it('refuses new data below MIN_SPACE_FREE and resumes when space returns', async () => {
    const scheduler = new Scheduler({ seed: 9 });
    const machine = new SimMachine(scheduler, new SimRng(9), { name: 'n', disk: { capacityBytes: 1000 } });
    const d = machine.drivers();
    await scheduler.runUntilSettled(d.disk.mkdir('/data'));
    const guard = new SpaceGuard(d.disk, d.clock, d.logger, { paths: ['/data'], minFreePercent: 10, checkIntervalMs: 1000 });
    await scheduler.runUntilSettled(guard.start());
    expect(guard.low).toBe(false);
    expect(() => guard.check('write')).not.toThrow();

    const f = await scheduler.runUntilSettled(d.disk.open('/data/f', { create: true }));
    await scheduler.runUntilSettled(f.write(0, new Uint8Array(950)));
    await scheduler.run({ untilMs: scheduler.nowMs() + 1500 });
    expect(guard.low).toBe(true);
    expect(() => guard.check('write')).toThrow(/ENOSPC: write: free space 5\.0% is below MIN_SPACE_FREE=10%/);
    expect(machine.logger.lines.filter((l) => l.includes('below MIN_SPACE_FREE')).length).toBe(1);

    await scheduler.runUntilSettled(f.truncate(100));
    await scheduler.run({ untilMs: scheduler.nowMs() + 1500 });
    expect(guard.low).toBe(false);
    expect(machine.logger.lines.some((l) => l.includes('writes resume'))).toBe(true);
    guard.stop();
  });

  it('free extents inside the data file count as free space on its path: deleting data lets writes resume', async () => {
    const scheduler = new Scheduler({ seed: 11 });
    const machine = new SimMachine(scheduler, new SimRng(11), { name: 'n', disk: { capacityBytes: 1000 } });
    const d = machine.drivers();
    await scheduler.runUntilSettled(d.disk.mkdir('/data'));
    let reusable = 0;
    const guard = new SpaceGuard(d.disk, d.clock, d.logger, { paths: ['/data'], minFreePercent: 10, checkIntervalMs: 1000, reusableBytes: { path: '/data', bytes: () => reusable } });
    await scheduler.runUntilSettled(guard.start());
    const f = await scheduler.runUntilSettled(d.disk.open('/data/f', { create: true }));
    await scheduler.runUntilSettled(f.write(0, new Uint8Array(950)));
    await scheduler.run({ untilMs: scheduler.nowMs() + 1500 });
    expect(guard.low).toBe(true);
    // The file keeps its size (as the data file does when blocks are freed); its free extents grow.
    reusable = 400;
    await scheduler.run({ untilMs: scheduler.nowMs() + 1500 });
    expect(guard.low).toBe(false);
    expect(guard.lastFreePercent).toBeCloseTo(45, 5);
    expect(() => guard.check('write')).not.toThrow();
    guard.stop();
  });

  it('MIN_SPACE_FREE=0 never refuses', async () => {
    const scheduler = new Scheduler({ seed: 10 });
    const machine = new SimMachine(scheduler, new SimRng(10), { name: 'n', disk: { capacityBytes: 10 } });
    const d = machine.drivers();
    const guard = new SpaceGuard(d.disk, d.clock, d.logger, { paths: ['/'], minFreePercent: 0, checkIntervalMs: 1000 });
    await scheduler.runUntilSettled(guard.start());
    expect(guard.low).toBe(false);
    guard.stop();
  });
});
