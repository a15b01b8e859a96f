// A live master's log trim (replog.dta cut to size 0 once the slave has
// acknowledged everything) that fails with EIO. Found by lessfs-sim's I/O
// errors (disk profile, seed 8): the truncate reached the page cache, its
// sync failed, and the log kept its old size in memory, so the next append
// extended the empty file with zeros up to that size and wrote its frames
// after them; the master then could not mount ("replog.dta is damaged beyond
// a torn tail: starts with '\x00...'"). Now the trim empties the log in
// memory first and the next append starts the file afresh.

import { describe, expect, it } from 'vitest';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { SIM_DISK_DEFAULTS } from '../../src/sim/disk.ts';
import { LiveCluster } from '../../src/sim/live-cluster.ts';
import { Scheduler } from '../../src/sim/scheduler.ts';
import { BS, unique } from './live-slave-support.ts';

describe('a live master log trim that fails with EIO', () => {
  it('leaves a log the next append starts afresh: after a kill -9 the master mounts and the slave converges (seed 81)', async () => {
    const c = new LiveCluster(new Scheduler({ seed: 81 }), 81, { engine: { commitIntervalMs: 500 }, net: { latencyMsMin: 1, latencyMsMax: 5 } });
    await c.format();
    await c.open(c.slave);
    const m = await c.open(c.master);
    const fs = new PathFs(m);
    const disk = c.master.machine.disk;
    const log = () => c.master.node!.masterLog!;
    fs.create('/a');
    await c.run(fs.write('/a', 0, unique(1, 8)));
    await c.run(m.commit());
    expect(log().sizeBytes).toBeGreaterThan(0);
    // Every sync of replog.dta fails while the slave acknowledges: the trim's truncate lands, its sync does not.
    disk.setOptions({ writeErrorProbability: 1, faultPathPrefix: '/master/dta/replog.dta', faultOps: ['sync'] });
    await c.advance(3_000);
    disk.setOptions({ writeErrorProbability: 0, faultPathPrefix: SIM_DISK_DEFAULTS.faultPathPrefix, faultOps: SIM_DISK_DEFAULTS.faultOps });
    expect(c.master.machine.logger.lines.some((l) => /replog\.dta/.test(l) && /EIO/.test(l))).toBe(true);
    // The next transaction's append, then kill -9 (what reached the page cache stays).
    fs.create('/b');
    await c.run(fs.write('/b', 0, unique(2, 8)));
    await c.run(m.commit());
    c.fail(c.master, 'crash');
    await c.open(c.master);
    expect(await c.converge(60_000)).toBe(true);
    expect(await c.digest(c.slave)).toBe(await c.digest(c.master));
    expect(await c.run(new PathFs(c.engineOf(c.master)).read('/b', 0, 8 * BS))).toEqual(unique(2, 8));
    await c.close(c.master);
    await c.close(c.slave);
    expect((await c.fsck(c.master)).problems).toEqual([]);
  }, 60_000);
});
