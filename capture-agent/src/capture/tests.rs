use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::*;

const FPS: f64 = 15.0;

/// One ~6 s capture of the test source shared by the tests: each run costs
/// wall-clock time and the machine has only two cores.
fn recorded() -> &'static Vec<MediaFragment> {
    static FRAGMENTS: OnceLock<Vec<MediaFragment>> = OnceLock::new();
    FRAGMENTS.get_or_init(|| {
        let cfg = CaptureConfig {
            fragment_ms: 2000,
            ..CaptureConfig::default()
        };
        let (capture, events) = Capture::start(Source::Test, &cfg).expect("start capture");
        std::thread::sleep(Duration::from_millis(6300));
        capture.stop();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut fragments = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match events.recv_timeout(left).expect("capture finished in time") {
                CaptureEvent::Fragment(f) => fragments.push(f),
                CaptureEvent::Finished => break,
                CaptureEvent::Error(e) => panic!("capture error: {e}"),
            }
        }
        fragments
    })
}

struct Decoded {
    video_frames: u64,
    audio_ns: u64,
}

/// Demuxes and decodes an in-memory MP4 byte stream. decodebin rather than an
/// explicit qtdemux: `qtdemux name=d d.video_0 ! …` stalls in preroll on 1.22.
fn decode(bytes: Vec<u8>) -> Result<Decoded> {
    gst::init()?;
    let pipeline = gst::parse::launch(
        "appsrc name=src format=bytes ! decodebin name=d \
         d. ! video/x-raw ! queue ! appsink name=v sync=false \
         d. ! audio/x-raw ! queue ! appsink name=a sync=false",
    )?
    .downcast::<gst::Pipeline>()
    .map_err(|_| anyhow!("not a pipeline"))?;
    let frames = Arc::new(AtomicU64::new(0));
    let audio_ns = Arc::new(AtomicU64::new(0));
    for (name, counter, count_time) in [
        ("v", Arc::clone(&frames), false),
        ("a", Arc::clone(&audio_ns), true),
    ] {
        let sink = pipeline
            .by_name(name)
            .context("sink missing")?
            .downcast::<gst_app::AppSink>()
            .map_err(|_| anyhow!("not an appsink"))?;
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                    let add = if count_time {
                        buffer.duration().map_or(0, |d| d.nseconds())
                    } else {
                        1
                    };
                    counter.fetch_add(add, Ordering::SeqCst);
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    let src = pipeline
        .by_name("src")
        .context("src missing")?
        .downcast::<gst_app::AppSrc>()
        .map_err(|_| anyhow!("not an appsrc"))?;
    pipeline.set_state(gst::State::Playing)?;
    src.push_buffer(gst::Buffer::from_slice(bytes))?;
    src.end_of_stream()?;

    let bus = pipeline.bus().context("no bus")?;
    let outcome = match bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(30),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    ) {
        Some(msg) => match msg.view() {
            gst::MessageView::Error(e) => {
                Err(anyhow!("decode error: {} ({:?})", e.error(), e.debug()))
            }
            _ => Ok(()),
        },
        None => Err(anyhow!("decoding timed out")),
    };
    pipeline.set_state(gst::State::Null)?;
    outcome?;
    Ok(Decoded {
        video_frames: frames.load(Ordering::SeqCst),
        audio_ns: audio_ns.load(Ordering::SeqCst),
    })
}

#[test]
fn produces_init_then_contiguous_fragments() {
    let fragments = recorded();
    let (init, media) = fragments.split_first().expect("at least one fragment");
    assert!(init.is_init, "first fragment must be the init segment");
    assert_eq!(&init.data[4..8], b"ftyp");
    assert_eq!((init.media_start_us, init.media_end_us), (0, 0));
    assert!(
        media.len() >= 2,
        "expected ≥2 media fragments, got {}",
        media.len()
    );

    for f in media {
        assert!(!f.is_init);
        assert_eq!(&f.data[4..8], b"moof");
        assert!(f.media_end_us > f.media_start_us, "empty range {f:?}");
    }
    for pair in media.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(b.media_start_us > a.media_start_us, "starts not increasing");
        let gap = a.media_end_us.abs_diff(b.media_start_us);
        assert!(
            gap <= 100_000,
            "fragments not contiguous: {}..{} then {}..{}",
            a.media_start_us,
            a.media_end_us,
            b.media_start_us,
            b.media_end_us
        );
    }
    let total = media.last().map(|f| f.media_end_us).unwrap_or(0) - media[0].media_start_us;
    assert!(total >= 5_000_000, "captured only {total} µs");
}

