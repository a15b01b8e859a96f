// Random replication log contents and damage for the property tests of the
// log readers (live-log-scan, rotated-file): records of every kind, and what
// a crash, bit rot or a foreign writer leave of a file.

import fc from 'fast-check';
import { concat } from '../../src/core/bytes.ts';
import { type BlockPayload, type KvPayload, REPL_TABLE_IDS, type ReplTableName } from '../../src/core/replication/frames.ts';
import { nodePrimitives as P } from '../../src/real/primitives.ts';

export const kvArb: fc.Arbitrary<KvPayload> = fc.record({
  table: fc.constantFrom(...(Object.keys(REPL_TABLE_IDS) as ReplTableName[])),
  key: fc.uint8Array({ minLength: 1, maxLength: 40 }),
  value: fc.option(fc.uint8Array({ maxLength: 300 }), { nil: undefined }),
});

export const blockArb: fc.Arbitrary<BlockPayload> = fc.record({
  key: fc.uint8Array({ minLength: 1, maxLength: 40 }),
  codec: fc.constantFrom(...P.codecs.map((c) => c.id)),
  rawLength: fc.integer({ min: 1, max: 4096 }),
  stored: fc.uint8Array({ maxLength: 600 }),
});

/** What happened to the log after it was written: what a crash, bit rot or a foreign writer leave. */
export type Damage =
  | { kind: 'none' }
  | { kind: 'cut'; at: number }
  | { kind: 'flip'; at: number; mask: number }
  | { kind: 'garbage'; bytes: Uint8Array }
  | { kind: 'zeros'; length: number };

export const damageArb: fc.Arbitrary<Damage> = fc.oneof(
  fc.constant<Damage>({ kind: 'none' }),
  fc.nat().map((at): Damage => ({ kind: 'cut', at })),
  fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })).map(([at, mask]): Damage => ({ kind: 'flip', at, mask })),
  fc.uint8Array({ minLength: 1, maxLength: 64 }).map((bytes): Damage => ({ kind: 'garbage', bytes })),
  fc.integer({ min: 1, max: 700 }).map((length): Damage => ({ kind: 'zeros', length })),
);

export function damaged(log: Uint8Array, d: Damage): Uint8Array {
  switch (d.kind) {
    case 'none':
      return log;
    case 'cut':
      return log.subarray(0, d.at % (log.length + 1));
    case 'flip': {
      // A flipped bit in the header throws; in a frame it is a CRC (or length) failure: a tail that is not the end.
      const out = log.slice();
      out[d.at % out.length] ^= d.mask;
      return out;
    }
    case 'garbage':
      return concat(log, d.bytes);
    case 'zeros':
      return concat(log, new Uint8Array(d.length));
  }
}
