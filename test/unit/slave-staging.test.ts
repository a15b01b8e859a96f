// A live slave writes a transaction's blocks to its data file as they arrive
// (FsEngine.stageReplicatedBlock) and applies the records at the COMMIT. Until
// then a staged extent must be free in every state a commit makes durable: a
// power cut, a dropped connection or an unused block loses no space (lessfsck
// checks that every byte below the data end is a block's or free).

import { describe, expect, it } from 'vitest';
import type { StoreOp } from '../../src/core/drivers.ts';
import { joinPath, type FsEngine, type ReplicatedTxn } from '../../src/core/fs/engine.ts';
import { fsck } from '../../src/core/fs/fsck.ts';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { DATA_FILE, decodeBlock, T } from '../../src/core/fs/schema.ts';
import type { CommitContext } from '../../src/core/fs/types.ts';
import { SimRng } from '../../src/sim/rng.ts';
import { RealHarness, SimHarness } from '../support/harness.ts';
import { alignExtent } from '../../src/core/fs/schema.ts';

const REPLICATED = new Set<string>([T.inode, T.dirent, T.blockmap, T.symlink, T.orphan]);
const BS = 4096;

/** A master whose commits are captured as the transactions a slave applies. */
async function masterTxns(seed: number, files: Array<[string, Uint8Array]>): Promise<Array<ReplicatedTxn & { bytes: Map<string, Uint8Array> }>> {
  const h = new SimHarness(seed);
  await h.format();
  const txns: Array<ReplicatedTxn & { bytes: Map<string, Uint8Array> }> = [];
  const engine = await h.run(
    (async () => {
      const { FsEngine } = await import('../../src/core/fs/engine.ts');
      return FsEngine.open(h.drivers(), h.options, async () => ({
        async beforeCommit(ctx: CommitContext): Promise<StoreOp[]> {
          const kvs = ctx.ops.filter((op) => REPLICATED.has(op.table)).map((op) => ({ table: op.table, key: op.key, value: op.value }));
          const blocks: ReplicatedTxn['blocks'][number][] = [];
          const bytes = new Map<string, Uint8Array>();
          for (const op of ctx.ops) {
            if (op.table !== T.block || !op.value || ctx.before.get(T.block, op.key)) continue;
            const rec = decodeBlock(op.value);
            const stored = await ctx.readStored(rec.offsetBytes, rec.storedBytes);
            blocks.push({ key: op.key, codec: rec.codec, rawLength: rec.rawBytes, stored });
            bytes.set(Buffer.from(op.key).toString('hex'), stored);
          }
          txns.push({ txn: ctx.txn, nextIno: ctx.nextIno, kvs, blocks, bytes });
          return [];
        },
        async afterCommit(): Promise<void> {},
      }));
    })(),
  );
  const fs = new PathFs(engine);
  for (const [name, data] of files) {
    fs.create(name);
    await h.run(fs.write(name, 0, data));
    await h.run(engine.commit('test'));
  }
  await h.run(engine.close());
  return txns.filter((t) => t.kvs.length > 0);
}

function stageAll(engine: FsEngine, tx: ReplicatedTxn): number {
  let taken = 0;
  for (const b of tx.blocks) if (engine.stageReplicatedBlock(b.key, b.rawLength, (b.stored as Uint8Array).slice())) taken++;
  return taken;
}

const staged = (tx: ReplicatedTxn): ReplicatedTxn => ({ ...tx, blocks: tx.blocks.map((b) => ({ ...b, stored: undefined })) });

async function dataFileBytes(h: SimHarness): Promise<number> {
  const st = await h.run(h.drivers().disk.stat(joinPath(h.options.blockDataPath, DATA_FILE)));
  return st?.sizeBytes ?? -1;
}

async function clean(h: SimHarness): Promise<void> {
  const report = await h.run(fsck(h.drivers(), h.options, { thorough: true, repair: false }));
  expect(report.problems).toEqual([]);
}

