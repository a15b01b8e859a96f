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

import { BUGGIFY_OFF, type Buggify } from '../buggify.ts';
import type { Clock, Disk, Logger, TimerHandle } from '../drivers.ts';
import { DiskError } from '../errors.ts';
import { joinPath } from '../fs/engine.ts';
import { ReplogError } from './errors.ts';
import { parseRotatedLogName, processedLogName } from './master-log.ts';
import type { SlaveApplier } from './slave.ts';

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
  lastError: string | undefined;
  lastAppliedFile: string | undefined;
}

export class WatchdirSlave {
  private timer: TimerHandle | undefined;
  private running: Promise<void> | undefined;
  private stopped = true;
  private paused = false;
  /** Refusals already logged: file name -> its changeTag when refused. */
  private readonly refused = new Map<string, string>();
  readonly stats: WatchdirStats = { filesApplied: 0, duplicatesSkipped: 0, filesRefused: 0, lastError: undefined, lastAppliedFile: undefined };

  constructor(
    private readonly drivers: WatchdirDrivers,
    private readonly applier: SlaveApplier,
    private readonly dir: string,
    private readonly pollMs = WATCHDIR_POLL_MS,
    private readonly buggify: Buggify = BUGGIFY_OFF,
  ) {}

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

  /** Apply every file that is next in sequence; returns the number applied. */
  async scanOnce(): Promise<void> {
    if (this.paused) return;
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
        let bytes: Uint8Array;
        try {
          bytes = await handle.read(0, st.sizeBytes);
        } finally {
          await handle.close();
        }
        outcome = await this.applier.applyFile(bytes, f.name, f.sequence);
      } catch (err) {
        this.stats.filesRefused++;
        const retry = err instanceof ReplogError && err.code === 'ETRUNCATED' ? '; will look again when it changes' : '; nothing applied from it';
        this.note(f.name, sizeKey, `refusing ${f.name}: ${(err as Error).message}${retry}`);
        if (stale) continue;
        return;
      }
      this.refused.delete(f.name);
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

  private note(name: string, key: string, message: string): void {
    if (this.refused.get(name) === key) return;
    this.refused.set(name, key);
    this.stats.lastError = message;
    this.drivers.logger.log(0, message);
  }
}
