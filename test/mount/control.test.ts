// The control files under /.lessfs on a real mount, and the mount's refusals
// (issue 3, items 1, 3 and 7): read-only files give EPERM when written, the
// entries cannot be removed or renamed, replication reads as off; a store
// formatted with another BLKSIZE and a store already mounted are refused with
// messages that name the cause.

import * as fsp from 'node:fs/promises';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cleanupMounts, cli, createStore, errnoOf, expectMountFailure, isMounted, run, startMount, type LessfsMount, stopThenCleanup } from '../support/mount.ts';

describe('control files', () => {
  let m: LessfsMount;
  const ctl = (...p: string[]): string => m.path('.lessfs', ...p);

  beforeAll(async () => {
    m = await startMount();
    await fsp.writeFile(m.path('data.txt'), 'some data\n');
  }, 60_000);

  afterAll(() => stopThenCleanup(m), 60_000);

  it('are listed and readable; replication reads as off', async () => {
    expect(await fsp.readdir(m.mnt)).toContain('.lessfs');
    expect((await fsp.readdir(ctl())).sort()).toEqual(['lessfs_stats', 'locks', 'replication']);
    expect((await fsp.readdir(ctl('replication'))).sort()).toEqual(['backlog', 'enabled', 'rotate_replog', 'sequence', 'status']);
    expect(await fsp.readdir(ctl('locks'))).toEqual([]);

    const stats = await fsp.readFile(ctl('lessfs_stats'), 'utf8');
    expect(stats.split('\n')[0]).toMatch(/INODE\s+SIZE\s+COMPRESSED_SIZE\s+RATIO\s+FILENAME/);
    expect(stats).toMatch(/\s10\s.*\/data\.txt\n/);
    expect(await fsp.readFile(ctl('replication', 'enabled'), 'utf8')).toBe('0\n');
    expect(await fsp.readFile(ctl('replication', 'backlog'), 'utf8')).toBe('0\n');
    expect(await fsp.readFile(ctl('replication', 'sequence'), 'utf8')).toBe('0\n');
    expect(await fsp.readFile(ctl('replication', 'rotate_replog'), 'utf8')).toBe('0\n');
    expect(await fsp.readFile(ctl('replication', 'status'), 'utf8')).toMatch(/off/);
    // The size the kernel sees is the size of what is read (cat stops at st_size).
    const cat = await run('cat', [ctl('lessfs_stats')]);
    expect(cat.code).toBe(0);
    expect(cat.stdout).toBe(stats);
    const st = await fsp.stat(ctl('lessfs_stats'));
    expect(st.size).toBe(Buffer.byteLength(stats));
    expect(st.mode & 0o777).toBe(0o444);
  }, 30_000);

  it('read-only ones give EPERM when written; rotate_replog and enabled give EPERM without replication', async () => {
    for (const p of [['lessfs_stats'], ['replication', 'backlog'], ['replication', 'sequence'], ['replication', 'status']]) {
      expect(await errnoOf(fsp.writeFile(ctl(...p), '1\n')), `write ${p.join('/')}`).toBe('EPERM');
      expect(await errnoOf(fsp.open(ctl(...p), 'r+').then((fh) => fh.close())), `open ${p.join('/')} for writing`).toBe('EPERM');
    }
    // From a shell as a user would: echo 1 > file.
    const echo = await run('bash', ['-c', `echo 1 > '${ctl('replication', 'sequence')}'`]);
    expect(echo.code).not.toBe(0);
    expect(echo.stderr).toMatch(/Operation not permitted/);
    // Not a batch-mode master (replication is off): rotating is refused.
    expect(await errnoOf(fsp.writeFile(ctl('replication', 'rotate_replog'), '1\n'))).toBe('EPERM');
    expect(await errnoOf(fsp.writeFile(ctl('replication', 'enabled'), '1\n'))).toBe('EPERM');
    expect(await fsp.readFile(ctl('replication', 'enabled'), 'utf8')).toBe('0\n');
    expect(await fsp.readFile(ctl('replication', 'sequence'), 'utf8')).toBe('0\n');
  }, 30_000);

  it('cannot be removed, renamed, replaced or created in', async () => {
    const files = ['lessfs_stats', 'replication/enabled', 'replication/rotate_replog'];
    for (const f of files) {
      const rm = await run('rm', ['-f', ctl(f)]);
      expect(rm.code, `rm ${f}`).not.toBe(0);
      expect(await errnoOf(fsp.unlink(ctl(f))), `unlink ${f}`).toBe('EPERM');
      const mv = await run('mv', [ctl(f), m.path('moved')]);
      expect(mv.code, `mv ${f}`).not.toBe(0);
      expect(await errnoOf(fsp.rename(ctl(f), m.path('moved'))), `rename ${f}`).toBe('EPERM');
    }
    // Replacing a control file by renaming onto it, or linking to it.
    expect(await errnoOf(fsp.rename(m.path('data.txt'), ctl('lessfs_stats')))).toBe('EPERM');
    expect(await errnoOf(fsp.link(ctl('lessfs_stats'), m.path('stats-link')))).toBe('EPERM');
    // The directories themselves.
    const rmrf = await run('rm', ['-rf', ctl()]);
    expect(rmrf.code).not.toBe(0);
    expect(await errnoOf(fsp.rmdir(ctl('locks')))).not.toBe('OK');
    expect(await errnoOf(fsp.rename(ctl(), m.path('renamed')))).toBe('EPERM');
    expect(await errnoOf(fsp.rmdir(ctl()))).toBe('EPERM');
    expect(await errnoOf(fsp.chmod(ctl(), 0o700))).toBe('EPERM');
    expect(await errnoOf(fsp.rename(ctl('replication'), m.path('renamed')))).not.toBe('OK');
    expect(await errnoOf(fsp.mkdir(ctl()))).toBe('EEXIST');
    expect(await errnoOf(fsp.writeFile(ctl('new-file'), 'x'))).not.toBe('OK');
    expect(await errnoOf(fsp.mkdir(ctl('locks', '123')))).not.toBe('OK');

    // All still there, and the data untouched.
    expect((await fsp.readdir(ctl())).sort()).toEqual(['lessfs_stats', 'locks', 'replication']);
    expect((await fsp.readdir(ctl('replication'))).sort()).toEqual(['backlog', 'enabled', 'rotate_replog', 'sequence', 'status']);
    expect((await fsp.readdir(m.mnt)).sort()).toEqual(['.lessfs', 'data.txt']);
    expect(await fsp.readFile(m.path('data.txt'), 'utf8')).toBe('some data\n');
  }, 30_000);
});