#[test]
fn concatenated_stream_decodes_fully() {
    let fragments = recorded();
    let bytes: Vec<u8> = fragments
        .iter()
        .flat_map(|f| f.data.iter().copied())
        .collect();
    let media = &fragments[1..];
    let duration_s =
        (media.last().expect("media").media_end_us - media[0].media_start_us) as f64 / 1e6;

    let decoded = decode(bytes).expect("decode");
    let expected = duration_s * FPS;
    let frames = decoded.video_frames as f64;
    assert!(
        (frames - expected).abs() <= expected * 0.2,
        "{frames} frames for {duration_s:.2} s"
    );
    let video_s = frames / FPS;
    let audio_s = decoded.audio_ns as f64 / 1e9;
    assert!(
        (audio_s - video_s).abs() <= video_s * 0.2,
        "audio {audio_s:.2} s vs video {video_s:.2} s"
    );
}

#[test]
fn each_fragment_starts_on_a_key_frame() {
    let fragments = recorded();
    let init = &fragments[0];
    for (k, fragment) in fragments[1..].iter().enumerate() {
        let trafs = fmp4::first_sample_sync(&fragment.data).expect("parse moof");
        assert_eq!(trafs.len(), 2, "fragment {k} should carry video and audio");
        assert!(
            trafs.iter().all(|(_, sync)| *sync),
            "fragment {k} does not open on a sync sample: {trafs:?}"
        );

        let mut alone = init.data.to_vec();
        alone.extend_from_slice(&fragment.data);
        let decoded = decode(alone).unwrap_or_else(|e| panic!("fragment {k} alone: {e:#}"));
        assert!(decoded.video_frames >= 1, "fragment {k} decoded no video");
    }
}

