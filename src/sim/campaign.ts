// One seeded simulation of a master/slave cluster, as `lessfs-sim run` runs it:
// a workload checked against a reference model, with the faults of a profile
// (link faults, power loss and crashes, torn and reordered writes, shipping
// faults in batch mode) drawn from the seed. Invariant violations are collected
// as problems, never thrown, so one run reports all it found; an exception from
// the system under test is a problem too. Same options => same trace hash.

import { performance } from 'node:perf_hooks';
import { PathFs } from '../core/fs/path-fs.ts';
import { rotatedLogName } from '../core/replication/master-log.ts';
import { BatchCluster, type RotatedFileInfo } from './batch-cluster.ts';
import type { SimDiskOptions } from './disk.ts';
import { LinkCuts, LiveCluster, LiveOracle, liveOp } from './live-cluster.ts';
import { ModelFs } from './model.ts';
import type { SimNetOptions } from './net.ts';
import { SimRng } from './rng.ts';
import { Scheduler } from './scheduler.ts';
import type { SimStoreOptions } from './store.ts';
import { applyToFs, applyToModel, modelDigest, poolData, randomOp, type Op } from './workload.ts';

export const FAULT_PROFILES = ['none', 'net', 'disk', 'power', 'all', 'swarm'] as const;
export type FaultProfile = (typeof FAULT_PROFILES)[number];
export const SIM_MODES = ['live', 'batch'] as const;
export type SimMode = (typeof SIM_MODES)[number];

export const OPS_DEFAULT = 200;
/** Bound on one run's workload (a campaign multiplies it by the seeds). */
export const OPS_MAX = 100_000;

export interface SimOptions {
  seed: number;
  ops: number;
  faults: FaultProfile;
  mode: SimMode;
  /**
   * Test-only: half-way through, write a file on the master behind the
   * oracle's back, so the model and the system really diverge and the
   * invariants must catch it (used to test failure reporting end to end).
   */
  breakInvariant?: boolean;
}

export interface SimResult {
  seed: number;
  options: SimOptions;
  ok: boolean;
  problems: string[];
  faultsInjected: Record<string, number>;
  invariantsChecked: string[];
  traceHash: string;
  simulatedMs: number;
  wallMs: number;
  /** Workload operations that ran to completion on the master. */
  ops: number;
}

export function isFaultProfile(s: string): s is FaultProfile {
  return (FAULT_PROFILES as readonly string[]).includes(s);
}

export function isSimMode(s: string): s is SimMode {
  return (SIM_MODES as readonly string[]).includes(s);
}

/** Fill defaults and check bounds (a RangeError names what is wrong). */
export function simOptions(o: Partial<SimOptions> & { seed: number }): SimOptions {
  const out: SimOptions = { seed: o.seed, ops: o.ops ?? OPS_DEFAULT, faults: o.faults ?? 'none', mode: o.mode ?? 'live' };
  if (o.breakInvariant) out.breakInvariant = true;
  if (!Number.isSafeInteger(out.seed) || out.seed < 0) throw new RangeError(`seed must be an integer >= 0, got ${out.seed}`);
  if (!Number.isSafeInteger(out.ops) || out.ops < 1 || out.ops > OPS_MAX) throw new RangeError(`ops must be an integer in 1..${OPS_MAX}, got ${out.ops}`);
  if (!isFaultProfile(out.faults)) throw new RangeError(`unknown fault profile '${String(out.faults)}' (expected ${FAULT_PROFILES.join(', ')})`);
  if (!isSimMode(out.mode)) throw new RangeError(`unknown mode '${String(out.mode)}' (expected ${SIM_MODES.join(', ')})`);
  return out;
}

/** The one command line that reruns these options. */
export function reproduceCommand(o: SimOptions): string {
  return `lessfs-sim run --seed ${o.seed} --ops ${o.ops} --faults ${o.faults} --mode ${o.mode}${o.breakInvariant ? ' --test-break-invariant' : ''}`;
}

