import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { lz4CompressBlock, lz4CompressBound, lz4DecompressBlock } from '../../src/core/codec/lz4.ts';
import { errorCode } from '../../src/core/errors.ts';

// ------------------------------------------------------------ test data

/** mulberry32: a tiny seeded byte source so generated blocks are reproducible from the fast-check seed. */
function seededBytes(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let a = seed >>> 0;
  for (let i = 0; i < length; i++) {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    out[i] = (t ^ (t >>> 14)) & 0xff;
  }
  return out;
}

const BLOCK_BYTES_MAX = 256 * 1024;

type Segment =
  | { kind: 'random'; seed: number; length: number }
  | { kind: 'run'; byte: number; length: number }
  | { kind: 'pattern'; seed: number; period: number; length: number }
  | { kind: 'copy'; distance: number; length: number };

const segmentArb: fc.Arbitrary<Segment> = fc.oneof(
  fc.record({ kind: fc.constant('random' as const), seed: fc.integer(), length: fc.nat({ max: 8192 }) }),
  fc.record({ kind: fc.constant('run' as const), byte: fc.nat({ max: 255 }), length: fc.nat({ max: 70_000 }) }),
  fc.record({
    kind: fc.constant('pattern' as const),
    seed: fc.integer(),
    period: fc.integer({ min: 1, max: 300 }),
    length: fc.nat({ max: 40_000 }),
  }),
  // Copies from earlier output at every distance, including past LZ4's 64 KiB window.
  fc.record({ kind: fc.constant('copy' as const), distance: fc.integer({ min: 1, max: 80_000 }), length: fc.nat({ max: 3000 }) }),
);

/** Build a block from segments, capped at BLOCK_BYTES_MAX. */
function buildBlock(segments: readonly Segment[]): Uint8Array {
  const out = new Uint8Array(BLOCK_BYTES_MAX);
  let n = 0;
  for (const s of segments) {
    const length = Math.min(s.length, BLOCK_BYTES_MAX - n);
    if (s.kind === 'random') {
      out.set(seededBytes(s.seed, length), n);
    } else if (s.kind === 'run') {
      out.fill(s.byte, n, n + length);
    } else if (s.kind === 'pattern') {
      const pattern = seededBytes(s.seed, s.period);
      for (let i = 0; i < length; i++) out[n + i] = pattern[i % s.period];
    } else {
      const from = n - Math.min(s.distance, n);
      for (let i = 0; i < length && n > 0; i++) out[n + i] = out[from + i];
      if (n === 0) out.fill(0x5a, 0, length);
    }
    n += length;
  }
  return out.slice(0, n);
}

const blockArb = fc.array(segmentArb, { maxLength: 12 }).map(buildBlock);

// ------------------------------------------------------------ independent oracle

interface ParsedSequence {
  literalStart: number;
  literalLength: number;
  matchOffset: number;
  matchLength: number; // 0 for the last sequence
}

/**
 * A deliberately naive decoder written from the spec, independent of the one under
 * test: byte at a time, parsing every sequence so the encoder's end-of-block rules
 * can be checked as well.
 */
function referenceDecode(src: Uint8Array): { bytes: number[]; sequences: ParsedSequence[] } {
  const bytes: number[] = [];
  const sequences: ParsedSequence[] = [];
  let ip = 0;
  for (;;) {
    expect(ip).toBeLessThan(src.length);
    const token = src[ip++];
    let literalLength = token >> 4;
    if (literalLength === 15) {
      let b: number;
      do {
        b = src[ip++];
        literalLength += b;
      } while (b === 255);
    }
    const literalStart = bytes.length;
    for (let i = 0; i < literalLength; i++) bytes.push(src[ip++]);
    expect(ip).toBeLessThanOrEqual(src.length);
    if (ip === src.length) {
      sequences.push({ literalStart, literalLength, matchOffset: 0, matchLength: 0 });
      return { bytes, sequences };
    }
    const matchOffset = src[ip] + src[ip + 1] * 256;
    ip += 2;
    let matchLength = token & 15;
    if (matchLength === 15) {
      let b: number;
      do {
        b = src[ip++];
        matchLength += b;
      } while (b === 255);
    }
    matchLength += 4;
    expect(matchOffset).toBeGreaterThan(0);
    expect(matchOffset).toBeLessThanOrEqual(bytes.length);
    for (let i = 0; i < matchLength; i++) bytes.push(bytes[bytes.length - matchOffset]);
    sequences.push({ literalStart, literalLength, matchOffset, matchLength });
  }
}

