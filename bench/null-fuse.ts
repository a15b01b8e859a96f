// A null FUSE filesystem: the ceiling of the FUSE stack lessfs runs on
// (libfuse2 + fuse-native + one JS handler per request on the main thread),
// mounted with lessfs's own options (mountOptionList). Data written is
// discarded (only sizes are kept); reads return zeros, filled into fuse-native's
// buffer as any filesystem must fill it. Names live in an in-memory map keyed
// by path, so creates, lookups and `ls -l` cost one Map operation each.
//
//   node --import tsx bench/null-fuse.ts MOUNTPOINT [-o OPTIONS]
//
// OPTIONS override entries of lessfs's list as `lessfs -o` does. The kernel
// cache timeouts default to 1 s, as a lessfs master mounts (src/cli/lessfs.ts;
// a slave uses 0, where every stat and path lookup is a round trip to the
// handler).
//
// Prints "mounted MOUNTPOINT" on stdout once mounted. SIGTERM/SIGINT unmount and
// exit 0; `fusermount -u` ends it too. Never call into this mount from this
// process (PLATFORM.md: a synchronous call into one's own mount deadlocks).

import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import Fuse, { type FuseOps, type FuseStat, type FuseStatfs } from 'fuse-native';
import { mountOptionList } from '../src/real/fuse/mount.ts';

const BLOCK_BYTES = 128 * 1024;
const NODES_MAX = 10_000_000;
const FDS_MAX = 1_000_000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFMT = 0o170000;
const ENOENT = -2;
const EBADF = -9;
const EEXIST = -17;
const ENOTDIR = -20;
const EISDIR = -21;
const EINVAL = -22;
const ENOSPC = -28;
const ENOTEMPTY = -39;
const ENOSYS = -38;
const XATTR_ERRNO = process.env.NULL_FUSE_XATTR_ERRNO ? -Math.abs(Number(process.env.NULL_FUSE_XATTR_ERRNO)) : ENOSYS;

interface Node {
  ino: number;
  mode: number;
  sizeBytes: number;
  uid: number;
  gid: number;
  nlink: number;
  atimeMs: number;
  mtimeMs: number;
  ctimeMs: number;
  /** Directories: child names, for readdir without scanning every path. */
  children?: Set<string>;
}

const nodes = new Map<string, Node>();
const fds = new Map<number, Node>();
let nextIno = 2;
let nextFd = 1;

function now(): number {
  return Date.now();
}

function newNode(mode: number): Node {
  const t = now();
  const node: Node = { ino: nextIno++, mode, sizeBytes: 0, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, nlink: 1, atimeMs: t, mtimeMs: t, ctimeMs: t };
  if ((mode & S_IFMT) === S_IFDIR) {
    node.children = new Set();
    node.nlink = 2;
  }
  return node;
}

nodes.set('/', { ...newNode(S_IFDIR | 0o755), ino: 1 });

function parentOf(path: string): { dir: string; name: string } {
  const i = path.lastIndexOf('/');
  return { dir: i <= 0 ? '/' : path.slice(0, i), name: path.slice(i + 1) };
}

function stat(n: Node): FuseStat {
  return {
    mode: n.mode,
    uid: n.uid,
    gid: n.gid,
    size: n.sizeBytes,
    nlink: n.nlink,
    ino: n.ino,
    blksize: BLOCK_BYTES,
    blocks: Math.ceil(n.sizeBytes / 512),
    atime: n.atimeMs,
    mtime: n.mtimeMs,
    ctime: n.ctimeMs,
  };
}

/** Add a node at path; returns 0 or a negative errno. */
function add(path: string, mode: number): { err: number; node?: Node } {
  if (nodes.has(path)) return { err: EEXIST };
  if (nodes.size >= NODES_MAX) return { err: ENOSPC };
  const { dir, name } = parentOf(path);
  const parent = nodes.get(dir);
  if (!parent) return { err: ENOENT };
  if (!parent.children) return { err: ENOTDIR };
  const node = newNode(mode);
  nodes.set(path, node);
  parent.children.add(name);
  if (node.children) parent.nlink++;
  parent.mtimeMs = parent.ctimeMs = now();
  return { err: 0, node };
}

