// CRC-32 (IEEE, as zlib) of a concatenation from the CRCs of its parts:
// crc(A || B) = shift(crc(A), |B|) ^ crc(B), where shift advances a CRC over
// |B| zero bytes — a linear map over GF(2), a 32x32 bit matrix (zlib's
// crc32_combine). The matrix for a length is built by repeated squaring and
// kept: a live master combines the CRC of every new block's stored bytes
// (computed once, when the block is stored) with its frame header's, and
// blocks mostly share a few lengths.

const POLY = 0xedb88320;
const CACHE_MAX = 256;
const operators = new Map<number, Uint32Array>();

function times(mat: Uint32Array, vec: number): number {
  let sum = 0;
  for (let i = 0; vec !== 0; i++, vec >>>= 1) if (vec & 1) sum ^= mat[i];
  return sum >>> 0;
}

/** a after b. */
function compose(a: Uint32Array, b: Uint32Array): Uint32Array {
  const out = new Uint32Array(32);
  for (let n = 0; n < 32; n++) out[n] = times(a, b[n]);
  return out;
}

/** The operator that advances a CRC over `bytes` zero bytes. */
function shiftOperator(bytes: number): Uint32Array {
  const cached = operators.get(bytes);
  if (cached) return cached;
  // One zero bit, then squared to 2, 4 and 8 bits.
  let op: Uint32Array = new Uint32Array(32);
  op[0] = POLY;
  for (let n = 1; n < 32; n++) op[n] = (1 << (n - 1)) >>> 0;
  for (let i = 0; i < 3; i++) op = compose(op, op);
  let result: Uint32Array | undefined;
  for (let n = bytes; n > 0; n = Math.floor(n / 2)) {
    if (n % 2 === 1) result = result ? compose(op, result) : op;
    if (n > 1) op = compose(op, op);
  }
  const made = result ?? identity();
  if (operators.size >= CACHE_MAX) operators.clear();
  operators.set(bytes, made);
  return made;
}

function identity(): Uint32Array {
  const out = new Uint32Array(32);
  for (let n = 0; n < 32; n++) out[n] = (1 << n) >>> 0;
  return out;
}

/** CRC-32 of A || B from crcA = CRC-32(A), crcB = CRC-32(B) and the length of B. */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  if (lengthB === 0) return crcA >>> 0;
  return (times(shiftOperator(lengthB), crcA >>> 0) ^ crcB) >>> 0;
}
