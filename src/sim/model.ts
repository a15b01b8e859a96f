// The oracle: a plain in-memory tree with Linux semantics for the operations
// the workload issues. It checks errors in the same order the engine does
// (path resolution, then existence, then type rules), so every result,
// error code included, must match.
//
// The tree keeps its digest (tree-digest.ts) up to date incrementally: each
// node caches its hash, a change clears the caches on the way to the root, and
// digest() rehashes only what was cleared. Files know the directories that
// link them (their link count) and directories their parent, so a change of a
// file's bytes or link count reaches every path that shows it.

import { contentHash, dirEntry, dirHash, fileEntry, symlinkEntry } from './tree-digest.ts';

export type ModelNode = ModelFile | ModelDir | ModelLink;

export interface ModelFile {
  kind: 'file';
  /** Read only outside ModelFs: changes go through its methods (they keep the digest caches true). */
  readonly data: Uint8Array;
  mode: number;
  /** The directories holding a link to this file, once per link: its link count is parents.length. */
  readonly parents: ModelDir[];
  /** Cached hash of data, and how a directory shows the file (undefined: to be recomputed). */
  contentHash: string | undefined;
  entry: string | undefined;
}

export interface ModelDir {
  kind: 'dir';
  entries: Map<string, ModelNode>;
  mode: number;
  parent: ModelDir | undefined;
  /** Cached hash of the subtree and entry names in byte order (undefined: to be recomputed). */
  hash: string | undefined;
  sorted: string[] | undefined;
}

export interface ModelLink {
  kind: 'symlink';
  target: string;
}

export class ModelError extends Error {
  constructor(readonly code: string) {
    // An expected outcome (the errno an operation must fail with), thrown and
    // caught on every failing operation: no stack trace to capture.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(code);
    Error.stackTraceLimit = limit;
  }
}

const fail = (code: string): never => {
  throw new ModelError(code);
};

const newDir = (parent: ModelDir | undefined, mode = 0o755): ModelDir => ({ kind: 'dir', entries: new Map(), mode, parent, hash: undefined, sorted: undefined });

const byBytes = (x: string, y: string): number => (x < y ? -1 : x > y ? 1 : 0);

/** Clear the cached hash of d and of every directory above it (a cleared one has its ancestors cleared already). */
function dirty(d: ModelDir | undefined): void {
  while (d !== undefined && d.hash !== undefined) {
    d.hash = undefined;
    d = d.parent;
  }
}

/** Entries of d changed (names or nodes). */
function entriesChanged(d: ModelDir): void {
  d.sorted = undefined;
  d.hash = undefined;
  dirty(d.parent);
}

/** A file's link count changed, or its bytes: every directory showing it rehashes. */
function fileChanged(f: ModelFile): void {
  f.entry = undefined;
  for (const d of f.parents) dirty(d);
}

function dropParent(f: ModelFile, d: ModelDir): void {
  const i = f.parents.indexOf(d);
  if (i < 0) throw new Error('model: a file unlinked from a directory that does not hold it');
  f.parents.splice(i, 1);
  fileChanged(f);
}

function addParent(f: ModelFile, d: ModelDir): void {
  f.parents.push(d);
  fileChanged(f);
}

export class ModelFs {
  readonly root: ModelDir = newDir(undefined);

  private parts(path: string): string[] {
    return path.split('/').filter((p) => p.length > 0);
  }

  private walk(parts: string[]): ModelNode {
    let node: ModelNode = this.root;
    for (const p of parts) {
      if (node.kind !== 'dir') fail('ENOTDIR');
      const next: ModelNode | undefined = (node as ModelDir).entries.get(p);
      if (!next) fail('ENOENT');
      node = next as ModelNode;
    }
    return node;
  }

  resolve(path: string): ModelNode {
    return this.walk(this.parts(path));
  }

  private parentOf(path: string): { dir: ModelDir; name: string } {
    const parts = this.parts(path);
    const name = parts.pop() as string;
    const dir = this.walk(parts);
    if (dir.kind !== 'dir') fail('ENOTDIR');
    return { dir: dir as ModelDir, name };
  }

  private file(path: string): ModelFile {
    const n = this.resolve(path);
    if (n.kind === 'dir') fail('EISDIR');
    if (n.kind !== 'file') fail('EINVAL');
    return n as ModelFile;
  }

