// lessfs-sim: run seeded simulations of a master/slave cluster under faults,
// campaigns over seed ranges, replay of failure capsules, determinism checks.

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  FAULT_PROFILES,
  isFaultProfile,
  isSimMode,
  OPS_DEFAULT,
  OPS_MAX,
  reproduceCommand,
  runSimulation,
  SIM_MODES,
  simOptions,
  type SimOptions,
  type SimResult,
} from '../sim/campaign.ts';
import { loadTrace, TraceError, type ConvertedTrace } from '../sim/trace.ts';
import { replayTrace, traceOpsToReplay, traceReproduceCommand, type TraceReplay, type TraceReplayOptions } from '../sim/trace-replay.ts';
import { CliError, EXIT_OK, EXIT_RUNTIME, parseCommandLine, UsageError, type Command } from './common.ts';

const usage = `Usage:
  lessfs-sim run --seed S [--ops N] [--faults PROFILE] [--mode live|batch] [--capsule-dir DIR]
  lessfs-sim run --seeds A..B [--ops N] [--faults PROFILE] [--mode live|batch] [--capsule-dir DIR]
  lessfs-sim replay CAPSULE
  lessfs-sim check-determinism --seeds A..B [--ops N] [--faults PROFILE] [--mode live|batch]
  lessfs-sim replay-trace FILE [--seed S] [--ops N] [--faults PROFILE] [--mode live|batch] [--capsule-dir DIR]

Deterministic simulation of a lessfs master and slave on one virtual clock: a
seeded workload on the master, checked against a reference model, under the
faults of a profile. The same seed and options always give the same run (the
same trace hash).

  --seed S          run one seed (an integer >= 0)
  --seeds A..B      a campaign over seeds A to B inclusive: progress on stderr,
                    a summary table, the failing seeds
  --ops N           workload operations per seed (default ${OPS_DEFAULT}, at most ${OPS_MAX})
  --faults PROFILE  ${FAULT_PROFILES.join(' | ')} (default none):
                      none   no faults
                      net    bit flips, resets, stalls, split chunks, slow links,
                             partitions and holds (batch: files cut, bit-flipped,
                             late and out of order, duplicated)
                      power  kill -9 and power loss of master, slave or both at
                             seeded scheduler steps (batch: the slave, mid-scan)
                      disk   torn and reordered unsynced writes at power loss
                             (with power losses, so they happen)
                      all    net + power + disk
                      swarm  each seed switches each fault kind on or off and
                             draws its strength (swarm testing)
  --mode MODE       ${SIM_MODES.join(' | ')} replication (default live)
  --capsule-dir DIR where failure capsules are written (default: the current directory)
  -h, --help        show this help

On a failure lessfs-sim prints the one command that reproduces it and writes a
failure capsule lessfs-sim-failure-SEED.json (seed, options, code commit,
problems, trace hash); \`lessfs-sim replay CAPSULE\` reruns it exactly and says
whether the same problems and trace hash came out.

check-determinism runs each seed twice and compares trace hashes; on a mismatch
it names the seed and the first trace event where the runs diverge.

replay-trace runs the operations of a FUSE trace (recorded by lessfs --trace
FILE or TRACE_FILE) as the workload, at the trace's BLKSIZE, under the faults
the seed (default 0) draws from PROFILE; --ops N replays the first N. Ops a
master fault loses are reissued, so a passing run ends with the recorded tree.
Same report as run; a failure capsule holds the trace (replay CAPSULE reruns it).

Not yet available: --shrink (schedule shrinking), --config CFG.

Exit status: run and replay-trace: 0 every seed passed, 1 an invariant failed
(replay-trace: or a bad trace); replay: 0 the rerun
matches the capsule exactly, 1 it differs; check-determinism: 0 all equal, 1 a
mismatch; 2 usage error.
`;

/** A campaign's bound on seeds (each seed is a full simulation). */
const SEEDS_MAX = 1_000_000;
const CAPSULE_FORMAT = 'lessfs-sim-capsule/1';

export interface Capsule {
  format: string;
  seed: number;
  options: SimOptions;
  commit: string;
  command: string;
  problems: string[];
  traceHash: string;
  /** replay-trace failures: the trace, so the capsule replays without the file. */
  trace?: CapsuleTrace;
}

export interface CapsuleTrace {
  file: string;
  /** --ops of the replay (undefined: the whole trace). */
  ops?: number;
  /** The trace's lines (header, operations, marker). */
  lines: string[];
}

