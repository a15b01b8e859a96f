// Space allocator for the block data file. Best fit over free extents, else the
// end of the allocated region. The free list lives in the `freespace` table and
// every change to it is written into the same layer (transaction) as the block
// pointers it serves, so the allocator's durable state always matches them.
//
// Space freed in transaction N is quarantined until N is durable: before that, a
// crash could bring back a durable pointer to it, so its bytes must not be
// overwritten.
//
// Pins: a live master's replication log refers to the extents of new blocks
// instead of copying their bytes (BLOCKREF, see replication/master-log.ts), so an
// extent it still needs to send must not be reused even once freed. The log
// installs a predicate; a freed extent it matches waits in `held` (durably free
// in the freespace table all along) until `unpin` finds it no longer needed.

import { assert, AssertionError } from '../errors.ts';
import type { Layer } from './layers.ts';
import { alignExtent, decodeFreeKey, EMPTY, freeKey, T } from './schema.ts';

export interface Extent {
  offsetBytes: number;
  lengthBytes: number;
}

export class Allocator {
  /** length -> offsets of free extents of exactly that length. */
  private readonly free = new Map<number, number[]>();
  /** Distinct free lengths, ascending (for best fit). */
  private lengths: number[] = [];
  private freeBytesTotal = 0;
  private pinned: ((extent: Extent) => boolean) | undefined;
  /** Freed extents still pinned: free on disk, not allocatable yet. */
  private held: Extent[] = [];
  private heldBytesTotal = 0;

  constructor(public dataEndBytes: number) {}

  /** Load the durable free list (entries of the freespace table). */
  static load(dataEndBytes: number, entries: Iterable<{ key: Uint8Array }>): Allocator {
    const a = new Allocator(dataEndBytes);
    for (const { key } of entries) {
      const { lengthBytes, offsetBytes } = decodeFreeKey(key);
      if (!(offsetBytes + lengthBytes <= dataEndBytes)) throw new AssertionError(`free extent ${offsetBytes}+${lengthBytes} past data end ${dataEndBytes}`);
      a.addFree(offsetBytes, lengthBytes);
    }
    return a;
  }

  get freeBytes(): number {
    return this.freeBytesTotal;
  }

  /**
   * Bytes of free extents that hold whole pieces of `pieceBytes` (a best fit
   * takes a piece from a longer extent and leaves the rest free): what new
   * blocks of up to that size can take without the data file growing.
   */
  roomFor(pieceBytes: number, limitEnd = Infinity): number {
    const need = alignExtent(Math.max(1, pieceBytes));
    let room = 0;
    for (let i = lowerBound(this.lengths, need); i < this.lengths.length; i++) {
      const len = this.lengths[i];
      const offsets = this.free.get(len) as number[];
      if (limitEnd === Infinity) {
        room += offsets.length * Math.floor(len / need) * need;
        continue;
      }
      for (const offsetBytes of offsets) room += Math.floor(Math.max(0, Math.min(len, limitEnd - offsetBytes)) / need) * need;
    }
    return room;
  }

  /** Free extents kept from reuse by pins. */
  get heldBytes(): number {
    return this.heldBytesTotal;
  }
  get heldExtents(): number {
    return this.held.length;
  }

  /**
   * Install the pin predicate and move every free extent it matches (or that
   * overlaps what it matches: the caller decides) out of the free list.
   */
  setPins(pinned: (extent: Extent) => boolean): void {
    this.pinned = pinned;
    for (const len of [...this.lengths]) {
      const offsets = this.free.get(len) as number[];
      const keep: number[] = [];
      for (const offsetBytes of offsets) {
        if (pinned({ offsetBytes, lengthBytes: len })) this.hold({ offsetBytes, lengthBytes: len });
        else keep.push(offsetBytes);
      }
      this.freeBytesTotal -= (offsets.length - keep.length) * len;
      offsets.length = 0;
      offsets.push(...keep);
      this.removeLengthIfEmpty(len);
    }
  }

