// Explicit schedules of lessfs-sim runs: everything a run decides (the fault
// setup, each workload operation and the idle time after it, link cuts and
// heals, node faults with their scheduler-step offsets, slave checks, batch
// rotations and how each rotated file is shipped) as plain JSON data, drawn
// from a seed before the run (campaign.ts generateSchedule) and then executed
// step by step (executeSchedule). The scheduler, the network and the disks
// still draw their own low-level randomness from the schedule's seed.
//
// Steps never refer to state by position: operations name paths, a heal of a
// link that is not cut does nothing, a fault arms itself for whatever comes
// next. So any sub-sequence of a schedule is a valid schedule, which is what
// shrinking (shrink.ts) needs: an operation on a path an earlier (removed)
// step would have created simply gets the result the model gives, ENOENT.

import { BUGGIFY_SITES, type BuggifySite } from '../core/buggify.ts';
import { FINGERPRINT_RE, tracePieces, ZERO_FINGERPRINT } from '../core/trace-format.ts';
import { SIM_DISK_DEFAULTS, type SimDiskMedium, type SimDiskOptions } from './disk.ts';
import type { SimNetOptions, SimNetwork } from './net.ts';
import type { SimRng } from './rng.ts';
import type { SimStoreOptions } from './store.ts';
import { POOL_PATTERNS, type Op } from './workload.ts';

export const SIM_MODES = ['live', 'batch'] as const;
export type SimMode = (typeof SIM_MODES)[number];

export function isSimMode(s: string): s is SimMode {
  return (SIM_MODES as readonly string[]).includes(s);
}

/** What the fault profile set up for the whole run (config keys may override the engine's part). */
export interface ScheduleSetup {
  net: Partial<SimNetOptions>;
  disk: Partial<SimDiskOptions>;
  store: Partial<SimStoreOptions>;
  commitIntervalMs: number;
  /** Live mode: frames authenticated with this shared secret (absent: unauthenticated). */
  secret?: string;
  /** Buggify sites in core may fire (each node draws which, src/sim/buggify.ts); absent: off. */
  buggify?: boolean;
  /** With buggify: exactly these sites are on, on both nodes. */
  buggifySites?: BuggifySite[];
  /**
   * BLKSIZE both nodes are formatted with and write fingerprints are cut by:
   * a replayed FUSE trace's (trace-replay.ts). Absent: the config's, or 4096.
   */
  blockSizeBytes?: number;
}

/** BLKSIZE values a schedule may set (those lessfs formats and a trace may record). */
export const SCHEDULE_BLOCK_SIZES = [4096, 8192, 16384, 32768, 65536, 131072] as const;

export type NodeFaultWho = 'master' | 'slave' | 'both';
export type NodeFaultKind = 'crash' | 'power';
export type LinkCutKind = 'partition' | 'hold';
export type DiskFillWho = 'master' | 'slave';
/** The most blocks of room a `fill` step leaves. */
export const FILL_ROOM_BLOCKS_MAX = 64;

/**
 * How one rotated file reaches the slave's watch directory (batch mode).
 * Positions are fractions of the file's length, so they fit any file.
 * `{}` is a plain, atomic delivery followed by a scan.
 */
export interface ShipDecision {
  /** First deliver a copy cut at this fraction of its length, in place (not atomically). */
  truncateAt?: number;
  /** First deliver a copy with one bit flipped (byte at this fraction, bit 0..7). */
  flip?: { at: number; bit: number };
  /** Hold the good copy back: it arrives later, out of order. */
  late?: boolean;
  /** After delivering this file, deliver the oldest file held back, if any. */
  deliverLate?: boolean;
  /** Then deliver an already shipped file again: the (duplicate mod shipped)-th. */
  duplicate?: number;
}

