// The FUSE handlers driven in-process (no kernel): small writes applied at
// once (engine.writeNow), whole blocks through the write-behind queue, and
// the metadata caches under them, against a model of the file's bytes.

import { spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlFiles, REPLICATION_OFF } from '../../src/core/control.ts';
import { IoGate } from '../../src/core/gate.ts';
import type { FsEngine } from '../../src/core/fs/engine.ts';
import type { FuseRequest } from '../../src/real/fuse/mount.ts';
import { callerBeingKilled, LessfsFuseOps, WriteBehind } from '../../src/real/fuse/ops.ts';
import { RealHarness } from '../support/harness.ts';

type AnyOps = Record<string, (...args: unknown[]) => void>;

function opsOf(engine: FsEngine, request?: () => FuseRequest | undefined, callerKilled?: (pid: number) => Promise<boolean>): { call: (name: string, ...args: unknown[]) => Promise<[number, unknown]>; ops: LessfsFuseOps } {
  const control = new ControlFiles(engine, REPLICATION_OFF, { contentTtlMs: 1000, nowMs: () => Date.now() });
  const ops = new LessfsFuseOps({ engine, control, gate: new IoGate(), logger: { log: () => undefined }, logLevel: 0, request, callerKilled });
  const handlers = ops.ops() as unknown as AnyOps;
  const call = (name: string, ...args: unknown[]): Promise<[number, unknown]> =>
    new Promise((resolve) => handlers[name](...args, (e: number, v: unknown) => resolve([e, v])));
  return { call, ops };
}

