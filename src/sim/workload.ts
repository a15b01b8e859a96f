// Filesystem workload operations, applied identically to the engine (through
// PathFs) and to the reference model. Contents come from a small pool of block
// patterns so the same blocks appear in many files and dedup is exercised.

import { DiskError, FsError } from '../core/errors.ts';
import { fingerprintData } from '../core/trace-format.ts';
import type { PathFs } from '../core/fs/path-fs.ts';
import { isDir, isLnk, isReg } from '../core/fs/schema.ts';
import { ModelError, type ModelFs } from './model.ts';
import type { SimRng } from './rng.ts';
import { contentHash, dirEntry, dirHash, fileEntry, symlinkEntry } from './tree-digest.ts';

export type Op =
  | { op: 'create'; path: string }
  | { op: 'mkdir'; path: string }
  /**
   * Content from the block pool starting at `pool`; or, for a replayed FUSE
   * trace, `fingerprints`: one per BLKSIZE-aligned piece, expanded into
   * deterministic bytes (core/trace-format.ts), and `pool` is unused.
   */
  | { op: 'write'; path: string; offsetBytes: number; pool: number; lengthBytes: number; fingerprints?: readonly string[] }
  | { op: 'truncate'; path: string; sizeBytes: number }
  | { op: 'read'; path: string; offsetBytes: number; lengthBytes: number }
  | { op: 'unlink'; path: string }
  | { op: 'rmdir'; path: string }
  | { op: 'rename'; from: string; to: string }
  | { op: 'link'; from: string; to: string }
  | { op: 'symlink'; target: string; path: string }
  | { op: 'readlink'; path: string }
  | { op: 'readdir'; path: string }
  | { op: 'stat'; path: string }
  | { op: 'fsync'; path: string }
  | { op: 'commit' }
  | { op: 'remount' };

export type OpResult = { ok: string } | { err: string };

/** Same outcome: both succeeded with the same value, or both failed with the same code. */
export function sameResult(a: OpResult, b: OpResult): boolean {
  return 'ok' in a ? 'ok' in b && a.ok === b.ok : 'err' in b && a.err === b.err;
}

/** Number of distinct block patterns; pattern 0 is all zeros (holes). */
export const POOL_PATTERNS = 6;

function patternByte(pattern: number, i: number): number {
  if (pattern === 0) return 0;
  // A cheap deterministic byte stream per pattern (xorshift-ish mix).
  let x = (Math.imul(i + 1, 0x9e3779b1) ^ Math.imul(pattern, 0x85ebca6b)) >>> 0;
  x ^= x >>> 15;
  x = Math.imul(x, 0x2c1b3c6d) >>> 0;
  x ^= x >>> 12;
  return x & 0xff;
}

/** One block of each pattern, per block size (computed once: writes copy from them). */
const patternBlocks = new Map<number, Uint8Array[]>();

function blocksOf(blockSizeBytes: number): Uint8Array[] {
  let blocks = patternBlocks.get(blockSizeBytes);
  if (!blocks) {
    blocks = [];
    for (let p = 0; p < POOL_PATTERNS; p++) {
      const b = new Uint8Array(blockSizeBytes);
      for (let i = 0; i < blockSizeBytes; i++) b[i] = patternByte(p, i);
      blocks.push(b);
    }
    patternBlocks.set(blockSizeBytes, blocks);
  }
  return blocks;
}

/** `blocks` incompressible blocks that no other tag repeats (no dedup between them). */
export function uniqueData(blockSizeBytes: number, tag: number, blocks: number): Uint8Array {
  const out = new Uint8Array(blocks * blockSizeBytes);
  const view = new DataView(out.buffer);
  for (let j = 0; j < out.length; j += 4) view.setUint32(j, Math.imul(tag * 0x1000000 + j + 1, 0x9e3779b1) >>> 0);
  return out;
}

/** Content of a write: consecutive pool blocks starting at `pool`. */
export function poolData(blockSizeBytes: number, pool: number, lengthBytes: number): Uint8Array {
  const blocks = blocksOf(blockSizeBytes);
  const out = new Uint8Array(lengthBytes);
  for (let at = 0, k = 0; at < lengthBytes; at += blockSizeBytes, k++) {
    const block = blocks[(pool + k) % POOL_PATTERNS];
    out.set(lengthBytes - at >= blockSizeBytes ? block : block.subarray(0, lengthBytes - at), at);
  }
  return out;
}

