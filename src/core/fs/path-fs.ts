// Path-addressed operations over the inode engine, as FUSE (fuse-native hands
// us paths) and the simulator's workloads use them. Resolution walks one keyed
// lookup per component: no directory scans.

import { FsError } from '../errors.ts';
import type { FsEngine } from './engine.ts';
import { isDir, ROOT_INO } from './schema.ts';
import type { DirEntry, SetAttr, Stat } from './types.ts';

export interface Caller {
  uid: number;
  gid: number;
}

const ROOT_CALLER: Caller = { uid: 0, gid: 0 };
/** Resolved paths kept (then the cache starts over). */
const PATH_CACHE_MAX = 16384;

export function splitPath(path: string): string[] {
  if (!path.startsWith('/')) throw new FsError('EINVAL', `path '${path}' is not absolute`);
  return path.split('/').filter((c) => c.length > 0);
}

export class PathFs {
  /**
   * Inodes of paths resolved before (the kernel asks for the same path several
   * times per file: getattr, create, getattr again). Valid while the engine's
   * namesGeneration stays the same: names only added leave it valid, a name
   * removed or replaced anywhere empties it.
   */
  private readonly paths = new Map<string, number>();
  private pathsGeneration = -1;

  constructor(readonly engine: FsEngine) {}

  private cachedPath(path: string): number | undefined {
    if (this.pathsGeneration !== this.engine.namesGeneration) {
      this.paths.clear();
      this.pathsGeneration = this.engine.namesGeneration;
      return undefined;
    }
    return this.paths.get(path);
  }

  private cachePath(path: string, ino: number): void {
    if (this.paths.size >= PATH_CACHE_MAX) this.paths.clear();
    this.paths.set(path, ino);
  }

  /** Inode of a path (symlinks are not followed: the kernel does that). */
  resolve(path: string): number {
    const ino = this.tryResolve(path);
    if (ino !== undefined) return ino;
    // Missing: walk again for the exact error (which component, ENOENT or ENOTDIR).
    let at = ROOT_INO;
    for (const name of splitPath(path)) at = this.engine.lookup(at, name).ino;
    return at;
  }

  /**
   * Inode of a path, or undefined when a component does not exist (a FUSE
   * lookup of a name about to be created: no error object is built). Other
   * failures (ENOTDIR, ENAMETOOLONG, EINVAL) throw as resolve does.
   */
  tryResolve(path: string): number | undefined {
    const cached = this.cachedPath(path);
    if (cached !== undefined) {
      this.engine.checkOpen();
      return cached;
    }
    // The parent's inode (often cached: files of one directory), then the name.
    const slash = path.lastIndexOf('/');
    if (slash > 0 && slash < path.length - 1 && path.charCodeAt(0) === 0x2f) {
      const parent = this.tryResolve(path.slice(0, slash));
      if (parent === undefined) return undefined;
      const ino = this.engine.lookupIno(parent, path.slice(slash + 1));
      if (ino !== undefined) this.cachePath(path, ino);
      return ino;
    }
    let ino: number | undefined = ROOT_INO;
    for (const name of splitPath(path)) {
      ino = this.engine.lookupIno(ino, name);
      if (ino === undefined) return undefined;
    }
    this.cachePath(path, ino);
    return ino;
  }

  /** Parent directory inode and final name of a path. */
  parentOf(path: string): { parent: number; name: string } {
    const slash = path.lastIndexOf('/');
    if (slash > 0 && slash < path.length - 1 && path.charCodeAt(0) === 0x2f) {
      const parent = this.tryResolve(path.slice(0, slash));
      if (parent !== undefined && isDir(this.engine.getattr(parent).mode)) return { parent, name: path.slice(slash + 1) };
      // Missing or not a directory: the walk below throws the exact error.
    }
    const parts = splitPath(path);
    const name = parts.pop();
    if (name === undefined) throw new FsError('EINVAL', 'the root has no parent');
    let parent = ROOT_INO;
    for (const c of parts) {
      const next = this.engine.lookupIno(parent, c);
      parent = next ?? this.engine.lookup(parent, c).ino; // missing: lookup throws the exact error
    }
    if (!isDir(this.engine.getattr(parent).mode)) throw new FsError('ENOTDIR', `'/${parts.join('/')}' is not a directory`);
    return { parent, name };
  }

  stat(path: string): Stat {
    return this.engine.getattr(this.resolve(path));
  }

  exists(path: string): boolean {
    try {
      this.resolve(path);
      return true;
    } catch (err) {
      if (err instanceof FsError && (err.code === 'ENOENT' || err.code === 'ENOTDIR')) return false;
      throw err;
    }
  }

  readdir(path: string): DirEntry[] {
    return this.engine.readdir(this.resolve(path));
  }

  create(path: string, mode = 0o644, caller: Caller = ROOT_CALLER): Stat {
    const { parent, name } = this.parentOf(path);
    return this.engine.mknod(parent, name, mode, caller.uid, caller.gid);
  }

  mknod(path: string, mode: number, rdev: number, caller: Caller = ROOT_CALLER): Stat {
    const { parent, name } = this.parentOf(path);
    return this.engine.mknod(parent, name, mode, caller.uid, caller.gid, rdev);
  }

  mkdir(path: string, mode = 0o755, caller: Caller = ROOT_CALLER): Stat {
    const { parent, name } = this.parentOf(path);
    return this.engine.mkdir(parent, name, mode, caller.uid, caller.gid);
  }

  symlink(target: string, path: string, caller: Caller = ROOT_CALLER): Stat {
    const { parent, name } = this.parentOf(path);
    return this.engine.symlink(parent, name, target, caller.uid, caller.gid);
  }

  readlink(path: string): string {
    return this.engine.readlink(this.resolve(path));
  }

  link(existing: string, path: string): Stat {
    const ino = this.resolve(existing);
    const { parent, name } = this.parentOf(path);
    return this.engine.link(ino, parent, name);
  }

  unlink(path: string): void {
    const { parent, name } = this.parentOf(path);
    this.engine.unlink(parent, name);
  }

  rmdir(path: string): void {
    const { parent, name } = this.parentOf(path);
    this.engine.rmdir(parent, name);
  }

  rename(from: string, to: string, flags: { noReplace?: boolean } = {}): void {
    const a = this.parentOf(from);
    const b = this.parentOf(to);
    this.engine.rename(a.parent, a.name, b.parent, b.name, flags);
  }

  setattr(path: string, attrs: SetAttr): Promise<Stat> {
    return this.engine.setattr(this.resolve(path), attrs);
  }

  truncate(path: string, sizeBytes: number): Promise<void> {
    return this.engine.truncate(this.resolve(path), sizeBytes);
  }

  read(path: string, offsetBytes: number, length: number): Promise<Uint8Array> {
    return this.engine.read(this.resolve(path), offsetBytes, length);
  }

  write(path: string, offsetBytes: number, data: Uint8Array): Promise<number> {
    return this.engine.write(this.resolve(path), offsetBytes, data);
  }

  async readFile(path: string): Promise<Uint8Array> {
    const ino = this.resolve(path);
    return this.engine.read(ino, 0, this.engine.getattr(ino).sizeBytes);
  }

  fsync(path?: string): Promise<void> {
    return this.engine.fsync(path === undefined ? undefined : this.resolve(path));
  }
}
