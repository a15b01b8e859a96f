// The streamed two-pass read of a rotated replog.dta-N (rotated-file.ts),
// which a batch slave runs instead of reading the whole file into memory,
// against validateRotatedFile over the whole bytes (the oracle): random
// rotated files, cut, bit-flipped, extended (test/support/log-arb.ts), with frames dropped, repeated,
// swapped or damaged and the file sealed again (so the structure checks are
// reached), or with a trailer that miscounts, read in reads of a random size
// (down to 1 byte, sizes that split the header and frame headers): pass 1
// accepts exactly what the oracle accepts and refuses with the same code and
// message; pass 2 hands over the oracle's transactions, as copies; and a file
// that holds other bytes in pass 2 is refused (ECHANGED) before a transaction
// that differs is handed over.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { nodePrimitives as P } from '../../src/real/primitives.ts';
import { concat } from '../../src/core/bytes.ts';
import { blockArb, chunked, type Damage, damageArb, damaged, kvArb, type Reads } from '../support/log-arb.ts';
import { ReplogError } from '../../src/core/replication/errors.ts';
import { encodeFrame, encodeTransaction, FRAME_TYPE, type ReplRecord, type Transaction } from '../../src/core/replication/frames.ts';
import { encodeHeader, encodeTrailer, type LogHeaderFields, TRAILER_BYTES, validateRotatedFile } from '../../src/core/replication/log-file.ts';
import { bytesSource, checkRotatedFile, type RotatedFileSource, rotatedTransactions } from '../../src/core/replication/rotated-file.ts';

const RUNS = Number(process.env.LESSFS_PROP_RUNS ?? 300);

const recordArb: fc.Arbitrary<ReplRecord> = fc.oneof(
  { arbitrary: kvArb.map((kv): ReplRecord => ({ type: FRAME_TYPE.KV, kv })), weight: 8 },
  { arbitrary: blockArb.map((block): ReplRecord => ({ type: FRAME_TYPE.BLOCK, block })), weight: 8 },
  // Now and then past the block size (ERECORD).
  { arbitrary: blockArb.map((block): ReplRecord => ({ type: FRAME_TYPE.BLOCK, block: { ...block, rawLength: 4097 } })), weight: 1 },
);

const fieldsArb: fc.Arbitrary<LogHeaderFields> = fc.record({
  fsId: fc.string({ minLength: 1, maxLength: 40, unit: 'grapheme' }),
  blockSizeBytes: fc.constant(4096),
  sequence: fc.nat({ max: 1000 }),
  firstTxn: fc.integer({ min: 1, max: 1_000_000 }),
});

const txnsArb = fc.array(fc.array(recordArb, { maxLength: 5 }), { maxLength: 6 });

/** What is done to the file: to its bytes (not sealed again), or to its frames and then sealed with a trailer that matches (or lies). */
type Change =
  | { kind: 'bytes'; damage: Damage }
  | { kind: 'drop' | 'repeat' | 'swap'; at: number }
  | { kind: 'damage'; at: number; byte: number; mask: number }
  | { kind: 'wire'; at: number }
  | { kind: 'lie'; lastTxn: number; frameCount: number }
  | { kind: 'sealed-garbage'; bytes: Uint8Array };

const NONE: Change = { kind: 'bytes', damage: { kind: 'none' } };

const changeArb: fc.Arbitrary<Change> = fc.oneof(
  damageArb.map((damage): Change => ({ kind: 'bytes', damage })),
  fc.tuple(fc.constantFrom<'drop' | 'repeat' | 'swap'>('drop', 'repeat', 'swap'), fc.nat()).map(([kind, at]): Change => ({ kind, at })),
  fc.tuple(fc.nat(), fc.nat(), fc.integer({ min: 1, max: 255 })).map(([at, byte, mask]): Change => ({ kind: 'damage', at, byte, mask })),
  fc.nat().map((at): Change => ({ kind: 'wire', at })),
  fc.tuple(fc.integer({ min: -2, max: 2 }), fc.integer({ min: -2, max: 2 })).map(([lastTxn, frameCount]): Change => ({ kind: 'lie', lastTxn, frameCount })),
  fc.uint8Array({ minLength: 1, maxLength: 40 }).map((bytes): Change => ({ kind: 'sealed-garbage', bytes })),
);

/** A rotated file of these frames, with a trailer that matches them (plus the lie's offsets). */
function seal(fields: LogHeaderFields, frames: readonly Uint8Array[], lastTxn: number, frameCount: number): Uint8Array {
  const content = concat(encodeHeader(P, fields), ...frames);
  return concat(content, encodeTrailer(P, { lastTxn: Math.max(0, lastTxn), frameCount: Math.max(0, frameCount), fileCrc32: P.crc32(content) }));
}

