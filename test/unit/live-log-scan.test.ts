// The streamed scan of a live replog.dta (LiveLogScanner, scanLiveLogFile),
// which a master's mount runs instead of reading the whole log into memory,
// against scanLiveLog over the whole bytes (the oracle): random live logs
// (KV, BLOCK and BLOCKREF records), cut, damaged or with garbage appended,
// pushed in random chunks (single bytes, chunks that split the header and
// frame headers) or read in reads of a random size, give the same header,
// transactions, records, torn tail, committed end and CRC, or throw the
// same error. And the reads stay within the chunk size.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { nodePrimitives as P } from '../../src/real/primitives.ts';
import { damageArb, damaged, liveLog, type LogRecord, liveRecordArb as recordArb } from '../support/log-arb.ts';
import {
  type Frame,
  FRAME_TYPE,
  type ReplRecord,
  decodeRecord,
  type Transaction,
} from '../../src/core/replication/frames.ts';
import {
  type LiveLogScan,
  type LiveLogStreamScan,
  LiveLogScanner,
  type LogHeaderFields,
  scanLiveLog,
  scanLiveLogFile,
  withoutLastTransaction,
} from '../../src/core/replication/log-file.ts';

const RUNS = Number(process.env.LESSFS_PROP_RUNS ?? 300);

// ------------------------------------------------------------ random live logs

const fieldsArb: fc.Arbitrary<LogHeaderFields> = fc.record({
  fsId: fc.string({ minLength: 1, maxLength: 40, unit: 'grapheme' }),
  blockSizeBytes: fc.constant(4096),
  sequence: fc.nat({ max: 1000 }),
  firstTxn: fc.integer({ min: 1, max: 1_000_000 }),
});

// ------------------------------------------------------------ what a scan found

/** A frame as plain data (its bytes copied: a streamed scan's views are valid only during the call). */
function plainFrame(f: Frame): unknown {
  return { ...f, payload: Array.from(f.payload) };
}

function plainRecord(r: ReplRecord): unknown {
  if (r.type === FRAME_TYPE.KV) return { t: 'kv', table: r.kv.table, key: Array.from(r.kv.key), value: r.kv.value && Array.from(r.kv.value) };
  if (r.type === FRAME_TYPE.BLOCKREF) return { t: 'ref', ...r.ref, key: Array.from(r.ref.key) };
  return { t: 'block', key: Array.from(r.block.key), codec: r.block.codec, rawLength: r.block.rawLength, stored: Array.from(r.block.stored) };
}

interface Found {
  summary: unknown;
  transactions: unknown[];
  /** Records read after the last COMMIT. */
  open: unknown[];
}

function summaryOf(s: LiveLogScan | LiveLogStreamScan): unknown {
  const recordCount = 'transactionCount' in s ? s.uncommitted?.recordCount : s.uncommitted?.records.length;
  return {
    header: s.header,
    committedEndBytes: s.committedEndBytes,
    committedCrc32: s.committedCrc32,
    frameCount: s.frameCount,
    lastTxn: s.lastTxn,
    tail: s.tail,
    uncommitted: s.uncommitted && { txn: s.uncommitted.txn, recordCount },
    transactionCount: 'transactionCount' in s ? s.transactionCount : s.transactions.length,
  };
}

function plainTransaction(t: Transaction, records: { frame: unknown; record: unknown }[]): unknown {
  return { txn: t.txn, records, commit: t.commit, commitFrame: plainFrame(t.commitFrame), endOffsetBytes: t.endOffsetBytes };
}

function wholeScan(bytes: Uint8Array): Found | Error {
  try {
    const s = scanLiveLog(P, bytes, { fileName: 'replog.dta' });
    return {
      summary: summaryOf(s),
      transactions: s.transactions.map((t) => plainTransaction(t, t.records.map((f, i) => ({ frame: plainFrame(f), record: plainRecord(t.decoded[i]) })))),
      open: (s.uncommitted?.records ?? []).map((f) => ({ frame: plainFrame(f), record: plainRecord(decodeRecord(f)) })),
    };
  } catch (err) {
    return err as Error;
  }
}

/** A visitor that copies what it is shown, as scanLiveLog's result would hold it. */
function collector(): { visit: { record(f: Frame, r: ReplRecord): void; commit(t: Transaction): void }; found(s: LiveLogStreamScan): Found } {
  const transactions: unknown[] = [];
  let open: { frame: unknown; record: unknown }[] = [];
  return {
    visit: {
      record: (f, r) => open.push({ frame: plainFrame(f), record: plainRecord(r) }),
      commit: (t) => {
        transactions.push(plainTransaction(t, open));
        open = [];
      },
    },
    found: (s) => ({ summary: summaryOf(s), transactions, open }),
  };
}

function streamScan(bytes: Uint8Array, chunkSizes: readonly number[], bufferMinBytes: number): Found | Error {
  const c = collector();
  try {
    const scanner = new LiveLogScanner(P, { fileName: 'replog.dta', visit: c.visit, bufferMinBytes });
    for (let at = 0, i = 0; at < bytes.length; i++) {
      const n = chunkSizes.length > 0 ? chunkSizes[i % chunkSizes.length] : bytes.length;
      scanner.push(bytes.subarray(at, at + n));
      at += n;
    }
    return c.found(scanner.end());
  } catch (err) {
    return err as Error;
  }
}

