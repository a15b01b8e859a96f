// In-process driver of the FUSE handlers (src/real/fuse/ops.ts), no kernel:
// the operation sequence the kernel sends for the fuse section's creates
// (per file: getattr miss, create, getattr, write 4 KiB, flush, release,
// getattr; 4 files in flight) or for a sequential read (128 KiB reads one at
// a time), and the main thread's CPU time per file / per read. A tool for
// profiling the handlers (--cpu-prof), not part of `npm run bench`.
//
//   node --import tsx bench/fuse-ops-harness.ts creates [FILES] [ROUNDS]
//   node --import tsx bench/fuse-ops-harness.ts read [MIB] [ROUNDS]
//   node --import tsx bench/fuse-ops-harness.ts write [MIB] [ROUNDS]

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { randomFillSync } from 'node:crypto';
import { ControlFiles } from '../src/core/control.ts';
import { IoGate } from '../src/core/gate.ts';
import type { Logger } from '../src/core/drivers.ts';
import { REPLICATION_OFF } from '../src/core/control.ts';
import { LessfsFuseOps } from '../src/real/fuse/ops.ts';
import { formatAndOpen } from './engine-driver.ts';

/** User and system CPU of the main thread so far, in µs (10 ms ticks). */
function mainThreadCpu(): { user: number; system: number } {
  const f = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return { user: Number(f[11]) * 10_000, system: Number(f[12]) * 10_000 };
}

