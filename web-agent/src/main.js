// The browser agent's page: the same steps as the native agent's page (notice, consent or
// refusal, device check, recording, finish, withdrawal, the platform's end), every word
// from the server's `/launch/text.json` (the `candidate-ui` crate, shared with the native
// agent). The launch token is read from the address's fragment, which no browser sends,
// then removed from the address bar and the history.

import { Api } from "./api.js";
import { encoderKind, missingFeatures, needsGesture, openDevices, primeAudio } from "./capture.js";
import { CLOSED_STATES, Session } from "./session.js";
import { parseLaunchToken } from "./token.js";
import { verifyReceipt } from "./receipt.js";

let T = {};
let phase = null;
const $ = (id) => document.getElementById(id);
const show = (id, on) => ($(id).hidden = !on);
const say = (id, text) => {
  if ($(id).textContent !== text) $(id).textContent = text;
};

function go(next) {
  if (next === phase) return;
  const first = phase === null;
  phase = next;
  document.body.dataset.phase = next;
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== "phase-" + next;
  const heading = document.querySelector(`#phase-${next} h2`);
  if (!first && heading) heading.focus();
  show("rec", next === "recording");
}

function fail(text) {
  say("failed-body", text);
  go("failed");
}

function hms(s) {
  const p = (n) => String(n).padStart(2, "0");
  return `${p(Math.floor(s / 3600))}:${p(Math.floor(s / 60) % 60)}:${p(s % 60)}`;
}

const TOKEN_KEY = "cloe.launch";

/**
 * The token from `#TOKEN`, then gone from the address bar and the history entry. It is
 * kept in this tab's session storage so that a reload (F5) resumes the recording; closing
 * the tab forgets it (the link opens it again), and so does the end of the exam.
 */
function takeToken() {
  const raw = decodeURIComponent(location.hash.slice(1));
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  return raw || sessionStorage.getItem(TOKEN_KEY);
}

function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

// The link opened again in the same tab changes only the fragment: take it out again.
window.addEventListener("hashchange", () => history.replaceState(null, "", location.pathname + location.search));

async function askCode() {
  go("code");
  const api = new Api("");
  return new Promise((resolve) => {
    const submit = async () => {
      say("code-error", "");
      try {
        const r = await api.call("POST", "/api/agent/v1/launch-code", { json: { code: $("code").value.trim() }, auth: false, timeoutMs: 15_000 });
        resolve(r.launch_token);
      } catch (f) {
        say("code-error", f.status === 429 ? T.browser_code_locked : f.status === 0 ? T.browser_notice_unreachable : T.browser_code_unknown);
      }
    };
    $("code-go").addEventListener("click", submit);
    $("code").addEventListener("keydown", (e) => e.key === "Enter" && submit());
  });
}

function renderNotice(n) {
  $("notice-title").textContent = n.title;
  $("notice-version").textContent = n.version;
  $("server").textContent = location.origin;
  const box = $("notice-sections");
  box.replaceChildren();
  for (const s of n.sections) {
    const h = document.createElement("h3");
    h.textContent = s.heading;
    const p = document.createElement("p");
    p.textContent = s.body;
    box.append(h, p);
  }
}

function confirm(id) {
  show(id, true);
  $(id).querySelector("button").focus();
}

/** The notice, then the candidate's choice: true (consent) or false (refusal). */
function consentStep(notice) {
  renderNotice(notice);
  go("notice");
  return new Promise((resolve) => {
    $("consent-box").addEventListener("change", (e) => ($("accept").disabled = !e.target.checked));
    $("accept").addEventListener("click", () => $("consent-box").checked && resolve(true), { once: true });
    $("refuse").addEventListener("click", () => confirm("refuse-confirm"));
    $("refuse-no").addEventListener("click", () => show("refuse-confirm", false));
    $("refuse-yes").addEventListener("click", () => resolve(false), { once: true });
  });
}

function fillSelect(sel, list, chosen) {
  sel.replaceChildren(
    ...list.map((d, i) => {
      const o = document.createElement("option");
      o.value = d.deviceId;
      o.textContent = d.label || `${sel.id} ${i + 1}`;
      o.selected = d.deviceId === chosen;
      return o;
    }),
  );
  sel.disabled = list.length < 2;
}

function rate(k) {
  return k >= 1000 ? `${(k / 1000).toLocaleString("fr-FR", { maximumFractionDigits: 1 })} Mbit/s` : `${k} kbit/s`;
}

