// Replication frames: the unit shared by log files and the wire (DESIGN §4).
//
//   u32 length | u32 crc32 | u8 type | u64 txn | payload        (big-endian)
//
// `length` counts type+txn+payload; the CRC-32 (IEEE) covers the same bytes, so a
// reader knows how far a frame reaches before it can trust it, and a damaged
// length is bounded by the frame size limit instead of swallowing the stream.
// Record payloads are fixed binary layouts (no JSON): they are on every write
// path and a slave must parse exactly what the master meant. See
// docs/replication-log.md for the byte layouts and the invariants.

import { assert, AssertionError } from '../errors.ts';
import type { Primitives } from '../drivers.ts';
import { crc32Combine } from '../crc32-combine.ts';
import { ReplogError } from './errors.ts';

// ---------------------------------------------------------------- limits

/** u32 length + u32 crc32. */
export const FRAME_PREFIX_BYTES = 8;
/** Prefix + u8 type + u64 txn: the smallest frame (empty payload). */
export const FRAME_HEADER_BYTES = 17;
/** Largest payload: far above a 128 KiB block plus its key, small enough to buffer. */
export const FRAME_PAYLOAD_BYTES_MAX = 64 * 1024 * 1024;
/** Largest encoded frame, prefix included; a longer `length` field means corruption. */
export const FRAME_BYTES_MAX = FRAME_HEADER_BYTES + FRAME_PAYLOAD_BYTES_MAX;
/** LMDB's key limit: every replicated key lands in a table. */
export const RECORD_KEY_BYTES_MAX = 1978;
/** BLKSIZE's upper bound (config.ts). */
export const BLOCK_RAW_BYTES_MAX = 128 * 1024;
/** Codecs may expand incompressible data a little; twice the raw size is a generous bound. */
export const BLOCK_STORED_BYTES_MAX = 2 * BLOCK_RAW_BYTES_MAX;
/** Records in one transaction, as one store commit takes at most 2^20 ops (store-rules.ts). */
export const TXN_RECORDS_MAX = 1 << 20;
/** Largest txn id (and any u64 field): integers stay exact in a JS number. */
export const U64_SAFE_MAX = Number.MAX_SAFE_INTEGER;

// ---------------------------------------------------------------- types

/** Frame type numbers: stable, written to files and the wire; never renumber. */
export const FRAME_TYPE = {
  KV: 1,
  BLOCK: 2,
  COMMIT: 3,
  // Only in a live master's replog.dta, never in a rotated file or on the wire:
  // a BLOCK whose stored bytes stay in blockdata.dta (the sender puts them back).
  BLOCKREF: 4,
  // Wire-only, reserved for live replication; never valid in a log file.
  HELLO: 16,
  ACK: 17,
  NAK: 18,
  HEARTBEAT: 19,
  COMMIT_NOW: 20,
} as const;

export type FrameTypeName = keyof typeof FRAME_TYPE;

/** Types a log file may hold. */
export const RECORD_FRAME_TYPES: readonly number[] = Object.freeze([FRAME_TYPE.KV, FRAME_TYPE.BLOCK, FRAME_TYPE.COMMIT]);
/** Types a live master's replog.dta may hold (BLOCKREF stands for a BLOCK; see master-log.ts). */
export const LIVE_LOG_FRAME_TYPES: readonly number[] = Object.freeze([...RECORD_FRAME_TYPES, FRAME_TYPE.BLOCKREF]);
/** Types only the live protocol uses. */
export const WIRE_FRAME_TYPES: readonly number[] = Object.freeze([
  FRAME_TYPE.HELLO,
  FRAME_TYPE.ACK,
  FRAME_TYPE.NAK,
  FRAME_TYPE.HEARTBEAT,
  FRAME_TYPE.COMMIT_NOW,
]);
export const ALL_FRAME_TYPES: readonly number[] = Object.freeze([...LIVE_LOG_FRAME_TYPES, ...WIRE_FRAME_TYPES]);

const TYPE_NAMES = new Map<number, FrameTypeName>(
  (Object.entries(FRAME_TYPE) as Array<[FrameTypeName, number]>).map(([name, id]) => [id, name]),
);

export function frameTypeName(type: number): string {
  return TYPE_NAMES.get(type) ?? `unknown(${type})`;
}

/** Replicated tables by stable id. `block` and `freespace` are local: blocks travel as BLOCK records. */
export const REPL_TABLE_IDS = {
  inode: 1,
  dirent: 2,
  blockmap: 3,
  symlink: 4,
  orphan: 5,
  meta: 6,
} as const;

export type ReplTableName = keyof typeof REPL_TABLE_IDS;

const TABLE_BY_ID = new Map<number, ReplTableName>(
  (Object.entries(REPL_TABLE_IDS) as Array<[ReplTableName, number]>).map(([name, id]) => [id, name]),
);

export function isReplTable(name: string): name is ReplTableName {
  return Object.hasOwn(REPL_TABLE_IDS, name);
}

/** The id of a replicated table; asking for a local table is a bug. */
export function replTableId(name: string): number {
  if (!(isReplTable(name))) throw new AssertionError(`table '${name}' is not replicated (replicated: ${Object.keys(REPL_TABLE_IDS).join(', ')})`);
  return REPL_TABLE_IDS[name];
}

/** The table of an id read from a frame, or undefined when no table has it. */
export function replTableName(id: number): ReplTableName | undefined {
  return TABLE_BY_ID.get(id);
}

