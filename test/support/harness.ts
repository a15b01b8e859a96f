// One test body, two backends: the engine on sim drivers (driven by the
// scheduler) and on real LMDB + files in a temp dir.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '../../src/core/drivers.ts';
import { FsEngine } from '../../src/core/fs/engine.ts';
import type { EngineDrivers, EngineOptions } from '../../src/core/fs/types.ts';
import { realEngineDrivers } from '../../src/real/drivers.ts';
import { simEngineOptions } from '../../src/sim/batch-cluster.ts';
import { SimMachine, type SimNodeOptions } from '../../src/sim/node-env.ts';
import { SimRng } from '../../src/sim/rng.ts';
import { Scheduler } from '../../src/sim/scheduler.ts';

export interface Harness {
  readonly name: string;
  readonly options: EngineOptions;
  drivers(): EngineDrivers;
  /** Wait for a promise, driving simulated time if needed. */
  run<T>(p: Promise<T>): Promise<T>;
  format(): Promise<void>;
  open(): Promise<FsEngine>;
  cleanup(): void;
}

/** Engine options for a store under dir (4 KiB blocks, 1 MiB cache, 5 s commits). */
export const engineOptions = simEngineOptions;

export class SimHarness implements Harness {
  readonly name: string;
  readonly scheduler: Scheduler;
  readonly machine: SimMachine;
  readonly options: EngineOptions;

  constructor(readonly seed: number | string, overrides: Partial<EngineOptions> = {}, node: Partial<SimNodeOptions> = {}) {
    this.name = `sim seed=${seed}`;
    this.scheduler = new Scheduler({ seed });
    this.machine = new SimMachine(this.scheduler, new SimRng(seed).split('machine'), { name: 'node', ...node });
    this.options = engineOptions('/lessfs', overrides);
  }

  drivers(): EngineDrivers {
    return this.machine.drivers();
  }

  run<T>(p: Promise<T>): Promise<T> {
    return this.scheduler.runUntilSettled(p);
  }

  async format(): Promise<void> {
    const d = this.drivers();
    await this.run(d.disk.mkdir('/lessfs/mta', { recursive: true }));
    await this.run(FsEngine.format(d, this.options, { force: false, fsId: `sim-${this.seed}` }));
  }

  open(): Promise<FsEngine> {
    return this.run(FsEngine.open(this.drivers(), this.options));
  }

  cleanup(): void {}
}

const quietLogger: Logger = { log: () => undefined };

export class RealHarness implements Harness {
  readonly name = 'real lmdb';
  readonly dir: string;
  readonly options: EngineOptions;
  private readonly d: EngineDrivers;

  constructor(overrides: Partial<EngineOptions> = {}, logger: Logger = quietLogger) {
    this.dir = mkdtempSync(join(tmpdir(), 'lessfs-test-'));
    this.options = engineOptions(this.dir, overrides);
    this.d = realEngineDrivers(logger);
  }

  drivers(): EngineDrivers {
    return this.d;
  }

  run<T>(p: Promise<T>): Promise<T> {
    return p;
  }

  async format(): Promise<void> {
    await FsEngine.format(this.d, this.options, { force: false, fsId: 'real-test' });
  }

  open(): Promise<FsEngine> {
    return FsEngine.open(this.d, this.options);
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
