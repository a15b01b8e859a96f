// The real drivers one node is built from: LMDB, node:fs, timers.

import { openSync, writeSync } from 'node:fs';
import type { Logger, LogLevel } from '../core/drivers.ts';
import type { EngineDrivers } from '../core/fs/types.ts';
import { realClock } from './clock.ts';
import { RealDisk } from './disk.ts';
import { LmdbStoreFactory } from './lmdb-store.ts';
import { nodePrimitives } from './primitives.ts';

/** One line per event on stderr, filtered by DEBUG level. */
export class StderrLogger implements Logger {
  constructor(
    private readonly level: number,
    private readonly prefix = 'lessfs',
  ) {}
  log(level: LogLevel, message: string): void {
    if (level > this.level) return;
    process.stderr.write(`${new Date().toISOString()} ${this.prefix}[${process.pid}] ${message}\n`);
  }
}

/** One line per event appended to a file (a daemon's log). */
export class FileLogger implements Logger {
  private readonly fd: number;
  constructor(
    private readonly level: number,
    readonly path: string,
    private readonly prefix = 'lessfs',
  ) {
    this.fd = openSync(path, 'a');
  }
  log(level: LogLevel, message: string): void {
    if (level > this.level) return;
    // Synchronous: a line must not be lost if the process dies right after.
    writeSync(this.fd, `${new Date().toISOString()} ${this.prefix}[${process.pid}] ${message}\n`);
  }
}

export function realEngineDrivers(logger: Logger): EngineDrivers {
  return {
    clock: realClock,
    storeFactory: new LmdbStoreFactory(),
    disk: new RealDisk(),
    primitives: nodePrimitives,
    logger,
  };
}