/** The device check: preview, meter, choice by label, upload test, storage, encoder. Resolves with the stream to record. */
async function checkStep(session) {
  go("check");
  // "Start" only once the camera and microphone are open.
  $("start").disabled = true;
  const started = new Promise((r) =>
    $("start").addEventListener(
      "click",
      () => {
        primeAudio();
        r();
      },
      { once: true },
    ),
  );
  let stream = null;
  let meterCtx = null;
  let meter = 0;
  const open = async () => {
    stream?.getTracks().forEach((t) => t.stop());
    try {
      stream = await openDevices({ camera: $("camera").value || undefined, microphone: $("microphone").value || undefined });
    } catch (e) {
      stream = null;
      if (e && (e.name === "NotFoundError" || e.name === "OverconstrainedError")) {
        say("no-device", T.no_camera);
        show("no-device", true);
        $("start").disabled = true;
        return;
      }
      go("permission");
      await new Promise((r) => $("permission-retry").addEventListener("click", r, { once: true }));
      go("check");
      return open();
    }
    show("no-device", false);
    $("start").disabled = false;
    $("preview").srcObject = stream;
    $("preview").setAttribute("aria-label", T.preview_alt);
    say("preview-caption", "");
    const devices = await navigator.mediaDevices.enumerateDevices();
    const cam = stream.getVideoTracks()[0]?.getSettings().deviceId;
    const mic = stream.getAudioTracks()[0]?.getSettings().deviceId;
    fillSelect($("camera"), devices.filter((d) => d.kind === "videoinput"), cam);
    fillSelect($("microphone"), devices.filter((d) => d.kind === "audioinput"), mic);
    meterCtx?.close();
    meterCtx = new AudioContext();
    const analyser = meterCtx.createAnalyser();
    analyser.fftSize = 1024;
    meterCtx.createMediaStreamSource(stream).connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    const tick = () => {
      if (phase !== "check" || !meterCtx || meterCtx.state === "closed") return;
      analyser.getFloatTimeDomainData(buf);
      const rms = Math.sqrt(buf.reduce((a, v) => a + v * v, 0) / buf.length);
      meter = Math.max(Math.min(1, rms * 4), meter * 0.75);
      $("level").value = meter;
      setTimeout(tick, 100);
    };
    tick();
  };
  $("camera").addEventListener("change", open);
  $("microphone").addEventListener("change", open);
  $("upload-test").addEventListener("click", async () => {
    $("upload-test").disabled = true;
    say("upload-result", T.upload_testing);
    const k = await session.uploadTest();
    const verdict = k === null ? "unreachable" : k >= 1000 ? "good" : k >= 250 ? "slow" : "too_slow";
    say("upload-result", T["upload_" + verdict] + (k ? ` (${rate(k)})` : ""));
    $("upload-test").disabled = false;
  });
  const storage = await session.storage();
  if (storage) say("disk", `${T["browser_storage_" + storage.verdict]} ${storage.freeMb} ${T.megabytes}`);
  const kind = await encoderKind();
  say("encoder", kind ? `${kind === "hw" ? T.encoder_hw : T.encoder_sw} H.264` : T.browser_unsupported_title);
  await open();
  await started;
  meterCtx?.close();
  meterCtx = null;
  return stream;
}

function recordingView(session) {
  go("recording");
  say("message", T.browser_keep_open);
  const started = Date.now();
  const tick = () => {
    if (phase !== "recording") return;
    say("elapsed", hms(Math.floor((Date.now() - started) / 1000)));
    const waitingS = session.backlogChunks * 2;
    let text = T.upload_state_ok;
    if (session.offline) text = `${T.upload_state_offline} ${Math.ceil(waitingS / 60)}`;
    else if (waitingS >= 60) text = `${T.upload_state_waiting} ${Math.ceil(waitingS / 60)}`;
    say("upload-state", text);
    setTimeout(tick, 1000);
  };
  tick();
}

/** The upload's progress, as the finishing and done steps show it. */
/**
 * The destruction receipt the withdrawal brought back: checked against the key the server
 * publishes (not the one inside it), and offered as a file to keep.
 */
async function showReceipt(signed) {
  let text = T.receipt_unchecked;
  try {
    const r = await fetch("/api/public/v1/receipts/public-key", { cache: "no-store", credentials: "omit" });
    const checked = await verifyReceipt(signed, (await r.json()).public_key);
    if (checked.valid) {
      const when = new Date(signed.receipt.destroyed_at).toLocaleString("fr-FR", { timeZone: "UTC", timeZoneName: "short" });
      text = T.receipt_checked.replace("{date}", when).replace("{key_id}", checked.keyId);
    }
  } catch (e) {
    console.error("the receipt could not be checked", e);
  }
  say("withdrawn-receipt", text);
  show("withdrawn-receipt", true);
  const file = $("withdrawn-receipt-file");
  file.href = URL.createObjectURL(new Blob([JSON.stringify(signed, null, 2)], { type: "application/json" }));
  file.download = `recu-destruction-${signed.receipt.attempt_id}.json`;
  show("withdrawn-receipt-file", true);
}

