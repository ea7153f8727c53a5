//! What a run reports (`--json` and the tests read it): counts, acknowledgement latency,
//! why it ended, and whether everything reached the server.

use super::sealing::Sealed;
use crate::refusal::{DropReason, StopReason};
use crate::steps::Stop;
use crate::uploader::Progress;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use uuid::Uuid;

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub attempt_id: Uuid,
    pub stream_id: Uuid,
    pub streams_opened: u32,
    pub encoder: String,
    pub fragments_sealed: u32,
    pub chunks_acknowledged: u64,
    pub bytes_acknowledged: u64,
    pub chunks_dropped: u64,
    pub drop_reasons: HashMap<DropReason, u64>,
    /// Chunks kept in the spool, unsent, because the run was stopped.
    pub chunks_unsent: u64,
    pub stopped: Option<StopReason>,
    /// The server had destroyed the recording: what the spool still held of it was erased.
    pub spool_erased: bool,
    /// From sealing a fragment to the server's durable acknowledgement.
    pub ack_latency: Option<Latency>,
    pub media_seconds: f64,
    pub capture_error: Option<String>,
    /// Bitrate, backlog and offline time while recording.
    pub network: crate::monitor::Watch,
    pub transport: crate::transport::Mode,
    /// How many chunks each transport carried in this run ("webrtc", "https").
    pub chunks_by_transport: std::collections::BTreeMap<&'static str, u64>,
    /// `given`, `refused` (nothing recorded, only the refusal sent), `refused_unsent` (the
    /// server could not be told) or `withdrawn`.
    pub consent: &'static str,
    /// Why the recording ended: `duration`, `interrupted`, `finished`, `withdrawn`,
    /// `ended_by_platform`, `capture_ended`.
    pub ended_by: Option<&'static str>,
}

impl Summary {
    pub fn complete(&self) -> bool {
        self.chunks_dropped == 0
            && self.chunks_unsent == 0
            && self.stopped.is_none()
            && self.capture_error.is_none()
            && self.consent != "refused_unsent"
    }

    /// A run that recorded nothing (the candidate refused, or withdrew during the check).
    pub(super) fn nothing(
        attempt_id: Uuid,
        consent: &'static str,
        transport: crate::transport::Mode,
    ) -> Summary {
        Summary {
            attempt_id,
            consent,
            transport,
            ..Summary::default()
        }
    }

    /// A run that recorded: what was sealed, and what the uploader's progress says of it.
    pub(super) fn recorded(
        head: Summary,
        sealed: Sealed,
        progress: &Progress,
        stopped: Option<StopReason>,
        why: Stop,
    ) -> Summary {
        Summary {
            streams_opened: sealed.streams,
            fragments_sealed: sealed.fragments,
            chunks_acknowledged: progress.acked.load(Ordering::SeqCst),
            bytes_acknowledged: progress.bytes_acked.load(Ordering::SeqCst),
            chunks_dropped: progress.dropped.load(Ordering::SeqCst),
            drop_reasons: progress
                .drop_reasons
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            chunks_unsent: if head.spool_erased {
                0
            } else {
                progress.unsent.load(Ordering::SeqCst)
            },
            stopped,
            ack_latency: latency(std::mem::take(
                &mut *progress
                    .ack_latencies_ms
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()),
            )),
            media_seconds: sealed.media_us as f64 / 1e6,
            capture_error: sealed.capture_error,
            ended_by: Some(ended_by(why)),
            ..head
        }
    }
}

fn ended_by(why: Stop) -> &'static str {
    match why {
        Stop::Duration => "duration",
        Stop::Interrupted => "interrupted",
        Stop::Finished => "finished",
        Stop::Withdrawn => "withdrawn",
        Stop::EndedByPlatform => "ended_by_platform",
        Stop::CaptureEnded => "capture_ended",
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn latency(mut v: Vec<u64>) -> Option<Latency> {
    v.sort_unstable();
    (!v.is_empty()).then(|| Latency {
        p50_ms: percentile(&v, 0.50),
        p99_ms: percentile(&v, 0.99),
        max_ms: *v.last().unwrap_or(&0),
    })
}

#[cfg(test)]
mod tests {
    use super::latency;

    #[test]
    fn latency_percentiles() {
        let l = latency((1..=100).collect()).unwrap();
        assert_eq!((l.p50_ms, l.p99_ms, l.max_ms), (50, 99, 100));
        assert!(latency(vec![]).is_none());
        assert_eq!(latency(vec![7]).unwrap().p99_ms, 7);
    }
}
