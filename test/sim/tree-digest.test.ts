// The tree digest: the model keeps it incrementally, and it must always equal
// a digest computed from scratch, equal the engine's digest of the same tree
// (fsDigest), and change with every fact a listing shows (name, kind, size,
// link count, symlink target, bytes). TreeHistory rebuilds any tree it saw.

import { describe, expect, it } from 'vitest';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { liveOp } from '../../src/sim/live-cluster.ts';
import { ModelFs, type ModelDir, type ModelNode } from '../../src/sim/model.ts';
import { SimRng } from '../../src/sim/rng.ts';
import { contentHash, dirEntry, dirHash, fileEntry, symlinkEntry } from '../../src/sim/tree-digest.ts';
import { TreeHistory } from '../../src/sim/tree-history.ts';
import { applyToFs, applyToModel, fsDigest, poolData, randomOp, sameResult, type Op } from '../../src/sim/workload.ts';
import { SimHarness } from '../support/harness.ts';

const BS = 4096;

/** The digest of a model tree from scratch (no cached hash used). */
function freshDigest(model: ModelFs): string {
  const walk = (d: ModelDir): string => {
    const names = [...d.entries.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const entries = names.map((name) => {
      const n = d.entries.get(name) as ModelNode;
      if (n.kind === 'dir') return dirEntry(walk(n));
      if (n.kind === 'symlink') return symlinkEntry(n.target);
      return fileEntry(n.data.length, model.nlink(n), contentHash(n.data));
    });
    return dirHash(model.nlink(d), names, entries);
  };
  return walk(model.root);
}

/** A workload mixing liveOp (mostly succeeds, hard links, renames into fresh names) and randomOp (errors). */
function ops(seed: number, count: number): Op[] {
  const rng = new SimRng(seed).split('digest-test');
  const shadow = new ModelFs();
  const out: Op[] = [];
  while (out.length < count) {
    const op = rng.chance(0.7) ? liveOp(rng, shadow, BS) : randomOp(rng, BS);
    if (op.op === 'commit' || op.op === 'remount') continue;
    applyToModel(shadow, op, BS);
    out.push(op);
  }
  return out;
}

describe('ModelFs.digest', () => {
  it('equals a digest from scratch after every operation (the caches never go stale)', () => {
    for (const seed of [1, 2, 3]) {
      const model = new ModelFs();
      for (const [i, op] of ops(seed, 400).entries()) {
        applyToModel(model, op, BS);
        expect(model.digest(), `seed ${seed} op ${i} ${JSON.stringify(op)}`).toBe(freshDigest(model));
      }
    }
  });

  it('changes with every fact of the tree, and a clone keeps it and is independent', () => {
    const base = (): ModelFs => {
      const m = new ModelFs();
      m.mkdir('/d');
      m.create('/d/f');
      m.write('/d/f', 0, poolData(BS, 1, 100));
      m.create('/g');
      m.symlink('/d/f', '/s');
      return m;
    };
    const d0 = base().digest();
    const variants: Array<[string, (m: ModelFs) => void]> = [
      ['a byte', (m) => m.write('/d/f', 50, new Uint8Array([0]))],
      ['the size (zeros appended)', (m) => m.truncate('/d/f', 101)],
      ['a link elsewhere (the link count of /d/f)', (m) => m.link('/d/f', '/h')],
      ['a symlink target', (m) => { m.unlink('/s'); m.symlink('/d/g', '/s'); }],
      ['a name', (m) => m.rename('/g', '/g2')],
      ['a move between directories', (m) => m.rename('/g', '/d/g')],
      ['a file replaced by a directory', (m) => { m.unlink('/g'); m.mkdir('/g'); }],
      ['an empty subdirectory (the parent link count)', (m) => m.mkdir('/d/e')],
    ];
    const seen = new Set([d0]);
    for (const [what, change] of variants) {
      const m = base();
      m.digest();
      change(m);
      const d = m.digest();
      expect(d, what).toBe(freshDigest(m));
      expect(seen.has(d), `${what}: the digest did not change`).toBe(false);
      seen.add(d);
    }
    const m = base();
    m.link('/d/f', '/h');
    const c = m.clone();
    expect(c.digest()).toBe(m.digest());
    c.write('/h', 0, new Uint8Array([9]));
    // Hard links stay shared within the clone: both of its paths show the write, the original none.
    expect(c.read('/d/f', 0, 1)).toEqual(new Uint8Array([9]));
    expect(c.digest()).toBe(freshDigest(c));
    expect(m.digest()).toBe(freshDigest(m));
    expect(m.digest()).not.toBe(c.digest());
  });

  it('equals fsDigest of the engine holding the same tree', async () => {
    for (const seed of [4, 5]) {
      const h = new SimHarness(seed);
      await h.format();
      const engine = await h.open();
      const fs = new PathFs(engine);
      const model = new ModelFs();
      for (const [i, op] of ops(seed, 150).entries()) {
        const want = applyToModel(model, op, BS);
        const got = await h.run(applyToFs(fs, op, BS));
        expect(sameResult(got, want), `op ${i} ${JSON.stringify(op)}: ${JSON.stringify(got)} vs ${JSON.stringify(want)}`).toBe(true);
        if (i % 5 === 4) expect(await h.run(fsDigest(fs)), `seed ${seed} after op ${i}`).toBe(model.digest());
      }
      // One byte written behind the model's back shows.
      const before = await h.run(fsDigest(fs));
      const [file] = model.paths(0).files;
      await h.run(fs.write(file, 0, new Uint8Array([model.read(file, 0, 1)[0] ^ 1])));
      expect(await h.run(fsDigest(fs))).not.toBe(before);
      await h.run(engine.close());
    }
  });
});

describe('TreeHistory', () => {
  it('rebuilds the tree of any digest it saw, across checkpoints and restarts', () => {
    let model = new ModelFs();
    const history = new TreeHistory(model, BS);
    const seen: Array<[string, string]> = [[model.digest(), freshDigest(model)]];
    const all = ops(6, 2600);
    for (const [i, op] of all.entries()) {
      applyToModel(model, op, BS);
      history.record(op, model);
      if (i % 97 === 0) seen.push([model.digest(), freshDigest(model)]);
      if (i === 1500) {
        // A recovery continues from an older tree: a new segment starts there.
        const back = history.tree(seen[3][0]);
        expect(back?.digest()).toBe(seen[3][0]);
        model = back as ModelFs;
        history.restart(model);
      }
    }
    const inflight = model.clone();
    applyToModel(inflight, { op: 'create', path: '/kept-aside' }, BS);
    history.keep(inflight);
    for (const [d, fresh] of [...seen, [inflight.digest(), freshDigest(inflight)] as [string, string]]) {
      const t = history.tree(d);
      expect(t, d).toBeDefined();
      expect(freshDigest(t as ModelFs)).toBe(fresh);
    }
    expect(history.tree('no such digest')).toBeUndefined();
  });
});
