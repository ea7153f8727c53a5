//! Destruction receipts: what the server signs when it destroys an attempt's data key, so
//! that anyone holding the server's published public key (the exam platform, the
//! candidate, a data protection officer) can check offline that the recording was
//! destroyed, when, why and under which key, without trusting the server's word.
//!
//! The signature (Ed25519) covers `DOMAIN` ‖ the receipt's JSON as serialised here (field
//! order fixed by the struct). A receipt carries the signer's public key; verification
//! also compares it with the published one when given.

use crate::Error;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

const DOMAIN: &[u8] = b"cloe-connect destruction receipt v1\0";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub version: u8,
    pub attempt_id: uuid::Uuid,
    pub sitting_id: uuid::Uuid,
    /// RFC 3339, UTC.
    pub destroyed_at: String,
    /// Why: `pv_validated`, `dispute_expired`, `ceiling_reached`, `erasure_requested`…
    pub reason: String,
    /// The rule that applied, or the account that asked.
    pub by: String,
    /// SHA-256 of the destroyed data key (hex): names the key, reveals nothing of it.
    pub key_fingerprint: String,
    /// The signing key's id ([`receipt_key_id`]), from version 2 on: which published key
    /// a verifier needs, and what it compares with the one it pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// RFC 3339, from version 2 on: by when every backup taken before the destruction can no
    /// longer be decrypted (the key-encryption key that wrapped the data key is destroyed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups_unreadable_by: Option<String>,
    /// From version 2 on: the [`receipt_hash`] of the receipt the server signed just before
    /// this one (none for the first), so that the log of receipts shows any gap or fork.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

/// Receipts signed now; version 1 (no key id) still verifies against a pinned key.
pub const RECEIPT_VERSION: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedReceipt {
    pub receipt: Receipt,
    /// The signer's Ed25519 public key, base64.
    pub public_key: String,
    /// Base64.
    pub signature: String,
}

fn signed_bytes(r: &Receipt) -> Vec<u8> {
    [
        DOMAIN,
        &serde_json::to_vec(r).expect("a receipt serialises"),
    ]
    .concat()
}

/// Signs the receipt as the current version, naming the signing key's id.
/// The hash that names a signed receipt in the chain: SHA-256 of its JSON as serialised
/// here, hex.
pub fn receipt_hash(r: &SignedReceipt) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(
        serde_json::to_vec(r).expect("a receipt serialises"),
    ))
}

/// What a log of receipts (the server's tombstones) says about its chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// Receipts that chain (version 2 on).
    pub chained: usize,
    /// The receipt no other one follows: the latest.
    pub tips: Vec<String>,
    /// Hashes some receipt names as its previous one that the log does not hold.
    pub gaps: Vec<String>,
    /// Receipts that name the same previous one (two chains from one point).
    pub forks: Vec<String>,
    /// Receipts that start a chain (at most one in a whole log).
    pub starts: usize,
}

impl ChainReport {
    pub fn is_whole(&self) -> bool {
        self.gaps.is_empty() && self.forks.is_empty() && self.starts <= 1 && self.tips.len() <= 1
    }
}

/// Checks that the version-2 receipts of a log form one chain, without gaps or forks.
/// Signatures are checked apart (`verify_receipt_pinned`).
pub fn check_chain(log: &[SignedReceipt]) -> ChainReport {
    use std::collections::{HashMap, HashSet};
    let chained: Vec<&SignedReceipt> = log.iter().filter(|r| r.receipt.version >= 2).collect();
    let hashes: HashSet<String> = chained.iter().map(|r| receipt_hash(r)).collect();
    let mut followers: HashMap<&str, usize> = HashMap::new();
    let (mut gaps, mut starts) = (Vec::new(), 0);
    for r in &chained {
        match r.receipt.previous.as_deref() {
            None => starts += 1,
            Some(p) => {
                *followers.entry(p).or_default() += 1;
                if !hashes.contains(p) {
                    gaps.push(p.to_owned());
                }
            }
        }
    }
    let mut forks: Vec<String> = followers
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(p, _)| (*p).to_owned())
        .collect();
    forks.sort();
    let mut tips: Vec<String> = hashes
        .iter()
        .filter(|h| !followers.contains_key(h.as_str()))
        .cloned()
        .collect();
    tips.sort();
    gaps.sort();
    ChainReport {
        chained: chained.len(),
        tips,
        gaps,
        forks,
        starts,
    }
}

