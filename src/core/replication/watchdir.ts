// A watchdir slave (REPLICATION_WATCHDIR): polls the directory for
// replog.dta-SEQUENCE files, applies them strictly in sequence, each in one
// commit, and renames each to replog.dta-SEQUENCE-processed.
//
// Files under other names (a copy in progress under a temporary name, .rdy
// markers, -processed files) are not looked at. A file that fails a check is
// refused with one log line naming it and what was expected, nothing of it is
// applied, and it stays where it is: it is looked at again only when it
// changes (a copy that was still running, a good copy put in its place; see
// DiskStat.changeTag), so the log is not flooded.
//
// A file that fails for want of space (a block write or the commit: ENOSPC)
// is not refused: nothing of it was kept (SlaveApplier.applyFile drops it),
// it stays under its name, and it is applied again, without a restart, once
// the disks have room for it (see SpaceWait); meanwhile a statfs a poll.
//
// A file that fails with an I/O error of this slave's own disks (a block
// write, the data file's truncate, a store commit: EIO and the like, not the
// file's fault) is dropped whole the same way and tried again after a wait
// that doubles from IO_RETRY_FIRST_MS up to IO_RETRY_MAX_MS (room-wait.ts; see IoWait). A
// failure the engine cannot recover from in place (a failed fsync of the data
// file stops it: the kernel may have dropped the pages; a drop that failed)
// stops applying until the slave is remounted, said once in the log and in
// the status.

import { BUGGIFY_OFF, type Buggify } from '../buggify.ts';
import type { Clock, Disk, Logger, TimerHandle } from '../drivers.ts';
import { DiskError, FsError } from '../errors.ts';
import { joinPath } from '../fs/engine.ts';
import { RepeatLimiter } from '../repeat-limiter.ts';
import { StoreError } from '../store-rules.ts';
import { ReplogError } from './errors.ts';
import { parseRotatedLogName, processedLogName } from './master-log.ts';
import { IO_RETRY_MAX_MS, ioRetryWaitMs, megabytes, RESUME_ROOM_BYTES, RoomWait } from './room-wait.ts';
import { ROTATED_FILE_CHUNK_BYTES, rotatedFileSource } from './rotated-file.ts';
import { FileNotAppliedError, type SlaveApplier } from './slave.ts';

export const WATCHDIR_POLL_MS = 1000;

export interface WatchdirDrivers {
  disk: Disk;
  clock: Clock;
  logger: Logger;
}

export interface WatchdirStats {
  filesApplied: number;
  duplicatesSkipped: number;
  filesRefused: number;
  /** Files that failed for want of space (applied again once there is room). */
  stalls: number;
  /** Attempts that failed with an I/O error of this slave's disks (tried again after a wait). */
  ioErrors: number;
  lastError: string | undefined;
  lastAppliedFile: string | undefined;
}

/**
 * A full disk kept `file` from being applied. It is applied again once the
 * room rule of RoomWait holds (the engine no longer takes the disk to be
 * full, or 1 MiB more is free than after the drop) and the data disk's free
 * space with the data file's free extents holds the file's new blocks (and
 * RESUME_ROOM_BYTES): less would fill the disk again at about the same
 * place, and writing the file's blocks again for nothing every poll is the
 * effort this bounds.
 */
/**
 * An I/O error of this slave's disks (not ENOSPC) kept `file` from being
 * applied; nothing of it was kept. It is tried again at `retryAtMs`.
 */
interface IoWait {
  file: string;
  /** Attempts at it that failed so, in a row. */
  failures: number;
  sinceMs: number;
  retryAtMs: number;
  /** The last failure's cause. */
  cause: string;
}

interface SpaceWait {
  file: string;
  /** The full disk, for the status. */
  reason: string;
  /** Undefined until the room after the drop is measured (a failed statfs is measured again next poll). */
  wait: RoomWait | undefined;
  needBytes: number;
}

export class WatchdirSlave {
  private timer: TimerHandle | undefined;
  private running: Promise<void> | undefined;
  private stopped = true;
  private paused = false;
  /** Refusals already logged: file name -> its changeTag when refused. */
  private readonly refused = new Map<string, string>();
  readonly stats: WatchdirStats = { filesApplied: 0, duplicatesSkipped: 0, filesRefused: 0, stalls: 0, ioErrors: 0, lastError: undefined, lastAppliedFile: undefined };
  /** Set while a full disk keeps the next file from being applied. */
  private space: SpaceWait | undefined;
  /** Set while the next file waits to be tried again after an I/O error. */
  private io: IoWait | undefined;
  /** Set once the engine cannot apply files until the slave is remounted: why. */
  private halted: string | undefined;
  /** Log lines of a disk that fills again and again (one a minute). */
  private readonly repeats: RepeatLimiter;

