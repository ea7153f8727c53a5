// One attempt in the page, as the native agent's run: consent kept sealed in the spool
// and sent first, streams keyed in the page (a random stream key sealed to the attempt's
// public key), capture → payload → seal → spool → upload, the attempt's state watched
// every 2 s (the platform's end), a heartbeat every 5 s, then the drain and the end.
// Store-and-forward from the first second: nothing waits for the server.

import { Api, sleep } from "./api.js";
import { BitrateController } from "./bitrate.js";
import { randomUuid } from "./bytes.js";
import { Recording } from "./capture.js";
import { generateStreamKey, sealOpening, sealToAttempt } from "./opening.js";
import { encodePayload } from "./payload.js";
import { Spool } from "./spool.js";
import { Uploader } from "./uploader.js";
import { Transport } from "./transport.js";
import { StreamSealer } from "./wire.js";

const WARN_FREE = 600 * 1024 * 1024;
const LOW_FREE = 200 * 1024 * 1024;
const STATE_EVERY_MS = 2000;
const BITRATE_EVERY_MS = 2000;
const FRAGMENT_S = 2;
const HEARTBEAT_EVERY_MS = 5000;

/** The attempt's states past the exam's end: what is left is sent, nothing is recorded. */
export const CLOSED_STATES = ["ended", "in_review", "reviewed", "decided"];

export class Session {
  #token;
  #api;
  #transport;
  #spool;
  #events;
  #uploader = null;
  #recording = null;
  #stream = null;
  #sealer = null;
  #chain = Promise.resolve();
  #mediaEndUs = 0;
  #originUs = null;
  #init = null;
  #ending = false;
  /** Withdrawn or stopped: nothing more is sealed or sent. */
  #halted = false;
  #tasks = [];
  #timer = null;
  sealed = 0;
  backlogChunks = 0;
  #bitrate = new BitrateController();
  #lowestKbps = this.#bitrate.kbps;
  #storageLow = false;
  noticeVersion = null;

  /** `events.transport`: auto, webrtc or https. */
  static async open(token, events) {
    const spool = await Spool.open(token.attempt);
    // Ask the browser not to evict the spool under storage pressure (best effort).
    navigator.storage.persist?.().catch(() => {});
    return new Session(token, spool, events);
  }

  constructor(token, spool, events) {
    this.#token = token;
    this.#api = new Api(token.credential);
    this.#transport = new Transport(this.#api, events.transport);
    this.#spool = spool;
    this.#events = events;
  }

  get acked() {
    return this.#uploader?.acked ?? 0;
  }

