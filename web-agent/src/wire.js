// Chunk wire format v1 and its STREAM-style sealing, byte for byte as `protocol`'s
// `header.rs` and `seal.rs` (the layout is documented there): a 96-byte header, the
// stream's opening on its first chunk, then AES-256-GCM ciphertext and tag, with the
// whole header as associated data and nonce = 7-byte prefix ‖ u32 BE index ‖ last flag.
// The cross-implementation vectors in `protocol/tests/vectors/` hold both ends to it.

import { concat, u32be, u64be, uuidBytes } from "./bytes.js";

export const MAGIC = new TextEncoder().encode("CLOEPC");
export const VERSION = 1;
export const HEADER_LEN = 96;
export const OPENING_LEN = 95;
export const TAG_LEN = 16;
const FLAG_FINAL = 0x01;
const FLAG_OPENING = 0x02;

/** The header (and the opening when given): the chunk's associated data. */
export function encodeHeader({ attempt, stream, index, last, mediaStartUs, mediaEndUs, prevDigest, bodyLen, opening }) {
  const flags = (last ? FLAG_FINAL : 0) | (opening ? FLAG_OPENING : 0);
  const h = concat(
    MAGIC,
    Uint8Array.of(VERSION, flags),
    uuidBytes(attempt),
    uuidBytes(stream),
    u32be(index),
    u64be(mediaStartUs),
    u64be(mediaEndUs),
    prevDigest,
    u32be(bodyLen),
  );
  return opening ? concat(h, opening) : h;
}

/** SHA-256(header ‖ tag): chains chunk i+1 to chunk i (see `protocol::chunk_digest`). */
export async function chunkDigest(chunk) {
  const headerLen = HEADER_LEN + (chunk.length > 7 && chunk[7] & FLAG_OPENING ? OPENING_LEN : 0);
  const input = chunk.length >= headerLen + TAG_LEN ? concat(chunk.subarray(0, headerLen), chunk.subarray(chunk.length - TAG_LEN)) : chunk;
  return new Uint8Array(await crypto.subtle.digest("SHA-256", input));
}

function nonce(prefix, index, last) {
  return concat(prefix, u32be(index), Uint8Array.of(last ? 1 : 0));
}

/**
 * Seals a stream's fragments in order, keeping the index and the digest chain, as
 * `protocol::StreamSealer`. The AES key is a non-extractable CryptoKey: once the sealer
 * exists, no script can read the stream key back.
 */
export class StreamSealer {
  #key;
  #prefix;
  #opening;
  #next = 0;
  #prev = new Uint8Array(32);
  #finished = false;

  /** `streamKey`: 39 bytes, key ‖ nonce prefix (zeroed here once imported). */
  static async create(streamKey, attempt, stream, opening) {
    if (streamKey.length !== 39) throw new Error("a stream key is 39 bytes");
    const key = await crypto.subtle.importKey("raw", streamKey.slice(0, 32), "AES-GCM", false, ["encrypt"]);
    const prefix = streamKey.slice(32);
    streamKey.fill(0);
    return new StreamSealer(key, prefix, attempt, stream, opening);
  }

  constructor(key, prefix, attempt, stream, opening) {
    this.#key = key;
    this.#prefix = prefix;
    this.attempt = attempt;
    this.stream = stream;
    this.#opening = opening ?? null;
  }

  get nextIndex() {
    return this.#next;
  }

  /** `{data, mediaStartUs, mediaEndUs, last}` → `{index, chunk}`. */
  async seal({ data, mediaStartUs, mediaEndUs, last }) {
    if (this.#finished) throw new Error(`sealing after the final chunk (index ${this.#next})`);
    const index = this.#next;
    if (index > 0xffffffff) throw new Error("index overflow");
    const aad = encodeHeader({
      attempt: this.attempt,
      stream: this.stream,
      index,
      last,
      mediaStartUs,
      mediaEndUs: Math.max(mediaEndUs, mediaStartUs),
      prevDigest: index === 0 ? new Uint8Array(32) : this.#prev,
      bodyLen: data.length + TAG_LEN,
      opening: index === 0 ? this.#opening : null,
    });
    const sealed = new Uint8Array(
      await crypto.subtle.encrypt({ name: "AES-GCM", iv: nonce(this.#prefix, index, last), additionalData: aad, tagLength: 128 }, this.#key, data),
    );
    const chunk = concat(aad, sealed);
    this.#prev = await chunkDigest(chunk);
    this.#next = index + 1;
    this.#finished = last;
    return { index, chunk };
  }
}