/** The spec's rules for a conforming encoder, so stock LZ4 decoders accept our blocks. */
function expectConforming(compressed: Uint8Array, raw: Uint8Array): void {
  const { bytes, sequences } = referenceDecode(compressed);
  expect(bytes.length).toBe(raw.length);
  expect(Buffer.from(bytes).equals(Buffer.from(raw))).toBe(true);
  const n = raw.length;
  for (const s of sequences) {
    if (s.matchLength === 0) continue;
    const matchStart = s.literalStart + s.literalLength;
    // "The last match must start at least 12 bytes before the end of block."
    expect(matchStart).toBeLessThanOrEqual(n - 12);
    // "The last 5 bytes are always literals."
    expect(matchStart + s.matchLength).toBeLessThanOrEqual(n - 5);
    expect(s.matchOffset).toBeLessThanOrEqual(65535);
  }
  expect(sequences[sequences.length - 1].matchLength).toBe(0);
  expect(compressed.length).toBeLessThanOrEqual(lz4CompressBound(n));
}

function roundTrip(raw: Uint8Array): Uint8Array {
  const compressed = lz4CompressBlock(raw);
  const back = lz4DecompressBlock(compressed, raw.length);
  expect(back.length).toBe(raw.length);
  expect(Buffer.from(back).equals(Buffer.from(raw))).toBe(true);
  return compressed;
}

/** Decoding hostile input either yields exactly rawLength bytes or throws ECORRUPT — nothing else. */
function expectSafeDecode(src: Uint8Array, rawLength: number): void {
  let out: Uint8Array | undefined;
  try {
    out = lz4DecompressBlock(src, rawLength);
  } catch (err) {
    expect(errorCode(err), String(err)).toBe('ECORRUPT');
    return;
  }
  expect(out).toBeInstanceOf(Uint8Array);
  expect(out.length).toBe(rawLength);
}

function expectCorrupt(src: Uint8Array | number[], rawLength: number): void {
  const bytes = src instanceof Uint8Array ? src : Uint8Array.from(src);
  let thrown: unknown;
  try {
    lz4DecompressBlock(bytes, rawLength);
  } catch (err) {
    thrown = err;
  }
  expect(thrown, `expected ECORRUPT for ${bytes.length} bytes, raw ${rawLength}`).toBeInstanceOf(Error);
  expect(errorCode(thrown)).toBe('ECORRUPT');
}

const ascii = (s: string): number[] => Array.from(s, (c) => c.charCodeAt(0));

// ------------------------------------------------------------ tests

describe('lz4 block round trip', () => {
  it('round-trips generated blocks (random, runs, patterns, long-distance copies; 0..256 KiB) and conforms to the spec', () => {
    fc.assert(
      fc.property(blockArb, (raw) => {
        const compressed = roundTrip(raw);
        expectConforming(compressed, raw);
      }),
      { numRuns: 150 },
    );
  });

  it('round-trips arbitrary small byte arrays', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), (raw) => {
        expectConforming(roundTrip(raw), raw);
      }),
      { numRuns: 500 },
    );
  });

  it('round-trips every length 0..300 around the end-of-block limits (runs, period 3, random)', () => {
    for (let n = 0; n <= 300; n++) {
      const run = new Uint8Array(n).fill(7);
      const periodic = Uint8Array.from({ length: n }, (_, i) => i % 3);
      const random = seededBytes(n, n);
      for (const raw of [run, periodic, random]) expectConforming(roundTrip(raw), raw);
    }
  });

  it('round-trips at the 64 KiB window edge and at full size', () => {
    const seed = seededBytes(1, 70_000);
    for (const distance of [65534, 65535, 65536, 65537]) {
      const raw = new Uint8Array(distance + 5000);
      raw.set(seed.subarray(0, distance));
      raw.copyWithin(distance, 0, 5000);
      expectConforming(roundTrip(raw), raw);
    }
    const full = buildBlock([
      { kind: 'random', seed: 3, length: 60_000 },
      { kind: 'copy', distance: 60_000, length: 60_000 },
      { kind: 'run', byte: 0, length: 200_000 },
    ]);
    expect(full.length).toBe(BLOCK_BYTES_MAX);
    expectConforming(roundTrip(full), full);
  });

  it('is deterministic: the same input compresses to the same bytes, and calls do not leak state', () => {
    const a = buildBlock([{ kind: 'pattern', seed: 9, period: 17, length: 50_000 }]);
    const b = seededBytes(5, 100_000);
    const first = lz4CompressBlock(a);
    lz4CompressBlock(b);
    expect(Buffer.from(lz4CompressBlock(a)).equals(Buffer.from(first))).toBe(true);
  });

  it('compresses compressible data well and bounds incompressible output', () => {
    const zeros = new Uint8Array(128 * 1024);
    expect(lz4CompressBlock(zeros).length).toBeLessThan(600);
    const random = seededBytes(42, 128 * 1024);
    expect(lz4CompressBlock(random).length).toBeLessThanOrEqual(lz4CompressBound(random.length));
  });

  it('reads input given as a view into a larger buffer (byteOffset != 0)', () => {
    const backing = seededBytes(8, 10_000);
    backing.copyWithin(5000, 1000, 4000);
    const raw = backing.subarray(999, 9001);
    const compressed = lz4CompressBlock(raw);
    const padded = new Uint8Array(compressed.length + 20);
    padded.set(compressed, 10);
    const back = lz4DecompressBlock(padded.subarray(10, 10 + compressed.length), raw.length);
    expect(Buffer.from(back).equals(Buffer.from(raw))).toBe(true);
  });
});