/** One decoded frame. `payload` belongs to the frame (a copy, or a view of bytes the caller passed in). */
export interface Frame {
  type: number;
  txn: number;
  payload: Uint8Array;
  /** The frame's stored CRC-32 (already checked). */
  crc32: number;
  /** Where the frame starts in its file or stream. */
  offsetBytes: number;
  /** Encoded size, prefix included. */
  sizeBytes: number;
}

/** KV: a put (`value` set, possibly empty) or a delete (`value` undefined) in a replicated table. */
export interface KvPayload {
  table: ReplTableName;
  key: Uint8Array;
  value: Uint8Array | undefined;
}

/** BLOCK: a block new in this transaction, as stored (`codec` is a Primitives codec id). */
export interface BlockPayload {
  key: Uint8Array;
  codec: number;
  rawLength: number;
  stored: Uint8Array;
}

/** COMMIT: ends transaction `txn` of its frame. */
export interface CommitPayload {
  /** KV and BLOCK records of this txn before the COMMIT. */
  recordCount: number;
  /** The master's next inode number after this transaction. */
  nextIno: number;
  /** CRC-32 over the 4-byte CRC fields of this txn's record frames, in order: binds the COMMIT to exactly those records. */
  framesCrc32: number;
  /** The master's clock at commit (diagnostics: dumps, lag). */
  timeMs: number;
}

/**
 * BLOCKREF: the BLOCK frame the wire carries, with its stored bytes left where
 * the engine wrote them (blockdata.dta at `extentOffsetBytes`). `blockFrameBytes`
 * and `blockFrameCrc32` are the size and CRC-32 of that BLOCK frame: the CRC is
 * what the COMMIT binds, and what the sender checks the extent's bytes against.
 */
export interface BlockRefPayload {
  key: Uint8Array;
  codec: number;
  rawLength: number;
  storedLength: number;
  extentOffsetBytes: number;
  blockFrameBytes: number;
  blockFrameCrc32: number;
}

export type ReplRecord =
  | { type: typeof FRAME_TYPE.KV; kv: KvPayload }
  | { type: typeof FRAME_TYPE.BLOCK; block: BlockPayload }
  | { type: typeof FRAME_TYPE.BLOCKREF; ref: BlockRefPayload };

// ---------------------------------------------------------------- byte helpers

