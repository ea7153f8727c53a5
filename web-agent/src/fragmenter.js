// Encoded packets in, the stream's fragments out: one initialisation segment (ftyp+moov),
// then one moof+mdat per fragment holding both tracks, each starting on a video key frame
// (mediabunny's fragmented MP4 writer; the page asks the encoder for a key frame every
// 2 s, so fragments are 2 s long). A fragment's media range runs from its first sample to
// the next fragment's first sample, so each is handed over once the next one begins (or
// at the end); the last one is marked `last`.

import { EncodedAudioPacketSource, EncodedPacket, EncodedVideoPacketSource, Mp4OutputFormat, NullTarget, Output } from "mediabunny";
import { concat } from "./bytes.js";

export class Fragmenter {
  #output;
  #video;
  #audio;
  #init = [];
  #moof = null;
  #pending = null; // { data, startUs }
  #endUs = 0;
  #onFragment;

  /**
   * `onFragment({ data, mediaStartUs, mediaEndUs, last, init })`, called synchronously
   * and in order (the caller queues); the init segment comes first with `init: true` and
   * an empty range.
   */
  constructor({ videoCodec = "avc", audioCodec = "opus", frameRate = 15, fragmentS = 2, onFragment }) {
    this.#onFragment = onFragment;
    this.#output = new Output({
      target: new NullTarget(),
      format: new Mp4OutputFormat({
        fastStart: "fragmented",
        minimumFragmentDuration: fragmentS,
        onFtyp: (data) => this.#init.push(data.slice()),
        onMoov: (data) => this.#init.push(data.slice()),
        onMoof: (data, _position, timestamp) => {
          this.#moof = { data: data.slice(), startUs: Math.round(timestamp * 1e6) };
        },
        onMdat: (data) => this.#fragment(concat(this.#moof.data, data), this.#moof.startUs),
      }),
    });
    this.#video = new EncodedVideoPacketSource(videoCodec);
    this.#audio = new EncodedAudioPacketSource(audioCodec);
    this.#output.addVideoTrack(this.#video, { frameRate });
    this.#output.addAudioTrack(this.#audio);
  }

  async start() {
    await this.#output.start();
  }

  /** An `EncodedVideoChunk` (or packet-like object) and its encoder metadata. */
  async addVideo(chunk, meta) {
    const p = chunk instanceof EncodedPacket ? chunk : EncodedPacket.fromEncodedChunk(chunk);
    this.#endUs = Math.max(this.#endUs, Math.round((p.timestamp + p.duration) * 1e6));
    await this.#video.add(p, meta);
  }

  async addAudio(chunk, meta) {
    const p = chunk instanceof EncodedPacket ? chunk : EncodedPacket.fromEncodedChunk(chunk);
    this.#endUs = Math.max(this.#endUs, Math.round((p.timestamp + p.duration) * 1e6));
    await this.#audio.add(p, meta);
  }

  /** Writes what is left; the last fragment comes out marked `last`. */
  async finish() {
    await this.#output.finalize();
    this.#flush(null, true);
  }

  #fragment(data, startUs) {
    if (this.#init.length) {
      const init = concat(...this.#init);
      this.#init = [];
      this.#onFragment({ data: init, mediaStartUs: 0, mediaEndUs: 0, last: false, init: true });
    }
    this.#flush(startUs, false);
    this.#pending = { data, startUs };
  }

  #flush(nextStartUs, last) {
    const p = this.#pending;
    if (!p) return;
    this.#pending = null;
    // mediabunny rebases timestamps on the stream's first sample; `endUs` is in the
    // packets' own time, which starts at 0 as the page feeds it.
    const end = nextStartUs ?? Math.max(this.#endUs, p.startUs);
    this.#onFragment({ data: p.data, mediaStartUs: p.startUs, mediaEndUs: end, last, init: false });
  }
}