  constructor(
    private readonly drivers: WatchdirDrivers,
    private readonly applier: SlaveApplier,
    private readonly dir: string,
    private readonly pollMs = WATCHDIR_POLL_MS,
    private readonly buggify: Buggify = BUGGIFY_OFF,
    /** Reads of a rotated file are at most this large; a file this small is read in one. */
    private readonly readChunkBytes = ROTATED_FILE_CHUNK_BYTES,
  ) {
    this.repeats = new RepeatLimiter(() => drivers.clock.nowMs());
  }

  /** The full disk that keeps the next file from being applied, or undefined. */
  get stalledBy(): string | undefined {
    if (this.halted !== undefined) return `remount this slave: ${this.halted}`;
    const io = this.io;
    if (io) {
      const now = this.drivers.clock.nowMs();
      const over = io.failures > 1 ? ` over ${Math.round((now - io.sinceMs) / 60_000)} min` : '';
      return `an I/O error: ${io.file} is tried again in ${Math.max(0, Math.ceil((io.retryAtMs - now) / 1000))} s (${io.failures} attempt${io.failures > 1 ? 's' : ''} failed${over}: ${io.cause})`;
    }
    const sw = this.space;
    return sw && `${sw.reason}: ${sw.file} waits for room${sw.wait ? ` (${sw.wait.wanted(false)}, and ${megabytes(sw.needBytes)} for its blocks)` : ''}`;
  }

  start(): void {
    this.stopped = false;
    this.arm(0);
  }

  /** Stop polling; waits for a file being applied. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

  get enabled(): boolean {
    return !this.paused;
  }

  /** REPLICATION_ENABLED / replication/enabled: off stops applying (files wait). */
  setEnabled(on: boolean): void {
    this.paused = !on;
    this.drivers.logger.log(1, `replication ${on ? 'enabled: applying' : 'disabled: not applying'} files from ${this.dir}`);
    if (on) this.arm(0);
  }

  /** True while files in sequence wait to be applied (or one is being applied). */
  backlog = false;

  private arm(delayMs: number): void {
    if (this.stopped) return;
    this.timer?.cancel();
    this.timer = this.drivers.clock.setTimer(delayMs, () => {
      this.timer = undefined;
      if (this.stopped || this.running) return;
      this.running = this.scanOnce().finally(() => {
        this.running = undefined;
        this.arm(this.pollMs);
      });
    });
  }

  /**
   * Apply every file that is next in sequence. Scans never overlap: one
   * asked for while another runs (the poll timer's, one that turning
   * replication on starts, a caller's) runs after it. Two at once applied the
   * same file twice and left the slave refusing every later one (found by
   * lessfs-sim with replication toggles, batch swarm seed 20).
   */
  scanOnce(): Promise<void> {
    const run = (this.scanChain ?? Promise.resolve()).then(() => this.scanFiles());
    const chain = run.catch(() => undefined);
    this.scanChain = chain;
    void chain.then(() => {
      if (this.scanChain === chain) this.scanChain = undefined;
    });
    return run;
  }

  private scanChain: Promise<void> | undefined;

  /** This slave applies no more files until it is remounted (its engine stopped, or dropping a half-applied file failed). */
  get remountNeeded(): boolean {
    return this.halted !== undefined;
  }

  /** A scan runs or waits to run. */
  get scanning(): boolean {
    return this.scanChain !== undefined || this.running !== undefined;
  }

