// Capture and encoding in the page: getUserMedia 640x480 at 15 frame/s and mono 48 kHz;
// WebCodecs H.264 constrained baseline (a key frame every 2 s) and Opus 48 kbit/s; the
// fragmenter cuts 2 s fragments of fragmented MP4. Raw frames and samples also feed the
// activity strip and one thumbnail per second (activity.js), before encoding.
//
// How frames and samples are read, browser by browser: `readDevices`.

import { Analysis } from "./activity.js";
import { Fragmenter } from "./fragmenter.js";

export const H264 = "avc1.42001f";
export const WIDTH = 640;
export const HEIGHT = 480;
export const FPS = 15;
export const KEY_EVERY_US = 2_000_000;
export const AUDIO_BITRATE = 48_000;

export function videoConfig(bitrate, hardwareAcceleration = "no-preference") {
  return { codec: H264, width: WIDTH, height: HEIGHT, bitrate, framerate: FPS, latencyMode: "realtime", avc: { format: "avc" }, hardwareAcceleration };
}

export const audioConfig = { codec: "opus", sampleRate: 48_000, numberOfChannels: 1, bitrate: AUDIO_BITRATE };

/**
 * What the browser lacks for recording, by feature name; empty when it can record. Each
 * is tried, not guessed from the browser's name: WebCodecs with H.264 and Opus, X25519 in
 * Web Crypto (the stream key is sealed with it), the private file system with writable
 * files (the spool), the camera and microphone API.
 */
export async function missingFeatures() {
  const tryIt = async (f) => {
    try {
      return !!(await f());
    } catch {
      return false;
    }
  };
  const need = {
    webcodecs: typeof VideoEncoder === "function" && typeof AudioEncoder === "function",
    webcrypto: !!(globalThis.crypto && crypto.subtle),
    opfs: !!(navigator.storage && navigator.storage.getDirectory) && typeof FileSystemFileHandle === "function" && "createWritable" in FileSystemFileHandle.prototype,
    media: !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia),
  };
  if (need.webcrypto) need.x25519 = await tryIt(() => crypto.subtle.importKey("raw", new Uint8Array(32).fill(9), { name: "X25519" }, true, []));
  if (need.webcodecs) {
    need.h264 = (await encoderKind()) !== null;
    need.opus = await tryIt(async () => (await AudioEncoder.isConfigSupported(audioConfig)).supported);
  }
  return Object.keys(need).filter((k) => !need[k]);
}

/** "hw", "sw", or null when no H.264 encoder at all. */
export async function encoderKind() {
  for (const [pref, kind] of [["prefer-hardware", "hw"], ["prefer-software", "sw"]]) {
    try {
      const r = await VideoEncoder.isConfigSupported(videoConfig(500_000, pref));
      if (r.supported) return kind;
    } catch {}
  }
  try {
    if ((await VideoEncoder.isConfigSupported(videoConfig(500_000))).supported) return "sw";
  } catch {}
  return null;
}

export async function openDevices({ camera, microphone } = {}) {
  return navigator.mediaDevices.getUserMedia({
    video: { width: { ideal: WIDTH }, height: { ideal: HEIGHT }, frameRate: { ideal: FPS }, ...(camera ? { deviceId: { exact: camera } } : {}) },
    audio: { channelCount: { ideal: 1 }, sampleRate: { ideal: 48_000 }, ...(microphone ? { deviceId: { exact: microphone } } : {}) },
  });
}

let sharedAudio = null;

/** Whether recording needs a click first (Web Audio starts only on a user's gesture). */
export function needsGesture() {
  return typeof MediaStreamTrackProcessor !== "function";
}

/**
 * Creates (once) and starts the audio context the capture will use where Web Audio reads
 * the microphone: call it synchronously in a click handler, or the browser keeps it
 * suspended.
 */
export function primeAudio() {
  if (!needsGesture()) return;
  sharedAudio ??= new AudioContext({ sampleRate: 48_000 });
  sharedAudio.resume().catch(() => {});
}

