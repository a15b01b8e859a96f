// fuse-native operation handlers over the engine. Every handler runs on the
// main thread: it validates, maps errors to negative errno and never throws into
// fuse-native (a throw there kills the process).

import { readFile } from 'node:fs/promises';
import type { FuseOps, FuseStat, FuseStatfs } from 'fuse-native';
import { ControlFiles, CONTROL_DIR, CONTROL_NAME } from '../../core/control.ts';
import type { Logger } from '../../core/drivers.ts';
import { ERRNO, FsError } from '../../core/errors.ts';
import type { FsEngine } from '../../core/fs/engine.ts';
import { PathFs, type Caller } from '../../core/fs/path-fs.ts';
import { S_IFMT, S_IFREG } from '../../core/fs/schema.ts';
import type { Stat } from '../../core/fs/types.ts';
import type { IoGate } from '../../core/gate.ts';
import { RepeatLimiter } from '../../core/repeat-limiter.ts';
import type { SpaceGuard } from '../../core/space-guard.ts';
import type { TraceOp } from '../../core/trace-format.ts';
import type { FuseRequest } from './mount.ts';
import type { TraceRecorder } from './trace-recorder.ts';

interface Handle {
  ino: number;
  /** Control files: content as of open, and whether it is open for writing. */
  control?: { path: string; bytes: Uint8Array; writing: boolean };
}

const O_ACCMODE = 3;
const O_RDONLY = 0;
const UID_UNCHANGED = 0xffffffff;
/** utimens times at or above this are UTIME_OMIT (the patched addon sends 2^64-1). */
const UTIME_OMIT_MS = 2 ** 63;

export interface FuseOpsOptions {
  engine: FsEngine;
  control: ControlFiles;
  gate: IoGate;
  logger: Logger;
  /** MIN_SPACE_FREE: refuses new data with ENOSPC while space is low. */
  space?: SpaceGuard;
  /** Log every operation at DEBUG >= this level. */
  traceLevel?: number;
  /** Who made the FUSE request being handled; valid only synchronously at handler entry. */
  caller?: () => Caller;
  /** The FUSE request being handled (what interrupt() names); valid only synchronously at handler entry. */
  request?: () => FuseRequest | undefined;
  /** Is a fatal signal pending on this thread (default: /proc/PID/status)? Tests pass their own. */
  callerKilled?: (pid: number) => Promise<boolean>;
  /** Record completed operations here (lessfs --trace); control files are not recorded. */
  trace?: TraceRecorder;
  /** The logger's level (DEBUG): per-operation lines above it are not even built. */
  logLevel?: number;
  /**
   * The patched addon's table of listed attributes (Fuse.attrHandoff): when
   * given, readdir answers with each name's attributes, the libfuse threads
   * answer the lookups that follow from them, and every change invalidates
   * them before it is answered.
   */
  attrHandoff?: AttrHandoff;
  /**
   * With attrHandoff: false keeps the table of listed attributes off (no
   * lookups or flushes answered by the libfuse threads; FUSE_ATTR_TABLE=off)
   * while its generations still serve readHandoff. Default true.
   */
  listAttributes?: boolean;
  /**
   * The patched addon's reads from the data file (Fuse.readHandoff): each
   * read this answers hands over where the next blocks of that file are in
   * the data file, and the libfuse threads answer reads of them with pread.
   * Needs attrHandoff (its generations); not used while tracing.
   */
  readHandoff?: ReadHandoff;
}

/** See FuseOpsOptions.readHandoff and scripts/build-fuse-native.mjs (seventh patch set). */
export interface ReadHandoff {
  /** The data file, opened read-only by the addon ('' closes it); 0, or the errno of the open. */
  open(path: string, blockBytes: number): number;
  /** Where blocks firstBlock.. of ino are now (FsEngine.extentsOf), with the file's size. */
  put(ino: number, firstBlock: number, sizeBytes: number, extents: Float64Array): void;
  /** Any file's content may have changed (FsEngine.onContentChange): nothing handed over before is used. */
  invalidate(): void;
  enable(on: boolean): void;
  stats(): { hits: number; puts: number };
}

/** Blocks handed over per read that reaches JS (32 MiB at BLKSIZE 128K; the addon takes 4096 at most). */
export const READ_HANDOFF_BLOCKS = 256;
/** The fewest handed over, after windows that went stale before they were read (see handOverReads). */
export const READ_HANDOFF_BLOCKS_MIN = 4;

/** The blocks of an inode last handed to the addon (LessfsFuseOps.handOverReads). */
interface HandedReads {
  from: number;
  /** End, exclusive. */
  to: number;
  /** Any of them readable by the addon. */
  any: boolean;
  /** All compressed (never readable there): not handed over again while the reader is in them. */
  compressed: boolean;
  /** The inode changed since (its window is stale). */
  changed: boolean;
  /** contentEpoch when handed over. */
  epoch: number;
}

/** See FuseOpsOptions.attrHandoff and scripts/build-fuse-native.mjs (sixth patch set). */
export interface AttrHandoff {
  /** Without ino: names may have changed, nothing in the table is used again. With ino: that inode's attributes changed. */
  invalidate(ino?: number): void;
  /**
   * path's attributes as of now (what was just made or changed: libfuse asks
   * for them next). emptyDir: path is a directory just made, so it has no
   * names: until a name of it goes, a lookup of a name not in the table is
   * answered ENOENT on the libfuse thread (its creates' lookups).
   */
  put(path: string, stat: FuseStat, emptyDir?: boolean): void;
  /**
   * A listing of dir (names[i] with stats[i]; a stat of mode 0 is not handed
   * over), filed as it is read: dir is whole in the table if every name was.
   */
  list(dir: string, names: string[], stats: FuseStat[]): void;
  enable(on: boolean, ttlMs: number): void;
  /** Handle fh is open on ino (ino 0: closed): a FLUSH of it is answered by the libfuse thread while ino is clean. */
  file(fh: number, ino: number): void;
  /** ino has (dirty) or no longer has writes queued or an error to report (see WriteBehind's onClean). */
  dirty(ino: number, dirty: boolean): void;
  stats(): { hits: number; puts: number; entries: number; absent: number; flushes: number };
}

