import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    environment: "happy-dom",
    include: ["test/**/*.test.ts"],
    // one worker: the machine is small and shared
    pool: "threads",
    maxWorkers: 1,
    // the default 5 s failed tests that store a large queue at every push, and CI's
    // Tansu leg saw a 600-event batching test time out, on a loaded 2-core machine
    testTimeout: 30_000,
  },
});
