// Block-sized buffers recycled between the writer (the FUSE layer's copy of each
// write) and the engine (which hands a block's buffer back once its bytes are in
// the data file). Without it every 128 KiB write is garbage, and on these
// machines the garbage collector let 100-250 MB of such buffers pile up.
//
// Only buffers this pool made are taken back, and a buffer is given back only
// by the one path that owns it last (see FsEngine). With an `aligned` source
// (a data file written O_DIRECT, Disk.alignedBuffer) new buffers come from it
// while it has memory; those are never dropped, since their memory is not
// returned to the source: the pool keeps what it took.

export class BlockBufferPool {
  private readonly free: Uint8Array[] = [];
  /** Buffers of plain memory, by their own ArrayBuffer. */
  private readonly ours = new WeakSet<ArrayBufferLike>();
  /** Buffers from the aligned source: several share one ArrayBuffer, told apart by offset. */
  private readonly alignedStarts = new Map<ArrayBufferLike, Set<number>>();

  constructor(
    readonly blockSizeBytes: number,
    readonly keepMax: number,
    private readonly aligned?: (bytes: number) => Uint8Array | undefined,
  ) {}

  /** A block-sized buffer (contents undefined). */
  take(): Uint8Array {
    const b = this.free.pop();
    if (b) return b;
    const a = this.aligned?.(this.blockSizeBytes);
    if (a) {
      let starts = this.alignedStarts.get(a.buffer);
      if (!starts) this.alignedStarts.set(a.buffer, (starts = new Set()));
      starts.add(a.byteOffset);
      return a;
    }
    const fresh = new Uint8Array(this.blockSizeBytes);
    this.ours.add(fresh.buffer);
    return fresh;
  }

  /**
   * Whether bytes is (a view from the start of) one of this pool's buffers:
   * then bytes.byteOffset is the buffer's start.
   */
  owns(bytes: Uint8Array): boolean {
    return this.ours.has(bytes.buffer) || this.alignedStarts.get(bytes.buffer)?.has(bytes.byteOffset) === true;
  }

  /** The whole buffer under bytes, one of this pool's (see owns). */
  whole(bytes: Uint8Array): Uint8Array {
    return new Uint8Array(bytes.buffer, this.ours.has(bytes.buffer) ? 0 : bytes.byteOffset, this.blockSizeBytes);
  }

  /** Give back the buffer under bytes (a view from its start); nothing may use it afterwards. */
  give(bytes: Uint8Array): void {
    if (!this.owns(bytes)) return;
    const aligned = !this.ours.has(bytes.buffer);
    if (!aligned && this.free.length >= this.keepMax) return;
    this.free.push(this.whole(bytes));
  }

  get idle(): number {
    return this.free.length;
  }
}
