// lessfs-sim: run seeded simulations of a master/slave cluster under faults,
// campaigns over seed ranges, replay and shrinking of failure capsules,
// determinism checks. Subcommands are entries of SUBCOMMANDS: each names the
// options it takes and runs with the parsed command line.

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../core/errors.ts';
import { CODEC_IDS } from '../core/fs/options.ts';
import type { EngineOptions } from '../core/fs/types.ts';
import {
  executeSchedule,
  FAULT_PROFILES,
  isFaultProfile,
  isSimMode,
  OPS_DEFAULT,
  OPS_MAX,
  problemKind,
  reproduceCommand,
  runConfig,
  runSimulation,
  SIM_MODES,
  simOptions,
  type SimOptions,
  type SimResult,
} from '../sim/campaign.ts';
import { describeSteps, ScheduleError, validateSchedule, type Schedule } from '../sim/schedule.ts';
import { SHRINK_BUDGET_DEFAULT, shrinkSchedule } from '../sim/shrink.ts';
import { loadTrace, TraceError, type ConvertedTrace } from '../sim/trace.ts';
import { traceSchedule, traceReproduceCommand, type TraceReplayOptions } from '../sim/trace-replay.ts';
import { describeIgnored } from '../sim/sim-config.ts';
import { jobsFor, runSeeds, runTwice, type SeedOutcome } from '../sim/parallel.ts';
import { BUGGIFY_SITES, type BuggifySite } from '../core/buggify.ts';
import { CliError, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, fileErrorReason, parseCommandLine, UsageError, type Command } from './common.ts';

/** The buggify sites for the usage text, a few per line. */
function siteLines(): string {
  const names = Object.keys(BUGGIFY_SITES);
  const lines: string[] = [];
  for (let i = 0; i < names.length; i += 3) lines.push(`                      ${names.slice(i, i + 3).join(', ')}`);
  return lines.join('\n');
}

