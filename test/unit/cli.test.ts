// The commands as users run them: exit codes 0/1/2 and every error message.

import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '../..');

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(name: string, args: string[], env: Record<string, string> = {}): Promise<Result> {
  try {
    const r = await run(process.execPath, [join(ROOT, 'bin', `${name}.js`), ...args], {
      env: { ...process.env, ...env },
      timeout: 30_000,
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('mklessfs and lessfsck', () => {
  let dir: string;
  let cfg: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'lessfs-cli-'));
    cfg = join(dir, 'lessfs.cfg');
    writeFileSync(cfg, `# test config\nBLOCKDATA_PATH = ${dir}/dta\nMETA_PATH=${dir}/mta\nBLKSIZE=65536\nCOMPRESSION=lz4\n`);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses missing directories without -f, naming the key', async () => {
    const r = await cli('mklessfs', ['-c', cfg]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`META_PATH=${dir}/mta does not exist`);
    expect(r.stderr).toContain('use -f');
  });

  it('formats with -f, refuses to format twice without -f, checks clean', async () => {
    const a = await cli('mklessfs', ['-f', '-c', cfg]);
    expect(a.code).toBe(0);
    expect(a.stdout).toContain('BLKSIZE=65536');
    const b = await cli('mklessfs', [cfg]);
    expect(b.code).toBe(1);
    expect(b.stderr).toContain('already holds a lessfs filesystem');
    const c = await cli('lessfsck', ['-f', '-t', '-c', cfg]);
    expect(c.code).toBe(0);
    expect(c.stdout).toContain('clean: no problems found');
  });

  it('refuses without -f a BLOCKDATA_PATH that holds another filesystem\'s data, and leaves that data alone', async () => {
    const other = join(dir, 'other.cfg');
    writeFileSync(other, `BLOCKDATA_PATH=${dir}/dta\nMETA_PATH=${dir}/other-mta\nBLKSIZE=65536\n`);
    mkdirSync(join(dir, 'other-mta'), { recursive: true });
    const data = join(dir, 'dta', 'blockdata.dta');
    writeFileSync(data, Buffer.alloc(8192, 7));
    const r = await cli('mklessfs', ['-c', other]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`BLOCKDATA_PATH=${dir}/dta already holds block data (blockdata.dta, 8192 bytes)`);
    expect(r.stderr).toContain('use -f');
    expect(readFileSync(data)).toEqual(Buffer.alloc(8192, 7));
    const again = await cli('mklessfs', ['-f', '-c', cfg]);
    expect(again.code).toBe(0);
  });

  it('refuses a store formatted with another block size', async () => {
    const r = await cli('lessfsck', ['-c', cfg], { BLKSIZE: '4096' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('formatted with BLKSIZE=65536 but the configuration says BLKSIZE=4096');
  });

  it('names a bad value, its key and what is allowed', async () => {
    const r = await cli('mklessfs', ['-f', '-c', cfg], { COMPRESSION: 'snappy' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/COMPRESSION=snappy .*none.*deflate.*lz4/);
    expect(r.stderr).toContain('from the environment');
  });

  it('usage errors exit 2 with the usage text', async () => {
    const a = await cli('mklessfs', ['--bogus']);
    expect(a.code).toBe(2);
    expect(a.stderr).toContain("Unknown option '--bogus'");
    expect(a.stderr).toContain('Usage: mklessfs');
    const b = await cli('lessfsck', []);
    expect(b.code).toBe(2);
    expect(b.stderr).toContain('no configuration file given');
    const c = await cli('mklessfs', ['-h']);
    expect(c.code).toBe(0);
    expect(c.stdout).toContain('Usage: mklessfs');
  });

  it('a missing config file is a clear runtime error', async () => {
    const r = await cli('lessfsck', ['-c', join(dir, 'nope.cfg')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`cannot read configuration file ${join(dir, 'nope.cfg')}: no such file`);
  });

  it('refuses a filesystem locked by a live process', async () => {
    writeFileSync(join(dir, 'mta', 'lessfs.lock'), `${process.pid} lessfs mount\n`);
    try {
      const r = await cli('lessfsck', ['-c', cfg]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`in use by process ${process.pid}`);
    } finally {
      rmSync(join(dir, 'mta', 'lessfs.lock'));
    }
  });
});

describe('lessfs as a daemon', () => {
  let dir: string;
  let cfg: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'lessfs-cli-daemon-'));
    cfg = join(dir, 'lessfs.cfg');
    for (const d of ['mta', 'dta', 'mnt']) mkdirSync(join(dir, d));
    // Never formatted: the child's mount fails before it touches FUSE.
    writeFileSync(cfg, `BLOCKDATA_PATH=${dir}/dta\nMETA_PATH=${dir}/mta\nBLKSIZE=65536\n`);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("a failed mount prints this start's log lines only, not older ones in the log", async () => {
    const stale = '2020-01-01T00:00:00.000Z lessfs[1] a line an older attempt left in the log';
    const defaultLog = join(dir, 'mta', 'lessfs.log');
    const ownLog = join(dir, 'own.log');
    const refusal = `lessfs: ${dir}/mta holds no lessfs filesystem: run mklessfs first`;
    for (const [log, extra] of [[defaultLog, []], [ownLog, ['--log', ownLog]]] as const) {
      writeFileSync(log, `${stale}\n`.repeat(3));
      const first = await cli('lessfs', [cfg, join(dir, 'mnt'), ...extra]);
      expect(first.code).toBe(1);
      expect(first.stdout).toBe('');
      expect(first.stderr).toBe(`lessfs: mount failed (exit 1); its lines in ${log}:\n${refusal}\n`);
      // A second failure shows its own line once, not the first attempt's too.
      const second = await cli('lessfs', [cfg, join(dir, 'mnt'), ...extra]);
      expect(second.stderr).toBe(first.stderr);
      expect(readFileSync(log, 'utf8')).toBe(`${stale}\n`.repeat(3) + `${refusal}\n`.repeat(2));
    }
  });
});
