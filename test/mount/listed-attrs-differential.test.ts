// The listed-attributes table and the reads from the data file against
// neither, through two real mounts: the same random sequence of changes,
// listings, stats and reads is applied to a mount with FUSE_ATTR_TABLE and
// FUSE_READ_TABLE on and one with both off (every request reaches the JS
// handlers), both with kernel caches off, so every lookup asks lessfs (and
// every read opens the file anew: the kernel drops its pages at open).
// Every result (errno, type, mode, size, link count, owner, names listed,
// bytes read) must be the same, and after each step so must the answers for
// every path of the namespace (present or absent).

import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupMounts, startMount, type LessfsMount } from '../support/mount.ts';

const NO_KERNEL_CACHE = ['-o', 'attr_timeout=0,entry_timeout=0,negative_timeout=0'];
const NAMES = ['a', 'b', 'c'];
const PATHS = NAMES.flatMap((x) => [x, ...NAMES.map((y) => `${x}/${y}`), ...NAMES.map((y) => `${x}/${y}/${NAMES[0]}`)]);
const STEPS = 300;

let on: LessfsMount;
let off: LessfsMount;

beforeAll(async () => {
  on = await startMount({ config: { FUSE_ATTR_TABLE: 'on', FUSE_READ_TABLE: 'on' }, args: NO_KERNEL_CACHE });
  off = await startMount({ config: { FUSE_ATTR_TABLE: 'off', FUSE_READ_TABLE: 'off' }, args: NO_KERNEL_CACHE });
}, 60_000);

afterAll(async () => {
  try {
    if (on?.running) await on.stop();
    if (off?.running) await off.stop();
  } finally {
    await cleanupMounts();
  }
}, 60_000);

/** Small deterministic generator (tests only). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** What an operation's outcome is compared by: errno, or the value (no times: each mount has its own clock). */
async function outcome(p: Promise<unknown>): Promise<unknown> {
  try {
    const v = await p;
    if (v && typeof v === 'object' && 'isDirectory' in v) {
      const st = v as import('node:fs').Stats;
      return { kind: st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : 'other', mode: st.mode, size: st.isDirectory() ? 0 : st.size, nlink: st.nlink, uid: st.uid, gid: st.gid, ino: st.ino };
    }
    if (Array.isArray(v)) return [...v].sort();
    return v ?? 'ok';
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code !== 'string') throw err;
    return code;
  }
}

describe('listed attributes and reads from the data file, differential', () => {
  it(`${STEPS} random steps give the same answers with the tables as without`, async () => {
    const rand = rng(20261207);
    const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
    const ops: Array<[string, (root: string) => Promise<unknown>]> = [];
    for (let i = 0; i < STEPS; i++) {
      const p = pick(PATHS);
      const q = pick(PATHS);
      const r = rand();
      const n = 1 + Math.floor(rand() * 3000);
      const op: [string, (root: string) => Promise<unknown>] =
        r < 0.14 ? [`ls ${p}`, (root) => fsp.readdir(`${root}/${p}`)]
        : r < 0.2 ? ['ls /', (root) => fsp.readdir(root)]
        : r < 0.3 ? [`mkdir ${p}`, (root) => fsp.mkdir(`${root}/${p}`)]
        : r < 0.42 ? [`write ${p} ${n}`, (root) => fsp.writeFile(`${root}/${p}`, Buffer.alloc(n, i & 0xff))]
        : r < 0.48 ? [`append ${p} ${n}`, (root) => fsp.appendFile(`${root}/${p}`, Buffer.alloc(n, 1))]
        : r < 0.53 ? [`truncate ${p} ${n}`, (root) => fsp.truncate(`${root}/${p}`, n)]
        : r < 0.58 ? [`chmod ${p}`, (root) => fsp.chmod(`${root}/${p}`, n & 0o777)]
        : r < 0.62 ? [`utimes ${p}`, (root) => fsp.utimes(`${root}/${p}`, n, n)]
        : r < 0.7 ? [`rename ${p} ${q}`, (root) => fsp.rename(`${root}/${p}`, `${root}/${q}`)]
        : r < 0.78 ? [`unlink ${p}`, (root) => fsp.unlink(`${root}/${p}`)]
        : r < 0.82 ? [`rmdir ${p}`, (root) => fsp.rmdir(`${root}/${p}`)]
        : r < 0.88 ? [`link ${p} ${q}`, (root) => fsp.link(`${root}/${p}`, `${root}/${q}`)]
        : r < 0.91 ? [`symlink ${p}`, (root) => fsp.symlink('a', `${root}/${p}`)]
        : r < 0.96 ? [`read ${p}`, (root) => fsp.readFile(`${root}/${p}`).then((b) => createHash('sha256').update(b).digest('hex'))]
        : [`stat ${p}`, (root) => fsp.lstat(`${root}/${p}`)];
      ops.push(op);
    }
    let compared = 0;
    for (const [i, [what, run]] of ops.entries()) {
      const a = await outcome(run(on.mnt));
      const b = await outcome(run(off.mnt));
      expect({ step: i, what, result: a }).toEqual({ step: i, what, result: b });
      for (const p of PATHS) {
        const sa = await outcome(fsp.lstat(`${on.mnt}/${p}`));
        const sb = await outcome(fsp.lstat(`${off.mnt}/${p}`));
        expect({ step: i, what, path: p, stat: sa }).toEqual({ step: i, what, path: p, stat: sb });
        compared++;
      }
    }
    expect(compared).toBe(STEPS * PATHS.length);
  }, 300_000);
});
