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

function hms(s) {
  const p = (n) => String(n).padStart(2, "0");
  return `${p(Math.floor(s / 3600))}:${p(Math.floor(s / 60) % 60)}:${p(s % 60)}`;
}

function renderNotice(n) {
  if (noticeShown || !n) return;
  noticeShown = true;
  $("notice-title").textContent = n.title;
  $("notice-version").textContent = n.version;
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
  if (v.testing_upload) $("upload-result").textContent = T.upload_testing;
  else if (v.upload) $("upload-result").textContent = T["upload_" + v.upload.verdict] + (v.upload.kbit_per_s ? ` (${rate(v.upload.kbit_per_s)})` : "");
  if (v.disk) $("disk").textContent = `${T["disk_" + v.disk.verdict]} ${v.disk.free_mb} ${T.megabytes}`;
  if (v.encoder) $("encoder").textContent = `${v.hardware_encoder ? T.encoder_hw : T.encoder_sw} ${v.encoder}`;
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
  if ($("upload-state").textContent !== text) $("upload-state").textContent = text;
}

function render(v) {
  if (v.phase !== phase) {
    phase = v.phase;
    for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== "phase-" + phase;
  }
  show("rec", v.phase === "recording");
  $("elapsed").textContent = hms(v.elapsed_s);
  $("message").textContent = v.message || "";
  if (v.phase === "notice") renderNotice(v.notice);
  if (v.phase === "refused") $("refused-body").textContent = v.refusal_sent === null ? T.refused_sending : v.refusal_sent ? T.refused_body : T.refused_unsent;
  if (v.phase === "check") renderCheck(v);
  if (v.phase === "recording") renderRecording(v);
  if (v.phase === "finishing" || v.phase === "done") {
    const p = $("progress");
    p.max = Math.max(v.total, 1);
    p.value = v.sent;
    $("progress-label").textContent = `${v.sent} ${T.fragments_sent} ${v.total}`;
    $("done-count").textContent = `${v.sent} ${T.fragments_sent} ${v.total}`;
    show("ended-by-platform", v.ended_by_platform);
  }
}

const FINAL = ["done", "refused", "withdrawn", "failed"];

async function poll() {
  try {
    const r = await fetch("/api/state");
    if (r.ok) render(await r.json());
  } catch (e) {
    // The agent has finished and gone: the last screen stays.
    if (FINAL.includes(phase)) return;
  }
  if (!["done", "withdrawn", "failed"].includes(phase)) setTimeout(poll, phase === "check" || phase === "finishing" ? 250 : 1000);
}

function wire() {
  $("consent-box").addEventListener("change", (e) => { $("accept").disabled = !e.target.checked; });
  $("accept").addEventListener("click", () => { if ($("consent-box").checked) post("/api/consent", { accept: true }); });
  $("refuse").addEventListener("click", () => show("refuse-confirm", true));
  $("refuse-no").addEventListener("click", () => show("refuse-confirm", false));
  $("refuse-yes").addEventListener("click", () => post("/api/consent", { accept: false }));
  const choose = () => post("/api/devices", { camera: $("camera").value, microphone: $("microphone").value });
  $("camera").addEventListener("change", choose);
  $("microphone").addEventListener("change", choose);
  $("upload-test").addEventListener("click", () => post("/api/upload-test"));
  $("start").addEventListener("click", () => post("/api/start"));
  $("finish").addEventListener("click", () => show("finish-confirm", true));
  $("finish-no").addEventListener("click", () => show("finish-confirm", false));
  $("finish-yes").addEventListener("click", () => { show("finish-confirm", false); post("/api/finish"); });
  $("withdraw").addEventListener("click", () => show("withdraw-confirm", true));
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
