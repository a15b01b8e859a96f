import { posix } from 'node:path';
import type { Disk, DiskSpace, DiskStat, FileHandle, OpenFileOptions, TimerHandle } from '../core/drivers.ts';
import { assert, DiskError, AssertionError } from '../core/errors.ts';
import type { Domain, Scheduler } from './scheduler.ts';
import type { SimRng } from './rng.ts';

// A simulated disk: one persistent medium (SimDiskMedium) that outlives node
// incarnations, and per-incarnation drivers (SimDisk) whose operations complete
// as scheduler events. The medium keeps, per file, the page-cache image (what
// reads see, what survives a process crash) and the durable image plus the list
// of writes since the last sync (what a power loss chooses from). The namespace
// is kept the same way: the durable base, plus a log of directory operations not
// yet made durable by syncDir of every directory they touch.

/** The fault model of one simulated disk; checked when built. */
export interface SimDiskOptions {
  /** Names the disk in event labels and trace lines. */
  label: string;
  /** Each operation completes this long after it is issued, drawn uniformly in [min, max]. */
  latencyMsMin: number;
  latencyMsMax: number;
  /** Chance that a read fails with EIO (no effect). */
  readErrorProbability: number;
  /** Chance that a write, append, truncate, sync or syncDir fails with EIO (no effect). */
  writeErrorProbability: number;
  /** Read and write errors hit only paths under this one ('': every path), e.g. one node's data file. */
  faultPathPrefix: string;
  /** Read and write errors hit only these operations (read, write, append, truncate, sync, syncDir; empty: all). */
  faultOps: readonly string[];
  /** Total bytes across all live files; a change that would exceed it fails with ENOSPC. */
  capacityBytes: number;
  /** At power loss, chance that the last surviving unsynced write of a file is cut at a 512-byte boundary. */
  tornWriteProbability: number;
  /** At power loss, chance (per file) that unsynced writes survive as any subset instead of a prefix. */
  reorderProbability: number;
  /** At power loss, chance that each unsynced directory operation survives anyway. */
  dirOpSurviveProbability: number;
  /** Unsynced writes kept per file; beyond it the oldest is written back (becomes durable), as the kernel would. */
  pendingOpsPerFileMax: number;
  /** Unsynced directory operations kept; beyond it the oldest becomes durable. */
  pendingDirOpsMax: number;
  /** Files plus directories; creating more fails with ENOSPC. */
  inodesMax: number;
  /** Operations in flight on the medium at once; more is a caller bug. */
  inflightOpsMax: number;
  /** Largest single read or write. */
  ioLengthMaxBytes: number;
}

export const SIM_DISK_DEFAULTS: Readonly<SimDiskOptions> = Object.freeze({
  label: 'disk',
  latencyMsMin: 0,
  latencyMsMax: 1,
  readErrorProbability: 0,
  writeErrorProbability: 0,
  faultPathPrefix: '',
  faultOps: [],
  capacityBytes: 1 << 30,
  tornWriteProbability: 0,
  reorderProbability: 0,
  dirOpSurviveProbability: 0.5,
  pendingOpsPerFileMax: 4096,
  pendingDirOpsMax: 4096,
  inodesMax: 1_000_000,
  inflightOpsMax: 100_000,
  ioLengthMaxBytes: 64 << 20,
});

const FAULT_OPS: readonly string[] = ['read', 'write', 'append', 'truncate', 'sync', 'syncDir'];

/** Fill defaults and reject nonsense (RangeError naming the option). */
export function checkSimDiskOptions(partial: Partial<SimDiskOptions>): SimDiskOptions {
  const o: SimDiskOptions = { ...SIM_DISK_DEFAULTS };
  for (const [key, value] of Object.entries(partial)) {
    if (!(key in SIM_DISK_DEFAULTS)) throw new RangeError(`SimDiskOptions: unknown option ${key}`);
    if (value !== undefined) (o as unknown as Record<string, unknown>)[key] = value;
  }
  if (typeof o.label !== 'string' || o.label === '') throw new RangeError('SimDiskOptions.label must be a non-empty string');
  for (const key of ['latencyMsMin', 'latencyMsMax'] as const) {
    const v = o[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new RangeError(`SimDiskOptions.${key} must be a finite number >= 0, got ${v}`);
  }
  if (o.latencyMsMin > o.latencyMsMax) {
    throw new RangeError(`SimDiskOptions: latencyMsMin ${o.latencyMsMin} > latencyMsMax ${o.latencyMsMax}`);
  }
  for (const key of [
    'readErrorProbability',
    'writeErrorProbability',
    'tornWriteProbability',
    'reorderProbability',
    'dirOpSurviveProbability',
  ] as const) {
    const v = o[key];
    if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw new RangeError(`SimDiskOptions.${key} must be in [0, 1], got ${v}`);
  }
  if (typeof o.faultPathPrefix !== 'string') throw new RangeError(`SimDiskOptions.faultPathPrefix must be a string, got ${String(o.faultPathPrefix)}`);
  if (!Array.isArray(o.faultOps) || !o.faultOps.every((op) => FAULT_OPS.includes(op))) {
    throw new RangeError(`SimDiskOptions.faultOps must list operations of ${FAULT_OPS.join(', ')}, got ${String(o.faultOps)}`);
  }
  checkCount('capacityBytes', o.capacityBytes, 0);
  for (const key of ['pendingOpsPerFileMax', 'pendingDirOpsMax', 'inodesMax', 'inflightOpsMax', 'ioLengthMaxBytes'] as const) {
    checkCount(key, o[key], 1);
  }
  return o;
}

function checkCount(key: string, v: unknown, min: number): void {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    throw new RangeError(`SimDiskOptions.${key} must be an integer >= ${min}, got ${String(v)}`);
  }
}