/**
 * Frames and samples of the devices, whatever the browser: `onFrame(VideoFrame)` (which
 * closes it) and `onSamples(Float32Array mono, timestampUs, sampleRate)`.
 *
 * Chromium: `MediaStreamTrackProcessor` for both; it keeps running while the tab is
 * hidden. Elsewhere (Firefox): samples from a ScriptProcessorNode (no module script to
 * load under the CSP), and video frames drawn from a video element on the audio
 * callbacks' clock: timers are throttled in a hidden tab, audio processing is not.
 */
function readDevices(stream, onFrame, onSamples, signal) {
  const [videoTrack] = stream.getVideoTracks();
  const [audioTrack] = stream.getAudioTracks();
  if (typeof MediaStreamTrackProcessor === "function") {
    const pump = async (track, f) => {
      const reader = new MediaStreamTrackProcessor({ track }).readable.getReader();
      signal.addEventListener("abort", () => reader.cancel().catch(() => {}));
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        f(value);
      }
    };
    pump(videoTrack, onFrame);
    pump(audioTrack, (data) => {
      const mono = new Float32Array(data.numberOfFrames);
      data.copyTo(mono, { planeIndex: 0, format: "f32-planar" });
      const { timestamp, sampleRate } = data;
      data.close();
      onSamples(mono, timestamp, sampleRate);
    });
    return "track-processor";
  }
  const video = document.createElement("video");
  video.muted = true;
  video.playsInline = true;
  video.srcObject = new MediaStream([videoTrack]);
  video.play().catch(() => {});
  let lastFrame = -Infinity;
  const grab = () => {
    const now = performance.now();
    if (now - lastFrame < 1000 / FPS - 5 || video.readyState < 2) return;
    lastFrame = now;
    onFrame(new VideoFrame(video, { timestamp: Math.round(now * 1000) }));
  };
  const ctx = sharedAudio ?? (sharedAudio = new AudioContext({ sampleRate: 48_000 }));
  const source = ctx.createMediaStreamSource(new MediaStream([audioTrack]));
  const node = ctx.createScriptProcessor(1024, 1, 1);
  node.onaudioprocess = (e) => {
    onSamples(e.inputBuffer.getChannelData(0).slice(), Math.round(e.playbackTime * 1e6), ctx.sampleRate);
    grab();
  };
  source.connect(node);
  // The node only runs when connected to the output; it writes silence there.
  node.connect(ctx.destination);
  ctx.resume().catch(() => {});
  signal.addEventListener("abort", () => {
    node.onaudioprocess = null;
    source.disconnect();
    node.disconnect();
    video.srcObject = null;
  });
  return "audio-clock";
}

/**
 * One recording: a stream's fragments from the devices. `onFragment(fragment)` gets
 * `{ data, mediaStartUs, mediaEndUs, last, init, side }` in order, the range in capture
 * time, where `side(originUs)` gives the fragment's activity and thumbnail in a stream
 * whose media time starts at `originUs` (asked in order, once per fragment).
 */
export class Recording {
  #stream;
  #onFragment;
  #onError;
  #abort = new AbortController();
  #fragmenter;
  #video;
  #audio;
  #analysis = new Analysis();
  #chain = Promise.resolve();
  #origin = null;
  #firstVideo = null;
  #firstAudio = null;
  #lastKey = -Infinity;
  #lastThumb = -Infinity;
  #grey = new OffscreenCanvas(64, 48).getContext("2d", { willReadFrequently: true });
  #thumbCanvas = new OffscreenCanvas(160, 120);
  #stopped = false;
  bitrate;
  /** What went through, for the page's status and the tests. */
  stats = { frames: 0, samples: 0, videoChunks: 0, audioChunks: 0, dropped: 0, source: null };

  constructor({ stream, bitrate = 500_000, onFragment, onError }) {
    this.#stream = stream;
    this.bitrate = bitrate;
    this.#onFragment = onFragment;
    this.#onError = onError;
  }

