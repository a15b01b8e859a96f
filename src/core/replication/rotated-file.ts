// A rotated log file read in bounded memory, in two passes (a batch slave:
// watchdir, replogtool -c). Pass 1 (checkRotatedFile) checks everything
// validateRotatedFile checks, with the same errors, and keeps only a few
// numbers per transaction; pass 2 (rotatedTransactions) reads the file again
// and hands over one transaction at a time, each compared with what pass 1
// checked before it is handed over, so a file that changed in between is
// refused (ECHANGED) at the first transaction that differs. Memory: one read
// buffer (ROTATED_FILE_CHUNK_BYTES, larger only for a longer frame) and one
// transaction's records; a file that fits in one read is read once and both
// passes go over those bytes. docs/replication-log.md, "Applying".

import { assert } from '../errors.ts';
import type { FileHandle, Primitives } from '../drivers.ts';
import { ReplogError } from './errors.ts';
import { type Frame, FRAME_TYPE, type FrameInspection, type InspectOptions, inspectFrameAt, type ReplRecord, type Transaction, TransactionAssembler } from './frames.ts';
import {
  checkFileCrc,
  checkHeader,
  checkRotatedTotals,
  decodeHeader,
  decodeTrailer,
  FS_ID_BYTES_MAX,
  HEADER_FIXED_BYTES,
  type LogExpectation,
  type LogHeader,
  type LogTrailer,
  rotatedFrameError,
  rotatedFrameOptions,
  rotatedTrailerOffset,
  TRAILER_BYTES,
} from './log-file.ts';

/** Bytes a batch slave reads at a time from a rotated file (a file this small is read in one read). */
export const ROTATED_FILE_CHUNK_BYTES = 4 * 1024 * 1024;

/** A rotated file to read: its size, and reads (FileHandle.read), or its bytes in memory (`whole`). */
export interface RotatedFileSource {
  sizeBytes: number;
  read(positionBytes: number, length: number, into?: Uint8Array): Promise<Uint8Array>;
  /** Set when the whole file is in memory: reads are views of it. */
  whole?: Uint8Array;
  /** Reads at most this many bytes at a time. */
  chunkBytes: number;
}

/** A file's bytes in memory as a source. */
export function bytesSource(bytes: Uint8Array): RotatedFileSource {
  return {
    sizeBytes: bytes.length,
    whole: bytes,
    chunkBytes: Math.max(1, bytes.length),
    read: async (positionBytes, length) => bytes.subarray(positionBytes, positionBytes + length),
  };
}

/**
 * The first `sizeBytes` of an open file as a source. A file of at most
 * `chunkBytes` is read here, in one read (what a short read returns is the
 * file); a larger one is read as the passes go, and must stay open until
 * they are done.
 */
export async function rotatedFileSource(file: Pick<FileHandle, 'read'>, sizeBytes: number, chunkBytes = ROTATED_FILE_CHUNK_BYTES): Promise<RotatedFileSource> {
  assert(Number.isInteger(chunkBytes) && chunkBytes >= 1, `read chunk of ${chunkBytes} bytes`);
  if (sizeBytes <= chunkBytes) return bytesSource(await file.read(0, sizeBytes));
  return { sizeBytes, chunkBytes, read: (positionBytes, length, into) => file.read(positionBytes, length, into) };
}

/** What pass 1 found: enough to apply the file from a second read, and to tell whether it still holds the same. */
export interface RotatedFileCheck {
  header: LogHeader;
  trailer: LogTrailer;
  sizeBytes: number;
  /** Transaction firstTxn + i: the CRC-32 of its COMMIT frame (which binds its records' CRCs). */
  commitCrc32: Uint32Array;
  /** Transaction firstTxn + i: stored bytes of its BLOCK records. */
  blockBytes: Float64Array;
}

export interface RotatedReadOptions {
  fileName?: string;
  maxFrameBytes?: number;
}

/** A file read twice held other bytes the second time (`what` says how they differ). */
export function changedError(what: string, fileName: string | undefined): ReplogError {
  return new ReplogError('ECHANGED', `the file changed after it was checked (${what}); copy it again`, { fileName });
}

/**
 * The bytes [0, endBytes) of a source, frame by frame, in reads of at most
 * chunkBytes into one reused buffer (grown only for a frame longer than a
 * chunk), with the running CRC-32 of the bytes passed over.
 */
