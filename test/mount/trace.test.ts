// Trace replay end to end (issue 6, item 5): a real mount records its FUSE
// operations (lessfs --trace) during a workload of mkdir, copies with
// duplicates, a mid-file overwrite, truncates, renames of a file and a
// directory, unlink, symlink, hard link, chmod and fsync; after unmount the
// trace parses, holds the operations and no file data; then lessfs-sim
// replays it under every fault kind (`--faults all`) in live and batch mode:
// the runs pass and, in runs without a master fault (which may roll the master
// back), the replayed master tree has the recorded tree's names,
// kinds and sizes; the CLI gives the same trace hash twice.

import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { masterFaults, replayTrace } from '../../src/sim/trace-replay.ts';
import { loadTrace, parseTrace } from '../../src/sim/trace.ts';
import { cleanupMounts, ROOT, run, runOk, startMount, tempDir } from '../support/mount.ts';

afterAll(cleanupMounts, 60_000);

const SECRET = 'TOP-SECRET-lessfs-trace-marker';

/** Names, kinds, sizes and link targets under root (async calls only: root is a mount). */
async function shape(root: string): Promise<Array<[string, string]>> {
  const out: Array<[string, string]> = [];
  const visit = async (dir: string, rel: string): Promise<void> => {
    for (const name of (await fsp.readdir(dir)).sort()) {
      if (rel === '' && name === '.lessfs') continue;
      const p = join(dir, name);
      const r = `${rel}/${name}`;
      const st = await fsp.lstat(p);
      if (st.isDirectory()) {
        out.push([r, 'dir']);
        await visit(p, r);
      } else if (st.isSymbolicLink()) out.push([r, `symlink -> ${await fsp.readlink(p)}`]);
      else out.push([r, `file size=${st.size}`]);
    }
  };
  await visit(root, '');
  return out.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** A model listing in shape()'s terms. */
function modelShape(listing: Map<string, string>): Array<[string, string]> {
  return [...listing].map(([p, what]): [string, string] => [p, what.startsWith('dir') ? 'dir' : what.replace(/ nlink=\d+$/, '')]);
}

describe('FUSE trace recording and replay', () => {
  it('records a real workload without file data and replays it under faults (the same tree without master faults)', async () => {
    const src = tempDir('lessfs-trace-src-');
    const tracePath = join(tempDir('lessfs-trace-out-'), 'mount.trace');
    const a = randomBytes(20000);
    writeFileSync(join(src, 'a.bin'), a);
    writeFileSync(join(src, 'b.txt'), `${SECRET}\n`.repeat(300));
    writeFileSync(join(src, 'patch.bin'), randomBytes(2000));

    const m = await startMount({ config: { BLKSIZE: 4096 }, args: ['--trace', tracePath] });
    const script = [
      'set -e',
      `cd '${m.mnt}'`,
      'mkdir -p docs/sub',
      `cp '${src}/a.bin' docs/a.bin`,
      `cp '${src}/a.bin' docs/sub/a-copy.bin`,
      `cp '${src}/b.txt' docs/b.txt`,
      'cp docs/a.bin docs/a-inside.bin',
      `dd if='${src}/patch.bin' of=docs/a.bin bs=1000 seek=3 count=2 conv=notrunc status=none`,
      'truncate -s 5000 docs/sub/a-copy.bin',
      'truncate -s 30000 docs/b.txt',
      'mv docs/b.txt docs/sub/b-renamed.txt',
      'mv docs/sub docs/moved',
      'rm docs/a-inside.bin',
      'ln -s moved/b-renamed.txt docs/link-to-b',
      'ln docs/a.bin docs/a-hardlink.bin',
      'chmod 600 docs/a.bin',
      'sync docs/a.bin',
    ].join('\n');
    await runOk('bash', ['-c', script], { timeoutMs: 60_000 });
    const recorded = await shape(m.mnt);
    expect(recorded).toEqual([
      ['/docs', 'dir'],
      ['/docs/a-hardlink.bin', 'file size=20000'],
      ['/docs/a.bin', 'file size=20000'],
      ['/docs/link-to-b', 'symlink -> moved/b-renamed.txt'],
      ['/docs/moved', 'dir'],
      ['/docs/moved/a-copy.bin', 'file size=5000'],
      ['/docs/moved/b-renamed.txt', 'file size=30000'],
    ]);
    await m.stop();
    expect(m.logText()).toContain(`recording FUSE operations to ${tracePath}`);

    // The trace: complete, every kind of operation, no file data.
    const text = readFileSync(tracePath, 'utf8');
    const parsed = parseTrace(text, 'mount.trace');
    expect(parsed.warnings).toEqual([]);
    expect(parsed.marker?.marker.event).toBe('end');
    const ops = new Set(parsed.entries.map((e) => e.entry.op));
    for (const op of ['mkdir', 'create', 'write', 'release', 'open', 'read', 'rename', 'unlink', 'symlink', 'link', 'chmod', 'fsync', 'readdir', 'readlink']) {
      expect(ops.has(op as never), `${op} in ${[...ops].join(', ')}`).toBe(true);
    }
    expect(ops.has('truncate') || ops.has('ftruncate')).toBe(true);
    expect(text).not.toContain('TOP-SECRET');
    for (const encoding of ['hex', 'base64'] as const) expect(text).not.toContain(a.subarray(0, 12).toString(encoding));
    const plain = new Set<string>();
    for (let at = 0; at < a.length; at += 4096) plain.add(createHash('sha256').update(a.subarray(at, at + 4096)).digest('hex').slice(0, 16));
    const fps = parsed.entries.flatMap((e) => (e.entry.op === 'write' ? e.entry.fp : []));
    expect(fps.filter((f) => plain.has(f))).toEqual([]);
    // The dedup pattern is there: a.bin's pieces were written three times (two copies from outside, one inside).
    const counts = new Map<string, number>();
    for (const f of fps) counts.set(f, (counts.get(f) ?? 0) + 1);
    expect([...counts.values()].filter((n) => n >= 3).length).toBeGreaterThanOrEqual(4);

    // Converted: every recorded success also succeeds on the model, and the model ends at the recorded tree.
    const trace = loadTrace(text, 'mount.trace');
    expect(trace.divergent, trace.divergentExamples.join('\n')).toBe(0);
    expect(trace.skipped['chmod (no simulator equivalent)']).toBeGreaterThanOrEqual(1);

    // Several seeds, so master crashes and power losses land too. The oracle checks the master against the
    // model throughout; a run with a master fault may end rolled back (ops lost), so only the runs without
    // one must end with the recorded tree.
    let masterFaultsSeen = 0;
    let endedRecorded = 0;
    for (const [mode, seeds] of [['live', [1, 2, 3, 4, 5, 6, 7, 8]], ['batch', [1, 2, 7]]] as const) {
      for (const seed of seeds) {
        const r = await replayTrace(trace, { seed, faults: 'all', mode });
        expect(r.result.problems, `${mode} seed ${seed}`).toEqual([]);
        expect(Object.keys(r.result.faultsInjected).length, `${mode} seed ${seed}`).toBeGreaterThan(0);
        expect(r.finalTree, `${mode} seed ${seed}`).toBeDefined();
        const m = masterFaults(r.result);
        masterFaultsSeen += m;
        if (m === 0) {
          expect(modelShape(r.finalTree as Map<string, string>), `${mode} seed ${seed}`).toEqual(recorded);
          endedRecorded++;
        }
        console.log(`replay-trace (${mode}, seed ${seed}, faults all): ${trace.recordedOps} recorded ops, ${trace.ops.length} replayed, ` +
          `faults ${JSON.stringify(r.result.faultsInjected)}, ${r.result.wallMs.toFixed(0)} ms`);
      }
    }
    expect(masterFaultsSeen).toBeGreaterThan(0);
    expect(endedRecorded).toBeGreaterThan(0);
    console.log(`trace: ${text.length} bytes, skipped ${JSON.stringify(trace.skipped)}, ${endedRecorded} runs without master faults ended with the recorded tree`);

    // The command: passes, and twice gives the same trace hash.
    const bin = join(ROOT, 'bin', 'lessfs-sim.js');
    const hashes: string[] = [];
    for (let i = 0; i < 2; i++) {
      const r = await run(process.execPath, [bin, 'replay-trace', tracePath, '--seed', '7', '--faults', 'all'], { timeoutMs: 120_000 });
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toContain('result: OK');
      hashes.push(r.stdout.match(/trace hash: +(\S+)/)?.[1] ?? 'none');
    }
    expect(hashes[0]).toMatch(/^[0-9a-f]{16}:\d+$/);
    expect(hashes[1]).toBe(hashes[0]);
  }, 240_000);

  it('refuses a trace file inside the mount point', async () => {
    const m = await startMount();
    const inside = join(m.mnt, 'x.trace');
    await m.stop();
    const r = await run(process.execPath, [join(ROOT, 'bin', 'lessfs.js'), m.cfgPath, m.mnt, '-f', '--trace', inside], { timeoutMs: 30_000 });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`lessfs: the trace file ${inside} is inside the mount point ${m.mnt}`);
  }, 60_000);
});
