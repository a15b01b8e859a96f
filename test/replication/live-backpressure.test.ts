// MAX_BACKLOG_SIZE on a live master: with the slave down (unmounted) or cut
// off (partition), writers pause once the unacknowledged part of replog.dta
// exceeds the limit — a write stays pending — and resume when the slave is
// back and acknowledges. The backlog never exceeds the limit by more than one
// commit's worth (a write cache, CACHESIZE: what was admitted before the
// limit was reached still commits).

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { LiveCluster } from '../../src/sim/live-cluster.ts';
import { SimRng } from '../../src/sim/rng.ts';
import { Scheduler } from '../../src/sim/scheduler.ts';
import { poolData } from '../../src/sim/workload.ts';

const BS = 4096;

interface BackpressureCase {
  seed: number;
  limitBytes: number;
  cacheSizeBytes: number;
  commitIntervalMs: number;
  slaveDown: 'closed' | 'partitioned';
}

function backpressureCase(seed: number): BackpressureCase {
  const r = new SimRng(seed).split('case');
  return {
    seed,
    limitBytes: r.pick([16, 64, 256]) * 1024,
    cacheSizeBytes: r.pick([8, 32, 128]) * BS,
    commitIntervalMs: r.pick([200, 1000, 5000]),
    slaveDown: r.pick(['closed', 'partitioned'] as const),
  };
}

/** Track the backlog around every master commit: [before, after]. */
function watchCommits(c: LiveCluster): Array<[number, number]> {
  const m = c.engineOf(c.master);
  const commits: Array<[number, number]> = [];
  let before = 0;
  const inner = m.commitPhases;
  m.commitPhases = (phase, reason) => {
    inner?.(phase, reason);
    if (phase === 'start') before = c.sender!.backlogBytes;
    else commits.push([before, c.sender!.backlogBytes]);
  };
  return commits;
}

async function runBackpressureCase(k: BackpressureCase): Promise<void> {
  const label = `reproduce: ${JSON.stringify(k)}`;
  const c = new LiveCluster(new Scheduler({ seed: k.seed }), k.seed, {
    engine: { commitIntervalMs: k.commitIntervalMs, cacheSizeBytes: k.cacheSizeBytes },
    maxBacklogSizeBytes: k.limitBytes,
  });
  const r = new SimRng(k.seed).split('writes');
  await c.format();
  await c.open(c.slave);
  const m = await c.open(c.master);
  const fs = new PathFs(m);
  fs.mkdir('/d');
  await c.run(m.commit());
  expect(await c.converge(30_000), label).toBe(true);
  const commits = watchCommits(c);
  if (k.slaveDown === 'closed') await c.close(c.slave);
  else c.network.partition('master', 'slave');

  // Unique data (pool patterns shifted by i) so the log grows.
  let pending: { done: boolean; name: string } | undefined;
  for (let i = 0; i < 600 && !pending; i++) {
    const name = `/d/f${i % 24}`;
    if (!fs.exists(name)) fs.create(name);
    const w = { done: false, name };
    void fs.write(name, r.pick([0, 100, 3 * BS]), poolData(BS, 6 + i, 1 + r.int(6 * BS))).then(() => {
      w.done = true;
    });
    await c.scheduler.run({ untilMs: c.scheduler.nowMs() + 20_000, done: () => w.done });
    if (!w.done) pending = w;
    else await c.advance(r.int(200));
  }
  expect(pending, `${label}: no write ever paused`).toBeDefined();
  expect(c.sender!.backlogBytes, label).toBeGreaterThan(k.limitBytes);
  // Still paused much later: nothing acknowledges while the slave is away.
  await c.advance(30_000);
  expect(pending!.done, label).toBe(false);
  expect(c.master.node!.control.backlog()).toBe(true);

  // One commit's worth: what the write cache holds (CACHESIZE), plus the write
  // that overflowed it and the records that describe them. Data admitted
  // while the backlog was under the limit can be split over two transactions
  // (a commit running when the limit was crossed, and the cache behind it),
  // so the largest single transaction is not the bound (seed 909631 of
  // backpressureCase: 21890 bytes over, largest transaction 19499).
  const commitWorthBytes = k.cacheSizeBytes + 6 * BS + 16 * 1024;
  const maxBacklogBytes = Math.max(...commits.map(([, after]) => after));
  expect(maxBacklogBytes - k.limitBytes, `${label}: backlog ${maxBacklogBytes} over the limit by more than one commit's worth (${commitWorthBytes})`).toBeLessThanOrEqual(commitWorthBytes);

  // The slave comes back and acknowledges: the writer resumes, the backlog drains.
  if (k.slaveDown === 'closed') await c.open(c.slave);
  else c.network.repair('master', 'slave');
  await c.scheduler.run({ untilMs: c.scheduler.nowMs() + 60_000, done: () => pending!.done });
  expect(pending!.done, `${label}: the paused write did not resume`).toBe(true);
  await c.run(m.commit());
  expect(await c.converge(60_000), label).toBe(true);
  await c.advance(2000);
  expect(c.master.node!.masterLog!.sizeBytes, label).toBe(0);
  expect(await c.digest(c.slave), label).toBe(await c.digest(c.master));
  expect(c.overlaps, label).toEqual([]);
}

