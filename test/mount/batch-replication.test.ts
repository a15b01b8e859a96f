// Batch replication through the real commands (issue 4, item 7): a master
// mounted in batch mode writes a tree with duplicate content and rotates its
// log; the rotated files are applied once by a mounted watchdir slave and once
// by `replogtool -c` to an unmounted slave; both slaves' trees equal the
// master's byte for byte. A corrupted and a half-copied file are refused with
// one log line and nothing of them is applied.

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanupMounts, cli, createStore, errnoOf, startMount, type LessfsMount } from '../support/mount.ts';
import { treeOf } from '../support/tree.ts';

const MIB = 1024 * 1024;
const WAIT_MS_MAX = 30_000;

afterEach(cleanupMounts, 60_000);

async function readControl(m: LessfsMount, name: string): Promise<string> {
  return (await fsp.readFile(m.path('.lessfs', 'replication', name), 'utf8')).trim();
}

async function waitFor(what: string, check: () => Promise<boolean>, log: () => string): Promise<void> {
  const deadline = performance.now() + WAIT_MS_MAX;
  while (performance.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out after ${WAIT_MS_MAX} ms waiting for ${what}; slave log:\n${log().split('\n').slice(-20).join('\n')}`);
}

/** Copy into the watch dir as lessfs users should: temporary name, then rename. */
async function ship(from: string, watchdir: string, name: string): Promise<void> {
  const tmp = join(watchdir, `.${name}.part`);
  await fsp.copyFile(from, tmp);
  await fsp.rename(tmp, join(watchdir, name));
}

describe('batch replication with real mounts', () => {
  it('a watchdir slave and replogtool -c both reproduce the master; bad files are refused', async () => {
    const common = { REPLICATION: 'masterslave', COMPRESSION: 'lz4' };
    const master = await startMount({ config: { ...common, REPLICATION_ROLE: 'master', REPLICATION_PARTNER_IP: -1 } });
    const slaveStore = await createStore({ config: { ...common, REPLICATION_ROLE: 'slave', REPLICATION_PARTNER_IP: -1 } });
    const watchdir = join(slaveStore.dir, 'incoming');
    await fsp.mkdir(watchdir);
    slaveStore.writeConfig({ REPLICATION_WATCHDIR: watchdir });
    const offline = await createStore({ config: { ...common, REPLICATION_ROLE: 'slave', REPLICATION_PARTNER_IP: -1 } });

    // A tree with duplicate content, links, a symlink, a sparse file.
    const big = randomBytes(6 * MIB + 123);
    await fsp.mkdir(master.path('a/b'), { recursive: true });
    await fsp.writeFile(master.path('a/big'), big);
    await fsp.writeFile(master.path('a/b/big-copy'), big);
    await fsp.writeFile(master.path('a/text'), 'hello\n'.repeat(5000));
    await fsp.symlink('../a/text', master.path('a/b/sym'));
    await fsp.link(master.path('a/text'), master.path('text-link'));
    const sparse = await fsp.open(master.path('sparse'), 'w');
    await sparse.write(Buffer.from('end'), 0, 3, 9 * MIB);
    await sparse.close();
    expect(await readControl(master, 'sequence')).toBe('1');
    await fsp.writeFile(master.path('.lessfs/replication/rotate_replog'), '1\n');
    expect(await readControl(master, 'sequence')).toBe('2');

    // Changes after the first rotation: overwrite, truncate, rename, unlink, chmod.
    const fh = await fsp.open(master.path('a/big'), 'r+');
    await fh.write(randomBytes(300_000), 0, 300_000, 2 * MIB + 7);
    await fh.close();
    await fsp.truncate(master.path('a/b/big-copy'), MIB + 1);
    await fsp.rename(master.path('a/text'), master.path('a/b/text-moved'));
    await fsp.unlink(master.path('a/b/sym'));
    await fsp.chmod(master.path('sparse'), 0o600);
    await fsp.writeFile(master.path('.lessfs/replication/rotate_replog'), '1');
    expect(await readControl(master, 'sequence')).toBe('3');
    const files = (await fsp.readdir(master.dataPath)).filter((n) => /^replog\.dta-\d+$/.test(n)).sort();
    expect(files).toEqual(['replog.dta-1', 'replog.dta-2']);
    const expected = await treeOf(master.mnt);
    expect(expected.get('a/b/big-copy')).toMatch(/size=1048577/);

    // The watchdir slave: mounted, read-only, applies in sequence.
    const slave = await startMount({ store: slaveStore });
    expect(await readControl(slave, 'sequence')).toBe('0');
    await ship(join(master.dataPath, 'replog.dta-2'), watchdir, 'replog.dta-2');
    await waitFor('a refusal of replog.dta-2 (gap)', async () => /replog\.dta-2 waits: sequence gap|transaction gap/.test(slave.currentLogText()), () => slave.currentLogText());
    expect(await readControl(slave, 'sequence')).toBe('0');
    await ship(join(master.dataPath, 'replog.dta-1'), watchdir, 'replog.dta-1');
    await waitFor('sequence 2 on the slave', async () => (await readControl(slave, 'sequence')) === '2', () => slave.currentLogText());
    expect(await treeOf(slave.mnt)).toEqual(expected);
    expect((await fsp.readdir(watchdir)).sort()).toEqual(['replog.dta-1-processed', 'replog.dta-2-processed']);

    // Read-only: every change is EPERM; replication/enabled is writable.
    expect(await errnoOf(fsp.writeFile(slave.path('new'), 'x'))).toBe('EPERM');
    expect(await errnoOf(fsp.writeFile(slave.path('sparse'), 'x'))).toBe('EPERM');
    expect(await errnoOf(fsp.unlink(slave.path('text-link')))).toBe('EPERM');
    expect(await errnoOf(fsp.mkdir(slave.path('d')))).toBe('EPERM');
    expect(await errnoOf(fsp.writeFile(slave.path('.lessfs/replication/rotate_replog'), '1'))).toBe('EPERM');
    await fsp.writeFile(slave.path('.lessfs/replication/enabled'), '0');
    expect(await readControl(slave, 'enabled')).toBe('0');
    await fsp.writeFile(slave.path('.lessfs/replication/enabled'), '1');
    expect(await readControl(slave, 'status')).toMatch(/role: slave/);

    // A third file: first bit-flipped, then half-copied under its final name, then good.
    await fsp.writeFile(master.path('late'), randomBytes(2 * MIB));
    await fsp.writeFile(master.path('.lessfs/replication/rotate_replog'), '1');
    const third = join(master.dataPath, 'replog.dta-3');
    const good = await fsp.readFile(third);
    const flipped = Buffer.from(good);
    flipped[Math.floor(flipped.length / 2)] ^= 0x10;
    await fsp.writeFile(join(watchdir, '.tmp3'), flipped);
    await fsp.rename(join(watchdir, '.tmp3'), join(watchdir, 'replog.dta-3'));
    await waitFor('refusal of the corrupted file', async () => /refusing replog\.dta-3: ECRC/.test(slave.currentLogText()), () => slave.currentLogText());
    await fsp.writeFile(join(watchdir, '.tmp3'), good.subarray(0, good.length - 1000));
    await fsp.rename(join(watchdir, '.tmp3'), join(watchdir, 'replog.dta-3'));
    await waitFor('refusal of the half-copied file', async () => /refusing replog\.dta-3: ETRUNCATED/.test(slave.currentLogText()), () => slave.currentLogText());
    expect(await readControl(slave, 'sequence')).toBe('2');
    expect(await errnoOf(fsp.stat(slave.path('late')))).toBe('ENOENT');
    expect(slave.currentLogText().match(/refusing replog\.dta-3: ECRC/g)).toHaveLength(1);
    await ship(third, watchdir, 'replog.dta-3');
    await waitFor('sequence 3 on the slave', async () => (await readControl(slave, 'sequence')) === '3', () => slave.currentLogText());
    const expected3 = await treeOf(master.mnt);
    expect(await treeOf(slave.mnt)).toEqual(expected3);

    // A duplicate of an applied file is skipped.
    await ship(third, watchdir, 'replog.dta-3');
    await waitFor('the duplicate skipped', async () => /skipping replog\.dta-3: already applied/.test(slave.currentLogText()), () => slave.currentLogText());
    expect(await treeOf(slave.mnt)).toEqual(expected3);
    await slave.stop();

    // replogtool -c to an unmounted slave, twice (idempotent); then mount it and compare.
    for (const name of ['replog.dta-1', 'replog.dta-2', 'replog.dta-3']) {
      const r = await cli('replogtool', ['-r', join(master.dataPath, name), '-c', offline.cfgPath], { timeoutMs: 60_000 });
      expect(r.code, r.stderr + r.stdout).toBe(0);
      expect(r.stdout).toMatch(/^applied /m);
    }
    const again = await cli('replogtool', ['-r', join(master.dataPath, 'replog.dta-2'), '-c', offline.cfgPath], { timeoutMs: 60_000 });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/^skipped /m);
    const corrupt = join(offline.dir, 'replog.dta-4');
    await fsp.writeFile(master.path('later'), 'x');
    await fsp.writeFile(master.path('.lessfs/replication/rotate_replog'), '1');
    const fourth = await fsp.readFile(join(master.dataPath, 'replog.dta-4'));
    await fsp.writeFile(corrupt, fourth.subarray(0, fourth.length - 5));
    const refused = await cli('replogtool', ['-r', corrupt, '-c', offline.cfgPath], { timeoutMs: 60_000 });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/ETRUNCATED/);
    const offMount = await startMount({ store: offline });
    expect(await readControl(offMount, 'sequence')).toBe('3');
    expect(await treeOf(offMount.mnt)).toEqual(expected3);
    await offMount.stop();
    await master.stop();
  }, 240_000);
});

describe('a batch slave whose disk fills (data and metadata on one 32 MiB tmpfs)', () => {
  // Needs root for the tmpfs; CI runs as root.
  it.skipIf(process.getuid?.() !== 0)('a watchdir slave keeps the file it could not apply and applies it once room appears, without a restart; replogtool exits 1 and can be run again', async () => {
    const common = { REPLICATION: 'masterslave', COMPRESSION: 'none' };
    const master = await startMount({ config: { ...common, REPLICATION_ROLE: 'master', REPLICATION_PARTNER_IP: -1 } });
    const trees = [];
    for (let i = 1; i <= 3; i++) {
      await fsp.writeFile(master.path(`f${i}`), randomBytes(8 * MIB));
      await fsp.writeFile(master.path('.lessfs/replication/rotate_replog'), '1');
      trees.push(await treeOf(master.mnt));
    }
    await master.stop();
    const files = [1, 2, 3].map((n) => join(master.dataPath, `replog.dta-${n}`));
    const store = await createStore({ format: false, config: { ...common, REPLICATION_ROLE: 'slave', REPLICATION_PARTNER_IP: -1 } });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=32m', 'tmpfs', store.dataPath]);
    try {
      // Room for the first file's 8 MiB, not the second's: 16 MiB of something else on the disk.
      const ballast = join(store.dataPath, 'ballast');
      const metaPath = join(store.dataPath, 'meta');
      await fsp.mkdir(metaPath);
      const watchdir = join(store.dir, 'incoming');
      await fsp.mkdir(watchdir);
      store.writeConfig({ META_PATH: metaPath, REPLICATION_WATCHDIR: watchdir });
      const mk = await cli('mklessfs', ['-f', '-c', store.cfgPath], { timeoutMs: 30_000 });
      expect(mk.code, mk.stderr).toBe(0);
      await fsp.writeFile(ballast, randomBytes(16 * MIB));
      const slave = await startMount({ store });
      const pid = slave.pid;
      for (const f of files) await ship(f, watchdir, f.slice(f.lastIndexOf('/') + 1));
      await waitFor('replog.dta-2 not applied for the full disk', async () => /replog\.dta-2 was not applied: ENOSPC: .*is full.*nothing of it was kept \(this slave stays at replog\.dta-1/.test(slave.currentLogText()), () => slave.currentLogText());
      const status = await readControl(slave, 'status');
      expect(status).toMatch(/applying_stopped: the disk under .* is full: replog\.dta-2 waits for room/);
      expect(status).toMatch(/files_refused: 0/);
      expect(await readControl(slave, 'sequence')).toBe('1');
      expect((await fsp.readdir(watchdir)).sort()).toEqual(['replog.dta-1-processed', 'replog.dta-2', 'replog.dta-3']);
      expect(await treeOf(slave.mnt)).toEqual(trees[0]);

      await fsp.rm(ballast);
      await waitFor('sequence 3 on the slave', async () => (await readControl(slave, 'sequence')) === '3', () => slave.currentLogText());
      expect(slave.pid).toBe(pid);
      expect(await treeOf(slave.mnt)).toEqual(trees[2]);
      expect((await fsp.readdir(watchdir)).sort()).toEqual(['replog.dta-1-processed', 'replog.dta-2-processed', 'replog.dta-3-processed']);
      expect(slave.currentLogText()).toMatch(/the disk has room again .*: applying replog\.dta-2 again/);
      expect(await readControl(slave, 'status')).toMatch(/applying_stopped: -/);
      await slave.stop();
      const fsck = await cli('lessfsck', ['-c', store.cfgPath]);
      expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);

      // By hand: a new slave on the same disk, unmounted, applied with replogtool.
      const mk2 = await cli('mklessfs', ['-f', '-c', store.cfgPath], { timeoutMs: 30_000 });
      expect(mk2.code, mk2.stderr).toBe(0);
      await fsp.writeFile(ballast, randomBytes(16 * MIB));
      const first = await cli('replogtool', ['-r', files[0], '-c', store.cfgPath], { timeoutMs: 60_000 });
      expect(first.code, first.stderr).toBe(0);
      const full = await cli('replogtool', ['-r', files[1], '-c', store.cfgPath], { timeoutMs: 60_000 });
      expect(full.code, full.stderr).toBe(1);
      expect(full.stderr).toMatch(/\nreplogtool: replog\.dta-2 was not applied: ENOSPC: the disk under .* is full.*; nothing of it was kept \(this slave stays at replog\.dta-1, txn \d+\); make room \(its blocks take about 8\.0 MiB\) and run replogtool again/);
      await fsp.rm(ballast);
      for (const f of files.slice(1)) {
        const r = await cli('replogtool', ['-r', f, '-c', store.cfgPath], { timeoutMs: 60_000 });
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout).toMatch(/^applied /m);
      }
      const offMount = await startMount({ store });
      expect(await treeOf(offMount.mnt)).toEqual(trees[2]);
      await offMount.stop();
      const fsck2 = await cli('lessfsck', ['-c', store.cfgPath]);
      expect(fsck2.code, fsck2.stdout + fsck2.stderr).toBe(0);
    } finally {
      // Lazily: a lessfs still running holds files in it (afterEach ends it, then removes the dir).
      execFileSync('umount', ['-l', store.dataPath]);
    }
  }, 240_000);
});
