import { describe, expect, it } from 'vitest';
import type { FileHandle } from '../../src/core/drivers.ts';
import { GATHER_BYTES_MAX, ReadQueue, WRITES_INFLIGHT_MAX, WriteQueue } from '../../src/core/fs/write-queue.ts';

const BLOCK = 128 * 1024;

/** A file whose writes finish only when the test says; it records each issued write. */
class HeldFile {
  readonly issued: Array<{ offset: number; lengths: number[]; done: () => void }> = [];
  readonly path = 'held';
  write(offset: number, data: Uint8Array): Promise<void> {
    return new Promise((done) => this.issued.push({ offset, lengths: [data.length], done }));
  }
  writev(offset: number, chunks: readonly Uint8Array[]): Promise<void> {
    return new Promise((done) => this.issued.push({ offset, lengths: chunks.map((c) => c.length), done }));
  }
  asHandle(): FileHandle {
    return this as unknown as FileHandle;
  }
}

const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('WriteQueue', () => {
  it('issues a write at once while fewer than WRITES_INFLIGHT_MAX are in flight', () => {
    const f = new HeldFile();
    const q = new WriteQueue(f.asHandle());
    void q.write(0, new Uint8Array(BLOCK));
    expect(f.issued).toHaveLength(1);
    expect(f.issued[0].lengths).toEqual([BLOCK]);
  });

  it('gathers only contiguous writes: a gap starts a new group', async () => {
    const f = new HeldFile();
    const q = new WriteQueue(f.asHandle(), 1);
    void q.write(0, new Uint8Array(BLOCK));
    void q.write(BLOCK, new Uint8Array(BLOCK));
    void q.write(2 * BLOCK, new Uint8Array(BLOCK));
    void q.write(10 * BLOCK, new Uint8Array(BLOCK));
    expect(f.issued.map((w) => w.offset)).toEqual([0]);
    f.issued[0].done();
    await settle();
    expect(f.issued.map((w) => [w.offset, w.lengths.length])).toEqual([[0, 1], [BLOCK, 2]]);
    f.issued[1].done();
    await settle();
    expect(f.issued.map((w) => w.offset)).toEqual([0, BLOCK, 10 * BLOCK]);
  });

  it('keeps at most WRITES_INFLIGHT_MAX writes in flight and no group above GATHER_BYTES_MAX', async () => {
    const f = new HeldFile();
    const q = new WriteQueue(f.asHandle());
    const total = (WRITES_INFLIGHT_MAX + 2) * GATHER_BYTES_MAX;
    for (let off = 0; off < total; off += BLOCK) void q.write(off, new Uint8Array(BLOCK));
    expect(f.issued).toHaveLength(WRITES_INFLIGHT_MAX);
    let next = 0;
    while (next < f.issued.length) {
      expect(f.issued.length - next).toBeLessThanOrEqual(WRITES_INFLIGHT_MAX);
      f.issued[next++].done();
      await settle();
    }
    let at = 0;
    for (const w of f.issued) {
      const size = w.lengths.reduce((a, b) => a + b, 0);
      expect(w.offset).toBe(at);
      expect(size).toBeLessThanOrEqual(GATHER_BYTES_MAX);
      at += size;
    }
    expect(at).toBe(total);
    // Once writes waited behind the full window, they went out gathered to the maximum.
    expect(f.issued.at(-2)?.lengths.length).toBe(GATHER_BYTES_MAX / BLOCK);
  });

  it('room() waits while more than QUEUED_BYTES_MAX is queued unissued and frees once writes are issued', async () => {
    const f = new HeldFile();
    const q = new WriteQueue(f.asHandle(), 1);
    for (let off = 0; off < 16 * GATHER_BYTES_MAX; off += BLOCK) void q.write(off, new Uint8Array(BLOCK));
    expect(q.backlogged).toBe(true);
    let roomy = false;
    void q.room().then(() => (roomy = true));
    await settle();
    expect(roomy).toBe(false);
    while (!roomy) {
      f.issued[f.issued.length - 1].done();
      await settle();
    }
    expect(q.backlogged).toBe(false);
  });
});

/** A file whose reads finish only when the test says (in any order). */
class HeldReads {
  readonly issued: Array<{ offset: number; done: () => void; fail: (err: Error) => void }> = [];
  read(offset: number, length: number): Promise<Uint8Array> {
    return new Promise((resolve, reject) => this.issued.push({ offset, done: () => resolve(new Uint8Array(length)), fail: reject }));
  }
  asHandle(): FileHandle {
    return this as unknown as FileHandle;
  }
}

describe('ReadQueue.settled', () => {
  it('waits for the reads issued before it (queued or in flight, failed or not), not for later ones', async () => {
    const f = new HeldReads();
    const q = new ReadQueue(f.asHandle(), 2);
    const early = [0, 1, 2].map((k) => q.read(k * BLOCK, BLOCK).catch(() => 'failed'));
    let settled = false;
    void q.settled().then(() => (settled = true));
    // A later caller waits for the same reads even though none was issued in between.
    let again = false;
    void q.settled().then(() => (again = true));
    const late = q.read(10 * BLOCK, BLOCK);
    f.issued[1].done();
    f.issued[0].fail(new Error('EIO'));
    await settle();
    expect(settled).toBe(false);
    // The third early read was queued behind the first two: issued now.
    expect(f.issued.map((r) => r.offset)).toEqual([0, BLOCK, 2 * BLOCK, 10 * BLOCK]);
    f.issued[2].done();
    await settle();
    expect([settled, again]).toEqual([true, true]);
    expect((await Promise.all(early)).map((r) => (typeof r === 'string' ? r : r.length))).toEqual(['failed', BLOCK, BLOCK]);
    // The late read is still in flight: it held up nothing.
    f.issued[3].done();
    expect(await late).toHaveLength(BLOCK);
    expect(await Promise.race([q.settled().then(() => 'idle'), settle().then(() => 'waiting')])).toBe('idle');
  });
});