const BS = 4096;

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
  disk: Partial<SimDiskOptions>;
  store: Partial<SimStoreOptions>;
  nodeFaults: NodeFault[];
  commitIntervalMs: number;
  secret: string | undefined;
  /** Batch shipping faults, per delivered file. */
  ship: { truncate: number; flip: number; drop: number; duplicate: number };
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
    disk: { latencyMsMin: 0, latencyMsMax: 2 },
    store: { commitLatencyMsMin: 1, commitLatencyMsMax: 4, syncLatencyMsMin: 1, syncLatencyMsMax: r.pick([6, 60, 400]) },
    nodeFaults: [],
    commitIntervalMs: r.pick([100, 500, 2000]),
    secret: r.chance(0.5) ? 'sim-secret' : undefined,
    ship: { truncate: 0, flip: 0, drop: 0, duplicate: 0 },
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
  };
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
      break;
    }
  }
  return plan;
}

// ------------------------------------------------------------------ runs

const LIVE_INVARIANTS = [
  'master results match the reference model (every read, error and tree)',
  'master recovers at a committed txn, not before its last fsync/commit',
  'slave tree = master tree at the slave applied txn, a txn the master made durable',
  'slave comes back at least at the txn its master was told was durable',
  'slave applies each txn exactly once, in order',
  'master and slave never commit at the same instant',
  'after faults stop the slave converges, backlog reads 0, replog.dta is empty',
  'slave tree = master tree = model after convergence',
  'lessfsck -t clean on master and slave after unmount',
];

const BATCH_INVARIANTS = [
  'master results match the reference model (every read, error and tree)',
  'master log chain holds together (sequences, txns, CRCs, trailers)',
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
  sched.traceSink = (line) => {
    traceLine?.(line);
    const net = /^net (bitflip|reset|stall|partition|hold) /.exec(line);
    if (net) bump(`net ${net[1]}`);
    else if (line.includes(' powerloss file ')) {
      if (line.includes(' torn@')) bump('disk torn write');
      if (line.includes(' reordered ')) bump('disk reordered writes');
    }
  };
}

async function runLive(o: SimOptions, plan: FaultPlan, sched: Scheduler, faults: Record<string, number>, problems: string[], workload?: WorkloadSource): Promise<number> {
  const bs = workload?.blockSizeBytes ?? BS;
  const c = new LiveCluster(sched, o.seed, {
    engine: { commitIntervalMs: plan.commitIntervalMs, cacheSizeBytes: 24 * bs, blockSizeBytes: bs },
    masterNode: { disk: plan.disk, store: plan.store },
    slaveNode: { disk: plan.disk, store: plan.store },
    net: plan.net,
    secret: plan.secret,
  });
  const oracle = new LiveOracle(c, bs);
  const rng = new SimRng(o.seed).split('workload');
  const bump = (k: string): void => {
    faults[k] = (faults[k] ?? 0) + 1;
  };
  try {
    await c.format();
    await c.open(c.slave);
    await c.open(c.master);
    await oracle.masterOpened();
    const queue = [...plan.nodeFaults];
    let crashAt: number | undefined;
    const cuts = new LinkCuts(c, plan.cutProbability);
    // A workload source ends the loop itself (a trace replay reissues what a master fault lost).
    for (let i = 0; workload !== undefined || i < o.ops; i++) {
      cuts.step(i, rng);
      if (o.breakInvariant && i === Math.floor(o.ops / 2)) {
        const fs = new PathFs(c.engineOf(c.master));
        fs.create('/rogue');
        await c.run(fs.write('/rogue', 0, poolData(BS, 1, 100)));
      }
      if (crashAt === undefined && queue.length > 0 && queue[0].atOp <= i) crashAt = sched.stepsRun + queue[0].afterSteps;
      const stop = (): boolean => crashAt !== undefined && sched.stepsRun >= crashAt;
      const op = workload ? workload.next(oracle.model) : liveOp(rng, oracle.model, BS);
      if (op === undefined) break;
      const outcome = await oracle.runOp(op, stop);
      if (outcome === 'stuck') {
        problems.push(`${sched.nowMs()} ms: op ${i} ${JSON.stringify(op)} never completed`);
        break;
      }
      if (outcome === 'done') await oracle.idle(rng.int(300), stop);
      if (stop()) {
        const f = queue.shift() as NodeFault;
        crashAt = undefined;
        bump(`${f.who} ${f.kind}`);
        await oracle.fault(f.who, f.kind, f.masterFirst);
        await oracle.checkSlave();
      }
      if (i % 10 === 9) await oracle.checkSlave();
    }
    // Faults the workload did not reach land in idle time after it.
    while (queue.length > 0) {
      const f = queue.shift() as NodeFault;
      const at = sched.stepsRun + f.afterSteps;
      await oracle.idle(60_000, () => sched.stepsRun >= at);
      bump(`${f.who} ${f.kind}`);
      await oracle.fault(f.who, f.kind, f.masterFirst);
    }
    await oracle.finish();
  } finally {
    problems.push(...oracle.problems);
  }
  return oracle.opsRun;
}

