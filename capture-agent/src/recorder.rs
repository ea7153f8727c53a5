//! The live capture, which a lost device replaces: when the camera or the microphone goes
//! away mid-exam (unplugged, taken by another program), the pipeline fails; the recorder
//! waits for the devices to come back, starts a new capture, and the run seals it into a
//! new stream. The time between the two streams is the gap on the reviewer's timeline;
//! the first stream stays without its final fragment ("ended abruptly").
//!
//! `CLOE_AGENT_UNPLUG=AFTER,FOR` (e.g. `5s,4s`, test sources only) makes the first capture
//! fail after AFTER and its devices absent for FOR: the fault the tests inject, as the
//! server's `PROCTOR_CRASH_AT` does.

use crate::capture::devices::{self, Chosen};
use crate::capture::{Capture, CaptureConfig, CaptureEvent, Encoder, Source};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Recorder {
    source: Source,
    cfg: Mutex<CaptureConfig>,
    current: Mutex<Option<Arc<Capture>>>,
    stopping: AtomicBool,
    encoder: Encoder,
    unplug: Option<Unplug>,
}

/// The injected fault: when the first capture fails, and until when its devices are gone.
struct Unplug {
    after: Duration,
    absent_for: Duration,
    failed_at: Mutex<Option<Instant>>,
}

fn unplug_from_env(source: &Source) -> Option<Unplug> {
    let spec = std::env::var("CLOE_AGENT_UNPLUG").ok()?;
    if !matches!(source, Source::Test | Source::TestBusy) {
        tracing::warn!("CLOE_AGENT_UNPLUG applies to test sources only");
        return None;
    }
    let (after, absent) = spec.split_once(',')?;
    Some(Unplug {
        after: humantime::parse_duration(after.trim()).ok()?,
        absent_for: humantime::parse_duration(absent.trim()).ok()?,
        failed_at: Mutex::new(None),
    })
}

impl Recorder {
    /// Starts the first capture.
    pub fn start(
        source: Source,
        cfg: CaptureConfig,
    ) -> anyhow::Result<(Arc<Recorder>, Receiver<CaptureEvent>)> {
        let (capture, events) = Capture::start(source.clone(), &cfg)?;
        let unplug = unplug_from_env(&source);
        let recorder = Arc::new(Recorder {
            source,
            cfg: Mutex::new(cfg),
            encoder: capture.encoder(),
            current: Mutex::new(Some(Arc::new(capture))),
            stopping: AtomicBool::new(false),
            unplug,
        });
        if let Some(u) = &recorder.unplug {
            let (r, after) = (Arc::downgrade(&recorder), u.after);
            std::thread::spawn(move || {
                std::thread::sleep(after);
                if let Some(r) = r.upgrade() {
                    if let Some(u) = &r.unplug {
                        *u.failed_at.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(Instant::now());
                    }
                    if let Some(c) = r.current() {
                        c.fail("the camera was unplugged (CLOE_AGENT_UNPLUG)");
                    }
                }
            });
        }
        Ok((recorder, events))
    }

    fn current(&self) -> Option<Arc<Capture>> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn encoder(&self) -> Encoder {
        self.encoder
    }

    /// Ends the recording: the live capture flushes its last fragment; no capture restarts.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(c) = self.current() {
            c.stop();
        }
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    pub fn set_video_kbps(&self, kbps: u32) -> bool {
        self.cfg
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .video_kbps = kbps;
        // Without a live capture (a device lost), the next one starts at this rate.
        self.current().is_none_or(|c| c.set_video_kbps(kbps))
    }

    fn listed(&self) -> anyhow::Result<devices::Devices> {
        let absent = self.unplug.as_ref().is_some_and(|u| {
            u.failed_at
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some_and(|t| t.elapsed() < u.absent_for)
        });
        if absent {
            return Ok(devices::Devices::default());
        }
        devices::list(&self.source)
    }

    /// After a failed capture: waits (every 2 s) for the chosen devices, or the first
    /// ones, to be there again and starts a new capture; `None` once the run is stopping.
    /// Only sources that can come back are waited for (not a file).
    pub fn resume(&self) -> Option<Receiver<CaptureEvent>> {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if matches!(self.source, Source::File(_)) {
            return None;
        }
        while !self.stopping() {
            std::thread::sleep(Duration::from_secs(2));
            let wanted = self
                .cfg
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .devices
                .clone();
            let Ok(listed) = self.listed() else { continue };
            let chosen: Option<Chosen> = wanted
                .as_ref()
                .and_then(|w| {
                    devices::choose(&listed, Some(&w.camera.id), Some(&w.microphone.id)).ok()
                })
                .or_else(|| devices::choose(&listed, None, None).ok());
            let Some(chosen) = chosen else { continue };
            let mut cfg = self.cfg.lock().unwrap_or_else(|e| e.into_inner()).clone();
            cfg.devices = Some(chosen);
            match Capture::start(self.source.clone(), &cfg) {
                Ok((capture, events)) => {
                    // `stop` sets the flag before it looks for the capture: checked under the
                    // same lock, a stop is either seen here or finds this capture.
                    let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
                    if self.stopping() {
                        return None;
                    }
                    *current = Some(Arc::new(capture));
                    return Some(events);
                }
                Err(e) => tracing::warn!(error = %e, "the devices are listed but do not open yet"),
            }
        }
        None
    }
}
