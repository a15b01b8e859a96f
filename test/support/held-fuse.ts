// A FUSE filesystem whose file lookups are answered late, for tests of the
// FUSE glue under parallel requests: `/` and every name directly under it
// are empty directories, answered at once; any deeper name is a 0-byte file
// whose attributes are answered HOLD_MS after they are asked for. The kernel
// sends a libfuse2 filesystem one lookup per directory at a time, so N
// parallel stats of files in N directories hold N of libfuse's threads.
//
//   node --import tsx test/support/held-fuse.ts MOUNTPOINT HOLD_MS
//
// Prints "mounted" once mounted, and "states N" whenever the number of
// per-thread states fuse-native has made changes (one per libfuse thread that
// ever ran a request, unless ended threads' states are reused). SIGTERM
// unmounts and exits. Never call into the mount from this process.

import Fuse, { type FuseStat } from 'fuse-native';

const [mnt, holdArg] = process.argv.slice(2);
const holdMs = Number(holdArg);
if (!mnt || !Number.isInteger(holdMs) || holdMs < 0) {
  console.error('usage: held-fuse.ts MOUNTPOINT HOLD_MS');
  process.exit(2);
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
function stat(mode: number): FuseStat {
  const t = Date.now();
  return { mode, uid: 0, gid: 0, size: 0, dev: 0, nlink: 1, ino: 1, rdev: 0, blksize: 4096, blocks: 0, atime: t, mtime: t, ctime: t };
}

const fuse = new Fuse(mnt, {
  getattr: (path, cb) => {
    report();
    if (path.lastIndexOf('/') === 0) return cb(0, stat(S_IFDIR | 0o755));
    setTimeout(() => cb(0, stat(S_IFREG | 0o644)), holdMs);
  },
  readdir: (_path, cb) => cb(0, []),
}, { timeout: false });

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