  /** Put a node under a name that is free (or whose node the caller already unlinked). */
  private place(dir: ModelDir, name: string, n: ModelNode): void {
    dir.entries.set(name, n);
    entriesChanged(dir);
    if (n.kind === 'file') addParent(n, dir);
    else if (n.kind === 'dir') n.parent = dir;
  }

  /** Remove a name; a file loses that link. */
  private remove(dir: ModelDir, name: string, n: ModelNode): void {
    dir.entries.delete(name);
    entriesChanged(dir);
    if (n.kind === 'file') dropParent(n, dir);
  }

  create(path: string): void {
    const { dir, name } = this.parentOf(path);
    if (dir.entries.has(name)) fail('EEXIST');
    this.place(dir, name, { kind: 'file', data: new Uint8Array(0), mode: 0o644, parents: [], contentHash: undefined, entry: undefined });
  }

  mkdir(path: string): void {
    const { dir, name } = this.parentOf(path);
    if (dir.entries.has(name)) fail('EEXIST');
    this.place(dir, name, newDir(dir));
  }

  symlink(target: string, path: string): void {
    const { dir, name } = this.parentOf(path);
    if (dir.entries.has(name)) fail('EEXIST');
    this.place(dir, name, { kind: 'symlink', target });
  }

  readlink(path: string): string {
    const n = this.resolve(path);
    if (n.kind !== 'symlink') fail('EINVAL');
    return (n as ModelLink).target;
  }

  link(existing: string, path: string): void {
    const n = this.resolve(existing);
    const { dir, name } = this.parentOf(path);
    if (n.kind === 'dir') fail('EPERM');
    if (dir.entries.has(name)) fail('EEXIST');
    this.place(dir, name, n);
  }

  unlink(path: string): void {
    const { dir, name } = this.parentOf(path);
    const n = dir.entries.get(name);
    if (!n) fail('ENOENT');
    if ((n as ModelNode).kind === 'dir') fail('EISDIR');
    this.remove(dir, name, n as ModelNode);
  }

  rmdir(path: string): void {
    const { dir, name } = this.parentOf(path);
    const n = dir.entries.get(name);
    if (!n) fail('ENOENT');
    if ((n as ModelNode).kind !== 'dir') fail('ENOTDIR');
    if ((n as ModelDir).entries.size > 0) fail('ENOTEMPTY');
    this.remove(dir, name, n as ModelNode);
  }

  rename(from: string, to: string): void {
    const a = this.parentOf(from);
    const b = this.parentOf(to);
    const moving = a.dir.entries.get(a.name);
    if (!moving) fail('ENOENT');
    const m = moving as ModelNode;
    const target = b.dir.entries.get(b.name);
    if (target === m) return;
    if (m.kind === 'dir' && (b.dir === m || this.isAncestor(m, b.dir))) fail('EINVAL');
    if (target) {
      if (target.kind === 'dir') {
        if (m.kind !== 'dir') fail('EISDIR');
        if (target.entries.size > 0) fail('ENOTEMPTY');
      } else if (m.kind === 'dir') {
        fail('ENOTDIR');
      }
      this.remove(b.dir, b.name, target);
    }
    this.remove(a.dir, a.name, m);
    this.place(b.dir, b.name, m);
  }

  private isAncestor(dir: ModelDir, node: ModelDir): boolean {
    for (let d = node.parent; d !== undefined; d = d.parent) if (d === dir) return true;
    return false;
  }

  private setData(f: ModelFile, data: Uint8Array): void {
    (f as { data: Uint8Array }).data = data;
    f.contentHash = undefined;
    fileChanged(f);
  }

  write(path: string, offsetBytes: number, data: Uint8Array): void {
    const f = this.file(path);
    const end = offsetBytes + data.length;
    let next = f.data;
    if (end > next.length) {
      next = new Uint8Array(end);
      next.set(f.data);
    }
    next.set(data, offsetBytes);
    this.setData(f, next);
  }

  truncate(path: string, sizeBytes: number): void {
    const f = this.file(path);
    const next = new Uint8Array(sizeBytes);
    next.set(f.data.subarray(0, Math.min(sizeBytes, f.data.length)));
    this.setData(f, next);
  }

  read(path: string, offsetBytes: number, length: number): Uint8Array {
    const f = this.file(path);
    return f.data.slice(Math.min(offsetBytes, f.data.length), Math.min(offsetBytes + length, f.data.length));
  }

