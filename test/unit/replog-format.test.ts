// The replication log format (src/core/replication): frames, records, the
// streaming decoder, file header/trailer, rotated-file validation and the live
// log scan. CRCs come from the Primitives driver (zlib) and are cross-checked
// against the independent `crc-32` package.

import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import CRC32 from 'crc-32';
import { nodePrimitives as P } from '../../src/real/primitives.ts';
import { errorCode } from '../../src/core/errors.ts';
import { TABLES } from '../../src/core/fs/schema.ts';
import { ReplogError } from '../../src/core/replication/errors.ts';
import {
  ALL_FRAME_TYPES,
  type BlockPayload,
  type CommitPayload,
  blockFrameCrc,
  decodeBlock,
  decodeBlockRef,
  decodeCommit,
  decodeKv,
  decodeRecord,
  encodeBlock,
  encodeBlockRefFrame,
  encodeCommit,
  encodeCommitFrame,
  encodeFrame,
  encodeKv,
  encodeRecordFrame,
  encodeTransaction,
  type Frame,
  FRAME_BYTES_MAX,
  FRAME_HEADER_BYTES,
  inspectFrameAt,
  writeBlockFrameFromRef,
  FRAME_TYPE,
  FrameDecoder,
  type KvPayload,
  REPL_TABLE_IDS,
  type ReplRecord,
  type ReplTableName,
  replTableId,
  replTableName,
  TransactionAssembler,
} from '../../src/core/replication/frames.ts';
import {
  decodeHeader,
  decodeTrailer,
  encodeHeader,
  encodeTrailer,
  type LogHeaderFields,
  LogWriterState,
  scanLiveLog,
  TRAILER_BYTES,
  validateRotatedFile,
} from '../../src/core/replication/log-file.ts';

// ------------------------------------------------------------ helpers

const oracleCrc = (bytes: Uint8Array): number => CRC32.buf(bytes) >>> 0;

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

/** Runs fn, expects a ReplogError with this code whose message holds every fragment. */
function expectReplog(fn: () => unknown, code: string, ...fragments: string[]): ReplogError {
  const err = thrown(fn);
  expect(err, `expected ${code}, nothing was thrown`).toBeInstanceOf(ReplogError);
  const e = err as ReplogError;
  expect(e.code, e.message).toBe(code);
  for (const f of fragments) expect(e.message).toContain(f);
  return e;
}

/** Records as plain data, so decoded views compare equal to the inputs. */
function plain(record: ReplRecord): unknown {
  if (record.type === FRAME_TYPE.KV) {
    return { t: 'kv', table: record.kv.table, key: Array.from(record.kv.key), value: record.kv.value && Array.from(record.kv.value) };
  }
  if (record.type === FRAME_TYPE.BLOCKREF) return { t: 'blockref', ...record.ref, key: Array.from(record.ref.key) };
  const b = record.block;
  return { t: 'block', key: Array.from(b.key), codec: b.codec, rawLength: b.rawLength, stored: Array.from(b.stored) };
}

// ------------------------------------------------------------ arbitraries

const TABLE_NAMES = Object.keys(REPL_TABLE_IDS) as ReplTableName[];
const CODEC_IDS = P.codecs.map((c) => c.id);

const kvArb: fc.Arbitrary<KvPayload> = fc.record({
  table: fc.constantFrom(...TABLE_NAMES),
  key: fc.uint8Array({ minLength: 1, maxLength: 48 }),
  value: fc.option(fc.uint8Array({ maxLength: 200 }), { nil: undefined }),
});

const blockArb: fc.Arbitrary<BlockPayload> = fc.record({
  key: fc.uint8Array({ minLength: 1, maxLength: 40 }),
  codec: fc.constantFrom(...CODEC_IDS),
  rawLength: fc.integer({ min: 1, max: 4096 }),
  stored: fc.uint8Array({ maxLength: 300 }),
});

const recordArb: fc.Arbitrary<ReplRecord> = fc.oneof(
  kvArb.map((kv) => ({ type: FRAME_TYPE.KV, kv }) as ReplRecord),
  blockArb.map((block) => ({ type: FRAME_TYPE.BLOCK, block }) as ReplRecord),
);

const commitArb: fc.Arbitrary<CommitPayload> = fc.record({
  recordCount: fc.integer({ min: 0, max: 1 << 20 }),
  nextIno: fc.maxSafeNat(),
  framesCrc32: fc.nat({ max: 0xffffffff }),
  timeMs: fc.maxSafeNat(),
});

const txnsArb = fc.array(fc.array(recordArb, { maxLength: 5 }), { maxLength: 6 });

const fieldsArb: fc.Arbitrary<LogHeaderFields> = fc.record({
  fsId: fc.string({ minLength: 1, maxLength: 30, unit: 'grapheme' }),
  blockSizeBytes: fc.constantFrom(4096, 8192, 16384, 32768, 65536, 131072),
  sequence: fc.maxSafeNat(),
  firstTxn: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER - 100 }),
});

const FIELDS: LogHeaderFields = { fsId: 'fs-0123abcd', blockSizeBytes: 131072, sequence: 7, firstTxn: 41 };

