// A live master's status claims nothing about its slave that it does not
// know: before a slave has answered a HELLO since the mount (while it is down,
// during the handshake, after a remount), slave_txn, slave_applied_txn and
// lag_seconds read "-", not 0 next to a backlog. Once the slave has reported,
// the lag of transactions logged before a remount counts from their commit
// (the COMMIT's time in replog.dta), not from the remount.

import { describe, expect, it } from 'vitest';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { LiveCluster } from '../../src/sim/live-cluster.ts';
import { Scheduler } from '../../src/sim/scheduler.ts';
import { poolData } from '../../src/sim/workload.ts';

const BS = 4096;

function status(c: LiveCluster): Record<string, string> {
  const text = c.master.node!.control.status();
  return Object.fromEntries(text.trimEnd().split('\n').map((l) => [l.slice(0, l.indexOf(': ')), l.slice(l.indexOf(': ') + 2)]));
}

const UNKNOWN = { slave_txn: '-', slave_applied_txn: '-', lag_seconds: '-' };

describe('live master status before and after the slave reports', () => {
  it('shows "-" for the slave until it has answered a HELLO, then its position and lag', async () => {
    const sched = new Scheduler({ seed: 8 });
    const c = new LiveCluster(sched, 8, { net: { latencyMsMin: 5, latencyMsMax: 20 } });
    await c.format();
    let m = await c.open(c.master); // the slave is down
    const fs = new PathFs(m);
    fs.create('/a');
    await c.run(fs.write('/a', 0, poolData(BS, 1, 5 * BS)));
    await c.run(m.commit());
    await c.advance(2_000);
    let st = status(c);
    expect(Number(st.backlog_bytes)).toBeGreaterThan(0);
    expect(st).toMatchObject(UNKNOWN);

    // During the handshake: still nothing known.
    await c.open(c.slave);
    await sched.run({ untilMs: sched.nowMs() + 30_000, done: () => c.sender!.connectionState === 'handshake' });
    expect(c.sender!.connectionState).toBe('handshake');
    expect(status(c)).toMatchObject(UNKNOWN);

    expect(await c.converge()).toBe(true);
    st = status(c);
    expect(st).toMatchObject({ connection: 'streaming', backlog_bytes: '0', slave_txn: st.master_txn, lag_seconds: '0.0' });
    const synced = Number(st.master_txn);

    // A backlog the slave has not seen, 30 s old, then a remount of the master.
    await c.close(c.slave);
    fs.create('/b');
    await c.run(fs.write('/b', 0, poolData(BS, 2, 3 * BS)));
    await c.run(m.commit());
    await c.advance(30_000);
    await c.close(c.master);
    m = await c.open(c.master);
    await c.advance(1_000);
    st = status(c);
    expect(Number(st.backlog_bytes)).toBeGreaterThan(0);
    expect(st).toMatchObject(UNKNOWN);

    // The slave reports its position: the lag counts from the commit before the remount.
    await c.open(c.slave);
    await sched.run({ untilMs: sched.nowMs() + 30_000, done: () => c.sender!.connectionState === 'streaming' });
    st = status(c);
    expect(st.connection).toBe('streaming');
    expect(Number(st.backlog_bytes)).toBeGreaterThan(0);
    expect(st.slave_txn).toBe(String(synced));
    expect(Number(st.lag_seconds)).toBeGreaterThanOrEqual(31);

    expect(await c.converge()).toBe(true);
    expect(status(c)).toMatchObject({ backlog_bytes: '0', slave_txn: String(m.txn), lag_seconds: '0.0' });
    await c.close(c.master);
    await c.close(c.slave);
  });
});
