import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Compiles src/ once so tests that run the real `bin/meshd` use this tree.
    globalSetup: ['test/support/build.ts'],
    // Network-namespace tests share the machine's interfaces and UAPI socket
    // directory; running files one at a time keeps them from racing.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
