// One simulation of a master/slave cluster, as `lessfs-sim run` runs it: a
// seed yields an explicit Schedule (schedule.ts: the fault setup of its
// profile, workload operations checked against a reference model, idle
// times, link cuts, node faults, batch rotations and shipping faults), and
// the run executes that schedule. Invariant violations are collected as
// problems, never thrown, so one run reports all it found; an exception from
// the system under test is a problem too. The same schedule (and options)
// always gives the same trace hash, and a seed always gives the same schedule.

import { performance } from 'node:perf_hooks';
import { equalBytes } from '../core/bytes.ts';
import { PathFs } from '../core/fs/path-fs.ts';
import type { ReplicationControl } from '../core/control.ts';
import type { EngineOptions } from '../core/fs/types.ts';
import { rotatedLogName } from '../core/replication/master-log.ts';
import { BUGGIFY_SITES, type BuggifySite } from '../core/buggify.ts';
import { BatchCluster, type RotatedFileInfo } from './batch-cluster.ts';
import type { SimDiskMedium, SimDiskOptions } from './disk.ts';
import { LiveCluster, LiveOracle, liveOp } from './live-cluster.ts';
import { MasterOracle } from './master-oracle.ts';
import { ModelFs } from './model.ts';
import type { SimNetOptions } from './net.ts';
import type { SimMachine } from './node-env.ts';
import { SimRng } from './rng.ts';
import { applyFillStep, applyLinkStep, CutPlanner, diskFilled, eioPlanner, fillPlanner, isNodeStep, mayFailWithEio, mayRefuseForRoom, togglePlanner, type NodeStep, isSimMode, SIM_MODES, type Schedule, type ScheduleSetup, type ShipDecision, type SimMode, type Step } from './schedule.ts';
import { Scheduler } from './scheduler.ts';
import { simConfig, type SimConfig, type SimConfigSource } from './sim-config.ts';
import type { SimStoreOptions } from './store.ts';
import { applyToModel, poolData, randomOp } from './workload.ts';

export { isSimMode, SIM_MODES, type SimMode };

export const FAULT_PROFILES = ['none', 'net', 'disk', 'power', 'all', 'swarm'] as const;
export type FaultProfile = (typeof FAULT_PROFILES)[number];

export const OPS_DEFAULT = 200;
/** Bound on one run's workload (a campaign multiplies it by the seeds). */
export const OPS_MAX = 100_000;
/** The workload's block size when no config sets BLKSIZE. */
export const SIM_BLOCK_SIZE_DEFAULT = 4096;

export interface SimOptions {
  seed: number;
  ops: number;
  faults: FaultProfile;
  mode: SimMode;
  /**
   * Buggify sites in core (src/core/buggify.ts) on or off; undefined: as the
   * profile says (all: on, swarm: drawn per seed, others: off).
   */
  buggify?: boolean;
  /** With buggify on: exactly these sites are on, on both nodes (aims a run at some sites). */
  buggifySites?: BuggifySite[];
  /**
   * Test-only: half-way through, write a file on the master behind the
   * oracle's back (a `rogue` step), so the model and the system really
   * diverge and the invariants must catch it (used to test failure reporting
   * and shrinking end to end).
   */
  breakInvariant?: boolean;
  /** lessfs.cfg settings for both nodes (--config), see sim-config.ts. */
  config?: SimConfigSource;
}

export interface SimResult {
  seed: number;
  options: SimOptions;
  /** The schedule that ran. */
  schedule: Schedule;
  ok: boolean;
  problems: string[];
  faultsInjected: Record<string, number>;
  /** Whether buggify sites could fire in this run (the profile's choice or --buggify). */
  buggify: boolean;
  invariantsChecked: string[];
  traceHash: string;
  simulatedMs: number;
  wallMs: number;
  /** Workload operations that ran to completion on the master. */
  ops: number;
  /** The engine options both nodes ran with (the schedule's and the config's), undefined if the run failed before the cluster existed. */
  engine: EngineOptions | undefined;
}

export function isFaultProfile(s: string): s is FaultProfile {
  return (FAULT_PROFILES as readonly string[]).includes(s);
}

/** Fill defaults and check bounds (a RangeError names what is wrong). */
export function simOptions(o: Partial<SimOptions> & { seed: number }): SimOptions {
  const out: SimOptions = { seed: o.seed, ops: o.ops ?? OPS_DEFAULT, faults: o.faults ?? 'none', mode: o.mode ?? 'live' };
  if (o.breakInvariant) out.breakInvariant = true;
  if (o.buggify !== undefined) {
    if (typeof o.buggify !== 'boolean') throw new RangeError(`buggify must be true or false, got ${String(o.buggify)}`);
    out.buggify = o.buggify;
  }
  if (o.buggifySites !== undefined) {
    for (const s of o.buggifySites) if (!(s in BUGGIFY_SITES)) throw new RangeError(`unknown buggify site '${s}' (expected ${Object.keys(BUGGIFY_SITES).join(', ')})`);
    if (o.buggify === false) throw new RangeError('buggify sites given with buggify off');
    out.buggifySites = [...o.buggifySites];
  }
  if (o.config !== undefined) out.config = o.config;
  if (!Number.isSafeInteger(out.seed) || out.seed < 0) throw new RangeError(`seed must be an integer >= 0, got ${out.seed}`);
  if (!Number.isSafeInteger(out.ops) || out.ops < 1 || out.ops > OPS_MAX) throw new RangeError(`ops must be an integer in 1..${OPS_MAX}, got ${out.ops}`);
  if (!isFaultProfile(out.faults)) throw new RangeError(`unknown fault profile '${String(out.faults)}' (expected ${FAULT_PROFILES.join(', ')})`);
  if (!isSimMode(out.mode)) throw new RangeError(`unknown mode '${String(out.mode)}' (expected ${SIM_MODES.join(', ')})`);
  const c = out.config as unknown;
  if (c !== undefined && (typeof c !== 'object' || c === null || typeof (c as SimConfigSource).name !== 'string' || typeof (c as SimConfigSource).text !== 'string')) {
    throw new RangeError(`config must be { name: string, text: string }, got ${JSON.stringify(c)}`);
  }
  return out;
}