function parseSeed(s: string): number {
  if (!/^\d+$/.test(s)) throw new UsageError(`bad seed '${s}' (expected an integer >= 0)`);
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new UsageError(`seed '${s}' is too large`);
  return n;
}

export function parseSeedRange(s: string): { first: number; last: number } {
  const m = /^(\d+)\.\.(\d+)$/.exec(s);
  if (!m) throw new UsageError(`bad seed range '${s}' (expected A..B, e.g. 1..100)`);
  const first = parseSeed(m[1]);
  const last = parseSeed(m[2]);
  if (last < first) throw new UsageError(`bad seed range '${s}': ${last} < ${first}`);
  if (last - first + 1 > SEEDS_MAX) throw new UsageError(`seed range '${s}' has more than ${SEEDS_MAX} seeds`);
  return { first, last };
}

interface CommonOptions {
  ops: number;
  faults: SimOptions['faults'];
  mode: SimOptions['mode'];
  breakInvariant: boolean;
}

function commonOptions(values: { ops?: string; faults?: string; mode?: string; 'test-break-invariant'?: boolean }): CommonOptions {
  let ops = OPS_DEFAULT;
  if (values.ops !== undefined) {
    if (!/^\d+$/.test(values.ops) || Number(values.ops) < 1 || Number(values.ops) > OPS_MAX) throw new UsageError(`bad --ops '${values.ops}' (expected an integer in 1..${OPS_MAX})`);
    ops = Number(values.ops);
  }
  const faults = values.faults ?? 'none';
  if (!isFaultProfile(faults)) throw new UsageError(`unknown fault profile '${faults}' (expected one of: ${FAULT_PROFILES.join(', ')})`);
  const mode = values.mode ?? 'live';
  if (!isSimMode(mode)) throw new UsageError(`unknown mode '${mode}' (expected one of: ${SIM_MODES.join(', ')})`);
  return { ops, faults, mode, breakInvariant: values['test-break-invariant'] === true };
}

function optionsFor(seed: number, c: CommonOptions): SimOptions {
  return simOptions({ seed, ops: c.ops, faults: c.faults, mode: c.mode, breakInvariant: c.breakInvariant });
}

/** The commit of the code that ran, or "unknown" outside a git checkout (git missing or not a repository is not an error here). */
function codeCommit(): string {
  const repoDir = fileURLToPath(new URL('../..', import.meta.url));
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], { cwd: repoDir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).trim();
  } catch (err) {
    // The capsule still reproduces from seed and options; the commit is a hint.
    void err;
    return 'unknown';
  }
}

function seconds(ms: number): string {
  return (ms / 1000).toFixed(2);
}

function out(s: string): void {
  process.stdout.write(s);
}

function formatProblems(problems: string[], max = 5): string {
  const lines: string[] = [];
  for (const p of problems.slice(0, max)) {
    const ls = p.split('\n');
    lines.push(`  - ${ls.slice(0, 12).join('\n    ')}${ls.length > 12 ? `\n    … (${ls.length - 12} more lines)` : ''}`);
  }
  if (problems.length > max) lines.push(`  … and ${problems.length - max} more problems`);
  return `${lines.join('\n')}\n`;
}

function writeCapsule(r: SimResult, dir: string, replayed?: { command: string; trace: CapsuleTrace }): string {
  const capsule: Capsule = {
    format: CAPSULE_FORMAT,
    seed: r.seed,
    options: r.options,
    commit: codeCommit(),
    command: replayed?.command ?? reproduceCommand(r.options),
    problems: r.problems,
    traceHash: r.traceHash,
    ...(replayed ? { trace: replayed.trace } : {}),
  };
  const path = join(dir, `lessfs-sim-failure-${replayed ? 'trace-' : ''}${r.seed}.json`);
  try {
    writeFileSync(path, `${JSON.stringify(capsule, null, 2)}\n`);
  } catch (err) {
    throw new CliError(`cannot write the failure capsule ${path}: ${(err as Error).message}`);
  }
  return path;
}