  /** Names of a directory in byte order (cached until its entries change; do not modify). */
  private names(d: ModelDir): string[] {
    if (d.sorted === undefined) d.sorted = [...d.entries.keys()].sort(byBytes);
    return d.sorted;
  }

  readdir(path: string): string[] {
    const n = this.resolve(path);
    if (n.kind !== 'dir') fail('ENOTDIR');
    return [...this.names(n as ModelDir)];
  }

  /** Link count as POSIX reports it. */
  nlink(node: ModelNode): number {
    if (node.kind === 'dir') {
      let subdirs = 0;
      for (const c of node.entries.values()) if (c.kind === 'dir') subdirs++;
      return 2 + subdirs;
    }
    if (node.kind === 'file') return node.parents.length;
    let n = 0;
    const visit = (d: ModelDir): void => {
      for (const c of d.entries.values()) {
        if (c === node) n++;
        if (c.kind === 'dir') visit(c);
      }
    };
    visit(this.root);
    return n;
  }

  /** Every path in the tree with a description of what is there. */
  listing(): Map<string, string> {
    const out = new Map<string, string>();
    const visit = (d: ModelDir, prefix: string): void => {
      for (const name of this.names(d)) {
        const c = d.entries.get(name) as ModelNode;
        const p = `${prefix}/${name}`;
        if (c.kind === 'dir') {
          out.set(p, `dir nlink=${this.nlink(c)}`);
          visit(c, p);
        } else if (c.kind === 'symlink') {
          out.set(p, `symlink -> ${c.target}`);
        } else {
          out.set(p, `file size=${c.data.length} nlink=${this.nlink(c)}`);
        }
      }
    };
    visit(this.root, '');
    return out;
  }

  /**
   * Paths of the regular files, and of the directories at most `dirDepthMax`
   * deep (the root as ''), in listing() order.
   */
  paths(dirDepthMax: number): { files: string[]; dirs: string[] } {
    const files: string[] = [];
    const dirs: string[] = [''];
    const visit = (d: ModelDir, prefix: string, depth: number): void => {
      for (const name of this.names(d)) {
        const c = d.entries.get(name) as ModelNode;
        const p = `${prefix}/${name}`;
        if (c.kind === 'file') files.push(p);
        else if (c.kind === 'dir') {
          if (depth + 1 <= dirDepthMax) dirs.push(p);
          visit(c, p, depth + 1);
        }
      }
    };
    visit(this.root, '', 0);
    return { files, dirs };
  }

  /** The digest of the whole tree (tree-digest.ts), as fsDigest computes it from an engine. */
  digest(): string {
    return this.dirHashOf(this.root);
  }

  private dirHashOf(d: ModelDir): string {
    if (d.hash === undefined) {
      const names = this.names(d);
      const entries = names.map((name) => this.entryOf(d.entries.get(name) as ModelNode));
      d.hash = dirHash(this.nlink(d), names, entries);
    }
    return d.hash;
  }

  private entryOf(n: ModelNode): string {
    if (n.kind === 'symlink') return symlinkEntry(n.target);
    if (n.kind === 'dir') return dirEntry(this.dirHashOf(n));
    if (n.entry === undefined) {
      if (n.contentHash === undefined) n.contentHash = contentHash(n.data);
      n.entry = fileEntry(n.data.length, n.parents.length, n.contentHash);
    }
    return n.entry;
  }

  /** A deep copy (hard links stay shared within the copy; digest caches are kept). */
  clone(): ModelFs {
    const copy = new ModelFs();
    const map = new Map<ModelNode, ModelNode>();
    const cloneInto = (from: ModelDir, to: ModelDir): void => {
      to.mode = from.mode;
      to.hash = from.hash;
      to.sorted = from.sorted;
      for (const [name, n] of from.entries) {
        let c = map.get(n);
        if (!c) {
          if (n.kind === 'file') c = { kind: 'file', data: n.data.slice(), mode: n.mode, parents: [], contentHash: n.contentHash, entry: n.entry };
          else if (n.kind === 'symlink') c = { kind: 'symlink', target: n.target };
          else {
            const d = newDir(to, n.mode);
            cloneInto(n, d);
            c = d;
          }
          map.set(n, c);
        }
        if (c.kind === 'file') c.parents.push(to);
        to.entries.set(name, c);
      }
    };
    cloneInto(this.root, copy.root);
    return copy;
  }
}