pub fn sign_receipt(key: &SigningKey, mut receipt: Receipt) -> SignedReceipt {
    let public = public_key_text(key);
    receipt.version = RECEIPT_VERSION;
    receipt.key_id = Some(receipt_key_id(&public).expect("a key's own text parses"));
    let signature = key.sign(&signed_bytes(&receipt));
    SignedReceipt {
        public_key: B64.encode(key.verifying_key().as_bytes()),
        signature: B64.encode(signature.to_bytes()),
        receipt,
    }
}

/// The public key as published (base64 of its 32 bytes).
pub fn public_key_text(key: &SigningKey) -> String {
    B64.encode(key.verifying_key().as_bytes())
}

/// A short name for a signing key (base64 of its 32 bytes): the first 8 bytes of SHA-256
/// of the key, hex. What a person compares by eye between a receipt and the published key.
pub fn receipt_key_id(public_key: &str) -> Result<String, Error> {
    use sha2::{Digest, Sha256};
    let key: [u8; 32] = B64
        .decode(public_key.trim())
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or(Error::InvalidReceipt("malformed public key"))?;
    Ok(hex::encode(&Sha256::digest(key)[..8]))
}

/// Checks a receipt against a key the verifier trusts (the published one): the same key,
/// then the signature; returns the key's id. A receipt names its signer, but a forger
/// names theirs too, so the key inside it is never trusted by itself.
pub fn verify_receipt_pinned(r: &SignedReceipt, trusted: &str) -> Result<String, Error> {
    verify_receipt(r, Some(trusted))?;
    let id = receipt_key_id(trusted)?;
    if r.receipt.version >= 2 && r.receipt.key_id.as_deref() != Some(id.as_str()) {
        return Err(Error::InvalidReceipt(
            "the receipt names another signing key id than the trusted key's",
        ));
    }
    Ok(id)
}