function printRun(r: SimResult): void {
  const o = r.options;
  out(`lessfs-sim: seed ${o.seed}, ${o.mode} mode, faults ${o.faults}, ${o.ops} ops${o.breakInvariant ? ' (test: invariant broken on purpose)' : ''}\n`);
  out('faults injected:\n');
  const keys = Object.keys(r.faultsInjected);
  if (keys.length === 0) out('  (none)\n');
  const width = Math.max(0, ...keys.map((k) => k.length));
  for (const k of keys) out(`  ${k.padEnd(width)}  ${r.faultsInjected[k]}\n`);
  out('invariants checked:\n');
  for (const i of r.invariantsChecked) out(`  - ${i}\n`);
  const opsPerS = r.wallMs > 0 ? Math.round((r.ops * 1000) / r.wallMs) : 0;
  const speedup = r.wallMs > 0 ? (r.simulatedMs / r.wallMs).toFixed(0) : '-';
  out(`operations:     ${r.ops}\n`);
  out(`trace hash:     ${r.traceHash}\n`);
  out(`simulated time: ${seconds(r.simulatedMs)} s\n`);
  out(`wall time:      ${seconds(r.wallMs)} s (${opsPerS} sim ops/s, ${speedup}x real time)\n`);
  if (r.ok) out('result: OK\n');
  else out(`result: FAILED (${r.problems.length} problems)\n${formatProblems(r.problems)}`);
}

function reportFailure(r: SimResult, capsuleDir: string): void {
  const path = writeCapsule(r, capsuleDir);
  out(`reproduce: ${reproduceCommand(r.options)}\n`);
  out(`failure capsule: ${path}\n`);
}

async function runOne(seed: number, c: CommonOptions, capsuleDir: string): Promise<number> {
  const r = await runSimulation(optionsFor(seed, c));
  printRun(r);
  if (r.ok) return EXIT_OK;
  reportFailure(r, capsuleDir);
  return EXIT_RUNTIME;
}

function progress(done: number, total: number, failed: number, tty: boolean): void {
  if (tty) {
    const width = 30;
    const filled = Math.round((done / total) * width);
    process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} seeds, ${failed} failed`);
    if (done === total) process.stderr.write('\n');
  } else if (done % 10 === 0 || done === total) {
    process.stderr.write(`lessfs-sim: ${done}/${total} seeds, ${failed} failed\n`);
  }
}

async function runCampaign(first: number, last: number, c: CommonOptions, capsuleDir: string): Promise<number> {
  const total = last - first + 1;
  const tty = process.stderr.isTTY === true;
  const failed: SimResult[] = [];
  let ops = 0;
  let simulatedMs = 0;
  const wallStart = performance.now();
  for (let seed = first; seed <= last; seed++) {
    const r = await runSimulation(optionsFor(seed, c));
    ops += r.ops;
    simulatedMs += r.simulatedMs;
    if (!r.ok) failed.push(r);
    progress(seed - first + 1, total, failed.length, tty);
  }
  const wallMs = performance.now() - wallStart;
  const rows: Array<[string, string]> = [
    ['seeds run', String(total)],
    ['failed', String(failed.length)],
    ['ops', String(ops)],
    ['simulated seconds', seconds(simulatedMs)],
    ['wall seconds', seconds(wallMs)],
    ['sim ops per wall second', wallMs > 0 ? String(Math.round((ops * 1000) / wallMs)) : '-'],
    ['simulated / wall time', wallMs > 0 ? `${(simulatedMs / wallMs).toFixed(0)}x` : '-'],
    ['seeds per minute', wallMs > 0 ? ((total * 60_000) / wallMs).toFixed(1) : '-'],
  ];
  out(`lessfs-sim campaign: seeds ${first}..${last}, ${c.mode} mode, faults ${c.faults}, ${c.ops} ops each\n`);
  for (const [k, v] of rows) out(`  ${k.padEnd(24)} ${v}\n`);
  if (failed.length === 0) {
    out('all seeds passed\n');
    return EXIT_OK;
  }
  out(`failing seeds: ${failed.map((r) => r.seed).join(', ')}\n`);
  for (const r of failed) {
    out(`seed ${r.seed}: ${r.problems.length} problems, first: ${r.problems[0].split('\n')[0]}\n`);
    reportFailure(r, capsuleDir);
  }
  return EXIT_RUNTIME;
}

function readCapsule(path: string): Capsule {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read capsule ${path}: ${(err as Error).message}`);
  }
  let c: Capsule;
  try {
    c = JSON.parse(text) as Capsule;
  } catch (err) {
    throw new CliError(`capsule ${path} is not JSON: ${(err as Error).message}`);
  }
  if (c?.format !== CAPSULE_FORMAT) throw new CliError(`capsule ${path}: format is ${JSON.stringify(c?.format)}, expected ${CAPSULE_FORMAT}`);
  if (typeof c.traceHash !== 'string' || !Array.isArray(c.problems) || typeof c.options !== 'object') throw new CliError(`capsule ${path}: missing options, problems or traceHash`);
  const t = c.trace;
  if (t !== undefined && (typeof t.file !== 'string' || !Array.isArray(t.lines) || !t.lines.every((l) => typeof l === 'string') || (t.ops !== undefined && !Number.isSafeInteger(t.ops)))) {
    throw new CliError(`capsule ${path}: trace: expected { file, lines: [strings], ops?: integer }`);
  }
  return c;
}

