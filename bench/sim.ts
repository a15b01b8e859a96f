// Simulator speed: how many simulated filesystem operations, simulated seconds
// and seeds `lessfs-sim` gets through per wall second, on a fixed seed range of
// the default profile (live mode, no faults, 200 ops), of `--faults all` and of
// batch mode. Baseline in the same round: the reference model alone (the live
// workload generator applying the same operations to ModelFs and
// digesting the tree after each, as the oracle does), so a slow machine shows
// in both and the ratio stays comparable.

import { availableParallelism } from 'node:os';
import { OPS_DEFAULT, type FaultProfile, type SimMode } from '../src/sim/campaign.ts';
import { runSeeds } from '../src/sim/parallel.ts';
import { liveOp } from '../src/sim/live-cluster.ts';
import { ModelFs } from '../src/sim/model.ts';
import { SimRng } from '../src/sim/rng.ts';
import { applyToModel } from '../src/sim/workload.ts';
import { collectGarbage, median, roundFigure } from './measure.ts';
import type { BenchContext, Figure, Section, SectionReport, Target } from './section.ts';

/** The workload's block size in lessfs-sim (campaign.ts). */
const SIM_BLOCK_BYTES = 4096;
const SEEDS_DEFAULT = 20;
const SEEDS_QUICK = 3;
/** The parallel campaign runs this many times the seeds: each worker starts cold (module loading, JIT), as a CLI campaign does. */
const PARALLEL_SEEDS_FACTOR = 5;
const TARGET_OPS_PER_S = 20_000;
const TARGET_REAL_TIME = 100;

interface Variant {
  key: string;
  label: string;
  faults: FaultProfile;
  mode: SimMode;
}

const VARIANTS: readonly Variant[] = [
  { key: 'default', label: 'live, faults none (the default profile)', faults: 'none', mode: 'live' },
  { key: 'all', label: 'live, faults all', faults: 'all', mode: 'live' },
  { key: 'batch', label: 'batch, faults none', faults: 'none', mode: 'batch' },
];

interface Campaign {
  seeds: number;
  ops: number;
  simMs: number;
  wallMs: number;
  events: number;
  failed: number[];
}

/**
 * Seeds first..first+count-1 of a variant, as `lessfs-sim run --seeds` runs
 * them: in this process (jobs 1), or in `jobs` worker threads (`--jobs`,
 * their start-up included).
 */
async function campaign(v: Pick<Variant, 'faults' | 'mode'>, first: number, count: number, jobs = 1): Promise<Campaign> {
  const out: Campaign = { seeds: count, ops: 0, simMs: 0, wallMs: 0, events: 0, failed: [] };
  collectGarbage();
  const t0 = performance.now();
  await runSeeds(first, first + count - 1, { ops: OPS_DEFAULT, faults: v.faults, mode: v.mode }, jobs, (o) => {
    out.ops += o.ops;
    out.simMs += o.simulatedMs;
    // The trace hash ends with the number of scheduler events.
    out.events += Number(o.traceHash.slice(o.traceHash.lastIndexOf(':') + 1));
    if (!o.ok) out.failed.push(o.seed);
  });
  out.wallMs = performance.now() - t0;
  return out;
}

/**
 * The baseline: the live workload generator (liveOp) on the same seeds, drawing
 * from the same stream as runLive, so with no faults these are the very
 * operations the default profile runs; each is applied to the reference model
 * and the tree digested after it. No engine, no replication, no scheduler.
 */
function modelOnly(first: number, count: number): { ops: number; wallMs: number } {
  collectGarbage();
  const t0 = performance.now();
  let ops = 0;
  let sink = 0;
  for (let seed = first; seed < first + count; seed++) {
    // The stream runLive draws its workload from: an operation, then its idle time.
    const rng = new SimRng(seed).split('workload');
    const model = new ModelFs();
    for (let i = 0; i < OPS_DEFAULT; i++) {
      applyToModel(model, liveOp(rng, model, SIM_BLOCK_BYTES), SIM_BLOCK_BYTES);
      sink += model.digest().length + rng.int(300);
      ops++;
    }
  }
  if (sink === 0) throw new Error('model baseline computed nothing');
  return { ops, wallMs: performance.now() - t0 };
}

interface Round {
  modelOpsS: number;
  runs: Map<string, Campaign>;
}

const opsPerS = (c: Campaign): number => c.ops / (c.wallMs / 1000);
const realTime = (c: Campaign): number => c.simMs / c.wallMs;
const seedsPerMin = (c: Campaign): number => c.seeds / (c.wallMs / 60_000);

