// Ordered upload of the spool (over the data channel or HTTPS, transport.js): the consent
// first (HTTPS), then each stream's chunks by index, each removed only once the server
// acknowledged it; a stream whose last chunk is sealed
// and acknowledged is ended. Every failure gets the native agent's decision (api.js):
// retry with back-off and Retry-After, drop with its reason, reopen, or stop.

import { backoffMs, decide, sleep } from "./api.js";
import { base64 } from "./bytes.js";

export class Uploader {
  #api;
  #transport;
  #spool;
  #events;
  #wake = null;
  #stopped = false;
  acked = 0;
  ackedBytes = 0;
  refusals = [];
  offline = false;

  /** `events`: { onReopen(stream), onStop(reason, failure) }. */
  constructor({ api, transport, spool, noticeVersion, events }) {
    this.#api = api;
    this.#transport = transport;
    this.#spool = spool;
    this.noticeVersion = noticeVersion;
    this.#events = events;
  }

  wake() {
    if (this.#wake) this.#wake();
  }

  stop() {
    this.#stopped = true;
    this.wake();
  }

  async #idle(ms) {
    await Promise.race([sleep(ms), new Promise((r) => (this.#wake = r))]);
    this.#wake = null;
  }

  /** Calls `f` until it succeeds or fails with anything but retry; returns the decision. */
  async #attempt(f) {
    for (let n = 0; !this.#stopped; n++) {
      try {
        const v = await f();
        this.offline = false;
        return { ok: true, value: v };
      } catch (failure) {
        const d = decide(failure);
        if (d.kind !== "retry") return { ok: false, decision: d, failure };
        this.offline = failure.status === 0;
        await this.#idle(backoffMs(n, failure));
      }
    }
    return { ok: false, decision: { kind: "stopped" } };
  }

  async run() {
    while (!this.#stopped) {
      const worked = await this.#pass();
      if (worked === "stop") return;
      if (!worked) await this.#idle(1000);
    }
  }

  async #pass() {
    const consent = await this.#spool.consent();
    if (consent) {
      const r = await this.#attempt(() => this.#api.call("POST", "/api/agent/v1/consent", { json: { notice_version: this.noticeVersion, sealed: base64(consent) } }));
      if (!r.ok) return this.#refused(r, null);
      await this.#spool.dropConsent();
    }
    let worked = false;
    for (const s of [...this.#spool.streams]) {
      for (const index of await this.#spool.pending(s.id)) {
        if (this.#stopped) return "stop";
        const chunk = await this.#spool.get(s.id, index);
        // Still being written: its turn comes at the next pass.
        if (chunk === null) break;
        const r = await this.#attempt(() => this.#transport.putChunk(s.id, index, chunk));
        worked = true;
        if (r.ok) {
          await this.#spool.remove(s.id, index);
          this.acked++;
          this.ackedBytes += chunk.length;
          continue;
        }
        const out = await this.#refused(r, s.id);
        if (out === "stop") return out;
        if (out === "reopen") break;
        await this.#spool.remove(s.id, index);
      }
      if (s.abandoned && (await this.#spool.pending(s.id)).length === 0) {
        await this.#spool.forgetStream(s.id);
        worked = true;
        continue;
      }
      if (s.finalIndex !== null && (await this.#spool.pending(s.id)).length === 0) {
        const r = await this.#attempt(() => this.#transport.end(s.id, s.finalIndex));
        if (!r.ok && r.decision.kind === "stop") return this.#refused(r, s.id);
        await this.#spool.forgetStream(s.id);
        worked = true;
      }
    }
    return worked;
  }

  async #refused(r, stream) {
    const d = r.decision;
    // The last refusals, for the page's status (no content: kinds, statuses and codes).
    this.refusals.push({ ...d, status: r.failure?.status ?? null, code: r.failure?.code ?? null });
    if (this.refusals.length > 20) this.refusals.shift();
    if (d.kind === "stopped") return "stop";
    if (d.kind === "stop") {
      this.#stopped = true;
      this.#events.onStop?.(d.reason, r.failure);
      return "stop";
    }
    if (d.kind === "reopen") {
      // The server will never take this stream: its chunks go, the capture goes on in a new one.
      await this.#spool.forgetStream(stream);
      this.#events.onReopen?.(stream);
      return "reopen";
    }
    return "drop";
  }

  /** What still waits, for the heartbeat and the candidate. */
  async backlog() {
    let chunks = 0;
    for (const s of this.#spool.streams) chunks += (await this.#spool.pending(s.id)).length;
    return chunks;
  }
}
