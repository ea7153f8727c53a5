// For the end-to-end suite (`tests/tests/browser_agent.rs`): seals, with real randomness,
// a stream of the given fragments and a consent to the attempt's public key, the way the
// page does, and prints them as JSON for the Rust side to open.
// Usage: node tools/seal-fresh.mjs ATTEMPT_ID PUBLIC_KEY_HEX
import { fromHex, hex, randomUuid } from "../src/bytes.js";
import { generateStreamKey, sealOpening, sealToAttempt } from "../src/opening.js";
import { encodePayload } from "../src/payload.js";
import { StreamSealer } from "../src/wire.js";

const [attempt, publicHex] = process.argv.slice(2);
const publicKey = fromHex(publicHex);
const stream = randomUuid();
const key = generateStreamKey();
const opening = await sealOpening(publicKey, attempt, stream, Date.now(), key);
const sealer = await StreamSealer.create(key, attempt, stream, opening);
const plaintexts = [
  crypto.getRandomValues(new Uint8Array(700)),
  encodePayload(crypto.getRandomValues(new Uint8Array(5000)), { firstS: 0, motion: [3, 40], audio: [70, 12] }, crypto.getRandomValues(new Uint8Array(200))),
  new Uint8Array(0),
];
const chunks = [];
for (const [i, data] of plaintexts.entries()) {
  const last = i === plaintexts.length - 1;
  const { chunk } = await sealer.seal({ data, mediaStartUs: i * 2_000_000, mediaEndUs: last ? i * 2_000_000 : (i + 1) * 2_000_000, last });
  chunks.push({ plaintext: hex(data), chunk: hex(chunk) });
}
const consent = JSON.stringify({ notice_version: "2026-12-v4", given_at_ms: Date.now() });
const sealedConsent = await sealToAttempt(publicKey, attempt, "consent", new TextEncoder().encode(consent));
console.log(JSON.stringify({ stream, chunks, consent, sealed_consent: hex(sealedConsent) }));
