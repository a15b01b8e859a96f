// Positional writes to one file with a bounded number in flight, contiguous
// ones gathered into one writev. Measured here (ext4, 128 KiB blocks, 2 cores,
// main thread hashing meanwhile): thousands of concurrent pwrites to one file
// ran at 142 MB/s; 4 in flight at 421 MB/s; 4 in flight of 8 gathered blocks
// at 688 MB/s. In the engine's core benchmark, gathering up to 4 MiB instead of
// 1 MiB raised unique ingest from 0.42x to 0.46x of a plain file write.

import { BUGGIFY_OFF, buggifySplitWrite, type Buggify } from '../buggify.ts';
import type { Clock, FileHandle } from '../drivers.ts';

export const WRITES_INFLIGHT_MAX = 4;
export const GATHER_BYTES_MAX = 4 << 20;
/**
 * Writers wait while more than this is queued and not yet issued. Not a bound
 * on the queue: a commit's freeze queues every dirty block it hashes at once
 * (the engine's write cache counts them; docs/architecture.md, "Memory").
 */
export const QUEUED_BYTES_MAX = 8 << 20;

interface Pending {
  offsetBytes: number;
  bytes: Uint8Array;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class WriteQueue {
  private queue: Pending[] = [];
  private head = 0;
  private inflight = 0;
  private queuedBytes = 0;
  private roomWaiters: Array<() => void> = [];

  constructor(
    private readonly file: FileHandle,
    private readonly inflightMax = WRITES_INFLIGHT_MAX,
    private readonly buggify: Buggify = BUGGIFY_OFF,
    /** Only for buggify's short writes. */
    private readonly clock?: Clock,
  ) {}

  write(offsetBytes: number, bytes: Uint8Array): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ offsetBytes, bytes, resolve, reject });
      this.queuedBytes += bytes.length;
      this.pump();
    });
  }

  /**
   * Resolves once the backlog of unissued writes is small. Measured here: a
   * writer that keeps hashing while writes pile up ran at ~300 MB/s, one that
   * waited for them at ~700 MB/s (the two compete for the same cores/memory).
   */
  room(): Promise<void> {
    if (this.queuedBytes <= QUEUED_BYTES_MAX) return Promise.resolve();
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  /** Bytes queued and not yet issued. */
  get queuedBytesNow(): number {
    return this.queuedBytes;
  }

  /** More than QUEUED_BYTES_MAX queued and not yet issued: room() would wait. */
  get backlogged(): boolean {
    return this.queuedBytes > QUEUED_BYTES_MAX;
  }

  private pump(): void {
    while (this.inflight < this.inflightMax && this.head < this.queue.length) {
      const group = [this.queue[this.head++]];
      this.queuedBytes -= group[0].bytes.length;
      let end = group[0].offsetBytes + group[0].bytes.length;
      let size = group[0].bytes.length;
      while (this.head < this.queue.length) {
        const next = this.queue[this.head];
        if (next.offsetBytes !== end || size + next.bytes.length > GATHER_BYTES_MAX) break;
        group.push(next);
        this.head++;
        this.queuedBytes -= next.bytes.length;
        end += next.bytes.length;
        size += next.bytes.length;
      }
      if (this.head === this.queue.length) {
        this.queue = [];
        this.head = 0;
      } else if (this.head >= 1024) {
        // Drop issued entries so a queue that never empties does not keep their bytes.
        this.queue = this.queue.slice(this.head);
        this.head = 0;
      }
      if (this.queuedBytes <= QUEUED_BYTES_MAX && this.roomWaiters.length > 0) {
        const waiters = this.roomWaiters;
        this.roomWaiters = [];
        for (const w of waiters) w();
      }
      this.inflight++;
      const io = this.clock && this.buggify.fires('short-write')
        ? buggifySplitWrite(this.buggify, 'short-write', this.clock, this.file, group[0].offsetBytes, group.map((p) => p.bytes))
        : group.length === 1
          ? this.file.write(group[0].offsetBytes, group[0].bytes)
          : this.file.writev(group[0].offsetBytes, group.map((p) => p.bytes));
      io.then(
        () => {
          this.inflight--;
          for (const p of group) p.resolve();
          this.pump();
        },
        (err: unknown) => {
          this.inflight--;
          for (const p of group) p.reject(err);
          this.pump();
        },
      );
    }
  }
}

