//! The activity strip of an attempt: per second, motion and audio level as the agent
//! measured them before encoding. Ingest took each fragment's activity out of its chunk,
//! bounded by the fragment's duration, and sealed it on its own (`protocol::activity`):
//! the strip reads those few bytes per fragment from the database, page by page, and
//! opens no fragment (but those stored before this, one at a time) nor fetches a blob.
//! Its size is bounded whatever the agent sent.

use super::Review;
use super::ReviewError;
use crate::attempts::AssignedAttempt;
use serde::Serialize;

/// Rows read at once.
const PAGE: u32 = 2_000;
/// The most seconds one strip holds: two days of recording, ~2.6 MB of JSON.
pub const MAX_STRIP_POINTS: usize = 172_800;

#[derive(Debug, Serialize)]
pub struct ActivityStrip {
    /// `[wall-clock ms, motion 0–100, audio 0–100]`, one per recorded second, in order.
    pub points: Vec<[i64; 3]>,
    /// Fragments that carried no activity (an older agent, or one refused at ingest as
    /// longer than its fragment, or unreadable).
    pub fragments_without: u32,
    /// The strip stopped at `MAX_STRIP_POINTS`: what follows is not drawn.
    pub truncated: bool,
}

impl Review {
    /// A fragment stored before ingest took activity out: opened once, one at a time,
    /// its activity held to the fragment's duration like any other.
    async fn stored_before(
        &self,
        a: &AssignedAttempt,
        key: &protocol::StreamKey,
        stream: crate::db::StreamId,
        index: u32,
    ) -> Option<protocol::Activity> {
        let row = self.db.chunk(stream, index).await.ok()?;
        let plaintext = self.open_checked(a, key, &row, None).await.ok()?;
        let json = protocol::decode_payload(&plaintext).ok()?.activity?;
        protocol::parse_activity(json, row.media_start_us, row.media_end_us).ok()
    }

    pub async fn activity(&self, a: &AssignedAttempt) -> Result<ActivityStrip, ReviewError> {
        let (staff, attempt_id) = (a.staff(), a.id);
        let attempt = Self::viewable(a)?;
        let mut points: Vec<[i64; 3]> = Vec::new();
        let (mut without, mut truncated) = (0u32, false);
        'streams: for stream in self.db.streams_of(attempt_id).await? {
            let key = self.keys.stream_key(&attempt, &stream)?;
            let mut after = None;
            loop {
                let page = self.db.activity_of(stream.id, after, PAGE).await?;
                let Some(last) = page.last() else { break };
                after = Some(last.index);
                for row in page {
                    let opened = match row.sealed.as_deref() {
                        Some([]) => None,
                        Some(sealed) => protocol::open_activity(&key, row.index, sealed).ok(),
                        None => self.stored_before(a, &key, stream.id, row.index).await,
                    };
                    let Some(activity) = opened else {
                        without += 1;
                        continue;
                    };
                    // The first value covers the second the fragment starts in.
                    let base = stream.opened_at_ms + (row.media_start_us / 1_000_000) as i64 * 1000;
                    for (k, (m, s)) in activity.motion.iter().zip(&activity.audio).enumerate() {
                        let point = [base + k as i64 * 1000, i64::from(*m), i64::from(*s)];
                        // Neighbouring fragments both report the second they share: keep
                        // the later one.
                        if let Some(prev) = points.last_mut().filter(|p| p[0] == point[0]) {
                            *prev = point;
                        } else if points.len() == MAX_STRIP_POINTS {
                            truncated = true;
                            break 'streams;
                        } else {
                            points.push(point);
                        }
                    }
                }
            }
        }
        self.audit
            .access(
                staff,
                "activity_viewed",
                Some(attempt_id),
                serde_json::json!({ "seconds": points.len() }),
            )
            .await?;
        Ok(ActivityStrip {
            points,
            fragments_without: without,
            truncated,
        })
    }
}
