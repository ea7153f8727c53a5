// The candidate checks their destruction receipt in the page, as `capture-agent receipt
// verify` does: against the key the server publishes (never the one inside the receipt),
// the key's id, then the Ed25519 signature over the domain and the receipt's JSON as
// `protocol/src/receipt.rs` serialises it: its fields in the struct's order, the optional
// ones left out when absent (a JSON answer may carry them in any order).

const DOMAIN = new TextEncoder().encode("cloe-connect destruction receipt v1\0");
const FIELDS = ["version", "attempt_id", "sitting_id", "destroyed_at", "reason", "by", "key_fingerprint", "key_id", "backups_unreadable_by", "previous"];
const OPTIONAL = new Set(["key_id", "backups_unreadable_by", "previous"]);

/** The signed bytes' JSON, or null for a receipt with a field the format does not have. */
function canonical(receipt) {
  if (Object.keys(receipt).some((k) => !FIELDS.includes(k))) return null;
  const ordered = {};
  for (const f of FIELDS) {
    if (receipt[f] === undefined || (receipt[f] === null && OPTIONAL.has(f))) continue;
    ordered[f] = receipt[f];
  }
  return JSON.stringify(ordered);
}

const fromBase64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

/** The published key's id: the first 8 bytes of SHA-256 of the key, hex. */
export async function keyId(publicKeyBase64) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", fromBase64(publicKeyBase64.trim())));
  return hex(digest.slice(0, 8));
}

/**
 * `{ valid, keyId, why }` for a signed receipt (`{ receipt, public_key, signature }`)
 * against the trusted key (base64).
 */
export async function verifyReceipt(signed, trustedBase64) {
  const trusted = trustedBase64.trim();
  const id = await keyId(trusted);
  if (signed.public_key !== trusted) return { valid: false, keyId: id, why: "another key" };
  if (signed.receipt.version >= 2 && signed.receipt.key_id !== id) return { valid: false, keyId: id, why: "another key id" };
  try {
    const key = await crypto.subtle.importKey("raw", fromBase64(trusted), { name: "Ed25519" }, false, ["verify"]);
    const json = canonical(signed.receipt);
    if (json === null) return { valid: false, keyId: id, why: "unknown field" };
    const body = new TextEncoder().encode(json);
    const data = new Uint8Array(DOMAIN.length + body.length);
    data.set(DOMAIN);
    data.set(body, DOMAIN.length);
    const ok = await crypto.subtle.verify({ name: "Ed25519" }, key, fromBase64(signed.signature), data);
    return { valid: ok, keyId: id, why: ok ? null : "signature" };
  } catch (e) {
    return { valid: false, keyId: id, why: String(e && e.message ? e.message : e) };
  }
}