  /** Pins were dropped: held extents no longer pinned become allocatable. */
  unpin(): void {
    if (this.held.length === 0) return;
    const still: Extent[] = [];
    for (const e of this.held) {
      if (this.pinned?.(e)) still.push(e);
      else {
        this.heldBytesTotal -= e.lengthBytes;
        this.addFree(e.offsetBytes, e.lengthBytes);
      }
    }
    this.held = still;
  }

  private hold(e: Extent): void {
    this.held.push(e);
    this.heldBytesTotal += e.lengthBytes;
  }

  /**
   * Allocate space for `storedBytes`, recording the change in `layer`. With
   * `limitEnd`, a free extent is taken only if the piece ends by it (free
   * space in the data file the disk may not back: see FsEngine.admitNewData);
   * else the allocated region grows.
   */
  allocate(storedBytes: number, layer: Layer, limitEnd = Infinity): Extent {
    const need = alignExtent(Math.max(1, storedBytes));
    const fit = this.fit(need, limitEnd);
    if (fit === undefined) {
      const offsetBytes = this.dataEndBytes;
      this.dataEndBytes += need;
      return { offsetBytes, lengthBytes: need };
    }
    const { len, index } = fit;
    const offsets = this.free.get(len) as number[];
    const offsetBytes = offsets[index];
    offsets[index] = offsets[offsets.length - 1];
    offsets.pop();
    this.removeLengthIfEmpty(len);
    this.freeBytesTotal -= len;
    layer.del(T.freespace, freeKey(len, offsetBytes));
    if (len > need) {
      // The remainder stays free (it was durable-free already, so no quarantine).
      this.addFree(offsetBytes + need, len - need);
      layer.put(T.freespace, freeKey(len - need, offsetBytes + need), EMPTY);
    }
    return { offsetBytes, lengthBytes: need };
  }

  /**
   * Record an extent as free in `layer`'s transaction. It becomes allocatable
   * only when `release` is called after that transaction is durable.
   */
  freeInto(extent: Extent, layer: Layer, quarantine: Extent[]): void {
    if (!(extent.offsetBytes + extent.lengthBytes <= this.dataEndBytes)) throw new AssertionError(`freeing ${extent.offsetBytes}+${extent.lengthBytes} past data end`);
    layer.put(T.freespace, freeKey(extent.lengthBytes, extent.offsetBytes), EMPTY);
    quarantine.push(extent);
  }

  /** The transaction that freed these extents is durable: reuse them. */
  release(quarantine: readonly Extent[]): void {
    for (const e of quarantine) {
      if (this.pinned?.(e)) this.hold(e);
      else this.addFree(e.offsetBytes, e.lengthBytes);
    }
  }

  private addFree(offsetBytes: number, lengthBytes: number): void {
    let list = this.free.get(lengthBytes);
    if (!list) {
      list = [];
      this.free.set(lengthBytes, list);
      const i = lowerBound(this.lengths, lengthBytes);
      this.lengths.splice(i, 0, lengthBytes);
    }
    list.push(offsetBytes);
    this.freeBytesTotal += lengthBytes;
  }

  /** Best fit: the shortest free length that holds `need` (the newest offset of it), within limitEnd. */
  private fit(need: number, limitEnd: number): { len: number; index: number } | undefined {
    for (let i = lowerBound(this.lengths, need); i < this.lengths.length; i++) {
      const len = this.lengths[i];
      const offsets = this.free.get(len) as number[];
      for (let index = offsets.length - 1; index >= 0; index--) {
        if (offsets[index] + need <= limitEnd) return { len, index };
      }
    }
    return undefined;
  }

  private removeLengthIfEmpty(len: number): void {
    const list = this.free.get(len);
    if (list && list.length === 0) {
      this.free.delete(len);
      const i = lowerBound(this.lengths, len);
      this.lengths.splice(i, 1);
    }
  }
}

function lowerBound(sorted: number[], x: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