function rotatedFile(fields: LogHeaderFields, txns: readonly ReplRecord[][], change: Change): Uint8Array {
  const frames = txns.flatMap((records, i) => encodeTransaction(P, fields.firstTxn + i, records, { nextIno: 10 + i, timeMs: 1000 * i }));
  const lastTxn = fields.firstTxn + txns.length - 1;
  const good = seal(fields, frames, lastTxn, frames.length);
  const k = frames.length === 0 ? 0 : 'at' in change ? change.at % frames.length : 0;
  const resealed = (fs: Uint8Array[]): Uint8Array => seal(fields, fs, lastTxn, fs.length);
  switch (change.kind) {
    case 'bytes':
      return damaged(good, change.damage);
    case 'sealed-garbage':
      return seal(fields, [...frames, change.bytes], lastTxn, frames.length + 1);
    case 'lie':
      return seal(fields, frames, lastTxn + change.lastTxn, frames.length + change.frameCount);
    case 'wire':
      return resealed([...frames.slice(0, k), encodeFrame(P, FRAME_TYPE.HELLO, fields.firstTxn, new Uint8Array(8)), ...frames.slice(k)]);
  }
  if (frames.length === 0) return good;
  const fs = [...frames];
  if (change.kind === 'drop') fs.splice(k, 1);
  else if (change.kind === 'repeat') fs.splice(k, 0, fs[k]);
  else if (change.kind === 'swap') [fs[k], fs[(k + 1) % fs.length]] = [fs[(k + 1) % fs.length], fs[k]];
  else if (change.kind === 'damage') {
    const f = fs[k].slice();
    f[change.byte % f.length] ^= change.mask;
    fs[k] = f;
  }
  return resealed(fs);
}

function outcome(fn: () => unknown): { ok: true; value: unknown } | { ok: false; code: string; message: string } {
  try {
    return { ok: true, value: fn() };
  } catch (err) {
    if (!(err instanceof ReplogError)) throw err;
    return { ok: false, code: err.code, message: err.message };
  }
}

async function outcomeAsync<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; code: string; message: string }> {
  try {
    return { ok: true, value: await p };
  } catch (err) {
    if (!(err instanceof ReplogError)) throw err;
    return { ok: false, code: err.code, message: err.message };
  }
}

function plain(tx: Transaction): unknown {
  return {
    txn: tx.txn,
    commit: tx.commit,
    sizes: tx.records.map((r) => r.sizeBytes),
    records: tx.decoded.map((r) =>
      r.type === FRAME_TYPE.KV
        ? { table: r.kv.table, key: Array.from(r.kv.key), value: r.kv.value && Array.from(r.kv.value) }
        : r.type === FRAME_TYPE.BLOCK
          ? { key: Array.from(r.block.key), codec: r.block.codec, raw: r.block.rawLength, stored: Array.from(r.block.stored) }
          : r,
    ),
  };
}

async function collect(gen: AsyncGenerator<Transaction>, into: Transaction[]): Promise<void> {
  for await (const tx of gen) into.push(tx);
}

const goodTxnsArb = fc.array(fc.array(recordArb.filter((r) => r.type !== FRAME_TYPE.BLOCK || r.block.rawLength <= 4096), { maxLength: 4 }), { minLength: 1, maxLength: 6 });

const chunkArb = fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 41, max: 5000 }));

