// Replication log files: `replog.dta` (live: header + frames) and rotated
// `replog.dta-SEQUENCE` (header + frames + trailer). The trailer's whole-file
// CRC is what lets a slave tell a half-copied or damaged file from a complete
// one without trusting file names, sizes or marker files; the header binds a
// file to one filesystem, block size and sequence. Layouts and invariants:
// docs/replication-log.md.

import { assert, AssertionError } from '../errors.ts';
import type { FileHandle, Primitives } from '../drivers.ts';
import { ReplogError } from './errors.ts';
import {
  decodeBlockRef,
  decodeCommit,
  type Frame,
  FRAME_BYTES_MAX,
  type FrameInspection,
  FRAME_HEADER_BYTES,
  FRAME_TYPE,
  foldFrameCrc,
  hex32,
  inspectFrameAt,
  type InspectOptions,
  LIVE_LOG_FRAME_TYPES,
  RECORD_FRAME_TYPES,
  type ReplRecord,
  type Transaction,
  TransactionAssembler,
  U64_SAFE_MAX,
} from './frames.ts';

// ---------------------------------------------------------------- constants

export const LOG_MAGIC = 'LESSFSRL';
export const TRAILER_MAGIC = 'LESSFSRT';
/** Bumped on any layout change; readers refuse versions they do not know. */
export const LOG_FORMAT_VERSION = 1;
export const FS_ID_BYTES_MAX = 255;
export const BLOCK_SIZE_BYTES_MIN = 4096;
export const BLOCK_SIZE_BYTES_MAX = 131072;
/** magic 8 | version 2 | fsIdBytes 2 | (fsId) | blockSize 4 | sequence 8 | firstTxn 8 | crc 4. */
export const HEADER_FIXED_BYTES = 36;
/** magic 8 | lastTxn 8 | frameCount 8 | fileCrc32 4 | crc 4. */
export const TRAILER_BYTES = 32;

const MAGIC_BYTES = new TextEncoder().encode(LOG_MAGIC);
const TRAILER_MAGIC_BYTES = new TextEncoder().encode(TRAILER_MAGIC);
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

// ---------------------------------------------------------------- types

/** What a writer chooses for a new file. */
export interface LogHeaderFields {
  fsId: string;
  blockSizeBytes: number;
  /** The number the file gets when rotated (`replog.dta-SEQUENCE`). */
  sequence: number;
  /** Txn of the first transaction in the file (>= 1); the file may hold none. */
  firstTxn: number;
}

export interface LogHeader extends LogHeaderFields {
  formatVersion: number;
  /** Encoded size: where the first frame starts. */
  sizeBytes: number;
}

export interface LogTrailer {
  /** Last committed txn in the file (firstTxn - 1 when it holds none). */
  lastTxn: number;
  /** Every frame in the file, COMMITs included (the "record count"). */
  frameCount: number;
  /** CRC-32 of every byte before the trailer: header and frames. */
  fileCrc32: number;
}

export interface LogExpectation {
  fsId: string;
  blockSizeBytes: number;
  sequence?: number;
}

// ---------------------------------------------------------------- helpers

function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function putU64(view: DataView, offset: number, value: number): void {
  if (!(Number.isSafeInteger(value) && value >= 0)) throw new AssertionError(`u64 field ${value} is not a safe non-negative integer`);
  view.setUint32(offset, Math.floor(value / 0x100000000));
  view.setUint32(offset + 4, value >>> 0);
}

