// The page's bitrate follows the native agent's rules (capture-agent/src/bitrate.rs's tests).
import { test } from "node:test";
import assert from "node:assert/strict";
import { BitrateController, MAX_KBPS, MIN_KBPS } from "../src/bitrate.js";

const TICK = 2;
const obs = (backlogS) => ({ backlogS, diskLow: false });

test("a growing backlog lowers the target to the floor and no further", () => {
  const c = new BitrateController();
  const seen = [];
  for (let b = 10; b < 200; b += 4) {
    const k = c.tick(TICK, obs(b));
    if (k !== null) seen.push(k);
  }
  assert.equal(seen.at(-1), MIN_KBPS);
  assert.ok(seen.every((k, i) => i === 0 || k < seen[i - 1]), String(seen));
  assert.ok(seen.length >= 4, String(seen));
});

test("a steady or shrinking backlog is not punished twice", () => {
  const c = new BitrateController();
  assert.equal(c.tick(TICK, obs(20)), 375);
  for (const b of [20, 18, 15, 12]) assert.equal(c.tick(TICK, obs(b)), null);
});

test("once drained it climbs back to the ceiling step by step", () => {
  const c = new BitrateController();
  for (let b = 10; b < 200; b += 4) c.tick(TICK, obs(b));
  assert.equal(c.kbps, MIN_KBPS);
  const rises = [];
  for (let i = 0; i < 200; i++) {
    const k = c.tick(TICK, obs(2));
    if (k !== null) rises.push(k);
  }
  assert.equal(rises.at(-1), MAX_KBPS);
  assert.ok(rises.every((k, i) => i === 0 || k > rises[i - 1]), String(rises));
});

test("a low disk holds the floor whatever the backlog", () => {
  const c = new BitrateController();
  assert.equal(c.tick(TICK, { backlogS: 0, diskLow: true }), MIN_KBPS);
  for (let i = 0; i < 20; i++) assert.equal(c.tick(TICK, { backlogS: 0, diskLow: true }), null);
});
