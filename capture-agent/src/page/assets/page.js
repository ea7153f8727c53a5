// The candidate's page: shows the agent's state (GET /api/state) and sends the candidate's
// choices (POST /api/...). Every word comes from /api/text (messages.rs).
"use strict";

let T = {};
let phase = null;
let noticeShown = false;
let devicesShown = "";
// The meter falls back slowly, as a VU meter does, so short sounds stay readable.
let meter = 0;

const $ = (id) => document.getElementById(id);

async function post(path, body) {
  const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}) });
  return r.status;
}

function show(id, on) { $(id).hidden = !on; }

// Writes only changes: live regions read every rewrite aloud.
function say(id, text) { if ($(id).textContent !== text) $(id).textContent = text; }

function hms(s) {
  const p = (n) => String(n).padStart(2, "0");
  return `${p(Math.floor(s / 3600))}:${p(Math.floor(s / 60) % 60)}:${p(s % 60)}`;
}

function renderNotice(n, server) {
  if (noticeShown || !n) return;
  noticeShown = true;
  $("notice-title").textContent = n.title;
  $("notice-version").textContent = n.version;
  $("server").textContent = server;
  const box = $("notice-sections");
  for (const s of n.sections) {
    const h = document.createElement("h3");
    h.textContent = s.heading;
    const p = document.createElement("p");
    p.textContent = s.body;
    box.append(h, p);
  }
}

function fillSelect(sel, list, chosen) {
  sel.replaceChildren(...list.map((d) => {
    const o = document.createElement("option");
    o.value = d.id;
    o.textContent = d.label;
    o.selected = d.id === chosen;
    return o;
  }));
  sel.disabled = list.length < 2;
}

function rate(k) {
  return k >= 1000 ? `${(k / 1000).toLocaleString("fr-FR", { maximumFractionDigits: 1 })} Mbit/s` : `${k} kbit/s`;
}

function renderCheck(v) {
  const key = JSON.stringify([v.devices, v.chosen]);
  if (key !== devicesShown) {
    devicesShown = key;
    fillSelect($("camera"), v.devices.cameras, v.chosen && v.chosen[0]);
    fillSelect($("microphone"), v.devices.microphones, v.chosen && v.chosen[1]);
  }
  show("no-device", !!v.no_device);
  if (v.no_device) $("no-device").textContent = T[v.no_device];
  $("start").disabled = !!v.no_device;
  if (v.preview_frames > 0) {
    $("preview").src = "/preview.jpg?n=" + v.preview_frames;
    $("preview").alt = T.preview_alt;
    $("preview-caption").textContent = "";
  }
  meter = Math.max(v.level, meter * 0.75);
  $("level").value = meter;
  $("upload-test").disabled = v.testing_upload;
  if (v.testing_upload) say("upload-result", T.upload_testing);
  else if (v.upload) say("upload-result", T["upload_" + v.upload.verdict] + (v.upload.kbit_per_s ? ` (${rate(v.upload.kbit_per_s)})` : ""));
  if (v.disk) say("disk", `${T["disk_" + v.disk.verdict]} ${v.disk.free_mb} ${T.megabytes}`);
  if (v.encoder) say("encoder", `${v.hardware_encoder ? T.encoder_hw : T.encoder_sw} ${v.encoder}`);
}

function renderRecording(v) {
  show("device-lost", v.device_lost);
  $("rec").classList.toggle("lost", v.device_lost);
  const label = v.device_lost ? T.device_lost_short : T.recording;
  if ($("rec-label").textContent !== label) $("rec-label").textContent = label;
  let text;
  if (v.offline) text = `${T.upload_state_offline} ${Math.ceil(v.waiting_s / 60)}`;
  else if (v.waiting_s >= 60) text = `${T.upload_state_waiting} ${Math.ceil(v.waiting_s / 60)}`;
  else text = T.upload_state_ok;
  say("upload-state", text);
}