/** The command line that regenerates these options' schedule from the seed and runs it. */
export function reproduceCommand(o: SimOptions): string {
  return `lessfs-sim run --seed ${o.seed} --ops ${o.ops} ${runFlags(o)}`;
}

/** The command-line options of a run after --seed and --ops: "--faults P --mode M [--buggify ...] [--config CFG] [--test-break-invariant]". */
export function runFlags(o: Omit<SimOptions, 'seed' | 'ops'>): string {
  const buggify = (o.buggify === undefined ? '' : ` --buggify ${o.buggify ? 'on' : 'off'}`) + (o.buggifySites ? ` --buggify-sites ${o.buggifySites.join(',')}` : '');
  const config = o.config ? ` --config ${o.config.name}` : '';
  return `--faults ${o.faults} --mode ${o.mode}${buggify}${config}${o.breakInvariant ? ' --test-break-invariant' : ''}`;
}

/** The config of a run, parsed for its mode (undefined without --config). Throws ConfigError for a bad one. */
export function runConfig(o: SimOptions): SimConfig | undefined {
  return o.config ? simConfig(o.config, o.mode) : undefined;
}

export function blockSizeOf(cfg: SimConfig | undefined): number {
  return cfg?.engine.blockSizeBytes ?? SIM_BLOCK_SIZE_DEFAULT;
}

// ------------------------------------------------------------------ fault plans

interface NodeFault {
  /** Before this operation index. */
  atOp: number;
  /** Scheduler events after that point (the fault lands inside an operation, its idle time, or later). */
  afterSteps: number;
  who: 'master' | 'slave' | 'both';
  kind: 'crash' | 'power';
  masterFirst: boolean;
}

/** What a seed's profile injects, drawn once before the run. */
interface FaultPlan {
  net: Partial<SimNetOptions>;
  /** Per operation: chance to partition or hold the link for a few operations. */
  cutProbability: number;
  /** Per operation: chance that the master's or the slave's data disk fills for a few operations. */
  fillProbability: number;
  /** Per operation: chance that replication is turned off at the master or the slave for a few operations. */
  toggleProbability: number;
  /** Per operation: chance that the master's or the slave's disk fails writes with EIO for a few operations. */
  eioProbability: number;
  disk: Partial<SimDiskOptions>;
  store: Partial<SimStoreOptions>;
  nodeFaults: NodeFault[];
  commitIntervalMs: number;
  secret: string | undefined;
  /** Batch shipping faults, per delivered file. */
  ship: { truncate: number; flip: number; drop: number; duplicate: number };
  /** Buggify sites in core may fire (each node draws which, see src/sim/buggify.ts). */
  buggify: boolean;
}

/** Buggify for a run: --buggify, else on for all, drawn per seed for swarm (own stream: the plan's draws stay as they were). */
function buggifyFor(o: SimOptions): boolean {
  if (o.buggify !== undefined) return o.buggify;
  if (o.buggifySites !== undefined) return true;
  if (o.faults === 'all') return true;
  if (o.faults === 'swarm') return new SimRng(o.seed).split('plan/buggify').chance(0.5);
  return false;
}

function drawNodeFaults(r: SimRng, ops: number, countMax: number): NodeFault[] {
  const n = 1 + r.int(countMax);
  const out: NodeFault[] = [];
  for (let i = 0; i < n; i++) {
    out.push({
      atOp: r.int(ops),
      afterSteps: r.int(150),
      who: r.pick(['master', 'slave', 'both'] as const),
      kind: r.pick(['crash', 'power'] as const),
      masterFirst: r.chance(0.3),
    });
  }
  return out.sort((a, b) => a.atOp - b.atOp);
}

function faultPlan(o: SimOptions): FaultPlan {
  const r = new SimRng(o.seed).split(`plan/${o.faults}`);
  const plan: FaultPlan = {
    net: { latencyMsMin: 1, latencyMsMax: 20 },
    cutProbability: 0,
    fillProbability: 0,
    toggleProbability: 0,
    eioProbability: 0,
    disk: { latencyMsMin: 0, latencyMsMax: 2 },
    store: { commitLatencyMsMin: 1, commitLatencyMsMax: 4, syncLatencyMsMin: 1, syncLatencyMsMax: r.pick([6, 60, 400]) },
    nodeFaults: [],
    commitIntervalMs: r.pick([100, 500, 2000]),
    secret: r.chance(0.5) ? 'sim-secret' : undefined,
    ship: { truncate: 0, flip: 0, drop: 0, duplicate: 0 },
    buggify: buggifyFor(o),
  };
  const net = (): void => {
    plan.net = {
      latencyMsMin: 1,
      latencyMsMax: 1 + r.pick([5, 40, 200]),
      bitFlipProbability: r.pick([0.002, 0.01]),
      resetProbability: r.pick([0.002, 0.01]),
      stallProbability: r.pick([0.02, 0.1]),
      stallMsMax: r.pick([50, 500, 3000]),
      splitProbability: r.pick([0.2, 0.8]),
      partitionTimeoutMs: r.pick([2_000, 30_000]),
    };
    plan.cutProbability = r.pick([0.03, 0.08]);
    plan.ship = { truncate: 0.15, flip: 0.15, drop: 0.15, duplicate: 0.15 };
  };
  const power = (): void => {
    plan.nodeFaults = drawNodeFaults(r, o.ops, 3);
  };
  const disk = (): void => {
    // Torn and reordered writes only show at a power loss, so the disk profile brings power losses of its own.
    plan.disk = { ...plan.disk, tornWriteProbability: r.pick([0.3, 0.9]), reorderProbability: r.pick([0.3, 0.9]) };
    if (plan.nodeFaults.length === 0) plan.nodeFaults = drawNodeFaults(r, o.ops, 2).map((f) => ({ ...f, kind: 'power' as const }));
    // Drawn last, so that the draws above stay what they were before full disks (then I/O errors) were simulated.
    plan.fillProbability = r.pick([0.03, 0.08]);
    plan.eioProbability = r.pick([0.02, 0.05]);
  };
  // Replication toggles (with the link faults) draw from their own stream: the draws above and below stay what they were.
  const toggles = new SimRng(o.seed).split('plan/toggles');
  if (o.faults === 'net' || o.faults === 'all') plan.toggleProbability = toggles.pick([0.02, 0.05]);
  if (o.faults === 'swarm') plan.toggleProbability = toggles.pick([0, 0.02, 0.05]);
  switch (o.faults) {
    case 'none':
      break;
    case 'net':
      net();
      break;
    case 'power':
      power();
      break;
    case 'disk':
      disk();
      break;
    case 'all':
      net();
      power();
      disk();
      break;
    case 'swarm': {
      // Swarm testing: each seed switches each fault kind on or off and draws its strength.
      plan.net = {
        latencyMsMin: r.int(5),
        latencyMsMax: 5 + r.pick([0, 5, 40, 200]),
        bitFlipProbability: r.pick([0, 0, 0.002, 0.01, 0.05]),
        resetProbability: r.pick([0, 0, 0.002, 0.01]),
        stallProbability: r.pick([0, 0.02, 0.1]),
        stallMsMax: r.pick([50, 500, 3000]),
        bandwidthBytesPerMs: r.pick([0, 0, 20, 500]),
        splitProbability: r.pick([0, 0.2, 0.8]),
        partitionTimeoutMs: r.pick([2_000, 30_000]),
      };
      plan.cutProbability = r.pick([0, 0.03, 0.08]);
      plan.disk = { ...plan.disk, tornWriteProbability: r.pick([0, 0.3, 0.9]), reorderProbability: r.pick([0, 0.3, 0.9]) };
      plan.nodeFaults = r.chance(0.3) ? [] : drawNodeFaults(r, o.ops, 4);
      plan.commitIntervalMs = r.pick([100, 700, 3000]);
      plan.ship = { truncate: r.pick([0, 0.1, 0.4]), flip: r.pick([0, 0.1, 0.4]), drop: r.pick([0, 0.1, 0.4]), duplicate: r.pick([0, 0.1, 0.4]) };
      plan.fillProbability = r.pick([0, 0.03, 0.08]);
      plan.eioProbability = r.pick([0, 0.02, 0.05]);
      break;
    }
  }
  return plan;
}


