//! The one port through which the agent says what happens to the candidate: the uploader,
//! the monitor, the steps and the run name an [`Event`]; the terminal (`report/terminal.rs`)
//! prints its sentence and the page's board (`board.rs`) shows what the page has room for.
//! No module but the terminal's prints to the candidate (logs go through `tracing`), so the
//! words stay in `messages.rs` and a new face (a log, a test) is one more implementation,
//! not an edit in every module.

pub mod terminal;

use crate::client::Failure;
use crate::refusal::StopReason;
use protocol::notice::Notice;
use std::sync::Arc;

/// Something the candidate is told of, in the domain's words; each face picks its sentence.
#[derive(Debug)]
pub enum Event<'a> {
    /// The server's notice could not be fetched: the copy shipped with the agent is shown.
    NoticeUnavailable,
    /// Scripted runs (`--consent`): the notice consented to, in full.
    NoticeShown(&'a Notice),
    /// A fresh one-time link to the candidate's page (`reopened`: the page had gone quiet).
    PageLink {
        link: &'a str,
        reopened: bool,
    },
    /// Consent refused: nothing recorded, only the refusal sent.
    ConsentRefused,
    /// Consent withdrawn; `sent`: the server recorded it.
    Withdrawn {
        sent: bool,
    },
    /// Chunks left by an earlier run go first.
    LeftoversUploading,
    RecordingStarted,
    RecordingStopping,
    /// The platform ended the exam.
    EndedByPlatform,
    /// The server refused for good: recording stops.
    Stopped(StopReason),
    /// The camera or the microphone went away; recording resumes when it is back.
    DeviceLost,
    DeviceBack,
    /// The wait for a lost device ended without it (the run is stopping, or the source
    /// cannot come back): the page stops showing it as lost.
    DeviceWaitOver,
    /// The capture failed for good.
    CaptureFailed(&'a str),
    /// A spool write failed: chunks wait in memory.
    SpoolFull,
    /// The server lost the live stream: recording goes on in a new one.
    StreamReopened,
    /// The server does not answer: chunks wait, retried.
    ServerUnreachable,
    /// The server cannot store for now (507): chunks wait, retried.
    ServerFull,
    /// The server will never take this chunk.
    ChunkDropped {
        index: u32,
        failure: &'a Failure,
    },
    /// Little free disk for the spool: the bitrate is lowered.
    DiskLow,
    /// No acknowledgement for a while with chunks waiting (repeated as a reminder).
    Offline {
        chunks: u64,
        bytes: u64,
    },
    BackOnline,
    /// After the recording, the rest being sent: `sent` of `total` chunks settled so far.
    Sending {
        sent: u64,
        total: u64,
    },
    /// The backlog is drained (or can drain no further).
    Drained,
    /// Everything sealed reached the server.
    AllSent,
}

/// A face that is told what happens.
pub trait Report: Send + Sync {
    fn report(&self, event: &Event<'_>);
}

/// What the agent's modules hold: every face at once.
pub type Reporter = Arc<dyn Report>;

/// Tells each face in turn.
pub struct Faces(pub Vec<Reporter>);

impl Report for Faces {
    fn report(&self, event: &Event<'_>) {
        for face in &self.0 {
            face.report(event);
        }
    }
}

/// Tells no one (tests of modules that report).
pub struct Silent;

impl Report for Silent {
    fn report(&self, _: &Event<'_>) {}
}