/** The bytes a write op stores. */
export function writeData(op: Extract<Op, { op: 'write' }>, blockSizeBytes: number): Uint8Array {
  return op.fingerprints ? fingerprintData(op.offsetBytes, op.lengthBytes, op.fingerprints, blockSizeBytes) : poolData(blockSizeBytes, op.pool, op.lengthBytes);
}

/** What a read result is compared by: its length and a hash of its bytes. */
function digest(bytes: Uint8Array): string {
  return `${bytes.length}:${contentHash(bytes)}`;
}

function errCode(err: unknown): string {
  // A DiskError reaches a caller as it is: a data write's ENOSPC at an fsync.
  if (err instanceof FsError || err instanceof ModelError || err instanceof DiskError) return err.code;
  throw err;
}

/** Apply an op to the engine. commit/remount are the caller's (they need the node). */
export async function applyToFs(fs: PathFs, op: Op, blockSizeBytes: number): Promise<OpResult> {
  try {
    switch (op.op) {
      case 'create': fs.create(op.path); return { ok: '' };
      case 'mkdir': fs.mkdir(op.path); return { ok: '' };
      case 'write': await fs.write(op.path, op.offsetBytes, writeData(op, blockSizeBytes)); return { ok: '' };
      case 'truncate': await fs.truncate(op.path, op.sizeBytes); return { ok: '' };
      case 'read': return { ok: digest(await fs.read(op.path, op.offsetBytes, op.lengthBytes)) };
      case 'unlink': fs.unlink(op.path); return { ok: '' };
      case 'rmdir': fs.rmdir(op.path); return { ok: '' };
      case 'rename': fs.rename(op.from, op.to); return { ok: '' };
      case 'link': fs.link(op.from, op.to); return { ok: '' };
      case 'symlink': fs.symlink(op.target, op.path); return { ok: '' };
      case 'readlink': return { ok: fs.readlink(op.path) };
      case 'readdir': return { ok: fs.readdir(op.path).map((e) => e.name).join(',') };
      case 'stat': {
        const st = fs.stat(op.path);
        const kind = isDir(st.mode) ? 'dir' : isLnk(st.mode) ? 'symlink' : isReg(st.mode) ? 'file' : 'other';
        return { ok: kind === 'file' ? `file size=${st.sizeBytes} nlink=${st.nlink}` : kind === 'dir' ? `dir nlink=${st.nlink}` : kind };
      }
      case 'fsync': await fs.fsync(op.path); return { ok: '' };
      case 'commit':
      case 'remount':
        throw new Error(`${op.op} is applied by the harness`);
    }
  } catch (err) {
    return { err: errCode(err) };
  }
}

export function applyToModel(model: ModelFs, op: Op, blockSizeBytes: number): OpResult {
  try {
    switch (op.op) {
      case 'create': model.create(op.path); return { ok: '' };
      case 'mkdir': model.mkdir(op.path); return { ok: '' };
      case 'write': model.write(op.path, op.offsetBytes, writeData(op, blockSizeBytes)); return { ok: '' };
      case 'truncate': model.truncate(op.path, op.sizeBytes); return { ok: '' };
      case 'read': return { ok: digest(model.read(op.path, op.offsetBytes, op.lengthBytes)) };
      case 'unlink': model.unlink(op.path); return { ok: '' };
      case 'rmdir': model.rmdir(op.path); return { ok: '' };
      case 'rename': model.rename(op.from, op.to); return { ok: '' };
      case 'link': model.link(op.from, op.to); return { ok: '' };
      case 'symlink': model.symlink(op.target, op.path); return { ok: '' };
      case 'readlink': return { ok: model.readlink(op.path) };
      case 'readdir': return { ok: model.readdir(op.path).join(',') };
      case 'stat': {
        const n = model.resolve(op.path);
        if (n.kind === 'file') return { ok: `file size=${n.data.length} nlink=${model.nlink(n)}` };
        if (n.kind === 'dir') return { ok: `dir nlink=${model.nlink(n)}` };
        return { ok: 'symlink' };
      }
      case 'fsync': model.resolve(op.path); return { ok: '' };
      case 'commit':
      case 'remount':
        return { ok: '' };
    }
  } catch (err) {
    return { err: errCode(err) };
  }
}

