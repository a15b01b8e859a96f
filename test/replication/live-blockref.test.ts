// A live master's replog.dta refers to new blocks' extents in blockdata.dta
// (BLOCKREF records) instead of copying their bytes; the sender puts the bytes
// back, checked against the CRC the log recorded. These tests pin down what
// that must keep true: the slave still gets every byte; an extent the log still
// needs is never reused, even freed, until the slave acknowledged it (also
// across a remount); a damaged extent is refused, never sent; a live log
// switched to batch mode is rewritten with the bytes; replogtool shows the
// references.

import { describe, expect, it } from 'vitest';
import { dumpLog, type LogDump } from '../../src/cli/replogtool.ts';
import { FRAME_TYPE, TransactionAssembler } from '../../src/core/replication/frames.ts';
import { scanLiveLog, validateRotatedFile } from '../../src/core/replication/log-file.ts';
import { LIVE_LOG_NAME, rotatedLogName } from '../../src/core/replication/master-log.ts';
import { bytesSource } from '../../src/core/replication/rotated-file.ts';
import { DATA_FILE } from '../../src/core/fs/schema.ts';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { LiveCluster } from '../../src/sim/live-cluster.ts';
import { Scheduler } from '../../src/sim/scheduler.ts';
import { nodePrimitives } from '../../src/real/primitives.ts';

const BS = 4096;
const P = nodePrimitives;

/** `blocks` blocks of bytes no other call with another `salt` produces. */
function unique(blocks: number, salt: number): Uint8Array {
  const data = new Uint8Array(blocks * BS);
  const view = new DataView(data.buffer);
  for (let i = 0; i < data.length; i += 4) view.setUint32(i, Math.imul(i + 1 + salt * 0x1000_0000, 0x9e3779b1) >>> 0);
  return data;
}

async function cluster(seed: number): Promise<{ c: LiveCluster; fs: PathFs }> {
  const c = new LiveCluster(new Scheduler({ seed }), seed, { engine: { blockSizeBytes: BS, commitIntervalMs: 500 } });
  await c.format();
  await c.open(c.slave);
  const m = await c.open(c.master);
  const fs = new PathFs(m);
  expect(await c.converge(30_000)).toBe(true);
  return { c, fs };
}

async function setMasterEnabled(c: LiveCluster, on: boolean): Promise<void> {
  await c.run(c.master.node!.control.setEnabled(on));
}

async function writeFile(c: LiveCluster, fs: PathFs, path: string, data: Uint8Array): Promise<void> {
  fs.create(path);
  await c.run(fs.write(path, 0, data));
  await c.run(c.engineOf(c.master).commit());
}

function liveLog(c: LiveCluster): Uint8Array {
  const bytes = c.master.machine.disk.peek(`${c.master.options.blockDataPath}/${LIVE_LOG_NAME}`);
  expect(bytes).toBeDefined();
  return bytes as Uint8Array;
}

function blockRefs(c: LiveCluster): { txn: number; offset: number; stored: number }[] {
  const scan = scanLiveLog(P, liveLog(c), { fileName: LIVE_LOG_NAME });
  return scan.transactions.flatMap((t) =>
    t.decoded.flatMap((r) => (r.type === FRAME_TYPE.BLOCKREF ? [{ txn: t.txn, offset: r.ref.extentOffsetBytes, stored: r.ref.storedLength }] : [])),
  );
}