describe('slave staging of arriving blocks (sim seeds 41, 42)', () => {
  const rng = new SimRng(41);
  const a = rng.bytes(3 * BS + 100);
  const b = rng.bytes(5 * BS);

  it('a commit while a transaction is arriving, then power loss: the staged extents are free, nothing leaks', async () => {
    const [t1, t2] = await masterTxns(41, [['/a', a], ['/b', b]]);
    const h = new SimHarness(42, { replica: true });
    await h.format();
    let slave = await h.open();
    expect(stageAll(slave, t1)).toBe(4);
    slave.applyReplicated(staged(t1), { role: 'slave', fsId: 'm', txn: t1.txn, sequence: 0 });
    // txn 2 is still arriving when the master asks for a commit.
    expect(stageAll(slave, t2)).toBe(5);
    await h.run(slave.commit('master'));
    h.machine.powerLoss();
    slave = await h.open();
    const fs = new PathFs(slave);
    expect(await h.run(fs.readFile('/a'))).toEqual(a);
    expect(() => fs.stat('/b')).toThrow();
    await h.run(slave.close());
    await clean(h);
    // The master sends txn 2 again: it lands in the space freed by the power cut.
    slave = await h.open();
    const before = await dataFileBytes(h);
    expect(stageAll(slave, t2)).toBe(5);
    slave.applyReplicated(staged(t2), { role: 'slave', fsId: 'm', txn: t2.txn, sequence: 0 });
    await h.run(slave.close());
    await clean(h);
    slave = await h.open();
    expect(await h.run(new PathFs(slave).readFile('/b'))).toEqual(b);
    expect(await dataFileBytes(h)).toBe(before);
    await h.run(slave.close());
  });

  it('a dropped transaction frees what it staged; a block staged twice or already held is not taken again', async () => {
    const [t1, t2] = await masterTxns(41, [['/a', a], ['/b', b]]);
    const h = new SimHarness(42, { replica: true });
    await h.format();
    let slave = await h.open();
    expect(stageAll(slave, t1)).toBe(4);
    expect(stageAll(slave, t1)).toBe(0);
    slave.applyReplicated(staged(t1), { role: 'slave', fsId: 'm', txn: t1.txn, sequence: 0 });
    // Held now: the bytes are not needed again.
    expect(stageAll(slave, t1)).toBe(0);
    expect(stageAll(slave, t2)).toBe(5);
    await h.run(slave.commit('master'));
    slave.dropStagedBlocks();
    await h.run(slave.commit('master'));
    // A transaction whose bytes were dropped is refused, not applied with holes.
    expect(() => slave.applyReplicated(staged(t2), { role: 'slave', fsId: 'm', txn: t2.txn, sequence: 0 })).toThrow(/arrived without its bytes/);
    await h.run(slave.close());
    await clean(h);
    slave = await h.open();
    expect(await h.run(new PathFs(slave).readFile('/a'))).toEqual(a);
    await h.run(slave.close());
  });
});

describe('a slave writes its data file past the page cache (O_DIRECT, real disk)', () => {
  it('blocks of every length land intact with their extents\' tails zeroed; fsck is clean; most writes go direct', async () => {
    const rng = new SimRng(43);
    // Full blocks, a short tail (trailing bytes trimmed), odd lengths: extents of every padding.
    const files: Array<[string, Uint8Array]> = [['/a', rng.bytes(3 * BS + 100)], ['/b', rng.bytes(5 * BS + 513)], ['/c', rng.bytes(1)], ['/d', rng.bytes(2 * BS - 1)]];
    const txns = await masterTxns(43, files);
    const h = new RealHarness({ replica: true });
    try {
      await h.format();
      let slave = await h.open();
      const dataFile = (slave as unknown as { dataFile: { directStats?: { directWrites: number; bufferedWrites: number } } }).dataFile;
      for (const tx of txns) {
        for (const b of tx.blocks) {
          // As the receiver does: the bytes go into one of the engine's block buffers.
          const stored = slave.buffers.take().subarray(0, (b.stored as Uint8Array).length);
          // Stale bytes past the block, as a recycled buffer has: the extent's tail must not get them.
          slave.buffers.whole(stored).fill(0xee, stored.length);
          stored.set(b.stored as Uint8Array);
          expect(slave.stageReplicatedBlock(b.key, b.rawLength, stored)).toBe(true);
        }
        slave.applyReplicated(staged(tx), { role: 'slave', fsId: 'm', txn: tx.txn, sequence: 0 });
        await slave.commit('master');
      }
      const stats = dataFile.directStats;
      expect(stats).toBeDefined();
      // tmpfs refuses O_DIRECT (then every write is buffered); elsewhere the blocks went direct.
      if (stats!.directWrites + stats!.bufferedWrites > 0 && stats!.directWrites > 0) expect(stats!.directWrites).toBeGreaterThan(stats!.bufferedWrites);
      await slave.close();
      const report = await fsck(h.drivers(), h.options, { thorough: true, repair: false });
      expect(report.problems).toEqual([]);
      slave = await h.open();
      const fs = new PathFs(slave);
      for (const [name, data] of files) expect(await fs.readFile(name)).toEqual(data);
      // Every extent's tail past its stored bytes is zeros.
      const file = await h.drivers().disk.open(joinPath(h.options.blockDataPath, DATA_FILE), { readOnly: true });
      const store = (slave as unknown as { store: { range(t: string): Iterable<{ value: Uint8Array }> } }).store;
      for (const { value } of store.range(T.block)) {
        const rec = decodeBlock(value);
        const tail = await file.read(rec.offsetBytes + rec.storedBytes, alignExtent(rec.storedBytes) - rec.storedBytes);
        expect(tail.every((x) => x === 0)).toBe(true);
      }
      await file.close();
      await slave.close();
    } finally {
      h.cleanup();
    }
  });
});
