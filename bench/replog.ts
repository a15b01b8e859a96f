// Batch replication: how many bytes of replication log each byte written costs
// (unique data travels as stored blocks, duplicates as references only), and
// how fast `replogtool -c` applies a large rotated file to an unmounted slave,
// against copying that file (read, write, fsync) in the same run.

import { closeSync, fsyncSync, mkdirSync, openSync, readSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig } from '../src/core/config.ts';
import { FsEngine } from '../src/core/fs/engine.ts';
import { engineOptionsFromConfig } from '../src/core/fs/options.ts';
import { PathFs } from '../src/core/fs/path-fs.ts';
import { LIVE_LOG_NAME, rotatedLogName } from '../src/core/replication/master-log.ts';
import { ReplicationNode } from '../src/core/replication/node.ts';
import { realEngineDrivers } from '../src/real/drivers.ts';
import { REPO_DIR, runScript } from './child.ts';
import { checkBlocks, writeFileOf, type BenchFs } from './engine-driver.ts';
import { BlockSource, collectGarbage, MB, mbPerS, MiB, roundFigure, sizeFlagBytes } from './measure.ts';
import type { BenchContext, Figure, Section, SectionReport } from './section.ts';

const BLOCK_BYTES = 128 * 1024;
const CACHE_MB = 128;
const APPLY_TIMEOUT_MS = 15 * 60_000;
const COPY_CHUNK_BYTES = 4 * MiB;

function configText(dir: string, role: 'master' | 'slave'): string {
  const lines = [
    `BLKSIZE=${BLOCK_BYTES}`,
    `BLOCKDATA_PATH=${join(dir, 'dta')}`,
    `META_PATH=${join(dir, 'mta')}`,
    `CACHESIZE=${CACHE_MB}`,
    'COMMIT_INTERVAL=30',
    'LISTEN_PORT=0',
    'MIN_SPACE_FREE=0',
    'REPLICATION=masterslave',
    `REPLICATION_ROLE=${role}`,
    'REPLICATION_PARTNER_IP=-1',
    'ROTATE_REPLOG_SIZE=0',
    'ROTATE_REPLOG_INTERVAL=0',
  ];
  return `${lines.join('\n')}\n`;
}

interface Node {
  b: BenchFs;
  repl: ReplicationNode;
  cfgPath: string;
}

async function formatNode(dir: string, role: 'master' | 'slave'): Promise<{ cfgPath: string }> {
  mkdirSync(join(dir, 'mta'), { recursive: true });
  const cfgPath = join(dir, 'lessfs.cfg');
  writeFileSync(cfgPath, configText(dir, role));
  const { config } = parseConfig(configText(dir, role));
  await FsEngine.format(realEngineDrivers({ log: () => undefined }), engineOptionsFromConfig(config), { force: false, fsId: `bench-${role}` });
  return { cfgPath };
}

async function openMaster(dir: string): Promise<Node> {
  const { cfgPath } = await formatNode(dir, 'master');
  const { config } = parseConfig(configText(dir, 'master'));
  const drivers = realEngineDrivers({ log: () => undefined });
  const repl = new ReplicationNode(config, drivers);
  const options = engineOptionsFromConfig(config);
  const engine = await FsEngine.open(drivers, options, (e) => repl.attach(e));
  repl.start(engine);
  return { b: { engine, fs: new PathFs(engine), options }, repl, cfgPath };
}

function logBytes(dir: string): number {
  return statSync(join(dir, 'dta', LIVE_LOG_NAME)).size;
}

/** Read `from` and write it to `to` in 4 MiB chunks, fsync: the baseline for applying it. */
function copyFile(from: string, to: string): number {
  const size = statSync(from).size;
  const buf = Buffer.allocUnsafeSlow(COPY_CHUNK_BYTES);
  const t0 = performance.now();
  const src = openSync(from, 'r');
  const dst = openSync(to, 'w');
  try {
    for (let off = 0; off < size; ) {
      const n = readSync(src, buf, 0, Math.min(COPY_CHUNK_BYTES, size - off), off);
      if (n <= 0) throw new Error(`short read of ${from} at ${off}`);
      writeSync(dst, buf, 0, n, off);
      off += n;
    }
    fsyncSync(dst);
  } finally {
    closeSync(src);
    closeSync(dst);
  }
  const ms = performance.now() - t0;
  rmSync(to);
  return mbPerS(size, ms);
}

interface Round {
  uniqueLogPerByte: number;
  dupLogPerByte: number;
  fileBytes: number;
  copyMbS: number;
  applyMbS: number;
  applyMs: number;
}

