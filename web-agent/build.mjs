// Bundles the page's modules into dist/agent.js (one file, no source map, no eval), with
// the versions pinned in package-lock.json. The bundle is committed so that the server
// builds without node; `npm run build` must reproduce it byte for byte (checked by the
// suite, `web-agent/test/bundle.test.js`).
import { build } from "esbuild";
import { fileURLToPath } from "node:url";

await build({
  absWorkingDir: fileURLToPath(new URL(".", import.meta.url)),
  entryPoints: ["src/main.js"],
  bundle: true,
  format: "esm",
  target: ["chrome120", "firefox128"],
  minify: true,
  legalComments: "eof",
  charset: "utf8",
  outfile: process.argv[2] ?? fileURLToPath(new URL("dist/agent.js", import.meta.url)),
  logLevel: "warning",
});