  /** Runs `f` after everything queued before it: packets reach the muxer in order. */
  #then(f) {
    this.#chain = this.#chain.then(f).catch((e) => this.#fail(e));
    return this.#chain;
  }

  #fail(e) {
    if (!this.#stopped) this.#onError?.(e);
  }

  async start() {
    this.#fragmenter = new Fragmenter({
      onFragment: (f) => this.#onFragment({ ...f, side: f.init ? null : (originUs) => this.#analysis.sideFor(f.mediaStartUs, f.mediaEndUs, originUs) }),
    });
    await this.#fragmenter.start();
    this.#video = new VideoEncoder({ output: (c, m) => (this.stats.videoChunks++, this.#then(() => this.#fragmenter.addVideo(c, m))), error: (e) => this.#fail(e) });
    this.#video.configure(videoConfig(this.bitrate));
    this.#audio = new AudioEncoder({ output: (c, m) => (this.stats.audioChunks++, this.#then(() => this.#fragmenter.addAudio(c, m))), error: (e) => this.#fail(e) });
    this.#audio.configure(audioConfig);
    this.#origin = performance.now() * 1000;
    this.stats.source = readDevices(this.#stream, (f) => this.#frame(f), (s, ts, rate) => this.#samples(s, ts, rate), this.#abort.signal);
  }

  /** Capture timestamps rebased on the recording's start, each track by its first arrival. */
  #rebase(first, ts) {
    return ts - first.ts + first.at;
  }

  #frame(frame) {
    this.stats.frames++;
    if (this.#stopped || this.#video.state !== "configured") return frame.close();
    this.#firstVideo ??= { ts: frame.timestamp, at: Math.round(performance.now() * 1000 - this.#origin) };
    const t = this.#rebase(this.#firstVideo, frame.timestamp);
    // A laptop that cannot keep up loses frames, never the recording.
    if (this.#video.encodeQueueSize > 8) {
      this.stats.dropped++;
      return frame.close();
    }
    this.#grey.drawImage(frame, 0, 0, 64, 48);
    const rgba = this.#grey.getImageData(0, 0, 64, 48).data;
    const grey = new Uint8Array(64 * 48);
    for (let i = 0; i < grey.length; i++) grey[i] = (rgba[4 * i] * 77 + rgba[4 * i + 1] * 150 + rgba[4 * i + 2] * 29) >> 8;
    this.#analysis.videoFrame(t, grey);
    if (t - this.#lastThumb >= 1_000_000) {
      this.#lastThumb = t;
      this.#thumbCanvas.getContext("2d").drawImage(frame, 0, 0, 160, 120);
      this.#thumbCanvas
        .convertToBlob({ type: "image/jpeg", quality: 0.7 })
        .then((b) => b.arrayBuffer())
        .then((buf) => this.#analysis.thumbnail(t, new Uint8Array(buf)))
        .catch(() => {});
    }
    const key = t - this.#lastKey >= KEY_EVERY_US;
    if (key) this.#lastKey = t;
    const timed = new VideoFrame(frame, { timestamp: t });
    frame.close();
    this.#video.encode(timed, { keyFrame: key });
    timed.close();
  }

  #samples(mono, ts, rate) {
    this.stats.samples += mono.length;
    if (this.#stopped || this.#audio.state !== "configured") return;
    this.#firstAudio ??= { ts, at: Math.round(performance.now() * 1000 - this.#origin) };
    const t = this.#rebase(this.#firstAudio, ts);
    this.#analysis.audioSamples(t, mono);
    const data = new AudioData({ format: "f32-planar", sampleRate: rate, numberOfFrames: mono.length, numberOfChannels: 1, timestamp: t, data: mono });
    this.#audio.encode(data);
    data.close();
  }

  /** A lower or higher video bitrate (the backlog decides), from the next key frame. */
  setBitrate(bps) {
    if (bps === this.bitrate || this.#video?.state !== "configured") return;
    this.bitrate = bps;
    this.#video.configure(videoConfig(bps));
    this.#lastKey = -Infinity;
  }

  /** Ends capture; the last fragment comes out marked `last`. */
  async stop() {
    this.#stopped = true;
    this.#abort.abort();
    await Promise.allSettled([this.#video.flush(), this.#audio.flush()]);
    await this.#then(() => this.#fragmenter.finish());
    this.#video.close();
    this.#audio.close();
  }
}