export type Step =
  /** A workload operation on the master, then idleMs of virtual time with nothing running (skipped when a fault cut the operation short). */
  | { step: 'op'; op: Op; idleMs: number }
  /**
   * Live: arm a crash (kill -9) or power loss that lands afterSteps scheduler
   * events after the next operation starts (one armed at a time, in order;
   * faults no operation reaches land in idle time at the end).
   * Batch: a slave fault lands afterSteps events into the next watchdir
   * scan; a master (or both-node) fault as in live mode, in the operations
   * that follow (the slave, for both, fails at the same instant).
   */
  | { step: 'fault'; who: NodeFaultWho; kind: NodeFaultKind; masterFirst: boolean; afterSteps: number }
  /** Live: partition the link (nothing crosses) or hold it (everything waits) until a heal of that kind. */
  | { step: 'cut'; kind: LinkCutKind }
  | { step: 'heal'; kind: LinkCutKind }
  /** Live: check the slave's tree against the master's at the txn it applied. */
  | { step: 'check' }
  /** Batch: rotate the master's log, then ship every file not yet shipped (the k-th new file by ship[k], later ones plainly). */
  | { step: 'rotate'; ship: ShipDecision[] }
  /**
   * The node's data disk (BLOCKDATA_PATH, META_PATH and the replication log
   * share it) fills up: from now on it has room for roomBlocks more blocks
   * of BLKSIZE than it holds, until a `room` step for that node.
   */
  | { step: 'fill'; who: DiskFillWho; roomBlocks: number }
  /** The node's data disk has room again (a room step for a disk that is not full does nothing). */
  | { step: 'room'; who: DiskFillWho }
  /**
   * Replication turned off or on at the node (`echo 0|1 > /.lessfs/replication/enabled`):
   * off, a live master sends nothing (it keeps logging), a live slave takes
   * nothing, a batch master's rotation by size and timer pauses, a batch
   * slave applies no file; a node that restarts comes back on (its config).
   */
  | { step: 'toggle'; who: DiskFillWho; enabled: boolean }
  /**
   * Each write, truncate, sync or directory operation on the node's disk fails
   * with EIO with this probability from now on (0: no more injected errors).
   */
  | { step: 'eio'; who: DiskFillWho; probability: number }
  /** Test only (--test-break-invariant): write /rogue on the master behind the oracle's back. */
  | { step: 'rogue' };

export type StepKind = Step['step'];

export interface Schedule {
  /** Seeds the scheduler and the network's and disks' own randomness. */
  seed: number;
  mode: SimMode;
  setup: ScheduleSetup;
  steps: Step[];
}

/** Steps that only one mode executes. */
const STEP_MODES: Record<StepKind, readonly SimMode[]> = {
  op: ['live', 'batch'],
  fault: ['live', 'batch'],
  cut: ['live'],
  heal: ['live'],
  check: ['live'],
  rotate: ['batch'],
  fill: ['live', 'batch'],
  room: ['live', 'batch'],
  toggle: ['live', 'batch'],
  eio: ['live', 'batch'],
  rogue: ['live', 'batch'],
};

// ------------------------------------------------------------------ link cuts

/**
 * Seeded partitions and holds of the master-slave link, decided op by op: with
 * `probability` per operation a cut opens for 1..8 operations, then heals.
 */
export class CutPlanner {
  private cut: { kind: LinkCutKind; until: number } | undefined;

  constructor(private readonly probability: number) {}

  /** Before operation i: the cut or heal to do, if any. */
  next(i: number, rng: SimRng): Extract<Step, { step: 'cut' | 'heal' }> | undefined {
    if (!this.cut && rng.chance(this.probability)) {
      this.cut = { kind: rng.chance(0.5) ? 'partition' : 'hold', until: i + 1 + rng.int(8) };
      return { step: 'cut', kind: this.cut.kind };
    }
    if (this.cut && i >= this.cut.until) {
      const kind = this.cut.kind;
      this.cut = undefined;
      return { step: 'heal', kind };
    }
    return undefined;
  }
}

// ------------------------------------------------------------------ full disks

