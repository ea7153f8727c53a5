//! One fragment at a time, for the player: fetched from the blob store, decrypted in
//! memory, checked against the stored chain (the `StreamOpener` checks, one fragment at a
//! time so that a seek costs one fragment, not the stream before it), audited with the
//! media time it covers, then sent. The plaintext is wiped once sent; nothing is written.

use super::Review;
use super::ReviewError;
use crate::attempts::{AssignedAttempt, Purpose};
use crate::db::{Attempt, ChunkRow, DbError, Stream};
use crate::db::{AttemptId, StreamId};
use crate::failure::Failure;
use crate::identity::StaffIdentity;
use crate::lifecycle::AttemptState;
use bytes::Bytes;

impl Review {
    /// The attempt, if its staff member may watch it: a role that views recordings, the
    /// exam over and the recording not destroyed.
    pub(crate) fn viewable(a: &AssignedAttempt) -> Result<&Attempt, ReviewError> {
        Purpose::Watch.check(a.staff().role)?;
        match a.state {
            AttemptState::Destroyed => Err(Failure::Gone.into()),
            // Asynchronous surveillance: nothing is watched before the exam has ended.
            AttemptState::Enrolled | AttemptState::Consented | AttemptState::Recording => {
                Err(ReviewError::ExamInProgress)
            }
            _ => Ok(a.attempt()),
        }
    }

