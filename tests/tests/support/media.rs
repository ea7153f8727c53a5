//! Decodes fragmented MP4 from memory with GStreamer (appsrc → decodebin → appsinks) and
//! measures what came out. Nothing is written to disk.

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default, Clone)]
pub struct Decoded {
    pub video_frames: u64,
    pub video_seconds: f64,
    pub audio_seconds: f64,
    pub width: i32,
    pub height: i32,
}

#[derive(Default)]
struct Span {
    first: Option<u64>,
    last_end: u64,
    count: u64,
}

impl Span {
    fn add(&mut self, pts: Option<u64>, dur: Option<u64>) {
        if let Some(p) = pts {
            self.first = Some(self.first.map_or(p, |f| f.min(p)));
            self.last_end = self.last_end.max(p + dur.unwrap_or(0));
        }
        self.count += 1;
    }
    fn seconds(&self) -> f64 {
        self.first.map_or(0.0, |f| (self.last_end - f) as f64 / 1e9)
    }
}

pub fn decode(data: &[u8]) -> Result<Decoded, String> {
    gst::init().map_err(|e| e.to_string())?;
    let pipeline = gst::Pipeline::new();
    let src = gst_app::AppSrc::builder()
        .format(gst::Format::Bytes)
        .build();
    let decodebin = gst::ElementFactory::make("decodebin")
        .build()
        .map_err(|e| e.to_string())?;
    pipeline
        .add_many([src.upcast_ref(), &decodebin])
        .map_err(|e| e.to_string())?;
    src.link(&decodebin).map_err(|e| e.to_string())?;

    let video = Arc::new(Mutex::new(Span::default()));
    let audio = Arc::new(Mutex::new(Span::default()));
    let size = Arc::new(Mutex::new((0, 0)));
    let pipeline_weak = pipeline.downgrade();
    let (v, a, sz) = (video.clone(), audio.clone(), size.clone());
    decodebin.connect_pad_added(move |_, pad| {
        let Some(pipeline) = pipeline_weak.upgrade() else {
            return;
        };
        let caps = pad
            .current_caps()
            .or_else(|| Some(pad.query_caps(None)))
            .unwrap();
        let s = caps.structure(0).unwrap();
        let is_video = s.name().starts_with("video/");
        if is_video {
            *sz.lock().unwrap() = (
                s.get::<i32>("width").unwrap_or(0),
                s.get::<i32>("height").unwrap_or(0),
            );
        }
        let span = if is_video { v.clone() } else { a.clone() };
        let sink = gst_app::AppSink::builder()
            .sync(false)
            .callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |sink| {
                        let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        if let Some(buf) = sample.buffer() {
                            span.lock().unwrap().add(
                                buf.pts().map(|t| t.nseconds()),
                                buf.duration().map(|t| t.nseconds()),
                            );
                        }
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            )
            .build();
        pipeline.add(&sink).unwrap();
        sink.sync_state_with_parent().unwrap();
        pad.link(&sink.static_pad("sink").unwrap()).unwrap();
    });

    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    src.push_buffer(gst::Buffer::from_slice(data.to_vec()))
        .map_err(|e| e.to_string())?;
    src.end_of_stream().map_err(|e| e.to_string())?;
    let bus = pipeline.bus().unwrap();
    let mut result = Ok(());
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(120)) {
        match msg.view() {
            gst::MessageView::Eos(..) => break,
            gst::MessageView::Error(e) => {
                result = Err(format!("{} ({:?})", e.error(), e.debug()));
                break;
            }
            _ => {}
        }
    }
    pipeline
        .set_state(gst::State::Null)
        .map_err(|e| e.to_string())?;
    result?;
    let (width, height) = *size.lock().unwrap();
    let v = video.lock().unwrap();
    let a = audio.lock().unwrap();
    Ok(Decoded {
        video_frames: v.count,
        video_seconds: v.seconds(),
        audio_seconds: a.seconds(),
        width,
        height,
    })
}
