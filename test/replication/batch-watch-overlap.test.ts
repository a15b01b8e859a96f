// Watch-directory scans never overlap. Found by lessfs-sim with replication
// toggles (batch swarm seed 20): turning replication on starts a scan at
// once, and one asked for meanwhile (replogtool's, the simulator's) ran beside
// it; both applied the same file, and the slave then refused every later file
// ("holds transactions not yet durable ... restart the slave").

import { describe, expect, it } from 'vitest';
import { cluster, completes, consistent, status } from './batch-slave-support.ts';

describe('watchdir scans', () => {
  it('asked for while another runs (replication turned on, a poll, a caller), they run one after the other and apply each file once (seed 71)', async () => {
    const { c, h } = await cluster(71, 4, 16);
    const engine = await c.open(c.slave, true);
    const watch = c.slave.node!.watchdir!;
    const control = c.slave.node!.control;
    await c.run(control.setEnabled(false));
    // Turning replication on starts a scan on the next tick; two more are asked for at once.
    await c.run(control.setEnabled(true));
    await c.run(Promise.all([watch.scanOnce(), watch.scanOnce()]));
    await consistent(c, h, 'after overlapping scans');
    const st = status(control.status());
    expect(st.files_applied).toBe(String(h.files.length));
    expect(st.files_refused).toBe('0');
    expect(st.last_error).toBe('-');
    await completes(c, h, engine);
  }, 60_000);
});
