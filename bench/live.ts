// Live replication over loopback TCP: master ingest with replication off and
// on, how long after a 1 GiB write ends the slave has it, catch-up of a 1 GiB
// backlog (unique and duplicate data), and loopback TCP bandwidth measured in
// the same run. The slave runs in a child process, as it would on its own
// machine; the master is the engine driven in this process (no FUSE).
// LIVE_CPU=1 also logs where the CPU went during the unique catch-up.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { parseConfig } from '../src/core/config.ts';
import { FsEngine } from '../src/core/fs/engine.ts';
import { engineOptionsFromConfig } from '../src/core/fs/options.ts';
import { PathFs } from '../src/core/fs/path-fs.ts';
import { ReplicationNode } from '../src/core/replication/node.ts';
import type { LiveSender } from '../src/core/replication/sender.ts';
import { realEngineDrivers } from '../src/real/drivers.ts';
import { RealNet } from '../src/real/net.ts';
import { RealRng } from '../src/real/rng.ts';
import { REPO_DIR } from './child.ts';
import { formatAndOpen, writeFileOf, type BenchFs } from './engine-driver.ts';
import { BlockSource, collectGarbage, GiB, MB, mbPerS, median, MiB, roundFigure, sizeFlagBytes } from './measure.ts';
import type { BenchContext, Figure, Section, SectionReport, Target } from './section.ts';

const BLOCK_BYTES = 128 * 1024;
const CACHE_MB = 128;
const WAIT_MS_MAX = 10 * 60_000;
/** What warmEngine writes: twice CACHESIZE. */
const WARM_BYTES = 2 * CACHE_MB * MiB;
const TCP_CHUNK_BYTES = 1024 * 1024;
const SLAVE_NICE_DEFAULT = 10;

/** User and system CPU seconds of a process (or, with tid, one of its threads) so far (Linux /proc). */
function processCpuS(pid: number | undefined, tid?: number): { user: number; sys: number } {
  if (pid === undefined) return { user: 0, sys: 0 };
  const f = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8').split(') ')[1].split(' ');
  return { user: Number(f[11]) / 100, sys: Number(f[12]) / 100 };
}

/** Seconds this process's main thread has spent runnable but waiting for a CPU (Linux schedstat). */
function mainThreadRunqueueS(): number {
  return Number(readFileSync(`/proc/${process.pid}/task/${process.pid}/schedstat`, 'utf8').split(' ')[1]) / 1e9;
}

/** CPU seconds of this process's main thread (its thread id is the pid). */
function mainThreadCpuS(): number {
  const c = processCpuS(process.pid, process.pid);
  return c.user + c.sys;
}

/** LIVE_PROF=FILE / LIVE_PROF_OFF=FILE: a CPU profile of the main thread during the write with replication on / off. */
async function startProfile(file: string): Promise<() => Promise<void>> {
  const { Session } = await import('node:inspector/promises');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return async () => {
    const { profile } = await session.post('Profiler.stop');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(file, JSON.stringify(profile));
    session.disconnect();
  };
}

interface SlaveChild {
  child: ChildProcess;
  port: number;
  stop(): Promise<void>;
}

function startSlave(ctx: BenchContext, dir: string): Promise<SlaveChild> {
  return new Promise((resolve, reject) => {
    // --live-slave-prof DIR: CPU profile of the slave process.
    const prof = ctx.flag('live-slave-prof');
    const profArgs = prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : [];
    // --live-slave-nice N (default 10; 0: none): the slave child's CPU priority.
    // On this one 2-vCPU VM the slave stands in for a machine of its own, which
    // would take no CPU from the master: at nice 10 it gets what the master
    // leaves. The master's own replication work (log, sender, socket) is not
    // discounted: it runs in the master's process as in a deployment.
    const nice = Number(ctx.flag('live-slave-nice') ?? SLAVE_NICE_DEFAULT);
    if (!Number.isInteger(nice) || nice < 0 || nice > 19) throw new Error(`--live-slave-nice wants 0..19, got ${ctx.flag('live-slave-nice')}`);
    const argv = [...profArgs, '--import', 'tsx', join(REPO_DIR, 'bench', 'live-slave-child.ts'), JSON.stringify({ dir, blockBytes: BLOCK_BYTES, cacheMb: CACHE_MB })];
    const child = spawn(nice ? 'nice' : process.execPath, nice ? ['-n', String(nice), process.execPath, ...argv] : argv, {
      cwd: REPO_DIR,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let exited = false;
    const exit = new Promise<void>((r) => child.on('exit', () => { exited = true; r(); }));
    ctx.onCleanup(() => {
      if (!exited) child.kill('SIGKILL');
    });
    let out = '';
    const timer = setTimeout(() => reject(new Error(`the slave child did not start within 60 s:\n${out}`)), 60_000);
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString('utf8');
      const m = /PORT (\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({
          child,
          port: Number(m[1]),
          stop: async () => {
            child.kill('SIGTERM');
            await exit;
          },
        });
      }
    });
    child.on('exit', (code) => reject(new Error(`the slave child exited (${code}) before listening:\n${out}`)));
  });
}

