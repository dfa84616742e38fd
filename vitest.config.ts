import { defineConfig } from 'vitest/config';

// Native addons are loaded in child processes ('forks'): worker threads can fail to load them.
export default defineConfig({
  test: {
    pool: 'forks',
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