class FrameCursor {
  private buf: Uint8Array;
  /** File offset of buf[0]. */
  private base = 0;
  /** Unjudged bytes are buf[from, to). */
  private from = 0;
  private to = 0;
  /** CRC-32 of the file's bytes before buf[crcAt]. */
  private crc = 0;
  private crcAt = 0;

  constructor(
    private readonly p: Primitives,
    private readonly source: RotatedFileSource,
    private endBytes: number,
    private readonly fileName: string | undefined,
  ) {
    const whole = source.whole;
    this.buf = whole ? whole.subarray(0, endBytes) : new Uint8Array(0);
    this.to = this.buf.length;
  }

  get offsetBytes(): number {
    return this.base + this.from;
  }

  get atEnd(): boolean {
    return this.offsetBytes >= this.endBytes;
  }

  /** The next bytes, at least `n` of them unless the end comes first (a view, valid until the cursor moves). */
  async peek(n: number): Promise<Uint8Array> {
    if (this.to - this.from < n) await this.fill(n);
    return this.buf.subarray(this.from, this.to);
  }

  /** Stop at `endBytes` (the trailer's offset, once known). */
  setEnd(endBytes: number): void {
    assert(endBytes >= this.offsetBytes && endBytes <= this.endBytes, `cursor end ${endBytes} outside ${this.offsetBytes}..${this.endBytes}`);
    this.endBytes = endBytes;
    this.to = Math.min(this.to, endBytes - this.base);
  }

  skip(n: number): void {
    assert(n <= this.to - this.from, `skip ${n} bytes, ${this.to - this.from} read`);
    this.from += n;
  }

  /** The frame at the cursor: 'incomplete' only when the end cuts it. */
  async next(options: InspectOptions): Promise<FrameInspection> {
    for (;;) {
      options.baseOffsetBytes = this.base;
      const seen = inspectFrameAt(this.p, this.buf.subarray(0, this.to), this.from, options);
      if (seen.kind !== 'incomplete' || this.base + this.to >= this.endBytes) return seen;
      await this.fill(seen.neededBytes);
    }
  }

  /** CRC-32 of [0, endBytes): what was passed over, and the rest read without judging it. */
  async crcToEnd(): Promise<number> {
    while (this.base + this.to < this.endBytes) await this.fill(1, true);
    this.from = this.to;
    this.extendCrc();
    return this.crc;
  }

  private extendCrc(): void {
    if (this.from > this.crcAt) this.crc = this.p.crc32(this.buf.subarray(this.crcAt, this.from), this.crc);
    this.crcAt = this.from;
  }

  /** Read until buf[from..] holds `neededBytes` (or the end); `skipping`: the bytes are only CRCed. */
  private async fill(neededBytes: number, skipping = false): Promise<void> {
    assert(this.source.whole === undefined, 'a file in memory has all its bytes');
    if (skipping) this.from = this.to;
    this.extendCrc();
    const live = this.to - this.from;
    // A frame's length is believed only as far as the file goes (a cut file's last frame may claim 64 MiB).
    const capacity = Math.max(this.source.chunkBytes, Math.min(neededBytes, this.endBytes - this.offsetBytes));
    if (this.buf.length < capacity) {
      const fresh = new Uint8Array(capacity);
      fresh.set(this.buf.subarray(this.from, this.to));
      this.buf = fresh;
    } else if (this.from > 0) {
      this.buf.copyWithin(0, this.from, this.to);
    }
    this.base += this.from;
    this.from = 0;
    this.crcAt = 0;
    this.to = live;
    do {
      const n = Math.min(this.source.chunkBytes, this.buf.length - this.to, this.endBytes - (this.base + this.to));
      if (n <= 0) break;
      const into = this.buf.subarray(this.to, this.to + n);
      const got = await this.source.read(this.base + this.to, n, into);
      if (got.length < n) throw shrankError(this.source.sizeBytes, this.base + this.to + got.length, this.fileName);
      if (got.buffer !== into.buffer || got.byteOffset !== into.byteOffset) into.set(got);
      this.to += n;
    } while (this.to - this.from < neededBytes);
  }
}

/** A read of a file of `sizeBytes` ended at `atBytes`: the file shrank while being read. */
export function shrankError(sizeBytes: number, atBytes: number, fileName: string | undefined): ReplogError {
  return new ReplogError('ETRUNCATED', `the file of ${sizeBytes} bytes ended at ${atBytes} while being read: is it still being written or copied?`, { offsetBytes: atBytes, fileName });
}

