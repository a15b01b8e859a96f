// Core section: the engine's write path on real LMDB and node:fs, without FUSE,
// against baselines measured in the same run on the same bytes.
//
//   plain   writeSync of each block to a file in the same directory, fsync at
//           the end (dd conv=fsync)
//   sha256  createHash('sha256') of each block
//   unique  FsEngine.write of each block into a new file, then fsync
//   dup     the same bytes again into a second file of the same filesystem
//
// Every variant generates its blocks with the same BlockSource (a fresh Buffer
// copied from a random pool, block index stamped in), so generation cost is
// paid alike. Each repetition runs the variants back to back on a freshly
// formatted filesystem; ratios are taken within a repetition (paired) and the
// medians over repetitions are reported. Peak RSS is measured in a child
// process streaming a 4 GiB file.
//
// Warm-up: the VM's balloon reports free pages back to the host (virtio
// free page reporting), and the first touch of such a page is slow; a file
// written and deleted just before a round makes the round's page-cache pages
// recently freed ones, for every variant alike.

import { closeSync, fsyncSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { REPO_DIR, runScript } from './child.ts';
import type { RssChildArgs, RssChildResult } from './core-rss-child.ts';
import { checkBlocks, formatAndOpen, writeFileOf } from './engine-driver.ts';
import { BlockSource, GiB, KiB, MB, MiB, collectGarbage, mbPerS, median, warmPageCache } from './measure.ts';
import type { BenchContext, Figure, Section, SectionReport, Target } from './section.ts';

const BLOCK_BYTES = 128 * KiB;
const CACHE_SIZE_BYTES = 128 * MiB;
const RSS_HEADROOM_BYTES = 100 * MB;
const UNIQUE_VS_PLAIN_MIN = 0.5;
const DUP_VS_SHA256_MIN = 0.7;
const CHILD_TIMEOUT_MS = 15 * 60_000;

interface Round {
  plainMbS: number;
  sha256MbS: number;
  uniqueMbS: number;
  dupMbS: number;
  uniqueFsyncMs: number;
  dupFsyncMs: number;
}

function plainWrite(dir: string, source: BlockSource, bytes: number): number {
  const path = join(dir, 'plain');
  const blocks = bytes / source.blockBytes;
  const t0 = performance.now();
  const fd = openSync(path, 'w');
  try {
    // One scratch buffer, as the engine's ingest reuses its block buffers.
    const scratch = Buffer.allocUnsafeSlow(source.blockBytes);
    for (let i = 0; i < blocks; i++) writeSync(fd, source.blockInto(i, scratch));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const ms = performance.now() - t0;
  rmSync(path);
  return mbPerS(bytes, ms);
}

function sha256(source: BlockSource, bytes: number): number {
  const blocks = bytes / source.blockBytes;
  let xor = 0;
  const t0 = performance.now();
  const scratch = Buffer.allocUnsafeSlow(source.blockBytes);
  for (let i = 0; i < blocks; i++) xor ^= createHash('sha256').update(source.blockInto(i, scratch)).digest()[0];
  const ms = performance.now() - t0;
  if (xor < 0) throw new Error('unreachable: keeps the digests alive');
  return mbPerS(bytes, ms);
}

async function ingest(dir: string, source: BlockSource, bytes: number): Promise<{ unique: number; dup: number; uniqueFsyncMs: number; dupFsyncMs: number }> {
  const fsDir = join(dir, 'fs');
  mkdirSync(fsDir);
  try {
    const b = await formatAndOpen(fsDir, BLOCK_BYTES, CACHE_SIZE_BYTES);
    try {
      const blocks = bytes / BLOCK_BYTES;
      const before = (await b.engine.statfs()).uniqueBlocks;
      const u = await writeFileOf(b, '/unique', source, bytes);
      const afterUnique = (await b.engine.statfs()).uniqueBlocks;
      const d = await writeFileOf(b, '/dup', source, bytes);
      const afterDup = (await b.engine.statfs()).uniqueBlocks;
      // The figures mean nothing unless unique data was stored and duplicates were not.
      if (afterUnique - before !== blocks) throw new Error(`unique ingest stored ${afterUnique - before} blocks, expected ${blocks}`);
      if (afterDup !== afterUnique) throw new Error(`duplicate ingest stored ${afterDup - afterUnique} new blocks, expected 0`);
      await checkBlocks(b, '/unique', source, bytes);
      await checkBlocks(b, '/dup', source, bytes);
      return {
        unique: mbPerS(bytes, u.writeMs + u.fsyncMs),
        dup: mbPerS(bytes, d.writeMs + d.fsyncMs),
        uniqueFsyncMs: u.fsyncMs,
        dupFsyncMs: d.fsyncMs,
      };
    } finally {
      await b.engine.close();
    }
  } finally {
    rmSync(fsDir, { recursive: true, force: true });
  }
}

async function round(dir: string, source: BlockSource, bytes: number): Promise<Round> {
  collectGarbage();
  const plainMbS = plainWrite(dir, source, bytes);
  collectGarbage();
  const sha256MbS = sha256(source, bytes);
  collectGarbage();
  const i = await ingest(dir, source, bytes);
  return { plainMbS, sha256MbS, uniqueMbS: i.unique, dupMbS: i.dup, uniqueFsyncMs: i.uniqueFsyncMs, dupFsyncMs: i.dupFsyncMs };
}

async function rssRun(ctx: BenchContext, dir: string, streamBytes: number, sink: RssChildArgs['sink']): Promise<RssChildResult> {
  const fsDir = join(dir, 'rss');
  mkdirSync(fsDir);
  try {
    const args: RssChildArgs = { dir: fsDir, streamBytes, blockBytes: BLOCK_BYTES, cacheSizeBytes: CACHE_SIZE_BYTES, sampleIntervalMs: 50, sink };
    const out = await runScript(ctx, join(REPO_DIR, 'bench', 'core-rss-child.ts'), [JSON.stringify(args)], CHILD_TIMEOUT_MS);
    const line = out.split('\n').find((l) => l.startsWith('RESULT '));
    if (!line) throw new Error(`RSS child printed no RESULT line:\n${out}`);
    return JSON.parse(line.slice('RESULT '.length)) as RssChildResult;
  } finally {
    rmSync(fsDir, { recursive: true, force: true });
  }
}

function mib(ctx: BenchContext, name: string, fallback: number): number {
  const v = ctx.flag(name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!(Number.isInteger(n) && n > 0 && n <= 64 * 1024)) throw new Error(`--${name} wants a whole number of MiB in (0, 65536], got '${v}'`);
  return n * MiB;
}

async function run(ctx: BenchContext): Promise<SectionReport> {
  const ingestBytes = mib(ctx, 'core-mib', ctx.quick ? 64 * MiB : GiB);
  const streamBytes = mib(ctx, 'stream-mib', ctx.quick ? 256 * MiB : 4 * GiB);
  const warmBytes = mib(ctx, 'warm-mib', ctx.quick ? 256 * MiB : 4 * GiB);
  const rewarmBytes = ctx.flag('rewarm-mib') === '0' ? 0 : mib(ctx, 'rewarm-mib', ctx.quick ? 0 : 2 * GiB);
  const rssRuns = Number(ctx.flag('rss-runs') ?? (ctx.quick ? 1 : 2));
  if (!(Number.isInteger(rssRuns) && rssRuns >= 0 && rssRuns <= 10)) throw new Error(`--rss-runs wants 0..10, got ${rssRuns}`);
  const dir = ctx.tempDir('lessfs-bench-core-');
  const source = new BlockSource(BLOCK_BYTES);
  const sizeLabel = `${ingestBytes / MiB} MiB`;

  ctx.log(`core: warm-up: write and delete ${warmBytes / MiB} MiB in ${dir}`);
  warmPageCache(dir, warmBytes);
  ctx.log(`core: warm-up: one untimed round of every variant; ${rewarmBytes / MiB} MiB rewritten before each round`);
  await round(dir, source, Math.min(ingestBytes, 128 * MiB));

  const rounds: Round[] = [];
  for (let r = 0; r < ctx.repeats; r++) {
    if (rewarmBytes > 0) warmPageCache(dir, rewarmBytes);
    const x = await round(dir, source, ingestBytes);
    rounds.push(x);
    ctx.log(
      `core: round ${r + 1}/${ctx.repeats}: plain ${x.plainMbS.toFixed(0)}, sha256 ${x.sha256MbS.toFixed(0)}, ` +
        `unique ${x.uniqueMbS.toFixed(0)}, dup ${x.dupMbS.toFixed(0)} MB/s`,
    );
  }
  const col = (f: (x: Round) => number): number[] => rounds.map(f);
  const fig = (label: string, samples: number[], unit: string, note?: string): Figure => ({ label, value: median(samples), unit, samples, note });
  const uniqueVsPlain = col((x) => x.uniqueMbS / x.plainMbS);
  const dupVsSha = col((x) => x.dupMbS / x.sha256MbS);
  const figures: Figure[] = [
    fig(`plain file write, ${sizeLabel} (writeSync + fsync)`, col((x) => x.plainMbS), 'MB/s'),
    fig(`sha256 of the same blocks`, col((x) => x.sha256MbS), 'MB/s'),
    fig(`ingest ${sizeLabel} unique, 128 KiB blocks, + fsync`, col((x) => x.uniqueMbS), 'MB/s', `fsync median ${median(col((x) => x.uniqueFsyncMs)).toFixed(0)} ms`),
    fig(`ingest ${sizeLabel} duplicate, + fsync`, col((x) => x.dupMbS), 'MB/s', `fsync median ${median(col((x) => x.dupFsyncMs)).toFixed(0)} ms`),
    fig('unique ingest / plain write', uniqueVsPlain, '×', 'paired per round'),
    fig('duplicate ingest / sha256', dupVsSha, '×', 'paired per round'),
    fig('duplicate ingest / plain write', col((x) => x.dupMbS / x.plainMbS), '×', 'paired per round'),
  ];
  const targets: Target[] = [
    { label: 'unique ingest ≥ 0.5× plain file write', value: median(uniqueVsPlain), op: '>=', limit: UNIQUE_VS_PLAIN_MIN, unit: '×' },
    { label: 'duplicate ingest ≥ 0.7× sha256', value: median(dupVsSha), op: '>=', limit: DUP_VS_SHA256_MIN, unit: '×' },
  ];

  const rss: RssChildResult[] = [];
  for (let r = 0; r < rssRuns; r++) {
    ctx.log(`core: RSS run ${r + 1}/${rssRuns}: stream ${streamBytes / MiB} MiB in a child, CACHESIZE ${CACHE_SIZE_BYTES / MiB} MiB`);
    if (rewarmBytes > 0) warmPageCache(dir, streamBytes + GiB);
    const x = await rssRun(ctx, dir, streamBytes, 'engine');
    rss.push(x);
    ctx.log(`core: RSS run ${r + 1}: baseline ${(x.baselineRssBytes / MB).toFixed(0)} MB, peak ${(x.peakRssBytes / MB).toFixed(0)} MB, VmHWM ${(x.hwmRssBytes / MB).toFixed(0)} MB`);
  }
  let generatorOnly: RssChildResult | undefined;
  if (rssRuns > 0) {
    ctx.log(`core: RSS of the block generator alone (no engine), ${streamBytes / MiB} MiB`);
    generatorOnly = await rssRun(ctx, dir, streamBytes, 'none');
  }
  const notes = [
    `${rounds.length} rounds after a ${warmBytes / MiB} MiB page-cache warm-up and one untimed round; figures are medians (samples in run order).`,
    'MB = 10^6 bytes. Ratios are taken within each round (same minute, same bytes) and their median reported.',
  ];
  if (rewarmBytes > 0) {
    notes.push(
      `Before each round ${rewarmBytes / MiB} MiB (before each RSS run ${(streamBytes + GiB) / MiB} MiB) is written and deleted again: this VM reports free pages to the host after ~2 s, and refaulting them is slow.`,
    );
  }
  if (rss.length > 0) {
    const streamLabel = `${streamBytes / MiB} MiB`;
    const limit = CACHE_SIZE_BYTES + RSS_HEADROOM_BYTES;
    const peaks = rss.map((x) => x.peakRssBytes / MB);
    figures.push(
      fig(`RSS before streaming (child, after format+open)`, rss.map((x) => x.baselineRssBytes / MB), 'MB'),
      { label: `peak RSS streaming ${streamLabel}, CACHESIZE 128 MiB`, value: Math.max(...peaks), unit: 'MB', samples: peaks, note: 'worst run' },
      fig('peak RSS − RSS before streaming', rss.map((x) => (x.peakRssBytes - x.baselineRssBytes) / MB), 'MB', `CACHESIZE = ${(CACHE_SIZE_BYTES / MB).toFixed(0)} MB`),
      fig('kernel VmHWM of the child (whole life)', rss.map((x) => x.hwmRssBytes / MB), 'MB'),
      {
        label: 'peak RSS − before, block generator alone (no engine)',
        value: generatorOnly ? (generatorOnly.peakRssBytes - generatorOnly.baselineRssBytes) / MB : Number.NaN,
        unit: 'MB',
        note: 'generator garbage, in every engine run too',
      },
      fig(`stream ${streamLabel} ingest, + fsync`, rss.map((x) => mbPerS(streamBytes, x.writeMs + x.fsyncMs)), 'MB/s'),
    );
    targets.push({
      label: 'peak RSS ≤ CACHESIZE (128 MiB) + 100 MB',
      value: Math.max(...peaks),
      op: '<=',
      limit: limit / MB,
      unit: 'MB',
      note: `worst of ${rss.length} run(s)`,
    });
    notes.push(
      `RSS: process.memoryUsage().rss sampled every 50 ms and every 4 MiB written, in a child process; the worst peak of ${rss.length} run(s) is judged (${rss.map((x) => x.samples).join(', ')} samples).`,
    );
  }
  for (const [r, x] of rss.entries()) {
    const p = x.atPeak;
    notes.push(
      `RSS run ${r + 1} at its peak: V8 heap ${(p.heapUsedBytes / MB).toFixed(0)} of ${(p.heapTotalBytes / MB).toFixed(0)} MB, ` +
        `ArrayBuffers ${(p.arrayBuffersBytes / MB).toFixed(0)} MB (external ${(p.externalBytes / MB).toFixed(0)} MB); the rest is code, native (LMDB) and allocator slack.`,
    );
  }
  if (ctx.quick) notes.push('QUICK run: sizes scaled down, figures are not representative.');
  return { figures, targets, notes };
}

export const coreSection: Section = {
  name: 'core',
  description: 'engine ingest (unique, duplicate) vs plain write and sha256; peak RSS streaming 4 GiB',
  run,
};
