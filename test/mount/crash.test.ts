// kill -9 of the mount process while writers are busy (issue 3, item 7). Every
// file whose `dd conv=fsync` returned before the kill must be intact after the
// remount; the next mount clears the stale mount by itself and says it
// recovered; lessfsck finds the store clean.

import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanupMounts, cli, isMounted, runOk, sha256File, spawnTracked, startMount, tempDir } from '../support/mount.ts';

const KIB = 1024;
const SOURCES = 6;
const SYNCED_BEFORE_KILL_MIN = 8;
const WAIT_MS_MAX = 30_000;
const ROUNDS = 3;

afterEach(cleanupMounts, 60_000);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('kill -9 during writes', () => {
  it('fsynced files survive, the stale mount is cleared by the next mount, recovery is logged, lessfsck is clean', async () => {
    // Commits come only from fsync (and cache pressure) during the run.
    const m = await startMount({ config: { COMMIT_INTERVAL: 600, CACHESIZE: 64, COMPRESSION: 'lz4' } });
    const src = tempDir();
    const sizes = [100 * KIB + 3, 128 * KIB, 700 * KIB + 11, 1024 * KIB, 1500 * KIB + 999, 2048 * KIB];
    const shared = randomBytes(512 * KIB);
    for (let k = 0; k < SOURCES; k++) {
      // Half of each file is shared with the others: dedup refcounts are in play.
      const body = Buffer.concat([shared, randomBytes(sizes[k])]).subarray(0, sizes[k]);
      writeFileSync(join(src, `s${k}`), k % 2 === 0 ? body : Buffer.concat([randomBytes(1000), body]).subarray(0, sizes[k]));
    }
    const want = await Promise.all(Array.from({ length: SOURCES }, (_, k) => sha256File(join(src, `s${k}`))));
    for (const d of ['base', 'sync', 'nosync']) await fsp.mkdir(m.path(d));
    for (let k = 0; k < SOURCES; k++) await runOk('dd', [`if=${join(src, `s${k}`)}`, `of=${m.path('base', `b${k}`)}`, 'bs=128k', 'conv=fsync', 'status=none']);

    // Several rounds of: writers busy, kill -9 at a varying moment, remount, check.
    const fsynced: Array<{ name: string; k: number }> = [];
    for (let round = 0; round < ROUNDS; round++) {
      // Writer 1: one fsynced file after another; prints each name once dd returned.
      const synced = spawnTracked('bash', ['-c', `for ((i = 0; ; i++)); do dd if='${src}'/s$((i % ${SOURCES})) of='${m.mnt}'/sync/r${round}-$i bs=128k conv=fsync status=none || exit 3; echo $i; done`]);
      // Writer 2: unsynced files, written and deleted, with odd write sizes.
      const unsynced = spawnTracked('bash', ['-c', `for ((i = 0; ; i++)); do dd if='${src}'/s$((i % ${SOURCES})) of='${m.mnt}'/nosync/r${round}-$i bs=7000 status=none || exit 3; rm -f '${m.mnt}'/nosync/r${round}-$((i - 3)) || exit 4; done`]);
      // Writer 3: rewrites the same blocks of one file in place (unsynced).
      const rewriter = spawnTracked('bash', ['-c', `while true; do dd if=/dev/urandom of='${m.mnt}'/nosync/rewrite bs=64k count=16 conv=notrunc status=none || exit 3; done`]);

      const deadline = performance.now() + WAIT_MS_MAX;
      const doneCount = (): number => synced.stdout().split('\n').filter((l) => /^\d+$/.test(l)).length;
      while (doneCount() < SYNCED_BEFORE_KILL_MIN && performance.now() < deadline) {
        if (synced.child.exitCode !== null) throw new Error(`round ${round}: the fsync writer ended early: ${synced.stderr()}`);
        await sleep(20);
      }
      expect(doneCount(), `round ${round}: fsynced files written before the kill`).toBeGreaterThanOrEqual(SYNCED_BEFORE_KILL_MIN);
      await sleep(round * 37); // a different point in the write stream each round
      await m.kill9();
      // Read after the kill: a line printed now was printed before the kill.
      const done = synced.stdout().split('\n').filter((l) => /^\d+$/.test(l)).map(Number);
      for (const i of done) fsynced.push({ name: `r${round}-${i}`, k: i % SOURCES });
      console.log(`round ${round}: killed lessfs after ${done.length} fsynced files`);

      // The writers fail (ENOTCONN) instead of hanging in the dead mount.
      for (const w of [synced, unsynced, rewriter]) {
        const e = await Promise.race([w.exited, sleep(20_000).then(() => 'timeout' as const)]);
        expect(e, `round ${round}: writer stuck in the dead mount: ${w.stderr()}`).not.toBe('timeout');
        expect((e as { code: number | null }).code).not.toBe(0);
      }
      expect(synced.stderr()).toMatch(/Transport endpoint is not connected|Software caused connection abort/);
      expect(isMounted(m.mnt), 'a stale mount is left behind').toBe(true);

      await m.restart();
      const log = m.currentLogText();
      expect(log).toMatch(/stale FUSE mount/);
      expect(log).toMatch(/ended without unmounting/);
      expect(log).toMatch(/recovered from an unclean shutdown/);

      for (let k = 0; k < SOURCES; k++) expect(await sha256File(m.path('base', `b${k}`)), `base/b${k}`).toBe(want[k]);
      const syncNames = await fsp.readdir(m.path('sync'));
      for (const f of fsynced) {
        expect(syncNames, `round ${round}: sync/${f.name} (fsynced) is listed`).toContain(f.name);
        expect(await sha256File(m.path('sync', f.name)), `round ${round}: sync/${f.name} (fsynced)`).toBe(want[f.k]);
      }
      // What was not fsynced may or may not be there, but whatever is listed reads without error.
      for (const n of syncNames) await fsp.readFile(m.path('sync', n));
      for (const n of await fsp.readdir(m.path('nosync'))) await fsp.readFile(m.path('nosync', n));
    }

    // The remounted filesystem takes new writes and unmounts cleanly.
    await fsp.writeFile(m.path('after-crash'), 'ok');
    await fsp.rm(m.path('nosync'), { recursive: true });
    await m.stop();
    const fsck = await cli('lessfsck', ['-f', '-t', '-c', m.cfgPath], { timeoutMs: 60_000 });
    expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);
    expect(fsck.stdout).toContain('clean');
  }, 120_000);

  it('lessfsck on the store right after kill -9 (before any remount) is clean', async () => {
    const m = await startMount({ config: { COMMIT_INTERVAL: 600 } });
    const src = tempDir();
    writeFileSync(join(src, 's'), randomBytes(3 * 1024 * KIB + 5));
    await runOk('dd', [`if=${join(src, 's')}`, `of=${m.path('synced')}`, 'bs=128k', 'conv=fsync', 'status=none']);
    const writer = spawnTracked('bash', ['-c', `for ((i = 0; ; i++)); do cp '${src}/s' '${m.mnt}'/u$i || exit 3; done`]);
    await sleep(1_000);
    await m.kill9();
    await Promise.race([writer.exited, sleep(20_000)]);
    expect(writer.child.exitCode, 'writer ended').not.toBe(null);

    const fsck = await cli('lessfsck', ['-f', '-t', '-c', m.cfgPath], { timeoutMs: 60_000 });
    expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);

    await m.restart();
    expect(await sha256File(m.path('synced'))).toBe(await sha256File(join(src, 's')));
    await m.stop();
  }, 120_000);
});
