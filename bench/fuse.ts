// FUSE section: the real mount (`lessfs CFG MNT -f` in a child process) driven
// by dd, a node child and ls, beside two baselines measured in the same round
// on the same bytes:
//
//   plain   a directory on the same disk (the disk and page cache)
//   null    bench/null-fuse.ts: a fuse-native filesystem that discards data and
//           reads zeros, mounted with lessfs's options (the FUSE ceiling)
//   lessfs  a freshly formatted lessfs (BLKSIZE 128 KiB, no compression)
//   null-uncached  the null handler with 0 s kernel caches (as a lessfs slave
//           mounts) instead of a master's 1 s, metadata figures only (steps 5, 8)
//
// Per target, in one block, after re-reading the sources into the page cache
// and writing + deleting a warm-up file (this VM hands freed memory back to the
// host; refaulting it is slow):
//   1. untimed JIT warm-up: 2 × 256 MiB of another random file (unique + dup)
//   2. write unique: dd if=SRC (1 GiB random) of=T/unique bs=1M conv=fsync
//   3. write dup: the same SRC to T/dup (lessfs stores nothing new)
//   4. small unaligned writes: dd bs=1000 count=20000 conv=fsync of a third file
//   5. 10,000 creates of distinct 4 KiB files in T/many (node child, async
//      writeFile, 4 at a time); `ls -l T/many` right after ("warm")
//   6. lessfs only: unmount and mount again (its own caches cold)
//   7. drop the kernel's caches; cold read: dd if=T/unique of=/dev/null bs=1M;
//      warm read: the same again (FUSE page cache is dropped at open, so this
//      goes through the handler with the backing data in the page cache)
//   8. drop caches again; `ls -l T/many` ("cold")
//   9. lessfs only: cmp every file written with its source, check dedup via
//      statfs (stored bytes after unique, dup, small writes)
// Rounds rotate the order of the targets. Ratios lessfs/null are taken within
// a round (paired), and medians over rounds are judged.
//
// The bench process never mounts and never touches a mount synchronously: dd,
// ls, cmp, stat and the creates run as child processes; mkdir uses fs/promises.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { withLessfsNodeFlags } from '../src/cli/runtime-flags.ts';
import { CONFIG_KEYS, LESSFS_IGNORED_KEYS } from '../src/core/config.ts';
import { REPO_DIR, runScript } from './child.ts';
import type { CreatesChildArgs, CreatesChildResult } from './fuse-creates-child.ts';
import { GiB, KiB, MB, MiB, fmt, median, mbPerS, warmPageCache } from './measure.ts';
import type { BenchContext, Figure, Section, SectionReport, Target } from './section.ts';

const BLOCK_BYTES = 128 * KiB;
const DD_BS = '1M';
const SMALL_BS_BYTES = 1000;
const CREATE_SIZE_BYTES = 4 * KiB;
const CREATE_CONCURRENCY = 4;
const JIT_WARM_BYTES = 256 * MiB;
const UNIQUE_VS_NULL_MIN = 0.6;
const DUP_VS_NULL_MIN = 0.8;
const COLD_READ_VS_NULL_MIN = 0.7;
const CREATES_PER_S_MIN = 3000;
const LS_COLD_S_MAX = 0.5;
const MOUNT_WAIT_MS_MAX = 30_000;
const STOP_WAIT_MS_MAX = 120_000;
const DD_TIMEOUT_MS = 10 * 60_000;
const SHORT_TIMEOUT_MS = 2 * 60_000;
const POLL_MS = 20;

/**
 * `null-uncached`: the null handler with kernel attribute/entry caches of 0 s
 * (as a replication slave mounts), for the metadata figures only (creates,
 * ls -l): what those timeouts cost the FUSE stack itself.
 */
type Kind = 'plain' | 'null' | 'lessfs' | 'null-uncached';
const KINDS: readonly Kind[] = ['plain', 'null', 'lessfs', 'null-uncached'];
const BULK_KINDS: readonly Kind[] = ['plain', 'null', 'lessfs'];
/**
 * The kernel cache timeouts a lessfs master mounts with (src/cli/lessfs.ts,
 * attrTimeoutS: 1 on a master, 0 on a slave); the null handler uses the same.
 * Keep in step with lessfs.
 */
const LESSFS_CACHE_TIMEOUT_S = 1;
const UNCACHED_TIMEOUT_S = 0;

interface Sizes {
  fileBytes: number;
  smallCount: number;
  files: number;
  rewarmBytes: number;
}