const ROOT_INO = 1;
const SECTOR_BYTES = 512;
const NAME_LENGTH_MAX = 255;
const PATH_DEPTH_MAX = 256;

// ---------------------------------------------------------------- byte images

/** A growable byte image. Invariant: bytes past `length` in buf are zero. */
class ByteImage {
  private buf: Uint8Array;
  length = 0;

  constructor(buf = new Uint8Array(0), length = 0) {
    this.buf = buf;
    this.length = length;
  }

  write(positionBytes: number, data: Uint8Array): void {
    const end = positionBytes + data.length;
    this.ensure(end);
    this.buf.set(data, positionBytes);
    if (end > this.length) this.length = end;
  }

  truncate(lengthBytes: number): void {
    if (lengthBytes < this.length) {
      this.buf.fill(0, lengthBytes, this.length);
    } else {
      this.ensure(lengthBytes);
    }
    this.length = lengthBytes;
  }

  read(positionBytes: number, length: number): Uint8Array {
    const end = Math.min(this.length, positionBytes + length);
    if (end <= positionBytes) return new Uint8Array(0);
    return this.buf.slice(positionBytes, end);
  }

  snapshot(): Uint8Array {
    return this.buf.slice(0, this.length);
  }

  clone(): ByteImage {
    return new ByteImage(this.buf.slice(0, this.length), this.length);
  }

  private ensure(sizeBytes: number): void {
    if (sizeBytes <= this.buf.length) return;
    const next = new Uint8Array(Math.max(sizeBytes, this.buf.length * 2, 64));
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }
}

type PendingOp = { kind: 'write'; positionBytes: number; data: Uint8Array } | { kind: 'truncate'; lengthBytes: number };

function applyPending(image: ByteImage, op: PendingOp): void {
  if (op.kind === 'write') image.write(op.positionBytes, op.data);
  else image.truncate(op.lengthBytes);
}

interface FileInode {
  readonly ino: number;
  /** Page cache: what reads see and what a process crash keeps. */
  data: ByteImage;
  /** What survives any power loss. data = durable + pending, applied in order. */
  durable: ByteImage;
  pending: PendingOp[];
  /** Has a name in the current namespace. */
  linked: boolean;
  openCount: number;
  /** Bumped by every write, truncate and crash that changes the page cache (DiskStat.changeTag). */
  version: number;
}

// ---------------------------------------------------------------- namespace

type DirOp =
  | { kind: 'link'; dir: number; name: string; ino: number; isDir: boolean }
  | { kind: 'unlink'; dir: number; name: string; ino: number }
  | { kind: 'rename'; fromDir: number; fromName: string; toDir: number; toName: string; ino: number };

interface LoggedDirOp {
  op: DirOp;
  /** Directories touched by op that have not been syncDir'ed since; durable when empty. */
  unsyncedDirs: Set<number>;
}

function describeDirOp(op: DirOp): string {
  switch (op.kind) {
    case 'link':
      return `${op.isDir ? 'mkdir' : 'create'} ${op.dir}/${op.name}=${op.ino}`;
    case 'unlink':
      return `unlink ${op.dir}/${op.name}=${op.ino}`;
    case 'rename':
      return `rename ${op.fromDir}/${op.fromName} -> ${op.toDir}/${op.toName} (${op.ino})`;
  }
}

/** Directory tree by inode number. Directories are the keys of `dirs`. */
class Namespace {
  constructor(
    readonly dirs: Map<number, Map<string, number>>,
    readonly parents: Map<number, number>,
    /** Every inode with a name (files and directories other than the root). */
    readonly linked: Set<number>,
  ) {}

  static empty(): Namespace {
    return new Namespace(new Map([[ROOT_INO, new Map()]]), new Map(), new Set());
  }

  clone(): Namespace {
    const dirs = new Map<number, Map<string, number>>();
    for (const [ino, entries] of this.dirs) dirs.set(ino, new Map(entries));
    return new Namespace(dirs, new Map(this.parents), new Set(this.linked));
  }

  isDir(ino: number): boolean {
    return this.dirs.has(ino);
  }

  lookup(dir: number, name: string): number | undefined {
    return this.dirs.get(dir)?.get(name);
  }

  /** True when `ancestor` is `ino` or lies on the path from `ino` to the root. */
  isAncestorOrSelf(ancestor: number, ino: number): boolean {
    let cur: number | undefined = ino;
    for (let steps = 0; cur !== undefined; steps++) {
      assert(steps <= this.dirs.size, 'namespace: cycle in directory parents');
      if (cur === ancestor) return true;
      cur = this.parents.get(cur);
    }
    return false;
  }