// ------------------------------------------------------------------ schedules

function faultStep(f: NodeFault): Step {
  return { step: 'fault', who: f.who, kind: f.kind, masterFirst: f.masterFirst, afterSteps: f.afterSteps };
}

function shipDecision(r: SimRng, p: FaultPlan['ship']): ShipDecision {
  const d: ShipDecision = {};
  if (r.chance(p.truncate)) d.truncateAt = r.float();
  if (r.chance(p.flip)) d.flip = { at: r.float(), bit: r.int(8) };
  if (r.chance(p.drop)) {
    d.late = true;
    return d;
  }
  if (p.drop > 0 && r.chance(0.5)) d.deliverLate = true;
  if (r.chance(p.duplicate)) d.duplicate = r.int(1 << 30);
  return d;
}

/** Decisions for the (at most two) files one rotation closes, without trailing plain deliveries. */
function rotateStep(r: SimRng, p: FaultPlan['ship']): Step {
  const ship = [shipDecision(r, p), shipDecision(r, p)];
  while (ship.length > 0 && Object.keys(ship[ship.length - 1]).length === 0) ship.pop();
  return { step: 'rotate', ship };
}

/**
 * The schedule a seed yields under these options: the profile's fault plan,
 * then o.ops workload operations with the idle time after each, the link cuts
 * and heals, node faults before the operation they are armed at, a slave
 * check every 10 operations (live), rotations every 5..24 operations with
 * their shipping decisions (batch). Live operations are drawn against a model
 * of the workload so far (mostly on files that exist); a crash at run time may
 * roll the master back, and the operation then simply gets the model's result.
 */
export function generateSchedule(input: SimOptions): Schedule {
  const o = simOptions(input);
  const bs = blockSizeOf(runConfig(o));
  const plan = faultPlan(o);
  const rng = new SimRng(o.seed).split('workload');
  const steps: Step[] = [];
  const faultsAt = (i: number): Step[] => plan.nodeFaults.filter((f) => f.atOp === i).map(faultStep);
  const rogueAt = o.breakInvariant ? Math.floor(o.ops / 2) : -1;
  // Full disks draw from their own stream: the other steps are what they were without them.
  const fills = fillPlanner(plan.fillProbability);
  const fillRng = new SimRng(o.seed).split('fill');
  const toggles = togglePlanner(plan.toggleProbability);
  const toggleRng = new SimRng(o.seed).split('toggle');
  const eios = eioPlanner(plan.eioProbability);
  const eioRng = new SimRng(o.seed).split('eio');
  const fillAt = (i: number): Step[] => {
    const f = fills.next(i, fillRng);
    const t = toggles.next(i, toggleRng);
    const e = eios.next(i, eioRng);
    return [...(f ? [f] : []), ...(t ? [t] : []), ...(e ? [e] : [])];
  };
  const setup: ScheduleSetup = { net: o.mode === 'live' ? plan.net : {}, disk: plan.disk, store: plan.store, commitIntervalMs: plan.commitIntervalMs };
  if (plan.buggify) setup.buggify = true;
  if (o.buggifySites) setup.buggifySites = [...o.buggifySites];
  if (o.mode === 'live') {
    if (plan.secret !== undefined) setup.secret = plan.secret;
    const model = new ModelFs();
    const cuts = new CutPlanner(plan.cutProbability);
    for (let i = 0; i < o.ops; i++) {
      const cut = cuts.next(i, rng);
      if (cut) steps.push(cut);
      if (i === rogueAt) steps.push({ step: 'rogue' });
      steps.push(...faultsAt(i), ...fillAt(i));
      const op = liveOp(rng, model, bs);
      applyToModel(model, op, bs);
      steps.push({ step: 'op', op, idleMs: rng.int(300) });
      if (i % 10 === 9) steps.push({ step: 'check' });
    }
  } else {
    const ship = new SimRng(o.seed).split('ship');
    let rotateEvery = 5 + rng.int(20);
    let since = 0;
    for (let i = 0; i < o.ops; i++) {
      if (i === rogueAt) steps.push({ step: 'rogue' });
      steps.push(...faultsAt(i), ...fillAt(i));
      steps.push({ step: 'op', op: randomOp(rng, bs), idleMs: rng.int(300) });
      if (++since >= rotateEvery) {
        steps.push(rotateStep(ship, plan.ship));
        since = 0;
        rotateEvery = 5 + rng.int(20);
      }
    }
    if (since > 0) steps.push(rotateStep(ship, plan.ship));
  }
  return { seed: o.seed, mode: o.mode, setup, steps };
}