describe('lz4 hand-made encodings (constructed from the spec)', () => {
  it('decodes a lone empty last sequence to zero bytes', () => {
    expect(lz4DecompressBlock(Uint8Array.from([0x00]), 0)).toEqual(new Uint8Array(0));
  });

  it('decodes a literals-only block', () => {
    // token 0x50: 5 literals, no match (last sequence).
    const out = lz4DecompressBlock(Uint8Array.from([0x50, ...ascii('hello')]), 5);
    expect(Buffer.from(out).toString('latin1')).toBe('hello');
  });

  it('decodes an overlapping match (offset 3 < length 12)', () => {
    // token 0x38: 3 literals 'abc', match length 8+4=12 at offset 3; then 'XYZWV'.
    const src = Uint8Array.from([0x38, ...ascii('abc'), 0x03, 0x00, 0x50, ...ascii('XYZWV')]);
    expect(Buffer.from(lz4DecompressBlock(src, 20)).toString('latin1')).toBe('abcabcabcabcabcXYZWV');
  });

  it('decodes literal length extensions (15 + 0, and 15 + 255 + 3 = 273)', () => {
    const fifteen = ascii('ABCDEFGHIJKLMNO');
    expect(Buffer.from(lz4DecompressBlock(Uint8Array.from([0xf0, 0x00, ...fifteen]), 15)).toString('latin1')).toBe(
      'ABCDEFGHIJKLMNO',
    );
    const lits = Array.from({ length: 273 }, (_, i) => (i * 7) & 255);
    const out = lz4DecompressBlock(Uint8Array.from([0xf0, 0xff, 0x03, ...lits]), 273);
    expect(Array.from(out)).toEqual(lits);
  });

  it('decodes a match length extension (run of one byte, 4 + 15 + 255 + 10 = 284)', () => {
    // token 0x1F: 1 literal 'a', match at offset 1, length 15 + 255 + 10 + 4; then 'bcdef'.
    const src = Uint8Array.from([0x1f, ...ascii('a'), 0x01, 0x00, 0xff, 0x0a, 0x50, ...ascii('bcdef')]);
    const out = lz4DecompressBlock(src, 1 + 284 + 5);
    expect(Buffer.from(out).toString('latin1')).toBe('a'.repeat(285) + 'bcdef');
  });

  it('reads the offset little-endian (offset 0x0102 = 258)', () => {
    // 258 literals (15 + 243), then a 4-byte match 258 back = the first 4 literals,
    // then an empty last sequence.
    const lits = Array.from({ length: 258 }, (_, i) => i & 255);
    const src = Uint8Array.from([0xf0, 243, ...lits, 0x02, 0x01, 0x00]);
    const out = lz4DecompressBlock(src, 262);
    expect(Array.from(out)).toEqual([...lits, 0, 1, 2, 3]);
  });

  it('encodes exactly as the spec prescribes for small inputs', () => {
    // 12 bytes: too short for any match, all literals.
    expect(Array.from(lz4CompressBlock(Uint8Array.from(ascii('aaaaaaaaaaaa'))))).toEqual([0xc0, ...ascii('aaaaaaaaaaaa')]);
    // 13 zero bytes: 1 literal, match offset 1 length 7 (ending 5 before the end), 5 literals.
    expect(Array.from(lz4CompressBlock(new Uint8Array(13)))).toEqual([0x13, 0x00, 0x01, 0x00, 0x50, 0, 0, 0, 0, 0]);
    // 32 'a': 1 literal, match offset 1 length 26 (15 + 7 + 4), 5 literals.
    expect(Array.from(lz4CompressBlock(new Uint8Array(32).fill(0x61)))).toEqual([
      0x1f, 0x61, 0x01, 0x00, 0x07, 0x50, 0x61, 0x61, 0x61, 0x61, 0x61,
    ]);
    // Empty input: one token with no literals.
    expect(Array.from(lz4CompressBlock(new Uint8Array(0)))).toEqual([0x00]);
  });
});

