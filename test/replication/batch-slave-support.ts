// Shared pieces of the watchdir-slave fault tests (batch-slave-full,
// batch-slave-io-error): a master history of rotated files with the master's
// tree at each, a cluster with them delivered to the slave's watch directory,
// and the checks that must hold at every moment and at the end.

import { expect } from 'vitest';
import type { FsEngine } from '../../src/core/fs/engine.ts';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { processedLogName } from '../../src/core/replication/master-log.ts';
import { BatchCluster, type RotatedFileInfo } from '../../src/sim/batch-cluster.ts';
import { SimRng } from '../../src/sim/rng.ts';
import { Scheduler } from '../../src/sim/scheduler.ts';
import { uniqueData } from '../../src/sim/workload.ts';

export const BS = 4096;
export const MiB = 1 << 20;
export const POLL_MS = 1000;

export interface History {
  files: RotatedFileInfo[];
  /** The master's tree at each file's last txn (0: empty). */
  digestAt: Map<number, string>;
}

/**
 * A master that writes `files` log files of about `blocksPerFile` new blocks
 * each (4 files a file), overwriting and deleting earlier ones as it goes.
 */
export async function masterHistory(c: BatchCluster, seed: number, files: number, blocksPerFile: number): Promise<History> {
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

export function status(text: string): Record<string, string> {
  return Object.fromEntries(text.trimEnd().split('\n').map((l) => [l.slice(0, l.indexOf(': ')), l.slice(l.indexOf(': ') + 2)]));
}

export async function cluster(seed: number, files: number, blocksPerFile: number): Promise<{ c: BatchCluster; h: History }> {
  const c = new BatchCluster(new Scheduler({ seed }), seed, { watchdirPollMs: POLL_MS, engine: { commitIntervalMs: 1000, cacheSizeBytes: 4 * MiB } });
  await c.format();
  const h = await masterHistory(c, seed, files, blocksPerFile);
  for (const f of h.files) await c.deliver(f.name, f.bytes);
  return { c, h };
}

export const advance = (c: BatchCluster, ms: number): Promise<void> => c.scheduler.run({ untilMs: c.scheduler.nowMs() + ms });

/**
 * What must hold at every moment: the slave's position is durable and at a
 * file boundary (nothing half-applied), its tree is the master's at that
 * txn, and no file is renamed -processed that is not durably applied.
 */
export async function consistent(c: BatchCluster, h: History, label: string, idle = true): Promise<number> {
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
export async function completes(c: BatchCluster, h: History, engine: FsEngine): Promise<void> {
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

