// A live master keeps its newest blocks in memory for its sender
// (FsEngine.recent, up to CACHESIZE). What counts is the memory those entries
// hold: small files' blocks are views of shared 256 KiB slabs, and counted by
// their stored length they kept whole slabs alive — ~5x CACHESIZE in a
// 564,593-file ingest on a real mount (BENCHMARKS.md, "Scale").

import { describe, expect, it } from 'vitest';
import { FsEngine } from '../../src/core/fs/engine.ts';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import type { CommitObserver } from '../../src/core/fs/types.ts';
import { SimHarness } from '../support/harness.ts';

/** A commit observer like a live master's log: wants CRCs, logs nothing. */
const liveObserver: CommitObserver = {
  wantsStoredCrc32: true,
  beforeCommit: async () => [],
  afterCommit: async () => undefined,
};

/** Bytes of memory kept alive by the recent blocks: each distinct ArrayBuffer once. */
function heldByRecent(engine: FsEngine): { entries: number; bytes: number } {
  const recent = (engine as unknown as { recent: Map<number, Uint8Array> }).recent;
  const buffers = new Set<ArrayBufferLike>();
  let bytes = 0;
  for (const b of recent.values()) {
    if (buffers.has(b.buffer)) continue;
    buffers.add(b.buffer);
    bytes += b.buffer.byteLength;
  }
  return { entries: recent.size, bytes };
}

describe("a live master's recent blocks", () => {
  it('hold at most about CACHESIZE of memory when small files are written', async () => {
    const cacheSizeBytes = 1 << 20;
    const h = new SimHarness('recent-small', { cacheSizeBytes });
    await h.format();
    const engine = await h.run(FsEngine.open(h.drivers(), h.options, async () => liveObserver));
    const fs = new PathFs(engine);
    // 3,000 small files, one unique in three (the others share one content),
    // 50-950 bytes: each file's only block is a partial one.
    const shared = new Uint8Array(700).fill(7);
    for (let i = 0; i < 3000; i++) {
      fs.create(`/f${i}`);
      const n = 50 + ((i * 37) % 900);
      const data = i % 3 === 0 ? new Uint8Array(n).map((_, j) => (i * 31 + j * 7) & 0xff | 1) : shared;
      await h.run(fs.write(`/f${i}`, 0, data));
      if (i % 200 === 199) await h.run(engine.commit());
    }
    await h.run(engine.commit());
    const held = heldByRecent(engine);
    expect(held.entries).toBeGreaterThan(500);
    // Each entry holds its own bytes (a slab of 256 KiB per ~200 files before).
    expect(held.bytes).toBeLessThanOrEqual(cacheSizeBytes);
    expect(held.bytes).toBeLessThan(held.entries * 1024);
    await h.run(engine.close());
  });
});
