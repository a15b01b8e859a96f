import { describe, expect, it } from 'vitest';
import type { FileHandle } from '../../src/core/drivers.ts';
import { GATHER_BYTES_MAX, GATHER_BYTES_MIN, WRITES_INFLIGHT_MAX, WriteQueue } from '../../src/core/fs/write-queue.ts';

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
  it('holds a small contiguous tail until it reaches GATHER_BYTES_MIN, then issues it as one writev', async () => {
    const f = new HeldFile();
    const q = new WriteQueue(f.asHandle());
    const per = GATHER_BYTES_MIN / BLOCK;
    for (let i = 0; i < per - 1; i++) void q.write(i * BLOCK, new Uint8Array(BLOCK));
    expect(f.issued).toHaveLength(0);
    void q.write((per - 1) * BLOCK, new Uint8Array(BLOCK));
    expect(f.issued).toHaveLength(1);
    expect(f.issued[0].offset).toBe(0);
    expect(f.issued[0].lengths).toEqual(new Array(per).fill(BLOCK));
  });

  it('flush issues what is queued however small, and writes queued after it wait again', async () => {
    const f = new HeldFile();
    const q = new WriteQueue(f.asHandle());
    let resolved = 0;
    void q.write(0, new Uint8Array(BLOCK)).then(() => resolved++);
    void q.write(BLOCK, new Uint8Array(BLOCK)).then(() => resolved++);
    expect(f.issued).toHaveLength(0);
    q.flush();
    expect(f.issued).toHaveLength(1);
    expect(f.issued[0].lengths).toEqual([BLOCK, BLOCK]);
    void q.write(2 * BLOCK, new Uint8Array(BLOCK));
    expect(f.issued).toHaveLength(1);
    f.issued[0].done();
    await settle();
    expect(resolved).toBe(2);
    // The write queued after the flush is still held after the completion.
    expect(f.issued).toHaveLength(1);
    q.flush();
    expect(f.issued).toHaveLength(2);
    expect(f.issued[1].offset).toBe(2 * BLOCK);
  });

  it('issues a group at once when the next queued write is not contiguous with it', () => {
    const f = new HeldFile();
    const q = new WriteQueue(f.asHandle());
    void q.write(0, new Uint8Array(BLOCK));
    void q.write(10 * BLOCK, new Uint8Array(BLOCK));
    expect(f.issued.map((w) => w.offset)).toEqual([0]);
    q.flush();
    expect(f.issued.map((w) => w.offset)).toEqual([0, 10 * BLOCK]);
  });

  it('keeps at most WRITES_INFLIGHT_MAX writes in flight and no group above GATHER_BYTES_MAX', async () => {
    const f = new HeldFile();
    const q = new WriteQueue(f.asHandle());
    const total = (WRITES_INFLIGHT_MAX + 2) * GATHER_BYTES_MAX;
    for (let off = 0; off < total; off += BLOCK) void q.write(off, new Uint8Array(BLOCK));
    q.flush();
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
    // Once writes were held back behind the full window, they went out gathered to the maximum.
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
