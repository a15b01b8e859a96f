// Model-based property test: random operation sequences run against the engine
// and against a plain in-memory tree; every result (error codes included), the
// final tree and every file's bytes must agree, and lessfsck must be clean.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fsck } from '../../src/core/fs/fsck.ts';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { isDir } from '../../src/core/fs/schema.ts';
import { ModelFs } from '../../src/sim/model.ts';
import { applyToFs, applyToModel, fsListing, type Op } from '../../src/sim/workload.ts';
import { RealHarness, SimHarness, type Harness } from '../support/harness.ts';
import { opArb } from '../support/ops-arb.ts';
import type { EngineOptions } from '../../src/core/fs/types.ts';
import type { FsEngine } from '../../src/core/fs/engine.ts';

const BS = 4096;

/**
 * The write cache's accounting, checked at every step of the simulation: the
 * bytes counted against CACHESIZE are exactly those held (dirty buffers, new
 * blocks not yet written), stay within CACHESIZE plus what one operation may
 * add after its wait for room (a write: its length and two partial edge
 * blocks; a truncate: a tail block), and the data-file write queue holds only
 * new blocks the cache counts.
 */
function checkCacheAccounting(engine: FsEngine, options: EngineOptions): void {
  const a = engine.writeCacheAccounting();
  const bs = options.blockSizeBytes;
  const slackBytes = 4 * BS + 3 * bs; // opArb writes at most 4 * BS
  if (a.countedBytes !== a.heldBytes) throw new Error(`write cache counts ${a.countedBytes} bytes, holds ${a.heldBytes}`);
  if (a.countedBytes > options.cacheSizeBytes + slackBytes) throw new Error(`write cache holds ${a.countedBytes} bytes, CACHESIZE ${options.cacheSizeBytes} + ${slackBytes}`);
  if (a.queuedWriteBytes > a.newBlockExtentBytes) throw new Error(`data-file write queue holds ${a.queuedWriteBytes} bytes, the cache's new blocks ${a.newBlockExtentBytes}`);
}

async function runAgainstModel(h: Harness, ops: Op[]): Promise<void> {
  await h.format();
  let engine = await h.open();
  let fs = new PathFs(engine);
  const model = new ModelFs();
  let accountingChecks = 0;
  if (h instanceof SimHarness) {
    h.scheduler.traceSink = () => {
      checkCacheAccounting(engine, h.options);
      accountingChecks++;
    };
  }
  try {
    for (const [i, op] of ops.entries()) {
      if (op.op === 'commit') {
        await h.run(engine.commit());
        continue;
      }
      if (op.op === 'remount') {
        await h.run(engine.close());
        engine = await h.open();
        fs = new PathFs(engine);
        continue;
      }
      const expected = applyToModel(model, op, BS);
      const actual = await h.run(applyToFs(fs, op, BS));
      if (JSON.stringify(actual) !== JSON.stringify(expected)) {
        throw new Error(`op #${i} ${JSON.stringify(op)}: engine ${JSON.stringify(actual)}, model ${JSON.stringify(expected)}`);
      }
    }
    expect(await h.run(fsListing(fs))).toEqual(model.listing());
    for (const [path, what] of model.listing()) {
      if (!what.startsWith('file')) continue;
      const want = model.read(path, 0, Number.MAX_SAFE_INTEGER);
      expect(await h.run(fs.readFile(path))).toEqual(want);
    }
  } finally {
    await h.run(engine.close());
    if (h instanceof SimHarness) h.scheduler.traceSink = undefined;
  }
  if (h instanceof SimHarness) expect(accountingChecks).toBeGreaterThan(0);
  const report = await h.run(fsck(h.drivers(), h.options, { thorough: true, repair: false }));
  expect(report.problems).toEqual([]);
}

const variants: Array<[string, Partial<EngineOptions>]> = [
  ['dedup, no compression', {}],
  ['lz4, tiny cache', { codec: 2, cacheSizeBytes: 3 * BS }],
  ['deflate, dedup off', { codec: 1, deduplication: false }],
  // Engine blocks larger than the workload's: unaligned everywhere, and dirty
  // buffers that start small and grow.
  ['16 KiB blocks, small cache', { blockSizeBytes: 16384, cacheSizeBytes: 40_000 }],
];

describe('engine against the reference model (SimStore)', () => {
  it.each(variants)('%s', async (_name, overrides) => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 1_000_000 }), fc.array(opArb(BS, { remount: true }), { minLength: 1, maxLength: 80 }), async (seed, ops) => {
        const h = new SimHarness(seed, overrides);
        await runAgainstModel(h, ops);
      }),
      { numRuns: Number(process.env.LESSFS_PROP_RUNS ?? 60) },
    );
  });
});

describe('engine against the reference model (real LMDB in a temp dir)', () => {
  it('dedup, lz4', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb(BS, { remount: true }), { minLength: 1, maxLength: 60 }), async (ops) => {
        const h = new RealHarness({ codec: 2, cacheSizeBytes: 8 * BS });
        try {
          await runAgainstModel(h, ops);
        } finally {
          h.cleanup();
        }
      }),
      { numRuns: Math.ceil(Number(process.env.LESSFS_PROP_RUNS ?? 60) / 2.4) },
    );
  });
});