/** Small deterministic generator (tests only). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('FUSE handlers in-process', () => {
  let h: RealHarness | undefined;
  afterEach(() => h?.cleanup());

  it('random writes, small and whole-block, read back as a model says, across commits and a remount', async () => {
    h = new RealHarness({ cacheSizeBytes: 256 << 10 });
    await h.format();
    let engine = await h.open();
    const bs = engine.options.blockSizeBytes;
    let { call, ops } = opsOf(engine);
    const fileBytes = 12 * bs;
    const model = new Uint8Array(fileBytes);
    let size = 0;
    const rand = rng(7);
    for (const [name, mode] of [['/d', 0o755]] as const) expect((await call('mkdir', name, mode))[0]).toBe(0);
    expect((await call('getattr', '/d/f'))[0]).toBe(-2);
    const [e0, fd] = await call('create', '/d/f', 0o100644);
    expect(e0).toBe(0);
    const buf = Buffer.alloc(3 * bs);
    for (let i = 0; i < 400; i++) {
      const r = rand();
      const whole = r < 0.15;
      const len = whole ? bs * (1 + Math.floor(rand() * 2)) : 1 + Math.floor(rand() * (r < 0.6 ? 200 : 2 * bs));
      const pos = whole ? bs * Math.floor(rand() * 10) : Math.floor(rand() * (fileBytes - len));
      for (let k = 0; k < len; k++) buf[k] = (i * 31 + k) & 0xff;
      const [n] = await call('write', '/d/f', fd, buf, len, pos);
      expect(n).toBe(len);
      // fuse-native reuses its buffer once we answered.
      buf.fill(0xee, 0, len);
      model.set(Buffer.alloc(len, 0), pos);
      for (let k = 0; k < len; k++) model[pos + k] = (i * 31 + k) & 0xff;
      size = Math.max(size, pos + len);
      if (i % 37 === 0) {
        const [e, st] = await call('getattr', '/d/f');
        expect(e).toBe(0);
        expect((st as { size: number }).size).toBe(size);
      }
      if (i % 53 === 0) {
        const out = Buffer.alloc(size);
        const [got] = await call('read', '/d/f', fd, out, size, 0);
        expect(got).toBe(size);
        expect(Buffer.compare(out, Buffer.from(model.subarray(0, size)))).toBe(0);
      }
      if (i % 71 === 0) await engine.commit();
    }
    expect((await call('flush', '/d/f', fd))[0]).toBe(0);
    expect((await call('release', '/d/f', fd))[0]).toBe(0);
    expect(ops.openHandles).toBe(0);
    await ops.drainWrites();
    await engine.close();
    engine = await h.open();
    ({ call } = opsOf(engine));
    const [e1, st] = await call('getattr', '/d/f');
    expect(e1).toBe(0);
    expect((st as { size: number }).size).toBe(size);
    const [e2, rfd] = await call('open', '/d/f', 0);
    expect(e2).toBe(0);
    const out = Buffer.alloc(size);
    expect((await call('read', '/d/f', rfd, out, size, 0))[0]).toBe(size);
    expect(Buffer.compare(out, Buffer.from(model.subarray(0, size)))).toBe(0);
    await call('release', '/d/f', rfd);
    await engine.close();
  });

  it('names: a miss, create, unlink, rename and re-create are seen at once', async () => {
    h = new RealHarness();
    await h.format();
    const engine = await h.open();
    const { call } = opsOf(engine);
    expect((await call('mkdir', '/a', 0o755))[0]).toBe(0);
    expect((await call('getattr', '/a/x'))[0]).toBe(-2);
    const [, fd] = await call('create', '/a/x', 0o100644);
    expect((await call('create', '/a/x', 0o100644))[0]).toBe(-17); // EEXIST
    const [, st1] = await call('getattr', '/a/x');
    await call('release', '/a/x', fd);
    await engine.commit();
    expect((await call('rename', '/a/x', '/a/y'))[0]).toBe(0);
    expect((await call('getattr', '/a/x'))[0]).toBe(-2);
    const [, st2] = await call('getattr', '/a/y');
    expect((st2 as { ino: number }).ino).toBe((st1 as { ino: number }).ino);
    expect((await call('unlink', '/a/y'))[0]).toBe(0);
    expect((await call('getattr', '/a/y'))[0]).toBe(-2);
    expect((await call('rmdir', '/a'))[0]).toBe(0);
    expect((await call('getattr', '/a'))[0]).toBe(-2);
    expect((await call('getattr', '/a/x'))[0]).toBe(-2);
    expect((await call('mkdir', '/a', 0o755))[0]).toBe(0);
    const [, fd2] = await call('create', '/a/x', 0o100644);
    const [, st3] = await call('getattr', '/a/x');
    expect((st3 as { ino: number }).ino).not.toBe((st1 as { ino: number }).ino);
    expect((st3 as { size: number }).size).toBe(0);
    await call('release', '/a/x', fd2);
    // Renaming a directory moves every path under it.
    expect((await call('mkdir', '/p', 0o755))[0]).toBe(0);
    expect((await call('mkdir', '/p/q', 0o755))[0]).toBe(0);
    const [, fd3] = await call('create', '/p/q/f', 0o100644);
    await call('release', '/p/q/f', fd3);
    const [, f1] = await call('getattr', '/p/q/f');
    expect((await call('rename', '/p', '/r'))[0]).toBe(0);
    expect((await call('getattr', '/p/q/f'))[0]).toBe(-2);
    expect((await call('getattr', '/p/q'))[0]).toBe(-2);
    const [, f2] = await call('getattr', '/r/q/f');
    expect((f2 as { ino: number }).ino).toBe((f1 as { ino: number }).ino);
    // A rename over an existing name: the name now means the moved file.
    const [, fa] = await call('create', '/r/a', 0o100644);
    const [, fb] = await call('create', '/r/b', 0o100644);
    const [, sa] = await call('getattr', '/r/a');
    await call('getattr', '/r/b');
    expect((await call('rename', '/r/a', '/r/b'))[0]).toBe(0);
    const [, sb] = await call('getattr', '/r/b');
    expect((sb as { ino: number }).ino).toBe((sa as { ino: number }).ino);
    expect((await call('getattr', '/r/a'))[0]).toBe(-2);
    await call('release', '/r/a', fa);
    await call('release', '/r/b', fb);
    // Paths with empty components resolve as before.
    expect((await call('getattr', '/r//q/f'))[0]).toBe(0);
    expect((await call('getattr', '/r/q/f/'))[0]).toBe(0);
    expect((await call('getattr', '/r/q/f/x'))[0]).toBe(-20); // ENOTDIR
    await engine.close();
  });

  it('MAX_BACKLOG_SIZE hold: flush and release answer at once, waiting write and mkdir end with EINTR when interrupted, queued writes are stored after', async () => {
    h = new RealHarness();
    await h.format();
    const engine = await h.open();
    const bs = engine.options.blockSizeBytes;
    // A hold as a live master's sender makes one (MAX_BACKLOG_SIZE exceeded).
    let held = false;
    let waiters: Array<() => void> = [];
    engine.writesHeld = () => held;
    engine.writeThrottle = () => (held ? new Promise<void>((r) => waiters.push(r)) : undefined);
    let seq = 0;
    const req: { current: FuseRequest } = { current: { seq: 0, interrupted: false, pid: 4242 } };
    // The caller of pid 4242 is being killed once `killed` says so.
    let killed = true;
    const { call, ops } = opsOf(engine, () => req.current, async (pid) => pid === 4242 && killed);
    const next = (): number => {
      req.current = { seq: ++seq, interrupted: false, pid: 4242 };
      return seq;
    };
    /** The handler's answer, or 'waiting' if it has none within a few event-loop turns. */
    const answer = async (p: Promise<[number, unknown]>): Promise<number | 'waiting'> =>
      Promise.race([p.then(([e]) => e), new Promise<'waiting'>((r) => setTimeout(() => r('waiting'), 50))]);

    next();
    const [, fd] = await call('create', '/f', 0o100644);
    const data = Buffer.alloc(2 * bs, 0x5a);
    next();
    expect((await call('write', '/f', fd, data, data.length, 0))[0]).toBe(data.length); // acknowledged, queued
    held = true; // the backlog passes the limit before the queued store runs

    next();
    expect(await answer(call('flush', '/f', fd)), 'flush waited on the hold').toBe(0);
    const w = next();
    const write = call('write', '/f', fd, data, bs, 2 * bs);
    expect(await answer(write), 'a write went through the hold').toBe('waiting');
    ops.interrupt(w);
    expect((await write)[0]).toBe(-4); // EINTR, nothing queued
    const m = next();
    const mkdir = call('mkdir', '/d', 0o755);
    expect(await answer(mkdir), 'mkdir went through the hold').toBe('waiting');
    ops.interrupt(m);
    expect((await mkdir)[0]).toBe(-4);
    expect((await call('getattr', '/d'))[0]).toBe(-2);
    // Interrupted before it reached the handler: the same answer without waiting.
    req.current = { seq: ++seq, interrupted: true, pid: 4242 };
    expect(await answer(call('mkdir', '/d', 0o755))).toBe(-4);
    // A signal that does not end the caller (a stop, one it handles) must not
    // make it see EINTR (a short write); a SIGKILL after it still does.
    killed = false;
    const s = next();
    const stopped = call('mkdir', '/d', 0o755);
    ops.interrupt(s);
    expect(await answer(stopped), 'a stopped caller got EINTR').toBe('waiting');
    killed = true; // no second interrupt comes: the wait watches the caller
    expect((await stopped)[0]).toBe(-4);
    next();
    expect(await answer(call('release', '/f', fd)), 'release waited on the hold').toBe(0);

    held = false;
    const wake = waiters;
    waiters = [];
    for (const f of wake) f();
    await ops.drainWrites();
    next();
    const [, rfd] = await call('open', '/f', 0);
    const out = Buffer.alloc(3 * bs);
    expect((await call('read', '/f', rfd, out, out.length, 0))[0]).toBe(data.length);
    expect(Buffer.compare(out.subarray(0, data.length), data)).toBe(0);
    await call('release', '/f', rfd);
    await engine.close();
  });
});

