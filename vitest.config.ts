import { defineConfig } from 'vitest/config';

// Every async expectation in a test carries its own deadline; these are the outer guards so a
// hung test fails the run instead of stalling CI.
export default defineConfig({
  test: {
    include: [
      'common/**/*.test.ts',
      'nodes/**/*.test.ts',
      'broker/**/*.test.ts',
      'topology/**/*.test.ts',
      'bench/**/*.test.ts',
      'test/**/*.test.ts',
    ],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    teardownTimeout: 10_000,
    pool: 'forks',
    // Fails a test file that leaves a worker, MessagePort or child process behind.
    setupFiles: ['test/support/leak-check.ts'],
    // Two cores: more parallel files only adds contention for the device workers.
    maxWorkers: 2,
  },
});
