// fast-check arbitraries for workload operations (small namespace so operations
// collide; contents from the block pool so dedup is exercised).

import fc from 'fast-check';
import { NAMES, POOL_PATTERNS, type Op } from '../../src/sim/workload.ts';

export function pathArb(depthMax = 3): fc.Arbitrary<string> {
  return fc.array(fc.constantFrom(...NAMES), { minLength: 1, maxLength: depthMax }).map((p) => `/${p.join('/')}`);
}

export function opArb(blockSizeBytes: number, options: { remount?: boolean; depthMax?: number } = {}): fc.Arbitrary<Op> {
  const bs = blockSizeBytes;
  const path = pathArb(options.depthMax);
  const offset = fc.oneof(fc.constantFrom(0, 1, 100, bs - 1, bs, 2 * bs + 7, 3 * bs), fc.nat(5 * bs));
  const length = fc.oneof(fc.constantFrom(1, bs, 2 * bs, bs + 1), fc.integer({ min: 1, max: 4 * bs }));
  const arbs: Array<fc.WeightedArbitrary<Op>> = [
    { weight: 6, arbitrary: path.map((p): Op => ({ op: 'create', path: p })) },
    { weight: 4, arbitrary: path.map((p): Op => ({ op: 'mkdir', path: p })) },
    {
      weight: 12,
      arbitrary: fc
        .record({ path, offsetBytes: offset, pool: fc.nat(POOL_PATTERNS - 1), lengthBytes: length })
        .map((r): Op => ({ op: 'write', ...r })),
    },
    {
      weight: 3,
      arbitrary: fc
        .record({ path, sizeBytes: fc.oneof(fc.constantFrom(0, 10, bs, bs + 5, 4 * bs), fc.nat(5 * bs)) })
        .map((r): Op => ({ op: 'truncate', ...r })),
    },
    { weight: 5, arbitrary: fc.record({ path, offsetBytes: offset, lengthBytes: length }).map((r): Op => ({ op: 'read', ...r })) },
    { weight: 3, arbitrary: path.map((p): Op => ({ op: 'unlink', path: p })) },
    { weight: 2, arbitrary: path.map((p): Op => ({ op: 'rmdir', path: p })) },
    { weight: 4, arbitrary: fc.record({ from: path, to: path }).map((r): Op => ({ op: 'rename', ...r })) },
    { weight: 2, arbitrary: fc.record({ from: path, to: path }).map((r): Op => ({ op: 'link', ...r })) },
    { weight: 1, arbitrary: fc.record({ target: path, path }).map((r): Op => ({ op: 'symlink', ...r })) },
    { weight: 1, arbitrary: path.map((p): Op => ({ op: 'readlink', path: p })) },
    { weight: 2, arbitrary: fc.oneof(path, fc.constant('/')).map((p): Op => ({ op: 'readdir', path: p })) },
    { weight: 2, arbitrary: path.map((p): Op => ({ op: 'stat', path: p })) },
    { weight: 2, arbitrary: path.map((p): Op => ({ op: 'fsync', path: p })) },
    { weight: 1, arbitrary: fc.constant<Op>({ op: 'commit' }) },
  ];
  if (options.remount) arbs.push({ weight: 1, arbitrary: fc.constant<Op>({ op: 'remount' }) });
  return fc.oneof(...arbs);
}