/**
 * Seeded windows of a fault at one node, decided op by op as link cuts are:
 * with `probability` per operation a window opens at the master or the
 * slave (`begin` makes its step, drawing what else it needs) for
 * 1..lengthMax operations, then closes (`end`'s step).
 */
export class WindowPlanner<S extends Step> {
  private open: { who: DiskFillWho; until: number } | undefined;

  constructor(
    private readonly probability: number,
    private readonly lengthMax: number,
    private readonly begin: (who: DiskFillWho, rng: SimRng) => S,
    private readonly end: (who: DiskFillWho) => S,
  ) {}

  /** Before operation i: the step to do, if any. */
  next(i: number, rng: SimRng): S | undefined {
    if (this.probability <= 0) return undefined;
    if (!this.open && rng.chance(this.probability)) {
      const who = rng.chance(0.5) ? 'master' : 'slave';
      this.open = { who, until: i + 1 + rng.int(this.lengthMax) };
      return this.begin(who, rng);
    }
    if (this.open && i >= this.open.until) {
      const who = this.open.who;
      this.open = undefined;
      return this.end(who);
    }
    return undefined;
  }
}

/** Full disks: for 1..12 operations the node's disk has room for 0..8 blocks (one window in five: 9..64). */
export function fillPlanner(probability: number): WindowPlanner<Extract<Step, { step: 'fill' | 'room' }>> {
  return new WindowPlanner<Extract<Step, { step: 'fill' | 'room' }>>(probability, 12, (who, rng) => ({ step: 'fill', who, roomBlocks: rng.chance(0.8) ? rng.int(9) : 9 + rng.int(FILL_ROOM_BLOCKS_MAX - 8) }), (who) => ({ step: 'room', who }));
}

/** Replication toggles: off at the node for 1..10 operations, then on again. */
export function togglePlanner(probability: number): WindowPlanner<Extract<Step, { step: 'toggle' }>> {
  return new WindowPlanner<Extract<Step, { step: 'toggle' }>>(probability, 10, (who) => ({ step: 'toggle', who, enabled: false }), (who) => ({ step: 'toggle', who, enabled: true }));
}

/** I/O errors: the node's disk fails 1%, 5% or 20% of its writes with EIO for 1..8 operations. */
export function eioPlanner(probability: number): WindowPlanner<Extract<Step, { step: 'eio' }>> {
  return new WindowPlanner<Extract<Step, { step: 'eio' }>>(probability, 8, (who, rng) => ({ step: 'eio', who, probability: rng.pick([0.01, 0.05, 0.2]) }), (who) => ({ step: 'eio', who, probability: 0 }));
}

/** Steps at one node (`who`) and the field each adds to it. */
const NODE_STEP_FIELDS = { fill: 'roomBlocks', room: undefined, eio: 'probability', toggle: 'enabled' } as const;
export type NodeStep = Extract<Step, { step: keyof typeof NODE_STEP_FIELDS }>;

export function isNodeStep(s: Step): s is NodeStep {
  return s.step in NODE_STEP_FIELDS;
}

/** Apply a fill or room step to the node's disk (a fill leaves room for roomBlocks blocks of bs bytes more than it holds). */
export function applyFillStep(disk: SimDiskMedium, s: Extract<Step, { step: 'fill' | 'room' }>, bs: number): void {
  disk.setCapacity(s.step === 'fill' ? disk.usedBytes() + s.roomBlocks * bs : SIM_DISK_DEFAULTS.capacityBytes);
}

/** Whether a fill step left this disk full (no room step since). */
export function diskFilled(disk: SimDiskMedium): boolean {
  return disk.options.capacityBytes !== SIM_DISK_DEFAULTS.capacityBytes;
}

/**
 * Whether the master may answer this operation ENOSPC: while a fill step left
 * its disk full, or while the engine has not yet seen the room a room step
 * gave, a write (that then changes nothing), an fsync or a commit (that then
 * make nothing durable). Any other operation's ENOSPC, or one with room
 * known, is the model's to judge.
 */