/** A Float64Array or Uint32Array that grows as values are appended. */
export class Column<A extends Float64Array | Uint32Array> {
  length = 0;
  constructor(private values: A) {}
  push(value: number): void {
    if (this.length === this.values.length) {
      const grown = new (this.values.constructor as new (n: number) => A)(Math.max(16, this.length * 2));
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.length++] = value;
  }
  done(): A {
    return this.values.subarray(0, this.length) as A;
  }
}

/**
 * Pass 1: check a rotated file as validateRotatedFile checks its bytes —
 * same checks, same order of precedence, same errors — reading it in
 * chunks and keeping two numbers per transaction. `expect.fsId` undefined:
 * the file's own (a slave that has not adopted its master's yet).
 */
export async function checkRotatedFile(
  p: Primitives,
  source: RotatedFileSource,
  expect: Omit<LogExpectation, 'fsId'> & { fsId: string | undefined } & RotatedReadOptions,
): Promise<RotatedFileCheck> {
  const fileName = expect.fileName;
  const sizeBytes = source.sizeBytes;
  const cursor = new FrameCursor(p, source, sizeBytes, fileName);
  // A header is at most HEADER_FIXED_BYTES + FS_ID_BYTES_MAX: so many bytes judge it as the whole file would.
  const header = decodeHeader(p, await cursor.peek(Math.min(sizeBytes, HEADER_FIXED_BYTES + FS_ID_BYTES_MAX)), fileName);
  checkHeader(header, { ...expect, fsId: expect.fsId ?? header.fsId }, fileName);
  const trailerOffset = rotatedTrailerOffset(header, sizeBytes, fileName);
  const trailer = decodeTrailer(p, await readTrailer(source, trailerOffset, fileName), { offsetBytes: trailerOffset, fileName });
  cursor.setEnd(trailerOffset);
  cursor.skip(header.sizeBytes);
  let txBlockBytes = 0;
  const assembler = new TransactionAssembler(p, header.firstTxn, {
    blockSizeBytes: header.blockSizeBytes,
    fileName,
    visitRecord: (_frame, record) => {
      if (record.type === FRAME_TYPE.BLOCK) txBlockBytes += record.block.stored.length;
    },
  });
  const options = rotatedFrameOptions(expect.maxFrameBytes);
  const commitCrc32 = new Column(new Uint32Array(16));
  const blockBytes = new Column(new Float64Array(16));
  let frameCount = 0;
  // The whole-file CRC is judged before any frame (as validateRotatedFile
  // does): a frame's fault is thrown only once the CRC is known to hold.
  let fault: ReplogError | undefined;
  while (!cursor.atEnd) {
    const offset = cursor.offsetBytes;
    const seen = await cursor.next(options);
    if (seen.kind !== 'frame') {
      fault = rotatedFrameError(seen, offset, trailerOffset, fileName);
      break;
    }
    let done: Transaction | undefined;
    try {
      done = assembler.accept(seen.frame);
    } catch (err) {
      if (!(err instanceof ReplogError)) throw err;
      fault = err;
      break;
    }
    frameCount++;
    cursor.skip(seen.frame.sizeBytes);
    if (done) {
      commitCrc32.push(done.commitFrame.crc32);
      blockBytes.push(txBlockBytes);
      txBlockBytes = 0;
    }
  }
  checkFileCrc(await cursor.crcToEnd(), trailer, trailerOffset, fileName);
  if (fault) throw fault;
  checkRotatedTotals(assembler, trailer, frameCount, trailerOffset, fileName);
  return { header, trailer, sizeBytes, commitCrc32: commitCrc32.done(), blockBytes: blockBytes.done() };
}

async function readTrailer(source: RotatedFileSource, trailerOffset: number, fileName: string | undefined): Promise<Uint8Array> {
  if (source.whole) return source.whole.subarray(trailerOffset);
  const got = await source.read(trailerOffset, TRAILER_BYTES);
  if (got.length < TRAILER_BYTES) throw shrankError(source.sizeBytes, trailerOffset + got.length, fileName);
  return got;
}

/** Bytes of the slabs that pass 2 copies records into (a slice each cost more: an ArrayBuffer per key and value). */
const RECORD_SLAB_BYTES = 256 * 1024;

/**
 * Copies of records' bytes, packed into slabs. A slab lives while any of its
 * records does (the write cache until the commit): about the transactions
 * not yet committed, as their records need anyway.
 */
