import { defineConfig } from 'vitest/config';

// chdb needs the forks pool: its native engine crashes under worker threads.
// Two cores on CI: keep at most two forks.
export default defineConfig({
  test: {
    pool: 'forks',
    maxWorkers: 2,
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
