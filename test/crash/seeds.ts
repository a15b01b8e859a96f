// Regression seeds for `lessfs-sim`: each once failed; each line says why.
// test/crash/seeds.test.ts reruns them all on every CI run.

import type { SimOptions } from '../../src/sim/campaign.ts';

export interface RegressionSeed {
  options: Partial<SimOptions> & { seed: number };
  note: string;
}

export const REGRESSION_SEEDS: readonly RegressionSeed[] = [
  { options: { seed: 4, ops: 200, faults: 'disk', mode: 'live' }, note: 'master power loss: the restarted master numbered commit requests from 1, the slave ignored them (ids kept across connections); backlog never drained' },
  { options: { seed: 9, ops: 200, faults: 'disk', mode: 'live' }, note: 'same commit-request id bug, after a crash' },
  { options: { seed: 12, ops: 200, faults: 'power', mode: 'live' }, note: 'same commit-request id bug, master power loss' },
  { options: { seed: 17, ops: 200, faults: 'power', mode: 'live' }, note: 'same commit-request id bug, both nodes lose power' },
  { options: { seed: 15, ops: 200, faults: 'all', mode: 'live' }, note: 'same commit-request id bug under mixed faults' },
  { options: { seed: 4242, ops: 2000, faults: 'all', mode: 'live' }, note: 'oracle: a slave check retried after the slave moved on did not first note the master commits made while it digested (reported a txn the master never committed)' },
  { options: { seed: 19, ops: 200, faults: 'net', mode: 'batch' }, note: 'one rotate request legitimately closed two log files (harness expectation, kept as a check)' },
  { options: { seed: 148, ops: 200, faults: 'all', mode: 'live' }, note: 'oracle bug (buggify on): a checkSlave retry met a txn the master committed during the digest, never noted ("the master never committed that txn")' },
  { options: { seed: 100, ops: 200, faults: 'all', mode: 'live' }, note: 'oracle expectation (buggify on): link stalls plus slave-commit-late pushed a slave commit past the master\'s 10 s wait; the master commits anyway by design (overlapsAfterWaitExpired)' },
  { options: { seed: 107, ops: 200, faults: 'net', mode: 'live' }, note: 'a live master keeping its newest blocks in memory: the log read a span of several small blocks as the first block\'s buffer (a 0-byte BLOCK reached the slave, its key not its hash)' },
];