describe('mount refusals', () => {
  afterEach(cleanupMounts, 60_000);

  it('a store formatted with another BLKSIZE: non-zero exit naming BLKSIZE, nothing mounted', async () => {
    const store = await createStore({ config: { BLKSIZE: 65536 } });
    store.writeConfig({ BLKSIZE: 131072 });
    const r = await expectMountFailure(store);
    console.log(`refused: ${r.log.trim()}`);
    expect(r.code).toBe(1);
    expect(r.log).toMatch(/BLKSIZE=65536/);
    expect(r.log).toMatch(/BLKSIZE=131072/);
    expect(isMounted(store.mnt)).toBe(false);
    // The store itself is unharmed: with the right BLKSIZE it mounts.
    store.writeConfig({ BLKSIZE: 65536 });
    const m = await startMount({ store });
    await fsp.writeFile(m.path('ok'), 'ok');
    await m.stop();
  }, 60_000);

  it('an -o option libfuse refuses: exit 1 at once with libfuse\'s reason, no half-made mount left, the store mounts after', async () => {
    const store = await createStore();
    const r = await cli('lessfs', [store.cfgPath, store.mnt, '-f', '-o', 'bogus_option=1'], { timeoutMs: 20_000 });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain("unknown option `bogus_option=1'");
    expect(r.stderr).toContain(`FUSE refused to mount ${store.mnt}`);
    expect(isMounted(store.mnt)).toBe(false);
    const m = await startMount({ store });
    await fsp.writeFile(m.path('ok'), 'ok');
    await m.stop();
  }, 60_000);

  it('the same META_PATH mounted twice: the second refuses, naming the lock and the pid holding it', async () => {
    const m = await startMount();
    const mnt2 = join(m.dir, 'mnt2');
    mkdirSync(mnt2);
    const r = await expectMountFailure(m.store, { mnt: mnt2 });
    console.log(`refused: ${r.log.trim()}`);
    expect(r.code).toBe(1);
    expect(r.log).toContain(String(m.pid));
    expect(r.log).toMatch(/in use|lock/);
    expect(isMounted(mnt2)).toBe(false);
    // The first mount is unaffected.
    await fsp.writeFile(m.path('still'), 'works');
    expect(await fsp.readFile(m.path('still'), 'utf8')).toBe('works');
    await m.stop();
  }, 60_000);

  it('a mount point already in use by a live filesystem is refused', async () => {
    const m = await startMount();
    const other = await createStore();
    const r = await expectMountFailure(other, { mnt: m.mnt });
    console.log(`refused: ${r.log.trim()}`);
    expect(r.code).toBe(1);
    expect(r.log).toMatch(/already in use/);
    expect(await fsp.readdir(m.mnt)).toContain('.lessfs');
    await m.stop();
  }, 60_000);
});
