// Builds the console into ../internal/console/dist: one minified ES module bundle, the stylesheet
// and index.html. Deterministic: no timestamps, no hashes of the machine, fixed file names.
import * as esbuild from "esbuild";
import { cpSync, mkdirSync, rmSync } from "node:fs";

const out = "../internal/console/dist";
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
// The page's bundle, and the map's layout worker (a file of its own: the CSP allows workers only
// from this origin, not from blob: URLs).
for (const name of ["app", "layout-worker"]) {
  await esbuild.build({
    entryPoints: [`src/${name}.js`],
    bundle: true,
    minify: true,
    format: "esm",
    target: ["chrome110", "firefox115"],
    outfile: `${out}/${name}.js`,
    legalComments: "linked",
    logLevel: "info",
  });
}
cpSync("src/index.html", `${out}/index.html`);
cpSync("src/style.css", `${out}/style.css`);
