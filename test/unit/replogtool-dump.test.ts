// replogtool -b streams: the dump (dumpLog) reads the file in chunks twice
// (checked, then shown) and writes as it goes, against the dump as it was
// before, which read the file whole and printed the whole document
// (test/support/log-dump-oracle.ts): random rotated files and live logs
// (KV, BLOCK, BLOCKREF records, times that are no date), cut, bit-flipped,
// extended, with a header or trailer that miscounts, under names that make
// a file the live log, a numbered file or neither, read in reads of a random
// size down to 1 byte (the header, frame headers and the trailer split
// everywhere): the same bytes of text and of JSON, or the same refusal with
// nothing written; reads no larger than the chunk. A file that changes
// between the two reads is refused (ECHANGED) after writing no more than a
// prefix of the unchanged file's dump. And a small live log's dump, to the
// byte as replogtool printed it before it streamed.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { dumpLog } from '../../src/cli/replogtool.ts';
import { concat } from '../../src/core/bytes.ts';
import { ReplogError } from '../../src/core/replication/errors.ts';
import { encodeCommitFrame, encodeRecordFrame, FRAME_HEADER_BYTES, FRAME_TYPE, type KvPayload } from '../../src/core/replication/frames.ts';
import { encodeHeader, encodeTrailer, type LogHeaderFields, TRAILER_BYTES } from '../../src/core/replication/log-file.ts';
import { bytesSource, type RotatedFileSource, rotatedFileSource } from '../../src/core/replication/rotated-file.ts';
import { nodePrimitives as P } from '../../src/real/primitives.ts';
import { chunked, type Damage, damageArb, damaged, liveLog, type LogRecord, liveRecordArb, type Reads } from '../support/log-arb.ts';
import { dumpLogFile, printedDump } from '../support/log-dump-oracle.ts';

const RUNS = Number(process.env.LESSFS_PROP_RUNS ?? 300);
const BS = 4096;
const COMMIT_FRAME_BYTES = encodeCommitFrame(P, 1, { recordCount: 0, nextIno: 1, framesCrc32: 0, timeMs: 0 }).length;

interface LogSpec {
  fields: LogHeaderFields;
  txns: LogRecord[][];
  timesMs: number[];
  /** Rotated: with a trailer (counting `lie` more txns and frames than there are). */
  rotated: boolean;
  lie: { lastTxn: number; frameCount: number };
  /** The header names a first txn this far from the frames' (ETXN among valid frames). */
  headerShift: number;
  /** Bytes cut off the end before `damage`, up to the last COMMIT and a frame header more (a live log's uncommitted records). */
  commitLostBytes: number;
  damage: Damage;
}

const recordArb: fc.Arbitrary<LogRecord> = fc.oneof(
  { arbitrary: liveRecordArb, weight: 40 },
  // Now and then past the block size (ERECORD).
  { arbitrary: liveRecordArb.map((r): LogRecord => ('block' in r ? { ...r, block: { ...r.block, rawLength: BS + 1 } } : r)), weight: 1 },
);

const specArb: fc.Arbitrary<LogSpec> = fc.record({
  fields: fc.record({
    fsId: fc.string({ minLength: 1, maxLength: 40, unit: 'grapheme' }),
    blockSizeBytes: fc.constant(BS),
    sequence: fc.nat({ max: 3 }),
    firstTxn: fc.integer({ min: 1, max: 1_000_000 }),
  }),
  txns: fc.array(fc.array(recordArb, { maxLength: 5 }), { maxLength: 6 }),
  // Dates, and clocks no Date holds (shown as "ms (not a date)", null in JSON).
  timesMs: fc.array(fc.oneof(fc.nat({ max: 4e12 }), fc.integer({ min: 8.64e15 + 1, max: Number.MAX_SAFE_INTEGER })), { maxLength: 6 }),
  rotated: fc.boolean(),
  lie: fc.oneof(
    { arbitrary: fc.constant({ lastTxn: 0, frameCount: 0 }), weight: 4 },
    { arbitrary: fc.record({ lastTxn: fc.integer({ min: -1, max: 1 }), frameCount: fc.integer({ min: -1, max: 1 }) }), weight: 1 },
  ),
  headerShift: fc.oneof({ arbitrary: fc.constant(0), weight: 6 }, { arbitrary: fc.constantFrom(-1, 1), weight: 1 }),
  commitLostBytes: fc.oneof({ arbitrary: fc.constant(0), weight: 2 }, { arbitrary: fc.integer({ min: 1, max: COMMIT_FRAME_BYTES + FRAME_HEADER_BYTES }), weight: 1 }),
  damage: fc.oneof({ arbitrary: fc.constant<Damage>({ kind: 'none' }), weight: 2 }, { arbitrary: damageArb, weight: 3 }),
});

