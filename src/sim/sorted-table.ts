// An immutable ordered map of byte keys for the simulated store: a sorted list
// of sorted chunks (a two-level B-tree). Editing copies only the chunks it
// touches, so every committed state is a cheap snapshot: range iterators keep
// reading the snapshot they started on (LMDB's read transactions do the same)
// and power loss reverts by swapping back to the last durable snapshot.

import { AssertionError } from '../core/errors.ts';

/** Split a chunk above this many entries; ~100k keys make ~300 chunks. */
const CHUNK_ENTRIES_MAX = 512;
/** Merge a chunk below this many entries into a neighbour, so deletes cannot leave a long list of tiny chunks. */
const CHUNK_ENTRIES_MIN = 64;

interface Chunk {
  keys: Uint8Array[];
  values: Uint8Array[];
}

/**
 * Bytewise, unsigned, shorter prefix first (LMDB's order). A JS loop: for the
 * short keys core uses it measured 36 ns against 88 ns for Buffer.compare.
 */
export function compareKeys(a: Uint8Array, b: Uint8Array): number {
  const n = a.length < b.length ? a.length : b.length;
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return a.length - b.length;
}

function lowerBound(keys: readonly Uint8Array[], key: Uint8Array): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareKeys(keys[mid], key) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Index of the first chunk whose last key is >= key (chunks.length if none). */
function chunkFor(chunks: readonly Chunk[], key: Uint8Array): number {
  let lo = 0;
  let hi = chunks.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const keys = chunks[mid].keys;
    if (compareKeys(keys[keys.length - 1], key) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export interface SortedRange {
  /** Inclusive lower bound. */
  start?: Uint8Array;
  /** Exclusive upper bound. */
  end?: Uint8Array;
  limit?: number;
  reverse?: boolean;
}

export class SortedTable {
  static readonly EMPTY = new SortedTable([], 0, 0);

  private constructor(
    private readonly chunks: readonly Chunk[],
    /** Number of entries. */
    readonly count: number,
    /** Sum of key and value lengths. */
    readonly bytes: number,
  ) {}

  /** The stored value (not a copy: callers must copy before handing it out). */
  get(key: Uint8Array): Uint8Array | undefined {
    const ci = chunkFor(this.chunks, key);
    if (ci === this.chunks.length) return undefined;
    const chunk = this.chunks[ci];
    const ki = lowerBound(chunk.keys, key);
    if (ki < chunk.keys.length && compareKeys(chunk.keys[ki], key) === 0) return chunk.values[ki];
    return undefined;
  }

  /** Entries in order (stored arrays, not copies). */
  *entries(range: SortedRange = {}): Generator<[Uint8Array, Uint8Array]> {
    const { start, end, reverse } = range;
    let left = range.limit ?? Infinity;
    if (left <= 0) return;
    const chunks = this.chunks;
    if (!reverse) {
      let ci = start ? chunkFor(chunks, start) : 0;
      let ki = start && ci < chunks.length ? lowerBound(chunks[ci].keys, start) : 0;
      for (; ci < chunks.length; ci++, ki = 0) {
        const { keys, values } = chunks[ci];
        for (; ki < keys.length; ki++) {
          if (end && compareKeys(keys[ki], end) >= 0) return;
          yield [keys[ki], values[ki]];
          if (--left <= 0) return;
        }
      }
      return;
    }
    let ci: number;
    let ki: number;
    if (end) {
      ci = chunkFor(chunks, end);
      if (ci === chunks.length) {
        ci = chunks.length - 1;
        ki = ci >= 0 ? chunks[ci].keys.length - 1 : -1;
      } else {
        ki = lowerBound(chunks[ci].keys, end) - 1;
      }
    } else {
      ci = chunks.length - 1;
      ki = ci >= 0 ? chunks[ci].keys.length - 1 : -1;
    }
    while (ci >= 0) {
      const { keys, values } = chunks[ci];
      for (; ki >= 0; ki--) {
        if (start && compareKeys(keys[ki], start) < 0) return;
        yield [keys[ki], values[ki]];
        if (--left <= 0) return;
      }
      ci--;
      if (ci >= 0) ki = chunks[ci].keys.length - 1;
    }
  }

  /** A mutable copy-on-write draft; this snapshot stays unchanged. */
  edit(): SortedTableDraft {
    return new SortedTableDraft(this.chunks.slice(), this.count, this.bytes, SortedTable.fromDraft);
  }

  private static fromDraft(chunks: Chunk[], count: number, bytes: number): SortedTable {
    return count === 0 ? SortedTable.EMPTY : new SortedTable(chunks, count, bytes);
  }

  chunkCount(): number {
    return this.chunks.length;
  }

  /** Check ordering and counters (tests and debugging; O(n)). */
  verify(): void {
    let count = 0;
    let bytes = 0;
    let prev: Uint8Array | undefined;
    for (const chunk of this.chunks) {
      if (chunk.keys.length === 0 || chunk.keys.length !== chunk.values.length) throw new AssertionError('sorted-table: bad chunk');
      for (let i = 0; i < chunk.keys.length; i++) {
        const key = chunk.keys[i];
        if (prev && compareKeys(prev, key) >= 0) throw new AssertionError('sorted-table: keys out of order');
        prev = key;
        count++;
        bytes += key.length + chunk.values[i].length;
      }
    }
    if (count !== this.count || bytes !== this.bytes) {
      throw new AssertionError(`sorted-table: counters ${this.count}/${this.bytes} but holds ${count}/${bytes}`);
    }
  }
}

export class SortedTableDraft {
  /** Chunks created by this draft, which it may mutate in place. */
  private readonly owned = new Set<Chunk>();
  private finished = false;

  constructor(
    private readonly chunks: Chunk[],
    private count: number,
    private bytes: number,
    private readonly make: (chunks: Chunk[], count: number, bytes: number) => SortedTable,
  ) {}

  /** Stores key and value as given: the caller hands over copies it will not touch. */
  put(key: Uint8Array, value: Uint8Array): void {
    this.assertOpen();
    const chunks = this.chunks;
    if (chunks.length === 0) {
      const chunk = { keys: [key], values: [value] };
      this.owned.add(chunk);
      chunks.push(chunk);
      this.count++;
      this.bytes += key.length + value.length;
      return;
    }
    let ci = chunkFor(chunks, key);
    if (ci === chunks.length) ci--; // beyond every key: append to the last chunk
    const chunk = this.own(ci);
    const ki = lowerBound(chunk.keys, key);
    if (ki < chunk.keys.length && compareKeys(chunk.keys[ki], key) === 0) {
      this.bytes += value.length - chunk.values[ki].length;
      chunk.values[ki] = value;
      return;
    }
    chunk.keys.splice(ki, 0, key);
    chunk.values.splice(ki, 0, value);
    this.count++;
    this.bytes += key.length + value.length;
    if (chunk.keys.length > CHUNK_ENTRIES_MAX) {
      const half = chunk.keys.length >>> 1;
      const right = { keys: chunk.keys.splice(half), values: chunk.values.splice(half) };
      this.owned.add(right);
      chunks.splice(ci + 1, 0, right);
    }
  }

  /** True when the key existed. */
  delete(key: Uint8Array): boolean {
    this.assertOpen();
    const chunks = this.chunks;
    const ci = chunkFor(chunks, key);
    if (ci === chunks.length) return false;
    const ki = lowerBound(chunks[ci].keys, key);
    if (ki >= chunks[ci].keys.length || compareKeys(chunks[ci].keys[ki], key) !== 0) return false;
    const chunk = this.own(ci);
    this.bytes -= chunk.keys[ki].length + chunk.values[ki].length;
    this.count--;
    chunk.keys.splice(ki, 1);
    chunk.values.splice(ki, 1);
    if (chunk.keys.length === 0) {
      chunks.splice(ci, 1);
    } else if (chunk.keys.length < CHUNK_ENTRIES_MIN) {
      // Into a neighbour when both fit: no two neighbouring chunks stay small,
      // so there are at most 2 * count / CHUNK_ENTRIES_MIN + 1 chunks.
      if (ci + 1 < chunks.length && chunk.keys.length + chunks[ci + 1].keys.length <= CHUNK_ENTRIES_MAX) {
        const next = chunks[ci + 1];
        chunk.keys.push(...next.keys);
        chunk.values.push(...next.values);
        chunks.splice(ci + 1, 1);
      } else if (ci > 0 && chunk.keys.length + chunks[ci - 1].keys.length <= CHUNK_ENTRIES_MAX) {
        const prev = this.own(ci - 1);
        prev.keys.push(...chunk.keys);
        prev.values.push(...chunk.values);
        chunks.splice(ci, 1);
      }
    }
    return true;
  }

  /** Seal the draft into an immutable snapshot; the draft is unusable afterwards. */
  finish(): SortedTable {
    this.assertOpen();
    this.finished = true;
    return this.make(this.chunks, this.count, this.bytes);
  }

  private own(ci: number): Chunk {
    const chunk = this.chunks[ci];
    if (this.owned.has(chunk)) return chunk;
    const copy = { keys: chunk.keys.slice(), values: chunk.values.slice() };
    this.owned.add(copy);
    this.chunks[ci] = copy;
    return copy;
  }

  private assertOpen(): void {
    if (this.finished) throw new AssertionError('sorted-table: draft used after finish()');
  }
}
