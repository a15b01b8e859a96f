// Several writers at once through a real mount (issue 3, item 7): concurrent
// dd processes, two storing the same blocks, one with unaligned small writes.

import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runOk, sha256File, spawnTracked, startMount, tempDir, type LessfsMount, stopThenCleanup } from '../support/mount.ts';

const MIB = 1024 * 1024;

let m: LessfsMount;

beforeAll(async () => {
  m = await startMount();
}, 60_000);

afterAll(() => stopThenCleanup(m), 60_000);

describe('several writers at once', () => {
  it('4 dd processes (two of them writing the same content, one with unaligned 1000-byte writes) all read back intact', async () => {
    const src = tempDir();
    const sizes = [16 * MIB, 16 * MIB, 12 * MIB + 4321, 3 * MIB + 999];
    const contents = [randomBytes(sizes[0]), undefined, randomBytes(sizes[2]), randomBytes(sizes[3])];
    // Writers 0 and 1 store the same blocks at the same time: dedup under concurrency.
    const sources = [0, 0, 2, 3].map((k) => join(src, `s${k}`));
    for (const k of [0, 2, 3]) writeFileSync(join(src, `s${k}`), contents[k] as Buffer);
    const bs = ['1M', '128k', '64k', '1000'];
    const d = m.path('writers');
    await fsp.mkdir(d);

    const t0 = performance.now();
    const writers = sources.map((s, i) => spawnTracked('dd', [`if=${s}`, `of=${join(d, `w${i}`)}`, `bs=${bs[i]}`, 'status=none']));
    const results = await Promise.all(writers.map((w) => w.exited));
    console.log(`4 concurrent writers: ${(performance.now() - t0).toFixed(0)} ms`);
    results.forEach((r, i) => expect(r, `writer ${i}: ${writers[i].stderr()}`).toEqual({ code: 0, signal: null }));

    const want = await Promise.all(sources.map((s) => sha256File(s)));
    const got = await Promise.all(sources.map((_, i) => sha256File(join(d, `w${i}`))));
    expect(got).toEqual(want);
    for (let i = 0; i < sources.length; i++) await runOk('cmp', [sources[i], join(d, `w${i}`)]);

    // Readers and writers at once: re-read w0 while w2 is rewritten in place.
    const rewrite = spawnTracked('dd', [`if=${sources[3]}`, `of=${join(d, 'w2')}`, 'bs=4k', 'conv=notrunc', 'status=none']);
    const [shaW0] = await Promise.all([sha256File(join(d, 'w0')), rewrite.exited]);
    expect(shaW0).toBe(want[0]);
    const expectedW2 = Buffer.from(contents[2] as Buffer);
    (contents[3] as Buffer).copy(expectedW2, 0);
    const w2 = await fsp.readFile(join(d, 'w2'));
    expect(w2.length).toBe(expectedW2.length);
    expect(w2.equals(expectedW2)).toBe(true);
  }, 120_000);
});
