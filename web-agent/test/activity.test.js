// The page's activity strip follows the native agent's rules (capture/activity.rs's test).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Analysis, audioLevel, motionLevel } from "../src/activity.js";

test("motion and sound show where they happen", () => {
  const a = new Analysis();
  const still = new Uint8Array(64 * 48).fill(10);
  const moved = still.slice();
  moved.fill(200, 0, 1536);
  for (let i = 0; i < 15; i++) a.videoFrame(i * 66_666, still);
  for (let i = 15; i < 30; i++) a.videoFrame(i * 66_666, i % 2 === 0 ? moved : still);
  a.audioSamples(0, new Float32Array(48_000));
  a.audioSamples(1_000_000, Float32Array.from({ length: 48_000 }, (_, i) => Math.sin(i / 10) * (16_000 / 32768)));
  a.thumbnail(0, Uint8Array.of(0));
  a.thumbnail(1_000_000, Uint8Array.of(1));
  const { activity, thumbnail } = a.sideFor(0, 2_000_000);
  assert.equal(activity.firstS, 0);
  assert.deepEqual([activity.motion.length, activity.motion[0], activity.audio[0]], [2, 0, 0]);
  assert.ok(activity.motion[1] > 50, JSON.stringify(activity));
  assert.ok(activity.audio[1] > 80, JSON.stringify(activity));
  assert.deepEqual(thumbnail, Uint8Array.of(0));
  assert.deepEqual(a.sideFor(1_000_000, 2_000_000).thumbnail, Uint8Array.of(1));
});

test("levels use the native agent's scales", () => {
  assert.equal(motionLevel(0), 0);
  assert.equal(motionLevel(64), 100);
  assert.equal(motionLevel(16), 50);
  assert.equal(audioLevel(0), 0);
  assert.equal(audioLevel(0.001), 0);
  assert.equal(audioLevel(1), 100);
  assert.equal(audioLevel(Math.sqrt(0.001)), 50); // -30 dBFS
});
