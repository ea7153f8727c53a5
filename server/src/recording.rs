//! Reading recordings back: the integrity report of an attempt, and the decrypted media
//! stream for staff (decrypted chunk by chunk in memory, never written anywhere).

use crate::blobs::chunk_path;
use crate::clock::{from_unix_ms, rfc3339};
use crate::db::{ChunkRow, Stream};
use crate::error::AppError;
use crate::service::{Proctor, StaffIdentity};
use bytes::Bytes;
use futures::{Stream as FutStream, StreamExt};
use serde::Serialize;
use std::sync::Arc;
use uuid::Uuid;

#[derive(Debug, Serialize)]
pub struct AttemptReport {
    pub attempt_id: Uuid,
    pub sitting_id: Uuid,
    pub reference: String,
    pub state: &'static str,
    pub consent_at: Option<String>,
    pub streams: Vec<StreamReport>,
    pub fragments_stored: usize,
    pub recorded_seconds: f64,
    pub gaps: Vec<Gap>,
    /// "ok", "incomplete" (missing fragments or a stream without its final fragment) or
    /// "broken" (a chunk that does not chain to its predecessor).
    pub integrity: &'static str,
    pub integrity_issues: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct StreamReport {
    pub stream_id: Uuid,
    pub started_at: String,
    /// "complete", "open" (may still be recording) or "ended_abruptly".
    pub status: &'static str,
    pub fragments_stored: usize,
    pub recorded_seconds: f64,
    pub missing_indices: Vec<u32>,
}

#[derive(Debug, Serialize)]
pub struct Gap {
    pub from: String,
    pub to: String,
    pub seconds: f64,
}

fn media_span_us(chunks: &[ChunkRow]) -> u64 {
    let start = chunks.iter().filter(|c| c.index > 0).map(|c| c.media_start_us).min();
    let end = chunks.iter().map(|c| c.media_end_us).max();
    match (start, end) {
        (Some(s), Some(e)) => e.saturating_sub(s),
        _ => 0,
    }
}

impl Proctor {
    pub async fn attempt_report(&self, attempt_id: Uuid) -> Result<AttemptReport, AppError> {
        let attempt = self.attempt_or_404(attempt_id).await?;
        let streams = self.db.streams_of(attempt_id).await?;
        let mut issues = Vec::new();
        let mut broken = false;
        let mut reports = Vec::new();
        let mut spans = Vec::new();
        for (n, s) in streams.iter().enumerate() {
            let chunks = self.db.chunks_of(s.id).await?;
            let (report, chain_ok) = stream_report(s, &chunks, n + 1 == streams.len(), &mut issues);
            broken |= !chain_ok;
            spans.push((s.opened_at_ms, media_span_us(&chunks)));
            reports.push(report);
        }
        let gaps = spans
            .windows(2)
            .filter_map(|w| {
                let end_ms = w[0].0 + (w[0].1 / 1000) as i64;
                let seconds = (w[1].0 - end_ms) as f64 / 1000.0;
                (seconds > 1.0).then(|| Gap { from: rfc3339(from_unix_ms(end_ms)), to: rfc3339(from_unix_ms(w[1].0)), seconds })
            })
            .collect();
        let state = match (attempt.consent_at_ms, reports.last()) {
            (None, _) => "awaiting_consent",
            (Some(_), None) => "consented",
            (Some(_), Some(r)) if r.status == "open" => "recording",
            _ => "recorded",
        };
        let integrity = if broken {
            "broken"
        } else if issues.is_empty() {
            "ok"
        } else {
            "incomplete"
        };
        Ok(AttemptReport {
            attempt_id,
            sitting_id: attempt.sitting_id,
            reference: attempt.reference,
            state,
            consent_at: attempt.consent_at_ms.map(|t| rfc3339(from_unix_ms(t))),
            fragments_stored: reports.iter().map(|r| r.fragments_stored).sum(),
            recorded_seconds: reports.iter().map(|r| r.recorded_seconds).sum(),
            streams: reports,
            gaps,
            integrity,
            integrity_issues: issues,
        })
    }

