//! The platform's reference of a candidate at rest: a keyed pseudonym (unique in its
//! sitting: look-ups and destruction use it) and the reference sealed under the attempt's
//! data key, so that once the key is destroyed nothing left names the person.

use super::{open_reference, seal_reference, KeyError, KeyStore};
use crate::db::{AttemptId, SittingId, StoredReference};
use protocol::AttemptKey;

impl KeyStore {
    /// The pseudonym a reference has in its sitting (a different one in another sitting,
    /// so that a person's attempts cannot be linked across sittings by it).
    pub fn reference_pseudonym(
        &self,
        sitting: SittingId,
        reference: &str,
    ) -> Result<String, KeyError> {
        Ok(format!(
            "p:{}",
            self.pseudonym("reference", &format!("{sitting}/{reference}"))?
        ))
    }

    /// How a new attempt's reference is stored.
    pub fn store_reference(
        &self,
        dek: &AttemptKey,
        attempt: AttemptId,
        sitting: SittingId,
        reference: &str,
    ) -> Result<StoredReference, KeyError> {
        Ok(StoredReference::Pseudonymous {
            pseudonym: self.reference_pseudonym(sitting, reference)?,
            sealed: Some(seal_reference(dek, &attempt, reference)?),
        })
    }

    /// What a reference reads as: the reference while the attempt's data key lives, its
    /// pseudonym once the key is destroyed (or if it cannot be unwrapped).
    pub fn shown_reference(
        &self,
        attempt: AttemptId,
        kek_epoch: &str,
        wrapped_dek: &[u8],
        r: &StoredReference,
    ) -> String {
        match r {
            StoredReference::Clear(clear) => clear.clone(),
            StoredReference::Pseudonymous { pseudonym, sealed } => sealed
                .as_deref()
                .and_then(|sealed| {
                    let dek = self.data_key(attempt, kek_epoch, wrapped_dek).ok()?;
                    open_reference(&dek, &attempt, sealed).ok()
                })
                .unwrap_or_else(|| pseudonym.clone()),
        }
    }

    /// An attempt's reference as it reads.
    pub fn reference_of(&self, a: &crate::db::Attempt) -> String {
        self.shown_reference(a.id, &a.kek_epoch, &a.wrapped_dek, &a.reference)
    }

    /// The reference of the attempt the facts are about, as it reads.
    pub fn reference_in(&self, f: &crate::db::RetentionFacts) -> String {
        self.shown_reference(f.attempt_id, &f.kek_epoch, &f.wrapped_dek, &f.reference)
    }

    /// The pseudonym the attempt's reference has, whatever form it is stored in (what
    /// destruction leaves).
    pub fn pseudonym_of(
        &self,
        sitting: SittingId,
        r: &StoredReference,
    ) -> Result<String, KeyError> {
        match r {
            StoredReference::Pseudonymous { pseudonym, .. } => Ok(pseudonym.clone()),
            StoredReference::Clear(clear) => self.reference_pseudonym(sitting, clear),
        }
    }
}