/**
 * The kind of a problem, for "still fails the same way" while shrinking: its
 * message without the time, the batch check's label, numbers, quoted or JSON
 * values, and anything after the first colon (the details), e.g. "master op",
 * "master tree differs from the model", "slave at txn N holds a tree the
 * master never had at that txn", "the run failed with EIO".
 */
export function problemKind(problem: string): string {
  let s = problem.split('\n')[0];
  s = s.replace(/^[\d.]+ ms: /, '');
  s = s.replace(/^after [^:]*: /, '');
  s = s.replace(/\{[^{}]*\}/g, '').replace(/\[[^\]]*\]/g, '').replace(/"[^"]*"/g, '');
  s = s.split(':')[0];
  return s.replace(/\d+(\.\d+)?/g, 'N').replace(/\s+/g, ' ').trim();
}

// ------------------------------------------------------------------ runs

const LIVE_INVARIANTS = [
  'master results match the reference model (every read, error and tree)',
  'master recovers at a committed txn, not before its last fsync/commit',
  'slave tree = master tree at the slave applied txn, a txn the master made durable',
  'slave comes back at least at the txn its master was told was durable',
  'slave applies each txn exactly once, in order',
  'master and slave never commit at the same instant (unless the master had stopped waiting for that slave commit)',
  'after faults stop the slave converges, backlog reads 0, replog.dta is empty',
  'slave tree = master tree = model after convergence',
  'lessfsck -t clean on master and slave after unmount',
];

const BATCH_INVARIANTS = [
  'master results match the reference model (every read, error and tree)',
  'master log chain holds together (sequences, txns, CRCs, trailers)',
  'master recovers at a committed txn, not before its last fsync/commit, its rotated files unchanged',
  'slave is at a file boundary with the master tree of that txn after every scan',
  'damaged, partial or foreign files are never applied',
  'slave recovers at a file boundary, keeping every file it had applied',
  'slave converges to the master once every file is delivered',
  'lessfsck -t clean on master and slave after unmount',
];

/** Counts of trace lines that show a fault landing. */
function countTraceFaults(sched: Scheduler, faults: Record<string, number>, traceLine?: (line: string) => void): void {
  const bump = (k: string): void => {
    faults[k] = (faults[k] ?? 0) + 1;
  };
  // Fault lines are recorded by components (trace()), never an event's own line.
  sched.traceSink = traceLine;
  sched.noteSink = (line) => {
    const net = /^net (bitflip|reset|stall|partition|hold) /.exec(line);
    const bug = /^buggify (\S+) /.exec(line);
    if (net) bump(`net ${net[1]}`);
    else if (bug) bump(`buggify ${bug[1]}`);
    else if (/^\S+ mount failed with EIO /.test(line)) bump(`${line.split(' ')[0]} mount failed (EIO), disk fixed`);
    else if (line.includes(' powerloss file ')) {
      if (line.includes(' torn@')) bump('disk torn write');
      if (line.includes(' reordered ')) bump('disk reordered writes');
    }
  };
}

/** What an executor needs: the schedule, the config, the scheduler, and where faults and problems go. */
interface Run {
  schedule: Schedule;
  cfg: SimConfig | undefined;
  bs: number;
  sched: Scheduler;
  faults: Record<string, number>;
  problems: string[];
  /** The master's engine options, once the cluster exists (the slave's are the same but for replica). */
  engine?: EngineOptions;
  hooks: SimHooks;
}

function bump(run: Run, k: string): void {
  run.faults[k] = (run.faults[k] ?? 0) + 1;
}

/** Engine options of both nodes: the schedule's, then what the config sets. */
function engineOptions(run: Run): { commitIntervalMs: number; cacheSizeBytes: number } {
  // A schedule's own BLKSIZE (a replayed trace's) wins: its write fingerprints are cut by it.
  const bs = run.schedule.setup.blockSizeBytes;
  // A space reserve as the real mount sets aside (spaceReserveFor), scaled to the simulated workload.
  const reserve = { spaceReserveBytes: 16 * run.bs };
  return { commitIntervalMs: run.schedule.setup.commitIntervalMs, cacheSizeBytes: 24 * run.bs, ...reserve, ...run.cfg?.engine, ...(bs === undefined ? {} : { blockSizeBytes: bs }) };
}

/** The `rogue` step: /rogue written on the master behind the oracle's back. */
async function writeRogue(fs: PathFs, settle: <T>(p: Promise<T>) => Promise<T>, bs: number): Promise<void> {
  if (!fs.exists('/rogue')) fs.create('/rogue');
  await settle(fs.write('/rogue', 0, poolData(bs, 1, 100)));
}

/** A fill, room, toggle or eio step at a node of either cluster. */
async function nodeStep(
  run: Run,
  step: NodeStep,
  c: Record<'master' | 'slave', { machine: SimMachine; node: { control: ReplicationControl } | undefined }> & { run<T>(p: Promise<T>): Promise<T> },
): Promise<void> {
  const n = c[step.who];
  if (step.step === 'toggle') await toggle(run, step, n.node?.control, (p) => c.run(p));
  else if (step.step === 'eio') ioErrors(run, step, n.machine.disk);
  else fillOrRoom(run, step, n.machine.disk);
}

