// One contract for every Store driver (src/core/drivers.ts), run against the
// simulated store and against LMDB in both sync modes.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { compareBytes, equalBytes, toHex } from '../../src/core/bytes.ts';
import type { RangeOptions, Store, StoreFactory, StoreOp } from '../../src/core/drivers.ts';
import { errorCode } from '../../src/core/errors.ts';
import { STORE_KEY_BYTES_MAX } from '../../src/core/store-rules.ts';
import { LmdbStoreFactory } from '../../src/real/lmdb-store.ts';
import { Domain, Scheduler } from '../../src/sim/scheduler.ts';
import { SimStoreMedium } from '../../src/sim/store.ts';

interface StoreHarness {
  factory: StoreFactory;
  /** Wait for a store promise (the sim must run its scheduler for it to settle). */
  run<T>(promise: Promise<T>): Promise<T>;
  /** A fresh environment path. */
  path(name: string): string;
  teardown(): void;
}

const SIM_SEED = 20250101;

function simHarness(): StoreHarness {
  const scheduler = new Scheduler({ seed: SIM_SEED });
  const medium = new SimStoreMedium(scheduler, scheduler.rng.split('store'), {
    commitLatencyMsMin: 0.5,
    commitLatencyMsMax: 4,
    syncLatencyMsMin: 1,
    syncLatencyMsMax: 8,
  });
  let n = 0;
  return {
    factory: medium.factory(new Domain('node')),
    run: (promise) => scheduler.runUntilSettled(promise, 'store operation'),
    path: (name) => `/meta/${name}-${n++}`,
    teardown: () => undefined,
  };
}

function lmdbHarness(syncMode: 'overlapping' | 'explicit'): StoreHarness {
  const dir = mkdtempSync(join(tmpdir(), 'lessfs-store-contract-'));
  let n = 0;
  return {
    factory: new LmdbStoreFactory({ syncMode }),
    run: (promise) => promise,
    path: (name) => join(dir, `${name}-${n++}`),
    teardown: () => rmSync(dir, { recursive: true, force: true }),
  };
}

const b = (...bytes: number[]): Uint8Array => new Uint8Array(bytes);
const TABLES = ['inode', 'dirent', 'blockmap', 'meta'];

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected a throw');
}

/** The reference: a plain map, sorted on demand with compareBytes. */
class ModelStore {
  readonly tables = new Map<string, Map<string, { key: Uint8Array; value: Uint8Array }>>();

  apply(ops: readonly StoreOp[]): void {
    for (const op of ops) {
      let t = this.tables.get(op.table);
      if (!t) this.tables.set(op.table, (t = new Map()));
      if (op.value === undefined) t.delete(toHex(op.key));
      else t.set(toHex(op.key), { key: op.key.slice(), value: op.value.slice() });
    }
  }

  range(table: string, o: RangeOptions = {}): Array<[string, string]> {
    let entries = [...(this.tables.get(table)?.values() ?? [])].sort((x, y) => compareBytes(x.key, y.key));
    if (o.start) entries = entries.filter((e) => compareBytes(e.key, o.start as Uint8Array) >= 0);
    if (o.end) entries = entries.filter((e) => compareBytes(e.key, o.end as Uint8Array) < 0);
    if (o.reverse) entries.reverse();
    if (o.limit !== undefined) entries = entries.slice(0, o.limit);
    return entries.map((e) => [toHex(e.key), toHex(e.value)]);
  }
}

function hexRange(store: Store, table: string, o?: RangeOptions): Array<[string, string]> {
  return [...store.range(table, o)].map((e) => [toHex(e.key), toHex(e.value)]);
}

