// Random replication log contents and damage for the property tests of the
// log readers (live-log-scan, rotated-file, replogtool-dump): records of
// every kind, live logs of them, what a crash, bit rot or a foreign writer
// leave of a file, and a file read in reads of any size.

import fc from 'fast-check';
import { concat } from '../../src/core/bytes.ts';
import {
  type BlockPayload,
  blockFrameCrc,
  encodeBlockRefFrame,
  encodeCommitFrame,
  encodeRecordFrame,
  foldFrameCrc,
  FRAME_TYPE,
  type KvPayload,
  REPL_TABLE_IDS,
  type ReplRecord,
  type ReplTableName,
} from '../../src/core/replication/frames.ts';
import { encodeHeader, type LogHeaderFields } from '../../src/core/replication/log-file.ts';
import type { RotatedFileSource } from '../../src/core/replication/rotated-file.ts';
import { nodePrimitives as P } from '../../src/real/primitives.ts';

export const kvArb: fc.Arbitrary<KvPayload> = fc.record({
  table: fc.constantFrom(...(Object.keys(REPL_TABLE_IDS) as ReplTableName[])),
  key: fc.uint8Array({ minLength: 1, maxLength: 40 }),
  value: fc.option(fc.uint8Array({ maxLength: 300 }), { nil: undefined }),
});

export const blockArb: fc.Arbitrary<BlockPayload> = fc.record({
  key: fc.uint8Array({ minLength: 1, maxLength: 40 }),
  codec: fc.constantFrom(...P.codecs.map((c) => c.id)),
  rawLength: fc.integer({ min: 1, max: 4096 }),
  stored: fc.uint8Array({ maxLength: 600 }),
});

/** What happened to the log after it was written: what a crash, bit rot or a foreign writer leave. */
export type Damage =
  | { kind: 'none' }
  | { kind: 'cut'; at: number }
  | { kind: 'flip'; at: number; mask: number }
  | { kind: 'garbage'; bytes: Uint8Array }
  | { kind: 'zeros'; length: number };

export const damageArb: fc.Arbitrary<Damage> = fc.oneof(
  fc.constant<Damage>({ kind: 'none' }),
  fc.nat().map((at): Damage => ({ kind: 'cut', at })),
  fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })).map(([at, mask]): Damage => ({ kind: 'flip', at, mask })),
  fc.uint8Array({ minLength: 1, maxLength: 64 }).map((bytes): Damage => ({ kind: 'garbage', bytes })),
  fc.integer({ min: 1, max: 700 }).map((length): Damage => ({ kind: 'zeros', length })),
);

export function damaged(log: Uint8Array, d: Damage): Uint8Array {
  switch (d.kind) {
    case 'none':
      return log;
    case 'cut':
      return log.subarray(0, d.at % (log.length + 1));
    case 'flip': {
      // A flipped bit in the header throws; in a frame it is a CRC (or length) failure: a tail that is not the end.
      const out = log.slice();
      out[d.at % out.length] ^= d.mask;
      return out;
    }
    case 'garbage':
      return concat(log, d.bytes);
    case 'zeros':
      return concat(log, new Uint8Array(d.length));
  }
}

/** A record of a live log: a BLOCKREF ('ref') stands for the BLOCK whose bytes stay in the data file. */
export type LogRecord = ReplRecord | { type: 'ref'; block: BlockPayload; extentOffsetBytes: number };

export const liveRecordArb: fc.Arbitrary<LogRecord> = fc.oneof(
  kvArb.map((kv): LogRecord => ({ type: FRAME_TYPE.KV, kv })),
  blockArb.map((block): LogRecord => ({ type: FRAME_TYPE.BLOCK, block })),
  fc.tuple(blockArb, fc.nat({ max: 1 << 30 })).map(([block, extentOffsetBytes]): LogRecord => ({ type: 'ref', block, extentOffsetBytes })),
);

/**
 * A live log: header, then transactions of records (BLOCKREFs bound by their
 * BLOCK's CRC), each ended by its COMMIT (at master time `timesMs[i]`, else 1000 × i).
 */
export function liveLog(fields: LogHeaderFields, txns: readonly LogRecord[][], timesMs: readonly number[] = []): Uint8Array {
  const parts: Uint8Array[] = [encodeHeader(P, fields)];
  txns.forEach((records, i) => {
    const txn = fields.firstTxn + i;
    let framesCrc32 = 0;
    for (const r of records) {
      const frame = r.type === 'ref' ? encodeBlockRefFrame(P, txn, r.block, r.extentOffsetBytes) : encodeRecordFrame(P, txn, r);
      const bound = r.type === 'ref' ? blockFrameCrc(P, txn, r.block) : new DataView(frame.buffer, frame.byteOffset).getUint32(4);
      framesCrc32 = foldFrameCrc(P, framesCrc32, bound);
      parts.push(frame);
    }
    parts.push(encodeCommitFrame(P, txn, { recordCount: records.length, nextIno: 10 + i, framesCrc32, timeMs: timesMs[i] ?? 1000 * i }));
  });
  return concat(...parts);
}

export interface Reads {
  count: number;
  maxBytes: number;
  buffers: Set<ArrayBufferLike>;
}

/** The file read in reads of at most chunkBytes, into the caller's buffer; `later` serves other bytes once `switchAfter` reads were made. */
export function chunked(bytes: Uint8Array, chunkBytes: number, reads: Reads, later?: { bytes: Uint8Array; switchAfter: number }): RotatedFileSource {
  return {
    sizeBytes: bytes.length,
    chunkBytes,
    read: async (positionBytes, length, into) => {
      const from = later && reads.count >= later.switchAfter ? later.bytes : bytes;
      reads.count++;
      reads.maxBytes = Math.max(reads.maxBytes, length);
      const got = from.subarray(positionBytes, positionBytes + length);
      if (!into) return got.slice();
      reads.buffers.add(into.buffer);
      into.set(got);
      return into.subarray(0, got.length);
    },
  };
}
