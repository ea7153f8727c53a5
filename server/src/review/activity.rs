//! The activity strip of an attempt: per second, motion and audio level as the agent
//! measured them before encoding and sealed with each fragment. Reading it opens every
//! fragment of the attempt in memory (2.3 CPU-s per recorded hour, `docs/benchmarks.md`);
//! nothing decoded, nothing kept.

use super::Review;
use super::ReviewError;
use crate::attempts::AssignedAttempt;
use futures::StreamExt;
use serde::Serialize;

/// Fragments opened at once while building the strip.
const PARALLEL_OPENS: usize = 8;

#[derive(Debug, Serialize)]
pub struct ActivityStrip {
    /// `[wall-clock ms, motion 0–100, audio 0–100]`, one per recorded second, in order.
    pub points: Vec<[i64; 3]>,
    /// Fragments that carried no activity (recorded by an older agent, or unreadable).
    pub fragments_without: u32,
}

impl Review {
    pub async fn activity(&self, a: &AssignedAttempt) -> Result<ActivityStrip, ReviewError> {
        let (staff, attempt_id) = (a.staff(), a.id);
        let attempt = Self::viewable(a)?;
        let mut points = Vec::new();
        let mut without = 0u32;
        for stream in self.db.streams_of(attempt_id).await? {
            let key = self.keys.stream_key(&attempt, &stream)?;
            let all = self.db.chunks_of(stream.id).await?;
            let prevs = super::playback::predecessors(&all);
            let rows: Vec<_> = all.into_iter().filter(|r| r.index > 0 && !r.last).collect();
            let opened: Vec<_> = futures::stream::iter(rows)
                .map(|row| {
                    let (key, prev) = (key.clone(), prevs.get(&row.index).copied());
                    async move {
                        // The player's checks, and an altered fragment audited as such.
                        let plaintext = self.open_checked(a, &key, &row, prev).await.ok()?;
                        let activity = protocol::decode_payload(&plaintext).ok()?.activity?;
                        let activity: protocol::Activity = serde_json::from_slice(activity).ok()?;
                        Some((row.media_start_us / 1000, activity))
                    }
                })
                .buffered(PARALLEL_OPENS)
                .collect()
                .await;
            for item in opened {
                let Some((start_ms, a)) = item else {
                    without += 1;
                    continue;
                };
                // The first value covers the second the fragment starts in.
                let base = stream.opened_at_ms + (start_ms as i64 / 1000) * 1000;
                for (k, (m, s)) in a.motion.iter().zip(&a.audio).enumerate() {
                    points.push([base + k as i64 * 1000, i64::from(*m), i64::from(*s)]);
                }
            }
        }
        // Neighbouring fragments both report the second they share: keep the later one.
        points.dedup_by(|later, earlier| {
            let same = later[0] == earlier[0];
            if same {
                *earlier = *later;
            }
            same
        });
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
        })
    }
}