/** -1 when above 2^53 - 1 (never written by us). */
function getU64(view: DataView, offset: number): number {
  const high = view.getUint32(offset);
  if (high > 0x1fffff) return -1;
  return high * 0x100000000 + view.getUint32(offset + 4);
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  const n = Math.min(bytes.length, prefix.length);
  for (let i = 0; i < n; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

function printable(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`)).join('');
}

function isBlockSize(n: number): boolean {
  return Number.isInteger(n) && n >= BLOCK_SIZE_BYTES_MIN && n <= BLOCK_SIZE_BYTES_MAX && (n & (n - 1)) === 0;
}

// ---------------------------------------------------------------- header

export function encodeHeader(p: Primitives, fields: LogHeaderFields): Uint8Array {
  const fsId = new TextEncoder().encode(fields.fsId);
  if (!(fsId.length >= 1 && fsId.length <= FS_ID_BYTES_MAX)) throw new AssertionError(`fs id of ${fsId.length} bytes outside 1..${FS_ID_BYTES_MAX}`);
  if (!(strictUtf8.decode(fsId) === fields.fsId)) throw new AssertionError(`fs id '${fields.fsId}' does not survive UTF-8 (lone surrogate?)`);
  if (!(isBlockSize(fields.blockSizeBytes))) throw new AssertionError(`block size ${fields.blockSizeBytes} is not a power of two in ${BLOCK_SIZE_BYTES_MIN}..${BLOCK_SIZE_BYTES_MAX}`);
  if (!(fields.firstTxn >= 1)) throw new AssertionError(`first txn ${fields.firstTxn} must be >= 1`);
  const n = fsId.length;
  const out = new Uint8Array(HEADER_FIXED_BYTES + n);
  const view = viewOf(out);
  out.set(MAGIC_BYTES, 0);
  view.setUint16(8, LOG_FORMAT_VERSION);
  view.setUint16(10, n);
  out.set(fsId, 12);
  view.setUint32(12 + n, fields.blockSizeBytes);
  putU64(view, 16 + n, fields.sequence);
  putU64(view, 24 + n, fields.firstTxn);
  view.setUint32(32 + n, p.crc32(out.subarray(0, 32 + n)));
  return out;
}

/** A prefix of a header: `fsIdBytes` once its length field (bytes 10..11) is in it. */
type HeaderInspection = { kind: 'header'; header: LogHeader } | { kind: 'incomplete'; fsIdBytes: number | undefined };

/** Why `lengthBytes` bytes are not a whole header: the size it needs, exact once the fs id's length is known. */
function headerTornText(lengthBytes: number, seen: { fsIdBytes: number | undefined }): string {
  const need =
    seen.fsIdBytes === undefined
      ? `a header is ${HEADER_FIXED_BYTES} bytes plus its fs id, at least ${HEADER_FIXED_BYTES + 1}`
      : `this one needs ${HEADER_FIXED_BYTES + seen.fsIdBytes} bytes: ${HEADER_FIXED_BYTES} plus its ${seen.fsIdBytes}-byte fs id`;
  return `file of ${lengthBytes} bytes ends inside its header (${need})`;
}

/**
 * The header at the start of `bytes`, or the prefix of one. Throws
 * EFORMAT (not a replication log, unknown version, field out of range) and
 * ECRC; a short prefix that is consistent so far is 'incomplete', never an error.
 */
function inspectHeader(p: Primitives, bytes: Uint8Array, fileName: string | undefined): HeaderInspection {
  const fail = (code: 'EFORMAT' | 'ECRC', detail: string, offsetBytes: number): ReplogError => new ReplogError(code, detail, { offsetBytes, fileName });
  if (!startsWith(bytes, MAGIC_BYTES)) {
    throw fail('EFORMAT', `not a lessfs replication log: starts with '${printable(bytes.subarray(0, 8))}', expected magic '${LOG_MAGIC}'`, 0);
  }
  if (bytes.length < 12) return { kind: 'incomplete', fsIdBytes: undefined };
  const view = viewOf(bytes);
  const version = view.getUint16(8);
  if (version !== LOG_FORMAT_VERSION) {
    throw fail('EFORMAT', `format version ${version}, this build reads version ${LOG_FORMAT_VERSION}`, 8);
  }
  const n = view.getUint16(10);
  if (n < 1 || n > FS_ID_BYTES_MAX) throw fail('EFORMAT', `fs id length ${n} outside 1..${FS_ID_BYTES_MAX}`, 10);
  const sizeBytes = HEADER_FIXED_BYTES + n;
  if (bytes.length < sizeBytes) return { kind: 'incomplete', fsIdBytes: n };
  const stored = view.getUint32(32 + n);
  const computed = p.crc32(bytes.subarray(0, 32 + n));
  if (stored !== computed) {
    throw fail('ECRC', `header CRC-32 ${hex32(stored)} does not match its ${32 + n} bytes (computed ${hex32(computed)})`, 32 + n);
  }
  let fsId: string;
  try {
    fsId = strictUtf8.decode(bytes.subarray(12, 12 + n));
  } catch (err) {
    throw fail('EFORMAT', `fs id is not valid UTF-8 (${(err as Error).message})`, 12);
  }
  const blockSizeBytes = view.getUint32(12 + n);
  if (!isBlockSize(blockSizeBytes)) {
    throw fail('EFORMAT', `block size ${blockSizeBytes} is not a power of two in ${BLOCK_SIZE_BYTES_MIN}..${BLOCK_SIZE_BYTES_MAX}`, 12 + n);
  }
  const sequence = getU64(view, 16 + n);
  if (sequence < 0) throw fail('EFORMAT', 'sequence exceeds 2^53 - 1', 16 + n);
  const firstTxn = getU64(view, 24 + n);
  if (firstTxn < 1) throw fail('EFORMAT', `first txn ${firstTxn < 0 ? 'exceeds 2^53 - 1' : '0'}, expected 1..${U64_SAFE_MAX}`, 24 + n);
  return { kind: 'header', header: { formatVersion: version, fsId, blockSizeBytes, sequence, firstTxn, sizeBytes } };
}

/** Decode the header at the start of a file; a file too short for it is ETRUNCATED. */
export function decodeHeader(p: Primitives, bytes: Uint8Array, fileName?: string): LogHeader {
  const seen = inspectHeader(p, bytes, fileName);
  if (seen.kind === 'incomplete') {
    throw new ReplogError('ETRUNCATED', headerTornText(bytes.length, seen), {
      offsetBytes: bytes.length,
      fileName,
    });
  }
  return seen.header;
}

/** Refuse a header from another filesystem, block size or sequence, naming found and expected. */
export function checkHeader(header: LogHeader, expect: LogExpectation, fileName?: string): void {
  if (header.fsId !== expect.fsId) {
    throw new ReplogError('EFSID', `written by filesystem '${header.fsId}', expected this filesystem's id '${expect.fsId}'`, { fileName });
  }
  if (header.blockSizeBytes !== expect.blockSizeBytes) {
    throw new ReplogError('EBLKSIZE', `written with block size ${header.blockSizeBytes}, expected ${expect.blockSizeBytes} (BLKSIZE of this filesystem)`, {
      fileName,
    });
  }
  if (expect.sequence !== undefined && header.sequence !== expect.sequence) {
    throw new ReplogError('ESEQUENCE', `has sequence ${header.sequence}, expected sequence ${expect.sequence}`, { fileName });
  }
}

/**
 * Refuse a rotated file whose name (`replog.dta-N`, N = `nameSequence`) says
 * another sequence than its header: applied under that name it would be
 * taken out of order. No check when the file was not found by such a name.
 */
export function checkNamedSequence(header: LogHeader, nameSequence: number | undefined, fileName?: string): void {
  if (nameSequence === undefined || header.sequence === nameSequence) return;
  throw new ReplogError(
    'ESEQUENCE',
    `the file is named for sequence ${nameSequence} but its header says sequence ${header.sequence} (renamed by hand?); a slave takes it only as replog.dta-${header.sequence}`,
    { fileName },
  );
}

// ---------------------------------------------------------------- trailer

export function encodeTrailer(p: Primitives, trailer: LogTrailer): Uint8Array {
  if (!(Number.isInteger(trailer.fileCrc32) && trailer.fileCrc32 >= 0 && trailer.fileCrc32 <= 0xffffffff)) throw new AssertionError(`file CRC ${trailer.fileCrc32} is not a u32`);
  const out = new Uint8Array(TRAILER_BYTES);
  const view = viewOf(out);
  out.set(TRAILER_MAGIC_BYTES, 0);
  putU64(view, 8, trailer.lastTxn);
  putU64(view, 16, trailer.frameCount);
  view.setUint32(24, trailer.fileCrc32);
  view.setUint32(28, p.crc32(out.subarray(0, 28)));
  return out;
}

/**
 * Decode a trailer (exactly TRAILER_BYTES). Missing magic is ETRUNCATED: at
 * the end of a file it means the file was cut before its trailer was written.
 */
export function decodeTrailer(p: Primitives, bytes: Uint8Array, context: { offsetBytes?: number; fileName?: string } = {}): LogTrailer {
  const base = context.offsetBytes ?? 0;
  if (bytes.length !== TRAILER_BYTES || !startsWith(bytes, TRAILER_MAGIC_BYTES)) {
    throw new ReplogError(
      'ETRUNCATED',
      `no trailer: the last ${TRAILER_BYTES} bytes do not start with '${TRAILER_MAGIC}' (found '${printable(bytes.subarray(0, 8))}'); half-copied or not rotated`,
      { offsetBytes: base, fileName: context.fileName },
    );
  }
  const view = viewOf(bytes);
  const stored = view.getUint32(28);
  const computed = p.crc32(bytes.subarray(0, 28));
  if (stored !== computed) {
    throw new ReplogError('ECRC', `trailer CRC-32 ${hex32(stored)} does not match its 28 bytes (computed ${hex32(computed)})`, {
      offsetBytes: base + 28,
      fileName: context.fileName,
    });
  }
  const lastTxn = getU64(view, 8);
  const frameCount = getU64(view, 16);
  if (lastTxn < 0 || frameCount < 0) {
    throw new ReplogError('EFORMAT', `trailer ${lastTxn < 0 ? 'last txn' : 'frame count'} exceeds 2^53 - 1`, { offsetBytes: base, fileName: context.fileName });
  }
  return { lastTxn, frameCount, fileCrc32: view.getUint32(24) };
}

// ---------------------------------------------------------------- writer state

/**
 * What a log writer must know to append frames and, at rotation, produce the
 * trailer without re-reading the file: size, running CRC-32, frame count, last
 * committed txn, and the open transaction. Feed it the bytes after they are
 * written (a failed write must not advance it). It checks the transaction
 * structure of what it is given: a bad append is a writer bug (AssertionError).
 */
export class LogWriterState {
  readonly header: LogHeader;
  private size: number;
  private crc: number;
  private frames: number;
  private last: number;
  private openRecords = 0;
  private openCrc = 0;

  private constructor(
    private readonly p: Primitives,
    header: LogHeader,
    resume: { sizeBytes: number; fileCrc32: number; frameCount: number; lastTxn: number },
  ) {
    this.header = header;
    this.size = resume.sizeBytes;
    this.crc = resume.fileCrc32;
    this.frames = resume.frameCount;
    this.last = resume.lastTxn;
    if (!(this.size >= header.sizeBytes)) throw new AssertionError(`writer size ${this.size} below the header's ${header.sizeBytes}`);
    if (!(this.last >= header.firstTxn - 1)) throw new AssertionError(`writer last txn ${this.last} before the file's first txn ${header.firstTxn}`);
  }

  /** A new file: write `headerBytes` (and make them durable) before any frame. */
  static create(p: Primitives, fields: LogHeaderFields): { state: LogWriterState; headerBytes: Uint8Array } {
    const headerBytes = encodeHeader(p, fields);
    const header: LogHeader = { ...fields, formatVersion: LOG_FORMAT_VERSION, sizeBytes: headerBytes.length };
    const state = new LogWriterState(p, header, { sizeBytes: headerBytes.length, fileCrc32: p.crc32(headerBytes), frameCount: 0, lastTxn: fields.firstTxn - 1 });
    return { state, headerBytes };
  }

  /** Continue a live log after a scan (scanLiveLog, scanLiveLogFile); the file must first be cut to `scan.committedEndBytes`. */
  static resume(p: Primitives, scan: LiveLogEnd): LogWriterState {
    assert(scan.header !== undefined, 'cannot resume a live log without a header');
    return new LogWriterState(p, scan.header, {
      sizeBytes: scan.committedEndBytes,
      fileCrc32: scan.committedCrc32,
      frameCount: scan.frameCount,
      lastTxn: scan.lastTxn,
    });
  }

  get sizeBytes(): number {
    return this.size;
  }
  get fileCrc32(): number {
    return this.crc;
  }
  get frameCount(): number {
    return this.frames;
  }
  /** Last committed txn (firstTxn - 1 when none). */
  get lastTxn(): number {
    return this.last;
  }
  /** Transactions committed in this file. */
  get transactionCount(): number {
    return this.last - this.header.firstTxn + 1;
  }
  /** True while a transaction has records but no COMMIT yet. */
  get inTransaction(): boolean {
    return this.openRecords > 0;
  }

  /** Account for one encoded frame just written at `sizeBytes`. */
  append(frame: Uint8Array): void {
    if (!(frame.length >= FRAME_HEADER_BYTES)) throw new AssertionError(`frame of ${frame.length} bytes is shorter than a frame header`);
    const view = viewOf(frame);
    if (!(view.getUint32(0) + 8 === frame.length)) throw new AssertionError(`frame length field ${view.getUint32(0)} does not match ${frame.length} bytes`);
    const type = frame[8];
    if (!(LIVE_LOG_FRAME_TYPES.includes(type))) throw new AssertionError(`frame type ${type} does not belong in a log file`);
    const txn = getU64(view, 9);
    if (!(txn === this.last + 1)) throw new AssertionError(`frame txn ${txn} appended after committed txn ${this.last} (expected ${this.last + 1})`);
    if (type === FRAME_TYPE.COMMIT) {
      const commit = decodeCommit(frame.subarray(FRAME_HEADER_BYTES));
      if (!(commit.recordCount === this.openRecords)) throw new AssertionError(`COMMIT of txn ${txn} counts ${commit.recordCount} records, ${this.openRecords} were appended`);
      if (!(commit.framesCrc32 === this.openCrc)) throw new AssertionError(`COMMIT of txn ${txn} frames CRC ${hex32(commit.framesCrc32)} differs from appended ${hex32(this.openCrc)}`);
      this.last = txn;
      this.openRecords = 0;
      this.openCrc = 0;
    } else {
      this.openRecords++;
      // A BLOCKREF counts as the BLOCK it stands for (see frames.ts).
      const bound = type === FRAME_TYPE.BLOCKREF ? decodeBlockRef(frame.subarray(FRAME_HEADER_BYTES)).blockFrameCrc32 : view.getUint32(4);
      this.openCrc = foldFrameCrc(this.p, this.openCrc, bound);
    }
    this.crc = this.p.crc32(frame, this.crc);
    this.size += frame.length;
    this.frames++;
  }

  /** An independent copy (to roll an append back to). */
  clone(): LogWriterState {
    assert(!this.inTransaction, 'clone inside a transaction');
    return new LogWriterState(this.p, this.header, { sizeBytes: this.size, fileCrc32: this.crc, frameCount: this.frames, lastTxn: this.last });
  }

  appendAll(frames: readonly Uint8Array[]): void {
    for (const f of frames) this.append(f);
  }

  /** The trailer that closes this file; only between transactions. */
  trailer(): LogTrailer {
    if (this.inTransaction) throw new AssertionError(`cannot close a log file inside txn ${this.last + 1} (${this.openRecords} records without COMMIT)`);
    return { lastTxn: this.last, frameCount: this.frames, fileCrc32: this.crc };
  }

  encodeTrailer(): Uint8Array {
    return encodeTrailer(this.p, this.trailer());
  }

  /** Header fields of the file that follows this one after rotation. */
  nextHeaderFields(): LogHeaderFields {
    assert(!this.inTransaction, 'cannot rotate inside a transaction');
    return { fsId: this.header.fsId, blockSizeBytes: this.header.blockSizeBytes, sequence: this.header.sequence + 1, firstTxn: this.last + 1 };
  }
}

// ---------------------------------------------------------------- readers

export interface ValidatedLogFile {
  header: LogHeader;
  transactions: Transaction[];
  trailer: LogTrailer;
}

/**
 * Check a rotated file completely before anything from it is applied: header
 * (format, CRC, fs id, block size, sequence), trailer present (else
 * ETRUNCATED), whole-file CRC, every frame, every record, transaction
 * structure, and the trailer's totals. Returns only when all hold.
 * Record payloads in the result are views of `bytes`.
 */
export function validateRotatedFile(
  p: Primitives,
  bytes: Uint8Array,
  expect: LogExpectation & { fileName?: string; maxFrameBytes?: number },
): ValidatedLogFile {
  const fileName = expect.fileName;
  const header = decodeHeader(p, bytes, fileName);
  checkHeader(header, expect, fileName);
  const trailerOffset = rotatedTrailerOffset(header, bytes.length, fileName);
  const trailer = decodeTrailer(p, bytes.subarray(trailerOffset), { offsetBytes: trailerOffset, fileName });
  const content = bytes.subarray(0, trailerOffset);
  checkFileCrc(p.crc32(content), trailer, trailerOffset, fileName);
  const assembler = new TransactionAssembler(p, header.firstTxn, { blockSizeBytes: header.blockSizeBytes, fileName });
  const options = rotatedFrameOptions(expect.maxFrameBytes);
  const transactions: Transaction[] = [];
  let frameCount = 0;
  let offset = header.sizeBytes;
  while (offset < trailerOffset) {
    const seen = inspectFrameAt(p, content, offset, options);
    if (seen.kind !== 'frame') throw rotatedFrameError(seen, offset, trailerOffset, fileName);
    const done = assembler.accept(seen.frame);
    if (done) transactions.push(done);
    frameCount++;
    offset += seen.frame.sizeBytes;
  }
  checkRotatedTotals(assembler, trailer, frameCount, trailerOffset, fileName);
  return { header, transactions, trailer };
}

/** Where a rotated file of `sizeBytes` has its trailer; ETRUNCATED when it has no room for one after its header. */
export function rotatedTrailerOffset(header: LogHeader, sizeBytes: number, fileName: string | undefined): number {
  const trailerOffset = sizeBytes - TRAILER_BYTES;
  if (trailerOffset < header.sizeBytes) {
    throw new ReplogError(
      'ETRUNCATED',
      `file of ${sizeBytes} bytes has room for no trailer after its ${header.sizeBytes}-byte header (a rotated file ends with a ${TRAILER_BYTES}-byte trailer); half-copied?`,
      { offsetBytes: sizeBytes, fileName },
    );
  }
  return trailerOffset;
}

/** The CRC-32 of the bytes before the trailer must be the trailer's. */
export function checkFileCrc(fileCrc: number, trailer: LogTrailer, trailerOffset: number, fileName: string | undefined): void {
  if (fileCrc === trailer.fileCrc32) return;
  throw new ReplogError('ECRC', `whole-file CRC-32 ${hex32(fileCrc)} of the ${trailerOffset} bytes before the trailer, the trailer expects ${hex32(trailer.fileCrc32)}`, {
    offsetBytes: trailerOffset,
    fileName,
  });
}

export function rotatedFrameOptions(maxFrameBytes: number | undefined): InspectOptions {
  return { maxFrameBytes: maxFrameBytes ?? FRAME_BYTES_MAX, allowedTypes: RECORD_FRAME_TYPES, baseOffsetBytes: 0 };
}

/** A rotated file's frame at `offset` is damaged, or cut by the trailer (the bytes end at `trailerOffset`). */
export function rotatedFrameError(seen: Exclude<FrameInspection, { kind: 'frame' }>, offset: number, trailerOffset: number, fileName: string | undefined): ReplogError {
  if (seen.kind === 'incomplete') {
    return new ReplogError('EFRAME', `frame needs ${seen.neededBytes} bytes, only ${trailerOffset - offset} remain before the trailer`, { offsetBytes: offset, fileName });
  }
  return fileName === undefined ? seen.error : seen.error.withFileName(fileName);
}

/** After the last frame: no open transaction, and the trailer's last txn and frame count are the file's. */
export function checkRotatedTotals(assembler: TransactionAssembler, trailer: LogTrailer, frameCount: number, trailerOffset: number, fileName: string | undefined): void {
  if (assembler.pendingCount > 0) {
    throw new ReplogError('ETXN', `txn ${assembler.nextTxn} has ${assembler.pendingCount} records but no COMMIT before the trailer`, {
      offsetBytes: trailerOffset,
      fileName,
    });
  }
  const lastTxn = assembler.nextTxn - 1;
  if (trailer.lastTxn !== lastTxn) {
    throw new ReplogError('ETXN', `trailer names last txn ${trailer.lastTxn}, the file's transactions end at txn ${lastTxn}`, { offsetBytes: trailerOffset, fileName });
  }
  if (trailer.frameCount !== frameCount) {
    throw new ReplogError('ETXN', `trailer counts ${trailer.frameCount} frames, the file holds ${frameCount}`, { offsetBytes: trailerOffset, fileName });
  }
}

/** Why a live log scan stopped before the end of the bytes. */
export interface LiveLogTail {
  /** ETRUNCATED: the bytes end inside a header or frame; EFRAME/ECRC: a damaged frame (a torn write). */
  code: 'ETRUNCATED' | 'EFRAME' | 'ECRC';
  offsetBytes: number;
  detail: string;
}

/** Where the committed part of a scanned live log ends: what a writer resumes from. */
export interface LiveLogEnd {
  /** Undefined when the file is empty or ends inside its header. */
  header: LogHeader | undefined;
  /** End of the last COMMIT (the header's end when none, 0 without a header): cut the file here. */
  committedEndBytes: number;
  /** CRC-32 of bytes [0, committedEndBytes): the writer's running CRC. */
  committedCrc32: number;
  /** Frames in [0, committedEndBytes). */
  frameCount: number;
  /** Last committed txn (header.firstTxn - 1 when none; 0 without a header). */
  lastTxn: number;
  /** Set when bytes follow the last whole frame: torn or damaged; they are past committedEndBytes. */
  tail: LiveLogTail | undefined;
}

export interface LiveLogScan extends LiveLogEnd {
  /** Committed transactions, in order. Payloads are views of the scanned bytes. */
  transactions: Transaction[];
  /** Whole records of a transaction whose COMMIT is missing: logged, never committed. */
  uncommitted: { txn: number; records: Frame[] } | undefined;
}

/**
 * Scan the live `replog.dta` (header + frames, no trailer) as found after a
 * crash. The log is appended and synced in order, so whatever follows the first
 * incomplete or damaged frame was never durable: it is reported in `tail`,
 * not thrown, and the caller cuts at committedEndBytes. A missing COMMIT is
 * `uncommitted`. What does throw: a damaged or foreign header (the header is
 * durable before any frame is written), and structure errors among valid frames
 * (ETXN, ERECORD), which no crash produces.
 */
export function scanLiveLog(p: Primitives, bytes: Uint8Array, options: { fileName?: string; maxFrameBytes?: number } = {}): LiveLogScan {
  const fileName = options.fileName;
  const none = (tail: LiveLogTail | undefined): LiveLogScan => ({
    header: undefined,
    transactions: [],
    committedEndBytes: 0,
    committedCrc32: 0,
    frameCount: 0,
    lastTxn: 0,
    uncommitted: undefined,
    tail,
  });
  if (bytes.length === 0) return none(undefined);
  const seenHeader = inspectHeader(p, bytes, fileName);
  if (seenHeader.kind === 'incomplete') {
    return none({ code: 'ETRUNCATED', offsetBytes: 0, detail: headerTornText(bytes.length, seenHeader) });
  }
  const header = seenHeader.header;
  const assembler = new TransactionAssembler(p, header.firstTxn, { blockSizeBytes: header.blockSizeBytes, fileName, allowBlockRefs: true });
  const frameOptions = { maxFrameBytes: options.maxFrameBytes ?? FRAME_BYTES_MAX, allowedTypes: LIVE_LOG_FRAME_TYPES };
  const transactions: Transaction[] = [];
  let committedEndBytes = header.sizeBytes;
  let framesTotal = 0;
  let frameCount = 0;
  let tail: LiveLogTail | undefined;
  let offset = header.sizeBytes;
  while (offset < bytes.length) {
    const seen = inspectFrameAt(p, bytes, offset, frameOptions);
    if (seen.kind === 'incomplete') {
      tail = { code: 'ETRUNCATED', offsetBytes: offset, detail: `frame needs ${seen.neededBytes} bytes, ${bytes.length - offset} remain` };
      break;
    }
    if (seen.kind === 'bad') {
      tail = { code: seen.error.code as LiveLogTail['code'], offsetBytes: offset, detail: seen.error.detail };
      break;
    }
    const done = assembler.accept(seen.frame);
    framesTotal++;
    offset += seen.frame.sizeBytes;
    if (done) {
      transactions.push(done);
      committedEndBytes = offset;
      frameCount = framesTotal;
    }
  }
  const pending = assembler.pendingRecords;
  return {
    header,
    transactions,
    committedEndBytes,
    committedCrc32: p.crc32(bytes.subarray(0, committedEndBytes)),
    frameCount,
    lastTxn: assembler.nextTxn - 1,
    uncommitted: pending.length > 0 ? { txn: assembler.nextTxn, records: [...pending] } : undefined,
    tail,
  };
}

// ---------------------------------------------------------------- streamed live log scan

/**
 * What a streamed scan hands its caller as it goes (nothing of it is kept by
 * the scan). Bytes in frames and records are views valid only during the call.
 */
export interface LiveLogVisitor {
  /** A record of the transaction being read, decoded and checked; dropped again if no COMMIT follows. */
  record?(frame: Frame, record: ReplRecord): void;
  /** The COMMIT of that transaction (`records` and `decoded` are empty: they went to `record`). */
  commit?(transaction: Transaction): void;
}

/** scanLiveLog's result without the transactions' contents, which a streamed scan visits instead of keeping. */
export interface LiveLogStreamScan extends LiveLogEnd {
  /** Committed transactions. */
  transactionCount: number;
  /** The whole records of a transaction whose COMMIT is missing: logged, never committed. */
  uncommitted: { txn: number; recordCount: number } | undefined;
  /** Where the committed part ended before the last transaction (undefined when none): to drop it without a second scan. */
  beforeLast: Pick<LiveLogEnd, 'committedEndBytes' | 'committedCrc32' | 'frameCount'> | undefined;
}

export interface LiveLogScanOptions {
  /** Named in errors. */
  fileName?: string;
  maxFrameBytes?: number;
  visit?: LiveLogVisitor;
  /** The scanner's buffer is never smaller (64 KiB unless set; tests set it tiny so that every push moves it). */
  bufferMinBytes?: number;
}

/**
 * scanLiveLog over bytes pushed in chunks cut anywhere: it keeps the bytes
 * of at most one frame beyond the chunk being read, and hands each record and
 * COMMIT to a visitor, so a log of any size is scanned in memory of O(chunk +
 * largest frame). It judges a frame only once all its bytes are there (or the
 * input ended), so it finds exactly what scanLiveLog finds over the whole
 * bytes: the same header, transactions, tail (and its offset and detail) and
 * committed end; it throws what scanLiveLog throws. After a damaged frame it
 * ignores the rest (`stopped`: a reader need not read it).
 */
export class LiveLogScanner {
  private buf = new Uint8Array(0);
  /** Unjudged bytes: buf[from, to), at file offset base + from. */
  private from = 0;
  private to = 0;
  private base = 0;
  private header: LogHeader | undefined;
  private assembler: TransactionAssembler | undefined;
  private readonly frameOptions: InspectOptions;
  private readonly bufferMinBytes: number;
  /** CRC-32 of the file's bytes before buf[crcAt] (extended a span at a time: one call per frame cost a third of the scan). */
  private crc = 0;
  private crcAt = 0;
  private framesTotal = 0;
  private committed = { committedEndBytes: 0, committedCrc32: 0, frameCount: 0 };
  private beforeLast: LiveLogStreamScan['beforeLast'];
  private transactionCount = 0;
  private tail: LiveLogTail | undefined;
  private ended = false;

  constructor(
    private readonly p: Primitives,
    private readonly options: LiveLogScanOptions = {},
  ) {
    this.bufferMinBytes = options.bufferMinBytes ?? 64 * 1024;
    assert(Number.isInteger(this.bufferMinBytes) && this.bufferMinBytes >= 1, `scan buffer of ${this.bufferMinBytes} bytes`);
    this.frameOptions = { maxFrameBytes: options.maxFrameBytes ?? FRAME_BYTES_MAX, allowedTypes: LIVE_LOG_FRAME_TYPES, baseOffsetBytes: 0 };
  }

  /** A damaged frame was found: nothing after it matters. */
  get stopped(): boolean {
    return this.tail !== undefined;
  }

  /** The next bytes of the file. Throws what scanLiveLog throws (header, ETXN, ERECORD). */
  push(chunk: Uint8Array): void {
    assert(!this.ended, 'push after end');
    if (this.stopped || chunk.length === 0) return;
    const live = this.to - this.from;
    const need = live + chunk.length;
    this.extendCrc();
    if (this.buf.length < need || this.buf.length > 2 * need + this.bufferMinBytes) {
      // Grown for a long frame, and shrunk again after it: never pinned at a frame's size.
      const fresh = new Uint8Array(Math.max(need + (need >> 3), this.bufferMinBytes));
      fresh.set(this.buf.subarray(this.from, this.to));
      this.buf = fresh;
    } else if (this.buf.length - this.to < chunk.length) {
      this.buf.copyWithin(0, this.from, this.to);
    } else {
      this.buf.set(chunk, this.to);
      this.to += chunk.length;
      this.judge(false);
      return;
    }
    this.base += this.from;
    this.from = 0;
    this.to = live;
    this.crcAt = 0;
    this.buf.set(chunk, this.to);
    this.to += chunk.length;
    this.judge(false);
  }

  /** The input ended: what is left unjudged is the tail. */
  end(): LiveLogStreamScan {
    if (!this.ended) {
      this.ended = true;
      this.judge(true);
    }
    const a = this.assembler;
    if (!this.header || !a) {
      return { header: undefined, committedEndBytes: 0, committedCrc32: 0, frameCount: 0, lastTxn: 0, tail: this.tail, transactionCount: 0, uncommitted: undefined, beforeLast: undefined };
    }
    return {
      header: this.header,
      ...this.committed,
      lastTxn: a.nextTxn - 1,
      tail: this.tail,
      transactionCount: this.transactionCount,
      uncommitted: a.pendingCount > 0 ? { txn: a.nextTxn, recordCount: a.pendingCount } : undefined,
      beforeLast: this.beforeLast,
    };
  }

  /** Take the judged bytes buf[crcAt, from) into the running CRC (before they leave the buffer, and at each COMMIT). */
  private extendCrc(): void {
    if (this.from > this.crcAt) this.crc = this.p.crc32(this.buf.subarray(this.crcAt, this.from), this.crc);
    this.crcAt = this.from;
  }

  private judge(atEnd: boolean): void {
    const bytes = this.buf.subarray(0, this.to);
    if (!this.header) {
      // A header is at most HEADER_FIXED_BYTES + FS_ID_BYTES_MAX: judged with that many bytes, or all there are.
      if (!atEnd && this.to - this.from < HEADER_FIXED_BYTES + FS_ID_BYTES_MAX) return;
      if (this.to === this.from) return; // an empty file
      const seen = inspectHeader(this.p, bytes.subarray(this.from), this.options.fileName);
      if (seen.kind === 'incomplete') {
        this.tail = { code: 'ETRUNCATED', offsetBytes: 0, detail: headerTornText(this.to - this.from, seen) };
        return;
      }
      const header = seen.header;
      this.header = header;
      this.assembler = new TransactionAssembler(this.p, header.firstTxn, {
        blockSizeBytes: header.blockSizeBytes,
        fileName: this.options.fileName,
        allowBlockRefs: true,
        visitRecord: this.options.visit?.record?.bind(this.options.visit) ?? (() => undefined),
      });
      this.from += header.sizeBytes;
      this.extendCrc();
      this.committed = { committedEndBytes: header.sizeBytes, committedCrc32: this.crc, frameCount: 0 };
    }
    const assembler = this.assembler as TransactionAssembler;
    this.frameOptions.baseOffsetBytes = this.base;
    while (this.from < this.to) {
      const seen = inspectFrameAt(this.p, bytes, this.from, this.frameOptions);
      if (seen.kind === 'incomplete') {
        if (atEnd) this.tail = { code: 'ETRUNCATED', offsetBytes: this.base + this.from, detail: `frame needs ${seen.neededBytes} bytes, ${this.to - this.from} remain` };
        return;
      }
      if (seen.kind === 'bad') {
        this.tail = { code: seen.error.code as LiveLogTail['code'], offsetBytes: this.base + this.from, detail: seen.error.detail };
        this.buf = new Uint8Array(0);
        this.from = this.to = this.crcAt = 0;
        return;
      }
      const done = assembler.accept(seen.frame);
      this.framesTotal++;
      this.from += seen.frame.sizeBytes;
      if (done) {
        this.extendCrc();
        this.beforeLast = this.committed;
        this.committed = { committedEndBytes: this.base + this.from, committedCrc32: this.crc, frameCount: this.framesTotal };
        this.transactionCount++;
        this.options.visit?.commit?.(done);
      }
    }
  }
}

/** The scan without its last committed transaction (logged, but the store never committed it). */
export function withoutLastTransaction(scan: LiveLogStreamScan): LiveLogStreamScan {
  assert(scan.beforeLast !== undefined && scan.transactionCount > 0, 'no transaction to drop');
  return { ...scan, ...scan.beforeLast, lastTxn: scan.lastTxn - 1, transactionCount: scan.transactionCount - 1, tail: undefined, uncommitted: undefined, beforeLast: undefined };
}

/** Bytes read per read by scanLiveLogFile unless told otherwise. */
export const LIVE_LOG_SCAN_CHUNK_BYTES = 4 * 1024 * 1024;

/**
 * Scan the first `sizeBytes` of a live log file (as scanLiveLog would scan
 * them read whole) in reads of at most `chunkBytes` into one reused buffer;
 * after a damaged frame the rest is not read. A read shorter than asked ends
 * the file there.
 */
export async function scanLiveLogFile(
  p: Primitives,
  file: Pick<FileHandle, 'read'>,
  sizeBytes: number,
  options: LiveLogScanOptions & { chunkBytes?: number } = {},
): Promise<LiveLogStreamScan> {
  const chunkBytes = options.chunkBytes ?? LIVE_LOG_SCAN_CHUNK_BYTES;
  assert(Number.isInteger(chunkBytes) && chunkBytes >= 1, `scan chunk of ${chunkBytes} bytes`);
  const scanner = new LiveLogScanner(p, options);
  const into = new Uint8Array(Math.min(chunkBytes, sizeBytes));
  for (let at = 0; at < sizeBytes && !scanner.stopped; ) {
    const want = Math.min(chunkBytes, sizeBytes - at);
    const got = await file.read(at, want, into);
    scanner.push(got);
    at += got.length;
    if (got.length < want) break;
  }
  return scanner.end();
}