/** Both nodes' disks have room and fail no more writes. */
function healDisks(run: Run, c: { master: { machine: SimMachine }; slave: { machine: SimMachine } }): void {
  for (const who of ['master', 'slave'] as const) {
    fillOrRoom(run, { step: 'room', who }, c[who].machine.disk);
    ioErrors(run, { step: 'eio', who, probability: 0 }, c[who].machine.disk);
  }
}

/** An eio step: the node's disk fails writes with that probability (counted when errors start). */
function ioErrors(run: Run, step: Extract<Step, { step: 'eio' }>, disk: SimDiskMedium): void {
  if (step.probability > 0 && disk.options.writeErrorProbability === 0) bump(run, `${step.who} disk write errors`);
  disk.setOptions({ writeErrorProbability: step.probability });
}

/** A toggle step: replication off or on at a node that is up (counted when it turns it off). */
async function toggle(run: Run, step: Extract<Step, { step: 'toggle' }>, control: ReplicationControl | undefined, settle: <T>(p: Promise<T>) => Promise<T>): Promise<void> {
  if (!control || control.enabled() === step.enabled) return;
  if (!step.enabled) bump(run, `${step.who} replication off`);
  await settle(control.setEnabled(step.enabled));
}

/** A fill or room step on a node's disk (counted as a fault when it fills a disk that had room). */
function fillOrRoom(run: Run, step: Extract<Step, { step: 'fill' | 'room' }>, disk: SimDiskMedium): void {
  if (step.step === 'fill' && !diskFilled(disk)) bump(run, `${step.who} disk full`);
  applyFillStep(disk, step, run.bs);
}

function wrongMode(step: Step, mode: SimMode): Error {
  return new Error(`a ${step.step} step in a ${mode} schedule (validateSchedule rejects it)`);
}

async function runLive(run: Run): Promise<number> {
  const { schedule: s, sched, bs } = run;
  const c = new LiveCluster(sched, s.seed, {
    engine: engineOptions(run),
    masterNode: { disk: s.setup.disk, store: s.setup.store },
    slaveNode: { disk: s.setup.disk, store: s.setup.store },
    net: s.setup.net,
    secret: run.cfg?.secret ? run.cfg.secret.value : s.setup.secret,
    maxBacklogSizeBytes: run.cfg?.maxBacklogSizeBytes,
    buggify: s.setup.buggify ?? false,
    buggifySites: s.setup.buggifySites,
  });
  run.engine = c.master.options;
  const oracle = new LiveOracle(c, bs);
  try {
    await c.format();
    await c.open(c.slave);
    await c.open(c.master);
    await oracle.masterOpened();
    const armed: Extract<Step, { step: 'fault' }>[] = [];
    let crashAt: number | undefined;
    const stop = (): boolean => crashAt !== undefined && sched.stepsRun >= crashAt;
    /** A failed data sync stopped a node's engine (an injected I/O error): the operator remounts it, as after a kill -9. */
    const remountStopped = async (): Promise<void> => {
      for (const who of ['master', 'slave'] as const) {
        if (!c[who].engine?.stopped && !(who === 'slave' && c.receiver?.remountNeeded)) continue;
        bump(run, `${who} stopped (EIO), remounted`);
        await oracle.fault(who, 'crash');
      }
    };
    steps: for (let i = 0; i < s.steps.length; i++) {
      const step = s.steps[i];
      if (isNodeStep(step)) {
        await nodeStep(run, step, c);
        continue;
      }
      switch (step.step) {
        case 'cut':
        case 'heal':
          applyLinkStep(c.network, step);
          break;
        case 'check':
          await oracle.checkSlave();
          break;
        case 'rogue':
          await writeRogue(new PathFs(c.engineOf(c.master)), (p) => c.run(p), bs);
          break;
        case 'fault':
          armed.push(step);
          break;
        case 'op': {
          if (crashAt === undefined && armed.length > 0) crashAt = sched.stepsRun + armed[0].afterSteps;
          const outcome = await oracle.runOp(step.op, stop);
          if (outcome === 'stuck') {
            run.problems.push(`${sched.nowMs()} ms: step ${i} ${JSON.stringify(step.op)} never completed`);
            break steps;
          }
          if (outcome === 'done') await oracle.idle(step.idleMs, stop);
          if (stop()) {
            const f = armed.shift() as Extract<Step, { step: 'fault' }>;
            crashAt = undefined;
            bump(run, `${f.who} ${f.kind}`);
            await oracle.fault(f.who, f.kind, f.masterFirst);
            await oracle.checkSlave();
          }
          await remountStopped();
          break;
        }
        default:
          throw wrongMode(step, s.mode);
      }
    }
    // Faults no operation reached land in idle time after the workload.
    for (const f of armed.splice(0)) {
      const at = sched.stepsRun + f.afterSteps;
      await oracle.idle(60_000, () => sched.stepsRun >= at);
      bump(run, `${f.who} ${f.kind}`);
      await oracle.fault(f.who, f.kind, f.masterFirst);
    }
    // Every disk has room and works again before the end state is checked.
    healDisks(run, c);
    await remountStopped();
    await oracle.finish();
    run.hooks.finalModel?.(oracle.model);
  } finally {
    run.problems.push(...oracle.problems);
    if (oracle.refusedOps > 0) run.faults['master ops refused (ENOSPC)'] = oracle.refusedOps;
    if (oracle.failedOps > 0) run.faults['master ops failed (EIO)'] = oracle.failedOps;
  }
  return oracle.opsRun;
}