function isU64(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

function isU32(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 0xffffffff;
}

function putU64(view: DataView, offset: number, value: number): void {
  if (!(isU64(value))) throw new AssertionError(`u64 field ${value} is not a safe non-negative integer`);
  view.setUint32(offset, Math.floor(value / 0x100000000));
  view.setUint32(offset + 4, value >>> 0);
}

/** A u64 read as a number, or -1 when it exceeds 2^53 - 1 (never written by us: corruption). */
function getU64(view: DataView, offset: number): number {
  const high = view.getUint32(offset);
  if (high > 0x1fffff) return -1;
  return high * 0x100000000 + view.getUint32(offset + 4);
}

function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function hex32(n: number): string {
  return `0x${(n >>> 0).toString(16).padStart(8, '0')}`;
}

/** Sequential reader of a record payload; every overrun is ERECORD. */
class PayloadReader {
  private pos = 0;
  private readonly view: DataView;
  constructor(
    private readonly bytes: Uint8Array,
    private readonly what: string,
    private readonly offsetBytes: number | undefined,
  ) {
    this.view = viewOf(bytes);
  }
  fail(detail: string): ReplogError {
    return new ReplogError('ERECORD', `${this.what} record: ${detail}`, { offsetBytes: this.offsetBytes });
  }
  private need(n: number, field: string): void {
    if (this.bytes.length - this.pos < n) {
      throw this.fail(`payload of ${this.bytes.length} bytes ends inside ${field} (needs ${n} bytes at payload offset ${this.pos})`);
    }
  }
  u8(field: string): number {
    this.need(1, field);
    return this.view.getUint8(this.pos++);
  }
  u16(field: string): number {
    this.need(2, field);
    const v = this.view.getUint16(this.pos);
    this.pos += 2;
    return v;
  }
  u32(field: string): number {
    this.need(4, field);
    const v = this.view.getUint32(this.pos);
    this.pos += 4;
    return v;
  }
  u64(field: string): number {
    this.need(8, field);
    const v = getU64(this.view, this.pos);
    if (v < 0) throw this.fail(`${field} exceeds 2^53 - 1`);
    this.pos += 8;
    return v;
  }
  bytesOf(n: number, field: string): Uint8Array {
    this.need(n, field);
    const v = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
  end(): void {
    if (this.pos !== this.bytes.length) {
      throw this.fail(`${this.bytes.length - this.pos} trailing bytes after the last field (payload is ${this.bytes.length} bytes, fields end at ${this.pos})`);
    }
  }
}

// ---------------------------------------------------------------- frames

/** Encode one frame of `payloadBytes` bytes whose payload `fill` writes in place (no intermediate copy). */
function buildFrame(p: Primitives, type: number, txn: number, payloadBytes: number, fill: (out: Uint8Array, view: DataView, offset: number) => void): Uint8Array {
  if (!(ALL_FRAME_TYPES.includes(type))) throw new AssertionError(`frame type ${type} is not defined`);
  if (!(isU64(txn))) throw new AssertionError(`frame txn ${txn} is not a safe non-negative integer`);
  if (!(Number.isInteger(payloadBytes) && payloadBytes >= 0 && payloadBytes <= FRAME_PAYLOAD_BYTES_MAX)) throw new AssertionError(`frame payload of ${payloadBytes} bytes exceeds ${FRAME_PAYLOAD_BYTES_MAX}`);
  const out = new Uint8Array(FRAME_HEADER_BYTES + payloadBytes);
  const view = viewOf(out);
  view.setUint32(0, FRAME_HEADER_BYTES - FRAME_PREFIX_BYTES + payloadBytes);
  view.setUint8(8, type);
  putU64(view, 9, txn);
  fill(out, view, FRAME_HEADER_BYTES);
  view.setUint32(4, p.crc32(out.subarray(FRAME_PREFIX_BYTES)));
  return out;
}

export function encodeFrame(p: Primitives, type: number, txn: number, payload: Uint8Array): Uint8Array {
  return buildFrame(p, type, txn, payload.length, (out, _view, offset) => out.set(payload, offset));
}

/** What lies at an offset of a byte range: a whole valid frame, not enough bytes yet, or damage. */
export type FrameInspection =
  | { kind: 'frame'; frame: Frame }
  | { kind: 'incomplete'; neededBytes: number }
  | { kind: 'bad'; error: ReplogError };

export interface InspectOptions {
  /** Largest encoded frame accepted (prefix included). */
  maxFrameBytes: number;
  /** Types accepted; any other is EFRAME. */
  allowedTypes: readonly number[];
  /** Added to offsets so errors and frames name positions in the whole file or stream. */
  baseOffsetBytes?: number;
}

/**
 * Look at the frame starting at `offset` of `bytes` without throwing, so a
 * scanner can tell a torn tail (incomplete or bad) from a valid frame. The
 * length is judged as soon as its 4 bytes are present: a wild length never
 * makes a reader wait for 4 GiB. The returned payload is a view of `bytes`.
 */
export function inspectFrameAt(p: Primitives, bytes: Uint8Array, offset: number, options: InspectOptions): FrameInspection {
  if (!(Number.isInteger(offset) && offset >= 0 && offset <= bytes.length)) throw new AssertionError(`frame offset ${offset} outside 0..${bytes.length}`);
  const at = (options.baseOffsetBytes ?? 0) + offset;
  const available = bytes.length - offset;
  if (available < 4) return { kind: 'incomplete', neededBytes: FRAME_HEADER_BYTES };
  const view = viewOf(bytes);
  const length = view.getUint32(offset);
  const lengthMax = options.maxFrameBytes - FRAME_PREFIX_BYTES;
  if (length < FRAME_HEADER_BYTES - FRAME_PREFIX_BYTES || length > lengthMax) {
    return {
      kind: 'bad',
      error: new ReplogError('EFRAME', `frame length ${length} outside ${FRAME_HEADER_BYTES - FRAME_PREFIX_BYTES}..${lengthMax}`, { offsetBytes: at }),
    };
  }
  const sizeBytes = FRAME_PREFIX_BYTES + length;
  if (available < sizeBytes) return { kind: 'incomplete', neededBytes: sizeBytes };
  const stored = view.getUint32(offset + 4);
  const body = bytes.subarray(offset + FRAME_PREFIX_BYTES, offset + sizeBytes);
  const computed = p.crc32(body);
  if (computed !== stored) {
    return {
      kind: 'bad',
      error: new ReplogError('ECRC', `frame CRC-32 ${hex32(stored)} does not match its ${length} bytes (computed ${hex32(computed)})`, { offsetBytes: at }),
    };
  }
  const type = body[0];
  if (!options.allowedTypes.includes(type)) {
    const known = ALL_FRAME_TYPES.includes(type) ? ` (${frameTypeName(type)} is wire-only)` : '';
    return {
      kind: 'bad',
      error: new ReplogError('EFRAME', `frame type ${type}${known} not allowed here; expected one of ${options.allowedTypes.map((t) => `${t}=${frameTypeName(t)}`).join(', ')}`, {
        offsetBytes: at,
      }),
    };
  }
  const txn = getU64(view, offset + 9);
  if (txn < 0) return { kind: 'bad', error: new ReplogError('EFRAME', 'frame txn exceeds 2^53 - 1', { offsetBytes: at }) };
  return {
    kind: 'frame',
    frame: { type, txn, payload: body.subarray(FRAME_HEADER_BYTES - FRAME_PREFIX_BYTES), crc32: stored, offsetBytes: at, sizeBytes },
  };
}

/**
 * Reassembles frames from a byte stream cut at arbitrary points (TCP reads,
 * file chunks). Errors are sticky: once the stream is damaged nothing after
 * it can be framed, so every later push/next throws the same error. Payloads
 * are copies: the buffer is reused. Bounding `bufferedBytes` (backpressure) is
 * the caller's job; after `next()` returns undefined less than one frame is
 * buffered.
 */
export class FrameDecoder {
  private buf = new Uint8Array(0);
  private start = 0;
  private end = 0;
  /** Stream offset of buf[start]. */
  private consumedBytes: number;
  private failure: ReplogError | undefined;
  private readonly options: InspectOptions;

  constructor(
    private readonly p: Primitives,
    maxFrameBytes: number,
    options: { allowedTypes?: readonly number[]; baseOffsetBytes?: number } = {},
  ) {
    assert(
      Number.isInteger(maxFrameBytes) && maxFrameBytes >= FRAME_HEADER_BYTES && maxFrameBytes <= FRAME_BYTES_MAX,
      `maxFrameBytes ${maxFrameBytes} outside ${FRAME_HEADER_BYTES}..${FRAME_BYTES_MAX}`,
    );
    const allowedTypes = options.allowedTypes ?? ALL_FRAME_TYPES;
    for (const t of allowedTypes) assert(ALL_FRAME_TYPES.includes(t), `allowed frame type ${t} is not defined`);
    this.consumedBytes = options.baseOffsetBytes ?? 0;
    if (!(isU64(this.consumedBytes))) throw new AssertionError(`baseOffsetBytes ${this.consumedBytes} invalid`);
    this.options = { maxFrameBytes, allowedTypes, baseOffsetBytes: 0 };
  }

  get bufferedBytes(): number {
    return this.end - this.start;
  }

  /** Stream offset of the next frame to be returned. */
  get offsetBytes(): number {
    return this.consumedBytes;
  }

  push(chunk: Uint8Array): void {
    if (this.failure) throw this.failure;
    if (chunk.length === 0) return;
    const live = this.end - this.start;
    if (this.buf.length - this.end < chunk.length) {
      const need = live + chunk.length;
      if (this.buf.length >= need && this.start > 0) {
        this.buf.copyWithin(0, this.start, this.end);
      } else {
        const grown = new Uint8Array(Math.max(need, 2 * this.buf.length, 64 * 1024));
        grown.set(this.buf.subarray(this.start, this.end));
        this.buf = grown;
      }
      this.start = 0;
      this.end = live;
    }
    this.buf.set(chunk, this.end);
    this.end += chunk.length;
  }

  /** The next whole frame, or undefined until more bytes arrive. Throws ReplogError ECRC / EFRAME. */
  next(): Frame | undefined {
    if (this.failure) throw this.failure;
    const window = this.buf.subarray(this.start, this.end);
    const seen = inspectFrameAt(this.p, window, 0, this.options);
    if (seen.kind === 'incomplete') return undefined;
    if (seen.kind === 'bad') {
      const e = seen.error;
      this.failure = new ReplogError(e.code, e.detail, { offsetBytes: this.consumedBytes + (e.offsetBytes ?? 0) });
      throw this.failure;
    }
    const frame: Frame = { ...seen.frame, payload: seen.frame.payload.slice(), offsetBytes: this.consumedBytes };
    this.start += frame.sizeBytes;
    this.consumedBytes += frame.sizeBytes;
    if (this.start === this.end) {
      this.start = this.end = 0;
      // Don't pin a 64 MiB buffer after one large frame went through.
      if (this.buf.length > 1024 * 1024) this.buf = new Uint8Array(0);
    }
    return frame;
  }
}

// ---------------------------------------------------------------- KV

function kvBytes(kv: KvPayload): number {
  return 1 + 2 + kv.key.length + 1 + 4 + (kv.value?.length ?? 0);
}

function checkKv(kv: KvPayload): void {
  if (!(isReplTable(kv.table))) throw new AssertionError(`KV table '${kv.table}' is not replicated`);
  if (!(kv.key.length >= 1 && kv.key.length <= RECORD_KEY_BYTES_MAX)) throw new AssertionError(`KV key of ${kv.key.length} bytes outside 1..${RECORD_KEY_BYTES_MAX}`);
  if (!(kvBytes(kv) <= FRAME_PAYLOAD_BYTES_MAX)) throw new AssertionError(`KV record of ${kvBytes(kv)} bytes exceeds a frame`);
}

function writeKv(kv: KvPayload, out: Uint8Array, view: DataView, offset: number): void {
  let o = offset;
  view.setUint8(o, REPL_TABLE_IDS[kv.table]);
  view.setUint16(o + 1, kv.key.length);
  out.set(kv.key, o + 3);
  o += 3 + kv.key.length;
  view.setUint8(o, kv.value === undefined ? 0 : 1);
  view.setUint32(o + 1, kv.value?.length ?? 0);
  if (kv.value !== undefined) out.set(kv.value, o + 5);
}

export function encodeKv(kv: KvPayload): Uint8Array {
  checkKv(kv);
  const out = new Uint8Array(kvBytes(kv));
  writeKv(kv, out, viewOf(out), 0);
  return out;
}

/** Key and value are views of `payload`. */
export function decodeKv(payload: Uint8Array, offsetBytes?: number): KvPayload {
  const r = new PayloadReader(payload, 'KV', offsetBytes);
  const tableId = r.u8('table id');
  const table = replTableName(tableId);
  if (table === undefined) {
    throw r.fail(`unknown table id ${tableId}; expected one of ${Object.entries(REPL_TABLE_IDS).map(([n, id]) => `${id}=${n}`).join(', ')}`);
  }
  const keyLength = r.u16('key length');
  if (keyLength < 1 || keyLength > RECORD_KEY_BYTES_MAX) throw r.fail(`key length ${keyLength} outside 1..${RECORD_KEY_BYTES_MAX}`);
  const key = r.bytesOf(keyLength, 'key');
  const hasValue = r.u8('hasValue');
  if (hasValue > 1) throw r.fail(`hasValue is ${hasValue}, expected 0 or 1`);
  const valueLength = r.u32('value length');
  if (hasValue === 0 && valueLength !== 0) throw r.fail(`a delete carries value length ${valueLength}, expected 0`);
  const value = hasValue === 1 ? r.bytesOf(valueLength, 'value') : undefined;
  r.end();
  return { table, key, value };
}

// ---------------------------------------------------------------- BLOCK

function blockBytes(block: BlockPayload): number {
  return 2 + block.key.length + 1 + 4 + 4 + block.stored.length;
}

function checkBlock(block: BlockPayload): void {
  if (!(block.key.length >= 1 && block.key.length <= RECORD_KEY_BYTES_MAX)) throw new AssertionError(`BLOCK key of ${block.key.length} bytes outside 1..${RECORD_KEY_BYTES_MAX}`);
  if (!(Number.isInteger(block.codec) && block.codec >= 0 && block.codec <= 0xff)) throw new AssertionError(`BLOCK codec ${block.codec} is not a u8`);
  assert(
    Number.isInteger(block.rawLength) && block.rawLength >= 1 && block.rawLength <= BLOCK_RAW_BYTES_MAX,
    `BLOCK raw length ${block.rawLength} outside 1..${BLOCK_RAW_BYTES_MAX}`,
  );
  if (!(block.stored.length <= BLOCK_STORED_BYTES_MAX)) throw new AssertionError(`BLOCK stored length ${block.stored.length} exceeds ${BLOCK_STORED_BYTES_MAX}`);
}

/** The fields a BLOCK and a BLOCKREF start with; returns the offset after them. */
function writeBlockHead(key: Uint8Array, codec: number, rawLength: number, storedLength: number, out: Uint8Array, view: DataView, offset: number): number {
  view.setUint16(offset, key.length);
  out.set(key, offset + 2);
  const o = offset + 2 + key.length;
  view.setUint8(o, codec);
  view.setUint32(o + 1, rawLength);
  view.setUint32(o + 5, storedLength);
  return o + 9;
}

function writeBlock(block: BlockPayload, out: Uint8Array, view: DataView, offset: number): void {
  out.set(block.stored, writeBlockHead(block.key, block.codec, block.rawLength, block.stored.length, out, view, offset));
}

export function encodeBlock(block: BlockPayload): Uint8Array {
  checkBlock(block);
  const out = new Uint8Array(blockBytes(block));
  writeBlock(block, out, viewOf(out), 0);
  return out;
}

/** The fields a BLOCK and a BLOCKREF start with. */
function readBlockHead(r: PayloadReader): { key: Uint8Array; codec: number; rawLength: number; storedLength: number } {
  const keyLength = r.u16('key length');
  if (keyLength < 1 || keyLength > RECORD_KEY_BYTES_MAX) throw r.fail(`key length ${keyLength} outside 1..${RECORD_KEY_BYTES_MAX}`);
  const key = r.bytesOf(keyLength, 'key');
  const codec = r.u8('codec');
  const rawLength = r.u32('raw length');
  if (rawLength < 1 || rawLength > BLOCK_RAW_BYTES_MAX) throw r.fail(`raw length ${rawLength} outside 1..${BLOCK_RAW_BYTES_MAX}`);
  const storedLength = r.u32('stored length');
  if (storedLength > BLOCK_STORED_BYTES_MAX) throw r.fail(`stored length ${storedLength} exceeds ${BLOCK_STORED_BYTES_MAX}`);
  return { key, codec, rawLength, storedLength };
}

/** Key and stored bytes are views of `payload`. The codec id is checked against Primitives by the assembler. */
export function decodeBlock(payload: Uint8Array, offsetBytes?: number): BlockPayload {
  const r = new PayloadReader(payload, 'BLOCK', offsetBytes);
  const { key, codec, rawLength, storedLength } = readBlockHead(r);
  const stored = r.bytesOf(storedLength, 'stored bytes');
  r.end();
  return { key, codec, rawLength, stored };
}

// ---------------------------------------------------------------- BLOCKREF

/** Bytes of a BLOCK frame's header and payload before its stored bytes. */
function blockPrefixBytes(keyBytes: number): number {
  return FRAME_HEADER_BYTES + 2 + keyBytes + 1 + 4 + 4;
}

/** Size of the BLOCK frame for `block` (prefix included). */
export function blockFrameBytes(keyBytes: number, storedBytes: number): number {
  return blockPrefixBytes(keyBytes) + storedBytes;
}

/** The BLOCK frame's header and payload up to its stored bytes; its CRC field is left 0. */
function blockFramePrefix(txn: number, key: Uint8Array, codec: number, rawLength: number, storedLength: number): Uint8Array {
  const out = new Uint8Array(blockPrefixBytes(key.length));
  const view = viewOf(out);
  view.setUint32(0, out.length - FRAME_PREFIX_BYTES + storedLength);
  view.setUint8(8, FRAME_TYPE.BLOCK);
  putU64(view, 9, txn);
  writeBlockHead(key, codec, rawLength, storedLength, out, view, FRAME_HEADER_BYTES);
  return out;
}

/** CRC-32 of the BLOCK frame `encodeRecordFrame` would build, without building it. */
export function blockFrameCrc(p: Primitives, txn: number, block: BlockPayload): number {
  checkBlock(block);
  return blockFrameCrcOf(p, txn, { ...block, storedLength: block.stored.length }, p.crc32(block.stored));
}

/** What a BLOCK says of its block besides the stored bytes. */
export interface BlockHead {
  key: Uint8Array;
  codec: number;
  rawLength: number;
  storedLength: number;
}

/** CRC-32 of the BLOCK frame of `head` whose stored bytes have CRC-32 `storedCrc32` (no pass over them). */
export function blockFrameCrcOf(p: Primitives, txn: number, head: BlockHead, storedCrc32: number): number {
  const prefix = blockFramePrefix(txn, head.key, head.codec, head.rawLength, head.storedLength);
  return crc32Combine(p.crc32(prefix.subarray(FRAME_PREFIX_BYTES)), storedCrc32, head.storedLength);
}

const BLOCKREF_FIXED_BYTES = 2 + 1 + 4 + 4 + 8 + 4 + 4;

/** The BLOCKREF frame standing for `block` (whose bytes lie at `extentOffsetBytes`) in txn. */
export function encodeBlockRefFrame(p: Primitives, txn: number, block: BlockPayload, extentOffsetBytes: number): Uint8Array {
  checkBlock(block);
  return encodeBlockRefFrameOf(p, txn, { ...block, storedLength: block.stored.length }, extentOffsetBytes, blockFrameCrc(p, txn, block));
}

/** The BLOCKREF frame of `head` at `extentOffsetBytes`, whose BLOCK frame has CRC-32 `blockFrameCrc32`. */
export function encodeBlockRefFrameOf(p: Primitives, txn: number, head: BlockHead, extentOffsetBytes: number, blockFrameCrc32: number): Uint8Array {
  if (!(head.key.length >= 1 && head.key.length <= RECORD_KEY_BYTES_MAX)) throw new AssertionError(`BLOCKREF key of ${head.key.length} bytes outside 1..${RECORD_KEY_BYTES_MAX}`);
  if (!(head.rawLength >= 1 && head.rawLength <= BLOCK_RAW_BYTES_MAX && head.storedLength <= BLOCK_STORED_BYTES_MAX)) throw new AssertionError(`BLOCKREF lengths ${head.rawLength}/${head.storedLength} out of range`);
  if (!(isU64(extentOffsetBytes))) throw new AssertionError(`BLOCKREF extent offset ${extentOffsetBytes} invalid`);
  return buildFrame(p, FRAME_TYPE.BLOCKREF, txn, BLOCKREF_FIXED_BYTES + head.key.length, (out, view, offset) => {
    const o = writeBlockHead(head.key, head.codec, head.rawLength, head.storedLength, out, view, offset);
    putU64(view, o, extentOffsetBytes);
    view.setUint32(o + 8, blockFrameBytes(head.key.length, head.storedLength));
    view.setUint32(o + 12, blockFrameCrc32);
  });
}

/** Key is a view of `payload`. */
export function decodeBlockRef(payload: Uint8Array, offsetBytes?: number): BlockRefPayload {
  const r = new PayloadReader(payload, 'BLOCKREF', offsetBytes);
  const { key, codec, rawLength, storedLength } = readBlockHead(r);
  const keyLength = key.length;
  const extentOffsetBytes = r.u64('extent offset');
  const frameBytes = r.u32('BLOCK frame size');
  if (frameBytes !== blockFrameBytes(keyLength, storedLength)) throw r.fail(`BLOCK frame size ${frameBytes} does not match a ${keyLength}-byte key and ${storedLength} stored bytes (${blockFrameBytes(keyLength, storedLength)})`);
  const blockFrameCrc32 = r.u32('BLOCK frame CRC-32');
  r.end();
  return { key, codec, rawLength, storedLength, extentOffsetBytes, blockFrameBytes: frameBytes, blockFrameCrc32 };
}

/**
 * Write into `out` at `offset` the BLOCK frame `ref` stands for, with `stored`
 * (read from the extent) as its bytes and the CRC the BLOCKREF recorded; with
 * `verify`, check the bytes against it first: false when the extent no longer
 * holds what was logged. Unverified, a changed extent makes a frame whose CRC
 * does not match: every reader refuses it (ECRC).
 */
export function writeBlockFrameFromRef(p: Primitives, txn: number, ref: BlockRefPayload, stored: Uint8Array, out: Uint8Array, offset: number, verify = true): boolean {
  if (!(stored.length === ref.storedLength)) throw new AssertionError(`extent bytes ${stored.length} for a BLOCKREF of ${ref.storedLength}`);
  const prefix = blockFramePrefix(txn, ref.key, ref.codec, ref.rawLength, ref.storedLength);
  if (verify && p.crc32(stored, p.crc32(prefix.subarray(FRAME_PREFIX_BYTES))) !== ref.blockFrameCrc32) return false;
  viewOf(prefix).setUint32(4, ref.blockFrameCrc32);
  out.set(prefix, offset);
  out.set(stored, offset + prefix.length);
  return true;
}

// ---------------------------------------------------------------- COMMIT

export const COMMIT_PAYLOAD_BYTES = 4 + 8 + 4 + 8;

function checkCommit(c: CommitPayload): void {
  if (!(Number.isInteger(c.recordCount) && c.recordCount >= 0 && c.recordCount <= TXN_RECORDS_MAX)) throw new AssertionError(`COMMIT record count ${c.recordCount} outside 0..${TXN_RECORDS_MAX}`);
  if (!(isU64(c.nextIno))) throw new AssertionError(`COMMIT nextIno ${c.nextIno} invalid`);
  if (!(isU32(c.framesCrc32))) throw new AssertionError(`COMMIT framesCrc32 ${c.framesCrc32} is not a u32`);
  if (!(isU64(c.timeMs))) throw new AssertionError(`COMMIT timeMs ${c.timeMs} invalid`);
}

function writeCommit(c: CommitPayload, view: DataView, offset: number): void {
  view.setUint32(offset, c.recordCount);
  putU64(view, offset + 4, c.nextIno);
  view.setUint32(offset + 12, c.framesCrc32);
  putU64(view, offset + 16, c.timeMs);
}

export function encodeCommit(c: CommitPayload): Uint8Array {
  checkCommit(c);
  const out = new Uint8Array(COMMIT_PAYLOAD_BYTES);
  writeCommit(c, viewOf(out), 0);
  return out;
}

export function decodeCommit(payload: Uint8Array, offsetBytes?: number): CommitPayload {
  const r = new PayloadReader(payload, 'COMMIT', offsetBytes);
  const recordCount = r.u32('record count');
  if (recordCount > TXN_RECORDS_MAX) throw r.fail(`record count ${recordCount} exceeds ${TXN_RECORDS_MAX}`);
  const nextIno = r.u64('nextIno');
  const framesCrc32 = r.u32('frames CRC-32');
  const timeMs = r.u64('timeMs');
  r.end();
  return { recordCount, nextIno, framesCrc32, timeMs };
}

// ---------------------------------------------------------------- record frames and transactions

export function encodeRecordFrame(p: Primitives, txn: number, record: ReplRecord): Uint8Array {
  if (record.type === FRAME_TYPE.KV) {
    checkKv(record.kv);
    return buildFrame(p, FRAME_TYPE.KV, txn, kvBytes(record.kv), (out, view, offset) => writeKv(record.kv, out, view, offset));
  }
  if (!(record.type === FRAME_TYPE.BLOCK)) throw new AssertionError(`record type ${(record as { type: number }).type} is not KV or BLOCK`);
  checkBlock(record.block);
  return buildFrame(p, FRAME_TYPE.BLOCK, txn, blockBytes(record.block), (out, view, offset) => writeBlock(record.block, out, view, offset));
}

export function encodeCommitFrame(p: Primitives, txn: number, commit: CommitPayload): Uint8Array {
  checkCommit(commit);
  return buildFrame(p, FRAME_TYPE.COMMIT, txn, COMMIT_PAYLOAD_BYTES, (_out, view, offset) => writeCommit(commit, view, offset));
}

/** Folds one record frame's CRC into a transaction's framesCrc32 (start from 0). */
/** CRC-32 (IEEE, reflected) byte table, for folding 4-byte values without a call into zlib. */
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/**
 * p.crc32 of frameCrc32's 4 big-endian bytes, seeded with accumulator (as
 * zlib.crc32(bytes, seed)), computed here: a table step per byte costs less
 * than a buffer and a call per frame.
 */
export function foldFrameCrc(_p: Primitives, accumulator: number, frameCrc32: number): number {
  let c = ~accumulator >>> 0;
  c = CRC_TABLE[(c ^ (frameCrc32 >>> 24)) & 0xff] ^ (c >>> 8);
  c = CRC_TABLE[(c ^ (frameCrc32 >>> 16)) & 0xff] ^ (c >>> 8);
  c = CRC_TABLE[(c ^ (frameCrc32 >>> 8)) & 0xff] ^ (c >>> 8);
  c = CRC_TABLE[(c ^ frameCrc32) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** All frames of one transaction, COMMIT last, ready to append or send. */
export function encodeTransaction(
  p: Primitives,
  txn: number,
  records: readonly ReplRecord[],
  commit: { nextIno: number; timeMs: number },
): Uint8Array[] {
  if (!(txn >= 1 && isU64(txn))) throw new AssertionError(`txn ${txn} must be a safe integer >= 1`);
  if (!(records.length <= TXN_RECORDS_MAX)) throw new AssertionError(`transaction of ${records.length} records exceeds ${TXN_RECORDS_MAX}`);
  const frames: Uint8Array[] = [];
  let framesCrc32 = 0;
  for (const record of records) {
    const frame = encodeRecordFrame(p, txn, record);
    framesCrc32 = p.crc32(frame.subarray(4, 8), framesCrc32);
    frames.push(frame);
  }
  frames.push(encodeCommitFrame(p, txn, { recordCount: records.length, nextIno: commit.nextIno, framesCrc32, timeMs: commit.timeMs }));
  return frames;
}

/** Decode a KV or BLOCK frame; any other type is EFRAME. */
export function decodeRecord(frame: Frame): ReplRecord {
  if (frame.type === FRAME_TYPE.KV) return { type: FRAME_TYPE.KV, kv: decodeKv(frame.payload, frame.offsetBytes) };
  if (frame.type === FRAME_TYPE.BLOCK) return { type: FRAME_TYPE.BLOCK, block: decodeBlock(frame.payload, frame.offsetBytes) };
  if (frame.type === FRAME_TYPE.BLOCKREF) return { type: FRAME_TYPE.BLOCKREF, ref: decodeBlockRef(frame.payload, frame.offsetBytes) };
  throw new ReplogError('EFRAME', `frame type ${frame.type} (${frameTypeName(frame.type)}) is not a KV or BLOCK record`, { offsetBytes: frame.offsetBytes });
}

/** One committed transaction: its records (frames and decoded) and its COMMIT. */
export interface Transaction {
  txn: number;
  /** KV and BLOCK frames, in order; the COMMIT is not among them. */
  records: Frame[];
  /** `records` decoded (views of the frames' payloads). */
  decoded: ReplRecord[];
  commit: CommitPayload;
  commitFrame: Frame;
  /** Offset just past the COMMIT frame. */
  endOffsetBytes: number;
}

export interface AssemblerOptions {
  /** BLOCK raw lengths above it are refused (the file's or the peer's block size). */
  blockSizeBytes?: number;
  /** Named in errors. */
  fileName?: string;
  /** A live master's replog.dta: BLOCKREF records stand for BLOCKs (never in a rotated file or on the wire). */
  allowBlockRefs?: boolean;
  /**
   * For frames whose payload is borrowed (a view of a receive buffer that is
   * reused): called with each record once it is decoded and checked, returns
   * the record to keep, whose bytes must not be views of the payload. The
   * frames kept (pendingRecords, Transaction.records and commitFrame) then
   * carry an empty payload.
   */
  ownRecord?: (record: ReplRecord) => ReplRecord;
  /**
   * Records are handed here once decoded and checked (the frame's and the
   * record's bytes may be views valid only during the call) and not kept:
   * transactions come back with empty `records` and `decoded`, and
   * `pendingRecords` stays empty (`pendingCount` counts them). For a reader
   * that streams a log too large to hold (MasterLog's scan at mount).
   */
  visitRecord?: (frame: Frame, record: ReplRecord) => void;
}

const NO_PAYLOAD = new Uint8Array(0);

/**
 * Groups a sequence of valid frames into transactions and checks their
 * structure: every record carries the expected txn, a COMMIT counts exactly the
 * records before it and binds them by framesCrc32, txn ids rise by one, codec
 * ids are known. Shared by the log file readers and the wire receiver.
 */
export class TransactionAssembler {
  private expected: number;
  private pending: Frame[] = [];
  private pendingDecoded: ReplRecord[] = [];
  private pendingCrc = 0;
  /** Records of the open transaction (pending.length unless they are visited, not kept). */
  private pendingN = 0;
  private readonly codecIds: Set<number>;

  constructor(
    private readonly p: Primitives,
    firstTxn: number,
    private readonly options: AssemblerOptions = {},
  ) {
    if (!(firstTxn >= 1 && isU64(firstTxn))) throw new AssertionError(`first txn ${firstTxn} must be a safe integer >= 1`);
    this.expected = firstTxn;
    this.codecIds = new Set(p.codecs.map((c) => c.id));
  }

  /** The txn the next record or COMMIT must carry. */
  get nextTxn(): number {
    return this.expected;
  }

  /** Records of the open (not yet committed) transaction. */
  get pendingRecords(): readonly Frame[] {
    return this.pending;
  }

  /** How many records the open transaction has (kept or visited). */
  get pendingCount(): number {
    return this.pendingN;
  }

  private fail(code: 'ETXN' | 'ERECORD' | 'EFRAME', detail: string, frame: Frame): ReplogError {
    return new ReplogError(code, detail, { offsetBytes: frame.offsetBytes, fileName: this.options.fileName });
  }

  private tag(err: unknown): unknown {
    if (err instanceof ReplogError && this.options.fileName !== undefined && err.fileName === undefined) return err.withFileName(this.options.fileName);
    return err;
  }

  /** Take the next frame; returns the transaction it completes, if any. */
  accept(frame: Frame): Transaction | undefined {
    if (!RECORD_FRAME_TYPES.includes(frame.type) && !(frame.type === FRAME_TYPE.BLOCKREF && this.options.allowBlockRefs)) {
      const where = frame.type === FRAME_TYPE.BLOCKREF ? ' (BLOCKREF belongs only in a live master\'s replog.dta)' : '';
      throw this.fail('EFRAME', `frame type ${frame.type} (${frameTypeName(frame.type)}) is not a log record here${where}; expected KV, BLOCK or COMMIT`, frame);
    }
    if (frame.txn !== this.expected) {
      const detail =
        this.pendingN > 0
          ? `${frameTypeName(frame.type)} frame carries txn ${frame.txn} inside txn ${this.expected}, which has ${this.pendingN} records and no COMMIT`
          : `${frameTypeName(frame.type)} frame carries txn ${frame.txn}, expected txn ${this.expected} (txn ids rise by exactly 1)`;
      throw this.fail('ETXN', detail, frame);
    }
    if (frame.type !== FRAME_TYPE.COMMIT) {
      if (this.pendingN >= TXN_RECORDS_MAX) {
        throw this.fail('ETXN', `txn ${frame.txn} has more than ${TXN_RECORDS_MAX} records without a COMMIT`, frame);
      }
      let record: ReplRecord;
      try {
        record = decodeRecord(frame);
      } catch (err) {
        throw this.tag(err);
      }
      if (record.type === FRAME_TYPE.BLOCK || record.type === FRAME_TYPE.BLOCKREF) {
        const b = record.type === FRAME_TYPE.BLOCK ? record.block : record.ref;
        if (!this.codecIds.has(b.codec)) {
          throw this.fail('ERECORD', `BLOCK record: unknown codec id ${b.codec}; expected one of ${this.p.codecs.map((c) => `${c.id}=${c.name}`).join(', ')}`, frame);
        }
        const bs = this.options.blockSizeBytes;
        if (bs !== undefined && b.rawLength > bs) {
          throw this.fail('ERECORD', `BLOCK record: raw length ${b.rawLength} exceeds the block size ${bs}`, frame);
        }
      }
      // A BLOCKREF counts as the BLOCK it stands for: the COMMIT binds that frame's CRC.
      this.pendingCrc = foldFrameCrc(this.p, this.pendingCrc, record.type === FRAME_TYPE.BLOCKREF ? record.ref.blockFrameCrc32 : frame.crc32);
      this.pendingN++;
      const visit = this.options.visitRecord;
      if (visit) {
        visit(frame, record);
        return undefined;
      }
      const own = this.options.ownRecord;
      this.pending.push(own ? { ...frame, payload: NO_PAYLOAD } : frame);
      this.pendingDecoded.push(own ? own(record) : record);
      return undefined;
    }
    let commit: CommitPayload;
    try {
      commit = decodeCommit(frame.payload, frame.offsetBytes);
    } catch (err) {
      throw this.tag(err);
    }
    if (commit.recordCount !== this.pendingN) {
      throw this.fail('ETXN', `COMMIT of txn ${frame.txn} counts ${commit.recordCount} records, found ${this.pendingN}`, frame);
    }
    if (commit.framesCrc32 !== this.pendingCrc) {
      throw this.fail(
        'ETXN',
        `COMMIT of txn ${frame.txn} binds records with frames CRC-32 ${hex32(commit.framesCrc32)}, the ${this.pendingN} records before it give ${hex32(this.pendingCrc)}`,
        frame,
      );
    }
    const txn: Transaction = {
      txn: frame.txn,
      records: this.pending,
      decoded: this.pendingDecoded,
      commit,
      commitFrame: this.options.ownRecord ? { ...frame, payload: NO_PAYLOAD } : frame,
      endOffsetBytes: frame.offsetBytes + frame.sizeBytes,
    };
    this.pending = [];
    this.pendingDecoded = [];
    this.pendingCrc = 0;
    this.pendingN = 0;
    this.expected++;
    return txn;
  }
}