interface BuiltLog {
  bytes: Uint8Array;
  /** Without the trailer (what replog.dta holds before rotation). */
  live: Uint8Array;
  headerBytes: number;
  /** End offset of each transaction's COMMIT frame. */
  commitEnds: number[];
  /** Encoded frames per transaction (COMMIT last). */
  frames: Uint8Array[][];
  state: LogWriterState;
}

function buildLog(fields: LogHeaderFields, txns: readonly ReplRecord[][]): BuiltLog {
  const { state, headerBytes } = LogWriterState.create(P, fields);
  const parts: Uint8Array[] = [headerBytes];
  const commitEnds: number[] = [];
  const frames: Uint8Array[][] = [];
  txns.forEach((records, i) => {
    const f = encodeTransaction(P, fields.firstTxn + i, records, { nextIno: 100 + i, timeMs: 1000 * i });
    state.appendAll(f);
    parts.push(...f);
    frames.push(f);
    commitEnds.push(state.sizeBytes);
  });
  const live = concat(parts);
  return { bytes: concat([live, state.encodeTrailer()]), live, headerBytes: headerBytes.length, commitEnds, frames, state };
}

const sampleTxns: ReplRecord[][] = [
  [
    { type: FRAME_TYPE.KV, kv: { table: 'inode', key: new Uint8Array([0, 0, 0, 0, 0, 0, 0, 2]), value: new Uint8Array([1, 2, 3]) } },
    { type: FRAME_TYPE.BLOCK, block: { key: new Uint8Array(32).fill(9), codec: 0, rawLength: 5, stored: new Uint8Array([1, 2, 3, 4, 5]) } },
  ],
  [{ type: FRAME_TYPE.KV, kv: { table: 'orphan', key: new Uint8Array([7]), value: new Uint8Array(0) } }],
  [],
  [{ type: FRAME_TYPE.KV, kv: { table: 'dirent', key: new Uint8Array([1, 65]), value: undefined } }],
];

// ------------------------------------------------------------ stable numbers

describe('stable numbers', () => {
  it('frame types and table ids never change', () => {
    expect(FRAME_TYPE).toEqual({ KV: 1, BLOCK: 2, COMMIT: 3, BLOCKREF: 4, HELLO: 16, ACK: 17, NAK: 18, HEARTBEAT: 19, COMMIT_NOW: 20 });
    expect(REPL_TABLE_IDS).toEqual({ inode: 1, dirent: 2, blockmap: 3, symlink: 4, orphan: 5, meta: 6 });
  });

  it('replicated tables are tables of the schema, and ids map both ways', () => {
    for (const name of TABLE_NAMES) {
      expect(TABLES).toContain(name);
      expect(replTableName(replTableId(name))).toBe(name);
    }
    expect(replTableName(0)).toBeUndefined();
    expect(replTableName(7)).toBeUndefined();
    expect(errorCode(thrown(() => replTableId('block')))).toBe('EASSERT');
    expect(errorCode(thrown(() => replTableId('freespace')))).toBe('EASSERT');
  });
});

// ------------------------------------------------------------ frames

describe('frame encoding', () => {
  it('lays out length | crc | type | txn | payload big-endian', () => {
    const frame = encodeFrame(P, FRAME_TYPE.KV, 0x0102030405, new Uint8Array([0xaa, 0xbb]));
    expect(Array.from(frame.subarray(0, 4))).toEqual([0, 0, 0, 11]);
    expect(Array.from(frame.subarray(8))).toEqual([1, 0, 0, 0, 0x01, 0x02, 0x03, 0x04, 0x05, 0xaa, 0xbb]);
    const crc = new DataView(frame.buffer).getUint32(4);
    expect(crc).toBe(oracleCrc(frame.subarray(8)));
  });

  it('frame CRCs agree with the crc-32 package (independent oracle)', () => {
    fc.assert(
      fc.property(fc.constantFrom(...ALL_FRAME_TYPES), fc.maxSafeNat(), fc.uint8Array({ maxLength: 2000 }), (type, txn, payload) => {
        const frame = encodeFrame(P, type, txn, payload);
        expect(new DataView(frame.buffer).getUint32(4)).toBe(oracleCrc(frame.subarray(8)));
      }),
      { numRuns: 100 },
    );
    // A full 128 KiB block record too.
    const big = encodeRecordFrame(P, 1, {
      type: FRAME_TYPE.BLOCK,
      block: { key: new Uint8Array(32).fill(1), codec: 0, rawLength: 131072, stored: new Uint8Array(131072).map((_, i) => (i * 31) & 0xff) },
    });
    expect(new DataView(big.buffer).getUint32(4)).toBe(oracleCrc(big.subarray(8)));
  });

  it('refuses to encode nonsense (writer bugs are assertions)', () => {
    expect(errorCode(thrown(() => encodeFrame(P, 5, 1, new Uint8Array(0))))).toBe('EASSERT');
    expect(errorCode(thrown(() => encodeFrame(P, 1, -1, new Uint8Array(0))))).toBe('EASSERT');
    expect(errorCode(thrown(() => encodeKv({ table: 'inode', key: new Uint8Array(0), value: undefined })))).toBe('EASSERT');
    expect(errorCode(thrown(() => encodeKv({ table: 'inode', key: new Uint8Array(1979), value: undefined })))).toBe('EASSERT');
    expect(errorCode(thrown(() => encodeBlock({ key: new Uint8Array(1), codec: 0, rawLength: 131073, stored: new Uint8Array(0) })))).toBe('EASSERT');
  });
});

