//! GStreamer capture pipeline producing fragmented-MP4 media fragments in memory.
//!
//! Media never touches the disk: mp4mux writes into an appsink, and the byte
//! stream is regrouped (see [`fmp4`]) into an init segment followed by
//! self-contained `moof`+`mdat` fragments that each start on a video key frame.

mod activity;
pub mod devices;
mod encoder;
mod fmp4;
mod keyframes;
pub mod preview;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context, Result};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

pub use self::encoder::{Encoder, UnknownEncoder};
use self::fmp4::Remuxer;

/// Where the audio and video come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The default camera and microphone.
    Device,
    /// Synthetic live test pattern and ticks.
    Test,
    /// Synthetic and busy (a moving zone plate): the encoder spends its whole target, as
    /// with a real webcam; for the tests of rate caps and bitrate adaptation.
    TestBusy,
    /// A media file with one video and one audio stream, decoded and re-encoded.
    File(PathBuf),
}

/// One piece of the fragmented MP4 stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFragment {
    /// Plaintext media: wiped from memory when dropped, once sealed.
    pub data: zeroize::Zeroizing<Vec<u8>>,
    /// Microseconds since the first timestamp of the capture (0 for the init segment).
    pub media_start_us: u64,
    pub media_end_us: u64,
    /// `true` for the ftyp+moov segment that must precede every fragment.
    pub is_init: bool,
    /// The fragment's activity and thumbnail (media fragments, when analysis is on).
    pub side: Option<(protocol::Activity, Vec<u8>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureConfig {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub video_kbps: u32,
    pub audio_kbps: u32,
    pub fragment_ms: u32,
    /// Forces a specific H.264 encoder instead of the automatic choice.
    pub encoder: Option<Encoder>,
    /// Computes the activity strip and thumbnails (off only to measure what they cost).
    pub activity: bool,
    /// The camera and microphone the candidate chose; unset, the source's defaults.
    pub devices: Option<devices::Chosen>,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            width: 640,
            height: 480,
            fps: 15,
            video_kbps: 500,
            audio_kbps: 48,
            fragment_ms: 2000,
            encoder: None,
            activity: true,
            devices: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureEvent {
    Fragment(MediaFragment),
    /// The stream ended after [`Capture::stop`] (or the source ran out); no more events follow.
    Finished,
    /// The pipeline failed; no more events follow.
    Error(String),
}

/// Elements the autodetect bins fall back to when no real device exists; a
/// proctoring recording of a test pattern must be refused, not produced.
pub(crate) const FAKE_SOURCES: &[&str] = &["videotestsrc", "audiotestsrc", "fakesrc"];

/// mp4mux's own fragment length. It only bounds how often mp4mux hands over
/// samples; the delivered fragments are regrouped to `fragment_ms`, so smaller
/// chunks just lower the latency at which a finished fragment can be emitted.
const MUX_CHUNK_MS: u32 = 250;

const BUS_POLL: gst::ClockTime = gst::ClockTime::from_mseconds(100);

struct Shared {
    remuxer: Remuxer,
    analysis: Option<activity::Analysis>,
    events: Sender<CaptureEvent>,
    /// Set once Finished or Error went out, so nothing follows them.
    closed: bool,
}

impl Shared {
    fn send_fragments(&mut self, fragments: Result<Vec<MediaFragment>>) -> Result<(), String> {
        match fragments {
            Ok(fragments) => {
                for mut f in fragments {
                    if let (false, Some(a)) = (f.is_init, self.analysis.as_mut()) {
                        f.side = Some(a.side_for(f.media_start_us, f.media_end_us));
                    }
                    // A dropped receiver only means nobody listens any more.
                    let _ = self.events.send(CaptureEvent::Fragment(f));
                }
                Ok(())
            }
            Err(e) => Err(format!("fragmenting mp4mux output failed: {e:#}")),
        }
    }

    fn close(&mut self, event: CaptureEvent) {
        if !self.closed {
            self.closed = true;
            let _ = self.events.send(event);
        }
    }
}

fn appsink(pipeline: &gst::Pipeline, name: &str) -> Result<gst_app::AppSink> {
    pipeline
        .by_name(name)
        .with_context(|| format!("pipeline has no element named {name}"))?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| anyhow!("element {name} is not an appsink"))
}

/// Calls `f` with each buffer an appsink receives: its bytes, PTS and duration (ns).
fn on_buffer(
    sink: &gst_app::AppSink,
    mut f: impl FnMut(&gst_app::AppSink, &[u8], Option<u64>, Option<u64>) -> Result<(), gst::FlowError>
        + Send
        + 'static,
) {
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                f(
                    sink,
                    map.as_slice(),
                    buffer.pts().map(gst::ClockTime::nseconds),
                    buffer.duration().map(gst::ClockTime::nseconds),
                )?;
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

/// The analysis branches of the pipeline.
#[derive(Clone, Copy)]
enum Branch {
    Motion,
    Audio,
    Thumbnail,
}

pub struct Capture {
    pipeline: gst::Pipeline,
    encoder: Encoder,
    shutdown: Arc<AtomicBool>,
    bus_thread: Option<JoinHandle<()>>,
}

impl Capture {
    /// Builds and starts the pipeline. Fragments arrive on the returned receiver in order:
    /// first the init segment (ftyp+moov, is_init=true, media range 0..0), then each moof+mdat.
    pub fn start(source: Source, cfg: &CaptureConfig) -> Result<(Capture, Receiver<CaptureEvent>)> {
        Self::start_with(source, cfg, |_| {})
    }

    /// [`Capture::start`], with `prepare` called on the pipeline before it starts (tests).
    fn start_with(
        source: Source,
        cfg: &CaptureConfig,
        prepare: impl FnOnce(&gst::Pipeline),
    ) -> Result<(Capture, Receiver<CaptureEvent>)> {
        gst::init().context("initialising GStreamer")?;
        validate(cfg)?;
        if source == Source::Device && cfg.devices.is_none() {
            check_device("autovideosrc", "camera")?;
            check_device("autoaudiosrc", "microphone")?;
        }
        if let Source::File(path) = &source {
            if !path.is_file() {
                bail!("input file {} does not exist", path.display());
            }
        }
        let encoder = match cfg.encoder {
            Some(e) => {
                usable_encoder(e)
                    .with_context(|| format!("requested encoder {e} is not usable"))?;
                e
            }
            None => choose_encoder()?,
        };
        let description = pipeline_description(
            &source,
            cfg,
            encoder,
            "appsink name=sink sync=false",
            &analysis_appsink,
        );
        tracing::info!(%encoder, pipeline = %description, "starting capture");

        let pipeline = gst::parse::launch(&description)
            .with_context(|| format!("building pipeline: {description}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| anyhow!("parsed description is not a pipeline"))?;
        let sink = appsink(&pipeline, "sink")?;
        // A fragment is cut on a key frame only: an encoder that stops making them must not
        // make the muxer queue media without limit.
        if let Some(encoder) = pipeline.by_name(ENCODER_NAME) {
            keyframes::install(&encoder, cfg.fragment_ms);
        }
        prepare(&pipeline);
        let bus = pipeline.bus().context("pipeline has no bus")?;

        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Mutex::new(Shared {
            remuxer: Remuxer::new(cfg.fragment_ms),
            analysis: cfg.activity.then(activity::Analysis::default),
            events: tx,
            closed: false,
        }));

        let sample_shared = Arc::clone(&shared);
        on_buffer(&sink, move |sink, data, pts, duration| {
            let mut shared = sample_shared.lock().map_err(|_| gst::FlowError::Error)?;
            let result = shared.remuxer.push(data, pts, duration);
            shared.send_fragments(result).map_err(|message| {
                // Posting the error lets the bus thread tear the pipeline down.
                gst::element_error!(sink, gst::StreamError::Mux, ["{}", message]);
                gst::FlowError::Error
            })
        });

        if cfg.activity {
            for (name, kind) in [
                ("motion", Branch::Motion),
                ("level", Branch::Audio),
                ("thumbs", Branch::Thumbnail),
            ] {
                let sink = appsink(&pipeline, name)?;
                let shared = Arc::clone(&shared);
                on_buffer(&sink, move |_, data, pts, _| {
                    let mut shared = shared.lock().map_err(|_| gst::FlowError::Error)?;
                    if let Some(a) = shared.analysis.as_mut() {
                        let pts = pts.unwrap_or(0);
                        match kind {
                            Branch::Motion => a.video_frame(pts, data),
                            Branch::Audio => a.audio_samples(pts, data),
                            Branch::Thumbnail => a.thumbnail(pts, data),
                        }
                    }
                    Ok(())
                });
            }
        }

        let shutdown = Arc::new(AtomicBool::new(false));
        let bus_thread = std::thread::Builder::new()
            .name("capture-bus".into())
            .spawn({
                let pipeline = pipeline.clone();
                let shutdown = Arc::clone(&shutdown);
                move || watch_bus(bus, pipeline, shared, shutdown)
            })
            .context("spawning bus thread")?;

        let capture = Capture {
            pipeline,
            encoder,
            shutdown,
            bus_thread: Some(bus_thread),
        };
        // On failure `capture` is dropped, which stops the bus thread and resets the pipeline.
        capture
            .pipeline
            .set_state(gst::State::Playing)
            .context("starting the capture pipeline")?;
        Ok((capture, rx))
    }

    /// Sends EOS; the pipeline flushes its last fragment, then emits CaptureEvent::Finished.
    pub fn stop(&self) {
        if !self.pipeline.send_event(gst::event::Eos::new()) {
            tracing::warn!("pipeline refused the EOS event");
        }
    }

    pub fn encoder(&self) -> Encoder {
        self.encoder
    }

    /// Fails the pipeline as a lost device does (the recorder's fault injection).
    pub fn fail(&self, why: &str) {
        let message = gst::message::Error::builder(gst::ResourceError::NotFound, why)
            .src(&self.pipeline)
            .build();
        if self.pipeline.post_message(message).is_err() {
            tracing::warn!("could not post the injected failure");
        }
    }

    /// Changes the video encoder's target while recording (every encoder we pick takes it
    /// in PLAYING); `false` when the element refused.
    pub fn set_video_kbps(&self, kbps: u32) -> bool {
        let Some(enc) = self.pipeline.by_name(ENCODER_NAME) else {
            return false;
        };
        let value = self.encoder.bitrate_value(kbps);
        if enc.find_property("bitrate").is_none() {
            return false;
        }
        enc.set_property("bitrate", value);
        true
    }
}

/// The encoder the capture would use, or why none can.
pub fn pick_encoder() -> Result<Encoder> {
    gst::init().context("initialising GStreamer")?;
    choose_encoder()
}

/// The video encoder's name in the pipeline, for changing its bitrate.
const ENCODER_NAME: &str = "venc";

impl Drop for Capture {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        if let Some(thread) = self.bus_thread.take() {
            let _ = thread.join();
        }
        if let Err(e) = self.pipeline.set_state(gst::State::Null) {
            tracing::warn!(error = %e, "resetting capture pipeline failed");
        }
    }
}

fn watch_bus(
    bus: gst::Bus,
    pipeline: gst::Pipeline,
    shared: Arc<Mutex<Shared>>,
    shutdown: Arc<AtomicBool>,
) {
    use gst::MessageView;

    while !shutdown.load(Ordering::SeqCst) {
        let Some(message) = bus.timed_pop(BUS_POLL) else {
            continue;
        };
        let final_event = match message.view() {
            // The EOS message is posted only after the appsink has rendered every
            // buffer, so the remuxer holds the complete stream by now.
            MessageView::Eos(_) => {
                let Ok(mut shared) = shared.lock() else {
                    break;
                };
                let result = shared.remuxer.finish();
                match shared.send_fragments(result) {
                    Ok(()) => Some(CaptureEvent::Finished),
                    Err(message) => Some(CaptureEvent::Error(message)),
                }
            }
            MessageView::Error(err) => {
                let source = err
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                let mut text = format!("{source}: {}", err.error());
                if let Some(debug) = err.debug() {
                    text.push_str(&format!(" ({debug})"));
                }
                tracing::error!(error = %text, "capture pipeline error");
                Some(CaptureEvent::Error(text))
            }
            MessageView::Warning(w) => {
                tracing::warn!(warning = %w.error(), debug = ?w.debug(), "capture pipeline warning");
                None
            }
            _ => None,
        };
        if let Some(event) = final_event {
            if let Err(e) = pipeline.set_state(gst::State::Null) {
                tracing::warn!(error = %e, "resetting capture pipeline failed");
            }
            if let Ok(mut shared) = shared.lock() {
                shared.close(event);
            }
            break;
        }
    }
}

fn validate(cfg: &CaptureConfig) -> Result<()> {
    if cfg.width == 0 || cfg.height == 0 || cfg.fps == 0 {
        bail!("width, height and fps must be positive");
    }
    if cfg.video_kbps == 0 || cfg.audio_kbps == 0 {
        bail!("bitrates must be positive");
    }
    if cfg.fragment_ms < 1000 / cfg.fps.min(1000) {
        bail!("fragment_ms must cover at least one video frame");
    }
    Ok(())
}

/// Rejects a missing element or an autodetect bin that could only find a fake source.
fn check_device(factory: &str, what: &str) -> Result<()> {
    let element = gst::ElementFactory::make(factory).build().map_err(|_| {
        anyhow!("GStreamer element {factory} is not installed; cannot capture the {what}")
    })?;
    let ready = element.set_state(gst::State::Ready);
    let chosen = element
        .downcast_ref::<gst::Bin>()
        .and_then(|bin| bin.children().into_iter().next())
        .and_then(|child| child.factory())
        .map(|f| f.name().to_string());
    let _ = element.set_state(gst::State::Null);
    ready.map_err(|_| anyhow!("no usable {what} found ({factory} failed to open a device)"))?;
    match chosen {
        Some(name) if FAKE_SOURCES.contains(&name.as_str()) => {
            bail!("no {what} found ({factory} fell back to {name})")
        }
        _ => Ok(()),
    }
}

/// A registered factory is not enough for hardware encoders: the plugin may be
/// installed on a machine without the GPU, which shows when opening the element.
fn usable_encoder(encoder: Encoder) -> Result<()> {
    let element = gst::ElementFactory::make(encoder.element())
        .build()
        .context("element not installed")?;
    let ready = element.set_state(gst::State::Ready);
    let _ = element.set_state(gst::State::Null);
    ready.context("element cannot be opened")?;
    Ok(())
}

fn choose_encoder() -> Result<Encoder> {
    Encoder::PREFERENCE
        .into_iter()
        .find(|e| gst::ElementFactory::find(e.element()).is_some() && usable_encoder(*e).is_ok())
        .ok_or_else(|| {
            anyhow!(
                "no H.264 encoder available (tried {})",
                Encoder::PREFERENCE.map(Encoder::element).join(", ")
            )
        })
}

/// Builds the gst-launch-1.0 description of the same pipeline with `fakesink` (or filesink) in place of appsink, for a benchmark that compares the agent against gst-launch alone.
pub fn launch_description(source: &Source, cfg: &CaptureConfig, encoder: Encoder) -> String {
    pipeline_description(source, cfg, encoder, "fakesink sync=false", &|_, _| {
        "fakesink sync=false".into()
    })
}

/// An analysis branch's sink: an appsink that drops what the agent does not take in time.
fn analysis_appsink(name: &str, max_buffers: u32) -> String {
    format!("appsink name={name} sync=false max-buffers={max_buffers} drop=true")
}

/// The video and audio sources: the devices chosen, or the source's defaults.
fn sources(source: &Source, chosen: Option<&devices::Chosen>) -> (String, String) {
    if let Some(c) = chosen {
        return (c.camera.launch.clone(), c.microphone.launch.clone());
    }
    match source {
        Source::Test => (
            "videotestsrc is-live=true pattern=ball".to_string(),
            "audiotestsrc is-live=true wave=ticks".to_string(),
        ),
        Source::TestBusy => (
            "videotestsrc is-live=true pattern=zone-plate kx2=20 ky2=20 kt=1".to_string(),
            "audiotestsrc is-live=true wave=ticks".to_string(),
        ),
        Source::Device => ("autovideosrc".to_string(), "autoaudiosrc".to_string()),
        Source::File(path) => (
            format!(
                "filesrc location={} ! decodebin name=dec dec.",
                quote(&path.to_string_lossy())
            ),
            "dec.".to_string(),
        ),
    }
}

fn pipeline_description(
    source: &Source,
    cfg: &CaptureConfig,
    encoder: Encoder,
    sink: &str,
    analysis_sink: &dyn Fn(&str, u32) -> String,
) -> String {
    let (video_src, audio_src) = sources(source, cfg.devices.as_ref());
    let gop = gop_frames(cfg);
    // The analysis branches drop what they cannot keep up with (leaky queues, appsinks that
    // drop): they must never slow the recording down.
    let (video_tee, audio_tee) = if cfg.activity {
        (
            "tee name=vt ! queue ! {enc}".to_string(),
            format!(
                " at. ! queue leaky=downstream max-size-buffers=50 ! audioconvert ! audio/x-raw,format=S16LE ! {level} \
                 vt. ! queue leaky=downstream max-size-buffers=3 ! videoscale ! video/x-raw,width=64,height=48 ! videoconvert \
                 ! video/x-raw,format=GRAY8 ! {motion} \
                 vt. ! queue leaky=downstream max-size-buffers=3 ! videorate drop-only=true max-rate=1 ! videoscale \
                 ! video/x-raw,width=160,height=120 ! jpegenc quality=60 ! {thumbs}",
                level = analysis_sink("level", 50),
                motion = analysis_sink("motion", 8),
                thumbs = analysis_sink("thumbs", 4),
            ),
        )
    } else {
        ("{enc}".to_string(), String::new())
    };
    let audio_split = if cfg.activity {
        "tee name=at ! queue ! "
    } else {
        ""
    };
    format!(
        "{video_src} ! queue ! videoconvert ! videoscale ! videorate \
         ! video/x-raw,width={w},height={h},framerate={fps}/1,format=I420 \
         ! {video} ! h264parse \
         ! mp4mux name=mux fragment-duration={chunk} streamable=true ! {sink} \
         {audio_src} ! queue ! audioconvert ! audioresample ! audio/x-raw,channels=1,rate=48000 \
         ! {audio_split}avenc_aac bitrate={abps} ! aacparse ! mux.{audio_tee}",
        w = cfg.width,
        h = cfg.height,
        fps = cfg.fps,
        video = video_tee.replace(
            "{enc}",
            &encoder.description(ENCODER_NAME, cfg.video_kbps, gop)
        ),
        chunk = cfg.fragment_ms.min(MUX_CHUNK_MS),
        abps = u64::from(cfg.audio_kbps) * 1000,
    )
}

/// One GOP per fragment, so every fragment can open on a key frame.
fn gop_frames(cfg: &CaptureConfig) -> u32 {
    (u64::from(cfg.fps) * u64::from(cfg.fragment_ms) / 1000).max(1) as u32
}

/// Quotes a value for gst-launch syntax.
fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests;
