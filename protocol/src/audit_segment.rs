//! A retired segment of the audit trail: the entries from `from_seq` to `up_to_seq` left
//! the database at the end of their retention, and the server signed what they were (the
//! last one's chained hash) with its receipt key. The entries after it chain onto that
//! hash, so a verifier still proves that nothing between the first kept entry and the
//! newest was touched, and that what was removed was removed by retention, in one piece.
//!
//! The signature (Ed25519) covers `DOMAIN` ‖ the segment's JSON as serialised here.

use crate::Error;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

const DOMAIN: &[u8] = b"cloe-connect audit segment v1\0";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSegment {
    /// The first and the last retired entry (inclusive).
    pub from_seq: i64,
    pub up_to_seq: i64,
    /// The last retired entry's chained hash, hex: the next kept entry's `prev_hash`.
    pub last_hash: String,
    /// RFC 3339, UTC: the last retired entry's time, and when the segment was retired.
    pub last_at: String,
    pub retired_at: String,
    /// The signing key's id (as a receipt's).
    pub key_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedSegment {
    pub segment: AuditSegment,
    /// Base64.
    pub signature: String,
}

fn signed_bytes(s: &AuditSegment) -> Vec<u8> {
    [
        DOMAIN,
        &serde_json::to_vec(s).expect("a segment serialises"),
    ]
    .concat()
}

pub fn sign_segment(key: &SigningKey, mut segment: AuditSegment) -> SignedSegment {
    segment.key_id = crate::receipt_key_id(&crate::public_key_text(key)).expect("own key");
    SignedSegment {
        signature: B64.encode(key.sign(&signed_bytes(&segment)).to_bytes()),
        segment,
    }
}

/// Checks the segment's signature against the key the verifier trusts (base64).
pub fn verify_segment(s: &SignedSegment, trusted: &str) -> Result<(), Error> {
    let bad = Error::InvalidReceipt;
    let key: [u8; 32] = B64
        .decode(trusted.trim())
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or(bad("malformed public key"))?;
    let key = VerifyingKey::from_bytes(&key).map_err(|_| bad("malformed public key"))?;
    if crate::receipt_key_id(trusted)? != s.segment.key_id {
        return Err(bad(
            "the segment names another signing key id than the trusted key's",
        ));
    }
    let sig: [u8; 64] = B64
        .decode(&s.signature)
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or(bad("malformed signature"))?;
    key.verify(&signed_bytes(&s.segment), &Signature::from_bytes(&sig))
        .map_err(|_| bad("the audit segment's signature does not verify"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_verifies_against_its_key_only_and_unchanged() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let s = sign_segment(
            &key,
            AuditSegment {
                from_seq: 1,
                up_to_seq: 40,
                last_hash: "ab".repeat(32),
                last_at: "2026-01-01T00:00:00Z".into(),
                retired_at: "2027-01-02T00:05:00Z".into(),
                key_id: String::new(),
            },
        );
        verify_segment(&s, &crate::public_key_text(&key)).unwrap();
        assert!(verify_segment(&s, &crate::public_key_text(&other)).is_err());
        let mut moved = s.clone();
        moved.segment.up_to_seq = 41;
        assert!(verify_segment(&moved, &crate::public_key_text(&key)).is_err());
    }
}