/** Listed attributes answer lookups for this long at most (unless anything changes first). */
export const ATTR_HANDOFF_TTL_MS = 5000;
/** Directories of more names are listed without attributes (the addon's table holds 131,072). */
export const ATTR_HANDOFF_LIST_MAX = 131_072;
/** The stat of a listed name whose attributes are not handed off: no mode, inode unknown (as without attributes). */
const UNLISTED: FuseStat = { mode: 0, uid: 0, gid: 0, size: 0, dev: 0, nlink: 1, ino: 0xffffffff, rdev: 0, blksize: 0, blocks: 0, atime: 0, mtime: 0, ctime: 0 };

const ROOT_CALLER: Caller = { uid: 0, gid: 0 };
/** Interrupts remembered for waits that start after them (the oldest go first). */
const INTERRUPTED_KEPT = 1024;
/** How often an interrupted wait checks whether its caller is being killed. */
const KILL_POLL_MS = 100;

/**
 * Is a fatal signal pending on thread pid (the kernel marks SIGKILL pending
 * on every thread of a process a fatal signal ends)? A thread that is gone
 * waits for nothing. pid 0 (not known): taken as yes, as before.
 */
export async function callerBeingKilled(pid: number): Promise<boolean> {
  if (pid <= 0) return true;
  let status: string;
  try {
    status = await readFile(`/proc/${pid}/status`, 'utf8');
  } catch {
    return true;
  }
  for (const line of status.split('\n')) {
    if (line.startsWith('SigPnd:') || line.startsWith('ShdPnd:')) {
      if ((BigInt(`0x${line.slice(7).trim()}`) & SIGKILL_BIT) !== 0n) return true;
    }
  }
  return false;
}
const SIGKILL_BIT = 1n << 8n;

/** The answer of a wait given up because the kernel interrupted its request (the caller got a signal). */
const INTERRUPTED = new FsError('EINTR', 'interrupted while waiting');
/** getattr of a missing path: one shared error (only its errno is used). */
const NO_ENTRY = new FsError('ENOENT', 'no such file or directory');

export function toFuseStat(st: Stat): FuseStat {
  return {
    mode: st.mode,
    uid: st.uid,
    gid: st.gid,
    size: st.sizeBytes,
    dev: 0,
    nlink: st.nlink,
    ino: st.ino,
    rdev: st.rdev,
    blksize: st.blockSizeBytes,
    blocks: st.blocks512,
    atime: st.atimeMs,
    mtime: st.mtimeMs,
    ctime: st.ctimeMs,
  };
}

/** The negative errno of an error we expect (FsError, a full disk), else undefined. */
function knownErrno(err: unknown): number | undefined {
  if (err instanceof FsError) return -err.errno;
  return (err as { code?: string }).code === 'ENOSPC' ? -ERRNO.ENOSPC : undefined;
}

export function errnoOf(err: unknown, logger: Logger, op: string, path: string): number {
  const errno = knownErrno(err);
  if (errno !== undefined) return errno;
  logger.log(0, `${op} ${path}: unexpected error: ${(err as Error).stack ?? String(err)}`);
  return -ERRNO.EIO;
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(ERRNO).map(([name, n]) => [n, name]));

/** A FUSE result as a trace records it: 0, or the errno name. */
function traceResult(err: number): number | string {
  if (err >= 0) return 0;
  return ERRNO_NAMES.get(-err) ?? `errno ${-err}`;
}

/**
 * Write-behind: a write is acknowledged once copied and queued; the engine
 * stores it after. Measured on the prototype: +32% unique, +55% duplicate write
 * throughput (the FUSE round trip overlaps the hashing). Writes to one inode
 * apply in order; readers, getattr, truncate, fsync, flush and release of that
 * inode wait for its queue, and a failed store is reported by the next write,
 * flush, fsync or release (as close(2) reports deferred write errors).
 */
export class WriteBehind {
  private readonly tails = new Map<number, Promise<void>>();
  /** Highest end offset of queued writes per inode (getattr reports it as the size). */
  private readonly ends = new Map<number, number>();
  private readonly errors = new Map<number, unknown>();
  private readonly repeats = new RepeatLimiter(() => Date.now());
  private queuedBytes = 0;
  private roomWaiters: Array<() => void> = [];
  /** Set by close(): the filesystem is shutting down, and a write it could no longer store is refused, not acknowledged. */
  private closed = false;

  constructor(
    private readonly logger: Logger,
    private readonly queuedBytesMax = 32 << 20,
    /** A wait for room given up with EINTR when the request is interrupted (nothing queued yet). */
    private readonly interruptible: <T>(req: FuseRequest | undefined, p: Promise<T>) => Promise<T> = (_req, p) => p,
    /** The size getattr reports for ino may have changed (a write queued, or its store done or failed). */
    private readonly onChange: (ino: number) => void = () => undefined,
    /** ino became clean (nothing queued, no error to report: a flush has nothing to do) or stopped being clean. */
    private readonly onClean: (ino: number, clean: boolean) => void = () => undefined,
  ) {}

  /** Inodes with queued writes or an error not yet reported (what onClean was last told). */
  private readonly unclean = new Set<number>();

  /** Tell onClean when ino's state changed. */
  private cleanChanged(ino: number): void {
    const unclean = this.tails.has(ino) || this.errors.has(ino);
    if (unclean === this.unclean.has(ino)) return;
    if (unclean) this.unclean.add(ino);
    else this.unclean.delete(ino);
    this.onClean(ino, !unclean);
  }

  get busy(): boolean {
    return this.tails.size > 0;
  }

  /** Has ino writes queued and not yet stored? */
  pending(ino: number): boolean {
    return this.tails.has(ino);
  }

  /**
   * settled(ino, report) without a promise when nothing is queued for ino:
   * undefined once done (a deferred error is thrown at once).
   */
  settledNow(ino: number, report: boolean): Promise<void> | undefined {
    if (this.tails.has(ino)) return this.settled(ino, report);
    if (report) this.takeError(ino);
    return undefined;
  }

