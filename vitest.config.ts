import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // fuse-native aborts inside worker threads: keep the forks pool.
    pool: 'forks',
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
