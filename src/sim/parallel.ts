// A campaign's seeds run in worker threads (`lessfs-sim run --seeds A..B
// --jobs N`). Each seed is a whole simulation that shares nothing with the
// others, so it gives the same trace hash in any thread and in any order; the
// workers only spread the seeds over the machine's cores. Each worker runs one
// seed at a time and gets the next when it reports; results come back in
// completion order. A failed seed reports only its outcome: the caller reruns
// it in its own thread for the capsule (and so also checks that it fails
// again the same way).

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { executeSchedule, generateSchedule, runSimulation, simOptions, type SimHooks, type SimOptions, type SimResult } from './campaign.ts';
import type { Schedule } from './schedule.ts';

/** What a worker reports of one seed. */
export interface SeedOutcome {
  seed: number;
  ok: boolean;
  ops: number;
  simulatedMs: number;
  traceHash: string;
  problems: string[];
  /** With `twice`: the trace hash of the second run (from the schedule read back from JSON). */
  againTraceHash?: string;
}

/**
 * A seed run twice, as check-determinism runs it: from the seed, then from its
 * schedule serialised to JSON and read back. The two must be the same run.
 */
export async function runTwice(o: SimOptions, hooks: [SimHooks, SimHooks] = [{}, {}]): Promise<[SimResult, SimResult]> {
  const a = await runSimulation(o, hooks[0]);
  const schedule = JSON.parse(JSON.stringify(generateSchedule(o))) as Schedule;
  return [a, await executeSchedule(o, schedule, hooks[1])];
}

/** One seed's outcome: run once, or twice (runTwice). */
export async function runSeed(common: Omit<SimOptions, 'seed'>, seed: number, twice: boolean): Promise<{ outcome: SeedOutcome; result: SimResult }> {
  if (!twice) {
    const r = await runSimulation({ ...common, seed });
    return { outcome: outcomeOf(seed, r), result: r };
  }
  const [a, b] = await runTwice(simOptions({ ...common, seed }));
  return { outcome: { ...outcomeOf(seed, a), againTraceHash: b.traceHash }, result: a };
}

/** What a worker is sent: a seed to run, or the end. */
export type SeedRequest = { seed: number } | { stop: true };

/** A worker's message: an outcome, or the error its seed's run threw. */
export type SeedReply = { outcome: SeedOutcome } | { seed: number; error: string };

/** Workers allowed at most (a campaign of many seeds on a large machine). */
export const JOBS_MAX = 256;

export function outcomeOf(seed: number, r: SimResult): SeedOutcome {
  return { seed, ok: r.ok, ops: r.ops, simulatedMs: r.simulatedMs, traceHash: r.traceHash, problems: r.problems };
}

/** `auto`: one per core the process may use. */
export function jobsFor(text: string): number {
  if (text === 'auto') return Math.min(JOBS_MAX, availableParallelism());
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > JOBS_MAX) throw new RangeError(`bad --jobs '${text}' (expected auto or an integer in 1..${JOBS_MAX})`);
  return Number(text);
}

/**
 * Run seeds first..last with `jobs` threads (1: here, in order), calling
 * onOutcome as each seed ends (with the whole result when it ran here).
 * Rejects if a worker dies or a run throws.
 */
export async function runSeeds(
  first: number,
  last: number,
  common: Omit<SimOptions, 'seed'>,
  jobs: number,
  onOutcome: (o: SeedOutcome, result?: SimResult) => void,
  /** Run every seed twice (runTwice), as check-determinism does. */
  twice = false,
): Promise<void> {
  const total = last - first + 1;
  if (jobs <= 1 || total <= 1) {
    for (let seed = first; seed <= last; seed++) {
      const { outcome, result } = await runSeed(common, seed, twice);
      onOutcome(outcome, result);
    }
    return;
  }
  let next = first;
  let running = 0;
  const workers: Worker[] = [];
  await new Promise<void>((resolve, reject) => {
    let failed = false;
    const fail = (err: Error): void => {
      if (failed) return;
      failed = true;
      for (const w of workers) void w.terminate();
      reject(err);
    };
    const feed = (w: Worker): void => {
      if (failed) return;
      if (next > last) {
        w.postMessage({ stop: true } satisfies SeedRequest);
        if (running === 0) resolve();
        return;
      }
      running++;
      w.postMessage({ seed: next++ } satisfies SeedRequest);
    };
    for (let i = 0; i < Math.min(jobs, total); i++) {
      const w = new Worker(new URL('./seed-worker.mjs', import.meta.url), { workerData: { common, twice } });
      workers.push(w);
      let stopping = false;
      w.on('message', (m: SeedReply) => {
        running--;
        if ('error' in m) {
          fail(new Error(`seed ${m.seed} threw in its worker thread: ${m.error}`));
          return;
        }
        try {
          onOutcome(m.outcome);
        } catch (err) {
          fail(err as Error);
          return;
        }
        if (next > last) stopping = true;
        feed(w);
      });
      w.on('error', (err) => fail(new Error(`a campaign worker thread failed: ${err.message}`)));
      w.on('exit', (code) => {
        if (!stopping || code !== 0) fail(new Error(`a campaign worker thread exited (code ${code}) with seeds still to run`));
      });
      feed(w);
    }
  });
}
