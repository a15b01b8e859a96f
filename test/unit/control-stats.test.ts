// /.lessfs/lessfs_stats walks every file of the filesystem. On a real mount
// (240,000 files) one read of it held every other request for 18 s: it is
// generated in slices with a pause between them, and requests during a
// generation share it.

import { describe, expect, it } from 'vitest';
import { ControlFiles, REPLICATION_OFF } from '../../src/core/control.ts';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { SimHarness } from '../support/harness.ts';

const STATS = '/.lessfs/lessfs_stats';

describe('lessfs_stats of many files', () => {
  it('is generated in slices (pausing every few ms of work), leaves out what is removed meanwhile, and lists a hard-linked file once', async () => {
    const h = new SimHarness('control-stats');
    await h.format();
    const engine = await h.open();
    const fs = new PathFs(engine);
    const FILES = 4000;
    for (let d = 0; d < 4; d++) fs.mkdir(`/d${d}`);
    for (let i = 0; i < FILES; i++) fs.create(`/d${i % 4}/f${i}`);
    await h.run(fs.write('/d0/f0', 0, new Uint8Array(5000).fill(3)));
    fs.link('/d0/f0', '/d1/link');

    // A clock that moves 1 ms per look: the slices are counted in calls.
    let now = 0;
    let pauses = 0;
    let generations = 0;
    const control = new ControlFiles(engine, REPLICATION_OFF, {
      contentTtlMs: 2000,
      nowMs: () => now++,
      pause: async () => {
        pauses++;
        // Another request while it is generated: a file and a directory go away.
        if (pauses === 1) {
          fs.unlink('/d3/f3999');
          for (let i = 3; i < FILES; i += 4) if (i !== 3999) fs.unlink(`/d3/f${i}`);
          fs.rmdir('/d3');
        }
      },
    });
    const readdir = engine.readdir.bind(engine);
    engine.readdir = (ino: number) => {
      if (ino === 1) generations++;
      return readdir(ino);
    };
    const [a, b] = await Promise.all([control.getattr(STATS), control.getattr(STATS)]);
    expect(generations).toBe(1);
    expect(a.sizeBytes).toBe(b.sizeBytes);
    // Not one long run: a pause at least every SLICE_MS (10 looks at the clock here) of 64 entries.
    expect(pauses).toBeGreaterThan(FILES / (64 * 12));
    const text = new TextDecoder().decode(await control.open(STATS, false));
    expect(text.length).toBe(a.sizeBytes);
    const lines = text.replace(/\n$/, '').split('\n');
    expect(lines[0]).toMatch(/^ +INODE +SIZE +COMPRESSED_SIZE +RATIO FILENAME$/);
    const names = lines.slice(1).map((l) => l.trim().split(/ +/).at(-1));
    // Either /d3's files were listed before it went, or not; those of /d0../d2 all are.
    for (let i = 1; i < FILES; i++) if (i % 4 !== 3) expect(names).toContain(`/d${i % 4}/f${i}`);
    const f0 = lines.filter((l) => l.endsWith('/d0/f0') || l.endsWith('/d1/link'));
    expect(f0).toHaveLength(1);
    expect(f0[0]).toMatch(/^ +\d+ +5000 +\d+ +[\d.]+ \/d[01]\//);
    await h.run(engine.close());
  });
});
