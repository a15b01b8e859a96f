// lessfs-sim replay-trace: a recorded FUSE trace as the workload of one seeded
// simulation, under the faults of a profile drawn from the seed, with the same
// oracle, invariants and report as `lessfs-sim run`. A field failure becomes a
// seed.
//
// The trace becomes a Schedule (schedule.ts): the seed's own schedule for as
// many operations as the replay runs (its setup, link cuts and heals, node
// faults, slave checks, batch rotations and idle times), with its op steps
// replaced, in order, by the trace's operations and a final commit (as the
// recorded mount's unmount did), at the trace's BLKSIZE. Times are not
// replayed. The schedule then runs like any other: a failure capsule holds
// it, `replay CAPSULE` reruns it, --shrink shrinks it.
//
// A master crash or power loss rolls the master back to its last durable
// commit and the operations after it are lost (the run goes on from the
// recovered tree, as the oracle checks): such a run does not end with the
// recorded tree. Without a master fault it does.

import { blockSizeOf, executeSchedule, generateSchedule, runConfig, runFlags, simOptions, OPS_MAX, type SimHooks, type SimOptions, type SimResult } from './campaign.ts';
import type { ModelFs } from './model.ts';
import type { Schedule } from './schedule.ts';
import type { ConvertedTrace } from './trace.ts';
import type { Op } from './workload.ts';

/** Options of a replay: a run's, with `ops` the number of trace operations to replay (default all). */
export type TraceReplayOptions = Omit<SimOptions, 'ops'> & { ops?: number };

export interface TraceReplay {
  result: SimResult;
  /** The reference model's tree at the end of the run (the master's, when the run passed); undefined if the run stopped early. */
  finalTree: Map<string, string> | undefined;
}

/** The number of trace ops a replay runs (checked against OPS_MAX; RangeError names the problem). */
export function traceOpsToReplay(trace: ConvertedTrace, ops: number | undefined): number {
  const n = ops ?? trace.ops.length;
  if (!Number.isSafeInteger(n) || n < 0 || n > trace.ops.length) throw new RangeError(`ops must be an integer in 0..${trace.ops.length} (the operations the trace has), got ${n}`);
  if (n + 1 > OPS_MAX) throw new RangeError(`the trace has ${n} operations to replay; at most ${OPS_MAX - 1} per run: replay the first N with --ops N`);
  return n;
}

/**
 * The run options and schedule of a replay: the seed's schedule for the
 * trace's operations plus the final commit, its op steps replaced by them.
 * Throws RangeError for bad options or a config whose BLKSIZE is not the trace's.
 */
export function traceSchedule(trace: ConvertedTrace, o: TraceReplayOptions): { options: SimOptions; schedule: Schedule } {
  const n = traceOpsToReplay(trace, o.ops);
  const ops: Op[] = [...trace.ops.slice(0, n), { op: 'commit' }];
  const options = simOptions({ ...o, ops: ops.length });
  const cfg = runConfig(options);
  if (cfg?.engine.blockSizeBytes !== undefined && blockSizeOf(cfg) !== trace.blockSizeBytes) {
    throw new RangeError(`the config sets BLKSIZE ${blockSizeOf(cfg)}, the trace was recorded with BLKSIZE ${trace.blockSizeBytes} (its write fingerprints are cut by it)`);
  }
  const seeded = generateSchedule(options);
  let k = 0;
  const steps = seeded.steps.map((s) => (s.step === 'op' ? { ...s, op: ops[k++] } : s));
  if (k !== ops.length) throw new Error(`the seed's schedule has ${k} op steps for ${ops.length} operations`);
  return { options, schedule: { ...seeded, setup: { ...seeded.setup, blockSizeBytes: trace.blockSizeBytes }, steps } };
}

/** Replay a converted trace under faults. Never throws for what the system does: failures are in result.problems. */
export async function replayTrace(trace: ConvertedTrace, o: TraceReplayOptions, hooks: SimHooks = {}): Promise<TraceReplay> {
  const { options, schedule } = traceSchedule(trace, o);
  let finalModel: ModelFs | undefined;
  const result = await executeSchedule(options, schedule, {
    ...hooks,
    finalModel: (m) => {
      finalModel = m;
      hooks.finalModel?.(m);
    },
  });
  return { result, finalTree: finalModel?.listing() };
}

/** Node faults that hit the master in a run (those can roll it back and lose operations). */
export function masterFaults(r: SimResult): number {
  return Object.entries(r.faultsInjected)
    .filter(([k]) => /^(master|both) (crash|power)$/.test(k))
    .reduce((a, [, n]) => a + n, 0);
}

/** The one command line that regenerates a replay's schedule from the trace and the seed. */
export function traceReproduceCommand(file: string, o: TraceReplayOptions): string {
  const quoted = /^[\w./-]+$/.test(file) ? file : `'${file.replace(/'/g, "'\\''")}'`;
  return `lessfs-sim replay-trace ${quoted} --seed ${o.seed}${o.ops !== undefined ? ` --ops ${o.ops}` : ''} ${runFlags(o)}`;
}