export function mayRefuseForRoom(op: Op, engine: { readonly diskFull: boolean }, disk: SimDiskMedium): boolean {
  return (op.op === 'write' || op.op === 'fsync' || op.op === 'commit') && (diskFilled(disk) || engine.diskFull);
}

/**
 * Whether the master may answer this operation EIO: while an `eio` step has
 * its disk's writes failing, an fsync or a commit (a failed data-file, log or
 * directory write makes nothing durable; the transaction is retried); once a
 * failed data sync stopped its engine, any operation (a stopped engine
 * refuses every call until it is remounted, which the harness does next, and
 * the remount recovers its last durable commit). Other operations only fill
 * the write cache and must not fail.
 */
export function mayFailWithEio(op: Op, engine: { readonly stopped: boolean }, disk: SimDiskMedium): boolean {
  return engine.stopped || ((op.op === 'fsync' || op.op === 'commit') && disk.options.writeErrorProbability > 0);
}

/** Apply a cut or heal between master and slave (a heal of an intact link does nothing). */
export function applyLinkStep(net: SimNetwork, s: Extract<Step, { step: 'cut' | 'heal' }>): void {
  if (s.step === 'cut') {
    if (s.kind === 'partition') net.partition('master', 'slave');
    else net.hold('master', 'slave');
  } else if (s.kind === 'partition') net.repair('master', 'slave');
  else net.release('master', 'slave');
}

// ------------------------------------------------------------------ validation

/** A schedule (or part of one) that is not what it must be: names the field, what it holds and what was expected. */
export class ScheduleError extends Error {
  readonly code = 'ESCHEDULE';
  constructor(
    readonly field: string,
    readonly expected: string,
    got: unknown,
  ) {
    super(`${field}: ${describe(got)}, expected ${expected}`);
  }
}