  /**
   * Apply op if its preconditions hold here; otherwise change nothing and return
   * false. Replay after a power loss relies on this: an operation whose
   * prerequisite was reverted is dropped instead of corrupting the tree.
   */
  apply(op: DirOp): boolean {
    switch (op.kind) {
      case 'link': {
        const entries = this.dirs.get(op.dir);
        if (!entries || entries.has(op.name) || this.linked.has(op.ino)) return false;
        entries.set(op.name, op.ino);
        this.linked.add(op.ino);
        if (op.isDir) {
          this.dirs.set(op.ino, new Map());
          this.parents.set(op.ino, op.dir);
        }
        return true;
      }
      case 'unlink': {
        const entries = this.dirs.get(op.dir);
        if (!entries || entries.get(op.name) !== op.ino || this.isDir(op.ino)) return false;
        entries.delete(op.name);
        this.linked.delete(op.ino);
        return true;
      }
      case 'rename': {
        const from = this.dirs.get(op.fromDir);
        const to = this.dirs.get(op.toDir);
        if (!from || !to || from.get(op.fromName) !== op.ino) return false;
        const srcIsDir = this.isDir(op.ino);
        if (srcIsDir && this.isAncestorOrSelf(op.ino, op.toDir)) return false;
        const target = to.get(op.toName);
        if (target === op.ino) return true;
        if (target !== undefined) {
          const targetIsDir = this.isDir(target);
          if (targetIsDir !== srcIsDir) return false;
          if (targetIsDir && (this.dirs.get(target) as Map<string, number>).size > 0) return false;
          if (targetIsDir) {
            this.dirs.delete(target);
            this.parents.delete(target);
          }
          this.linked.delete(target);
        }
        from.delete(op.fromName);
        to.set(op.toName, op.ino);
        if (srcIsDir) this.parents.set(op.ino, op.toDir);
        return true;
      }
    }
  }

  /** ino -> one path, for readable trace lines. */
  paths(): Map<number, string> {
    const out = new Map<number, string>([[ROOT_INO, '/']]);
    const stack: number[] = [ROOT_INO];
    while (stack.length > 0) {
      const dir = stack.pop() as number;
      const prefix = dir === ROOT_INO ? '' : (out.get(dir) as string);
      for (const [name, ino] of this.dirs.get(dir) as Map<string, number>) {
        out.set(ino, `${prefix}/${name}`);
        if (this.isDir(ino)) stack.push(ino);
      }
    }
    return out;
  }
}

// ---------------------------------------------------------------- paths

function parsePath(path: string): string[] {
  if (typeof path !== 'string' || !path.startsWith('/') || path.includes('\0')) {
    throw new DiskError('EINVAL', String(path), 'path must be absolute');
  }
  // No symlinks in the sim, so resolving '..' lexically is what the kernel does.
  const parts = posix.normalize(path).split('/').filter((p) => p !== '' && p !== '.');
  if (parts.length > PATH_DEPTH_MAX || parts.some((p) => p.length > NAME_LENGTH_MAX)) {
    throw new DiskError('ENAMETOOLONG', path, 'path too long');
  }
  return parts;
}

interface Resolved {
  /** Parent directory; undefined for the root. */
  parent: number | undefined;
  name: string;
  ino: number | undefined;
}

function resolveIn(ns: Namespace, parts: readonly string[], path: string): Resolved {
  let dir = ROOT_INO;
  for (let i = 0; i < parts.length - 1; i++) {
    const child = ns.lookup(dir, parts[i]);
    if (child === undefined) throw new DiskError('ENOENT', path, 'no such file or directory');
    if (!ns.isDir(child)) throw new DiskError('ENOTDIR', path, 'not a directory');
    dir = child;
  }
  if (parts.length === 0) return { parent: undefined, name: '', ino: ROOT_INO };
  const name = parts[parts.length - 1];
  return { parent: dir, name, ino: ns.lookup(dir, name) };
}

function checkPosition(value: number, what: string, path: string, max: number): void {
  if (!Number.isSafeInteger(value) || value < 0 || value > max) {
    throw new DiskError('EINVAL', path, `${what} must be an integer in [0, ${max}], got ${value}`);
  }
}

// ---------------------------------------------------------------- medium

interface Inflight {
  timer: TimerHandle;
  domain: Domain;
}

/**
 * The persistent medium. Survives node incarnations: a new incarnation gets a
 * fresh `driver(domain)` over the same medium after `crash()` or `powerLoss()`.
 */
export class SimDiskMedium {
  private opts: SimDiskOptions;
  private readonly latencyRng: SimRng;
  private readonly faultRng: SimRng;
  private readonly powerRng: SimRng;
  private readonly files = new Map<number, FileInode>();
  /** Namespace as the page cache sees it. */
  private current = Namespace.empty();
  /** Durable namespace: current = base + dirLog, applied in order. */
  private base = Namespace.empty();
  private dirLog: LoggedDirOp[] = [];
  private nextIno = ROOT_INO + 1;
  private used = 0;
  /** Bumped by crash and power loss; handles of an older epoch are dead. */
  epoch = 0;
  private readonly inflight = new Map<number, Inflight>();
  private nextOpId = 0;
  /** Completion time of the most recently submitted operation (for per-handle ordering). */
  lastScheduledAtMs = 0;

