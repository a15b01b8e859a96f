// A large directory through a real mount (issue 3, item 7): 10,000 small
// files in one directory, `ls -l`, then rm -rf. Timings are printed, not
// asserted: speed targets live in the benchmark (npm run bench).

import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runOk, startMount, type LessfsMount, stopThenCleanup } from '../support/mount.ts';

const FILES = 10_000;

let m: LessfsMount;

beforeAll(async () => {
  m = await startMount();
}, 60_000);

afterAll(() => stopThenCleanup(m), 60_000);

describe('a large directory', () => {
  it(`${FILES} small files in one directory, then ls -l lists them all`, async () => {
    const d = m.path('big');
    await fsp.mkdir(d);
    // One bash process, builtins only (no fork per file): what is timed is the filesystem.
    const create = await runOk('bash', ['-c', `cd '${d}' && for ((i = 0; i < ${FILES}; i++)); do echo "file $i" > "f$i"; done`], { timeoutMs: 120_000 });
    const ls = await runOk('ls', ['-l', d], { timeoutMs: 60_000 });
    const lsAgain = await runOk('ls', ['-l', d], { timeoutMs: 60_000 });
    console.log(`${FILES} creates: ${create.ms.toFixed(0)} ms (${(FILES / (create.ms / 1000)).toFixed(0)}/s); ls -l: ${ls.ms.toFixed(0)} ms, again ${lsAgain.ms.toFixed(0)} ms`);

    const lines = ls.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^total \d+/);
    const entries = lines.slice(1);
    expect(entries.length).toBe(FILES);
    const names = new Set(entries.map((l) => l.split(/\s+/).at(-1)));
    expect(names.size).toBe(FILES);
    for (const i of [0, 1, 4999, 9999]) expect(names.has(`f${i}`)).toBe(true);
    for (const l of entries) expect(l).toMatch(/^-rw-r--r-- 1 root root +\d+ /);
    // Each file's size and content (sizes from ls; contents of a sample).
    const sizeOf = new Map(entries.map((l) => { const f = l.split(/\s+/); return [f.at(-1), Number(f[4])]; }));
    for (let i = 0; i < FILES; i += 997) {
      expect(sizeOf.get(`f${i}`)).toBe(`file ${i}\n`.length);
      expect(await fsp.readFile(join(d, `f${i}`), 'utf8')).toBe(`file ${i}\n`);
    }
    expect((await fsp.readdir(d)).length).toBe(FILES);

    // Lookups by name in the big directory, and removal of all of it.
    const rmStart = performance.now();
    await runOk('rm', ['-rf', d], { timeoutMs: 120_000 });
    console.log(`rm -rf of ${FILES} files: ${(performance.now() - rmStart).toFixed(0)} ms`);
    expect((await fsp.readdir(m.mnt)).includes('big')).toBe(false);
  }, 150_000);
});
