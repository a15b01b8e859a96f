// Store throughput: the simulated store at 100k keys, and LMDB commit latency
// (durable or not, both sync modes). Run: node --import tsx bench/store-bench.ts
// Figures swing with the VM (PLATFORM.md): compare only within one run.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Store, StoreOp } from '../src/core/drivers.ts';
import { LmdbStoreFactory, type LmdbSyncMode } from '../src/real/lmdb-store.ts';
import { SimRng } from '../src/sim/rng.ts';
import { Domain, Scheduler } from '../src/sim/scheduler.ts';
import { SimStoreMedium } from '../src/sim/store.ts';

const KEYS = 100_000;
const TABLES = ['inode', 'dirent', 'blockmap', 'block', 'meta'];

function key(n: number): Uint8Array {
  // ino + block number, big-endian, like a blockmap key.
  const k = new Uint8Array(16);
  const v = new DataView(k.buffer);
  v.setUint32(4, Math.floor(n / 64));
  v.setUint32(12, n % 64);
  return k;
}

function rate(count: number, ms: number): string {
  return `${Math.round((count / ms) * 1000).toLocaleString('en-US')}/s`;
}

async function simBench(): Promise<void> {
  const scheduler = new Scheduler({ seed: 1 });
  const medium = new SimStoreMedium(scheduler, scheduler.rng.split('store'), { commitLatencyMsMin: 0, commitLatencyMsMax: 1 });
  const store = await scheduler.runUntilSettled(medium.factory(new Domain('bench')).open({ path: '/meta', tables: TABLES }));
  const rng = new SimRng(2);
  const value = new Uint8Array(64);

  let t0 = performance.now();
  for (let base = 0; base < KEYS; base += 1000) {
    const ops: StoreOp[] = [];
    for (let i = 0; i < 1000; i++) ops.push({ table: 'blockmap', key: key(rng.int(KEYS * 4)), value });
    await scheduler.runUntilSettled(store.commit(ops, { durable: false }));
  }
  const loaded = medium.info('/meta')?.entries.blockmap ?? 0;
  console.log(`sim: load ${loaded} random keys in 1000-op commits: ${(performance.now() - t0).toFixed(0)} ms (${rate(loaded, performance.now() - t0)} puts)`);

  for (const opsPerCommit of [1, 10, 100]) {
    const commits = 20_000 / opsPerCommit;
    t0 = performance.now();
    const pending: Promise<void>[] = [];
    for (let c = 0; c < commits; c++) {
      const ops: StoreOp[] = [];
      for (let i = 0; i < opsPerCommit; i++) ops.push({ table: 'blockmap', key: key(rng.int(KEYS * 4)), value });
      pending.push(store.commit(ops, { durable: c % 10 === 0 }));
    }
    await scheduler.runUntilSettled(Promise.all(pending));
    const ms = performance.now() - t0;
    console.log(`sim: ${commits} commits of ${opsPerCommit} random puts (10% durable), through the scheduler: ${rate(commits, ms)} commits, ${rate(commits * opsPerCommit, ms)} ops`);
  }

  const gets = 200_000;
  t0 = performance.now();
  let found = 0;
  for (let i = 0; i < gets; i++) if (store.get('blockmap', key(rng.int(KEYS * 4)))) found++;
  console.log(`sim: ${gets} random gets (${found} hits): ${rate(gets, performance.now() - t0)}`);

  for (const limit of [10, 100, 1000]) {
    const scans = 200_000 / limit;
    t0 = performance.now();
    let entries = 0;
    for (let i = 0; i < scans; i++) for (const _ of store.range('blockmap', { start: key(rng.int(KEYS * 4)), limit })) entries++;
    const ms = performance.now() - t0;
    console.log(`sim: range scans from a random key, limit ${limit}: ${rate(scans, ms)} scans, ${rate(entries, ms)} entries`);
  }
  t0 = performance.now();
  let all = 0;
  for (const _ of store.range('blockmap')) all++;
  console.log(`sim: one full scan of ${all} entries: ${(performance.now() - t0).toFixed(1)} ms (${rate(all, performance.now() - t0)} entries)`);
  await scheduler.runUntilSettled(store.close());
}

function percentile(xs: number[], p: number): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

async function lmdbBench(syncMode: LmdbSyncMode): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'lessfs-store-bench-'));
  try {
    const store: Store = await new LmdbStoreFactory({ syncMode }).open({ path: join(dir, 'meta'), tables: TABLES });
    const rng = new SimRng(3);
    const value = new Uint8Array(64);
    const commitOnce = (ops: number, durable: boolean): Promise<void> => {
      const batch: StoreOp[] = [];
      for (let i = 0; i < ops; i++) batch.push({ table: 'blockmap', key: key(rng.int(KEYS * 4)), value });
      return store.commit(batch, { durable });
    };
    for (let i = 0; i < 100; i++) await commitOnce(1000, false); // warm and fill ~100k keys
    for (const ops of [10, 1000]) {
      for (const durable of [false, true]) {
        const lat: number[] = [];
        for (let i = 0; i < 200; i++) {
          const t = performance.now();
          await commitOnce(ops, durable);
          lat.push(performance.now() - t);
        }
        console.log(
          `lmdb ${syncMode}: commit of ${ops} puts, durable=${durable}: p50 ${percentile(lat, 0.5).toFixed(2)} ms, p99 ${percentile(lat, 0.99).toFixed(2)} ms`,
        );
      }
    }
    const t0 = performance.now();
    const pending: Promise<void>[] = [];
    for (let i = 0; i < 1000; i++) pending.push(commitOnce(10, false));
    await Promise.all(pending);
    await store.sync();
    console.log(`lmdb ${syncMode}: 1000 pipelined commits of 10 puts + one sync: ${rate(1000, performance.now() - t0)} commits`);
    let t = performance.now();
    let entries = 0;
    for (let i = 0; i < 2000; i++) for (const _ of store.range('blockmap', { start: key(rng.int(KEYS * 4)), limit: 100 })) entries++;
    console.log(`lmdb ${syncMode}: range scans, limit 100: ${rate(2000, performance.now() - t)} scans, ${rate(entries, performance.now() - t)} entries`);
    t = performance.now();
    for (let i = 0; i < 100_000; i++) store.get('blockmap', key(rng.int(KEYS * 4)));
    console.log(`lmdb ${syncMode}: random gets: ${rate(100_000, performance.now() - t)}`);
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await simBench();
await lmdbBench('overlapping');
await lmdbBench('explicit');
await lmdbBench('overlapping');
await lmdbBench('explicit');
