// What the page seals to the attempt's public key, as `protocol`'s `opening.rs`: the
// stream's opening (HPKE base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM;
// info = tag ‖ attempt ‖ stream, aad = the start time) and sealed records (the consent).
// HPKE comes from @hpke/core on WebCrypto. `ekm` fixes the ephemeral key, for the
// cross-implementation vectors only.

import { Aes256Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from "@hpke/core";
import { concat, u64be, uuidBytes } from "./bytes.js";

const suite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes256Gcm() });
const enc = new TextEncoder();
const STREAM_INFO = enc.encode("cloe-connect/stream-opening/v1");
const RECORD_INFO = enc.encode("cloe-connect/sealed-record/v1/");

async function sender(publicKey, info, ekm) {
  const recipientPublicKey = await suite.kem.importKey("raw", publicKey, true);
  return suite.createSenderContext(ekm ? { recipientPublicKey, info, ekm } : { recipientPublicKey, info });
}

/** A fresh stream key: 32 random bytes of key ‖ a 7-byte nonce prefix. */
export function generateStreamKey() {
  return crypto.getRandomValues(new Uint8Array(39));
}

/** The 95-byte opening: started_at_ms ‖ encapsulated key ‖ sealed stream key. */
export async function sealOpening(publicKey, attempt, stream, startedAtMs, streamKey, { ekm } = {}) {
  const started = u64be(startedAtMs);
  const ctx = await sender(publicKey, concat(STREAM_INFO, uuidBytes(attempt), uuidBytes(stream)), ekm);
  const ct = new Uint8Array(await ctx.seal(streamKey, started));
  return concat(started, new Uint8Array(ctx.enc), ct);
}

/** `protocol::seal_to_attempt`: encapsulated key ‖ ciphertext, bound to `purpose`. */
export async function sealToAttempt(publicKey, attempt, purpose, plaintext, { ekm } = {}) {
  const ctx = await sender(publicKey, concat(RECORD_INFO, enc.encode(purpose), uuidBytes(attempt)), ekm);
  const ct = new Uint8Array(await ctx.seal(plaintext, new Uint8Array(0)));
  return concat(new Uint8Array(ctx.enc), ct);
}
