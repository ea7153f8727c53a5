//! What the candidate is shown, and what they asked for: the one place the run writes its
//! state to and reads the candidate's choices from, whichever face shows it (the local
//! page, or the terminal for scripted runs).

use crate::capture::devices::Devices;
use crate::capture::preview::Sight;
use crate::report::{Event, Report};
use crate::uploader::Progress;
use protocol::notice::Notice;
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The notice, the box and the two buttons.
    Notice,
    /// The refusal is being sent, then sent: nothing was recorded.
    Refused,
    /// Preview, level, devices, upload test, disk: nothing is recorded yet.
    Check,
    Recording,
    /// Capture stopped; the rest is being sent.
    Finishing,
    /// Everything the server should have, it has: the candidate may close.
    Done,
    /// Consent withdrawn: capture stopped, the withdrawal recorded.
    Withdrawn,
    /// The run cannot go on (the message says why).
    Failed,
}

/// What the candidate asked for on the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Consent { accept: bool },
    ChooseDevices { camera: String, microphone: String },
    UploadTest,
    Start,
    Finish,
    Withdraw,
}

#[derive(Debug, Clone, Serialize)]
pub struct UploadVerdict {
    /// `good`, `slow`, `too_slow` or `unreachable`.
    pub verdict: &'static str,
    pub kbit_per_s: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiskVerdict {
    /// `good`, `low` or `too_low`.
    pub verdict: &'static str,
    pub free_mb: u64,
}

#[derive(Default)]
struct State {
    phase: Option<Phase>,
    notice: Option<Notice>,
    devices: Devices,
    chosen: Option<(String, String)>,
    no_device: Option<&'static str>,
    upload: Option<UploadVerdict>,
    testing_upload: bool,
    disk: Option<DiskVerdict>,
    encoder: Option<crate::capture::Encoder>,
    recording_since: Option<Instant>,
    /// The sentence to show now (offline, disk low, why it stopped…), if any.
    message: Option<String>,
    /// Why the platform ended the exam, when it did.
    ended_by_platform: bool,
    /// The camera or microphone went away mid-exam; nothing is recorded until it is back.
    device_lost: bool,
    /// The refusal: being sent (None), recorded by the server, or not delivered.
    refusal_sent: Option<bool>,
    withdrawal_sent: Option<bool>,
    /// The server the recording goes to, shown with the notice.
    server: String,
    /// An action was taken at this phase already (a second click is refused).
    acted: bool,
}

/// Shared between the run, the page and the tasks that watch the recording.
pub struct Board {
    state: Mutex<State>,
    sight: Mutex<Option<Arc<Sight>>>,
    progress: Mutex<Option<Arc<Progress>>>,
    actions: mpsc::UnboundedSender<Action>,
    /// When the page last asked for the state (a closed page stops asking); a watch, so
    /// that the run can await the page having shown a step.
    last_seen: tokio::sync::watch::Sender<Option<Instant>>,
    created: Instant,
}

/// The state as the page reads it.
#[derive(Serialize)]
pub struct View {
    pub phase: Phase,
    pub notice: Option<Notice>,
    pub devices: Devices,
    pub chosen: Option<(String, String)>,
    pub no_device: Option<&'static str>,
    pub preview_frames: u32,
    pub level: f32,
    pub upload: Option<UploadVerdict>,
    pub testing_upload: bool,
    pub disk: Option<DiskVerdict>,
    pub encoder: Option<String>,
    pub hardware_encoder: bool,
    pub elapsed_s: u64,
    pub waiting_chunks: u64,
    pub waiting_s: u64,
    pub offline: bool,
    pub sent: u64,
    pub total: u64,
    pub message: Option<String>,
    pub ended_by_platform: bool,
    pub device_lost: bool,
    pub refusal_sent: Option<bool>,
    pub withdrawal_sent: Option<bool>,
    pub server: String,
}

impl Board {
    pub fn new() -> (Arc<Board>, mpsc::UnboundedReceiver<Action>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let board = Board {
            state: Mutex::default(),
            sight: Mutex::default(),
            progress: Mutex::default(),
            actions: tx,
            last_seen: tokio::sync::watch::Sender::new(None),
            created: Instant::now(),
        };
        (Arc::new(board), rx)
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn set_phase(&self, p: Phase) {
        self.with(|s| {
            if p == Phase::Recording && s.recording_since.is_none() {
                s.recording_since = Some(Instant::now());
            }
            if s.phase != Some(p) {
                s.acted = false;
            }
            s.phase = Some(p)
        })
    }
    pub fn created(&self) -> Instant {
        self.created
    }
    pub fn set_notice(&self, n: Notice, server: &str) {
        self.with(|s| {
            s.notice = Some(n);
            s.server = server.to_owned();
        })
    }
    pub fn set_devices(
        &self,
        d: Devices,
        chosen: Option<(String, String)>,
        no_device: Option<&'static str>,
    ) {
        self.with(|s| {
            s.devices = d;
            s.chosen = chosen;
            s.no_device = no_device;
        })
    }
    pub fn set_sight(&self, sight: Option<Arc<Sight>>) {
        *self.sight.lock().unwrap_or_else(|e| e.into_inner()) = sight;
    }
    pub fn sight(&self) -> Option<Arc<Sight>> {
        self.sight.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    pub fn set_progress(&self, p: Arc<Progress>) {
        *self.progress.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
    }
    pub fn set_upload(&self, testing: bool, v: Option<UploadVerdict>) {
        self.with(|s| {
            s.testing_upload = testing;
            if v.is_some() || testing {
                s.upload = v;
            }
        })
    }
    pub fn set_disk(&self, d: DiskVerdict) {
        self.with(|s| s.disk = Some(d))
    }
    pub fn set_encoder(&self, encoder: crate::capture::Encoder) {
        self.with(|s| s.encoder = Some(encoder))
    }
    pub fn say(&self, message: impl Into<String>) {
        let m = message.into();
        self.with(|s| s.message = Some(m))
    }
    pub fn ended_by_platform(&self) {
        self.with(|s| s.ended_by_platform = true)
    }
    pub fn withdrawal_sent(&self, sent: bool) {
        self.with(|s| s.withdrawal_sent = Some(sent))
    }
    pub fn refusal_sent(&self, sent: bool) {
        self.with(|s| s.refusal_sent = Some(sent))
    }
    pub fn device_lost(&self, lost: bool) {
        self.with(|s| s.device_lost = lost)
    }

    /// From the page: taken if the run is at `at` and nothing decisive was taken there yet
    /// (a refusal after "accept", a second "start", are refused); the run decides the rest.
    pub fn act_at(&self, at: &[Phase], a: Action) -> bool {
        self.with(|s| {
            let phase = s.phase.unwrap_or(Phase::Notice);
            if !at.contains(&phase) || s.acted {
                return false;
            }
            // Choosing devices and testing the link can be repeated; the rest decides.
            s.acted = !matches!(a, Action::ChooseDevices { .. } | Action::UploadTest);
            self.actions.send(a).is_ok()
        })
    }

    pub fn seen(&self) {
        self.last_seen.send_replace(Some(Instant::now()));
    }
    pub fn last_seen(&self) -> Option<Instant> {
        *self.last_seen.borrow()
    }
    /// Returns once the page has asked for the state after `t`.
    pub async fn seen_after(&self, t: Instant) {
        let mut seen = self.last_seen.subscribe();
        // The board owns the sender, so the wait ends only by the page asking.
        let _ = seen.wait_for(|s| s.is_some_and(|s| s > t)).await;
    }

    pub fn view(&self, fragment: std::time::Duration) -> View {
        let sight = self.sight();
        let progress = self
            .progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let since = self.with(|s| s.recording_since).unwrap_or(self.created);
        let (waiting_chunks, sent, total, offline) = match &progress {
            // What the server has, not what was settled: a dropped chunk is not sent.
            Some(p) => (
                p.backlog().0,
                p.acked.load(Ordering::SeqCst),
                p.queued.load(Ordering::SeqCst),
                crate::monitor::offline(p, since),
            ),
            None => (0, 0, 0, false),
        };
        self.with(|s| View {
            phase: s.phase.unwrap_or(Phase::Notice),
            notice: s.notice.clone(),
            devices: s.devices.clone(),
            chosen: s.chosen.clone(),
            no_device: s.no_device,
            preview_frames: sight.as_ref().map_or(0, |s| s.frames()),
            level: sight.as_ref().map_or(0.0, |s| s.level()),
            upload: s.upload.clone(),
            testing_upload: s.testing_upload,
            disk: s.disk.clone(),
            encoder: s.encoder.map(|e| e.element().to_owned()),
            hardware_encoder: s.encoder.is_some_and(|e| e.hardware()),
            elapsed_s: s.recording_since.map_or(0, |t| t.elapsed().as_secs()),
            waiting_chunks,
            waiting_s: waiting_chunks * fragment.as_secs().max(1),
            offline,
            sent,
            total,
            message: s.message.clone(),
            ended_by_platform: s.ended_by_platform,
            device_lost: s.device_lost,
            refusal_sent: s.refusal_sent,
            withdrawal_sent: s.withdrawal_sent,
            server: s.server.clone(),
        })
    }
}

/// The page shows what it has room for: why the recording stopped, a lost device, the
/// platform's end, whether a withdrawal reached the server. Offline and the backlog it
/// reads from the progress itself; the rest is the terminal's.
impl Report for Board {
    fn report(&self, event: &Event<'_>) {
        match event {
            Event::Stopped(reason) => self.say(crate::messages::current().stop_message(*reason)),
            Event::CaptureFailed(e) => self.say(*e),
            Event::DeviceLost => self.device_lost(true),
            Event::DeviceBack | Event::DeviceWaitOver => self.device_lost(false),
            Event::EndedByPlatform => self.ended_by_platform(),
            Event::Withdrawn { sent } => self.withdrawal_sent(*sent),
            _ => {}
        }
    }
}

/// Free space for the spool, in plain words: two hours at the highest bitrate is plenty.
pub fn disk_verdict(free_bytes: u64) -> DiskVerdict {
    let verdict = if free_bytes >= crate::monitor::WARN_FREE_BYTES {
        "good"
    } else if free_bytes >= crate::monitor::LOW_FREE_BYTES {
        "low"
    } else {
        "too_low"
    };
    DiskVerdict {
        verdict,
        free_mb: free_bytes / (1024 * 1024),
    }
}

/// The uplink, in plain words: the recording needs about 650 kbit/s at its best quality and
/// about 200 at its floor; slower than that, it is sent after the exam.
pub fn upload_verdict(kbit_per_s: Option<u64>) -> UploadVerdict {
    let verdict = match kbit_per_s {
        None => "unreachable",
        Some(k) if k >= 1000 => "good",
        Some(k) if k >= 250 => "slow",
        Some(_) => "too_slow",
    };
    UploadVerdict {
        verdict,
        kbit_per_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert_eq!(disk_verdict(10 << 30).verdict, "good");
        assert_eq!(disk_verdict(300 << 20).verdict, "low");
        assert_eq!(disk_verdict(100 << 20).verdict, "too_low");
        assert_eq!(upload_verdict(None).verdict, "unreachable");
        assert_eq!(upload_verdict(Some(5000)).verdict, "good");
        assert_eq!(upload_verdict(Some(400)).verdict, "slow");
        assert_eq!(upload_verdict(Some(100)).verdict, "too_slow");
    }
}