describe('records', () => {
  it('KV round trips', () => {
    fc.assert(
      fc.property(kvArb, (kv) => {
        const back = decodeKv(encodeKv(kv));
        expect(plain({ type: FRAME_TYPE.KV, kv: back })).toEqual(plain({ type: FRAME_TYPE.KV, kv }));
      }),
    );
  });

  it('BLOCK round trips', () => {
    fc.assert(
      fc.property(blockArb, (block) => {
        expect(plain({ type: FRAME_TYPE.BLOCK, block: decodeBlock(encodeBlock(block)) })).toEqual(plain({ type: FRAME_TYPE.BLOCK, block }));
      }),
    );
  });

  it('a BLOCKREF rebuilds exactly the BLOCK frame it stands for, and notices changed bytes', () => {
    fc.assert(
      fc.property(blockArb, fc.integer({ min: 1, max: 2 ** 40 }), fc.integer({ min: 0, max: 2 ** 45 }), fc.nat(), (block, txn, extent, flip) => {
        const frame = encodeRecordFrame(P, txn, { type: FRAME_TYPE.BLOCK, block });
        const refFrame = encodeBlockRefFrame(P, txn, block, extent);
        const ref = decodeBlockRef(refFrame.subarray(FRAME_HEADER_BYTES));
        expect(ref.extentOffsetBytes).toBe(extent);
        expect(ref.blockFrameBytes).toBe(frame.length);
        expect(ref.blockFrameCrc32).toBe(new DataView(frame.buffer, frame.byteOffset).getUint32(4));
        expect(blockFrameCrc(P, txn, block)).toBe(ref.blockFrameCrc32);
        const out = new Uint8Array(frame.length + 3);
        expect(writeBlockFrameFromRef(P, txn, ref, block.stored, out, 3)).toBe(true);
        expect(Buffer.from(out.subarray(3)).equals(Buffer.from(frame))).toBe(true);
        if (block.stored.length > 0) {
          const bad = block.stored.slice();
          bad[flip % bad.length] ^= 1 << (flip % 8);
          expect(writeBlockFrameFromRef(P, txn, ref, bad, new Uint8Array(frame.length), 0)).toBe(false);
          // Unverified (a sender before any NAK), the frame carries the logged CRC: every reader refuses it.
          const unchecked = new Uint8Array(frame.length);
          expect(writeBlockFrameFromRef(P, txn, ref, bad, unchecked, 0, false)).toBe(true);
          const seen = inspectFrameAt(P, unchecked, 0, { maxFrameBytes: FRAME_BYTES_MAX, allowedTypes: ALL_FRAME_TYPES });
          expect(seen.kind === 'bad' && seen.error.code).toBe('ECRC');
        }
      }),
    );
  });

  it('COMMIT round trips', () => {
    fc.assert(
      fc.property(commitArb, (c) => {
        expect(decodeCommit(encodeCommit(c))).toEqual(c);
      }),
    );
  });

  it('a put of an empty value stays distinct from a delete', () => {
    const put = decodeKv(encodeKv({ table: 'orphan', key: new Uint8Array([1]), value: new Uint8Array(0) }));
    const del = decodeKv(encodeKv({ table: 'orphan', key: new Uint8Array([1]), value: undefined }));
    expect(put.value).toEqual(new Uint8Array(0));
    expect(del.value).toBeUndefined();
  });

  it('every short or overlong payload is ERECORD', () => {
    fc.assert(
      fc.property(kvArb, blockArb, commitArb, fc.nat(), (kv, block, commit, cut) => {
        for (const [bytes, decode] of [
          [encodeKv(kv), decodeKv],
          [encodeBlock(block), decodeBlock],
          [encodeCommit(commit), decodeCommit],
        ] as const) {
          const short = bytes.subarray(0, cut % bytes.length);
          expectReplog(() => decode(short), 'ERECORD');
          expectReplog(() => decode(concat([bytes, new Uint8Array([0])])), 'ERECORD', 'trailing');
        }
      }),
      { numRuns: 100 },
    );
  });

  it('refuses unknown table ids, bad hasValue, a delete with a value', () => {
    const good = encodeKv({ table: 'meta', key: new Uint8Array([1]), value: undefined });
    for (const id of [0, 7, 255]) {
      const bad = good.slice();
      bad[0] = id;
      expectReplog(() => decodeKv(bad, 1234), 'ERECORD', `unknown table id ${id}`, '1=inode', 'offset 1234');
    }
    const hv = good.slice();
    hv[4] = 2;
    expectReplog(() => decodeKv(hv), 'ERECORD', 'hasValue is 2');
    const delWithValue = concat([good.subarray(0, 5), new Uint8Array([0, 0, 0, 1, 9])]);
    expectReplog(() => decodeKv(delWithValue), 'ERECORD', 'delete carries value length 1');
  });
});

// ------------------------------------------------------------ decoder

const anyFrameArb = fc.record({
  type: fc.constantFrom(...ALL_FRAME_TYPES),
  txn: fc.maxSafeNat(),
  payload: fc.uint8Array({ maxLength: 700 }),
});

