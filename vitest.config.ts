import { defineConfig } from 'vitest/config';

// .ci/run asks for a JSON report too, to print "N passed, N failed".
const json = process.env.LESSFS_VITEST_JSON;

export default defineConfig({
  test: {
    // fuse-native aborts inside worker threads: keep the forks pool.
    pool: 'forks',
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    reporters: json ? ['default', 'json'] : ['default'],
    outputFile: json ? { json } : undefined,
  },
});
