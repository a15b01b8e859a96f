// Buggify (after FoundationDB): named points in core where a rare path hides.
// In simulation a site may fire and push the code down that path (a short
// write, a slow commit, a rotation at an awkward moment, a dropped
// connection); on a real mount nothing is passed in and BUGGIFY_OFF never
// fires, so each site costs one call that returns false. The seeded
// implementation lives in src/sim/buggify.ts: each site is switched on for a
// run with some probability and then fires now and then when reached; every
// fire is a trace line, so runs stay deterministic and fires are counted.

import { concat } from './bytes.ts';
import type { Clock } from './drivers.ts';

/** Every site, with what firing it does (docs/lessfs-sim.md lists them). */
export const BUGGIFY_SITES = {
  'short-write': 'a block data-file write goes to disk as two writes split at a seeded byte (a crash can land between them)',
  'short-append': 'a replog.dta append goes to disk as two writes split at a seeded byte (a crash leaves a frame cut anywhere)',
  'slow-commit': 'a commit waits a seeded delay after its log append and data sync, before the store commit',
  'early-commit': 'a write starts a background commit as if the cache were half full (commits land between and inside operations)',
  'rotate-mid-commit': 'batch master: a running commit takes a rotation request, as if the timer or the size limit asked right then',
  'rotate-request-early': 'batch master: rotate_replog waits a seeded delay after setting its request, so another commit takes it first',
  'drop-after-hello': 'live master: drops the connection right after its handshake and reconnects at once',
  'drop-mid-stream': 'live master: drops the connection right after sending a piece of the log (mid-window) and reconnects at once',
  'slave-drop': 'live slave: closes the master\'s connection right after applying a transaction',
  'ack-late': 'live slave: sends an acknowledgement a seeded delay late (its content as of when it leaves)',
  'slave-commit-late': 'live slave: starts a commit the master asked for a seeded delay late',
  'watchdir-rename-fails': 'watchdir slave: the rename of an applied file to -processed fails, so a later scan meets it again',
} as const;

export type BuggifySite = keyof typeof BUGGIFY_SITES;

export interface Buggify {
  /** False on real mounts: no site ever fires. */
  readonly enabled: boolean;
  /** Whether `site` fires this time it is reached. */
  fires(site: BuggifySite): boolean;
  /** A seeded integer in [0, maxExclusive) shaping the fault of a site that fired (a split byte, a delay). */
  int(site: BuggifySite, maxExclusive: number): number;
}

/** What a real mount has: never fires. */
export const BUGGIFY_OFF: Buggify = Object.freeze({
  enabled: false,
  fires: () => false,
  int: () => 0,
});

/** A seeded delay of 1..maxMs for a site that fired, through the node's clock. */
export function buggifyDelay(b: Buggify, site: BuggifySite, clock: Clock, maxMs: number): Promise<void> {
  const ms = 1 + b.int(site, maxMs);
  return new Promise((resolve) => {
    clock.setTimer(ms, resolve);
  });
}

/**
 * Two writes of the bytes of `chunks` from position, split at a seeded byte:
 * a short write, and its retry a seeded 1..50 ms later (a writer preempted
 * between the two), so a crash lands between them now and then.
 */
export async function buggifySplitWrite(
  b: Buggify,
  site: BuggifySite,
  clock: Clock,
  file: { write(positionBytes: number, data: Uint8Array): Promise<void> },
  positionBytes: number,
  chunks: readonly Uint8Array[],
): Promise<void> {
  const all = concat(...chunks);
  const total = all.length;
  const cut = total < 2 ? total : 1 + b.int(site, total - 1);
  await file.write(positionBytes, all.subarray(0, cut));
  if (cut === total) return;
  await buggifyDelay(b, site, clock, 50);
  await file.write(positionBytes + cut, all.subarray(cut));
}