  constructor(
    readonly scheduler: Scheduler,
    rng: SimRng,
    options: Partial<SimDiskOptions> = {},
  ) {
    this.opts = checkSimDiskOptions(options);
    this.latencyRng = rng.split('latency');
    this.faultRng = rng.split('fault');
    this.powerRng = rng.split('power');
  }

  get options(): Readonly<SimDiskOptions> {
    return this.opts;
  }

  /** Change the fault model mid-run (a test heals the disk before checking convergence). */
  setOptions(changes: Partial<SimDiskOptions>): void {
    this.opts = checkSimDiskOptions({ ...this.opts, ...changes });
  }

  /** A Disk for one incarnation; its operations die with the domain. */
  driver(domain: Domain): Disk {
    return new SimDisk(this, domain);
  }

  usedBytes(): number {
    return this.used;
  }

  setCapacity(capacityBytes: number): void {
    checkCount('capacityBytes', capacityBytes, 0);
    this.opts = { ...this.opts, capacityBytes };
    this.scheduler.trace(`${this.options.label} capacity ${capacityBytes}`);
  }

  /** Page-cache contents of a file (what a reader sees now), or undefined. */
  peek(path: string): Uint8Array | undefined {
    const ino = this.lookupFile(this.current, path);
    return ino === undefined ? undefined : (this.files.get(ino) as FileInode).data.snapshot();
  }

  /**
   * The file as a power loss now would leave it if nothing unsynced survived:
   * synced directory operations over the durable namespace, the durable data.
   * (A synced operation that depends on an unsynced one may still be dropped.)
   */
  peekDurable(path: string): Uint8Array | undefined {
    const ns = this.base.clone();
    for (const entry of this.dirLog) if (entry.unsyncedDirs.size === 0) ns.apply(entry.op);
    const ino = this.lookupFile(ns, path);
    return ino === undefined ? undefined : (this.files.get(ino) as FileInode).durable.snapshot();
  }

  /** Process crash (kill -9): the page cache survives; in-flight operations never complete. */
  crash(): void {
    this.scheduler.trace(`${this.options.label} crash`);
    this.invalidate();
    for (const f of this.files.values()) f.openCount = 0;
    this.collect();
    this.recount();
  }

  /** Power cut: durable state plus a seeded choice of what was not yet durable. */
  powerLoss(): void {
    const label = this.options.label;
    this.scheduler.trace(`${label} powerloss`);
    this.invalidate();

    const ns = this.base.clone();
    for (const entry of this.dirLog) {
      const synced = entry.unsyncedDirs.size === 0;
      const attempt = synced || this.powerRng.chance(this.options.dirOpSurviveProbability);
      const applied = attempt && ns.apply(entry.op);
      if (!synced || !applied) {
        const outcome = applied ? 'kept' : attempt ? 'dropped (depends on a reverted op)' : 'reverted';
        this.scheduler.trace(`${label} powerloss dirop ${outcome}: ${describeDirOp(entry.op)}`);
      }
    }
    this.base = ns;
    this.current = ns.clone();
    this.dirLog = [];

    const paths = ns.paths();
    for (const [ino, f] of this.files) {
      if (!ns.linked.has(ino)) {
        this.files.delete(ino);
        continue;
      }
      f.linked = true;
      f.openCount = 0;
      this.losePending(f, paths.get(ino) as string);
    }
    this.recount();
  }

  // -------------------------------------------------------------- internals used by SimDisk

  /** Schedule effect to run as one event after a drawn latency; its result settles the promise. */
  submit<T>(domain: Domain, what: string, path: string, effect: () => T, notBeforeMs = 0): Promise<T> {
    if (!domain.alive) return Promise.reject(new DiskError('EBADF', path, `${what}: domain ${domain.name} is dead`));
    if (this.inflight.size >= this.options.inflightOpsMax) this.pruneInflight();
    if (!(this.inflight.size < this.options.inflightOpsMax)) throw new AssertionError(`${this.options.label}: more than ${this.options.inflightOpsMax} operations in flight`);
    const delayMs = Math.max(this.drawLatencyMs(), notBeforeMs - this.scheduler.nowMs());
    this.lastScheduledAtMs = this.scheduler.nowMs() + delayMs;
    return new Promise<T>((resolve, reject) => {
      const id = this.nextOpId++;
      const timer = this.scheduler.schedule(
        delayMs,
        `${domain.name} ${this.options.label}.${what} ${path}`,
        () => {
          this.inflight.delete(id);
          let value: T;
          try {
            value = effect();
          } catch (err) {
            reject(err);
            return;
          }
          resolve(value);
        },
        domain,
      );
      this.inflight.set(id, { timer, domain });
    });
  }

  maybeFault(kind: 'read' | 'write', what: string, path: string): void {
    const { faultPathPrefix, faultOps } = this.options;
    // Outside the filter nothing is drawn: a run without one draws as before.
    if (!path.startsWith(faultPathPrefix) || (faultOps.length > 0 && !faultOps.includes(what))) return;
    const p = kind === 'read' ? this.options.readErrorProbability : this.options.writeErrorProbability;
    if (this.faultRng.chance(p)) {
      this.scheduler.trace(`${this.options.label} fault EIO ${what} ${path}`);
      throw new DiskError('EIO', path, `${what}: injected I/O error`);
    }
  }

  parse(path: string): string[] {
    return parsePath(path);
  }

