// Persistence across unmount and remount through the real `lessfs` command
// (issue 3, item 7): everything written (fsynced or not) before a clean
// unmount is there after the remount, and lessfsck finds the store clean.

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanupMounts, cli, createStore, errnoOf, isMounted, type LessfsMount, ROOT, runOk, spawnTracked, startMount, tempDir } from '../support/mount.ts';

const MIB = 1024 * 1024;

afterEach(cleanupMounts, 60_000);

describe('unmount and remount', () => {
  it('keeps data, directories, links, modes and sizes; unmount by SIGTERM and by fusermount -u', async () => {
    const m = await startMount({ config: { COMPRESSION: 'lz4', COMMIT_INTERVAL: 60 } });
    const big = randomBytes(5 * MIB + 77);
    const text = 'persist me\n'.repeat(1000); // compressible
    await fsp.mkdir(m.path('d/e'), { recursive: true });
    await fsp.writeFile(m.path('d/big'), big);
    await fsp.writeFile(m.path('d/e/text'), text);
    await fsp.writeFile(m.path('d/dup'), big); // all blocks duplicates of d/big
    await fsp.writeFile(m.path('empty'), '');
    // chmod before link: attributes of one name are cached apart from the other's (see files.test.ts).
    await fsp.chmod(m.path('d/e/text'), 0o640);
    await fsp.link(m.path('d/e/text'), m.path('d/text-link'));
    await fsp.symlink('e/text', m.path('d/sym'));
    await fsp.truncate(m.path('d/big'), 3 * MIB + 5); // then shorter
    await fsp.writeFile(m.path('gone'), 'x');
    await fsp.unlink(m.path('gone'));
    await fsp.mkdir(m.path('rmdir-me'));
    await fsp.rmdir(m.path('rmdir-me'));
    // Nothing fsynced: a clean unmount must commit it (COMMIT_INTERVAL is 60 s).
    const inoText = (await fsp.stat(m.path('d/e/text'))).ino;

    const check = async (round: string): Promise<void> => {
      expect((await fsp.readdir(m.mnt)).sort(), round).toEqual(['.lessfs', 'd', 'empty']);
      expect((await fsp.readdir(m.path('d'))).sort(), round).toEqual(['big', 'dup', 'e', 'sym', 'text-link']);
      expect((await fsp.readFile(m.path('d/big'))).equals(big.subarray(0, 3 * MIB + 5)), round).toBe(true);
      expect((await fsp.readFile(m.path('d/dup'))).equals(big), round).toBe(true);
      expect(await fsp.readFile(m.path('d/e/text'), 'utf8'), round).toBe(text);
      expect(await fsp.readFile(m.path('d/sym'), 'utf8'), round).toBe(text);
      expect(await fsp.readlink(m.path('d/sym')), round).toBe('e/text');
      const st = await fsp.stat(m.path('d/text-link'));
      expect({ ino: st.ino, nlink: st.nlink, mode: st.mode & 0o7777 }, round).toEqual({ ino: inoText, nlink: 2, mode: 0o640 });
      expect((await fsp.stat(m.path('empty'))).size, round).toBe(0);
      expect(await errnoOf(fsp.stat(m.path('gone'))), round).toBe('ENOENT');
      expect(await errnoOf(fsp.stat(m.path('rmdir-me'))), round).toBe('ENOENT');
    };
    await check('before unmount');

    await m.stop();
    expect(m.currentLogText()).toMatch(/closed cleanly/);
    await m.restart();
    expect(m.currentLogText()).not.toMatch(/recovered/);
    await check('after SIGTERM and remount');

    // More writes, then unmount the way a user does: fusermount -u.
    await fsp.appendFile(m.path('d/e/text'), 'more\n');
    await fsp.writeFile(m.path('after'), 'after remount');
    await runOk('fusermount', ['-u', m.mnt], { timeoutMs: 20_000 });
    expect(await m.waitExit()).toEqual({ code: 0, signal: null });
    expect(isMounted(m.mnt)).toBe(false);
    expect(m.currentLogText()).toMatch(/unmounted externally/);
    await m.restart();
    expect(await fsp.readFile(m.path('d/e/text'), 'utf8')).toBe(`${text}more\n`);
    expect(await fsp.readFile(m.path('after'), 'utf8')).toBe('after remount');
    await m.stop();

    const fsck = await cli('lessfsck', ['-f', '-t', '-c', m.cfgPath], { timeoutMs: 60_000 });
    expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);
    expect(fsck.stdout).toContain('clean');
  }, 120_000);

  it('rm of a file of more than 65,536 blocks (BLKSIZE 4096): released in steps in the background; the mount answers meanwhile; unmount waits; lessfsck clean', async () => {
    const m = await startMount({ config: { BLKSIZE: 4096, DEBUG: 2 } });
    const piece = randomBytes(MIB);
    const blocks = 80_000; // > 65,536 block map entries, 256 unique blocks
    const fh = await fsp.open(m.path('big'), 'w');
    for (let at = 0; at < blocks * 4096; at += MIB) await fh.write(piece, 0, Math.min(MIB, blocks * 4096 - at), at);
    await fh.sync();
    await fh.close();
    await fsp.writeFile(m.path('keep'), piece);
    await fsp.unlink(m.path('big'));
    // The name is gone at once and the mount answers other requests.
    expect(await errnoOf(fsp.stat(m.path('big')))).toBe('ENOENT');
    expect((await fsp.readFile(m.path('keep'))).equals(piece)).toBe(true);
    await m.stop();
    expect(m.currentLogText()).toMatch(/released the last \d+ blocks of deleted inode/);
    const fsck = await cli('lessfsck', ['-f', '-t', '-c', m.cfgPath], { timeoutMs: 120_000 });
    expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);
    await m.restart();
    expect((await fsp.readdir(m.mnt)).sort()).toEqual(['.lessfs', 'keep']);
    expect((await fsp.readFile(m.path('keep'))).equals(piece)).toBe(true);
    await m.stop();
  }, 180_000);

  // Found by a bug hunt: writes are acknowledged before they are stored
  // (WriteBehind), and the kernel may still send writes after the unmount
  // began; those were answered as done and then failed against a closed
  // engine, so acknowledged bytes were missing after the remount.
  it('SIGTERM while writers run: every byte a writer was told was written is there after the remount', async () => {
    const m = await startMount({ config: { BLKSIZE: 4096, COMMIT_INTERVAL: 60 } });
    const dir = tempDir('lessfs-writers-');
    const script = join(dir, 'writer.cjs');
    await fsp.writeFile(
      script,
      `const fs = require('node:fs');
const [file, side] = process.argv.slice(2);
const fd = fs.openSync(file, 'w');
let acked = 0;
for (let i = 0; ; i++) {
  try { acked += fs.writeSync(fd, Buffer.from(String(i).padStart(8, '0').repeat(512))); }
  catch (e) { break; }
  fs.writeFileSync(side, String(acked));
}
`,
    );
    const writers = [0, 1, 2].map((k) => spawnTracked(process.execPath, [script, m.path(`f${k}`), join(dir, `acked${k}`)]));
    const deadline = performance.now() + 20_000;
    while (performance.now() < deadline) {
      const sizes = await Promise.all([0, 1, 2].map((k) => fsp.readFile(join(dir, `acked${k}`), 'utf8').then(Number, () => 0)));
      if (sizes.every((n) => n >= 4 * MIB)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    await m.stop();
    for (const w of writers) await w.exited;
    await m.restart();
    for (const k of [0, 1, 2]) {
      const acked = Number(await fsp.readFile(join(dir, `acked${k}`), 'utf8'));
      expect(acked, `writer ${k}`).toBeGreaterThanOrEqual(4 * MIB);
      const data = await fsp.readFile(m.path(`f${k}`));
      expect(data.length, `f${k}: acknowledged ${acked} bytes`).toBeGreaterThanOrEqual(acked);
      const chunk = (i: number): Buffer => Buffer.from(String(i).padStart(8, '0').repeat(512));
      for (let i = 0; i * 4096 < acked; i += 97) expect(data.subarray(i * 4096, (i + 1) * 4096).equals(chunk(i)), `f${k} chunk ${i}`).toBe(true);
    }
    await m.stop();
  }, 120_000);
});

