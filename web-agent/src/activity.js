// The activity strip and thumbnails, computed in the page from the raw frames and samples
// before encoding, as the native agent's `capture/activity.rs` (same scales, same rules):
// per second, motion (mean absolute difference between consecutive 64x48 grey frames)
// and audio level (RMS); per fragment, one 160x120 JPEG. No biometrics.

const THUMBS_KEPT = 8;

/** 0–100 from a mean absolute difference of 0–255, square-root scale. */
export function motionLevel(mad) {
  return Math.min(100, Math.max(0, Math.round(100 * Math.sqrt(mad / 64))));
}

/** 0–100 from an RMS of 0–1: -60 dBFS and below is 0, full scale 100. */
export function audioLevel(rms) {
  if (rms <= 0) return 0;
  return Math.min(100, Math.max(0, Math.round(((20 * Math.log10(rms) + 60) / 60) * 100)));
}

export class Analysis {
  #firstVideoUs = null;
  #firstAudioUs = null;
  #previous = null;
  #motion = new Map(); // second → [sum of mean differences, frames]
  #audio = new Map(); // second → [sum of squares, samples]
  #thumbs = []; // [µs since the first frame, JPEG]

  /** `gray`: a Uint8Array of luma, the same size every frame. */
  videoFrame(ptsUs, gray) {
    this.#firstVideoUs ??= ptsUs;
    const second = Math.floor(Math.max(0, ptsUs - this.#firstVideoUs) / 1e6);
    const prev = this.#previous;
    if (prev && prev.length === gray.length && gray.length > 0) {
      let sum = 0;
      for (let i = 0; i < gray.length; i++) sum += Math.abs(prev[i] - gray[i]);
      const e = this.#motion.get(second) ?? [0, 0];
      e[0] += sum / gray.length;
      e[1] += 1;
      this.#motion.set(second, e);
    }
    this.#previous = gray;
  }

  /** `samples`: Float32Array, -1..1, mono. */
  audioSamples(ptsUs, samples) {
    this.#firstAudioUs ??= ptsUs;
    const second = Math.floor(Math.max(0, ptsUs - this.#firstAudioUs) / 1e6);
    const e = this.#audio.get(second) ?? [0, 0];
    for (const v of samples) e[0] += v * v;
    e[1] += samples.length;
    this.#audio.set(second, e);
  }

  thumbnail(ptsUs, jpeg) {
    this.#firstVideoUs ??= ptsUs;
    this.#thumbs.push([ptsUs - this.#firstVideoUs, jpeg]);
    while (this.#thumbs.length > THUMBS_KEPT) this.#thumbs.shift();
  }

  /** The activity of the seconds starting within [start, end) and the fragment's thumbnail. */
  sideFor(startUs, endUs) {
    const firstS = Math.floor(startUs / 1e6);
    const lastS = Math.floor(Math.max(0, endUs - 1) / 1e6);
    const motion = [];
    const audio = [];
    for (let s = firstS; s <= Math.max(lastS, firstS); s++) {
      const m = this.#motion.get(s);
      motion.push(m ? motionLevel(m[0] / Math.max(1, m[1])) : 0);
      const a = this.#audio.get(s);
      audio.push(a ? audioLevel(Math.sqrt(a[0] / Math.max(1, a[1]))) : 0);
    }
    for (const map of [this.#motion, this.#audio]) for (const s of map.keys()) if (s + 1 < firstS) map.delete(s);
    const thumb =
      this.#thumbs.find(([t]) => t + 100_000 >= startUs && t < endUs) ?? [...this.#thumbs].reverse().find(([t]) => t < startUs);
    this.#thumbs = this.#thumbs.filter(([t]) => t + 2_000_000 >= startUs);
    return { activity: { firstS, motion, audio }, thumbnail: thumb ? thumb[1] : new Uint8Array(0) };
  }
}