interface Master {
  b: BenchFs;
  repl: ReplicationNode;
  sender: LiveSender;
}

async function openMaster(dir: string, port: number, enabled: boolean): Promise<Master> {
  const text = [
    `BLKSIZE=${BLOCK_BYTES}`,
    `BLOCKDATA_PATH=${join(dir, 'dta')}`,
    `META_PATH=${join(dir, 'mta')}`,
    `CACHESIZE=${CACHE_MB}`,
    'COMMIT_INTERVAL=30',
    'LISTEN_PORT=0',
    'MIN_SPACE_FREE=0',
    'REPLICATION=masterslave',
    'REPLICATION_ROLE=master',
    'REPLICATION_PARTNER_IP=127.0.0.1',
    `REPLICATION_PARTNER_PORT=${port}`,
    `REPLICATION_ENABLED=${enabled ? 'on' : 'off'}`,
  ].join('\n');
  const { config } = parseConfig(text);
  mkdirSync(config.metaPath, { recursive: true });
  const drivers = realEngineDrivers({ log: (level, m) => { if (level <= Number(process.env.LESSFS_BENCH_MASTER_DEBUG ?? 0)) process.stderr.write(`master: ${m}\n`); } });
  const options = engineOptionsFromConfig(config);
  await FsEngine.format(drivers, options, { force: false, fsId: 'bench-master' });
  const repl = new ReplicationNode(config, { ...drivers, net: new RealNet(), rng: new RealRng() });
  const engine = await FsEngine.open(drivers, options, (e) => repl.attach(e));
  await repl.start(engine);
  const sender = repl.liveSender;
  if (!sender) throw new Error('no live sender on the master');
  return { b: { engine, fs: new PathFs(engine), options }, repl, sender };
}

async function closeMaster(m: Master): Promise<void> {
  await m.repl.beforeEngineClose();
  await m.b.engine.close();
  await m.repl.afterEngineClose();
}

/**
 * Before an engine's measured write, an uncounted one of WARM_BYTES (then the
 * slave's catch-up): the engine's block buffers, which a mount keeps for as
 * long as it is up, are taken and first touched here. On this VM the first
 * touch of fresh memory is slow, and a live master keeps up to CACHESIZE of
 * its newest blocks for its sender: counted, that made the first GiB after
 * opening measure the hypervisor (on / off 0.53-0.65 against 0.70-0.80 warm).
 */
async function warmEngine(b: BenchFs, m?: Master): Promise<void> {
  await writeFileOf(b, '/warm', new BlockSource(BLOCK_BYTES), WARM_BYTES, undefined, true);
  if (m) await waitSlave(m, true);
}

/** Wait until the slave applied (and, with durable, acknowledged) everything committed. */
async function waitSlave(m: Master, durable: boolean): Promise<number> {
  const t0 = performance.now();
  const log = m.repl.masterLog;
  if (!log) throw new Error('no log');
  while (performance.now() - t0 < WAIT_MS_MAX) {
    const done = durable ? !m.sender.backlog : m.sender.slaveAppliedTxn >= log.committedTxn;
    if (done) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`the slave did not catch up within ${WAIT_MS_MAX} ms (${m.sender.connectionState}, backlog ${m.sender.backlogBytes} B)`);
}

