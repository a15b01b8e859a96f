// Listed attributes through a real mount: after a listing, the kernel's
// lookups of the names listed are answered by the libfuse threads from the
// addon's table (no request reaches the JS handlers), and a change made
// through the mount is seen by the very next stat. The mount caches nothing
// in the kernel (attr_timeout=0, entry_timeout=0, as a slave mounts), so
// every stat here asks lessfs: a table that was not invalidated would show.

import * as fsp from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errnoOf, runOk, startMount, type LessfsMount, stopThenCleanup } from '../support/mount.ts';

let m: LessfsMount;

beforeAll(async () => {
  // DEBUG 5 logs every request the JS handlers get ("fuse getattr PATH").
  m = await startMount({ config: { DEBUG: 5 }, args: ['-o', 'attr_timeout=0,entry_timeout=0,negative_timeout=0'] });
}, 60_000);

afterAll(() => stopThenCleanup(m), 60_000);

/** getattr requests for paths under dir/ that reached the JS handlers after the log had `from` bytes. */
function jsGetattrs(from: number, dir: string): number {
  const prefix = `fuse getattr /${dir}/`;
  return m.currentLogText().slice(from).split('\n').filter((l) => l.includes(prefix)).length;
}

async function lsSizes(dir: string): Promise<Map<string, string>> {
  const out = (await runOk('ls', ['-ln', dir])).stdout.trim().split('\n').slice(1);
  return new Map(out.map((l) => { const f = l.split(/\s+/); return [f.at(-1) as string, `${f[0]} ${f[1]} ${f[4]}`]; }));
}

