// A watchdir slave reads a rotated file larger than its read size in
// chunks, twice (checked, then applied a transaction at a time:
// rotated-file.ts), in the simulator: its reads stay within the read size
// and one reused buffer (grown only to the largest frame), and a file that
// holds other bytes when it is read the second time (a careless copy over
// it while it is applied) is not applied — nothing of it stays, the slave
// is at its last file's boundary with the master's tree — and is applied
// at the next poll once it holds the checked bytes again.

import { describe, expect, it } from 'vitest';
import type { FileHandle } from '../../src/core/drivers.ts';
import { validateRotatedFile } from '../../src/core/replication/log-file.ts';
import { processedLogName } from '../../src/core/replication/master-log.ts';
import { nodePrimitives } from '../../src/real/primitives.ts';
import { BatchCluster, WATCH_DIR } from '../../src/sim/batch-cluster.ts';
import { SimDisk } from '../../src/sim/disk.ts';
import { Scheduler } from '../../src/sim/scheduler.ts';
import { advance, consistent, masterHistory, MiB, POLL_MS } from './batch-slave-support.ts';

const CHUNK_BYTES = 1024;

interface OpenRecord {
  path: string;
  reads: { positionBytes: number; length: number; bufferBytes: number }[];
  buffers: Set<ArrayBufferLike>;
}

/**
 * Record the reads of the watch directory's log files, and let `change`
 * alter what a read returns (the file as it is on the disk at that moment).
 * Returns the restore function.
 */
function watchReads(opens: OpenRecord[], change: (rec: OpenRecord, positionBytes: number, got: Uint8Array) => Uint8Array): () => void {
  const open = SimDisk.prototype.open;
  SimDisk.prototype.open = async function (this: SimDisk, path, options) {
    const handle = await open.call(this, path, options);
    if (!path.startsWith(`${WATCH_DIR}/replog.dta-`)) return handle;
    const rec: OpenRecord = { path, reads: [], buffers: new Set() };
    opens.push(rec);
    const read = handle.read.bind(handle);
    const wrapped: FileHandle = Object.create(handle);
    wrapped.read = async (positionBytes, length, into) => {
      rec.reads.push({ positionBytes, length, bufferBytes: into?.buffer.byteLength ?? length });
      if (into) rec.buffers.add(into.buffer);
      return change(rec, positionBytes, await read(positionBytes, length, into));
    };
    wrapped.close = () => handle.close();
    return wrapped;
  };
  return () => {
    SimDisk.prototype.open = open;
  };
}

describe('a watchdir slave streams a rotated file', () => {
  it('reads in bounded chunks, refuses a file changed between its two reads, and applies it once it holds the checked bytes (seed 61)', async () => {
    const seed = 61;
    const c = new BatchCluster(new Scheduler({ seed }), seed, { watchdirPollMs: POLL_MS, watchdirChunkBytes: CHUNK_BYTES, engine: { commitIntervalMs: 2, cacheSizeBytes: 4 * MiB } });
    await c.format();
    const h = await masterHistory(c, seed, 3, 16);
    for (const f of h.files) await c.deliver(f.name, f.bytes);
    const second = h.files[1];
    const v = validateRotatedFile(nodePrimitives, second.bytes, { fsId: `master-${seed}`, blockSizeBytes: 4096 });
    const frameBytesMax = Math.max(...v.transactions.flatMap((t) => [...t.records, t.commitFrame].map((r) => r.sizeBytes)));
    expect(v.transactions.length).toBeGreaterThan(2);
    expect(second.bytes.length).toBeGreaterThan(8 * CHUNK_BYTES);
    // The first open of replog.dta-2: its last transaction holds other bytes once the second pass reads it.
    const lastTxStart = v.transactions[v.transactions.length - 1].records[0].offsetBytes;
    const opens: OpenRecord[] = [];
    let firstOpen: OpenRecord | undefined;
    const restore = watchReads(opens, (rec, positionBytes, got) => {
      if (!rec.path.endsWith(`/${second.name}`)) return got;
      firstOpen ??= rec;
      const readBefore = rec.reads.slice(0, -1).reduce((n, r) => n + r.length, 0);
      // Pass 2 has begun once the whole file was read once.
      if (rec !== firstOpen || readBefore < second.bytes.length - 32) return got;
      const at = lastTxStart + 20 - positionBytes;
      if (at >= 0 && at < got.length) got[at] ^= 0x40;
      return got;
    });
    try {
      const slave = await c.open(c.slave, true);
      // Reads of the file come between its transactions, and the commit
      // interval (1 s) passes while it is applied: every commit must still
      // end at a file boundary (the timer is held while a file is applied).
      const boundaries = new Set([0, ...h.files.map((f) => f.lastTxn)]);
      const committedAt: number[] = [];
      slave.commitPhases = (phase) => {
        if (phase === 'end') committedAt.push(c.slave.node!.slaveApplier!.durablePosition().txn);
      };
      await advance(c, POLL_MS / 2);
      const watch = c.slave.node!.watchdir!;
      // replog.dta-1 applied; replog.dta-2 was refused as changed, and nothing of it stayed.
      expect(watch.stats.lastError).toMatch(/replog\.dta-2 was not applied: ECHANGED: replog\.dta-2: the file changed after it was checked \(ECRC: .*frame CRC-32.*\); copy it again; nothing of it was kept \(this slave stays at replog\.dta-1, txn \d+\).*will look again at the next poll/);
      expect(watch.stats.filesApplied).toBe(1);
      expect(await consistent(c, h, 'after the changed file')).toBe(1);
      expect(c.slave.machine.logger.lines.filter((l) => /ECHANGED/.test(l))).toHaveLength(1);
      // Some of its transactions had gone into the cache before the changed one (then were dropped).
      expect(firstOpen!.reads.length).toBeGreaterThan(2 * (second.bytes.length / CHUNK_BYTES) - 4);
      // The next poll reads it again (the same name, size and position) and applies it, then the third.
      await c.scheduler.run({ untilMs: c.scheduler.nowMs() + 10 * POLL_MS, done: () => c.slave.node!.slaveApplier!.durablePosition().sequence === 3 && !watch.backlog });
      await advance(c, POLL_MS);
      expect(await consistent(c, h, 'after the polls')).toBe(3);
      expect(watch.stats.filesApplied).toBe(3);
      expect(await c.watchNames()).toEqual(h.files.map((f) => processedLogName(f.sequence)).sort());
      expect(committedAt.filter((txn) => !boundaries.has(txn)), `commits at ${committedAt.join(' ')}`).toEqual([]);
    } finally {
      restore();
    }
    // Every read is within the read size (or the trailer's 32 bytes); each open's buffers are one
    // of the read size and one grown to the largest frame, never the file.
    for (const rec of opens) {
      expect(Math.max(...rec.reads.map((r) => r.length)), rec.path).toBeLessThanOrEqual(CHUNK_BYTES);
      expect(Math.max(...rec.reads.map((r) => r.bufferBytes)), rec.path).toBeLessThanOrEqual(Math.max(CHUNK_BYTES, frameBytesMax));
      expect(rec.buffers.size, rec.path).toBeLessThanOrEqual(4);
    }
    expect(opens.filter((r) => r.path.endsWith(`/${second.name}`))).toHaveLength(2);
    await c.close(c.slave);
    expect((await c.fsck(c.slave)).problems).toEqual([]);
  });
});
