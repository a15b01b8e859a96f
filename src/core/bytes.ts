// Byte helpers for core (no Buffer: core stays runtime-neutral).

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: false });

export function utf8(text: string): Uint8Array {
  // Short ASCII text (file names, mostly) byte by byte: TextEncoder gives
  // every result its own off-heap buffer, which costs more than the copy.
  const n = text.length;
  if (n <= 64) {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c >= 0x80) return encoder.encode(text);
      out[i] = c;
    }
    return out;
  }
  return encoder.encode(text);
}

export function fromUtf8(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

const HEX: string[] = [];
for (let i = 0; i < 256; i++) HEX.push(i.toString(16).padStart(2, '0'));

export function toHex(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += HEX[bytes[i]];
  return s;
}

/** A string with one char per byte: a cheap Map key for short byte keys. */
export function binaryKey(bytes: Uint8Array): string {
  // The usual key lengths (inode and group keys, block map keys, SHA-256
  // block keys) with the bytes as plain arguments: several times cheaper than
  // apply() over a typed array.
  switch (bytes.length) {
    case 8:
      return String.fromCharCode(bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7]);
    case 16:
      return chars16(bytes, 0);
    case 32:
      return chars16(bytes, 0) + chars16(bytes, 16);
    default:
      return String.fromCharCode.apply(null, bytes as unknown as number[]);
  }
}

function chars16(b: Uint8Array, o: number): string {
  return String.fromCharCode(b[o], b[o + 1], b[o + 2], b[o + 3], b[o + 4], b[o + 5], b[o + 6], b[o + 7], b[o + 8], b[o + 9], b[o + 10], b[o + 11], b[o + 12], b[o + 13], b[o + 14], b[o + 15]);
}

