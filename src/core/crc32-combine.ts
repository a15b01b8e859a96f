// CRC-32 (IEEE, as zlib) of a concatenation from the CRCs of its parts:
// crc(A || B) = shift(crc(A), |B|) ^ crc(B), where shift advances a CRC over
// |B| zero bytes — a linear map over GF(2), a 32x32 bit matrix (zlib's
// crc32_combine). A live master combines the CRC of every new block's stored
// bytes (computed once, when the block is stored) with its frame header's.

const POLY = 0xedb88320;
/**
 * operators[k] advances a CRC over 2^k zero bytes. Shifts by different
 * lengths are powers of one matrix, so they commute: a shift by any length is
 * the product of the operators of its set bits, applied one after another to
 * the CRC (a matrix times a vector each, no matrix products per call, and no
 * cache of lengths to miss).
 */
const operators: Uint32Array[] = [];

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

/** The operator that advances a CRC over 2^k zero bytes. */
function powerOperator(k: number): Uint32Array {
  while (operators.length <= k) {
    if (operators.length === 0) {
      // One zero bit, then squared to 2, 4 and 8 bits.
      let op: Uint32Array = new Uint32Array(32);
      op[0] = POLY;
      for (let n = 1; n < 32; n++) op[n] = (1 << (n - 1)) >>> 0;
      for (let i = 0; i < 3; i++) op = compose(op, op);
      operators.push(op);
    } else {
      const prev = operators[operators.length - 1];
      operators.push(compose(prev, prev));
    }
  }
  return operators[k];
}

/** CRC-32 of A || B from crcA = CRC-32(A), crcB = CRC-32(B) and the length of B. */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  let crc = crcA >>> 0;
  for (let k = 0, n = lengthB; n > 0; k++, n = Math.floor(n / 2)) {
    if (n % 2 === 1) crc = times(powerOperator(k), crc);
  }
  return (crc ^ crcB) >>> 0;
}