/** The file: a rotated file has no BLOCKREF (as a master writes it: rotation materializes them). */
function logFile(s: LogSpec): Uint8Array {
  const txns = s.rotated ? s.txns.map((t) => t.map((r): LogRecord => (r.type === 'ref' ? { type: FRAME_TYPE.BLOCK, block: r.block } : r))) : s.txns;
  const frames = liveLog(s.fields, txns, s.timesMs).subarray(encodeHeader(P, s.fields).length);
  const header = encodeHeader(P, { ...s.fields, firstTxn: Math.max(1, s.fields.firstTxn + s.headerShift) });
  let bytes = concat(header, frames);
  bytes = bytes.subarray(0, Math.max(header.length, bytes.length - s.commitLostBytes));
  if (s.rotated) {
    const frameCount = txns.reduce((n, t) => n + t.length + 1, 0);
    const trailer = encodeTrailer(P, {
      lastTxn: Math.max(0, s.fields.firstTxn + txns.length - 1 + s.lie.lastTxn),
      frameCount: Math.max(0, frameCount + s.lie.frameCount),
      fileCrc32: P.crc32(bytes),
    });
    bytes = concat(bytes, trailer);
  }
  return damaged(bytes, s.damage);
}

/** Names that make a file the live log, a numbered file (its own sequence or another), or neither; mostly the one its kind has. */
function nameOf(s: LogSpec, seed: number): string {
  const names = s.rotated
    ? [`replog.dta-${s.fields.sequence}`, `dta/replog.dta-${s.fields.sequence}`, 'copy-of-a-log', `replog.dta-${s.fields.sequence + 1}`, 'replog.dta']
    : ['replog.dta', 'var/dta/replog.dta', 'replog.dta', 'copy-of-a-log', `replog.dta-${s.fields.sequence}`];
  return names[seed % names.length];
}

const chunkArb = fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 41, max: 5000 }));

type Outcome = { ok: true; out: string } | { ok: false; code: string; message: string; out: string };

function wholeDump(bytes: Uint8Array, name: string, blockSizeBytes: number, json: boolean): Outcome {
  try {
    return { ok: true, out: printedDump(dumpLogFile(P, bytes, name, blockSizeBytes), json) };
  } catch (err) {
    if (!(err instanceof ReplogError)) throw err;
    return { ok: false, code: err.code, message: err.message, out: '' };
  }
}

/** The dump of `source`, written into `sink.out` as it goes. */
async function streamedDump(source: RotatedFileSource, name: string, blockSizeBytes: number, json: boolean, sink = { out: '' }): Promise<Outcome> {
  try {
    await dumpLog(P, source, name, blockSizeBytes, json, (text) => (sink.out += text));
    return { ok: true, out: sink.out };
  } catch (err) {
    if (!(err instanceof ReplogError)) throw err;
    return { ok: false, code: err.code, message: err.message, out: sink.out };
  }
}

