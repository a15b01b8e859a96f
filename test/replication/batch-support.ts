// Shared pieces of the batch-replication simulation tests: a master history
// (rotated files plus the master's tree at the end of each), and a content hash.

import { fsck, type FsckReport } from '../../src/core/fs/fsck.ts';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { direntKey, ROOT_INO, T, TABLES } from '../../src/core/fs/schema.ts';
import type { EngineOptions } from '../../src/core/fs/types.ts';
import type { SimMachine } from '../../src/sim/node-env.ts';
import { BatchCluster, type BatchClusterOptions, type RotatedFileInfo } from '../../src/sim/batch-cluster.ts';
import { SimRng } from '../../src/sim/rng.ts';
import { Scheduler } from '../../src/sim/scheduler.ts';
import { applyToFs, poolData, randomOp } from '../../src/sim/workload.ts';

export const BS = 4096;

export interface MasterHistory {
  fsId: string;
  files: RotatedFileInfo[];
  /** The master's tree digest when its committed state was at this txn: 0 (empty) and each file's last txn. */
  digestAt: Map<number, string>;
  finalDigest: string;
  /** The scheduler the history was made on (for trace hashes). */
  scheduler: Scheduler;
}

export interface HistoryOptions {
  files: number;
  opsPerFile: number;
  cluster?: BatchClusterOptions;
  engine?: Partial<EngineOptions>;
}

/**
 * Run a seeded master workload that rotates `files` times, with duplicate
 * content (pool blocks written to several files). Returns the rotated files
 * and the master's tree at each file boundary.
 */
export async function buildMasterHistory(seed: number, o: HistoryOptions): Promise<MasterHistory> {
  const scheduler = new Scheduler({ seed });
  const c = new BatchCluster(scheduler, seed, { ...o.cluster, engine: { commitIntervalMs: 40, ...o.cluster?.engine, ...o.engine } });
  await c.format();
  const engine = await c.open(c.master);
  const fs = new PathFs(engine);
  const bs = engine.options.blockSizeBytes;
  const digestAt = new Map<number, string>([[0, await c.digest(c.master)]]);
  const rng = new SimRng(seed).split('history');
  fs.mkdir('/d');
  for (let k = 1; k <= o.files; k++) {
    // Duplicate content every file: the same pool block in two places.
    const pool = rng.int(6);
    for (const name of [`/d/p${k}`, `/d/q${k}`]) {
      fs.create(name);
      await c.run(fs.write(name, 0, poolData(bs, pool, bs + rng.int(2 * bs))));
    }
    for (let j = 0; j < o.opsPerFile; j++) {
      const op = randomOp(rng, bs);
      if (op.op === 'remount') continue;
      if (op.op === 'commit') await c.run(engine.commit());
      else await c.run(applyToFs(fs, op, bs));
    }
    await c.rotate();
    const chain = await c.masterLogChain();
    if (chain.files.length !== k) throw new Error(`history seed=${seed}: ${chain.files.length} rotated files after ${k} rotations`);
    digestAt.set(chain.files[k - 1].lastTxn, await c.digest(c.master));
  }
  const chain = await c.masterLogChain();
  const finalDigest = await c.digest(c.master);
  await c.close(c.master);
  return { fsId: engine.format.fsId, files: chain.files, digestAt, finalDigest, scheduler };
}

/** FNV-1a of some bytes plus their length: tells two deliveries apart. */
export function contentKey(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193) >>> 0;
  return `${bytes.length}:${h.toString(16)}`;
}

/**
 * fast-check settings of these properties: a fixed seed by default (the same
 * cases on every run), LESSFS_PROP_SEED to explore others, LESSFS_PROP_RUNS
 * for more runs.
 */
export function propOptions(defaultRuns: number, defaultSeed: number): { numRuns: number; seed: number } {
  return { numRuns: Number(process.env.LESSFS_PROP_RUNS ?? defaultRuns), seed: Number(process.env.LESSFS_PROP_SEED ?? defaultSeed) };
}

/**
 * Take /NAME out of the root directory of a closed node (repair puts it in
 * /lost+found) and repair it as lessfsck -r does on a node of that role.
 */
export async function breakAndRepair(
  run: <X>(p: Promise<X>) => Promise<X>,
  n: { machine: SimMachine; options: EngineOptions },
  replicationRole: 'master' | 'slave',
  name = 'a',
): Promise<FsckReport> {
  const d = n.machine.drivers();
  const store = await run(d.storeFactory.open({ path: n.options.metaPath, tables: TABLES, mapSizeBytes: n.options.lmdbMapSizeBytes }));
  await run(store.commit([{ table: T.dirent, key: direntKey(ROOT_INO, name), value: undefined }], { durable: true }));
  await run(store.close());
  return run(fsck(d, n.options, { thorough: false, repair: true, replicationRole }));
}

/**
 * A formatted batch cluster whose master made /a (two blocks), rotated to
 * replog.dta-1, made /b (and rotated again when asked), and closed: returns
 * the master's last txn.
 */
export async function masterWithTwoFiles(c: BatchCluster, o: { rotateLast: boolean }): Promise<number> {
  await c.format();
  const e = await c.open(c.master);
  const fs = new PathFs(e);
  fs.create('/a');
  await c.run(fs.write('/a', 0, poolData(BS, 1, 2 * BS)));
  await c.run(e.commit());
  await c.rotate();
  fs.create('/b');
  await c.run(e.commit());
  if (o.rotateLast) await c.rotate();
  await c.close(c.master);
  return e.txn;
}
