// The live replication protocol's bytes (docs/replication-protocol.md): the
// handshake (HELLO in three stages), ACK / NAK / HEARTBEAT / COMMIT_NOW
// payloads, the MAC that follows every frame on an authenticated link, and the
// RESYNC marker a master sends after a NAK so the slave can find frame
// boundaries again in a stream whose framing a corrupted length broke.
//
// Record frames (KV, BLOCK, COMMIT) travel exactly as they are in replog.dta.

import { concat, equalBytes, utf8 } from '../bytes.ts';
import type { Primitives } from '../drivers.ts';
import { assert, AssertionError } from '../errors.ts';
import { ReplogError } from './errors.ts';
import { ALL_FRAME_TYPES, encodeFrame, FRAME_TYPE, inspectFrameAt, type Frame } from './frames.ts';

export const PROTOCOL_VERSION = 1;
/** Largest frame on the wire: a BLOCK record of 128 KiB stored at up to 2x, with its key. */
export const WIRE_FRAME_BYTES_MAX = 1024 * 1024;
export const NONCE_BYTES = 16;
export const PROOF_BYTES = 32;
export const MAC_BYTES = 16;
/** Bytes buffered from a peer before it is judged broken (a frame and its MAC fit many times). */
export const WIRE_BUFFER_BYTES_MAX = 4 * WIRE_FRAME_BYTES_MAX;
const MESSAGE_CHARS_MAX = 1000;

const RESYNC_MAGIC = utf8('LESSFS-RESYNC-v1');
export const RESYNC_BYTES = RESYNC_MAGIC.length + 8;

// ---------------------------------------------------------------- payloads

class Writer {
  private readonly parts: Uint8Array[] = [];
  u8(v: number): this {
    this.parts.push(Uint8Array.of(v));
    return this;
  }
  u16(v: number): this {
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, v);
    this.parts.push(b);
    return this;
  }
  u32(v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v);
    this.parts.push(b);
    return this;
  }
  u64(v: number): this {
    if (!(Number.isSafeInteger(v) && v >= 0)) throw new AssertionError(`u64 ${v}`);
    const b = new Uint8Array(8);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, Math.floor(v / 0x100000000));
    dv.setUint32(4, v >>> 0);
    this.parts.push(b);
    return this;
  }
  bytes8(b: Uint8Array): this {
    if (!(b.length <= 255)) throw new AssertionError(`field of ${b.length} bytes`);
    this.u8(b.length);
    this.parts.push(b);
    return this;
  }
  text16(s: string): this {
    const b = utf8(s.slice(0, MESSAGE_CHARS_MAX));
    this.u16(b.length);
    this.parts.push(b);
    return this;
  }
  done(): Uint8Array {
    return concat(...this.parts);
  }
}

class Reader {
  private o = 0;
  private readonly view: DataView;
  constructor(
    private readonly b: Uint8Array,
    private readonly what: string,
  ) {
    this.view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  }
  private need(n: number, field: string): void {
    if (this.o + n > this.b.length) throw new ReplogError('ERECORD', `${this.what}: payload ends inside ${field} (${this.b.length} bytes)`);
  }
  u8(field: string): number {
    this.need(1, field);
    return this.b[this.o++];
  }
  u16(field: string): number {
    this.need(2, field);
    const v = this.view.getUint16(this.o);
    this.o += 2;
    return v;
  }
  u32(field: string): number {
    this.need(4, field);
    const v = this.view.getUint32(this.o);
    this.o += 4;
    return v;
  }
  u64(field: string): number {
    this.need(8, field);
    const hi = this.view.getUint32(this.o);
    const lo = this.view.getUint32(this.o + 4);
    this.o += 8;
    if (hi > 0x1fffff) throw new ReplogError('ERECORD', `${this.what}: ${field} exceeds 2^53 - 1`);
    return hi * 0x100000000 + lo;
  }
  bytes8(field: string): Uint8Array {
    const n = this.u8(`${field} length`);
    this.need(n, field);
    const v = this.b.slice(this.o, this.o + n);
    this.o += n;
    return v;
  }
  text16(field: string): string {
    const n = this.u16(`${field} length`);
    this.need(n, field);
    const v = new TextDecoder().decode(this.b.subarray(this.o, this.o + n));
    this.o += n;
    return v;
  }
  end(): void {
    if (this.o !== this.b.length) throw new ReplogError('ERECORD', `${this.what}: ${this.b.length - this.o} bytes after the last field`);
  }
}