describe('live replication: the log refers to blocks (BLOCKREF)', () => {
  it('logs references, not bytes; the slave still gets every byte (seed 71)', async () => {
    const { c, fs } = await cluster(71);
    await setMasterEnabled(c, false);
    const data = unique(64, 1);
    await writeFile(c, fs, '/a', data);
    const log = c.master.node!.masterLog!;
    // 64 blocks of 4 KiB: a few KiB of log, the whole 256 KiB on the wire.
    expect(blockRefs(c)).toHaveLength(64);
    expect(log.sizeBytes).toBeLessThan(data.length / 10);
    expect(c.sender!.backlogBytes).toBeGreaterThan(data.length);
    await setMasterEnabled(c, true);
    expect(await c.converge(30_000)).toBe(true);
    expect(await c.digest(c.slave)).toBe(await c.digest(c.master));
    await c.advance(2000);
    expect(log.sizeBytes).toBe(0);
  });

  it('never reuses an extent the log still refers to, until the slave acknowledged it, across a remount too (seed 72)', async () => {
    const { c, fs } = await cluster(72);
    await setMasterEnabled(c, false);
    await writeFile(c, fs, '/a', unique(32, 2));
    const aRefs = blockRefs(c).map((r) => r.offset);
    expect(aRefs).toHaveLength(32);
    fs.unlink('/a');
    await c.run(c.engineOf(c.master).commit());
    await c.run(c.engineOf(c.master).commit()); // the freeing txn is durable: its extents leave quarantine
    const engine = c.engineOf(c.master);
    expect(engine.pinnedFree.extents).toBe(32);
    expect(c.master.node!.control.status()).toMatch(/pinned_free_bytes: 131072/);
    // Remount with replication off at start: the pins come back from the log.
    await c.close(c.master);
    c.master.repl = { ...c.master.repl, replicationEnabled: false };
    const m = await c.open(c.master);
    const fs2 = new PathFs(m);
    expect(m.pinnedFree.extents).toBe(32);
    await writeFile(c, fs2, '/b', unique(32, 3));
    const all = blockRefs(c);
    const lastTxn = Math.max(...all.map((r) => r.txn));
    const bRefs = all.filter((r) => r.txn === lastTxn).map((r) => r.offset);
    expect(bRefs).toHaveLength(32);
    expect(bRefs.filter((o) => aRefs.includes(o))).toEqual([]);
    await setMasterEnabled(c, true);
    expect(await c.converge(30_000)).toBe(true);
    expect(await c.digest(c.slave)).toBe(await c.digest(c.master));
    await c.advance(2000);
    // Acknowledged: the held extents are free again (and the log is empty).
    expect(m.pinnedFree.extents).toBe(0);
    expect(c.master.node!.masterLog!.sizeBytes).toBe(0);
    // Now they are reused.
    await writeFile(c, fs2, '/c', unique(32, 4));
    const cRefs = blockRefs(c).map((r) => r.offset);
    expect(cRefs.filter((o) => aRefs.includes(o)).length).toBeGreaterThan(0);
    expect(await c.converge(30_000)).toBe(true);
    expect(await c.digest(c.slave)).toBe(await c.digest(c.master));
  });

  it('refuses to send an extent whose bytes changed under the log (seed 73)', async () => {
    const { c, fs } = await cluster(73);
    const before = c.receiver!.appliedTxn;
    await setMasterEnabled(c, false);
    await writeFile(c, fs, '/a', unique(8, 5));
    const [first] = blockRefs(c);
    // Bit rot in the master's data file, under the block the log refers to.
    const d = c.master.machine.drivers();
    const f = await c.run(d.disk.open(`${c.master.options.blockDataPath}/${DATA_FILE}`));
    const cur = await c.run(f.read(first.offset + 100, 1));
    await c.run(f.write(first.offset + 100, Uint8Array.of(cur[0] ^ 0x40)));
    await c.run(f.sync());
    await c.run(f.close());
    // The master still has these blocks in memory and would send those: remount, so the sender reads the file.
    await c.close(c.master);
    await c.open(c.master);
    await setMasterEnabled(c, true);
    await c.advance(10_000);
    expect(c.sender!.lastError).toMatch(/blockdata\.dta at \d+ \(4096 bytes\) no longer holds the block txn \d+ logged there \(CRC-32 mismatch\)/);
    expect(c.receiver!.appliedTxn).toBe(before);
    expect(c.master.node!.control.backlog()).toBe(true);
  });

  it('sends the newest blocks from the master\'s memory, older ones from its data file, the same bytes either way (seed 76)', async () => {
    const { c, fs } = await cluster(76);
    await setMasterEnabled(c, false);
    // CACHESIZE of the sim engine: the newest blocks up to it stay in memory.
    const cacheBytes = c.master.options.cacheSizeBytes;
    const blocks = Math.ceil((2 * cacheBytes) / BS);
    await writeFile(c, fs, '/a', unique(blocks, 6));
    const log = c.master.node!.masterLog!;
    const engine = c.engineOf(c.master);
    const offsets = blockRefs(c).map((r) => r.offset);
    expect(offsets).toHaveLength(blocks);
    const kept = offsets.filter((o) => engine.storedInMemory(o) !== undefined);
    // Kept: the newest (by when their writes completed), as many as CACHESIZE holds.
    expect(kept.length * BS).toBeGreaterThan(cacheBytes - BS);
    expect(kept.length * BS).toBeLessThanOrEqual(cacheBytes);
    await setMasterEnabled(c, true);
    expect(await c.converge(30_000)).toBe(true);
    expect(await c.digest(c.slave)).toBe(await c.digest(c.master));
    expect(log.extentBytes.fromMemory).toBe(kept.length * BS);
    expect(log.extentBytes.fromDisk).toBe((blocks - kept.length) * BS);
    // A freed block leaves memory at once (its extent may be reused).
    fs.unlink('/a');
    await c.run(engine.commit());
    expect(offsets.filter((o) => engine.storedInMemory(o) !== undefined)).toEqual([]);
  });

  it('a live log opened by a batch master is rewritten with the bytes; rotated files never hold references (seed 74)', async () => {
    const { c, fs } = await cluster(74);
    await setMasterEnabled(c, false);
    const data = unique(16, 6);
    await writeFile(c, fs, '/a', data);
    expect(blockRefs(c)).toHaveLength(16);
    await c.close(c.master);
    c.master.repl = { ...c.master.repl, replicationBatchMode: true, replicationPartnerIp: undefined };
    await c.open(c.master);
    expect(c.master.machine.logger.lines.some((l) => /rewritten for batch mode: 16 block references replaced/.test(l))).toBe(true);
    const scan = scanLiveLog(P, liveLog(c), { fileName: LIVE_LOG_NAME });
    const blocks = scan.transactions.flatMap((t) => t.decoded.filter((r) => r.type === FRAME_TYPE.BLOCK));
    expect(blocks).toHaveLength(16);
    expect(scan.transactions.some((t) => t.decoded.some((r) => r.type === FRAME_TYPE.BLOCKREF))).toBe(false);
    const stored = new Uint8Array(blocks.flatMap((b) => (b.type === FRAME_TYPE.BLOCK ? [...b.block.stored] : [])));
    expect(stored.length).toBe(data.length);
    // Blocks are logged in data-file order; the file was written in order.
    expect(Buffer.from(stored).equals(Buffer.from(data))).toBe(true);
    const log = c.master.node!.masterLog!;
    const seq = log.sequence;
    await c.run(log.rotate());
    const rotated = c.master.machine.disk.peek(`${c.master.options.blockDataPath}/${rotatedLogName(seq)}`) as Uint8Array;
    const v = validateRotatedFile(P, rotated, { fsId: scan.header!.fsId, blockSizeBytes: BS, sequence: seq, fileName: rotatedLogName(seq) });
    expect(v.transactions.length).toBeGreaterThan(0);
  });

  it('replogtool shows a live log\'s references; a rotated file holding one is refused (seed 75)', async () => {
    const { c, fs } = await cluster(75);
    await setMasterEnabled(c, false);
    await writeFile(c, fs, '/a', unique(2, 7));
    let json = '';
    await dumpLog(P, bytesSource(liveLog(c)), LIVE_LOG_NAME, BS, true, (text) => (json += text));
    const dump = JSON.parse(json) as LogDump;
    const refs = dump.transactions.flatMap((t) => t.records).filter((r) => r.type === 'BLOCKREF');
    expect(refs).toHaveLength(2);
    expect(refs[0]).toMatchObject({ type: 'BLOCKREF', storedBytes: BS, rawBytes: BS });
    // Anywhere but a live log (a rotated file, the wire) a BLOCKREF is refused.
    const scan = scanLiveLog(P, liveLog(c), { fileName: LIVE_LOG_NAME });
    const tx = scan.transactions[scan.transactions.length - 1];
    const ref = tx.records.find((f) => f.type === FRAME_TYPE.BLOCKREF)!;
    const strict = new TransactionAssembler(P, tx.txn, { blockSizeBytes: BS });
    expect(() => strict.accept(ref)).toThrow(/frame type 4 \(BLOCKREF\) is not a log record here \(BLOCKREF belongs only in a live master's replog.dta\)/);
  });
});
