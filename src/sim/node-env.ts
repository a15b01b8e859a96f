// Sim drivers for one node: persistent media (store environments and disk)
// that outlive incarnations, and per-incarnation drivers bound to a Domain.

import type { Logger, LogLevel } from '../core/drivers.ts';
import type { EngineDrivers } from '../core/fs/types.ts';
import { nodePrimitives } from '../real/primitives.ts';
import { SimDiskMedium, type SimDiskOptions } from './disk.ts';
import type { SimRng } from './rng.ts';
import { Domain, type Scheduler } from './scheduler.ts';
import { SimStoreMedium, type SimStoreOptions } from './store.ts';

/** Log lines kept in memory (and folded into the trace at level <= traceLevel). */
export class MemoryLogger implements Logger {
  readonly lines: string[] = [];
  constructor(
    private readonly name: string,
    private readonly scheduler: Scheduler,
    private readonly linesMax = 10_000,
  ) {}
  log(level: LogLevel, message: string): void {
    const line = `${this.scheduler.nowMs()} ${this.name} [${level}] ${message}`;
    if (this.lines.length >= this.linesMax) this.lines.shift();
    this.lines.push(line);
  }
}

export interface SimNodeOptions {
  name: string;
  store?: Partial<SimStoreOptions>;
  disk?: Partial<SimDiskOptions>;
}

/** One simulated machine: its media and its current incarnation. */
export class SimMachine {
  readonly store: SimStoreMedium;
  readonly disk: SimDiskMedium;
  readonly logger: MemoryLogger;
  domain: Domain;
  private incarnation = 0;

  constructor(readonly scheduler: Scheduler, rng: SimRng, readonly options: SimNodeOptions) {
    this.store = new SimStoreMedium(scheduler, rng.split(`${options.name}/store`), options.store);
    this.disk = new SimDiskMedium(scheduler, rng.split(`${options.name}/disk`), { label: `${options.name}/disk`, ...options.disk });
    this.logger = new MemoryLogger(options.name, scheduler);
    this.domain = new Domain(`${options.name}#0`);
  }

  /** Drivers of the current incarnation. */
  drivers(): EngineDrivers {
    return {
      clock: this.scheduler.clock(this.domain),
      storeFactory: this.store.factory(this.domain),
      disk: this.disk.driver(this.domain),
      primitives: nodePrimitives,
      logger: this.logger,
    };
  }

  private nextIncarnation(): void {
    this.domain.kill();
    this.incarnation++;
    this.domain = new Domain(`${this.options.name}#${this.incarnation}`);
  }

  /** kill -9: unsynced file data survives in the page cache; in-flight work is lost. */
  crash(): void {
    this.scheduler.trace(`${this.options.name} crash`);
    this.domain.kill();
    this.store.crash();
    this.disk.crash();
    this.nextIncarnation();
  }

  /**
   * Mount with `open` (which takes this machine's drivers afresh). A mount
   * that fails with EIO while the disk fails writes (an `eio` step) is the
   * operator's cue: the process is gone (as after kill -9), the disk is
   * fixed (it stops failing writes) and the mount is tried once more.
   */
  async openFixingDisk<T>(open: () => Promise<T>): Promise<T> {
    try {
      return await open();
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'EIO' || this.disk.options.writeErrorProbability === 0) throw err;
      this.scheduler.trace(`${this.options.name} mount failed with EIO (${(err as Error).message}): disk fixed, mounting again`);
      this.crash();
      this.disk.setOptions({ writeErrorProbability: 0 });
      return open();
    }
  }

  /** Power cut: only durable state survives (unsynced writes may be torn or lost). */
  powerLoss(): void {
    this.scheduler.trace(`${this.options.name} power loss`);
    this.domain.kill();
    this.store.powerLoss();
    this.disk.powerLoss();
    this.nextIncarnation();
  }
}
