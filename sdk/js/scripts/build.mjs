// Builds dist/: streamrec.js (classic script defining window.StreamRec), streamrec.mjs
// (ES module), types/*.d.ts. Deterministic (pinned esbuild and TypeScript, no timestamps,
// no absolute paths), so scripts/check-dist.mjs can compare a fresh build byte for byte.
// Usage: node scripts/build.mjs [outdir]   (default: dist)
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

export const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** Build every dist file into `outdir` (emptied first). */
export async function buildTo(outdir) {
  const { version, license } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  rmSync(outdir, { recursive: true, force: true });
  const common = {
    absWorkingDir: root,
    entryPoints: ["src/index.ts"],
    bundle: true,
    minify: true,
    target: "es2019",
    charset: "utf8",
    legalComments: "none",
    banner: { js: `/*! streamrec browser SDK ${version} | ${license} */` },
    logLevel: "warning",
  };
  await build({ ...common, format: "iife", globalName: "StreamRec", outfile: join(outdir, "streamrec.js") });
  await build({ ...common, format: "esm", outfile: join(outdir, "streamrec.mjs") });
  const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
  execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json"), "--outDir", join(outdir, "types")], {
    stdio: "inherit",
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = resolve(root, process.argv[2] || "dist");
  await buildTo(out);
  console.log(`built ${out}`);
}
