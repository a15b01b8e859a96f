import type { Disk, FileHandle } from '../../src/core/drivers.ts';
import type { Scheduler } from '../../src/sim/scheduler.ts';

/**
 * Settles a driver promise. Real drivers settle by themselves; sim drivers only
 * when the scheduler runs, so their runner drives it until the promise settles.
 */
export type Runner = <T>(promise: Promise<T>) => Promise<T>;

export const realRunner: Runner = (promise) => promise;

export function simRunner(scheduler: Scheduler): Runner {
  return (promise) => scheduler.runUntilSettled(promise);
}

export interface DrivenFileHandle extends FileHandle {
  /** The undriven handle, for issuing operations concurrently and settling them together. */
  readonly raw: FileHandle;
}

export interface DrivenDisk extends Disk {
  open(path: string, options?: Parameters<Disk['open']>[1]): Promise<DrivenFileHandle>;
}

/** A Disk whose every call is settled by run, so a test can simply await it. */
export function drivenDisk(disk: Disk, run: Runner): DrivenDisk {
  return {
    open: async (path, options) => drivenHandle(await run(disk.open(path, options)), run),
    stat: (path) => run(disk.stat(path)),
    readdir: (path) => run(disk.readdir(path)),
    mkdir: (path, options) => run(disk.mkdir(path, options)),
    rename: (from, to) => run(disk.rename(from, to)),
    unlink: (path) => run(disk.unlink(path)),
    syncDir: (path) => run(disk.syncDir(path)),
    space: (path) => run(disk.space(path)),
  };
}

export function drivenHandle(raw: FileHandle, run: Runner): DrivenFileHandle {
  return {
    raw,
    path: raw.path,
    read: (positionBytes, length, into) => run(raw.read(positionBytes, length, into)),
    readv: (positionBytes, targets) => run(raw.readv(positionBytes, targets)),
    write: (positionBytes, data) => run(raw.write(positionBytes, data)),
    writev: (positionBytes, chunks) => run(raw.writev(positionBytes, chunks)),
    append: (data) => run(raw.append(data)),
    sizeBytes: () => run(raw.sizeBytes()),
    truncate: (lengthBytes) => run(raw.truncate(lengthBytes)),
    sync: () => run(raw.sync()),
    close: () => run(raw.close()),
  };
}