const usage = `Usage:
  lessfs-sim run --seed S [--ops N] [--faults PROFILE] [--mode live|batch] [--config CFG]
                 [--buggify on|off] [--buggify-sites LIST]
                 [--capsule-dir DIR] [--shrink [--shrink-budget N]]
  lessfs-sim run --seeds A..B [--jobs N|auto] [same options]
  lessfs-sim replay CAPSULE [--shrink [--shrink-budget N]] [--capsule-dir DIR]
  lessfs-sim check-determinism --seeds A..B [--jobs N|auto] [--ops N] [--faults PROFILE] [--mode live|batch] [--config CFG]
                 [--buggify on|off] [--buggify-sites LIST]
  lessfs-sim replay-trace FILE [--seed S] [--ops N] [--faults PROFILE] [--mode live|batch] [--config CFG]
                 [--buggify on|off] [--buggify-sites LIST]
                 [--capsule-dir DIR] [--shrink [--shrink-budget N]]

Deterministic simulation of a lessfs master and slave on one virtual clock: a
seed yields a schedule (the faults of a profile, workload operations on the
master checked against a reference model, idle times, link cuts, node faults,
batch rotations and shipping), and the run executes it. The same seed and
options always give the same run (the same trace hash).

  --seed S          run one seed (an integer >= 0)
  --seeds A..B      a campaign over seeds A to B inclusive: progress on stderr,
                    a summary table, the failing seeds
  --jobs N|auto     run the seeds of --seeds (run, check-determinism) in N
                    worker threads (auto: one per core; default 1); a seed is
                    the same run in any thread
  --ops N           workload operations per seed (default ${OPS_DEFAULT}, at most ${OPS_MAX})
  --faults PROFILE  ${FAULT_PROFILES.join(' | ')} (default none):
                      none   no faults
                      net    bit flips, resets, stalls, split chunks, slow links,
                             partitions and holds (batch: files cut, bit-flipped,
                             late and out of order, duplicated); replication
                             turned off and on at either node
                      power  kill -9 and power loss of master, slave or both at
                             seeded scheduler steps (batch: the slave also mid-scan)
                      disk   torn and reordered unsynced writes at power loss
                             (with power losses, so they happen); the master's
                             or the slave's disk full, or failing writes with
                             EIO, for a few operations
                      all    net + power + disk
                      swarm  each seed switches each fault kind on or off and
                             draws its strength (swarm testing)
  --mode MODE       ${SIM_MODES.join(' | ')} replication (default live)
  --config CFG      both nodes take BLKSIZE, HASHNAME, COMPRESSION, DEDUPLICATION,
                    CACHESIZE, COMMIT_INTERVAL, SYNC_RELAX (and REPLICATION_SECRET,
                    MAX_BACKLOG_SIZE live; ROTATE_REPLOG_SIZE, ROTATE_REPLOG_INTERVAL
                    batch) from this lessfs.cfg; other keys are listed as ignored
  --buggify on|off  rare-path hooks inside core (short writes, slow commits,
                    rotations at awkward moments, dropped connections...):
                    each node switches each site on or off per seed; default
                    on for all, drawn per seed for swarm, off otherwise
  --buggify-sites LIST  buggify on with exactly these sites, comma-separated:
${siteLines()}
  --capsule-dir DIR where failure capsules are written (default: the current directory)
  --shrink          on a failure, shrink the schedule (delta debugging) to a small
                    one that still fails with a problem of the same kind
  --shrink-budget N at most N simulation runs for shrinking (default ${SHRINK_BUDGET_DEFAULT})
  -h, --help        show this help

On a failure lessfs-sim writes a failure capsule lessfs-sim-failure-SEED.json
(seed, options, config text, code commit, problems, trace hash and the schedule,
shrunk with --shrink) and prints the one command that reproduces it:
\`lessfs-sim replay CAPSULE\` executes the capsule's schedule exactly and says
whether the same problems and trace hash came out. replay --shrink writes the
shrunk capsule as NAME-shrunk.json (NAME: the capsule's file name) into
--capsule-dir (default: the current directory).

check-determinism runs each seed twice (the second time from its schedule
serialised to JSON) and compares trace hashes; on a mismatch it names the seed
and the first trace event where the runs diverge.

replay-trace runs the operations of a FUSE trace (recorded by lessfs --trace
FILE or TRACE_FILE) as the workload, at the trace's BLKSIZE: the seed's
(default 0) schedule for that many operations, its op steps replaced in order
by the trace's and a final commit (its faults, cuts, checks, rotations and idle
times kept); --ops N replays the first N. A master crash or power loss loses
the operations after the master's last durable commit and the run goes on from
the recovered tree, so only a run without master faults ends with the recorded
tree. Same report as run; a failure capsule lessfs-sim-failure-trace-SEED.json
holds the schedule with the trace's operations (replay CAPSULE reruns it
without the trace file; --shrink shrinks it).

Exit status: run and replay-trace: 0 every seed passed, 1 an invariant failed
(replay-trace: or a bad trace); replay: 0 the rerun matches the capsule
exactly, 1 it differs; check-determinism: 0 all equal, 1 a mismatch; 2 usage
error, bad config or bad capsule.
`;

/** A campaign's bound on seeds (each seed is a full simulation). */
const SEEDS_MAX = 1_000_000;
const SHRINK_BUDGET_MAX = 100_000;
export const CAPSULE_FORMAT = 'lessfs-sim-capsule/2';

export interface Capsule {
  format: string;
  seed: number;
  options: SimOptions;
  commit: string;
  /** The command that regenerates the (unshrunk) schedule from the seed. */
  command: string;
  problems: string[];
  traceHash: string;
  /** Present when the schedule was shrunk. */
  shrunk?: { fromSteps: number; runs: number; kind: string };
  schedule: Schedule;
}

/** Bad input other than the command line (a config, a capsule): message only, exit 2. */
class InputError extends Error {
  readonly code = 'EINPUT';
}

// ------------------------------------------------------------------ options

