// What only the simulated network has: fault verbs, fault rates, crashes,
// virtual-time behaviour and determinism. The byte-stream contract itself is in
// test/contract/net.contract.test.ts.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Connection, Net } from '../../src/core/drivers.ts';
import { NetError } from '../../src/core/errors.ts';
import { SimRng } from '../../src/sim/rng.ts';
import { SimNetwork, type SimNetOptions } from '../../src/sim/net.ts';
import { Domain, Scheduler } from '../../src/sim/scheduler.ts';

const A = '10.0.0.1';
const B = '10.0.0.2';
const PORT = 7000;

interface World {
  scheduler: Scheduler;
  network: SimNetwork;
  domainA: Domain;
  domainB: Domain;
  a: Net;
  b: Net;
  trace: string[];
}

function world(seed: string | number, options: Partial<SimNetOptions> = {}): World {
  const scheduler = new Scheduler({ seed, stepsMax: 2_000_000 });
  const trace: string[] = [];
  scheduler.traceSink = (line) => trace.push(line);
  const network = new SimNetwork(scheduler, scheduler.rng.split('net'), options);
  const domainA = new Domain('a');
  const domainB = new Domain('b');
  return { scheduler, network, domainA, domainB, a: network.host(A, domainA), b: network.host(B, domainB), trace };
}

interface End {
  conn: Connection;
  chunks: Uint8Array[];
  closes: (Error | undefined)[];
  closedAtMs: number | undefined;
  drains: number;
  bytes(): number;
  data(): Uint8Array;
}

function end(w: World, conn: Connection, read = true): End {
  const e: End = {
    conn,
    chunks: [],
    closes: [],
    closedAtMs: undefined,
    drains: 0,
    bytes: () => e.chunks.reduce((n, c) => n + c.length, 0),
    data: () => Buffer.concat(e.chunks),
  };
  if (read) conn.onData((chunk) => e.chunks.push(chunk));
  conn.onDrain(() => e.drains++);
  conn.onClose((error) => {
    e.closedAtMs ??= w.scheduler.nowMs();
    e.closes.push(error);
  });
  return e;
}

/** A listens on PORT, B connects; returns both ends. */
async function connected(w: World, serverReads = true): Promise<{ server: End; client: End }> {
  let server: End | undefined;
  await w.scheduler.runUntilSettled(w.a.listen(A, PORT, (conn) => { server = end(w, conn, serverReads); }), 'listen');
  const client = end(w, await w.scheduler.runUntilSettled(w.b.connect(A, PORT), 'connect'));
  await w.scheduler.run({ done: () => server !== undefined });
  expect(server).toBeDefined();
  return { server: server as End, client };
}

function bytesOf(length: number, seed: number): Uint8Array {
  return new SimRng(seed).bytes(length);
}

async function connectError(w: World, net: Net, host: string, port: number, timeoutMs?: number): Promise<NetError> {
  const result = await w.scheduler.runUntilSettled(
    net.connect(host, port, timeoutMs === undefined ? undefined : { timeoutMs }).then(
      () => undefined,
      (err: unknown) => err,
    ),
    'connect',
  );
  expect(result).toBeInstanceOf(NetError);
  return result as NetError;
}

function bitsDiffering(x: Uint8Array, y: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < x.length; i++) {
    let v = x[i] ^ y[i];
    while (v) {
      n += v & 1;
      v >>>= 1;
    }
  }
  return n;
}

