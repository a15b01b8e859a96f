// Shrinking a failing schedule (`lessfs-sim --shrink`): delta debugging
// (ddmin) keeps the smallest schedule found that still fails with a problem of
// the same kind (campaign.ts problemKind) as the original's first problem.
// Phases, within a budget of runs:
//   1. ddmin over the steps (any sub-sequence of a schedule is a schedule);
//   2. ddmin over the remaining fault settings: each link fault probability,
//      bandwidth limit, torn/reordered writes, the shared secret, and each
//      shipping fault of a rotation, switched off unless it is needed;
//   3. simpler steps, one at a time: no idle time, shorter writes and reads,
//      offsets 0, truncates to 0.
// Every candidate is a full deterministic run, so the result replays exactly.

import { executeSchedule, problemKind, type SimOptions, type SimResult } from './campaign.ts';
import type { Schedule, ShipDecision, Step } from './schedule.ts';

export const SHRINK_BUDGET_DEFAULT = 200;

export interface ShrinkProgress {
  runs: number;
  budget: number;
  phase: 'steps' | 'faults' | 'simplify';
  /** Steps of the smallest failing schedule so far. */
  steps: number;
}

export interface ShrinkOptions {
  /** Most candidate runs (each a full simulation). */
  budget?: number;
  /** After every candidate run. */
  progress?: (p: ShrinkProgress) => void;
}

export interface ShrinkResult {
  /** The smallest schedule found that still fails with a problem of `kind`. */
  schedule: Schedule;
  /** Its run (problems, trace hash), which a replay reproduces. */
  result: SimResult;
  kind: string;
  originalSteps: number;
  /** Candidate runs made. */
  runs: number;
  /** The budget ran out before every phase finished (the schedule may shrink further). */
  exhausted: boolean;
}

class BudgetExhausted extends Error {}

function clone(s: Schedule): Schedule {
  return JSON.parse(JSON.stringify(s)) as Schedule;
}

/**
 * Zeller's ddmin: a subset of `items` for which `fails` holds, from which no
 * single chunk at the finest granularity tried can be removed. `fails(items)`
 * must hold. Throws BudgetExhausted through when `fails` does.
 */
async function ddmin<T>(items: readonly T[], fails: (subset: T[]) => Promise<boolean>): Promise<T[]> {
  let cur = [...items];
  let n = 2;
  while (cur.length >= 2) {
    const size = Math.ceil(cur.length / n);
    const chunks: T[][] = [];
    for (let i = 0; i < cur.length; i += size) chunks.push(cur.slice(i, i + size));
    let next: T[] | undefined;
    for (const c of chunks) {
      if (await fails(c)) {
        next = c;
        n = 2;
        break;
      }
    }
    if (!next && chunks.length > 2) {
      for (let i = 0; i < chunks.length && !next; i++) {
        const complement = chunks.filter((_, j) => j !== i).flat();
        if (await fails(complement)) {
          next = complement;
          n = Math.max(n - 1, 2);
        }
      }
    }
    if (next) {
      cur = next;
      continue;
    }
    if (n >= cur.length) break;
    n = Math.min(n * 2, cur.length);
  }
  if (cur.length === 1 && (await fails([]))) cur = [];
  return cur;
}

/** One fault setting or shipping fault that can be switched off. */
interface Knob {
  off(s: Schedule): void;
}

function faultKnobs(s: Schedule): Knob[] {
  const knobs: Knob[] = [];
  const zero = <K extends string>(part: 'net' | 'disk', key: K): void => {
    const v = (s.setup[part] as Record<string, unknown>)[key];
    if (typeof v === 'number' && v > 0) knobs.push({ off: (x) => void ((x.setup[part] as Record<string, unknown>)[key] = 0) });
  };
  for (const k of ['bitFlipProbability', 'resetProbability', 'stallProbability', 'splitProbability', 'bandwidthBytesPerMs']) zero('net', k);
  for (const k of ['tornWriteProbability', 'reorderProbability']) zero('disk', k);
  if (s.setup.secret !== undefined) knobs.push({ off: (x) => void delete x.setup.secret });
  if (s.setup.buggify) knobs.push({ off: (x) => void delete x.setup.buggify });
  s.steps.forEach((step, i) => {
    if (step.step !== 'rotate') return;
    step.ship.forEach((d, j) => {
      for (const field of Object.keys(d) as (keyof ShipDecision)[]) {
        knobs.push({ off: (x) => void delete (x.steps[i] as Extract<Step, { step: 'rotate' }>).ship[j][field] });
      }
    });
  });
  return knobs;
}

