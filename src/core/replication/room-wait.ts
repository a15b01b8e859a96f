// After a full disk made a slave drop what it had not made durable (a live
// slave's stream, docs/replication-protocol.md "A full disk on the slave"; a
// watchdir slave's file, docs/replication-log.md "A full disk"): when to take
// its master's transactions again. Less room than right after the drop would
// fill the disk again at about the same place, so a slave waits until the
// engine no longer takes the disk to be full (it has room for a full write
// cache) or a disk under BLOCKDATA_PATH or META_PATH has RESUME_ROOM_BYTES
// more free than right after the drop. A check costs a statfs of each.
//
// After an I/O error of its own disks (not ENOSPC) a slave drops the same way
// and tries again after a wait that doubles with each failure in a row
// (ioRetryWaitMs): a transient error passes without a restart, a lasting one
// costs an attempt a minute.

/** More free bytes than right after the drop, on either disk, before a slave takes transactions again. */
export const RESUME_ROOM_BYTES = 1024 * 1024;

/** The first wait before a slave tries again after an I/O error of its disks; it doubles with each failure in a row. */
export const IO_RETRY_FIRST_MS = 2000;
/** The longest wait between attempts while its disks keep failing with I/O errors. */
export const IO_RETRY_MAX_MS = 60_000;

/** The wait after the `failures`-th I/O error in a row (1, 2, …). */
export function ioRetryWaitMs(failures: number): number {
  return Math.min(IO_RETRY_MAX_MS, IO_RETRY_FIRST_MS * 2 ** Math.min(Math.max(failures, 1) - 1, 30));
}

/** Free space as FsEngine.diskRoom measures it. */
export interface DiskRoom {
  /** The disk the engine takes to be full, if it still does. */
  fullPath: string | undefined;
  dataFreeBytes: number;
  metaFreeBytes: number;
}

/** What RoomWait asks (an FsEngine). */
export interface RoomSource {
  diskRoom(): Promise<DiskRoom>;
  readonly options: { readonly blockDataPath: string; readonly metaPath: string };
}

export class RoomWait {
  private constructor(
    private readonly engine: RoomSource,
    /** The room right after the drop. */
    readonly atDrop: DiskRoom,
  ) {}

  /** Measure the room right after the drop (the space reserve's release included). */
  static async afterDrop(engine: RoomSource): Promise<RoomWait> {
    return new RoomWait(engine, await engine.diskRoom());
  }

  get resumeDataFreeBytes(): number {
    return this.atDrop.dataFreeBytes + RESUME_ROOM_BYTES;
  }

  get resumeMetaFreeBytes(): number {
    return this.atDrop.metaFreeBytes + RESUME_ROOM_BYTES;
  }

  /**
   * The room waited for, in words: with the paths and the free space at the
   * drop (log lines), or with the setting names (what a master is told).
   */
  wanted(withPaths: boolean): string {
    const { blockDataPath, metaPath } = this.engine.options;
    if (!withPaths) return `${megabytes(this.resumeDataFreeBytes)} are free under BLOCKDATA_PATH or ${megabytes(this.resumeMetaFreeBytes)} under META_PATH`;
    return `${megabytes(this.resumeDataFreeBytes)} are free under ${blockDataPath} (now ${megabytes(this.atDrop.dataFreeBytes)}) or ${megabytes(this.resumeMetaFreeBytes)} under ${metaPath} (now ${megabytes(this.atDrop.metaFreeBytes)})`;
  }

  /** The room now, and whether it is enough to take transactions again. */
  async check(): Promise<{ enough: boolean; room: DiskRoom; text: string }> {
    const room = await this.engine.diskRoom();
    const enough = room.fullPath === undefined || room.dataFreeBytes >= this.resumeDataFreeBytes || room.metaFreeBytes >= this.resumeMetaFreeBytes;
    const text = `${megabytes(room.dataFreeBytes)} free under ${this.engine.options.blockDataPath}, ${megabytes(room.metaFreeBytes)} under ${this.engine.options.metaPath}`;
    return { enough, room, text };
  }
}

export function megabytes(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}
