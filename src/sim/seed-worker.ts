// A campaign worker thread: runs the seeds it is sent, one at a time, and
// reports each one's outcome (parallel.ts).

import { parentPort, workerData } from 'node:worker_threads';
import { runSimulation, type SimOptions } from './campaign.ts';
import { outcomeOf, type SeedReply, type SeedRequest } from './parallel.ts';

const port = parentPort;
if (!port) throw new Error('seed-worker.ts runs only as a worker thread (parallel.ts)');
const common = (workerData as { common: Omit<SimOptions, 'seed'> }).common;

port.on('message', (m: SeedRequest) => {
  if ('stop' in m) {
    port.close();
    return;
  }
  runSimulation({ ...common, seed: m.seed }).then(
    (r) => port.postMessage({ outcome: outcomeOf(m.seed, r) } satisfies SeedReply),
    (err: unknown) => port.postMessage({ seed: m.seed, error: err instanceof Error ? (err.stack ?? err.message) : String(err) } satisfies SeedReply),
  );
});