  resolve(parts: readonly string[], path: string): Resolved {
    return resolveIn(this.current, parts, path);
  }

  isDir(ino: number): boolean {
    return this.current.isDir(ino);
  }

  file(ino: number): FileInode {
    const f = this.files.get(ino);
    if (!(f !== undefined)) throw new AssertionError(`${this.options.label}: no file inode ${ino}`);
    return f;
  }

  readdirIno(ino: number): string[] {
    return [...(this.current.dirs.get(ino) as Map<string, number>).keys()].sort();
  }

  dirEmpty(ino: number): boolean {
    return (this.current.dirs.get(ino) as Map<string, number>).size === 0;
  }

  isAncestorOrSelf(ancestor: number, ino: number): boolean {
    return this.current.isAncestorOrSelf(ancestor, ino);
  }

  freeBytes(): number {
    return Math.max(0, this.options.capacityBytes - this.used);
  }

  createFile(parent: number, name: string, path: string): FileInode {
    this.checkInodes(path);
    const f: FileInode = {
      ino: this.nextIno++,
      data: new ByteImage(),
      durable: new ByteImage(),
      pending: [],
      linked: false,
      openCount: 0,
      version: 0,
    };
    this.files.set(f.ino, f);
    this.dirOp({ kind: 'link', dir: parent, name, ino: f.ino, isDir: false });
    f.linked = true;
    return f;
  }

  createDir(parent: number, name: string, path: string): number {
    this.checkInodes(path);
    const ino = this.nextIno++;
    this.dirOp({ kind: 'link', dir: parent, name, ino, isDir: true });
    return ino;
  }

  unlinkFile(parent: number, name: string, ino: number): void {
    this.dirOp({ kind: 'unlink', dir: parent, name, ino });
    this.setLinked(this.file(ino), false);
  }

  renameEntry(fromDir: number, fromName: string, toDir: number, toName: string, ino: number, replaced: number | undefined): void {
    const replacedFile = replaced !== undefined && !this.current.isDir(replaced) ? this.file(replaced) : undefined;
    this.dirOp({ kind: 'rename', fromDir, fromName, toDir, toName, ino });
    if (replacedFile) this.setLinked(replacedFile, false);
  }

  syncDirIno(ino: number): void {
    for (const entry of this.dirLog) entry.unsyncedDirs.delete(ino);
    this.compact();
  }

  changeOpen(f: FileInode, delta: 1 | -1): void {
    const wasLive = f.linked || f.openCount > 0;
    f.openCount += delta;
    if (!(f.openCount >= 0)) throw new AssertionError(`${this.options.label}: open count of inode ${f.ino} below zero`);
    this.liveChanged(f, wasLive);
  }

  /** Apply a write or truncate to the page cache, or fail with ENOSPC changing nothing. */
  mutate(f: FileInode, op: PendingOp, path: string, what: string): void {
    const newLength = op.kind === 'write' ? Math.max(f.data.length, op.positionBytes + op.data.length) : op.lengthBytes;
    const growth = newLength - f.data.length;
    const live = f.linked || f.openCount > 0;
    if (growth > 0 && live && this.used + growth > this.options.capacityBytes) {
      this.scheduler.trace(`${this.options.label} fault ENOSPC ${what} ${path} +${growth}`);
      throw new DiskError('ENOSPC', path, `${what}: no space left (${this.used}+${growth} > ${this.options.capacityBytes} bytes)`);
    }
    applyPending(f.data, op);
    f.version++;
    if (!(f.data.length === newLength)) throw new AssertionError(`${this.options.label}: ${what} left length ${f.data.length}, expected ${newLength}`);
    if (live) this.used += growth;
    f.pending.push(op);
    if (f.pending.length > this.options.pendingOpsPerFileMax) {
      applyPending(f.durable, f.pending.shift() as PendingOp);
    }
  }

  syncFile(f: FileInode): void {
    for (const op of f.pending) applyPending(f.durable, op);
    f.pending = [];
    if (!(f.durable.length === f.data.length)) throw new AssertionError(`${this.options.label}: inode ${f.ino} durable length ${f.durable.length} != ${f.data.length} after sync`);
  }

  // -------------------------------------------------------------- private

  private lookupFile(ns: Namespace, path: string): number | undefined {
    const parts = parsePath(path);
    let r: Resolved;
    try {
      r = resolveIn(ns, parts, path);
    } catch (err) {
      if (err instanceof DiskError && (err.code === 'ENOENT' || err.code === 'ENOTDIR')) return undefined;
      throw err;
    }
    return r.ino === undefined || ns.isDir(r.ino) ? undefined : r.ino;
  }

  private drawLatencyMs(): number {
    const { latencyMsMin: lo, latencyMsMax: hi } = this.options;
    if (lo === hi) return lo;
    if (Number.isInteger(lo) && Number.isInteger(hi)) return lo + this.latencyRng.int(hi - lo + 1);
    return lo + this.latencyRng.float() * (hi - lo);
  }

  private checkInodes(path: string): void {
    if (this.files.size + this.current.dirs.size >= this.options.inodesMax) {
      this.scheduler.trace(`${this.options.label} fault ENOSPC inodes ${path}`);
      throw new DiskError('ENOSPC', path, `no free inodes (${this.options.inodesMax})`);
    }
  }

