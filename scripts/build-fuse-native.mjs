#!/usr/bin/env node
// Rebuilds fuse-native 2.2.6's addon with two fixes to its utimens glue (run by
// `npm ci`/`npm install` as this package's postinstall):
//  1. it passes the access time twice, so every utimens set mtime = atime
//     (cp -a, tar, rsync -a all stored wrong mtimes; upstream issue open);
//  2. UTIME_NOW / UTIME_OMIT arrive as garbage milliseconds: NOW becomes the
//     current time, OMIT becomes 2^64-1, which the JS side treats as "unchanged".
// If the build fails the prebuilt addon stays in use and this says so loudly:
// the filesystem works, but explicit mtimes are not kept.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
let dir;
try {
  dir = dirname(require.resolve('fuse-native/package.json'));
} catch {
  console.error('build-fuse-native: fuse-native is not installed; nothing to do');
  process.exit(0);
}
const src = join(dir, 'fuse-native.c');
const MARK = '/* lessfs-ts: utimens fixed */';
let c = readFileSync(src, 'utf8');
if (!c.includes(MARK)) {
  const helper = `${MARK}
static uint64_t lessfs_utimens_ms (const struct timespec* ts) {
  if (ts->tv_nsec == UTIME_OMIT) return UINT64_MAX;
  if (ts->tv_nsec == UTIME_NOW) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return timespec_to_uint64(&now);
  }
  return timespec_to_uint64(ts);
}
`;
  const replacements = [
    ['static void populate_stat (uint32_t *ints, struct stat* stat) {', `${helper}\nstatic void populate_stat (uint32_t *ints, struct stat* stat) {`],
    ['  l->atime = timespec_to_uint64(&tv[0]);\n  l->mtime = timespec_to_uint64(&tv[1]);', '  l->atime = lessfs_utimens_ms(&tv[0]);\n  l->mtime = lessfs_utimens_ms(&tv[1]);'],
    ['  FUSE_UINT64_TO_INTS_ARGV(l->atime, 3)\n  FUSE_UINT64_TO_INTS_ARGV(l->atime, 5)', '  FUSE_UINT64_TO_INTS_ARGV(l->atime, 3)\n  FUSE_UINT64_TO_INTS_ARGV(l->mtime, 5)'],
  ];
  for (const [from, to] of replacements) {
    if (!c.includes(from)) {
      console.error(`build-fuse-native: WARNING: fuse-native.c does not look like 2.2.6 (missing: ${from.split('\n')[0]}); keeping the prebuilt addon, explicit mtimes will not be kept`);
      process.exit(0);
    }
    c = c.replace(from, to);
  }
  writeFileSync(src, c);
}
const built = join(dir, 'build', 'Release', '.lessfs-utimens-fix');
if (existsSync(built) && existsSync(join(dir, 'build', 'Release', 'fuse.node')) && process.env.LESSFS_REBUILD_FUSE !== '1') {
  console.error('build-fuse-native: patched addon already built');
  process.exit(0);
}
const npmGyp = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
const gyp = existsSync(npmGyp) ? [process.execPath, [npmGyp]] : ['node-gyp', []];
try {
  // Build against the local Node headers (this machine has no internet for node-gyp to fetch them).
  const nodedir = process.env.npm_config_nodedir || (existsSync(join(dirname(process.execPath), '..', 'include', 'node', 'node.h')) ? join(dirname(process.execPath), '..') : undefined);
  const args = [...gyp[1], 'rebuild', ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
  execFileSync(gyp[0], args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  writeFileSync(built, 'fuse-native.c patched and rebuilt by lessfs-ts scripts/build-fuse-native.mjs\n');
  console.error('build-fuse-native: rebuilt fuse-native with the utimens fix');
} catch (err) {
  console.error(`build-fuse-native: WARNING: rebuilding fuse-native failed (${String(err.stderr ?? err.message).trim().split('\n').slice(-3).join(' / ')}); the prebuilt addon stays in use and explicit mtimes (utimens) will not be kept`);
}
