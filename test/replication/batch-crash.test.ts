// Crash tests of a batch-mode master: power loss or kill -9 at any scheduler
// event of a workload that writes duplicate content, commits and rotates its
// log (on request and by size), with torn and reordered unsynced writes. After
// the master reopens on the same machine its log and database must agree: the
// rotated files validate and form one chain of sequences and txns, the live log
// continues it and ends at the database's txn. The master then keeps working
// and rotating, and a slave that applies every rotated file in order reaches
// the master's tree; lessfsck is clean on both.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import type { EngineOptions } from '../../src/core/fs/types.ts';
import { BatchCluster, type BatchClusterOptions } from '../../src/sim/batch-cluster.ts';
import { SimRng } from '../../src/sim/rng.ts';
import { Scheduler, settle } from '../../src/sim/scheduler.ts';
import { applyToFs, randomOp, type Op } from '../../src/sim/workload.ts';
import { propOptions } from './batch-support.ts';

const BS = 4096;

export type BatchOp = Op | { op: 'rotate' };

export interface MasterCrashCase {
  seed: number;
  ops: BatchOp[];
  /** Crash after this many scheduler events, counted from the end of the first mount. */
  crashAtStep: number;
  kind: 'crash' | 'power';
  /** ROTATE_REPLOG_SIZE (0: rotation on request only). */
  rotateSizeBytes: number;
  engine?: Partial<EngineOptions>;
  /** ROTATE_REPLOG_INTERVAL in seconds (0: no timer). */
  rotateIntervalS?: number;
  /** Lose power again this many events into the recovery (undefined: no second crash). */
  recoveryCrashAtStep?: number;
}

export interface MasterCrashOutcome {
  stepsUsed: number;
  crashedMidWorkload: boolean;
  /** Rotated files found right after recovery. */
  filesAfterRecovery: number;
  recoveredTxn: number;
}

export function clusterOptions(rotateSizeBytes: number, engine: Partial<EngineOptions> = {}, rotateIntervalS = 0): BatchClusterOptions {
  return {
    engine: { commitIntervalMs: 40, cacheSizeBytes: 6 * BS, ...engine },
    master: { rotateReplogSizeBytes: rotateSizeBytes, rotateReplogIntervalS: rotateIntervalS },
    masterNode: {
      disk: { latencyMsMin: 0, latencyMsMax: 2, tornWriteProbability: 0.3, reorderProbability: 0.3 },
      store: { commitLatencyMsMin: 1, commitLatencyMsMax: 4, syncLatencyMsMin: 1, syncLatencyMsMax: 6 },
    },
  };
}

function execOp(c: BatchCluster, fs: PathFs, op: BatchOp): Promise<unknown> {
  if (op.op === 'rotate') {
    const rotate = c.master.node?.control.rotate;
    if (!rotate) throw new Error('master has no rotate control');
    return rotate();
  }
  if (op.op === 'commit') return fs.engine.commit();
  return applyToFs(fs, op, BS);
}

/** After recovery (or at any idle point): the log chain holds and, after more work, a slave replays it to the master's tree. */
async function continueAndReplicate(c: BatchCluster, seed: number, label: string): Promise<void> {
  const engine = c.engineOf(c.master);
  const fs = new PathFs(engine);
  const rng = new SimRng(seed).split('after');
  for (let i = 0; i < 12; i++) {
    const op = randomOp(rng, BS);
    if (op.op === 'remount') continue;
    await c.run(execOp(c, fs, op));
    if (i % 5 === 4) await c.rotate();
  }
  await c.rotate();
  const chain = await c.masterLogChain();
  expect(c.master.node?.masterLog?.pendingTransactions, label).toBe(0);
  expect(chain.files.length, label).toBeGreaterThan(0);
  const want = await c.digest(c.master);

  await c.open(c.slave);
  const applier = c.slave.node?.slaveApplier;
  if (!applier) throw new Error('slave has no applier');
  for (const f of chain.files) {
    const out = await c.run(applier.applyFile(f.bytes, f.name, f.sequence));
    expect(out.kind, `${label}: ${f.name}`).toBe('applied');
  }
  const last = chain.files[chain.files.length - 1];
  expect(applier.position(), label).toEqual({ role: 'slave', fsId: engine.format.fsId, txn: last.lastTxn, sequence: last.sequence });
  expect(await c.digest(c.slave), `${label}: slave tree after every rotated file`).toBe(want);
  await c.close(c.slave);
  await c.close(c.master);
  expect((await c.fsck(c.master)).problems, `${label}: master fsck`).toEqual([]);
  expect((await c.fsck(c.slave)).problems, `${label}: slave fsck`).toEqual([]);
}

