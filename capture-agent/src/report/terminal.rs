//! The terminal's face: each event's sentence from `messages.rs` on stderr, as the tests
//! and the candidate read them; the page's link also on stdout (the command line's
//! contract); the progress bar while the rest is sent. The only place in the agent that
//! prints while a run goes on.

use super::{Event, Report};
use crate::messages::current as msgs;
use std::sync::Mutex;

#[derive(Default)]
pub struct Terminal {
    /// Shown while the rest is sent, cleared when the backlog is drained.
    bar: Mutex<Option<indicatif::ProgressBar>>,
}

impl Terminal {
    fn sending(&self, sent: u64, total: u64) {
        let mut bar = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        let bar = bar.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_message(msgs().draining);
            bar
        });
        bar.set_length(total);
        bar.set_position(sent);
    }
}

impl Report for Terminal {
    fn report(&self, event: &Event<'_>) {
        let m = msgs();
        match event {
            Event::NoticeUnavailable => eprintln!("{}", m.notice_unavailable),
            Event::NoticeShown(notice) => eprintln!("\n{}", notice.to_text()),
            Event::PageLink { link, reopened } => {
                eprintln!(
                    "{}",
                    if *reopened {
                        m.page_reopened
                    } else {
                        m.candidate_page
                    }
                );
                println!("candidate page: {link}");
            }
            Event::ConsentRefused => eprintln!("{}", m.consent_refused),
            Event::Withdrawn { sent } => eprintln!(
                "{}",
                if *sent {
                    m.withdrawn
                } else {
                    m.withdrawal_unsent
                }
            ),
            Event::LeftoversUploading => eprintln!("{}", m.uploading_leftovers),
            Event::RecordingStarted => eprintln!("{}", m.recording_started),
            Event::RecordingStopping => eprintln!("{}", m.recording_stopping),
            Event::EndedByPlatform => eprintln!("{}", m.ended_by_platform),
            Event::Stopped(reason) => eprintln!("{}", m.stop_message(*reason)),
            Event::DeviceLost => eprintln!("{}", m.device_lost),
            Event::DeviceBack => eprintln!("{}", m.device_back),
            // The terminal said the device was lost; what ends the run says the rest.
            Event::DeviceWaitOver => {}
            Event::CaptureFailed(e) => eprintln!("capture: {e}"),
            Event::SpoolFull => eprintln!("{}", m.spool_full),
            Event::StreamReopened => eprintln!("{}", m.stream_reopened),
            Event::ServerUnreachable => eprintln!("{}", m.server_unreachable),
            Event::ServerFull => eprintln!("{}", m.server_full),
            Event::ChunkDropped { index, failure } => {
                eprintln!("{} {index} ({failure})", m.chunk_dropped)
            }
            Event::DiskLow => eprintln!("{}", m.disk_low),
            Event::Offline { chunks, bytes } => eprintln!(
                "{} {chunks} fragments ({:.1} Mo)",
                m.offline,
                *bytes as f64 / 1e6
            ),
            Event::BackOnline => eprintln!("{}", m.back_online),
            Event::Sending { sent, total } => self.sending(*sent, *total),
            Event::Drained => {
                if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    bar.finish_and_clear();
                }
            }
            Event::AllSent => eprintln!("{}", m.all_sent),
        }
    }
}

/// The run's last word when it fails: the process's error line.
pub fn fatal(error: &anyhow::Error) {
    eprintln!("erreur : {error:#}");
}