describe('lz4 hostile input', () => {
  it('rejects malformed blocks with ECORRUPT', () => {
    expectCorrupt([], 0); // a block holds at least one token
    expectCorrupt([0x00], 1); // too short
    expectCorrupt([0x50, ...ascii('hello')], 4); // too long
    expectCorrupt([0x50, ...ascii('hell')], 5); // literals pass end of input
    expectCorrupt([0xf0], 15); // ends inside a literal length
    expectCorrupt([0xf0, 0xff, 0xff], 600); // ends inside a literal length
    // Control: 'a', match offset 1 length 8, empty last sequence => 9 × 'a'. Each
    // case below differs from it in one thing only.
    expect(Buffer.from(lz4DecompressBlock(Uint8Array.from([0x14, 0x61, 0x01, 0x00, 0x00]), 9)).toString()).toBe('a'.repeat(9));
    expectCorrupt([0x14, 0x61, 0x00, 0x00, 0x00], 9); // zero offset
    expectCorrupt([0x14, 0x61, 0x02, 0x00, 0x00], 9); // offset before output start
    expectCorrupt([0x14, 0x61, 0x01], 9); // ends inside an offset
    expectCorrupt([0x14, 0x61, 0x01, 0x00], 9); // ends after a match: no last sequence
    // Control: 8 literals, then a 4-byte match; offset 9 reaches one byte before the start.
    expect(lz4DecompressBlock(Uint8Array.from([0x80, ...ascii('01234567'), 0x08, 0x00, 0x00]), 12).length).toBe(12);
    expectCorrupt([0x80, ...ascii('01234567'), 0x09, 0x00, 0x00], 12);
    expectCorrupt([0x1f, 0x61, 0x01, 0x00], 30); // ends inside a match length
    expectCorrupt([0x1f, 0x61, 0x01, 0x00, 0x05], 25); // ends after a match: no last sequence
    expectCorrupt([0x1f, 0x61, 0x01, 0x00, 0x05, 0x00], 24); // match passes raw length
    expectCorrupt([0x10, 0x61, 0x01, 0x00, 0x00, 0x00], 5); // trailing bytes after the last sequence
  });

  it('rejects impossible raw lengths without allocating them', () => {
    expectCorrupt([0x00], -1);
    expectCorrupt([0x00], Number.NaN);
    expectCorrupt([0x00], 0.5);
    expectCorrupt([0x00], Number.POSITIVE_INFINITY);
    expectCorrupt([0x00], 2 ** 40);
    expectCorrupt([0x1f, 0x61, 0x01, 0x00, 0xff, 0x00], 1_000_000_000);
  });

  it('fails fast on a megabyte of length-extension bytes', () => {
    const src = new Uint8Array(1 << 20).fill(0xff);
    src[0] = 0xf0;
    expectCorrupt(src, 1 << 24);
  });

  it('random garbage decodes to exactly rawLength bytes or throws ECORRUPT', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), fc.nat({ max: 20_000 }), (src, rawLength) => {
        expectSafeDecode(src, rawLength);
      }),
      { numRuns: 2000 },
    );
  });

  it('mutated valid blocks decode to exactly rawLength bytes or throw ECORRUPT', () => {
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.nat({ max: 255 }) }),
      fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
      fc.record({ kind: fc.constant('append' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
    );
    fc.assert(
      fc.property(
        fc.array(segmentArb, { maxLength: 4 }).map((s) => buildBlock(s).subarray(0, 20_000)),
        fc.array(mutation, { minLength: 1, maxLength: 4 }),
        fc.integer({ min: -3, max: 3 }),
        (raw, mutations, lengthDelta) => {
          let src = lz4CompressBlock(raw);
          for (const m of mutations) {
            if (m.kind === 'set' && src.length > 0) {
              src = src.slice();
              src[m.at % src.length] = m.value;
            } else if (m.kind === 'truncate') {
              src = src.slice(0, m.at % (src.length + 1));
            } else if (m.kind === 'append') {
              const grown = new Uint8Array(src.length + m.bytes.length);
              grown.set(src);
              grown.set(m.bytes, src.length);
              src = grown;
            }
          }
          expectSafeDecode(src, Math.max(0, raw.length + lengthDelta));
        },
      ),
      { numRuns: 1000 },
    );
  });
});
