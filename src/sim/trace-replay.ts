// lessfs-sim replay-trace: a recorded FUSE trace as the workload of one seeded
// simulation (runSimulation with a WorkloadSource), under the faults of a
// profile drawn from the seed, with the same oracle, invariants and report as
// `lessfs-sim run`. A field failure becomes a seed.
//
// The replay runs the trace's operations in order, at the trace's BLKSIZE,
// and ends with a commit (as the recorded mount's unmount did). Times are not
// replayed: idle time between operations is drawn from the seed. When a
// master crash or power loss loses operations (those after its last durable
// commit), the replay reissues them from the tree the master recovered, as the
// application would have to: so every replay runs the whole trace, and a run
// that passes ends with the recorded tree.

import { runSimulation, OPS_MAX, type FaultProfile, type SimHooks, type SimMode, type SimResult, type WorkloadSource } from './campaign.ts';
import { ModelFs } from './model.ts';
import type { ConvertedTrace } from './trace.ts';
import { applyToModel, modelDigest, type Op } from './workload.ts';

/** Bound on operations issued, as a multiple of the trace's (each master fault reissues at most what it lost). */
const REISSUE_FACTOR_MAX = 10;

/**
 * The trace's ops, in order, for runSimulation. After a master fault (the
 * model object the run passes is replaced by the recovered tree) it finds the
 * last op whose tree that is and continues after it.
 */
export class TraceWorkload implements WorkloadSource {
  private nextIndex = 0;
  private issued = 0;
  private readonly issuedMax: number;
  private model: ModelFs | undefined;
  /** modelDigest after ops[0..i], computed as far as a rewind needed. */
  private readonly digests: string[] = [];
  private scratch: ModelFs | undefined;
  private initialDigest: string | undefined;
  /** Master faults after which ops were reissued, and how many. */
  rewinds = 0;
  reissued = 0;
  /** Recovered trees that matched no point of the trace (the oracle reports those runs). */
  unmatched = 0;

  constructor(
    readonly ops: readonly Op[],
    readonly blockSizeBytes: number,
  ) {
    this.issuedMax = REISSUE_FACTOR_MAX * ops.length + 100;
  }

  next(model: ModelFs): Op | undefined {
    if (this.model !== undefined && model !== this.model) this.rewind(model);
    this.model = model;
    if (this.nextIndex >= this.ops.length) return undefined;
    if (++this.issued > this.issuedMax) throw new Error(`trace replay issued ${this.issuedMax} operations for a trace of ${this.ops.length}: the master keeps losing them`);
    return this.ops[this.nextIndex++];
  }

  /** The tree at the end of the run as the oracle holds it (the master's, when the run passed). */
  finalTree(): Map<string, string> {
    return (this.model ?? new ModelFs()).listing();
  }

  private digestAfter(i: number): string {
    if (i < 0) return (this.initialDigest ??= modelDigest(new ModelFs()));
    this.scratch ??= new ModelFs();
    while (this.digests.length <= i) {
      applyToModel(this.scratch, this.ops[this.digests.length], this.blockSizeBytes);
      this.digests.push(modelDigest(this.scratch));
    }
    return this.digests[i];
  }

  private rewind(recovered: ModelFs): void {
    const want = modelDigest(recovered);
    for (let j = this.nextIndex - 1; j >= -1; j--) {
      if (this.digestAfter(j) !== want) continue;
      if (j < this.nextIndex - 1) {
        this.rewinds++;
        this.reissued += this.nextIndex - 1 - j;
        this.nextIndex = j + 1;
      }
      return;
    }
    this.unmatched++;
  }
}

export interface TraceReplayOptions {
  seed: number;
  faults: FaultProfile;
  mode: SimMode;
  /** Replay only the first N operations of the trace (default all). */
  ops?: number;
  /** Test-only, as SimOptions.breakInvariant. */
  breakInvariant?: boolean;
}

export interface TraceReplay {
  result: SimResult;
  workload: TraceWorkload;
}

/** The number of trace ops a replay runs (checked against OPS_MAX; RangeError names the problem). */
export function traceOpsToReplay(trace: ConvertedTrace, ops: number | undefined): number {
  const n = ops ?? trace.ops.length;
  if (!Number.isSafeInteger(n) || n < 0 || n > trace.ops.length) throw new RangeError(`ops must be an integer in 0..${trace.ops.length} (the operations the trace has), got ${n}`);
  if (n + 1 > OPS_MAX) throw new RangeError(`the trace has ${n} operations to replay; at most ${OPS_MAX - 1} per run: replay the first N with --ops N`);
  return n;
}

/** Replay a converted trace under faults. Never throws for what the system does: failures are in result.problems. */
export async function replayTrace(trace: ConvertedTrace, o: TraceReplayOptions, hooks: SimHooks = {}): Promise<TraceReplay> {
  const n = traceOpsToReplay(trace, o.ops);
  const ops: Op[] = [...trace.ops.slice(0, n), { op: 'commit' }];
  const workload = new TraceWorkload(ops, trace.blockSizeBytes);
  const result = await runSimulation({ seed: o.seed, ops: ops.length, faults: o.faults, mode: o.mode, breakInvariant: o.breakInvariant }, { ...hooks, workload });
  return { result, workload };
}

/** The one command line that reruns a replay. */
export function traceReproduceCommand(file: string, o: TraceReplayOptions): string {
  const quoted = /^[\w./-]+$/.test(file) ? file : `'${file.replace(/'/g, "'\\''")}'`;
  return `lessfs-sim replay-trace ${quoted} --seed ${o.seed}${o.ops !== undefined ? ` --ops ${o.ops}` : ''} --faults ${o.faults} --mode ${o.mode}${o.breakInvariant ? ' --test-break-invariant' : ''}`;
}
