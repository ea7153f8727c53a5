//! The attempt's timeline as the player draws it. Nothing is hidden: time between streams
//! (the agent stopped or the computer was off), missing fragments, a stream that ended
//! without its final fragment, and fragments whose chain link does not hold are all
//! listed with their place in time.

use super::Review;
use super::ReviewError;
use crate::attempts::AssignedAttempt;
use crate::db::{AttemptId, StreamId};
use crate::lifecycle::AttemptState;
use crate::review::recording::{
    received_after_end_ms, stream_status, IndexRange, StreamStatus, MAX_LISTED,
};
use serde::Serialize;

/// Fragments listed per stream: 55 hours of 2-second fragments. The index window allows a
/// hostile agent about twice a real recording's count; this bounds what one page loads.
const MAX_FRAGMENTS: u32 = 100_000;

#[derive(Debug, Serialize)]
pub struct Timeline {
    pub attempt_id: AttemptId,
    pub reference: String,
    pub state: AttemptState,
    /// Wall-clock bounds of what was recorded, unix milliseconds.
    pub start_ms: i64,
    pub end_ms: i64,
    /// When the exam ended (unix ms): media received after it is marked as such.
    pub ended_ms: Option<i64>,
    pub streams: Vec<StreamTimeline>,
    /// Wall-clock stretches with no stream recording, between two streams.
    pub gaps: Vec<WallGap>,
}

#[derive(Debug, Serialize)]
pub struct StreamTimeline {
    pub stream_id: StreamId,
    /// Wall-clock time of the stream's media time 0: when the server opened the stream
    /// (the agent opens it as capture starts; the offset is the open request's latency).
    pub origin_ms: i64,
    pub status: StreamStatus,
    pub has_init: bool,
    /// Stored media fragments: `[index, media start ms, media end ms, when the server
    /// received it (unix ms)]`, the first `MAX_FRAGMENTS`.
    pub fragments: Vec<[u64; 4]>,
    /// More fragments are stored than listed (no real recording has that many).
    pub fragments_truncated: bool,
    pub missing: Vec<IndexRange>,
    /// Fragments whose recorded link to their predecessor does not match it.
    pub broken: Vec<u32>,
    /// How long after the exam's end the stream's last chunk reached the server (0: on
    /// time): provenance the agent's claimed times cannot hide.
    pub received_after_end_ms: i64,
}

#[derive(Debug, Serialize)]
pub struct WallGap {
    pub from_ms: i64,
    pub to_ms: i64,
}

impl Review {
    pub async fn timeline(&self, a: &AssignedAttempt) -> Result<Timeline, ReviewError> {
        let (staff, attempt_id) = (a.staff(), a.id);
        let attempt = Self::viewable(a)?;
        let streams = self.db.streams_of(attempt_id).await?;
        let mut out = Vec::with_capacity(streams.len());
        for (n, s) in streams.iter().enumerate() {
            let sum = self.db.chunk_summary(s.id, MAX_LISTED).await?;
            let fragments: Vec<[u64; 4]> = self
                .db
                .fragment_spans(s.id, MAX_FRAGMENTS + 1)
                .await?
                .into_iter()
                .map(|(i, start, end, received)| {
                    [
                        u64::from(i),
                        start / 1000,
                        end / 1000,
                        received.max(0) as u64,
                    ]
                })
                .collect();
            out.push(StreamTimeline {
                stream_id: s.id,
                origin_ms: s.opened_at_ms,
                status: stream_status(s, &sum, n + 1 == streams.len()),
                has_init: sum.has_init,
                fragments_truncated: fragments.len() > MAX_FRAGMENTS as usize,
                fragments: fragments.into_iter().take(MAX_FRAGMENTS as usize).collect(),
                missing: sum
                    .missing
                    .iter()
                    .map(|&(from, to)| IndexRange { from, to })
                    .collect(),
                received_after_end_ms: received_after_end_ms(&sum, attempt.ended_at_ms),
                broken: sum.broken,
            });
        }
        let span = |s: &StreamTimeline| {
            let end = s.fragments.iter().map(|f| f[2]).max().unwrap_or(0) as i64;
            (s.origin_ms, s.origin_ms + end)
        };
        let gaps = out
            .windows(2)
            .filter_map(|w| {
                let (_, end) = span(&w[0]);
                let (next, _) = span(&w[1]);
                (next > end).then_some(WallGap {
                    from_ms: end,
                    to_ms: next,
                })
            })
            .collect();
        let start_ms = out
            .first()
            .map(|s| span(s).0)
            .unwrap_or(attempt.created_at_ms);
        let end_ms = out.iter().map(|s| span(s).1).max().unwrap_or(start_ms);
        self.audit
            .access(
                staff,
                "timeline_viewed",
                Some(attempt_id),
                serde_json::json!({}),
            )
            .await?;
        Ok(Timeline {
            attempt_id,
            reference: self.keys.reference_of(&attempt),
            state: attempt.state,
            start_ms,
            end_ms,
            ended_ms: attempt.ended_at_ms,
            streams: out,
            gaps,
        })
    }
}
