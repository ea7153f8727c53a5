// The launch token, as `protocol::LaunchToken`: `clt_<secret>.<attempt ‖ public key>`.
// The credential (before the dot) authenticates; the rest lets the page record offline.

import { fromBase64Url, uuidString } from "./bytes.js";

export function parseLaunchToken(text) {
  const s = text.trim();
  const [credential, offline, extra] = s.split(".");
  if (extra !== undefined || !credential.startsWith("clt_")) throw new Error("malformed launch token");
  const secret = credential.slice(4);
  if (!secret || secret.length > 128) throw new Error("malformed launch token");
  fromBase64Url(secret);
  if (offline === undefined) throw new Error("this launch token is too old for the browser (no attempt key)");
  const b = fromBase64Url(offline);
  if (b.length !== 48) throw new Error("malformed launch token");
  return { credential, attempt: uuidString(b.subarray(0, 16)), publicKey: b.slice(16) };
}
