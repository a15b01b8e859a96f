// Child process of the core section: stream one large file into a fresh
// filesystem and report RSS, so the parent's own memory does not count.
// argv[2] is a JSON RssChildArgs; the last stdout line is `RESULT <json>`.

import { readFileSync } from 'node:fs';
import { checkBlocks, formatAndOpen, writeFileOf } from './engine-driver.ts';
import { BlockSource, collectGarbage } from './measure.ts';

export interface RssChildArgs {
  dir: string;
  streamBytes: number;
  blockBytes: number;
  cacheSizeBytes: number;
  sampleIntervalMs: number;
  /** 'engine': write the stream into the filesystem; 'none': only generate the blocks (the harness's own footprint). */
  sink: 'engine' | 'none';
}

export interface RssChildResult {
  baselineRssBytes: number;
  peakRssBytes: number;
  /** The kernel's high-water mark (VmHWM) for the whole process, start-up included. */
  hwmRssBytes: number;
  endRssBytes: number;
  samples: number;
  /** process.memoryUsage() at the peak sample: where the memory is (V8 heap, buffers, or native such as LMDB). */
  atPeak: { heapTotalBytes: number; heapUsedBytes: number; externalBytes: number; arrayBuffersBytes: number };
  writeMs: number;
  fsyncMs: number;
}

function vmHwmBytes(): number {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  if (!m) throw new Error('no VmHWM in /proc/self/status');
  return Number(m[1]) * 1024;
}

const args = JSON.parse(process.argv[2] ?? '') as RssChildArgs;
if (args.sink !== 'engine' && args.sink !== 'none') throw new Error(`bad sink '${String(args.sink)}'`);
const source = new BlockSource(args.blockBytes);
const b = await formatAndOpen(args.dir, args.blockBytes, args.cacheSizeBytes);
collectGarbage();
const baselineRssBytes = process.memoryUsage().rss;
let peakRssBytes = baselineRssBytes;
let atPeak = process.memoryUsage();
let samples = 0;
const sample = (): void => {
  const m = process.memoryUsage();
  samples++;
  if (m.rss > peakRssBytes) {
    peakRssBytes = m.rss;
    atPeak = m;
  }
};
const timer = setInterval(sample, args.sampleIntervalMs);
// The write loop may run for a while without yielding to timers: sample in it too.
const everyBlocks = Math.max(1, Math.floor((64 * 1024 * 1024) / args.blockBytes / 16));
let writeMs = 0;
let fsyncMs = 0;
if (args.sink === 'engine') {
  ({ writeMs, fsyncMs } = await writeFileOf(b, '/stream', source, args.streamBytes, (i) => {
    if (i % everyBlocks === 0) sample();
  }));
} else {
  // The generator alone: how much of the peak is the harness's own garbage.
  const t0 = performance.now();
  let xor = 0;
  const scratch = Buffer.allocUnsafeSlow(args.blockBytes);
  for (let i = 0; i < args.streamBytes / args.blockBytes; i++) {
    xor ^= source.blockInto(i, scratch)[4];
    if (i % everyBlocks === 0) {
      sample();
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }
  if (xor < 0) throw new Error('unreachable: keeps the blocks alive');
  writeMs = performance.now() - t0;
}
sample();
clearInterval(timer);
if (args.sink === 'engine') await checkBlocks(b, '/stream', source, args.streamBytes);
await b.engine.close();
const result: RssChildResult = {
  baselineRssBytes,
  peakRssBytes,
  hwmRssBytes: vmHwmBytes(),
  endRssBytes: process.memoryUsage().rss,
  samples,
  atPeak: { heapTotalBytes: atPeak.heapTotal, heapUsedBytes: atPeak.heapUsed, externalBytes: atPeak.external, arrayBuffersBytes: atPeak.arrayBuffers },
  writeMs,
  fsyncMs,
};
process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