/** Stage 1, master to slave. */
export interface Hello1 {
  stage: 1;
  version: number;
  blockSizeBytes: number;
  fsId: string;
  nonce: Uint8Array;
  /** The master has a secret configured and will prove it. */
  auth: boolean;
}

/** Stage 2, slave to master: accepted (with its position) or refused (with why). */
export interface Hello2 {
  stage: 2;
  version: number;
  refused: boolean;
  message: string;
  /** Last master txn durable on the slave. */
  durableTxn: number;
  /** Last master txn applied on the slave (in its write cache, not yet committed). */
  appliedTxn: number;
  /** The master fs id the slave has adopted ('' before its first transaction). */
  fsId: string;
  nonce: Uint8Array;
  /** HMAC proof of the secret (empty without one). */
  proof: Uint8Array;
}

/** Stage 3, master to slave. */
export interface Hello3 {
  stage: 3;
  proof: Uint8Array;
}

export type Hello = Hello1 | Hello2 | Hello3;

export function encodeHello(h: Hello): Uint8Array {
  const w = new Writer().u16(PROTOCOL_VERSION).u8(h.stage);
  if (h.stage === 1) return w.u32(h.blockSizeBytes).bytes8(utf8(h.fsId)).bytes8(h.nonce).u8(h.auth ? 1 : 0).done();
  if (h.stage === 2) {
    return w.u8(h.refused ? 1 : 0).text16(h.message).u64(h.durableTxn).u64(h.appliedTxn).bytes8(utf8(h.fsId)).bytes8(h.nonce).bytes8(h.proof).done();
  }
  return w.bytes8(h.proof).done();
}

/** A HELLO payload; a version other than ours is EVERSION-like ERECORD naming both. */
export function decodeHello(payload: Uint8Array): Hello {
  const r = new Reader(payload, 'HELLO');
  const version = r.u16('version');
  if (version !== PROTOCOL_VERSION) {
    throw new ReplogError('EFORMAT', `HELLO of protocol version ${version}; this lessfs-ts speaks version ${PROTOCOL_VERSION}`);
  }
  const stage = r.u8('stage');
  let h: Hello;
  if (stage === 1) {
    h = { stage, version, blockSizeBytes: r.u32('block size'), fsId: new TextDecoder().decode(r.bytes8('fs id')), nonce: r.bytes8('nonce'), auth: r.u8('auth') === 1 };
  } else if (stage === 2) {
    h = {
      stage,
      version,
      refused: r.u8('refused') === 1,
      message: r.text16('message'),
      durableTxn: r.u64('durable txn'),
      appliedTxn: r.u64('applied txn'),
      fsId: new TextDecoder().decode(r.bytes8('fs id')),
      nonce: r.bytes8('nonce'),
      proof: r.bytes8('proof'),
    };
  } else if (stage === 3) {
    h = { stage, proof: r.bytes8('proof') };
  } else {
    throw new ReplogError('ERECORD', `HELLO stage ${stage}; expected 1, 2 or 3`);
  }
  r.end();
  return h;
}

/** ACK, slave to master: durable and applied positions; `committed` answers a COMMIT_NOW. */
export interface AckPayload {
  appliedTxn: number;
  committed: boolean;
  /** Bytes of transaction appliedTxn + 1 received so far (the send window moves inside a large transaction). */
  pendingBytes: number;
  /** The COMMIT_NOW request this ACK answers (with committed), else the last one answered. */
  commitId: number;
}

export function encodeAck(a: AckPayload): Uint8Array {
  return new Writer().u64(a.appliedTxn).u8(a.committed ? 1 : 0).u64(a.pendingBytes).u64(a.commitId).done();
}

export function decodeAck(payload: Uint8Array): AckPayload {
  const r = new Reader(payload, 'ACK');
  const a = { appliedTxn: r.u64('applied txn'), committed: r.u8('committed') === 1, pendingBytes: r.u64('pending bytes'), commitId: r.u64('commit id') };
  r.end();
  return a;
}

/** COMMIT_NOW: the request's id, echoed by the ACK that answers it. */
export function encodeCommitNow(id: number): Uint8Array {
  return new Writer().u64(id).done();
}

