// The agent API, from the page: the credential as a bearer, JSON errors turned into a
// failure { status, code, message, retryAfterMs } (status 0: the network), never a
// redirect followed, nothing cached. `decide` is the native agent's table
// (`capture-agent/src/refusal.rs`); the end-to-end suite checks that both agree.

export class Failure extends Error {
  constructor(status, code, message, retryAfterMs = null) {
    super(`${status} ${code}: ${message}`);
    this.status = status;
    this.code = code;
    this.retryAfterMs = retryAfterMs;
  }
}

export class Api {
  #credential;
  constructor(credential) {
    this.#credential = credential;
  }

  credential() {
    return this.#credential;
  }

  async call(method, path, { json, body, timeoutMs = 120_000, auth = true } = {}) {
    const headers = {};
    if (auth) headers.Authorization = `Bearer ${this.#credential}`;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (body !== undefined) {
      headers["Content-Type"] = "application/octet-stream";
    }
    let r;
    try {
      r = await fetch(path, { method, headers, body, cache: "no-store", redirect: "error", credentials: "omit", signal: AbortSignal.timeout(timeoutMs) });
    } catch (e) {
      throw new Failure(0, "network", String(e && e.message ? e.message : e));
    }
    if (r.ok) {
      const text = await r.text().catch(() => "");
      try {
        return text ? JSON.parse(text) : null;
      } catch {
        return null;
      }
    }
    const retry = Number.parseInt(r.headers.get("Retry-After") ?? "", 10);
    const retryAfterMs = Number.isFinite(retry) ? Math.min(retry, 3600) * 1000 : null;
    let code = `http_${r.status}`;
    let message = r.statusText;
    try {
      const b = await r.json();
      code = b.error ?? code;
      message = b.message ?? message;
    } catch {}
    throw new Failure(r.status, code, message, retryAfterMs);
  }
}

/** WHIP-style signalling: posts an SDP offer; the answer and the session's path. */
Api.prototype.offer = async function offer(sdp) {
  let r;
  try {
    r = await fetch("/api/agent/v1/webrtc", {
      method: "POST",
      headers: { Authorization: `Bearer ${this.credential()}`, "Content-Type": "application/sdp" },
      body: sdp,
      cache: "no-store",
      redirect: "error",
      credentials: "omit",
      signal: AbortSignal.timeout(10_000),
    });
  } catch (e) {
    throw new Failure(0, "network", String(e && e.message ? e.message : e));
  }
  if (!r.ok) {
    const b = await r.json().catch(() => ({}));
    throw new Failure(r.status, b.error ?? `http_${r.status}`, b.message ?? "");
  }
  return { answer: await r.text(), session: r.headers.get("Location") };
};

/** What to do with a failure: retry, drop (this chunk), reopen (a new stream), stop. */
export function decide(f) {
  const s = f.status;
  const c = f.code;
  if (s === 0) return c === "untrusted_certificate" ? stop("untrusted_certificate") : retry();
  if (s >= 300 && s <= 399) return stop("redirected");
  if (s === 401) return stop("token_refused");
  if (s === 403 && c === "consent_required") return stop("consent_missing");
  if (s === 404) return c === "not_found" ? { kind: "reopen" } : retry();
  if (s === 408) return retry();
  if (s === 409) {
    if (c === "conflicting_chunk") return drop("conflicting_chunk");
    if (c === "stream_not_opened") return { kind: "reopen" };
    if (c === "stream_ended") return drop("stream_ended");
    if (["attempt_ended", "invalid_transition", "recording_closed"].includes(c)) return stop("attempt_closed");
  }
  if (s === 410) return stop("recording_destroyed");
  if (s === 413) return drop("too_large");
  if (s === 422) return ["index_out_of_window", "media_time_out_of_window"].includes(c) ? retry() : drop("corrupt");
  if (s === 429) {
    if (c === "stream_quota_exceeded") return stop("too_many_streams");
    if (c === "chunk_quota_exceeded") return drop("quota_reached");
    return retry();
  }
  if (s >= 500 && s <= 599) return retry();
  return drop("refused");
}

const retry = () => ({ kind: "retry" });
const drop = (reason) => ({ kind: "drop", reason });
const stop = (reason) => ({ kind: "stop", reason });

/** 200 ms to 8 s, exponential with jitter; a Retry-After replaces it (plus up to 25 %). */
export function backoffMs(attempt, failure) {
  if (failure && failure.retryAfterMs != null) return failure.retryAfterMs * (1 + Math.random() * 0.25);
  const base = Math.min(8000, 200 * 2 ** Math.min(attempt, 6));
  return base * (0.5 + Math.random() * 0.5);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