    /// Streams the decrypted init segment followed by fragments `from..=to` of one stream.
    /// The access is audited before the first byte leaves.
    pub async fn read_media(
        self: Arc<Self>,
        staff: &StaffIdentity,
        attempt_id: Uuid,
        stream_id: Uuid,
        from: u32,
        to: Option<u32>,
    ) -> Result<impl FutStream<Item = Result<Bytes, std::io::Error>> + Send + 'static, AppError> {
        if !staff.role.may_view_recordings() {
            return Err(AppError::Forbidden("this role may not view recordings".into()));
        }
        let attempt = self.attempt_or_404(attempt_id).await?;
        let stream = match self.db.stream(stream_id).await {
            Ok(s) if s.attempt_id == attempt_id => s,
            Ok(_) | Err(crate::db::DbError::NotFound) => return Err(AppError::NotFound("stream")),
            Err(e) => return Err(e.into()),
        };
        let rows = self.db.chunks_of(stream_id).await?;
        let last_stored = rows.last().map(|r| r.index).unwrap_or(0);
        let to = to.unwrap_or(last_stored).min(last_stored);
        let from = from.max(1);
        if rows.first().map(|r| r.index) != Some(0) {
            return Err(AppError::NotFound("initialisation segment"));
        }
        let selected: Vec<ChunkRow> = rows.into_iter().filter(|r| r.index == 0 || (from..=to).contains(&r.index)).collect();
        let key = self.stream_key(&attempt, &stream)?;
        self.audit(
            &staff.login,
            "recording_viewed",
            Some(attempt_id),
            serde_json::json!({ "stream_id": stream_id, "from_index": from, "to_index": to, "fragments": selected.len() }),
        )
        .await?;
        let me = self.clone();
        Ok(futures::stream::iter(selected).then(move |row| {
            let me = me.clone();
            let key = key.clone();
            async move {
                let blob = me.blobs.get(&chunk_path(attempt_id, stream_id, row.index)).await.map_err(std::io::Error::other)?;
                let opened = protocol::open_chunk(&key, attempt_id, stream_id, &blob).map_err(std::io::Error::other)?;
                if opened.digest != row.digest {
                    return Err(std::io::Error::other(format!("chunk {} differs from the one acknowledged", row.index)));
                }
                Ok(Bytes::from(opened.plaintext))
            }
        }))
    }
}

/// Returns the stream's report and whether its digest chain holds.
fn stream_report(s: &Stream, chunks: &[ChunkRow], newest: bool, issues: &mut Vec<String>) -> (StreamReport, bool) {
    let max_index = chunks.last().map(|c| c.index);
    let missing: Vec<u32> = match max_index {
        Some(m) => (0..=m).filter(|i| !chunks.iter().any(|c| c.index == *i)).collect(),
        None => vec![],
    };
    let mut chain_ok = true;
    for w in chunks.windows(2) {
        if w[1].index == w[0].index + 1 && w[1].prev_digest != w[0].digest {
            chain_ok = false;
            issues.push(format!("stream {}: fragment {} does not chain to fragment {}", s.id, w[1].index, w[0].index));
        }
    }
    let has_final = chunks.last().is_some_and(|c| c.last);
    let status = if has_final && missing.is_empty() {
        "complete"
    } else if newest && s.ended_at_ms.is_none() {
        "open"
    } else {
        "ended_abruptly"
    };
    if !missing.is_empty() {
        issues.push(format!("stream {}: missing fragments {:?}", s.id, missing));
    }
    if status != "complete" {
        issues.push(format!("stream {}: no final fragment ({status})", s.id));
    }
    (
        StreamReport {
            stream_id: s.id,
            started_at: rfc3339(from_unix_ms(s.opened_at_ms)),
            status,
            fragments_stored: chunks.len(),
            recorded_seconds: media_span_us(chunks) as f64 / 1e6,
            missing_indices: missing,
        },
        chain_ok,
    )
}
