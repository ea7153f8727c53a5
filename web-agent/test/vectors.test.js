// The cross-implementation vectors written by `protocol/tests/browser_vectors.rs`, reproduced
// byte for byte by the page's own code with the same keys and the same randomness.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fromHex, hex, base64 } from "../src/bytes.js";
import { StreamSealer, chunkDigest, encodeHeader, HEADER_LEN } from "../src/wire.js";
import { sealOpening, sealToAttempt } from "../src/opening.js";
import { encodePayload } from "../src/payload.js";
import { parseLaunchToken } from "../src/token.js";

const v = JSON.parse(readFileSync(new URL("../../protocol/tests/vectors/browser.json", import.meta.url)));
const publicKey = fromHex(v.attempt_public_key);

test("the stream's opening is the same 95 bytes", async () => {
  const opening = await sealOpening(publicKey, v.attempt, v.stream, v.started_at_ms, fromHex(v.stream_key), { ekm: fromHex(v.opening_ekm) });
  assert.equal(hex(opening), v.opening);
});

test("every chunk, its header, tag and digest chain are the same bytes", async () => {
  const sealer = await StreamSealer.create(fromHex(v.stream_key), v.attempt, v.stream, fromHex(v.opening));
  for (const c of v.chunks) {
    const { index, chunk } = await sealer.seal({ data: fromHex(c.plaintext), mediaStartUs: c.media_start_us, mediaEndUs: c.media_end_us, last: c.last });
    assert.equal(index, c.index);
    assert.equal(hex(chunk), c.chunk, `chunk ${index}`);
    assert.equal(hex(await chunkDigest(chunk)), c.digest);
  }
  await assert.rejects(sealer.seal({ data: new Uint8Array(1), mediaStartUs: 0, mediaEndUs: 0, last: false }), /after the final chunk/);
});

test("the sealer forgets the stream key it was given", async () => {
  const key = fromHex(v.stream_key);
  await StreamSealer.create(key, v.attempt, v.stream, null);
  assert.ok(key.every((b) => b === 0));
});

test("a chunk's header matches the wire format's fixed layout", () => {
  const h = encodeHeader({ attempt: v.attempt, stream: v.stream, index: 1, last: false, mediaStartUs: 0, mediaEndUs: 2e6, prevDigest: new Uint8Array(32), bodyLen: 16, opening: null });
  assert.equal(h.length, HEADER_LEN);
  assert.equal(hex(h), v.chunks[1].chunk.slice(0, 2 * 60) + "00".repeat(32) + "00000010");
});

test("the payload (media, activity, thumbnail) is the same bytes", () => {
  const p = encodePayload(fromHex(v.payload.media), { firstS: v.activity.first_s, motion: v.activity.motion, audio: v.activity.audio }, fromHex(v.payload.thumbnail));
  assert.equal(hex(p), v.payload.encoded);
});

test("the consent sealed to the attempt is the same bytes", async () => {
  const sealed = await sealToAttempt(publicKey, v.attempt, v.consent.purpose, new TextEncoder().encode(v.consent.plaintext), { ekm: fromHex(v.consent.ekm) });
  assert.equal(hex(sealed), v.consent.sealed);
  assert.equal(base64(sealed), v.consent.sealed_base64);
});

test("the launch token parses to the same attempt, key and credential", () => {
  const t = parseLaunchToken(v.launch_token.text);
  assert.equal(t.credential, v.launch_token.credential);
  assert.equal(t.attempt, v.attempt);
  assert.equal(hex(t.publicKey), v.attempt_public_key);
  for (const bad of ["", "clt_", "xyz_abc", "clt_abc.", "clt_abc.AAAA", "clt_a b", "clt_abc.!!", v.launch_token.credential]) {
    assert.throws(() => parseLaunchToken(bad), undefined, bad);
  }
});

test("the data channel's messages are the same bytes", async () => {
  const { chunkMessages, endMessage, heartbeatMessage, parseResult } = await import("../src/channel.js");
  const c = v.channel;
  assert.deepEqual(chunkMessages(v.stream, c.index, fromHex(c.chunk)).map(hex), c.parts);
  assert.equal(hex(endMessage(v.stream, 12)), c.end);
  assert.equal(hex(heartbeatMessage(5, 700_000)), c.heartbeat);
  assert.deepEqual(parseResult(fromHex(c.result)), { of: 1, status: 429, stream: v.stream, index: 7, retryAfterS: 3, code: "rate_limited" });
  assert.equal(parseResult(fromHex(c.result).subarray(0, 20)), null);
});

test("a destruction receipt signed by the server verifies here, and any change breaks it", async () => {
  const { verifyReceipt, keyId } = await import("../src/receipt.js");
  const { signed, public_key } = v.receipt;
  const ok = await verifyReceipt(structuredClone(signed), public_key);
  assert.deepEqual(ok, { valid: true, keyId: await keyId(public_key), why: null });
  const edited = structuredClone(signed);
  edited.receipt.reason = "pv_validated";
  assert.equal((await verifyReceipt(edited, public_key)).valid, false);
  const other = "A".repeat(43) + "=";
  assert.equal((await verifyReceipt(structuredClone(signed), other)).why, "another key");
});
