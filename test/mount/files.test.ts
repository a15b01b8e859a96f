// File semantics through a real mount (issue 3, item 7): a tree of random and
// duplicate files copied in with cp -a and compared byte for byte; overwrites in
// the middle of files, truncation, sparse files; rename, unlink-while-open, hard
// links and symlinks. lessfs runs as a child process; this process touches the
// mount only asynchronously or through child processes.

import { randomBytes } from 'node:crypto';
import { chmodSync, linkSync, mkdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { duBytes, errnoOf, runOk, sha256File, startMount, tempDir, type LessfsMount, stopThenCleanup } from '../support/mount.ts';

const BLK = 131072;
const MIB = 1024 * 1024;

let m: LessfsMount;

beforeAll(async () => {
  m = await startMount();
}, 60_000);

afterAll(() => stopThenCleanup(m), 60_000);

interface Entry {
  rel: string;
  type: 'file' | 'dir' | 'symlink';
  mode: number;
  size: number;
  mtimeMs: number;
  ino: number;
  nlink: number;
  sha?: string;
  link?: string;
}

/** Walk a tree asynchronously (it may be on the mount), sorted by path. */
async function walk(root: string): Promise<Entry[]> {
  const out: Entry[] = [];
  const visit = async (dir: string): Promise<void> => {
    const names = (await fsp.readdir(dir)).sort();
    for (const name of names) {
      const p = join(dir, name);
      const st = await fsp.lstat(p);
      const base = { rel: relative(root, p), mode: st.mode & 0o7777, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, nlink: st.nlink };
      if (st.isDirectory()) {
        out.push({ ...base, type: 'dir', size: 0 });
        await visit(p);
      } else if (st.isSymbolicLink()) {
        out.push({ ...base, type: 'symlink', link: await fsp.readlink(p) });
      } else if (st.isFile()) {
        out.push({ ...base, type: 'file', sha: await sha256File(p) });
      } else {
        throw new Error(`unexpected file type at ${p}`);
      }
    }
  };
  await visit(root);
  return out;
}

/** A source tree on the local disk: random files, duplicates, edge sizes, links. */
function buildSourceTree(root: string): void {
  const shared = randomBytes(MIB + 7);
  const block = randomBytes(BLK);
  const files: Record<string, Buffer> = {
    'empty.bin': Buffer.alloc(0),
    'one.bin': randomBytes(1),
    'a/r4095': randomBytes(4095),
    'a/r131072': randomBytes(BLK),
    'a/r131073': randomBytes(BLK + 1),
    'a/shared': shared,
    'a/b/c/deep.bin': randomBytes(300_000),
    'dup/copy1': shared,
    'dup/copy2': shared,
    'dup/x/copy3': shared,
    // Duplicate blocks inside one file, then a tail.
    'blocks.bin': Buffer.concat([...Array.from({ length: 8 }, () => block), randomBytes(1234)]),
    // The same block again, shifted by one byte: must not dedup wrongly.
    'shifted.bin': Buffer.concat([Buffer.from([1]), block, block]),
    'zeros.bin': Buffer.alloc(MIB),
    'half-zero.bin': Buffer.concat([randomBytes(1000), Buffer.alloc(2 * BLK), randomBytes(1000)]),
  };
  for (let i = 0; i < 40; i++) files[`many/f${i}`] = randomBytes(Math.floor(Math.random() * 20_000));
  for (const [rel, data] of Object.entries(files)) {
    mkdirSync(join(root, rel, '..'), { recursive: true });
    writeFileSync(join(root, rel), data);
  }
  mkdirSync(join(root, 'emptydir'));
  linkSync(join(root, 'a/r4095'), join(root, 'many/hardlink'));
  symlinkSync('a/r4095', join(root, 'sym'));
  symlinkSync('does/not/exist', join(root, 'dangling'));
  chmodSync(join(root, 'one.bin'), 0o600);
  chmodSync(join(root, 'a/b/c/deep.bin'), 0o755);
  utimesSync(join(root, 'a/shared'), new Date('2001-02-03T04:05:06.789Z'), new Date('2002-03-04T05:06:07.891Z'));
}

describe('a tree copied in with cp -a', () => {
  it('reads back byte for byte, with modes and links, and lessfs_stats lists the files', async () => {
    const src = join(tempDir(), 'tree');
    mkdirSync(src);
    buildSourceTree(src);
    const dst = m.path('tree');

    const cp = await runOk('cp', ['-a', src, dst], { timeoutMs: 60_000 });
    console.log(`cp -a of the tree: ${cp.ms.toFixed(0)} ms`);
    await runOk('diff', ['-r', '--no-dereference', src, dst], { timeoutMs: 60_000 });

    const [a, b] = await Promise.all([walk(src), walk(dst)]);
    expect(b.map((e) => e.rel)).toEqual(a.map((e) => e.rel));
    for (let i = 0; i < a.length; i++) {
      const s = a[i];
      const d = b[i];
      expect({ rel: d.rel, type: d.type, mode: d.mode, size: d.size, sha: d.sha, link: d.link, nlink: d.nlink }).toEqual({
        rel: s.rel, type: s.type, mode: s.mode, size: s.size, sha: s.sha, link: s.link, nlink: s.nlink,
      });
    }
    const byRel = new Map(b.map((e) => [e.rel, e]));
    expect(byRel.get('many/hardlink')?.ino).toBe(byRel.get('a/r4095')?.ino);

    // Make the data durable so stored sizes are settled, then read the stats.
    await runOk('sync', [m.mnt]);
    const stats = await fsp.readFile(m.path('.lessfs', 'lessfs_stats'), 'utf8');
    const lines = stats.trim().split('\n');
    expect(lines[0]).toMatch(/INODE\s+SIZE\s+COMPRESSED_SIZE\s+RATIO\s+FILENAME/);
    const listed = new Map<string, { ino: number; size: number }>();
    for (const line of lines.slice(1)) {
      const f = line.trim().split(/\s+/);
      listed.set(f.slice(4).join(' '), { ino: Number(f[0]), size: Number(f[1]) });
    }
    for (const e of b.filter((x) => x.type === 'file')) {
      const name = `/tree/${e.rel}`;
      // A file with two names is listed once, under either name.
      const hit = listed.get(name) ?? (e.nlink > 1 ? [...listed.values()].find((v) => v.ino === e.ino) : undefined);
      expect(hit, `lessfs_stats lists ${name}`).toBeDefined();
      expect(hit?.size, `size of ${name} in lessfs_stats`).toBe(e.size);
      expect(hit?.ino).toBe(e.ino);
    }
  }, 90_000);
});

describe('times', () => {
  // cp -a, tar and rsync -a set times with utimensat(2); rsync decides what to
  // copy by size and mtime, so a backup target must keep them.
  it('cp -a and touch keep the modification time they set (FUSE carries milliseconds)', async () => {
    const src = tempDir();
    const f = join(src, 'f');
    writeFileSync(f, 'x');
    utimesSync(f, new Date('2010-01-01T00:00:00.000Z'), new Date('2002-03-04T05:06:07.891Z'));
    await runOk('cp', ['-a', f, m.path('times-cp')]);
    const st = await fsp.stat(m.path('times-cp'));
    expect(new Date(st.mtimeMs).toISOString(), 'mtime after cp -a').toBe('2002-03-04T05:06:07.891Z');
    expect(new Date(st.atimeMs).toISOString(), 'atime after cp -a').toBe('2010-01-01T00:00:00.000Z');

    const p = m.path('times-touch');
    await fsp.writeFile(p, 'y');
    await fsp.utimes(p, new Date('2011-01-01T00:00:00.000Z'), new Date('2003-01-01T00:00:00.000Z'));
    let t = await fsp.stat(p);
    expect(new Date(t.mtimeMs).toISOString(), 'mtime after utimes').toBe('2003-01-01T00:00:00.000Z');
    expect(new Date(t.atimeMs).toISOString(), 'atime after utimes').toBe('2011-01-01T00:00:00.000Z');
    // touch -m sets only mtime (utimensat with UTIME_OMIT for atime; libfuse2
    // passes it on because our fuse-native build sets flag_utime_omit_ok).
    await runOk('touch', ['-m', '-d', '2004-05-06T07:08:09.123Z', p]);
    t = await fsp.stat(p);
    expect(new Date(t.mtimeMs).toISOString(), 'mtime after touch -m').toBe('2004-05-06T07:08:09.123Z');
    expect(new Date(t.atimeMs).toISOString(), 'atime untouched by touch -m').toBe('2011-01-01T00:00:00.000Z');
    await runOk('touch', ['-a', '-d', '2005-01-01T00:00:00.000Z', p]);
    t = await fsp.stat(p);
    expect(new Date(t.atimeMs).toISOString(), 'atime after touch -a').toBe('2005-01-01T00:00:00.000Z');
    expect(new Date(t.mtimeMs).toISOString(), 'mtime untouched by touch -a').toBe('2004-05-06T07:08:09.123Z');
  }, 30_000);

  it('new files and directories belong to the user who created them', async () => {
    const d = m.path('owned');
    // The other user must be able to reach the mount (mkdtemp makes 0700 dirs).
    await fsp.chmod(m.dir, 0o755);
    await fsp.mkdir(d, { mode: 0o777 });
    await fsp.chmod(d, 0o777);
    await runOk('setpriv', ['--reuid=65534', '--regid=65533', '--clear-groups', 'touch', join(d, 'f')]);
    await runOk('setpriv', ['--reuid=65534', '--regid=65533', '--clear-groups', 'mkdir', join(d, 'sub')]);
    for (const name of ['f', 'sub']) {
      const st = await fsp.stat(join(d, name));
      expect({ uid: st.uid, gid: st.gid }, name).toEqual({ uid: 65534, gid: 65533 });
    }
  }, 30_000);
});

describe('overwrite, truncate, sparse', () => {
  it('unaligned overwrites in the middle of a file, through the page cache and through dd', async () => {
    const p = m.path('ow.bin');
    const expected = Buffer.from(randomBytes(MIB + 333));
    await fsp.writeFile(p, expected);

    const fh = await fsp.open(p, 'r+');
    try {
      const patches: Array<[number, number]> = [
        [BLK - 500, 1000], // across a block boundary
        [300_001, 7], // inside a block
        [500_000, 200_000], // over several blocks
        [MIB + 300, 33], // the tail, ending exactly at EOF
      ];
      for (const [off, len] of patches) {
        const data = randomBytes(len);
        const w = await fh.write(data, 0, len, off);
        expect(w.bytesWritten).toBe(len);
        data.copy(expected, off);
      }
      // Read through the same handle before close: the just-written data.
      const back = Buffer.alloc(1000);
      const r = await fh.read(back, 0, 1000, BLK - 500);
      expect(r.bytesRead).toBe(1000);
      expect(back.equals(expected.subarray(BLK - 500, BLK + 500))).toBe(true);
    } finally {
      await fh.close();
    }

    // Small unaligned writes from another process: dd bs=1000 seek=777 (offset 777000).
    const dir = tempDir();
    const patch = randomBytes(5000);
    writeFileSync(join(dir, 'patch'), patch);
    await runOk('dd', [`if=${join(dir, 'patch')}`, `of=${p}`, 'bs=1000', 'seek=777', 'count=5', 'conv=notrunc', 'status=none']);
    patch.copy(expected, 777_000);

    const st = await fsp.stat(p);
    expect(st.size).toBe(expected.length);
    const got = await fsp.readFile(p);
    expect(got.length).toBe(expected.length);
    expect(got.equals(expected)).toBe(true);
    // cmp from another process, reading through the kernel's cache as users do.
    writeFileSync(join(dir, 'expected'), expected);
    await runOk('cmp', [join(dir, 'expected'), p]);
  }, 60_000);

  it('truncate down and up (zeros past the old end), ftruncate, and writing past EOF leaves a zero gap', async () => {
    const p = m.path('tr.bin');
    const original = randomBytes(3 * BLK + 4321);
    await fsp.writeFile(p, original);

    await fsp.truncate(p, 200_001);
    expect((await fsp.stat(p)).size).toBe(200_001);
    expect((await fsp.readFile(p)).equals(original.subarray(0, 200_001))).toBe(true);

    await fsp.truncate(p, 700_000);
    let expected = Buffer.concat([original.subarray(0, 200_001), Buffer.alloc(700_000 - 200_001)]);
    expect((await fsp.stat(p)).size).toBe(700_000);
    expect((await fsp.readFile(p)).equals(expected)).toBe(true);

    const fh = await fsp.open(p, 'r+');
    try {
      await fh.truncate(BLK);
      expect((await fh.stat()).size).toBe(BLK);
      await fh.write(Buffer.from('abc'), 0, 3, 900_000);
    } finally {
      await fh.close();
    }
    expected = Buffer.concat([original.subarray(0, BLK), Buffer.alloc(900_000 - BLK), Buffer.from('abc')]);
    const got = await fsp.readFile(p);
    expect(got.length).toBe(900_003);
    expect(got.equals(expected)).toBe(true);

    await fsp.truncate(p, 0);
    expect((await fsp.stat(p)).size).toBe(0);
    expect((await fsp.readFile(p)).length).toBe(0);
  }, 60_000);

  it('a sparse file: data at 5 GiB, holes read as zeros, the store does not grow by the hole', async () => {
    const p = m.path('sparse.bin');
    const offset = 5 * 1024 * MIB + 12_345; // past 32 bits
    const data = randomBytes(4096);
    await runOk('sync', [m.mnt]);
    const before = await duBytes(m.dataPath);

    const fh = await fsp.open(p, 'w+');
    try {
      await fh.write(data, 0, data.length, offset);
      await fh.sync();
      expect((await fh.stat()).size).toBe(offset + data.length);
      const zeros = Buffer.alloc(MIB);
      for (const at of [0, 1024 * MIB, offset - MIB]) {
        const buf = Buffer.alloc(MIB, 0xaa);
        const r = await fh.read(buf, 0, MIB, at);
        expect(r.bytesRead, `read at ${at}`).toBe(MIB);
        expect(buf.equals(zeros), `hole at ${at} reads as zeros`).toBe(true);
      }
      const around = Buffer.alloc(10_000);
      const r = await fh.read(around, 0, around.length, offset - 5_000);
      expect(r.bytesRead).toBe(5_000 + data.length);
      expect(around.subarray(0, 5_000).equals(Buffer.alloc(5_000))).toBe(true);
      expect(around.subarray(5_000, 5_000 + data.length).equals(data)).toBe(true);
      // Reading at EOF returns nothing.
      expect((await fh.read(Buffer.alloc(10), 0, 10, offset + data.length)).bytesRead).toBe(0);
    } finally {
      await fh.close();
    }
    // A hole made with dd (seek past the end, nothing written) from another process.
    const p2 = m.path('sparse-dd.bin');
    await runOk('dd', ['if=/dev/null', `of=${p2}`, 'bs=1', 'count=0', 'seek=1G', 'status=none']);
    expect((await fsp.stat(p2)).size).toBe(1024 * MIB);
    // The last 64 KiB and the first 64 KiB, read by another process, are zeros.
    await runOk('bash', ['-c', `tail -c 65536 '${p2}' | cmp -n 65536 - /dev/zero`]);
    await runOk('cmp', ['-n', '65536', p2, '/dev/zero']);

    await runOk('sync', [m.mnt]);
    const grownBytes = (await duBytes(m.dataPath)) - before;
    console.log(`store growth for two sparse files (5 GiB and 1 GiB apparent): ${grownBytes} bytes`);
    expect(grownBytes).toBeLessThan(4 * MIB);
  }, 60_000);
});

describe('rename, unlink, links', () => {
  it('rename replaces a file, moves a directory, refuses a non-empty target directory', async () => {
    const d = m.path('ren');
    await fsp.mkdir(d);
    await fsp.writeFile(join(d, 'a'), 'AAAA');
    await fsp.writeFile(join(d, 'b'), 'BB');
    const inoA = (await fsp.stat(join(d, 'a'))).ino;
    await fsp.rename(join(d, 'a'), join(d, 'b'));
    expect(await fsp.readFile(join(d, 'b'), 'utf8')).toBe('AAAA');
    expect((await fsp.stat(join(d, 'b'))).ino).toBe(inoA);
    expect(await errnoOf(fsp.stat(join(d, 'a')))).toBe('ENOENT');
    expect((await fsp.readdir(d)).sort()).toEqual(['b']);

    // Move a directory with contents into another directory.
    await fsp.mkdir(join(d, 'src/sub/deeper'), { recursive: true });
    await fsp.writeFile(join(d, 'src/sub/deeper/f'), 'deep');
    await fsp.mkdir(join(d, 'dst'));
    await fsp.rename(join(d, 'src'), join(d, 'dst/moved'));
    expect(await fsp.readFile(join(d, 'dst/moved/sub/deeper/f'), 'utf8')).toBe('deep');
    expect(await errnoOf(fsp.stat(join(d, 'src')))).toBe('ENOENT');
    expect((await fsp.stat(join(d, 'dst'))).nlink).toBe(3); // ., its entry, moved/..

    // Over a non-empty directory: ENOTEMPTY; over an empty one: replaced.
    await fsp.mkdir(join(d, 'full'));
    await fsp.writeFile(join(d, 'full/x'), 'x');
    expect(await errnoOf(fsp.rename(join(d, 'dst/moved'), join(d, 'full')))).toBe('ENOTEMPTY');
    expect(await fsp.readFile(join(d, 'full/x'), 'utf8')).toBe('x');
    await fsp.mkdir(join(d, 'empty'));
    await fsp.rename(join(d, 'dst/moved'), join(d, 'empty'));
    expect(await fsp.readFile(join(d, 'empty/sub/deeper/f'), 'utf8')).toBe('deep');

    // Type mismatches, and a directory into its own subtree.
    expect(await errnoOf(fsp.rename(join(d, 'b'), join(d, 'full')))).toBe('EISDIR');
    expect(await errnoOf(fsp.rename(join(d, 'full'), join(d, 'b')))).toBe('ENOTDIR');
    expect(await errnoOf(fsp.rename(join(d, 'empty'), join(d, 'empty/sub/inside')))).toBe('EINVAL');
    // mv from another process across directories.
    await runOk('mv', [join(d, 'b'), join(d, 'full/b2')]);
    expect(await fsp.readFile(join(d, 'full/b2'), 'utf8')).toBe('AAAA');
    expect(await errnoOf(fsp.rmdir(join(d, 'full')))).toBe('ENOTEMPTY');
  }, 60_000);

  it('an unlinked file stays readable and writable through an open handle until close', async () => {
    const d = m.path('unl');
    await fsp.mkdir(d);
    const p = join(d, 'open-then-unlink');
    const data = randomBytes(3 * BLK + 17);
    await fsp.writeFile(p, data);
    const fh = await fsp.open(p, 'r+');
    try {
      await fsp.unlink(p);
      expect(await errnoOf(fsp.stat(p))).toBe('ENOENT');
      expect((await fsp.readdir(d)).filter((n) => n === 'open-then-unlink')).toEqual([]);
      const buf = Buffer.alloc(data.length);
      const r = await fh.read(buf, 0, buf.length, 0);
      expect(r.bytesRead).toBe(data.length);
      expect(buf.equals(data)).toBe(true);
      await fh.write(Buffer.from('still here'), 0, 10, 5);
      const again = Buffer.alloc(10);
      await fh.read(again, 0, 10, 5);
      expect(again.toString()).toBe('still here');
      // A new file of the same name is a different file.
      await fsp.writeFile(p, 'new');
      expect(await fsp.readFile(p, 'utf8')).toBe('new');
      expect((await fh.stat()).size).toBe(data.length);
    } finally {
      await fh.close();
    }
    expect(await fsp.readFile(p, 'utf8')).toBe('new');
  }, 60_000);

  it('hard links share the inode and count links; symlinks resolve and dangle', async () => {
    const d = m.path('lnk');
    await fsp.mkdir(d);
    const a = join(d, 'a');
    await fsp.writeFile(a, 'hello');
    await fsp.link(a, join(d, 'b'));
    await runOk('ln', [a, join(d, 'c')]);
    const [sa, sb, sc] = await Promise.all(['a', 'b', 'c'].map((n) => fsp.stat(join(d, n))));
    expect(sa.ino).toBe(sb.ino);
    expect(sa.ino).toBe(sc.ino);
    expect(sa.nlink).toBe(3);
    await fsp.appendFile(join(d, 'b'), ' world');
    expect(await fsp.readFile(join(d, 'b'), 'utf8')).toBe('hello world');
    await fsp.unlink(a);
    expect((await fsp.stat(join(d, 'b'))).nlink).toBe(2);
    await fsp.rename(join(d, 'c'), join(d, 'b')); // rename onto another link of itself: a no-op
    expect((await fsp.stat(join(d, 'b'))).nlink).toBe(2);
    expect(await errnoOf(fsp.link(join(d, 'b'), join(d, 'c')))).toBe('EEXIST');
    expect(await errnoOf(fsp.link(d, join(d, 'dirlink')))).toBe('EPERM');

    await fsp.symlink('b', join(d, 'sym'));
    await fsp.symlink('/nonexistent/target', join(d, 'dangling'));
    expect(await fsp.readlink(join(d, 'sym'))).toBe('b');
    expect((await fsp.lstat(join(d, 'sym'))).isSymbolicLink()).toBe(true);
    expect((await fsp.lstat(join(d, 'sym'))).size).toBe(1);
    expect((await fsp.stat(join(d, 'sym'))).ino).toBe(sb.ino);
    expect(await fsp.readFile(join(d, 'sym'), 'utf8')).toBe('hello world');
    expect(await fsp.readlink(join(d, 'dangling'))).toBe('/nonexistent/target');
    expect(await errnoOf(fsp.stat(join(d, 'dangling')))).toBe('ENOENT');
    expect(await errnoOf(fsp.readlink(join(d, 'b')))).toBe('EINVAL');
    const ls = await runOk('ls', ['-l', d]);
    expect(ls.stdout).toMatch(/sym -> b/);
    await fsp.unlink(join(d, 'sym'));
    expect(await fsp.readFile(join(d, 'b'), 'utf8')).toBe('hello world');
  }, 60_000);

  // The kernel keys its inode cache by FUSE node id; libfuse's high-level API
  // gives every name its own node id, so each name of a hard link caches its
  // own attributes (size, nlink) for attr_timeout (1 s on a master: see
  // src/cli/lessfs.ts and docs/posix.md).
  it('a write through one hard link is seen through another name once attr_timeout has passed', async () => {
    const d = m.path('lnk2');
    await fsp.mkdir(d);
    await fsp.writeFile(join(d, 'x'), 'hello');
    await fsp.link(join(d, 'x'), join(d, 'y'));
    expect((await fsp.stat(join(d, 'y'))).size).toBe(5);
    await fsp.appendFile(join(d, 'x'), ' world');
    await fsp.chmod(join(d, 'x'), 0o600);
    await new Promise((r) => setTimeout(r, 1_100));
    const y = await fsp.stat(join(d, 'y'));
    expect({ size: y.size, mode: y.mode & 0o7777 }).toEqual({ size: 11, mode: 0o600 });
    expect(await fsp.readFile(join(d, 'y'), 'utf8')).toBe('hello world');
    await fsp.unlink(join(d, 'x'));
    await new Promise((r) => setTimeout(r, 1_100));
    expect((await fsp.stat(join(d, 'y'))).nlink).toBe(1);
  }, 30_000);
});
