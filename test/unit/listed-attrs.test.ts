// Listed attributes (the addon's sixth patch set): readdir hands each name's
// attributes to a table the libfuse threads answer lookups from, and every
// change must invalidate that table before it is answered. Driven in-process
// against a twin of the addon's table (same rules: one generation, entries
// of another generation never used, off while frozen): at every moment, what
// the table would answer for a path must be what getattr answers.

import fc from 'fast-check';
import type { FuseStat } from 'fuse-native';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlFiles, REPLICATION_OFF } from '../../src/core/control.ts';
import type { FsEngine } from '../../src/core/fs/engine.ts';
import { IoGate } from '../../src/core/gate.ts';
import { ATTR_HANDOFF_TTL_MS, LessfsFuseOps, WriteBehind, type AttrHandoff } from '../../src/real/fuse/ops.ts';
import { RealHarness } from '../support/harness.ts';

type AnyOps = Record<string, (...args: unknown[]) => void>;

const ABSENT = 'absent';

/**
 * The addon's table, in JS (scripts/build-fuse-native.mjs, lessfs_attr_*;
 * no TTL: time only narrows it): entries under the table's and their
 * inode's generations, and the directories every name of which it holds.
 */
class TwinTable implements AttrHandoff {
  static readonly SLOTS = 4096;
  private gen = 0;
  private tableGen = -1;
  private on = false;
  private readonly inoGen = new Uint32Array(TwinTable.SLOTS);
  private readonly entries = new Map<string, { st: FuseStat; slot: number; inoGen: number }>();
  private readonly completeDirs = new Set<string>();
  hits = 0;
  puts = 0;
  ttlMs = 0;

  invalidate(ino?: number): void {
    if (ino === undefined) this.gen++;
    else this.inoGen[(ino >>> 0) % TwinTable.SLOTS]++;
  }

  enable(on: boolean, ttlMs: number): void {
    this.gen++;
    this.on = on;
    this.ttlMs = ttlMs;
    this.entries.clear();
    this.completeDirs.clear();
  }

  stats(): { hits: number; puts: number; entries: number; absent: number; flushes: number } {
    return { hits: this.hits, puts: this.puts, entries: this.entries.size, absent: 0, flushes: 0 };
  }

  private readonly files = new Map<number, number>();
  private readonly dirtyCounts = new Map<number, number>();

  file(fh: number, ino: number): void {
    if (ino !== 0) this.files.set(fh, ino);
    else this.files.delete(fh);
  }

  dirty(ino: number, dirty: boolean): void {
    const n = (this.dirtyCounts.get(ino) ?? 0) + (dirty ? 1 : -1);
    expect(n, `inode ${ino} told clean more often than dirty`).toBeGreaterThanOrEqual(0);
    this.dirtyCounts.set(ino, n);
  }

  /** Would a FLUSH of fh be answered on the libfuse thread (lessfs_flush_clean)? */
  flushClean(fh: number): boolean {
    const ino = this.files.get(fh);
    return this.on && ino !== undefined && (this.dirtyCounts.get(ino) ?? 0) === 0;
  }

  /** lessfs_attr_begin: false if off; a table of an older generation starts empty. */
  private begin(): boolean {
    if (!this.on) return false;
    if (this.tableGen !== this.gen) {
      this.entries.clear();
      this.completeDirs.clear();
      this.tableGen = this.gen;
    }
    return true;
  }

  private insert(path: string, st: FuseStat): void {
    const slot = (st.ino >>> 0) % TwinTable.SLOTS;
    this.entries.set(path, { st, slot, inoGen: this.inoGen[slot] });
    this.puts++;
  }

  put(path: string, st: FuseStat, emptyDir = false): void {
    if (st.mode === 0 || !this.begin()) return;
    this.insert(path, st);
    if (emptyDir) this.completeDirs.add(path);
  }

