//! Reading recordings back: the integrity report of an attempt, and the decrypted media
//! stream for staff (decrypted chunk by chunk in memory, never written anywhere).

use super::Review;
use super::ReviewError;
use crate::attempts::AssignedAttempt;
use crate::clock::{from_unix_ms, rfc3339};
use crate::db::{Attempt, ChunkRow, ChunkSummary, Stream};
use crate::db::{AttemptId, SittingId, StreamId};
use crate::failure::Failure;
use crate::lifecycle::AttemptState;
use bytes::Bytes;
use futures::{Stream as FutStream, StreamExt};
use serde::Serialize;
use std::sync::Arc;

/// The integrity verdict on an attempt's recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Integrity {
    /// Every stream whole: no missing fragment, each ended by its final one.
    Ok,
    /// Missing fragments, or a stream without its final fragment.
    Incomplete,
    /// A chunk that does not chain to its predecessor.
    Broken,
    /// Whole, but media reached the server longer than `[review] late_upload_after` after
    /// the exam's end: recorded offline and sent late, or made up after the fact.
    LateUpload,
    /// The recording has been destroyed.
    Destroyed,
}

impl Integrity {
    /// The wire name (the pages' labels are keyed by it).
    pub fn as_str(self) -> &'static str {
        match self {
            Integrity::Ok => "ok",
            Integrity::Incomplete => "incomplete",
            Integrity::Broken => "broken",
            Integrity::LateUpload => "late_upload",
            Integrity::Destroyed => "destroyed",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct AttemptReport {
    pub attempt_id: AttemptId,
    pub sitting_id: SittingId,
    pub reference: String,
    pub state: AttemptState,
    pub ended_at: Option<String>,
    pub consent_at: Option<String>,
    pub streams: Vec<StreamReport>,
    pub fragments_stored: usize,
    /// When the exam's agent said nothing for `[liveness] silent_after` or longer (it may
    /// have gone on recording offline: a silence is not a hole).
    pub agent_silences: Vec<crate::liveness::Silence>,
    /// How many of the stored chunks each transport carried ("https", "webrtc").
    pub chunks_by_transport: std::collections::BTreeMap<&'static str, u64>,
    pub recorded_seconds: f64,
    pub gaps: Vec<Gap>,
    pub integrity: Integrity,
    pub integrity_issues: Vec<String>,
    /// Streams whose media arrived after the exam's end, however late.
    pub late_streams: usize,
    /// Every stream's missing fragments, as inclusive index ranges.
    pub missing: Vec<StreamRange>,
    /// The PV decision, holds, when it is destroyed, and the receipt once it is.
    pub retention: crate::retention::RetentionStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamStatus {
    /// Its final fragment is stored and nothing before it is missing.
    Complete,
    /// The newest stream, not ended: it may still be recording.
    Open,
    /// No final fragment (agent killed, computer stopped) or fragments missing.
    EndedAbruptly,
}

#[derive(Debug, Serialize)]
pub struct StreamReport {
    pub stream_id: StreamId,
    pub started_at: String,
    pub status: StreamStatus,
    pub fragments_stored: usize,
    pub recorded_seconds: f64,
    /// Missing fragments as inclusive index ranges: a stream's report stays small
    /// whatever indices it was sent.
    pub missing: Vec<IndexRange>,
    /// When the server received the stream's first and last chunk (its own clock).
    pub received_from: Option<String>,
    pub received_until: Option<String>,
    /// How long after the exam's end its last chunk arrived; 0 when on time (or the exam
    /// has not ended).
    pub received_after_end_s: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IndexRange {
    pub from: u32,
    pub to: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StreamRange {
    pub stream_id: StreamId,
    pub from: u32,
    pub to: u32,
}

#[derive(Debug, Serialize)]
pub struct Gap {
    pub from: String,
    pub to: String,
    pub seconds: f64,
}

/// Holes and broken links listed per stream, at most: the report stays small whatever
/// indices an agent sent.
pub(crate) const MAX_LISTED: u32 = 1_000;

fn media_span_us(sum: &ChunkSummary) -> u64 {
    match (sum.media_start_us, sum.media_end_us) {
        (Some(s), Some(e)) => e.saturating_sub(s),
        _ => 0,
    }
}

impl Review {
    /// What was recorded and kept of an attempt, for a staff member who may see it; the
    /// viewing is audited.
    pub async fn attempt_report(&self, a: &AssignedAttempt) -> Result<AttemptReport, ReviewError> {
        let report = self.report_of(a.attempt()).await?;
        self.audit
            .access(
                a.staff(),
                "attempt_report_viewed",
                Some(a.id),
                serde_json::json!({}),
            )
            .await?;
        Ok(report)
    }

    /// The same, for the operator on the server (`attempt show`): the one caller that
    /// names an attempt without a staff member.
    pub async fn report_for_operator(
        &self,
        attempt_id: AttemptId,
    ) -> Result<AttemptReport, ReviewError> {
        self.report_of(&self.attempts.get(attempt_id).await?).await
    }

    pub(super) async fn report_of(&self, attempt: &Attempt) -> Result<AttemptReport, ReviewError> {
        let attempt_id = attempt.id;
        // A destroyed attempt has nothing left to report on but its retention and receipt.
        let streams = if attempt.state == AttemptState::Destroyed {
            Vec::new()
        } else {
            self.db.streams_of(attempt_id).await?
        };
        let mut issues = Vec::new();
        let mut broken = false;
        let mut reports = Vec::new();
        let mut spans = Vec::new();
        for (n, s) in streams.iter().enumerate() {
            let sum = self.db.chunk_summary(s.id, MAX_LISTED).await?;
            let (report, chain_ok) = stream_report(
                s,
                &sum,
                n + 1 == streams.len(),
                attempt.ended_at_ms,
                &mut issues,
            );
            broken |= !chain_ok;
            spans.push((s.opened_at_ms, media_span_us(&sum)));
            reports.push(report);
        }
        let gaps = spans
            .windows(2)
            .filter_map(|w| {
                let end_ms = w[0].0 + (w[0].1 / 1000) as i64;
                let seconds = (w[1].0 - end_ms) as f64 / 1000.0;
                (seconds > 1.0).then(|| Gap {
                    from: rfc3339(from_unix_ms(end_ms)),
                    to: rfc3339(from_unix_ms(w[1].0)),
                    seconds,
                })
            })
            .collect();
        let missing = reports
            .iter()
            .flat_map(|r| {
                r.missing.iter().map(|m| StreamRange {
                    stream_id: r.stream_id,
                    from: m.from,
                    to: m.to,
                })
            })
            .collect();
        let retention = self.policy.attempt_retention(attempt_id).await?;
        let agent_silences = crate::liveness::silences(self.db.as_ref(), attempt_id).await?;
        let chunks_by_transport = self
            .db
            .chunks_by_transport(attempt_id)
            .await?
            .into_iter()
            .map(|(t, n)| (t.as_str(), n))
            .collect();
        let late_after = self.settings.late_upload_after.as_secs_f64();
        let latest = reports
            .iter()
            .map(|r| r.received_after_end_s)
            .fold(0.0, f64::max);
        let integrity = if attempt.state == AttemptState::Destroyed {
            Integrity::Destroyed
        } else if broken {
            Integrity::Broken
        } else if !issues.is_empty() {
            Integrity::Incomplete
        } else if latest > late_after {
            Integrity::LateUpload
        } else {
            Integrity::Ok
        };
        let late_streams = reports
            .iter()
            .filter(|r| r.received_after_end_s > 0.0)
            .count();
        Ok(AttemptReport {
            attempt_id,
            sitting_id: attempt.sitting_id,
            reference: self.keys.reference_of(&attempt),
            state: attempt.state,
            ended_at: attempt.ended_at_ms.map(|t| rfc3339(from_unix_ms(t))),
            missing,
            consent_at: attempt.consent_at_ms.map(|t| rfc3339(from_unix_ms(t))),
            fragments_stored: reports.iter().map(|r| r.fragments_stored).sum(),
            agent_silences,
            chunks_by_transport,
            recorded_seconds: reports.iter().map(|r| r.recorded_seconds).sum(),
            streams: reports,
            gaps,
            integrity,
            integrity_issues: issues,
            late_streams,
            retention,
        })
    }

    /// Streams the decrypted init segment followed by fragments `from..=to` of one stream.
    /// The access is audited before the first byte leaves.
    pub async fn read_media(
        self: Arc<Self>,
        a: &AssignedAttempt,
        stream_id: StreamId,
        from: u32,
        to: Option<u32>,
    ) -> Result<impl FutStream<Item = Result<Bytes, std::io::Error>> + Send + 'static, ReviewError>
    {
        let (staff, attempt_id) = (a.staff(), a.id);
        let (attempt, stream) = self.viewable_stream(a, stream_id).await?;
        let all = self.db.chunks_of(stream_id).await?;
        let last_stored = all.last().map(|r| r.index).unwrap_or(0);
        let to = to.unwrap_or(last_stored).min(last_stored);
        let from = from.max(1);
        if all.first().map(|r| r.index) != Some(0) {
            return Err(Failure::NotFound("initialisation segment").into());
        }
        let selected: Vec<ChunkRow> = all
            .iter()
            .filter(|r| r.index == 0 || (from..=to).contains(&r.index))
            .cloned()
            .collect();
        // Never play across a hole as if the recording were continuous.
        let asked = selected.iter().map(|r| r.index).filter(|&i| i >= from);
        let holes: Vec<String> = missing_ranges(asked)
            .iter()
            .filter(|r| r.to >= from)
            .map(|r| format!("{}-{}", r.from.max(from), r.to))
            .collect();
        if !holes.is_empty() {
            return Err(ReviewError::FragmentsMissing(holes.join(", ")));
        }
        let key = self.keys.stream_key(&attempt, &stream)?;
        self.audit.access(
            staff,
            "recording_viewed",
            Some(attempt_id),
            serde_json::json!({ "stream_id": stream_id, "from_index": from, "to_index": to, "fragments": selected.len(),
                "media_from_ms": selected.iter().map(|r| r.media_start_us / 1000).min(), "media_to_ms": selected.iter().map(|r| r.media_end_us / 1000).max() }),
        )
        .await?;
        // Each chunk's predecessor, to check the chain as the player's path does.
        let prevs = super::playback::predecessors(&all);
        let (me, a) = (self.clone(), a.clone());
        Ok(futures::stream::iter(selected).then(move |row| {
            let (me, a, key) = (me.clone(), a.clone(), key.clone());
            let prev = prevs.get(&row.index).copied();
            async move {
                // A long download stops when the attempt is destroyed under it.
                if me
                    .db
                    .attempt(attempt_id)
                    .await
                    .map_err(std::io::Error::other)?
                    .state
                    == AttemptState::Destroyed
                {
                    return Err(std::io::Error::other("the recording has been destroyed"));
                }
                let plaintext = me
                    .open_checked(&a, &key, &row, prev)
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                // Only its media part goes out (not the activity and thumbnail riding with it).
                super::playback::part(&plaintext, |p| Some(p.media), row.index)
                    .map_err(|e| std::io::Error::other(e.to_string()))
            }
        }))
    }
}

/// The holes in a sorted list of stored indices, from 0 to the highest: linear in the
/// number of rows, whatever the indices.
pub fn missing_ranges(sorted_indices: impl IntoIterator<Item = u32>) -> Vec<IndexRange> {
    let mut out = Vec::new();
    let mut next = 0u32;
    for i in sorted_indices {
        if i > next {
            out.push(IndexRange {
                from: next,
                to: i - 1,
            });
        }
        next = i.saturating_add(1);
    }
    out
}

/// How long after the exam's end the stream's last chunk reached the server; 0 when on time.
pub(crate) fn received_after_end_ms(sum: &ChunkSummary, ended_at_ms: Option<i64>) -> i64 {
    match (sum.last_stored_ms, ended_at_ms) {
        (Some(last), Some(end)) => (last - end).max(0),
        _ => 0,
    }
}

/// Complete, still open (the newest stream, not ended), or ended abruptly.
pub(crate) fn stream_status(s: &Stream, sum: &ChunkSummary, newest: bool) -> StreamStatus {
    if sum.final_stored && sum.missing.is_empty() {
        StreamStatus::Complete
    } else if newest && s.ended_at_ms.is_none() {
        StreamStatus::Open
    } else {
        StreamStatus::EndedAbruptly
    }
}

/// Returns the stream's report and whether its digest chain holds.
fn stream_report(
    s: &Stream,
    sum: &ChunkSummary,
    newest: bool,
    ended_at_ms: Option<i64>,
    issues: &mut Vec<String>,
) -> (StreamReport, bool) {
    let missing: Vec<IndexRange> = sum
        .missing
        .iter()
        .map(|&(from, to)| IndexRange { from, to })
        .collect();
    for index in &sum.broken {
        issues.push(format!(
            "stream {}: fragment {index} does not chain to fragment {}",
            s.id,
            index - 1
        ));
    }
    let status = stream_status(s, sum, newest);
    if !missing.is_empty() {
        let ranges: Vec<String> = missing
            .iter()
            .map(|r| {
                if r.from == r.to {
                    r.from.to_string()
                } else {
                    format!("{}-{}", r.from, r.to)
                }
            })
            .collect();
        issues.push(format!(
            "stream {}: missing fragments {}",
            s.id,
            ranges.join(", ")
        ));
    }
    if !sum.final_stored {
        issues.push(format!(
            "stream {}: no final fragment ({})",
            s.id,
            if status == StreamStatus::Open {
                "open"
            } else {
                "ended abruptly"
            }
        ));
    }
    (
        StreamReport {
            stream_id: s.id,
            started_at: rfc3339(from_unix_ms(s.opened_at_ms)),
            status,
            fragments_stored: sum.stored as usize,
            recorded_seconds: media_span_us(sum) as f64 / 1e6,
            missing,
            received_from: sum.first_stored_ms.map(|t| rfc3339(from_unix_ms(t))),
            received_until: sum.last_stored_ms.map(|t| rfc3339(from_unix_ms(t))),
            received_after_end_s: received_after_end_ms(sum, ended_at_ms) as f64 / 1000.0,
        },
        sum.broken.is_empty(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_fragments_are_ranges() {
        assert_eq!(missing_ranges([]), vec![]);
        assert_eq!(missing_ranges([0, 1, 2]), vec![]);
        assert_eq!(
            missing_ranges([1, 2, 5, 7]),
            vec![
                IndexRange { from: 0, to: 0 },
                IndexRange { from: 3, to: 4 },
                IndexRange { from: 6, to: 6 }
            ]
        );
        // The index bomb: one range, not four billion entries.
        assert_eq!(
            missing_ranges([0, u32::MAX - 1]),
            vec![IndexRange {
                from: 1,
                to: u32::MAX - 2
            }]
        );
        assert_eq!(
            missing_ranges([0, u32::MAX]),
            vec![IndexRange {
                from: 1,
                to: u32::MAX - 1
            }]
        );
    }
}

#[cfg(test)]
mod integrity_tests {
    use super::Integrity;

    #[test]
    fn an_integrity_verdict_says_its_wire_name() {
        for i in [
            Integrity::Ok,
            Integrity::Incomplete,
            Integrity::Broken,
            Integrity::LateUpload,
            Integrity::Destroyed,
        ] {
            assert_eq!(serde_json::to_value(i).unwrap(), i.as_str());
        }
    }
}