/// Checks the signature, and that the signer is `expected` (base64) when given.
pub fn verify_receipt(r: &SignedReceipt, expected: Option<&str>) -> Result<(), Error> {
    if let Some(expected) = expected {
        if expected.trim() != r.public_key {
            return Err(Error::InvalidReceipt(
                "signed by another key than the one published",
            ));
        }
    }
    let key: [u8; 32] = B64
        .decode(&r.public_key)
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or(Error::InvalidReceipt("malformed public key"))?;
    let key = VerifyingKey::from_bytes(&key)
        .map_err(|_| Error::InvalidReceipt("malformed public key"))?;
    let sig: [u8; 64] = B64
        .decode(&r.signature)
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or(Error::InvalidReceipt("malformed signature"))?;
    key.verify(&signed_bytes(&r.receipt), &Signature::from_bytes(&sig))
        .map_err(|_| Error::InvalidReceipt("the signature does not match the receipt"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt() -> Receipt {
        Receipt {
            version: 1,
            attempt_id: uuid::Uuid::from_u128(1),
            sitting_id: uuid::Uuid::from_u128(2),
            destroyed_at: "2027-02-15T09:30:00Z".into(),
            reason: "pv_validated".into(),
            by: "jury:jure".into(),
            key_fingerprint: "ab".repeat(32),
            key_id: None,
            backups_unreadable_by: None,
            previous: None,
        }
    }

    #[test]
    fn a_log_of_chained_receipts_shows_its_gaps_and_forks() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut log = Vec::new();
        let mut previous = None;
        for i in 0..4u128 {
            let mut r = receipt();
            r.attempt_id = uuid::Uuid::from_u128(i);
            r.previous = previous.clone();
            let signed = sign_receipt(&key, r);
            previous = Some(receipt_hash(&signed));
            log.push(signed);
        }
        let whole = check_chain(&log);
        assert!(whole.is_whole(), "{whole:?}");
        assert_eq!((whole.chained, whole.starts, whole.tips.len()), (4, 1, 1));
        assert_eq!(whole.tips[0], receipt_hash(&log[3]));
        // One receipt removed from the log (a restore, a deletion): a gap, two tips.
        let mut holed = log.clone();
        let lost = holed.remove(1);
        let report = check_chain(&holed);
        assert_eq!(report.gaps, vec![receipt_hash(&lost)]);
        assert!(!report.is_whole());
        // Two receipts after the same one: a fork.
        let mut forked = log.clone();
        let mut other = receipt();
        other.attempt_id = uuid::Uuid::from_u128(9);
        other.previous = Some(receipt_hash(&log[1]));
        forked.push(sign_receipt(&key, other));
        assert_eq!(check_chain(&forked).forks, vec![receipt_hash(&log[1])]);
    }

    #[test]
    fn a_receipt_names_its_key_and_the_pinned_check_compares_it() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = public_key_text(&key);
        let signed = sign_receipt(&key, receipt());
        assert_eq!(signed.receipt.version, RECEIPT_VERSION);
        let id = receipt_key_id(&public).unwrap();
        assert_eq!(signed.receipt.key_id.as_deref(), Some(id.as_str()));
        assert_eq!(verify_receipt_pinned(&signed, &public).unwrap(), id);
        // The id is signed: changing it breaks the signature, dropping it is refused.
        let mut renamed = signed.clone();
        renamed.receipt.key_id = Some("0".repeat(16));
        assert!(verify_receipt_pinned(&renamed, &public).is_err());
        let mut unnamed = signed.clone();
        unnamed.receipt.key_id = None;
        assert!(verify_receipt_pinned(&unnamed, &public).is_err());
        // A version 1 receipt (no id), as stored before, still verifies.
        let v1 = SignedReceipt {
            signature: B64.encode(key.sign(&signed_bytes(&receipt())).to_bytes()),
            public_key: public.clone(),
            receipt: receipt(),
        };
        assert_eq!(verify_receipt_pinned(&v1, &public).unwrap(), id);
        assert!(!serde_json::to_string(&v1).unwrap().contains("key_id"));
    }

    #[test]
    fn a_receipt_verifies_and_any_change_breaks_it() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let signed = sign_receipt(&key, receipt());
        verify_receipt(&signed, None).unwrap();
        verify_receipt(&signed, Some(&public_key_text(&key))).unwrap();
        // Through its JSON form, as a candidate would hold it.
        let text = serde_json::to_string(&signed).unwrap();
        verify_receipt(&serde_json::from_str(&text).unwrap(), None).unwrap();

        let mut later = signed.clone();
        later.receipt.destroyed_at = "2027-04-15T09:30:00Z".into();
        assert!(verify_receipt(&later, None).is_err(), "the date is signed");
        let mut other = signed.clone();
        other.receipt.attempt_id = uuid::Uuid::from_u128(3);
        assert!(
            verify_receipt(&other, None).is_err(),
            "the attempt is signed"
        );
        let impostor = SigningKey::from_bytes(&[8; 32]);
        let forged = sign_receipt(&impostor, receipt());
        verify_receipt(&forged, None).unwrap();
        assert!(
            verify_receipt(&forged, Some(&public_key_text(&key))).is_err(),
            "another key is not the published one"
        );
        let mut garbled = signed;
        garbled.signature = "AAAA".into();
        assert!(verify_receipt(&garbled, None).is_err());
    }
}