/** One target's measurements in one round (NaN: not measured for this target). */
interface Sample {
  uniqueMbS: number;
  /** CPU seconds (user + system) of dd itself during the unique write. */
  uniqueDdCpuS: number;
  dupMbS: number;
  /** The same for the duplicate write. */
  dupDdCpuS: number;
  smallMbS: number;
  createsPerS: number;
  lsWarmS: number;
  lsColdS: number;
  coldReadMbS: number;
  warmReadMbS: number;
  /** lessfs only. */
  storedUniqueBytes?: number;
  storedDupBytes?: number;
  storedSmallBytes?: number;
  remountMs?: number;
}

// ---- child processes --------------------------------------------------------

const live = new Set<ChildProcess>();

function alive(c: ChildProcess): boolean {
  return c.exitCode === null && c.signalCode === null;
}

/** The environment for lessfs: no stray lessfs.cfg keys (DEBUG, ...) from ours. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of CONFIG_KEYS) delete env[k.name];
  for (const k of LESSFS_IGNORED_KEYS) delete env[k];
  return env;
}

interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Run a command to completion, bounded in time; wall time from spawn to exit. */
function exec(cmd: string, args: string[], timeoutMs: number): Promise<ExecResult> {
  return new Promise((res, rej) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: cleanEnv() });
    live.add(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      live.delete(child);
      rej(e);
    });
    child.on('close', (code, signal) => {
      const ms = performance.now() - t0;
      clearTimeout(timer);
      live.delete(child);
      res({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), ms });
    });
  });
}

async function execOk(cmd: string, args: string[], timeoutMs = SHORT_TIMEOUT_MS): Promise<ExecResult> {
  const r = await exec(cmd, args, timeoutMs);
  if (r.code !== 0) {
    throw Object.assign(new Error(`${cmd} ${args.join(' ')} exited ${r.code ?? r.signal}: ${r.stderr.trim().slice(-1000)}`), { code: 'ECHILD' });
  }
  return r;
}

/** Clock ticks per second of /proc/PID/stat times (USER_HZ: 100 on every Linux architecture Node runs on). */
const USER_HZ = 100;

/**
 * dd, checking it copied `bytes`: the wall time in ms (includes conv=fsync and
 * close) and the CPU seconds dd itself used (user + system), which is most of
 * what moves the write figures of this VM between runs: dd's copy into fresh
 * page-cache pages of the FUSE file costs it 0.3–3 s of system time per GiB.
 * A shell runs dd and prints its children's times (fields cutime, cstime of
 * /proc/$$/stat) once dd has been waited for.
 */
async function dd(args: string[], bytes: number): Promise<{ ms: number; cpuS: number }> {
  const script = 'dd "$@" || exit $?; read -r s < /proc/$$/stat; echo "ddcpu ${s##*) }" >&2';
  const r = await execOk('sh', ['-c', script, 'sh', ...args], DD_TIMEOUT_MS);
  const m = /^(\d+) bytes/m.exec(r.stderr);
  if (!m || Number(m[1]) !== bytes) throw new Error(`dd ${args.join(' ')}: copied ${m?.[1] ?? '?'} bytes, expected ${bytes}: ${r.stderr.trim()}`);
  const stat = /^ddcpu (.*)$/m.exec(r.stderr);
  // After "pid (comm) ": state is field 3, so cutime (16) and cstime (17) are the 14th and 15th here.
  const f = stat ? stat[1].trim().split(/\s+/) : [];
  const cpuS = f.length >= 15 ? (Number(f[13]) + Number(f[14])) / USER_HZ : Number.NaN;
  return { ms: r.ms, cpuS };
}

async function dropCaches(): Promise<void> {
  await execOk('sh', ['-c', 'sync && echo 3 > /proc/sys/vm/drop_caches']);
}

/** Seconds of `ls -l DIR`, checking it listed `files` entries. */
async function lsL(dir: string, files: number): Promise<number> {
  const r = await execOk('ls', ['-l', dir]);
  const lines = r.stdout.split('\n').filter((l) => l.length > 0 && !l.startsWith('total '));
  if (lines.length !== files) throw new Error(`ls -l ${dir} listed ${lines.length} entries, expected ${files}`);
  return r.ms / 1000;
}

// ---- mounts -----------------------------------------------------------------

function mountIdsAt(mnt: string): number[] {
  const target = resolve(mnt);
  const ids: number[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f.length < 5) continue;
    const point = f[4].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (point === target) ids.push(Number(f[0]));
  }
  return ids;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A FUSE server running as a child process (lessfs -f, or the null handler). */
