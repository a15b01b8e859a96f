// LZ4 block format (https://github.com/lz4/lz4/blob/dev/doc/lz4_Block_format.md),
// pure TypeScript so core and the simulator share one deterministic codec with no
// native addon. Blocks only: the caller stores the raw length beside the block, so
// the frame format (magic, checksums, block sizes) would be redundant.
//
// Sequence: token (literal length << 4 | match length - 4), [literal length
// extension bytes], literals, offset (u16 LE, 1..65535), [match length extension
// bytes]. The last sequence is literals only. The encoder honours the spec's end
// rules (last 5 bytes are literals, no match starts in the last 12 bytes) so any
// LZ4 decoder accepts its output; the decoder is stricter than it needs to be only
// where safety demands it and accepts any stream that decodes within bounds.

import { assert, FormatError, AssertionError } from '../errors.ts';

const MIN_MATCH = 4;
/** The last match must start at least this many bytes before the end of input. */
const MF_LIMIT = 12;
/** The last bytes of input are always literals. */
const LAST_LITERALS = 5;
const OFFSET_MAX = 65535;
const RUN_MASK = 15;
/** 2^14 slots (64 KiB): more than reference lz4's 4096 because our blocks are up to 128 KiB. */
const HASH_LOG = 14;
/** Reference lz4's acceleration: after 2^6 misses the search step grows by one. */
const SKIP_STRENGTH = 6;
/** Largest input either direction accepts (LZ4 itself allows ~2 GiB; our blocks are 128 KiB). */
export const LZ4_BLOCK_BYTES_MAX = 64 * 1024 * 1024;
/** Output scratch kept between calls up to this size, so 128 KiB blocks do not allocate twice. */
const SCRATCH_KEEP_BYTES_MAX = 1024 * 1024;

/** Worst-case compressed size of n input bytes (LZ4_compressBound). */
export function lz4CompressBound(n: number): number {
  return n + Math.floor(n / 255) + 16;
}

const hashTable = new Int32Array(1 << HASH_LOG);
let scratch = new Uint8Array(lz4CompressBound(128 * 1024));

function hash32(v: number): number {
  return Math.imul(v, -1640531535) >>> (32 - HASH_LOG); // 2654435761, Knuth's multiplicative constant
}

/**
 * Compress one block. Output may be larger than the input for incompressible
 * data (at most lz4CompressBound(src.length)); the caller stores raw then.
 * Synchronous, so the module's hash table and scratch are never shared by two calls.
 */
