// Block-sized buffers recycled between the writer (the FUSE layer's copy of each
// write) and the engine (which hands a block's buffer back once its bytes are in
// the data file). Without it every 128 KiB write is garbage, and on these
// machines the garbage collector let 100-250 MB of such buffers pile up.
//
// Only buffers this pool made are taken back (tracked by ArrayBuffer), and a
// buffer is given back only by the one path that owns it last (see FsEngine).

export class BlockBufferPool {
  private readonly free: Uint8Array[] = [];
  private readonly ours = new WeakSet<ArrayBufferLike>();

  constructor(
    readonly blockSizeBytes: number,
    readonly keepMax: number,
  ) {}

  /** A block-sized buffer (contents undefined). */
  take(): Uint8Array {
    const b = this.free.pop();
    if (b) return b;
    const fresh = new Uint8Array(this.blockSizeBytes);
    this.ours.add(fresh.buffer);
    return fresh;
  }

  /** Whether bytes (or a view into it) lives in one of this pool's buffers. */
  owns(bytes: Uint8Array): boolean {
    return this.ours.has(bytes.buffer);
  }

  /** Give back the buffer under bytes; nothing may use it afterwards. */
  give(bytes: Uint8Array): void {
    if (!this.owns(bytes) || this.free.length >= this.keepMax) return;
    this.free.push(new Uint8Array(bytes.buffer, 0, this.blockSizeBytes));
  }

  get idle(): number {
    return this.free.length;
  }
}
