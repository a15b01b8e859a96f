// Model-based property test: random operation sequences run against the engine
// and against a plain in-memory tree; every result (error codes included), the
// final tree and every file's bytes must agree, and lessfsck must be clean.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fsck } from '../../src/core/fs/fsck.ts';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { ModelFs } from '../../src/sim/model.ts';
import { applyToFs, applyToModel, fsListing, type Op } from '../../src/sim/workload.ts';
import { RealHarness, SimHarness, type Harness } from '../support/harness.ts';
import { opArb } from '../support/ops-arb.ts';
import type { EngineOptions } from '../../src/core/fs/types.ts';

const BS = 4096;

async function runAgainstModel(h: Harness, ops: Op[]): Promise<void> {
  await h.format();
  let engine = await h.open();
  let fs = new PathFs(engine);
  const model = new ModelFs();
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
  }
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
