// The page's end of the WebRTC data channel: the browser's own WebRTC stack offers, the
// server (str0m, ICE-lite) answers over HTTPS, WHIP-style, as for the native agent.
// Writes are paced on the channel's buffered amount (browsers drop a channel past ~16 MB
// buffered); each result the server sends once the chunk is durable is matched to the
// request waiting for it and turned into the HTTPS API's answer, so the decisions are
// the same whichever way a chunk went.

import { Failure } from "./api.js";
import { ANSWERED, NIL, chunkMessages, endMessage, heartbeatMessage, parseResult } from "./channel.js";

export const CONNECT_TIMEOUT_MS = 5000;
const HIGH_WATER = 512 * 1024;
/** A result later than this: the channel is stalled, HTTPS carries on. */
const RESULT_TIMEOUT_MS = 30_000;

function gathered(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => pc.iceGatheringState === "complete" && resolve();
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, ms);
  });
}

function opened(dc, ms) {
  return new Promise((resolve, reject) => {
    if (dc.readyState === "open") return resolve();
    const t = setTimeout(() => reject(new Failure(0, "channel_timeout", "the data channel did not open")), ms);
    dc.addEventListener("open", () => (clearTimeout(t), resolve()), { once: true });
    dc.addEventListener("close", () => (clearTimeout(t), reject(new Failure(0, "channel_lost", "closed while opening"))), { once: true });
  });
}

export class DataChannel {
  #pc;
  #dc;
  #api;
  #session;
  #waiting = new Map();
  #sending = Promise.resolve();
  alive = true;

  static async open(api, timeoutMs = CONNECT_TIMEOUT_MS) {
    const pc = new RTCPeerConnection({ iceServers: [] });
    const dc = pc.createDataChannel("cloe", { ordered: true });
    dc.binaryType = "arraybuffer";
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc, 2000);
      const { answer, session } = await api.offer(pc.localDescription.sdp);
      await pc.setRemoteDescription({ type: "answer", sdp: answer });
      await opened(dc, timeoutMs);
      return new DataChannel(pc, dc, api, session);
    } catch (e) {
      pc.close();
      throw e;
    }
  }

  constructor(pc, dc, api, session) {
    this.#pc = pc;
    this.#dc = dc;
    this.#api = api;
    this.#session = session;
    dc.bufferedAmountLowThreshold = HIGH_WATER / 2;
    dc.onmessage = (e) => {
      const r = parseResult(new Uint8Array(e.data));
      const key = r && `${r.of}/${r.stream}/${r.index}`;
      const w = key && this.#waiting.get(key);
      if (!w) return;
      this.#waiting.delete(key);
      w.resolve(r);
    };
    const lost = () => this.#lose("the data channel closed");
    dc.onclose = lost;
    pc.addEventListener("connectionstatechange", () => ["failed", "closed", "disconnected"].includes(pc.connectionState) && lost());
  }

  #lose(why) {
    if (!this.alive) return;
    this.alive = false;
    for (const w of this.#waiting.values()) w.reject(new Failure(0, "channel_lost", why));
    this.#waiting.clear();
    try {
      this.#pc.close();
    } catch {}
  }

  async #send(messages) {
    for (const m of messages) {
      while (this.alive && this.#dc.bufferedAmount > HIGH_WATER) {
        await new Promise((r) => this.#dc.addEventListener("bufferedamountlow", r, { once: true }));
      }
      if (!this.alive) throw new Failure(0, "channel_lost", "the data channel closed");
      this.#dc.send(m);
    }
  }

  /**
   * Sends `messages` and waits for the result about (of, stream, index). A chunk or an end
   * without a result in time means a stalled channel (given up); a heartbeat may be
   * dropped by a busy server, which costs nothing.
   */
  async #request(of, stream, index, messages, { timeoutMs = RESULT_TIMEOUT_MS, fatal = true } = {}) {
    if (!this.alive) throw new Failure(0, "channel_lost", "the data channel closed");
    const key = `${of}/${stream}/${index}`;
    const answered = new Promise((resolve, reject) => this.#waiting.set(key, { resolve, reject }));
    this.#sending = this.#sending.then(() => this.#send(messages)).catch((e) => this.#lose(String(e)));
    const timer = new Promise((_, reject) => setTimeout(() => reject(new Failure(0, "channel_timeout", "no result")), timeoutMs));
    let r;
    try {
      r = await Promise.race([answered, timer]);
    } catch (e) {
      this.#waiting.delete(key);
      // A stall: the channel is given up, the request is retried over HTTPS.
      if (fatal) this.#lose(e.message);
      throw e;
    }
    if (r.status >= 200 && r.status < 300) return r;
    throw new Failure(r.status, r.code || `http_${r.status}`, "", r.retryAfterS ? r.retryAfterS * 1000 : null);
  }

  putChunk(stream, index, chunk) {
    return this.#request(ANSWERED.chunk, stream, index, chunkMessages(stream, index, chunk));
  }

  end(stream, finalIndex) {
    return this.#request(ANSWERED.end, stream, finalIndex, [endMessage(stream, finalIndex)]);
  }

  heartbeat(backlogChunks, backlogBytes) {
    return this.#request(ANSWERED.heartbeat, NIL, 0, [heartbeatMessage(backlogChunks, backlogBytes)], { timeoutMs: 5000, fatal: false });
  }

  close() {
    this.#lose("closed by the page");
    if (this.#session) this.#api.call("DELETE", this.#session, { timeoutMs: 5000 }).catch(() => {});
  }
}
