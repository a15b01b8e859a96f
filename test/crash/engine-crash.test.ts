// Crash tests: a process crash (kill -9) or a power loss at any event of a
// workload, including every step of a commit. After recovery the node must be
// at a transaction boundary (its tree equals the model after some prefix of the
// operations), everything fsynced must be there (that prefix reaches the last
// successful fsync), lessfsck must be clean, and the recovered node must keep
// working (the workload continues against the model) and stay clean.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fsck } from '../../src/core/fs/fsck.ts';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import type { EngineOptions } from '../../src/core/fs/types.ts';
import { ModelFs } from '../../src/sim/model.ts';
import { SimRng } from '../../src/sim/rng.ts';
import { applyToFs, applyToModel, fsDigest, modelDigest, randomOp, type Op } from '../../src/sim/workload.ts';
import { SimHarness } from '../support/harness.ts';
import { opArb } from '../support/ops-arb.ts';

const BS = 4096;

export interface CrashCase {
  seed: number;
  ops: Op[];
  /** Crash after this many scheduler events (counted from the end of mount). */
  crashAtStep: number;
  kind: 'crash' | 'power';
  overrides?: Partial<EngineOptions>;
}

export interface CrashOutcome {
  /** Events the workload took (when it finished before the crash point). */
  stepsUsed: number;
  crashedMidWorkload: boolean;
  recoveredPrefix: number;
  lastSynced: number;
}

const baseOptions: Partial<EngineOptions> = { commitIntervalMs: 40, cacheSizeBytes: 6 * BS };

export async function runCrashCase(c: CrashCase): Promise<CrashOutcome> {
  const h = new SimHarness(c.seed, { ...baseOptions, ...c.overrides }, {
    disk: { latencyMsMin: 0, latencyMsMax: 2, tornWriteProbability: 0.3, reorderProbability: 0.3 },
    store: { commitLatencyMsMin: 1, commitLatencyMsMax: 4, syncLatencyMsMin: 1, syncLatencyMsMax: 6 },
  });
  const sched = h.scheduler;
  const think = new SimRng(c.seed).split('think');
  await h.format();
  const engine = await h.open();
  const fs = new PathFs(engine);
  const start = sched.stepsRun;
  const crashAt = start + c.crashAtStep;
  const model = new ModelFs();
  const snapshots: ModelFs[] = [model.clone()];
  let lastSynced = 0;
  let crashedMidWorkload = false;
  let inflight: Op | undefined;

  for (const op of c.ops) {
    let settled = false;
    let failure: unknown;
    const p = op.op === 'commit' ? engine.commit().then(() => ({ ok: '' })) : applyToFs(fs, op, BS);
    p.then(() => { settled = true; }, (err: unknown) => { settled = true; failure = err; });
    await sched.run({ done: () => settled || sched.stepsRun >= crashAt });
    if (!settled) {
      crashedMidWorkload = true;
      inflight = op;
      break;
    }
    if (failure) throw failure;
    const result = await p;
    applyToModel(model, op, BS);
    snapshots.push(model.clone());
    if ((op.op === 'fsync' && 'ok' in result) || op.op === 'commit') lastSynced = snapshots.length - 1;
    // Think time lets interval commits land between operations.
    await sched.run({ untilMs: sched.nowMs() + think.int(30), done: () => sched.stepsRun >= crashAt });
    if (sched.stepsRun >= crashAt) {
      crashedMidWorkload = true;
      break;
    }
  }
  const stepsUsed = sched.stepsRun - start;
  if (c.kind === 'crash') h.machine.crash();
  else h.machine.powerLoss();

  // Recover.
  const recovered = await h.open();
  expect(recovered.recovered).toBe(true);
  const rfs = new PathFs(recovered);
  const got = await h.run(fsDigest(rfs));
  const candidates = snapshots.map((m, i) => ({ i, m }));
  if (inflight) {
    const m = snapshots[snapshots.length - 1].clone();
    applyToModel(m, inflight, BS);
    candidates.push({ i: snapshots.length, m });
  }
  const match = candidates.find(({ i, m }) => i >= lastSynced && modelDigest(m) === got);
  if (!match) {
    const allMatches = candidates.filter(({ m }) => modelDigest(m) === got).map(({ i }) => i);
    throw new Error(
      `seed=${c.seed} crashAtStep=${c.crashAtStep} ${c.kind}: recovered tree matches no operation prefix >= last fsync ${lastSynced}` +
        ` (matches prefixes [${allMatches.join(',')}] of ${candidates.length})\nrecovered:\n${got}`,
    );
  }
  // The recovered node keeps working.
  const cont = match.m.clone();
  const rng = new SimRng(c.seed).split('after');
  for (let i = 0; i < 25; i++) {
    const op = randomOp(rng, BS);
    if (op.op === 'commit') continue;
    const want = applyToModel(cont, op, BS);
    const have = await h.run(applyToFs(rfs, op, BS));
    expect(have, `after recovery, op ${JSON.stringify(op)}`).toEqual(want);
  }
  expect(await h.run(fsDigest(rfs))).toBe(modelDigest(cont));
  await h.run(recovered.close());
  const report = await h.run(fsck(h.drivers(), h.options, { thorough: true, repair: false }));
  expect(report.problems, `seed=${c.seed} crashAtStep=${c.crashAtStep} ${c.kind}`).toEqual([]);
  return { stepsUsed, crashedMidWorkload, recoveredPrefix: match.i, lastSynced };
}


