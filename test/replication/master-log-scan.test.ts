// A live master's mount streams its live log (docs/architecture.md, "Limits
// at scale"): it used to read replog.dta whole and decode every record, which
// for a slave down a weekend meant gigabytes at mount. Here the master is
// opened with a small scan chunk over a log many times its size, through a
// disk that records every read of replog.dta: no read is larger than the
// chunk, and what the master built from the streamed scan (transaction ends,
// BLOCKREFs and their pins, commit times) serves exactly the stream that the
// log stands for.

import { describe, expect, it } from 'vitest';
import type { Disk, FileHandle } from '../../src/core/drivers.ts';
import { FsEngine, joinPath } from '../../src/core/fs/engine.ts';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { FRAME_TYPE, FrameDecoder, FRAME_BYTES_MAX, RECORD_FRAME_TYPES, TransactionAssembler, type Transaction } from '../../src/core/replication/frames.ts';
import { scanLiveLog } from '../../src/core/replication/log-file.ts';
import { LIVE_LOG_NAME, MasterLog, readFileWhole } from '../../src/core/replication/master-log.ts';
import { LiveCluster } from '../../src/sim/live-cluster.ts';
import { Scheduler } from '../../src/sim/scheduler.ts';
import { nodePrimitives as p } from '../../src/real/primitives.ts';

const SEED = 31;
const CHUNK_BYTES = 1024;

/** Bytes no other file shares (a new block per file: a BLOCKREF in a live log). */
function uniqueData(seed: number, lengthBytes: number): Uint8Array {
  const out = new Uint8Array(lengthBytes);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < lengthBytes; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** `disk`, with the length of every read of a file named `name` recorded. */
function recordingReads(disk: Disk, name: string, reads: number[]): Disk {
  const handle = (h: FileHandle): FileHandle =>
    new Proxy(h, {
      get(target, key) {
        if (key === 'read') {
          return (at: number, length: number, into?: Uint8Array) => {
            reads.push(length);
            return target.read(at, length, into);
          };
        }
        const v = Reflect.get(target, key) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  return new Proxy(disk, {
    get(target, key) {
      if (key === 'open') {
        return async (path: string, options?: Parameters<Disk['open']>[1]) => {
          const h = await target.open(path, options);
          return path.endsWith(`/${name}`) ? handle(h) : h;
        };
      }
      const v = Reflect.get(target, key) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

describe('a live master opens a large live log in bounded reads', () => {
  it(`reads replog.dta at most ${CHUNK_BYTES} bytes at a time and serves the same stream (seed ${SEED})`, async () => {
    // The slave is never opened: everything the master commits stays in its log.
    const c = new LiveCluster(new Scheduler({ seed: SEED }), SEED);
    await c.format();
    const e = await c.open(c.master);
    const fs = new PathFs(e);
    for (let t = 0; t < 6; t++) {
      fs.mkdir(`/d${t}`);
      for (let i = 0; i < 12; i++) {
        const path = `/d${t}/f${i}`;
        fs.create(path);
        await c.run(fs.write(path, 0, uniqueData(t * 100 + i, 300 + ((t * 12 + i) % 5) * 900)));
      }
      await c.run(e.commit());
    }
    await c.close(c.master);

    const d = c.master.machine.drivers();
    const logPath = joinPath(c.master.options.blockDataPath, LIVE_LOG_NAME);
    const bytes = await c.run(readFileWhole(d.disk, logPath));
    const whole = scanLiveLog(p, bytes);
    const refs = whole.transactions.flatMap((t) => t.decoded.filter((r) => r.type === FRAME_TYPE.BLOCKREF));
    expect(bytes.length).toBeGreaterThan(20 * CHUNK_BYTES);
    expect(refs.length).toBeGreaterThan(50);

    const reads: number[] = [];
    const disk = recordingReads(d.disk, LIVE_LOG_NAME, reads);
    let log: MasterLog | undefined;
    let opened: { lastTxn: number; pendingTransactions: number; pinnedExtents: number; commitTimes: [number, number][] } | undefined;
    const engine = await c.run(
      FsEngine.open(d, c.master.options, async (en) => {
        log = await MasterLog.open(
          { disk, primitives: p, logger: d.logger, clock: d.clock },
          { fsId: en.format.fsId, blockSizeBytes: en.options.blockSizeBytes, dir: c.master.options.blockDataPath, batch: false, rotateSizeBytes: 0, rotateIntervalMs: 0, enabled: true, scanChunkBytes: CHUNK_BYTES },
          en,
        );
        // As opened, before the engine's first commit appends to it.
        opened = { lastTxn: log.lastTxn, pendingTransactions: log.pendingTransactions, pinnedExtents: log.pinnedExtents, commitTimes: [...log.recoveredCommitTimes] };
        return log;
      }),
    );
    try {
      const m = log as MasterLog;
      expect(Math.max(...reads)).toBeLessThanOrEqual(CHUNK_BYTES);
      expect(opened).toEqual({
        lastTxn: whole.lastTxn,
        pendingTransactions: whole.transactions.length,
        pinnedExtents: new Set(refs.map((r) => (r.type === FRAME_TYPE.BLOCKREF ? r.ref.extentOffsetBytes : -1))).size,
        commitTimes: whole.transactions.map((t) => [t.txn, t.commit.timeMs]),
      });

      // The stream the sender reads: every BLOCKREF as its BLOCK, at the offsets the index computed.
      const first = m.firstTxn;
      const start = m.startOf(first);
      const end = m.startOf(whole.lastTxn + 1);
      const stream = await c.run(m.read(start, end));
      expect(stream.length).toBe(end - start);
      const decoder = new FrameDecoder(p, FRAME_BYTES_MAX, { allowedTypes: RECORD_FRAME_TYPES, baseOffsetBytes: start });
      decoder.push(stream);
      const assembler = new TransactionAssembler(p, first, { blockSizeBytes: c.master.options.blockSizeBytes });
      const sent: Transaction[] = [];
      for (let f = decoder.next(); f; f = decoder.next()) {
        const done = assembler.accept(f);
        if (done) sent.push(done);
      }
      expect(decoder.bufferedBytes).toBe(0);
      expect(sent.map((t) => t.txn)).toEqual(whole.transactions.map((t) => t.txn));
      // Each transaction starts where the index says, and holds the records of the log (BLOCKREFs as BLOCKs).
      for (const [i, t] of sent.entries()) {
        expect(m.startOf(t.txn + 1)).toBe(t.endOffsetBytes);
        // Read alone, as a sender resuming at it does.
        const from = m.startOf(t.txn);
        expect(await c.run(m.read(from, t.endOffsetBytes))).toEqual(stream.subarray(from - start, t.endOffsetBytes - start));
        const logged = whole.transactions[i].decoded.map((r) => (r.type === FRAME_TYPE.BLOCKREF ? { type: FRAME_TYPE.BLOCK, key: Array.from(r.ref.key) } : r.type === FRAME_TYPE.BLOCK ? { type: r.type, key: Array.from(r.block.key) } : { type: r.type, key: Array.from(r.kv.key) }));
        expect(t.decoded.map((r) => (r.type === FRAME_TYPE.KV ? { type: r.type, key: Array.from(r.kv.key) } : { type: r.type, key: Array.from((r as { block: { key: Uint8Array } }).block.key) }))).toEqual(logged);
      }
    } finally {
      await c.run(engine.close());
    }
  });
});
