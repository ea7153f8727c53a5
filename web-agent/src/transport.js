// Which way chunks go, as the native agent's `transport.rs`: `auto` (the data channel when
// it opens, HTTPS otherwise and whenever it stalls, the channel tried again every 10 s),
// `webrtc` or `https` (`/launch?transport=…`, for tests and for a network that needs it).
// Both ways answer the same: a result, or a failure the decisions in api.js read.

import { Failure } from "./api.js";
import { DataChannel } from "./datachannel.js";

const RETRY_CHANNEL_MS = 10_000;

export class Transport {
  #api;
  #channel = null;
  #opening = null;
  #lastTry = -Infinity;
  #first = true;
  counts = { webrtc: 0, https: 0 };

  constructor(api, mode = "auto") {
    this.#api = api;
    this.mode = ["auto", "webrtc", "https"].includes(mode) ? mode : "auto";
  }

  get channelOpen() {
    return !!this.#channel?.alive;
  }

  /** Opens the channel if it is due; the first time, waits for the outcome. */
  async #channelUp() {
    if (this.mode === "https") return null;
    if (this.#channel?.alive) return this.#channel;
    if (!this.#opening && Date.now() - this.#lastTry >= RETRY_CHANNEL_MS) {
      this.#lastTry = Date.now();
      this.#opening = DataChannel.open(this.#api)
        .then((c) => (this.#channel = c))
        .catch(() => null)
        .finally(() => (this.#opening = null));
    }
    if (this.#first && this.#opening) {
      this.#first = false;
      await this.#opening;
    }
    return this.#channel?.alive ? this.#channel : null;
  }

  async putChunk(stream, index, chunk) {
    const c = await this.#channelUp();
    if (c) {
      const r = await c.putChunk(stream, index, chunk);
      this.counts.webrtc++;
      return r;
    }
    if (this.mode === "webrtc") throw new Failure(0, "channel_lost", "the data channel is down");
    const r = await this.#api.call("PUT", `/api/agent/v1/streams/${stream}/chunks/${index}`, { body: chunk });
    this.counts.https++;
    return r;
  }

  async end(stream, finalIndex) {
    const c = await this.#channelUp();
    if (c) return c.end(stream, finalIndex);
    return this.#api.call("POST", `/api/agent/v1/streams/${stream}/end`, { json: { final_index: finalIndex } });
  }

  async heartbeat(backlogChunks, backlogBytes) {
    if (this.#channel?.alive) {
      try {
        return await this.#channel.heartbeat(backlogChunks, backlogBytes);
      } catch {}
    }
    return this.#api.call("POST", "/api/agent/v1/heartbeat", { json: { backlog_chunks: backlogChunks, backlog_bytes: backlogBytes }, timeoutMs: 5000 });
  }

  close() {
    this.#channel?.close();
    this.#channel = null;
  }
}
