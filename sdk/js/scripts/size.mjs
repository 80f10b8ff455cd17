// Fails when a built bundle exceeds the budget of 6 KB (6144 bytes) minified and gzipped
// (gzip level 9, as a server would send it). Run after npm run build: npm run size
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { root } from "./build.mjs";

export const BUDGET = 6144;
let over = false;
for (const name of ["streamrec.js", "streamrec.mjs"]) {
  const raw = readFileSync(join(root, "dist", name));
  const gz = gzipSync(raw, { level: 9 }).length;
  console.log(`${name}: ${raw.length} bytes minified, ${gz} bytes gzipped (budget ${BUDGET})`);
  if (gz > BUDGET) over = true;
}
if (over) {
  console.error("over the size budget");
  process.exitCode = 1;
}
