// Node flags the `lessfs` process runs with: its shebang (bin/lessfs.js, which
// cannot import this), the daemonized child (src/cli/lessfs.ts) and the
// benchmark's engine children use these, so what is measured is what runs.
//
// --max-semi-space-size=8: V8's young generation grows to 3 × 16 MiB by default
// while blocks stream through; capped at 3 × 8 MiB the peak RSS of a 4 GiB
// ingest drops by ~20 MB (244 -> 224 MB at CACHESIZE 128 MiB, BENCHMARKS.md).
export const LESSFS_NODE_FLAGS: readonly string[] = Object.freeze(['--max-semi-space-size=8']);

/** execArgv plus every LESSFS_NODE_FLAGS flag it does not set already. */
export function withLessfsNodeFlags(execArgv: readonly string[]): string[] {
  const name = (f: string): string => f.split('=')[0];
  return [...LESSFS_NODE_FLAGS.filter((f) => !execArgv.some((a) => name(a) === name(f))), ...execArgv];
}
