import { describe, expect, it } from 'vitest';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { fsck } from '../../src/core/fs/fsck.ts';
import { LiveCluster } from '../../src/sim/live-cluster.ts';
import { Scheduler } from '../../src/sim/scheduler.ts';
import { fsDigest, poolData } from '../../src/sim/workload.ts';

describe('live replication smoke', () => {
  for (const secret of [undefined, 'a-shared-secret-of-24ch']) {
    it(`streams to the slave and converges (${secret ? 'authenticated' : 'no secret'})`, async () => {
      const sched = new Scheduler({ seed: 5 });
      const c = new LiveCluster(sched, 5, { secret });
      await c.format();
      await c.open(c.slave);
      const m = await c.open(c.master);
      const fs = new PathFs(m);
      fs.mkdir('/d');
      for (let i = 0; i < 5; i++) {
        fs.create(`/d/f${i}`);
        await c.run(fs.write(`/d/f${i}`, 0, poolData(4096, i % 2, 20000 + i)));
      }
      await c.run(m.commit());
      expect(await c.converge()).toBe(true);
      const sfs = new PathFs(c.slave.engine!);
      expect(await c.run(fsDigest(sfs))).toBe(await c.run(fsDigest(fs)));
      fs.unlink('/d/f1');
      fs.rename('/d/f2', '/g');
      await c.run(m.commit());
      expect(await c.converge()).toBe(true);
      expect(await c.run(fsDigest(sfs))).toBe(await c.run(fsDigest(fs)));
      expect(c.master.node!.control.backlog()).toBe(false);
      expect(c.master.node!.masterLog!.sizeBytes).toBe(0);
      expect(c.overlaps).toEqual([]);
      expect(c.master.node!.control.status()).toMatch(/connection: streaming/);
      await c.close(c.master);
      await c.close(c.slave);
      for (const n of [c.master, c.slave]) {
        const rep = await c.run(fsck(n.machine.drivers(), n.options, { thorough: true, repair: false }));
        expect(rep.problems).toEqual([]);
      }
    });
  }
});
