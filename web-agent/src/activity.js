// The activity strip and thumbnails, computed in the page from the raw frames and samples
// before encoding, as the native agent's `capture/activity.rs` (same scales, same rules):
// per second, motion (mean absolute difference between consecutive 64x48 grey frames)
// and audio level (RMS); per fragment, one 160x120 JPEG. No biometrics.
//
// Frames and samples are kept with their capture time (the packets' own time, which the
// fragments' ranges use) and put into seconds only when a fragment asks, counted from its
// stream's origin: the seconds a fragment carries are then exactly those of the range its
// header says (the server refuses an activity longer than that), whatever the delay before
// the first frame and whenever a new stream starts.

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
  #previous = null;
  #motion = []; // [µs, mean absolute difference from the frame before]
  #audio = []; // [µs, sum of squares, samples]
  #thumbs = []; // [µs, JPEG]

  /** `gray`: a Uint8Array of luma, the same size every frame. */
  videoFrame(ptsUs, gray) {
    const prev = this.#previous;
    if (prev && prev.length === gray.length && gray.length > 0) {
      let sum = 0;
      for (let i = 0; i < gray.length; i++) sum += Math.abs(prev[i] - gray[i]);
      this.#motion.push([ptsUs, sum / gray.length]);
    }
    this.#previous = gray;
  }

  /** `samples`: Float32Array, -1..1, mono. */
  audioSamples(ptsUs, samples) {
    let sum = 0;
    for (const v of samples) sum += v * v;
    this.#audio.push([ptsUs, sum, samples.length]);
  }

  thumbnail(ptsUs, jpeg) {
    this.#thumbs.push([ptsUs, jpeg]);
  }

  /**
   * The fragment `[startUs, endUs)` of capture time, in a stream whose media time 0 is
   * `originUs` of capture time: the activity of each second (of media time) starting
   * within the range, and the fragment's thumbnail. Asked in order; what is older than the
   * fragment is dropped then, so memory stays bounded over hours however late it asks.
   */
  sideFor(startUs, endUs, originUs = 0) {
    const second = (t) => Math.floor((t - originUs) / 1e6);
    const firstS = Math.max(0, second(startUs));
    const lastS = Math.max(firstS, second(Math.max(startUs, endUs - 1)));
    const motion = Array.from({ length: lastS - firstS + 1 }, () => [0, 0]);
    const audio = Array.from({ length: lastS - firstS + 1 }, () => [0, 0]);
    for (const [t, mad] of this.#motion) {
      const e = motion[second(t) - firstS];
      if (e) (e[0] += mad), (e[1] += 1);
    }
    for (const [t, sum, n] of this.#audio) {
      const e = audio[second(t) - firstS];
      if (e) (e[0] += sum), (e[1] += n);
    }
    // Neighbouring fragments share the second one ends and the next starts in.
    const keepFrom = originUs + firstS * 1e6;
    this.#motion = this.#motion.filter(([t]) => t >= keepFrom);
    this.#audio = this.#audio.filter(([t]) => t >= keepFrom);
    const thumb =
      this.#thumbs.find(([t]) => t + 100_000 >= startUs && t < endUs) ?? [...this.#thumbs].reverse().find(([t]) => t < startUs);
    this.#thumbs = this.#thumbs.filter(([t]) => t + 2_000_000 >= startUs);
    return {
      activity: {
        firstS,
        motion: motion.map(([sum, n]) => (n ? motionLevel(sum / n) : 0)),
        audio: audio.map(([sum, n]) => (n ? audioLevel(Math.sqrt(sum / n)) : 0)),
      },
      thumbnail: thumb ? thumb[1] : new Uint8Array(0),
    };
  }
}
