// Reads from the data file (the addon's seventh patch set): each read that
// reaches the JS handler hands over where the file's next blocks are in the
// data file, and the libfuse threads answer reads of them with pread under
// the listed-attributes table's generations. Driven in-process against a
// twin of the addon's read path (same rules: a window of the inode's blocks
// under its inode's and the table's generations, nothing served while the
// inode has writes queued, off while frozen), which reads the real data file:
// whenever the twin would answer a read, its bytes must be what the engine
// reads at that moment.

import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import fc from 'fast-check';
import type { FuseStat } from 'fuse-native';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlFiles, REPLICATION_OFF } from '../../src/core/control.ts';
import type { FsEngine } from '../../src/core/fs/engine.ts';
import { IoGate } from '../../src/core/gate.ts';
import { LessfsFuseOps, READ_HANDOFF_BLOCKS, READ_HANDOFF_BLOCKS_MIN, type AttrHandoff, type ReadHandoff } from '../../src/real/fuse/ops.ts';
import { CODEC_LZ4 } from '../../src/real/primitives.ts';
import { RealHarness } from '../support/harness.ts';

type AnyOps = Record<string, (...args: unknown[]) => void>;

/** The generations and open files of the addon's table (lessfs_attr_gen, lessfs_attr_ino_gen, lessfs_fhs, lessfs_ino_dirty). */
class TwinGens implements AttrHandoff {
  static readonly SLOTS = 4096;
  gen = 0;
  readonly inoGen = new Uint32Array(TwinGens.SLOTS);
  readonly files = new Map<number, number>();
  readonly dirtyCounts = new Map<number, number>();
  listOn = false;

  invalidate(ino?: number): void {
    if (ino === undefined) this.gen++;
    else this.inoGen[(ino >>> 0) % TwinGens.SLOTS]++;
  }
  enable(on: boolean): void {
    this.gen++;
    this.listOn = on;
  }
  put(_path: string, _st: FuseStat): void {}
  list(_dir: string, _names: string[], _stats: FuseStat[]): void {}
  file(fh: number, ino: number): void {
    if (ino !== 0) this.files.set(fh, ino);
    else this.files.delete(fh);
  }
  dirty(ino: number, dirty: boolean): void {
    const slot = (ino >>> 0) % TwinGens.SLOTS;
    this.dirtyCounts.set(slot, (this.dirtyCounts.get(slot) ?? 0) + (dirty ? 1 : -1));
  }
  stats(): { hits: number; puts: number; entries: number; absent: number; flushes: number } {
    return { hits: 0, puts: 0, entries: 0, absent: 0, flushes: 0 };
  }
}

/** lessfs_ext_*: the windows handed over, and a read answered as a libfuse thread would (undefined: JS answers). */
class TwinReads implements ReadHandoff {
  static readonly SLOTS = 64;
  private fd: number | undefined;
  private bs = 0;
  on = false;
  hits = 0;
  puts = 0;
  /** lessfs_ext_gen: bumped when any file's content may have changed. */
  private gen = 0;
  lastPut: { ino: number; first: number; blocks: number } | undefined;
  private readonly windows = new Map<number, { ino: number; inoGen: number; gen: number; first: number; size: number; ext: Float64Array }>();

  constructor(private readonly gens: TwinGens) {}

  open(path: string, blockBytes: number): number {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = path === '' ? undefined : openSync(path, 'r');
    this.bs = blockBytes;
    this.windows.clear();
    return 0;
  }
  put(ino: number, firstBlock: number, sizeBytes: number, extents: Float64Array): void {
    this.windows.set(ino % TwinReads.SLOTS, { ino, inoGen: this.gens.inoGen[ino % TwinGens.SLOTS], gen: this.gen, first: firstBlock, size: sizeBytes, ext: extents.slice() });
    this.lastPut = { ino, first: firstBlock, blocks: extents.length / 2 };
    this.puts++;
  }
  invalidate(): void {
    this.gen++;
  }
  enable(on: boolean): void {
    this.gen++;
    this.on = on;
    this.windows.clear();
  }
  stats(): { hits: number; puts: number } {
    return { hits: this.hits, puts: this.puts };
  }

