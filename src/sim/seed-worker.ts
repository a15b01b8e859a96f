// A campaign worker thread: runs the seeds it is sent, one at a time, and
// reports each one's outcome (parallel.ts).

import { parentPort, workerData } from 'node:worker_threads';
import type { SimOptions } from './campaign.ts';
import { runSeed, type SeedReply, type SeedRequest } from './parallel.ts';

const port = parentPort;
if (!port) throw new Error('seed-worker.ts runs only as a worker thread (parallel.ts)');
const { common, twice } = workerData as { common: Omit<SimOptions, 'seed'>; twice: boolean };

port.on('message', (m: SeedRequest) => {
  if ('stop' in m) {
    port.close();
    return;
  }
  runSeed(common, m.seed, twice).then(
    ({ outcome }) => port.postMessage({ outcome } satisfies SeedReply),
    (err: unknown) => port.postMessage({ seed: m.seed, error: err instanceof Error ? (err.stack ?? err.message) : String(err) } satisfies SeedReply),
  );
});
