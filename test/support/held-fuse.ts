// A FUSE filesystem for tests of the FUSE glue under parallel requests (no
// lessfs code in it): `/` and every name directly under it are empty
// directories, answered at once; any deeper name is a 0-byte file whose
// attributes are answered HOLD_MS after they are asked for (at once for 0).
// The kernel sends a libfuse2 filesystem one lookup per directory at a time,
// so N parallel stats of files in N directories hold N of libfuse's threads.
// Truncating a file (`: > FILE`) keeps the JS thread busy for BUSY_MS, as a
// write's hashing does; looking up a name under `/stall/` keeps it busy for
// 200 ms, so that requests pile up meanwhile.
//
//   node --import tsx test/support/held-fuse.ts MOUNTPOINT HOLD_MS [BUSY_MS]
//
// Prints "mounted" once mounted; "states N" whenever the number of
// per-thread states fuse-native has made changes (one per libfuse thread that
// ever ran a request, unless ended threads' states are reused); and, when
// `/report/x` is looked up, "gaps G1 G2 ...": for each lookup of a name under
// `/probe/`, how many truncations ran between the end of the last stall and it. SIGTERM unmounts
// and exits. Never call into the mount from this process.

import Fuse, { type FuseStat } from 'fuse-native';

const [mnt, holdArg, busyArg = '0'] = process.argv.slice(2);
const holdMs = Number(holdArg);
const busyMs = Number(busyArg);
if (!mnt || !Number.isInteger(holdMs) || holdMs < 0 || !(busyMs >= 0)) {
  console.error('usage: held-fuse.ts MOUNTPOINT HOLD_MS [BUSY_MS]');
  process.exit(2);
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
function stat(mode: number): FuseStat {
  const t = Date.now();
  return { mode, uid: 0, gid: 0, size: 0, dev: 0, nlink: 1, ino: 1, rdev: 0, blksize: 4096, blocks: 0, atime: t, mtime: t, ctime: t };
}

let truncations = 0;
const gaps: number[] = [];
const STALL_MS = 200;
function spin(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // the JS thread does nothing else meanwhile
  }
}
function busy(cb: (err: number) => void): void {
  spin(busyMs);
  truncations++;
  cb(0);
}

const fuse = new Fuse(mnt, {
  getattr: (path, cb) => {
    report();
    if (path.lastIndexOf('/') === 0) return cb(0, stat(S_IFDIR | 0o755));
    if (path.startsWith('/stall/')) {
      // Requests pile up meanwhile, as behind a commit.
      spin(STALL_MS);
      truncations = 0;
    } else if (path.startsWith('/probe/')) {
      gaps.push(truncations);
    } else if (path.startsWith('/report/')) {
      process.stdout.write(`gaps ${gaps.join(' ')}\n`);
    }
    if (holdMs === 0) return cb(0, stat(S_IFREG | 0o644));
    setTimeout(() => cb(0, stat(S_IFREG | 0o644)), holdMs);
  },
  readdir: (_path, cb) => cb(0, []),
  open: (_path, _flags, cb) => cb(0, 1),
  truncate: (_path, _size, cb) => busy(cb),
  ftruncate: (_path, _fd, _size, cb) => busy(cb),
  flush: (_path, _fd, cb) => cb(0),
  release: (_path, _fd, cb) => cb(0),
}, {
  timeout: false,
  // Directory entries stay cached for the whole test: with libfuse's 1 s
  // default, the writers' loops looked their directories up again in `/`
  // every second, and the kernel serializes lookups in one directory, so a
  // probe whose `/probe` entry had expired queued behind them in the kernel
  // (a CI run saw 6 truncations before it, a rerun 79), not in fuse-native.
  entryTimeout: 600,
  attrTimeout: 600,
});

/** fuse-native keeps every per-thread state it made in `_threads`. */
let reported = -1;
function report(): void {
  const n = (fuse as unknown as { _threads: Set<unknown> })._threads.size;
  if (n !== reported) {
    reported = n;
    process.stdout.write(`states ${n}\n`);
  }
}

fuse.mount((err) => {
  if (err) {
    console.error(`mount failed: ${err.message}`);
    process.exit(1);
  }
  process.stdout.write('mounted\n');
});
const stop = (): void => fuse.unmount(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