/** A workload where every operation succeeds: files, dedup, overwrite, truncate, rename, fsync. */
function scriptedOps(): Op[] {
  const ops: Op[] = [{ op: 'mkdir', path: '/a' }, { op: 'mkdir', path: '/b' }];
  for (let i = 0; i < 4; i++) {
    ops.push({ op: 'create', path: `/a/f${i}` });
    ops.push({ op: 'write', path: `/a/f${i}`, offsetBytes: 0, pool: 1 + i, lengthBytes: 3 * BS + 100 });
  }
  ops.push({ op: 'fsync', path: '/a/f0' });
  ops.push({ op: 'write', path: '/a/f1', offsetBytes: BS + 7, pool: 3, lengthBytes: 2 * BS });
  ops.push({ op: 'truncate', path: '/a/f2', sizeBytes: BS + 1 });
  ops.push({ op: 'rename', from: '/a/f3', to: '/b/g' });
  ops.push({ op: 'link', from: '/b/g', to: '/b/h' });
  ops.push({ op: 'unlink', path: '/a/f0' });
  ops.push({ op: 'fsync', path: '/b/g' });
  ops.push({ op: 'write', path: '/b/h', offsetBytes: 0, pool: 5, lengthBytes: 4 * BS });
  ops.push({ op: 'rename', from: '/a/f1', to: '/b/g' });
  ops.push({ op: 'commit' });
  ops.push({ op: 'unlink', path: '/b/h' });
  ops.push({ op: 'write', path: '/a/f2', offsetBytes: 5, pool: 2, lengthBytes: 10 });
  return ops;
}

describe('crash and power loss at every step', () => {
  for (const kind of ['power', 'crash'] as const) {
    it(`${kind} at each event of a scripted workload (seed 7)`, async () => {
      const ops = scriptedOps();
      const full = await runCrashCase({ seed: 7, ops, crashAtStep: Number.MAX_SAFE_INTEGER, kind });
      expect(full.crashedMidWorkload).toBe(false);
      expect(full.stepsUsed).toBeGreaterThan(20);
      let mid = 0;
      for (let step = 0; step <= full.stepsUsed; step++) {
        const r = await runCrashCase({ seed: 7, ops, crashAtStep: step, kind });
        if (r.crashedMidWorkload) mid++;
      }
      expect(mid).toBeGreaterThan(full.stepsUsed / 2);
      expect(full.stepsUsed).toBeGreaterThan(40);
    });
  }
});

describe('crash and power loss at random points (property)', () => {
  it('recovers to a transaction boundary that keeps every fsync', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 1_000_000 }),
        fc.array(opArb(BS), { minLength: 1, maxLength: 50 }),
        fc.nat(400),
        fc.constantFrom('crash' as const, 'power' as const),
        fc.constantFrom<Partial<EngineOptions>>({}, { codec: 2 }, { deduplication: false }, { syncRelax: 1 }),
        async (seed, ops, crashAtStep, kind, overrides) => {
          await runCrashCase({ seed, ops, crashAtStep, kind, overrides });
        },
      ),
      { numRuns: Number(process.env.LESSFS_PROP_RUNS ?? 60) },
    );
  });
});