  private dirOp(op: DirOp): void {
    const ok = this.current.apply(op);
    if (!(ok)) throw new AssertionError(`${this.options.label}: directory operation failed after validation: ${describeDirOp(op)}`);
    const dirs = op.kind === 'rename' ? [op.fromDir, op.toDir] : [op.dir];
    this.dirLog.push({ op, unsyncedDirs: new Set(dirs) });
    if (this.dirLog.length > this.options.pendingDirOpsMax) this.dirLog[0].unsyncedDirs.clear();
    this.compact();
  }

  /** Fold the durable prefix of the log into the base namespace. */
  private compact(): void {
    let folded = 0;
    while (folded < this.dirLog.length && this.dirLog[folded].unsyncedDirs.size === 0) {
      const op = this.dirLog[folded].op;
      // base equals current as it was just before op, so op's preconditions hold.
      if (!(this.base.apply(op))) throw new AssertionError(`${this.options.label}: durable directory operation does not apply: ${describeDirOp(op)}`);
      folded++;
    }
    if (folded === 0) return;
    this.dirLog.splice(0, folded);
    this.collect();
  }

  /** Drop file inodes nobody can reach any more: no name now, none durable or pending, not open. */
  private collect(): void {
    const referenced = new Set<number>();
    for (const entry of this.dirLog) referenced.add(entry.op.ino);
    for (const [ino, f] of this.files) {
      if (f.linked || f.openCount > 0 || this.base.linked.has(ino) || referenced.has(ino)) continue;
      this.files.delete(ino);
    }
  }

  private setLinked(f: FileInode, linked: boolean): void {
    const wasLive = f.linked || f.openCount > 0;
    f.linked = linked;
    this.liveChanged(f, wasLive);
  }

  private liveChanged(f: FileInode, wasLive: boolean): void {
    const live = f.linked || f.openCount > 0;
    if (live && !wasLive) this.used += f.data.length;
    if (!live && wasLive) this.used -= f.data.length;
    if (!(this.used >= 0)) throw new AssertionError(`${this.options.label}: used bytes below zero`);
  }

  private recount(): void {
    let used = 0;
    for (const f of this.files.values()) if (f.linked || f.openCount > 0) used += f.data.length;
    this.used = used;
  }

  private invalidate(): void {
    this.epoch++;
    for (const { timer } of this.inflight.values()) timer.cancel();
    this.inflight.clear();
  }

  private pruneInflight(): void {
    for (const [id, op] of this.inflight) if (!op.domain.alive) this.inflight.delete(id);
  }

  /** Power loss for one file: durable image plus a seeded subset of the pending ops. */
  private losePending(f: FileInode, path: string): void {
    const n = f.pending.length;
    f.version++;
    if (n === 0) {
      f.data = f.durable.clone();
      return;
    }
    const rng = this.powerRng;
    const reordered = rng.chance(this.options.reorderProbability);
    let keep: boolean[];
    if (reordered) {
      keep = f.pending.map(() => rng.chance(0.5));
    } else {
      const k = rng.int(n + 1);
      keep = f.pending.map((_, i) => i < k);
    }
    let lastWrite = -1;
    for (let i = 0; i < n; i++) if (keep[i] && f.pending[i].kind === 'write') lastWrite = i;
    let tornAt: number | undefined;
    if (lastWrite >= 0 && rng.chance(this.options.tornWriteProbability)) {
      const op = f.pending[lastWrite] as Extract<PendingOp, { kind: 'write' }>;
      const end = op.positionBytes + op.data.length;
      const first = (Math.floor(op.positionBytes / SECTOR_BYTES) + 1) * SECTOR_BYTES;
      const last = Math.floor((end - 1) / SECTOR_BYTES) * SECTOR_BYTES;
      if (first <= last) tornAt = first + SECTOR_BYTES * rng.int((last - first) / SECTOR_BYTES + 1);
    }
    const image = f.durable;
    let kept = 0;
    for (let i = 0; i < n; i++) {
      if (!keep[i]) continue;
      kept++;
      const op = f.pending[i];
      if (i === lastWrite && tornAt !== undefined && op.kind === 'write') {
        assert(tornAt > op.positionBytes && tornAt < op.positionBytes + op.data.length, 'torn cut outside the write');
        image.write(op.positionBytes, op.data.subarray(0, tornAt - op.positionBytes));
      } else {
        applyPending(image, op);
      }
    }
    f.pending = [];
    f.data = image.clone();
    this.scheduler.trace(
      `${this.options.label} powerloss file ${path} kept ${kept}/${n}${reordered ? ' reordered' : ''}${tornAt !== undefined ? ` torn@${tornAt}` : ''} length ${image.length}`,
    );
  }
}

// ---------------------------------------------------------------- driver

/** One incarnation's view of a SimDiskMedium. */
export class SimDisk implements Disk {
  constructor(
    private readonly medium: SimDiskMedium,
    private readonly domain: Domain,
  ) {}