interface Delivery {
  file: RotatedFileInfo;
}

async function runBatch(o: SimOptions, plan: FaultPlan, sched: Scheduler, faults: Record<string, number>, problems: string[], workload?: WorkloadSource): Promise<number> {
  const bs = workload?.blockSizeBytes ?? BS;
  const c = new BatchCluster(sched, o.seed, {
    engine: { commitIntervalMs: plan.commitIntervalMs, cacheSizeBytes: 24 * bs, blockSizeBytes: bs },
    // Scans run when the harness says, so each one is checked.
    watchdirPollMs: 1e12,
    masterNode: { disk: plan.disk, store: plan.store },
    slaveNode: { disk: plan.disk, store: plan.store },
  });
  const rng = new SimRng(o.seed).split('workload');
  const ship = new SimRng(o.seed).split('ship');
  const bump = (k: string): void => {
    faults[k] = (faults[k] ?? 0) + 1;
  };
  const problem = (m: string): void => {
    problems.push(`${sched.nowMs()} ms: ${m}`);
  };
  await c.format();
  const engine = await c.open(c.master);
  const fs = new PathFs(engine);
  await c.open(c.slave, true);
  await c.settleWatch();
  const model = new ModelFs();
  /**
   * Master trees (as the model has them) each rotated file's last txn may hold:
   * one rotate_replog can close two files (a commit already running takes the
   * request first, see MasterLog.rotate), and that earlier file ends at a
   * commit of some operation boundary since the last rotation.
   */
  const digestAt = new Map<number, Set<string>>([[0, new Set([modelDigest(model)])]]);
  let sinceRotation: string[] = [modelDigest(model)];
  const files: RotatedFileInfo[] = [];
  let shipped = 0;
  const late: Delivery[] = [];
  const nodeFaults = plan.nodeFaults.filter((f) => f.who !== 'master');
  let opsRun = 0;
  let opsSinceRotation = 0;
  let rotateEvery = 5 + rng.int(20);

  const checkSlave = async (label: string): Promise<void> => {
    const pos = c.slave.node?.slaveApplier?.position();
    if (!pos) throw new Error('slave not open with its applier');
    const want = digestAt.get(pos.txn);
    const boundary = pos.sequence === 0 ? 0 : files[pos.sequence - 1]?.lastTxn;
    if (pos.txn !== boundary || want === undefined) {
      problem(`${label}: slave at txn ${pos.txn} sequence ${pos.sequence}, not the end of a master file`);
      return;
    }
    const got = await c.digest(c.slave);
    if (!want.has(got)) problem(`${label}: slave tree at txn ${pos.txn} is none of the ${want.size} master trees of that txn:\n${got}\nwant:\n${[...want].join('\n--\n')}`);
  };

  /** One scan; a planned slave fault may cut it at a seeded step, then the slave reopens. */
  const scan = async (label: string): Promise<void> => {
    const f = nodeFaults[0];
    if (f && f.atOp <= opsRun) {
      nodeFaults.shift();
      const watch = c.slave.node?.watchdir;
      if (!watch) throw new Error('slave not open with its watchdir');
      const at = sched.stepsRun + f.afterSteps;
      let settled = false;
      let failure: unknown;
      watch.scanOnce().then(() => { settled = true; }, (err: unknown) => { settled = true; failure = err; });
      await sched.run({ done: () => settled || sched.stepsRun >= at });
      if (settled && failure) throw failure;
      const appliedBefore = c.slave.node?.slaveApplier?.position().sequence ?? 0;
      bump(`slave ${f.kind}`);
      if (f.kind === 'crash') c.slave.machine.crash();
      else c.slave.machine.powerLoss();
      c.dropped(c.slave);
      await c.open(c.slave, true);
      await c.settleWatch();
      const after = c.slave.node?.slaveApplier?.position().sequence ?? 0;
      if (after < appliedBefore) problem(`${label}: slave ${f.kind} lost applied files (sequence ${appliedBefore} -> ${after})`);
      await checkSlave(`${label}, after slave ${f.kind}`);
    }
    await c.scan();
    await checkSlave(label);
  };

  const deliverGood = async (d: Delivery): Promise<void> => {
    await c.deliver(d.file.name, d.file.bytes, true);
    await scan(`after delivering ${d.file.name}`);
  };

  /** Ship the files not yet shipped, with the plan's shipping faults. */
  const shipNew = async (): Promise<void> => {
    while (shipped < files.length) {
      const file = files[shipped++];
      if (ship.chance(plan.ship.truncate)) {
        bump('ship truncated copy');
        await c.deliver(file.name, file.bytes.slice(0, ship.int(file.bytes.length)), false);
        await scan(`after a truncated ${file.name}`);
      }
      if (ship.chance(plan.ship.flip)) {
        bump('ship bit-flipped copy');
        const bytes = file.bytes.slice();
        bytes[ship.int(bytes.length)] ^= 1 << ship.int(8);
        await c.deliver(file.name, bytes, true);
        await scan(`after a bit-flipped ${file.name}`);
      }
      if (ship.chance(plan.ship.drop)) {
        // Arrives later, out of order.
        bump('ship late (out of order) file');
        late.push({ file });
        continue;
      }
      await deliverGood({ file });
      if (late.length > 0 && ship.chance(0.5)) await deliverGood(late.shift() as Delivery);
      if (files.length > 1 && ship.chance(plan.ship.duplicate)) {
        bump('ship duplicate file');
        await deliverGood({ file: files[ship.int(shipped)] });
      }
    }
  };

  const rotate = async (): Promise<void> => {
    await c.rotate();
    const chain = await c.masterLogChain();
    const fresh = chain.files.slice(files.length);
    if (fresh.length < 1 || fresh.length > 2) throw new Error(`${chain.files.length} rotated files after ${files.length} before and one rotation`);
    const f = fresh[fresh.length - 1];
    const got = await c.digest(c.master);
    const want = modelDigest(model);
    if (got !== want) problem(`master tree at ${f.name} (txn ${f.lastTxn}) differs from the model:\n${got}\nmodel:\n${want}`);
    if (fresh.length === 2) digestAt.set(fresh[0].lastTxn, new Set(sinceRotation));
    digestAt.set(f.lastTxn, new Set([want]));
    files.push(...fresh);
    opsSinceRotation = 0;
    sinceRotation = [want];
    rotateEvery = 5 + rng.int(20);
  };

  for (let i = 0; i < o.ops; i++) {
    if (o.breakInvariant && i === Math.floor(o.ops / 2)) {
      fs.create('/rogue');
      await c.run(fs.write('/rogue', 0, poolData(BS, 1, 100)));
    }
    const op = workload ? workload.next(model) : randomOp(rng, BS);
    if (op === undefined) break;
    if (op.op === 'remount') continue;
    const got = op.op === 'commit' ? await c.run(engine.commit().then(() => ({ ok: '' }))) : await c.run(applyToFs(fs, op, bs));
    const want = applyToModel(model, op, bs);
    if (JSON.stringify(got) !== JSON.stringify(want)) problem(`master op ${JSON.stringify(op)}: got ${JSON.stringify(got)}, the model says ${JSON.stringify(want)}`);
    opsRun++;
    sinceRotation.push(modelDigest(model));
    await c.scheduler.run({ untilMs: sched.nowMs() + rng.int(300) });
    if (++opsSinceRotation >= rotateEvery) {
      await rotate();
      await shipNew();
    }
  }
  if (opsSinceRotation > 0) await rotate();
  await shipNew();
  // The operator ships whatever never arrived (and everything once more): the slave converges.
  for (const d of late.splice(0)) await deliverGood(d);
  for (const file of files) await c.deliver(file.name, file.bytes, true);
  if (files.length > 0) await scan('after shipping every file again');
  const last = files[files.length - 1];
  const pos = c.slave.node?.slaveApplier?.position();
  if (last && (pos?.sequence !== last.sequence || pos.txn !== last.lastTxn)) {
    problem(`slave did not converge: at ${JSON.stringify(pos)}, the master's last file is ${rotatedLogName(last.sequence)} (txn ${last.lastTxn})`);
  }
  const md = await c.digest(c.master);
  const sd = await c.digest(c.slave);
  if (md !== sd) problem(`slave tree differs from the master's after convergence:\nmaster:\n${md}\nslave:\n${sd}`);
  await c.close(c.master);
  await c.close(c.slave);
  for (const n of [c.master, c.slave]) {
    const rep = await c.fsck(n);
    if (rep.problems.length > 0) problem(`lessfsck -t on the ${n.machine.options.name}: ${JSON.stringify(rep.problems)}`);
  }
  return opsRun;
}