describe('FrameDecoder', () => {
  it('reassembles frames split at arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.array(anyFrameArb, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 40 }), fc.nat({ max: 1000 }), (frames, cutSeeds, base) => {
        const encoded = frames.map((f) => encodeFrame(P, f.type, f.txn, f.payload));
        const stream = concat(encoded);
        const cuts = [...new Set(cutSeeds.map((c) => (stream.length === 0 ? 0 : c % (stream.length + 1))))].sort((a, b) => a - b);
        const decoder = new FrameDecoder(P, FRAME_BYTES_MAX, { baseOffsetBytes: base });
        const out: Frame[] = [];
        let prev = 0;
        for (const cut of [...cuts, stream.length]) {
          decoder.push(stream.subarray(prev, cut));
          prev = cut;
          for (let f = decoder.next(); f; f = decoder.next()) out.push(f);
          expect(decoder.bufferedBytes).toBeLessThan(FRAME_HEADER_BYTES + 700);
        }
        expect(decoder.bufferedBytes).toBe(0);
        expect(out.map((f) => ({ type: f.type, txn: f.txn, payload: f.payload }))).toEqual(frames);
        let offset = base;
        out.forEach((f, i) => {
          expect(f.offsetBytes).toBe(offset);
          expect(f.sizeBytes).toBe(encoded[i].length);
          offset += f.sizeBytes;
        });
        expect(decoder.offsetBytes).toBe(base + stream.length);
      }),
      { numRuns: 200 },
    );
  });

  it('one byte at a time, including a 128 KiB block frame', () => {
    const block = encodeRecordFrame(P, 3, { type: FRAME_TYPE.BLOCK, block: { key: new Uint8Array([1]), codec: 0, rawLength: 131072, stored: new Uint8Array(131072).fill(7) } });
    const stream = concat([encodeFrame(P, FRAME_TYPE.HEARTBEAT, 0, new Uint8Array(0)), block, encodeCommitFrame(P, 3, { recordCount: 1, nextIno: 2, framesCrc32: 0, timeMs: 0 })]);
    const decoder = new FrameDecoder(P, FRAME_BYTES_MAX);
    const types: number[] = [];
    for (let i = 0; i < stream.length; i++) {
      decoder.push(stream.subarray(i, i + 1));
      const f = decoder.next();
      if (f) types.push(f.type);
    }
    expect(types).toEqual([FRAME_TYPE.HEARTBEAT, FRAME_TYPE.BLOCK, FRAME_TYPE.COMMIT]);
  });

  it('payloads are copies: later pushes never change a returned frame', () => {
    const decoder = new FrameDecoder(P, 4096);
    const a = encodeFrame(P, FRAME_TYPE.ACK, 5, new Uint8Array([1, 2, 3]));
    decoder.push(a);
    const frame = decoder.next();
    decoder.push(encodeFrame(P, FRAME_TYPE.ACK, 6, new Uint8Array([9, 9, 9])));
    expect(decoder.next()?.txn).toBe(6);
    expect(Array.from(frame!.payload)).toEqual([1, 2, 3]);
  });

  it('a bad length is EFRAME as soon as the length is readable, with its offset; errors are sticky', () => {
    const ok = encodeFrame(P, FRAME_TYPE.KV, 1, new Uint8Array(10));
    for (const length of [0, 8, 1000 - 8 + 1, 0xffffffff]) {
      const decoder = new FrameDecoder(P, 1000);
      decoder.push(ok);
      const bad = new Uint8Array(4);
      new DataView(bad.buffer).setUint32(0, length);
      decoder.push(bad);
      expect(decoder.next()?.txn).toBe(1);
      expectReplog(() => decoder.next(), 'EFRAME', `frame length ${length}`, `offset ${ok.length}`);
      expectReplog(() => decoder.next(), 'EFRAME');
      expectReplog(() => decoder.push(new Uint8Array(1)), 'EFRAME');
    }
    // Exactly the limit is fine.
    const decoder = new FrameDecoder(P, 1000);
    decoder.push(encodeFrame(P, FRAME_TYPE.KV, 1, new Uint8Array(1000 - FRAME_HEADER_BYTES)));
    expect(decoder.next()?.sizeBytes).toBe(1000);
  });

  it('any flipped bit of a frame is ECRC or EFRAME, never a frame', () => {
    fc.assert(
      fc.property(anyFrameArb, fc.nat(), (f, bitSeed) => {
        const frame = encodeFrame(P, f.type, f.txn, f.payload);
        const bit = bitSeed % (frame.length * 8);
        frame[bit >> 3] ^= 1 << (bit & 7);
        const decoder = new FrameDecoder(P, FRAME_BYTES_MAX, { baseOffsetBytes: 50 });
        decoder.push(frame);
        // A length flipped upward waits for bytes that never come: the frame is not returned either way.
        const err = thrown(() => expect(decoder.next()).toBeUndefined());
        if (err !== undefined) {
          expect(['ECRC', 'EFRAME']).toContain(errorCode(err));
          expect((err as ReplogError).offsetBytes).toBe(50);
        } else {
          expect(bit).toBeLessThan(32);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('a valid frame of a type not allowed is EFRAME naming the type', () => {
    const decoder = new FrameDecoder(P, 4096, { allowedTypes: [1, 2, 3] });
    decoder.push(encodeFrame(P, FRAME_TYPE.NAK, 1, new Uint8Array(0)));
    expectReplog(() => decoder.next(), 'EFRAME', 'frame type 18 (NAK is wire-only)');
    const raw = encodeFrame(P, FRAME_TYPE.KV, 1, new Uint8Array(0));
    raw[8] = 99;
    new DataView(raw.buffer).setUint32(4, oracleCrc(raw.subarray(8)));
    const d2 = new FrameDecoder(P, 4096);
    d2.push(raw);
    expectReplog(() => d2.next(), 'EFRAME', 'frame type 99');
  });
});

// ------------------------------------------------------------ header / trailer

describe('header and trailer', () => {
  it('round trip', () => {
    fc.assert(
      fc.property(fieldsArb, (fields) => {
        const bytes = encodeHeader(P, fields);
        const header = decodeHeader(P, concat([bytes, new Uint8Array([1, 2, 3])]));
        expect(header).toEqual({ ...fields, formatVersion: 1, sizeBytes: bytes.length });
      }),
    );
    fc.assert(
      fc.property(fc.maxSafeNat(), fc.maxSafeNat(), fc.nat({ max: 0xffffffff }), (lastTxn, frameCount, fileCrc32) => {
        const t = { lastTxn, frameCount, fileCrc32 };
        const bytes = encodeTrailer(P, t);
        expect(bytes.length).toBe(TRAILER_BYTES);
        expect(decodeTrailer(P, bytes)).toEqual(t);
      }),
    );
  });

  it('header layout: magic, version, fs id, block size, sequence, first txn, CRC', () => {
    const bytes = encodeHeader(P, { fsId: 'ab', blockSizeBytes: 4096, sequence: 3, firstTxn: 9 });
    expect(new TextDecoder().decode(bytes.subarray(0, 8))).toBe('LESSFSRL');
    expect(Array.from(bytes.subarray(8, 14))).toEqual([0, 1, 0, 2, 0x61, 0x62]);
    expect(Array.from(bytes.subarray(14, 34))).toEqual([0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 9]);
    expect(new DataView(bytes.buffer).getUint32(34)).toBe(oracleCrc(bytes.subarray(0, 34)));
    expect(bytes.length).toBe(38);
  });

  it('refuses foreign magic, unknown versions and damaged headers', () => {
    const good = encodeHeader(P, FIELDS);
    expectReplog(() => decodeHeader(P, new TextEncoder().encode('#!/bin/sh\necho hi\n' + 'x'.repeat(40))), 'EFORMAT', "expected magic 'LESSFSRL'");
    const v2 = good.slice();
    v2[9] = 2;
    expectReplog(() => decodeHeader(P, v2), 'EFORMAT', 'format version 2, this build reads version 1');
    const flipped = good.slice();
    flipped[20] ^= 4;
    expectReplog(() => decodeHeader(P, flipped), 'ECRC', 'header CRC-32');
    for (let n = 0; n < good.length; n++) expectReplog(() => decodeHeader(P, good.subarray(0, n)), 'ETRUNCATED', 'ends inside its header');
    expectReplog(() => decodeTrailer(P, good.subarray(0, TRAILER_BYTES), { fileName: 'f' }), 'ETRUNCATED', 'f: no trailer');
  });
});

// ------------------------------------------------------------ rotated files

describe('validateRotatedFile', () => {
  const expectFor = (f: LogHeaderFields) => ({ fsId: f.fsId, blockSizeBytes: f.blockSizeBytes, sequence: f.sequence });

  it('returns exactly the transactions written (random files)', () => {
    fc.assert(
      fc.property(fieldsArb, txnsArb, (fields, txns) => {
        const built = buildLog(fields, txns);
        const v = validateRotatedFile(P, built.bytes, expectFor(fields));
        expect(v.header).toMatchObject(fields);
        expect(v.transactions.map((t) => t.txn)).toEqual(txns.map((_, i) => fields.firstTxn + i));
        expect(v.transactions.map((t) => t.decoded.map(plain))).toEqual(txns.map((rs) => rs.map(plain)));
        v.transactions.forEach((t, i) => {
          expect(t.commit.recordCount).toBe(txns[i].length);
          expect(t.commit.nextIno).toBe(100 + i);
          expect(t.endOffsetBytes).toBe(built.commitEnds[i]);
          expect(t.records.map((r) => r.type)).toEqual(txns[i].map((r) => r.type));
        });
        expect(v.trailer).toEqual({
          lastTxn: fields.firstTxn + txns.length - 1,
          frameCount: txns.reduce((n, rs) => n + rs.length + 1, 0),
          fileCrc32: oracleCrc(built.live),
        });
        // The writer's running CRC (seed continuation) equals one pass of the oracle.
        expect(built.state.fileCrc32).toBe(oracleCrc(built.live));
        expect(built.state.sizeBytes).toBe(built.live.length);
      }),
      { numRuns: 150 },
    );
  });

  it('any single flipped bit anywhere is refused', () => {
    fc.assert(
      fc.property(fieldsArb, txnsArb, fc.nat(), (fields, txns, bitSeed) => {
        const { bytes } = buildLog(fields, txns);
        const bit = bitSeed % (bytes.length * 8);
        const damaged = bytes.slice();
        damaged[bit >> 3] ^= 1 << (bit & 7);
        const err = thrown(() => validateRotatedFile(P, damaged, expectFor(fields)));
        expect(err, `bit ${bit} of ${bytes.length * 8} flipped and the file was accepted`).toBeInstanceOf(ReplogError);
      }),
      { numRuns: 400 },
    );
  });

  it('a file cut at any byte is ETRUNCATED (or ECRC), never a partial result', () => {
    const { bytes } = buildLog(FIELDS, sampleTxns);
    for (let n = 0; n < bytes.length; n++) {
      const err = thrown(() => validateRotatedFile(P, bytes.subarray(0, n), { ...expectFor(FIELDS), fileName: 'replog.dta-7' }));
      expect(err, `cut at ${n}`).toBeInstanceOf(ReplogError);
      expect(['ETRUNCATED', 'ECRC'], `cut at ${n}: ${(err as Error).message}`).toContain(errorCode(err));
      expect((err as ReplogError).fileName).toBe('replog.dta-7');
    }
    fc.assert(
      fc.property(fieldsArb, txnsArb, fc.nat(), (fields, txns, cutSeed) => {
        const { bytes: b } = buildLog(fields, txns);
        const err = thrown(() => validateRotatedFile(P, b.subarray(0, cutSeed % b.length), expectFor(fields)));
        expect(['ETRUNCATED', 'ECRC']).toContain(errorCode(err));
      }),
      { numRuns: 200 },
    );
  });

  it('the live log without its trailer is ETRUNCATED with a clear message', () => {
    const { live } = buildLog(FIELDS, sampleTxns);
    expectReplog(() => validateRotatedFile(P, live, { ...expectFor(FIELDS), fileName: 'replog.dta-7.tmp' }), 'ETRUNCATED', 'replog.dta-7.tmp: no trailer', 'half-copied');
  });

  it('another filesystem, block size or sequence: the code, found and expected', () => {
    const { bytes } = buildLog(FIELDS, sampleTxns);
    const e1 = expectReplog(
      () => validateRotatedFile(P, bytes, { fsId: 'other-fs', blockSizeBytes: 131072, sequence: 7, fileName: 'replog.dta-7' }),
      'EFSID',
      "replog.dta-7: written by filesystem 'fs-0123abcd'",
      "expected this filesystem's id 'other-fs'",
    );
    expect(e1.fileName).toBe('replog.dta-7');
    expectReplog(() => validateRotatedFile(P, bytes, { fsId: FIELDS.fsId, blockSizeBytes: 4096, sequence: 7 }), 'EBLKSIZE', 'block size 131072, expected 4096');
    expectReplog(() => validateRotatedFile(P, bytes, { fsId: FIELDS.fsId, blockSizeBytes: 131072, sequence: 8 }), 'ESEQUENCE', 'has sequence 7, expected sequence 8');
    // Without a sequence expectation any sequence passes.
    expect(validateRotatedFile(P, bytes, { fsId: FIELDS.fsId, blockSizeBytes: 131072 }).header.sequence).toBe(7);
  });

  it('a damaged frame is ECRC naming the whole-file CRC and the trailer offset', () => {
    const { bytes } = buildLog(FIELDS, sampleTxns);
    const damaged = bytes.slice();
    damaged[bytes.length - TRAILER_BYTES - 3] ^= 0x80;
    expectReplog(() => validateRotatedFile(P, damaged, expectFor(FIELDS)), 'ECRC', 'whole-file CRC-32', `offset ${bytes.length - TRAILER_BYTES}`);
  });

  /** A file with valid CRCs around whatever frames the test chooses: only the structure checks can catch it. */
  function craft(fields: LogHeaderFields, frames: readonly Uint8Array[], trailer?: { lastTxn?: number; frameCount?: number }): Uint8Array {
    const content = concat([encodeHeader(P, fields), ...frames]);
    return concat([
      content,
      encodeTrailer(P, { lastTxn: trailer?.lastTxn ?? fields.firstTxn - 1 + frames.filter((f) => f[8] === FRAME_TYPE.COMMIT).length, frameCount: trailer?.frameCount ?? frames.length, fileCrc32: P.crc32(content) }),
    ]);
  }
  const kv = (n: number): ReplRecord => ({ type: FRAME_TYPE.KV, kv: { table: 'inode', key: new Uint8Array([n]), value: new Uint8Array([n]) } });
  const tx = (txn: number, records: ReplRecord[]): Uint8Array[] => encodeTransaction(P, txn, records, { nextIno: 5, timeMs: 0 });
  const exp = { fsId: FIELDS.fsId, blockSizeBytes: FIELDS.blockSizeBytes, fileName: 'x' };

  it('structure errors: txn gaps, records without COMMIT, COMMIT not matching its records', () => {
    expect(validateRotatedFile(P, craft(FIELDS, [...tx(41, [kv(1)]), ...tx(42, [])]), exp).transactions).toHaveLength(2);
    expectReplog(() => validateRotatedFile(P, craft(FIELDS, [...tx(41, [kv(1)]), ...tx(43, [kv(2)])]), exp), 'ETXN', 'carries txn 43, expected txn 42');
    expectReplog(() => validateRotatedFile(P, craft(FIELDS, [...tx(40, [kv(1)])]), exp), 'ETXN', 'carries txn 40, expected txn 41');
    expectReplog(() => validateRotatedFile(P, craft(FIELDS, [...tx(41, [kv(1)]), ...tx(41, [kv(1)])]), exp), 'ETXN', 'expected txn 42');
    const open = tx(41, [kv(1), kv(2)]).slice(0, 2);
    expectReplog(() => validateRotatedFile(P, craft(FIELDS, open), exp), 'ETXN', 'txn 41 has 2 records but no COMMIT');
    const interleaved = [...tx(41, [kv(1)]).slice(0, 1), ...tx(42, [kv(2)])];
    expectReplog(() => validateRotatedFile(P, craft(FIELDS, interleaved), exp), 'ETXN', 'carries txn 42 inside txn 41');
    const [a, b, commit] = tx(41, [kv(1), kv(2)]);
    expectReplog(() => validateRotatedFile(P, craft(FIELDS, [b, a, commit]), exp), 'ETXN', 'frames CRC-32');
    expectReplog(() => validateRotatedFile(P, craft(FIELDS, [a, commit]), exp), 'ETXN', 'counts 2 records, found 1');
    expectReplog(() => validateRotatedFile(P, craft(FIELDS, tx(41, [kv(1)]), { lastTxn: 45 }), exp), 'ETXN', 'trailer names last txn 45');
    expectReplog(() => validateRotatedFile(P, craft(FIELDS, tx(41, [kv(1)]), { frameCount: 3 }), exp), 'ETXN', 'trailer counts 3 frames, the file holds 2');
  });

  it('wire frames, unknown codecs and oversized blocks are refused', () => {
    const hello = encodeFrame(P, FRAME_TYPE.HELLO, 41, new Uint8Array(4));
    expectReplog(() => validateRotatedFile(P, craft(FIELDS, [hello]), exp), 'EFRAME', 'HELLO is wire-only');
    const badCodec = tx(41, [{ type: FRAME_TYPE.BLOCK, block: { key: new Uint8Array([1]), codec: 77, rawLength: 4, stored: new Uint8Array(4) } }]);
    expectReplog(() => validateRotatedFile(P, craft(FIELDS, badCodec), exp), 'ERECORD', 'unknown codec id 77', 'x:');
    const small = { ...FIELDS, blockSizeBytes: 4096 };
    const tooBig = tx(41, [{ type: FRAME_TYPE.BLOCK, block: { key: new Uint8Array([1]), codec: 0, rawLength: 8192, stored: new Uint8Array(8192) } }]);
    expectReplog(() => validateRotatedFile(P, craft(small, tooBig), { ...exp, blockSizeBytes: 4096 }), 'ERECORD', 'raw length 8192 exceeds the block size 4096');
    const badKv = encodeFrame(P, FRAME_TYPE.KV, 41, new Uint8Array([9, 0, 1, 5, 0, 0, 0, 0, 0]));
    expectReplog(() => validateRotatedFile(P, craft(FIELDS, [badKv]), exp), 'ERECORD', 'unknown table id 9');
  });
});

// ------------------------------------------------------------ live log

describe('scanLiveLog', () => {
  it('cut at every byte: exactly the transactions whose COMMIT is complete', () => {
    const built = buildLog(FIELDS, sampleTxns);
    const { live, commitEnds, headerBytes } = built;
    for (let n = 0; n <= live.length; n++) {
      const cut = live.subarray(0, n);
      const scan = scanLiveLog(P, cut);
      const committed = commitEnds.filter((end) => end <= n).length;
      expect(scan.transactions.map((t) => t.txn), `cut at ${n}`).toEqual(sampleTxns.slice(0, committed).map((_, i) => FIELDS.firstTxn + i));
      expect(scan.transactions.map((t) => t.decoded.map(plain))).toEqual(sampleTxns.slice(0, committed).map((rs) => rs.map(plain)));
      if (n < headerBytes) {
        expect(scan.header).toBeUndefined();
        expect(scan.committedEndBytes).toBe(0);
        expect(scan.tail?.code ?? 'none').toBe(n === 0 ? 'none' : 'ETRUNCATED');
        continue;
      }
      const end = committed === 0 ? headerBytes : commitEnds[committed - 1];
      expect(scan.header?.sequence).toBe(FIELDS.sequence);
      expect(scan.committedEndBytes).toBe(end);
      expect(scan.committedCrc32).toBe(oracleCrc(live.subarray(0, end)));
      expect(scan.lastTxn).toBe(FIELDS.firstTxn - 1 + committed);
      // Whole records of the next txn are reported as uncommitted; a partial frame is the tail.
      let offset = end;
      let whole = 0;
      const next = built.frames[committed] ?? [];
      for (const f of next.slice(0, -1)) {
        if (offset + f.length > n) break;
        offset += f.length;
        whole++;
      }
      expect(scan.uncommitted?.records.length ?? 0).toBe(whole);
      if (whole > 0) expect(scan.uncommitted?.txn).toBe(FIELDS.firstTxn + committed);
      expect(scan.tail === undefined).toBe(offset === n);
      if (scan.tail) expect(scan.tail.offsetBytes).toBe(offset);
    }
  });

  it('random logs cut at a random byte, resumed, appended and rotated validate', () => {
    fc.assert(
      fc.property(fieldsArb, txnsArb, fc.nat(), fc.array(recordArb, { maxLength: 4 }), (fields, txns, cutSeed, more) => {
        const built = buildLog(fields, txns);
        const n = built.headerBytes + (cutSeed % (built.live.length - built.headerBytes + 1));
        const scan = scanLiveLog(P, built.live.subarray(0, n));
        const committed = built.commitEnds.filter((end) => end <= n).length;
        expect(scan.transactions).toHaveLength(committed);
        // The writer cuts at committedEndBytes, resumes, appends one more transaction and rotates.
        const state = LogWriterState.resume(P, scan);
        const extra = encodeTransaction(P, state.lastTxn + 1, more, { nextIno: 1, timeMs: 2 });
        state.appendAll(extra);
        const rotated = concat([built.live.subarray(0, scan.committedEndBytes), ...extra, state.encodeTrailer()]);
        const v = validateRotatedFile(P, rotated, { fsId: fields.fsId, blockSizeBytes: fields.blockSizeBytes, sequence: fields.sequence });
        expect(v.transactions.map((t) => t.decoded.map(plain))).toEqual([...txns.slice(0, committed), more].map((rs) => rs.map(plain)));
        expect(state.nextHeaderFields()).toEqual({ ...fields, sequence: fields.sequence + 1, firstTxn: v.trailer.lastTxn + 1 });
      }),
      { numRuns: 150 },
    );
  });

  it('a torn (garbage or zero) tail after the last COMMIT is reported and cut, not thrown', () => {
    const { live, commitEnds } = buildLog(FIELDS, sampleTxns);
    const zeros = scanLiveLog(P, concat([live, new Uint8Array(700)]));
    expect(zeros.transactions).toHaveLength(sampleTxns.length);
    expect(zeros.committedEndBytes).toBe(live.length);
    expect(zeros.tail).toMatchObject({ code: 'EFRAME', offsetBytes: live.length });
    // A frame whose bytes were partly lost: right length, wrong CRC.
    const damaged = live.slice();
    damaged[live.length - 2] ^= 0xff;
    const scan = scanLiveLog(P, damaged);
    expect(scan.transactions).toHaveLength(sampleTxns.length - 1);
    expect(scan.committedEndBytes).toBe(commitEnds[commitEnds.length - 2]);
    expect(scan.tail?.code).toBe('ECRC');
  });

  it('an empty file has no header and nothing to cut; a damaged header throws', () => {
    expect(scanLiveLog(P, new Uint8Array(0))).toMatchObject({ header: undefined, committedEndBytes: 0, tail: undefined, transactions: [] });
    const { live } = buildLog(FIELDS, sampleTxns);
    const bad = live.slice();
    bad[14] ^= 1;
    expectReplog(() => scanLiveLog(P, bad, { fileName: 'replog.dta' }), 'ECRC', 'replog.dta: header CRC-32');
    expectReplog(() => scanLiveLog(P, new Uint8Array(50)), 'EFORMAT');
  });

  it('structure errors among valid frames throw (no crash produces them)', () => {
    const header = encodeHeader(P, FIELDS);
    const frames = encodeTransaction(P, 42, [], { nextIno: 1, timeMs: 0 });
    expectReplog(() => scanLiveLog(P, concat([header, ...frames])), 'ETXN', 'expected txn 41');
  });
});

// ------------------------------------------------------------ writer state and assembler

describe('LogWriterState and TransactionAssembler', () => {
  it('refuses appends that break the transaction structure (writer bugs)', () => {
    const { state } = LogWriterState.create(P, FIELDS);
    const frames = encodeTransaction(P, 41, [{ type: FRAME_TYPE.KV, kv: { table: 'meta', key: new Uint8Array([1]), value: undefined } }], { nextIno: 1, timeMs: 0 });
    expect(errorCode(thrown(() => state.append(encodeTransaction(P, 42, [], { nextIno: 1, timeMs: 0 })[0])))).toBe('EASSERT');
    expect(errorCode(thrown(() => state.append(frames[1])))).toBe('EASSERT'); // COMMIT counting a record never appended
    expect(errorCode(thrown(() => state.append(encodeFrame(P, FRAME_TYPE.ACK, 41, new Uint8Array(0)))))).toBe('EASSERT');
    state.append(frames[0]);
    expect(state.inTransaction).toBe(true);
    expect(errorCode(thrown(() => state.trailer()))).toBe('EASSERT');
    state.append(frames[1]);
    expect(state.transactionCount).toBe(1);
    expect(state.trailer().lastTxn).toBe(41);
  });

  it('the assembler rejects a COMMIT whose records were not the ones sent', () => {
    const a = new TransactionAssembler(P, 1);
    const frames = encodeTransaction(P, 1, [{ type: FRAME_TYPE.KV, kv: { table: 'meta', key: new Uint8Array([1]), value: undefined } }], { nextIno: 1, timeMs: 0 });
    const other = encodeRecordFrame(P, 1, { type: FRAME_TYPE.KV, kv: { table: 'meta', key: new Uint8Array([2]), value: undefined } });
    const d = new FrameDecoder(P, FRAME_BYTES_MAX);
    d.push(concat([other, frames[1]]));
    expect(a.accept(d.next()!)).toBeUndefined();
    expectReplog(() => a.accept(d.next()!), 'ETXN', 'frames CRC-32');
    expect(decodeRecord({ type: 1, txn: 1, payload: encodeKv({ table: 'symlink', key: new Uint8Array([3]), value: new Uint8Array([4]) }), crc32: 0, offsetBytes: 0, sizeBytes: 0 })).toMatchObject({
      type: 1,
      kv: { table: 'symlink' },
    });
  });
});