function render(v) {
  if (v.phase !== phase) {
    const first = phase === null;
    phase = v.phase;
    for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== "phase-" + phase;
    // A new step takes the focus, so that a screen reader starts reading it.
    const heading = document.querySelector(`#phase-${phase} h2`);
    if (!first && heading) heading.focus();
  }
  show("rec", v.phase === "recording");
  say("elapsed", hms(v.elapsed_s));
  say("message", v.message || "");
  if (v.phase === "notice") renderNotice(v.notice, v.server);
  if (v.phase === "refused") say("refused-body", v.refusal_sent === null ? T.refused_sending : v.refusal_sent ? T.refused_body : T.refused_unsent);
  if (v.phase === "withdrawn") say("withdrawn-body", v.withdrawal_sent === null ? T.withdrawn_sending : v.withdrawal_sent ? T.withdrawn_body : T.withdrawn_unsent);
  if (v.phase === "check") renderCheck(v);
  if (v.phase === "recording") renderRecording(v);
  if (v.phase === "finishing" || v.phase === "done") {
    const p = $("progress");
    p.max = Math.max(v.total, 1);
    p.value = v.sent;
    say("progress-label", `${v.sent} ${T.fragments_sent} ${v.total}`);
    say("done-count", `${v.sent} ${T.fragments_sent} ${v.total}`);
    show("ended-by-platform", v.ended_by_platform);
  }
}

const FINAL = ["done", "refused", "withdrawn", "failed"];
// The refusal and the withdrawal are still being sent when their step shows.

async function poll() {
  try {
    const r = await fetch("/api/state");
    if (r.ok) render(await r.json());
  } catch (e) {
    // The agent has finished and gone: the last screen stays.
    if (FINAL.includes(phase)) return;
  }
  if (!["done", "failed"].includes(phase)) setTimeout(poll, phase === "check" || phase === "finishing" ? 250 : 1000);
}

function wire() {
  $("consent-box").addEventListener("change", (e) => { $("accept").disabled = !e.target.checked; });
  $("accept").addEventListener("click", () => { if ($("consent-box").checked) post("/api/consent", { accept: true }); });
  const confirm = (id) => { show(id, true); $(id).querySelector("button").focus(); };
  $("refuse").addEventListener("click", () => confirm("refuse-confirm"));
  $("refuse-no").addEventListener("click", () => show("refuse-confirm", false));
  $("refuse-yes").addEventListener("click", () => post("/api/consent", { accept: false }));
  const choose = () => post("/api/devices", { camera: $("camera").value, microphone: $("microphone").value });
  $("camera").addEventListener("change", choose);
  $("microphone").addEventListener("change", choose);
  $("upload-test").addEventListener("click", () => post("/api/upload-test"));
  $("start").addEventListener("click", () => post("/api/start"));
  $("finish").addEventListener("click", () => confirm("finish-confirm"));
  $("finish-no").addEventListener("click", () => show("finish-confirm", false));
  $("finish-yes").addEventListener("click", () => { show("finish-confirm", false); post("/api/finish"); });
  $("withdraw").addEventListener("click", () => { $("withdraw").after($("withdraw-confirm")); confirm("withdraw-confirm"); });
  // During the check the same confirmation is shown there.
  $("check-withdraw").addEventListener("click", () => { $("check-withdraw").after($("withdraw-confirm")); confirm("withdraw-confirm"); });
  $("withdraw-no").addEventListener("click", () => show("withdraw-confirm", false));
  $("withdraw-yes").addEventListener("click", () => { show("withdraw-confirm", false); post("/api/withdraw"); });
  // Closing the page does not stop the recording, but the candidate is warned first.
  window.addEventListener("beforeunload", (e) => {
    if (phase === "recording" || phase === "finishing") {
      e.preventDefault();
      e.returnValue = T.leave_warning;
      return T.leave_warning;
    }
  });
}

async function main() {
  T = await (await fetch("/api/text")).json();
  for (const e of document.querySelectorAll("[data-text]")) e.textContent = T[e.dataset.text];
  document.title = T.title;
  wire();
  poll();
}

main();