  /**
   * Queue a store; resolves when it is queued (or rejects with a deferred
   * error, or EINTR if req is interrupted while it waits for room). A write
   * reports a deferred error without clearing it: the kernel turns a failed
   * write after acknowledged ones into a short write, which callers may not
   * check, so the error must still fail the next fsync (or flush, release).
   */
  async submit(ino: number, store: () => Promise<unknown>, bytes: number, endBytes: number, req?: FuseRequest): Promise<void> {
    this.peekError(ino);
    this.refuseIfClosed(ino);
    while (this.queuedBytes >= this.queuedBytesMax) {
      await this.interruptible(req, new Promise<void>((r) => this.roomWaiters.push(r)));
      this.refuseIfClosed(ino);
    }
    this.queuedBytes += bytes;
    this.ends.set(ino, Math.max(this.ends.get(ino) ?? 0, endBytes));
    this.onChange(ino);
    const prev = this.tails.get(ino) ?? Promise.resolve();
    // The store starts in a later macrotask, so the reply (fuse-native answers
    // on process.nextTick) goes out before the hashing, not after it.
    const next = prev.then(() => new Promise<void>((r) => setImmediate(r))).then(store).then(
      () => undefined,
      (err: unknown) => {
        if (!this.errors.has(ino)) this.errors.set(ino, err);
        // One line per kind of error a minute (a full disk fails every queued
        // write of a copy, of every file).
        const code = (err as { code?: unknown }).code;
        const line = this.repeats.pass(`store ${String(code)}`, `write-behind store of inode ${ino} failed: ${(err as Error).message}`);
        if (line !== undefined) this.logger.log(1, line);
      },
    ).finally(() => {
      this.queuedBytes -= bytes;
      if (this.tails.get(ino) === next) {
        this.tails.delete(ino);
        this.ends.delete(ino);
        this.onChange(ino);
        this.cleanChanged(ino);
      }
      const w = this.roomWaiters;
      this.roomWaiters = [];
      for (const f of w) f();
    });
    this.tails.set(ino, next);
    this.cleanChanged(ino);
  }

  /** Wait until ino's queued writes are stored; with report, throw a deferred error. */
  pendingEnd(ino: number): number | undefined {
    return this.ends.get(ino);
  }

  async settled(ino: number, report = false): Promise<void> {
    const t = this.tails.get(ino);
    if (t) await t;
    if (report) this.takeError(ino);
  }

  async all(): Promise<void> {
    await Promise.all([...this.tails.values()]);
  }

  /**
   * Refuse every later write with EIO, then wait for the queued ones: once this
   * resolves nothing acknowledged is left to store. For the unmount, before the
   * engine closes (a write the kernel still sends must not be answered as done).
   */
  async close(): Promise<void> {
    this.closed = true;
    const w = this.roomWaiters;
    this.roomWaiters = [];
    for (const f of w) f();
    await this.all();
  }

  private refuseIfClosed(ino: number): void {
    if (this.closed) throw new FsError('EIO', `write to inode ${ino} refused: the filesystem is shutting down`);
  }

  /** Throw the deferred error of a failed store of ino, if any, and keep it. */
  peekError(ino: number): void {
    const err = this.errors.get(ino);
    if (err !== undefined) throw err;
  }

  /** Throw (once) the deferred error of a failed store of ino, if any. */
  takeError(ino: number): void {
    const err = this.errors.get(ino);
    if (err === undefined) return;
    this.errors.delete(ino);
    this.cleanChanged(ino);
    throw err;
  }
}

/**
 * Operations that change the tree: held while a live master's backlog is over
 * MAX_BACKLOG_SIZE, before they do anything, so an interrupt can end the wait.
 * write waits here too, before it is acknowledged: with write-behind the wait
 * would otherwise land in flush (close), which the kernel sends as a forced
 * request. flush and release never wait on the hold.
 */
const MUTATING_OPS: ReadonlySet<string> = new Set(['create', 'mknod', 'mkdir', 'symlink', 'link', 'unlink', 'rmdir', 'rename', 'truncate', 'ftruncate', 'chmod', 'chown', 'utimens', 'write']);

/** Operations that add a name (see LessfsFuseOps.failed). */
const NAME_ADDING_OPS: ReadonlySet<string> = new Set(['create', 'mknod', 'mkdir', 'symlink', 'link', 'rename']);

export class LessfsFuseOps {
  private readonly fs: PathFs;
  private readonly handles = new Map<number, Handle>();
  private nextFd = 1;
  private readonly engine: FsEngine;
  private readonly control: ControlFiles;
  private readonly gate: IoGate;
  private readonly logger: Logger;
  private readonly traceLevel: number;
  private readonly space: SpaceGuard | undefined;
  private readonly caller: () => Caller;
  private readonly request: () => FuseRequest | undefined;
  /** Interruptible waits in progress, by request: told of an interrupt, each starts watching its caller. */
  private readonly waits = new Map<number, () => void>();
  /** Requests interrupted before (or between) their waits. */
  private readonly interrupted = new Set<number>();
  private readonly callerKilled: (pid: number) => Promise<boolean>;
  private readonly repeats = new RepeatLimiter(() => Date.now());
  private readonly writes: WriteBehind;
  private readonly trace: TraceRecorder | undefined;
  /** Log each operation (traceLevel <= the logger's level). */
  private readonly logOps: boolean;
  private readonly attrHandoff: AttrHandoff | undefined;
  /** Listings and changes are handed to attrHandoff's table (FUSE_ATTR_TABLE). */
  private readonly listAttrs: boolean;
  private readonly readHandoff: ReadHandoff | undefined;
  /**
   * Per inode: the blocks last handed to readHandoff (to: end, exclusive),
   * whether any of them was servable there, and whether all were compressed
   * (never servable there: not handed over again while the reader is in them).
   */
  private readonly handedReads = new Map<number, HandedReads>();
  /** Bumped with FsEngine.onContentChange: every window handed over before is stale. */
  private contentEpoch = 0;

