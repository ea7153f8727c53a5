//! Audit retention: entries older than `[retention] audit_retention` leave the database in
//! whole segments, each with a statement the server signs (`protocol::SignedSegment`); the
//! first kept entry chains onto the last retired one's hash, so `audit verify` still
//! proves that nothing was touched between the oldest kept entry and the newest, and that
//! what is gone left by retention, in order, under the server's key.

use super::{Audit, AuditBroken};
use crate::clock::{from_unix_ms, rfc3339, unix_ms};
use crate::db::{AuditEvent, RetiredSegment};
use crate::failure::Failure;
use protocol::{sign_segment, verify_segment, AuditSegment, SignedSegment};
use time::OffsetDateTime;

/// Where the kept trail starts: after entry `up_to_seq`, chaining onto `last_hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub up_to_seq: i64,
    pub last_hash: [u8; 32],
}

impl Anchor {
    /// Nothing retired: the chain starts at entry 1 on a zero hash.
    pub const START: Anchor = Anchor {
        up_to_seq: 0,
        last_hash: [0; 32],
    };
}

/// Checks the retired segments against the trusted signing key (base64): each signed,
/// saying what its row says, one after the other from entry 1. Returns where the kept
/// trail must start.
pub fn check_segments(segments: &[RetiredSegment], trusted: &str) -> Result<Anchor, AuditBroken> {
    let mut anchor = Anchor::START;
    for s in segments {
        let bad = |why: &str| AuditBroken::Segment(s.up_to_seq, why.to_owned());
        let signed: SignedSegment =
            serde_json::from_str(&s.signed).map_err(|_| bad("its statement is malformed"))?;
        verify_segment(&signed, trusted).map_err(|e| bad(&e.to_string()))?;
        let said = &signed.segment;
        if (said.from_seq, said.up_to_seq, said.last_hash.as_str())
            != (s.from_seq, s.up_to_seq, hex::encode(s.last_hash).as_str())
        {
            return Err(bad("its row differs from what was signed"));
        }
        if s.from_seq != anchor.up_to_seq + 1 || s.up_to_seq < s.from_seq {
            return Err(bad("it does not follow the segment before it"));
        }
        anchor = Anchor {
            up_to_seq: s.up_to_seq,
            last_hash: s.last_hash,
        };
    }
    Ok(anchor)
}

impl Audit {
    /// Retires every entry dated before `cutoff` not retired yet, as one segment signed with
    /// `key`, and records that it did. Returns the segment's range, if any.
    pub async fn retire_before(
        &self,
        actor: &str,
        key: &protocol::ReceiptSigningKey,
        cutoff: OffsetDateTime,
    ) -> Result<Option<(i64, i64)>, Failure> {
        let from = match self.db.audit_segments().await?.last() {
            Some(s) => s.up_to_seq + 1,
            None => 1,
        };
        let Some(last) = self.db.last_audit_before(unix_ms(cutoff)).await? else {
            return Ok(None);
        };
        if last.seq < from {
            return Ok(None);
        }
        let now = self.clock.now_ms();
        let signed = sign_segment(
            key,
            AuditSegment {
                from_seq: from,
                up_to_seq: last.seq,
                last_hash: hex::encode(last.hash),
                last_at: rfc3339(from_unix_ms(last.at_ms)),
                retired_at: rfc3339(from_unix_ms(now)),
                key_id: String::new(),
            },
        );
        let segment = RetiredSegment {
            from_seq: from,
            up_to_seq: last.seq,
            last_hash: last.hash,
            signed: serde_json::to_string(&signed).map_err(anyhow::Error::from)?,
        };
        let event = AuditEvent {
            at_ms: now,
            actor: actor.into(),
            action: "audit_segment_retired".into(),
            attempt_id: None,
            detail: serde_json::json!({ "from_seq": from, "up_to_seq": last.seq }),
        };
        let entry = self.db.retire_audit(segment, event).await?;
        self.checkpoint(&entry).await?;
        Ok(Some((from, last.seq)))
    }

    /// Where the kept trail starts, the segments checked against `trusted`.
    pub async fn anchor(&self, trusted: &str) -> Result<Result<Anchor, AuditBroken>, Failure> {
        Ok(check_segments(&self.db.audit_segments().await?, trusted))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::trail;
    use super::super::verify_from;
    use super::*;
    use crate::db::AuditEntry;

    fn segment(key: &protocol::ReceiptSigningKey, from: i64, e: &AuditEntry) -> RetiredSegment {
        let signed = sign_segment(
            key,
            AuditSegment {
                from_seq: from,
                up_to_seq: e.seq,
                last_hash: hex::encode(e.hash),
                last_at: "2026-01-01T00:00:00Z".into(),
                retired_at: "2027-01-01T00:00:00Z".into(),
                key_id: String::new(),
            },
        );
        RetiredSegment {
            from_seq: from,
            up_to_seq: e.seq,
            last_hash: e.hash,
            signed: serde_json::to_string(&signed).unwrap(),
        }
    }

    /// Entries 1–4 retired in two segments, 5–10 kept: the rest verifies from the anchor;
    /// a forged, reordered or gapped segment, a kept entry removed or a checkpoint that
    /// disagrees with the segment is named.
    #[test]
    fn retired_segments_anchor_the_kept_trail() {
        let key = protocol::ReceiptSigningKey::from_bytes(&[3; 32]);
        let trusted = protocol::public_key_text(&key);
        let all = trail(10);
        let checkpoints: Vec<(i64, [u8; 32])> = all.iter().map(|e| (e.seq, e.hash)).collect();
        let segments = vec![segment(&key, 1, &all[1]), segment(&key, 3, &all[3])];
        let anchor = check_segments(&segments, &trusted).unwrap();
        assert_eq!(anchor.up_to_seq, 4);
        let kept = &all[4..];
        verify_from(kept, &checkpoints, &anchor).unwrap();
        // Without the segments, the kept trail does not chain from the start.
        assert_eq!(
            verify_from(kept, &checkpoints, &Anchor::START)
                .unwrap_err()
                .seq(),
            Some(1)
        );
        // A kept entry removed (the oldest): named, though no segment covers it.
        assert_eq!(
            verify_from(&kept[1..], &checkpoints, &anchor)
                .unwrap_err()
                .seq(),
            Some(5)
        );
        // A segment signed by another key, or one that skips entries, or one out of order.
        let forger = protocol::ReceiptSigningKey::from_bytes(&[4; 32]);
        let forged = vec![segment(&key, 1, &all[1]), segment(&forger, 3, &all[3])];
        assert_eq!(
            check_segments(&forged, &trusted).unwrap_err().seq(),
            Some(4)
        );
        let gap = vec![segment(&key, 1, &all[1]), segment(&key, 4, &all[3])];
        assert_eq!(check_segments(&gap, &trusted).unwrap_err().seq(), Some(4));
        let mut edited = segments.clone();
        edited[1].up_to_seq = 5;
        assert!(check_segments(&edited, &trusted).is_err());
        // A segment whose last hash is not the one checkpointed outside the database.
        let mut other = checkpoints.clone();
        other[3].1 = [9; 32];
        assert_eq!(
            verify_from(kept, &other, &anchor).unwrap_err().seq(),
            Some(4)
        );
    }
}
