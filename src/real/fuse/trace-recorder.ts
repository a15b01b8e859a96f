// Records the mount's FUSE operations to a trace file (lessfs --trace FILE or
// TRACE_FILE; format in src/core/trace-format.ts). The FUSE handlers call
// record() synchronously: it only serializes one line into memory. Lines go to
// the file in the background, one write at a time, when 64 KiB are buffered,
// a second after the first unwritten line, at every fsync, and at unmount.
// Memory is bounded: when the file falls too far behind, recording stops with
// a marker line and one log message. A write error also stops it (logged
// once). The mount never waits for the trace and never fails because of it.

import { createHmac, randomBytes } from 'node:crypto';
import { open, rename, stat, type FileHandle } from 'node:fs/promises';
import type { Logger } from '../../core/drivers.ts';
import {
  TRACE_FORMAT_VERSION,
  tracePieces,
  ZERO_FINGERPRINT,
  type TraceEntry,
  type TraceHeader,
  type TraceMarker,
  type TraceOp,
} from '../../core/trace-format.ts';

export interface TraceRecorderOptions {
  blockSizeBytes: number;
  /** Entries of the root directory at the start (the header says whether the trace began on an empty filesystem). */
  rootEntries: number;
  logger: Logger;
  /** Flush once this much is buffered. */
  flushBytes?: number;
  /** Flush this long after the first unwritten line. */
  flushIntervalMs?: number;
  /** Unwritten lines beyond this stop the recording (the file cannot keep up). */
  bufferedBytesMax?: number;
}

const FLUSH_BYTES_DEFAULT = 64 * 1024;
const FLUSH_INTERVAL_MS_DEFAULT = 1000;
const BUFFERED_BYTES_MAX_DEFAULT = 16 * 1024 * 1024;
/** Fingerprint length in hex digits (8 bytes of the HMAC). */
const FINGERPRINT_HEX = 16;

export class TraceRecorder {
  private readonly t0 = performance.now();
  /** Never written anywhere: fingerprints can be compared within this trace, not checked against a guess. */
  private readonly key = randomBytes(32);
  private readonly zeros: Buffer;
  private readonly flushBytes: number;
  private readonly flushIntervalMs: number;
  private readonly bufferedBytesMax: number;
  private lines: string[] = [];
  private bufferedBytes = 0;
  private writing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private state: 'recording' | 'stopped' | 'closed' = 'recording';
  private opsRecorded = 0;

  private constructor(
    readonly path: string,
    private readonly file: FileHandle,
    private readonly options: TraceRecorderOptions,
  ) {
    this.zeros = Buffer.alloc(options.blockSizeBytes);
    this.flushBytes = options.flushBytes ?? FLUSH_BYTES_DEFAULT;
    this.flushIntervalMs = options.flushIntervalMs ?? FLUSH_INTERVAL_MS_DEFAULT;
    this.bufferedBytesMax = options.bufferedBytesMax ?? BUFFERED_BYTES_MAX_DEFAULT;
  }

  /**
   * Start a new trace at path (mode 0600: it names files). A non-empty file
   * already there (a previous mount's trace) is renamed to path.1 first. Errors
   * here are thrown: the mount was asked to record and should say why it cannot.
   */
  static async open(path: string, options: TraceRecorderOptions): Promise<TraceRecorder> {
    const old = await stat(path).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (old && old.size > 0) {
      await rename(path, `${path}.1`);
      options.logger.log(1, `trace: the previous trace ${path} was renamed to ${path}.1`);
    }
    const file = await open(path, 'w', 0o600);
    const r = new TraceRecorder(path, file, options);
    const header: TraceHeader = {
      lessfs_trace: TRACE_FORMAT_VERSION,
      blksize: options.blockSizeBytes,
      started: new Date().toISOString(),
      root_entries: options.rootEntries,
      fingerprint: 'hmac-sha256-64',
    };
    r.push(JSON.stringify(header));
    r.flush();
    return r;
  }

