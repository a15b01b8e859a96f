// One Net contract, run against the simulated network (default and lossy-but-
// lossless-in-effect timing: jitter, stalls, splits, bandwidth) and against
// RealNet on 127.0.0.1. The body never sleeps on wall time directly: it asks the
// harness to drive time (sim: the scheduler; real: bounded polling).

import { afterEach, describe, expect, it } from 'vitest';
import type { Connection, Listener, Net } from '../../src/core/drivers.ts';
import { NetError } from '../../src/core/errors.ts';
import { RealNet } from '../../src/real/net.ts';
import { SimNetwork, type SimNetOptions } from '../../src/sim/net.ts';
import { Domain, Scheduler } from '../../src/sim/scheduler.ts';

interface NetHarness {
  serverNet: Net;
  clientNet: Net;
  /** The address the server listens on and clients connect to. */
  serverHost: string;
  /** Drive time until cond() holds; throws (naming `what`) if it never does. */
  until(cond: () => boolean, what: string): Promise<void>;
  /** Drive time until the promise settles. */
  settle<T>(promise: Promise<T>, what: string): Promise<T>;
  /** Let about ms of time pass. */
  pause(ms: number): Promise<void>;
  /** Let everything pending happen (sim: empty the queue; real: a short wait). */
  quiesce(): Promise<void>;
  /** A port on serverHost that nobody listens on. */
  unusedPort(): Promise<number>;
}

const REAL_WAIT_MS_MAX = 10_000;

function simHarness(seed: string, options: Partial<SimNetOptions>): NetHarness {
  const scheduler = new Scheduler({ seed, stepsMax: 2_000_000 });
  const network = new SimNetwork(scheduler, scheduler.rng.split('net'), options);
  return {
    serverNet: network.host('10.0.0.1', new Domain('server')),
    clientNet: network.host('10.0.0.2', new Domain('client')),
    serverHost: '10.0.0.1',
    async until(cond, what) {
      await scheduler.run({ done: cond });
      if (!cond()) throw new Error(`sim seed ${seed}: ${what} never happened (queue empty at ${scheduler.nowMs()} ms)`);
    },
    settle: (promise, what) => scheduler.runUntilSettled(promise, what),
    pause: (ms) => scheduler.run({ untilMs: scheduler.nowMs() + ms }),
    quiesce: () => scheduler.run(),
    unusedPort: async () => 9,
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function realHarness(): NetHarness {
  const net = new RealNet({ connectTimeoutMs: 5_000 });
  return {
    serverNet: net,
    clientNet: net,
    serverHost: '127.0.0.1',
    async until(cond, what) {
      const deadline = Date.now() + REAL_WAIT_MS_MAX;
      while (!cond()) {
        if (Date.now() > deadline) throw new Error(`real: ${what} did not happen within ${REAL_WAIT_MS_MAX} ms`);
        await sleep(1);
      }
    },
    async settle(promise, what) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`real: ${what} did not settle within ${REAL_WAIT_MS_MAX} ms`)), REAL_WAIT_MS_MAX);
      });
      try {
        return await Promise.race([promise, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
    pause: sleep,
    quiesce: () => sleep(50),
    async unusedPort() {
      const listener = await net.listen('127.0.0.1', 0, (conn) => conn.destroy());
      const port = listener.port;
      await listener.close();
      return port;
    },
  };
}

// ---------------------------------------------------------------- helpers

/** Deterministic, non-repeating-looking bytes (xorshift32). */
function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = (seed >>> 0) || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

function concat(chunks: readonly Uint8Array[]): Uint8Array {
  return Buffer.concat(chunks.map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength)));
}

function expectSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  const diff = Buffer.compare(Buffer.from(actual), Buffer.from(expected));
  if (diff !== 0) {
    let i = 0;
    while (actual[i] === expected[i]) i++;
    expect.fail(`${what}: first difference at byte ${i}`);
  }
}

function expectPrefix(actual: Uint8Array, of: Uint8Array, what: string): void {
  expect(actual.length, `${what}: length`).toBeLessThanOrEqual(of.length);
  expectSameBytes(actual, of.subarray(0, actual.length), what);
}

