import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    environment: "happy-dom",
    include: ["test/**/*.test.ts"],
    // one worker: the machine is small and shared
    pool: "threads",
    maxWorkers: 1,
  },
});