export async function runMasterCrashCase(cc: MasterCrashCase): Promise<MasterCrashOutcome> {
  const label = `seed=${cc.seed} crashAtStep=${cc.crashAtStep} ${cc.kind} rotateSize=${cc.rotateSizeBytes} rotateIntervalS=${cc.rotateIntervalS ?? 0} recoveryCrashAtStep=${cc.recoveryCrashAtStep}`;
  const sched = new Scheduler({ seed: cc.seed });
  const c = new BatchCluster(sched, cc.seed, clusterOptions(cc.rotateSizeBytes, cc.engine, cc.rotateIntervalS));
  const think = new SimRng(cc.seed).split('think');
  await c.format();
  const engine = await c.open(c.master);
  const fs = new PathFs(engine);
  const start = sched.stepsRun;
  const crashAt = start + cc.crashAtStep;
  let crashedMidWorkload = false;
  for (const op of cc.ops) {
    let settled = false;
    let failure: unknown;
    execOp(c, fs, op).then(() => { settled = true; }, (err: unknown) => { settled = true; failure = err; });
    await sched.run({ done: () => settled || sched.stepsRun >= crashAt });
    if (!settled) {
      crashedMidWorkload = true;
      break;
    }
    if (failure) throw failure;
    // Think time lets interval commits (and the rotations by size they trigger) land between operations.
    await sched.run({ untilMs: sched.nowMs() + think.int(30), done: () => sched.stepsRun >= crashAt });
    if (sched.stepsRun >= crashAt) {
      crashedMidWorkload = true;
      break;
    }
  }
  const stepsUsed = sched.stepsRun - start;
  if (cc.kind === 'crash') c.master.machine.crash();
  else c.master.machine.powerLoss();
  c.dropped(c.master);

  if (cc.recoveryCrashAtStep !== undefined) {
    // A second power loss while the first recovery cuts tails and finishes rotations.
    const stopAt = sched.stepsRun + cc.recoveryCrashAtStep;
    let settled = false;
    let failure: unknown;
    c.open(c.master).then(() => { settled = true; }, (err: unknown) => { settled = true; failure = err; });
    await sched.run({ done: () => settled || sched.stepsRun >= stopAt });
    if (failure) throw failure;
    c.master.machine.powerLoss();
    c.dropped(c.master);
  }
  const recovered = await c.open(c.master);
  expect(recovered.recovered, label).toBe(true);
  let chain;
  try {
    chain = await c.masterLogChain();
  } catch (err) {
    throw new Error(`${label}: after recovery: ${(err as Error).message}\nmaster log:\n${c.master.machine.logger.lines.slice(-15).join('\n')}`);
  }
  const recoveredTxn = recovered.txn;
  await continueAndReplicate(c, cc.seed, label);
  return { stepsUsed, crashedMidWorkload, filesAfterRecovery: chain.files.length, recoveredTxn };
}