async function round(ctx: BenchContext, dir: string, source: BlockSource, bytes: number): Promise<Round> {
  const mDir = join(dir, 'master');
  const sDir = join(dir, 'slave');
  mkdirSync(mDir);
  mkdirSync(sDir);
  try {
    const m = await openMaster(mDir);
    let rotated: string;
    let uniqueLog: number;
    let dupLog: number;
    try {
      const l0 = logBytes(mDir);
      await writeFileOf(m.b, '/unique', source, bytes);
      const l1 = logBytes(mDir);
      await writeFileOf(m.b, '/dup', source, bytes);
      const l2 = logBytes(mDir);
      await checkBlocks(m.b, '/dup', source, bytes);
      uniqueLog = l1 - l0;
      dupLog = l2 - l1;
      const log = m.repl.masterLog;
      if (!log) throw new Error('the master has no replication log');
      const sequence = log.sequence;
      await log.rotate();
      rotated = join(mDir, 'dta', rotatedLogName(sequence));
    } finally {
      await m.repl.beforeEngineClose();
      await m.b.engine.close();
      await m.repl.afterEngineClose();
    }
    const fileBytes = statSync(rotated).size;
    collectGarbage();
    const copyMbS = copyFile(rotated, join(sDir, 'copy'));
    const { cfgPath } = await formatNode(sDir, 'slave');
    ctx.log(`replog: applying ${(fileBytes / MB).toFixed(0)} MB with replogtool -c`);
    const t0 = performance.now();
    const out = await runScript(ctx, join(REPO_DIR, 'bin', 'replogtool.js'), ['-r', rotated, '-c', cfgPath], APPLY_TIMEOUT_MS);
    const applyMs = performance.now() - t0;
    if (!/^applied /m.test(out)) throw new Error(`replogtool did not say it applied the file:\n${out}`);
    // The slave must now hold both files with the master's bytes.
    const { config } = parseConfig(configText(sDir, 'slave'));
    const slave = await FsEngine.open(realEngineDrivers({ log: () => undefined }), engineOptionsFromConfig(config));
    try {
      const b: BenchFs = { engine: slave, fs: new PathFs(slave), options: slave.options };
      await checkBlocks(b, '/unique', source, bytes);
      await checkBlocks(b, '/dup', source, bytes);
    } finally {
      await slave.close();
    }
    return { uniqueLogPerByte: uniqueLog / bytes, dupLogPerByte: dupLog / bytes, fileBytes, copyMbS, applyMbS: mbPerS(fileBytes, applyMs), applyMs };
  } finally {
    rmSync(mDir, { recursive: true, force: true });
    rmSync(sDir, { recursive: true, force: true });
  }
}

async function run(ctx: BenchContext): Promise<SectionReport> {
  const bytes = sizeFlagBytes(ctx, 'replog-mib', BLOCK_BYTES);
  const source = new BlockSource(BLOCK_BYTES);
  const rounds: Round[] = [];
  for (let r = 0; r < ctx.repeats; r++) {
    const dir = ctx.tempDir('lessfs-bench-replog-');
    const x = await round(ctx, dir, source, bytes);
    ctx.log(`replog: round ${r + 1}: log/byte unique ${x.uniqueLogPerByte.toFixed(4)} dup ${x.dupLogPerByte.toFixed(5)}; copy ${x.copyMbS.toFixed(0)} MB/s, apply ${x.applyMbS.toFixed(0)} MB/s`);
    rounds.push(x);
  }
  const fig = (label: string, pick: (x: Round) => number, unit: string, note?: string): Figure => roundFigure(rounds, label, pick, unit, note);

  return {
    figures: [
      fig('log bytes per byte written, unique data', (x) => x.uniqueLogPerByte, '×', `${(bytes / MiB).toFixed(0)} MiB, BLKSIZE 128 KiB, no compression`),
      fig('log bytes per byte written, duplicate data', (x) => x.dupLogPerByte, '×', 'references only'),
      fig('log bytes per duplicate block', (x) => x.dupLogPerByte * BLOCK_BYTES, 'B', 'a block-map KV record (and its share of the inode record)'),
      fig('rotated file', (x) => x.fileBytes / MB, 'MB'),
      fig('copy of the file (read, write, fsync)', (x) => x.copyMbS, 'MB/s', 'baseline'),
      fig('replogtool -c apply', (x) => x.applyMbS, 'MB/s', 'whole command: start, check, apply, commit'),
      fig('apply / copy', (x) => x.applyMbS / x.copyMbS, '×', 'paired per round'),
    ],
    targets: [],
    notes: [
      'Log bytes: growth of replog.dta while writing a file of unique blocks, then a second file of the same blocks (fsync after each).',
      'Apply: `replogtool -r replog.dta-N -c SLAVE_CFG` as a child process on a freshly formatted slave; the slave is then opened and spot-checked.',
    ],
  };
}

export const replogSection: Section = {
  name: 'replog',
  description: 'replication log bytes per byte written (unique, duplicate); replogtool -c apply rate of a 1 GiB log vs a file copy',
  run,
};
