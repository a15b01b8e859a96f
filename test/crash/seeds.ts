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
  // Full disks (fill/room steps, in the disk, all and swarm profiles since 2026-12-07; the seeds above
  // with those profiles run with them too now, their node faults where they were):
  { options: { seed: 116, ops: 200, faults: 'all', mode: 'live' }, note: 'a master that failed with its disk full could not mount: the mount commit\'s replog.dta append failed with ENOSPC and nothing released the space reserve (FsEngine.withSpaceReserve; found as seed 10 before the simulator set a reserve aside)' },
  { options: { seed: 22, ops: 200, faults: 'disk', mode: 'live' }, note: 'oracle: a commit whose data writes failed on the full disk is folded back and frozen again under the same txn number, with later changes (txnRefrozen)' },
  { options: { seed: 58, ops: 200, faults: 'swarm', mode: 'live' }, note: 'oracle: a slave on a full disk dropped its undurable txns and applied them again to the same txn while a check digested its tree (ENOENT mid-digest)' },
  { options: { seed: 10, ops: 200, faults: 'disk', mode: 'batch' }, note: 'harness: a rotation the full master refused stays requested, so the next rotation found more files than one request closes' },
  { options: { seed: 94, ops: 200, faults: 'all', mode: 'batch' }, note: 'harness: the log chain was compared with the txn a refused commit left frozen (not logged), not the durable txn' },
  // I/O errors (eio steps, disk and swarm profiles) and replication toggles (net, all, swarm), 2026-12-07:
  { options: { seed: 8, ops: 200, faults: 'disk', mode: 'live' }, note: 'a master log trim whose sync failed with EIO kept the old size in memory: the next append padded the emptied replog.dta with zeros, and the master could not mount' },
  { options: { seed: 20, ops: 200, faults: 'swarm', mode: 'batch' }, note: 'turning a batch slave\'s replication on started a scan beside one already asked for: both applied a file, and the slave refused every later one (scans now run one at a time)' },
  { options: { seed: 64, ops: 200, faults: 'all', mode: 'live' }, note: 'oracle: a slave check digested a slave while it dropped its undurable txns after an I/O error (tree back at the durable txn, applied txn not yet)' },
  { options: { seed: 7, ops: 200, faults: 'disk', mode: 'live' }, note: 'harness: a slave halted because dropping its undurable txns failed (EIO) needs a remount, though its engine did not stop (LiveReceiver.remountNeeded)' },
  { options: { seed: 1032, ops: 200, faults: 'all', mode: 'batch' }, note: 'harness: a slave reopened after an I/O error stop was checked while the scan its open started still applied files (settleWatch now waits for it)' },
  { options: { seed: 2804, ops: 200, faults: 'swarm', mode: 'live' }, note: 'a master mount whose directory sync failed after renaming replog.dta.next, then kill -9: the next mount appended to a replog.dta whose name a power loss took back (MasterLog.open syncs its directory first)' },
  { options: { seed: 2753, ops: 200, faults: 'all', mode: 'batch' }, note: 'harness: a batch slave halted by a failed drop of a half-applied file (its engine still up) needs a remount (WatchDir.remountNeeded); "applied before" is the durable position' },
  { options: { seed: 2737, ops: 200, faults: 'swarm', mode: 'batch' }, note: 'harness: a rotation that failed after its trailer write leaves the trailer in replog.dta until the next append cuts it (MasterLog.tailPending)' },
];