type Cb = (err: number, value?: unknown) => void;
type AnyOps = Record<string, (...args: unknown[]) => void>;

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const mode = process.argv[2] ?? 'creates';
  const n = Number(process.argv[3] ?? (mode === 'creates' ? 10_000 : 512));
  const rounds = Number(process.argv[4] ?? 5);
  const dir = mkdtempSync('/tmp/fuse-ops-harness-');
  try {
    const b = await formatAndOpen(dir, 131072, 128 << 20);
    const engine = b.engine;
    const logger: Logger = { log: () => undefined };
    const control = new ControlFiles(engine, REPLICATION_OFF, { contentTtlMs: 2000, nowMs: () => Date.now() });
    const ops = new LessfsFuseOps({ engine, control, gate: new IoGate(), logger, logLevel: 0 }).ops() as unknown as AnyOps;
    const call = (name: string, ...args: unknown[]): Promise<[number, unknown]> =>
      new Promise((res) => ops[name](...args, ((e, v) => res([e, v])) as Cb));
    const main: number[] = [];
    const all: number[] = [];
    if (mode === 'creates') {
      await call('mkdir', '/many', 0o755);
      const content = Buffer.alloc(4096, 7);
      for (let round = 0; round <= rounds; round++) {
        let next = 0;
        const worker = async (): Promise<void> => {
          while (next < n) {
            const i = next++;
            const p = `/many/r${round}f${String(i).padStart(6, '0')}`;
            const [e0] = await call('getattr', p);
            if (e0 !== -2) throw new Error(`getattr of a new name: ${e0}`);
            const [e1, fd] = await call('create', p, 0o100644);
            if (e1 !== 0) throw new Error(`create: ${e1}`);
            await call('getattr', p);
            content.writeUInt32LE(i, 0);
            content.writeUInt32LE(round, 8);
            const [e2] = await call('write', p, fd, content, 4096, 0);
            if (e2 !== 4096) throw new Error(`write: ${e2}`);
            await call('flush', p, fd);
            await call('release', p, fd);
            await call('getattr', p);
          }
        };
        // Each round starts on an empty write cache, as the bench's fresh mount does.
        await engine.fsync();
        // HARNESS_HEAP=FILE: a sampling heap profile (allocations, collected
        // ones included) of the last round.
        const heap = process.env.HARNESS_HEAP !== undefined && round === rounds ? new Session() : undefined;
        if (heap) {
          heap.connect();
          await heap.post('HeapProfiler.enable');
          await heap.post('HeapProfiler.startSampling', { samplingInterval: 256, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
        }
        const m0 = mainThreadCpu();
        const c0 = process.cpuUsage();
        await Promise.all([worker(), worker(), worker(), worker()]);
        const c = process.cpuUsage(c0);
        const m1 = mainThreadCpu();
        if (heap) {
          const { profile } = await heap.post('HeapProfiler.stopSampling');
          writeFileSync(process.env.HARNESS_HEAP as string, JSON.stringify(profile));
          heap.disconnect();
        }
        // Round 0 warms up (JIT): reported apart.
        if (round === 0) console.log(`creates, first round (cold JIT): main thread ${((m1.user + m1.system - m0.user - m0.system) / n).toFixed(1)} µs/file`);
        if (round > 0) {
          main.push((m1.user + m1.system - m0.user - m0.system) / n);
          all.push((c.user + c.system) / n);
        }
      }
      console.log(`creates: main thread ${main.map((x) => x.toFixed(1)).join(' ')} µs/file (median ${median(main).toFixed(1)}); all threads median ${median(all).toFixed(1)}`);
    } else if (mode === 'read') {
      const bs = 131072;
      const blocks = (n << 20) / bs;
      const [e1, fd] = await call('create', '/f', 0o100644);
      if (e1 !== 0) throw new Error(`create: ${e1}`);
      const buf = Buffer.allocUnsafe(bs);
      for (let i = 0; i < blocks; i++) {
        randomFillSync(buf);
        const [e] = await call('write', '/f', fd, buf, bs, i * bs);
        if (e !== bs) throw new Error(`write: ${e}`);
      }
      await call('release', '/f', fd);
      await engine.fsync();
      const out = Buffer.allocUnsafe(bs);
      for (let round = 0; round <= rounds; round++) {
        const [e2, rfd] = await call('open', '/f', 0);
        if (e2 !== 0) throw new Error(`open: ${e2}`);
        const m0 = mainThreadCpu();
        const c0 = process.cpuUsage();
        for (let i = 0; i < blocks; i++) {
          const [got] = await call('read', '/f', rfd, out, bs, i * bs);
          if (got !== bs) throw new Error(`read: ${got}`);
        }
        const c = process.cpuUsage(c0);
        const m1 = mainThreadCpu();
        await call('release', '/f', rfd);
        if (round > 0) {
          main.push((m1.user + m1.system - m0.user - m0.system) / blocks);
          all.push((c.user + c.system) / blocks);
        }
      }
      console.log(`read: main thread ${main.map((x) => x.toFixed(1)).join(' ')} µs/128 KiB read (median ${median(main).toFixed(1)}); all threads median ${median(all).toFixed(1)}`);
    } else if (mode === 'write') {
      // Sequential 128 KiB writes of one file, then the same bytes to another
      // (all duplicates); CPU per write including the write-behind stores.
      const bs = 131072;
      const blocks = (n << 20) / bs;
      const src = Buffer.allocUnsafe(n << 20);
      randomFillSync(src);
      const dup: number[] = [];
      for (let round = 0; round <= rounds; round++) {
        for (const kind of ['unique', 'dup']) {
          const path = `/w${round}${kind}`;
          if (kind === 'unique') src.writeUInt32LE(round, 0);
          const [e1, fd] = await call('create', path, 0o100644);
          if (e1 !== 0) throw new Error(`create: ${e1}`);
          const m0 = mainThreadCpu();
          const c0 = process.cpuUsage();
          for (let i = 0; i < blocks; i++) {
            const [e] = await call('write', path, fd, src.subarray(i * bs, (i + 1) * bs), bs, i * bs);
            if (e !== bs) throw new Error(`write: ${e}`);
          }
          await call('flush', path, fd);
          const c = process.cpuUsage(c0);
          const m1 = mainThreadCpu();
          await call('release', path, fd);
          await engine.fsync();
          if (round > 0) {
            (kind === 'unique' ? main : dup).push((m1.user + m1.system - m0.user - m0.system) / blocks);
            if (kind === 'unique') all.push((c.user + c.system) / blocks);
          }
        }
      }
      console.log(`write: main thread unique ${main.map((x) => x.toFixed(1)).join(' ')} (median ${median(main).toFixed(1)}), duplicate ${dup.map((x) => x.toFixed(1)).join(' ')} (median ${median(dup).toFixed(1)}) µs/128 KiB write`);
    } else {
      throw new Error(`unknown mode ${mode}`);
    }
    await engine.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
