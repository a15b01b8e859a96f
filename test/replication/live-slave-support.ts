// Shared by the tests of a live slave whose own disks fail (full, I/O errors):
// a master and a live slave that converged on a first file, the master's
// writes, and the check that they converged again without a restart.

import { expect } from 'vitest';
import type { FsEngine } from '../../src/core/fs/engine.ts';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { LiveCluster } from '../../src/sim/live-cluster.ts';
import { Scheduler } from '../../src/sim/scheduler.ts';
import { uniqueData } from '../../src/sim/workload.ts';

export const BS = 4096;
export const MiB = 1 << 20;

/** Incompressible blocks no other tag repeats (no dedup between files). */
export const unique = (tag: number, blocks: number): Uint8Array => uniqueData(BS, tag, blocks);

export function status(text: string): Record<string, string> {
  return Object.fromEntries(text.trimEnd().split('\n').map((l) => [l.slice(0, l.indexOf(': ')), l.slice(l.indexOf(': ') + 2)]));
}

export async function cluster(seed: number): Promise<{ c: LiveCluster; fs: PathFs }> {
  const sched = new Scheduler({ seed });
  const c = new LiveCluster(sched, seed, {
    engine: { cacheSizeBytes: 16 * MiB, commitIntervalMs: 1000 },
    net: { latencyMsMin: 1, latencyMsMax: 5 },
  });
  await c.format();
  await c.open(c.slave);
  const m = await c.open(c.master);
  const fs = new PathFs(m);
  fs.create('/a');
  await c.run(fs.write('/a', 0, unique(1, 64)));
  await c.run(m.commit());
  expect(await c.converge()).toBe(true);
  return { c, fs };
}

/** The master writes `files` files of `blocks` new blocks each and commits. */
export async function writeFiles(c: LiveCluster, fs: PathFs, tag: number, files: number, blocks: number): Promise<void> {
  for (let i = 0; i < files; i++) {
    const name = `/f${tag}-${i}`;
    fs.create(name);
    await c.run(fs.write(name, 0, unique(tag * 100 + i, blocks)));
  }
  await c.run(c.engineOf(c.master).commit());
}

/** Converged with the slave engine `slave` (no restart since), identical trees, both clean. */
export async function convergedAndClean(c: LiveCluster, slave: FsEngine): Promise<void> {
  expect(await c.converge(300_000)).toBe(true);
  expect(c.slave.engine).toBe(slave);
  expect(await c.digest(c.slave)).toBe(await c.digest(c.master));
  expect(c.applyViolations).toEqual([]);
  expect(c.overlaps).toEqual([]);
  await c.close(c.master);
  await c.close(c.slave);
  expect((await c.fsck(c.slave)).problems).toEqual([]);
  expect((await c.fsck(c.master)).problems).toEqual([]);
}

/** Log lines of levels 0 and 1 (what an operator sees) of a node since line `from`. */
export function loggedSince(c: LiveCluster, n: 'slave' | 'master', from: number): string[] {
  return c[n].machine.logger.lines.slice(from).filter((l) => /\[[01]\]/.test(l));
}
