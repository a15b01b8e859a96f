// A watchdir slave whose disk fills while it applies a shipped file
// (docs/replication-log.md, "A full disk on a batch slave"). Before: the
// commit failed with ENOSPC, the file was logged as refused ("nothing applied
// from it", untrue: its transactions stayed in the write cache), and the next
// poll took the position of that cache for durable, skipped the file as
// applied and renamed it -processed, and the next file too: a power loss then
// lost both files for good (the slave waited for a file renamed away).
// Now nothing of the file is kept unless all of it is durable, the file stays
// under its name, one line names the full disk, and the file is applied again
// by itself once there is room, without a restart.

import { describe, expect, it } from 'vitest';
import type { FsEngine } from '../../src/core/fs/engine.ts';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { parseRotatedLogName, processedLogName } from '../../src/core/replication/master-log.ts';
import { BatchCluster, type RotatedFileInfo } from '../../src/sim/batch-cluster.ts';
import { SimRng } from '../../src/sim/rng.ts';
import { Scheduler } from '../../src/sim/scheduler.ts';
import { uniqueData } from '../../src/sim/workload.ts';

const BS = 4096;
const MiB = 1 << 20;
const POLL_MS = 1000;

interface History {
  files: RotatedFileInfo[];
  /** The master's tree at each file's last txn (0: empty). */
  digestAt: Map<number, string>;
}

/**
 * A master that writes `files` log files of about `blocksPerFile` new blocks
 * each (4 files a file), overwriting and deleting earlier ones as it goes.
 */
async function masterHistory(c: BatchCluster, seed: number, files: number, blocksPerFile: number): Promise<History> {
  const m = await c.open(c.master);
  const fs = new PathFs(m);
  const rng = new SimRng(seed).split('history');
  const digestAt = new Map<number, string>([[0, await c.digest(c.master)]]);
  const names: string[] = [];
  for (let k = 1; k <= files; k++) {
    for (let i = 0; i < 4; i++) {
      const name = `/f${k}-${i}`;
      fs.create(name);
      names.push(name);
      await c.run(fs.write(name, 0, uniqueData(BS, seed * 1000 + k * 10 + i, blocksPerFile / 4)));
      await c.run(m.commit());
    }
    if (k > 1) fs.unlink(names.splice(rng.int(names.length - 4), 1)[0] as string);
    if (k > 1) await c.run(fs.write(names[rng.int(names.length - 4)] as string, BS, uniqueData(BS, seed * 1000 + k * 10 + 9, 2)));
    await c.rotate();
    const chain = await c.masterLogChain();
    digestAt.set(chain.files[k - 1].lastTxn, await c.digest(c.master));
  }
  const chain = await c.masterLogChain();
  await c.close(c.master);
  return { files: chain.files, digestAt };
}

function status(text: string): Record<string, string> {
  return Object.fromEntries(text.trimEnd().split('\n').map((l) => [l.slice(0, l.indexOf(': ')), l.slice(l.indexOf(': ') + 2)]));
}

async function cluster(seed: number, files: number, blocksPerFile: number): Promise<{ c: BatchCluster; h: History }> {
  const c = new BatchCluster(new Scheduler({ seed }), seed, { watchdirPollMs: POLL_MS, engine: { commitIntervalMs: 1000, cacheSizeBytes: 4 * MiB } });
  await c.format();
  const h = await masterHistory(c, seed, files, blocksPerFile);
  for (const f of h.files) await c.deliver(f.name, f.bytes);
  return { c, h };
}

const advance = (c: BatchCluster, ms: number): Promise<void> => c.scheduler.run({ untilMs: c.scheduler.nowMs() + ms });

/**
 * What must hold at every moment: the slave's position is durable and at a
 * file boundary (nothing half-applied), its tree is the master's at that
 * txn, and no file is renamed -processed that is not durably applied.
 */