describe('SimNetwork options', () => {
  it.each([
    [{ latencyMsMin: 10, latencyMsMax: 5 }, /latencyMsMax/],
    [{ latencyMsMin: -1 }, /latencyMsMin/],
    [{ latencyMsMax: 1.5 }, /latencyMsMax/],
    [{ bitFlipProbability: 2 }, /bitFlipProbability/],
    [{ resetProbability: -0.1 }, /resetProbability/],
    [{ stallProbability: Number.NaN }, /stallProbability/],
    [{ stallMsMax: 0 }, /stallMsMax/],
    [{ bandwidthBytesPerMs: -1 }, /bandwidthBytesPerMs/],
    [{ sendBufferHighWaterBytes: 0 }, /sendBufferHighWaterBytes/],
    [{ sendBufferHighWaterBytes: 100, sendBufferBytesMax: 10 }, /sendBufferBytesMax/],
    [{ segmentBytesMax: 0 }, /segmentBytesMax/],
    [{ connectTimeoutMs: 0 }, /connectTimeoutMs/],
    [{ latencyMS: 3 } as Partial<SimNetOptions>, /latencyMS: unknown/],
  ])('rejects %o with a RangeError naming the field', (options, field) => {
    const scheduler = new Scheduler({ seed: 1 });
    expect(() => new SimNetwork(scheduler, scheduler.rng, options)).toThrow(RangeError);
    expect(() => new SimNetwork(scheduler, scheduler.rng, options)).toThrow(field);
  });
});