export function lz4CompressBlock(src: Uint8Array): Uint8Array {
  const n = src.length;
  if (!(n <= LZ4_BLOCK_BYTES_MAX)) throw new AssertionError(`lz4 compress: input ${n} bytes exceeds ${LZ4_BLOCK_BYTES_MAX}`);
  const bound = lz4CompressBound(n);
  let out = scratch;
  if (out.length < bound) {
    out = new Uint8Array(bound);
    if (bound <= SCRATCH_KEEP_BYTES_MAX) scratch = out;
  }
  const sv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const ov = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const outEnd = out.length;
  let op = 0;
  let anchor = 0;

  if (n >= MF_LIMIT + 1) {
    const table = hashTable;
    table.fill(0);
    const mflimitPlusOne = n - MF_LIMIT + 1;
    const matchLimit = n - LAST_LITERALS;
    let ip = 0;
    // Slot value 0 means "position 0", which is a real position: every candidate
    // is verified by comparing bytes, so a stale or default slot is only a miss.
    table[hash32(sv.getInt32(0, true))] = 0;
    ip = 1;
    let forwardH = hash32(sv.getInt32(ip, true));

    outer: for (;;) {
      // Find a match, stepping faster the longer nothing matches.
      let match = 0;
      {
        let forwardIp = ip;
        let step = 1;
        let searchMatchNb = 1 << SKIP_STRENGTH;
        for (;;) {
          const h = forwardH;
          ip = forwardIp;
          forwardIp += step;
          step = searchMatchNb++ >>> SKIP_STRENGTH;
          if (forwardIp > mflimitPlusOne) break outer;
          match = table[h];
          forwardH = hash32(sv.getInt32(forwardIp, true));
          table[h] = ip;
          if (ip - match <= OFFSET_MAX && sv.getInt32(match, true) === sv.getInt32(ip, true)) break;
        }
      }
      // Extend the match backwards over bytes that are still literals.
      while (ip > anchor && match > 0 && src[ip - 1] === src[match - 1]) {
        ip--;
        match--;
      }

      // Literals of this sequence.
      const litLen = ip - anchor;
      let tokenPos = op++;
      if (litLen >= RUN_MASK) {
        out[tokenPos] = RUN_MASK << 4;
        let rest = litLen - RUN_MASK;
        for (; rest >= 255; rest -= 255) out[op++] = 255;
        out[op++] = rest;
      } else {
        out[tokenPos] = litLen << 4;
      }
      if (litLen <= 32 && op + litLen + 8 <= outEnd) {
        // 8 bytes per step, possibly past the literals: the offset written next
        // overwrites them. Reads stay in src since a match follows (ip <= n - 12).
        for (let i = 0; i < litLen; i += 8) {
          ov.setInt32(op + i, sv.getInt32(anchor + i));
          ov.setInt32(op + i + 4, sv.getInt32(anchor + i + 4));
        }
      } else {
        out.set(src.subarray(anchor, ip), op);
      }
      op += litLen;

      for (;;) {
        // Offset, then the match length counted past the 4 bytes already compared.
        const offset = ip - match;
        out[op++] = offset & 0xff;
        out[op++] = offset >>> 8;
        ip += MIN_MATCH;
        let m = match + MIN_MATCH;
        const start = ip;
        while (ip <= matchLimit - 4 && sv.getInt32(ip, true) === sv.getInt32(m, true)) {
          ip += 4;
          m += 4;
        }
        while (ip < matchLimit && src[ip] === src[m]) {
          ip++;
          m++;
        }
        let mlRest = ip - start;
        if (mlRest >= RUN_MASK) {
          out[tokenPos] |= RUN_MASK;
          mlRest -= RUN_MASK;
          for (; mlRest >= 255; mlRest -= 255) out[op++] = 255;
          out[op++] = mlRest;
        } else {
          out[tokenPos] |= mlRest;
        }
        anchor = ip;
        if (ip >= mflimitPlusOne) break outer;

        table[hash32(sv.getInt32(ip - 2, true))] = ip - 2;
        // A match right here needs no literals: chain it straight on.
        const h = hash32(sv.getInt32(ip, true));
        match = table[h];
        table[h] = ip;
        if (ip - match <= OFFSET_MAX && sv.getInt32(match, true) === sv.getInt32(ip, true)) {
          tokenPos = op++;
          out[tokenPos] = 0;
          continue;
        }
        break;
      }
      ip++;
      forwardH = hash32(sv.getInt32(ip, true));
    }
  }

  // Last literals (the whole input when it is too short to hold a match).
  const lastLen = n - anchor;
  if (lastLen >= RUN_MASK) {
    out[op++] = RUN_MASK << 4;
    let rest = lastLen - RUN_MASK;
    for (; rest >= 255; rest -= 255) out[op++] = 255;
    out[op++] = rest;
  } else {
    out[op++] = lastLen << 4;
  }
  out.set(src.subarray(anchor, n), op);
  op += lastLen;
  if (!(op <= bound)) throw new AssertionError(`lz4 compress: wrote ${op} bytes, bound ${bound}`);
  return out.slice(0, op);
}

function corrupt(message: string): FormatError {
  return new FormatError('ECORRUPT', `lz4: corrupt block: ${message}`);
}

/**
 * Decompress one block to exactly rawLength bytes. Any input that does not decode
 * to exactly rawLength bytes within bounds throws FormatError code 'ECORRUPT';
 * reads and writes never leave the buffers, and work is linear in the input and
 * output sizes.
 */