  read(fh: number, offset: number, len: number): Uint8Array | undefined {
    const ino = this.gens.files.get(fh);
    if (!this.on || ino === undefined || this.fd === undefined) return undefined;
    const m = this.windows.get(ino % TwinReads.SLOTS);
    const slot = ino % TwinGens.SLOTS;
    if (!m || m.ino !== ino || m.inoGen !== this.gens.inoGen[slot] || m.gen !== this.gen || (this.gens.dirtyCounts.get(slot) ?? 0) !== 0) return undefined;
    const bs = this.bs;
    if (offset >= m.size) return new Uint8Array(0);
    const end = Math.min(m.size, offset + len);
    const first = Math.floor(offset / bs);
    const last = Math.floor((end - 1) / bs);
    if (first < m.first || last >= m.first + m.ext.length / 2 || last - first >= 4) return undefined;
    const out = new Uint8Array(end - offset);
    for (let b = first; b <= last; b++) {
      const at = m.ext[2 * (b - m.first)];
      const stored = m.ext[2 * (b - m.first) + 1];
      if (stored < 0 || stored > bs) return undefined;
      const from = Math.max(b * bs, offset);
      const to = Math.min((b + 1) * bs, end);
      const dataTo = Math.min(b * bs + stored, to);
      if (dataTo > from) {
        const got = readSync(this.fd, out, from - offset, dataTo - from, at + (from - b * bs));
        if (got !== dataTo - from) return undefined;
      }
    }
    this.hits++;
    return out;
  }
}

interface Rig {
  engine: FsEngine;
  gate: IoGate;
  gens: TwinGens;
  reads: TwinReads;
  call: (name: string, ...args: unknown[]) => Promise<[number, unknown]>;
}

function rig(engine: FsEngine): Rig {
  const control = new ControlFiles(engine, REPLICATION_OFF, { contentTtlMs: 1000, nowMs: () => Date.now() });
  const gate = new IoGate();
  const gens = new TwinGens();
  const reads = new TwinReads(gens);
  const handlers = new LessfsFuseOps({ engine, control, gate, logger: { log: () => undefined }, logLevel: 0, attrHandoff: gens, readHandoff: reads }).ops() as unknown as AnyOps;
  const call = (name: string, ...args: unknown[]): Promise<[number, unknown]> =>
    new Promise((resolve) => handlers[name](...args, (e: number, v: unknown) => resolve([e, v])));
  return { engine, gate, gens, reads, call };
}

/** Every read the twin would answer for an open handle, checked against the engine at that moment. */
async function expectReadsTrue(r: Rig, step: string, fds: ReadonlyMap<string, number>, bs: number): Promise<number> {
  let answered = 0;
  for (const fd of fds.values()) {
    const ino = r.gens.files.get(fd);
    if (ino === undefined) continue;
    for (let b = 0; b < 10; b++) {
      for (const [off, len] of [[b * bs, bs], [b * bs + 100, bs], [b * bs + 7, 2 * bs + 3]]) {
        const twin = r.reads.read(fd, off, len);
        if (twin === undefined) continue;
        answered++;
        const truth = await r.engine.read(ino, off, len);
        expect({ step, fd, off, len, bytes: Buffer.from(twin).toString('hex') }).toEqual({ step, fd, off, len, bytes: Buffer.from(truth).toString('hex') });
      }
    }
  }
  return answered;
}

const NAMES = ['/a', '/b', '/c'];
type Step =
  | { op: 'write'; path: string; block: number; blocks: number; fill: number; settle: boolean }
  | { op: 'small'; path: string; offset: number; length: number; fill: number }
  | { op: 'read'; path: string; offset: number }
  | { op: 'truncate'; path: string; size: number }
  | { op: 'unlink' | 'reopen'; path: string }
  | { op: 'rename'; from: string; to: string }
  | { op: 'commit' | 'freeze' };

