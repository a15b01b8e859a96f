// The oracle: a plain in-memory tree with Linux semantics for the operations
// the workload issues. It checks errors in the same order the engine does
// (path resolution, then existence, then type rules), so every result,
// error code included, must match.

export type ModelNode = ModelFile | ModelDir | ModelLink;

export interface ModelFile {
  kind: 'file';
  data: Uint8Array;
  mode: number;
}

export interface ModelDir {
  kind: 'dir';
  entries: Map<string, ModelNode>;
  mode: number;
}

export interface ModelLink {
  kind: 'symlink';
  target: string;
}

export class ModelError extends Error {
  constructor(readonly code: string) {
    super(code);
  }
}

const fail = (code: string): never => {
  throw new ModelError(code);
};

export class ModelFs {
  readonly root: ModelDir = { kind: 'dir', entries: new Map(), mode: 0o755 };

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

  create(path: string): void {
    const { dir, name } = this.parentOf(path);
    if (dir.entries.has(name)) fail('EEXIST');
    dir.entries.set(name, { kind: 'file', data: new Uint8Array(0), mode: 0o644 });
  }

  mkdir(path: string): void {
    const { dir, name } = this.parentOf(path);
    if (dir.entries.has(name)) fail('EEXIST');
    dir.entries.set(name, { kind: 'dir', entries: new Map(), mode: 0o755 });
  }

  symlink(target: string, path: string): void {
    const { dir, name } = this.parentOf(path);
    if (dir.entries.has(name)) fail('EEXIST');
    dir.entries.set(name, { kind: 'symlink', target });
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
    dir.entries.set(name, n);
  }

  unlink(path: string): void {
    const { dir, name } = this.parentOf(path);
    const n = dir.entries.get(name);
    if (!n) fail('ENOENT');
    if ((n as ModelNode).kind === 'dir') fail('EISDIR');
    dir.entries.delete(name);
  }

  rmdir(path: string): void {
    const { dir, name } = this.parentOf(path);
    const n = dir.entries.get(name);
    if (!n) fail('ENOENT');
    if ((n as ModelNode).kind !== 'dir') fail('ENOTDIR');
    if ((n as ModelDir).entries.size > 0) fail('ENOTEMPTY');
    dir.entries.delete(name);
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
    }
    a.dir.entries.delete(a.name);
    b.dir.entries.set(b.name, m);
  }

  private isAncestor(dir: ModelDir, node: ModelDir): boolean {
    for (const child of dir.entries.values()) {
      if (child === node) return true;
      if (child.kind === 'dir' && this.isAncestor(child, node)) return true;
    }
    return false;
  }

  write(path: string, offsetBytes: number, data: Uint8Array): void {
    const f = this.file(path);
    const end = offsetBytes + data.length;
    if (end > f.data.length) {
      const grown = new Uint8Array(end);
      grown.set(f.data);
      f.data = grown;
    }
    f.data.set(data, offsetBytes);
  }

  truncate(path: string, sizeBytes: number): void {
    const f = this.file(path);
    const next = new Uint8Array(sizeBytes);
    next.set(f.data.subarray(0, Math.min(sizeBytes, f.data.length)));
    f.data = next;
  }

  read(path: string, offsetBytes: number, length: number): Uint8Array {
    const f = this.file(path);
    return f.data.slice(Math.min(offsetBytes, f.data.length), Math.min(offsetBytes + length, f.data.length));
  }

  readdir(path: string): string[] {
    const n = this.resolve(path);
    if (n.kind !== 'dir') fail('ENOTDIR');
    return [...(n as ModelDir).entries.keys()].sort();
  }

  /** Link count as POSIX reports it. */
  nlink(node: ModelNode): number {
    if (node.kind === 'dir') return 2 + [...node.entries.values()].filter((c) => c.kind === 'dir').length;
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
      for (const [name, c] of [...d.entries].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))) {
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

  clone(): ModelFs {
    const copy = new ModelFs();
    const map = new Map<ModelNode, ModelNode>();
    const cloneNode = (n: ModelNode): ModelNode => {
      const seen = map.get(n);
      if (seen) return seen;
      let c: ModelNode;
      if (n.kind === 'file') c = { kind: 'file', data: n.data.slice(), mode: n.mode };
      else if (n.kind === 'symlink') c = { kind: 'symlink', target: n.target };
      else {
        const d: ModelDir = { kind: 'dir', entries: new Map(), mode: n.mode };
        map.set(n, d);
        for (const [k, v] of n.entries) d.entries.set(k, cloneNode(v));
        c = d;
      }
      map.set(n, c);
      return c;
    };
    for (const [k, v] of this.root.entries) copy.root.entries.set(k, cloneNode(v));
    return copy;
  }
}