async function replay(path: string): Promise<number> {
  const c = readCapsule(path);
  let options: SimOptions;
  try {
    options = simOptions(c.options);
  } catch (err) {
    throw new CliError(`capsule ${path}: bad options: ${(err as Error).message}`);
  }
  const now = codeCommit();
  if (c.commit !== now) out(`note: the capsule was written by commit ${c.commit}, this code is ${now}\n`);
  const r = c.trace ? (await replayCapsuleTrace(c.trace, options, path)).result : await runSimulation(options);
  printRun(r);
  const sameHash = r.traceHash === c.traceHash;
  const sameProblems = JSON.stringify(r.problems) === JSON.stringify(c.problems);
  out(`trace hash: ${sameHash ? 'same' : `DIFFERENT (capsule ${c.traceHash}, now ${r.traceHash})`}\n`);
  out(`problems:   ${sameProblems ? 'same' : `DIFFERENT (capsule ${c.problems.length}, now ${r.problems.length})`}\n`);
  if (sameHash && sameProblems) {
    out('replay: reproduced exactly\n');
    return EXIT_OK;
  }
  out(r.ok ? 'replay: the failure no longer happens\n' : 'replay: the run differs from the capsule\n');
  return EXIT_RUNTIME;
}

function loadTraceText(text: string, file: string): ConvertedTrace {
  try {
    return loadTrace(text, file);
  } catch (err) {
    if (err instanceof TraceError) throw new CliError(err.message);
    throw err;
  }
}

/** Rerun a capsule's trace replay. */
function replayCapsuleTrace(t: CapsuleTrace, options: SimOptions, path: string): Promise<TraceReplay> {
  const trace = loadTraceText(`${t.lines.join('\n')}\n`, `${path} (trace ${t.file})`);
  return replayTrace(trace, { seed: options.seed, faults: options.faults, mode: options.mode, ops: t.ops, breakInvariant: options.breakInvariant });
}

function printTrace(t: ConvertedTrace): void {
  const skipped = Object.values(t.skipped).reduce((a, b) => a + b, 0);
  out(`trace: ${t.name} (BLKSIZE ${t.blockSizeBytes}): ${t.recordedOps} operations recorded: ${t.ops.length} to replay, ${t.handleOps} open/release, ${skipped} skipped\n`);
  for (const [why, n] of Object.entries(t.skipped).sort(([a], [b]) => (a < b ? -1 : 1))) out(`  skipped ${n}: ${why}\n`);
  for (const w of t.warnings) out(`warning: ${w}\n`);
}