  /** lessfs_attr_listing: a listing filed (whole only if every name went in). */
  list(dir: string, names: string[], stats: FuseStat[]): void {
    if (stats.length !== names.length || !this.begin()) return;
    let all = true;
    names.forEach((name, i) => {
      if (name === '.' || name === '..') return;
      if (stats[i].mode === 0) all = false;
      else this.insert(dir === '/' ? `/${name}` : `${dir}/${name}`, stats[i]);
    });
    if (all) this.completeDirs.add(dir);
    else this.completeDirs.delete(dir);
  }

  /** What a libfuse thread's getattr of path would be answered: attributes, ABSENT (ENOENT), or undefined (asks JS). */
  get(path: string): FuseStat | typeof ABSENT | undefined {
    if (!this.on || this.tableGen !== this.gen) return undefined;
    const e = this.entries.get(path);
    if (e) return e.inoGen === this.inoGen[e.slot] ? e.st : undefined;
    const cut = path.lastIndexOf('/');
    if (path === '/' || cut < 0) return undefined;
    return this.completeDirs.has(cut === 0 ? '/' : path.slice(0, cut)) ? ABSENT : undefined;
  }

  paths(): string[] {
    return [...this.entries.keys()];
  }
}

interface Rig {
  engine: FsEngine;
  handlers: AnyOps;
  gate: IoGate;
  table: TwinTable;
  call: (name: string, ...args: unknown[]) => Promise<[number, unknown]>;
  /** readdir through the handler (it files its listing in the table). */
  list: (dir: string) => Promise<[number, string[] | undefined, FuseStat[] | undefined]>;
}

function rig(engine: FsEngine): Rig {
  const control = new ControlFiles(engine, REPLICATION_OFF, { contentTtlMs: 1000, nowMs: () => Date.now() });
  const gate = new IoGate();
  const table = new TwinTable();
  const handlers = new LessfsFuseOps({ engine, control, gate, logger: { log: () => undefined }, logLevel: 0, attrHandoff: table }).ops() as unknown as AnyOps;
  const call = (name: string, ...args: unknown[]): Promise<[number, unknown]> =>
    new Promise((resolve) => handlers[name](...args, (e: number, v: unknown) => resolve([e, v])));
  const list = (dir: string): Promise<[number, string[] | undefined, FuseStat[] | undefined]> =>
    new Promise((resolve) =>
      handlers.readdir(dir, (e: number, names?: string[], stats?: FuseStat[]) => resolve([e, names, stats])),
    );
  return { engine, handlers, gate, table, call, list };
}

/**
 * Every path the table would answer (those it holds, and extra candidates
 * it may call absent), checked against getattr at the same moment (the
 * table is read and the handler computes its answer in one turn).
 */
let absentChecks = 0;

async function expectTableTrue(r: Rig, step: string, candidates: readonly string[] = []): Promise<number> {
  let checked = 0;
  for (const path of new Set([...r.table.paths(), ...candidates])) {
    const cached = r.table.get(path);
    const answer = r.call('getattr', path);
    if (cached === undefined) continue;
    checked++;
    const [e, st] = await answer;
    if (cached === ABSENT) {
      absentChecks++;
      expect({ step, path, e }).toEqual({ step, path, e: -2 });
    }
    else expect({ step, path, e, st }).toEqual({ step, path, e: 0, st: cached });
  }
  return checked;
}

const NAMES = ['a', 'b', 'c'];
const pathArb = fc.array(fc.constantFrom(...NAMES), { minLength: 1, maxLength: 2 }).map((p) => `/${p.join('/')}`);
const dirArb = fc.oneof(fc.constant('/'), pathArb);
/** Every path pathArb makes, for checking what the table calls absent. */
const ALL_PATHS = NAMES.flatMap((a) => [`/${a}`, ...NAMES.map((b) => `/${a}/${b}`), ...NAMES.map((b) => `/${a}/${b}/x`)]);

