// Build a large store fast for measuring lessfsck by hand (not part of
// `npm run bench`): the real engine on LMDB and node:fs, no FUSE.
//
//   node --import tsx bench/fsck-scale.ts DIR UNIQUE_BLOCKS FILES
//
// DIR must not exist (or be empty); it gets lessfs.cfg, mta/ and dta/. The
// store has BLKSIZE=4096, COMPRESSION=none, FILES small files in directories
// of 1,000, and UNIQUE_BLOCKS unique 4 KiB blocks spread over them; every
// fourth file also maps its first block a second time (a shared reference),
// so refcounts above 1 are checked too. Then measure, for example:
//
//   /usr/bin/time -v node bin/lessfsck.js -c DIR/lessfs.cfg
//
// (Elapsed wall clock, Maximum resident set size). Delete DIR afterwards: a
// million blocks take about 4.3 GB.

import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { FsEngine } from '../src/core/fs/engine.ts';
import { engineOptionsFromConfig } from '../src/core/fs/options.ts';
import { parseConfig } from '../src/core/config.ts';
import { realEngineDrivers } from '../src/real/drivers.ts';

const BLOCK_BYTES = 4096;
const FILES_PER_DIR = 1000;

const [dirArg, blocksArg, filesArg] = process.argv.slice(2);
const uniqueBlocks = Number(blocksArg);
const files = Number(filesArg);
if (!dirArg || !Number.isSafeInteger(uniqueBlocks) || uniqueBlocks < 1 || !Number.isSafeInteger(files) || files < 1 || files > uniqueBlocks) {
  process.stderr.write('usage: node --import tsx bench/fsck-scale.ts DIR UNIQUE_BLOCKS FILES (1 <= FILES <= UNIQUE_BLOCKS)\n');
  process.exit(2);
}
const dir = resolve(dirArg);
mkdirSync(dir, { recursive: true });
if (readdirSync(dir).length > 0) throw new Error(`${dir} is not empty: give a new directory`);
const cfgPath = join(dir, 'lessfs.cfg');
writeFileSync(cfgPath, `BLOCKDATA_PATH=${dir}/dta\nMETA_PATH=${dir}/mta\nBLKSIZE=${BLOCK_BYTES}\nCOMPRESSION=none\nCACHESIZE=128\n`);
mkdirSync(join(dir, 'mta'));
mkdirSync(join(dir, 'dta'));

const drivers = realEngineDrivers({ log: () => undefined });
const parsed = parseConfig(readFileSync(cfgPath, 'utf8'));
const options = { ...engineOptionsFromConfig(parsed.config, { readOnly: false }), commitIntervalMs: 30_000 };
await FsEngine.format(drivers, options, { force: false, fsId: 'fsck-scale' });
const engine = await FsEngine.open(drivers, options);

/** Unique content for block i: its number, then a cheap pseudo-random fill. */
const blockOf = (i: number, into: Uint8Array): Uint8Array => {
  const v = new DataView(into.buffer, into.byteOffset, into.byteLength);
  let x = (i * 2654435761) >>> 0 || 1;
  for (let o = 0; o < BLOCK_BYTES; o += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    v.setUint32(o, x >>> 0);
  }
  v.setFloat64(0, i);
  return into;
};

const t0 = performance.now();
let next = 0;
let dirIno = 0;
for (let f = 0; f < files; f++) {
  if (f % FILES_PER_DIR === 0) dirIno = engine.mkdir(1, `d${f / FILES_PER_DIR}`, 0o755, 0, 0).ino;
  const ino = engine.mknod(dirIno, `f${f}`, 0o100644, 0, 0).ino;
  const count = Math.floor(((f + 1) * uniqueBlocks) / files) - Math.floor((f * uniqueBlocks) / files);
  for (let b = 0; b < count; b++) {
    const n = await engine.write(ino, b * BLOCK_BYTES, blockOf(next++, engine.buffers.take()));
    if (n !== BLOCK_BYTES) throw new Error(`short write: ${n} of ${BLOCK_BYTES}`);
  }
  if (f % 4 === 3) await engine.write(ino, count * BLOCK_BYTES, blockOf(next - count, engine.buffers.take()));
  if (f % 10_000 === 9_999) process.stderr.write(`${f + 1} files, ${next} blocks, ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);
}
await engine.fsync();
await engine.close();
process.stdout.write(`${files} files, ${next} unique blocks in ${((performance.now() - t0) / 1000).toFixed(1)} s; config ${cfgPath}\n`);