function remove(path: string, wantDir: boolean): number {
  const node = nodes.get(path);
  if (!node || path === '/') return node ? EINVAL : ENOENT;
  if (wantDir && !node.children) return ENOTDIR;
  if (!wantDir && node.children) return EISDIR;
  if (node.children && node.children.size > 0) return ENOTEMPTY;
  const { dir, name } = parentOf(path);
  const parent = nodes.get(dir);
  if (!parent?.children) throw new Error(`null-fuse: ${path} has no parent directory`);
  nodes.delete(path);
  parent.children.delete(name);
  if (node.children) parent.nlink--;
  parent.mtimeMs = parent.ctimeMs = now();
  return 0;
}

function openFd(node: Node): number {
  if (fds.size >= FDS_MAX) return -24; // EMFILE
  while (fds.has(nextFd)) nextFd = nextFd >= 0x7ffffffe ? 1 : nextFd + 1;
  const fd = nextFd;
  nextFd = nextFd >= 0x7ffffffe ? 1 : nextFd + 1;
  fds.set(fd, node);
  return fd;
}

function setattr(path: string, cb: (err: number) => void, f: (n: Node) => void): void {
  const n = nodes.get(path);
  if (!n) return cb(ENOENT);
  f(n);
  n.ctimeMs = now();
  cb(0);
}

const ops: FuseOps = {
  init: (cb) => cb(0),
  access: (path, _mode, cb) => cb(nodes.has(path) ? 0 : ENOENT),
  statfs: (_path, cb) => {
    const s: FuseStatfs = { bsize: BLOCK_BYTES, frsize: BLOCK_BYTES, blocks: 1 << 30, bfree: 1 << 30, bavail: 1 << 30, files: NODES_MAX, ffree: NODES_MAX - nodes.size, favail: NODES_MAX - nodes.size, fsid: 0, flag: 0, namemax: 255 };
    cb(0, s);
  },
  getattr: (path, cb) => {
    const n = nodes.get(path);
    if (!n) return cb(ENOENT);
    cb(0, stat(n));
  },
  fgetattr: (path, fd, cb) => {
    const n = fds.get(fd) ?? nodes.get(path);
    if (!n) return cb(ENOENT);
    cb(0, stat(n));
  },
  readdir: (path, cb) => {
    const n = nodes.get(path);
    if (!n) return cb(ENOENT);
    if (!n.children) return cb(ENOTDIR);
    cb(0, ['.', '..', ...n.children]);
  },
  create: (path, mode, cb) => {
    const r = add(path, (mode & 0o7777) | S_IFREG);
    if (!r.node) return cb(r.err);
    const fd = openFd(r.node);
    if (fd < 0) return cb(fd);
    cb(0, fd);
  },
  mknod: (path, mode, _dev, cb) => cb(add(path, (mode & S_IFMT) === 0 ? mode | S_IFREG : mode).err),
  open: (path, _flags, cb) => {
    const n = nodes.get(path);
    if (!n) return cb(ENOENT);
    const fd = openFd(n);
    if (fd < 0) return cb(fd);
    cb(0, fd);
  },
  release: (_path, fd, cb) => cb(fds.delete(fd) ? 0 : EBADF),
  read: (_path, fd, buf, len, pos, cb) => {
    const n = fds.get(fd);
    if (!n) return cb(EBADF);
    const bytes = Math.max(0, Math.min(len, n.sizeBytes - pos));
    buf.fill(0, 0, bytes);
    cb(bytes);
  },
  write: (_path, fd, _buf, len, pos, cb) => {
    const n = fds.get(fd);
    if (!n) return cb(EBADF);
    if (pos + len > n.sizeBytes) n.sizeBytes = pos + len;
    n.mtimeMs = n.ctimeMs = now();
    cb(len);
  },
  truncate: (path, size, cb) => setattr(path, cb, (n) => { n.sizeBytes = size; n.mtimeMs = now(); }),
  ftruncate: (path, fd, size, cb) => {
    const n = fds.get(fd) ?? nodes.get(path);
    if (!n) return cb(EBADF);
    n.sizeBytes = size;
    n.mtimeMs = n.ctimeMs = now();
    cb(0);
  },
  unlink: (path, cb) => cb(remove(path, false)),
  rmdir: (path, cb) => cb(remove(path, true)),
  mkdir: (path, mode, cb) => cb(add(path, (mode & 0o7777) | S_IFDIR).err),
  chmod: (path, mode, cb) => setattr(path, cb, (n) => { n.mode = (n.mode & S_IFMT) | (mode & 0o7777); }),
  chown: (path, uid, gid, cb) => setattr(path, cb, (n) => {
    if (uid !== -1 && uid !== 0xffffffff) n.uid = uid;
    if (gid !== -1 && gid !== 0xffffffff) n.gid = gid;
  }),
  utimens: (path, atime, mtime, cb) => setattr(path, cb, (n) => { n.atimeMs = atime; n.mtimeMs = mtime; }),
  flush: (_path, _fd, cb) => cb(0),
  fsync: (_path, _dataSync, _fd, cb) => cb(0),
  fsyncdir: (_path, _dataSync, _fd, cb) => cb(0),
  // As lessfs answers them (src/real/fuse/ops.ts), so `ls -l` asks the same
  // questions of both. NULL_FUSE_XATTR_ERRNO=95 answers ENOTSUP instead.
  getxattr: (_path, _name, _position, cb) => cb(XATTR_ERRNO),
  setxattr: (_path, _name, _value, _position, _flags, cb) => cb(XATTR_ERRNO),
  listxattr: (_path, cb) => cb(XATTR_ERRNO),
  removexattr: (_path, _name, cb) => cb(XATTR_ERRNO),
};