describe('rotated file read in two streamed passes', () => {
  it('pass 1 accepts and refuses exactly as validateRotatedFile, for any read size; pass 2 gives its transactions', async () => {
    await fc.assert(
      fc.asyncProperty(fieldsArb, txnsArb, changeArb, chunkArb, fc.boolean(), fc.nat(), async (fields, txns, change, chunkBytes, adopt, skipSeed) => {
        const bytes = rotatedFile(fields, txns, change);
        const fileName = 'replog.dta-5';
        const oracle = outcome(() => validateRotatedFile(P, bytes, { fsId: fields.fsId, blockSizeBytes: 4096, fileName }));
        const reads: Reads = { count: 0, maxBytes: 0, buffers: new Set() };
        const source = chunked(bytes, chunkBytes, reads);
        const streamed = await outcomeAsync(checkRotatedFile(P, source, { fsId: adopt ? undefined : fields.fsId, blockSizeBytes: 4096, fileName }));
        // Reads are bounded by the chunk (the trailer is one read of its 32 bytes).
        expect(reads.maxBytes).toBeLessThanOrEqual(Math.max(chunkBytes, TRAILER_BYTES));
        // In memory (one read of a small file) it is the same too.
        const inMemory = await outcomeAsync(checkRotatedFile(P, bytesSource(bytes), { fsId: fields.fsId, blockSizeBytes: 4096, fileName }));
        if (!oracle.ok) {
          expect(streamed).toEqual(oracle);
          expect(inMemory).toEqual(oracle);
          return;
        }
        expect(streamed.ok, streamed.ok ? '' : streamed.message).toBe(true);
        expect(inMemory.ok).toBe(true);
        if (!streamed.ok || !inMemory.ok) return;
        const v = oracle.value as ReturnType<typeof validateRotatedFile>;
        const check = streamed.value;
        expect(check.header).toEqual(v.header);
        expect(check.trailer).toEqual(v.trailer);
        expect(Array.from(check.commitCrc32)).toEqual(v.transactions.map((t) => t.commitFrame.crc32));
        const blockBytes = v.transactions.map((t) => t.decoded.reduce((n, r) => n + (r.type === FRAME_TYPE.BLOCK ? r.block.stored.length : 0), 0));
        expect(Array.from(check.blockBytes)).toEqual(blockBytes);
        expect(Array.from(inMemory.value.commitCrc32)).toEqual(Array.from(check.commitCrc32));
        // Pass 2: the transactions after afterTxn, kept past later reads (copies, not views of the reused buffer).
        const afterTxn = fields.firstTxn - 1 + (skipSeed % (v.transactions.length + 1));
        const got: Transaction[] = [];
        await collect(rotatedTransactions(P, chunked(bytes, chunkBytes, reads), check, { fileName, afterTxn }), got);
        expect(got.map(plain)).toEqual(v.transactions.filter((t) => t.txn > afterTxn).map(plain));
        expect(reads.maxBytes).toBeLessThanOrEqual(Math.max(chunkBytes, TRAILER_BYTES));
      }),
      { numRuns: RUNS },
    );
  });

  it('a file with other bytes in pass 2 is ECHANGED, and what was handed over before is the checked transactions', async () => {
    await fc.assert(
      fc.asyncProperty(fieldsArb, goodTxnsArb, fc.oneof(changeArb, goodTxnsArb), chunkArb, fc.nat(), async (fields, txns, change, chunkBytes, switchSeed) => {
        const bytes = rotatedFile(fields, txns, NONE);
        // Damaged, or another valid file of the same master, sequence and txns (only the COMMITs' CRCs tell).
        const other = Array.isArray(change) ? rotatedFile(fields, txns.map((t, i) => change[i] ?? t), NONE) : rotatedFile(fields, txns, change);
        const check = await checkRotatedFile(P, bytesSource(bytes), { fsId: fields.fsId, blockSizeBytes: 4096 });
        const v = validateRotatedFile(P, bytes, { fsId: fields.fsId, blockSizeBytes: 4096 });
        const reads: Reads = { count: 0, maxBytes: 0, buffers: new Set() };
        // Other bytes from some read of pass 2 on (a copy overwriting the file while it is applied).
        const inner = chunked(bytes, chunkBytes, reads, { bytes: other, switchAfter: switchSeed % 8 });
        let differs = false;
        const source: RotatedFileSource = {
          ...inner,
          read: async (pos, len, into) => {
            const got = await inner.read(pos, len, into);
            if (Buffer.compare(got, bytes.subarray(pos, pos + len)) !== 0) differs = true;
            return got;
          },
        };
        const got: Transaction[] = [];
        const result = await outcomeAsync(collect(rotatedTransactions(P, source, check, { afterTxn: 0 }), got));
        // Whatever was handed over is a prefix of the checked file's transactions.
        expect(got.map(plain)).toEqual(v.transactions.slice(0, got.length).map(plain));
        if (differs) {
          expect(result.ok).toBe(false);
          if (!result.ok) expect(result.code, result.message).toBe('ECHANGED');
          if (!result.ok) expect(result.message).toContain('changed after it was checked');
        } else {
          // What pass 2 read (never the trailer) was the checked bytes: all of it is handed over.
          expect(result.ok).toBe(true);
          expect(got.length).toBe(v.transactions.length);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('a file whose reads end early (it shrank) is ETRUNCATED in pass 1, ECHANGED in pass 2', async () => {
    const fields: LogHeaderFields = { fsId: 'fs-x', blockSizeBytes: 4096, sequence: 3, firstTxn: 9 };
    const bytes = rotatedFile(fields, [[{ type: FRAME_TYPE.KV, kv: { table: 'inode', key: new Uint8Array([1]), value: new Uint8Array(500) } }]], NONE);
    const short: RotatedFileSource = { sizeBytes: bytes.length, chunkBytes: 64, read: async (pos, len) => bytes.subarray(pos, Math.min(pos + len, bytes.length - 100)) };
    await expect(checkRotatedFile(P, short, { fsId: 'fs-x', blockSizeBytes: 4096, fileName: 'f' })).rejects.toThrow(/ETRUNCATED: f: the file of \d+ bytes ended at \d+ while being read/);
    const check = await checkRotatedFile(P, bytesSource(bytes), { fsId: 'fs-x', blockSizeBytes: 4096 });
    await expect(collect(rotatedTransactions(P, short, check, { afterTxn: 0, fileName: 'f' }), [])).rejects.toThrow(/ECHANGED: f: the file changed after it was checked \(ETRUNCATED/);
  });
});