/** Loopback TCP: bytes from this process to a sink in another, the baseline for catch-up. */
async function loopbackMbS(ctx: BenchContext, bytes: number): Promise<number> {
  const sink = spawn(process.execPath, ['-e', `
    const s = require('node:net').createServer((c) => { let n = 0; c.on('data', (d) => { n += d.length; if (n >= ${bytes}) c.end('done'); }); });
    s.listen(0, '127.0.0.1', () => console.log('PORT ' + s.address().port));
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  ctx.onCleanup(() => sink.kill('SIGKILL'));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    sink.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /PORT (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    sink.on('exit', () => reject(new Error('tcp sink exited')));
  });
  const chunk = Buffer.alloc(TCP_CHUNK_BYTES, 7);
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    const c = connect(port, '127.0.0.1');
    c.on('error', reject);
    c.on('data', () => { c.destroy(); resolve(); });
    let sent = 0;
    const pump = (): void => {
      while (sent < bytes) {
        sent += chunk.length;
        if (!c.write(chunk)) {
          c.once('drain', pump);
          return;
        }
      }
    };
    c.on('connect', pump);
  });
  const ms = performance.now() - t0;
  sink.kill('SIGKILL');
  return mbPerS(bytes, ms);
}

interface Round {
  tcpMbS: number;
  offMbS: number;
  onMbS: number;
  appliedLagMs: number;
  durableLagMs: number;
  catchUpUniqueMbS: number;
  catchUpDupMbS: number;
  uniqueBacklogBytes: number;
  dupBacklogBytes: number;
}

async function round(ctx: BenchContext, dir: string, source: BlockSource, bytes: number): Promise<Round> {
  const tcpMbS = await loopbackMbS(ctx, bytes);
  collectGarbage();
  // Replication off: the master's own rate.
  const offDir = join(dir, 'off');
  mkdirSync(offDir);
  const off = await formatAndOpen(offDir, BLOCK_BYTES, CACHE_MB * MiB);
  await warmEngine(off);
  const profOff = process.env.LIVE_PROF_OFF ? await startProfile(process.env.LIVE_PROF_OFF) : undefined;
  const cpuOff0 = { elu: performance.eventLoopUtilization(), master: process.cpuUsage(), main: mainThreadCpuS(), rq: mainThreadRunqueueS() };
  const w0 = await writeFileOf(off, '/f', source, bytes, undefined, true);
  if (process.env.LIVE_CPU) {
    const e = performance.eventLoopUtilization(cpuOff0.elu);
    const c = process.cpuUsage(cpuOff0.master);
    ctx.log(`live: CPU during the write, replication off: event loop ${(e.utilization * 100).toFixed(0)}% busy, main thread CPU ${(mainThreadCpuS() - cpuOff0.main).toFixed(2)} s (waiting for a CPU ${(mainThreadRunqueueS() - cpuOff0.rq).toFixed(2)} s) of ${((w0.writeMs + w0.fsyncMs) / 1000).toFixed(2)} s; process user ${(c.user / 1e6).toFixed(2)} sys ${(c.system / 1e6).toFixed(2)} s`);
  }
  if (profOff) await profOff();
  await off.engine.close();
  rmSync(offDir, { recursive: true, force: true });
  const offMbS = mbPerS(bytes, w0.writeMs + w0.fsyncMs);
  collectGarbage();

  // --live-slave-dir DIR: put the slave's data on another file system (its own disk; a tmpfs stands in for
  // the slave machine's disk on a one-disk VM). Default: beside the master, on the same disk.
  const slaveParent = ctx.flag('live-slave-dir');
  const sDir = slaveParent ? mkdtempSync(join(slaveParent, 'lessfs-bench-slave-')) : join(dir, 'slave');
  const mDir = join(dir, 'master');
  if (!slaveParent) mkdirSync(sDir);
  mkdirSync(mDir);
  const slave = await startSlave(ctx, sDir);
  try {
    const m = await openMaster(mDir, slave.port, true);
    try {
      await warmEngine(m.b, m);
      const log = m.repl.masterLog;
      const fromMemory0 = log?.extentBytes.fromMemory ?? 0;
      const fromDisk0 = log?.extentBytes.fromDisk ?? 0;
      // Streaming while writing; then how long until the slave has it.
      const cpuW0 = { elu: performance.eventLoopUtilization(), master: process.cpuUsage(), slave: processCpuS(slave.child.pid), main: mainThreadCpuS(), rq: mainThreadRunqueueS() };
      const prof = process.env.LIVE_PROF ? await startProfile(process.env.LIVE_PROF) : undefined;
      const w1 = await writeFileOf(m.b, '/live', source, bytes, undefined, true);
      if (prof) await prof();
      const onMbS = mbPerS(bytes, w1.writeMs + w1.fsyncMs);
      const cpuW1 = { elu: performance.eventLoopUtilization(), master: process.cpuUsage(), slave: processCpuS(slave.child.pid), main: mainThreadCpuS(), rq: mainThreadRunqueueS() };
      const appliedLagMs = await waitSlave(m, false);
      if (log) ctx.log(`live: the sender took ${((log.extentBytes.fromMemory - fromMemory0) / MB).toFixed(0)} MB of blocks from the master's memory, read ${((log.extentBytes.fromDisk - fromDisk0) / MB).toFixed(0)} MB from its data file`);
      if (process.env.LIVE_CPU) {
        const e1 = performance.eventLoopUtilization(cpuW1.elu, cpuW0.elu);
        const m1 = { user: (cpuW1.master.user - cpuW0.master.user) / 1e6, sys: (cpuW1.master.system - cpuW0.master.system) / 1e6 };
        const s1 = { user: cpuW1.slave.user - cpuW0.slave.user, sys: cpuW1.slave.sys - cpuW0.slave.sys };
        const e2 = performance.eventLoopUtilization(cpuW1.elu);
        const c2 = process.cpuUsage(cpuW1.master);
        const s2 = processCpuS(slave.child.pid);
        ctx.log(`live: CPU during the write: master event loop ${(e1.utilization * 100).toFixed(0)}% busy, main thread CPU ${(cpuW1.main - cpuW0.main).toFixed(2)} s (waiting for a CPU ${(cpuW1.rq - cpuW0.rq).toFixed(2)} s) of ${((w1.writeMs + w1.fsyncMs) / 1000).toFixed(2)} s; process user ${m1.user.toFixed(2)} sys ${m1.sys.toFixed(2)} s; slave user ${s1.user.toFixed(2)} sys ${s1.sys.toFixed(2)} s`);
        ctx.log(`live: CPU during the lag: master event loop ${(e2.utilization * 100).toFixed(0)}% busy, user ${(c2.user / 1e6).toFixed(2)} sys ${(c2.system / 1e6).toFixed(2)} s; slave user ${(s2.user - cpuW1.slave.user).toFixed(2)} sys ${(s2.sys - cpuW1.slave.sys).toFixed(2)} s`);
      }
      const durableLagMs = appliedLagMs + (await waitSlave(m, true));
      // A backlog of unique data, then of duplicates, each drained at once.
      m.sender.setEnabled(false);
      await writeFileOf(m.b, '/backlog-unique', new BlockSource(BLOCK_BYTES), bytes);
      const uniqueBacklogBytes = m.sender.backlogBytes;
      let t0 = performance.now();
      const elu0 = performance.eventLoopUtilization(); const cpu0 = process.cpuUsage();
      const sc0 = processCpuS(slave.child.pid);
      m.sender.setEnabled(true);
      await waitSlave(m, false);
      const catchUpUniqueMbS = mbPerS(bytes, performance.now() - t0);
      if (process.env.LIVE_CPU) {
        const e = performance.eventLoopUtilization(elu0);
        const c = process.cpuUsage(cpu0);
        const sc1 = processCpuS(slave.child.pid);
        ctx.log(`live: catch-up CPU: master event loop ${(e.utilization * 100).toFixed(0)}% busy, user ${(c.user / 1e6).toFixed(2)} sys ${(c.system / 1e6).toFixed(2)} s; slave user ${(sc1.user - sc0.user).toFixed(2)} sys ${(sc1.sys - sc0.sys).toFixed(2)} s; in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
      }
      await waitSlave(m, true);
      m.sender.setEnabled(false);
      await writeFileOf(m.b, '/backlog-dup', source, bytes);
      const dupBacklogBytes = m.sender.backlogBytes;
      t0 = performance.now();
      m.sender.setEnabled(true);
      await waitSlave(m, false);
      const catchUpDupMbS = mbPerS(bytes, performance.now() - t0);
      await waitSlave(m, true);
      return { tcpMbS, offMbS, onMbS, appliedLagMs, durableLagMs, catchUpUniqueMbS, catchUpDupMbS, uniqueBacklogBytes, dupBacklogBytes };
    } finally {
      await closeMaster(m);
    }
  } finally {
    await slave.stop();
    rmSync(sDir, { recursive: true, force: true });
    rmSync(mDir, { recursive: true, force: true });
  }
}

async function run(ctx: BenchContext): Promise<SectionReport> {
  const bytes = sizeFlagBytes(ctx, 'live-mib', BLOCK_BYTES);
  const source = new BlockSource(BLOCK_BYTES);
  const rounds: Round[] = [];
  // A warm-up write, not counted: the first 1 GiB written after the loopback
  // test ran at about half speed in every run (memory the VM had not handed
  // out yet), which made round 1's "off" baseline low and its ratios high.
  {
    const warmDir = ctx.tempDir('lessfs-bench-live-warm-');
    const warm = await formatAndOpen(warmDir, BLOCK_BYTES, CACHE_MB * MiB);
    const w = await writeFileOf(warm, '/f', source, bytes, undefined, true);
    await warm.engine.close();
    rmSync(warmDir, { recursive: true, force: true });
    ctx.log(`live: warm-up write (not counted): ${mbPerS(bytes, w.writeMs + w.fsyncMs).toFixed(0)} MB/s`);
    collectGarbage();
  }
  for (let r = 0; r < ctx.repeats; r++) {
    const x = await round(ctx, ctx.tempDir('lessfs-bench-live-'), source, bytes);
    ctx.log(`live: round ${r + 1}: tcp ${x.tcpMbS.toFixed(0)} MB/s; ingest off ${x.offMbS.toFixed(0)} on ${x.onMbS.toFixed(0)} MB/s; lag applied ${x.appliedLagMs.toFixed(0)} ms durable ${x.durableLagMs.toFixed(0)} ms; catch-up unique ${x.catchUpUniqueMbS.toFixed(0)} dup ${x.catchUpDupMbS.toFixed(0)} MB/s`);
    rounds.push(x);
  }
  const pick = (f: (x: Round) => number): number[] => rounds.map(f);
  const fig = (label: string, f: (x: Round) => number, unit: string, note?: string): Figure => roundFigure(rounds, label, f, unit, note);
  const onOff = median(pick((x) => x.onMbS / x.offMbS));
  const catchUp = median(pick((x) => x.catchUpUniqueMbS / x.offMbS));
  const lagS = median(pick((x) => x.appliedLagMs / 1000));
  const targets: Target[] = [
    { label: 'catch-up of unique data / master unique ingest', value: catchUp, op: '>=', limit: 0.5, unit: '×' },
    { label: 'master ingest, replication on / off', value: onOff, op: '>=', limit: 0.6, unit: '×' },
    { label: `${(bytes / GiB).toFixed(2)} GiB on the slave after the write ends`, value: lagS, op: '<=', limit: 2, unit: 's' },
  ];
  return {
    figures: [
      fig('loopback TCP, process to process', (x) => x.tcpMbS, 'MB/s', 'baseline'),
      fig('master ingest, replication off', (x) => x.offMbS, 'MB/s', `${(bytes / MiB).toFixed(0)} MiB unique, write + fsync`),
      fig('master ingest, live replication on', (x) => x.onMbS, 'MB/s'),
      fig('ingest on / off', (x) => x.onMbS / x.offMbS, '×', 'paired per round'),
      fig('slave has it (applied) after the write ends', (x) => x.appliedLagMs, 'ms'),
      fig('slave has it durably after the write ends', (x) => x.durableLagMs, 'ms'),
      fig('catch-up of a unique backlog', (x) => x.catchUpUniqueMbS, 'MB/s', 'file bytes the backlog holds / time to apply'),
      fig('catch-up unique / master unique ingest', (x) => x.catchUpUniqueMbS / x.offMbS, '×'),
      fig('catch-up unique / loopback TCP', (x) => x.catchUpUniqueMbS / x.tcpMbS, '×'),
      fig('catch-up of a duplicate backlog', (x) => x.catchUpDupMbS, 'MB/s', 'file bytes represented / time'),
      fig('backlog bytes, unique', (x) => x.uniqueBacklogBytes / MB, 'MB'),
      fig('backlog bytes, duplicate', (x) => x.dupBacklogBytes / MB, 'MB'),
    ],
    targets,
    notes: [
      'Slave: a child process on 127.0.0.1 (engine + receiver, no FUSE). Master: the engine in the bench process (no FUSE), BLKSIZE 128 KiB, CACHESIZE 128 MiB.',
      'Catch-up: replication disabled while 1 GiB is written and committed, then enabled; time until the slave reports it applied the last transaction.',
      'Before round 1 an uncounted warm-up write with replication off (without it round 1\'s "off" baseline ran at about half speed).',
    ],
  };
}

export const liveSection: Section = {
  name: 'live',
  description: 'live replication: ingest on vs off, lag after a 1 GiB write, catch-up of a 1 GiB backlog vs loopback TCP',
  run,
};