/** Duplicate content across files, overwrites, commits and rotations between them. */
export function scriptedOps(): BatchOp[] {
  return [
    { op: 'mkdir', path: '/a' },
    { op: 'create', path: '/a/x' },
    { op: 'write', path: '/a/x', offsetBytes: 0, pool: 1, lengthBytes: 3 * BS },
    { op: 'create', path: '/a/y' },
    { op: 'write', path: '/a/y', offsetBytes: 0, pool: 1, lengthBytes: 3 * BS },
    { op: 'commit' },
    { op: 'rotate' },
    { op: 'create', path: '/b' },
    { op: 'write', path: '/b', offsetBytes: BS, pool: 2, lengthBytes: 2 * BS + 5 },
    { op: 'write', path: '/a/x', offsetBytes: 7, pool: 3, lengthBytes: BS },
    { op: 'rotate' },
    { op: 'rename', from: '/a/y', to: '/c' },
    { op: 'truncate', path: '/b', sizeBytes: BS + 1 },
    { op: 'write', path: '/c', offsetBytes: 0, pool: 2, lengthBytes: 2 * BS },
    { op: 'commit' },
    { op: 'unlink', path: '/a/x' },
    { op: 'rotate' },
    { op: 'rotate' },
    { op: 'link', from: '/c', to: '/a/z' },
    { op: 'write', path: '/a/z', offsetBytes: 2 * BS, pool: 1, lengthBytes: BS },
  ];
}

function batchOpArb(): fc.Arbitrary<BatchOp[]> {
  return fc.integer({ min: 0, max: 1_000_000 }).chain((s) =>
    fc.integer({ min: 6, max: 25 }).map((n) => {
      const rng = new SimRng(s).split('ops');
      const ops: BatchOp[] = [];
      for (let i = 0; i < n; i++) {
        if (rng.chance(0.15)) ops.push({ op: 'rotate' });
        else ops.push(randomOp(rng, BS));
      }
      return ops;
    }),
  );
}

/** Every crash point of the script, or a seeded sample of `samples` when there are more steps. */
function crashPoints(stepsUsed: number, samples: number, seed: number): number[] {
  if (stepsUsed + 1 <= samples) return Array.from({ length: stepsUsed + 1 }, (_, i) => i);
  const rng = new SimRng(seed).split('crash-points');
  const out = new Set<number>([0, stepsUsed]);
  while (out.size < samples) out.add(rng.int(stepsUsed + 1));
  return [...out].sort((a, b) => a - b);
}

const STEP_SAMPLES = Number(process.env.LESSFS_CRASH_SAMPLES ?? 400);

describe('master crash and power loss during writes, commits and rotations', () => {
  for (const kind of ['power', 'crash'] as const) {
    for (const rotateSizeBytes of [0, 12_000]) {
      it(`${kind} at each event (or a sample of ${STEP_SAMPLES}) of a scripted workload, rotate size ${rotateSizeBytes} (seed 11)`, async () => {
        const ops = scriptedOps();
        const full = await runMasterCrashCase({ seed: 11, ops, crashAtStep: Number.MAX_SAFE_INTEGER, kind, rotateSizeBytes });
        expect(full.crashedMidWorkload).toBe(false);
        expect(full.filesAfterRecovery).toBeGreaterThanOrEqual(4);
        let mid = 0;
        for (const step of crashPoints(full.stepsUsed, STEP_SAMPLES, 11)) {
          const r = await runMasterCrashCase({ seed: 11, ops, crashAtStep: step, kind, rotateSizeBytes });
          if (r.crashedMidWorkload) mid++;
        }
        expect(mid).toBeGreaterThan(Math.min(STEP_SAMPLES, full.stepsUsed) / 2);
      });
    }
  }
});

describe('master crash at random points of random workloads (property)', () => {
  it('recovers a log that agrees with the database and replicates', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 1_000_000 }),
        batchOpArb(),
        fc.nat(250),
        fc.constantFrom('crash' as const, 'power' as const),
        fc.constantFrom(0, 6_000, 20_000),
        fc.constantFrom<Partial<EngineOptions>>({}, { codec: 2 }, { deduplication: false }),
        fc.option(fc.nat(40), { nil: undefined }),
        fc.constantFrom(0, 1),
        async (seed, ops, crashAtStep, kind, rotateSizeBytes, engine, recoveryCrashAtStep, rotateIntervalS) => {
          await runMasterCrashCase({ seed, ops, crashAtStep, kind, rotateSizeBytes, engine, recoveryCrashAtStep, rotateIntervalS });
        },
      ),
      propOptions(80, 101),
    );
  });
});

