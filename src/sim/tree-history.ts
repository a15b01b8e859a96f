// The reference model's trees by digest, for an oracle that must continue
// from whichever tree a recovered node holds. Keeping a copy of the tree after
// every operation costs a copy of the whole tree per operation; instead the
// history keeps the operations and rebuilds a tree on demand: from the start of
// its segment (the tree a recovery continued from) or a recent checkpoint,
// replaying the operations up to the boundary where that digest was seen.

import type { ModelFs } from './model.ts';
import { applyToModel, type Op } from './workload.ts';

/** Operations between checkpoints (a rebuild replays at most this many after the newest one). */
const CHECKPOINT_OPS = 1000;
/** Checkpoints kept per segment (older trees rebuild from the segment's start). */
const CHECKPOINTS_KEPT = 4;

interface Segment {
  base: ModelFs;
  ops: Op[];
  /** Copies of the tree after ops[0..n), newest last. */
  checkpoints: Array<{ n: number; tree: ModelFs }>;
}

export class TreeHistory {
  private segment!: Segment;
  /** Digest -> where that tree was first seen (boundary n of a segment), or a tree kept as is. */
  private readonly where = new Map<string, { segment: Segment; n: number } | ModelFs>();

  constructor(
    start: ModelFs,
    private readonly blockSizeBytes: number,
  ) {
    this.restart(start);
  }

  /** Continue from this tree (a copy is kept): the start of a new segment. */
  restart(tree: ModelFs): void {
    this.segment = { base: tree.clone(), ops: [], checkpoints: [] };
    const d = tree.digest();
    if (!this.where.has(d)) this.where.set(d, { segment: this.segment, n: 0 });
  }

  /** `model` is the tree after applying op (which the history appends). */
  record(op: Op, model: ModelFs): void {
    const s = this.segment;
    s.ops.push(op);
    const d = model.digest();
    if (!this.where.has(d)) this.where.set(d, { segment: s, n: s.ops.length });
    if (s.ops.length % CHECKPOINT_OPS === 0) {
      s.checkpoints.push({ n: s.ops.length, tree: model.clone() });
      if (s.checkpoints.length > CHECKPOINTS_KEPT) s.checkpoints.shift();
    }
  }

  /** Keep a tree that is not on the recorded path (e.g. an operation in flight applied to a copy). */
  keep(tree: ModelFs): void {
    const d = tree.digest();
    if (!this.where.has(d)) this.where.set(d, tree.clone());
  }

  /** A fresh copy of the tree with this digest, if one was seen. */
  tree(digest: string): ModelFs | undefined {
    const w = this.where.get(digest);
    if (w === undefined) return undefined;
    if (!('segment' in w)) return w.clone();
    const { segment, n } = w;
    let from = 0;
    let tree: ModelFs | undefined;
    for (const c of segment.checkpoints) {
      if (c.n <= n) {
        from = c.n;
        tree = c.tree;
      }
    }
    const out = (tree ?? segment.base).clone();
    for (let i = from; i < n; i++) applyToModel(out, segment.ops[i], this.blockSizeBytes);
    if (out.digest() !== digest) throw new Error(`tree history: replaying ${n - from} operations gave digest ${out.digest()}, not ${digest}`);
    return out;
  }
}
