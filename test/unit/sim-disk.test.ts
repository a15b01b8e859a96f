import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DiskError } from '../../src/core/errors.ts';
import { checkSimDiskOptions, SimDiskMedium, type SimDiskOptions } from '../../src/sim/disk.ts';
import { Domain, Scheduler } from '../../src/sim/scheduler.ts';
import { drivenDisk, simRunner, type DrivenDisk, type DrivenFileHandle } from '../support/driven-disk.ts';

// What only the simulated disk has: crash and power-loss semantics, fault
// injection, capacity, determinism. The shared behaviour is in the contract suite.

interface Rig {
  scheduler: Scheduler;
  medium: SimDiskMedium;
  d: DrivenDisk;
  domain: Domain;
  /** Kill the current incarnation and start a new one on the same medium. */
  restart(fault: 'crash' | 'powerLoss'): DrivenDisk;
}

function rig(seed: number, options: Partial<SimDiskOptions> = {}): Rig {
  const scheduler = new Scheduler({ seed });
  const medium = new SimDiskMedium(scheduler, scheduler.rng.split('disk'), options);
  const run = simRunner(scheduler);
  let incarnation = 0;
  const r: Rig = {
    scheduler,
    medium,
    domain: new Domain('node#0'),
    d: undefined as unknown as DrivenDisk,
    restart(fault) {
      r.domain.kill();
      if (fault === 'crash') medium.crash();
      else medium.powerLoss();
      r.domain = new Domain(`node#${++incarnation}`);
      r.d = drivenDisk(medium.driver(r.domain), run);
      return r.d;
    },
  };
  r.d = drivenDisk(medium.driver(r.domain), run);
  return r;
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DiskError);
  return (err as DiskError).code;
}

const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const fill = (length: number, value: number): Uint8Array => new Uint8Array(length).fill(value);

async function createFile(d: DrivenDisk, path: string, contents: Uint8Array, durable: boolean): Promise<DrivenFileHandle> {
  const fh = await d.open(path, { create: true });
  await fh.write(0, contents);
  if (durable) {
    await fh.sync();
    await d.syncDir(path.slice(0, path.lastIndexOf('/')) || '/');
  }
  return fh;
}

describe('SimDiskOptions', () => {
  it('fills defaults and rejects nonsense with RangeError', () => {
    expect(checkSimDiskOptions({}).latencyMsMax).toBeGreaterThanOrEqual(0);
    expect(checkSimDiskOptions({ latencyMsMin: 0, latencyMsMax: 0 }).latencyMsMin).toBe(0);
    const bad: Partial<SimDiskOptions>[] = [
      { latencyMsMin: 5, latencyMsMax: 1 },
      { latencyMsMin: -1 },
      { latencyMsMax: Number.POSITIVE_INFINITY },
      { readErrorProbability: 1.5 },
      { writeErrorProbability: -0.1 },
      { tornWriteProbability: Number.NaN },
      { reorderProbability: 2 },
      { dirOpSurviveProbability: -1 },
      { capacityBytes: -1 },
      { capacityBytes: 1.5 },
      { inflightOpsMax: 0 },
      { label: '' },
      { latencyMsMaximum: 3 } as unknown as Partial<SimDiskOptions>,
    ];
    for (const options of bad) {
      expect(() => checkSimDiskOptions(options), JSON.stringify(options)).toThrow(RangeError);
      expect(() => new SimDiskMedium(new Scheduler({ seed: 1 }), new Scheduler({ seed: 1 }).rng, options)).toThrow(RangeError);
    }
  });
});

