// Rebuilds into a temporary folder and compares it byte for byte with the committed dist/:
// exit 0 when they are identical, 1 (listing the differing files) when dist/ is stale.
// Needs the dev dependencies (npm ci). Run: npm run check-dist
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { buildTo, root } from "./build.mjs";

function files(dir) {
  const out = new Map();
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.set(relative(dir, p), readFileSync(p));
    }
  };
  walk(dir);
  return out;
}

const tmp = mkdtempSync(join(tmpdir(), "streamrec-sdk-"));
try {
  await buildTo(join(tmp, "dist"));
  const fresh = files(join(tmp, "dist"));
  let committed;
  try {
    committed = files(join(root, "dist"));
  } catch {
    committed = new Map();
  }
  const names = [...new Set([...fresh.keys(), ...committed.keys()])].sort();
  const stale = names.filter((n) => !fresh.has(n) || !committed.has(n) || !fresh.get(n).equals(committed.get(n)));
  if (stale.length) {
    console.error(`dist/ differs from a fresh build in: ${stale.join(", ")}\nrun: npm run build`);
    process.exitCode = 1;
  } else {
    console.log(`dist/ matches a fresh build (${names.length} files)`);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
