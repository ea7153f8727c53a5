// mediabunny's fragmented MP4 as the page uses it, on synthetic packets (node has no
// WebCodecs): one init segment naming both codecs, then fragments of 2 s that each start
// on a video key frame, hold both tracks, and tile the media time without a hole.
import { test } from "node:test";
import assert from "node:assert/strict";
import { EncodedPacket } from "mediabunny";
import { Fragmenter } from "../src/fragmenter.js";
import { fromHex } from "../src/bytes.js";

// A real 640x480 constrained-baseline SPS/PPS (level 3.1), as an avcC record.
const SPS = fromHex("6742c01fda0280f69b808080a0000003002000000791e30654");
const PPS = fromHex("68ce3c80");
const avcC = Uint8Array.of(1, 0x42, 0xc0, 0x1f, 0xff, 0xe1, 0, SPS.length, ...SPS, 1, 0, PPS.length, ...PPS);

function boxes(data) {
  const out = [];
  for (let at = 0; at + 8 <= data.length; ) {
    const size = new DataView(data.buffer, data.byteOffset + at).getUint32(0);
    out.push(new TextDecoder().decode(data.subarray(at + 4, at + 8)));
    if (size < 8) break;
    at += size;
  }
  return out;
}

function count(data, type) {
  const needle = new TextEncoder().encode(type);
  let n = 0;
  for (let i = 0; i + 4 <= data.length; i++) if (needle.every((b, j) => data[i + j] === b)) n++;
  return n;
}

test("7 s of packets give an init segment and fragments of 2 s on key frames", async () => {
  const frags = [];
  const f = new Fragmenter({ onFragment: (x) => frags.push(x) });
  await f.start();
  const videoMeta = { decoderConfig: { codec: "avc1.42c01f", codedWidth: 640, codedHeight: 480, description: avcC } };
  const audioMeta = { decoderConfig: { codec: "opus", sampleRate: 48000, numberOfChannels: 1 } };
  const frame = 1 / 15;
  let a = 0;
  for (let i = 0; i < 7 * 15; i++) {
    const t = i * frame;
    const key = i % 30 === 0;
    await f.addVideo(new EncodedPacket(new Uint8Array(key ? 900 : 120).fill(i % 251), key ? "key" : "delta", t, frame), i === 0 ? videoMeta : undefined);
    for (; a * 0.02 < t + frame; a++) await f.addAudio(new EncodedPacket(new Uint8Array(40).fill(7), "key", a * 0.02, 0.02), a === 0 ? audioMeta : undefined);
  }
  await f.finish();
  assert.ok(frags[0].init);
  assert.deepEqual(boxes(frags[0].data), ["ftyp", "moov"]);
  assert.equal(count(frags[0].data, "avc1"), 1);
  assert.equal(count(frags[0].data, "Opus"), 1);
  const media = frags.slice(1);
  assert.equal(media.length, 4, JSON.stringify(media.map((m) => [m.mediaStartUs, m.mediaEndUs])));
  let expected = 0;
  for (const [i, m] of media.entries()) {
    assert.deepEqual(boxes(m.data), ["moof", "mdat"]);
    assert.equal(count(m.data, "traf"), 2, `fragment ${i} holds both tracks`);
    assert.equal(m.mediaStartUs, expected, `fragment ${i} starts where the previous ended`);
    assert.equal(m.last, i === media.length - 1);
    expected = m.mediaEndUs;
  }
  assert.deepEqual(media.slice(0, 3).map((m) => m.mediaStartUs), [0, 2_000_000, 4_000_000]);
  assert.ok(Math.abs(media[3].mediaEndUs - 7_000_000) < 25_000, `${media[3].mediaEndUs}`);
});