/** Simpler versions of a step, simplest first (none: nothing to simplify). */
function simplerSteps(step: Step): Step[] {
  if (step.step !== 'op') return [];
  const out: Step[] = [];
  if (step.idleMs > 0) out.push({ ...step, idleMs: 0 });
  const op = step.op;
  if (op.op === 'write' || op.op === 'read') {
    if (op.lengthBytes > 1) out.push({ ...step, op: { ...op, lengthBytes: 1 } });
    if (op.lengthBytes > 2) out.push({ ...step, op: { ...op, lengthBytes: Math.ceil(op.lengthBytes / 2) } });
    if (op.offsetBytes > 0) out.push({ ...step, op: { ...op, offsetBytes: 0 } });
  }
  if (op.op === 'truncate' && op.sizeBytes > 0) out.push({ ...step, op: { ...op, sizeBytes: 0 } });
  return out;
}

/**
 * Shrink the schedule of a failed run. `failed` must be the run of
 * `failed.schedule` with `options` (its first problem gives the kind kept).
 */
export async function shrinkSchedule(options: SimOptions, failed: SimResult, opts: ShrinkOptions = {}): Promise<ShrinkResult> {
  if (failed.ok) throw new Error('shrinkSchedule: the run did not fail, there is nothing to shrink');
  const budget = opts.budget ?? SHRINK_BUDGET_DEFAULT;
  const kind = problemKind(failed.problems[0]);
  let best = { schedule: failed.schedule, result: failed };
  let runs = 0;
  let phase: ShrinkProgress['phase'] = 'steps';
  const tried = new Map<string, boolean>();

  /** Run a candidate: does it still fail with a problem of `kind`? Keeps it when it does and is no larger. */
  const fails = async (candidate: Schedule): Promise<boolean> => {
    const key = JSON.stringify(candidate);
    const known = tried.get(key);
    if (known !== undefined) return known;
    if (runs >= budget) throw new BudgetExhausted();
    runs++;
    const r = await executeSchedule(options, candidate);
    const same = r.problems.some((p) => problemKind(p) === kind);
    tried.set(key, same);
    if (same && candidate.steps.length <= best.schedule.steps.length) best = { schedule: candidate, result: r };
    opts.progress?.({ runs, budget, phase, steps: best.schedule.steps.length });
    return same;
  };

  let exhausted = false;
  try {
    // 1. Steps.
    const base = best.schedule;
    await ddmin(base.steps, (steps) => fails({ ...base, steps }));

    // 2. Fault settings and shipping faults.
    phase = 'faults';
    const start = best.schedule;
    const knobs = faultKnobs(start);
    const withOnly = (kept: Knob[]): Schedule => {
      const s = clone(start);
      for (const k of knobs) if (!kept.includes(k)) k.off(s);
      return s;
    };
    // ddmin's current subset is always the last one that failed, which fails() kept as best.
    if (knobs.length > 0) await ddmin(knobs, (subset) => fails(withOnly(subset)));

    // 3. Simpler steps, one by one.
    phase = 'simplify';
    for (let i = 0; i < best.schedule.steps.length; i++) {
      // After each success the step is simpler: try again from it.
      let simplified = true;
      while (simplified) {
        simplified = false;
        for (const simpler of simplerSteps(best.schedule.steps[i])) {
          const s = clone(best.schedule);
          s.steps[i] = simpler;
          if (await fails(s)) {
            simplified = true;
            break;
          }
        }
      }
    }
  } catch (err) {
    if (!(err instanceof BudgetExhausted)) throw err;
    exhausted = true;
  }
  return { schedule: best.schedule, result: best.result, kind, originalSteps: failed.schedule.steps.length, runs, exhausted };
}