describe('listed attributes', () => {
  it('ls -l of 300 names: the lookups after the listing never reach the JS handlers', async () => {
    const d = m.path('many');
    await fsp.mkdir(d);
    for (let i = 0; i < 300; i++) await fsp.writeFile(`${d}/f${i}`, 'x'.repeat(i));
    const from = m.currentLogText().length;
    const listed = await lsSizes(d);
    expect(listed.size).toBe(300);
    for (let i = 0; i < 300; i += 37) expect(listed.get(`f${i}`)).toBe(`-rw-r--r-- 1 ${i}`);
    // Without the table every name costs at least one getattr in JS.
    expect(jsGetattrs(from, 'many')).toBeLessThan(30);
  }, 60_000);

  it('creates in a directory just made: their lookups, the attribute requests after them and their flushes never reach the JS handlers', async () => {
    const d = m.path('fresh');
    await fsp.mkdir(d);
    const from = m.currentLogText().length;
    for (let i = 0; i < 200; i++) await fsp.writeFile(`${d}/f${i}`, 'y'.repeat(i));
    // Without the table: the lookup of each new name, libfuse's getattr after
    // the create, and the directory's before the next create (3 per file).
    const lines = m.currentLogText().slice(from).split('\n');
    const dirGetattrs = lines.filter((l) => l.endsWith('fuse getattr /fresh')).length;
    expect(jsGetattrs(from, 'fresh') + dirGetattrs).toBeLessThan(20);
    // Their flushes (at close) too: a small write is stored at once, nothing is left to wait for.
    expect(lines.filter((l) => l.includes('fuse flush /fresh/')).length).toBeLessThan(20);
    expect((await fsp.stat(`${d}/f150`)).size).toBe(150);
    expect(await errnoOf(fsp.stat(`${d}/f200`))).toBe('ENOENT');
  }, 60_000);

  it('a name made any way in a directory the table knows whole is found at once; one removed is gone', async () => {
    const d = m.path('whole');
    const other = m.path('other');
    await fsp.mkdir(d);
    await fsp.mkdir(other);
    await fsp.writeFile(`${other}/moved`, 'moved');
    expect(await errnoOf(fsp.stat(`${d}/x`))).toBe('ENOENT');
    await fsp.writeFile(`${d}/a`, 'aaa');
    expect((await fsp.stat(`${d}/a`)).size).toBe(3);
    await fsp.symlink('a', `${d}/s`);
    expect((await fsp.lstat(`${d}/s`)).isSymbolicLink()).toBe(true);
    await fsp.link(`${d}/a`, `${d}/h`);
    expect((await fsp.stat(`${d}/h`)).nlink).toBe(2);
    await runOk('mkfifo', [`${d}/p`]);
    expect((await fsp.stat(`${d}/p`)).isFIFO()).toBe(true);
    await fsp.mkdir(`${d}/sub`);
    expect((await fsp.stat(`${d}/sub`)).isDirectory()).toBe(true);
    expect(await errnoOf(fsp.stat(`${d}/sub/none`))).toBe('ENOENT');
    await fsp.rename(`${other}/moved`, `${d}/r`);
    expect((await fsp.stat(`${d}/r`)).size).toBe(5);
    await fsp.writeFile(`${d}/sub/deep`, 'deep');
    expect((await fsp.stat(`${d}/sub/deep`)).size).toBe(4);
    await fsp.unlink(`${d}/a`);
    expect(await errnoOf(fsp.stat(`${d}/a`))).toBe('ENOENT');
    expect((await fsp.stat(`${d}/h`)).nlink).toBe(1);
    // An exclusive create of a name that exists fails as it must.
    expect(await errnoOf(fsp.writeFile(`${d}/h`, 'x', { flag: 'wx' }))).toBe('EEXIST');
    expect((await lsSizes(d)).size).toBe(5);
  }, 60_000);

  it('every kind of change made through the mount shows at the next stat after a listing', async () => {
    const d = m.path('chg');
    await fsp.mkdir(d);
    await fsp.mkdir(`${d}/sub`);
    for (const n of ['a', 'b', 'c', 'e', 'f', 'g', 'h']) await fsp.writeFile(`${d}/${n}`, n);
    await fsp.writeFile(`${d}/sub/x`, 'xx');
    let sub = `${d}/sub`;
    const relist = async (): Promise<void> => {
      await lsSizes(d);
      await lsSizes(sub);
    };
    await relist();
    await fsp.appendFile(`${d}/a`, '0123456789');
    expect((await fsp.stat(`${d}/a`)).size).toBe(11);
    await relist();
    await fsp.chmod(`${d}/b`, 0o600);
    expect((await fsp.stat(`${d}/b`)).mode & 0o777).toBe(0o600);
    await relist();
    await fsp.truncate(`${d}/c`, 1000);
    expect((await fsp.stat(`${d}/c`)).size).toBe(1000);
    await relist();
    await fsp.utimes(`${d}/e`, 1_000_000, 2_000_000);
    expect((await fsp.stat(`${d}/e`)).mtimeMs).toBe(2_000_000_000);
    await relist();
    await fsp.rename(`${d}/f`, `${d}/f2`);
    expect(await errnoOf(fsp.stat(`${d}/f`))).toBe('ENOENT');
    expect((await fsp.stat(`${d}/f2`)).size).toBe(1);
    await relist();
    await fsp.unlink(`${d}/g`);
    expect(await errnoOf(fsp.stat(`${d}/g`))).toBe('ENOENT');
    await relist();
    await fsp.link(`${d}/h`, `${d}/h2`);
    expect((await fsp.stat(`${d}/h`)).nlink).toBe(2);
    await relist();
    await fsp.rename(`${d}/sub`, `${d}/sub2`);
    expect(await errnoOf(fsp.stat(`${d}/sub/x`))).toBe('ENOENT');
    expect((await fsp.stat(`${d}/sub2/x`)).size).toBe(2);
    sub = `${d}/sub2`;
    // A write through an open handle, seen while the file stays open.
    await relist();
    const fh = await fsp.open(`${d}/h`, 'r+');
    try {
      await fh.write(Buffer.alloc(300_000, 7), 0, 300_000, 0);
      expect((await fsp.stat(`${d}/h2`)).size).toBe(300_000);
      await relist();
      await fh.truncate(5);
      expect((await fsp.stat(`${d}/h`)).size).toBe(5);
    } finally {
      await fh.close();
    }
    // And the listing itself agrees with stat afterwards.
    const final = await lsSizes(d);
    expect(final.get('a')).toBe('-rw-r--r-- 1 11');
    expect(final.get('b')).toBe('-rw------- 1 1');
    expect(final.get('h')).toBe('-rw-r--r-- 2 5');
  }, 60_000);
});

describe('FUSE_ATTR_TABLE=off', () => {
  it('every lookup after a listing reaches the JS handlers', async () => {
    const off = await startMount({ config: { DEBUG: 5, FUSE_ATTR_TABLE: 'off' }, args: ['-o', 'attr_timeout=0,entry_timeout=0,negative_timeout=0'] });
    try {
      const d = off.path('many');
      await fsp.mkdir(d);
      for (let i = 0; i < 50; i++) await fsp.writeFile(`${d}/f${i}`, 'x');
      const from = off.currentLogText().length;
      expect((await runOk('ls', ['-l', d])).stdout.trim().split('\n').length).toBe(51);
      const getattrs = off.currentLogText().slice(from).split('\n').filter((l) => l.includes('fuse getattr /many/')).length;
      expect(getattrs).toBeGreaterThanOrEqual(50);
    } finally {
      await off.stop();
    }
  }, 60_000);
});