  open(path: string, options: OpenFileOptions = {}): Promise<FileHandle> {
    const m = this.medium;
    return m.submit(this.domain, 'open', path, () => {
      const r = m.resolve(m.parse(path), path);
      let f: FileInode;
      if (r.ino === undefined) {
        if (!options.create) throw new DiskError('ENOENT', path, 'open: no such file');
        f = m.createFile(r.parent as number, r.name, path);
      } else {
        if (options.create && options.exclusive) throw new DiskError('EEXIST', path, 'open: file exists');
        if (m.isDir(r.ino)) throw new DiskError('EISDIR', path, 'open: is a directory');
        f = m.file(r.ino);
      }
      m.changeOpen(f, 1);
      return new SimFileHandle(m, this.domain, f, path, options.readOnly === true);
    });
  }

  stat(path: string): Promise<DiskStat | undefined> {
    const m = this.medium;
    return m.submit(this.domain, 'stat', path, () => {
      let r: Resolved;
      try {
        r = m.resolve(m.parse(path), path);
      } catch (err) {
        if (err instanceof DiskError && err.code === 'ENOENT') return undefined;
        throw err;
      }
      if (r.ino === undefined) return undefined;
      if (m.isDir(r.ino)) return { sizeBytes: 0, isDirectory: true, changeTag: `dir:${r.ino}` };
      const f = m.file(r.ino);
      return { sizeBytes: f.data.length, isDirectory: false, changeTag: `${f.ino}:${f.version}:${f.data.length}` };
    });
  }

  readdir(path: string): Promise<string[]> {
    const m = this.medium;
    return m.submit(this.domain, 'readdir', path, () => {
      const r = m.resolve(m.parse(path), path);
      if (r.ino === undefined) throw new DiskError('ENOENT', path, 'readdir: no such directory');
      if (!m.isDir(r.ino)) throw new DiskError('ENOTDIR', path, 'readdir: not a directory');
      return m.readdirIno(r.ino);
    });
  }

  mkdir(path: string, options: { recursive?: boolean } = {}): Promise<void> {
    const m = this.medium;
    return m.submit(this.domain, 'mkdir', path, () => {
      const parts = m.parse(path);
      if (!options.recursive) {
        const r = m.resolve(parts, path);
        if (r.ino !== undefined) throw new DiskError('EEXIST', path, 'mkdir: exists');
        m.createDir(r.parent as number, r.name, path);
        return;
      }
      let dir = ROOT_INO;
      for (let i = 0; i < parts.length; i++) {
        const r = m.resolve(parts.slice(0, i + 1), path);
        if (r.ino === undefined) {
          dir = m.createDir(dir, parts[i], path);
        } else if (m.isDir(r.ino)) {
          dir = r.ino;
        } else {
          throw new DiskError(i === parts.length - 1 ? 'EEXIST' : 'ENOTDIR', path, 'mkdir: a file is in the way');
        }
      }
    });
  }

  rename(from: string, to: string): Promise<void> {
    const m = this.medium;
    return m.submit(this.domain, 'rename', `${from} -> ${to}`, () => {
      const fromParts = m.parse(from);
      const toParts = m.parse(to);
      if (fromParts.length === 0 || toParts.length === 0) throw new DiskError('EBUSY', from, 'rename: the root');
      const src = m.resolve(fromParts, from);
      if (src.ino === undefined) throw new DiskError('ENOENT', from, 'rename: no such file');
      const dst = m.resolve(toParts, to);
      const toDir = dst.parent as number;
      if (dst.ino === src.ino) return;
      const srcIsDir = m.isDir(src.ino);
      if (srcIsDir && m.isAncestorOrSelf(src.ino, toDir)) throw new DiskError('EINVAL', to, 'rename: a directory into itself');
      if (dst.ino !== undefined) {
        const dstIsDir = m.isDir(dst.ino);
        if (!srcIsDir && dstIsDir) throw new DiskError('EISDIR', to, 'rename: target is a directory');
        if (srcIsDir && !dstIsDir) throw new DiskError('ENOTDIR', to, 'rename: target is not a directory');
        if (dstIsDir && !m.dirEmpty(dst.ino)) throw new DiskError('ENOTEMPTY', to, 'rename: target directory not empty');
      }
      m.renameEntry(src.parent as number, src.name, toDir, dst.name, src.ino, dst.ino);
    });
  }

  unlink(path: string): Promise<void> {
    const m = this.medium;
    return m.submit(this.domain, 'unlink', path, () => {
      const r = m.resolve(m.parse(path), path);
      if (r.ino === undefined) throw new DiskError('ENOENT', path, 'unlink: no such file');
      if (m.isDir(r.ino)) throw new DiskError('EISDIR', path, 'unlink: is a directory');
      m.unlinkFile(r.parent as number, r.name, r.ino);
    });
  }

  syncDir(path: string): Promise<void> {
    const m = this.medium;
    return m.submit(this.domain, 'syncDir', path, () => {
      const r = m.resolve(m.parse(path), path);
      if (r.ino === undefined) throw new DiskError('ENOENT', path, 'syncDir: no such directory');
      if (!m.isDir(r.ino)) throw new DiskError('ENOTDIR', path, 'syncDir: not a directory');
      m.maybeFault('write', 'syncDir', path);
      m.syncDirIno(r.ino);
    });
  }

  space(path: string): Promise<DiskSpace> {
    const m = this.medium;
    return m.submit(this.domain, 'space', path, () => {
      const r = m.resolve(m.parse(path), path);
      if (r.ino === undefined) throw new DiskError('ENOENT', path, 'space: no such file or directory');
      return { totalBytes: m.options.capacityBytes, freeBytes: m.freeBytes() };
    });
  }
}

