//! The device check's pipeline: what the camera sees (a small JPEG, a few times a second)
//! and how loud the microphone is. Nothing is encoded, sealed or kept: the latest frame
//! lives in memory until the next replaces it, and the pipeline stops before recording
//! starts (a device opens once).

use super::devices::Chosen;
use super::{appsink, on_buffer, BUS_POLL};
use anyhow::{anyhow, Context, Result};
use gstreamer as gst;
use gstreamer::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// What the page reads: the latest frame and the level.
#[derive(Default)]
pub struct Sight {
    jpeg: Mutex<Option<Arc<Vec<u8>>>>,
    frames: AtomicU32,
    sound_buffers: AtomicU32,
    /// The last buffer's loudness, 0‥1000 on a −60‥0 dBFS scale.
    level_permille: AtomicU32,
    failed: Mutex<Option<String>>,
}

impl Sight {
    pub fn jpeg(&self) -> Option<Arc<Vec<u8>>> {
        self.jpeg.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    pub fn frames(&self) -> u32 {
        self.frames.load(Ordering::Relaxed)
    }
    pub fn sound_buffers(&self) -> u32 {
        self.sound_buffers.load(Ordering::Relaxed)
    }
    pub fn level(&self) -> f32 {
        self.level_permille.load(Ordering::Relaxed) as f32 / 1000.0
    }
    pub fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

pub struct Preview {
    pipeline: gst::Pipeline,
    pub sight: Arc<Sight>,
    shutdown: Arc<AtomicBool>,
    bus_thread: Option<JoinHandle<()>>,
}

/// Loudness (RMS) of signed 16-bit samples on the meter's scale.
pub fn level_of(samples: &[u8]) -> f32 {
    let n = samples.len() / 2;
    if n == 0 {
        return 0.0;
    }
    let sum: f64 = samples
        .chunks_exact(2)
        .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])).powi(2))
        .sum();
    let rms = (sum / n as f64).sqrt() / 32768.0;
    if rms <= 0.0 {
        return 0.0;
    }
    let db = 20.0 * (rms as f32).log10();
    ((db + 60.0) / 60.0).clamp(0.0, 1.0)
}

impl Preview {
    pub fn start(chosen: &Chosen) -> Result<Preview> {
        gst::init().context("initialising GStreamer")?;
        let description = format!(
            "{video} ! queue leaky=downstream max-size-buffers=2 ! videoconvert ! videoscale ! videorate drop-only=true max-rate=5 \
             ! video/x-raw,width=320,height=240,pixel-aspect-ratio=1/1 ! jpegenc quality=70 ! appsink name=frames sync=false max-buffers=1 drop=true \
             {audio} ! queue leaky=downstream max-size-buffers=20 ! audioconvert ! audioresample ! audio/x-raw,format=S16LE,channels=1,rate=16000 \
             ! appsink name=sound sync=false max-buffers=4 drop=true",
            video = chosen.camera.launch,
            audio = chosen.microphone.launch,
        );
        let pipeline = gst::parse::launch(&description)
            .with_context(|| format!("building the preview: {description}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| anyhow!("the preview is not a pipeline"))?;
        let sight = Arc::new(Sight::default());
        let s = sight.clone();
        on_buffer(&appsink(&pipeline, "frames")?, move |_, data, _, _| {
            *s.jpeg.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(data.to_vec()));
            s.frames.fetch_add(1, Ordering::Relaxed);
            Ok(())
        });
        let s = sight.clone();
        on_buffer(&appsink(&pipeline, "sound")?, move |_, data, _, _| {
            // A meter's ballistics: up at once, down slowly (half in about 0.2 s of 10 ms
            // buffers), so that a short sound is still there when the page next looks.
            let now = (level_of(data) * 1000.0) as u32;
            let held = s.level_permille.load(Ordering::Relaxed) * 96 / 100;
            s.level_permille.store(now.max(held), Ordering::Relaxed);
            s.sound_buffers.fetch_add(1, Ordering::Relaxed);
            Ok(())
        });
        let bus = pipeline.bus().context("the preview has no bus")?;
        let shutdown = Arc::new(AtomicBool::new(false));
        let bus_thread = std::thread::Builder::new()
            .name("preview-bus".into())
            .spawn({
                let (shutdown, sight) = (shutdown.clone(), sight.clone());
                move || {
                    while !shutdown.load(Ordering::SeqCst) {
                        let Some(m) = bus.timed_pop(BUS_POLL) else {
                            continue;
                        };
                        if let gst::MessageView::Error(e) = m.view() {
                            tracing::warn!(error = %e.error(), "preview failed");
                            *sight.failed.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some(e.error().to_string());
                            break;
                        }
                    }
                }
            })?;
        let preview = Preview {
            pipeline,
            sight,
            shutdown,
            bus_thread: Some(bus_thread),
        };
        preview
            .pipeline
            .set_state(gst::State::Playing)
            .context("starting the preview")?;
        Ok(preview)
    }
}

impl Drop for Preview {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        if let Some(t) = self.bus_thread.take() {
            let _ = t.join();
        }
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{devices, Source};
    use std::time::{Duration, Instant};

    #[test]
    fn the_meter_scale() {
        assert_eq!(level_of(&[]), 0.0);
        assert_eq!(level_of(&0i16.to_le_bytes()), 0.0);
        assert!((level_of(&i16::MAX.to_le_bytes()) - 1.0).abs() < 0.01);
        // −30 dBFS is half the scale.
        let s = (32768.0 * 10f32.powf(-1.5)) as i16;
        assert!((level_of(&s.to_le_bytes()) - 0.5).abs() < 0.01);
    }

    #[test]
    fn the_preview_shows_frames_and_a_moving_level() {
        let d = devices::list(&Source::Test).unwrap();
        let p = Preview::start(&devices::choose(&d, None, None).unwrap()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut levels = std::collections::BTreeSet::new();
        let moved = |l: &std::collections::BTreeSet<u32>| {
            l.first().is_some_and(|lo| *lo < 100) && l.last().is_some_and(|hi| *hi > 400)
        };
        while (p.sight.frames() < 3 || !moved(&levels)) && Instant::now() < deadline {
            levels.insert((p.sight.level() * 1000.0) as u32);
            std::thread::sleep(Duration::from_millis(20));
        }
        let jpeg = p.sight.jpeg().expect("a frame");
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "a JPEG");
        assert!(p.sight.frames() >= 3, "frames keep coming");
        assert!(
            moved(&levels),
            "the level moves between silence and ticks: {levels:?}"
        );
        assert!(p.sight.failure().is_none());
    }
}