describe('SimDisk scheduling', () => {
  it('completes operations only when the scheduler runs them, after the configured latency (seed=11)', async () => {
    const { scheduler, medium, domain, d } = rig(11, { latencyMsMin: 5, latencyMsMax: 5 });
    const raw = medium.driver(domain);
    let done = false;
    const p = raw.mkdir('/a').then(() => {
      done = true;
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(done).toBe(false);
    expect(scheduler.nowMs()).toBe(0);
    await scheduler.runUntilSettled(p);
    expect(done).toBe(true);
    expect(scheduler.nowMs()).toBe(5);
    expect(await d.readdir('/')).toEqual(['a']);
  });

  it('drops in-flight operations of a dead domain: they never complete and have no effect (seed=12)', async () => {
    const r = rig(12);
    const fh = await createFile(r.d, '/f', text('before'), true);
    let settled = false;
    fh.raw.write(0, text('AFTER!')).then(
      () => (settled = true),
      () => (settled = true),
    );
    r.domain.kill();
    await r.scheduler.run();
    expect(settled).toBe(false);
    expect(r.medium.peek('/f')).toEqual(text('before'));
    expect(await codeOf(fh.raw.read(0, 1))).toBe('EBADF');
    expect(await codeOf(medium(r).stat('/f'))).toBe('EBADF');
  });

  it('crash cancels in-flight operations and kills every open handle (seed=13)', async () => {
    const r = rig(13);
    const fh = await createFile(r.d, '/f', text('x'), false);
    let settled = false;
    fh.raw.append(text('lost')).then(
      () => (settled = true),
      () => (settled = true),
    );
    r.medium.crash();
    await r.scheduler.run();
    expect(settled).toBe(false);
    expect(r.medium.peek('/f')).toEqual(text('x'));
    // Same domain, but the handle predates the crash.
    expect(await codeOf(fh.raw.read(0, 1))).toBe('EBADF');
  });
});

function medium(r: Rig) {
  return r.medium.driver(r.domain);
}

describe('SimDisk crash (kill -9)', () => {
  it('keeps every completed write and directory operation, synced or not (seed=21)', async () => {
    const r = rig(21, { tornWriteProbability: 1, reorderProbability: 1, dirOpSurviveProbability: 0 });
    await r.d.mkdir('/dir');
    const fh = await createFile(r.d, '/dir/a', text('unsynced data'), false);
    await fh.append(text('+more'));
    await (await r.d.open('/dir/b', { create: true })).close();
    await r.d.rename('/dir/b', '/dir/c');
    const d = r.restart('crash');
    expect(await d.readdir('/')).toEqual(['dir']);
    expect(await d.readdir('/dir')).toEqual(['a', 'c']);
    const again = await d.open('/dir/a');
    expect(await again.read(0, 100)).toEqual(text('unsynced data+more'));
    expect(await codeOf(fh.read(0, 1))).toBe('EBADF');
    await again.close();
  });

  it('leaves unsynced data unsynced: a later power loss may still drop it (seed=22)', async () => {
    const r = rig(22, { dirOpSurviveProbability: 0 });
    await createFile(r.d, '/a', text('durable'), true);
    const fh = await r.d.open('/a');
    await fh.truncate(0);
    await fh.append(text('volatile'));
    r.restart('crash');
    expect(r.medium.peek('/a')).toEqual(text('volatile'));
    expect(r.medium.peekDurable('/a')).toEqual(text('durable'));
    r.restart('powerLoss');
    const after = r.medium.peek('/a');
    // A prefix of [truncate(0), append]: one of these three images.
    expect([text('durable'), new Uint8Array(0), text('volatile')]).toContainEqual(after);
  });
});

describe('SimDisk power loss', () => {
  it('keeps synced data and synced names exactly (seed=31)', async () => {
    const r = rig(31, { tornWriteProbability: 1, reorderProbability: 1, dirOpSurviveProbability: 0 });
    await r.d.mkdir('/data');
    await r.d.syncDir('/');
    const fh = await createFile(r.d, '/data/blocks', fill(5000, 7), true);
    await fh.close();
    const d = r.restart('powerLoss');
    expect(await d.readdir('/data')).toEqual(['blocks']);
    expect(r.medium.peek('/data/blocks')).toEqual(fill(5000, 7));
  });

  it('reverts unsynced directory operations when none may survive (seed=32)', async () => {
    const r = rig(32, { dirOpSurviveProbability: 0 });
    await r.d.mkdir('/d');
    await createFile(r.d, '/d/keep', text('keep'), true);
    await createFile(r.d, '/d/old', text('old'), true);
    await r.d.syncDir('/');
    // Data synced, names not: all of these are lost.
    await createFile(r.d, '/d/new', text('new'), false).then((fh) => fh.sync());
    await r.d.rename('/d/keep', '/d/renamed');
    await r.d.unlink('/d/old');
    await r.d.mkdir('/d/sub');
    await createFile(r.d, '/d/sub/inner', text('inner'), true);
    expect(await r.d.readdir('/d')).toEqual(['new', 'renamed', 'sub']);
    const d = r.restart('powerLoss');
    expect(await d.readdir('/d')).toEqual(['keep', 'old']);
    expect(r.medium.peek('/d/keep')).toEqual(text('keep'));
    expect(r.medium.peek('/d/old')).toEqual(text('old'));
    expect(r.medium.peek('/d/new')).toBeUndefined();
    expect(r.medium.usedBytes()).toBe(7);
  });

  it('keeps directory operations once every directory they touch is synced (seed=33)', async () => {
    const r = rig(33, { dirOpSurviveProbability: 0 });
    await r.d.mkdir('/x');
    await r.d.mkdir('/y');
    await r.d.syncDir('/');
    await createFile(r.d, '/x/f', text('f'), true);
    await r.d.rename('/x/f', '/y/f');
    await r.d.syncDir('/y');
    // Not yet: the rename also touched /x, which was not synced after it.
    expect(r.medium.peekDurable('/y/f')).toBeUndefined();
    await r.d.syncDir('/x');
    expect(r.medium.peekDurable('/y/f')).toEqual(text('f'));
    const d = r.restart('powerLoss');
    expect(await d.readdir('/x')).toEqual([]);
    expect(await d.readdir('/y')).toEqual(['f']);
  });

  it('keeps every unsynced directory operation when all survive (seed=34)', async () => {
    const r = rig(34, { dirOpSurviveProbability: 1 });
    await r.d.mkdir('/a/b', { recursive: true });
    await createFile(r.d, '/a/b/f', text('data'), false).then((fh) => fh.sync());
    await r.d.rename('/a/b', '/a/c');
    const d = r.restart('powerLoss');
    expect(await d.readdir('/a')).toEqual(['c']);
    expect(r.medium.peek('/a/c/f')).toEqual(text('data'));
  });

  it('keeps a prefix of unsynced writes, tearing the last at a 512-byte boundary (seeds 100..139)', async () => {
    const outcomes = new Set<string>();
    for (let seed = 100; seed < 140; seed++) {
      const r = rig(seed, { tornWriteProbability: 1 });
      const fh = await createFile(r.d, '/f', fill(4096, 1), true);
      await fh.write(0, fill(4096, 2));
      await fh.write(0, fill(4096, 3));
      r.restart('powerLoss');
      const got = r.medium.peek('/f') as Uint8Array;
      expect(got.length).toBe(4096);
      // Shape: runs of 3s, then 2s, then 1s, each boundary on a sector edge.
      let i = 0;
      const runs: string[] = [];
      while (i < got.length) {
        const v = got[i];
        let j = i;
        while (j < got.length && got[j] === v) j++;
        expect(i % 512, `seed=${seed}: run of ${v} starts at ${i}`).toBe(0);
        runs.push(`${v}x${j - i}`);
        i = j;
      }
      const values = runs.map((s) => Number(s.split('x')[0]));
      expect(values, `seed=${seed}`).toEqual([...values].sort().reverse());
      outcomes.add(runs.join(','));
    }
    // Both clean and torn outcomes occur across seeds.
    expect(outcomes.size).toBeGreaterThan(3);
  });

  it('with reordering, keeps any subset of unsynced writes (seeds 200..259)', async () => {
    const seen = new Set<string>();
    for (let seed = 200; seed < 260; seed++) {
      const r = rig(seed, { reorderProbability: 1 });
      const fh = await createFile(r.d, '/f', fill(3, 0), true);
      for (let i = 0; i < 3; i++) await fh.write(i, Uint8Array.of(i + 1));
      r.restart('powerLoss');
      const got = r.medium.peek('/f') as Uint8Array;
      for (let i = 0; i < 3; i++) expect([0, i + 1]).toContain(got[i]);
      seen.add(Array.from(got).join(''));
    }
    // A non-prefix subset (a later write without an earlier one) happened.
    expect([...seen].some((s) => s === '020' || s === '003' || s === '023' || s === '103')).toBe(true);
  });

  it('keeps an unsynced length change only if it survives (seeds 300..319)', async () => {
    const lengths = new Set<number>();
    for (let seed = 300; seed < 320; seed++) {
      const r = rig(seed);
      const fh = await createFile(r.d, '/f', fill(1000, 9), true);
      await fh.truncate(10);
      await fh.truncate(5000);
      r.restart('powerLoss');
      const got = r.medium.peek('/f') as Uint8Array;
      lengths.add(got.length);
      const expected = got.length === 1000 ? fill(1000, 9) : got.length === 10 ? fill(10, 9) : Uint8Array.from({ length: 5000 }, (_, i) => (i < 10 ? 9 : 0));
      expect(got, `seed=${seed}`).toEqual(expected);
    }
    expect([...lengths].sort((a, b) => a - b)).toEqual([10, 1000, 5000]);
  });

  it('writes back the oldest unsynced write beyond pendingOpsPerFileMax, as the kernel would (seeds 400..409)', async () => {
    for (let seed = 400; seed < 410; seed++) {
      const r = rig(seed, { pendingOpsPerFileMax: 2 });
      const fh = await createFile(r.d, '/f', new Uint8Array(0), true);
      for (let i = 0; i < 4; i++) await fh.append(Uint8Array.of(i + 1));
      expect(r.medium.peekDurable('/f')).toEqual(Uint8Array.of(1, 2));
      r.restart('powerLoss');
      const got = Array.from(r.medium.peek('/f') as Uint8Array);
      expect([[1, 2], [1, 2, 3], [1, 2, 3, 4]], `seed=${seed}`).toContainEqual(got);
    }
  });

  it('drops files that were never named durably, and their space (seed=42)', async () => {
    const r = rig(42, { dirOpSurviveProbability: 0 });
    const fh = await createFile(r.d, '/tmp-file', fill(100, 1), false);
    await fh.sync();
    expect(r.medium.usedBytes()).toBe(100);
    r.restart('powerLoss');
    expect(r.medium.peek('/tmp-file')).toBeUndefined();
    expect(r.medium.usedBytes()).toBe(0);
  });
});

describe('SimDisk capacity', () => {
  it('fails with ENOSPC and changes nothing when a change would exceed capacity (seed=51)', async () => {
    const r = rig(51, { capacityBytes: 1000 });
    const fh = await createFile(r.d, '/a', fill(600, 1), false);
    const other = await r.d.open('/b', { create: true });
    expect(await codeOf(other.write(0, fill(401, 2)))).toBe('ENOSPC');
    expect(await codeOf(fh.append(fill(401, 2)))).toBe('ENOSPC');
    expect(await codeOf(fh.write(500, fill(501, 2)))).toBe('ENOSPC');
    expect(await codeOf(fh.truncate(1001))).toBe('ENOSPC');
    expect(r.medium.peek('/a')).toEqual(fill(600, 1));
    expect(r.medium.peek('/b')).toEqual(new Uint8Array(0));
    expect(r.medium.usedBytes()).toBe(600);
    expect(await r.d.space('/')).toEqual({ totalBytes: 1000, freeBytes: 400 });
    // Overwrites in place and growth up to the limit still work.
    await fh.write(0, fill(600, 3));
    await other.write(0, fill(400, 4));
    expect(r.medium.usedBytes()).toBe(1000);
    expect(await codeOf(other.append(Uint8Array.of(1)))).toBe('ENOSPC');
    // Space comes back when an unlinked file is closed, or capacity grows.
    await r.d.unlink('/b');
    expect(r.medium.usedBytes()).toBe(1000);
    await other.close();
    expect(r.medium.usedBytes()).toBe(600);
    r.medium.setCapacity(700);
    await fh.append(fill(100, 5));
    expect(await codeOf(fh.append(Uint8Array.of(1)))).toBe('ENOSPC');
    expect(() => r.medium.setCapacity(-5)).toThrow(RangeError);
  });

  it('limits the number of inodes (seed=52)', async () => {
    const r = rig(52, { inodesMax: 3 });
    await r.d.mkdir('/a');
    await (await r.d.open('/f', { create: true })).close();
    expect(await codeOf(r.d.open('/g', { create: true }))).toBe('ENOSPC');
    expect(await codeOf(r.d.mkdir('/b'))).toBe('ENOSPC');
  });
});

describe('SimDisk I/O errors', () => {
  it('injects EIO on reads and writes, records it in the trace, and a failed write has no effect (seed=61)', async () => {
    const r = rig(61);
    const lines: string[] = [];
    r.scheduler.traceSink = (line) => lines.push(line);
    const fh = await createFile(r.d, '/f', text('good'), true);
    const faulty = new SimDiskMedium(r.scheduler, r.scheduler.rng.split('faulty'), {
      label: 'faulty',
      readErrorProbability: 1,
      writeErrorProbability: 1,
    });
    const fd = drivenDisk(faulty.driver(r.domain), simRunner(r.scheduler));
    const bad = await fd.open('/x', { create: true });
    expect(await codeOf(bad.write(0, text('nope')))).toBe('EIO');
    expect(await codeOf(bad.append(text('nope')))).toBe('EIO');
    expect(await codeOf(bad.truncate(10))).toBe('EIO');
    expect(await codeOf(bad.read(0, 1))).toBe('EIO');
    expect(await codeOf(bad.sync())).toBe('EIO');
    expect(await codeOf(fd.syncDir('/'))).toBe('EIO');
    expect(faulty.peek('/x')).toEqual(new Uint8Array(0));
    expect(lines.filter((l) => l.startsWith('faulty fault EIO')).length).toBe(6);
    expect(await fh.read(0, 4)).toEqual(text('good'));
  });

  it('injects EIO at the configured rate (seed=62)', async () => {
    const r = rig(62, { readErrorProbability: 0.3, latencyMsMin: 0, latencyMsMax: 0 });
    const fh = await createFile(r.d, '/f', fill(10, 1), false);
    let failures = 0;
    for (let i = 0; i < 200; i++) {
      const outcome = await fh.read(0, 10).then(
        () => 'ok',
        (err: DiskError) => err.code,
      );
      if (outcome !== 'ok') {
        expect(outcome).toBe('EIO');
        failures++;
      }
    }
    expect(failures).toBeGreaterThan(30);
    expect(failures).toBeLessThan(100);
  });
});

// ---------------------------------------------------------------- properties

type FileOp =
  | { kind: 'write'; file: number; positionBytes: number; length: number }
  | { kind: 'append'; file: number; length: number }
  | { kind: 'truncate'; file: number; lengthBytes: number }
  | { kind: 'sync'; file: number }
  | { kind: 'crash' }
  | { kind: 'powerLoss' };

const FILES = ['/d/f0', '/d/f1', '/d/f2'];

const fileOpArb: fc.Arbitrary<FileOp> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('write' as const), file: fc.nat(2), positionBytes: fc.nat(3000), length: fc.integer({ min: 1, max: 1500 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('append' as const), file: fc.nat(2), length: fc.integer({ min: 1, max: 1500 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), file: fc.nat(2), lengthBytes: fc.nat(4000) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('sync' as const), file: fc.nat(2) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'crash' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'powerLoss' as const }) },
);

type ModelOp = { kind: 'write'; positionBytes: number; data: Uint8Array } | { kind: 'truncate'; lengthBytes: number };

function applyModel(image: Uint8Array, op: ModelOp, tornAt?: number): Uint8Array {
  if (op.kind === 'truncate') {
    const out = new Uint8Array(op.lengthBytes);
    out.set(image.subarray(0, Math.min(image.length, op.lengthBytes)));
    return out;
  }
  const data = tornAt === undefined ? op.data : op.data.subarray(0, tornAt - op.positionBytes);
  const out = new Uint8Array(Math.max(image.length, op.positionBytes + data.length));
  out.set(image);
  out.set(data, op.positionBytes);
  return out;
}

const equalBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((v, i) => v === b[i]);

/** Every image a power loss may leave: durable + a prefix (or any subset), the last kept write possibly torn. */
function survivable(durable: Uint8Array, pending: ModelOp[], subsets: boolean, torn: boolean, actual: Uint8Array): boolean {
  const n = pending.length;
  const choices: boolean[][] = [];
  if (subsets) {
    for (let mask = 0; mask < 1 << n; mask++) choices.push(pending.map((_, i) => ((mask >> i) & 1) === 1));
  } else {
    for (let k = 0; k <= n; k++) choices.push(pending.map((_, i) => i < k));
  }
  for (const keep of choices) {
    let lastWrite = -1;
    keep.forEach((k, i) => {
      if (k && pending[i].kind === 'write') lastWrite = i;
    });
    const cuts: (number | undefined)[] = [undefined];
    if (torn && lastWrite >= 0) {
      const op = pending[lastWrite] as Extract<ModelOp, { kind: 'write' }>;
      for (let c = (Math.floor(op.positionBytes / 512) + 1) * 512; c < op.positionBytes + op.data.length; c += 512) cuts.push(c);
    }
    for (const cut of cuts) {
      let image = durable;
      keep.forEach((k, i) => {
        if (k) image = applyModel(image, pending[i], i === lastWrite ? cut : undefined);
      });
      if (equalBytes(image, actual)) return true;
    }
  }
  return false;
}

describe('SimDisk power-loss properties', () => {
  it('synced data always survives; unsynced data survives only as an allowed subset', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        fc.constantFrom(0, 0.5, 1),
        fc.constantFrom(0, 0.5, 1),
        fc.array(fileOpArb, { maxLength: 24 }),
        async (seed, tornWriteProbability, reorderProbability, ops) => {
          const r = rig(seed, { tornWriteProbability, reorderProbability, latencyMsMin: 0, latencyMsMax: 2 });
          await r.d.mkdir('/d');
          const model = FILES.map(() => ({ durable: new Uint8Array(0) as Uint8Array, pending: [] as ModelOp[], current: new Uint8Array(0) as Uint8Array }));
          let handles: DrivenFileHandle[] = [];
          for (const path of FILES) handles.push(await r.d.open(path, { create: true }));
          await r.d.syncDir('/d');
          await r.d.syncDir('/');
          let salt = 0;
          const reopen = async (d: DrivenDisk) => {
            handles = [];
            for (const path of FILES) handles.push(await d.open(path));
          };
          for (const op of ops) {
            salt = (salt % 255) + 1;
            if (op.kind === 'crash' || op.kind === 'powerLoss') {
              const d = r.restart(op.kind);
              for (let i = 0; i < FILES.length; i++) {
                const m = model[i];
                const actual = r.medium.peek(FILES[i]) as Uint8Array;
                expect(actual, `seed=${seed} ${FILES[i]} missing`).toBeDefined();
                if (op.kind === 'crash') {
                  expect(equalBytes(actual, m.current), `seed=${seed}: crash changed ${FILES[i]}`).toBe(true);
                  continue;
                }
                if (m.pending.length === 0) {
                  expect(equalBytes(actual, m.durable), `seed=${seed}: synced ${FILES[i]} changed`).toBe(true);
                } else {
                  const ok = survivable(m.durable, m.pending, reorderProbability > 0, tornWriteProbability > 0, actual);
                  expect(ok, `seed=${seed}: ${FILES[i]} is no allowed survivor`).toBe(true);
                }
                m.durable = actual;
                m.current = actual;
                m.pending = [];
              }
              await reopen(d);
              continue;
            }
            const m = model[op.file];
            const fh = handles[op.file];
            switch (op.kind) {
              case 'write': {
                const data = fill(op.length, salt);
                await fh.write(op.positionBytes, data);
                m.pending.push({ kind: 'write', positionBytes: op.positionBytes, data });
                break;
              }
              case 'append': {
                const data = fill(op.length, salt);
                const at = await fh.append(data);
                expect(at).toBe(m.current.length);
                m.pending.push({ kind: 'write', positionBytes: at, data });
                break;
              }
              case 'truncate':
                await fh.truncate(op.lengthBytes);
                m.pending.push({ kind: 'truncate', lengthBytes: op.lengthBytes });
                break;
              case 'sync':
                await fh.sync();
                m.durable = m.current;
                m.pending = [];
                break;
            }
            if (op.kind !== 'sync') m.current = applyModel(m.current, m.pending[m.pending.length - 1]);
            expect(equalBytes(r.medium.peek(FILES[op.file]) as Uint8Array, m.current)).toBe(true);
            expect(equalBytes(r.medium.peekDurable(FILES[op.file]) as Uint8Array, m.durable)).toBe(true);
          }
          expect(r.medium.usedBytes()).toBe(model.reduce((sum, m) => sum + m.current.length, 0));
        },
      ),
      { numRuns: 150 },
    );
  });

  it('directory operations: fully synced trees survive unchanged; any outcome is a well-formed tree', async () => {
    type DirAction =
      | { kind: 'create'; dir: number; name: number }
      | { kind: 'mkdir'; dir: number; name: number }
      | { kind: 'rename'; fromDir: number; from: number; toDir: number; to: number }
      | { kind: 'unlink'; dir: number; name: number }
      | { kind: 'syncDir'; dir: number };
    const dirs = ['/', '/a', '/b', '/a/n1'];
    const actionArb: fc.Arbitrary<DirAction> = fc.oneof(
      fc.record({ kind: fc.constant('create' as const), dir: fc.nat(3), name: fc.nat(3) }),
      fc.record({ kind: fc.constant('mkdir' as const), dir: fc.nat(3), name: fc.nat(3) }),
      fc.record({ kind: fc.constant('rename' as const), fromDir: fc.nat(3), from: fc.nat(3), toDir: fc.nat(3), to: fc.nat(3) }),
      fc.record({ kind: fc.constant('unlink' as const), dir: fc.nat(3), name: fc.nat(3) }),
      fc.record({ kind: fc.constant('syncDir' as const), dir: fc.nat(3) }),
    );
    const at = (dir: number, name: number): string => `${dirs[dir] === '/' ? '' : dirs[dir]}/n${name}`;

    async function tree(d: DrivenDisk, path: string, out: Map<string, string>, depth = 0): Promise<void> {
      expect(depth).toBeLessThan(20);
      for (const name of await d.readdir(path)) {
        const child = `${path === '/' ? '' : path}/${name}`;
        const st = await d.stat(child);
        expect(st).toBeDefined();
        if (st?.isDirectory) {
          out.set(child, 'dir');
          await tree(d, child, out, depth + 1);
        } else {
          const fh = await d.open(child, { readOnly: true });
          out.set(child, new TextDecoder().decode(await fh.read(0, 1000)));
          await fh.close();
        }
      }
    }

    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        fc.constantFrom(0, 0.5, 1),
        fc.array(actionArb, { maxLength: 25 }),
        fc.boolean(),
        async (seed, dirOpSurviveProbability, actions, syncAllAtEnd) => {
          const r = rig(seed, { dirOpSurviveProbability, latencyMsMin: 0, latencyMsMax: 2 });
          await r.d.mkdir('/a');
          await r.d.mkdir('/b');
          let serial = 0;
          for (const action of actions) {
            // Errors are expected (missing names, wrong kinds); only their codes are checked.
            const outcome = await (async () => {
              switch (action.kind) {
                case 'create': {
                  const fh = await r.d.open(at(action.dir, action.name), { create: true, exclusive: true });
                  await fh.write(0, text(`file${serial++}`));
                  await fh.sync();
                  await fh.close();
                  return;
                }
                case 'mkdir':
                  return r.d.mkdir(at(action.dir, action.name));
                case 'rename':
                  return r.d.rename(at(action.fromDir, action.from), at(action.toDir, action.to));
                case 'unlink':
                  return r.d.unlink(at(action.dir, action.name));
                case 'syncDir':
                  return r.d.syncDir(dirs[action.dir]);
              }
            })().then(
              () => 'ok',
              (err: unknown) => {
                expect(err).toBeInstanceOf(DiskError);
                return (err as DiskError).code;
              },
            );
            expect(['ok', 'ENOENT', 'EEXIST', 'ENOTDIR', 'EISDIR', 'ENOTEMPTY', 'EINVAL']).toContain(outcome);
          }
          const before = new Map<string, string>();
          await tree(r.d, '/', before);
          if (syncAllAtEnd) {
            for (const [path, kind] of [['/', 'dir'] as const, ...before]) if (kind === 'dir') await r.d.syncDir(path);
          }
          const d = r.restart('powerLoss');
          const after = new Map<string, string>();
          await tree(d, '/', after);
          if (syncAllAtEnd || dirOpSurviveProbability === 1) expect(after, `seed=${seed}`).toEqual(before);
          // Every surviving file holds exactly what it was created with (its data was synced).
          for (const [path, contents] of after) expect(contents === 'dir' || /^file\d+$/.test(contents), `seed=${seed} ${path}`).toBe(true);
          let used = 0;
          for (const contents of after.values()) if (contents !== 'dir') used += contents.length;
          expect(r.medium.usedBytes()).toBe(used);
        },
      ),
      { numRuns: 150 },
    );
  });
});