export function fromHex(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Bytewise comparison, shorter prefix first (LMDB's default order). */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = a[i] - b[i];
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function isZero(bytes: Uint8Array): boolean {
  // 8 bytes at a time where alignment allows: zero blocks are common in backups.
  const n8 = bytes.byteOffset % 8 === 0 ? bytes.length >> 3 : 0;
  if (n8 > 0) {
    const words = new BigUint64Array(bytes.buffer, bytes.byteOffset, n8);
    for (let i = 0; i < n8; i++) if (words[i] !== 0n) return false;
  }
  for (let i = n8 << 3; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** Write a non-negative integer < 2^53 as 8 bytes big-endian. */
export function putU64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, Math.floor(value / 0x100000000));
  view.setUint32(offset + 4, value >>> 0);
}

export function getU64(view: DataView, offset: number): number {
  return view.getUint32(offset) * 0x100000000 + view.getUint32(offset + 4);
}

/**
 * Byte arrays carved out of shared slabs: one ArrayBuffer per `slabBytes`
 * instead of one per array. For records too big for V8's on-heap typed
 * arrays (over 64 bytes) that are made by the thousand and die together
 * (write-cache records, small dirty buffers): each ArrayBuffer of its own costs
 * an allocation, external-memory accounting and a sweep by the collector. A
 * slab is freed once every array in it is unreachable, so only arrays with
 * similar lifetimes belong in one. Arrays come zero-filled.
 */
export class Slabs {
  private slab: ArrayBuffer | undefined;
  private used = 0;

  constructor(private readonly slabBytes: number) {}

  take(n: number): Uint8Array {
    if (n > this.slabBytes / 4) return new Uint8Array(n);
    if (this.slab === undefined || this.used + n > this.slabBytes) {
      this.slab = new ArrayBuffer(this.slabBytes);
      this.used = 0;
    }
    const out = new Uint8Array(this.slab, this.used, n);
    // Keep every array 8-byte aligned (contentEnd reads whole words).
    this.used += (n + 7) & ~7;
    return out;
  }
}

/**
 * Scratch buffers reused from one I/O to the next, sized to what is asked:
 * take(n) gives one of at least n bytes (contents undefined), a kept one if
 * one is big enough, else a new one of n rounded up to a power of two (at
 * least minBytes, at most maxBytes unless n is larger). A stream that reads
 * megabytes at a time soon holds buffers of its chunk size; a node that only
 * ever sends small transactions (the simulator's thousands of short-lived
 * clusters) never zero-fills megabytes it does not use.
 */
export class ScratchBuffers {
  private readonly kept: Uint8Array[] = [];

  constructor(
    private readonly keepMax: number,
    private readonly minBytes: number,
    private readonly maxBytes: number,
  ) {}

  take(n: number): Uint8Array {
    for (let i = this.kept.length - 1; i >= 0; i--) {
      const b = this.kept[i];
      if (b.byteLength >= n) {
        this.kept[i] = this.kept[this.kept.length - 1];
        this.kept.pop();
        return b;
      }
    }
    let size = this.minBytes;
    while (size < n && size < this.maxBytes) size *= 2;
    return new Uint8Array(Math.max(n, Math.min(size, this.maxBytes)));
  }

  /** Keep buf (a buffer take() gave) for a later take(); when full, the smallest kept one goes. */
  give(buf: Uint8Array): void {
    if (this.kept.length < this.keepMax) {
      this.kept.push(buf);
      return;
    }
    let smallest = 0;
    for (let i = 1; i < this.kept.length; i++) if (this.kept[i].byteLength < this.kept[smallest].byteLength) smallest = i;
    if (this.kept[smallest].byteLength < buf.byteLength) this.kept[smallest] = buf;
  }

  get keptCount(): number {
    return this.kept.length;
  }
}

const f64 = new Float64Array(1);
const f64Bytes = new Uint8Array(f64.buffer);
const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A float64, big-endian, into bytes at offset (as DataView.setFloat64). */
export function writeF64(bytes: Uint8Array, offset: number, value: number): void {
  f64[0] = value;
  if (littleEndian) for (let i = 0; i < 8; i++) bytes[offset + i] = f64Bytes[7 - i];
  else for (let i = 0; i < 8; i++) bytes[offset + i] = f64Bytes[i];
}

/** A big-endian float64 of bytes at offset (as DataView.getFloat64). */
export function readF64(bytes: Uint8Array, offset: number): number {
  if (littleEndian) for (let i = 0; i < 8; i++) f64Bytes[7 - i] = bytes[offset + i];
  else for (let i = 0; i < 8; i++) f64Bytes[i] = bytes[offset + i];
  return f64[0];
}

// The byte-array forms below write and read bytes directly: a DataView over a
// small Uint8Array makes V8 move its bytes off the heap first (`.buffer`), which
// made key building a few percent of a metadata-heavy workload's CPU time.

/** putU64 into bytes at offset. */
export function writeU64(bytes: Uint8Array, offset: number, value: number): void {
  if (offset < 0 || offset + 8 > bytes.length) throw new RangeError(`offset ${offset} is outside the ${bytes.length} bytes`);
  const hi = Math.floor(value / 0x100000000);
  const lo = value >>> 0;
  bytes[offset] = hi >>> 24;
  bytes[offset + 1] = hi >>> 16;
  bytes[offset + 2] = hi >>> 8;
  bytes[offset + 3] = hi;
  bytes[offset + 4] = lo >>> 24;
  bytes[offset + 5] = lo >>> 16;
  bytes[offset + 6] = lo >>> 8;
  bytes[offset + 7] = lo;
}

/** A 4-byte big-endian unsigned integer into bytes at offset. */
export function writeU32(bytes: Uint8Array, offset: number, value: number): void {
  if (offset < 0 || offset + 4 > bytes.length) throw new RangeError(`offset ${offset} is outside the ${bytes.length} bytes`);
  bytes[offset] = value >>> 24;
  bytes[offset + 1] = value >>> 16;
  bytes[offset + 2] = value >>> 8;
  bytes[offset + 3] = value;
}

export function readU32(bytes: Uint8Array, offset: number): number {
  if (offset < 0 || offset + 4 > bytes.length) throw new RangeError(`offset ${offset} is outside the ${bytes.length} bytes`);
  return ((bytes[offset] << 24) | (bytes[offset + 1] << 16) | (bytes[offset + 2] << 8) | bytes[offset + 3]) >>> 0;
}

export function u64(value: number): Uint8Array {
  const out = new Uint8Array(8);
  writeU64(out, 0, value);
  return out;
}

export function readU64(bytes: Uint8Array, offset = 0): number {
  return readU32(bytes, offset) * 0x100000000 + readU32(bytes, offset + 4);
}

export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
}

/** The smallest key greater than every key with this prefix (undefined: none). */
export function prefixEnd(prefix: Uint8Array): Uint8Array | undefined {
  const out = prefix.slice();
  for (let i = out.length - 1; i >= 0; i--) {
    if (out[i] !== 0xff) {
      out[i]++;
      return out.subarray(0, i + 1);
    }
  }
  return undefined;
}