async function runBatch(run: Run): Promise<number> {
  const { schedule: s, sched, bs } = run;
  const autoRotate = (run.cfg?.rotateReplogSizeBytes ?? 0) > 0 || (run.cfg?.rotateReplogIntervalS ?? 0) > 0;
  const c = new BatchCluster(sched, s.seed, {
    engine: engineOptions(run),
    // Scans run when the harness says, so each one is checked.
    watchdirPollMs: 1e12,
    masterNode: { disk: s.setup.disk, store: s.setup.store },
    slaveNode: { disk: s.setup.disk, store: s.setup.store },
    master: { rotateReplogSizeBytes: run.cfg?.rotateReplogSizeBytes ?? 0, rotateReplogIntervalS: run.cfg?.rotateReplogIntervalS ?? 0 },
    buggify: s.setup.buggify ?? false,
    buggifySites: s.setup.buggifySites,
  });
  run.engine = c.master.options;
  await c.format();
  await c.open(c.master);
  await c.open(c.slave, true);
  await c.settleWatch();
  /**
   * The master's side: the model, and the trees each master txn may hold
   * (atTxn), which every rotated file's last txn and so the slave at its
   * end must hold one of. One rotate_replog can close two files (a commit
   * already running takes the request first, see MasterLog.rotate),
   * buggify's rotate-mid-commit rotates on its own, and with
   * ROTATE_REPLOG_SIZE or ROTATE_REPLOG_INTERVAL the master rotates by
   * itself too: such a file ends at whatever txn a commit made.
   */
  const oracle = new MasterOracle(c, bs);
  try {
    return await runBatchSteps(run, c, oracle, autoRotate);
  } finally {
    run.problems.push(...oracle.problems);
    if (oracle.refusedOps > 0) run.faults['master ops refused (ENOSPC)'] = oracle.refusedOps;
    if (oracle.failedOps > 0) run.faults['master ops failed (EIO)'] = oracle.failedOps;
  }
}

