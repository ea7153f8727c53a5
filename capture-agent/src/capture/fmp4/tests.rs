//! Unit tests of the regrouper on synthetic ISO-BMFF input.
//!
//! The boxes are hand-built here, as mp4mux would write them in streamable
//! fragmented mode (one `traf` per `moof`, `trun` offsets relative to the
//! `moof`), carrying only the fields the parser reads. The output is checked
//! with a separate little parser, so that a mistake shared by `write_moof` and
//! `parse_moof` cannot hide itself.

use super::{first_sample_sync, MediaFragment, Remuxer, SAMPLE_IS_NON_SYNC};

// ---------------------------------------------------------------------------
// Box builder

fn bx(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + payload.len());
    b.extend_from_slice(&(8 + payload.len() as u32).to_be_bytes());
    b.extend_from_slice(kind);
    b.extend_from_slice(payload);
    b
}

/// A box with a 64-bit size (size field 1, then the largesize).
fn large_bx(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + payload.len());
    b.extend_from_slice(&1u32.to_be_bytes());
    b.extend_from_slice(kind);
    b.extend_from_slice(&(16 + payload.len() as u64).to_be_bytes());
    b.extend_from_slice(payload);
    b
}

fn full_bx(kind: &[u8; 4], version: u8, flags: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = ((u32::from(version) << 24) | flags).to_be_bytes().to_vec();
    p.extend_from_slice(payload);
    bx(kind, &p)
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn be32(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

fn be64(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

const NON_SYNC: u32 = SAMPLE_IS_NON_SYNC;

#[derive(Clone, Copy)]
struct TrackSpec {
    id: u32,
    timescale: u32,
    handler: &'static [u8; 4],
    /// Version of tkhd and mdhd (1: 64-bit times before the fields the parser reads).
    version: u8,
}

const VIDEO: TrackSpec = TrackSpec {
    id: 1,
    timescale: 90_000,
    handler: b"vide",
    version: 0,
};
const AUDIO: TrackSpec = TrackSpec {
    id: 2,
    timescale: 48_000,
    handler: b"soun",
    version: 0,
};

fn trak(t: &TrackSpec) -> Vec<u8> {
    // tkhd: creation and modification times, then the track id.
    let times: &[u8] = if t.version == 1 { &[0; 16] } else { &[0; 8] };
    let tkhd = full_bx(b"tkhd", t.version, 3, &cat(&[times, &be32(t.id), &[0; 64]]));
    // mdhd: creation and modification times, then the timescale.
    let duration: &[u8] = if t.version == 1 { &[0; 8] } else { &[0; 4] };
    let mdhd = full_bx(
        b"mdhd",
        t.version,
        0,
        &cat(&[times, &be32(t.timescale), duration, &[0x55, 0xc4, 0, 0]]),
    );
    // hdlr: pre_defined, handler type, reserved, empty name.
    let hdlr = full_bx(b"hdlr", 0, 0, &cat(&[&[0; 4], t.handler, &[0; 13]]));
    let mdia = bx(b"mdia", &cat(&[&mdhd, &hdlr]));
    bx(b"trak", &cat(&[&tkhd, &mdia]))
}

/// trex defaults: (track id, duration, size, flags).
fn moov(tracks: &[TrackSpec], trex: &[(u32, u32, u32, u32)]) -> Vec<u8> {
    let mvhd = full_bx(b"mvhd", 0, 0, &[0; 96]);
    let mut body = mvhd;
    for t in tracks {
        body.extend_from_slice(&trak(t));
    }
    let mut mvex = Vec::new();
    for &(id, duration, size, flags) in trex {
        let payload = cat(&[
            &be32(id),
            &be32(1),
            &be32(duration),
            &be32(size),
            &be32(flags),
        ]);
        mvex.extend_from_slice(&full_bx(b"trex", 0, 0, &payload));
    }
    body.extend_from_slice(&bx(b"mvex", &mvex));
    bx(b"moov", &body)
}

fn ftyp() -> Vec<u8> {
    bx(b"ftyp", b"iso6\0\0\0\0iso6mp41")
}

fn init(tracks: &[TrackSpec]) -> Vec<u8> {
    cat(&[&ftyp(), &moov(tracks, &[])])
}

#[derive(Clone, Debug, PartialEq)]
struct TestSample {
    duration: u32,
    flags: u32,
    data: Vec<u8>,
}

/// Recognizable bytes: track id, sample index, then a pattern; key frames are bigger.
fn payload(track: u32, index: usize, key: bool) -> Vec<u8> {
    let len = if key { 200 } else { 30 + index % 13 };
    let mut d = vec![track as u8, (index >> 8) as u8, index as u8];
    d.extend((3..len).map(|j| (index * 7 + j + track as usize * 101) as u8));
    d
}

/// mp4mux's layout: tfhd with default-base-is-moof, tfdt, one trun with a data
/// offset and per-sample duration, size and flags.
fn traf(track_id: u32, decode_time: u64, samples: &[TestSample], data_offset: u32) -> Vec<u8> {
    let tfhd = full_bx(b"tfhd", 0, 0x02_0000, &be32(track_id));
    let tfdt = if decode_time > u64::from(u32::MAX) {
        full_bx(b"tfdt", 1, 0, &be64(decode_time))
    } else {
        full_bx(b"tfdt", 0, 0, &be32(decode_time as u32))
    };
    let mut trun = cat(&[&be32(samples.len() as u32), &be32(data_offset)]);
    for s in samples {
        trun.extend_from_slice(&be32(s.duration));
        trun.extend_from_slice(&be32(s.data.len() as u32));
        trun.extend_from_slice(&be32(s.flags));
    }
    let trun = full_bx(b"trun", 0, 0x701, &trun);
    bx(b"traf", &cat(&[&tfhd, &tfdt, &trun]))
}

fn mfhd(sequence: u32) -> Vec<u8> {
    full_bx(b"mfhd", 0, 0, &be32(sequence))
}

/// One single-track moof+mdat pair as mp4mux writes it.
fn chunk(
    sequence: u32,
    track_id: u32,
    decode_time: u64,
    samples: &[TestSample],
) -> (Vec<u8>, Vec<u8>) {
    // The moof's size does not depend on the data offset's value.
    let len = bx(
        b"moof",
        &cat(&[&mfhd(sequence), &traf(track_id, decode_time, samples, 0)]),
    )
    .len();
    let moof = bx(
        b"moof",
        &cat(&[
            &mfhd(sequence),
            &traf(track_id, decode_time, samples, len as u32 + 8),
        ]),
    );
    let data: Vec<u8> = samples.iter().flat_map(|s| s.data.clone()).collect();
    (moof, bx(b"mdat", &data))
}

/// One appsink buffer: bytes, PTS, duration.
type Piece = (Vec<u8>, Option<u64>, Option<u64>);

/// A synthetic capture: video at 24 fps with a key frame every 2 s, AAC-like
/// audio at 48 kHz (1024-sample frames), each cut into its own ~250 ms
/// moof+mdat pairs, interleaved by time like mp4mux does.
struct Capture {
    init: Vec<u8>,
    /// The stream as appsink buffers: init, then per chunk its moof, its mdat
    /// header and one buffer per sample stamped with its PTS (offset by
    /// `PTS_BASE_NS`, like a running time that does not start at 0).
    pieces: Vec<Piece>,
    /// Input samples of each track, in order: video, audio.
    samples: [Vec<TestSample>; 2],
}

const FRAME: u32 = 3750; // 1/24 s at 90 kHz
const KEY_EVERY: usize = 48; // 2 s
const AAC_FRAME: u32 = 1024;
const PTS_BASE_NS: u64 = 3_500_000_000;
/// One audio frame, the most by which a fragment can run past the next one's start.
const AAC_FRAME_US: u64 = 21_334;
/// Without buffer timestamps, sample times accumulate durations truncated to
/// whole nanoseconds (1/24 s is 41_666_666 ns): 48 frames fall 32 ns short.
const ROUNDING_US: u64 = 1;

fn capture(seconds: usize) -> Capture {
    capture_with(seconds, seconds)
}

/// `capture`, with audio lasting `audio_seconds` only.
fn capture_with(seconds: usize, audio_seconds: usize) -> Capture {
    let video: Vec<TestSample> = (0..seconds * 24)
        .map(|i| TestSample {
            duration: FRAME,
            flags: if i % KEY_EVERY == 0 { 0 } else { NON_SYNC },
            data: payload(VIDEO.id, i, i % KEY_EVERY == 0),
        })
        .collect();
    // 48000 * seconds / 1024 frames, the last chunk possibly shorter.
    let audio: Vec<TestSample> = (0..audio_seconds * 48_000 / 1024)
        .map(|i| TestSample {
            duration: AAC_FRAME,
            flags: 0,
            data: payload(AUDIO.id, i, false),
        })
        .collect();

    // (start in ns, track, first sample index, samples)
    let mut chunks: Vec<(u64, TrackSpec, usize, &[TestSample])> = Vec::new();
    for (t, samples, per_chunk, duration) in
        [(VIDEO, &video, 6, FRAME), (AUDIO, &audio, 12, AAC_FRAME)]
    {
        for (c, run) in samples.chunks(per_chunk).enumerate() {
            let first = c * per_chunk;
            let start = first as u64 * u64::from(duration) * 1_000_000_000 / u64::from(t.timescale);
            chunks.push((start, t, first, run));
        }
    }
    chunks.sort_by_key(|c| (c.0, c.1.id));

    let init = init(&[VIDEO, AUDIO]);
    let mut pieces: Vec<Piece> = vec![(init.clone(), None, None)];
    for (seq, (_, t, first, run)) in chunks.into_iter().enumerate() {
        let duration = u64::from(run[0].duration);
        let decode_time = first as u64 * duration;
        let (moof, mdat) = chunk(seq as u32 + 1, t.id, decode_time, run);
        pieces.push((moof, None, None));
        pieces.push((mdat[..8].to_vec(), None, None));
        for (i, s) in run.iter().enumerate() {
            let ns = |units: u64| units * 1_000_000_000 / u64::from(t.timescale);
            let pts = ns(decode_time + i as u64 * duration);
            let end = ns(decode_time + (i as u64 + 1) * duration);
            pieces.push((s.data.clone(), Some(PTS_BASE_NS + pts), Some(end - pts)));
        }
    }
    Capture {
        init,
        pieces,
        samples: [video, audio],
    }
}

impl Capture {
    fn bytes(&self) -> Vec<u8> {
        self.pieces.iter().flat_map(|p| p.0.clone()).collect()
    }
}

// ---------------------------------------------------------------------------
// Feeding

fn push_all(r: &mut Remuxer, pieces: &[Piece]) -> Vec<MediaFragment> {
    let mut out = Vec::new();
    for (data, pts, duration) in pieces {
        out.extend(r.push(data, *pts, *duration).expect("push"));
    }
    out
}

fn run(fragment_ms: u32, pieces: &[Piece]) -> Vec<MediaFragment> {
    let mut r = Remuxer::new(fragment_ms);
    let mut out = push_all(&mut r, pieces);
    out.extend(r.finish().expect("finish"));
    out
}

/// Feeds unstamped bytes and returns the first error.
fn error_of(fragment_ms: u32, chunks: &[&[u8]]) -> String {
    let mut r = Remuxer::new(fragment_ms);
    for c in chunks {
        if let Err(e) = r.push(c, None, None) {
            return format!("{e:#}");
        }
    }
    match r.finish() {
        Err(e) => format!("{e:#}"),
        Ok(_) => panic!("malformed input accepted"),
    }
}

/// What a consumer sees of a fragment, comparable across runs.
fn summary(out: &[MediaFragment]) -> Vec<(bool, u64, u64, Vec<u8>)> {
    out.iter()
        .map(|f| (f.is_init, f.media_start_us, f.media_end_us, f.data.to_vec()))
        .collect()
}

// ---------------------------------------------------------------------------
// Independent reader of the regrouped output

#[derive(Debug)]
struct OutTraf {
    track_id: u32,
    decode_time: u64,
    trun_version: u8,
    samples: Vec<(TestSample, Option<i32>)>,
}

#[derive(Debug)]
struct OutFragment {
    sequence: u32,
    trafs: Vec<OutTraf>,
}

fn u32_at(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(d[at..at + 4].try_into().unwrap())
}

/// Splits a container payload into (type, payload), insisting on whole 32-bit-sized boxes.
fn boxes(mut d: &[u8]) -> Vec<([u8; 4], &[u8])> {
    let mut out = Vec::new();
    while !d.is_empty() {
        let size = u32_at(d, 0) as usize;
        assert!(size >= 8 && size <= d.len(), "malformed output box");
        out.push((d[4..8].try_into().unwrap(), &d[8..size]));
        d = &d[size..];
    }
    out
}

/// Parses an output fragment (moof + mdat), following each trun's data offset
/// (relative to the moof, per default-base-is-moof) to the sample bytes, and
/// checks that the trafs' data tile the mdat payload in order.
fn read_fragment(f: &[u8]) -> OutFragment {
    let top = boxes(f);
    assert_eq!(top.len(), 2, "a fragment is one moof and one mdat");
    assert_eq!(&top[0].0, b"moof");
    assert_eq!(&top[1].0, b"mdat");
    let moof_len = top[0].1.len() + 8;
    let mut expected_offset = moof_len + 8;
    let mut sequence = 0;
    let mut trafs = Vec::new();
    for (kind, body) in boxes(top[0].1) {
        match &kind {
            b"mfhd" => sequence = u32_at(body, 4),
            b"traf" => {
                let children = boxes(body);
                let find = |k: &[u8; 4]| children.iter().find(|c| &c.0 == k).expect("child").1;
                let tfhd = find(b"tfhd");
                assert_eq!(
                    u32_at(tfhd, 0),
                    0x02_0000,
                    "tfhd: default-base-is-moof only"
                );
                let tfdt = find(b"tfdt");
                let decode_time = match tfdt[0] {
                    1 => u64::from_be_bytes(tfdt[4..12].try_into().unwrap()),
                    _ => u64::from(u32_at(tfdt, 4)),
                };
                let trun = find(b"trun");
                let flags = u32_at(trun, 0) & 0xff_ffff;
                assert_eq!(
                    flags & 0x701,
                    0x701,
                    "trun: data offset, durations, sizes, flags"
                );
                let count = u32_at(trun, 4) as usize;
                let data_offset = u32_at(trun, 8) as usize;
                assert_eq!(
                    data_offset, expected_offset,
                    "traf data follows the previous one"
                );
                let cto = flags & 0x800 != 0;
                let stride = if cto { 16 } else { 12 };
                let mut at = data_offset;
                let mut samples = Vec::new();
                for i in 0..count {
                    let e = 12 + i * stride;
                    let size = u32_at(trun, e + 4) as usize;
                    let sample = TestSample {
                        duration: u32_at(trun, e),
                        flags: u32_at(trun, e + 8),
                        data: f[at..at + size].to_vec(),
                    };
                    samples.push((sample, cto.then(|| u32_at(trun, e + 12) as i32)));
                    at += size;
                }
                assert_eq!(trun.len(), 12 + count * stride);
                expected_offset = at;
                trafs.push(OutTraf {
                    track_id: u32_at(tfhd, 4),
                    decode_time,
                    trun_version: trun[0],
                    samples,
                });
            }
            other => panic!(
                "unexpected {:?} in output moof",
                String::from_utf8_lossy(other)
            ),
        }
    }
    assert_eq!(
        expected_offset,
        f.len(),
        "the trafs' data fill the mdat exactly"
    );
    OutFragment { sequence, trafs }
}

/// All samples of `track_id` across the media fragments, in order.
fn samples_of(fragments: &[OutFragment], track_id: u32) -> Vec<TestSample> {
    fragments
        .iter()
        .flat_map(|f| f.trafs.iter().filter(|t| t.track_id == track_id))
        .flat_map(|t| t.samples.iter().map(|(s, _)| s.clone()))
        .collect()
}

// ---------------------------------------------------------------------------
// Well-formed streams

/// Checks the regrouping of `capture(8)` at 2 s: the init segment, then one
/// fragment per 2 s GOP, each opening on its key frame, covering every input
/// sample exactly once with its bytes intact.
fn check_regrouped(c: &Capture, out: &[MediaFragment]) {
    assert!(out[0].is_init);
    assert_eq!((out[0].media_start_us, out[0].media_end_us), (0, 0));
    assert_eq!(
        &out[0].data[..],
        &c.init[..],
        "init segment is ftyp+moov unchanged"
    );

    let media = &out[1..];
    assert_eq!(media.len(), 4, "8 s in 2 s fragments");
    assert!(media.iter().all(|f| !f.is_init));
    let parsed: Vec<OutFragment> = media.iter().map(|f| read_fragment(&f.data)).collect();
    for (k, (f, p)) in media.iter().zip(&parsed).enumerate() {
        let k = k as u64;
        assert_eq!(p.sequence, k as u32 + 1);
        // The video traf comes first and opens on a key frame, 48 frames per fragment.
        assert_eq!(
            first_sample_sync(&f.data).unwrap(),
            vec![(1, true), (2, true)]
        );
        let v = &p.trafs[0];
        assert_eq!(v.track_id, 1);
        assert_eq!(v.samples.len(), KEY_EVERY);
        assert_eq!(v.decode_time, k * KEY_EVERY as u64 * u64::from(FRAME));
        assert_eq!(v.samples[0].0.flags & NON_SYNC, 0);
        assert!(v.samples[1..].iter().all(|(s, _)| s.flags & NON_SYNC != 0));
        // Audio: whatever starts before the next key frame, decode times continuing.
        let a = &p.trafs[1];
        assert_eq!(a.track_id, 2);
        let audio_before: usize = parsed[..k as usize]
            .iter()
            .map(|p| p.trafs[1].samples.len())
            .sum();
        assert_eq!(a.decode_time, audio_before as u64 * u64::from(AAC_FRAME));

        let start = f.media_start_us;
        assert!(
            start.abs_diff(k * 2_000_000) <= ROUNDING_US,
            "fragment {k} starts at {start} us, not on its key frame"
        );
        let length = f.media_end_us - f.media_start_us;
        assert!(
            (2_000_000 - ROUNDING_US..2_000_000 + AAC_FRAME_US).contains(&length),
            "fragment {k} lasts {length} us"
        );
    }
    // Contiguous: each fragment ends where the next starts, give or take the
    // audio frame that straddles the boundary.
    for w in media.windows(2) {
        assert!(w[1].media_start_us <= w[0].media_end_us);
        assert!(w[0].media_end_us - w[1].media_start_us < AAC_FRAME_US);
    }
    assert_eq!(samples_of(&parsed, 1), c.samples[0], "video samples intact");
    assert_eq!(samples_of(&parsed, 2), c.samples[1], "audio samples intact");
}

#[test]
fn regroups_stamped_stream_into_key_frame_fragments() {
    let c = capture(8);
    check_regrouped(&c, &run(2000, &c.pieces));
}

#[test]
fn regroups_unstamped_stream_from_decode_times() {
    // Without buffer timestamps the times come from tfdt and the durations.
    let c = capture(8);
    check_regrouped(&c, &run(2000, &[(c.bytes(), None, None)]));
}

#[test]
fn shorter_fragment_ms_still_cuts_only_on_key_frames() {
    // Asking for 500 ms with a key frame every 2 s gives 2 s fragments.
    let c = capture(8);
    check_regrouped(&c, &run(500, &c.pieces));
}

#[test]
fn byte_at_a_time_gives_the_same_output_as_one_push() {
    let c = capture(8);
    let bytes = c.bytes();
    let whole = run(2000, &[(bytes.clone(), None, None)]);
    let singles: Vec<Piece> = bytes.iter().map(|b| (vec![*b], None, None)).collect();
    assert_eq!(summary(&run(2000, &singles)), summary(&whole));
}

#[test]
fn buffers_split_mid_header_give_the_same_output() {
    // Each appsink buffer cut into 3-byte pieces (so box headers and sizes
    // straddle pushes), the timestamp staying on the buffer's first piece.
    let c = capture(8);
    let mut split: Vec<Piece> = Vec::new();
    for (data, pts, duration) in &c.pieces {
        for (i, part) in data.chunks(3).enumerate() {
            let stamp = if i == 0 {
                (*pts, *duration)
            } else {
                (None, None)
            };
            split.push((part.to_vec(), stamp.0, stamp.1));
        }
    }
    let whole = run(2000, &c.pieces);
    assert_eq!(summary(&run(2000, &split)), summary(&whole));
}

#[test]
fn finish_flushes_the_last_group() {
    let c = capture(8);
    let mut r = Remuxer::new(2000);
    let pushed = push_all(&mut r, &c.pieces);
    // The 6-8 s group has no following key frame to close it.
    assert_eq!(pushed.len(), 1 + 3);
    let flushed = r.finish().unwrap();
    assert_eq!(flushed.len(), 1);
    assert_eq!(flushed[0].media_start_us, 6_000_000);
    assert_eq!(flushed[0].media_end_us, 8_000_000);
    let last = read_fragment(&flushed[0].data);
    assert_eq!(last.sequence, 4);
    assert_eq!(last.trafs[0].samples.len(), KEY_EVERY);
    assert_eq!(r.finish().unwrap().len(), 0, "nothing left to flush");
}

#[test]
fn finish_sends_an_init_segment_without_fragments() {
    let mut r = Remuxer::new(2000);
    let init = init(&[VIDEO, AUDIO]);
    assert!(
        r.push(&init, None, None).unwrap().is_empty(),
        "init waits for the first moof"
    );
    let out = r.finish().unwrap();
    assert_eq!(out.len(), 1);
    assert!(out[0].is_init);
    assert_eq!(&out[0].data[..], &init[..]);
}

#[test]
fn incomplete_box_at_end_of_stream_is_dropped() {
    // EOS in the middle of an mdat: the fragments before it are flushed, its
    // samples are lost, and finish reports no error.
    let c = capture(8);
    let bytes = c.bytes();
    let cut = bytes.len() - 10;
    let out = run(2000, &[(bytes[..cut].to_vec(), None, None)]);
    let parsed: Vec<OutFragment> = out[1..].iter().map(|f| read_fragment(&f.data)).collect();
    let video = samples_of(&parsed, 1);
    let audio = samples_of(&parsed, 2);
    // The last chunk is the final 3 audio frames (375 = 31 * 12 + 3).
    assert_eq!(video, c.samples[0]);
    assert_eq!(audio, c.samples[1][..375 - 3]);
}

#[test]
fn audio_that_stops_does_not_hold_video_back() {
    // A microphone that stops after 1 s: video keeps being emitted once it is
    // a whole fragment ahead of the boundary.
    let c = capture_with(10, 1);
    let mut r = Remuxer::new(2000);
    let out = push_all(&mut r, &c.pieces);
    // Each group goes out once video is a whole fragment past its end: 0-2 s
    // at 4 s, 2-4 s at 6 s, 4-6 s at 8 s; 6-8 s would need video at 10 s.
    let starts: Vec<u64> = out[1..].iter().map(|f| f.media_start_us).collect();
    assert_eq!(starts, vec![0, 2_000_000, 4_000_000]);
}

// ---------------------------------------------------------------------------
// Other layouts the parser handles

/// A two-track stream with explicit, small chunks: a video key frame, then an
/// audio frame, then a second key frame, so that finish() emits two fragments.
fn tiny_stream(video: TrackSpec, video_decode_time: u64) -> Vec<u8> {
    let key = |i| TestSample {
        duration: FRAME,
        flags: 0,
        data: payload(video.id, i, true),
    };
    let a = TestSample {
        duration: AAC_FRAME,
        flags: 0,
        data: payload(AUDIO.id, 0, false),
    };
    let mut s = init(&[video, AUDIO]);
    let (m, d) = chunk(1, video.id, video_decode_time, &[key(0)]);
    s.extend(cat(&[&m, &d]));
    let (m, d) = chunk(2, AUDIO.id, 0, &[a]);
    s.extend(cat(&[&m, &d]));
    let (m, d) = chunk(3, video.id, video_decode_time + u64::from(FRAME), &[key(1)]);
    s.extend(cat(&[&m, &d]));
    s
}

#[test]
fn version_1_tkhd_and_mdhd_are_read() {
    // 64-bit creation/modification times move the track id and timescale.
    let video = TrackSpec {
        id: 7,
        timescale: 1_000,
        handler: b"vide",
        version: 1,
    };
    // At 1 kHz a FRAME of 3750 units lasts 3.75 s.
    let out = run(100, &[(tiny_stream(video, 0), None, None)]);
    assert_eq!(out.len(), 3);
    assert_eq!(
        first_sample_sync(&out[1].data).unwrap(),
        vec![(7, true), (2, true)]
    );
    assert_eq!((out[1].media_start_us, out[1].media_end_us), (0, 3_750_000));
    assert_eq!(
        (out[2].media_start_us, out[2].media_end_us),
        (3_750_000, 7_500_000)
    );
}

#[test]
fn decode_time_beyond_32_bits_is_kept() {
    // A tfdt version 1 with a decode time past 2^32 (~13 h at 90 kHz): the
    // output keeps it, and media ranges count from the first sample.
    let start = 5u64 << 32;
    // 40 ms, less than a frame: each key frame closes a fragment.
    let out = run(40, &[(tiny_stream(VIDEO, start), None, None)]);
    let first = read_fragment(&out[1].data);
    assert_eq!(first.trafs[0].decode_time, start);
    assert_eq!(
        read_fragment(&out[2].data).trafs[0].decode_time,
        start + u64::from(FRAME)
    );
    // Its time is not truncated to 32 bits either: the first key frame ends
    // 5 * 2^32 / 90 kHz s (plus one frame) after the audio sample at 0.
    let start_ns = (u128::from(start) * 1_000_000_000 / 90_000) as u64;
    assert_eq!(out[1].media_start_us, 0);
    assert_eq!(out[1].media_end_us, (start_ns + 41_666_666) / 1000);
}

#[test]
fn sample_fields_fall_back_to_tfhd_then_trex_defaults() {
    // Video: a trun with only a data offset, durations/sizes/flags from tfhd,
    // and first-sample-flags marking the key frame. Audio: nothing in tfhd
    // either, everything from trex.
    let mut s = cat(&[&ftyp(), &moov(&[VIDEO, AUDIO], &[(2, AAC_FRAME, 4, 0)])]);
    let video_traf = |data_offset: u32| {
        let tfhd = full_bx(
            b"tfhd",
            0,
            0x02_0000 | 0x08 | 0x10 | 0x20,
            &cat(&[&be32(1), &be32(FRAME), &be32(5), &be32(NON_SYNC)]),
        );
        let tfdt = full_bx(b"tfdt", 0, 0, &be32(0));
        let trun = full_bx(
            b"trun",
            0,
            0x005,
            &cat(&[&be32(3), &be32(data_offset), &be32(0)]),
        );
        bx(b"traf", &cat(&[&tfhd, &tfdt, &trun]))
    };
    let len = bx(b"moof", &cat(&[&mfhd(1), &video_traf(0)])).len() as u32;
    s.extend(bx(b"moof", &cat(&[&mfhd(1), &video_traf(len + 8)])));
    s.extend(bx(b"mdat", b"KEY..non1.non2."));

    let audio_traf = |data_offset: u32| {
        let tfhd = full_bx(b"tfhd", 0, 0x02_0000, &be32(2));
        let tfdt = full_bx(b"tfdt", 0, 0, &be32(0));
        let trun = full_bx(b"trun", 0, 0x001, &cat(&[&be32(2), &be32(data_offset)]));
        bx(b"traf", &cat(&[&tfhd, &tfdt, &trun]))
    };
    let len = bx(b"moof", &cat(&[&mfhd(2), &audio_traf(0)])).len() as u32;
    s.extend(bx(b"moof", &cat(&[&mfhd(2), &audio_traf(len + 8)])));
    s.extend(bx(b"mdat", b"aac0aac1"));

    let out = run(2000, &[(s, None, None)]);
    assert_eq!(out.len(), 2);
    let f = read_fragment(&out[1].data);
    let video: Vec<(u32, u32, &[u8])> = f.trafs[0]
        .samples
        .iter()
        .map(|(s, _)| (s.duration, s.flags, &s.data[..]))
        .collect();
    assert_eq!(
        video,
        vec![
            (FRAME, 0, &b"KEY.."[..]),
            (FRAME, NON_SYNC, &b"non1."[..]),
            (FRAME, NON_SYNC, &b"non2."[..]),
        ]
    );
    let audio: Vec<(u32, u32, &[u8])> = f.trafs[1]
        .samples
        .iter()
        .map(|(s, _)| (s.duration, s.flags, &s.data[..]))
        .collect();
    assert_eq!(
        audio,
        vec![(AAC_FRAME, 0, &b"aac0"[..]), (AAC_FRAME, 0, &b"aac1"[..])]
    );
}

#[test]
fn runs_without_data_offset_follow_the_previous_run() {
    // Two trafs in one moof, without default-base-is-moof: the second traf and
    // the second run of each traf have no data offset, their data follows.
    let run_of = |with_offset: Option<u32>, sizes: &[u32], duration: u32| {
        let mut p = be32(sizes.len() as u32).to_vec();
        let mut trun_flags = 0x300; // durations, sizes
        if let Some(o) = with_offset {
            trun_flags |= 0x001;
            p.extend_from_slice(&be32(o));
        }
        for &s in sizes {
            p.extend_from_slice(&be32(duration));
            p.extend_from_slice(&be32(s));
        }
        full_bx(b"trun", 0, trun_flags, &p)
    };
    let traf_of = |id: u32, runs: &[Vec<u8>]| {
        let mut body = cat(&[
            &full_bx(b"tfhd", 0, 0x20, &cat(&[&be32(id), &be32(0)])),
            &full_bx(b"tfdt", 0, 0, &be32(0)),
        ]);
        for r in runs {
            body.extend_from_slice(r);
        }
        bx(b"traf", &body)
    };
    let moof_with = |offset: u32| {
        bx(
            b"moof",
            &cat(&[
                &mfhd(1),
                &traf_of(
                    1,
                    &[run_of(Some(offset), &[3], FRAME), run_of(None, &[2], FRAME)],
                ),
                &traf_of(
                    2,
                    &[run_of(None, &[4], AAC_FRAME), run_of(None, &[1], AAC_FRAME)],
                ),
            ]),
        )
    };
    let len = moof_with(0).len() as u32;
    let s = cat(&[
        &init(&[VIDEO, AUDIO]),
        &moof_with(len + 8),
        &bx(b"mdat", b"v00v1aaaab"),
    ]);
    let out = run(2000, &[(s, None, None)]);
    let f = read_fragment(&out[1].data);
    let data = |t: usize| -> Vec<Vec<u8>> {
        f.trafs[t]
            .samples
            .iter()
            .map(|(s, _)| s.data.clone())
            .collect()
    };
    assert_eq!(data(0), vec![b"v00".to_vec(), b"v1".to_vec()]);
    assert_eq!(data(1), vec![b"aaaa".to_vec(), b"b".to_vec()]);
}

#[test]
fn explicit_base_data_offset_is_a_stream_offset() {
    // tfhd base-data-offset: an absolute position in the whole byte stream.
    let head = init(&[VIDEO, AUDIO]);
    let moof_with = |base: u64| {
        let tfhd = full_bx(b"tfhd", 0, 0x01, &cat(&[&be32(1), &be64(base)]));
        let tfdt = full_bx(b"tfdt", 0, 0, &be32(0));
        let trun = full_bx(
            b"trun",
            0,
            0x701,
            &cat(&[&be32(1), &be32(2), &be32(FRAME), &be32(3), &be32(0)]),
        );
        bx(
            b"moof",
            &cat(&[&mfhd(1), &bx(b"traf", &cat(&[&tfhd, &tfdt, &trun]))]),
        )
    };
    let moof_len = moof_with(0).len() as u64;
    // Payload starts after init, moof and the mdat header; offset 2 skips "xx".
    let base = head.len() as u64 + moof_len + 8;
    let s = cat(&[&head, &moof_with(base), &bx(b"mdat", b"xxKEY")]);
    let out = run(2000, &[(s, None, None)]);
    let f = read_fragment(&out[1].data);
    assert_eq!(f.trafs[0].samples[0].0.data, b"KEY");
}

#[test]
fn largesize_moof_and_mdat_are_read() {
    // 64-bit box sizes on the moof and the mdat (legal, if unusual for mp4mux).
    let sample = TestSample {
        duration: FRAME,
        flags: 0,
        data: b"KEY".to_vec(),
    };
    let body = |offset: u32| cat(&[&mfhd(1), &traf(1, 0, std::slice::from_ref(&sample), offset)]);
    let len = large_bx(b"moof", &body(0)).len() as u32;
    let s = cat(&[
        &init(&[VIDEO, AUDIO]),
        &large_bx(b"moof", &body(len + 16)),
        &large_bx(b"mdat", b"KEY"),
    ]);
    let out = run(2000, &[(s, None, None)]);
    assert_eq!(out.len(), 2, "init and one fragment");
    assert_eq!(
        read_fragment(&out[1].data).trafs[0].samples[0].0.data,
        b"KEY"
    );
}

#[test]
fn negative_composition_offsets_survive_in_a_version_1_trun() {
    let trun_body = |offset: u32| {
        cat(&[
            &be32(2),
            &be32(offset),
            &be32(FRAME),
            &be32(1),
            &be32(0),
            &be32(FRAME), // cto of the key frame: one frame
            &be32(FRAME),
            &be32(1),
            &be32(NON_SYNC),
            &(-(FRAME as i32)).to_be_bytes(),
        ])
    };
    let moof_with = |offset: u32| {
        let tfhd = full_bx(b"tfhd", 0, 0x02_0000, &be32(1));
        let tfdt = full_bx(b"tfdt", 0, 0, &be32(0));
        let trun = full_bx(b"trun", 1, 0xf01, &trun_body(offset));
        bx(
            b"moof",
            &cat(&[&mfhd(1), &bx(b"traf", &cat(&[&tfhd, &tfdt, &trun]))]),
        )
    };
    let len = moof_with(0).len() as u32;
    let s = cat(&[
        &init(&[VIDEO, AUDIO]),
        &moof_with(len + 8),
        &bx(b"mdat", b"KN"),
    ]);
    let out = run(2000, &[(s, None, None)]);
    let t = &read_fragment(&out[1].data).trafs[0];
    assert_eq!(t.trun_version, 1, "signed offsets need trun version 1");
    let ctos: Vec<Option<i32>> = t.samples.iter().map(|(_, c)| *c).collect();
    assert_eq!(ctos, vec![Some(FRAME as i32), Some(-(FRAME as i32))]);
}

#[test]
fn decode_times_near_the_end_of_the_ns_range_do_not_panic() {
    // ~585 years at 90 kHz: the key frame's time in ns lands under 2 s short
    // of u64::MAX, and adding a fragment's length to it must not overflow.
    let d = (u64::MAX - 1_000_000_000) / 1_000_000_000 * 90_000;
    let out = run(2000, &[(tiny_stream(VIDEO, d), None, None)]);
    assert_eq!(out.len(), 2, "init and one fragment with both key frames");
    assert_eq!(read_fragment(&out[1].data).trafs[0].decode_time, d);
}

#[test]
fn key_frames_with_equal_timestamps_do_not_hang() {
    // Trun durations of 10 s (so the half-sample slack swallows the whole
    // 2 s fragment) but both key frames stamped at 0: the boundary search must
    // not pick a key frame at the group's own start, which would emit nothing
    // and loop forever.
    let key = |i| TestSample {
        duration: 900_000,
        flags: 0,
        data: payload(VIDEO.id, i, true),
    };
    let (moof, mdat) = chunk(1, VIDEO.id, 0, &[key(0), key(1)]);
    let pieces: Vec<Piece> = vec![
        (init(&[VIDEO, AUDIO]), None, None),
        (moof, None, None),
        (mdat[..8].to_vec(), None, None),
        (key(0).data, Some(0), None),
        (key(1).data, Some(0), None),
    ];
    let (tx, rx) = std::sync::mpsc::channel();
    // A thread, so that a hang fails the test instead of blocking the run.
    std::thread::spawn(move || {
        let _ = tx.send(run(2000, &pieces).len());
    });
    let n = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("remuxer returned");
    assert_eq!(n, 2, "init and one fragment with both key frames");
}

// ---------------------------------------------------------------------------
// Malformed input: an error, never a panic nor unbounded buffering

fn one_key_frame() -> [TestSample; 1] {
    [TestSample {
        duration: FRAME,
        flags: 0,
        data: b"KEY".to_vec(),
    }]
}

fn assert_error(err: &str, expected: &str) {
    assert!(
        err.contains(expected),
        "error {err:?} should mention {expected:?}"
    );
}

#[test]
fn box_size_smaller_than_its_header_is_an_error() {
    for size in [2u32, 7] {
        let mut b = bx(b"free", &[0; 8]);
        b[..4].copy_from_slice(&be32(size));
        assert_error(&error_of(2000, &[&b]), &format!("invalid box size {size}"));
    }
    let mut b = bx(b"free", &[0; 8]);
    b[..4].copy_from_slice(&be32(0));
    assert_error(&error_of(2000, &[&b]), "size 0");
    // Largesize 12 is smaller than its own 16-byte header.
    let b = cat(&[&be32(1), b"free", &be64(12)]);
    assert_error(&error_of(2000, &[&b]), "invalid 64-bit box size 12");
}

#[test]
fn huge_declared_box_size_is_an_error_not_buffered() {
    // A corrupt size must fail at once rather than have the remuxer buffer the
    // rest of the capture waiting for a 4 GiB (or larger) box.
    let b = cat(&[&be32(u32::MAX), b"mdat", &[0; 64]]);
    assert_error(&error_of(2000, &[&init(&[VIDEO, AUDIO]), &b]), "too large");
    let b = cat(&[&be32(1), b"mdat", &be64(1 << 40), &[0; 64]]);
    assert_error(&error_of(2000, &[&b]), "too large");
}

#[test]
fn moof_before_moov_is_an_error() {
    let (moof, mdat) = chunk(1, 1, 0, &one_key_frame());
    assert_error(&error_of(2000, &[&ftyp(), &moof, &mdat]), "no moov");
}

#[test]
fn init_without_tracks_is_an_error() {
    let (moof, mdat) = chunk(1, 1, 0, &one_key_frame());
    let empty_moov = moov(&[], &[]);
    assert_error(
        &error_of(2000, &[&ftyp(), &empty_moov, &moof, &mdat]),
        "no tracks",
    );
}

#[test]
fn mdat_without_moof_is_an_error() {
    let (moof, mdat) = chunk(1, 1, 0, &one_key_frame());
    let head = init(&[VIDEO, AUDIO]);
    let s: [&[u8]; 4] = [&head, &moof, &mdat, &mdat];
    assert_error(&error_of(2000, &s), "mdat without preceding moof");
}

#[test]
fn traf_for_an_unknown_track_is_an_error() {
    let (moof, mdat) = chunk(1, 9, 0, &one_key_frame());
    assert_error(
        &error_of(2000, &[&init(&[VIDEO, AUDIO]), &moof, &mdat]),
        "unknown track 9",
    );
}

#[test]
fn trun_sizes_overflowing_the_mdat_are_an_error() {
    let (moof, mdat) = chunk(1, 1, 0, &one_key_frame());
    // The mdat holds 2 of the 3 bytes the trun declares.
    let short = bx(b"mdat", &mdat[8..10]);
    assert_error(
        &error_of(2000, &[&init(&[VIDEO, AUDIO]), &moof, &short]),
        "outside its mdat",
    );
}

#[test]
fn data_offset_outside_the_mdat_is_an_error() {
    let head = init(&[VIDEO, AUDIO]);
    // Into the moof itself, and before the start of the stream.
    for offset in [8u32, (-1000i32) as u32] {
        let moof = bx(
            b"moof",
            &cat(&[&mfhd(1), &traf(1, 0, &one_key_frame(), offset)]),
        );
        let err = error_of(2000, &[&head, &moof, &bx(b"mdat", b"KEY")]);
        assert!(
            err.contains("outside its mdat") || err.contains("negative data offset"),
            "{err}"
        );
    }
}

#[test]
fn base_data_offset_near_u64_max_is_an_error() {
    // An absolute base offset whose sample end overflows 64 bits.
    let tfhd = full_bx(b"tfhd", 0, 0x01, &cat(&[&be32(1), &be64(u64::MAX - 1)]));
    let tfdt = full_bx(b"tfdt", 0, 0, &be32(0));
    let trun = full_bx(
        b"trun",
        0,
        0x701,
        &cat(&[&be32(1), &be32(0), &be32(FRAME), &be32(3), &be32(0)]),
    );
    let moof = bx(
        b"moof",
        &cat(&[&mfhd(1), &bx(b"traf", &cat(&[&tfhd, &tfdt, &trun]))]),
    );
    let err = error_of(2000, &[&init(&[VIDEO, AUDIO]), &moof, &bx(b"mdat", b"KEY")]);
    assert_error(&err, "outside its mdat");
}

#[test]
fn decode_time_overflowing_64_bits_is_an_error() {
    let (moof, mdat) = chunk(
        1,
        1,
        u64::MAX - 1,
        &[one_key_frame()[0].clone(), one_key_frame()[0].clone()],
    );
    let err = error_of(2000, &[&init(&[VIDEO, AUDIO]), &moof, &mdat]);
    assert_error(&err, "decode time");
}

#[test]
fn truncated_fields_inside_a_box_are_an_error() {
    // A tkhd that ends before its track id.
    let mut moov_bytes = moov(&[VIDEO], &[]);
    let tkhd_at = moov_bytes.windows(4).position(|w| w == b"tkhd").unwrap() - 4;
    let trak_at = moov_bytes.windows(4).position(|w| w == b"trak").unwrap() - 4;
    let tkhd = full_bx(b"tkhd", 0, 3, &[0; 4]);
    let old_len = u32_at(&moov_bytes, tkhd_at) as usize;
    moov_bytes.splice(tkhd_at..tkhd_at + old_len, tkhd.iter().copied());
    let shrink = (old_len - tkhd.len()) as u32;
    for at in [0, trak_at] {
        let size = u32_at(&moov_bytes, at) - shrink;
        moov_bytes[at..at + 4].copy_from_slice(&be32(size));
    }
    let (moof, mdat) = chunk(1, 1, 0, &one_key_frame());
    assert_error(
        &error_of(2000, &[&ftyp(), &moov_bytes, &moof, &mdat]),
        "truncated box",
    );

    // A trun whose sample count promises more entries than the box holds.
    let mut moof = moof.clone();
    let count_at = moof.windows(4).position(|w| w == b"trun").unwrap() + 8;
    moof[count_at..count_at + 4].copy_from_slice(&be32(5));
    assert_error(
        &error_of(2000, &[&init(&[VIDEO]), &moof, &mdat]),
        "truncated box",
    );
}

#[test]
fn child_box_overrunning_its_moof_is_an_error() {
    // A traf whose size runs past the end of its moof used to be skipped
    // silently, losing its samples.
    let (mut moof, mdat) = chunk(1, 1, 0, &one_key_frame());
    let traf_at = moof.windows(4).position(|w| w == b"traf").unwrap() - 4;
    let size = u32_at(&moof, traf_at) + 4;
    moof[traf_at..traf_at + 4].copy_from_slice(&be32(size));
    let err = error_of(2000, &[&init(&[VIDEO, AUDIO]), &moof, &mdat]);
    assert_error(&err, "overruns");
}

#[test]
fn huge_trun_sample_count_is_an_error() {
    // A 20-byte trun with no per-sample fields can declare 4 billion samples,
    // all taking their values from the defaults: it must not be expanded.
    let tfhd = full_bx(
        b"tfhd",
        0,
        0x02_0000 | 0x08 | 0x10,
        &cat(&[&be32(1), &be32(FRAME), &be32(0)]),
    );
    let tfdt = full_bx(b"tfdt", 0, 0, &be32(0));
    let trun = full_bx(b"trun", 0, 0x001, &cat(&[&be32(u32::MAX), &be32(0)]));
    let moof = bx(
        b"moof",
        &cat(&[&mfhd(1), &bx(b"traf", &cat(&[&tfhd, &tfdt, &trun]))]),
    );
    let err = error_of(2000, &[&init(&[VIDEO, AUDIO]), &moof, &bx(b"mdat", b"")]);
    assert_error(&err, "too many samples");
}