function showProgress(session) {
  const total = session.sealed;
  const sent = session.acked;
  $("progress").max = Math.max(total, 1);
  $("progress").value = sent;
  say("progress-label", `${sent} ${T.fragments_sent} ${total}`);
  say("done-count", `${sent} ${T.fragments_sent} ${total}`);
}

function progressView(session, byPlatform) {
  go("finishing");
  show("ended-by-platform", byPlatform);
  const tick = () => {
    showProgress(session);
    if (phase === "finishing") setTimeout(tick, 250);
  };
  tick();
}

function wireRecordingButtons(session) {
  $("finish").addEventListener("click", () => confirm("finish-confirm"));
  $("finish-no").addEventListener("click", () => show("finish-confirm", false));
  $("finish-yes").addEventListener("click", () => {
    show("finish-confirm", false);
    session.finish("finished");
  });
  const withdraw = (from) => {
    $(from).after($("withdraw-confirm"));
    confirm("withdraw-confirm");
  };
  $("withdraw").addEventListener("click", () => withdraw("withdraw"));
  $("check-withdraw").addEventListener("click", () => withdraw("check-withdraw"));
  $("withdraw-no").addEventListener("click", () => show("withdraw-confirm", false));
  $("withdraw-yes").addEventListener("click", () => {
    show("withdraw-confirm", false);
    session.withdraw();
  });
  window.addEventListener("beforeunload", (e) => {
    if (phase === "recording" || phase === "finishing") {
      e.preventDefault();
      e.returnValue = T.leave_warning;
      return T.leave_warning;
    }
  });
}

async function main() {
  T = await (await fetch("/launch/text.json", { cache: "no-store" })).json();
  for (const e of document.querySelectorAll("[data-text]")) e.textContent = T[e.dataset.text];
  document.title = T.title;
  const missing = await missingFeatures();
  if (missing.length) {
    say("unsupported-what", missing.join(", "));
    return go("unsupported");
  }
  let text = takeToken();
  let token = null;
  while (!token) {
    if (!text) text = await askCode();
    try {
      token = parseLaunchToken(text);
      sessionStorage.setItem(TOKEN_KEY, text);
    } catch {
      forgetToken();
      say("code-error", T.browser_no_link);
      text = null;
    }
  }
  const session = await Session.open(token, {
    onPhase: (p, detail) => {
      if (["withdrawn", "done", "wiped"].includes(p)) forgetToken();
      if (p === "withdrawn") {
        go("withdrawn");
        say("withdrawn-body", detail.sent ? T.withdrawn_body : detail.sent === false ? T.withdrawn_unsent : T.withdrawn_sending);
        if (detail.receipt) showReceipt(detail.receipt);
      } else if (p === "finishing") progressView(session, detail.byPlatform);
      else if (p === "done") {
        showProgress(session);
        go("done");
      }
      else if (p === "failed") fail(detail.message);
      else if (p === "wiped") fail(T.browser_wiped);
    },
    T,
    // The native agent's --transport: auto (default), webrtc or https.
    transport: new URLSearchParams(location.search).get("transport") ?? "auto",
  });
  wireRecordingButtons(session);
  // For the end-to-end tests, as the reviewer's player has `__player`: counts, no content.
  const hidden = { ms: 0, since: document.hidden ? performance.now() : null };
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) hidden.since = performance.now();
    else if (hidden.since !== null) (hidden.ms += performance.now() - hidden.since), (hidden.since = null);
  });
  window.__agent = () => ({ phase, hiddenMs: Math.round(hidden.ms + (hidden.since === null ? 0 : performance.now() - hidden.since)), ...session.status() });
  const state = await session.state();
  // Only a recording that was interrupted (a reload, a crash) resumes by itself; anything
  // else starts again from a click.
  if (session.interrupted() && [null, "consented", "recording"].includes(state)) {
    if (needsGesture()) {
      // This browser starts Web Audio only on a click: one click to resume.
      go("resume");
      await new Promise((r) => $("resume").addEventListener("click", () => (primeAudio(), r()), { once: true }));
    }
    const stream = await openDevices().catch(() => null);
    if (!stream) return go("permission");
    recordingView(session);
    say("message", T.browser_resumed);
    await session.record(stream);
    return;
  }
  if (CLOSED_STATES.includes(state)) return session.drainOnly();
  if (state === "withdrawn") return go("withdrawn");
  const notice = await session.notice();
  if (!notice) return fail(T.browser_notice_unreachable);
  if (state === "enrolled") {
    const accepted = await consentStep(notice);
    if (!accepted) {
      go("refused");
      say("refused-body", T.refused_sending);
      const sent = await session.refuse(notice.version);
      forgetToken();
      return say("refused-body", sent ? T.refused_body : T.refused_unsent);
    }
    await session.consent(notice.version);
  }
  const stream = await checkStep(session);
  recordingView(session);
  await session.record(stream);
}

main().catch((e) => fail(String(e && e.message ? e.message : e)));