const OPTIONS = {
  seed: { type: 'string' },
  seeds: { type: 'string' },
  ops: { type: 'string' },
  faults: { type: 'string' },
  mode: { type: 'string' },
  config: { type: 'string' },
  buggify: { type: 'string' },
  'buggify-sites': { type: 'string' },
  'capsule-dir': { type: 'string' },
  jobs: { type: 'string' },
  shrink: { type: 'boolean' },
  'shrink-budget': { type: 'string' },
  // Test-only: makes the run fail on purpose (see SimOptions.breakInvariant).
  'test-break-invariant': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

type OptionName = Exclude<keyof typeof OPTIONS, 'help'>;
type Values = Partial<Record<OptionName, string | boolean>>;

function str(v: Values, k: OptionName): string | undefined {
  return v[k] as string | undefined;
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

/** Everything of a run but the seed. */
type CommonOptions = Omit<SimOptions, 'seed'>;

function commonOptions(v: Values): CommonOptions {
  let ops = OPS_DEFAULT;
  const opsText = str(v, 'ops');
  if (opsText !== undefined) {
    if (!/^\d+$/.test(opsText) || Number(opsText) < 1 || Number(opsText) > OPS_MAX) throw new UsageError(`bad --ops '${opsText}' (expected an integer in 1..${OPS_MAX})`);
    ops = Number(opsText);
  }
  const faults = str(v, 'faults') ?? 'none';
  if (!isFaultProfile(faults)) throw new UsageError(`unknown fault profile '${faults}' (expected one of: ${FAULT_PROFILES.join(', ')})`);
  const mode = str(v, 'mode') ?? 'live';
  if (!isSimMode(mode)) throw new UsageError(`unknown mode '${mode}' (expected one of: ${SIM_MODES.join(', ')})`);
  const out: CommonOptions = { ops, faults, mode };
  if (v['test-break-invariant'] === true) out.breakInvariant = true;
  const buggify = str(v, 'buggify');
  if (buggify !== undefined) {
    if (buggify !== 'on' && buggify !== 'off') throw new UsageError(`bad --buggify '${buggify}' (expected on or off)`);
    out.buggify = buggify === 'on';
  }
  const sites = str(v, 'buggify-sites');
  if (sites !== undefined) {
    if (out.buggify === false) throw new UsageError('--buggify-sites turns buggify on: it cannot go with --buggify off');
    out.buggifySites = sites.split(',').map((x) => {
      if (!(x in BUGGIFY_SITES)) throw new UsageError(`unknown buggify site '${x}' in --buggify-sites (expected some of: ${Object.keys(BUGGIFY_SITES).join(', ')})`);
      return x as BuggifySite;
    });
  }
  const configPath = str(v, 'config');
  if (configPath !== undefined) {
    let text: string;
    try {
      text = readFileSync(configPath, 'utf8');
    } catch (err) {
      throw new InputError(`cannot read --config ${configPath}: ${fileErrorReason(err)}`);
    }
    out.config = { name: configPath, text };
  }
  return out;
}

/** --jobs: worker threads for the seeds of --seeds (1 without it). */
function jobsOption(v: Values): number {
  const text = str(v, 'jobs');
  if (text === undefined) return 1;
  if (str(v, 'seeds') === undefined) throw new UsageError('--jobs runs the seeds of a campaign in parallel: it needs --seeds A..B');
  try {
    return jobsFor(text);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

interface ShrinkSettings {
  shrink: boolean;
  budget: number;
}

function shrinkSettings(v: Values): ShrinkSettings {
  const text = str(v, 'shrink-budget');
  if (text !== undefined && v.shrink !== true) throw new UsageError('--shrink-budget needs --shrink');
  let budget = SHRINK_BUDGET_DEFAULT;
  if (text !== undefined) {
    if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > SHRINK_BUDGET_MAX) throw new UsageError(`bad --shrink-budget '${text}' (expected an integer in 1..${SHRINK_BUDGET_MAX})`);
    budget = Number(text);
  }
  return { shrink: v.shrink === true, budget };
}

/**
 * Parse the options' config once up front (a bad file fails before any run)
 * and say on stderr, once, which of its keys the simulation ignores.
 */
function announceConfig(o: SimOptions): void {
  const cfg = runConfig(o);
  if (!cfg || !o.config) return;
  for (const w of cfg.warnings) process.stderr.write(`lessfs-sim: warning: ${w}\n`);
  if (cfg.ignored.length > 0) process.stderr.write(`lessfs-sim: ${o.config.name}: ignored in simulation: ${describeIgnored(cfg.ignored)}\n`);
}

// ------------------------------------------------------------------ output

/** The commit of the code that ran, or "unknown" outside a git checkout (git missing or not a repository is not an error here). */
function codeCommit(): string {
  const repoDir = fileURLToPath(new URL('../..', import.meta.url));
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], { cwd: repoDir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).trim();
  } catch (err) {
    // The capsule still replays from its schedule; the commit is a hint.
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

/** Engine settings as lessfs.cfg names them. */
function describeEngine(e: EngineOptions): string {
  const codec = Object.entries(CODEC_IDS).find(([, id]) => id === e.codec)?.[0] ?? `codec ${e.codec}`;
  const cache = e.cacheSizeBytes % (1024 * 1024) === 0 ? `${e.cacheSizeBytes / (1024 * 1024)} MiB` : `${e.cacheSizeBytes / 1024} KiB`;
  return `BLKSIZE ${e.blockSizeBytes}, HASHNAME ${e.hashName}, COMPRESSION ${codec}, DEDUPLICATION ${e.deduplication ? 'on' : 'off'}, CACHESIZE ${cache}, commit interval ${e.commitIntervalMs} ms, SYNC_RELAX ${e.syncRelax}`;
}

function printRun(r: SimResult): void {
  const o = r.options;
  out(`lessfs-sim: seed ${o.seed}, ${o.mode} mode, faults ${o.faults}, buggify ${o.buggifySites ? `sites ${o.buggifySites.join(',')}` : r.buggify ? 'on' : 'off'}, ${o.ops} ops${o.breakInvariant ? ' (test: invariant broken on purpose)' : ''}\n`);
  const cfg = runConfig(o);
  if (o.config && cfg) out(`config:         ${o.config.name} (applied: ${cfg.applied.join(', ') || 'nothing'})\n`);
  if (r.engine) out(`nodes:          ${describeEngine(r.engine)}\n`);
  out(`schedule:       ${r.schedule.steps.length} steps (${describeSteps(r.schedule.steps)})\n`);
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

function writeCapsule(r: SimResult, path: string, shrunk: Capsule['shrunk'], command: string): void {
  const capsule: Capsule = {
    format: CAPSULE_FORMAT,
    seed: r.seed,
    options: r.options,
    commit: codeCommit(),
    command,
    problems: r.problems,
    traceHash: r.traceHash,
    ...(shrunk ? { shrunk } : {}),
    schedule: r.schedule,
  };
  try {
    writeFileSync(path, `${JSON.stringify(capsule, null, 2)}\n`);
  } catch (err) {
    throw new InputError(`cannot write the failure capsule ${path}: ${(err as Error).message}`);
  }
}

/** Shrink a failed run's schedule within the budget, with progress on stderr. */
async function shrink(r: SimResult, budget: number): Promise<{ result: SimResult; shrunk: NonNullable<Capsule['shrunk']> }> {
  const tty = process.stderr.isTTY === true;
  const kind = problemKind(r.problems[0]);
  process.stderr.write(`lessfs-sim: shrinking seed ${r.seed}'s ${r.schedule.steps.length} steps, keeping a failure of kind "${kind}" (budget ${budget} runs)\n`);
  const s = await shrinkSchedule(r.options, r, {
    budget,
    progress: (p) => {
      const line = `shrink: run ${p.runs}/${p.budget}, ${p.phase}: ${p.steps} steps`;
      if (tty) process.stderr.write(`\r${line}   `);
      else if (p.runs % 10 === 0) process.stderr.write(`${line}\n`);
    },
  });
  if (tty) process.stderr.write('\n');
  out(`shrunk: ${s.originalSteps} steps -> ${s.schedule.steps.length} steps (${describeSteps(s.schedule.steps)}) in ${s.runs} runs${s.exhausted ? ' (budget exhausted: it may shrink further with a larger --shrink-budget)' : ''}\n`);
  out(`shrunk run: ${s.result.problems.length} problems, trace hash ${s.result.traceHash}\n${formatProblems(s.result.problems, 3)}`);
  return { result: s.result, shrunk: { fromSteps: s.originalSteps, runs: s.runs, kind: s.kind } };
}

/**
 * Write the capsule of a failed run (shrunk first when asked) and print how to
 * reproduce it. `command` regenerates the unshrunk schedule (default: run's).
 */
async function reportFailure(r: SimResult, path: string, sh: ShrinkSettings, command = reproduceCommand(r.options)): Promise<void> {
  let result = r;
  let shrunk: Capsule['shrunk'];
  if (sh.shrink) ({ result, shrunk } = await shrink(r, sh.budget));
  writeCapsule(result, path, shrunk, command);
  out(`failure capsule: ${path}\n`);
  out(`reproduce: lessfs-sim replay ${path}\n`);
}

function capsulePath(dir: string, seed: number, suffix = '', prefix = ''): string {
  return join(dir, `lessfs-sim-failure-${prefix}${seed}${suffix}.json`);
}

// ------------------------------------------------------------------ run

async function runOne(o: SimOptions, capsuleDir: string, sh: ShrinkSettings): Promise<number> {
  const r = await runSimulation(o);
  printRun(r);
  if (r.ok) return EXIT_OK;
  await reportFailure(r, capsulePath(capsuleDir, r.seed), sh);
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

async function runCampaign(first: number, last: number, c: CommonOptions, jobs: number, capsuleDir: string, sh: ShrinkSettings): Promise<number> {
  const total = last - first + 1;
  const tty = process.stderr.isTTY === true;
  const failures: Array<{ outcome: SeedOutcome; result: SimResult | undefined }> = [];
  let ops = 0;
  let simulatedMs = 0;
  let done = 0;
  const wallStart = performance.now();
  await runSeeds(first, last, c, jobs, (o, result) => {
    ops += o.ops;
    simulatedMs += o.simulatedMs;
    if (!o.ok) failures.push({ outcome: o, result });
    progress(++done, total, failures.length, tty);
  });
  const wallMs = performance.now() - wallStart;
  failures.sort((a, b) => a.outcome.seed - b.outcome.seed);
  const rows: Array<[string, string]> = [
    ['seeds run', String(total)],
    ['failed', String(failures.length)],
    ['ops', String(ops)],
    ['simulated seconds', seconds(simulatedMs)],
    ['wall seconds', seconds(wallMs)],
    ['sim ops per wall second', wallMs > 0 ? String(Math.round((ops * 1000) / wallMs)) : '-'],
    ['simulated / wall time', wallMs > 0 ? `${(simulatedMs / wallMs).toFixed(0)}x` : '-'],
    ['seeds per minute', wallMs > 0 ? ((total * 60_000) / wallMs).toFixed(1) : '-'],
  ];
  out(`lessfs-sim campaign: seeds ${first}..${last}, ${c.mode} mode, faults ${c.faults}${c.buggifySites ? `, buggify sites ${c.buggifySites.join(',')}` : c.buggify === undefined ? '' : `, buggify ${c.buggify ? 'on' : 'off'}`}, ${c.ops} ops each${c.config ? `, config ${c.config.name}` : ''}${jobs > 1 ? `, ${jobs} worker threads` : ''}\n`);
  for (const [k, v] of rows) out(`  ${k.padEnd(24)} ${v}\n`);
  if (failures.length === 0) {
    out('all seeds passed\n');
    return EXIT_OK;
  }
  out(`failing seeds: ${failures.map((f) => f.outcome.seed).join(', ')}\n`);
  for (const { outcome, result } of failures) {
    out(`seed ${outcome.seed}: ${outcome.problems.length} problems, first: ${outcome.problems[0].split('\n')[0]}\n`);
    // A seed that failed in a worker thread runs again here for its capsule: the same run, so the same failure.
    const r = result ?? (await runSimulation({ ...c, seed: outcome.seed }));
    if (r.traceHash !== outcome.traceHash) {
      out(`seed ${outcome.seed}: NOT DETERMINISTIC: its rerun in the main thread gave trace hash ${r.traceHash}, the worker ${outcome.traceHash}${r.ok ? ' (and passed)' : ''}\n`);
    }
    if (!r.ok) await reportFailure(r, capsulePath(capsuleDir, r.seed), sh);
  }
  return EXIT_RUNTIME;
}

// ------------------------------------------------------------------ capsules

/** Read and check a capsule: every error names the file, the field and what was expected. */
export function readCapsule(path: string): Capsule {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new InputError(`cannot read capsule ${path}: ${fileErrorReason(err)}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new InputError(`capsule ${path} is not JSON: ${(err as Error).message}`);
  }
  const bad = (field: string, expected: string, got: unknown): never => {
    const shown = got === undefined ? 'missing' : `got ${JSON.stringify(got).slice(0, 60)}`;
    throw new InputError(`capsule ${path}: ${field}: ${shown}, expected ${expected}`);
  };
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return bad('(top level)', 'a JSON object', v);
  const c = v as Record<string, unknown>;
  if (c.format !== CAPSULE_FORMAT) {
    const hint = c.format === 'lessfs-sim-capsule/1' ? ' (a /1 capsule holds no schedule: rerun its "command" to get a new capsule)' : '';
    bad('format', `"${CAPSULE_FORMAT}"${hint}`, c.format);
  }
  if (typeof c.seed !== 'number' || !Number.isSafeInteger(c.seed) || c.seed < 0) bad('seed', 'an integer >= 0', c.seed);
  if (typeof c.commit !== 'string') bad('commit', 'a string (a git commit or "unknown")', c.commit);
  if (typeof c.command !== 'string') bad('command', 'a string', c.command);
  if (!Array.isArray(c.problems) || !c.problems.every((p) => typeof p === 'string')) bad('problems', 'a list of strings', c.problems);
  if (typeof c.traceHash !== 'string' || !/^[0-9a-f]{16}:\d+$/.test(c.traceHash)) bad('traceHash', 'a trace hash like "0123456789abcdef:1234"', c.traceHash);
  if (typeof c.options !== 'object' || c.options === null) bad('options', 'an object with seed, ops, faults, mode', c.options);
  let options: SimOptions;
  try {
    options = simOptions(c.options as SimOptions);
  } catch (err) {
    return bad('options', `valid options: ${(err as Error).message}`, c.options);
  }
  if (options.seed !== c.seed) bad('options.seed', `the capsule's seed ${String(c.seed)}`, options.seed);
  let schedule: Schedule;
  try {
    schedule = validateSchedule(c.schedule, 'schedule');
  } catch (err) {
    if (err instanceof ScheduleError) throw new InputError(`capsule ${path}: ${err.message}`);
    throw err;
  }
  if (schedule.mode !== options.mode) bad('schedule.mode', `the options' mode "${options.mode}"`, schedule.mode);
  return { ...(c as unknown as Capsule), options, schedule };
}

async function replay(path: string, capsuleDir: string | undefined, sh: ShrinkSettings): Promise<number> {
  const c = readCapsule(path);
  announceConfig(c.options);
  const now = codeCommit();
  if (c.commit !== now) process.stderr.write(`lessfs-sim: warning: the capsule was written by commit ${c.commit}, this code is ${now}: the run may differ\n`);
  const r = await executeSchedule(c.options, c.schedule);
  printRun(r);
  const sameHash = r.traceHash === c.traceHash;
  const sameProblems = JSON.stringify(r.problems) === JSON.stringify(c.problems);
  out(`trace hash: ${sameHash ? 'same' : `DIFFERENT (capsule ${c.traceHash}, now ${r.traceHash})`}\n`);
  out(`problems:   ${sameProblems ? 'same' : `DIFFERENT (capsule ${c.problems.length}, now ${r.problems.length})`}\n`);
  const code = sameHash && sameProblems ? EXIT_OK : EXIT_RUNTIME;
  if (code === EXIT_OK) out('replay: reproduced exactly\n');
  else out(r.ok ? 'replay: the failure no longer happens\n' : 'replay: the run differs from the capsule\n');
  if (sh.shrink) {
    if (r.ok) out('shrink: the run passes, nothing to shrink\n');
    else {
      const name = basename(path).replace(/(-shrunk)?\.json$/, '');
      await reportFailure(r, join(capsuleDir ?? '.', `${name}-shrunk.json`), sh, c.command);
    }
  }
  return code;
}

// ------------------------------------------------------------------ check-determinism

async function checkDeterminism(first: number, last: number, c: CommonOptions, jobs: number): Promise<number> {
  const total = last - first + 1;
  const tty = process.stderr.isTTY === true;
  const differing: SeedOutcome[] = [];
  let done = 0;
  // Each seed runs twice: from the seed, then from its schedule serialised to JSON and read back.
  await runSeeds(first, last, c, jobs, (o) => {
    if (o.againTraceHash !== o.traceHash) differing.push(o);
    progress(++done, total, differing.length, tty);
  }, true);
  if (differing.length === 0) {
    out(`check-determinism: seeds ${first}..${last} (${c.mode} mode, faults ${c.faults}, ${c.ops} ops${jobs > 1 ? `, ${jobs} worker threads` : ''}): every trace hash equal on rerun\n`);
    return EXIT_OK;
  }
  differing.sort((a, b) => a.seed - b.seed);
  for (const d of differing) out(`check-determinism: seed ${d.seed} is not deterministic: trace hash ${d.traceHash} then ${d.againTraceHash}\n`);
  // The first one runs twice more here, recording the traces, to name the first divergent event.
  const o = simOptions({ ...c, seed: differing[0].seed });
  const la: string[] = [];
  const lb: string[] = [];
  await runTwice(o, [{ traceLine: (l) => la.push(l) }, { traceLine: (l) => lb.push(l) }]);
  let i = 0;
  while (i < la.length && i < lb.length && la[i] === lb[i]) i++;
  out(`seed ${o.seed}: first divergent event #${i}:\n  run 1: ${la[i] ?? '(end of trace)'}\n  run 2: ${lb[i] ?? '(end of trace)'}\n`);
  out(`reproduce: ${reproduceCommand(o)}\n`);
  return EXIT_RUNTIME;
}

// ------------------------------------------------------------------ replay-trace

function readTrace(file: string): ConvertedTrace {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read trace ${file}: ${fileErrorReason(err)}`);
  }
  try {
    return loadTrace(text, file);
  } catch (err) {
    if (err instanceof TraceError) throw new CliError(err.message);
    throw err;
  }
}

function printTrace(t: ConvertedTrace): void {
  const skipped = Object.values(t.skipped).reduce((a, b) => a + b, 0);
  out(`trace: ${t.name} (BLKSIZE ${t.blockSizeBytes}): ${t.recordedOps} operations recorded: ${t.ops.length} to replay, ${t.handleOps} open/release, ${skipped} skipped\n`);
  for (const [why, n] of Object.entries(t.skipped).sort(([a], [b]) => (a < b ? -1 : 1))) out(`  skipped ${n}: ${why}\n`);
  for (const w of t.warnings) out(`warning: ${w}\n`);
}

async function replayTraceFile(file: string, o: TraceReplayOptions, capsuleDir: string, sh: ShrinkSettings): Promise<number> {
  const trace = readTrace(file);
  let run: ReturnType<typeof traceSchedule>;
  try {
    run = traceSchedule(trace, o);
  } catch (err) {
    if (err instanceof RangeError) throw new UsageError(err.message);
    throw err;
  }
  announceConfig(run.options);
  printTrace(trace);
  const r = await executeSchedule(run.options, run.schedule);
  printRun(r);
  if (r.ok) return EXIT_OK;
  const command = traceReproduceCommand(file, o);
  await reportFailure(r, capsulePath(capsuleDir, r.seed, '', 'trace-'), sh, command);
  out(`regenerate: ${command}\n`);
  return EXIT_RUNTIME;
}

// ------------------------------------------------------------------ subcommands

interface Subcommand {
  /** Options it takes (others are usage errors). */
  options: readonly OptionName[];
  run(v: Values, args: string[]): Promise<number>;
}

const RUN_OPTIONS = ['ops', 'faults', 'mode', 'config', 'buggify', 'buggify-sites', 'test-break-invariant'] as const;
const SHRINK_OPTIONS = ['capsule-dir', 'shrink', 'shrink-budget'] as const;
/** What replay takes from the capsule instead. */
const FROM_CAPSULE = new Set<OptionName>(['seed', 'seeds', ...RUN_OPTIONS]);

const SUBCOMMANDS: Record<string, Subcommand> = {
  run: {
    options: ['seed', 'seeds', 'jobs', ...RUN_OPTIONS, ...SHRINK_OPTIONS],
    async run(v, args) {
      if (args.length > 0) throw new UsageError(`unexpected argument '${args[0]}'`);
      const c = commonOptions(v);
      const jobs = jobsOption(v);
      const sh = shrinkSettings(v);
      const capsuleDir = str(v, 'capsule-dir') ?? '.';
      const seed = str(v, 'seed');
      const seeds = str(v, 'seeds');
      if (seed !== undefined && seeds !== undefined) throw new UsageError('give --seed or --seeds, not both');
      if (seed !== undefined) {
        const o = simOptions({ ...c, seed: parseSeed(seed) });
        announceConfig(o);
        return runOne(o, capsuleDir, sh);
      }
      if (seeds !== undefined) {
        const { first, last } = parseSeedRange(seeds);
        announceConfig(simOptions({ ...c, seed: first }));
        return runCampaign(first, last, c, jobs, capsuleDir, sh);
      }
      throw new UsageError('run needs --seed S or --seeds A..B');
    },
  },
  replay: {
    options: SHRINK_OPTIONS,
    async run(v, args) {
      if (args.length !== 1) throw new UsageError('replay needs exactly one CAPSULE file');
      return replay(args[0], str(v, 'capsule-dir'), shrinkSettings(v));
    },
  },
  'check-determinism': {
    options: ['seeds', 'jobs', ...RUN_OPTIONS],
    async run(v, args) {
      if (args.length > 0) throw new UsageError(`unexpected argument '${args[0]}'`);
      const seeds = str(v, 'seeds');
      if (seeds === undefined) throw new UsageError('check-determinism needs --seeds A..B');
      const { first, last } = parseSeedRange(seeds);
      const c = commonOptions(v);
      const jobs = jobsOption(v);
      announceConfig(simOptions({ ...c, seed: first }));
      return checkDeterminism(first, last, c, jobs);
    },
  },
  'replay-trace': {
    options: ['seed', ...RUN_OPTIONS, ...SHRINK_OPTIONS],
    async run(v, args) {
      if (args.length !== 1) throw new UsageError('replay-trace needs exactly one trace FILE');
      // --ops counts trace operations here (0 allowed: only the final commit).
      const opsText = str(v, 'ops');
      if (opsText !== undefined && !/^\d+$/.test(opsText)) throw new UsageError(`bad --ops '${opsText}' (expected an integer >= 0)`);
      const seed = str(v, 'seed');
      const o: TraceReplayOptions = { ...commonOptions({ ...v, ops: undefined }), seed: seed === undefined ? 0 : parseSeed(seed) };
      o.ops = opsText === undefined ? undefined : Number(opsText);
      return replayTraceFile(args[0], o, str(v, 'capsule-dir') ?? '.', shrinkSettings(v));
    },
  },
};

const NAMES = Object.keys(SUBCOMMANDS);

export const lessfsSim: Command = {
  name: 'lessfs-sim',
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandLine(argv, { options: OPTIONS, allowPositionals: true, strict: true });
    if (values.help) {
      out(usage);
      return EXIT_OK;
    }
    const [name, ...args] = positionals;
    if (name === undefined) throw new UsageError(`no command given (expected ${NAMES.join(', ')})`);
    const sub = Object.hasOwn(SUBCOMMANDS, name) ? SUBCOMMANDS[name] : undefined;
    if (!sub) throw new UsageError(`unknown command '${name}' (expected ${NAMES.join(', ')})`);
    const v = values as Values;
    for (const k of Object.keys(v) as OptionName[]) {
      if (!sub.options.includes(k)) {
        throw new UsageError(name === 'replay' && FROM_CAPSULE.has(k) ? `replay takes everything from the capsule: --${k} is not allowed` : `${name} does not take --${k}`);
      }
    }
    try {
      return await sub.run(v, args);
    } catch (err) {
      // A bad config or capsule is bad input, as a bad option is: exit 2, without the usage text.
      if (err instanceof InputError || err instanceof ConfigError) {
        process.stderr.write(`lessfs-sim: ${err.message}\n`);
        return EXIT_USAGE;
      }
      throw err;
    }
  },
};

// The launcher (bin/lessfs-sim.js) looks the command up by its name.
export { lessfsSim as 'lessfs-sim' };
