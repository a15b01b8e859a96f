// The README's quick start: one command formats two filesystems from the
// embedded default config under a project-local directory, mounts a slave and
// a master with live replication on loopback, and shows a file written on the
// master appearing on the slave; `lessfs-demo down` unmounts both.

import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'lessfs-quickstart-'));
const DEMO = join(ROOT, 'bin/lessfs-demo.js');
const PORT_TRIES_MAX = 50;

function mounted(path: string): boolean {
  return readFileSync('/proc/mounts', 'utf8').split('\n').some((line) => line.split(' ')[1] === path);
}

async function portFree(port: number): Promise<boolean> {
  const server = createServer();
  const ok = await new Promise<boolean>((res) => {
    server.once('error', () => res(false));
    server.listen(port, '127.0.0.1', () => res(true));
  });
  if (ok) await new Promise<void>((res) => server.close(() => res()));
  return ok;
}

/** Three consecutive free loopback ports (the demo's management, replication, management): not the default 17100, which a running demo may hold. */
async function freePortBase(): Promise<number> {
  for (let i = 0; i < PORT_TRIES_MAX; i++) {
    const base = 20_000 + Math.floor(Math.random() * 40_000);
    if ((await portFree(base)) && (await portFree(base + 1)) && (await portFree(base + 2))) return base;
  }
  throw new Error(`no three consecutive free ports found in ${PORT_TRIES_MAX} tries`);
}

afterAll(async () => {
  // Unmount even when the test failed; never leave a mount behind, never rm through one.
  await run(process.execPath, [DEMO, 'down', '--dir', dir], { timeout: 60_000 }).catch(() => undefined);
  for (const role of ['master', 'slave']) {
    if (mounted(join(dir, role))) await run('fusermount', ['-uz', join(dir, role)], { timeout: 10_000 }).catch(() => undefined);
  }
  const left = ['master', 'slave'].filter((role) => mounted(join(dir, role)));
  if (left.length > 0) throw new Error(`still mounted under ${dir}: ${left.join(', ')}; not removing it`);
  rmSync(dir, { recursive: true, force: true });
}, 90_000);

describe('quick start', () => {
  it('quickstart.sh brings up a master and a slave; a file written on the master appears on the slave; demo down unmounts both', async () => {
    const portBase = await freePortBase();
    const master = join(dir, 'master');
    const slave = join(dir, 'slave');
    const up = await run('bash', [join(ROOT, 'quickstart.sh'), '--dir', dir, '--port-base', String(portBase)], { timeout: 120_000 });
    expect(up.stdout.match(/formatted/g)).toHaveLength(2);
    // The slave is mounted first, then the master that connects to it.
    const slaveAt = up.stdout.indexOf(`mounted ${slave} `);
    const masterAt = up.stdout.indexOf(`mounted ${master} `);
    expect(slaveAt, up.stdout).toBeGreaterThanOrEqual(0);
    expect(masterAt, up.stdout).toBeGreaterThan(slaveAt);
    expect(up.stdout).toContain(`lessfs is mounted at ${master} (master) and ${slave} (read-only slave)`);
    expect(up.stdout).toContain(`replicating live over 127.0.0.1:${portBase + 1}`);
    expect(up.stdout).toMatch(/hello\.txt appeared on the slave after [\d.]+ s, byte for byte the same/);
    expect(up.stdout).toContain(`cat ${slave}/hello.txt`);
    expect(up.stdout).toContain(`cat ${master}/.lessfs/replication/status`);

    // Read through the mounts from child processes, never from this one synchronously.
    const onMaster = await run('cat', [join(master, 'hello.txt')], { timeout: 10_000 });
    const onSlave = await run('cat', [join(slave, 'hello.txt')], { timeout: 10_000 });
    expect(onMaster.stdout).toMatch(/^hello from lessfs-ts/);
    expect(onSlave.stdout).toBe(onMaster.stdout);
    const masterStatus = await run('cat', [join(master, '.lessfs', 'replication', 'status')], { timeout: 10_000 });
    expect(masterStatus.stdout).toContain('role: master');
    expect(masterStatus.stdout).toContain(`mode: live to 127.0.0.1:${portBase + 1}`);
    expect(masterStatus.stdout).toContain('connection: streaming');
    const slaveStatus = await run('cat', [join(slave, '.lessfs', 'replication', 'status')], { timeout: 10_000 });
    expect(slaveStatus.stdout).toContain('role: slave');
    expect(slaveStatus.stdout).toMatch(/connection: connected from 127\.0\.0\.1:\d+/);
    const stats = await run('cat', [join(master, '.lessfs', 'lessfs_stats')], { timeout: 10_000 });
    expect(stats.stdout).toContain('/hello.txt');
    // The slave is read-only.
    const write = await run('sh', ['-c', `echo x > '${join(slave, 'new.txt')}'`], { timeout: 10_000 }).catch((e: { stderr: string }) => e);
    expect('stderr' in write ? write.stderr : '').toMatch(/Operation not permitted/);

    const status = await run(process.execPath, [DEMO, 'status', '--dir', dir], { timeout: 30_000 });
    expect(status.stdout).toContain(`${master}: mounted (fuse.lessfs), master`);
    expect(status.stdout).toContain(`${slave}: mounted (fuse.lessfs), slave`);

    // A second `up` finds both mounted, keeps the data and replicates a new hello.txt.
    const again = await run('bash', [join(ROOT, 'quickstart.sh'), '--dir', dir], { timeout: 60_000 });
    expect(again.stdout).toContain(`${slave} is already mounted (slave)`);
    expect(again.stdout).toContain(`${master} is already mounted (master)`);
    expect(again.stdout).not.toContain('formatted');
    expect(again.stdout).toMatch(/hello\.txt appeared on the slave/);
    const second = await run('cat', [join(slave, 'hello.txt')], { timeout: 10_000 });
    expect(second.stdout).toMatch(/^hello from lessfs-ts/);
    expect(second.stdout).not.toBe(onSlave.stdout);

    const down = await run(process.execPath, [DEMO, 'down', '--dir', dir], { timeout: 60_000 });
    expect(down.stdout).toContain(`unmounted ${master} (master)`);
    expect(down.stdout).toContain(`unmounted ${slave} (slave)`);
    expect(down.stdout.indexOf('(master)')).toBeLessThan(down.stdout.indexOf('(slave)'));
    expect(mounted(master)).toBe(false);
    expect(mounted(slave)).toBe(false);
    const downAgain = await run(process.execPath, [DEMO, 'down', '--dir', dir], { timeout: 30_000 });
    expect(downAgain.stdout).toContain(`${master} is not mounted`);
    for (const role of ['master', 'slave']) {
      const fsck = await run(process.execPath, [join(ROOT, 'bin/lessfsck.js'), '-f', '-t', '-c', join(dir, `${role}.cfg`)], { timeout: 30_000 });
      expect(fsck.stdout, `${role}: ${fsck.stdout}`).toContain('clean: no problems found');
    }
  }, 180_000);
});