describe('master log recovery regressions', () => {
  it('a rotation cut after its first rename (live log gone) continues after the last rotated file, even when empty rotations followed the last commit', async () => {
    // The state a power loss leaves when `rename replog.dta -> replog.dta-2`
    // survived but the new replog.dta (created as replog.dta.next) did not: the
    // store's meta still names sequence 1 (its last commit), files 1 and 2 exist.
    const sched = new Scheduler({ seed: 4 });
    const c = new BatchCluster(sched, 4, clusterOptions(0));
    await c.format();
    await c.open(c.master);
    await c.rotate(); // replog.dta-1: txn 1 (the mount)
    await c.rotate(); // replog.dta-2: no transaction; the live log is sequence 3
    c.master.machine.crash();
    c.dropped(c.master);
    const disk = c.master.machine.drivers().disk;
    await c.run(disk.unlink(`${c.master.options.blockDataPath}/replog.dta`));
    await c.run(disk.syncDir(c.master.options.blockDataPath));
    await c.open(c.master);
    const chain = await c.masterLogChain();
    expect(chain.files.map((f) => f.sequence)).toEqual([1, 2]);
    expect(chain.liveSequence).toBe(3);
    await c.rotate();
    expect((await c.masterLogChain()).files.map((f) => f.sequence)).toEqual([1, 2, 3]);
  });

  it('kill -9 during a commit\'s sync, then power loss while remounting: the master mounts again (seed 385164, steps 58 + 6)', async () => {
    // The kill -9 leaves txn 3 committed in the store but not durable; the
    // remount logs its own txn 4 on top of it, and the power loss takes txn 3
    // back: the log (durable to 4) is then two txns ahead of the store (2).
    await runMasterCrashCase({
      seed: 385164,
      ops: [
        { op: 'create', path: '/d' }, { op: 'fsync', path: '/a' }, { op: 'read', path: '/d', offsetBytes: 8199, lengthBytes: 15361 },
        { op: 'readdir', path: '/' }, { op: 'truncate', path: '/b/c', sizeBytes: 4096 }, { op: 'readdir', path: '/' },
        { op: 'stat', path: '/a' }, { op: 'rotate' }, { op: 'read', path: '/c/c/a', offsetBytes: 1, lengthBytes: 13539 },
        { op: 'rotate' }, { op: 'rotate' }, { op: 'write', path: '/a/b', offsetBytes: 8199, pool: 2, lengthBytes: 9111 },
        { op: 'fsync', path: '/b' }, { op: 'commit' }, { op: 'link', from: '/d', to: '/a' },
      ],
      crashAtStep: 58,
      kind: 'crash',
      rotateSizeBytes: 0,
      recoveryCrashAtStep: 6,
    });
  });

  it('an empty replog.dta.next left by a cut recovery does not bring back an old sequence', async () => {
    // A recovery that recreates a lost replog.dta writes replog.dta.next and
    // renames it; a power loss before its sync leaves an empty .next, which the
    // next mount renames to replog.dta (size 0): the store's sequence (1) is
    // behind the rotated files then.
    const sched = new Scheduler({ seed: 8 });
    const c = new BatchCluster(sched, 8, clusterOptions(0));
    await c.format();
    await c.open(c.master);
    await c.rotate(); // replog.dta-1: txn 1
    await c.rotate(); // replog.dta-2: empty; the live log is sequence 3
    c.master.machine.crash();
    c.dropped(c.master);
    const disk = c.master.machine.drivers().disk;
    const dir = c.master.options.blockDataPath;
    await c.run((async () => {
      await disk.unlink(`${dir}/replog.dta`);
      await (await disk.open(`${dir}/replog.dta.next`, { create: true })).close();
      await disk.syncDir(dir);
    })());
    await c.open(c.master);
    expect((await c.masterLogChain()).liveSequence).toBe(3);
  });

  it('power loss while a recovery recreates the live log (seed 5, steps 48 + 6)', async () => {
    await runMasterCrashCase({
      seed: 5,
      ops: [
        { op: 'rotate' }, { op: 'link', from: '/b/b/b', to: '/a' }, { op: 'write', path: '/c', offsetBytes: 1, pool: 3, lengthBytes: 6593 },
        { op: 'create', path: '/b/c' }, { op: 'rotate' }, { op: 'write', path: '/c/c', offsetBytes: 4096, pool: 3, lengthBytes: 11979 },
        { op: 'readdir', path: '/' }, { op: 'commit' }, { op: 'rename', from: '/c/d', to: '/b/d' },
        { op: 'truncate', path: '/a/a', sizeBytes: 4096 }, { op: 'create', path: '/c/c' },
        { op: 'read', path: '/c/a', offsetBytes: 100, lengthBytes: 15304 }, { op: 'fsync', path: '/a' },
        { op: 'rename', from: '/d', to: '/c/a/c' }, { op: 'truncate', path: '/c/a/a', sizeBytes: 10 }, { op: 'readdir', path: '/b' },
        { op: 'write', path: '/c/c/a', offsetBytes: 4096, pool: 1, lengthBytes: 8578 }, { op: 'stat', path: '/a/b' },
        { op: 'stat', path: '/c' }, { op: 'mkdir', path: '/d/d/d' }, { op: 'rename', from: '/c/c/c', to: '/d/a' }, { op: 'rotate' },
      ],
      crashAtStep: 48,
      kind: 'power',
      rotateSizeBytes: 0,
      recoveryCrashAtStep: 6,
    });
  });

  it('power loss in an empty rotation (seed 231375, step 28)', async () => {
    await runMasterCrashCase({
      seed: 231375,
      ops: [
        { op: 'mkdir', path: '/b/b/d' }, { op: 'unlink', path: '/b/c/d' }, { op: 'readlink', path: '/b' }, { op: 'rotate' },
        { op: 'write', path: '/d/d/b', offsetBytes: 12288, pool: 2, lengthBytes: 5205 },
        { op: 'write', path: '/c/a/a', offsetBytes: 12288, pool: 0, lengthBytes: 2257 },
        { op: 'create', path: '/b/a/a' }, { op: 'create', path: '/d/d' }, { op: 'mkdir', path: '/d/c' },
        { op: 'unlink', path: '/c/d/a' }, { op: 'write', path: '/a', offsetBytes: 8199, pool: 3, lengthBytes: 90 },
        { op: 'truncate', path: '/a/c', sizeBytes: 10 }, { op: 'rotate' },
      ],
      crashAtStep: 28,
      kind: 'power',
      rotateSizeBytes: 0,
    });
  });
});

describe('rotation on request', () => {
  it('rotate_replog while a commit runs still ships what was cached when it was asked (seed 6)', async () => {
    const sched = new Scheduler({ seed: 6 });
    const c = new BatchCluster(sched, 6, clusterOptions(0));
    await c.format();
    const m = await c.open(c.master);
    const fs = new PathFs(m);
    fs.create('/a');
    const txnBefore = m.txn;
    const running = m.commit();
    // Let the commit freeze /a (no scheduler event runs, so its store commit is still to come).
    await settle();
    expect(m.txn, 'the commit froze its transaction').toBe(txnBefore + 1);
    fs.create('/b'); // cached after that freeze
    const rotated = c.master.node?.control.rotate?.();
    await c.run(Promise.all([running, rotated]));
    const chain = await c.masterLogChain();
    const last = chain.files[chain.files.length - 1];
    expect(c.master.node?.masterLog?.pendingTransactions, 'the live log after rotate_replog').toBe(0);
    expect(last.lastTxn, 'the last rotated file ends at the database txn').toBe(m.txn);
  });
});
