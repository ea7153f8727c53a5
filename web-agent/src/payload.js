// A media chunk's plaintext, v2, as `protocol::encode_payload`: MAGIC ‖ (u32 BE length ‖
// part) for the media, the activity (JSON, keys in the Rust struct's order) and the
// thumbnail (JPEG, may be empty).

import { concat, u32be } from "./bytes.js";

export const PAYLOAD_MAGIC = new TextEncoder().encode("CLOEPL02");

function activityJson({ firstS, motion, audio }) {
  return JSON.stringify({ first_s: firstS, motion: Array.from(motion), audio: Array.from(audio) });
}

export function encodePayload(media, activity, thumbnail) {
  const a = new TextEncoder().encode(activityJson(activity));
  return concat(PAYLOAD_MAGIC, u32be(media.length), media, u32be(a.length), a, u32be(thumbnail.length), thumbnail);
}
