// lessfsck -r on a slave changes it outside replication: the repair is
// recorded in the slave's meta (repairedAtTxn, the master txn it was at), so
// every mount logs it and the status shows repaired_at_txn until the slave is
// re-seeded; replication goes on (the repair only rebuilt or dropped what
// could not be read), and the record survives the positions it writes.

import { describe, expect, it } from 'vitest';
import { breakAndRepair, masterWithTwoFiles } from './batch-support.ts';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { metaKey, META, T, TABLES } from '../../src/core/fs/schema.ts';
import { BatchCluster } from '../../src/sim/batch-cluster.ts';
import { LiveCluster } from '../../src/sim/live-cluster.ts';
import type { SimMachine } from '../../src/sim/node-env.ts';
import { Scheduler } from '../../src/sim/scheduler.ts';
import { poolData } from '../../src/sim/workload.ts';
import type { EngineOptions } from '../../src/core/fs/types.ts';

const BS = 4096;
const statusField = (status: string, key: string): string | undefined => new RegExp(`^${key}: (.*)$`, 'm').exec(status)?.[1];

const slaveMeta = async (run: <X>(p: Promise<X>) => Promise<X>, n: { machine: SimMachine; options: EngineOptions }): Promise<unknown> => {
  const store = await run(n.machine.drivers().storeFactory.open({ path: n.options.metaPath, tables: TABLES, mapSizeBytes: n.options.lmdbMapSizeBytes }));
  try {
    const v = store.get(T.meta, metaKey(META.replication));
    return v === undefined ? undefined : JSON.parse(new TextDecoder().decode(v));
  } finally {
    await run(store.close());
  }
};

describe('a slave repaired by lessfsck -r', () => {
  it('batch (watchdir): recorded at the master txn it was at; each mount logs it, status shows it, files still apply and keep it', async () => {
    const c = new BatchCluster(new Scheduler({ seed: 6 }), 6);
    await masterWithTwoFiles(c, { rotateLast: true });
    await c.open(c.slave);
    const applier = c.slave.node!.slaveApplier!;
    await c.run(applier.applyFile(await c.readMasterFile('replog.dta-1'), 'replog.dta-1', 1));
    const at = applier.position().txn;
    expect(statusField(c.slave.node!.control.status(), 'repaired_at_txn')).toBe('-');
    await c.close(c.slave);

    const report = await breakAndRepair((p) => c.run(p), c.slave, 'slave');
    expect(report.problems.some((p) => p.repaired)).toBe(true);
    expect(report.warnings).toEqual([expect.stringContaining(`no longer matches its master`)]);
    expect(report.warnings[0]).toContain(`status shows repaired_at_txn ${at}`);
    expect(await slaveMeta((p) => c.run(p), c.slave)).toMatchObject({ role: 'slave', txn: at, sequence: 1, repairedAtTxn: at });

    const lines = c.slave.machine.logger.lines.length;
    await c.open(c.slave);
    expect(c.slave.machine.logger.lines.slice(lines).join('\n')).toMatch(
      new RegExp(` \\[0\\] replication: this slave was repaired by lessfsck -r at master txn ${at} and may differ from its master since; replication goes on .*re-seed it`),
    );
    expect(statusField(c.slave.node!.control.status(), 'repaired_at_txn')).toBe(String(at));
    // Replication goes on, and the record with it.
    const out = await c.run(c.slave.node!.slaveApplier!.applyFile(await c.readMasterFile('replog.dta-2'), 'replog.dta-2', 2));
    expect(out.kind).toBe('applied');
    expect(c.slave.node!.slaveApplier!.position()).toMatchObject({ sequence: 2, repairedAtTxn: at });
    await c.close(c.slave);
    expect(await slaveMeta((p) => c.run(p), c.slave)).toMatchObject({ sequence: 2, repairedAtTxn: at });

    // A second repair keeps the first txn: the slave may differ since then.
    const second = await breakAndRepair((p) => c.run(p), c.slave, 'slave', 'b');
    expect(second.problems.some((p) => p.repaired)).toBe(true);
    expect(await slaveMeta((p) => c.run(p), c.slave)).toMatchObject({ sequence: 2, repairedAtTxn: at });
    const again = c.slave.machine.logger.lines.length;
    await c.open(c.slave);
    expect(c.slave.machine.logger.lines.slice(again).join('\n')).toContain(`repaired by lessfsck -r at master txn ${at}`);
    await c.close(c.slave);
  });

  it('live: status shows it and the transactions streamed after the repair keep it', async () => {
    const c = new LiveCluster(new Scheduler({ seed: 7 }), 7);
    await c.format();
    await c.open(c.slave);
    const m = await c.open(c.master);
    const fs = new PathFs(m);
    fs.create('/a');
    await c.run(fs.write('/a', 0, poolData(BS, 1, 2 * BS)));
    await c.run(m.commit());
    expect(await c.converge()).toBe(true);
    await c.close(c.slave);
    await breakAndRepair((p) => c.run(p), c.slave, 'slave');
    const at = ((await slaveMeta((p) => c.run(p), c.slave)) as { repairedAtTxn: number }).repairedAtTxn;
    expect(at).toBeGreaterThan(0);
    const lines = c.slave.machine.logger.lines.length;
    await c.open(c.slave);
    expect(c.slave.machine.logger.lines.slice(lines).join('\n')).toContain(`this slave was repaired by lessfsck -r at master txn ${at}`);
    fs.create('/b');
    await c.run(m.commit());
    expect(await c.converge()).toBe(true);
    const status = c.slave.node!.control.status();
    expect(Number(statusField(status, 'slave_txn'))).toBeGreaterThan(at);
    expect(statusField(status, 'repaired_at_txn')).toBe(String(at));
    await c.close(c.master);
    await c.close(c.slave);
    expect(await slaveMeta((p) => c.run(p), c.slave)).toMatchObject({ repairedAtTxn: at });
  });
});