    /// `viewable`, and one of its streams.
    pub(crate) async fn viewable_stream<'a>(
        &self,
        a: &'a AssignedAttempt,
        stream_id: StreamId,
    ) -> Result<(&'a Attempt, Stream), ReviewError> {
        let attempt = Self::viewable(a)?;
        match self.db.stream(stream_id).await {
            Ok(s) if s.attempt_id == a.id => Ok((attempt, s)),
            Ok(_) | Err(DbError::NotFound) => Err(Failure::NotFound("stream").into()),
            Err(e) => Err(e.into()),
        }
    }

    /// Fragment `index` of a stream (0 is the initialisation segment), decrypted: the
    /// media part of its payload, what the player appends.
    pub async fn fragment(
        &self,
        a: &AssignedAttempt,
        stream_id: StreamId,
        index: u32,
    ) -> Result<Bytes, ReviewError> {
        let (staff, attempt_id) = (a.staff(), a.id);
        let (row, plaintext) = self.checked_plaintext(a, stream_id, index).await?;
        let media = part(&plaintext, |p| Some(p.media), index)?;
        self.audit.access(
            staff,
            "recording_viewed",
            Some(attempt_id),
            serde_json::json!({ "stream_id": stream_id, "index": index,
                "media_from_ms": row.media_start_us / 1000, "media_to_ms": row.media_end_us / 1000 }),
        )
        .await?;
        Ok(media)
    }

    /// The fragment's thumbnail (a JPEG the agent made), if it has one.
    pub async fn thumbnail(
        &self,
        a: &AssignedAttempt,
        stream_id: StreamId,
        index: u32,
    ) -> Result<Bytes, ReviewError> {
        let (staff, attempt_id) = (a.staff(), a.id);
        let (row, plaintext) = self.checked_plaintext(a, stream_id, index).await?;
        let jpeg = part(&plaintext, |p| p.thumbnail, index)?;
        if let Err(why) = super::served::check_thumbnail(&jpeg) {
            return Err(self.altered(staff, attempt_id, stream_id, index, why).await);
        }
        self.audit.access(
            staff,
            "thumbnail_viewed",
            Some(attempt_id),
            serde_json::json!({ "stream_id": stream_id, "index": index, "media_from_ms": row.media_start_us / 1000 }),
        )
        .await?;
        Ok(jpeg)
    }

    /// A fragment's whole plaintext, after every check (`open_checked`), for one staff
    /// member who may watch it. Not audited: the caller audits what it sends.
    pub(crate) async fn checked_plaintext(
        &self,
        a: &AssignedAttempt,
        stream_id: StreamId,
        index: u32,
    ) -> Result<(ChunkRow, Bytes), ReviewError> {
        let (attempt, stream) = self.viewable_stream(a, stream_id).await?;
        let row = match self.db.chunk(stream_id, index).await {
            Err(DbError::NotFound) => return Err(Failure::NotFound("fragment").into()),
            other => other?,
        };
        let prev = match index {
            0 => None,
            _ => match self.db.chunk(stream_id, index - 1).await {
                Ok(prev) => Some(prev.digest),
                Err(DbError::NotFound) => None,
                Err(e) => return Err(e.into()),
            },
        };
        let key = self.keys.stream_key(&attempt, &stream)?;
        let plaintext = self.open_checked(a, &key, &row, prev).await?;
        Ok((row, plaintext))
    }

    /// The one way a stored chunk becomes plaintext for staff, whichever reader asks (a
    /// fragment, a thumbnail, the whole-range media): the row links to its predecessor's
    /// digest (`prev`, when that one is stored), the blob authenticates under the
    /// stream's key, and the opened header is the row's. A chunk failing any of these is
    /// audited as altered and nothing of it is returned. The plaintext is wiped once the
    /// response has sent it.
    pub(crate) async fn open_checked(
        &self,
        a: &AssignedAttempt,
        key: &protocol::StreamKey,
        row: &ChunkRow,
        prev: Option<[u8; 32]>,
    ) -> Result<Bytes, ReviewError> {
        let (staff, attempt_id) = (a.staff(), a.id);
        let (stream_id, index) = (row.stream_id, row.index);
        if prev.is_some_and(|p| p != row.prev_digest) {
            return Err(self
                .altered(
                    staff,
                    attempt_id,
                    stream_id,
                    index,
                    "does not chain to its predecessor",
                )
                .await);
        }
        let blob = match self.blobs.read_chunk(attempt_id, row).await {
            Ok(blob) => blob,
            // Acknowledged, then lost from the store: missing, which the player says as such
            // (not altered: nobody changed it, it is not there).
            Err(crate::blobs::BlobError::NotFound) => {
                tracing::error!(attempt = %attempt_id, stream = %stream_id, index, "an acknowledged fragment is missing from the store");
                return Err(Failure::NotFound("fragment").into());
            }
            Err(e) => return Err(e.into()),
        };
        let opened = match protocol::open_chunk(key, attempt_id.into(), stream_id.into(), &blob) {
            Ok(o) if crate::db::matches_row(&o, row) => o,
            Ok(_) => {
                return Err(self
                    .altered(
                        staff,
                        attempt_id,
                        stream_id,
                        index,
                        "differs from the fragment acknowledged",
                    )
                    .await)
            }
            Err(_) => {
                return Err(self
                    .altered(staff, attempt_id, stream_id, index, "fails authentication")
                    .await)
            }
        };
        let plaintext = Bytes::from_owner(zeroize::Zeroizing::new(opened.plaintext));
        // The initialisation segment configures the reviewer's decoders: only what the
        // agents write goes there.
        if index == 0 {
            let media = part(&plaintext, |p| Some(p.media), index)?;
            if let Err(why) = super::served::check_init_segment(&media) {
                return Err(self.altered(staff, attempt_id, stream_id, index, why).await);
            }
        }
        Ok(plaintext)
    }

    /// Records that a reviewer met an altered fragment (never played) and says why.
    async fn altered(
        &self,
        staff: &StaffIdentity,
        attempt: AttemptId,
        stream: StreamId,
        index: u32,
        why: &'static str,
    ) -> ReviewError {
        if let Err(e) = self
            .audit
            .access(
                staff,
                "fragment_altered",
                Some(attempt),
                serde_json::json!({ "stream_id": stream, "index": index, "why": why }),
            )
            .await
        {
            return e.into();
        }
        ReviewError::FragmentAltered { index, why }
    }
}

/// For each stored index, the digest of its stored predecessor (what `open_checked`
/// checks it chains to), from a stream's rows.
pub(super) fn predecessors(rows: &[ChunkRow]) -> std::collections::HashMap<u32, [u8; 32]> {
    rows.iter()
        .filter_map(|r| Some((r.index.checked_add(1)?, r.digest)))
        .collect()
}

/// One part of a fragment's payload, sharing the plaintext's buffer (no copy to wipe).
pub(super) fn part(
    plaintext: &Bytes,
    pick: impl for<'a> Fn(&protocol::Payload<'a>) -> Option<&'a [u8]>,
    index: u32,
) -> Result<Bytes, ReviewError> {
    let payload =
        protocol::decode_payload(plaintext).map_err(|_| ReviewError::FragmentAltered {
            index,
            why: "has a malformed payload",
        })?;
    match pick(&payload) {
        Some(p) => Ok(plaintext.slice_ref(p)),
        None => Err(Failure::NotFound("thumbnail").into()),
    }
}
