// Builds dist/: streamrec.js (classic script defining window.StreamRec), streamrec.mjs
// (ES module), types/*.d.ts. Deterministic (pinned esbuild and TypeScript, no timestamps,
// no absolute paths), so scripts/check-dist.mjs can compare a fresh build byte for byte.
// Usage: node scripts/build.mjs [outdir]   (default: dist)
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const MANGLED = new RegExp(
  "^(sending|failing|saving|unstored|limit|timer|beat|waiters|tab|away|freed|take|payload|repair|settle|" +
    "schedule|save|watch|stored|fail|adopt|show|hide|pump|lost|err|storeKey|retryAfterMs|store|outbox|" +
    "aid|uid|watching|seen|newAnonymousId|report|tabsKey)$",
);

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
    // the private members' names, shortened (the 6 KB budget): none is an option, a public
    // member, a stored field or a built-in's (e.g. not `keys`, `trim`, `remove`, `push`)
    mangleProps: MANGLED,
  };
  // The classic script: `var StreamRec = {...}` with index.ts's exports (esbuild's
  // globalName would add its CommonJS helpers, 200 bytes of the 6 KB budget).
  const { entryPoints: _, ...classic } = common;
  const names = "init, StreamRecClient, StreamRecError, version"; // snippet.test.ts checks these
  await build({
    ...classic,
    stdin: {
      contents: `import { ${names} } from "./src/index"; StreamRec = { ${names} };`,
      resolveDir: root,
      sourcefile: "streamrec.js",
    },
    banner: { js: `${common.banner.js}\nvar StreamRec;` },
    format: "iife",
    outfile: join(outdir, "streamrec.js"),
  });
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