#[test]
fn launch_description_swaps_the_sink() {
    gst::init().expect("gst init");
    let cfg = CaptureConfig::default();
    let description = launch_description(&Source::Test, &cfg, Encoder::OpenH264);
    assert!(description.contains("fakesink") && !description.contains("appsink"));
    assert!(
        description.contains("gop-size=30") && description.contains("openh264enc name=venc "),
        "{description}"
    );
    gst::parse::launch(&description).expect("gst-launch syntax");

    let file = launch_description(
        &Source::File("/tmp/a \"b\".mp4".into()),
        &cfg,
        Encoder::X264,
    );
    assert!(file.contains(r#"location="/tmp/a \"b\".mp4""#), "{file}");
}

/// The bitrate adaptation's lever: the encoder takes a new target while recording, and the
/// fragments that follow shrink accordingly.
#[test]
fn the_video_bitrate_changes_while_recording() {
    let cfg = CaptureConfig {
        video_kbps: 600,
        activity: false,
        ..CaptureConfig::default()
    };
    let (capture, events) = Capture::start(Source::TestBusy, &cfg).expect("start capture");
    let collect = |until: Instant| {
        let mut sizes = Vec::new();
        while Instant::now() < until {
            match events
                .recv_timeout(Duration::from_secs(10))
                .expect("fragments keep coming")
            {
                CaptureEvent::Fragment(f) if !f.is_init => sizes.push(f.data.len()),
                CaptureEvent::Fragment(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        sizes
    };
    let high = collect(Instant::now() + Duration::from_secs(7));
    assert!(capture.set_video_kbps(120));
    // The fragment in progress mixes both rates: skip it.
    let _ = collect(Instant::now() + Duration::from_millis(2500));
    let low = collect(Instant::now() + Duration::from_secs(6));
    capture.stop();
    let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len().max(1) as f64;
    assert!(high.len() >= 2 && low.len() >= 2, "{high:?} {low:?}");
    assert!(
        mean(&low) < 0.5 * mean(&high),
        "600 → 120 kbit/s: {high:?} then {low:?}"
    );
}

fn drain(events: &Receiver<CaptureEvent>, timeout: Duration) -> (Vec<MediaFragment>, CaptureEvent) {
    let deadline = Instant::now() + timeout;
    let mut fragments = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left).expect("capture finished in time") {
            CaptureEvent::Fragment(f) => fragments.push(f),
            end => return (fragments, end),
        }
    }
}

fn huge_gop() -> CaptureConfig {
    CaptureConfig {
        encoder: Some(Encoder::X264),
        activity: false,
        ..CaptureConfig::default()
    }
}

fn set_huge_gop(pipeline: &gst::Pipeline) {
    let encoder = pipeline.by_name(ENCODER_NAME).expect("encoder");
    encoder.set_property("key-int-max", 100_000u32);
}

/// The bound of keyframes.rs: with an encoder ignoring its GOP, fragments keep coming
/// while recording, each within MAX_GOP_FRAGMENTS fragments of media and MAX_GOP_BYTES,
/// each opening on a key frame. Without the guard: no fragment in 9 s, then one of 9.2 s.
#[test]
fn fragments_stay_bounded_when_the_encoder_ignores_its_gop() {
    let cfg = huge_gop();
    let (capture, events) =
        Capture::start_with(Source::Test, &cfg, set_huge_gop).expect("start capture");
    let until = Instant::now() + Duration::from_secs(9);
    let mut live = Vec::new();
    while Instant::now() < until {
        match events.recv_timeout(Duration::from_millis(200)) {
            Ok(CaptureEvent::Fragment(f)) => live.push(f),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => {}
        }
    }
    capture.stop();
    let (rest, end) = drain(&events, Duration::from_secs(30));
    assert_eq!(end, CaptureEvent::Finished);
    let media: Vec<_> = live.iter().chain(&rest).filter(|f| !f.is_init).collect();
    let during = live.iter().filter(|f| !f.is_init).count();
    assert!(
        during >= 2,
        "only {during} fragments in 9 s of recording: {media:?}"
    );
    let bound_us = keyframes::MAX_GOP_FRAGMENTS * u64::from(cfg.fragment_ms) * 1000;
    for (k, f) in media.iter().enumerate() {
        let length = f.media_end_us - f.media_start_us;
        assert!(length <= bound_us, "fragment {k} holds {length} µs");
        assert!(
            f.data.len() as u64 <= keyframes::MAX_GOP_BYTES,
            "fragment {k} holds {} bytes",
            f.data.len()
        );
        let trafs = fmp4::first_sample_sync(&f.data).expect("parse moof");
        assert!(
            trafs.iter().all(|(_, sync)| *sync),
            "fragment {k} does not open on a key frame"
        );
    }
}

/// An encoder that ignores key-frame requests as well (the requests are dropped on their
/// way in): the capture ends with an error once the bound is reached, instead of queuing.
#[test]
fn the_capture_fails_rather_than_buffer_when_no_key_frame_ever_comes() {
    let cfg = huge_gop();
    let started = Instant::now();
    let (_capture, events) = Capture::start_with(Source::Test, &cfg, |pipeline| {
        set_huge_gop(pipeline);
        let pad = pipeline
            .by_name(ENCODER_NAME)
            .and_then(|e| e.static_pad("src"))
            .expect("encoder src");
        pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, |_, info| {
            match info.event() {
                Some(e) if gstreamer_video::ForceKeyUnitEvent::is(e) => {
                    gst::PadProbeReturn::Handled
                }
                _ => gst::PadProbeReturn::Ok,
            }
        });
    })
    .expect("start capture");
    let (fragments, end) = drain(&events, Duration::from_secs(20));
    let elapsed = started.elapsed();
    match end {
        CaptureEvent::Error(e) => assert!(e.contains("no key frame"), "{e}"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(
        elapsed < Duration::from_secs(12),
        "failed only after {elapsed:?}"
    );
    let bound_us = keyframes::MAX_GOP_FRAGMENTS * u64::from(cfg.fragment_ms) * 1000;
    assert!(
        fragments
            .iter()
            .all(|f| f.media_end_us - f.media_start_us <= bound_us),
        "{fragments:?}"
    );
}
