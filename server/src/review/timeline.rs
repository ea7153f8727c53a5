//! The attempt's timeline as the player draws it. Nothing is hidden: time between streams
//! (the agent stopped or the computer was off), missing fragments, a stream that ended
//! without its final fragment, and fragments whose chain link does not hold are all
//! listed with their place in time.

use super::Review;
use super::ReviewError;
use crate::attempts::AssignedAttempt;
use crate::db::ChunkRow;
use crate::db::{AttemptId, StreamId};
use crate::lifecycle::AttemptState;
use crate::review::recording::{missing_ranges, IndexRange, StreamStatus};
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Serialize)]
pub struct Timeline {
    pub attempt_id: AttemptId,
    pub reference: String,
    pub state: AttemptState,
    /// Wall-clock bounds of what was recorded, unix milliseconds.
    pub start_ms: i64,
    pub end_ms: i64,
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
    /// Stored media fragments: `[index, media start ms, media end ms]`.
    pub fragments: Vec<[u64; 3]>,
    pub missing: Vec<IndexRange>,
    /// Fragments whose recorded link to their predecessor does not match it.
    pub broken: Vec<u32>,
}

#[derive(Debug, Serialize)]
pub struct WallGap {
    pub from_ms: i64,
    pub to_ms: i64,
}

pub(crate) fn stream_timeline(
    id: Uuid,
    origin_ms: i64,
    status: StreamStatus,
    rows: &[ChunkRow],
) -> StreamTimeline {
    let broken = rows
        .windows(2)
        .filter(|w| w[1].index == w[0].index + 1 && w[1].prev_digest != w[0].digest)
        .map(|w| w[1].index)
        .collect();
    StreamTimeline {
        stream_id: id.into(),
        origin_ms,
        status,
        has_init: rows.first().is_some_and(|r| r.index == 0),
        fragments: rows
            .iter()
            .filter(|r| r.index > 0)
            .map(|r| {
                [
                    r.index as u64,
                    r.media_start_us / 1000,
                    r.media_end_us / 1000,
                ]
            })
            .collect(),
        missing: missing_ranges(rows.iter().map(|r| r.index)),
        broken,
    }
}

impl Review {
    pub async fn timeline(&self, a: &AssignedAttempt) -> Result<Timeline, ReviewError> {
        let (staff, attempt_id) = (a.staff(), a.id);
        let attempt = Self::viewable(a)?;
        let streams = self.db.streams_of(attempt_id).await?;
        let mut out = Vec::with_capacity(streams.len());
        for (n, s) in streams.iter().enumerate() {
            let rows = self.db.chunks_of(s.id).await?;
            // One hole is enough to tell the status.
            let sum = self.db.chunk_summary(s.id, 1).await?;
            let status = crate::review::recording::stream_status(s, &sum, n + 1 == streams.len());
            out.push(stream_timeline(s.id.into(), s.opened_at_ms, status, &rows));
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
            streams: out,
            gaps,
        })
    }
}
