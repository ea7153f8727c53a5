// The committed bundle is what the pinned sources and lockfile build: nobody can ship a
// dist/agent.js that the sources do not explain.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

test("dist/agent.js is what `npm run build` makes, with no eval", () => {
  const out = join(mkdtempSync(join(tmpdir(), "bundle-")), "agent.js");
  const here = new URL("..", import.meta.url).pathname;
  execFileSync(process.execPath, ["build.mjs", out], { cwd: here });
  const built = readFileSync(out, "utf8");
  assert.equal(built, readFileSync(join(here, "dist/agent.js"), "utf8"), "run `npm run build --prefix web-agent` and commit dist/agent.js");
  assert.ok(!/\beval\(|new Function\(/.test(built));
});