  /** The file is still open (not closed, not failed). */
  private get open(): boolean {
    return this.state !== 'closed';
  }

  get recording(): boolean {
    return this.state === 'recording';
  }

  /** Ops recorded so far. */
  get ops(): number {
    return this.opsRecorded;
  }

  private now(): number {
    return Math.round((performance.now() - this.t0) * 100) / 100;
  }

  /** Record a completed operation (r: 0 or the errno name). Cheap and synchronous; never throws. */
  record(op: TraceOp, r: number | string): void {
    if (this.state !== 'recording') return;
    const entry = { t: this.now(), ...op, r } as TraceEntry;
    this.opsRecorded++;
    this.push(JSON.stringify(entry));
    if (this.bufferedBytes > this.bufferedBytesMax) {
      this.stop(`${this.bufferedBytes} bytes of trace not yet written: the trace file cannot keep up`);
      return;
    }
    if (op.op === 'fsync' || op.op === 'fsyncdir' || this.bufferedBytes >= this.flushBytes) this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.flush();
      }, this.flushIntervalMs);
      this.timer.unref();
    }
  }

  /** Fingerprints of a write's BLKSIZE-aligned pieces (see core/trace-format.ts). */
  fingerprints(offsetBytes: number, data: Uint8Array): string[] {
    return tracePieces(offsetBytes, data.length, this.options.blockSizeBytes).map(([a, b]) => {
      const piece = data.subarray(a, b);
      if (this.zeros.subarray(0, piece.length).equals(piece)) return ZERO_FINGERPRINT;
      return createHmac('sha256', this.key).update(piece).digest('hex').slice(0, FINGERPRINT_HEX);
    });
  }

  private push(line: string): void {
    this.lines.push(line);
    this.bufferedBytes += line.length + 1;
  }

  /** Write what is buffered, in the background (one write at a time, in order). */
  flush(): void {
    if (this.state === 'closed' || this.lines.length === 0) return;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const chunk = `${this.lines.join('\n')}\n`;
    this.lines = [];
    const prev = this.writing ?? Promise.resolve();
    const next = prev.then(async () => {
      if (this.state === 'closed') return;
      try {
        await this.file.write(chunk);
      } catch (err) {
        this.fail(`writing ${this.path} failed: ${(err as Error).message}`);
      } finally {
        this.bufferedBytes -= chunk.length;
      }
    });
    this.writing = next;
    void next.then(() => {
      if (this.writing === next) this.writing = undefined;
    });
  }

  /** Stop recording, keeping the file valid: what is buffered and a `stopped` marker are written. */
  private stop(reason: string): void {
    this.options.logger.log(0, `trace: recording to ${this.path} stopped (${reason}); the mount goes on`);
    const marker: TraceMarker = { t: this.now(), event: 'stopped', ops: this.opsRecorded, reason };
    this.push(JSON.stringify(marker));
    this.state = 'stopped';
    this.flush();
  }

  /** A write failed: the file is not trustworthy; drop everything and close it. */
  private fail(reason: string): void {
    if (this.state === 'closed') return;
    this.options.logger.log(0, `trace: recording to ${this.path} stopped (${reason}); the mount goes on`);
    this.state = 'closed';
    this.lines = [];
    if (this.timer) clearTimeout(this.timer);
    this.file.close().catch((err: unknown) => this.options.logger.log(1, `trace: closing ${this.path}: ${(err as Error).message}`));
  }

  /** At unmount: write the `end` marker and everything buffered, and close the file. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    if (this.state === 'recording') {
      const marker: TraceMarker = { t: this.now(), event: 'end', ops: this.opsRecorded };
      this.push(JSON.stringify(marker));
    }
    this.flush();
    await this.writing;
    // A write that failed meanwhile closed the file (and logged why).
    if (!this.open) return;
    this.state = 'closed';
    await this.file.close();
  }
}