async function consistent(c: BatchCluster, h: History, label: string, idle = true): Promise<number> {
  const applier = c.slave.node!.slaveApplier!;
  // While a file is being applied the cache is ahead of the durable position; it is never left so.
  const pos = idle ? applier.position() : applier.durablePosition();
  if (idle) expect(pos, `${label}: position durable`).toEqual(applier.durablePosition());
  const boundary = pos.sequence === 0 ? 0 : h.files[pos.sequence - 1].lastTxn;
  expect(pos.txn, `${label}: at a file boundary`).toBe(boundary);
  if (idle) expect(await c.digest(c.slave), `${label}: the master's tree at txn ${boundary}`).toBe(h.digestAt.get(boundary));
  for (const n of await c.watchNames()) {
    const m = /^replog\.dta-(\d+)-processed$/.exec(n);
    if (m) expect(Number(m[1]), `${label}: ${n} renamed, not durably applied`).toBeLessThanOrEqual(pos.sequence);
  }
  return pos.sequence;
}

/** Every file applied by the slave engine it had all along, the master's tree, clean. */
async function completes(c: BatchCluster, h: History, engine: FsEngine): Promise<void> {
  const last = h.files[h.files.length - 1];
  const watch = c.slave.node!.watchdir!;
  await c.scheduler.run({ untilMs: c.scheduler.nowMs() + 60_000, done: () => c.slave.node!.slaveApplier!.position().sequence === last.sequence && !watch.backlog });
  expect(c.slave.engine).toBe(engine);
  expect(await consistent(c, h, 'after room returned')).toBe(last.sequence);
  expect(await c.watchNames()).toEqual(h.files.map((f) => processedLogName(f.sequence)).sort());
  expect(status(c.slave.node!.control.status()).applying_stopped).toBe('-');
  await c.close(c.slave);
  expect((await c.fsck(c.slave)).problems).toEqual([]);
}