class SimFileHandle implements FileHandle {
  private closed = false;
  private readonly epoch: number;
  /** Appends complete in issue order, as the real driver serializes them. */
  private appendTailMs = 0;

  constructor(
    private readonly medium: SimDiskMedium,
    private readonly domain: Domain,
    private readonly inode: FileInode,
    readonly path: string,
    private readonly readOnly: boolean,
  ) {
    this.epoch = medium.epoch;
  }

  read(positionBytes: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const m = this.medium;
    return this.issue('read', false, () => {
      checkPosition(positionBytes, 'read position', this.path, Number.MAX_SAFE_INTEGER);
      checkPosition(length, 'read length', this.path, m.options.ioLengthMaxBytes);
      if (into && into.length < length) throw new RangeError(`read of ${length} bytes into a buffer of ${into.length}`);
      m.maybeFault('read', 'read', this.path);
      const got = this.inode.data.read(positionBytes, length);
      if (!into) return got;
      into.set(got);
      return into.subarray(0, got.length);
    });
  }

  async readv(positionBytes: number, targets: readonly Uint8Array[]): Promise<number> {
    // One read of the whole span (one fault draw), copied into the targets.
    let total = 0;
    for (const t of targets) total += t.length;
    const bytes = await this.read(positionBytes, total);
    let o = 0;
    for (const t of targets) {
      if (o >= bytes.length) break;
      const part = bytes.subarray(o, Math.min(bytes.length, o + t.length));
      t.set(part);
      o += part.length;
    }
    return bytes.length;
  }

  write(positionBytes: number, data: Uint8Array): Promise<void> {
    // Copied at issue: the caller may reuse its buffer once the call returns.
    return this.writeOwned(positionBytes, data.slice());
  }

  /** A write of bytes nobody else holds (kept as they are, no copy). */
  private writeOwned(positionBytes: number, copy: Uint8Array): Promise<void> {
    const m = this.medium;
    return this.issue('write', true, () => {
      checkPosition(positionBytes, 'write position', this.path, Number.MAX_SAFE_INTEGER - copy.length);
      checkPosition(copy.length, 'write length', this.path, m.options.ioLengthMaxBytes);
      m.maybeFault('write', 'write', this.path);
      m.mutate(this.inode, { kind: 'write', positionBytes, data: copy }, this.path, 'write');
    });
  }

  writev(positionBytes: number, chunks: readonly Uint8Array[]): Promise<void> {
    // One write of the concatenation: a power loss may tear it like any other.
    let total = 0;
    for (const c of chunks) total += c.length;
    const joined = new Uint8Array(total);
    let o = 0;
    for (const c of chunks) {
      joined.set(c, o);
      o += c.length;
    }
    return this.writeOwned(positionBytes, joined);
  }

  append(data: Uint8Array): Promise<number> {
    const m = this.medium;
    const copy = data.slice();
    return this.issue(
      'append',
      true,
      () => {
        checkPosition(copy.length, 'append length', this.path, m.options.ioLengthMaxBytes);
        m.maybeFault('write', 'append', this.path);
        const positionBytes = this.inode.data.length;
        m.mutate(this.inode, { kind: 'write', positionBytes, data: copy }, this.path, 'append');
        return positionBytes;
      },
      this.appendTailMs,
    );
  }

  sizeBytes(): Promise<number> {
    return this.issue('size', false, () => this.inode.data.length);
  }

  truncate(lengthBytes: number): Promise<void> {
    const m = this.medium;
    return this.issue('truncate', true, () => {
      checkPosition(lengthBytes, 'truncate length', this.path, Number.MAX_SAFE_INTEGER);
      m.maybeFault('write', 'truncate', this.path);
      m.mutate(this.inode, { kind: 'truncate', lengthBytes }, this.path, 'truncate');
    });
  }

  sync(): Promise<void> {
    const m = this.medium;
    return this.issue('sync', false, () => {
      m.maybeFault('write', 'sync', this.path);
      m.syncFile(this.inode);
    });
  }

  close(): Promise<void> {
    const dead = this.deadReason();
    if (dead) return Promise.reject(new DiskError('EBADF', this.path, `close: ${dead}`));
    this.closed = true;
    return this.medium.submit(this.domain, 'close', this.path, () => {
      this.medium.changeOpen(this.inode, -1);
    });
  }

  private deadReason(): string | undefined {
    if (this.closed) return 'handle is closed';
    if (!this.domain.alive) return `domain ${this.domain.name} is dead`;
    if (this.epoch !== this.medium.epoch) return 'handle predates a crash';
    return undefined;
  }

  private issue<T>(what: string, mutates: boolean, effect: () => T, notBeforeMs = 0): Promise<T> {
    const dead = this.deadReason();
    if (dead) return Promise.reject(new DiskError('EBADF', this.path, `${what}: ${dead}`));
    if (mutates && this.readOnly) return Promise.reject(new DiskError('EBADF', this.path, `${what}: handle is read-only`));
    const promise = this.medium.submit(this.domain, what, this.path, effect, notBeforeMs);
    if (what === 'append') this.appendTailMs = this.medium.lastScheduledAtMs;
    return promise;
  }
}