const stepArb = (bs: number): fc.Arbitrary<Step> => {
  const path = fc.constantFrom(...NAMES);
  return fc.oneof(
    { weight: 6, arbitrary: fc.record({ path, block: fc.nat(7), blocks: fc.integer({ min: 1, max: 4 }), fill: fc.integer({ min: 1, max: 4 }), settle: fc.boolean() }).map((s): Step => ({ op: 'write', ...s })) },
    { weight: 3, arbitrary: fc.record({ path, offset: fc.nat(8 * bs), length: fc.integer({ min: 1, max: 2 * bs }), fill: fc.integer({ min: 1, max: 4 }) }).map((s): Step => ({ op: 'small', ...s })) },
    { weight: 8, arbitrary: fc.record({ path, offset: fc.oneof(fc.nat(8).map((b) => b * bs), fc.nat(8 * bs)) }).map((s): Step => ({ op: 'read', ...s })) },
    { weight: 2, arbitrary: fc.record({ path, size: fc.oneof(fc.constant(0), fc.nat(9 * bs)) }).map((s): Step => ({ op: 'truncate', ...s })) },
    { weight: 1, arbitrary: path.map((p): Step => ({ op: 'unlink', path: p })) },
    { weight: 1, arbitrary: path.map((p): Step => ({ op: 'reopen', path: p })) },
    { weight: 1, arbitrary: fc.record({ from: path, to: path }).map((s): Step => ({ op: 'rename', ...s })) },
    { weight: 3, arbitrary: fc.constant<Step>({ op: 'commit' }) },
    { weight: 1, arbitrary: fc.constant<Step>({ op: 'freeze' }) },
  );
};

/** Blocks of one fill byte per block, varied by block number so files share some blocks (deduplicated) and not others. */
function pattern(bs: number, block: number, blocks: number, fill: number): Buffer {
  const buf = Buffer.alloc(blocks * bs);
  for (let i = 0; i < blocks; i++) buf.fill((fill * 7 + ((block + i) % 3)) & 0xff, i * bs, (i + 1) * bs);
  return buf;
}

async function openFd(r: Rig, fds: Map<string, number>, path: string): Promise<number | undefined> {
  const known = fds.get(path);
  if (known !== undefined) return known;
  let [e, fd] = await r.call('open', path, 2);
  if (e === -2) [e, fd] = await r.call('create', path, 0o100644);
  if (e !== 0) return undefined;
  fds.set(path, fd as number);
  return fd as number;
}

async function runStep(r: Rig, s: Step, fds: Map<string, number>, bs: number): Promise<void> {
  switch (s.op) {
    case 'write': {
      const fd = await openFd(r, fds, s.path);
      if (fd === undefined) return;
      const data = pattern(bs, s.block, s.blocks, s.fill);
      // Whole blocks are queued (write-behind), one request per block as the kernel sends them.
      for (let i = 0; i < s.blocks; i++) await r.call('write', s.path, fd, data.subarray(i * bs, (i + 1) * bs), bs, (s.block + i) * bs);
      if (s.settle) await r.call('fsync', s.path, 0, fd);
      return;
    }
    case 'small': {
      const fd = await openFd(r, fds, s.path);
      if (fd === undefined) return;
      await r.call('write', s.path, fd, Buffer.alloc(s.length, s.fill), s.length, s.offset);
      return;
    }
    case 'read': {
      const fd = await openFd(r, fds, s.path);
      if (fd === undefined) return;
      await r.call('read', s.path, fd, Buffer.alloc(bs), bs, s.offset);
      return;
    }
    case 'truncate':
      await r.call('truncate', s.path, s.size);
      return;
    case 'unlink':
      await r.call('unlink', s.path);
      return;
    case 'reopen': {
      const fd = fds.get(s.path);
      if (fd !== undefined) {
        await r.call('release', s.path, fd);
        fds.delete(s.path);
      }
      await openFd(r, fds, s.path);
      return;
    }
    case 'rename':
      await r.call('rename', s.from, s.to);
      return;
    case 'commit':
      await r.engine.commit();
      return;
    case 'freeze':
      r.gate.close();
      for (const fd of fds.values()) expect(r.reads.read(fd, 0, bs)).toBeUndefined();
      r.gate.open();
      return;
  }
}

