// The README's quick start: one command formats a filesystem from the embedded
// default config under a project-local directory and mounts it.

import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'lessfs-quickstart-'));

afterAll(async () => {
  // Unmount even when the test failed; never leave a mount behind.
  await run(process.execPath, [join(ROOT, 'bin/lessfs-demo.js'), 'down', '--dir', dir], { timeout: 30_000 }).catch(() =>
    run('fusermount', ['-uz', join(dir, 'master')]).catch(() => undefined),
  );
  rmSync(dir, { recursive: true, force: true });
});

describe('quick start', () => {
  it('quickstart.sh formats and mounts; a file written there reads back; demo down unmounts', async () => {
    const up = await run('bash', [join(ROOT, 'quickstart.sh'), '--dir', dir], { timeout: 120_000 });
    expect(up.stdout).toContain('formatted');
    expect(up.stdout).toContain(`lessfs is mounted at ${join(dir, 'master')}`);
    // Read through the mount from a child process, never from this one synchronously.
    const cat = await run('cat', [join(dir, 'master', 'hello.txt')], { timeout: 10_000 });
    expect(cat.stdout).toMatch(/^hello from lessfs-ts/);
    const stats = await run('cat', [join(dir, 'master', '.lessfs', 'lessfs_stats')], { timeout: 10_000 });
    expect(stats.stdout).toContain('/hello.txt');
    const status = await run(process.execPath, [join(ROOT, 'bin/lessfs-demo.js'), 'status', '--dir', dir]);
    expect(status.stdout).toContain('mounted (fuse.lessfs)');
    // A second `up` finds it mounted and keeps the data.
    const again = await run('bash', [join(ROOT, 'quickstart.sh'), '--dir', dir], { timeout: 60_000 });
    expect(again.stdout).toContain('already mounted');
    const down = await run(process.execPath, [join(ROOT, 'bin/lessfs-demo.js'), 'down', '--dir', dir], { timeout: 30_000 });
    expect(down.stdout).toContain('unmounted');
    const fsck = await run(process.execPath, [join(ROOT, 'bin/lessfsck.js'), '-f', '-t', '-c', join(dir, 'master.cfg')], { timeout: 30_000 });
    expect(fsck.stdout).toContain('clean: no problems found');
  });
});