function storeContract(name: string, makeHarness: () => StoreHarness, propertyRuns: number): void {
  describe(`Store contract: ${name}`, () => {
    let h: StoreHarness;
    const opened: Store[] = [];
    const openStore = async (path: string, tables = TABLES, mapSizeBytes?: number): Promise<Store> => {
      const store = await h.run(h.factory.open({ path, tables, mapSizeBytes }));
      opened.push(store);
      return store;
    };
    const commit = (store: Store, ops: StoreOp[], durable = false): Promise<void> => h.run(store.commit(ops, { durable }));

    beforeEach(() => {
      h = makeHarness();
    });
    afterEach(async () => {
      for (const store of opened.splice(0)) await h.run(store.close());
      h.teardown();
    });

    it('gets, puts, overwrites and deletes', async () => {
      const s = await openStore(h.path('basic'));
      expect(s.tables).toEqual(TABLES);
      expect(s.get('inode', b(1))).toBeUndefined();
      await commit(s, [{ table: 'inode', key: b(1), value: b(10) }]);
      expect(s.get('inode', b(1))).toEqual(b(10));
      await commit(s, [{ table: 'inode', key: b(1), value: b(11, 12) }]);
      expect(s.get('inode', b(1))).toEqual(b(11, 12));
      await commit(s, [
        { table: 'inode', key: b(1), value: undefined },
        { table: 'inode', key: b(2), value: undefined }, // deleting a missing key is fine
      ]);
      expect(s.get('inode', b(1))).toBeUndefined();
      expect(hexRange(s, 'inode')).toEqual([]);
      await commit(s, []); // an empty commit is fine too
    });

    it('a get after a commit settles sees it, with gets before and during the commit', async () => {
      // The LMDB store holds one read transaction between commits (src/real/lmdb-store.ts).
      const s = await openStore(h.path('readtxn'));
      for (let i = 1; i <= 20; i++) {
        expect(s.get('meta', b(1))).toEqual(i === 1 ? undefined : b(i - 1));
        const pending = s.commit([{ table: 'meta', key: b(1), value: b(i) }, { table: 'meta', key: b(2, i), value: b(i) }], { durable: i % 5 === 0 });
        expect(s.get('meta', b(2, i))).toBeUndefined();
        await h.run(pending);
        expect(s.get('meta', b(1))).toEqual(b(i));
        expect(s.get('meta', b(2, i))).toEqual(b(i));
      }
      await commit(s, [{ table: 'meta', key: b(1), value: undefined }]);
      expect(s.get('meta', b(1))).toBeUndefined();
    });

    it('applies later ops of one commit over earlier ones', async () => {
      const s = await openStore(h.path('order'));
      await commit(s, [
        { table: 'meta', key: b(1), value: b(1) },
        { table: 'meta', key: b(1), value: b(2) },
        { table: 'meta', key: b(2), value: b(2) },
        { table: 'meta', key: b(2), value: undefined },
        { table: 'meta', key: b(3), value: undefined },
        { table: 'meta', key: b(3), value: b(3) },
      ]);
      expect(hexRange(s, 'meta')).toEqual([
        ['01', '02'],
        ['03', '03'],
      ]);
    });

    it('commits across tables atomically and shows nothing before the commit resolves', async () => {
      const s = await openStore(h.path('atomic'));
      const pending = s.commit(
        [
          { table: 'inode', key: b(7), value: b(1) },
          { table: 'dirent', key: b(0, 0, 0, 1, 0x61), value: b(7) },
          { table: 'blockmap', key: b(7, 0), value: b(0xaa) },
        ],
        { durable: true },
      );
      expect(s.get('inode', b(7))).toBeUndefined();
      expect(s.get('dirent', b(0, 0, 0, 1, 0x61))).toBeUndefined();
      await h.run(pending);
      expect(s.get('inode', b(7))).toEqual(b(1));
      expect(s.get('dirent', b(0, 0, 0, 1, 0x61))).toEqual(b(7));
      expect(s.get('blockmap', b(7, 0))).toEqual(b(0xaa));
    });

    it('rejects a commit with a bad op and applies none of it', async () => {
      const s = await openStore(h.path('badop'));
      const bad: StoreOp[][] = [
        [
          { table: 'inode', key: b(1), value: b(1) },
          { table: 'inode', key: b(), value: b(1) },
        ],
        [
          { table: 'inode', key: b(1), value: b(1) },
          { table: 'nosuch', key: b(1), value: b(1) },
        ],
        [
          { table: 'inode', key: b(1), value: b(1) },
          { table: 'inode', key: new Uint8Array(STORE_KEY_BYTES_MAX + 1), value: b(1) },
        ],
      ];
      for (const ops of bad) {
        const error = await rejection(h.run(s.commit(ops, { durable: false })));
        expect(errorCode(error)).toBe('EINVAL');
      }
      expect(s.get('inode', b(1))).toBeUndefined();
    });

    it('orders keys bytewise, unsigned, shorter prefix first', async () => {
      const s = await openStore(h.path('bytewise'));
      const keys = [b(0xff, 0xff, 0xff, 0xff), b(1, 0xff), b(0x80), b(0), b(1), b(0xff), b(0, 0), b(1, 0), b(0x7f, 0xff), b(1, 0, 0)];
      await commit(
        s,
        keys.map((key, i) => ({ table: 'dirent', key, value: b(i) })),
      );
      const expected = [...keys].sort(compareBytes).map(toHex);
      expect(expected).toEqual(['00', '0000', '01', '0100', '010000', '01ff', '7fff', '80', 'ff', 'ffffffff']);
      expect([...s.range('dirent')].map((e) => toHex(e.key))).toEqual(expected);
      expect([...s.range('dirent', { reverse: true })].map((e) => toHex(e.key))).toEqual([...expected].reverse());
      const longest = new Uint8Array(STORE_KEY_BYTES_MAX).fill(0xff);
      await commit(s, [{ table: 'dirent', key: longest, value: b(1) }]);
      expect(s.get('dirent', longest)).toEqual(b(1));
      const last = [...s.range('dirent', { reverse: true, limit: 1 })][0];
      expect(last.key).toEqual(longest);
    });

    it('ranges with start (inclusive), end (exclusive), limit and reverse', async () => {
      const s = await openStore(h.path('range'));
      const model = new ModelStore();
      const ops: StoreOp[] = [];
      for (const k of [[0], [0, 0], [1], [1, 0], [1, 0xff], [2], [2, 5], [3], [0x80], [0xff], [0xff, 0xff]]) {
        ops.push({ table: 'dirent', key: b(...k), value: b(k.length) });
      }
      await commit(s, ops);
      model.apply(ops);
      const bounds = [undefined, b(), b(0), b(0, 0), b(1), b(1, 0x80), b(2), b(2, 5), b(0xff), b(0xff, 0xff), b(0xff, 0xff, 0xff)];
      for (const start of bounds) {
        for (const end of bounds) {
          for (const reverse of [false, true]) {
            for (const limit of [undefined, 0, 1, 3]) {
              const o: RangeOptions = { reverse };
              if (start) o.start = start;
              if (end) o.end = end;
              if (limit !== undefined) o.limit = limit;
              expect(hexRange(s, 'dirent', o), JSON.stringify({ start, end, reverse, limit })).toEqual(model.range('dirent', o));
            }
          }
        }
      }
      expect(hexRange(s, 'inode')).toEqual([]);
      expect(hexRange(s, 'inode', { reverse: true })).toEqual([]);
    });

    it('stores empty and 1 MiB values', async () => {
      const s = await openStore(h.path('values'));
      const big = new Uint8Array(1 << 20);
      for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
      await commit(s, [
        { table: 'meta', key: b(1), value: b() },
        { table: 'meta', key: b(2), value: big },
      ]);
      const empty = s.get('meta', b(1));
      expect(empty).toBeInstanceOf(Uint8Array);
      expect(empty?.length).toBe(0);
      // equalBytes, not toEqual: vitest's deep equality takes seconds on 1 MiB.
      expect(equalBytes(s.get('meta', b(2)) as Uint8Array, big)).toBe(true);
      const entries = [...s.range('meta')];
      expect(entries.map((e) => e.value.length)).toEqual([0, 1 << 20]);
      expect(equalBytes(entries[1].value, big)).toBe(true);
    });

    it('hands out copies and takes copies', async () => {
      const s = await openStore(h.path('copies'));
      const key = b(5);
      const value = b(1, 2, 3);
      const pending = s.commit([{ table: 'meta', key, value }], { durable: false });
      key[0] = 6; // the caller reuses its buffers right after commit()
      value[0] = 9;
      await h.run(pending);
      expect(s.get('meta', b(6))).toBeUndefined();
      const got = s.get('meta', b(5)) as Uint8Array;
      expect(got).toEqual(b(1, 2, 3));
      got[0] = 0xee;
      const [entry] = [...s.range('meta')];
      expect(entry.value).toEqual(b(1, 2, 3));
      entry.key[0] = 0xee;
      entry.value[0] = 0xee;
      const again = s.get('meta', b(5)) as Uint8Array;
      expect(again).toEqual(b(1, 2, 3));
      // Keys and values survive later reads (lmdb-js reuses its read buffers).
      await commit(s, [{ table: 'meta', key: b(7), value: b(7, 7) }]);
      const kept = [...s.range('meta')];
      s.get('meta', b(7));
      expect(kept.map((e) => [toHex(e.key), toHex(e.value)])).toEqual([
        ['05', '010203'],
        ['07', '0707'],
      ]);
      expect(again).toEqual(b(1, 2, 3));
    });

    it('takes keys and values backed by a SharedArrayBuffer', async () => {
      // lmdb-js 3.5.6 segfaults on such a Buffer in put(): the driver must copy.
      const s = await openStore(h.path('shared'));
      const shared = new Uint8Array(new SharedArrayBuffer(64));
      shared.set([1, 2, 3, 4, 5, 6, 7, 8]);
      await commit(s, [{ table: 'meta', key: shared.subarray(0, 2), value: shared.subarray(2, 8) }]);
      expect(s.get('meta', shared.subarray(0, 2))).toEqual(b(3, 4, 5, 6, 7, 8));
      expect(hexRange(s, 'meta', { start: shared.subarray(0, 1), end: shared.subarray(1, 2) })).toEqual([['0102', '030405060708']]);
    });

    it('reads see committed state only, and commits settle in issue order', async () => {
      const s = await openStore(h.path('inorder'));
      await commit(s, [{ table: 'meta', key: b(1), value: b(0) }]);
      const settled: number[] = [];
      const pending: Promise<void>[] = [];
      for (let i = 1; i <= 24; i++) {
        const p = s.commit([{ table: 'meta', key: b(1), value: b(i) }], { durable: i % 3 === 0 });
        pending.push(p.then(() => void settled.push(i)));
        if (i === 12) pending.push(s.sync().then(() => void settled.push(100)));
      }
      expect(s.get('meta', b(1))).toEqual(b(0));
      await h.run(Promise.all(pending));
      expect(settled).toEqual([...Array.from({ length: 12 }, (_, i) => i + 1), 100, ...Array.from({ length: 12 }, (_, i) => i + 13)]);
      expect(s.get('meta', b(1))).toEqual(b(24));
    });

    it('keeps data across close and reopen, creating new tables on demand', async () => {
      const path = h.path('reopen');
      const s1 = await openStore(path, ['inode', 'meta']);
      await commit(s1, [
        { table: 'inode', key: b(1), value: b(1) },
        { table: 'meta', key: b(2), value: b(2) },
      ]);
      await commit(s1, [{ table: 'inode', key: b(3), value: b(3) }], true);
      const last = s1.commit([{ table: 'inode', key: b(4), value: b(4) }], { durable: false });
      await h.run(s1.close()); // waits for the commit in flight
      await h.run(last);
      expect(errorCode(thrown(() => s1.get('inode', b(1))))).toBe('ECLOSED');
      expect(errorCode(await rejection(s1.commit([], { durable: false })))).toBe('ECLOSED');

      const s2 = await openStore(path, ['inode', 'meta', 'orphan']);
      expect(hexRange(s2, 'inode')).toEqual([
        ['01', '01'],
        ['03', '03'],
        ['04', '04'],
      ]);
      expect(s2.get('meta', b(2))).toEqual(b(2));
      expect(hexRange(s2, 'orphan')).toEqual([]);
      await commit(s2, [{ table: 'orphan', key: b(9), value: b(9) }], true);
      await h.run(s2.close());

      const s3 = await openStore(path, ['orphan']);
      expect(s3.get('orphan', b(9))).toEqual(b(9));
      expect(errorCode(thrown(() => s3.get('inode', b(1))))).toBe('EINVAL');
    });

    it('refuses a second open of the same environment and bad arguments', async () => {
      const path = h.path('busy');
      await openStore(path);
      expect(errorCode(await rejection(h.run(h.factory.open({ path, tables: TABLES }))))).toBe('EBUSY');
      expect(errorCode(await rejection(h.run(h.factory.open({ path: h.path('x'), tables: [] }))))).toBe('EINVAL');
      expect(errorCode(await rejection(h.run(h.factory.open({ path: h.path('x'), tables: ['a', 'a'] }))))).toBe('EINVAL');
      const s = opened[0];
      expect(errorCode(thrown(() => s.get('inode', b())))).toBe('EINVAL');
      expect(errorCode(thrown(() => s.get('inode', new Uint8Array(STORE_KEY_BYTES_MAX + 1))))).toBe('EINVAL');
      expect(errorCode(thrown(() => s.range('inode', { limit: -1 })))).toBe('EINVAL');
      expect(errorCode(thrown(() => s.range('nosuch')))).toBe('EINVAL');
    });

    it('fails a commit that would overflow the map with ENOSPC and applies none of it', async () => {
      const s = await openStore(h.path('mapfull'), TABLES, 512 * 1024);
      const chunk = new Uint8Array(64 * 1024).fill(7);
      let i = 0;
      let error: unknown;
      for (; i < 64 && error === undefined; i++) {
        try {
          await commit(s, [
            { table: 'meta', key: b(i, 0), value: chunk },
            { table: 'inode', key: b(i, 1), value: b(i) },
          ]);
        } catch (e) {
          error = e;
        }
      }
      expect(errorCode(error)).toBe('ENOSPC');
      expect(String((error as Error).message)).toMatch(/LMDB_MAPSIZE/);
      const failed = i - 1;
      expect(failed).toBeGreaterThan(1);
      expect(s.get('meta', b(failed, 0))).toBeUndefined();
      expect(s.get('inode', b(failed, 1))).toBeUndefined();
      expect(s.get('inode', b(failed - 1, 1))).toEqual(b(failed - 1));
      // Still usable: small commits and deletes go through.
      await commit(s, [{ table: 'meta', key: b(0, 0), value: undefined }]);
      await commit(s, [{ table: 'inode', key: b(0xee), value: b(1) }], true);
      expect(s.get('inode', b(0xee))).toEqual(b(1));
    });

    it('matches a sorted-map model over random batches (property)', async () => {
      const keyArb = fc.uint8Array({ minLength: 1, maxLength: 4 }).map((k) => k.map((x) => [0, 1, 0x7f, 0x80, 0xff][x % 5]));
      const boundArb = fc.option(fc.uint8Array({ minLength: 0, maxLength: 3 }).map((k) => k.map((x) => [0, 1, 0x7f, 0x80, 0xff][x % 5])), {
        nil: undefined,
      });
      const opArb = fc.record({
        table: fc.constantFrom('inode', 'dirent'),
        key: keyArb,
        value: fc.option(fc.uint8Array({ maxLength: 6 }), { nil: undefined }),
      });
      const batchArb = fc.record({ ops: fc.array(opArb, { maxLength: 12 }), durable: fc.boolean() });
      const queryArb = fc.record({
        table: fc.constantFrom('inode', 'dirent'),
        start: boundArb,
        end: boundArb,
        limit: fc.option(fc.nat(6), { nil: undefined }),
        reverse: fc.boolean(),
      });
      await fc.assert(
        fc.asyncProperty(fc.array(batchArb, { minLength: 1, maxLength: 8 }), fc.array(queryArb, { maxLength: 6 }), async (batches, queries) => {
          const s = await openStore(h.path('prop'));
          const model = new ModelStore();
          // Issue all, then wait: in-flight commits must apply in order.
          await h.run(Promise.all(batches.map(({ ops, durable }) => s.commit(ops, { durable }))));
          for (const { ops } of batches) model.apply(ops);
          for (const table of ['inode', 'dirent']) {
            expect(hexRange(s, table)).toEqual(model.range(table));
            for (const e of model.range(table)) expect(toHex(s.get(table, Buffer.from(e[0], 'hex')) as Uint8Array)).toBe(e[1]);
          }
          for (const q of queries) {
            const o: RangeOptions = { reverse: q.reverse };
            if (q.start !== undefined) o.start = q.start;
            if (q.end !== undefined) o.end = q.end;
            if (q.limit !== undefined) o.limit = q.limit;
            expect(hexRange(s, q.table, o)).toEqual(model.range(q.table, o));
          }
          await h.run(s.close());
          opened.splice(opened.indexOf(s), 1);
        }),
        { numRuns: propertyRuns, seed: SIM_SEED },
      );
    });
  });
}