  /** What the capture and the upload went through (the tests read it). */
  status() {
    return {
      sealed: this.sealed,
      acked: this.acked,
      ackedBytes: this.#uploader?.ackedBytes ?? 0,
      transport: this.#transport.mode,
      channelOpen: this.#transport.channelOpen,
      byTransport: { ...this.#transport.counts },
      refusals: [...(this.#uploader?.refusals ?? [])],
      offline: this.offline,
      kbps: this.#bitrate.kbps,
      lowestKbps: this.#lowestKbps,
      capture: this.#recording?.stats ?? null,
    };
  }

  get offline() {
    return this.#uploader?.offline ?? false;
  }

  /** A stream of an earlier page was cut short (a reload, a crash). */
  interrupted() {
    return this.#spool.streams.some((s) => s.abandoned);
  }

  /** The attempt's state, or null when the server cannot be reached. */
  async state() {
    try {
      return (await this.#api.call("GET", "/api/agent/v1/attempt", { timeoutMs: 10_000 })).state ?? null;
    } catch (f) {
      if (f.status === 410) await this.#wiped();
      return null;
    }
  }

  async notice() {
    try {
      const n = await this.#api.call("GET", "/api/agent/v1/notice", { auth: false, timeoutMs: 10_000 });
      this.noticeVersion = n.version;
      return n;
    } catch {
      return null;
    }
  }

  /** Sends only the refusal; true once the server has it. */
  async refuse(version) {
    const deadline = Date.now() + 30_000;
    for (let n = 0; Date.now() < deadline; n++) {
      try {
        await this.#api.call("POST", "/api/agent/v1/refuse", { json: { notice_version: version }, timeoutMs: 10_000 });
        return true;
      } catch (f) {
        if (f.status !== 0 && f.status < 500) return false;
        await sleep(Math.min(4000, 500 * 2 ** n));
      }
    }
    return false;
  }

  /** Consent, sealed to the attempt and kept in the spool until the server has it. */
  async consent(version) {
    const record = JSON.stringify({ notice_version: version, given_at_ms: Date.now() });
    const sealed = await sealToAttempt(this.#token.publicKey, this.#token.attempt, "consent", new TextEncoder().encode(record));
    await this.#spool.putConsent(sealed);
    this.noticeVersion = version;
    this.#startUploader();
  }

  /** The uplink in kbit/s (512 KiB of noise), or null when the server cannot be reached. */
  async uploadTest() {
    const body = new Uint8Array(512 * 1024);
    for (let i = 0; i < body.length; i += 65536) crypto.getRandomValues(body.subarray(i, i + 65536));
    const t0 = performance.now();
    try {
      const r = await this.#api.call("POST", "/api/agent/v1/upload-test", { body, auth: false, timeoutMs: 30_000 });
      const ms = Math.max(1, performance.now() - t0);
      return Math.round((r.bytes * 8) / ms);
    } catch {
      return null;
    }
  }

  async storage() {
    try {
      const { quota, usage } = await navigator.storage.estimate();
      const free = Math.max(0, quota - usage);
      return { verdict: free >= WARN_FREE ? "good" : free >= LOW_FREE ? "low" : "too_low", freeMb: Math.floor(free / 1048576) };
    } catch {
      return null;
    }
  }

  #startUploader() {
    if (this.#uploader) return;
    this.#uploader = new Uploader({
      api: this.#api,
      transport: this.#transport,
      spool: this.#spool,
      noticeVersion: this.noticeVersion,
      events: {
        onStop: (reason) => this.#stopped(reason),
        onReopen: () => this.#reopen(),
      },
    });
    this.#uploader.run();
    this.#every(HEARTBEAT_EVERY_MS, async () => {
      this.backlogChunks = await this.#uploader.backlog();
      await this.#transport.heartbeat(this.backlogChunks, 0).catch(() => {});
    });
  }

  /**
   * `f` every `ms`: from a timer, and also from each sealed fragment, because a hidden
   * tab's timers are throttled (to once a minute after five minutes in Chromium) while
   * capture goes on at full rate.
   */
  #every(ms, f) {
    this.#tasks.push({ ms, f, last: 0, busy: false });
    if (!this.#timer) this.#timer = setInterval(() => this.#pulse(), 1000);
  }

  #pulse() {
    const now = Date.now();
    for (const t of this.#tasks) {
      if (t.busy || now - t.last < t.ms) continue;
      t.busy = true;
      t.last = now;
      Promise.resolve()
        .then(t.f)
        .catch(() => {})
        .finally(() => (t.busy = false));
    }
  }

  #stopTasks() {
    this.#transport.close();
    this.#tasks = [];
    clearInterval(this.#timer);
    this.#timer = null;
  }

  async #openStream() {
    const id = randomUuid();
    const key = generateStreamKey();
    const opening = await sealOpening(this.#token.publicKey, this.#token.attempt, id, Date.now(), key);
    this.#sealer = await StreamSealer.create(key, this.#token.attempt, id, opening);
    await this.#spool.openStream(id);
    this.#mediaEndUs = 0;
    // Media time counts from each stream's own start, as the server's windows expect.
    this.#originUs = null;
  }