async function replayTraceFile(file: string, o: TraceReplayOptions, capsuleDir: string): Promise<number> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read trace ${file}: ${(err as Error).message}`);
  }
  const trace = loadTraceText(text, file);
  try {
    traceOpsToReplay(trace, o.ops);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  printTrace(trace);
  const { result: r, workload } = await replayTrace(trace, o);
  if (workload.rewinds > 0) out(`trace replay: ${workload.reissued} lost operations reissued after ${workload.rewinds} master faults\n`);
  printRun(r);
  if (r.ok) return EXIT_OK;
  const command = traceReproduceCommand(file, o);
  const path = writeCapsule(r, capsuleDir, { command, trace: { file, ops: o.ops, lines: trace.lines } });
  out(`reproduce: ${command}\n`);
  out(`failure capsule: ${path} (self-contained: lessfs-sim replay ${path})\n`);
  return EXIT_RUNTIME;
}

async function checkDeterminism(first: number, last: number, c: CommonOptions): Promise<number> {
  const total = last - first + 1;
  const tty = process.stderr.isTTY === true;
  for (let seed = first; seed <= last; seed++) {
    const o = optionsFor(seed, c);
    const a = await runSimulation(o);
    const b = await runSimulation(o);
    if (a.traceHash !== b.traceHash) {
      if (tty) process.stderr.write('\n');
      out(`check-determinism: seed ${seed} is not deterministic: trace hash ${a.traceHash} then ${b.traceHash}\n`);
      // Run twice more recording the traces, to name the first divergent event.
      const la: string[] = [];
      const lb: string[] = [];
      await runSimulation(o, { traceLine: (l) => la.push(l) });
      await runSimulation(o, { traceLine: (l) => lb.push(l) });
      let i = 0;
      while (i < la.length && i < lb.length && la[i] === lb[i]) i++;
      out(`first divergent event #${i}:\n  run 1: ${la[i] ?? '(end of trace)'}\n  run 2: ${lb[i] ?? '(end of trace)'}\n`);
      out(`reproduce: ${reproduceCommand(o)}\n`);
      return EXIT_RUNTIME;
    }
    progress(seed - first + 1, total, 0, tty);
  }
  out(`check-determinism: seeds ${first}..${last} (${c.mode} mode, faults ${c.faults}, ${c.ops} ops): every trace hash equal on rerun\n`);
  return EXIT_OK;
}

export const lessfsSim: Command = {
  name: 'lessfs-sim',
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandLine(argv, {
      options: {
        seed: { type: 'string' },
        seeds: { type: 'string' },
        ops: { type: 'string' },
        faults: { type: 'string' },
        mode: { type: 'string' },
        'capsule-dir': { type: 'string' },
        // Test-only: makes the run fail on purpose (see SimOptions.breakInvariant).
        'test-break-invariant': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      out(usage);
      return EXIT_OK;
    }
    const [sub, ...rest] = positionals;
    if (sub === undefined) throw new UsageError('no command given (expected run, replay, check-determinism or replay-trace)');
    const capsuleDir = values['capsule-dir'] ?? process.cwd();
    switch (sub) {
      case 'run': {
        if (rest.length > 0) throw new UsageError(`unexpected argument '${rest[0]}'`);
        const c = commonOptions(values);
        if (values.seed !== undefined && values.seeds !== undefined) throw new UsageError('give --seed or --seeds, not both');
        if (values.seed !== undefined) return runOne(parseSeed(values.seed), c, capsuleDir);
        if (values.seeds !== undefined) {
          const { first, last } = parseSeedRange(values.seeds);
          return runCampaign(first, last, c, capsuleDir);
        }
        throw new UsageError('run needs --seed S or --seeds A..B');
      }
      case 'replay': {
        if (rest.length !== 1) throw new UsageError('replay needs exactly one CAPSULE file');
        for (const k of ['seed', 'seeds', 'ops', 'faults', 'mode', 'capsule-dir', 'test-break-invariant'] as const) {
          if (values[k] !== undefined) throw new UsageError(`replay takes everything from the capsule: --${k} is not allowed`);
        }
        return replay(rest[0]);
      }
      case 'check-determinism': {
        if (rest.length > 0) throw new UsageError(`unexpected argument '${rest[0]}'`);
        if (values.seeds === undefined) throw new UsageError('check-determinism needs --seeds A..B');
        const { first, last } = parseSeedRange(values.seeds);
        return checkDeterminism(first, last, commonOptions(values));
      }
      case 'replay-trace': {
        if (rest.length !== 1) throw new UsageError('replay-trace needs exactly one trace FILE');
        if (values.seeds !== undefined) throw new UsageError('replay-trace runs one seed: give --seed S, not --seeds');
        const c = commonOptions({ ...values, ops: undefined });
        if (values.ops !== undefined && !/^\d+$/.test(values.ops)) throw new UsageError(`bad --ops '${values.ops}' (expected an integer >= 0)`);
        const o: TraceReplayOptions = { seed: values.seed === undefined ? 0 : parseSeed(values.seed), faults: c.faults, mode: c.mode };
        if (values.ops !== undefined) o.ops = Number(values.ops);
        if (c.breakInvariant) o.breakInvariant = true;
        return replayTraceFile(rest[0], o, capsuleDir);
      }
      default:
        throw new UsageError(`unknown command '${sub}' (expected run, replay, check-determinism or replay-trace)`);
    }
  },
};

// The launcher (bin/lessfs-sim.js) looks the command up by its name.
export { lessfsSim as 'lessfs-sim' };
