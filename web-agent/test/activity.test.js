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

// The server's bound (protocol::activity_points_allowed): one value per second of media
// time that the header's range starts in.
const allowed = (startUs, endUs) => Math.max(Math.floor(Math.max(0, endUs - 1) / 1e6), Math.floor(startUs / 1e6)) - Math.floor(startUs / 1e6) + 1;

test("seconds count from the stream's origin, one per second the header's range starts in", () => {
  // The first frame and the first fragment come 1.37 s after the recording started (a
  // slow camera): capture time and media time differ by a fraction of a second.
  const origin = 1_370_000;
  const a = new Analysis();
  const still = new Uint8Array(64 * 48).fill(10);
  const moved = still.slice();
  moved.fill(200, 0, 1536);
  // Motion only in the stream's second 1 (capture time 2.37 s to 3.37 s).
  for (let i = 0; i < 300; i++) {
    const t = origin + i * 66_667;
    a.videoFrame(t, t >= origin + 1e6 && t < origin + 2e6 && i % 2 === 0 ? moved : still);
    a.audioSamples(t, new Float32Array(3200).fill(t >= origin + 1e6 && t < origin + 2e6 ? 0.5 : 0));
  }
  const first = a.sideFor(origin, origin + 2_033_333, origin).activity;
  assert.equal(first.firstS, 0);
  assert.deepEqual([first.motion.length, first.motion[0], first.audio[0]], [3, 0, 0]);
  assert.ok(first.motion[1] > 50 && first.audio[1] > 80, JSON.stringify(first));
  assert.deepEqual([first.motion[2], first.audio[2]], [0, 0]);
  // Fragments of 1.9 to 2.1 s in a row, as a busy computer's key frames fall: each carries
  // exactly as many seconds as the server allows for its header's range, never one more
  // (which would be refused, and the seconds lost from the strip).
  let start = origin + 2_033_333;
  for (const len of [2_000_000, 2_066_667, 1_933_333, 2_100_000, 2_000_001, 1_999_999, 2_066_667]) {
    const { activity } = a.sideFor(start, start + len, origin);
    assert.equal(activity.firstS, Math.floor((start - origin) / 1e6));
    assert.equal(activity.motion.length, allowed(start - origin, start + len - origin), `${start - origin} + ${len}`);
    assert.equal(activity.audio.length, activity.motion.length);
    start += len;
  }
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