/** runBatch's steps and end checks, with the cluster formatted and both nodes open; problems go to the oracle's list. */
async function runBatchSteps(run: Run, c: BatchCluster, oracle: MasterOracle, autoRotate: boolean): Promise<number> {
  const { schedule: s, sched, bs } = run;
  const problem = (m: string): void => oracle.report(m);
  await oracle.masterOpened();
  const files: RotatedFileInfo[] = [];
  let shipped = 0;
  const late: RotatedFileInfo[] = [];
  /** Slave faults armed by `fault` steps, each cutting the next scan. */
  const armed: Extract<Step, { step: 'fault' }>[] = [];
  /** Master (and both-node) faults armed by `fault` steps, each landing in the operations that follow. */
  const masterArmed: Extract<Step, { step: 'fault' }>[] = [];
  let crashAt: number | undefined;
  const stop = (): boolean => crashAt !== undefined && sched.stepsRun >= crashAt;
  /** Rotations the master refused since the last one it made. */
  let refusedRotations = 0;
  let opsSinceRotation = 0;

  const checkSlave = async (label: string): Promise<void> => {
    const pos = c.slave.node?.slaveApplier?.position();
    if (!pos) throw new Error('slave not open with its applier');
    const want = oracle.atTxn.get(pos.txn);
    const boundary = pos.sequence === 0 ? 0 : files[pos.sequence - 1]?.lastTxn;
    if (pos.txn !== boundary || want === undefined) {
      problem(`${label}: slave at txn ${pos.txn} sequence ${pos.sequence}, not the end of a master file`);
      return;
    }
    const got = await c.digest(c.slave);
    if (!want.has(got)) problem(`${label}: slave tree at txn ${pos.txn} is none of the ${want.size} master trees of that txn:\n${await c.listing(c.slave)}`);
  };

  /** One scan; an armed slave fault cuts it at its step offset, then the slave reopens. */
  const scan = async (label: string): Promise<void> => {
    const f = armed.shift();
    if (f) {
      const watch = c.slave.node?.watchdir;
      if (!watch) throw new Error('slave not open with its watchdir');
      const at = sched.stepsRun + f.afterSteps;
      let settled = false;
      let failure: unknown;
      watch.scanOnce().then(() => { settled = true; }, (err: unknown) => { settled = true; failure = err; });
      await sched.run({ done: () => settled || sched.stepsRun >= at });
      if (settled && failure && !c.slave.engine?.stopped) throw failure;
      await restartSlave(f.kind, `slave ${f.kind}`, label);
    }
    // A failed data sync stops the slave's engine (an injected I/O error) and fails the scan, or a failed drop of a
    // half-applied file halts the slave: the operator remounts it and scans again.
    const halted = (): boolean => (c.slave.engine?.stopped ?? false) || (c.slave.node?.watchdir?.remountNeeded ?? false);
    for (let attempt = 0; ; attempt++) {
      try {
        await c.scan();
      } catch (err) {
        if (!halted()) throw err;
      }
      if (!halted()) break;
      await restartSlave('crash', 'slave stopped (EIO), remounted', label);
      if (attempt === 3) throw new Error(`${label}: the slave stopped at ${attempt + 1} scans in a row`);
    }
    await checkSlave(label);
  };

  /** The slave fails (kill -9 or power loss) and reopens: at a file boundary, keeping every file it had applied. */
  const restartSlave = async (kind: 'crash' | 'power', fault: string, label: string): Promise<void> => {
    const appliedBefore = c.slave.node?.slaveApplier?.durablePosition().sequence ?? 0; // what it had made durable (a failed data sync leaves a file applied in memory only)
    bump(run, fault);
    if (kind === 'crash') c.slave.machine.crash();
    else c.slave.machine.powerLoss();
    c.dropped(c.slave);
    await reopenSlave(appliedBefore, kind, label);
  };

  /** Open the failed slave again (again while a failing disk stops it at once) and check it kept every file it had applied. */
  const reopenSlave = async (appliedBefore: number, kind: 'crash' | 'power', label: string): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      await c.open(c.slave, true);
      await c.settleWatch();
      if (!c.slave.engine?.stopped && !c.slave.node?.watchdir?.remountNeeded) break;
      // Stopped again as it applied what waited (its disk still fails): remounted again; the third time the operator fixes the disk first.
      bump(run, 'slave stopped (EIO), remounted');
      c.slave.machine.crash();
      c.dropped(c.slave);
      if (attempt >= 2) c.slave.machine.disk.setOptions({ writeErrorProbability: 0 });
    }
    const after = c.slave.node?.slaveApplier?.position().sequence ?? 0;
    if (after < appliedBefore) problem(`${label}: slave ${kind} lost applied files (sequence ${appliedBefore} -> ${after})`);
    await checkSlave(`${label}, after slave ${kind}`);
  };

  /**
   * The operator's copy of a file to the slave. On a slave disk a fill step
   * left full the copy may fail for want of room (false), as cp or rsync
   * would, leaving what it wrote.
   */
  const ship = async (name: string, bytes: Uint8Array, atomically: boolean): Promise<boolean> => {
    try {
      await c.deliver(name, bytes, atomically);
      return true;
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code === 'ENOSPC' && diskFilled(c.slave.machine.disk)) bump(run, 'ship failed (slave disk full)');
      else if (code === 'EIO' && c.slave.machine.disk.options.writeErrorProbability > 0) bump(run, 'ship failed (slave disk EIO)');
      else throw err;
      return false;
    }
  };

  /** A good copy; one that failed for want of room is shipped again later (as a late file). */
  const deliverGood = async (file: RotatedFileInfo): Promise<void> => {
    if (!(await ship(file.name, file.bytes, true))) late.push(file);
    await scan(`after delivering ${file.name}`);
  };

  /** Ship the files not yet shipped, the k-th new one as decisions[k] says. */
  const shipNew = async (decisions: readonly ShipDecision[]): Promise<void> => {
    for (let k = 0; shipped < files.length; k++) {
      const file = files[shipped++];
      const d = decisions[k] ?? {};
      const at = (fraction: number): number => Math.floor(fraction * file.bytes.length);
      if (d.truncateAt !== undefined) {
        bump(run, 'ship truncated copy');
        await ship(file.name, file.bytes.slice(0, at(d.truncateAt)), false);
        await scan(`after a truncated ${file.name}`);
      }
      if (d.flip) {
        bump(run, 'ship bit-flipped copy');
        const bytes = file.bytes.slice();
        bytes[at(d.flip.at)] ^= 1 << d.flip.bit;
        await ship(file.name, bytes, true);
        await scan(`after a bit-flipped ${file.name}`);
      }
      if (d.late) {
        // Arrives later, out of order.
        bump(run, 'ship late (out of order) file');
        late.push(file);
        continue;
      }
      await deliverGood(file);
      if (d.deliverLate && late.length > 0) await deliverGood(late.shift() as RotatedFileInfo);
      if (d.duplicate !== undefined && files.length > 1) {
        bump(run, 'ship duplicate file');
        await deliverGood(files[d.duplicate % shipped]);
      }
    }
  };

  /**
   * Rotate, check the log chain and the master's tree, note the new files.
   * A rotation the master refused for want of room (a fill step left its
   * disk full) changes nothing the next one does not check: its request
   * stays, and a later commit may take it (so the next rotation may find
   * more files, ending at operation boundaries since the last one).
   */
  const rotate = async (): Promise<void> => {
    try {
      await c.rotate();
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      const e = c.engineOf(c.master);
      if (code === 'ENOSPC' && mayRefuseForRoom({ op: 'commit' }, e, c.master.machine.disk)) bump(run, 'rotate refused (master disk full)');
      else if (code === 'EIO' && mayFailWithEio({ op: 'commit' }, e, c.master.machine.disk)) bump(run, 'rotate failed (master disk EIO)');
      else throw err;
      refusedRotations++;
      return;
    }
    // The rotation's commit (no operation ran) holds the current tree.
    await oracle.idle(0);
    const chain = await c.masterLogChain();
    const fresh = chain.files.slice(files.length);
    if (fresh.length < 1 || (fresh.length > 2 + refusedRotations && !autoRotate && !s.setup.buggify)) throw new Error(`${chain.files.length} rotated files after ${files.length} before and one rotation`);
    await oracle.checkMaster();
    for (const f of fresh) if (!oracle.atTxn.has(f.lastTxn)) problem(`${f.name} ends at txn ${f.lastTxn}, which the master never committed (or lost)`);
    files.push(...fresh);
    opsSinceRotation = 0;
    refusedRotations = 0;
  };

  /** Rotated files are never lost or changed, whatever happens to the master after it closed them. */
  const checkRotatedFiles = async (label: string): Promise<void> => {
    const chain = await c.masterLogChain();
    for (const [i, f] of files.entries()) {
      const now = chain.files[i];
      if (!now || now.name !== f.name || !equalBytes(now.bytes, f.bytes)) problem(`${label}: rotated file ${f.name} is ${now ? 'changed' : 'gone'}`);
    }
  };

  /**
   * A master fault (with the slave too for `both`): crash or power loss at
   * this instant, reopen (the slave first unless masterFirst). The master
   * comes back at a committed txn, not before its last fsync or commit
   * (MasterOracle), with its rotated files intact; the slave not behind the
   * files it applied.
   */
  const failMaster = async (f: Extract<Step, { step: 'fault' }>, fault = `${f.who} ${f.kind}`): Promise<void> => {
    bump(run, fault);
    oracle.beforeMasterFails();
    const appliedBefore = c.slave.node?.slaveApplier?.durablePosition().sequence ?? 0; // what it had made durable (a failed data sync leaves a file applied in memory only)
    const fail = (m: SimMachine): void => (f.kind === 'crash' ? m.crash() : m.powerLoss());
    if (f.who === 'both') {
      fail(c.slave.machine);
      c.dropped(c.slave);
    }
    fail(c.master.machine);
    c.dropped(c.master);
    const openSlave = async (): Promise<void> => {
      if (!c.slave.engine) await reopenSlave(appliedBefore, f.kind, `after ${f.who} ${f.kind}`);
    };
    if (!f.masterFirst) await openSlave();
    await c.open(c.master);
    await oracle.masterOpened();
    await checkRotatedFiles(`after master ${f.kind}`);
    await openSlave();
  };

  for (const step of s.steps) {
    if (isNodeStep(step)) {
      await nodeStep(run, step, c);
      continue;
    }
    switch (step.step) {
      case 'rogue':
        await writeRogue(new PathFs(c.engineOf(c.master)), (p) => c.run(p), bs);
        break;
      case 'fault':
        if (step.who === 'slave') armed.push(step);
        else masterArmed.push(step);
        break;
      case 'rotate':
        await rotate();
        await shipNew(step.ship);
        break;
      case 'op': {
        if (crashAt === undefined && masterArmed.length > 0) crashAt = sched.stepsRun + masterArmed[0].afterSteps;
        const outcome = await oracle.runOp(step.op, stop);
        if (outcome === 'stuck') throw new Error(`${JSON.stringify(step.op)} never completed`);
        if (outcome === 'done') {
          opsSinceRotation++;
          await oracle.idle(step.idleMs, stop);
        }
        if (stop()) {
          crashAt = undefined;
          await failMaster(masterArmed.shift() as Extract<Step, { step: 'fault' }>);
        }
        // A failed data sync stopped the master's engine (an injected I/O error): the operator remounts it.
        if (c.master.engine?.stopped) await failMaster({ step: 'fault', who: 'master', kind: 'crash', masterFirst: false, afterSteps: 0 }, 'master stopped (EIO), remounted');
        break;
      }
      default:
        throw wrongMode(step, s.mode);
    }
  }
  // Master faults no operation reached land in idle time after the workload.
  for (const f of masterArmed.splice(0)) {
    const at = sched.stepsRun + f.afterSteps;
    await oracle.idle(60_000, () => sched.stepsRun >= at);
    await failMaster(f);
  }
  // Every disk has room and works again, and replication is on at both nodes, before the end state is checked.
  healDisks(run, c);
  if (c.master.engine?.stopped) await failMaster({ step: 'fault', who: 'master', kind: 'crash', masterFirst: false, afterSteps: 0 }, 'master stopped (EIO), remounted');
  if (c.slave.engine?.stopped || c.slave.node?.watchdir?.remountNeeded) await restartSlave('crash', 'slave stopped (EIO), remounted', 'at the end');
  for (const who of ['master', 'slave'] as const) await toggle(run, { step: 'toggle', who, enabled: true }, c[who].node?.control, (p) => c.run(p));
  // Operations after the last rotation step (a shrunk schedule) still ship, plainly.
  if (opsSinceRotation > 0) {
    await rotate();
    await shipNew([]);
  }
  // The operator ships whatever never arrived (and everything once more): the slave converges.
  for (const file of late.splice(0)) await deliverGood(file);
  for (const file of files) await c.deliver(file.name, file.bytes, true);
  if (files.length > 0) await scan('after shipping every file again');
  const last = files[files.length - 1];
  // A slave whose disk failed waits before it tries again (a backoff that doubles per failure, room-wait.ts): scan again as the poll would.
  for (let i = 0; last && i < 20 && c.slave.node?.slaveApplier?.position().sequence !== last.sequence; i++) {
    await c.scheduler.run({ untilMs: sched.nowMs() + 30_000 });
    await scan(`after a slave's wait for its disk (${i + 1})`);
  }
  const pos = c.slave.node?.slaveApplier?.position();
  if (last && (pos?.sequence !== last.sequence || pos.txn !== last.lastTxn)) {
    problem(`slave did not converge: at ${JSON.stringify(pos)}, the master's last file is ${rotatedLogName(last.sequence)} (txn ${last.lastTxn})`);
  }
  run.hooks.finalModel?.(oracle.model);
  await oracle.checkMaster();
  const md = await c.digest(c.master);
  const sd = await c.digest(c.slave);
  if (md !== sd) problem(`slave tree differs from the master's after convergence:\nmaster:\n${await c.listing(c.master)}\nslave:\n${await c.listing(c.slave)}`);
  await c.close(c.master);
  await c.close(c.slave);
  for (const n of [c.master, c.slave]) {
    const rep = await c.fsck(n);
    if (rep.problems.length > 0) problem(`lessfsck -t on the ${n.machine.options.name}: ${JSON.stringify(rep.problems)}`);
  }
  return oracle.opsRun;
}

