// Builds the console into ../internal/console/dist: one minified ES module bundle, the stylesheet
// and index.html. Deterministic: no timestamps, no hashes of the machine, fixed file names.
import * as esbuild from "esbuild";
import { cpSync, mkdirSync, rmSync } from "node:fs";

const out = "../internal/console/dist";
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await esbuild.build({
  entryPoints: ["src/app.js"],
  bundle: true,
  minify: true,
  format: "esm",
  target: ["chrome110", "firefox115"],
  outfile: `${out}/app.js`,
  legalComments: "linked",
  logLevel: "info",
});
cpSync("src/index.html", `${out}/index.html`);
cpSync("src/style.css", `${out}/style.css`);