  private async scanFiles(): Promise<void> {
    if (this.paused || this.halted !== undefined) return;
    // Files still wait (backlog stays set) while the disk has no room for the next.
    if (this.space && !(await this.roomAgain(this.space))) return;
    if (this.io && this.drivers.clock.nowMs() < this.io.retryAtMs) return;
    const { disk, logger } = this.drivers;
    let names: string[];
    try {
      names = await disk.readdir(this.dir);
    } catch (err) {
      this.note(`(dir)`, '', `cannot read REPLICATION_WATCHDIR ${this.dir}: ${(err as Error).message}`);
      return;
    }
    const files = names
      .map((name) => ({ name, sequence: parseRotatedLogName(name) }))
      .filter((f): f is { name: string; sequence: number } => f.sequence !== undefined)
      .sort((a, b) => a.sequence - b.sequence);
    this.backlog = false;
    for (const f of files) {
      if (this.stopped || this.paused) return;
      const pos = this.applier.position();
      if (pos.sequence > 0 && f.sequence > pos.sequence + 1) {
        this.backlog = true;
        this.note(f.name, 'gap', `${f.name} waits: sequence gap, this slave applied replog.dta-${pos.sequence} last and needs replog.dta-${pos.sequence + 1} next`);
        return;
      }
      const path = joinPath(this.dir, f.name);
      const st = await disk.stat(path);
      if (!st || st.isDirectory) continue;
      // Judged again when the file or this slave's position changed.
      // A bad copy of a file applied already holds nothing up (only the next
      // file does), and its verdict does not depend on the position.
      const stale = pos.sequence > 0 && f.sequence <= pos.sequence;
      const sizeKey = stale ? st.changeTag : `${st.changeTag}@${pos.sequence}/${pos.txn}`;
      if (this.refused.get(f.name) === sizeKey) {
        if (stale) continue;
        return; // refused as it is; wait until it changes
      }
      this.backlog = true;
      let outcome;
      try {
        const handle = await disk.open(path, { readOnly: true });
        let open = true;
        const close = async (): Promise<void> => {
          if (!open) return;
          open = false;
          await handle.close();
        };
        try {
          const source = await rotatedFileSource(handle, st.sizeBytes, this.readChunkBytes);
          // A file of one read is closed before it is applied; a larger one is read in chunks while checked and applied.
          if (source.whole !== undefined) await close();
          outcome = await this.applier.applyFile(source, f.name, f.sequence);
        } finally {
          await close();
        }
      } catch (err) {
        if (err instanceof FileNotAppliedError) {
          if (err.dropped && err.code === 'ECHANGED') {
            // Read again at the next poll, changed or not: it was not refused for what it holds.
            this.io = undefined;
            this.note(f.name, `${sizeKey}#changed`, `${err.message}; will look again at the next poll`);
            return;
          }
          if (!err.dropped || this.applier.engine.stopped) {
            this.halt(f.name, err);
            return;
          }
          if (err.code === 'ENOSPC') {
            this.io = undefined;
            await this.stopForSpace(f.name, err);
            return;
          }
          if (isOwnIoError(err.cause)) {
            this.ioFailed(f.name, err);
            return;
          }
        }
        this.io = undefined;
        this.stats.filesRefused++;
        // A FileNotAppliedError says itself that nothing of the file was kept (or that it could not be dropped).
        const retry = err instanceof ReplogError && err.code === 'ETRUNCATED' ? '; will look again when it changes' : err instanceof FileNotAppliedError ? '' : '; nothing applied from it';
        this.note(f.name, sizeKey, `refusing ${f.name}: ${(err as Error).message}${retry}`);
        if (stale) continue;
        return;
      }
      this.refused.delete(f.name);
      const io = this.io;
      this.io = undefined;
      if (io?.file === f.name) logger.log(0, `applied ${f.name} after ${io.failures} attempt${io.failures > 1 ? 's' : ''} failed with I/O errors`);
      if (outcome.kind === 'duplicate') {
        this.stats.duplicatesSkipped++;
        logger.log(1, `skipping ${f.name}: already applied (this slave is at replog.dta-${outcome.appliedSequence}, txn ${outcome.appliedTxn})`);
      } else {
        this.stats.filesApplied++;
        this.stats.lastAppliedFile = f.name;
        logger.log(1, `applied ${f.name}: ${outcome.transactions} transactions (txn ${outcome.lastTxn} now), ${outcome.bytes} bytes`);
      }
      try {
        if (this.buggify.fires('watchdir-rename-fails')) throw new DiskError('EIO', path, 'rename failed (buggify)');
        await disk.rename(path, joinPath(this.dir, processedLogName(f.sequence)));
        await disk.syncDir(this.dir);
      } catch (err) {
        // Applied (and recorded) already: a later scan sees it as a duplicate.
        this.note(f.name, 'rename', `applied ${f.name} but could not rename it to ${processedLogName(f.sequence)}: ${(err as Error).message}`);
      }
    }
  }