export function decodeCommitNow(payload: Uint8Array): number {
  const r = new Reader(payload, 'COMMIT_NOW');
  const id = r.u64('id');
  r.end();
  return id;
}

export function encodeText(message: string): Uint8Array {
  return new Writer().text16(message).done();
}

export function decodeText(payload: Uint8Array, what: string): string {
  const r = new Reader(payload, what);
  const t = r.text16('message');
  r.end();
  return t;
}

/** HEARTBEAT, master to slave: the master's clock (lag on the slave's status). */
export function encodeHeartbeat(timeMs: number): Uint8Array {
  return new Writer().u64(Math.max(0, Math.floor(timeMs))).done();
}

export function decodeHeartbeat(payload: Uint8Array): number {
  const r = new Reader(payload, 'HEARTBEAT');
  const t = r.u64('time');
  r.end();
  return t;
}

// ---------------------------------------------------------------- authentication

export function slaveProof(p: Primitives, secret: Uint8Array, nonceM: Uint8Array, nonceS: Uint8Array): Uint8Array {
  return p.hmac('sha256', secret, concat(utf8('lessfs-slave'), nonceM, nonceS));
}

export function masterProof(p: Primitives, secret: Uint8Array, nonceM: Uint8Array, nonceS: Uint8Array): Uint8Array {
  return p.hmac('sha256', secret, concat(utf8('lessfs-master'), nonceS, nonceM));
}

export function sessionKey(p: Primitives, secret: Uint8Array, nonceM: Uint8Array, nonceS: Uint8Array): Uint8Array {
  return p.hmac('sha256', secret, concat(utf8('lessfs-session'), nonceM, nonceS));
}

/** Constant-time enough for 32 bytes: no early exit. */
export function proofsEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

function frameMac(p: Primitives, key: Uint8Array, epoch: number, seq: number, frame: Uint8Array): Uint8Array {
  const head = new Uint8Array(12);
  const dv = new DataView(head.buffer);
  dv.setUint32(0, epoch);
  dv.setUint32(4, Math.floor(seq / 0x100000000));
  dv.setUint32(8, seq >>> 0);
  return p.hmac('sha256', key, concat(head, frame)).subarray(0, MAC_BYTES);
}

// ---------------------------------------------------------------- streams

/** Frames out, each followed by its MAC on an authenticated link. */
export class WireOut {
  private seq = 0;
  private epoch = 0;
  macKey: Uint8Array | undefined;

  constructor(private readonly p: Primitives) {}

  /** Encoded bytes of one frame built here. */
  frame(type: number, txn: number, payload: Uint8Array): Uint8Array {
    return this.raw(encodeFrame(this.p, type, txn, payload));
  }

  /** An encoded frame (as read from the log) with its MAC. */
  raw(frame: Uint8Array): Uint8Array {
    if (!this.macKey) return frame;
    const mac = frameMac(this.p, this.macKey, this.epoch, this.seq++, frame);
    return concat(frame, mac);
  }

  get authenticated(): boolean {
    return this.macKey !== undefined;
  }

  /** The marker after which the peer frames again; MAC sequence numbers restart under the new epoch. */
  resync(epoch: number): Uint8Array {
    this.epoch = epoch;
    this.seq = 0;
    const out = new Uint8Array(RESYNC_BYTES);
    out.set(RESYNC_MAGIC);
    const dv = new DataView(out.buffer);
    dv.setUint32(RESYNC_MAGIC.length, epoch);
    dv.setUint32(RESYNC_MAGIC.length + 4, this.p.crc32(out.subarray(0, RESYNC_MAGIC.length + 4)));
    return out;
  }
}

/**
 * Frames in from a byte stream: framing, CRC, allowed types, the MAC of each
 * frame on an authenticated link, and resynchronisation after a NAK. Errors
 * (ReplogError ECRC, EFRAME, EMAC as ECRC with "MAC") are thrown by `next()`;
 * the caller NAKs and calls `resync(epoch)`, after which everything up to
 * the master's RESYNC marker of that epoch is skipped.
 */
export class WireIn {
  private buf = new Uint8Array(64 * 1024);
  private start = 0;
  private end = 0;
  private seq = 0;
  private epoch = 0;
  private awaitingEpoch: number | undefined;
  macKey: Uint8Array | undefined;
  /** Bytes received in all. */
  receivedBytes = 0;