/**
 * Where a run's operations come from when not from the seed: a recorded FUSE
 * trace (see trace-replay.ts). The run asks for the next operation with the
 * model's tree, which after a master fault is the tree the master recovered.
 */
export interface WorkloadSource {
  /** BLKSIZE the cluster is formatted with (the trace's). */
  readonly blockSizeBytes: number;
  /** The next operation, or undefined at the end of the workload. */
  next(model: ModelFs): Op | undefined;
}

export interface SimHooks {
  /** Every trace line of the run, in order (to find where two runs diverge). */
  traceLine?: (line: string) => void;
  /** Operations to run instead of the seeded workload (options.ops is then their number). */
  workload?: WorkloadSource;
}

/** One seeded simulation. Never throws for what the system does: failures are in `problems`. */
export async function runSimulation(input: Partial<SimOptions> & { seed: number }, hooks: SimHooks = {}): Promise<SimResult> {
  const options = simOptions(input);
  const plan = faultPlan(options);
  const sched = new Scheduler({ seed: options.seed });
  const faults: Record<string, number> = {};
  const problems: string[] = [];
  countTraceFaults(sched, faults, hooks.traceLine);
  const wallStart = performance.now();
  let ops = 0;
  try {
    ops = options.mode === 'live' ? await runLive(options, plan, sched, faults, problems, hooks.workload) : await runBatch(options, plan, sched, faults, problems, hooks.workload);
  } catch (err) {
    const e = err as Error & { code?: string };
    problems.push(`${sched.nowMs()} ms: the run failed with ${e.code ?? e.name}: ${e.message}`);
  } finally {
    sched.traceSink = undefined;
  }
  const sorted: Record<string, number> = {};
  for (const k of Object.keys(faults).sort()) sorted[k] = faults[k];
  return {
    seed: options.seed,
    options,
    ok: problems.length === 0,
    problems,
    faultsInjected: sorted,
    invariantsChecked: options.mode === 'live' ? LIVE_INVARIANTS : BATCH_INVARIANTS,
    traceHash: sched.traceHash(),
    simulatedMs: sched.nowMs(),
    wallMs: performance.now() - wallStart,
    ops,
  };
}