describe('a watchdir slave whose disk fills while it applies a file', () => {
  it('keeps nothing of the file, leaves it in place, says why, and applies it once room appears, without a restart (seed 7)', async () => {
    const { c, h } = await cluster(7, 3, 256);
    const disk = c.slave.machine.disk;
    const engine = await c.open(c.slave, true);
    // Room for the first file's 1 MiB of blocks, not the second's.
    disk.setCapacity(disk.usedBytes() + 1.5 * MiB);
    const watch = c.slave.node!.watchdir!;
    await advance(c, 10_000);
    expect(await consistent(c, h, 'full')).toBe(1);
    expect(await c.watchNames()).toEqual([processedLogName(1), h.files[1].name, h.files[2].name]);
    const lines = c.slave.machine.logger.lines;
    expect(lines.some((l) => /\[0\] replog\.dta-2 was not applied: ENOSPC: .*the disk under \/slave\/dta is full.*; nothing of it was kept \(this slave stays at replog\.dta-1, txn \d+\); it stays in \/slave\/incoming and is applied again once/.test(l)), lines.join('\n')).toBe(true);
    const st = status(c.slave.node!.control.status());
    expect(st.applying_stopped).toMatch(/^the disk under \/slave\/dta is full: replog\.dta-2 waits for room/);
    expect(st.last_error).toMatch(/replog\.dta-2 was not applied: ENOSPC/);
    expect(st.files_refused).toBe('0');
    expect(watch.backlog).toBe(true);

    // Ten minutes of a full disk: one attempt, no data written, a line or two.
    const before = { lines: lines.length, stalls: watch.stats.stalls, written: disk.usedBytes() };
    for (let i = 0; i < 20; i++) {
      await advance(c, 30_000);
      expect(engine.pendingChanges).toBe(0);
    }
    expect(watch.stats.stalls).toBe(before.stalls);
    expect(disk.usedBytes()).toBe(before.written);
    expect(lines.slice(before.lines).filter((l) => /\[[01]\]/.test(l))).toEqual([]);
    expect(await consistent(c, h, 'still full')).toBe(1);

    disk.setCapacity(1 << 30);
    await completes(c, h, engine);
    expect(lines.some((l) => /the disk has room again .*: applying replog\.dta-2 again/.test(l))).toBe(true);
  }, 120_000);

  it('room that does not cover the file\'s blocks is not tried; enough room is (seed 8)', async () => {
    const { c, h } = await cluster(8, 2, 512);
    const disk = c.slave.machine.disk;
    const engine = await c.open(c.slave, true);
    disk.setCapacity(disk.usedBytes() + 2.5 * MiB);
    const watch = c.slave.node!.watchdir!;
    await advance(c, 10_000);
    expect(await consistent(c, h, 'full')).toBe(1);
    expect(watch.stats.stalls).toBe(1);
    // 1.5 MiB more: past the 1 MiB of the live rule, short of the file's 2 MiB of blocks.
    disk.setCapacity(disk.options.capacityBytes + 1.5 * MiB);
    await advance(c, 30_000);
    expect(watch.stats.stalls).toBe(1);
    expect(await consistent(c, h, 'some room')).toBe(1);
    disk.setCapacity(disk.options.capacityBytes + 4 * MiB);
    await completes(c, h, engine);
    expect(watch.stats.stalls).toBe(1);
  }, 120_000);

  it('power loss while it waits for room: the files are still there and applied after (seed 9)', async () => {
    const { c, h } = await cluster(9, 3, 256);
    const disk = c.slave.machine.disk;
    await c.open(c.slave, true);
    disk.setCapacity(disk.usedBytes() + 1.5 * MiB);
    await advance(c, 10_000);
    expect(await consistent(c, h, 'full')).toBe(1);
    c.slave.machine.powerLoss();
    c.dropped(c.slave);
    const engine = await c.open(c.slave, true);
    await advance(c, 10_000);
    expect(await consistent(c, h, 'full after power loss')).toBe(1);
    expect(await c.watchNames()).toEqual([processedLogName(1), h.files[1].name, h.files[2].name]);
    disk.setCapacity(1 << 30);
    await completes(c, h, engine);
  }, 120_000);

  it('a store commit that fails for want of space (META_PATH full) is dropped and retried the same way (seed 10)', async () => {
    const { c, h } = await cluster(10, 2, 16);
    const disk = c.slave.machine.disk;
    const store = c.slave.machine.store;
    const engine = await c.open(c.slave, true);
    // The data writes fit; the store's commits fail with EIO on a disk with no room left (LMDB's failed page spill).
    disk.setCapacity(disk.usedBytes() + 512 * 1024);
    store.setOptions({ commitErrorProbability: 1 });
    await advance(c, 10_000);
    expect(await consistent(c, h, 'store full')).toBe(0);
    expect(c.slave.node!.watchdir!.stats.stalls).toBe(1);
    expect(status(c.slave.node!.control.status()).applying_stopped).toMatch(/^the disk under \/slave\/mta is full: replog\.dta-1 waits for room/);
    store.setOptions({ commitErrorProbability: 0 });
    disk.setCapacity(disk.usedBytes() + 4 * MiB);
    await completes(c, h, engine);
  }, 120_000);

  it('the disk fills and empties at random, with power losses: never a file renamed before it is durable, and it completes (seeds 20..27)', async () => {
    let stalls = 0;
    for (let seed = 20; seed < 28; seed++) {
      const { c, h } = await cluster(seed, 6, 256);
      const disk = c.slave.machine.disk;
      const rng = new SimRng(seed).split('full-disk');
      let engine = await c.open(c.slave, true);
      for (let step = 0; step < 30; step++) {
        const r = rng.int(10);
        if (r < 5) disk.setCapacity(disk.usedBytes() + rng.int(128) * BS);
        else if (r < 7) disk.setCapacity(disk.usedBytes() + (1 + rng.int(3)) * MiB);
        else if (r < 8) {
          stalls += c.slave.node!.watchdir!.stats.stalls;
          c.slave.machine.powerLoss();
          c.dropped(c.slave);
          disk.setCapacity(Math.max(disk.options.capacityBytes, disk.usedBytes() + 64 * 1024));
          engine = await c.open(c.slave, true);
        }
        await advance(c, rng.int(3000));
        await consistent(c, h, `seed=${seed} step=${step}`, false);
      }
      stalls += c.slave.node!.watchdir!.stats.stalls;
      disk.setCapacity(1 << 30);
      await completes(c, h, engine);
      expect(h.files.every((f) => parseRotatedLogName(f.name) === f.sequence)).toBe(true);
    }
    expect(stalls).toBeGreaterThanOrEqual(8);
  }, 300_000);
});