export function lz4DecompressBlock(src: Uint8Array, rawLength: number): Uint8Array {
  const n = src.length;
  if (!Number.isSafeInteger(rawLength) || rawLength < 0 || rawLength > LZ4_BLOCK_BYTES_MAX) {
    throw corrupt(`raw length ${rawLength} out of range 0..${LZ4_BLOCK_BYTES_MAX}`);
  }
  if (n > LZ4_BLOCK_BYTES_MAX) throw corrupt(`input ${n} bytes exceeds ${LZ4_BLOCK_BYTES_MAX}`);
  // Each input byte yields at most 255 output bytes (a length extension byte), so a
  // larger claim is corrupt; checking first avoids allocating for a hostile length.
  if (rawLength > n * 255 + 16) throw corrupt(`raw length ${rawLength} impossible from ${n} input bytes`);
  const out = new Uint8Array(rawLength);
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const sv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  let ip = 0;
  let op = 0;

  for (;;) {
    if (ip >= n) throw corrupt(`input ends without a last (literals-only) sequence, output ${op} of ${rawLength} bytes`);
    const token = src[ip++];

    let litLen = token >>> 4;
    if (litLen === RUN_MASK) {
      for (;;) {
        if (ip >= n) throw corrupt('input ends inside a literal length');
        const b = src[ip++];
        litLen += b;
        if (b !== 255) break;
      }
    }
    if (litLen > n - ip) throw corrupt(`literal run of ${litLen} bytes at input ${ip} passes the end of input (${n})`);
    if (litLen > rawLength - op) throw corrupt(`literal run of ${litLen} bytes at output ${op} passes raw length ${rawLength}`);
    if (litLen <= 32 && ip + litLen + 8 <= n && op + litLen + 8 <= rawLength) {
      // Same over-copy as for matches below: input remains after these literals,
      // so a match follows and overwrites the bytes written past them.
      for (let i = 0; i < litLen; i += 8) {
        dv.setInt32(op + i, sv.getInt32(ip + i));
        dv.setInt32(op + i + 4, sv.getInt32(ip + i + 4));
      }
    } else if (litLen <= 32) {
      for (let i = 0; i < litLen; i++) out[op + i] = src[ip + i];
    } else {
      out.set(src.subarray(ip, ip + litLen), op);
    }
    ip += litLen;
    op += litLen;
    if (ip === n) break; // the last sequence has no match part

    if (n - ip < 2) throw corrupt('input ends inside a match offset');
    const offset = src[ip] | (src[ip + 1] << 8);
    ip += 2;
    if (offset === 0) throw corrupt(`zero match offset at input ${ip - 2}`);
    if (offset > op) throw corrupt(`match offset ${offset} reaches before output start (output at ${op})`);

    let matchLen = token & RUN_MASK;
    if (matchLen === RUN_MASK) {
      for (;;) {
        if (ip >= n) throw corrupt('input ends inside a match length');
        const b = src[ip++];
        matchLen += b;
        if (b !== 255) break;
      }
    }
    matchLen += MIN_MATCH;
    if (matchLen > rawLength - op) throw corrupt(`match of ${matchLen} bytes at output ${op} passes raw length ${rawLength}`);

    const from = op - offset;
    if (matchLen <= 64 && offset >= 8 && op + matchLen + 8 <= rawLength) {
      // Short matches dominate real data. Copy 8 bytes per step (two unaligned
      // 32-bit moves), possibly past the match end: those bytes lie inside `out`
      // and are overwritten by the following sequences. offset >= 8 means each
      // step reads only bytes already written.
      for (let i = 0; i < matchLen; i += 8) {
        dv.setInt32(op + i, dv.getInt32(from + i));
        dv.setInt32(op + i + 4, dv.getInt32(from + i + 4));
      }
    } else if (matchLen <= 64) {
      // Byte at a time is also right for overlapping matches (offset < length).
      for (let i = 0; i < matchLen; i++) out[op + i] = out[from + i];
    } else if (offset >= matchLen) {
      out.copyWithin(op, from, from + matchLen);
    } else {
      // Overlapping match: the output is periodic with period `offset`, so copying
      // everything written since `from` keeps the period while doubling each time.
      const end = op + matchLen;
      let at = op;
      while (at < end) {
        const chunk = Math.min(at - from, end - at);
        out.copyWithin(at, from, from + chunk);
        at += chunk;
      }
    }
    op += matchLen;
  }

  if (op !== rawLength) throw corrupt(`decoded ${op} bytes, expected raw length ${rawLength}`);
  return out;
}