export interface SimHooks {
  /** Every trace line of the run, in order (to find where two runs diverge). */
  traceLine?: (line: string) => void;
  /** The reference model at the end of a run that got there: the tree the oracle checked the master against last. */
  finalModel?: (model: ModelFs) => void;
}

/**
 * Execute a schedule with these options' config. Never throws for what the
 * system does: failures are in `problems`. Throws ConfigError for a bad config.
 */
export async function executeSchedule(input: SimOptions, schedule: Schedule, hooks: SimHooks = {}): Promise<SimResult> {
  const options = simOptions(input);
  if (schedule.mode !== options.mode) throw new RangeError(`a ${schedule.mode} schedule cannot run in ${options.mode} mode`);
  const cfg = runConfig(options);
  const sched = new Scheduler({ seed: schedule.seed });
  const run: Run = { schedule, cfg, bs: schedule.setup.blockSizeBytes ?? blockSizeOf(cfg), sched, faults: {}, problems: [], hooks };
  countTraceFaults(sched, run.faults, hooks.traceLine);
  const wallStart = performance.now();
  let ops = 0;
  try {
    ops = schedule.mode === 'live' ? await runLive(run) : await runBatch(run);
  } catch (err) {
    const e = err as Error & { code?: string };
    run.problems.push(`${sched.nowMs()} ms: the run failed with ${e.code ?? e.name}: ${e.message}`);
  } finally {
    sched.traceSink = undefined;
    sched.noteSink = undefined;
  }
  const sorted: Record<string, number> = {};
  for (const k of Object.keys(run.faults).sort()) sorted[k] = run.faults[k];
  return {
    seed: options.seed,
    options,
    schedule,
    ok: run.problems.length === 0,
    problems: run.problems,
    faultsInjected: sorted,
    buggify: schedule.setup.buggify ?? false,
    invariantsChecked: schedule.mode === 'live' ? LIVE_INVARIANTS : BATCH_INVARIANTS,
    traceHash: sched.traceHash(),
    simulatedMs: sched.nowMs(),
    wallMs: performance.now() - wallStart,
    ops,
    engine: run.engine,
  };
}

/** One seeded simulation: generate the seed's schedule, then execute it. */
export async function runSimulation(input: Partial<SimOptions> & { seed: number }, hooks: SimHooks = {}): Promise<SimResult> {
  const options = simOptions(input);
  return executeSchedule(options, generateSchedule(options), hooks);
}