type Step =
  | { op: 'list'; dir: string }
  | { op: 'mkdir' | 'unlink' | 'rmdir' | 'getattr'; path: string }
  | { op: 'create'; path: string; mode: number }
  | { op: 'write'; path: string; offset: number; length: number; settle: boolean }
  | { op: 'truncate'; path: string; size: number }
  | { op: 'chmod'; path: string; mode: number }
  | { op: 'utimens'; path: string; ms: number }
  | { op: 'rename' | 'link' | 'symlink'; from: string; to: string }
  | { op: 'commit' }
  | { op: 'freeze' };

const stepArb = (bs: number): fc.Arbitrary<Step> =>
  fc.oneof(
    { weight: 8, arbitrary: dirArb.map((dir): Step => ({ op: 'list', dir })) },
    { weight: 3, arbitrary: pathArb.map((path): Step => ({ op: 'getattr', path })) },
    { weight: 2, arbitrary: pathArb.map((path): Step => ({ op: 'mkdir', path })) },
    { weight: 3, arbitrary: fc.record({ path: pathArb, mode: fc.constantFrom(0o644, 0o600) }).map((s): Step => ({ op: 'create', ...s })) },
    {
      weight: 5,
      arbitrary: fc
        .record({ path: pathArb, offset: fc.oneof(fc.constantFrom(0, bs), fc.nat(3 * bs)), length: fc.oneof(fc.constant(bs), fc.integer({ min: 1, max: 3000 })), settle: fc.boolean() })
        .map((s): Step => ({ op: 'write', ...s })),
    },
    { weight: 2, arbitrary: fc.record({ path: pathArb, size: fc.oneof(fc.constant(0), fc.nat(3 * bs)) }).map((s): Step => ({ op: 'truncate', ...s })) },
    { weight: 2, arbitrary: fc.record({ path: pathArb, mode: fc.constantFrom(0o600, 0o755, 0o4755) }).map((s): Step => ({ op: 'chmod', ...s })) },
    { weight: 2, arbitrary: fc.record({ path: pathArb, ms: fc.integer({ min: 0, max: 2e12 }) }).map((s): Step => ({ op: 'utimens', ...s })) },
    { weight: 2, arbitrary: pathArb.map((path): Step => ({ op: 'unlink', path })) },
    { weight: 1, arbitrary: pathArb.map((path): Step => ({ op: 'rmdir', path })) },
    { weight: 3, arbitrary: fc.record({ from: pathArb, to: pathArb }).map((s): Step => ({ op: 'rename', ...s })) },
    { weight: 2, arbitrary: fc.record({ from: pathArb, to: pathArb }).map((s): Step => ({ op: 'link', ...s })) },
    { weight: 1, arbitrary: fc.record({ from: pathArb, to: pathArb }).map((s): Step => ({ op: 'symlink', ...s })) },
    { weight: 1, arbitrary: fc.constant<Step>({ op: 'commit' }) },
    { weight: 1, arbitrary: fc.constant<Step>({ op: 'freeze' }) },
  );

/** Run one step; writes through an open handle (left open: release is not a change). */
async function runStep(r: Rig, s: Step, fds: Map<string, number>, bs: number): Promise<void> {
  switch (s.op) {
    case 'list':
      await r.list(s.dir);
      return;
    case 'mkdir':
      await r.call('mkdir', s.path, 0o755);
      return;
    case 'create': {
      const [e, fd] = await r.call('create', s.path, s.mode | 0o100000);
      if (e === 0) fds.set(s.path, fd as number);
      return;
    }
    case 'getattr':
      await r.call('getattr', s.path);
      return;
    case 'write': {
      let fd = fds.get(s.path);
      if (fd === undefined) {
        const [e, got] = await r.call('open', s.path, 2);
        if (e !== 0) return;
        fd = got as number;
        fds.set(s.path, fd);
      }
      const buf = Buffer.alloc(Math.max(s.length, bs), 0x5a);
      await r.call('write', s.path, fd, buf, s.length, s.offset);
      // Settled or not: a check right after sees the size of the queued write.
      if (s.settle) await r.call('fsync', s.path, 0, fd);
      return;
    }
    case 'truncate':
      await r.call('truncate', s.path, s.size);
      return;
    case 'chmod':
      await r.call('chmod', s.path, s.mode);
      return;
    case 'utimens':
      await r.call('utimens', s.path, s.ms, s.ms + 1);
      return;
    case 'unlink':
      await r.call('unlink', s.path);
      return;
    case 'rmdir':
      await r.call('rmdir', s.path);
      return;
    case 'rename':
    case 'link':
      await r.call(s.op, s.from, s.to);
      return;
    case 'symlink':
      await r.call('symlink', s.from, s.to);
      return;
    case 'commit':
      await r.engine.commit();
      return;
    case 'freeze': {
      r.gate.close();
      // Frozen: the table answers nothing, and a listing hands nothing over.
      expect(r.table.paths().every((p) => r.table.get(p) === undefined)).toBe(true);
      r.gate.open();
      return;
    }
  }
}

