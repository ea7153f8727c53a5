//! While recording, every two seconds: the spool's free space, the upload backlog, the
//! video bitrate that follows them (`bitrate.rs`), and what the candidate is told (offline
//! and how much is waiting, back online, disk low), each once per change, not every tick.

use crate::bitrate::{Controller, Observation};
use crate::recorder::Recorder;
use crate::report::{Event, Reporter};
use crate::spool::Spool;
use crate::uploader::Progress;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_secs(2);
/// Below this much free space at the start, the candidate is warned (about two hours at
/// the highest bitrate).
pub const WARN_FREE_BYTES: u64 = 600 * 1024 * 1024;
/// Below this much free space the bitrate is held at its floor.
pub const LOW_FREE_BYTES: u64 = 200 * 1024 * 1024;
/// Without any acknowledgement for this long while chunks wait, the agent is offline.
const OFFLINE_AFTER: Duration = Duration::from_secs(10);
/// How often the offline notice is repeated with the amount waiting.
const OFFLINE_REMINDER: Duration = Duration::from_secs(60);

/// Offline: chunks wait and the server has acknowledged nothing for `OFFLINE_AFTER`
/// (counted from `since` before its first acknowledgement). The terminal and the page
/// both say it from here.
pub fn offline(progress: &Progress, since: Instant) -> bool {
    let (chunks, _) = progress.backlog();
    let last_ack = *progress.last_ack.lock().unwrap_or_else(|e| e.into_inner());
    chunks > 1 && last_ack.unwrap_or(since).elapsed() >= OFFLINE_AFTER
}

/// What the run reports about it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Watch {
    pub video_kbps_min: u32,
    pub video_kbps_final: u32,
    pub bitrate_changes: u32,
    pub max_backlog_chunks: u64,
    pub max_backlog_bytes: u64,
    pub max_held_bytes: u64,
    pub offline_seconds: u64,
}

/// Every 5 s, over whatever transport is up: "still here, this much waits". The server
/// marks an exam's agent silent when these (and chunks) stop; a lost beat is not retried.
pub fn spawn_heartbeat(
    link: Arc<crate::transport::Link>,
    progress: Arc<Progress>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(5));
        loop {
            ticker.tick().await;
            let (backlog_chunks, backlog_bytes) = progress.backlog();
            if let Err(f) = link
                .heartbeat(protocol::api::Heartbeat {
                    backlog_chunks,
                    backlog_bytes,
                })
                .await
            {
                tracing::debug!(failure = %f, "heartbeat not delivered");
            }
        }
    })
}

pub fn spawn(
    capture: Arc<Recorder>,
    spool: Spool,
    progress: Arc<Progress>,
    fragment: Duration,
    report: Reporter,
) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Watch>>) {
    let mut controller = Controller::default();
    let watch = Arc::new(Mutex::new(Watch {
        video_kbps_min: controller.kbps(),
        video_kbps_final: controller.kbps(),
        ..Watch::default()
    }));
    let free = spool.free_bytes().unwrap_or(u64::MAX);
    if free < WARN_FREE_BYTES {
        report.report(&Event::DiskLow);
    }
    let w = watch.clone();
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let mut disk_low = free < LOW_FREE_BYTES;
        let mut offline_since: Option<Instant> = None;
        let mut last_reminder = started;
        let mut ticker = tokio::time::interval(TICK);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let (chunks, bytes) = progress.backlog();
            let low = spool
                .free_bytes()
                .map(|f| f < LOW_FREE_BYTES)
                .unwrap_or(false);
            if low && !disk_low {
                report.report(&Event::DiskLow);
            }
            disk_low = low;
            let backlog = fragment * chunks.min(u32::MAX as u64) as u32;
            let changed = controller.tick(TICK, Observation { backlog, disk_low });
            if let Some(kbps) = changed {
                tracing::info!(
                    kbps,
                    backlog_chunks = chunks,
                    disk_low,
                    "video bitrate changed"
                );
                if !capture.set_video_kbps(kbps) {
                    tracing::warn!(kbps, "the encoder refused the new bitrate");
                }
            }
            match (offline(&progress, started), offline_since) {
                (true, None) => {
                    offline_since = Some(Instant::now());
                    last_reminder = Instant::now();
                    report.report(&Event::Offline { chunks, bytes });
                }
                (true, Some(_)) if last_reminder.elapsed() >= OFFLINE_REMINDER => {
                    last_reminder = Instant::now();
                    report.report(&Event::Offline { chunks, bytes });
                }
                (false, Some(since)) => {
                    w.lock().unwrap_or_else(|e| e.into_inner()).offline_seconds +=
                        since.elapsed().as_secs();
                    offline_since = None;
                    report.report(&Event::BackOnline);
                }
                _ => {}
            }
            let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
            if changed.is_some() {
                w.bitrate_changes += 1;
            }
            w.video_kbps_final = controller.kbps();
            w.video_kbps_min = w.video_kbps_min.min(controller.kbps());
            w.max_backlog_chunks = w.max_backlog_chunks.max(chunks);
            w.max_backlog_bytes = w.max_backlog_bytes.max(bytes);
            w.max_held_bytes = w.max_held_bytes.max(
                progress
                    .held_bytes
                    .load(std::sync::atomic::Ordering::SeqCst),
            );
        }
    });
    (task, watch)
}