  constructor(options: FuseOpsOptions) {
    this.engine = options.engine;
    this.control = options.control;
    this.gate = options.gate;
    this.logger = options.logger;
    this.traceLevel = options.traceLevel ?? 5;
    this.space = options.space;
    this.caller = options.caller ?? (() => ROOT_CALLER);
    this.request = options.request ?? (() => undefined);
    this.callerKilled = options.callerKilled ?? callerBeingKilled;
    const handoff = options.attrHandoff;
    this.attrHandoff = handoff;
    this.listAttrs = handoff !== undefined && options.listAttributes !== false;
    this.readHandoff = handoff && !options.trace ? options.readHandoff : undefined;
    const invalidate = handoff
      ? (ino?: number): void => {
          handoff.invalidate(ino);
          const handed = ino === undefined ? undefined : this.handedReads.get(ino);
          if (handed) handed.changed = true;
        }
      : undefined;
    this.writes = new WriteBehind(this.logger, undefined, (req, p) => this.interruptible(req, p), invalidate, handoff ? (ino, clean) => handoff.dirty(ino, !clean) : undefined);
    if (handoff) {
      this.engine.onMetadataChange = invalidate;
      // A frozen filesystem answers nothing, from the table either.
      this.gate.onChange = (closed) => {
        handoff.enable(this.listAttrs && !closed, ATTR_HANDOFF_TTL_MS);
        this.readHandoff?.enable(!closed);
      };
      handoff.enable(this.listAttrs && !this.gate.closed, ATTR_HANDOFF_TTL_MS);
    }
    if (this.readHandoff) {
      const path = this.engine.dataFilePath;
      const err = this.readHandoff.open(path, this.engine.buffers.blockSizeBytes);
      if (err !== 0) {
        this.logger.log(0, `reads from the data file stay with lessfs: the addon cannot open ${path} (${ERRNO_NAMES.get(err) ?? `errno ${err}`})`);
        this.readHandoff = undefined;
      } else {
        const reads = this.readHandoff;
        this.engine.onContentChange = () => {
          reads.invalidate();
          this.contentEpoch++;
        };
        reads.enable(!this.gate.closed);
      }
    }
    this.fs = new PathFs(this.engine);
    this.trace = options.trace;
    this.logOps = options.logLevel === undefined || this.traceLevel <= options.logLevel;
  }

  /**
   * done, recording the completed operation first when tracing (skip: a
   * control file's operation, which is not recorded). `entry` sees the value
   * the operation returned (a new handle for open and create).
   */
  private traced<T>(skip: boolean, entry: (value: T | undefined) => TraceOp, done: (err: number, value?: T) => void): (err: number, value?: T) => void {
    const trace = this.trace;
    if (!trace || skip) return done;
    return (err, value) => {
      trace.record(entry(value), traceResult(err));
      done(err, value);
    };
  }

  /** Is fd a control file's handle (its operations are not traced)? */
  private controlHandle(fd: number): boolean {
    return this.handles.get(fd)?.control !== undefined;
  }

  /**
   * The write-behind store of one write. When tracing, the write is recorded
   * here, in the order the engine applies writes, with the store's result; its
   * fingerprints are taken before the engine owns the buffer, and after the
   * reply went out, so the hashing does not delay it.
   */
  private async storeWrite(fd: number, ino: number, pos: number, data: Uint8Array): Promise<void> {
    const trace = this.trace;
    if (!trace?.recording) {
      await this.engine.write(ino, pos, data);
      return;
    }
    const op: TraceOp = { op: 'write', fh: fd, off: pos, len: data.length, fp: trace.fingerprints(pos, data) };
    try {
      await this.engine.write(ino, pos, data);
    } catch (err) {
      trace.record(op, traceResult(knownErrno(err) ?? -ERRNO.EIO));
      throw err;
    }
    trace.record(op, 0);
  }

  /**
   * The kernel interrupted request seq: its caller got a signal (for SIGKILL
   * the kernel still waits for our answer). A wait registered for it (now or
   * later: the interrupt is remembered) checks whether the caller is being
   * killed (interruptible).
   */
  interrupt(seq: number): void {
    const wait = this.waits.get(seq);
    if (wait) {
      wait();
      return;
    }
    this.interrupted.add(seq);
    if (this.interrupted.size > INTERRUPTED_KEPT) this.interrupted.delete(this.interrupted.values().next().value as number);
  }

