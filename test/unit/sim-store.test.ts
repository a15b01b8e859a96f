// The simulated store's fault model: crash, power loss, in-flight commits,
// injected errors, map capacity and determinism. The contract it shares with
// LMDB is in test/contract/store.contract.test.ts.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { toHex } from '../../src/core/bytes.ts';
import type { Store, StoreOp } from '../../src/core/drivers.ts';
import { errorCode } from '../../src/core/errors.ts';
import { Domain, Scheduler } from '../../src/sim/scheduler.ts';
import { SimStoreMedium, type SimStoreOptions } from '../../src/sim/store.ts';

const TABLES = ['inode', 'dirent', 'meta'];
const PATH = '/meta';
const b = (...bytes: number[]): Uint8Array => new Uint8Array(bytes);
const put = (table: string, key: Uint8Array, value: Uint8Array): StoreOp => ({ table, key, value });

/** One node: a medium that outlives incarnations, each with its own domain. */
class Node {
  readonly scheduler: Scheduler;
  readonly medium: SimStoreMedium;
  domain: Domain;
  incarnation = 0;

  constructor(seed: number, options: Partial<SimStoreOptions> = {}) {
    this.scheduler = new Scheduler({ seed });
    this.medium = new SimStoreMedium(this.scheduler, this.scheduler.rng.split('store'), options);
    this.domain = new Domain(`node#0`);
  }

  async open(mapSizeBytes?: number): Promise<Store> {
    return this.run(this.medium.factory(this.domain).open({ path: PATH, tables: TABLES, mapSizeBytes }));
  }

  run<T>(promise: Promise<T>): Promise<T> {
    return this.scheduler.runUntilSettled(promise);
  }

  crash(): void {
    this.domain.kill();
    this.medium.crash();
    this.domain = new Domain(`node#${++this.incarnation}`);
  }

  powerLoss(): void {
    this.domain.kill();
    this.medium.powerLoss();
    this.domain = new Domain(`node#${++this.incarnation}`);
  }
}

function track(promise: Promise<void>): { state: () => 'pending' | 'resolved' | 'rejected'; error: () => unknown } {
  let state: 'pending' | 'resolved' | 'rejected' = 'pending';
  let error: unknown;
  promise.then(
    () => {
      state = 'resolved';
    },
    (e: unknown) => {
      state = 'rejected';
      error = e;
    },
  );
  return { state: () => state, error: () => error };
}

function dump(store: Store): string[] {
  const out: string[] = [];
  for (const table of TABLES) for (const e of store.range(table)) out.push(`${table}:${toHex(e.key)}=${toHex(e.value)}`);
  return out;
}