function describe(v: unknown): string {
  if (v === undefined) return 'missing';
  const s = JSON.stringify(v);
  return `got ${s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 60)}…` : s}`;
}

/** Bounds that keep a hand-edited schedule from exhausting memory or time. */
export const SCHEDULE_LIMITS = {
  steps: 10_000_000,
  /** End of any write, read or truncate, in bytes (the model holds files in memory). */
  fileBytes: 64 * 1024 * 1024,
  idleMs: 3_600_000,
  afterSteps: 10_000_000,
  pathChars: 1024,
} as const;

const OPS_ALLOWED = ['create', 'mkdir', 'write', 'truncate', 'read', 'unlink', 'rmdir', 'rename', 'link', 'symlink', 'readlink', 'readdir', 'stat', 'fsync', 'commit'] as const;

class Checker {
  constructor(readonly at: string) {}

  fail(expected: string, got: unknown): never {
    throw new ScheduleError(this.at, expected, got);
  }

  sub(key: string | number): Checker {
    return new Checker(typeof key === 'number' ? `${this.at}[${key}]` : `${this.at}.${key}`);
  }

  object(v: unknown, keys: readonly string[], required: readonly string[] = keys): Record<string, unknown> {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(`an object with ${required.join(', ') || 'optional fields'}`, v);
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o)) if (!keys.includes(k)) this.sub(k).fail(`no such field (expected only ${keys.join(', ')})`, o[k]);
    for (const k of required) if (o[k] === undefined) this.sub(k).fail('a value', undefined);
    return o;
  }

  int(v: unknown, min: number, max: number): number {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) this.fail(`an integer in ${min}..${max}`, v);
    return v as number;
  }

  num(v: unknown, min: number, max: number): number {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) this.fail(`a number in ${min}..${max}`, v);
    return v as number;
  }

  fraction(v: unknown): number {
    if (typeof v !== 'number' || !(v >= 0 && v < 1)) this.fail('a number in [0, 1)', v);
    return v as number;
  }

  bool(v: unknown): boolean {
    if (typeof v !== 'boolean') this.fail('true or false', v);
    return v as boolean;
  }

  oneOf<T extends string>(v: unknown, allowed: readonly T[]): T {
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) this.fail(`one of ${allowed.join(', ')}`, v);
    return v as T;
  }

  path(v: unknown): string {
    if (typeof v !== 'string' || !v.startsWith('/') || v.length > SCHEDULE_LIMITS.pathChars || v.includes('\0')) {
      this.fail(`an absolute path ("/..." of at most ${SCHEDULE_LIMITS.pathChars} characters)`, v);
    }
    return v as string;
  }
}

const MS_MAX = 3_600_000;
const SETUP_FIELDS: Record<'net' | 'disk' | 'store', Record<string, 'ms' | 'p' | 'rate'>> = {
  net: {
    latencyMsMin: 'ms', latencyMsMax: 'ms', bitFlipProbability: 'p', resetProbability: 'p', stallProbability: 'p',
    stallMsMax: 'ms', bandwidthBytesPerMs: 'rate', splitProbability: 'p', partitionTimeoutMs: 'ms',
  },
  disk: { latencyMsMin: 'ms', latencyMsMax: 'ms', tornWriteProbability: 'p', reorderProbability: 'p' },
  store: { commitLatencyMsMin: 'ms', commitLatencyMsMax: 'ms', syncLatencyMsMin: 'ms', syncLatencyMsMax: 'ms' },
};

function checkSetupPart(c: Checker, v: unknown, fields: Record<string, 'ms' | 'p' | 'rate'>): void {
  const o = c.object(v, Object.keys(fields), []);
  for (const [k, kind] of Object.entries(fields)) {
    if (o[k] === undefined) continue;
    if (kind === 'p') c.sub(k).num(o[k], 0, 1);
    else if (kind === 'ms') c.sub(k).int(o[k], 0, MS_MAX);
    else c.sub(k).num(o[k], 0, 1e9);
  }
  for (const [min, max] of [['latencyMsMin', 'latencyMsMax'], ['commitLatencyMsMin', 'commitLatencyMsMax'], ['syncLatencyMsMin', 'syncLatencyMsMax']]) {
    if (typeof o[min] === 'number' && typeof o[max] === 'number' && (o[max] as number) < (o[min] as number)) c.sub(max).fail(`a value >= ${min} (${String(o[min])})`, o[max]);
  }
}

/** Write fingerprints of a replayed trace: one per piece of the write cut at BLKSIZE (bs; undefined: the config's, not known here). */
function checkFingerprints(c: Checker, v: unknown, o: Record<string, unknown>, bs: number | undefined): void {
  const pieces = bs === undefined ? undefined : tracePieces(o.offsetBytes as number, o.lengthBytes as number, bs).length;
  const want = `a list of ${pieces ?? 'N'} fingerprints (16 hex digits or "0", one per BLKSIZE-aligned piece${bs === undefined ? ', with setup.blockSizeBytes set' : ''})`;
  if (bs === undefined || !Array.isArray(v) || v.length !== pieces || !v.every((f) => f === ZERO_FINGERPRINT || (typeof f === 'string' && FINGERPRINT_RE.test(f)))) c.fail(want, v);
}

function checkOp(c: Checker, v: unknown, bs: number | undefined): void {
  const kind = c.sub('op').oneOf((v as { op?: unknown } | null)?.op, OPS_ALLOWED);
  const end = (o: Record<string, unknown>, off: string, len: string): void => {
    const a = c.sub(off).int(o[off], 0, SCHEDULE_LIMITS.fileBytes);
    c.sub(len).int(o[len], 0, SCHEDULE_LIMITS.fileBytes - a);
  };
  switch (kind) {
    case 'write': {
      const o = c.object(v, ['op', 'path', 'offsetBytes', 'pool', 'lengthBytes', 'fingerprints'], ['op', 'path', 'offsetBytes', 'pool', 'lengthBytes']);
      c.sub('path').path(o.path);
      c.sub('pool').int(o.pool, 0, POOL_PATTERNS - 1);
      end(o, 'offsetBytes', 'lengthBytes');
      if (o.fingerprints !== undefined) checkFingerprints(c.sub('fingerprints'), o.fingerprints, o, bs);
      return;
    }
    case 'read': {
      const o = c.object(v, ['op', 'path', 'offsetBytes', 'lengthBytes']);
      c.sub('path').path(o.path);
      end(o, 'offsetBytes', 'lengthBytes');
      return;
    }
    case 'truncate': {
      const o = c.object(v, ['op', 'path', 'sizeBytes']);
      c.sub('path').path(o.path);
      c.sub('sizeBytes').int(o.sizeBytes, 0, SCHEDULE_LIMITS.fileBytes);
      return;
    }
    case 'rename':
    case 'link': {
      const o = c.object(v, ['op', 'from', 'to']);
      c.sub('from').path(o.from);
      c.sub('to').path(o.to);
      return;
    }
    case 'symlink': {
      const o = c.object(v, ['op', 'target', 'path']);
      const t = o.target;
      if (typeof t !== 'string' || t.length === 0 || t.length > SCHEDULE_LIMITS.pathChars || t.includes('\0')) c.sub('target').fail(`a symlink target of 1..${SCHEDULE_LIMITS.pathChars} characters`, t);
      c.sub('path').path(o.path);
      return;
    }
    case 'commit':
      c.object(v, ['op']);
      return;
    default: {
      const o = c.object(v, ['op', 'path']);
      c.sub('path').path(o.path);
    }
  }
}

function checkShip(c: Checker, v: unknown): void {
  const o = c.object(v, ['truncateAt', 'flip', 'late', 'deliverLate', 'duplicate'], []);
  if (o.truncateAt !== undefined) c.sub('truncateAt').fraction(o.truncateAt);
  if (o.flip !== undefined) {
    const f = c.sub('flip');
    const fo = f.object(o.flip, ['at', 'bit']);
    f.sub('at').fraction(fo.at);
    f.sub('bit').int(fo.bit, 0, 7);
  }
  if (o.late !== undefined) c.sub('late').bool(o.late);
  if (o.deliverLate !== undefined) c.sub('deliverLate').bool(o.deliverLate);
  if (o.duplicate !== undefined) c.sub('duplicate').int(o.duplicate, 0, 2 ** 31);
}

function checkStep(c: Checker, v: unknown, mode: SimMode, bs: number | undefined): void {
  const kinds = Object.keys(STEP_MODES) as StepKind[];
  const kind = c.sub('step').oneOf((v as { step?: unknown } | null)?.step, kinds);
  if (!STEP_MODES[kind].includes(mode)) c.sub('step').fail(`a step of a ${mode} schedule (${kinds.filter((k) => STEP_MODES[k].includes(mode)).join(', ')})`, kind);
  switch (kind) {
    case 'op': {
      const o = c.object(v, ['step', 'op', 'idleMs']);
      checkOp(c.sub('op'), o.op, bs);
      c.sub('idleMs').int(o.idleMs, 0, SCHEDULE_LIMITS.idleMs);
      return;
    }
    case 'fault': {
      const o = c.object(v, ['step', 'who', 'kind', 'masterFirst', 'afterSteps']);
      c.sub('who').oneOf(o.who, ['master', 'slave', 'both'] as const);
      c.sub('kind').oneOf(o.kind, ['crash', 'power'] as const);
      c.sub('masterFirst').bool(o.masterFirst);
      c.sub('afterSteps').int(o.afterSteps, 0, SCHEDULE_LIMITS.afterSteps);
      return;
    }
    case 'cut':
    case 'heal': {
      const o = c.object(v, ['step', 'kind']);
      c.sub('kind').oneOf(o.kind, ['partition', 'hold'] as const);
      return;
    }
    case 'fill':
    case 'room':
    case 'eio':
    case 'toggle': {
      // A step at one node: `who`, and the field its kind adds (none for room).
      const extra = NODE_STEP_FIELDS[kind];
      const o = c.object(v, ['step', 'who', ...(extra ? [extra] : [])]);
      c.sub('who').oneOf(o.who, ['master', 'slave'] as const);
      if (extra === 'roomBlocks') c.sub(extra).int(o[extra], 0, FILL_ROOM_BLOCKS_MAX);
      else if (extra === 'probability') c.sub(extra).num(o[extra], 0, 0.5);
      else if (extra === 'enabled') c.sub(extra).bool(o[extra]);
      return;
    }
    case 'rotate': {
      const o = c.object(v, ['step', 'ship']);
      if (!Array.isArray(o.ship) || o.ship.length > 16) c.sub('ship').fail('a list of at most 16 shipping decisions', o.ship);
      (o.ship as unknown[]).forEach((s, i) => checkShip(c.sub('ship').sub(i), s));
      return;
    }
    default:
      c.object(v, ['step']);
  }
}

/**
 * Check that a value (e.g. parsed from a capsule) is a schedule: every field
 * present, of its type and in its range. Throws ScheduleError naming the first
 * field that is not (`at` prefixes the field path).
 */
export function validateSchedule(v: unknown, at = 'schedule'): Schedule {
  const c = new Checker(at);
  const o = c.object(v, ['seed', 'mode', 'setup', 'steps']);
  c.sub('seed').int(o.seed, 0, Number.MAX_SAFE_INTEGER);
  const mode = c.sub('mode').oneOf(o.mode, SIM_MODES);
  const sc = c.sub('setup');
  const setup = sc.object(o.setup, ['net', 'disk', 'store', 'commitIntervalMs', 'secret', 'buggify', 'buggifySites', 'blockSizeBytes'], ['net', 'disk', 'store', 'commitIntervalMs']);
  for (const part of ['net', 'disk', 'store'] as const) checkSetupPart(sc.sub(part), setup[part], SETUP_FIELDS[part]);
  sc.sub('commitIntervalMs').int(setup.commitIntervalMs, 1, MS_MAX);
  if (setup.secret !== undefined && (typeof setup.secret !== 'string' || setup.secret.length === 0 || setup.secret.length > 1024)) {
    sc.sub('secret').fail('a string of 1..1024 characters', setup.secret);
  }
  if (setup.buggify !== undefined && typeof setup.buggify !== 'boolean') sc.sub('buggify').fail('true or false', setup.buggify);
  if (setup.buggifySites !== undefined) {
    const sites = setup.buggifySites;
    if (!Array.isArray(sites) || sites.some((x) => typeof x !== 'string' || !(x in BUGGIFY_SITES))) sc.sub('buggifySites').fail(`a list of buggify sites (${Object.keys(BUGGIFY_SITES).join(', ')})`, sites);
  }
  const bs = setup.blockSizeBytes;
  if (bs !== undefined && !(SCHEDULE_BLOCK_SIZES as readonly unknown[]).includes(bs)) sc.sub('blockSizeBytes').fail(`one of ${SCHEDULE_BLOCK_SIZES.join(', ')}`, bs);
  if (!Array.isArray(o.steps) || o.steps.length > SCHEDULE_LIMITS.steps) c.sub('steps').fail(`a list of at most ${SCHEDULE_LIMITS.steps} steps`, o.steps);
  const steps = o.steps as unknown[];
  for (let i = 0; i < steps.length; i++) checkStep(c.sub('steps').sub(i), steps[i], mode, bs as number | undefined);
  return v as Schedule;
}

/** Steps by kind, e.g. "120 op, 12 check, 3 cut" (for reports). */
export function describeSteps(steps: readonly Step[]): string {
  const n = new Map<string, number>();
  for (const s of steps) n.set(s.step, (n.get(s.step) ?? 0) + 1);
  return [...n].map(([k, c]) => `${c} ${k}`).join(', ') || 'no steps';
}
