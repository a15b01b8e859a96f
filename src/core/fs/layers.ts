// Write-cache layers over the store. The active layer takes every mutation; a
// commit freezes it (it becomes the committing layer) and opens a fresh active
// layer on top, so writes continue while the store commits. Reads look through
// active -> committing -> store.
//
// Entries are grouped by the key's first 8 bytes (an inode or parent number in
// every ranged table), so a scan of one directory or one file's block map costs
// the size of that group, not of the whole cache. Keys of exactly 8 bytes (the
// inode, symlink and orphan tables) are their own group: they live in one flat
// map per table instead (no map per inode, which every new file's inode record
// would otherwise keep alive until the commit).

import type { Store, StoreOp } from '../drivers.ts';
import { binaryKey, compareBytes, prefixEnd } from '../bytes.ts';

export const GROUP_BYTES = 8;

interface Entry {
  key: Uint8Array;
  value: Uint8Array | undefined; // undefined = deleted
}

type Group = Map<string, Entry>;

export class Layer {
  private readonly tables = new Map<string, Map<string, Group>>();
  /** Entries whose key is exactly GROUP_BYTES long, by table. */
  private readonly singles = new Map<string, Group>();
  private entryCount = 0;

  constructor(public below: Layer | Store) {}

  get size(): number {
    return this.entryCount;
  }

  private group(table: string, key: Uint8Array, create: boolean): Group | undefined {
    let groups = this.tables.get(table);
    if (!groups) {
      if (!create) return undefined;
      groups = new Map();
      this.tables.set(table, groups);
    }
    const gk = binaryKey(key.subarray(0, GROUP_BYTES));
    let g = groups.get(gk);
    if (!g && create) {
      g = new Map();
      groups.set(gk, g);
    }
    return g;
  }

  /** undefined: not in this layer; null: deleted in this layer. */
  own(table: string, key: Uint8Array): Uint8Array | null | undefined {
    const e = key.length === GROUP_BYTES ? this.singles.get(table)?.get(binaryKey(key)) : this.group(table, key, false)?.get(binaryKey(key));
    if (!e) return undefined;
    return e.value ?? null;
  }

  get(table: string, key: Uint8Array): Uint8Array | undefined {
    // The map keys are made once, for whichever layers have the table and group.
    let gk: string | undefined;
    let hk: string | undefined;
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    let layer: Layer | Store = this;
    if (key.length === GROUP_BYTES) {
      while (layer instanceof Layer) {
        const e = layer.singles.get(table)?.get((hk ??= binaryKey(key)));
        if (e) return e.value;
        layer = layer.below;
      }
      return layer.get(table, key);
    }
    while (layer instanceof Layer) {
      const groups = layer.tables.get(table);
      if (groups) {
        gk ??= binaryKey(key.subarray(0, GROUP_BYTES));
        const e = groups.get(gk)?.get((hk ??= binaryKey(key)));
        // A deleted entry (value undefined) hides what is below.
        if (e) return e.value;
      }
      layer = layer.below;
    }
    return layer.get(table, key);
  }

  put(table: string, key: Uint8Array, value: Uint8Array | undefined): void {
    let g: Group | undefined;
    if (key.length === GROUP_BYTES) {
      g = this.singles.get(table);
      if (!g) {
        g = new Map();
        this.singles.set(table, g);
      }
    } else {
      g = this.group(table, key, true) as Group;
    }
    const hk = binaryKey(key);
    if (!g.has(hk)) this.entryCount++;
    g.set(hk, { key, value });
  }

  del(table: string, key: Uint8Array): void {
    this.put(table, key, undefined);
  }

  /** This layer's entries of one group, sorted by key. */
  private ownGroupSorted(table: string, prefix: Uint8Array): Entry[] {
    const g = this.group(table, prefix, false);
    const single = this.singles.get(table)?.get(binaryKey(prefix.subarray(0, GROUP_BYTES)));
    if (!g) return single ? [single] : [];
    const out = [...g.values()];
    if (single) out.push(single);
    return out.sort((a, b) => compareBytes(a.key, b.key));
  }

  /**
   * Live entries whose key starts with `prefix` (at least GROUP_BYTES long),
   * in key order, merged through all layers down to the store.
   */
  scanPrefix(table: string, prefix: Uint8Array, startAfter?: Uint8Array): Array<{ key: Uint8Array; value: Uint8Array }> {
    if (prefix.length < GROUP_BYTES) throw new RangeError(`scanPrefix needs a prefix of at least ${GROUP_BYTES} bytes`);
    const layers: Layer[] = [];
    let below: Layer | Store = this;
    while (below instanceof Layer) {
      layers.push(below);
      below = below.below;
    }
    // Topmost layer wins: collect overlay entries from bottom to top.
    const overlay = new Map<string, Entry>();
    for (let i = layers.length - 1; i >= 0; i--) {
      for (const e of layers[i].ownGroupSorted(table, prefix)) {
        if (startsWith(e.key, prefix)) overlay.set(binaryKey(e.key), e);
      }
    }
    const end = prefixEnd(prefix);
    const result: Array<{ key: Uint8Array; value: Uint8Array }> = [];
    for (const { key, value } of below.range(table, { start: prefix, end })) {
      const hk = binaryKey(key);
      const o = overlay.get(hk);
      if (o) continue; // overridden (merged below)
      if (startAfter && compareBytes(key, startAfter) <= 0) continue;
      result.push({ key, value });
    }
    for (const e of overlay.values()) {
      if (e.value === undefined) continue;
      if (startAfter && compareBytes(e.key, startAfter) <= 0) continue;
      result.push({ key: e.key, value: e.value });
    }
    result.sort((a, b) => compareBytes(a.key, b.key));
    return result;
  }

  /** Every entry of this layer as store operations (deletes included). */
  toOps(): StoreOp[] {
    const ops: StoreOp[] = [];
    for (const [table, groups] of this.tables) {
      for (const g of groups.values()) {
        for (const e of g.values()) ops.push({ table, key: e.key, value: e.value });
      }
    }
    for (const [table, g] of this.singles) {
      for (const e of g.values()) ops.push({ table, key: e.key, value: e.value });
    }
    return ops;
  }

  /** Entries of one table in this layer only (for hooks such as replication). */
  ownEntries(table: string): Entry[] {
    const out: Entry[] = [];
    const groups = this.tables.get(table);
    if (groups) for (const g of groups.values()) out.push(...g.values());
    const single = this.singles.get(table);
    if (single) out.push(...single.values());
    return out;
  }
}

function startsWith(key: Uint8Array, prefix: Uint8Array): boolean {
  if (key.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (key[i] !== prefix[i]) return false;
  return true;
}