/** Every path of the engine's tree described as ModelFs.listing() does. */
export async function fsListing(fs: PathFs): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const visit = (dir: string, ino: number): void => {
    for (const e of fs.engine.readdir(ino).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const p = dir === '/' ? `/${e.name}` : `${dir}/${e.name}`;
      const st = fs.engine.getattr(e.ino);
      if (isDir(st.mode)) {
        out.set(p, `dir nlink=${st.nlink}`);
        visit(p, e.ino);
      } else if (isLnk(st.mode)) {
        out.set(p, `symlink -> ${fs.engine.readlink(e.ino)}`);
      } else {
        out.set(p, `file size=${st.sizeBytes} nlink=${st.nlink}`);
      }
    }
  };
  visit('/', 1);
  return out;
}

/**
 * An engine's tree as text, one path a line with a hash of each file's bytes
 * (for problem reports: digests only say that trees differ).
 */
export async function fsListingText(fs: PathFs): Promise<string> {
  const lines: string[] = [];
  for (const [path, what] of await fsListing(fs)) {
    lines.push(what.startsWith('file') ? `${path} ${what} bytes=${contentHash(await fs.readFile(path))}` : `${path} ${what}`);
  }
  return lines.join('\n') || '(empty)';
}

/** The model's tree as text, as fsListingText shows an engine's. */
export function modelListingText(model: ModelFs): string {
  const lines: string[] = [];
  for (const [path, what] of model.listing()) {
    lines.push(what.startsWith('file') ? `${path} ${what} bytes=${contentHash(model.read(path, 0, Number.MAX_SAFE_INTEGER))}` : `${path} ${what}`);
  }
  return lines.join('\n') || '(empty)';
}

/** Names the workload draws paths from: small, so operations collide often. */
export const NAMES = ['a', 'b', 'c', 'd'] as const;

export function randomPath(rng: SimRng, depthMax = 3): string {
  const depth = 1 + rng.int(depthMax);
  const parts: string[] = [];
  for (let i = 0; i < depth; i++) parts.push(rng.pick(NAMES));
  return `/${parts.join('/')}`;
}

/** A random operation (for seeded simulation workloads). */
export function randomOp(rng: SimRng, blockSizeBytes: number): Op {
  const path = randomPath(rng);
  const r = rng.int(100);
  const offsets = [0, 1, 100, blockSizeBytes - 1, blockSizeBytes, 2 * blockSizeBytes + 7, 3 * blockSizeBytes];
  if (r < 12) return { op: 'create', path };
  if (r < 20) return { op: 'mkdir', path };
  if (r < 45) {
    return { op: 'write', path, offsetBytes: rng.pick(offsets), pool: rng.int(POOL_PATTERNS), lengthBytes: 1 + rng.int(3 * blockSizeBytes) };
  }
  if (r < 50) return { op: 'truncate', path, sizeBytes: rng.pick([0, 10, blockSizeBytes, blockSizeBytes + 5, 4 * blockSizeBytes]) };
  if (r < 60) return { op: 'read', path, offsetBytes: rng.pick(offsets), lengthBytes: 1 + rng.int(4 * blockSizeBytes) };
  if (r < 66) return { op: 'unlink', path };
  if (r < 69) return { op: 'rmdir', path };
  if (r < 76) return { op: 'rename', from: path, to: randomPath(rng) };
  if (r < 80) return { op: 'link', from: path, to: randomPath(rng) };
  if (r < 82) return { op: 'symlink', target: randomPath(rng), path };
  if (r < 84) return { op: 'readlink', path };
  if (r < 88) return { op: 'readdir', path: rng.chance(0.3) ? '/' : path };
  if (r < 92) return { op: 'stat', path };
  if (r < 97) return { op: 'fsync', path };
  return { op: 'commit' };
}

/**
 * The digest of an engine's whole tree (tree-digest.ts): every path, its kind,
 * size, links and bytes. Equal to ModelFs.digest() of the same tree.
 */
export async function fsDigest(fs: PathFs): Promise<string> {
  const e = fs.engine;
  const dir = async (ino: number, nlink: number): Promise<string> => {
    const list = e.readdir(ino).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const entries: string[] = [];
    for (const d of list) {
      const st = e.getattr(d.ino);
      if (isDir(st.mode)) entries.push(dirEntry(await dir(d.ino, st.nlink)));
      else if (isLnk(st.mode)) entries.push(symlinkEntry(e.readlink(d.ino)));
      else entries.push(fileEntry(st.sizeBytes, st.nlink, contentHash(await e.read(d.ino, 0, st.sizeBytes))));
    }
    return dirHash(nlink, list.map((d) => d.name), entries);
  };
  return dir(1, e.getattr(1).nlink);
}

export function modelDigest(model: ModelFs): string {
  return model.digest();
}
