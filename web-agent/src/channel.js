// Messages on the WebRTC data channel, byte for byte as `protocol::channel` (the layout is
// documented there): a sealed chunk in parts of at most 64 KiB, a stream's end, a
// heartbeat; the server's result carries the HTTP status and code the HTTPS API would
// have answered, so the page decides alike.

import { concat, u32be, u64be, uuidBytes, uuidString } from "./bytes.js";

export const MAX_MESSAGE = 64 * 1024;
const PART_HEADER = 1 + 1 + 16 + 4 + 2;
export const MAX_PART = MAX_MESSAGE - PART_HEADER;
export const ANSWERED = { chunk: 1, end: 2, heartbeat: 3 };
export const NIL = "00000000-0000-0000-0000-000000000000";

export function chunkMessages(stream, index, chunk) {
  const parts = Math.max(1, Math.ceil(chunk.length / MAX_PART));
  const id = uuidBytes(stream);
  const out = [];
  for (let p = 0; p < parts; p++) {
    const bytes = chunk.subarray(Math.min(p * MAX_PART, chunk.length), Math.min((p + 1) * MAX_PART, chunk.length));
    const part = new Uint8Array(2);
    new DataView(part.buffer).setUint16(0, p);
    out.push(concat(Uint8Array.of(0x01, p + 1 === parts ? 1 : 0), id, u32be(index), part, bytes));
  }
  return out;
}

export function endMessage(stream, finalIndex) {
  return concat(Uint8Array.of(0x02), uuidBytes(stream), u32be(finalIndex));
}

export function heartbeatMessage(backlogChunks, backlogBytes) {
  return concat(Uint8Array.of(0x03), u64be(backlogChunks), u64be(backlogBytes));
}

/** The server's result, or null when the message is not one. */
export function parseResult(m) {
  if (m.length < 29 || m[0] !== 0x81 || m[1] < 1 || m[1] > 3) return null;
  const d = new DataView(m.buffer, m.byteOffset, m.byteLength);
  const len = m[28];
  if (m.length < 29 + len) return null;
  return {
    of: m[1],
    status: d.getUint16(2),
    stream: uuidString(m.subarray(4, 20)),
    index: d.getUint32(20),
    retryAfterS: d.getUint32(24),
    code: new TextDecoder().decode(m.subarray(29, 29 + len)),
  };
}
