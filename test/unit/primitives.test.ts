import { createHmac } from 'node:crypto';
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import CRC32 from 'crc-32';
import { CODEC_DEFLATE, CODEC_LZ4, CODEC_NONE, nodePrimitives as P } from '../../src/real/primitives.ts';
import { errorCode } from '../../src/core/errors.ts';

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return errorCode(err) ?? `uncoded ${String(err)}`;
  }
  return undefined;
}

/** Compressible but not trivial: words from a small vocabulary, then some noise. */
const blockArb = fc
  .record({
    words: fc.array(fc.constantFrom('lessfs ', 'dedup ', 'block ', 'inode ', 'commit ', '\n', '0000'), { maxLength: 20_000 }),
    noise: fc.uint8Array({ maxLength: 4096 }),
  })
  .map(({ words, noise }) => {
    const text = utf8(words.join(''));
    const out = new Uint8Array(text.length + noise.length);
    out.set(text);
    out.set(noise, text.length);
    return out;
  });

describe('crc32', () => {
  it('matches the check value of CRC-32/IEEE', () => {
    expect(P.crc32(utf8('123456789'))).toBe(0xcbf43926);
    expect(P.crc32(new Uint8Array(0))).toBe(0);
  });

  it('agrees with the crc-32 package (an independent implementation), unsigned', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 5000 }), (data) => {
        const ours = P.crc32(data);
        expect(ours).toBe(CRC32.buf(data) >>> 0);
        expect(Number.isInteger(ours) && ours >= 0 && ours <= 0xffffffff).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('continues a running CRC from a seed, like the crc-32 package', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), fc.uint8Array({ maxLength: 2000 }), (a, b) => {
        const joined = new Uint8Array(a.length + b.length);
        joined.set(a);
        joined.set(b, a.length);
        const running = P.crc32(b, P.crc32(a));
        expect(running).toBe(P.crc32(joined));
        expect(running).toBe(CRC32.buf(b, CRC32.buf(a)) >>> 0);
      }),
      { numRuns: 200 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 500 }), fc.nat({ max: 0xffffffff }), (data, seed) => {
        expect(P.crc32(data, seed)).toBe(CRC32.buf(data, seed) >>> 0);
      }),
      { numRuns: 200 },
    );
  });

  it('rejects a seed that is not an unsigned 32-bit integer', () => {
    expect(codeOf(() => P.crc32(utf8('x'), -1))).toBe('EINVAL');
    expect(codeOf(() => P.crc32(utf8('x'), 2 ** 32))).toBe('EINVAL');
    expect(codeOf(() => P.crc32(utf8('x'), 1.5))).toBe('EINVAL');
  });
});