class MountChild {
  private constructor(
    readonly mnt: string,
    private readonly child: ChildProcess,
    private readonly logPath: string,
    private readonly exited: Promise<void>,
  ) {}

  static async start(ctx: BenchContext, name: string, args: string[], mnt: string, logPath: string): Promise<MountChild> {
    const before = new Set(mountIdsAt(mnt));
    if (before.size > 0) throw new Error(`${mnt} is already a mount point`);
    const fd = openSync(logPath, 'a');
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, args, { cwd: REPO_DIR, stdio: ['ignore', fd, fd], env: cleanEnv() });
    } finally {
      closeSync(fd);
    }
    live.add(child);
    const exited = new Promise<void>((res) => child.on('exit', () => {
      live.delete(child);
      res();
    }));
    // Killed and detached at the end of the run, or on a failure or a signal.
    ctx.onCleanup(() => {
      if (alive(child)) child.kill('SIGKILL');
      if (mountIdsAt(mnt).length > 0) spawnSync('fusermount', ['-uz', mnt], { timeout: 10_000 });
    });
    const m = new MountChild(mnt, child, logPath, exited);
    const t0 = performance.now();
    while (mountIdsAt(mnt).length === 0) {
      if (!alive(child)) throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}) before mounting ${mnt}:\n${m.logTail()}`);
      if (performance.now() - t0 > MOUNT_WAIT_MS_MAX) {
        child.kill('SIGKILL');
        throw new Error(`${name} did not mount ${mnt} within ${MOUNT_WAIT_MS_MAX} ms:\n${m.logTail()}`);
      }
      await sleep(POLL_MS);
    }
    return m;
  }

  logTail(): string {
    return readFileSync(this.logPath, 'utf8').trim().split('\n').slice(-20).join('\n');
  }

  /** SIGTERM: the server unmounts and exits (lessfs commits and closes first). */
  async stop(): Promise<void> {
    if (alive(this.child)) this.child.kill('SIGTERM');
    const done = await Promise.race([this.exited.then(() => true), sleep(STOP_WAIT_MS_MAX).then(() => false)]);
    if (!done) {
      this.child.kill('SIGKILL');
      throw new Error(`pid ${this.child.pid} did not exit within ${STOP_WAIT_MS_MAX} ms of SIGTERM:\n${this.logTail()}`);
    }
    if (this.child.exitCode !== 0) throw new Error(`pid ${this.child.pid} exited ${this.child.exitCode ?? this.child.signalCode} on SIGTERM:\n${this.logTail()}`);
    if (mountIdsAt(this.mnt).length > 0) throw new Error(`${this.mnt} still mounted after its server exited`);
  }
}

// ---- targets ----------------------------------------------------------------

interface Env {
  ctx: BenchContext;
  base: string;
  src: string;
  warmSrc: string;
  smallSrc: string;
  sizes: Sizes;
  profDir: string | undefined;
}

/** Where a target's files go, and how to restart it (lessfs) / end it. */
interface Opened {
  dir: string;
  remount?: () => Promise<number>;
  /** Bytes of block data stored (statfs: blocks − free), lessfs only. */
  stored?: () => Promise<number>;
  close(): Promise<void>;
}

function lessfsArgs(env: Env, cfg: string, mnt: string): string[] {
  const prof = env.profDir ? ['--cpu-prof', `--cpu-prof-dir=${env.profDir}`] : [];
  // With the Node flags bin/lessfs.js's shebang gives a mount run as a command.
  return [...withLessfsNodeFlags(prof), join(REPO_DIR, 'bin', 'lessfs.js'), cfg, mnt, '-f'];
}

async function open(env: Env, kind: Kind, round: number): Promise<Opened> {
  const dir = join(env.base, `${kind}-${round}`);
  mkdirSync(dir);
  if (kind === 'plain') {
    return { dir, close: async () => rmSync(dir, { recursive: true, force: true }) };
  }
  if (kind === 'null' || kind === 'null-uncached') {
    const mnt = join(dir, 'mnt');
    mkdirSync(mnt);
    const t = kind === 'null' ? LESSFS_CACHE_TIMEOUT_S : UNCACHED_TIMEOUT_S;
    const opts = `attr_timeout=${t},entry_timeout=${t},negative_timeout=${t}`;
    const m = await MountChild.start(env.ctx, 'null-fuse', ['--import', 'tsx', join(REPO_DIR, 'bench', 'null-fuse.ts'), mnt, '-o', opts], mnt, join(dir, 'null-fuse.log'));
    return {
      dir: mnt,
      close: async () => {
        await m.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  const mnt = join(dir, 'mnt');
  const dta = join(dir, 'dta');
  const mta = join(dir, 'mta');
  for (const d of [mnt, dta, mta]) mkdirSync(d);
  const cfg = join(dir, 'lessfs.cfg');
  const keys: Record<string, string | number> = {
    BLOCKDATA_PATH: dta,
    META_PATH: mta,
    BLKSIZE: BLOCK_BYTES,
    COMPRESSION: 'none',
    CACHESIZE: 128,
    COMMIT_INTERVAL: 30,
    DEBUG: 0,
    LISTEN_PORT: 0,
  };
  writeFileSync(cfg, Object.entries(keys).map(([k, v]) => `${k}=${v}\n`).join(''));
  await execOk(process.execPath, [join(REPO_DIR, 'bin', 'mklessfs.js'), '-f', '-c', cfg]);
  const log = join(dir, 'lessfs.log');
  let m = await MountChild.start(env.ctx, 'lessfs', lessfsArgs(env, cfg, mnt), mnt, log);
  return {
    dir: mnt,
    remount: async () => {
      const t0 = performance.now();
      await m.stop();
      m = await MountChild.start(env.ctx, 'lessfs', lessfsArgs(env, cfg, mnt), mnt, log);
      return performance.now() - t0;
    },
    stored: async () => {
      const r = await execOk('stat', ['-f', '-c', '%b %f %S', mnt]);
      const [blocks, free, bsize] = r.stdout.trim().split(' ').map(Number);
      if (![blocks, free, bsize].every(Number.isSafeInteger)) throw new Error(`stat -f ${mnt}: unexpected output '${r.stdout}'`);
      return (blocks - free) * bsize;
    },
    close: async () => {
      await m.stop();
      if (mountIdsAt(mnt).length > 0) throw new Error(`not removing ${dir}: ${mnt} is still mounted`);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function createsAndLs(env: Env, dir: string): Promise<{ createsPerS: number; lsWarmS: number }> {
  const { ctx, sizes } = env;
  await mkdir(dir);
  const args: CreatesChildArgs = { dir, count: sizes.files, sizeBytes: CREATE_SIZE_BYTES, concurrency: CREATE_CONCURRENCY };
  const out = await runScript(ctx, join(REPO_DIR, 'bench', 'fuse-creates-child.ts'), [JSON.stringify(args)], DD_TIMEOUT_MS);
  const line = out.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) throw new Error(`creates child printed no RESULT line:\n${out}`);
  const creates = JSON.parse(line.slice('RESULT '.length)) as CreatesChildResult;
  const lsWarmS = await lsL(dir, sizes.files);
  return { createsPerS: creates.count / (creates.ms / 1000), lsWarmS };
}

async function measureTarget(env: Env, kind: Kind, round: number): Promise<Sample> {
  const { sizes } = env;
  const bulk = BULK_KINDS.includes(kind);
  if (bulk) {
    // Sources back into the page cache (the previous target dropped caches), then
    // recently freed pages for the writes to reuse.
    for (const s of [env.src, env.warmSrc, env.smallSrc]) await execOk('dd', [`if=${s}`, 'of=/dev/null', `bs=${DD_BS}`], DD_TIMEOUT_MS);
    if (sizes.rewarmBytes > 0) warmPageCache(env.base, sizes.rewarmBytes);
  }
  const t = await open(env, kind, round);
  try {
    const f = (name: string): string => join(t.dir, name);
    if (!bulk) {
      const c = await createsAndLs(env, f('many'));
      await dropCaches();
      const lsColdS = await lsL(f('many'), sizes.files);
      const nan = Number.NaN;
      return { uniqueMbS: nan, uniqueDdCpuS: nan, dupMbS: nan, dupDdCpuS: nan, smallMbS: nan, coldReadMbS: nan, warmReadMbS: nan, ...c, lsColdS };
    }
    const warmBytes = Math.min(JIT_WARM_BYTES, sizes.fileBytes);
    await dd([`if=${env.warmSrc}`, `of=${f('warm-1')}`, `bs=${DD_BS}`, `count=${warmBytes / MiB}`, 'conv=fsync'], warmBytes);
    await dd([`if=${env.warmSrc}`, `of=${f('warm-2')}`, `bs=${DD_BS}`, `count=${warmBytes / MiB}`, 'conv=fsync'], warmBytes);

    const stored0 = await t.stored?.();
    const unique = await dd([`if=${env.src}`, `of=${f('unique')}`, `bs=${DD_BS}`, 'conv=fsync'], sizes.fileBytes);
    const stored1 = await t.stored?.();
    const dup = await dd([`if=${env.src}`, `of=${f('dup')}`, `bs=${DD_BS}`, 'conv=fsync'], sizes.fileBytes);
    const stored2 = await t.stored?.();
    const smallBytes = sizes.smallCount * SMALL_BS_BYTES;
    const { ms: smallMs } = await dd([`if=${env.smallSrc}`, `of=${f('small')}`, `bs=${SMALL_BS_BYTES}`, `count=${sizes.smallCount}`, 'conv=fsync'], smallBytes);
    const stored3 = await t.stored?.();

    const { createsPerS, lsWarmS } = await createsAndLs(env, f('many'));

    const remountMs = await t.remount?.();
    await dropCaches();
    const { ms: coldMs } = await dd([`if=${f('unique')}`, 'of=/dev/null', `bs=${DD_BS}`], sizes.fileBytes);
    const { ms: warmMs } = await dd([`if=${f('unique')}`, 'of=/dev/null', `bs=${DD_BS}`], sizes.fileBytes);
    await dropCaches();
    const lsColdS = await lsL(f('many'), sizes.files);

    if (kind === 'lessfs') {
      // A benchmark of a broken write path is worthless: every byte must read back.
      await execOk('cmp', [env.src, f('unique')], DD_TIMEOUT_MS);
      await execOk('cmp', [env.src, f('dup')], DD_TIMEOUT_MS);
      await execOk('cmp', ['-n', String(smallBytes), env.smallSrc, f('small')], DD_TIMEOUT_MS);
    }
    const s: Sample = {
      uniqueMbS: mbPerS(sizes.fileBytes, unique.ms),
      uniqueDdCpuS: unique.cpuS,
      dupMbS: mbPerS(sizes.fileBytes, dup.ms),
      dupDdCpuS: dup.cpuS,
      smallMbS: mbPerS(smallBytes, smallMs),
      createsPerS,
      lsWarmS,
      lsColdS,
      coldReadMbS: mbPerS(sizes.fileBytes, coldMs),
      warmReadMbS: mbPerS(sizes.fileBytes, warmMs),
      remountMs,
    };
    if (stored0 !== undefined && stored1 !== undefined && stored2 !== undefined && stored3 !== undefined) {
      s.storedUniqueBytes = stored1 - stored0;
      s.storedDupBytes = stored2 - stored1;
      s.storedSmallBytes = stored3 - stored2;
      // Figures of a filesystem that failed to store or to deduplicate mean nothing.
      if (s.storedUniqueBytes < sizes.fileBytes * 0.99) throw new Error(`lessfs stored ${s.storedUniqueBytes} bytes for ${sizes.fileBytes} bytes of unique data`);
      if (s.storedDupBytes > sizes.fileBytes * 0.01) throw new Error(`lessfs stored ${s.storedDupBytes} bytes for ${sizes.fileBytes} bytes of duplicate data`);
    }
    return s;
  } finally {
    await t.close();
  }
}

/**
 * A fingerprint of the sources lessfs runs from (src/, bin/): the lead edits
 * them while benchmarks run, and each mount loads them afresh.
 */
function sourceFingerprint(): { text: string; sha: string } {
  const r = spawnSync('sh', ['-c', 'git rev-parse --short HEAD && git status --porcelain -- src bin | sort && find src bin -type f \\( -name "*.ts" -o -name "*.js" \\) | sort | xargs cat | sha256sum'], { cwd: REPO_DIR, encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) return { text: `unknown (${r.stderr.trim()})`, sha: 'unknown' };
  const lines = r.stdout.trim().split('\n');
  const head = lines[0];
  const dirty = lines.slice(1, -1).filter((l) => l.length > 0).length;
  const sha = lines[lines.length - 1].slice(0, 12);
  return { text: `${head}${dirty > 0 ? ` + ${dirty} uncommitted file(s)` : ''}, sources sha256 ${sha}`, sha };
}

// ---- setup ------------------------------------------------------------------

function writeRandomFile(path: string, bytes: number): void {
  const chunk = Buffer.allocUnsafe(MiB);
  const fd = openSync(path, 'w');
  try {
    for (let done = 0; done < bytes; done += chunk.length) {
      randomFillSync(chunk);
      writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - done));
    }
  } finally {
    closeSync(fd);
  }
}

/** Microseconds of one sha256 of a 128 KiB block in this process: what a whole-block rehash per write would add. */
function sha256BlockUs(): number {
  const block = Buffer.allocUnsafe(BLOCK_BYTES);
  randomFillSync(block);
  const n = 2000;
  let x = 0;
  for (let i = 0; i < 200; i++) x ^= createHash('sha256').update(block).digest()[0];
  const t0 = performance.now();
  for (let i = 0; i < n; i++) x ^= createHash('sha256').update(block).digest()[0];
  const us = ((performance.now() - t0) * 1000) / n;
  if (x < 0) throw new Error('unreachable: keeps the digests alive');
  return us;
}

function intFlag(ctx: BenchContext, name: string, fallback: number, min: number, max: number): number {
  const v = ctx.flag(name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!(Number.isInteger(n) && n >= min && n <= max)) throw new Error(`--${name} wants a whole number in [${min}, ${max}], got '${v}'`);
  return n;
}

function sizesOf(ctx: BenchContext): Sizes {
  return {
    fileBytes: intFlag(ctx, 'fuse-mib', ctx.quick ? 64 : 1024, 1, 16 * 1024) * MiB,
    smallCount: intFlag(ctx, 'fuse-small-count', ctx.quick ? 2000 : 20_000, 1, 1_000_000),
    files: intFlag(ctx, 'fuse-files', ctx.quick ? 1000 : 10_000, 1, 1_000_000),
    rewarmBytes: intFlag(ctx, 'fuse-rewarm-mib', ctx.quick ? 0 : 2048, 0, 64 * 1024) * MiB,
  };
}

async function run(ctx: BenchContext): Promise<SectionReport> {
  const sizes = sizesOf(ctx);
  const base = ctx.tempDir('lessfs-bench-fuse-');
  ctx.onCleanup(() => {
    for (const c of live) if (alive(c)) c.kill('SIGKILL');
  });
  const profFlag = ctx.flag('fuse-prof');
  const profDir = profFlag === undefined ? undefined : resolve(profFlag);
  if (profDir) mkdirSync(profDir, { recursive: true });
  const env: Env = { ctx, base, src: join(base, 'src'), warmSrc: join(base, 'warm-src'), smallSrc: join(base, 'small-src'), sizes, profDir };
  const sizeLabel = sizes.fileBytes % GiB === 0 ? `${sizes.fileBytes / GiB} GiB` : `${sizes.fileBytes / MiB} MiB`;

  ctx.log(`fuse: random sources in ${base}: ${sizeLabel}, ${Math.min(JIT_WARM_BYTES, sizes.fileBytes) / MiB} MiB (warm-up), ${(sizes.smallCount * SMALL_BS_BYTES) / MB} MB (small writes)`);
  writeRandomFile(env.src, sizes.fileBytes);
  writeRandomFile(env.warmSrc, Math.min(JIT_WARM_BYTES, sizes.fileBytes));
  writeRandomFile(env.smallSrc, sizes.smallCount * SMALL_BS_BYTES);
  if (!ctx.quick) {
    ctx.log('fuse: page-cache warm-up: write and delete 4096 MiB');
    warmPageCache(base, 4 * GiB);
  }
  const sourcesAtStart = sourceFingerprint();
  ctx.log(`fuse: lessfs sources: ${sourcesAtStart.text}`);

  const rounds: Array<Record<Kind, Sample>> = [];
  const hashUsSamples: number[] = [];
  for (let r = 0; r < ctx.repeats; r++) {
    const order = KINDS.map((_, i) => KINDS[(i + r) % KINDS.length]);
    const got: Partial<Record<Kind, Sample>> = {};
    for (const kind of order) {
      ctx.log(`fuse: round ${r + 1}/${ctx.repeats}: ${kind}`);
      const s = await measureTarget(env, kind, r);
      got[kind] = s;
      const bulk = BULK_KINDS.includes(kind)
        ? `write unique ${s.uniqueMbS.toFixed(0)} (dd CPU ${s.uniqueDdCpuS.toFixed(2)} s), dup ${s.dupMbS.toFixed(0)} (dd CPU ${s.dupDdCpuS.toFixed(2)} s), cold read ${s.coldReadMbS.toFixed(0)}, ` +
          `warm read ${s.warmReadMbS.toFixed(0)}, bs=1000 ${s.smallMbS.toFixed(1)} MB/s; `
        : '';
      ctx.log(`fuse: round ${r + 1} ${kind}: ${bulk}${s.createsPerS.toFixed(0)} creates/s; ls -l ${s.lsWarmS.toFixed(3)} s right after, ${s.lsColdS.toFixed(3)} s cold`);
    }
    rounds.push(got as Record<Kind, Sample>);
    hashUsSamples.push(sha256BlockUs());
  }

  const col = (kind: Kind, f: (s: Sample) => number): number[] => rounds.map((x) => f(x[kind]));
  const fig = (label: string, samples: number[], unit: string, note?: string): Figure => ({ label, value: median(samples), unit, samples, note });
  const ratio = (f: (s: Sample) => number): number[] => rounds.map((x) => f(x.lessfs) / f(x.null));
  const figures: Figure[] = [];
  const perKind = (what: string, f: (s: Sample) => number, unit: string, kinds: readonly Kind[] = BULK_KINDS): void => {
    for (const k of kinds) figures.push(fig(`${what}: ${k}`, col(k, f), unit));
  };
  perKind(`write ${sizeLabel} unique (dd bs=1M conv=fsync)`, (s) => s.uniqueMbS, 'MB/s');
  perKind(`dd's own CPU (user + sys) in the unique write`, (s) => s.uniqueDdCpuS, 's');
  perKind(`write ${sizeLabel} duplicate`, (s) => s.dupMbS, 'MB/s');
  perKind(`dd's own CPU (user + sys) in the duplicate write`, (s) => s.dupDdCpuS, 's');
  perKind(`cold read ${sizeLabel} (drop_caches; lessfs remounted)`, (s) => s.coldReadMbS, 'MB/s');
  perKind(`read again right after`, (s) => s.warmReadMbS, 'MB/s');
  perKind(`small unaligned writes (dd bs=1000, ${(sizes.smallCount * SMALL_BS_BYTES) / MB} MB, conv=fsync)`, (s) => s.smallMbS, 'MB/s');
  perKind(`creates of ${sizes.files} 4 KiB files in one dir`, (s) => s.createsPerS, '/s', KINDS);
  perKind(`ls -l of them, right after`, (s) => s.lsWarmS, 's', KINDS);
  perKind(`ls -l of them, cold (drop_caches; lessfs remounted)`, (s) => s.lsColdS, 's', KINDS);
  const uniqueR = ratio((s) => s.uniqueMbS);
  const dupR = ratio((s) => s.dupMbS);
  const coldR = ratio((s) => s.coldReadMbS);
  // Time a bs=1000 write costs on lessfs beyond the null handler's.
  const extraUs = rounds.map((x) => (SMALL_BS_BYTES / (x.lessfs.smallMbS * MB)) * 1e6 - (SMALL_BS_BYTES / (x.null.smallMbS * MB)) * 1e6);
  figures.push(
    fig('lessfs / null: unique write', uniqueR, '×', 'paired per round'),
    fig('lessfs / null: duplicate write', dupR, '×', 'paired per round'),
    fig('lessfs / null: cold read', coldR, '×', 'paired per round'),
    fig('lessfs / plain: unique write', rounds.map((x) => x.lessfs.uniqueMbS / x.plain.uniqueMbS), '×', 'paired per round'),
    fig('lessfs / plain: duplicate write', rounds.map((x) => x.lessfs.dupMbS / x.plain.dupMbS), '×', 'paired per round'),
    fig('lessfs / plain: cold read', rounds.map((x) => x.lessfs.coldReadMbS / x.plain.coldReadMbS), '×', 'paired per round'),
    fig('null / plain: unique write', rounds.map((x) => x.null.uniqueMbS / x.plain.uniqueMbS), '×', 'the FUSE stack alone'),
    fig('lessfs / null: creates', ratio((s) => s.createsPerS), '×', 'paired per round'),
    fig('lessfs / null: ls -l cold (time)', ratio((s) => s.lsColdS), '×', 'paired per round'),
    fig('bs=1000 write: lessfs time per call − null', extraUs, 'µs', 'paired per round'),
    fig('sha256 of one 128 KiB block (bench process)', hashUsSamples, 'µs', 'what a whole-block rehash per call would add'),
    fig('lessfs stored by the unique write', col('lessfs', (s) => (s.storedUniqueBytes ?? Number.NaN) / MB), 'MB', 'statfs blocks − free'),
    fig('lessfs stored by the duplicate write', col('lessfs', (s) => (s.storedDupBytes ?? Number.NaN) / MB), 'MB'),
    fig('lessfs stored by the bs=1000 writes', col('lessfs', (s) => (s.storedSmallBytes ?? Number.NaN) / MB), 'MB'),
    fig('lessfs unmount + mount', col('lessfs', (s) => (s.remountMs ?? Number.NaN) / 1000), 's', 'SIGTERM (commit, close) to mounted'),
  );
  const targets: Target[] = [
    { label: 'unique write ≥ 0.6× null FUSE handler', value: median(uniqueR), op: '>=', limit: UNIQUE_VS_NULL_MIN, unit: '×' },
    { label: 'duplicate write ≥ 0.8× null FUSE handler', value: median(dupR), op: '>=', limit: DUP_VS_NULL_MIN, unit: '×' },
    { label: 'cold read ≥ 0.7× null FUSE handler', value: median(coldR), op: '>=', limit: COLD_READ_VS_NULL_MIN, unit: '×' },
    { label: `creates of ${sizes.files} 4 KiB files ≥ 3,000/s`, value: median(col('lessfs', (s) => s.createsPerS)), op: '>=', limit: CREATES_PER_S_MIN, unit: '/s' },
    { label: `ls -l of ${sizes.files} files (cold) < 0.5 s`, value: median(col('lessfs', (s) => s.lsColdS)), op: '<=', limit: LS_COLD_S_MAX, unit: 's' },
    {
      label: 'bs=1000 writes: extra time per call < one 128 KiB sha256 (no whole-block rehash per call)',
      value: median(extraUs),
      op: '<=',
      limit: median(hashUsSamples),
      unit: 'µs',
    },
  ];
  const notes = [
    `${rounds.length} round(s); each round measures plain, null, lessfs and null-uncached back to back (order rotated per round); medians reported, samples in run order.`,
    'MB = 10^6 bytes. Times are wall times of the child (dd, ls) from spawn to exit; dd conv=fsync includes the fsync and close.',
    `null = bench/null-fuse.ts: fuse-native, lessfs's mount options (big_writes, max_read/max_write=131072, use_ino, default_permissions, allow_other, attr/entry/negative timeouts ${LESSFS_CACHE_TIMEOUT_S} s as lessfs), xattrs answered as lessfs does, data discarded, reads zero-filled.`,
    `null-uncached = the same handler with attr/entry/negative timeouts of ${UNCACHED_TIMEOUT_S} s (as a lessfs slave mounts) instead of ${LESSFS_CACHE_TIMEOUT_S} s (metadata figures only).`,
    `lessfs: fresh mklessfs per round, BLKSIZE=128K, COMPRESSION=none, CACHESIZE=128, COMMIT_INTERVAL=30, DEBUG=0; ${Math.min(JIT_WARM_BYTES, sizes.fileBytes) / MiB} MiB written twice (another random file) before the timed writes of every target (JIT, page cache).`,
    `Creates: node child, fs.promises.writeFile(flag wx), ${CREATE_CONCURRENCY} at a time, distinct content per file. ls -l output is counted (${sizes.files} entries checked).`,
    'lessfs files are compared byte for byte with their sources (cmp) after the reads; the unique write must store ≥ 99% of its bytes and the duplicate ≤ 1%.',
    "dd's own CPU: user + system seconds of the dd process (its copy into the FUSE file's page cache). On this VM it swings 0.4–3 s per GiB between identical runs and drags every write figure with it; compare ratios only where plain, null and lessfs paid alike.",
  ];
  if (sizes.rewarmBytes > 0) notes.push(`Before each target: sources re-read, then ${sizes.rewarmBytes / MiB} MiB written and deleted (this VM returns freed memory to the host).`);
  const sourcesAtEnd = sourceFingerprint();
  const same = sourcesAtEnd.sha === sourcesAtStart.sha;
  notes.push(`lessfs sources: ${sourcesAtStart.text}${same ? ` (unchanged during the run; at the end: ${sourcesAtEnd.text})` : `; CHANGED during the run (each mount loads them afresh), at the end: ${sourcesAtEnd.text}`}.`);
  if (profDir) notes.push(`lessfs ran with --cpu-prof; profiles in ${profDir}.`);
  if (ctx.quick) notes.push('QUICK run: sizes scaled down, figures are not representative.');
  for (const [i, x] of rounds.entries()) {
    notes.push(
      `round ${i + 1} lessfs/null: unique ${fmt(x.lessfs.uniqueMbS / x.null.uniqueMbS, '×')}, dup ${fmt(x.lessfs.dupMbS / x.null.dupMbS, '×')}, cold read ${fmt(x.lessfs.coldReadMbS / x.null.coldReadMbS, '×')}`,
    );
  }
  return { figures, targets, notes };
}

export const fuseSection: Section = {
  name: 'fuse',
  description: 'dd, creates and ls -l through the lessfs mount vs a plain directory and a null FUSE handler',
  run,
};