describe('replogtool dump, streamed', () => {
  it('writes the bytes the whole-file dump printed, text and JSON, or refuses the same way with nothing written, for any read size', async () => {
    await fc.assert(
      fc.asyncProperty(specArb, fc.nat(), chunkArb, fc.boolean(), fc.constantFrom(BS, BS, BS, 2 * BS), async (spec, nameSeed, chunkBytes, json, blockSizeBytes) => {
        const bytes = logFile(spec);
        const name = nameOf(spec, nameSeed);
        const expected = wholeDump(bytes, name, blockSizeBytes, json);
        const reads: Reads = { count: 0, maxBytes: 0, buffers: new Set() };
        // As the command reads it: a file that fits in one read is read once, a larger one in chunks, twice.
        const source = await rotatedFileSource(chunked(bytes, chunkBytes, reads), bytes.length, chunkBytes);
        const got = await streamedDump(source, name, blockSizeBytes, json);
        expect(got).toEqual(expected);
        expect(reads.maxBytes).toBeLessThanOrEqual(Math.max(chunkBytes, TRAILER_BYTES));
        if (got.ok && json) expect(() => JSON.parse(got.out)).not.toThrow();
      }),
      { numRuns: RUNS },
    );
  });

  it('a file that changes between its two reads is refused (ECHANGED) with at most a prefix of its dump written', async () => {
    await fc.assert(
      fc.asyncProperty(specArb, specArb, fc.boolean(), chunkArb, fc.nat(), fc.boolean(), async (spec, otherSpec, live, chunkBytes, switchSeed, json) => {
        // Undamaged, so that the first read accepts it; the other file the same but for its records, or damaged.
        const fields = spec.fields;
        const name = live ? 'replog.dta' : 'some.log';
        const good = { ...spec, rotated: !live, lie: { lastTxn: 0, frameCount: 0 }, headerShift: 0, commitLostBytes: live ? spec.commitLostBytes : 0, damage: { kind: 'none' } as Damage };
        const bytes = logFile(good);
        const expected = wholeDump(bytes, name, BS, json);
        fc.pre(expected.ok);
        const other = logFile({ ...good, ...otherSpec, fields, rotated: good.rotated });
        // The first write is the head, once the file was checked: the other bytes come from some read of the second pass on.
        const sink = { out: '' };
        let readsShown = 0;
        let differs = false;
        const watched: RotatedFileSource = {
          sizeBytes: bytes.length,
          chunkBytes,
          read: async (pos, len, into) => {
            const from = sink.out !== '' && readsShown++ >= switchSeed % 6 ? other : bytes;
            const got = from.subarray(pos, pos + len);
            if (Buffer.compare(got, bytes.subarray(pos, pos + len)) !== 0) differs = true;
            if (!into) return got.slice();
            into.set(got);
            return into.subarray(0, got.length);
          },
        };
        const got = await streamedDump(watched, name, BS, json, sink);
        if (got.ok) {
          // Nothing read was other bytes (or nothing of what was shown): the unchanged file's dump.
          expect(got.out).toBe(expected.out);
          if (!live) expect(differs).toBe(false);
        } else {
          expect(got.code, got.message).toBe('ECHANGED');
          expect(got.message).toContain('the file changed after it was checked');
          expect(expected.ok && expected.out.startsWith(got.out)).toBe(true);
        }
      }),
      { numRuns: RUNS },
    );
  });

  // Printed by replogtool before it streamed (898a75c), for this file.
  const GOLDEN_TEXT = `replog.dta: live replication log (no trailer), 608 bytes
header: magic LESSFSRL version 1, fs id fs-golden, block size 4096, sequence 2, first txn 7, 45 bytes
txn 7 at offset 45: 2 records, nextIno 10, master time 2026-05-28T20:26:40.000Z
  KV    inode     put    key 0101010101010101 (8 bytes), value 69 bytes
  BLOCKREF key 0202020202020202020202020202020202020202020202020202020202020202 (32 bytes), codec lz4, raw 4096 bytes, stored 37 bytes at blockdata.dta offset 8192
txn 8 at offset 264: 2 records, nextIno 11, master time 9000000000000000 ms (not a date)
  KV    dirent    delete key 0303030303030303030303030303030303030303030303030303030303030303... (40 bytes)
  BLOCK key 0404040404040404040404040404040404040404040404040404040404040404 (32 bytes), codec none, raw 100 bytes, stored 100 bytes
live log: 2 committed transactions (txns 7..8), 6 frames, committed data ends at offset 530
uncommitted: txn 9 has 1 records and no COMMIT (logged, never committed; the master drops them)
  KV    blockmap  put    key 05050505050505050505050505050505 (16 bytes), value 32 bytes
torn tail: 5 bytes from offset 603 (ETRUNCATED: frame needs 58 bytes, 5 remain); the master cuts them at its next mount if its database has not committed txn 9, else the log is damaged and the master refuses to mount
totals: 2 transactions, 2 KV records, 2 BLOCK records, 137 block bytes stored, 608 file bytes
`;
  const GOLDEN_EMPTY_TEXT = `replog.dta: live replication log (no trailer), 45 bytes
header: magic LESSFSRL version 1, fs id fs-golden, block size 4096, sequence 2, first txn 7, 45 bytes
live log: 0 committed transactions, 0 frames, committed data ends at offset 45
totals: 0 transactions, 0 KV records, 0 BLOCK records, 0 block bytes stored, 45 file bytes
`;
  const fields: LogHeaderFields = { fsId: 'fs-golden', blockSizeBytes: BS, sequence: 2, firstTxn: 7 };
  const key = (byte: number, lengthBytes: number): Uint8Array => new Uint8Array(lengthBytes).fill(byte);
  const committed = liveLog(
    fields,
    [
      [
        { type: FRAME_TYPE.KV, kv: { table: 'inode', key: key(1, 8), value: new Uint8Array(69) } },
        { type: 'ref', block: { key: key(2, 32), codec: 2, rawLength: BS, stored: new Uint8Array(37) }, extentOffsetBytes: 8192 },
      ],
      [
        { type: FRAME_TYPE.KV, kv: { table: 'dirent', key: key(3, 40), value: undefined } },
        { type: FRAME_TYPE.BLOCK, block: { key: key(4, 32), codec: 0, rawLength: 100, stored: new Uint8Array(100) } },
      ],
    ],
    [1_780_000_000_000, 9e15],
  );
  /** The live log with an uncommitted record of txn 9 and a torn frame header after it (of a frame of `tornLength` + 8 bytes). */
  const withOpen = (kv: KvPayload, tornLength = 50): Uint8Array => concat(committed, encodeRecordFrame(P, 9, { type: FRAME_TYPE.KV, kv }), new Uint8Array([0, 0, 0, tornLength, 1]));
  const openKv: KvPayload = { table: 'blockmap', key: key(5, 16), value: new Uint8Array(32) };

  it('dumps a live log to the byte as replogtool printed it before it streamed, read whole or a byte at a time', async () => {
    const bytes = withOpen(openKv);
    for (const source of [bytesSource(bytes), chunked(bytes, 1, { count: 0, maxBytes: 0, buffers: new Set() })]) {
      expect(await streamedDump(source, 'replog.dta', BS, false)).toEqual({ ok: true, out: GOLDEN_TEXT });
      const json = await streamedDump(source, 'replog.dta', BS, true);
      expect(json).toEqual(wholeDump(bytes, 'replog.dta', BS, true));
    }
    const empty = liveLog(fields, []);
    expect(await streamedDump(chunked(empty, 7, { count: 0, maxBytes: 0, buffers: new Set() }), 'replog.dta', BS, false)).toEqual({ ok: true, out: GOLDEN_EMPTY_TEXT });
  });

  it('stops reading when its output stops taking text (replogtool -b FILE | head): the write error ends it', async () => {
    const bytes = withOpen(openKv);
    const all = { count: 0, maxBytes: 0, buffers: new Set<ArrayBufferLike>() };
    expect((await streamedDump(chunked(bytes, 1, all), 'replog.dta', BS, false)).ok).toBe(true);
    const cut = { count: 0, maxBytes: 0, buffers: new Set<ArrayBufferLike>() };
    const gone = new Error('reader gone');
    let writes = 0;
    const stopped = dumpLog(P, chunked(bytes, 1, cut), 'replog.dta', BS, false, () => {
      writes++;
      throw gone;
    });
    await expect(stopped).rejects.toBe(gone);
    expect(writes).toBe(1);
    // The first read checks the whole file before anything is written; the second stops at the first line.
    expect(cut.count).toBeGreaterThanOrEqual(bytes.length);
    expect(cut.count).toBeLessThan(all.count - bytes.length / 2);
  });

  it('a live log whose reads end early (it shrank) is ETRUNCATED with nothing written; one whose uncommitted record or torn tail changed between the reads is ECHANGED', async () => {
    const bytes = withOpen(openKv);
    const short: RotatedFileSource = { sizeBytes: bytes.length, chunkBytes: 64, read: async (pos, len) => bytes.subarray(pos, Math.min(pos + len, bytes.length - 100)) };
    const shrank = await streamedDump(short, 'replog.dta', BS, false);
    expect(shrank).toMatchObject({ ok: false, code: 'ETRUNCATED', out: '' });
    if (!shrank.ok) expect(shrank.message).toBe(`ETRUNCATED: replog.dta: the file of 608 bytes ended at 508 while being read: is it still being written or copied? (at offset 508)`);
    // Another key of the same length in the record after the last COMMIT (only the records' CRCs tell), or a torn frame that claims another length.
    for (const other of [withOpen({ ...openKv, key: key(6, 16) }), withOpen(openKv, 60)]) {
      const sink = { out: '' };
      const changing: RotatedFileSource = { sizeBytes: bytes.length, chunkBytes: 64, read: async (pos, len) => (sink.out === '' ? bytes : other).slice(pos, pos + len) };
      const changed = await streamedDump(changing, 'replog.dta', BS, false, sink);
      expect(changed).toMatchObject({ ok: false, code: 'ECHANGED' });
      if (!changed.ok) expect(changed.message).toContain('the file changed after it was checked (its committed end, uncommitted records or torn tail differ)');
      expect(GOLDEN_TEXT.startsWith(changed.out)).toBe(true);
    }
  });
});