/** A file handle over bytes that records its reads. */
function fileOf(bytes: Uint8Array): { read(at: number, n: number, into?: Uint8Array): Promise<Uint8Array>; reads: number[] } {
  const reads: number[] = [];
  return {
    reads,
    read: async (at, n, into) => {
      reads.push(n);
      const got = bytes.subarray(at, at + n);
      if (!into) return got.slice();
      into.set(got);
      return into.subarray(0, got.length);
    },
  };
}

function expectSame(streamed: Found | Error, whole: Found | Error): void {
  if (whole instanceof Error) {
    expect(streamed, `the whole-buffer scan threw ${whole.message}`).toBeInstanceOf(Error);
    expect((streamed as Error).message).toBe(whole.message);
    expect((streamed as { code?: string }).code).toBe((whole as { code?: string }).code);
    return;
  }
  if (streamed instanceof Error) throw streamed;
  expect(streamed.summary).toEqual(whole.summary);
  expect(streamed.transactions).toEqual(whole.transactions);
  expect(streamed.open).toEqual(whole.open);
}

// Chunks of 1 byte, ones that split the header (36 + fs id bytes) and the 17-byte frame headers, and large ones.
const chunkSizesArb = fc.array(fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 20 }), fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 5000 })), { minLength: 1, maxLength: 8 });
// The scanner's smallest buffer: tiny ones make it move its bytes (or grow and shrink) at nearly every push.
const bufferMinArb = fc.constantFrom(1, 17, 100, 4096, 64 * 1024);
const logArb = fc.tuple(fieldsArb, fc.array(fc.array(recordArb, { maxLength: 6 }), { maxLength: 6 }), damageArb);

describe('streamed live log scan', () => {
  it('finds what scanLiveLog finds over the whole bytes, for any chunking (random logs, torn, damaged, with garbage)', () => {
    fc.assert(
      fc.property(logArb, chunkSizesArb, bufferMinArb, ([fields, txns, damage], chunkSizes, bufferMinBytes) => {
        const bytes = damaged(liveLog(fields, txns), damage);
        expectSame(streamScan(bytes, chunkSizes, bufferMinBytes), wholeScan(bytes));
      }),
      { numRuns: RUNS },
    );
  });

  it('scanLiveLogFile reads at most chunkBytes at a time and finds the same', async () => {
    await fc.assert(
      fc.asyncProperty(logArb, fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 4096 })), bufferMinArb, async ([fields, txns, damage], chunkBytes, bufferMinBytes) => {
        const bytes = damaged(liveLog(fields, txns), damage);
        const c = collector();
        const file = fileOf(bytes);
        let streamed: Found | Error;
        try {
          streamed = c.found(await scanLiveLogFile(P, file, bytes.length, { fileName: 'replog.dta', visit: c.visit, chunkBytes, bufferMinBytes }));
        } catch (err) {
          streamed = err as Error;
        }
        expectSame(streamed, wholeScan(bytes));
        expect(Math.max(0, ...file.reads)).toBeLessThanOrEqual(chunkBytes);
        // Nothing is read twice.
        expect(file.reads.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(bytes.length);
      }),
      { numRuns: RUNS },
    );
  });

  it('without its last transaction, the scan is that of the log cut before it', () => {
    fc.assert(
      fc.property(fieldsArb, fc.array(fc.array(recordArb, { maxLength: 4 }), { minLength: 1, maxLength: 5 }), chunkSizesArb, bufferMinArb, (fields, txns, chunkSizes, bufferMinBytes) => {
        const bytes = liveLog(fields, txns);
        const c = collector();
        const scanner = new LiveLogScanner(P, { visit: c.visit, bufferMinBytes });
        for (let at = 0, i = 0; at < bytes.length; i++) {
          scanner.push(bytes.subarray(at, at + chunkSizes[i % chunkSizes.length]));
          at += chunkSizes[i % chunkSizes.length];
        }
        const full = scanner.end();
        const cut = scanLiveLog(P, bytes.subarray(0, liveLog(fields, txns.slice(0, -1)).length));
        expect(summaryOf(withoutLastTransaction(full))).toEqual(summaryOf(cut));
      }),
      { numRuns: RUNS },
    );
  });

  it('a frame longer than the chunk is read in chunk-sized reads', async () => {
    const fields: LogHeaderFields = { fsId: 'fs-big', blockSizeBytes: 131072, sequence: 1, firstTxn: 1 };
    const big: LogRecord = { type: FRAME_TYPE.KV, kv: { table: 'inode', key: new Uint8Array([1]), value: new Uint8Array(3 << 20).fill(7) } };
    const small: LogRecord = { type: FRAME_TYPE.KV, kv: { table: 'inode', key: new Uint8Array([2]), value: new Uint8Array(10) } };
    const bytes = liveLog(fields, [[small], [big, small], [small]]);
    const file = fileOf(bytes);
    const values: number[] = [];
    const scan = await scanLiveLogFile(P, file, bytes.length, { visit: { record: (_f, r) => values.push(r.type === FRAME_TYPE.KV ? (r.kv.value?.length ?? -1) : -2) }, chunkBytes: 64 * 1024 });
    expect(summaryOf(scan)).toEqual(summaryOf(scanLiveLog(P, bytes)));
    expect(scan).toMatchObject({ tail: undefined, lastTxn: 3, committedEndBytes: bytes.length });
    expect(values).toEqual([10, 3 << 20, 10, 10]);
    expect(Math.max(...file.reads)).toBe(64 * 1024);
  });
});