storeContract('SimStore', simHarness, 150);
storeContract('LmdbStore (overlappingSync)', () => lmdbHarness('overlapping'), 40);
storeContract('LmdbStore (noSync + env.sync)', () => lmdbHarness('explicit'), 40);

describe('LmdbStore specifics', () => {
  it('fails to open a path that is not a directory with a StoreError naming it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lessfs-store-contract-'));
    try {
      const file = join(dir, 'not-a-dir');
      writeFileSync(file, 'x');
      const error = await rejection(new LmdbStoreFactory().open({ path: file, tables: ['meta'] }));
      expect(errorCode(error)).toBe('EIO');
      expect(String(error)).toContain(file);
      // The failed open must not leave the path marked open.
      const again = await rejection(new LmdbStoreFactory().open({ path: file, tables: ['meta'] }));
      expect(errorCode(again)).toBe('EIO');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  // Needs root (a tmpfs of its own); CI runs as root.
  it.skipIf(process.getuid?.() !== 0)('a commit on a full disk fails with its cause, ends nothing, and commits go on once space is back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lessfs-store-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir]);
    let store: Store | undefined;
    try {
      writeFileSync(join(dir, 'filler'), new Uint8Array(1 << 20));
      store = await new LmdbStoreFactory().open({ path: join(dir, 'db'), tables: ['t'] });
      const batch = (i: number): StoreOp[] => Array.from({ length: 50 }, (_, j) => ({ table: 't', key: new Uint8Array([i, j]), value: new Uint8Array(1000).fill(i) }));
      let failure: unknown;
      let i = 0;
      for (; i < 100 && failure === undefined; i++) failure = await rejection(store.commit(batch(i), { durable: true })).catch(() => undefined);
      expect(failure).toBeDefined();
      // The cause, not lmdb-js's "see commitError" (whose second promise, unhandled, ended the process).
      expect(['ENOSPC', 'EIO']).toContain(errorCode(failure));
      expect(String(failure)).not.toContain('commitError');
      expect(String(failure)).toMatch(/No space left on device|Input\/output error/);
      rmSync(join(dir, 'filler'));
      await store.commit(batch(i), { durable: true });
      expect(store.get('t', new Uint8Array([i, 49]))).toEqual(new Uint8Array(1000).fill(i));
      expect(store.get('t', new Uint8Array([0, 0]))).toEqual(new Uint8Array(1000));
    } finally {
      await store?.close().catch(() => undefined);
      execFileSync('umount', ['-l', dir]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(process.getuid?.() !== 0)('close after a commit failed on a full disk settles (lmdb-js alone waits for ever)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lessfs-store-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir]);
    try {
      writeFileSync(join(dir, 'filler'), new Uint8Array(1 << 20));
      const store = await new LmdbStoreFactory().open({ path: join(dir, 'db'), tables: ['t'] });
      let failure: unknown;
      for (let i = 0; i < 100 && failure === undefined; i++) {
        const ops = Array.from({ length: 50 }, (_, j): StoreOp => ({ table: 't', key: new Uint8Array([i, j]), value: new Uint8Array(1000).fill(i) }));
        failure = await rejection(store.commit(ops, { durable: true })).catch(() => undefined);
      }
      expect(failure).toBeDefined();
      const closed = await rejection(store.close());
      expect(errorCode(closed)).toBe('EIO');
      expect(String(closed)).toMatch(/the last commit failed and LMDB did not finish closing/);
    } finally {
      execFileSync('umount', ['-l', dir]);
      rmSync(dir, { recursive: true, force: true });
    }
  }, 20_000);
});

