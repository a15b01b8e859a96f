import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareBytes, toHex } from '../../src/core/bytes.ts';
import { SortedTable } from '../../src/sim/sorted-table.ts';
import { SimRng } from '../../src/sim/rng.ts';

function contents(table: SortedTable): string[] {
  return [...table.entries()].map(([k, v]) => `${toHex(k)}=${toHex(v)}`);
}

describe('SortedTable', () => {
  it('matches a reference map through many edits across chunk splits and merges (seed 1)', () => {
    const rng = new SimRng(1);
    const model = new Map<string, { key: Uint8Array; value: Uint8Array }>();
    let table = SortedTable.EMPTY;
    for (let round = 0; round < 40; round++) {
      const draft = table.edit();
      const before = contents(table);
      for (let i = 0; i < 500; i++) {
        const key = rng.bytes(1 + rng.int(3));
        if (rng.chance(round < 20 ? 0.2 : 0.6)) {
          expect(draft.delete(key)).toBe(model.delete(toHex(key)));
        } else {
          const value = rng.bytes(rng.int(4));
          draft.put(key, value);
          model.set(toHex(key), { key, value });
        }
      }
      const next = draft.finish();
      expect(() => draft.put(new Uint8Array([1]), new Uint8Array())).toThrow(/after finish/);
      expect(contents(table)).toEqual(before); // the old snapshot is untouched
      table = next;
      table.verify();
      if (round === 19) expect(table.chunkCount()).toBeGreaterThan(10);
      const expected = [...model.values()].sort((x, y) => compareBytes(x.key, y.key)).map((e) => `${toHex(e.key)}=${toHex(e.value)}`);
      expect(contents(table)).toEqual(expected);
      expect(table.count).toBe(model.size);
    }
    // Deletes dominated the last rounds: chunks were merged, not left tiny.
    expect(table.chunkCount()).toBeLessThanOrEqual((2 * table.count) / 64 + 1);
  });

  it('gets exactly what was put (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 3 }), fc.uint8Array({ maxLength: 3 })), { maxLength: 1500 }), (pairs) => {
        const draft = SortedTable.EMPTY.edit();
        const model = new Map<string, string>();
        for (const [k, v] of pairs) {
          draft.put(k, v);
          model.set(toHex(k), toHex(v));
        }
        const table = draft.finish();
        table.verify();
        for (const [k, v] of pairs) expect(toHex(table.get(k) as Uint8Array)).toBe(model.get(toHex(k)));
        expect(table.get(new Uint8Array([1, 2, 3, 4]))).toBeUndefined();
      }),
      { numRuns: 60, seed: 1 },
    );
  });
});