class RecordCopier {
  private slab = new Uint8Array(0);
  private used = 0;

  bytes(b: Uint8Array): Uint8Array {
    if (b.length > RECORD_SLAB_BYTES / 8) return b.slice();
    if (this.slab.length - this.used < b.length) {
      this.slab = new Uint8Array(RECORD_SLAB_BYTES);
      this.used = 0;
    }
    const out = this.slab.subarray(this.used, this.used + b.length);
    out.set(b);
    this.used += b.length;
    return out;
  }

  /** A record that owns its bytes (copied out of the reused read buffer). */
  record(r: ReplRecord): ReplRecord {
    if (r.type === FRAME_TYPE.KV) return { type: r.type, kv: { table: r.kv.table, key: this.bytes(r.kv.key), value: r.kv.value && this.bytes(r.kv.value) } };
    // Block bytes go to the data file on their own (issueWrite keeps them until written): not in a shared slab.
    if (r.type === FRAME_TYPE.BLOCK) return { type: r.type, block: { ...r.block, key: this.bytes(r.block.key), stored: r.block.stored.slice() } };
    return r;
  }
}

/**
 * Pass 2: the file's transactions after `afterTxn`, one at a time, read again
 * from `source` (of the same size). Each is compared with pass 1's `check`
 * before it is handed over; the whole-file CRC once all are read. Records
 * own their bytes (views of the file only when it is in memory). Any
 * difference — other bytes, a cut, a damaged frame — is ECHANGED, thrown
 * before a transaction that differs is handed over. With `visitRecord`,
 * every record (whatever `afterTxn`) goes there as it is read, a view valid
 * only during the call, and is not kept: transactions come with empty
 * `records` and `decoded`, and a record's transaction may still turn out
 * changed (a reader that streams a file too large to hold: the dump).
 */
export async function* rotatedTransactions(
  p: Primitives,
  source: RotatedFileSource,
  check: RotatedFileCheck,
  options: RotatedReadOptions & { afterTxn: number; visitRecord?: (frame: Frame, record: ReplRecord) => void },
): AsyncGenerator<Transaction> {
  const fileName = options.fileName;
  const { header, trailer } = check;
  const changed = (what: string): ReplogError => changedError(what, fileName);
  if (source.sizeBytes !== check.sizeBytes) throw changed(`${source.sizeBytes} bytes now, ${check.sizeBytes} when checked`);
  const trailerOffset = check.sizeBytes - TRAILER_BYTES;
  const cursor = new FrameCursor(p, source, trailerOffset, fileName);
  const copier = new RecordCopier();
  const assembler: TransactionAssembler = new TransactionAssembler(p, header.firstTxn, {
    blockSizeBytes: header.blockSizeBytes,
    fileName,
    ownRecord: source.whole || options.visitRecord ? undefined : (r): ReplRecord => (assembler.nextTxn > options.afterTxn ? copier.record(r) : r),
    visitRecord: options.visitRecord,
  });
  try {
    const again = decodeHeader(p, await cursor.peek(header.sizeBytes), fileName);
    if (again.sizeBytes !== header.sizeBytes || again.fsId !== header.fsId || again.sequence !== header.sequence || again.firstTxn !== header.firstTxn || again.blockSizeBytes !== header.blockSizeBytes) {
      throw changed('its header differs');
    }
    cursor.skip(header.sizeBytes);
    const frameOptions = rotatedFrameOptions(options.maxFrameBytes);
    let frameCount = 0;
    while (!cursor.atEnd) {
      const offset = cursor.offsetBytes;
      const seen = await cursor.next(frameOptions);
      if (seen.kind !== 'frame') throw rotatedFrameError(seen, offset, trailerOffset, fileName);
      const done = assembler.accept(seen.frame);
      frameCount++;
      cursor.skip(seen.frame.sizeBytes);
      if (!done) continue;
      const i = done.txn - header.firstTxn;
      if (!(i < check.commitCrc32.length && check.commitCrc32[i] === done.commitFrame.crc32)) throw changed(`txn ${done.txn} is not the one checked`);
      if (done.txn > options.afterTxn) yield done;
    }
    checkRotatedTotals(assembler, trailer, frameCount, trailerOffset, fileName);
    checkFileCrc(await cursor.crcToEnd(), trailer, trailerOffset, fileName);
  } catch (err) {
    if (err instanceof ReplogError && err.code !== 'ECHANGED') throw changed(err.message);
    throw err;
  }
}