describe('listed attributes handed to the FUSE threads', () => {
  let h: RealHarness | undefined;
  afterEach(() => h?.cleanup());

  it('a listing hands over exactly what getattr answers, and nothing else', async () => {
    h = new RealHarness();
    await h.format();
    const r = rig(await h.open());
    expect(r.table.ttlMs).toBe(ATTR_HANDOFF_TTL_MS);
    expect((await r.call('mkdir', '/d', 0o755))[0]).toBe(0);
    for (const [name, len] of [['x', 10], ['y', 200_000]] as const) {
      const [, fd] = await r.call('create', `/d/${name}`, 0o100644);
      await r.call('write', `/d/${name}`, fd, Buffer.alloc(len, 1), len, 0);
      await r.call('release', `/d/${name}`, fd);
    }
    expect((await r.call('symlink', '/d/x', '/d/s'))[0]).toBe(0);
    const [e, names, stats] = await r.list('/d');
    expect(e).toBe(0);
    expect(names).toEqual(['.', '..', 's', 'x', 'y']);
    expect(stats?.length).toBe(names?.length);
    // '.' and '..' are not handed over (mode 0, inode unknown as without attributes).
    expect(stats?.slice(0, 2).map((s) => [s.mode, s.ino])).toEqual([[0, 0xffffffff], [0, 0xffffffff]]);
    for (const [i, name] of (names ?? []).entries()) {
      if (i < 2) continue;
      expect(stats?.[i]).toEqual((await r.call('getattr', `/d/${name}`))[1]);
    }
    expect(r.table.paths()).toEqual(expect.arrayContaining(['/d/s', '/d/x', '/d/y']));
    // The root's listing leaves the control directory out (its attributes are the control files').
    const [, rootNames, rootStats] = await r.list('/');
    expect(rootNames).toEqual(['.', '..', '.lessfs', 'd']);
    expect(rootStats?.[2].mode).toBe(0);
    // So the root is not complete: the control directory is never answered absent.
    expect(r.table.get('/.lessfs')).toBeUndefined();
    expect(r.table.get('/nothing')).toBeUndefined();
    // A listing of a directory without control names is complete.
    expect(r.table.get('/d/nothing')).toBe(ABSENT);
    expect(r.table.paths()).toContain('/d');
    // fuse-native sends readdir's answer on a later tick: a change that lands
    // before it (here, in the callback) must still find the listing filed
    // under the generation it moves.
    const dIno = r.engine.lookup(1, 'd').ino;
    const gap = await new Promise<Array<FuseStat | typeof ABSENT | undefined>>((resolve) =>
      r.handlers.readdir('/d', () => {
        const listed = r.table.get('/d/y');
        r.engine.unlink(dIno, 'y');
        resolve([listed, r.table.get('/d/y')]);
      }),
    );
    expect(gap[0]).toBeDefined();
    expect(gap[1]).toBeUndefined();
    expect((await r.call('getattr', '/d/y'))[0]).toBe(-2);
    // Frozen, the table answers nothing; thawed, it starts empty.
    r.gate.close();
    expect(r.table.get('/d/x')).toBeUndefined();
    r.gate.open();
    expect(r.table.get('/d/x')).toBeUndefined();
    await r.list('/d');
    expect(r.table.get('/d/x')).toBeDefined();
  });

  it('property: after any sequence of changes, the table answers only what getattr answers at that moment', async () => {
    h = new RealHarness({ cacheSizeBytes: 512 << 10 });
    await h.format();
    const engine = await h.open();
    const bs = engine.options.blockSizeBytes;
    let run = 0;
    let checks = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(stepArb(bs), { minLength: 5, maxLength: 40 }), async (steps) => {
        // Each run in a fresh directory of the same engine (its state carries over: more to go stale).
        const r = rig(engine);
        const top = `/run${run++}`;
        expect((await r.call('mkdir', top, 0o755))[0]).toBe(0);
        const at = (p: string): string => (p === '/' ? top : `${top}${p}`);
        const candidates = ALL_PATHS.map(at);
        const fds = new Map<string, number>();
        for (const [i, s] of steps.entries()) {
          const local: Step =
            'path' in s ? { ...s, path: at(s.path) } : 'from' in s ? { ...s, from: s.op === 'symlink' ? s.from : at(s.from), to: at(s.to) } : 'dir' in s ? { ...s, dir: at(s.dir) } : s;
          const fdsLocal = fds;
          await runStep(r, local, fdsLocal, bs);
          checks += await expectTableTrue(r, `${i}: ${JSON.stringify(local)}`, candidates);
        }
        for (const [p, fd] of fds) await r.call('release', p, fd);
        checks += await expectTableTrue(r, 'after release');
      }),
      { numRuns: 200, seed: 20261207 },
    );
    // The property was exercised: the table held entries that were checked.
    console.log(`listed attributes checked against getattr: ${checks}, of them answers of absent names: ${absentChecks}`);
    expect(checks).toBeGreaterThan(300);
    expect(absentChecks).toBeGreaterThan(300);
  }, 120_000);

  it('each kind of change invalidates before it is answered', async () => {
    h = new RealHarness();
    await h.format();
    const r = rig(await h.open());
    const bs = r.engine.options.blockSizeBytes;
    await r.call('mkdir', '/d', 0o755);
    await r.call('mkdir', '/d/sub', 0o755);
    const [, fd] = await r.call('create', '/d/f', 0o100644);
    await r.call('create', '/d/sub/g', 0o100644);
    const changes: Array<[string, () => Promise<[number, unknown]>]> = [
      ['write (queued)', () => r.call('write', '/d/f', fd, Buffer.alloc(bs, 3), bs, 0)],
      ['write (small)', () => r.call('write', '/d/f', fd, Buffer.alloc(bs, 3), 10, bs)],
      ['truncate', () => r.call('truncate', '/d/f', 5)],
      ['ftruncate', () => r.call('ftruncate', '/d/f', fd, 7)],
      ['chmod', () => r.call('chmod', '/d/f', 0o600)],
      ['chown', () => r.call('chown', '/d/f', 12, 34)],
      ['utimens', () => r.call('utimens', '/d/f', 1000, 2000)],
      ['link', () => r.call('link', '/d/f', '/d/f2')],
      ['unlink', () => r.call('unlink', '/d/f2')],
      ['symlink', () => r.call('symlink', 'f', '/d/s')],
      ['mknod', () => r.call('mknod', '/d/n', 0o100644, 0)],
      ['rename', () => r.call('rename', '/d/sub', '/d/sub2')],
      ['mkdir', () => r.call('mkdir', '/d/e', 0o755)],
      ['rmdir', () => r.call('rmdir', '/d/e')],
      ['create', () => r.call('create', '/d/new', 0o100644)],
    ];
    // A second name of /d/f: a change to the file is never handed over under this one.
    await r.call('link', '/d/f', '/d/f-other');
    for (const [what, change] of changes) {
      await r.list('/d');
      const listed = r.table.get('/d/f-other');
      expect(listed, what).toBeDefined();
      const [e] = await change();
      expect(e, what).toBeGreaterThanOrEqual(0);
      const [, now] = await r.call('getattr', '/d/f-other');
      // Either the table no longer answers for the other name, or it answers what getattr does.
      const cached = r.table.get('/d/f-other');
      if (cached !== undefined) expect(cached, `${what}: the table kept a stale answer`).toEqual(now);
      expect(await expectTableTrue(r, what, ['/d/none', '/d/sub/none', '/d/sub2/none', '/d/e/x'])).toBeGreaterThanOrEqual(0);
      expect(await expectTableTrue(r, what)).toBeGreaterThanOrEqual(0);
    }
    // Reads, listings and lookups change nothing: the table stays.
    await r.list('/d');
    const listed = r.table.get('/d/f-other');
    await r.call('read', '/d/f', fd, Buffer.alloc(16), 16, 0);
    await r.call('getattr', '/d/f');
    await r.call('open', '/d/sub2/g', 0);
    expect(r.table.get('/d/f-other')).toBe(listed);
  });
  it('a flush is answered on the libfuse thread only while its inode has no queued write and no error to report', async () => {
    h = new RealHarness();
    await h.format();
    const r = rig(await h.open());
    const bs = r.engine.options.blockSizeBytes;
    const [, fd] = (await r.call('create', '/f', 0o100644)) as [number, number];
    expect(r.table.flushClean(fd)).toBe(true);
    // A small write is stored at once: still clean.
    await r.call('write', '/f', fd, Buffer.alloc(bs, 1), 100, 0);
    expect(r.table.flushClean(fd)).toBe(true);
    // A whole block is queued (write-behind): from its answer on, a flush must wait for it.
    const queued = r.call('write', '/f', fd, Buffer.alloc(bs, 2), bs, bs);
    await queued;
    expect(r.table.flushClean(fd)).toBe(false);
    expect((await r.call('flush', '/f', fd))[0]).toBe(0);
    expect(r.table.flushClean(fd)).toBe(true);
    // A second handle of the same inode waits for the first one's writes too.
    const [, fd2] = (await r.call('open', '/f', 2)) as [number, number];
    expect(r.table.flushClean(fd2)).toBe(true);
    await r.call('write', '/f', fd, Buffer.alloc(bs, 3), bs, 2 * bs);
    expect(r.table.flushClean(fd2)).toBe(false);
    await r.call('fsync', '/f', 0, fd);
    expect(r.table.flushClean(fd2)).toBe(true);
    // A closed handle is never answered there.
    await r.call('release', '/f', fd2);
    expect(r.table.flushClean(fd2)).toBe(false);
    // Frozen: nothing is answered there.
    r.gate.close();
    expect(r.table.flushClean(fd)).toBe(false);
    r.gate.open();
    expect(r.table.flushClean(fd)).toBe(true);
  });

  it('a failed store keeps its inode unclean until the error is reported, then clean', async () => {
    const told: Array<[number, boolean]> = [];
    const wb = new WriteBehind({ log: () => undefined }, undefined, undefined, undefined, (ino, clean) => told.push([ino, clean]));
    await wb.submit(7, () => Promise.reject(Object.assign(new Error('disk on fire'), { code: 'EIO' })), 10, 10);
    expect(told).toEqual([[7, false]]);
    await wb.settled(7);
    // Stored (failed): nothing queued, but an error to report.
    expect(told).toEqual([[7, false]]);
    expect(() => wb.takeError(7)).toThrow('disk on fire');
    expect(told).toEqual([[7, false], [7, true]]);
    // Two writes queued, both stored: clean once, at the end.
    await wb.submit(8, () => Promise.resolve(), 10, 10);
    await wb.submit(8, () => Promise.resolve(), 10, 20);
    await wb.settled(8);
    expect(told.slice(2)).toEqual([[8, false], [8, true]]);
  });
});
