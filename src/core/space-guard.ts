// MIN_SPACE_FREE: when the disk under BLOCKDATA_PATH or META_PATH falls below
// the configured free percentage (free extents inside the data file count as
// free on BLOCKDATA_PATH's disk), operations that add data fail with ENOSPC
// (deletes still work, so space can be freed) and one log line says so; when
// space returns, writes resume and a line says that too.

import type { Clock, Disk, Logger, TimerHandle } from './drivers.ts';
import { FsError } from './errors.ts';

export interface SpaceGuardOptions {
  paths: readonly string[];
  minFreePercent: number;
  checkIntervalMs: number;
  /**
   * Space inside a path's files that new data can take without the disk
   * growing: the data file's free extents, for BLOCKDATA_PATH. Deleting data
   * frees extents, not disk space (the file never shrinks), so without this a
   * filesystem that fell below the threshold stayed refusing even when empty.
   */
  reusableBytes?: { path: string; bytes: () => number };
}

export class SpaceGuard {
  private lowFlag = false;
  private timer: TimerHandle | undefined;
  private stopped = false;
  lastFreePercent = 100;

  constructor(
    private readonly disk: Disk,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly options: SpaceGuardOptions,
  ) {}

  get low(): boolean {
    return this.lowFlag;
  }

  /** Throw ENOSPC when space is low (for operations that add data). */
  check(what: string): void {
    if (this.lowFlag) {
      throw new FsError('ENOSPC', `${what}: free space ${this.lastFreePercent.toFixed(1)}% is below MIN_SPACE_FREE=${this.options.minFreePercent}%`);
    }
  }

  async start(): Promise<void> {
    await this.poll();
    this.arm();
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
  }

  private arm(): void {
    if (this.stopped) return;
    this.timer = this.clock.setTimer(this.options.checkIntervalMs, () => {
      this.poll().then(
        () => this.arm(),
        (err: unknown) => {
          this.logger.log(0, `free space check failed: ${(err as Error).message}`);
          this.arm();
        },
      );
    });
  }

  async poll(): Promise<void> {
    if (this.options.minFreePercent <= 0) return;
    let worst = 100;
    let worstPath = '';
    for (const p of this.options.paths) {
      const s = await this.disk.space(p);
      const reusable = this.options.reusableBytes?.path === p ? this.options.reusableBytes.bytes() : 0;
      const pct = s.totalBytes > 0 ? Math.min(100, (100 * (s.freeBytes + reusable)) / s.totalBytes) : 100;
      if (pct < worst) {
        worst = pct;
        worstPath = p;
      }
    }
    this.lastFreePercent = worst;
    const low = worst < this.options.minFreePercent;
    if (low && !this.lowFlag) {
      this.logger.log(0, `free space on ${worstPath} is ${worst.toFixed(1)}%, below MIN_SPACE_FREE=${this.options.minFreePercent}%: new data is refused with ENOSPC until space is freed`);
    } else if (!low && this.lowFlag) {
      this.logger.log(0, `free space on the data disks is back to ${worst.toFixed(1)}% (MIN_SPACE_FREE=${this.options.minFreePercent}%): writes resume`);
    }
    this.lowFlag = low;
  }
}
