//! Rows as each backend's compile-time checked queries give them (`query_as!`), and their
//! parsing into the domain's types, written once for both backends. The backends differ
//! only in column types, which are the type parameters: `Id` is a native `Uuid` on
//! PostgreSQL and the text of one on SQLite; `Int` is PostgreSQL's `INTEGER` (i32) where
//! SQLite has only i64.

use crate::*;
use uuid::Uuid;

/// A stored value the domain cannot take: a schema violation or a corrupt row, never
/// the caller's fault. Each backend's driver errors are its own; this one is shared.
#[derive(Debug, thiserror::Error)]
#[error("column {column}: {reason}")]
pub struct DecodeError {
    column: String,
    reason: String,
}

impl DecodeError {
    pub fn new(column: &str, reason: String) -> Self {
        decode_err(column, reason)
    }
}

impl From<DecodeError> for DbError {
    fn from(e: DecodeError) -> Self {
        DbError::Backend(e.to_string())
    }
}

/// A UUID column, native or text.
pub trait IdColumn: Sized {
    fn into_uuid(self, col: &str) -> Result<Uuid, DecodeError>;

    /// The column as the id type the caller expects (`AttemptId`, `StreamId`, …).
    fn into_id<T: From<Uuid>>(self, col: &str) -> Result<T, DecodeError> {
        self.into_uuid(col).map(T::from)
    }
}

impl IdColumn for Uuid {
    fn into_uuid(self, _: &str) -> Result<Uuid, DecodeError> {
        Ok(self)
    }
}

impl IdColumn for String {
    fn into_uuid(self, col: &str) -> Result<Uuid, DecodeError> {
        Uuid::parse_str(&self).map_err(|e| decode_err(col, e.to_string()))
    }
}

pub fn arr32(col: &str, v: Vec<u8>) -> Result<[u8; 32], DecodeError> {
    v.try_into()
        .map_err(|_| decode_err(col, "expected 32 bytes".into()))
}

fn decode_err(col: &str, reason: String) -> DecodeError {
    DecodeError {
        column: col.into(),
        reason,
    }
}

pub fn parse<R, T: TryFrom<R, Error = DecodeError>>(r: R) -> DbResult<T> {
    Ok(T::try_from(r)?)
}

pub fn parse_all<R, T: TryFrom<R, Error = DecodeError>>(rows: Vec<R>) -> DbResult<Vec<T>> {
    rows.into_iter().map(parse).collect()
}

pub struct AttemptRec<Id, Int> {
    pub id: Id,
    pub sitting_id: Id,
    pub reference: String,
    pub ref_sealed: Option<Vec<u8>>,
    pub ref_is_pseudonym: bool,
    pub kek_epoch: String,
    pub wrapped_dek: Vec<u8>,
    pub consent_notice: Option<String>,
    pub consent_at: Option<i64>,
    pub created_at: i64,
    pub state: String,
    pub ended_at: Option<i64>,
    pub token_generation: Int,
    pub bytes_stored: i64,
}

impl<Id: IdColumn, Int: Into<i64>> TryFrom<AttemptRec<Id, Int>> for Attempt {
    type Error = DecodeError;
    fn try_from(r: AttemptRec<Id, Int>) -> Result<Self, DecodeError> {
        Ok(Attempt {
            id: r.id.into_id("id")?,
            sitting_id: r.sitting_id.into_id("sitting_id")?,
            reference: StoredReference::from_columns(r.reference, r.ref_sealed, r.ref_is_pseudonym),
            kek_epoch: r.kek_epoch,
            wrapped_dek: r.wrapped_dek,
            consent_notice: r.consent_notice,
            consent_at_ms: r.consent_at,
            created_at_ms: r.created_at,
            state: r.state.parse().map_err(|e| decode_err("state", e))?,
            ended_at_ms: r.ended_at,
            token_generation: r.token_generation.into() as u32,
            bytes_stored: r.bytes_stored as u64,
        })
    }
}