/** A store with data and metadata on one new 48 MiB tmpfs, mounted, for body. */
async function onSmallTmpfs(body: (m: LessfsMount) => Promise<void>): Promise<void> {
  const store = await createStore({ format: false, config: { BLKSIZE: 4096 } });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=48m', 'tmpfs', store.dataPath]);
  try {
    const metaPath = join(store.dataPath, 'meta');
    await fsp.mkdir(metaPath);
    store.writeConfig({ META_PATH: metaPath });
    await runOk(process.execPath, [join(ROOT, 'bin', 'mklessfs.js'), '-f', '-c', store.cfgPath], { timeoutMs: 30_000 });
    await body(await startMount({ store }));
  } finally {
    // Lazily: a lessfs still running holds files in it (afterEach ends it, then removes the dir).
    execFileSync('umount', ['-l', store.dataPath]);
  }
}

describe('a disk filled by the filesystem itself (data and metadata on one 48 MiB tmpfs)', () => {
  // Needs root for the tmpfs; CI runs as root.
  it.skipIf(process.getuid?.() !== 0)('copies fail with ENOSPC; after rm, writes and fsync work at once, unmount is clean, nothing is lost', async () => {
    await onSmallTmpfs(async (m) => {
      const keep = randomBytes(8 * MIB);
      const writeSynced = async (name: string, bytes: Uint8Array): Promise<void> => {
        const fh = await fsp.open(m.path(name), 'w');
        try {
          await fh.write(bytes);
          await fh.sync();
        } finally {
          await fh.close();
        }
      };
      await writeSynced('keep', keep);
      // Fill the disk: 64 KiB at a time until the filesystem says ENOSPC (at a write, or at the fsync).
      const fill = await fsp.open(m.path('fill'), 'w');
      let failure = 'OK';
      for (let i = 0; i < 1000 && failure === 'OK'; i++) failure = await errnoOf(fill.write(randomBytes(64 * 1024)).then(() => (i % 16 === 15 ? fill.sync() : undefined)));
      await fill.close().catch(() => undefined);
      expect(failure).toBe('ENOSPC');
      await fsp.unlink(m.path('fill'));
      // No wait for a commit interval: the writes wait for the delete's commit.
      await fsp.writeFile(m.path('after'), 'written right after the rm\n');
      const f3 = randomBytes(3 * MIB);
      await writeSynced('f3', f3);
      await m.stop();
      expect(m.currentLogText()).toMatch(/closed cleanly/);
      expect(m.currentLogText()).toMatch(/released the \d+ bytes set aside/);
      await m.restart();
      expect((await fsp.readdir(m.mnt)).sort()).toEqual(['.lessfs', 'after', 'f3', 'keep']);
      expect((await fsp.readFile(m.path('keep'))).equals(keep)).toBe(true);
      expect((await fsp.readFile(m.path('f3'))).equals(f3)).toBe(true);
      expect(await fsp.readFile(m.path('after'), 'utf8')).toBe('written right after the rm\n');
      await m.stop();
      const fsck = await cli('lessfsck', ['-c', m.cfgPath]);
      expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);
    });
  }, 120_000);

  it.skipIf(process.getuid?.() !== 0)('4 writers fill the disk at once, retrying short writes as cp does: every byte an fsync covered is there (a failed store stays reported until an fsync)', async () => {
    await onSmallTmpfs(async (m) => {
      /**
       * Writes 64 KiB chunks as cp does (a short write is retried with the
       * rest) until an error; fsync every 256 KiB. What the last good fsync covered.
       */
      const writer = async (name: string): Promise<{ synced: Buffer; failed: string }> => {
        const fh = await fsp.open(m.path(name), 'w');
        const chunks: Buffer[] = [];
        let synced = Buffer.alloc(0);
        let failed = '';
        try {
          for (let i = 0; i < 400; i++) {
            const chunk = randomBytes(64 * 1024);
            for (let at = 0; at < chunk.length; ) {
              const { bytesWritten } = await fh.write(chunk, at);
              chunks.push(chunk.subarray(at, at + bytesWritten));
              at += bytesWritten;
            }
            if (i % 4 === 3) {
              await fh.sync();
              synced = Buffer.concat(chunks);
            }
          }
        } catch (err) {
          failed = (err as { code?: string }).code ?? String(err);
        }
        await fh.close().catch(() => undefined);
        return { synced, failed };
      };
      const results = await Promise.all(['w1', 'w2', 'w3', 'w4'].map(writer));
      for (const [i, r] of results.entries()) {
        expect(r.failed, `w${i + 1}`).toBe('ENOSPC');
        const now = await fsp.readFile(m.path(`w${i + 1}`));
        expect(now.length, `w${i + 1}`).toBeGreaterThanOrEqual(r.synced.length);
        expect(now.subarray(0, r.synced.length).equals(r.synced), `w${i + 1}: what fsync covered`).toBe(true);
      }
      // Deleting one of them makes room at once.
      await fsp.unlink(m.path('w1'));
      const fresh = randomBytes(2 * MIB);
      const fh = await fsp.open(m.path('fresh'), 'w');
      await fh.write(fresh);
      await fh.sync();
      await fh.close();
      await m.stop();
      expect(m.currentLogText()).toMatch(/closed cleanly/);
      await m.restart();
      expect((await fsp.readFile(m.path('fresh'))).equals(fresh)).toBe(true);
      for (const [i, r] of results.entries()) {
        if (i === 0) continue;
        expect((await fsp.readFile(m.path(`w${i + 1}`))).subarray(0, r.synced.length).equals(r.synced), `w${i + 1} after remount`).toBe(true);
      }
      await m.stop();
    });
  }, 180_000);
});