describe('live replication: MAX_BACKLOG_SIZE', () => {
  it('a writer pauses while the slave is down and resumes when it is back (seed 71, slave unmounted)', async () => {
    await runBackpressureCase({ seed: 71, limitBytes: 64 * 1024, cacheSizeBytes: 16 * BS, commitIntervalMs: 300, slaveDown: 'closed' });
  });

  it('a writer pauses while the link is cut and resumes when it heals (seed 72, partition)', async () => {
    await runBackpressureCase({ seed: 72, limitBytes: 32 * 1024, cacheSizeBytes: 32 * BS, commitIntervalMs: 1000, slaveDown: 'partitioned' });
  });

  it('limits, cache sizes and commit intervals (fast-check over seeds)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 1_000_000 }), async (seed) => runBackpressureCase(backpressureCase(seed))),
      { numRuns: Number(process.env.LESSFS_PROP_RUNS ?? 16), seed: Number(process.env.LESSFS_PROP_SEED ?? 99) },
    );
  });

  // BUG (src/core/fs/engine.ts: only write() awaits writeThrottle, ~line
  // 1263): creates, mkdirs, links, renames, unlinks, truncates and setattrs
  // are never paused, so a metadata workload grows the backlog without bound
  // while the slave is away (here 4000 creates and 40 truncates: ~600 KB of
  // replog.dta over a 64 KiB MAX_BACKLOG_SIZE, and it keeps growing).
  // Fix: await the throttle in every mutating entry point that is async
  // (truncate, setattr) and in the synchronous ones' FUSE handlers (or give
  // PathFs/FUSE an async gate before create/mkdir/link/rename/unlink).
  it.fails('metadata operations pause too: the backlog stays within one commit of MAX_BACKLOG_SIZE (seed 73)', async () => {
    const limitBytes = 64 * 1024;
    const cacheSizeBytes = 16 * BS;
    const c = new LiveCluster(new Scheduler({ seed: 73 }), 73, { engine: { commitIntervalMs: 300, cacheSizeBytes }, maxBacklogSizeBytes: limitBytes });
    await c.format();
    await c.open(c.slave);
    const m = await c.open(c.master);
    const fs = new PathFs(m);
    fs.mkdir('/d');
    await c.run(m.commit());
    if (!(await c.converge(30_000))) return; // set-up did not happen: pass, and it.fails says so
    await c.close(c.slave);
    for (let i = 0; i < 4000; i++) {
      fs.create(`/d/f${i}`);
      if (i % 100 === 99) {
        await c.run(fs.truncate(`/d/f${i}`, 100));
        await c.run(m.commit());
      }
    }
    const commitWorthBytes = cacheSizeBytes + 6 * BS + 16 * 1024;
    expect(c.sender!.backlogBytes - limitBytes).toBeLessThanOrEqual(commitWorthBytes);
  });
});