  constructor(
    private readonly p: Primitives,
    private readonly allowedTypes: readonly number[] = ALL_FRAME_TYPES,
    /** Largest frame accepted from this peer (a slave sends only small ones). */
    private readonly maxFrameBytes = WIRE_FRAME_BYTES_MAX,
  ) {}

  get buffered(): number {
    return this.end - this.start;
  }

  push(chunk: Uint8Array): void {
    this.receivedBytes += chunk.length;
    const live = this.end - this.start;
    if (live + chunk.length > WIRE_BUFFER_BYTES_MAX) {
      throw new ReplogError('EFRAME', `peer sent ${live + chunk.length} bytes without a whole frame (limit ${WIRE_BUFFER_BYTES_MAX})`);
    }
    if (this.buf.length - this.end < chunk.length) {
      const need = live + chunk.length;
      const next = this.buf.length >= need ? this.buf : new Uint8Array(Math.max(need, 2 * this.buf.length));
      if (next === this.buf) this.buf.copyWithin(0, this.start, this.end);
      else next.set(this.buf.subarray(this.start, this.end));
      this.buf = next;
      this.start = 0;
      this.end = live;
    }
    this.buf.set(chunk, this.end);
    this.end += chunk.length;
  }

  /** Skip everything until the RESYNC marker of `epoch`. */
  resync(epoch: number): void {
    this.awaitingEpoch = epoch;
  }

  get resyncing(): boolean {
    return this.awaitingEpoch !== undefined;
  }

  private findMarker(): boolean {
    const want = this.awaitingEpoch as number;
    const window = this.buf.subarray(this.start, this.end);
    for (let i = 0; i + RESYNC_BYTES <= window.length; i++) {
      if (window[i] !== RESYNC_MAGIC[0] || !equalBytes(window.subarray(i, i + RESYNC_MAGIC.length), RESYNC_MAGIC)) continue;
      const dv = new DataView(window.buffer, window.byteOffset + i, RESYNC_BYTES);
      const epoch = dv.getUint32(RESYNC_MAGIC.length);
      const crc = dv.getUint32(RESYNC_MAGIC.length + 4);
      if (crc !== this.p.crc32(window.subarray(i, i + RESYNC_MAGIC.length + 4)) || epoch !== want) continue;
      this.start += i + RESYNC_BYTES;
      this.awaitingEpoch = undefined;
      this.epoch = epoch;
      this.seq = 0;
      return true;
    }
    // Keep what could be the start of a marker.
    this.start = Math.max(this.start, this.end - (RESYNC_BYTES - 1));
    return false;
  }

  /** The next whole (and authentic) frame, or undefined until more bytes arrive. Its payload is the frame's own copy. */
  next(): Frame | undefined {
    const f = this.nextBorrowed();
    return f && { ...f, payload: f.payload.slice() };
  }

  /**
   * As next(), but the payload is a view of this stream's receive buffer,
   * valid only until the next push(): a caller that keeps any of it copies
   * that part (the slave copies a block's bytes once, into a recycled buffer).
   */
  nextBorrowed(): Frame | undefined {
    if (this.awaitingEpoch !== undefined && !this.findMarker()) return undefined;
    const window = this.buf.subarray(this.start, this.end);
    const seen = inspectFrameAt(this.p, window, 0, { maxFrameBytes: this.maxFrameBytes, allowedTypes: this.allowedTypes });
    if (seen.kind === 'incomplete') return undefined;
    if (seen.kind === 'bad') throw seen.error;
    const f = seen.frame;
    let size = f.sizeBytes;
    if (this.macKey) {
      if (window.length < size + MAC_BYTES) return undefined;
      const expect = frameMac(this.p, this.macKey, this.epoch, this.seq, window.subarray(0, size));
      if (!proofsEqual(expect, window.subarray(size, size + MAC_BYTES))) {
        throw new ReplogError('ECRC', `frame MAC mismatch (${FRAME_TYPE_NAMES[f.type] ?? f.type} txn ${f.txn}): not from the authenticated peer, or damaged`);
      }
      this.seq++;
      size += MAC_BYTES;
    }
    this.start += size;
    if (this.start === this.end) this.start = this.end = 0;
    return f;
  }
}

const FRAME_TYPE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(FRAME_TYPE).map(([k, v]) => [v, k]));