async function run(ctx: BenchContext): Promise<SectionReport> {
  const flag = ctx.flag('sim-seeds');
  const seeds = flag !== undefined ? Number(flag) : ctx.quick ? SEEDS_QUICK : SEEDS_DEFAULT;
  if (!(Number.isInteger(seeds) && seeds >= 1 && seeds <= 10_000)) throw new Error(`--sim-seeds wants a whole number in 1..10000, got '${flag}'`);
  const first = 1;
  // Warm-up (JIT, module loading): a few seeds of each variant, not measured.
  ctx.log('sim: warm-up');
  for (const v of VARIANTS) await campaign(v, 1_000_000, 2);
  modelOnly(1_000_000, 2);

  const jobs = availableParallelism();
  const rounds: Round[] = [];
  for (let r = 0; r < ctx.repeats; r++) {
    const model = modelOnly(first, seeds);
    const runs = new Map<string, Campaign>();
    for (const v of VARIANTS) runs.set(v.key, await campaign(v, first, seeds));
    runs.set('parallel', await campaign({ faults: 'none', mode: 'live' }, first, seeds * PARALLEL_SEEDS_FACTOR, jobs));
    const x: Round = { modelOpsS: model.ops / (model.wallMs / 1000), runs };
    const d = runs.get('default') as Campaign;
    ctx.log(`sim: round ${r + 1}: default ${opsPerS(d).toFixed(0)} ops/s (${realTime(d).toFixed(0)}x real time), model alone ${x.modelOpsS.toFixed(0)} ops/s; ` +
      VARIANTS.slice(1).map((v) => `${v.key} ${opsPerS(runs.get(v.key) as Campaign).toFixed(0)} ops/s`).join(', ') +
      `; default with ${jobs} worker threads ${opsPerS(runs.get('parallel') as Campaign).toFixed(0)} ops/s`);
    rounds.push(x);
  }
  const fig = (label: string, pick: (x: Round) => number, unit: string, note?: string): Figure => roundFigure(rounds, label, pick, unit, note);
  const of = (key: string) => (x: Round): Campaign => x.runs.get(key) as Campaign;
  const def = of('default');
  const figures: Figure[] = [fig('reference model alone (liveOp + ModelFs + digest)', (x) => x.modelOpsS, 'ops/s', 'baseline')];
  for (const v of VARIANTS) {
    const c = of(v.key);
    figures.push(
      fig(`${v.label}: sim fs ops per wall second`, (x) => opsPerS(c(x)), 'ops/s', `seeds ${first}..${first + seeds - 1}, ${OPS_DEFAULT} ops each`),
      fig(`${v.label}: simulated / wall time`, (x) => realTime(c(x)), '×'),
      fig(`${v.label}: seeds per minute`, (x) => seedsPerMin(c(x)), 'seeds/min'),
      fig(`${v.label}: scheduler events per wall second`, (x) => c(x).events / (c(x).wallMs / 1000), 'events/s'),
    );
  }
  const par = of('parallel');
  figures.push(
    fig(`default profile in ${jobs} worker threads (--jobs auto): sim fs ops per wall second`, (x) => opsPerS(par(x)), 'ops/s', `seeds ${first}..${first + seeds * PARALLEL_SEEDS_FACTOR - 1}; worker start-up included`),
    fig(`default profile in ${jobs} worker threads: seeds per minute`, (x) => seedsPerMin(par(x)), 'seeds/min'),
    fig(`${jobs} worker threads / one thread, default profile`, (x) => opsPerS(par(x)) / opsPerS(def(x)), '×', 'paired per round; the one thread is this process, warm'),
  );
  figures.push(fig('model alone / default profile', (x) => x.modelOpsS / opsPerS(def(x)), '×', 'paired per round: what one simulated op costs in model ops'));
  const targets: Target[] = [
    { label: 'sim fs ops per wall second, default profile', value: median(rounds.map((x) => opsPerS(def(x)))), op: '>=', limit: TARGET_OPS_PER_S, unit: 'ops/s', note: 'issue 6' },
    { label: 'simulated / wall time, default profile', value: median(rounds.map((x) => realTime(def(x)))), op: '>=', limit: TARGET_REAL_TIME, unit: '×', note: 'issue 6' },
  ];
  const failed = [...VARIANTS, { key: 'parallel' }].map((v) => ({ v, seeds: [...new Set(rounds.flatMap((x) => of(v.key)(x).failed))] })).filter((f) => f.seeds.length > 0);
  return {
    figures,
    targets,
    notes: [
      `Each round runs seeds ${first}..${first + seeds - 1} of each variant in this process (runSimulation, as \`lessfs-sim run --seeds\`), after an unmeasured warm-up; ops are the workload operations that completed on the master; every invariant is checked as in a campaign.`,
      'Baseline: the live workload generator on the same seeds (the same operations the default profile runs), each applied to ModelFs and the tree digested after it (the oracle\'s own share of the work), without engine, replication or scheduler.',
      failed.length === 0
        ? 'Every seed of every variant passed its invariants.'
        : `Seeds that failed their invariants (still timed): ${failed.map((f) => `${f.v.key}: ${f.seeds.join(', ')}`).join('; ')}.`,
    ],
  };
}

export const simSection: Section = {
  name: 'sim',
  description: 'lessfs-sim speed: simulated fs ops, simulated seconds and seeds per wall second (default profile, faults all, batch) vs the reference model alone',
  run,
};
