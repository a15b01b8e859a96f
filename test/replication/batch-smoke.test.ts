import { describe, expect, it } from 'vitest';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { fsck } from '../../src/core/fs/fsck.ts';
import { BatchCluster } from '../../src/sim/batch-cluster.ts';
import { Scheduler } from '../../src/sim/scheduler.ts';
import { fsDigest, poolData } from '../../src/sim/workload.ts';

describe('batch replication smoke', () => {
  it('master files applied by a slave give the same tree', async () => {
    const sched = new Scheduler({ seed: 1 });
    const c = new BatchCluster(sched, 1);
    await c.format();
    const m = await c.open(c.master);
    const fs = new PathFs(m);
    fs.mkdir('/d');
    fs.create('/d/a');
    fs.create('/d/b');
    await c.run(fs.write('/d/a', 0, poolData(4096, 1, 20000)));
    await c.run(fs.write('/d/b', 0, poolData(4096, 1, 20000)));
    await c.run(m.commit());
    await c.run(c.master.node!.control.rotate!());
    fs.create('/c');
    await c.run(fs.write('/c', 0, poolData(4096, 2, 9000)));
    fs.unlink('/d/a');
    await c.run(c.master.node!.control.rotate!());
    const files = await c.masterFiles();
    expect(files.map((f) => f.sequence)).toEqual([1, 2]);
    await c.open(c.slave);
    for (const f of files) {
      const out = await c.run(c.slave.node!.slaveApplier!.applyFile(await c.readMasterFile(f.name), f.name, f.sequence));
      expect(out.kind).toBe('applied');
    }
    expect(await c.run(fsDigest(new PathFs(c.slave.engine!)))).toBe(await c.run(fsDigest(fs)));
    await c.close(c.slave);
    await c.close(c.master);
    const rep = await c.run(fsck(c.slave.machine.drivers(), c.slave.options, { thorough: true, repair: false }));
    expect(rep.problems).toEqual([]);
  });
});