describe('hashes and hmac', () => {
  it('lists the supported hashes', () => {
    expect([...P.hashNames].sort()).toEqual(['blake2b512', 'sha1', 'sha256', 'sha512']);
  });

  it('produces the published test vectors', () => {
    expect(hex(P.hash('sha256', new Uint8Array(0)))).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(hex(P.hash('sha256', utf8('abc')))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(hex(P.hash('sha256', utf8('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq')))).toBe(
      '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1',
    );
    expect(hex(P.hash('sha1', utf8('abc')))).toBe('a9993e364706816aba3e25717850c26c9cd0d89d');
    expect(hex(P.hash('sha512', utf8('abc')))).toBe(
      'ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f',
    );
    expect(hex(P.hash('blake2b512', utf8('abc')))).toBe(
      'ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923',
    );
  });

  it('computes HMAC (RFC 4231 test case 2)', () => {
    const mac = P.hmac('sha256', utf8('Jefe'), utf8('what do ya want for nothing?'));
    expect(hex(mac)).toBe('5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
  });

  it('HMAC equals node:crypto createHmac for every hash, key length (short, block-sized, longer than a block) and key view', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('sha256', 'sha512', 'sha1', 'blake2b512'),
        fc.uint8Array({ maxLength: 200 }),
        fc.uint8Array({ maxLength: 5000 }),
        fc.nat(3),
        (name, key, data, skew) => {
          // The key as a view into a larger buffer, as wire session keys are.
          const backing = new Uint8Array(key.length + skew);
          backing.set(key, skew);
          const k = backing.subarray(skew);
          const want = createHmac(name, key).update(data).digest('hex');
          expect(hex(P.hmac(name, k, data))).toBe(want);
          // Again with the key's pads kept from the first call.
          expect(hex(P.hmac(name, k, data))).toBe(want);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('returns plain Uint8Arrays of the digest length', () => {
    const h = P.hash('sha256', utf8('x'));
    expect(Object.getPrototypeOf(h)).toBe(Uint8Array.prototype);
    expect(h.length).toBe(32);
    expect(P.hash('sha512', utf8('x')).length).toBe(64);
    expect(Object.getPrototypeOf(P.hmac('sha1', utf8('k'), utf8('x')))).toBe(Uint8Array.prototype);
  });

  it('rejects unsupported hash names with EINVAL', () => {
    expect(codeOf(() => P.hash('md5', utf8('x')))).toBe('EINVAL');
    expect(codeOf(() => P.hmac('sha3-256', utf8('k'), utf8('x')))).toBe('EINVAL');
  });
});

describe('codecs', () => {
  it('lists stable codec ids', () => {
    expect(P.codecs.map((c) => [c.id, c.name])).toEqual([
      [0, 'none'],
      [1, 'deflate'],
      [2, 'lz4'],
    ]);
    expect([CODEC_NONE, CODEC_DEFLATE, CODEC_LZ4]).toEqual([0, 1, 2]);
  });

  it('round-trips every codec', () => {
    fc.assert(
      fc.property(blockArb, fc.constantFrom(CODEC_NONE, CODEC_DEFLATE, CODEC_LZ4), (raw, codec) => {
        const stored = P.compress(codec, raw);
        const back = P.decompress(codec, stored, raw.length);
        expect(Object.getPrototypeOf(back)).toBe(Uint8Array.prototype);
        expect(hex(back)).toBe(hex(raw));
      }),
      { numRuns: 150 },
    );
  });

  it('compresses a 128 KiB text block with deflate and lz4, deterministically', () => {
    const raw = utf8('the quick brown fox jumps over the lazy dog\n'.repeat(3000)).subarray(0, 128 * 1024);
    for (const codec of [CODEC_DEFLATE, CODEC_LZ4]) {
      const stored = P.compress(codec, raw);
      expect(stored.length).toBeLessThan(raw.length / 10);
      expect(hex(P.compress(codec, raw))).toBe(hex(stored));
      expect(hex(P.decompress(codec, stored, raw.length))).toBe(hex(raw));
    }
  });

  it("'none' copies instead of aliasing the caller's buffer", () => {
    const raw = utf8('abcdef');
    const stored = P.compress(CODEC_NONE, raw);
    raw[0] = 0x7a;
    expect(stored[0]).toBe(0x61);
    const back = P.decompress(CODEC_NONE, stored, stored.length);
    stored[1] = 0x7a;
    expect(back[1]).toBe(0x62);
  });

  it('rejects a wrong raw length with ECORRUPT naming codec and lengths', () => {
    const raw = utf8('hello hello hello hello hello hello hello');
    for (const codec of [CODEC_NONE, CODEC_DEFLATE, CODEC_LZ4]) {
      const stored = P.compress(codec, raw);
      for (const rawLength of [raw.length - 1, raw.length + 1, 0, 1_000_000, -1, Number.NaN, 2 ** 40]) {
        let thrown: unknown;
        try {
          P.decompress(codec, stored, rawLength);
        } catch (err) {
          thrown = err;
        }
        expect(errorCode(thrown), `codec ${codec} rawLength ${rawLength}`).toBe('ECORRUPT');
        const name = P.codecs.find((c) => c.id === codec)?.name;
        expect((thrown as Error).message).toContain(`${name}:`);
        expect((thrown as Error).message).toContain(`${stored.length} stored bytes`);
        expect((thrown as Error).message).toContain(`raw length ${rawLength}`);
      }
    }
  });

  it('rejects truncated, extended and garbled streams with ECORRUPT', () => {
    const raw = utf8('lessfs '.repeat(500));
    for (const codec of [CODEC_DEFLATE, CODEC_LZ4]) {
      const stored = P.compress(codec, raw);
      const truncated = stored.subarray(0, stored.length - 3);
      const extended = new Uint8Array(stored.length + 3);
      extended.set(stored);
      extended.set([1, 2, 3], stored.length);
      for (const bad of [truncated, extended, new Uint8Array(0), Uint8Array.from([0xff, 0xff, 0xff, 0xff])]) {
        expect(codeOf(() => P.decompress(codec, bad, raw.length)), `codec ${codec}, ${bad.length} bytes`).toBe('ECORRUPT');
      }
    }
  });

  it('stops a deflate bomb at the raw length', () => {
    const bomb = P.compress(CODEC_DEFLATE, new Uint8Array(16 * 1024 * 1024));
    expect(bomb.length).toBeLessThan(100_000);
    expect(codeOf(() => P.decompress(CODEC_DEFLATE, bomb, 4096))).toBe('ECORRUPT');
  });

  it('garbled streams decode to exactly rawLength bytes or throw ECORRUPT', () => {
    fc.assert(
      fc.property(
        blockArb.map((b) => b.subarray(0, 8192)),
        fc.constantFrom(CODEC_DEFLATE, CODEC_LZ4),
        fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { minLength: 1, maxLength: 4 }),
        (raw, codec, flips) => {
          const stored = P.compress(codec, raw).slice();
          for (const [at, value] of flips) if (stored.length > 0) stored[at % stored.length] = value;
          let out: Uint8Array | undefined;
          try {
            out = P.decompress(codec, stored, raw.length);
          } catch (err) {
            expect(errorCode(err), String(err)).toBe('ECORRUPT');
            return;
          }
          expect(out.length).toBe(raw.length);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('rejects unknown codec ids with EINVAL', () => {
    expect(codeOf(() => P.compress(3, utf8('x')))).toBe('EINVAL');
    expect(codeOf(() => P.decompress(-1, utf8('x'), 1))).toBe('EINVAL');
    expect(codeOf(() => P.decompress(1.5, utf8('x'), 1))).toBe('EINVAL');
  });
});