describe('SimNetwork timing and refusals', () => {
  it('delivers after the configured latency, preserving order (seed lat-1)', async () => {
    const w = world('lat-1', { latencyMsMin: 20, latencyMsMax: 20 });
    const t0 = w.scheduler.nowMs();
    const { server, client } = await connected(w);
    expect(w.scheduler.nowMs() - t0).toBe(40); // syn + synack
    const sentAtMs = w.scheduler.nowMs();
    client.conn.write(bytesOf(10, 1));
    await w.scheduler.run({ done: () => server.bytes() === 10 });
    expect(w.scheduler.nowMs() - sentAtMs).toBe(20);
  });

  it('keeps order under wide latency jitter and random splits (seed jitter-1)', async () => {
    const w = world('jitter-1', { latencyMsMin: 0, latencyMsMax: 500, splitProbability: 0.5, segmentBytesMax: 1000 });
    const { server, client } = await connected(w);
    const sent: Uint8Array[] = [];
    for (let i = 0; i < 200; i++) {
      sent.push(bytesOf(1 + (i % 37) * 50, i));
      client.conn.write(sent[i]);
    }
    const all = Buffer.concat(sent);
    await w.scheduler.run({ done: () => server.bytes() >= all.length });
    expect(Buffer.compare(server.data(), all)).toBe(0);
    expect(server.chunks.length).toBeGreaterThan(sent.length);
  });

  it('refuses a port nobody listens on after a round trip (seed refuse-1)', async () => {
    const w = world('refuse-1', { latencyMsMin: 7, latencyMsMax: 7 });
    const error = await connectError(w, w.b, A, 4242);
    expect(error.code).toBe('ECONNREFUSED');
    expect(w.scheduler.nowMs()).toBe(14);
    expect(w.trace.some((l) => l.startsWith('net refuse'))).toBe(true);
    expect(w.network.connectionCount()).toBe(0);
  });

  it('times out connecting to an unknown host at exactly the timeout (seed unknown-1)', async () => {
    const w = world('unknown-1');
    const error = await connectError(w, w.b, '10.9.9.9', PORT, 1234);
    expect(error.code).toBe('ETIMEDOUT');
    expect(w.scheduler.nowMs()).toBe(1234);
  });

  it('rejects listening on an address the host lacks or a port in use (seed listen-1)', async () => {
    const w = world('listen-1');
    await expect(w.a.listen(B, PORT, () => {})).rejects.toMatchObject({ code: 'EADDRNOTAVAIL' });
    await w.a.listen(A, PORT, () => {});
    await expect(w.a.listen('0.0.0.0', PORT, () => {})).rejects.toMatchObject({ code: 'EADDRINUSE' });
  });

  it('limits bandwidth: 1 MiB at 100 bytes/ms takes at least 10.4 s (seed bw-1)', async () => {
    const w = world('bw-1', { bandwidthBytesPerMs: 100, sendBufferHighWaterBytes: 2 * 1024 * 1024 });
    const { server, client } = await connected(w);
    const startMs = w.scheduler.nowMs();
    const data = bytesOf(1024 * 1024, 2);
    expect(client.conn.write(data)).toBe(true);
    await w.scheduler.run({ done: () => server.bytes() >= data.length });
    expect(w.scheduler.nowMs() - startMs).toBeGreaterThanOrEqual((1024 * 1024) / 100);
    expect(w.scheduler.nowMs() - startMs).toBeLessThan((1024 * 1024) / 100 + 100);
  });

  it('stalls a direction, traced, without losing or reordering bytes (seed stall-1)', async () => {
    const w = world('stall-1', { latencyMsMin: 1, latencyMsMax: 1, stallProbability: 0.5, stallMsMax: 1000 });
    const { server, client } = await connected(w);
    const startMs = w.scheduler.nowMs();
    const sent: Uint8Array[] = [];
    for (let i = 0; i < 20; i++) {
      sent.push(bytesOf(100, i));
      client.conn.write(sent[i]);
    }
    await w.scheduler.run({ done: () => server.bytes() >= 2000 });
    expect(Buffer.compare(server.data(), Buffer.concat(sent))).toBe(0);
    const stalls = w.trace.filter((l) => l.startsWith('net stall'));
    expect(stalls.length).toBeGreaterThan(3);
    // The direction is held for the longest stall, but stalls that overlap do not add up.
    const lengths = stalls.map((l) => Number(/ (\d+)ms$/.exec(l)?.[1]));
    const elapsed = w.scheduler.nowMs() - startMs;
    expect(elapsed).toBeGreaterThanOrEqual(Math.max(...lengths));
    expect(elapsed).toBeLessThan(lengths.reduce((a, b) => a + b, 0));
  });

  it('a server that destroys on accept: connect still succeeds, then the client sees a reset (seed accept-1)', async () => {
    const w = world('accept-1');
    await w.scheduler.runUntilSettled(w.a.listen(A, PORT, (conn) => conn.destroy()), 'listen');
    const client = end(w, await w.scheduler.runUntilSettled(w.b.connect(A, PORT), 'connect'));
    await w.scheduler.run();
    expect(client.closes.length).toBe(1);
    expect((client.closes[0] as NetError).code).toBe('ECONNRESET');
  });

  it('pushes back on a writer whose peer does not read, and drains when it does (seed bp-1)', async () => {
    const w = world('bp-1', { sendBufferHighWaterBytes: 64 * 1024, sendBufferBytesMax: 1024 * 1024 });
    const { server, client } = await connected(w, false);
    let writes = 0;
    while (client.conn.write(bytesOf(16 * 1024, writes))) writes++;
    expect(writes).toBe(3); // the 4th write reaches 64 KiB
    await w.scheduler.run({ untilMs: w.scheduler.nowMs() + 10_000 });
    expect(client.drains).toBe(0);
    // A writer that ignores backpressure runs into the hard cap, loudly.
    expect(() => client.conn.write(new Uint8Array(1024 * 1024))).toThrow(/ENOBUFS/);
    server.conn.onData((chunk) => server.chunks.push(chunk));
    await w.scheduler.run({ done: () => client.drains === 1 });
    expect(server.bytes()).toBe(64 * 1024);
  });
});