describe('SimStoreMedium', () => {
  it('power loss reverts to the last durable commit (seed 1)', async () => {
    const node = new Node(1);
    let s = await node.open();
    await node.run(s.commit([put('inode', b(1), b(1))], { durable: true }));
    await node.run(s.commit([put('inode', b(2), b(2))], { durable: false }));
    expect(s.get('inode', b(2))).toEqual(b(2));
    expect(node.medium.info(PATH)).toMatchObject({ committedSeq: 2, durableSeq: 1 });
    node.powerLoss();
    expect(errorCode((() => { try { s.get('inode', b(1)); } catch (e) { return e; } })())).toBe('ECLOSED');
    s = await node.open();
    expect(dump(s)).toEqual(['inode:01=01']);
  });

  it('a sync or a durable commit makes every earlier commit durable (seed 2)', async () => {
    const node = new Node(2);
    let s = await node.open();
    await node.run(s.commit([put('inode', b(1), b(1))], { durable: false }));
    await node.run(s.commit([put('inode', b(2), b(2))], { durable: false }));
    await node.run(s.sync());
    await node.run(s.commit([put('inode', b(3), b(3))], { durable: false }));
    await node.run(s.commit([put('inode', b(4), b(4))], { durable: true }));
    await node.run(s.commit([put('inode', b(5), b(5))], { durable: false }));
    node.powerLoss();
    s = await node.open();
    expect(dump(s)).toEqual(['inode:01=01', 'inode:02=02', 'inode:03=03', 'inode:04=04']);
  });

  it('a crash keeps every committed commit; a later sync makes them durable (seed 3)', async () => {
    const node = new Node(3);
    let s = await node.open();
    await node.run(s.commit([put('inode', b(1), b(1))], { durable: false }));
    node.crash();
    s = await node.open();
    expect(dump(s)).toEqual(['inode:01=01']);
    node.powerLoss(); // nothing was ever durable
    s = await node.open();
    expect(dump(s)).toEqual([]);
    await node.run(s.commit([put('inode', b(2), b(2))], { durable: false }));
    node.crash();
    s = await node.open();
    await node.run(s.sync()); // the new incarnation's fsync covers what the old one left
    node.powerLoss();
    s = await node.open();
    expect(dump(s)).toEqual(['inode:02=02']);
  });

  it('a commit in flight at a crash or power loss applies nothing and never settles (seed 4)', async () => {
    for (const fault of ['crash', 'powerLoss'] as const) {
      const node = new Node(4, { commitLatencyMsMin: 10, commitLatencyMsMax: 10 });
      let s = await node.open();
      await node.run(s.commit([put('meta', b(0), b(0))], { durable: true }));
      const ops: StoreOp[] = [];
      for (let i = 0; i < 100; i++) ops.push(put(TABLES[i % 3], b(1, i), b(i)));
      const inflight = track(s.commit(ops, { durable: false }));
      await node.scheduler.run({ untilMs: node.scheduler.nowMs() + 5 });
      expect(inflight.state()).toBe('pending');
      node[fault]();
      await node.scheduler.run(); // drain: the dead incarnation's events must not run
      expect(inflight.state()).toBe('pending');
      s = await node.open();
      expect(dump(s)).toEqual(['meta:00=00']);
    }
  });

  it('a durable commit applied but not yet durable: a crash keeps it whole, a power loss drops it whole (seed 5)', async () => {
    for (const fault of ['crash', 'powerLoss'] as const) {
      const node = new Node(5, { commitLatencyMsMin: 1, commitLatencyMsMax: 1, syncLatencyMsMin: 100, syncLatencyMsMax: 100 });
      let s = await node.open();
      const ops: StoreOp[] = [];
      for (let i = 0; i < 50; i++) ops.push(put(TABLES[i % 3], b(i), b(i)));
      const inflight = track(s.commit(ops, { durable: true }));
      await node.scheduler.run({ untilMs: node.scheduler.nowMs() + 50 });
      expect(inflight.state()).toBe('pending');
      expect(dump(s)).toHaveLength(50); // applied: visible, not yet durable
      node[fault]();
      await node.scheduler.run();
      expect(inflight.state()).toBe('pending');
      s = await node.open();
      expect(dump(s)).toHaveLength(fault === 'crash' ? 50 : 0);
    }
  });

  it('a failed commit applies nothing (seed 6)', async () => {
    const always = new Node(6, { commitErrorProbability: 1 });
    const s1 = await always.open();
    const error = await always.run(s1.commit([put('inode', b(1), b(1)), put('meta', b(1), b(1))], { durable: true })).catch((e: unknown) => e);
    expect(errorCode(error)).toBe('EIO');
    expect(dump(s1)).toEqual([]);

    const node = new Node(6, { commitErrorProbability: 0.4, commitLatencyMsMin: 0, commitLatencyMsMax: 3 });
    const s = await node.open();
    const model = new Map<string, string>();
    const pending: Promise<string>[] = [];
    const batches: StoreOp[][] = [];
    for (let i = 0; i < 200; i++) {
      // Each commit moves a marker: a half-applied commit would leave two or none.
      const ops = [
        { table: 'meta', key: b(i % 7), value: undefined },
        put('meta', b((i + 1) % 7), b(i & 0xff)),
        put('inode', b(i & 0xff, 0), b(1)),
      ];
      batches.push(ops);
      pending.push(s.commit(ops, { durable: i % 5 === 0 }).then(() => 'ok', (e: unknown) => String(errorCode(e))));
    }
    const outcomes = await node.run(Promise.all(pending));
    expect(new Set(outcomes)).toEqual(new Set(['ok', 'EIO']));
    outcomes.forEach((outcome, i) => {
      if (outcome !== 'ok') return;
      for (const op of batches[i]) {
        const k = `${op.table}:${toHex(op.key)}`;
        if (op.value === undefined) model.delete(k);
        else model.set(k, toHex(op.value));
      }
    });
    const expected = [...model].map(([k, v]) => `${k}=${v}`).sort();
    expect([...dump(s)].sort()).toEqual(expected);
  });

  it('fails a commit that would overflow the map with ENOSPC, taking the smaller capacity (seed 7)', async () => {
    const node = new Node(7, { mapSizeBytes: 1000 });
    const s = await node.open(600);
    await node.run(s.commit([put('inode', b(1), new Uint8Array(500))], { durable: false }));
    const error = await node.run(s.commit([put('inode', b(2), new Uint8Array(100))], { durable: false })).catch((e: unknown) => e);
    expect(errorCode(error)).toBe('ENOSPC');
    expect(String(error)).toMatch(/LMDB_MAPSIZE/);
    expect(s.get('inode', b(2))).toBeUndefined();
    // Overwriting with less and deleting are always possible.
    await node.run(s.commit([put('inode', b(1), new Uint8Array(10)), put('inode', b(2), new Uint8Array(100))], { durable: false }));
    expect(node.medium.info(PATH)?.committedBytes).toBe(11 + 101);
  });

  it('refuses a commit of more than commitOpsMax operations with EINVAL, applying nothing (seed 7)', async () => {
    const node = new Node(7, { commitOpsMax: 3 });
    const s = await node.open();
    const error = await node.run(s.commit([1, 2, 3, 4].map((i) => put('inode', b(i), b(i))), { durable: false })).catch((e: unknown) => e);
    expect(errorCode(error)).toBe('EINVAL');
    expect(String(error)).toMatch(/4 ops, at most 3 per commit/);
    expect(dump(s)).toEqual([]);
    await node.run(s.commit([1, 2, 3].map((i) => put('inode', b(i), b(i))), { durable: false }));
    expect(dump(s)).toHaveLength(3);
  });

  it('range iterators read the state committed when range() was called (seed 8)', async () => {
    const node = new Node(8);
    const s = await node.open();
    await node.run(s.commit([1, 2, 3, 4].map((i) => put('dirent', b(i), b(i))), { durable: false }));
    const it = s.range('dirent')[Symbol.iterator]();
    expect(toHex(it.next().value.key)).toBe('01');
    await node.run(s.commit([{ table: 'dirent', key: b(2), value: undefined }, put('dirent', b(3), b(9)), put('dirent', b(5), b(5))], { durable: false }));
    const rest: string[] = [];
    for (let r = it.next(); !r.done; r = it.next()) rest.push(`${toHex(r.value.key)}=${toHex(r.value.value)}`);
    expect(rest).toEqual(['02=02', '03=03', '04=04']);
    expect(dump(s)).toEqual(['dirent:01=01', 'dirent:03=09', 'dirent:04=04', 'dirent:05=05']);
  });

  it('commits are serial, one writer: each applies a latency after the previous (seed 9)', async () => {
    const node = new Node(9, { commitLatencyMsMin: 2, commitLatencyMsMax: 2 });
    const s = await node.open();
    const t0 = node.scheduler.nowMs();
    const times: number[] = [];
    const all = [1, 2, 3, 4, 5].map((i) => s.commit([put('meta', b(i), b(i))], { durable: false }).then(() => void times.push(node.scheduler.nowMs() - t0)));
    await node.run(Promise.all(all));
    expect(times).toEqual([2, 4, 6, 8, 10]);
  });

  it('a store of a dead domain is unusable, and the path reopens without crash() (seed 10)', async () => {
    const node = new Node(10, { commitLatencyMsMin: 5, commitLatencyMsMax: 5 });
    const s = await node.open();
    await node.run(s.commit([put('meta', b(1), b(1))], { durable: false }));
    const inflight = track(s.commit([put('meta', b(2), b(2))], { durable: false }));
    node.domain.kill();
    node.domain = new Domain('node#1');
    await node.scheduler.run();
    expect(inflight.state()).toBe('pending');
    expect(errorCode((() => { try { s.get('meta', b(1)); } catch (e) { return e; } })())).toBe('ECLOSED');
    const s2 = await node.open();
    expect(dump(s2)).toEqual(['meta:01=01']);
  });

  it('keeps snapshots only for pending durable events, and durability still lands on the right commit (seed 15)', async () => {
    const node = new Node(15, { commitLatencyMsMin: 1, commitLatencyMsMax: 1, syncLatencyMsMin: 50, syncLatencyMsMax: 50 });
    let s = await node.open();
    for (let i = 0; i < 200; i++) await node.run(s.commit([put('meta', b(i), b(i))], { durable: false }));
    expect(node.medium.info(PATH)).toMatchObject({ committedSeq: 200, durableSeq: 0, undurableSnapshots: 0 });
    const synced = track(s.sync()); // covers #200, already applied: snapshot taken now
    expect(node.medium.info(PATH)?.undurableSnapshots).toBe(1);
    const later = track(s.commit([put('meta', b(200), b(200))], { durable: false }));
    await node.scheduler.run({ untilMs: node.scheduler.nowMs() + 10 });
    expect(s.get('meta', b(200))).toEqual(b(200)); // applied, but settles after the sync
    expect(later.state()).toBe('pending');
    expect(node.medium.info(PATH)).toMatchObject({ committedSeq: 201, durableSeq: 0, undurableSnapshots: 1 });
    await node.scheduler.run();
    expect(synced.state()).toBe('resolved');
    expect(later.state()).toBe('resolved');
    expect(node.medium.info(PATH)).toMatchObject({ committedSeq: 201, durableSeq: 200, undurableSnapshots: 0 });
    node.powerLoss();
    s = await node.open();
    expect(dump(s)).toHaveLength(200);
    expect(s.get('meta', b(200))).toBeUndefined();
  });

  it('crash keeps exactly the applied commits, power loss lands on a durable one no older than any acknowledged (property)', async () => {
    type Action =
      | { kind: 'commit'; durable: boolean; ops: Array<{ table: string; key: number; value: number | undefined }> }
      | { kind: 'sync' }
      | { kind: 'run'; ms: number }
      | { kind: 'crash' }
      | { kind: 'powerLoss' };
    const actionArb: fc.Arbitrary<Action> = fc.oneof(
      {
        weight: 6,
        arbitrary: fc.record({
          kind: fc.constant('commit' as const),
          durable: fc.boolean(),
          ops: fc.array(fc.record({ table: fc.constantFrom(...TABLES), key: fc.nat(7), value: fc.option(fc.nat(255), { nil: undefined }) }), { maxLength: 4 }),
        }),
      },
      { weight: 1, arbitrary: fc.constant({ kind: 'sync' as const }) },
      { weight: 3, arbitrary: fc.record({ kind: fc.constant('run' as const), ms: fc.nat(30) }) },
      { weight: 1, arbitrary: fc.constant({ kind: 'crash' as const }) },
      { weight: 1, arbitrary: fc.constant({ kind: 'powerLoss' as const }) },
    );
    await fc.assert(
      fc.asyncProperty(fc.nat(1_000_000), fc.array(actionArb, { maxLength: 40 }), async (seed, actions) => {
        const node = new Node(seed, { commitLatencyMsMin: 0, commitLatencyMsMax: 6, syncLatencyMsMin: 1, syncLatencyMsMax: 20 });
        let s = await node.open();
        const states = new Map<number, Map<string, string>>([[0, new Map()]]);
        let baseSeq = 0; // the state this incarnation started from
        let issued: Array<{ seq: number; ops: StoreOp[] }> = [];
        let seq = 0;
        let acknowledgedDurable = 0;
        const materialize = (upTo: number): void => {
          let prev = baseSeq;
          for (const c of issued) {
            if (c.seq > upTo) break;
            const st = new Map(states.get(prev));
            for (const op of c.ops) {
              const k = `${op.table}:${toHex(op.key)}`;
              if (op.value === undefined) st.delete(k);
              else st.set(k, toHex(op.value));
            }
            states.set(c.seq, st);
            prev = c.seq;
          }
        };
        const expectState = (at: number): void => {
          const expected = [...(states.get(at) as Map<string, string>)].map(([k, v]) => `${k}=${v}`).sort();
          expect([...dump(s)].sort()).toEqual(expected);
        };
        for (const action of actions) {
          if (action.kind === 'commit') {
            const ops: StoreOp[] = action.ops.map((o) => ({ table: o.table, key: b(o.key), value: o.value === undefined ? undefined : b(o.value) }));
            const mine = ++seq;
            issued.push({ seq: mine, ops });
            void s.commit(ops, { durable: action.durable }).then(() => {
              if (action.durable) acknowledgedDurable = Math.max(acknowledgedDurable, mine);
            });
          } else if (action.kind === 'sync') {
            const covered = seq;
            void s.sync().then(() => {
              acknowledgedDurable = Math.max(acknowledgedDurable, covered);
            });
          } else if (action.kind === 'run') {
            await node.scheduler.run({ untilMs: node.scheduler.nowMs() + action.ms });
          } else {
            const before = node.medium.info(PATH);
            if (!before) throw new Error('no env');
            materialize(before.committedSeq);
            node[action.kind]();
            s = await node.open();
            const after = node.medium.info(PATH);
            if (!after) throw new Error('no env');
            if (action.kind === 'crash') {
              expect(after.committedSeq).toBe(before.committedSeq);
            } else {
              expect(after.durableSeq).toBeGreaterThanOrEqual(acknowledgedDurable);
              expect(after.durableSeq).toBeLessThanOrEqual(before.committedSeq);
              expect(after.committedSeq).toBe(after.durableSeq);
            }
            expectState(after.committedSeq);
            baseSeq = after.committedSeq;
            issued = [];
          }
        }
        await node.scheduler.run();
        const end = node.medium.info(PATH);
        if (!end) throw new Error('no env');
        materialize(end.committedSeq);
        expect(end.committedSeq).toBe(issued.length > 0 ? issued[issued.length - 1].seq : baseSeq);
        expectState(end.committedSeq);
      }),
      { numRuns: 150, seed: 16 },
    );
  });

  it('bounds the commits in flight (seed 14)', async () => {
    const node = new Node(14, { commitsInflightMax: 3 });
    const s = await node.open();
    const ok = [1, 2, 3].map((i) => s.commit([put('meta', b(i), b(i))], { durable: false }));
    const error = await s.commit([put('meta', b(4), b(4))], { durable: false }).catch((e: unknown) => e);
    expect(errorCode(error)).toBe('EASSERT');
    await node.run(Promise.all(ok));
    await node.run(s.sync()); // room again
    expect(dump(s)).toEqual(['meta:01=01', 'meta:02=02', 'meta:03=03']);
  });

  it('rejects a bad fault model', () => {
    const scheduler = new Scheduler({ seed: 11 });
    const make = (o: Partial<SimStoreOptions>) => () => new SimStoreMedium(scheduler, scheduler.rng, o);
    expect(make({ commitLatencyMsMin: 5, commitLatencyMsMax: 1 })).toThrow(/commitLatencyMsMin/);
    expect(make({ syncLatencyMsMin: -1 })).toThrow(/syncLatencyMsMin/);
    expect(make({ commitErrorProbability: 1.5 })).toThrow(/commitErrorProbability/);
    expect(make({ mapSizeBytes: 0.5 })).toThrow(/mapSizeBytes/);
    expect(make({ commitsInflightMax: 0 })).toThrow(/commitsInflightMax/);
    expect(make({ commitOpsMax: 0 })).toThrow(/commitOpsMax/);
    expect(make({ commitOpsMax: (1 << 20) + 1 })).toThrow(/commitOpsMax/);
  });

  it('is deterministic per seed', async () => {
    async function scenario(seed: number): Promise<{ trace: string; outcomes: string[]; final: string[] }> {
      const node = new Node(seed, { commitErrorProbability: 0.2, commitLatencyMsMin: 0, commitLatencyMsMax: 4, syncLatencyMsMin: 1, syncLatencyMsMax: 9 });
      const rng = node.scheduler.rng.split('workload');
      const outcomes: string[] = [];
      let s = await node.open();
      for (let round = 0; round < 6; round++) {
        const pending: Promise<void>[] = [];
        for (let i = 0; i < 20; i++) {
          const ops = [put(rng.pick(TABLES), rng.bytes(1 + rng.int(3)), rng.bytes(rng.int(5)))];
          const tag = `${round}.${i}`;
          const p = rng.chance(0.1) ? s.sync() : s.commit(ops, { durable: rng.chance(0.3) });
          pending.push(p.then(() => void outcomes.push(`${tag} ok @${node.scheduler.nowMs()}`), (e: unknown) => void outcomes.push(`${tag} ${String(errorCode(e))}`)));
        }
        await node.scheduler.run({ untilMs: node.scheduler.nowMs() + rng.int(40) });
        if (rng.chance(0.5)) node.powerLoss();
        else node.crash();
        s = await node.open();
      }
      return { trace: node.scheduler.traceHash(), outcomes, final: dump(s) };
    }
    const a = await scenario(12);
    const again = await scenario(12);
    expect(again).toEqual(a);
    expect(a.outcomes.some((o) => o.includes('EIO'))).toBe(true);
    const other = await scenario(13);
    expect(other.trace).not.toBe(a.trace);
  });
});