  /**
   * p, or EINTR once the caller of request req is being killed. The kernel
   * sends an interrupt for any signal, a stop (Ctrl-Z) or one the caller
   * handles included, and an EINTR there turns a write into a short write
   * that callers take for success: so an interrupt only starts watching the
   * caller (at once, then every KILL_POLL_MS: a SIGKILL after a stop sends
   * no second interrupt), and the wait gives up when a fatal signal is
   * pending on it. Only for waits that nothing has been done before, or
   * that change nothing by ending early: the backlog hold, the freeze gate,
   * room in the write-behind queue, queued writes that fsync, fsyncdir,
   * flush, read, truncate or utimens wait for (they stay queued). p must not
   * reject with an error someone else has to see (a given-up p is dropped).
   */
  private interruptible<T>(req: FuseRequest | undefined, p: Promise<T>): Promise<T> {
    if (req === undefined) return p;
    const seq = req.seq;
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      let poll: ReturnType<typeof setInterval> | undefined;
      const finish = (): void => {
        settled = true;
        this.waits.delete(seq);
        if (poll !== undefined) clearInterval(poll);
      };
      const check = (): void => {
        this.callerKilled(req.pid).then(
          (killed) => {
            if (!killed || settled) return;
            finish();
            const line = this.repeats.pass('interrupted', `request ${seq} of pid ${req.pid}: its caller is being killed, answered EINTR`);
            if (line !== undefined) this.logger.log(2, line);
            reject(INTERRUPTED);
          },
          (err: unknown) => this.logger.log(1, `checking whether pid ${req.pid} is being killed: ${(err as Error).message}`),
        );
      };
      const onInterrupt = (): void => {
        if (settled || poll !== undefined) return;
        check();
        poll = setInterval(check, KILL_POLL_MS);
      };
      this.waits.set(seq, onInterrupt);
      if (req.interrupted || this.interrupted.has(seq)) onInterrupt();
      p.then(
        (v) => {
          if (settled) return;
          finish();
          resolve(v);
        },
        (err: unknown) => {
          if (settled) return;
          finish();
          reject(err);
        },
      );
    });
  }

  /** Run an operation: wait at the gate, map errors, never throw. `fn` gets the FUSE request (for interruptible waits). */
  private run<T>(op: string, path: string, fn: (req: FuseRequest | undefined) => T | Promise<T>, done: (err: number, value?: T) => void): void {
    // No closures named per call here: the TypeScript loader (esbuild, keepNames)
    // names each one with Object.defineProperty, measured at ~1 µs per operation.
    // The hot handlers pass fuse-native's callback itself as `done` (no wrapper
    // closure per call; it takes (err, value) and ignores what it does not use).
    if (this.logOps) this.logger.log(this.traceLevel as 5, `fuse ${op} ${path}`);
    const req = this.request();
    const control = ControlFiles.isControl(path);
    const wait = control ? undefined : this.gate.pass();
    // MAX_BACKLOG_SIZE: every change waits while the slave is too far behind,
    // before it is done or acknowledged (the engine holds the stores of
    // writes acknowledged before the hold began). A signal to the caller ends
    // the wait with EINTR, having changed nothing.
    // Every change also waits while the open transaction holds half of what
    // one commit may carry (engine.metadataRoom).
    const mutating = !control && MUTATING_OPS.has(op);
    const throttle = mutating ? this.engine.writeThrottle?.() : undefined;
    const room = mutating ? this.engine.metadataRoom() : undefined;
    if (wait || throttle || room) {
      this.interruptible(req, Promise.all([wait, throttle, room])).then(
        () => this.go(op, path, fn, done, req),
        (err: unknown) => (err === INTERRUPTED ? done(-ERRNO.EINTR) : this.go(op, path, fn, done, req)),
      );
    } else {
      this.go(op, path, fn, done, req);
    }
  }

  private go<T>(op: string, path: string, fn: (req: FuseRequest | undefined) => T | Promise<T>, done: (err: number, value?: T) => void, req: FuseRequest | undefined): void {
    this.gate.enter();
    let result: T | Promise<T>;
    try {
      result = fn(req);
    } catch (err) {
      this.gate.leave();
      this.failed(op);
      done(errnoOf(err, this.logger, op, path));
      return;
    }
    if (result instanceof Promise) {
      result.then(
        (v) => {
          this.gate.leave();
          done(0, v);
        },
        (err: unknown) => {
          this.gate.leave();
          this.failed(op);
          done(errnoOf(err, this.logger, op, path));
        },
      );
    } else {
      this.gate.leave();
      done(0, result);
    }
  }

  /**
   * An operation failed. One that adds names may have added one it did not
   * hand over (it failed part way): the listed-attributes table is dropped,
   * so no lookup of that name is answered ENOENT from it.
   */
  private failed(op: string): void {
    if (this.attrHandoff && NAME_ADDING_OPS.has(op)) this.attrHandoff.invalidate();
  }

  private handle(fd: number): Handle {
    const h = this.handles.get(fd);
    if (!h) throw new FsError('EBADF', `no open file ${fd}`);
    return h;
  }

  private newHandle(h: Handle): number {
    let fd = this.nextFd;
    while (this.handles.has(fd)) fd = fd >= 0x7ffffffe ? 1 : fd + 1;
    this.nextFd = fd >= 0x7ffffffe ? 1 : fd + 1;
    this.handles.set(fd, h);
    if (!h.control) this.attrHandoff?.file(fd, h.ino);
    return fd;
  }

  private checkSpace(what: string): void {
    this.space?.check(what);
  }

  /** Attributes with acknowledged-but-unstored writes counted in the size (no waiting). */
  private inodeStat(ino: number): FuseStat {
    const st = toFuseStat(this.engine.getattr(ino));
    const end = this.writes.pendingEnd(ino);
    if (end !== undefined && end > st.size) st.size = end;
    return st;
  }

  /** Are writes held by MAX_BACKLOG_SIZE now (a live master whose slave is too far behind)? */
  private get writesHeld(): boolean {
    return this.engine.writesHeld?.() === true;
  }

  /**
   * release of an inode's handle: after its queued writes, reporting their
   * error. While the backlog holds writes it answers at once (a deferred error
   * that exists is still reported) and the engine's release follows the
   * queued writes: release must not wait on the hold.
   */
  private releaseInode(ino: number): Promise<void> | undefined {
    if (this.writes.pending(ino) && this.writesHeld) {
      void this.writes.settled(ino).then(() => this.engine.release(ino));
      this.writes.takeError(ino);
      return undefined;
    }
    let wait: Promise<void> | undefined;
    try {
      wait = this.writes.settledNow(ino, true);
    } catch (err) {
      this.engine.release(ino);
      throw err;
    }
    if (!wait) {
      this.engine.release(ino);
      return undefined;
    }
    return wait.finally(() => this.engine.release(ino));
  }

  /**
   * A write. `buf` belongs to fuse-native only until we call back (after this
   * returns or its promise settles). A write that covers no whole block, to an
   * inode with nothing queued, is applied at once when the engine can do so
   * without waiting (engine.writeNow: a copy into the dirty buffer; nothing to
   * hash). Otherwise it is copied and queued (see WriteBehind): whole blocks
   * into a recycled block buffer (the engine gives it back once the block is in
   * the data file), other sizes into a fresh one (allocUnsafeSlow: no
   * zero-fill, not a slice of Node's shared pool).
   */
  private writeOp(fd: number, buf: Buffer, len: number, pos: number, req: FuseRequest | undefined): number | Promise<number> {
    const h = this.handle(fd);
    if (h.control) {
      const path = h.control.path;
      return this.control.write(path, Buffer.from(buf.subarray(0, len))).then(() => len);
    }
    this.checkSpace('write');
    const ino = h.ino;
    const bs = this.engine.buffers.blockSizeBytes;
    if (len < bs && !this.writes.pending(ino) && !this.trace?.recording) {
      // A failed store's error comes back here, as from submit.
      this.writes.peekError(ino);
      if (this.engine.writeNow(ino, pos, buf.subarray(0, len))) return len;
    }
    const copy = len === bs ? this.engine.buffers.take() : Buffer.allocUnsafeSlow(len);
    buf.copy(copy, 0, 0, len);
    // Reply first, store after (see WriteBehind): the error of a failed
    // store comes back on the next write, and on the next fsync, flush or
    // release (it stays until one of those reports it).
    const submit = (): Promise<number> => this.writes.submit(ino, () => this.storeWrite(fd, ino, pos, copy), len, pos + len, req).then(() => len);
    // A full disk refuses the write itself when it is known to have no room.
    return this.engine.diskFull ? this.engine.roomForWrite(pos, len).then(submit) : submit();
  }

  /** `creates`: the operation makes `path` as a new name, so the control directory's name answers EEXIST; anything else done to it EPERM. */
  private refuseControl(path: string, what: string, creates = false): void {
    if (path === CONTROL_DIR) throw new FsError(creates ? 'EEXIST' : 'EPERM', `${CONTROL_DIR} is the control directory (${what})`);
    if (ControlFiles.isControl(path)) throw new FsError('EPERM', `${path} is a control file (${what})`);
  }

  private statOf(path: string): Stat | Promise<Stat> {
    return ControlFiles.isControl(path) ? this.control.getattr(path) : this.fs.stat(path);
  }

  private controlStat(path: string): FuseStat | Promise<FuseStat> {
    const st = this.control.getattr(path);
    return st instanceof Promise ? st.then(toFuseStat) : toFuseStat(st);
  }

  /**
   * Hand path's attributes as of now to the listed-attributes table (and its
   * parent directory's, with parent): libfuse asks for them right after a
   * create, mkdir, link, symlink or mknod and after each attribute change, and
   * the kernel asks for the parent's before the next change in it. Taken in
   * the turn the change ends in, so nothing falls between.
   */
  private handOver(path: string, parent = false, emptyDir = false): void {
    const handoff = this.attrHandoff;
    if (!handoff || !this.listAttrs || this.gate.closed) return;
    const ino = this.fs.tryResolve(path);
    // A name that is not handed over must not be taken for absent: the table is dropped.
    if (ino === undefined) handoff.invalidate();
    else handoff.put(path, this.inodeStat(ino), emptyDir);
    if (parent) this.handOverParent(path);
  }

  /** handOver of path's parent directory (not the control directory's). */
  private handOverParent(path: string): void {
    const cut = path.lastIndexOf('/');
    if (cut < 0) return;
    this.handOver(cut === 0 ? '/' : path.slice(0, cut));
  }

  /**
   * readdir's answer: names, and with the listed-attributes table each
   * name's attributes (the directory entries then carry their inode numbers
   * and types), filed in the table in the turn they are read: fuse-native
   * sends the answer itself on a later tick, after changes that may come
   * between, under generations those changes moved.
   */
  private listing(path: string): { names: string[]; stats?: FuseStat[] } {
    if (ControlFiles.isControl(path)) return { names: ['.', '..', ...this.control.readdir(path)] };
    const entries = this.fs.readdir(path);
    const names = ['.', '..'];
    if (path === '/') names.push(CONTROL_NAME);
    const head = names.length;
    for (const e of entries) names.push(e.name);
    if (!this.attrHandoff || !this.listAttrs || this.gate.closed || entries.length > ATTR_HANDOFF_LIST_MAX) return { names };
    const stats = new Array<FuseStat>(names.length).fill(UNLISTED, 0, head);
    for (let i = 0; i < entries.length; i++) stats[head + i] = this.inodeStat(entries[i].ino);
    this.attrHandoff.list(path, names, stats);
    return { names, stats };
  }

  ops(): FuseOps {
    return {
      init: (cb) => cb(0),
      access: (path, _mode, cb) => this.run('access', path, () => this.statOf(path), (e) => cb(e)),
      statfs: (path, cb) =>
        this.run('statfs', path, async (): Promise<FuseStatfs> => {
          const s = await this.engine.statfs();
          const clamp = (n: number): number => Math.max(0, Math.min(0xffffffff, Math.floor(n)));
          return {
            bsize: s.blockSizeBytes, frsize: s.blockSizeBytes, blocks: clamp(s.totalBlocks), bfree: clamp(s.freeBlocks),
            bavail: clamp(s.availBlocks), files: clamp(s.files + s.freeFiles), ffree: clamp(s.freeFiles), favail: clamp(s.freeFiles),
            fsid: 0, flag: 0, namemax: s.nameMaxBytes,
          };
        }, (e, v) => cb(e, v)),
      getattr: (path, cb) =>
        this.run('getattr', path, () => {
          if (ControlFiles.isControl(path)) return this.controlStat(path);
          // The kernel's lookup of a name about to be created lands here: a miss
          // builds no error object (one was 2-3% of the creates' CPU time).
          const ino = this.fs.tryResolve(path);
          if (ino === undefined) throw NO_ENTRY;
          return this.inodeStat(ino);
        }, cb),
      fgetattr: (path, fd, cb) =>
        this.run('fgetattr', path, () => {
          const h = this.handles.get(fd);
          if (h && !h.control) return this.inodeStat(h.ino);
          return ControlFiles.isControl(path) ? this.controlStat(path) : toFuseStat(this.fs.stat(path));
        }, (e, v) => cb(e, v)),
      readdir: (path, cb) =>
        this.run('readdir', path, () => this.listing(path), this.traced(ControlFiles.isControl(path), () => ({ op: 'readdir', path }), (e, v) => cb(e, v?.names, v?.stats))),
      create: (path, mode, cb) => {
        const who = this.caller();
        this.run('create', path, () => {
          this.refuseControl(path, 'create', true);
          this.checkSpace('create');
          const st = this.fs.create(path, (mode & 0o7777) | S_IFREG, who);
          this.engine.open(st.ino);
          this.handOver(path, true);
          return this.newHandle({ ino: st.ino });
        }, this.trace ? this.traced(ControlFiles.isControl(path), (fh) => ({ op: 'create', path, mode, fh }), cb) : cb);
      },
      mknod: (path, mode, dev, cb) => {
        const who = this.caller();
        this.run('mknod', path, () => {
          this.refuseControl(path, 'mknod', true);
          this.checkSpace('mknod');
          this.fs.mknod(path, (mode & S_IFMT) === 0 ? mode | S_IFREG : mode, dev, who);
          this.handOver(path, true);
        }, this.traced(ControlFiles.isControl(path), () => ({ op: 'mknod', path, mode }), (e) => cb(e)));
      },
      open: (path, flags, cb) =>
        this.run('open', path, () => {
          if (ControlFiles.isControl(path)) {
            const writing = (flags & O_ACCMODE) !== O_RDONLY;
            const bytes = this.control.open(path, writing);
            if (bytes instanceof Uint8Array) return this.newHandle({ ino: 0, control: { path, bytes, writing } });
            return bytes.then((b) => this.newHandle({ ino: 0, control: { path, bytes: b, writing } }));
          }
          const ino = this.fs.resolve(path);
          if (this.engine.options.replica && (flags & O_ACCMODE) !== O_RDONLY) {
            throw new FsError('EPERM', 'read-only filesystem: a replication slave changes only through its master');
          }
          this.engine.open(ino);
          return this.newHandle({ ino });
        }, this.traced(ControlFiles.isControl(path), (fh) => ({ op: 'open', path, flags, fh }), (e, v) => cb(e, v))),
      release: (path, fd, cb) =>
        this.run('release', path, () => {
          const h = this.handles.get(fd);
          this.handles.delete(fd);
          if (h && !h.control) {
            this.attrHandoff?.file(fd, 0);
            return this.releaseInode(h.ino);
          }
        }, this.trace ? this.traced(this.controlHandle(fd), () => ({ op: 'release', fh: fd }), cb) : cb),
      read: (path, fd, buf, len, pos, cb) =>
        this.run('read', path, async (req) => {
          const h = this.handle(fd);
          if (h.control) {
            const data = h.control.bytes.subarray(Math.min(pos, h.control.bytes.length), Math.min(pos + len, h.control.bytes.length));
            buf.set(data, 0);
            return data.length;
          }
          if (this.writes.busy) await this.interruptible(req, this.writes.settled(h.ino));
          // Blocks the libfuse threads read themselves are not fetched ahead here too.
          const n = await this.engine.readInto(h.ino, pos, buf.subarray(0, len), this.liveWindow(h.ino) === undefined);
          if (this.readHandoff) this.handOverReads(h.ino, pos, pos + n);
          return n;
        }, this.traced(this.controlHandle(fd), () => ({ op: 'read', fh: fd, off: pos, len }), (e, n) => cb(e < 0 ? e : (n ?? 0)))),
      write: (path, fd, buf, len, pos, cb) =>
        this.run('write', path, (req) => this.writeOp(fd, buf, len, pos, req), (e, n) => cb(e < 0 ? e : (n ?? 0))),
      truncate: (path, size, cb) =>
        this.run('truncate', path, async (req) => {
          if (ControlFiles.isControl(path)) return this.control.truncate(path);
          const ino = this.fs.resolve(path);
          await this.settledReporting(ino, req);
          await this.engine.truncate(ino, size);
          this.handOver(path);
        }, this.traced(ControlFiles.isControl(path), () => ({ op: 'truncate', path, size }), (e) => cb(e))),
      ftruncate: (path, fd, size, cb) =>
        this.run('ftruncate', path, async (req) => {
          const h = this.handle(fd);
          if (h.control) return this.control.truncate(h.control.path);
          await this.settledReporting(h.ino, req);
          await this.engine.truncate(h.ino, size);
          this.handOver(path);
        }, this.traced(this.controlHandle(fd), () => ({ op: 'ftruncate', fh: fd, size }), (e) => cb(e))),
      unlink: (path, cb) => this.run('unlink', path, () => { this.refuseControl(path, 'unlink'); this.fs.unlink(path); this.handOverParent(path); }, this.traced(ControlFiles.isControl(path), () => ({ op: 'unlink', path }), (e) => cb(e))),
      rmdir: (path, cb) => this.run('rmdir', path, () => { this.refuseControl(path, 'rmdir'); this.fs.rmdir(path); this.handOverParent(path); }, this.traced(ControlFiles.isControl(path), () => ({ op: 'rmdir', path }), (e) => cb(e))),
      mkdir: (path, mode, cb) => {
        const who = this.caller();
        this.run('mkdir', path, () => { this.refuseControl(path, 'mkdir', true); this.checkSpace('mkdir'); this.fs.mkdir(path, mode & 0o7777, who); this.handOver(path, true, true); }, this.traced(ControlFiles.isControl(path), () => ({ op: 'mkdir', path, mode }), (e) => cb(e)));
      },
      rename: (src, dest, cb) =>
        this.run('rename', src, () => {
          this.refuseControl(src, 'rename');
          this.refuseControl(dest, 'rename');
          this.fs.rename(src, dest);
          this.handOverParent(src);
          this.handOver(dest, true);
        }, this.traced(ControlFiles.isControl(src) || ControlFiles.isControl(dest), () => ({ op: 'rename', path: src, to: dest }), (e) => cb(e))),
      link: (src, dest, cb) =>
        this.run('link', dest, () => {
          this.refuseControl(src, 'link');
          this.refuseControl(dest, 'link', true);
          this.fs.link(src, dest);
          this.handOver(dest, true);
        }, this.traced(ControlFiles.isControl(src) || ControlFiles.isControl(dest), () => ({ op: 'link', path: src, to: dest }), (e) => cb(e))),
      symlink: (target, path, cb) => {
        const who = this.caller();
        this.run('symlink', path, () => { this.refuseControl(path, 'symlink', true); this.checkSpace('symlink'); this.fs.symlink(target, path, who); this.handOver(path, true); }, this.traced(ControlFiles.isControl(path), () => ({ op: 'symlink', target, path }), (e) => cb(e)));
      },
      readlink: (path, cb) => this.run('readlink', path, () => this.fs.readlink(path), this.traced(ControlFiles.isControl(path), () => ({ op: 'readlink', path }), (e, v) => cb(e, v))),
      chmod: (path, mode, cb) =>
        this.run('chmod', path, async () => {
          this.refuseControl(path, 'chmod');
          await this.fs.setattr(path, { mode: mode & 0o7777 });
          this.handOver(path);
        }, this.traced(ControlFiles.isControl(path), () => ({ op: 'chmod', path, mode }), (e) => cb(e))),
      chown: (path, uid, gid, cb) =>
        this.run('chown', path, async () => {
          this.refuseControl(path, 'chown');
          await this.fs.setattr(path, {
            uid: uid === UID_UNCHANGED || uid === -1 ? undefined : uid,
            gid: gid === UID_UNCHANGED || gid === -1 ? undefined : gid,
          });
          this.handOver(path);
        }, this.traced(ControlFiles.isControl(path), () => ({ op: 'chown', path, uid, gid }), (e) => cb(e))),
      utimens: (path, atime, mtime, cb) =>
        this.run('utimens', path, async (req) => {
          this.refuseControl(path, 'utimens');
          // 2^64-1 is UTIME_OMIT (see scripts/build-fuse-native.mjs): leave that time alone.
          const given = (ms: number): number | undefined => (ms >= UTIME_OMIT_MS ? undefined : ms);
          // Writes acknowledged before this call are older: their stores (which set
          // mtime to now) must not land after the times set here (cp -a, touch -d).
          const ino = this.fs.resolve(path);
          await this.interruptible(req, this.writes.settled(ino));
          await this.engine.setattr(ino, { atimeMs: given(atime), mtimeMs: given(mtime) });
          this.handOver(path);
        }, this.traced(ControlFiles.isControl(path), () => ({ op: 'utimens', path }), (e) => cb(e))),
      flush: (path, fd, cb) =>
        this.run('flush', path, (req) => {
          const h = this.handles.get(fd);
          if (h && !h.control) return this.flushInode(h.ino, req);
        }, cb),
      fsync: (path, _dataSync, fd, cb) =>
        this.run('fsync', path, async (req) => {
          const h = this.handles.get(fd);
          if (h?.control) return;
          const ino = h?.ino ?? this.fs.resolve(path);
          await this.settledReporting(ino, req);
          await this.engine.fsync(ino);
        }, this.traced(this.controlHandle(fd) || ControlFiles.isControl(path), this.handles.has(fd) ? () => ({ op: 'fsync', fh: fd }) : () => ({ op: 'fsync', path }), (e) => cb(e))),
      fsyncdir: (path, _dataSync, _fd, cb) =>
        this.run('fsyncdir', path, async (req) => {
          await this.interruptible(req, this.writes.all());
          await this.engine.fsync();
        }, this.traced(ControlFiles.isControl(path), () => ({ op: 'fsyncdir', path }), (e) => cb(e))),
      // ENOSYS makes the kernel answer EOPNOTSUPP (ENOTSUP) itself from then on
      // instead of asking. For getxattr that matters on every new file: the
      // kernel asks for security.capability before the first write to each
      // inode (one round trip per file created; ENOTSUP is not remembered).
      // After ENOSYS the kernel answers ENODATA for POSIX ACL names itself, so
      // GNU ls asks for every file, but without a round trip (measured:
      // `ls -l` of 10,000 files no slower; creates lose the extra getxattr).
      setxattr: (path, _name, _value, _position, _flags, cb) => this.run('setxattr', path, () => { throw new FsError('ENOSYS', 'extended attributes are not supported'); }, (e) => cb(e)),
      getxattr: (path, _name, _position, cb) => this.run('getxattr', path, () => { throw new FsError('ENOSYS', 'extended attributes are not supported'); }, (e) => cb(e)),
      listxattr: (path, cb) => this.run('listxattr', path, () => { throw new FsError('ENOSYS', 'extended attributes are not supported'); }, (e, v) => cb(e, v as string[] | undefined)),
      removexattr: (path, _name, cb) => this.run('removexattr', path, () => { throw new FsError('ENOSYS', 'extended attributes are not supported'); }, (e) => cb(e)),
    };
  }

  /** Wait (interruptibly) for ino's queued writes, then throw a deferred store error. */
  private async settledReporting(ino: number, req: FuseRequest | undefined): Promise<void> {
    if (this.writes.pending(ino)) await this.interruptible(req, this.writes.settled(ino));
    this.writes.takeError(ino);
  }

  /**
   * flush (each close(2)): a deferred store error is reported, and queued
   * writes are waited for, so close reports their errors too, unless the
   * backlog holds them (MAX_BACKLOG_SIZE): the kernel sends flush as a forced
   * request, which a signal cannot end, so it answers at once and the writes
   * stay queued, stored when the hold lifts (an error then goes to the log
   * and to the inode's next write, fsync or flush).
   */
  private flushInode(ino: number, req: FuseRequest | undefined): Promise<void> | undefined {
    if (!this.writes.pending(ino) || this.writesHeld) {
      this.writes.takeError(ino);
      return undefined;
    }
    return this.settledReporting(ino, req);
  }

  /**
   * After a read of ino that reached JS, ending at endBytes: hand over where
   * the next READ_HANDOFF_BLOCKS blocks are in the data file, so the libfuse
   * threads answer the reads that follow. Not while writes are queued for ino
   * (the addon would not use it), nor again for a window of compressed
   * blocks only (a compressed file) while the reader is in it.
   */
  private handOverReads(ino: number, startBytes: number, endBytes: number): void {
    const handoff = this.readHandoff;
    if (!handoff || this.gate.closed || this.writes.pending(ino)) return;
    const bs = this.engine.buffers.blockSizeBytes;
    const from = Math.floor(endBytes / bs);
    const last = this.handedReads.get(ino);
    if (last?.compressed && from >= last.from && from < last.to) return;
    // A read that reached JS inside the last window after the file changed
    // (or a replicated transaction moved everything) means the window went
    // stale before it was read: hand over less next time, so files that
    // change under their readers do not pay for windows nobody reads; double
    // it again for each window read to its end. (A read inside a window that
    // did not change reached JS before the window was handed over: the
    // kernel had it in flight.)
    let blocks = READ_HANDOFF_BLOCKS;
    if (last?.any) {
      const size = last.to - last.from;
      const b = Math.floor(startBytes / bs) - last.from;
      if (b >= size - 1) blocks = Math.min(READ_HANDOFF_BLOCKS, size * 2);
      else if (b >= 0 && (last.changed || last.epoch !== this.contentEpoch)) blocks = Math.max(READ_HANDOFF_BLOCKS_MIN, size >> 2);
      else blocks = size;
    }
    const { sizeBytes, extents } = this.engine.extentsOf(ino, from, blocks);
    // Read to its end (a small file, most often): nothing to hand over.
    if (extents.length === 0) return;
    let any = false;
    let compressed = true;
    for (let i = 1; i < extents.length; i += 2) {
      any ||= extents[i] >= 0;
      compressed &&= extents[i] === -2;
    }
    handoff.put(ino, from, sizeBytes, extents);
    this.handedReads.delete(ino);
    this.handedReads.set(ino, { from, to: from + blocks, any, compressed, changed: false, epoch: this.contentEpoch });
    if (this.handedReads.size > 1024) this.handedReads.delete(this.handedReads.keys().next().value as number);
  }

  /**
   * ino's window handed over, if the addon can still read from it (some
   * blocks readable, nothing changed since): then JS does not fetch ahead
   * of its own reads either, the addon reads those blocks.
   */
  private liveWindow(ino: number): HandedReads | undefined {
    const last = this.handedReads.get(ino);
    return last && last.any && !last.changed && last.epoch === this.contentEpoch ? last : undefined;
  }

  /** Wait until every acknowledged write is stored in the engine. */
  drainWrites(): Promise<void> {
    return this.writes.all();
  }

  /** For the unmount: refuse later writes (EIO), then wait until every acknowledged one is stored. */
  closeWrites(): Promise<void> {
    if (this.attrHandoff && this.listAttrs) {
      const t = this.attrHandoff.stats();
      this.logger.log(1, `answered by the libfuse threads from listed attributes: ${t.hits} lookups, ${t.absent} absent names, ${t.flushes} flushes (${t.puts} attributes handed over)`);
    }
    if (this.readHandoff) {
      const { hits, puts } = this.readHandoff.stats();
      this.logger.log(1, `reads answered from the data file by the libfuse threads: ${hits} (${puts} windows handed over)`);
      this.readHandoff.enable(false);
      this.readHandoff.open('', 0);
    }
    return this.writes.close();
  }

  /** Open handles (tests, diagnostics). */
  get openHandles(): number {
    return this.handles.size;
  }
}