describe('SimNetwork partition, hold, reset, bit flips, crash', () => {
  it('partition holds bytes and fails connects; repair delivers everything in order (seed part-1)', async () => {
    const w = world('part-1', { partitionTimeoutMs: 60_000 });
    const { server, client } = await connected(w);
    w.network.partition(A, B);
    const data = bytesOf(200 * 1024, 3);
    client.conn.write(data);
    server.conn.write(bytesOf(1000, 4));
    await w.scheduler.run({ untilMs: w.scheduler.nowMs() + 1_000 });
    expect(server.bytes()).toBe(0);
    expect(client.bytes()).toBe(0);

    const t0 = w.scheduler.nowMs();
    const error = await connectError(w, w.b, A, PORT, 2_000);
    expect(error.code).toBe('ETIMEDOUT');
    expect(w.scheduler.nowMs() - t0).toBe(2_000);

    w.network.repair(A, B);
    await w.scheduler.run({ done: () => server.bytes() >= data.length && client.bytes() >= 1000 });
    expect(Buffer.compare(server.data(), data)).toBe(0);
    expect(Buffer.compare(client.data(), bytesOf(1000, 4))).toBe(0);
    expect(server.closes).toEqual([]);
    expect(client.closes).toEqual([]);
    expect(w.trace.some((l) => l === `net partition ${A}|${B}`)).toBe(true);
    expect(w.trace.some((l) => l === `net repair ${A}|${B}`)).toBe(true);
    // The link works again for new connections too.
    const again = await w.scheduler.runUntilSettled(w.b.connect(A, PORT), 'connect after repair');
    again.destroy();
  });

  it('a connect whose syn is held by a partition succeeds if repaired in time (seed part-2)', async () => {
    const w = world('part-2');
    await w.scheduler.runUntilSettled(w.a.listen(A, PORT, () => {}), 'listen');
    w.network.partition(A, B);
    let conn: Connection | undefined;
    void w.b.connect(A, PORT, { timeoutMs: 5_000 }).then((c) => { conn = c; });
    await w.scheduler.run({ untilMs: 3_000 });
    expect(conn).toBeUndefined();
    w.network.repair(A, B);
    await w.scheduler.run({ done: () => conn !== undefined });
    expect(conn).toBeDefined();
  });

  it('a partition outlasting partitionTimeoutMs breaks connections with ETIMEDOUT on both sides (seed part-3)', async () => {
    const w = world('part-3', { partitionTimeoutMs: 10_000 });
    const { server, client } = await connected(w);
    const t0 = w.scheduler.nowMs();
    w.network.partition(A, B);
    client.conn.write(bytesOf(100, 5));
    await w.scheduler.run({ done: () => server.closes.length > 0 && client.closes.length > 0 });
    expect((server.closes[0] as NetError).code).toBe('ETIMEDOUT');
    expect((client.closes[0] as NetError).code).toBe('ETIMEDOUT');
    expect(server.closedAtMs).toBe(t0 + 10_000);
    expect(server.bytes()).toBe(0);
    w.network.repair(A, B);
    await w.scheduler.run();
    expect(server.closes.length).toBe(1);
    expect(client.closes.length).toBe(1);
    expect(w.network.connectionCount()).toBe(0);
  });

  it('hold delays without loss and without timeouts; release delivers (seed hold-1)', async () => {
    const w = world('hold-1', { partitionTimeoutMs: 1_000 });
    const { server, client } = await connected(w);
    w.network.hold(A, B);
    const data = bytesOf(300 * 1024, 6);
    client.conn.write(data);
    await w.scheduler.run({ untilMs: w.scheduler.nowMs() + 60_000 });
    expect(server.bytes()).toBe(0);
    expect(server.closes).toEqual([]);
    w.network.release(A, B);
    await w.scheduler.run({ done: () => server.bytes() >= data.length });
    expect(Buffer.compare(server.data(), data)).toBe(0);
    expect(w.trace.some((l) => l === `net hold ${A}|${B}`)).toBe(true);
    expect(w.trace.some((l) => l === `net release ${A}|${B}`)).toBe(true);
  });

  it('a fin held on the link from an already closed end still arrives after release (seed hold-2)', async () => {
    const w = world('hold-2', { latencyMsMin: 5, latencyMsMax: 5 });
    const { server, client } = await connected(w);
    client.conn.end();
    // The server closes on the client's fin and answers with its own fin, in flight now.
    await w.scheduler.run({ done: () => server.closes.length > 0 });
    w.network.hold(A, B);
    await w.scheduler.run({ untilMs: w.scheduler.nowMs() + 1_000 });
    expect(client.closes).toEqual([]);
    w.network.release(A, B);
    await w.scheduler.run();
    expect(client.closes).toEqual([undefined]);
    expect(server.closes).toEqual([undefined]);
    expect(w.network.connectionCount()).toBe(0);
  });

  it('flips one bit in about bitFlipProbability of chunks, each traced (seed flip-1)', async () => {
    const chunks = 2_000;
    const w = world('flip-1', { bitFlipProbability: 0.1 });
    const { server, client } = await connected(w);
    const sent: Uint8Array[] = [];
    for (let i = 0; i < chunks; i++) {
      sent.push(bytesOf(32, 1000 + i));
      client.conn.write(sent[i]);
    }
    await w.scheduler.run({ done: () => server.chunks.length >= chunks });
    expect(server.chunks.length).toBe(chunks);
    let flipped = 0;
    for (let i = 0; i < chunks; i++) {
      const bits = bitsDiffering(server.chunks[i], sent[i]);
      expect(bits).toBeLessThanOrEqual(1);
      flipped += bits;
    }
    const traced = w.trace.filter((l) => l.startsWith('net bitflip')).length;
    expect(traced).toBe(flipped);
    // Binomial(2000, 0.1): mean 200, sd ~13.4; +-60 is > 4 sd.
    expect(flipped).toBeGreaterThan(140);
    expect(flipped).toBeLessThan(260);
  });

  it('resets instead of delivering: both sides see ECONNRESET once (seed reset-1)', async () => {
    const w = world('reset-1', { resetProbability: 1 });
    const { server, client } = await connected(w);
    client.conn.write(bytesOf(100, 7));
    await w.scheduler.run();
    expect(server.bytes()).toBe(0);
    expect(server.closes.length).toBe(1);
    expect(client.closes.length).toBe(1);
    expect((server.closes[0] as NetError).code).toBe('ECONNRESET');
    expect((client.closes[0] as NetError).code).toBe('ECONNRESET');
    expect(w.trace.some((l) => l.startsWith('net reset'))).toBe(true);
    expect(client.conn.write(bytesOf(1, 8))).toBe(false);
    expect(w.network.connectionCount()).toBe(0);
  });

  it('with a small reset rate the stream is cut somewhere, and what arrived is a prefix (seed reset-2)', async () => {
    const w = world('reset-2', { resetProbability: 0.01 });
    const { server, client } = await connected(w);
    const sent: Uint8Array[] = [];
    for (let i = 0; i < 1_000; i++) {
      sent.push(bytesOf(64, i));
      client.conn.write(sent[i]);
    }
    await w.scheduler.run();
    expect(server.closes.length).toBe(1);
    const got = server.data();
    const all = Buffer.concat(sent);
    expect(got.length).toBeLessThan(all.length);
    expect(Buffer.compare(got, all.subarray(0, got.length))).toBe(0);
  });

  it('crashHost: the peer sees ECONNRESET after latency, the dead side runs nothing, listeners are gone (seed crash-1)', async () => {
    const w = world('crash-1', { latencyMsMin: 10, latencyMsMax: 10 });
    const { server, client } = await connected(w, false);
    server.conn.onData(() => expect.fail('a crashed host must not run callbacks'));
    client.conn.write(bytesOf(100, 9)); // in flight at the crash
    const crashAtMs = w.scheduler.nowMs();
    w.network.crashHost(A);
    expect(w.domainA.alive).toBe(false);
    await w.scheduler.run();
    expect(client.closes.length).toBe(1);
    expect((client.closes[0] as NetError).code).toBe('ECONNRESET');
    expect(client.closedAtMs).toBe(crashAtMs + 10);
    expect(server.closes).toEqual([]);
    expect(w.trace).toContain(`net crash ${A}`);

    // Restarted: the old port is free and nobody listens on it until asked.
    const a2 = w.network.host(A, new Domain('a2'));
    expect((await connectError(w, w.b, A, PORT)).code).toBe('ECONNREFUSED');
    await w.scheduler.runUntilSettled(a2.listen(A, PORT, () => {}), 'listen after restart');
    const conn = await w.scheduler.runUntilSettled(w.b.connect(A, PORT), 'connect after restart');
    conn.destroy();
  });

  it('crashHost of the client resets the server side; connects to a crashed host time out (seed crash-2)', async () => {
    const w = world('crash-2');
    const { server } = await connected(w);
    w.network.crashHost(B);
    await w.scheduler.run();
    expect(server.closes.length).toBe(1);
    expect((server.closes[0] as NetError).code).toBe('ECONNRESET');

    w.network.crashHost(A);
    const c = w.network.host('10.0.0.3', new Domain('c'));
    expect((await connectError(w, c, A, PORT, 500)).code).toBe('ETIMEDOUT');
  });
});