describe('metadata changes through the mount wait for commit room', () => {
  let h: RealHarness | undefined;
  afterEach(() => h?.cleanup());

  it('3,000 creates from 32 callers at once never make a commit larger than commitOpsMax, and all are kept', async () => {
    // Creates change entries, not data: without the wait (engine.metadataRoom)
    // they pile into the open transaction while the first pressure commit runs
    // (~9,000 operations in one commit here; past STORE_COMMIT_OPS_MAX at scale).
    const lines: string[] = [];
    const opsMax = 400;
    h = new RealHarness({ commitOpsMax: opsMax, commitIntervalMs: 600_000, cacheSizeBytes: 1 << 30 }, { log: (_level, line) => void lines.push(line) });
    await h.format();
    const engine = await h.open();
    const { call } = opsOf(engine);
    const callers = 32;
    const perCaller = 3000 / callers;
    const failed: string[] = [];
    await Promise.all(Array.from({ length: callers }, async (_, c) => {
      for (let i = 0; i < perCaller; i++) {
        const [e, fd] = await call('create', `/c${c}-${i}`, 0o100644);
        if (e !== 0) failed.push(`create /c${c}-${i}: ${e}`);
        else await call('release', `/c${c}-${i}`, fd);
      }
    }));
    expect(failed).toEqual([]);
    await engine.close();
    const commits = lines.map((l) => /commit txn \d+ \(([^)]*)\): (\d+) ops/.exec(l)).filter((m) => m !== null).map((m) => Number(m[2]));
    expect(Math.max(...commits), commits.join(' ')).toBeLessThanOrEqual(opsMax);
    expect(commits.length).toBeGreaterThan(10);
    const again = await h.open();
    const { call: call2 } = opsOf(again);
    for (const name of ['/c0-0', '/c31-92', '/c17-50']) expect((await call2('getattr', name))[0], name).toBe(0);
    await again.close();
  });
});

describe('WriteBehind: a failed store', () => {
  it('fails the next write and stays until an fsync (or flush, release) reports it: a short write must not hide it', async () => {
    const wb = new WriteBehind({ log: () => undefined });
    const fail = Object.assign(new Error('ENOSPC: no room'), { code: 'ENOSPC' });
    await wb.submit(7, () => Promise.reject(fail), 4096, 4096);
    await wb.settled(7);
    // The write after it is refused (the kernel makes that a short write)...
    await expect(wb.submit(7, () => Promise.resolve(), 4096, 8192)).rejects.toBe(fail);
    await expect(wb.submit(7, () => Promise.resolve(), 4096, 8192)).rejects.toBe(fail);
    // ...and the fsync still fails: the acknowledged write before it was not stored.
    await expect(wb.settled(7, true)).rejects.toBe(fail);
    // Reported: cleared.
    await expect(wb.settled(7, true)).resolves.toBeUndefined();
    await expect(wb.submit(7, () => Promise.resolve(), 4096, 8192)).resolves.toBeUndefined();
  });
});

describe('callerBeingKilled', () => {
  it('is false for a running or stopped process, true for one that is gone or not known', async () => {
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      const pid = child.pid as number;
      expect(await callerBeingKilled(pid)).toBe(false);
      process.kill(pid, 'SIGSTOP'); // Ctrl-Z: the kernel interrupts its requests, it is not being killed
      expect(await callerBeingKilled(pid)).toBe(false);
      process.kill(pid, 'SIGCONT');
    } finally {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
    }
    expect(await callerBeingKilled(child.pid as number)).toBe(true);
    expect(await callerBeingKilled(0)).toBe(true);
  });
});