// ---------------------------------------------------------------- determinism

async function scenario(seed: number): Promise<{ images: (Uint8Array | undefined)[]; names: string[]; traceHash: string }> {
  const r = rig(seed, { tornWriteProbability: 0.5, reorderProbability: 0.5, dirOpSurviveProbability: 0.5, latencyMsMin: 0, latencyMsMax: 4, readErrorProbability: 0.05 });
  await r.d.mkdir('/d');
  await r.d.syncDir('/');
  const raws = [];
  for (let i = 0; i < 4; i++) {
    const fh = await r.d.open(`/d/f${i}`, { create: true });
    await fh.write(0, fill(2048, i + 1));
    if (i % 2 === 0) await fh.sync();
    raws.push(fh.raw);
  }
  await r.d.syncDir('/d');
  // Concurrent unsynced writes, completing in a seeded order.
  await r.scheduler.runUntilSettled(Promise.all(raws.flatMap((fh, i) => [fh.write(100 * i, fill(3000, 10 + i)), fh.append(fill(700, 20 + i))])));
  await r.scheduler.runUntilSettled(Promise.all(raws.map((fh) => fh.read(0, 10).catch((err: DiskError) => err.code))));
  await r.d.rename('/d/f0', '/d/g0');
  await r.d.unlink('/d/f1');
  r.restart('powerLoss');
  const names = await r.d.readdir('/d');
  return { images: ['/d/f0', '/d/f1', '/d/f2', '/d/f3', '/d/g0'].map((p) => r.medium.peek(p)), names, traceHash: r.scheduler.traceHash() };
}

describe('SimDisk determinism', () => {
  it('same seed gives the same surviving image and trace hash (seeds 7, 8, 9)', async () => {
    for (const seed of [7, 8, 9]) {
      const a = await scenario(seed);
      const b = await scenario(seed);
      expect(b.images).toEqual(a.images);
      expect(b.names).toEqual(a.names);
      expect(b.traceHash).toBe(a.traceHash);
    }
    const hashes = new Set<string>();
    for (let seed = 1; seed <= 6; seed++) hashes.add((await scenario(seed)).traceHash);
    expect(hashes.size).toBeGreaterThan(1);
  });
});