describe('SimNetwork determinism', () => {
  async function scenario(seed: string): Promise<{ hash: string; received: string }> {
    const w = world(seed, {
      latencyMsMin: 1,
      latencyMsMax: 50,
      bitFlipProbability: 0.05,
      stallProbability: 0.1,
      splitProbability: 0.3,
      segmentBytesMax: 4096,
      resetProbability: 0.001,
    });
    const { server, client } = await connected(w);
    for (let i = 0; i < 100; i++) client.conn.write(bytesOf(1000, i));
    await w.scheduler.run({ untilMs: w.scheduler.nowMs() + 200 });
    w.network.partition(A, B);
    await w.scheduler.run({ untilMs: w.scheduler.nowMs() + 500 });
    w.network.repair(A, B);
    await w.scheduler.run();
    return { hash: w.scheduler.traceHash(), received: Buffer.from(server.data()).toString('base64') };
  }

  it('same seed gives the same trace hash and bytes; another seed does not', async () => {
    const first = await scenario('det-1');
    const again = await scenario('det-1');
    const other = await scenario('det-2');
    expect(again.hash).toBe(first.hash);
    expect(again.received).toBe(first.received);
    expect(other.hash).not.toBe(first.hash);
  });
});

describe('SimNetwork property: lossless faults never corrupt the stream', () => {
  it('any writes under jitter, stalls, splits and bandwidth arrive complete and in order, then close once', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        fc.array(fc.integer({ min: 0, max: 100_000 }), { minLength: 1, maxLength: 20 }),
        fc.record({
          latencyMsMin: fc.integer({ min: 0, max: 20 }),
          latencySpreadMs: fc.integer({ min: 0, max: 200 }),
          stallProbability: fc.double({ min: 0, max: 0.3, noNaN: true }),
          splitProbability: fc.double({ min: 0, max: 0.5, noNaN: true }),
          segmentBytesMax: fc.integer({ min: 1, max: 70_000 }),
          bandwidthBytesPerMs: fc.constantFrom(0, 1_000, 100_000),
        }),
        async (seed, sizes, o) => {
          const w = world(seed, {
            latencyMsMin: o.latencyMsMin,
            latencyMsMax: o.latencyMsMin + o.latencySpreadMs,
            stallProbability: o.stallProbability,
            splitProbability: o.splitProbability,
            segmentBytesMax: Math.max(o.segmentBytesMax, 256),
            bandwidthBytesPerMs: o.bandwidthBytesPerMs,
          });
          const { server, client } = await connected(w);
          const sent = sizes.map((n, i) => bytesOf(n, seed + i));
          for (const s of sent) client.conn.write(s);
          client.conn.end();
          await w.scheduler.run();
          const all = Buffer.concat(sent);
          expect(Buffer.compare(server.data(), all), `seed ${seed}`).toBe(0);
          expect(server.closes).toEqual([undefined]);
          expect(client.closes).toEqual([undefined]);
          expect(w.network.connectionCount()).toBe(0);
        },
      ),
      { numRuns: 40, seed: 20240601 },
    );
  });
});