/**
 * Positional reads with a bounded number in flight, issued in request order.
 * Measured here: one stream of 128 KiB preads of a cold file ran at ~1.2 GB/s
 * (the kernel's read-ahead follows it); many concurrent preads at scattered
 * offsets defeat that read-ahead.
 */
export class ReadQueue {
  private readonly queue: Array<{ offsetBytes: number; length: number; into?: Uint8Array; targets: readonly Uint8Array[] | undefined; epoch: ReadEpoch; resolve: (r: Uint8Array | number) => void; reject: (e: unknown) => void }> = [];
  private inflight = 0;
  /** Reads issued since the last settled() call (a count, not a list: reads stay cheap). */
  private epoch: ReadEpoch = { pending: 0, waiters: [] };
  /** Settles when the reads of every epoch before `epoch` have. */
  private older: Promise<void> = Promise.resolve();

  constructor(
    private readonly file: FileHandle,
    private readonly inflightMax: number,
  ) {}

  /** `into`: read there (a view of it comes back), as FileHandle.read. */
  read(offsetBytes: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    if (into && into.length < length) return Promise.reject(new RangeError(`read of ${length} bytes into a buffer of ${into.length}`));
    return new Promise((resolve, reject) => {
      this.epoch.pending++;
      this.queue.push({ offsetBytes, length, into, targets: undefined, epoch: this.epoch, resolve: resolve as (r: Uint8Array | number) => void, reject });
      this.pump();
    });
  }

  /** Read into the targets back to back (FileHandle.readv); resolves with the bytes read. */
  readv(offsetBytes: number, targets: readonly Uint8Array[]): Promise<number> {
    return new Promise((resolve, reject) => {
      this.epoch.pending++;
      this.queue.push({ offsetBytes, length: 0, targets, epoch: this.epoch, resolve: resolve as (r: Uint8Array | number) => void, reject });
      this.pump();
    });
  }

  /**
   * Resolves once every read issued before this call has settled; reads
   * issued after it do not hold it up (a steady reader cannot starve it).
   * What FsEngine.discardUncommitted waits for before it cuts the data file:
   * a read of an extent it cuts, issued against the tree it drops, finishes first.
   */
  settled(): Promise<void> {
    const e = this.epoch;
    if (e.pending > 0) {
      this.epoch = { pending: 0, waiters: [] };
      const mine = new Promise<void>((resolve) => e.waiters.push(resolve));
      this.older = Promise.all([this.older, mine]).then(() => undefined);
    }
    return this.older;
  }

  private pump(): void {
    while (this.inflight < this.inflightMax && this.queue.length > 0) {
      const r = this.queue.shift() as (typeof this.queue)[number];
      this.inflight++;
      // `into` whole, not cut to length: a direct handle reads aligned lengths into its room (FileHandle.read).
      const io: Promise<Uint8Array | number> = r.targets ? this.file.readv(r.offsetBytes, r.targets) : this.file.read(r.offsetBytes, r.length, r.into);
      io.then(
        (b) => {
          this.inflight--;
          r.resolve(b);
          settleOne(r.epoch);
          this.pump();
        },
        (err: unknown) => {
          this.inflight--;
          r.reject(err);
          settleOne(r.epoch);
          this.pump();
        },
      );
    }
  }
}

interface ReadEpoch {
  pending: number;
  waiters: Array<() => void>;
}

function settleOne(e: ReadEpoch): void {
  if (--e.pending > 0 || e.waiters.length === 0) return;
  for (const w of e.waiters.splice(0)) w();
}
