// CPU per created file of a FUSE server process, thread by thread: mounts
// lessfs (bin/lessfs.js -f, as the fuse section does) or the null handler
// (bench/null-fuse.ts) in a temporary directory, runs the fuse section's
// creates child (10,000 distinct 4 KiB files in one directory, 4 at a time)
// against it, and reads /proc/PID/task/*/stat of the server before and after
// (user and system ticks per thread). Not part of `npm run bench`: a
// diagnostic, one mount, one round, printed as text.
//
//   node --import tsx bench/fuse-creates-cpu.ts lessfs|null [--count N] [--prof DIR] [--rounds N]
//
// --prof DIR runs the server with --cpu-prof into DIR (profile written at
// exit). --rounds N runs the creates N times, each into a fresh directory of
// the same mount, and reports each.

import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_DIR } from './child.ts';
import { withLessfsNodeFlags } from '../src/cli/runtime-flags.ts';

const TICK_S = 0.01;

interface ThreadCpu {
  name: string;
  utime: number;
  stime: number;
  minflt: number;
}

function threads(pid: number): Map<number, ThreadCpu> {
  const out = new Map<number, ThreadCpu>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const s = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const close = s.lastIndexOf(')');
      const name = s.slice(s.indexOf('(') + 1, close);
      const f = s.slice(close + 2).split(' ');
      out.set(Number(tid), { name, utime: Number(f[11]), stime: Number(f[12]), minflt: Number(f[7]) });
    } catch {
      // thread ended
    }
  }
  return out;
}

function mounted(mnt: string): boolean {
  return readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mnt);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { cwd: REPO_DIR, encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    options: { count: { type: 'string' }, prof: { type: 'string' }, rounds: { type: 'string' } },
    allowPositionals: true,
  });
  const kind = positionals[0];
  if (kind !== 'lessfs' && kind !== 'null') throw new Error('usage: fuse-creates-cpu.ts lessfs|null [--count N] [--prof DIR] [--rounds N]');
  const count = Number(values.count ?? 10_000);
  const rounds = Number(values.rounds ?? 1);
  const base = mkdtempSync(join(tmpdir(), 'lessfs-creates-cpu-'));
  const mnt = join(base, 'mnt');
  mkdirSync(mnt);
  const prof = values.prof ? ['--cpu-prof', `--cpu-prof-dir=${values.prof}`] : [];
  let args: string[];
  if (kind === 'null') {
    args = [...prof, '--import', 'tsx', join(REPO_DIR, 'bench', 'null-fuse.ts'), mnt];
  } else {
    const dta = join(base, 'dta');
    const mta = join(base, 'mta');
    mkdirSync(dta);
    mkdirSync(mta);
    const cfg = join(base, 'lessfs.cfg');
    writeFileSync(cfg, `BLOCKDATA_PATH=${dta}\nMETA_PATH=${mta}\nBLKSIZE=131072\nCOMPRESSION=none\nCACHESIZE=128\nCOMMIT_INTERVAL=30\nDEBUG=${process.env.LESSFS_DEBUG ?? 0}\nLISTEN_PORT=0\n`);
    run(process.execPath, [join(REPO_DIR, 'bin', 'mklessfs.js'), '-f', '-c', cfg]);
    // As the fuse section starts it (node bin/lessfs.js: the shebang's flags do not apply).
    args = [...prof, join(REPO_DIR, 'bin', 'lessfs.js'), cfg, mnt, '-f'];
  }
  if (process.env.SERVER_NODE_FLAGS) args = [...process.env.SERVER_NODE_FLAGS.split(' '), ...args];
  const child = spawn(process.execPath, args, { cwd: REPO_DIR, stdio: ['ignore', 'inherit', 'inherit'] });
  const pid = child.pid as number;
  try {
    for (let i = 0; !mounted(mnt); i++) {
      if (i > 600) throw new Error('no mount within 60 s');
      await sleep(100);
    }
    await sleep(500);
    for (let r = 0; r < rounds; r++) {
      const dir = join(mnt, `many-${r}`);
      run('mkdir', [dir]);
      const perf = process.env.PERF_OUT ? spawn('perf', ['record', '-q', ...(process.env.PERF_G ? ['-g'] : []), ...(process.env.PERF_EVENT ? ['-e', process.env.PERF_EVENT] : []), process.env.PERF_ALL ? '-p' : '-t', String(pid), '-o', `${process.env.PERF_OUT}.${r}`], { stdio: 'inherit' }) : undefined;
      const strace = process.env.STRACE_OUT ? spawn('strace', ['-c', '-f', '-p', String(pid), '-o', `${process.env.STRACE_OUT}.${r}`], { stdio: 'inherit' }) : undefined;
      if (perf || strace) await sleep(300);
      const before = threads(pid);
      const t0 = performance.now();
      const out = run(process.execPath, [...withLessfsNodeFlags(['--import', 'tsx']), join(REPO_DIR, 'bench', 'fuse-creates-child.ts'), JSON.stringify({ dir, count, sizeBytes: 4096, concurrency: 4 })]);
      const wallMs = performance.now() - t0;
      const after = threads(pid);
      if (strace) {
        strace.kill('SIGINT');
        await new Promise((res) => strace.on('exit', res));
      }
      if (perf) {
        perf.kill('SIGINT');
        await new Promise((res) => perf.on('exit', res));
      }
      const res = JSON.parse(out.split('\n').find((l) => l.startsWith('RESULT '))!.slice(7)) as { ms: number };
      const rows: string[] = [];
      let totU = 0;
      let totS = 0;
      for (const [tid, a] of after) {
        const b = before.get(tid) ?? { utime: 0, stime: 0, minflt: 0 };
        const du = a.utime - b.utime;
        const ds = a.stime - b.stime;
        totU += du;
        totS += ds;
        if (du + ds > 0) rows.push(`  ${tid === pid ? 'main' : a.name.padEnd(15)} ${tid}: user ${((du * TICK_S * 1e6) / count).toFixed(1)} µs/file, sys ${((ds * TICK_S * 1e6) / count).toFixed(1)} µs/file, ${((a.minflt - b.minflt) / count).toFixed(2)} minor faults/file`);
      }
      const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
      console.log(`${kind} round ${r + 1}: ${count} files in ${res.ms.toFixed(0)} ms = ${((count * 1000) / res.ms).toFixed(0)}/s (child wall ${wallMs.toFixed(0)} ms, load ${load})`);
      console.log(`  all threads: user ${((totU * TICK_S * 1e6) / count).toFixed(1)} µs/file, sys ${((totS * TICK_S * 1e6) / count).toFixed(1)} µs/file`);
      for (const row of rows) console.log(row);
    }
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.on('exit', r));
    if (mounted(mnt)) spawnSync('fusermount', ['-uz', mnt]);
    rmSync(base, { recursive: true, force: true });
  }
}

await main();