pub struct TokenRec<Id, Int> {
    pub attempt_id: Id,
    pub generation: Int,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

impl<Id: IdColumn, Int: Into<i64>> TryFrom<TokenRec<Id, Int>> for LaunchToken {
    type Error = DecodeError;
    fn try_from(r: TokenRec<Id, Int>) -> Result<Self, DecodeError> {
        Ok(LaunchToken {
            attempt_id: r.attempt_id.into_id("attempt_id")?,
            generation: r.generation.into() as u32,
            expires_at_ms: r.expires_at,
            revoked_at_ms: r.revoked_at,
        })
    }
}

/// The `salt` and `opening` columns of a stream: one of them says where its key comes from.
pub fn keying_columns(k: &StreamKeying) -> (&[u8], Option<&[u8]>) {
    match k {
        StreamKeying::Derived { salt } => (salt.as_slice(), None),
        StreamKeying::Opening(o) => (&[], Some(o.as_slice())),
    }
}

/// (transport column, count) rows into the domain's words; an unknown transport is a
/// schema violation (the column has a CHECK).
pub fn transport_counts(
    rows: impl Iterator<Item = (String, i64)>,
) -> DbResult<Vec<(Transport, u64)>> {
    rows.map(|(t, n)| {
        Transport::parse(&t)
            .map(|t| (t, n as u64))
            .ok_or_else(|| DbError::Backend(format!("unknown transport {t:?}")))
    })
    .collect()
}

pub struct StreamRec<Id> {
    pub id: Id,
    pub attempt_id: Id,
    pub salt: Vec<u8>,
    pub opening: Option<Vec<u8>>,
    pub opened_at: i64,
    pub ended_at: Option<i64>,
    pub final_index: Option<i64>,
}

impl<Id: IdColumn> TryFrom<StreamRec<Id>> for Stream {
    type Error = DecodeError;
    fn try_from(r: StreamRec<Id>) -> Result<Self, DecodeError> {
        Ok(Stream {
            id: r.id.into_id("id")?,
            attempt_id: r.attempt_id.into_id("attempt_id")?,
            keying: match r.opening {
                Some(opening) => StreamKeying::Opening(opening),
                None => StreamKeying::Derived {
                    salt: arr32("salt", r.salt)?,
                },
            },
            opened_at_ms: r.opened_at,
            ended_at_ms: r.ended_at,
            final_index: r.final_index.map(|i| i as u32),
        })
    }
}

/// A stream and the chunk at one index through a `LEFT JOIN` (`MediaStore::stream_at`):
/// the chunk's columns are all absent when no chunk holds the index.
pub struct StreamAtRec<Id> {
    pub id: Id,
    pub attempt_id: Id,
    pub salt: Vec<u8>,
    pub opening: Option<Vec<u8>>,
    pub opened_at: i64,
    pub ended_at: Option<i64>,
    pub final_index: Option<i64>,
    pub idx: Option<i64>,
    pub digest: Option<Vec<u8>>,
    pub prev_digest: Option<Vec<u8>>,
    pub size: Option<i64>,
    pub media_start_us: Option<i64>,
    pub media_end_us: Option<i64>,
    pub last: Option<bool>,
    pub content_sha256: Option<Vec<u8>>,
    pub pack_tag: Option<i64>,
    pub pack_first: Option<i64>,
    pub pack_offset: Option<i64>,
}

impl<Id: IdColumn + Clone> TryFrom<StreamAtRec<Id>> for (Stream, Option<ChunkRow>) {
    type Error = DecodeError;
    fn try_from(r: StreamAtRec<Id>) -> Result<Self, DecodeError> {
        // The chunk's columns are NOT NULL: present together when a chunk matched.
        fn joined<T>(col: &str, v: Option<T>) -> Result<T, DecodeError> {
            v.ok_or_else(|| decode_err(col, "absent beside the chunk's index".into()))
        }
        let chunk = match r.idx {
            None => None,
            Some(idx) => Some(ChunkRow::try_from(ChunkRec {
                stream_id: r.id.clone(),
                idx,
                digest: joined("digest", r.digest)?,
                prev_digest: joined("prev_digest", r.prev_digest)?,
                size: joined("size", r.size)?,
                media_start_us: joined("media_start_us", r.media_start_us)?,
                media_end_us: joined("media_end_us", r.media_end_us)?,
                last: joined("last", r.last)?,
                content_sha256: joined("content_sha256", r.content_sha256)?,
                pack_tag: r.pack_tag,
                pack_first: r.pack_first,
                pack_offset: r.pack_offset,
            })?),
        };
        let stream = Stream::try_from(StreamRec {
            id: r.id,
            attempt_id: r.attempt_id,
            salt: r.salt,
            opening: r.opening,
            opened_at: r.opened_at,
            ended_at: r.ended_at,
            final_index: r.final_index,
        })?;
        Ok((stream, chunk))
    }
}

pub struct ChunkRec<Id> {
    pub stream_id: Id,
    pub idx: i64,
    pub digest: Vec<u8>,
    pub prev_digest: Vec<u8>,
    pub size: i64,
    pub media_start_us: i64,
    pub media_end_us: i64,
    pub last: bool,
    pub content_sha256: Vec<u8>,
    pub pack_tag: Option<i64>,
    pub pack_first: Option<i64>,
    pub pack_offset: Option<i64>,
}

impl<Id: IdColumn> TryFrom<ChunkRec<Id>> for ChunkRow {
    type Error = DecodeError;
    fn try_from(r: ChunkRec<Id>) -> Result<Self, DecodeError> {
        Ok(ChunkRow {
            stream_id: r.stream_id.into_id("stream_id")?,
            index: r.idx as u32,
            digest: arr32("digest", r.digest)?,
            content_sha256: arr32("content_sha256", r.content_sha256)?,
            prev_digest: arr32("prev_digest", r.prev_digest)?,
            size: r.size as u64,
            media_start_us: r.media_start_us as u64,
            media_end_us: r.media_end_us as u64,
            last: r.last,
            pack: match (r.pack_tag, r.pack_first, r.pack_offset) {
                (Some(tag), Some(first), Some(offset)) => {
                    Some(crate::PackPlace::from_columns([tag, first, offset]))
                }
                _ => None,
            },
        })
    }
}

pub struct StaffRec<Id, Bool> {
    pub id: Id,
    pub login: String,
    pub role: String,
    pub password_hash: String,
    pub disabled_at: Option<i64>,
    pub must_change_password: Bool,
    pub password_changed_at: i64,
    pub totp_secret: Option<Vec<u8>>,
}

impl<Id: IdColumn, Bool: Into<i64>> TryFrom<StaffRec<Id, Bool>> for StaffAccount {
    type Error = DecodeError;
    fn try_from(r: StaffRec<Id, Bool>) -> Result<Self, DecodeError> {
        Ok(StaffAccount {
            id: r.id.into_id("id")?,
            login: r.login,
            role: Role::parse(&r.role).map_err(|e| decode_err("role", e))?,
            password_hash: r.password_hash,
            disabled_at_ms: r.disabled_at,
            must_change_password: r.must_change_password.into() != 0,
            password_changed_at_ms: r.password_changed_at,
            totp_secret: r.totp_secret,
        })
    }
}

pub struct AuditRec<Id> {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub attempt_id: Option<Id>,
    pub detail: String,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

impl<Id: IdColumn> TryFrom<AuditRec<Id>> for AuditEntry {
    type Error = DecodeError;
    fn try_from(r: AuditRec<Id>) -> Result<Self, DecodeError> {
        Ok(AuditEntry {
            seq: r.seq,
            at_ms: r.at,
            actor: r.actor,
            action: r.action,
            attempt_id: r.attempt_id.map(|a| a.into_id("attempt_id")).transpose()?,
            detail: r.detail,
            prev_hash: arr32("prev_hash", r.prev_hash)?,
            hash: arr32("hash", r.hash)?,
        })
    }
}

pub struct AccountEventRec<Id> {
    pub id: Id,
    pub staff_id: Id,
    pub action: String,
    pub requested_by: String,
    pub requested_at: i64,
    pub approved_by: Option<String>,
    pub done_at: Option<i64>,
}

impl<Id: IdColumn> TryFrom<AccountEventRec<Id>> for AccountEvent {
    type Error = DecodeError;
    fn try_from(r: AccountEventRec<Id>) -> Result<Self, DecodeError> {
        Ok(AccountEvent {
            id: r.id.into_uuid("id")?,
            staff_id: r.staff_id.into_id("staff_id")?,
            action: r.action,
            requested_by: r.requested_by,
            requested_at_ms: r.requested_at,
            approved_by: r.approved_by,
            done_at_ms: r.done_at,
        })
    }
}

pub struct ReviewRec<Id, Int> {
    pub id: Id,
    pub attempt_id: Id,
    pub round: Int,
    pub reviewer_id: Id,
    pub started_at: i64,
    pub submitted_at: Option<i64>,
    pub outcome: Option<String>,
}

impl<Id: IdColumn, Int: Into<i64>> TryFrom<ReviewRec<Id, Int>> for Review {
    type Error = DecodeError;
    fn try_from(r: ReviewRec<Id, Int>) -> Result<Self, DecodeError> {
        Ok(Review {
            id: r.id.into_id("id")?,
            attempt_id: r.attempt_id.into_id("attempt_id")?,
            round: u32::try_from(r.round.into()).map_err(|e| decode_err("round", e.to_string()))?,
            reviewer_id: r.reviewer_id.into_id("reviewer_id")?,
            started_at_ms: r.started_at,
            submitted_at_ms: r.submitted_at,
            outcome: r
                .outcome
                .map(|o| ReviewOutcome::parse(&o))
                .transpose()
                .map_err(|e| decode_err("outcome", e))?,
        })
    }
}

pub struct FlagRec<Id> {
    pub id: Id,
    pub review_id: Id,
    pub attempt_id: Id,
    pub start_at: i64,
    pub end_at: i64,
    pub category: String,
    pub severity: String,
    pub note: String,
    pub updated_at: i64,
}

impl<Id: IdColumn> TryFrom<FlagRec<Id>> for Flag {
    type Error = DecodeError;
    fn try_from(r: FlagRec<Id>) -> Result<Self, DecodeError> {
        Ok(Flag {
            id: r.id.into_id("id")?,
            review_id: r.review_id.into_id("review_id")?,
            attempt_id: r.attempt_id.into_id("attempt_id")?,
            start_ms: r.start_at,
            end_ms: r.end_at,
            category: FlagCategory::parse(&r.category).map_err(|e| decode_err("category", e))?,
            severity: Severity::parse(&r.severity).map_err(|e| decode_err("severity", e))?,
            note: r.note,
            updated_at_ms: r.updated_at,
        })
    }
}

pub struct RetentionRec<Id, Bool> {
    pub attempt_id: Id,
    pub sitting_id: Id,
    pub reference: String,
    pub ref_sealed: Option<Vec<u8>>,
    pub ref_is_pseudonym: bool,
    pub wrapped_dek: Vec<u8>,
    pub state: String,
    pub created_at: i64,
    pub last_active_at: i64,
    pub ended_at: Option<i64>,
    pub pv_outcome: Option<String>,
    pub pv_decided_at: Option<i64>,
    pub contested: Bool,
    pub erasure_requested_at: Option<i64>,
    pub hold_reason: Option<String>,
    pub hold_lifted_at: Option<i64>,
    pub due_at: Option<i64>,
    pub destroyed_at: Option<i64>,
    pub receipt: Option<String>,
    pub blobs_purged_at: Option<i64>,
    pub kek_epoch: String,
    pub dek_fingerprint: String,
    pub exports: i64,
}

impl<Id: IdColumn, Bool: Into<i64>> TryFrom<RetentionRec<Id, Bool>> for RetentionFacts {
    type Error = DecodeError;
    fn try_from(r: RetentionRec<Id, Bool>) -> Result<Self, DecodeError> {
        let pv = match (r.pv_outcome, r.pv_decided_at) {
            (Some(o), Some(at)) => Some((
                PvOutcome::parse(&o).map_err(|e| decode_err("pv_outcome", e))?,
                at,
            )),
            _ => None,
        };
        Ok(RetentionFacts {
            attempt_id: r.attempt_id.into_id("attempt_id")?,
            sitting_id: r.sitting_id.into_id("sitting_id")?,
            reference: StoredReference::from_columns(r.reference, r.ref_sealed, r.ref_is_pseudonym),
            wrapped_dek: r.wrapped_dek,
            state: r.state.parse().map_err(|e| decode_err("state", e))?,
            created_at_ms: r.created_at,
            last_active_at_ms: r.last_active_at,
            ended_at_ms: r.ended_at,
            pv,
            contested: r.contested.into() != 0,
            erasure_requested_at_ms: r.erasure_requested_at,
            hold_reason: r.hold_reason,
            hold_lifted_at_ms: r.hold_lifted_at,
            due_at_ms: r.due_at,
            destroyed_at_ms: r.destroyed_at,
            receipt: r.receipt,
            blobs_purged: r.blobs_purged_at.is_some(),
            kek_epoch: r.kek_epoch,
            dek_fingerprint: r.dek_fingerprint,
            exports: u32::try_from(r.exports).unwrap_or(u32::MAX),
        })
    }
}

pub struct PvRec<Id, Bool> {
    pub sitting_id: Id,
    pub outcome: String,
    pub decided_at: i64,
    pub decided_by: String,
    pub override_unsubmitted: Bool,
}

impl<Id: IdColumn, Bool: Into<i64>> TryFrom<PvRec<Id, Bool>> for PvDecision {
    type Error = DecodeError;
    fn try_from(r: PvRec<Id, Bool>) -> Result<Self, DecodeError> {
        Ok(PvDecision {
            sitting_id: r.sitting_id.into_id("sitting_id")?,
            outcome: PvOutcome::parse(&r.outcome).map_err(|e| decode_err("outcome", e))?,
            decided_at_ms: r.decided_at,
            decided_by: r.decided_by,
            override_unsubmitted: r.override_unsubmitted.into() != 0,
        })
    }
}