  /** Records `stream` until finish, withdrawal, the platform's end or a stop. */
  async record(stream) {
    this.noticeVersion ??= (await this.notice())?.version ?? null;
    this.#startUploader();
    await this.#openStream();
    this.#stream = stream;
    this.#recording = new Recording({
      stream,
      bitrate: this.#bitrate.kbps * 1000,
      onFragment: (f) => this.#seal(f),
      onError: (e) => this.#events.onPhase("failed", { message: String(e && e.message ? e.message : e) }),
    });
    await this.#recording.start();
    // The video bitrate follows the backlog (and the storage left), as the native agent's.
    this.#every(BITRATE_EVERY_MS, async () => {
      const backlogS = (await this.#uploader.backlog()) * FRAGMENT_S;
      const kbps = this.#bitrate.tick(BITRATE_EVERY_MS / 1000, { backlogS, diskLow: this.#storageLow });
      if (kbps !== null) {
        this.#lowestKbps = Math.min(this.#lowestKbps, kbps);
        this.#recording?.setBitrate(kbps * 1000);
      }
    });
    this.#every(60_000, async () => {
      this.#storageLow = (await this.storage())?.verdict !== "good";
    });
    this.#every(STATE_EVERY_MS, async () => {
      const s = await this.state();
      if (CLOSED_STATES.includes(s)) await this.finish("ended_by_platform");
      if (s === "withdrawn") await this.#stopped("attempt_closed");
    });
  }

  /** In order: the plaintext lives only here, sealed before anything is written. */
  #seal(f) {
    this.#chain = this.#chain.then(async () => {
      // Nothing captured after a withdrawal or a stop is kept, the last fragment included.
      if (this.#halted) return;
      if (f.init) {
        this.#init = f.data.slice();
        return this.#sealNow(f.data, 0, 0, false);
      }
      const origin = (this.#originUs ??= f.mediaStartUs);
      this.#mediaEndUs = Math.max(this.#mediaEndUs, f.mediaEndUs - origin);
      const { activity, thumbnail } = f.side(origin);
      await this.#sealNow(encodePayload(f.data, activity, thumbnail), f.mediaStartUs - origin, f.mediaEndUs - origin, false);
    });
    return this.#chain;
  }

  /** Seals `data` into the live stream, wipes it, spools the chunk and wakes the upload. */
  async #sealNow(data, mediaStartUs, mediaEndUs, last) {
    const { index, chunk } = await this.#sealer.seal({ data, mediaStartUs, mediaEndUs, last });
    data.fill(0);
    await this.#spool.put(this.#sealer.stream, index, chunk);
    if (last) await this.#spool.sealedLast(this.#sealer.stream, index);
    this.sealed++;
    this.#uploader?.wake();
    this.#pulse();
  }

  /** The stream's last chunk: empty, marked final, at the end of its media. */
  async #sealFinal() {
    await this.#chain;
    await this.#sealNow(new Uint8Array(0), this.#mediaEndUs, this.#mediaEndUs, true);
  }

  async #stopCapture() {
    const r = this.#recording;
    this.#recording = null;
    if (!r) return;
    await r.stop();
    this.#stream?.getTracks().forEach((t) => t.stop());
  }

  /** Stop recording, send the rest, then say the candidate may close the window. */
  async finish(why) {
    if (this.#ending) return;
    this.#ending = true;
    this.#events.onPhase("finishing", { byPlatform: why === "ended_by_platform" });
    await this.#stopCapture();
    await this.#sealFinal();
    await this.#drain();
  }

  async drainOnly() {
    this.#ending = true;
    this.#startUploader();
    this.#events.onPhase("finishing", { byPlatform: true });
    await this.#drain();
  }

  async #drain() {
    this.#uploader.wake();
    while (this.#spool.streams.length > 0 && this.#uploader && !this.#halted) await sleep(250);
    if (this.#halted) return;
    this.#uploader.stop();
    this.#stopTasks();
    this.#events.onPhase("done", {});
  }

  async withdraw() {
    this.#ending = true;
    this.#halted = true;
    this.#events.onPhase("withdrawn", { sent: null });
    this.#uploader?.stop();
    this.#stopTasks();
    await this.#stopCapture().catch(() => {});
    await this.#chain.catch(() => {});
    let sent = false;
    let receipt = null;
    for (let n = 0; n < 6 && !sent; n++) {
      try {
        const answer = await this.#api.call("POST", "/api/agent/v1/withdraw", { timeoutMs: 10_000 });
        receipt = answer?.receipt ?? null;
        sent = true;
      } catch (f) {
        if (f.status === 409) sent = true;
        else if (f.status !== 0 && f.status < 500) break;
        else await sleep(1000 * 2 ** n);
      }
    }
    // Nothing of a withdrawn recording stays in the browser, sent or not.
    await this.#spool.wipe().catch((e) => console.error("the spool could not be wiped", e));
    // The server destroyed the recording at once: its signed receipt, for the candidate.
    this.#events.onPhase("withdrawn", { sent, receipt });
  }

  async #stopped(reason) {
    this.#halted = true;
    this.#ending = true;
    this.#stopTasks();
    await this.#stopCapture().catch(() => {});
    if (reason === "recording_destroyed") return this.#wiped();
    this.#events.onPhase("failed", { message: this.#events.T["stop_" + reason] ?? reason });
  }

  async #wiped() {
    await this.#spool.wipe().catch(() => {});
    this.#events.onPhase("wiped", {});
  }

  /** The server will never take the live stream: recording goes on in a new one. */
  async #reopen() {
    if (!this.#recording) return;
    // The new stream starts with the init segment again (sealed here: queueing it behind
    // this very step would wait for itself).
    this.#chain = this.#chain.then(async () => {
      await this.#openStream();
      if (this.#init) await this.#sealNow(this.#init.slice(), 0, 0, false);
    });
  }
}