  /**
   * An I/O error of this slave's disks failed the file and it was dropped:
   * try it again after a wait that doubles with each failure in a row.
   */
  private ioFailed(file: string, err: FileNotAppliedError): void {
    this.stats.ioErrors++;
    const now = this.drivers.clock.nowMs();
    const prev = this.io?.file === file ? this.io : undefined;
    const failures = (prev?.failures ?? 0) + 1;
    const waitMs = ioRetryWaitMs(failures);
    this.io = { file, failures, sinceMs: prev?.sinceMs ?? now, retryAtMs: now + waitMs, cause: (err.cause as Error).message };
    this.stats.lastError = err.message;
    const since = prev ? ` (${failures} attempts failed in ${Math.round((now - prev.sinceMs) / 1000)} s)` : '';
    this.limited(`I/O error: ${file}`, `${err.message}; an I/O error of this slave's disks: it stays in ${this.dir} and is tried again in ${waitMs / 1000} s${since}, the wait doubling up to ${IO_RETRY_MAX_MS / 1000} s`);
  }

  /** The engine cannot apply files until the slave is remounted (it stopped, or a drop failed): say so once, stop trying. */
  private halt(file: string, err: FileNotAppliedError): void {
    this.io = undefined;
    this.halted = err.message;
    this.stats.lastError = err.message;
    this.drivers.logger.log(0, `${err.message}: this slave applies no more files until it is remounted (it then starts from its last durable file, and ${file} stays in ${this.dir} to be applied)`);
  }

  /** A file failed for want of space and was dropped: wait for room before it is applied again. */
  private async stopForSpace(file: string, err: FileNotAppliedError): Promise<void> {
    this.stats.stalls++;
    const engine = this.applier.engine;
    const sw: SpaceWait = {
      file,
      reason: `the disk under ${engine.fullDiskPath ?? engine.options.blockDataPath} is full`,
      wait: undefined,
      needBytes: err.blockBytes + RESUME_ROOM_BYTES,
    };
    this.space = sw;
    this.stats.lastError = err.message;
    await this.measure(sw);
    const then = sw.wait ? `once ${sw.wait.wanted(true)}, and the data disk with the free space inside the data file has ${megabytes(sw.needBytes)} for its blocks` : 'once there is room';
    this.limited(`disk full: ${file}`, `${err.message}; it stays in ${this.dir} and is applied again ${then}`);
  }

  private async measure(sw: SpaceWait): Promise<void> {
    try {
      sw.wait = await RoomWait.afterDrop(this.applier.engine);
    } catch (err) {
      this.checkFailed(sw, err);
    }
  }

  private checkFailed(sw: SpaceWait, err: unknown): void {
    this.limited('disk check', `checking the disks for room failed: ${(err as Error).message}; ${sw.file} is applied again once a check finds room`);
  }

  /** Whether the disks have room for the file the last full disk stopped (then it is applied again). */
  private async roomAgain(sw: SpaceWait): Promise<boolean> {
    if (!sw.wait) {
      await this.measure(sw);
      return false;
    }
    let check;
    try {
      check = await sw.wait.check();
    } catch (err) {
      this.checkFailed(sw, err);
      return false;
    }
    const dataRoomBytes = check.room.dataFreeBytes + this.applier.engine.reusableDataBytes;
    if (!check.enough || dataRoomBytes < sw.needBytes) return false;
    this.space = undefined;
    this.limited(`room again: ${sw.file}`, `the disk has room again (${check.text}, ${megabytes(this.applier.engine.reusableDataBytes)} free inside the data file): applying ${sw.file} again`);
    return true;
  }

  /** Log at level 0, at most one line of this kind a minute. */
  private limited(kind: string, message: string): void {
    const line = this.repeats.pass(kind, message);
    if (line !== undefined) this.drivers.logger.log(0, line);
  }

  private note(name: string, key: string, message: string): void {
    if (this.refused.get(name) === key) return;
    this.refused.set(name, key);
    this.stats.lastError = message;
    this.drivers.logger.log(0, message);
  }
}

/** An error of this slave's own disks (a data write, truncate or sync, a store commit), not of the file it applied. */
function isOwnIoError(cause: unknown): boolean {
  return cause instanceof DiskError || cause instanceof StoreError || (cause instanceof FsError && cause.code === 'EIO');
}