interface Watched {
  conn: Connection;
  chunks: Uint8Array[];
  /** Bytes received when onClose fired. */
  bytesAtClose: number | undefined;
  closes: (Error | undefined)[];
  drains: number;
  bytes(): number;
  data(): Uint8Array;
  read(): void;
  watchClose(): void;
}

function watch(conn: Connection, options: { read?: boolean; close?: boolean } = {}): Watched {
  const w: Watched = {
    conn,
    chunks: [],
    bytesAtClose: undefined,
    closes: [],
    drains: 0,
    bytes: () => w.chunks.reduce((n, c) => n + c.length, 0),
    data: () => concat(w.chunks),
    read: () => conn.onData((chunk) => w.chunks.push(chunk)),
    watchClose: () =>
      conn.onClose((error) => {
        w.bytesAtClose ??= w.bytes();
        w.closes.push(error);
      }),
  };
  conn.onDrain(() => w.drains++);
  if (options.read !== false) w.read();
  if (options.close !== false) w.watchClose();
  return w;
}

// ---------------------------------------------------------------- the contract

function netContract(name: string, makeHarness: () => NetHarness): void {
  describe(`Net contract: ${name}`, () => {
    let env: NetHarness;
    const conns: Connection[] = [];
    const listeners: Listener[] = [];

    afterEach(async () => {
      for (const c of conns.splice(0)) c.destroy();
      for (const l of listeners.splice(0)) await l.close();
    });

    async function listen(onConnection: (conn: Connection) => void): Promise<Listener> {
      const listener = await env.settle(
        env.serverNet.listen(env.serverHost, 0, (conn) => {
          conns.push(conn);
          onConnection(conn);
        }),
        'listen',
      );
      listeners.push(listener);
      return listener;
    }

    async function connect(port: number): Promise<Connection> {
      const conn = await env.settle(env.clientNet.connect(env.serverHost, port, { timeoutMs: 5_000 }), 'connect');
      conns.push(conn);
      return conn;
    }

    /** A connected pair; the server end is watched as the options say. */
    async function pair(serverOptions: { read?: boolean; close?: boolean } = {}, clientOptions: { read?: boolean; close?: boolean } = {}) {
      let server: Watched | undefined;
      const listener = await listen((conn) => {
        server = watch(conn, serverOptions);
      });
      const client = watch(await connect(listener.port), clientOptions);
      await env.until(() => server !== undefined, 'accept');
      return { listener, client, server: server as Watched };
    }

    it('listens on port 0, accepts a connection, and names the remote ends', async () => {
      env = makeHarness();
      const { listener, client, server } = await pair();
      expect(listener.port).toBeGreaterThan(0);
      expect(listener.port).toBeLessThan(65536);
      expect(client.conn.remote).toBe(`${env.serverHost}:${listener.port}`);
      expect(server.conn.remote).toMatch(/^.+:\d+$/);
    });

    it('carries bytes both ways (an echo round trip)', async () => {
      env = makeHarness();
      const listener = await listen((conn) => conn.onData((chunk) => conn.write(chunk)));
      const client = watch(await connect(listener.port));
      const message = new TextEncoder().encode('hello, lessfs');
      expect(client.conn.write(message)).toBe(true);
      await env.until(() => client.bytes() >= message.length, 'echo');
      expectSameBytes(client.data(), message, 'echo');
    });

    it('moves 4 MiB each way at once, split into chunks, complete and in order', async () => {
      env = makeHarness();
      const sizeBytes = 4 * 1024 * 1024;
      const up = pattern(sizeBytes, 1);
      const down = pattern(sizeBytes, 2);
      const { client, server } = await pair();
      client.conn.write(up);
      server.conn.write(down);
      await env.until(() => server.bytes() >= sizeBytes && client.bytes() >= sizeBytes, '4 MiB both ways');
      expect(server.chunks.length).toBeGreaterThan(1);
      expect(client.chunks.length).toBeGreaterThan(1);
      expectSameBytes(server.data(), up, 'client to server');
      expectSameBytes(client.data(), down, 'server to client');
    });

    it('write(data, owned): bytes handed over (views into one buffer) arrive complete and in order', async () => {
      env = makeHarness();
      const sizeBytes = 1024 * 1024;
      const whole = pattern(sizeBytes, 3);
      const { client, server } = await pair();
      // Views of one buffer, as the live sender hands over the pieces it read.
      for (let o = 0; o < sizeBytes; o += 100_000) client.conn.write(whole.subarray(o, Math.min(sizeBytes, o + 100_000)), true);
      await env.until(() => server.bytes() >= sizeBytes, '1 MiB handed over');
      expectSameBytes(server.data(), whole, 'owned writes');
    });

    it('write(data, owned, onSent): the buffer comes back once sent, is reused, and every byte arrives; a closed connection gives it back too', async () => {
      env = makeHarness();
      const pieceBytes = 256 * 1024;
      const pieces = 16;
      const sent = pattern(pieceBytes * pieces, 8);
      const { client, server } = await pair();
      // Two buffers taken in turn, as the live sender's send buffers are: a
      // buffer is refilled only after onSent, so early reuse would corrupt the stream.
      const free: Uint8Array[] = [new Uint8Array(pieceBytes), new Uint8Array(pieceBytes)];
      let returned = 0;
      for (let i = 0; i < pieces; i++) {
        await env.until(() => free.length > 0, `a send buffer back (piece ${i})`);
        const buf = free.pop() as Uint8Array;
        buf.set(sent.subarray(i * pieceBytes, (i + 1) * pieceBytes));
        client.conn.write(buf, true, () => {
          returned++;
          free.push(buf);
        });
      }
      await env.until(() => server.bytes() >= sent.length && returned === pieces, 'every piece sent and given back');
      expectSameBytes(server.data(), sent, 'reused send buffers');
      server.conn.destroy();
      await env.until(() => client.closes.length > 0, 'the client sees the close');
      let back = false;
      expect(client.conn.write(new Uint8Array(10), true, () => (back = true))).toBe(false);
      expect(back).toBe(true);
    });

    /** Writes a real connection sent from libuv's thread pool (undefined for the sim's). */
    function offloaded(w: Watched): number | undefined {
      return (w.conn as { offloadedWrites?: number }).offloadedWrites;
    }

    /** A real connection sent some of it from the thread pool. */
    function expectOffloaded(w: Watched): void {
      const n = offloaded(w);
      if (n !== undefined) expect(n, 'writes from the thread pool').toBeGreaterThan(0);
    }

    it('large owned writes mixed with small and copied ones arrive complete and in order, each buffer given back once', async () => {
      env = makeHarness();
      const { client, server } = await pair();
      const sent: Uint8Array[] = [];
      let given = 0;
      let owned = 0;
      for (let i = 0; i < 24; i++) {
        // 1 MiB and 512 KiB pieces (a live sender's reads), 3-byte and 70 KiB ones between them, owned or copied.
        const size = [1024 * 1024, 3, 512 * 1024, 70 * 1024][i % 4];
        const piece = pattern(size, 600 + i);
        sent.push(piece);
        if (i % 3 === 2) client.conn.write(piece);
        else {
          owned++;
          client.conn.write(piece, true, () => given++);
        }
      }
      const all = concat(sent);
      await env.until(() => server.bytes() >= all.length && given === owned, 'every byte, every buffer back');
      await env.quiesce();
      expect(given).toBe(owned);
      expectSameBytes(server.data(), all, 'mixed writes');
      expectOffloaded(client);
    });

    it('end() right after large owned writes delivers them all, then closes without error', async () => {
      env = makeHarness();
      const { client, server } = await pair();
      const a = pattern(2 * 1024 * 1024, 620);
      const b = pattern(300 * 1024, 621);
      client.conn.write(a, true);
      client.conn.write(b, true);
      client.conn.end();
      await env.until(() => client.closes.length > 0 && server.closes.length > 0, 'both closed');
      await env.quiesce();
      expect(client.closes).toEqual([undefined]);
      expect(server.closes).toEqual([undefined]);
      expectSameBytes(server.data(), concat([a, b]), 'bytes before the end');
      expectOffloaded(client);
    });

    it('destroy() right after a large owned write closes once each side; the buffer comes back and the peer got a prefix', async () => {
      env = makeHarness();
      const { client, server } = await pair();
      const up = pattern(4 * 1024 * 1024, 630);
      let back = 0;
      client.conn.write(up, true, () => back++);
      client.conn.write(pattern(100, 631), true, () => back++);
      client.conn.destroy();
      await env.until(() => client.closes.length > 0 && server.closes.length > 0 && back === 2, 'both closed, buffers back');
      await env.quiesce();
      expect(client.closes).toEqual([undefined]);
      expect(server.closes.length).toBe(1);
      expect(back).toBe(2);
      expectPrefix(server.data(), concat([up, pattern(100, 631)]), 'bytes before destroy');
    });

    it('large owned writes to a reader that holds off: write() returns false, one drain, every byte in order', async () => {
      env = makeHarness();
      await backpressure(512 * 1024, 640, true);
    });

    it('a large owned write the kernel takes only part of (reader holding off) keeps its place before the writes that came meanwhile', async () => {
      env = makeHarness();
      const { client, server } = await pair({ read: false });
      const sent: Uint8Array[] = [];
      let back = 0;
      let stuck = false;
      for (let i = 0; i < 64 && !stuck; i++) {
        // A large piece, and at once a small one behind it.
        const a = pattern(768 * 1024, 700 + i);
        const b = pattern(1000, 800 + i);
        sent.push(a, b);
        client.conn.write(a, true, () => back++);
        client.conn.write(b, true, () => back++);
        // Both sent within 200 ms, or the kernel's buffers are full: stop there.
        for (let k = 0; k < 20 && back < sent.length; k++) await env.pause(10);
        stuck = back < sent.length;
      }
      // The kernel's buffers fill; the sim's may take it all.
      if (offloaded(client) !== undefined) expect(stuck, 'the reader holding off filled the buffers').toBe(true);
      const all = concat(sent);
      server.read();
      await env.until(() => server.bytes() >= all.length && back === sent.length, 'all bytes, all buffers back');
      expectSameBytes(server.data(), all, 'partly written pieces and what came behind them');
      expectOffloaded(client);
    });

    it('buffers bytes that arrive before onData is registered', async () => {
      env = makeHarness();
      const greeting = pattern(100 * 1024, 3);
      const request = pattern(10 * 1024, 4);
      let server: Watched | undefined;
      const listener = await listen((conn) => {
        server = watch(conn, { read: false });
        conn.write(greeting);
      });
      const client = watch(await connect(listener.port), { read: false });
      client.conn.write(request);
      await env.until(() => server !== undefined, 'accept');
      await env.pause(100);
      expect(client.chunks.length).toBe(0);
      client.read();
      (server as Watched).read();
      await env.until(() => client.bytes() >= greeting.length && (server as Watched).bytes() >= request.length, 'buffered bytes');
      expectSameBytes(client.data(), greeting, 'greeting');
      expectSameBytes((server as Watched).data(), request, 'request');
    });

    it('with borrowed reads, a handler that copies sees every byte in order, early bytes and the close included', async () => {
      env = makeHarness();
      // RealNet then reads into one buffer it reuses: chunks are views valid during the call only.
      const request = pattern(3 * 1024 * 1024 + 17, 5);
      const early = pattern(10 * 1024, 6);
      let got: Uint8Array[] = [];
      let serverConn: Connection | undefined;
      let closed = false;
      const listener = await listen((conn) => {
        serverConn = conn;
        conn.onClose(() => {
          closed = true;
        });
      });
      const client = watch(await connect(listener.port), { read: false });
      client.conn.write(early);
      await env.until(() => serverConn !== undefined, 'accept');
      await env.pause(50);
      (serverConn as Connection).onData((chunk) => got.push(chunk.slice()), { borrow: true });
      client.conn.write(request);
      await env.until(() => got.reduce((n, c) => n + c.length, 0) >= early.length + request.length, 'borrowed bytes');
      expectSameBytes(concat(got), concat([early, request]), 'borrowed reads');
      got = [];
      client.conn.end();
      await env.until(() => closed, 'the server sees the client close');
    });

    /** Writes pieces to a reader that holds off until write() returns false; then it reads: one drain, every byte in order. */
    async function backpressure(pieceBytes: number, seed: number, owned: boolean): Promise<Watched> {
      // The reader holds off, so the kernel's (or the sim's) buffers fill and the
      // writer must see backpressure within a bounded amount.
      const { client, server } = await pair({ read: false });
      const sent: Uint8Array[] = [];
      for (let i = 0; i < 256; i++) {
        const piece = pattern(pieceBytes, seed + i);
        sent.push(piece);
        if (!client.conn.write(piece, owned)) break;
      }
      expect(sent.length, 'writes before write() returned false').toBeLessThan(256);
      const all = concat(sent);
      server.read();
      await env.until(() => client.drains >= 1, 'drain');
      await env.until(() => server.bytes() >= all.length, 'all bytes');
      await env.quiesce();
      expect(client.drains).toBe(1);
      expectSameBytes(server.data(), all, 'drained bytes');
      return client;
    }

    it('returns false from write over the high-water mark, then drains once', async () => {
      env = makeHarness();
      const client = await backpressure(256 * 1024, 500, false);
      // Drained and acknowledged: a small write fits again.
      expect(client.conn.write(pattern(100, 6))).toBe(true);
    });

    it('end() delivers queued bytes, then both sides close once without error', async () => {
      env = makeHarness();
      const up = pattern(256 * 1024, 7);
      const down = pattern(100 * 1024, 8);
      let server: Watched | undefined;
      const listener = await listen((conn) => {
        server = watch(conn);
        conn.write(down);
        conn.end();
      });
      const client = watch(await connect(listener.port));
      client.conn.write(up);
      client.conn.end();
      expect(() => client.conn.write(pattern(1, 9))).toThrow(NetError);
      try {
        client.conn.write(pattern(1, 9));
      } catch (err) {
        expect((err as NetError).code).toBe('EPIPE');
      }
      await env.until(() => client.closes.length > 0 && server !== undefined && server.closes.length > 0, 'both closed');
      const s = server as Watched;
      await env.quiesce();
      expect(client.closes).toEqual([undefined]);
      expect(s.closes).toEqual([undefined]);
      expect(s.bytesAtClose).toBe(up.length);
      expect(client.bytesAtClose).toBe(down.length);
      expectSameBytes(s.data(), up, 'client to server before close');
      expectSameBytes(client.data(), down, 'server to client before close');
    });

    it('destroy() closes at once: one close each side, and the peer got a prefix', async () => {
      env = makeHarness();
      const up = pattern(512 * 1024, 10);
      const { client, server } = await pair();
      client.conn.write(up);
      client.conn.destroy();
      expect(() => client.conn.write(pattern(1, 11))).toThrow(/EPIPE/);
      await env.until(() => client.closes.length > 0 && server.closes.length > 0, 'both closed');
      await env.quiesce();
      expect(client.closes).toEqual([undefined]);
      expect(server.closes.length).toBe(1);
      expectPrefix(server.data(), up, 'bytes before destroy');
    });

    it('survives a peer that vanishes while we keep writing: close once, writes return false', async () => {
      env = makeHarness();
      const chunk = pattern(16 * 1024, 12);
      let server: Watched | undefined;
      const listener = await listen((conn) => {
        server = watch(conn, { read: false });
        conn.onData(() => conn.destroy());
      });
      const client = watch(await connect(listener.port));
      for (let i = 0; i < 2_000 && client.closes.length === 0; i++) {
        client.conn.write(chunk);
        await env.pause(1);
      }
      await env.until(() => client.closes.length > 0, 'client sees the close');
      await env.quiesce();
      expect(client.closes.length).toBe(1);
      const error = client.closes[0];
      if (error !== undefined) {
        expect(error).toBeInstanceOf(NetError);
        expect(['ECONNRESET', 'EPIPE']).toContain((error as NetError).code);
      }
      expect(client.conn.write(chunk)).toBe(false);
      expect((server as Watched).closes.length).toBe(1);
    });

    it('both ends destroying at once still close exactly once each', async () => {
      env = makeHarness();
      const { client, server } = await pair();
      client.conn.write(pattern(1000, 13));
      server.conn.write(pattern(1000, 14));
      client.conn.destroy();
      server.conn.destroy();
      await env.until(() => client.closes.length > 0 && server.closes.length > 0, 'both closed');
      await env.quiesce();
      expect(client.closes).toEqual([undefined]);
      expect(server.closes).toEqual([undefined]);
    });

    it('an onClose registered after the close still fires, once', async () => {
      env = makeHarness();
      const { client, server } = await pair({ close: false }, { close: false });
      client.conn.end();
      await env.quiesce();
      await env.pause(50);
      client.watchClose();
      server.watchClose();
      await env.until(() => client.closes.length > 0 && server.closes.length > 0, 'late onClose');
      await env.quiesce();
      expect(client.closes).toEqual([undefined]);
      expect(server.closes).toEqual([undefined]);
    });

    it('rejects a connect to a port nobody listens on with ECONNREFUSED', async () => {
      env = makeHarness();
      const port = await env.unusedPort();
      const error = await env.settle(
        env.clientNet.connect(env.serverHost, port, { timeoutMs: 5_000 }).then(
          () => expect.fail('connected to a port nobody listens on'),
          (err: unknown) => err,
        ),
        'refused connect',
      );
      expect(error).toBeInstanceOf(NetError);
      expect((error as NetError).code).toBe('ECONNREFUSED');
    });

    it('a closed listener refuses new connections but keeps accepted ones', async () => {
      env = makeHarness();
      const listener = await listen((conn) => conn.onData((chunk) => conn.write(chunk)));
      const client = watch(await connect(listener.port));
      await listener.close();
      const error = await env.settle(
        env.clientNet.connect(env.serverHost, listener.port, { timeoutMs: 5_000 }).then(
          () => expect.fail('connected to a closed listener'),
          (err: unknown) => err,
        ),
        'connect after close',
      );
      expect((error as NetError).code).toBe('ECONNREFUSED');
      const ping = pattern(1000, 15);
      client.conn.write(ping);
      await env.until(() => client.bytes() >= ping.length, 'echo after listener close');
      expectSameBytes(client.data(), ping, 'echo after listener close');
    });

    it('keeps several connections on one listener apart', async () => {
      env = makeHarness();
      const listener = await listen((conn) => conn.onData((chunk) => conn.write(chunk)));
      const clients: Watched[] = [];
      for (let i = 0; i < 4; i++) clients.push(watch(await connect(listener.port)));
      const sent = clients.map((_, i) => pattern(50_000 + i * 1000, 100 + i));
      clients.forEach((c, i) => c.conn.write(sent[i]));
      await env.until(() => clients.every((c, i) => c.bytes() >= sent[i].length), 'all echoes');
      clients.forEach((c, i) => expectSameBytes(c.data(), sent[i], `client ${i}`));
    });
  });
}

netContract('SimNet, defaults', () => simHarness('net-contract-1', {}));
netContract('SimNet, jitter + stalls + splits + bandwidth', () =>
  simHarness('net-contract-2', {
    latencyMsMin: 0,
    latencyMsMax: 40,
    stallProbability: 0.05,
    stallMsMax: 300,
    splitProbability: 0.3,
    segmentBytesMax: 16 * 1024,
    bandwidthBytesPerMs: 50_000,
    sendBufferHighWaterBytes: 32 * 1024,
  }),
);
netContract('RealNet on 127.0.0.1', () => realHarness());