/**
 * The same model, with the data disk filling up and emptying between
 * operations (its capacity set a few blocks above what is used, then lifted).
 * A write refused with ENOSPC changed nothing (the model skips it); a commit or
 * an fsync may fail with ENOSPC; every other result must agree, reads of data
 * whose writes failed included. Then either the disk gets room, or (still
 * full) everything is deleted: either way one commit must make it all
 * durable, the tree survives a remount and lessfsck is clean.
 */
async function runFullDiskAgainstModel(h: SimHarness, steps: Array<{ op: Op; squeeze: number | null; commit: boolean }>, endByDeleting: boolean): Promise<{ refused: number }> {
  await h.format();
  let engine = await h.open();
  let fs = new PathFs(engine);
  const model = new ModelFs();
  const disk = h.machine.disk;
  const roomy = 1 << 30;
  let refused = 0;
  const enospc = (p: Promise<unknown>): Promise<void> =>
    p.then(
      () => undefined,
      (err: unknown) => {
        if ((err as { code?: unknown }).code !== 'ENOSPC') throw err;
        refused++;
      },
    );
  try {
    for (const [i, { op, squeeze, commit }] of steps.entries()) {
      // null: lift the limit; n: room for n more blocks.
      disk.setCapacity(squeeze === null ? roomy : disk.usedBytes() + squeeze * BS);
      if (op.op === 'commit' || op.op === 'remount') {
        await h.run(enospc(engine.commit()));
        continue;
      }
      const actual = await h.run(applyToFs(fs, op, BS));
      if ('err' in actual && actual.err === 'ENOSPC' && (op.op === 'write' || op.op === 'fsync')) {
        refused++;
      } else {
        const expected = applyToModel(model, op, BS);
        if (JSON.stringify(actual) !== JSON.stringify(expected)) {
          throw new Error(`op #${i} ${JSON.stringify(op)}: engine ${JSON.stringify(actual)}, model ${JSON.stringify(expected)}`);
        }
      }
      // Partial blocks are stored at commits: commit often, so they meet the full disk too.
      if (commit) await h.run(enospc(engine.commit()));
    }
    const readsBack = async (): Promise<void> => {
      expect(await h.run(fsListing(fs))).toEqual(model.listing());
      for (const [path, what] of model.listing()) {
        if (what.startsWith('file')) expect(await h.run(fs.readFile(path))).toEqual(model.read(path, 0, Number.MAX_SAFE_INTEGER));
      }
    };
    // Data whose writes failed is still read back from memory.
    await readsBack();
    if (endByDeleting) {
      // The disk stays full: deleting everything must let a commit land
      // (the blocks it could not write are no longer needed).
      disk.setCapacity(disk.usedBytes());
      for (const path of model.listing().keys()) {
        if (path.split('/').length === 2) applyToModel(model, { op: model.resolve(path).kind === 'dir' ? 'rmdir' : 'unlink', path }, BS);
      }
      for (const [path] of await h.run(fsListing(fs))) {
        if (path.split('/').length === 2) await h.run(applyToFs(fs, { op: isDir(fs.stat(path).mode) ? 'rmdir' : 'unlink', path }, BS));
      }
    } else {
      disk.setCapacity(roomy);
    }
    await h.run(engine.commit());
    expect(engine.dirty).toBe(false);
    await h.run(engine.close());
    engine = await h.open();
    fs = new PathFs(engine);
    await readsBack();
  } finally {
    disk.setCapacity(roomy);
    await h.run(engine.close());
  }
  const report = await h.run(fsck(h.drivers(), h.options, { thorough: true, repair: false }));
  expect(report.problems).toEqual([]);
  return { refused };
}

describe('engine against the reference model, with the data disk filling up (SimStore)', () => {
  const fullDiskVariants: Array<[string, Partial<EngineOptions>]> = [
    ['dedup, no compression', {}],
    ['lz4, tiny cache', { codec: 2, cacheSizeBytes: 6 * BS }],
  ];
  it.each(fullDiskVariants)('%s', async (_name, overrides) => {
    // Paths one level deep: most operations then find what they name, and data piles up.
    const step = fc.record({ op: opArb(BS, { depthMax: 1 }), squeeze: fc.option(fc.nat(1), { nil: null, freq: 4 }), commit: fc.boolean() });
    let refused = 0;
    const runs = Number(process.env.LESSFS_PROP_RUNS ?? 60);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 1_000_000 }), fc.array(step, { minLength: 10, maxLength: 80, size: 'max' }), fc.boolean(), async (seed, steps, endByDeleting) => {
        refused += (await runFullDiskAgainstModel(new SimHarness(seed, overrides), steps, endByDeleting)).refused;
      }),
      { numRuns: runs },
    );
    // The disk did fill up: the property ran on the paths it is about.
    expect(refused).toBeGreaterThan(runs);
  });
});