describe('reads from the data file handed to the FUSE threads', () => {
  let h: RealHarness | undefined;
  afterEach(() => h?.cleanup());

  it('a read hands over the next blocks; the twin then answers them as the engine does, holes and short blocks as zeros', async () => {
    h = new RealHarness();
    await h.format();
    const r = rig(await h.open());
    const bs = r.engine.options.blockSizeBytes;
    const [, fd] = (await r.call('create', '/f', 0o100644)) as [number, number];
    // Blocks 0-2 data, 3 a hole, 4 short (trailing zeros are not stored), and a size inside block 5.
    const content = Buffer.alloc(5 * bs + 123);
    for (let i = 0; i < 3; i++) content.fill(i + 1, i * bs, (i + 1) * bs);
    content.fill(9, 4 * bs, 4 * bs + 10);
    content.fill(8, 5 * bs, 5 * bs + 123);
    for (const b of [0, 1, 2, 4, 5]) await r.call('write', '/f', fd, content.subarray(b * bs, (b + 1) * bs), Math.min(bs, content.length - b * bs), b * bs);
    await r.call('fsync', '/f', 0, fd);
    await r.engine.commit();
    expect(r.reads.read(fd, 0, bs)).toBeUndefined();
    // The first read reaches JS and hands over from where it ended.
    const [n] = await r.call('read', '/f', fd, Buffer.alloc(bs), bs, 0);
    expect(n).toBe(bs);
    expect(r.reads.puts).toBe(1);
    expect(r.reads.read(fd, 0, bs)).toBeUndefined();
    for (const [off, len] of [[bs, bs], [bs + 5, bs], [3 * bs, bs], [4 * bs, bs], [3 * bs + 1, 2 * bs], [5 * bs, bs], [5 * bs + 100, bs], [6 * bs, bs], [1 << 30, bs]]) {
      const got = r.reads.read(fd, off, len);
      expect(got, `read of ${len} at ${off}`).toBeDefined();
      expect(Buffer.from(got as Uint8Array).equals(content.subarray(off, off + len)), `read of ${len} at ${off}`).toBe(true);
    }
    // Names changing elsewhere (a rename, an unlink, a create) leave the window alone.
    await r.call('create', '/other', 0o100644);
    await r.call('rename', '/other', '/other2');
    await r.call('unlink', '/other2');
    expect(Buffer.from(r.reads.read(fd, bs, bs) ?? []).equals(content.subarray(bs, 2 * bs))).toBe(true);
    // A handle the addon does not know (closed) is never answered there.
    await r.call('release', '/f', fd);
    expect(r.reads.read(fd, bs, bs)).toBeUndefined();
  });

  it('blocks only the engine can read are not handed over: queued writes, dirty blocks, compressed blocks', async () => {
    h = new RealHarness({ codec: CODEC_LZ4 });
    await h.format();
    const r = rig(await h.open());
    const bs = r.engine.options.blockSizeBytes;
    const [, fd] = (await r.call('create', '/z', 0o100644)) as [number, number];
    // Compressible: stored lz4.
    for (let b = 0; b < 4; b++) await r.call('write', '/z', fd, Buffer.alloc(bs, 0x41), bs, b * bs);
    await r.call('fsync', '/z', 0, fd);
    await r.engine.commit();
    await r.call('read', '/z', fd, Buffer.alloc(bs), bs, 0);
    expect(r.reads.read(fd, bs, bs)).toBeUndefined();
    // Incompressible blocks of a file on the same store are stored raw: served there.
    const [, fd2] = (await r.call('create', '/r', 0o100644)) as [number, number];
    const raw = randomBytes(2 * bs);
    await r.call('write', '/r', fd2, raw.subarray(0, bs), bs, 0);
    await r.call('write', '/r', fd2, raw.subarray(bs), bs, bs);
    await r.call('fsync', '/r', 0, fd2);
    await r.engine.commit();
    await r.call('read', '/r', fd2, Buffer.alloc(bs), 10, 0);
    expect(Buffer.from(r.reads.read(fd2, 0, 2 * bs) ?? []).equals(raw)).toBe(true);
    // A queued write: nothing served for that inode until it is stored.
    const queued = r.call('write', '/r', fd2, Buffer.alloc(bs, 7), bs, 0);
    expect(r.reads.read(fd2, bs, bs)).toBeUndefined();
    await queued;
    await r.call('fsync', '/r', 0, fd2);
    // A block written in part stays dirty in memory until a commit: not handed over.
    await r.call('write', '/r', fd2, Buffer.alloc(10, 5), 10, bs + 3);
    await r.call('read', '/r', fd2, Buffer.alloc(bs), bs, 0);
    expect(r.reads.read(fd2, bs, bs)).toBeUndefined();
    expect(await expectReadsTrue(r, 'dirty', new Map([['/r', fd2]]), bs)).toBeGreaterThanOrEqual(0);
  });

  it('each kind of change to a file stops what was handed over of it from being served stale', async () => {
    h = new RealHarness();
    await h.format();
    const r = rig(await h.open());
    const bs = r.engine.options.blockSizeBytes;
    const fds = new Map<string, number>();
    const fd = (await openFd(r, fds, '/f')) as number;
    const other = (await openFd(r, fds, '/g')) as number;
    const fill = async (seed: number): Promise<void> => {
      for (let b = 0; b < 6; b++) await r.call('write', '/f', fd, pattern(bs, b, 1, seed), bs, b * bs);
      await r.call('fsync', '/f', 0, fd);
      await r.engine.commit();
    };
    const changes: Array<[string, () => Promise<unknown>]> = [
      ['overwrite of a whole block', () => r.call('write', '/f', fd, Buffer.alloc(bs, 0xee), bs, 2 * bs)],
      ['small write', () => r.call('write', '/f', fd, Buffer.alloc(50, 0xdd), 50, 3 * bs + 9)],
      ['truncate shorter', () => r.call('truncate', '/f', 2 * bs + 17)],
      ['truncate longer', () => r.call('truncate', '/f', 9 * bs)],
      ['ftruncate', () => r.call('ftruncate', '/f', fd, bs)],
      ['another file takes the freed extents', async () => {
        await r.call('truncate', '/f', 0);
        await r.engine.commit();
        for (let b = 0; b < 6; b++) await r.call('write', '/g', other, pattern(bs, b, 1, 99), bs, b * bs);
        await r.call('fsync', '/g', 0, other);
        await r.engine.commit();
      }],
      ['unlink while open, then the extents reused', async () => {
        await r.call('unlink', '/f');
        await r.engine.commit();
        for (let b = 0; b < 6; b++) await r.call('write', '/g', other, pattern(bs, b + 10, 1, 98), bs, (b + 6) * bs);
        await r.call('fsync', '/g', 0, other);
        await r.engine.commit();
      }],
    ];
    for (const [what, change] of changes) {
      if (what.startsWith('unlink')) await fill(5);
      else await fill(changes.findIndex(([w]) => w === what) + 1);
      await r.call('read', '/f', fd, Buffer.alloc(bs), bs, 0);
      expect(r.reads.read(fd, bs, bs), what).toBeDefined();
      await change();
      expect(await expectReadsTrue(r, what, fds, bs)).toBeGreaterThanOrEqual(0);
      // Read again (hands over anew): still the engine's bytes.
      await r.call('read', '/f', fd, Buffer.alloc(bs), bs, 0);
      expect(await expectReadsTrue(r, `${what}, handed over again`, fds, bs)).toBeGreaterThanOrEqual(0);
    }
  });

  it('a large truncation, released in steps with the size changed last, never has its released tail served from the data file', async () => {
    h = new RealHarness({ releaseStepBlocks: 2 });
    await h.format();
    const r = rig(await h.open());
    const bs = r.engine.options.blockSizeBytes;
    const fds = new Map<string, number>();
    const fd = (await openFd(r, fds, '/t')) as number;
    for (let b = 0; b < 12; b++) await r.call('write', '/t', fd, pattern(bs, b, 1, b + 1), bs, b * bs);
    await r.call('fsync', '/t', 0, fd);
    await r.engine.commit();
    await r.call('read', '/t', fd, Buffer.alloc(bs), bs, 0);
    expect(r.reads.read(fd, 11 * bs, bs)).toBeDefined();
    let finished = false;
    const done = r.call('truncate', '/t', bs).then((res) => {
      finished = true;
      return res;
    });
    // Between its steps (a timer turn each), whatever would be served is what the engine reads then.
    let turns = 0;
    while (!finished) {
      await new Promise((resolve) => setImmediate(resolve));
      await expectReadsTrue(r, `truncation, turn ${turns}`, fds, bs);
      turns++;
    }
    expect((await done)[0]).toBe(0);
    expect(turns).toBeGreaterThan(3);
    expect(await expectReadsTrue(r, 'truncated', fds, bs)).toBeGreaterThanOrEqual(0);
  });

  it('property: after any sequence of writes, truncates, unlinks, renames and commits, a read served from the data file is what the engine reads', async () => {
    h = new RealHarness({ cacheSizeBytes: 512 << 10 });
    await h.format();
    const engine = await h.open();
    const bs = engine.options.blockSizeBytes;
    let answered = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(stepArb(bs), { minLength: 5, maxLength: 40 }), async (steps) => {
        const r = rig(engine);
        const fds = new Map<string, number>();
        for (const [i, s] of steps.entries()) {
          await runStep(r, s, fds, bs);
          answered += await expectReadsTrue(r, `${i}: ${JSON.stringify(s)}`, fds, bs);
        }
        for (const [p, fd] of fds) await r.call('release', p, fd);
        r.reads.open('', 0);
        for (const p of NAMES) await r.call('unlink', p);
      }),
      { numRuns: 150, seed: 20261207 },
    );
    console.log(`reads the twin answered from the data file, checked against the engine: ${answered}`);
    expect(answered).toBeGreaterThan(1000);
  }, 120_000);

  it(`hands over ${READ_HANDOFF_BLOCKS} blocks at a time, and nothing while frozen`, async () => {
    h = new RealHarness();
    await h.format();
    const r = rig(await h.open());
    const bs = r.engine.options.blockSizeBytes;
    const [, fd] = (await r.call('create', '/big', 0o100644)) as [number, number];
    const blocks = READ_HANDOFF_BLOCKS * 2 + 5;
    for (let b = 0; b < blocks; b++) await r.call('write', '/big', fd, pattern(bs, b, 1, 1), bs, b * bs);
    await r.call('fsync', '/big', 0, fd);
    await r.engine.commit();
    // A sequential reader: JS gets one read per window (the first, then each window's end).
    let js = 0;
    for (let b = 0; b < blocks; b++) {
      const served = r.reads.read(fd, b * bs, bs);
      if (served) {
        expect(Buffer.from(served).equals(pattern(bs, b, 1, 1))).toBe(true);
        continue;
      }
      js++;
      await r.call('read', '/big', fd, Buffer.alloc(bs), bs, b * bs);
    }
    expect(js).toBe(Math.ceil(blocks / (READ_HANDOFF_BLOCKS + 1)));
    // A window that goes stale before it is read (the file changed) is followed by smaller ones, down to READ_HANDOFF_BLOCKS_MIN.
    const sizes: number[] = [];
    for (let round = 0; round < 2; round++) {
      // A seek back (before the window): JS reads block 0 and hands over from block 1.
      await r.call('read', '/big', fd, Buffer.alloc(bs), bs, 0);
      sizes.push(r.reads.lastPut?.blocks ?? 0);
      await r.call('write', '/big', fd, Buffer.alloc(10, round + 1), 10, 3 * bs + 1);
      // Block 1, inside that window, reaches JS: the write made the window stale.
      expect(r.reads.read(fd, bs, bs)).toBeUndefined();
      await r.call('read', '/big', fd, Buffer.alloc(bs), bs, bs);
      sizes.push(r.reads.lastPut?.blocks ?? 0);
    }
    // A seek keeps the size; a stale window quarters it (not below READ_HANDOFF_BLOCKS_MIN).
    expect(sizes).toEqual([READ_HANDOFF_BLOCKS, READ_HANDOFF_BLOCKS / 4, READ_HANDOFF_BLOCKS / 4, READ_HANDOFF_BLOCKS / 16]);
    await r.call('write', '/big', fd, Buffer.alloc(10, 9), 10, 3 * bs + 1);
    await r.call('read', '/big', fd, Buffer.alloc(bs), bs, 2 * bs);
    expect(r.reads.lastPut?.blocks).toBe(READ_HANDOFF_BLOCKS_MIN);
    // Read to its end, each window doubles again (the first is stale too: the
    // commit stored the dirty block, a change to the file's block map).
    await r.engine.commit();
    const grown: number[] = [];
    for (let b = 2; grown.length < 4 && b < blocks; b++) {
      if (r.reads.read(fd, b * bs, bs)) continue;
      await r.call('read', '/big', fd, Buffer.alloc(bs), bs, b * bs);
      grown.push(r.reads.lastPut?.blocks ?? 0);
    }
    expect(grown).toEqual([READ_HANDOFF_BLOCKS_MIN, 2 * READ_HANDOFF_BLOCKS_MIN, 4 * READ_HANDOFF_BLOCKS_MIN, 8 * READ_HANDOFF_BLOCKS_MIN]);
    // Frozen, nothing is served there; thawed, nothing until JS hands over again.
    r.gate.close();
    expect(r.reads.read(fd, bs, bs)).toBeUndefined();
    r.gate.open();
    expect(r.reads.read(fd, bs, bs)).toBeUndefined();
  });
});
