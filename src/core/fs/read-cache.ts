// The engine's cache of recently read blocks, keyed by block key (content
// addressed: an entry never goes stale while its key names the same bytes).
//
// Blocks read from the data file land in block buffers recycled by this cache:
// without that, every 128 KiB read was garbage, and a profile of a 1 GiB
// sequential read through FUSE showed a third of the process's CPU time in
// the garbage collector (main thread and its helper threads).
//
// A buffer goes back to the free list only when its entry has left the cache
// (evicted, dropped, or its load failed) and nobody holds it: every reader
// pins an entry while it copies out of it, and a load pins it until the read
// into its buffer has finished.

export interface CachedBlock {
  /** The block's bytes (a full block, zeros past the stored length). */
  readonly bytes: Promise<Uint8Array>;
  /** Readers copying out of it, plus one while its load runs. */
  pins: number;
  /** Gone from the cache: the buffer is recycled once pins reaches 0. */
  gone: boolean;
  /** The recycled buffer under bytes, if any. */
  readonly pooled: Uint8Array | undefined;
  /** The bytes once loaded: a reader copying at once needs no pin and no await. */
  ready: Uint8Array | undefined;
}

export class BlockReadCache {
  private readonly entries = new Map<string, CachedBlock>();
  private readonly free: Uint8Array[] = [];

  constructor(
    readonly blockSizeBytes: number,
    /** Entries kept (at least 2). */
    readonly maxEntries: number,
    /** Idle buffers kept for reuse. */
    private readonly freeMax: number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  has(k: string): boolean {
    return this.entries.has(k);
  }

  /** The entry for k, now the most recently used; undefined if not cached. */
  get(k: string): CachedBlock | undefined {
    const e = this.entries.get(k);
    if (e) {
      this.entries.delete(k);
      this.entries.set(k, e);
    }
    return e;
  }

  /** A block-sized buffer to load into (contents undefined). */
  buffer(): Uint8Array {
    return this.free.pop() ?? new Uint8Array(this.blockSizeBytes);
  }

  /**
   * Add an entry (replacing any for k), then evict the least recently used
   * ones beyond maxEntries. `pooled` must come from buffer(); pins starts as
   * given (1 for a load still writing into pooled).
   */
  add(k: string, bytes: Promise<Uint8Array>, pooled: Uint8Array | undefined, pins: number): CachedBlock {
    const e: CachedBlock = { bytes, pins, gone: false, pooled, ready: undefined };
    bytes.then(
      (b) => {
        e.ready = b;
      },
      () => undefined, // the load's owner and the readers handle the error
    );
    const old = this.entries.get(k);
    if (old) this.leave(k, old);
    this.entries.set(k, e);
    while (this.entries.size > this.maxEntries) {
      const [oldest, entry] = this.entries.entries().next().value as [string, CachedBlock];
      this.leave(oldest, entry);
    }
    return e;
  }

  /** Drop k's entry if it is still e (a failed load), or any entry for k (e undefined). */
  drop(k: string, e?: CachedBlock): void {
    const cur = this.entries.get(k);
    if (cur && (e === undefined || cur === e)) this.leave(k, cur);
  }

  unpin(e: CachedBlock): void {
    e.pins--;
    if (e.pins === 0 && e.gone) this.recycle(e);
  }

  private leave(k: string, e: CachedBlock): void {
    this.entries.delete(k);
    e.gone = true;
    if (e.pins === 0) this.recycle(e);
  }

  private recycle(e: CachedBlock): void {
    if (e.pooled && this.free.length < this.freeMax) this.free.push(e.pooled);
  }
}