class NullFuse extends Fuse {
  constructor(mnt: string, private readonly optionList: string[]) {
    super(mnt, ops, { timeout: false });
  }
  protected override _fuseOptions(): string {
    return `-o${this.optionList.join(',')}`;
  }
}

function mounted(mnt: string): boolean {
  return readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mnt);
}

const argv = process.argv.slice(2);
const mnt = resolve(argv[0] ?? '');
const extra = argv.length === 3 && argv[1] === '-o' ? argv[2].split(',').filter((o) => o.length > 0) : [];
if (!(argv.length === 1 || (argv.length === 3 && argv[1] === '-o')) || !statSync(mnt, { throwIfNoEntry: false })?.isDirectory()) {
  console.error('usage: node --import tsx bench/null-fuse.ts MOUNTPOINT [-o OPTIONS] (MOUNTPOINT an existing directory)');
  process.exit(2);
}
const fuse = new NullFuse(
  mnt,
  mountOptionList({ blockSizeBytes: BLOCK_BYTES, attrTimeoutS: 1, entryTimeoutS: 1, extra: ['subtype=nullfs', ...extra], fsname: 'nullfs' }),
);
fuse.mount((err) => {
  if (err) {
    console.error(`null-fuse: mount of ${mnt} failed: ${err.message}`);
    process.exit(1);
  }
  process.stdout.write(`mounted ${mnt}\n`);
});

let stopping = false;
function stop(why: string, unmount: boolean): void {
  if (stopping) return;
  stopping = true;
  clearInterval(watch);
  if (!unmount || !mounted(mnt)) process.exit(0);
  fuse.unmount((err) => {
    if (err) console.error(`null-fuse: ${why}: unmount of ${mnt} failed: ${err.message}`);
    process.exit(err ? 1 : 0);
  });
}
process.on('SIGTERM', () => stop('SIGTERM', true));
process.on('SIGINT', () => stop('SIGINT', true));
// `fusermount -u` ends the session without telling the handler.
let seenMounted = false;
const watch = setInterval(() => {
  if (mounted(mnt)) seenMounted = true;
  else if (seenMounted) stop('unmounted externally', false);
}, 500);
