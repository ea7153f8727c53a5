//! Keys: the per-epoch key-encryption keys (KEKs), kept by a `KekStore` (files in the key
//! directory, or a PKCS#11 token), and the wrapping of per-attempt data keys (DEKs) under
//! them. A DEK is in clear only in memory. An epoch is the day (or month) of a key's
//! wrapping (DESIGN invariant 3): destroying an epoch's KEK shreds every DEK it wrapped,
//! backups included. The receipt signing key and the tombstones stay in the key directory.

mod epoch;
mod file;
mod pkcs11;
mod references;
mod sealed;
mod store;

pub use epoch::EpochLength;
pub use file::{sync_dir, FileKeks};
pub use pkcs11::Pkcs11Keks;
pub use sealed::{
    open_connection, open_note, open_reference, seal_connection, seal_note, seal_reference,
    stream_key, SEALED_NOTE,
};
pub use store::KekStore;

use crate::db::AttemptId;
use protocol::AttemptKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use time::OffsetDateTime;
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key-encryption key of epoch {0} is destroyed or missing")]
    KekGone(String),
    #[error("wrapped data key failed to unwrap (tampered or wrong attempt)")]
    UnwrapFailed,
    #[error("key store I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("the receipt signing key is missing from the key directory: production never creates it silently (every verifier pins it); create it once with `proctor-server receipt init-key`, then publish its public key")]
    SigningKeyMissing,
    #[error("the pseudonym key is missing from the key directory: production never creates it silently (a new one would make every stored reference unfindable, and a retried enrolment would make a second attempt); create it once with `proctor-server receipt init-key`")]
    PseudonymKeyMissing,
    /// What the PKCS#11 token answered (a return code, never key material).
    #[error("key store token: {0}")]
    Token(String),
}

#[derive(Clone)]
pub struct KeyStore {
    dir: PathBuf,
    /// The receipt signing seed (a raw key the signer needs in memory), in the key directory.
    files: FileKeks,
    /// Epoch KEKs and the staff-secrets key.
    keks: Arc<dyn KekStore>,
    epoch_length: EpochLength,
    /// Outside production, the receipt signing key is created on first use.
    create_signing_key: bool,
}

pub struct WrappedKey {
    pub epoch: String,
    pub blob: Vec<u8>,
}

fn aad(attempt: &AttemptId) -> Vec<u8> {
    [b"cloe-connect/dek/v1".as_slice(), attempt.as_bytes()].concat()
}

fn staff_aad(staff: &crate::db::StaffId) -> Vec<u8> {
    [
        b"cloe-connect/staff-secret/v1".as_slice(),
        staff.as_uuid().as_bytes(),
    ]
    .concat()
}

/// The key that seals staff secrets (TOTP): not an epoch KEK, never destroyed with one.
const STAFF_SECRETS: &str = "staff-secrets";
/// The seed of the server's receipt signing key (Ed25519): not an epoch KEK either.
const RECEIPT_SIGNING: &str = "receipt-signing";
/// The key of the pseudonyms (keyed hashes) that stand for clear text in the database and
/// the audit trail: never destroyed, never in a database backup.
const PSEUDONYMS: &str = "pseudonyms";

impl KeyStore {
    /// KEKs as files in `dir`.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let files = FileKeks::open(dir)?;
        Ok(Self::with_store(dir, files.clone(), Arc::new(files)))
    }

    /// KEKs on a PKCS#11 token; the receipt signing key and the tombstones in `dir`.
    pub fn open_pkcs11(dir: &Path, keks: Pkcs11Keks) -> std::io::Result<Self> {
        let files = FileKeks::open(dir)?;
        Ok(Self::with_store(dir, files, Arc::new(keks)))
    }

    fn with_store(dir: &Path, files: FileKeks, keks: Arc<dyn KekStore>) -> Self {
        Self {
            dir: dir.to_owned(),
            files,
            keks,
            epoch_length: EpochLength::Day,
            create_signing_key: true,
        }
    }

    /// New data keys go under KEKs of this length (a day unless configured).
    pub fn with_epoch_length(mut self, length: EpochLength) -> Self {
        self.epoch_length = length;
        self
    }

    pub fn epoch_length(&self) -> EpochLength {
        self.epoch_length
    }

    /// Where the KEKs are, for an operator.
    pub fn describe(&self) -> String {
        self.keks.describe()
    }

    /// The destruction tombstones, beside the keys (`tombstones/`).
    pub fn tombstones(&self) -> std::io::Result<crate::tombstones::Tombstones> {
        crate::tombstones::Tombstones::open(&self.dir.join("tombstones"))
    }

    /// Production: the receipt signing key must already exist and is never created on
    /// use, since a new key silently makes every receipt fail against the pinned one.
    /// The same for the pseudonym key: a new one would lose every stored reference.
    pub fn requiring_signing_key(mut self) -> Result<Self, KeyError> {
        self.create_signing_key = false;
        self.receipt_signing_key()?;
        if !self.files.contains(PSEUDONYMS)? {
            return Err(KeyError::PseudonymKeyMissing);
        }
        Ok(self)
    }

    pub fn wrap(
        &self,
        dek: &AttemptKey,
        attempt: &AttemptId,
        now: OffsetDateTime,
    ) -> Result<WrappedKey, KeyError> {
        let epoch = self.epoch_length.epoch_of(now);
        let blob = self.keks.seal(&epoch, dek.expose(), &aad(attempt))?;
        Ok(WrappedKey { epoch, blob })
    }

    /// The same data key wrapped under the KEK of `now`'s epoch (an old epoch's survivors
    /// move forward so that its KEK can go).
    pub fn rewrap(
        &self,
        wrapped: &WrappedKey,
        attempt: &AttemptId,
        now: OffsetDateTime,
    ) -> Result<WrappedKey, KeyError> {
        self.wrap(&self.unwrap(wrapped, attempt)?, attempt, now)
    }

    /// The epochs (days or months) whose KEK the store holds.
    pub fn epochs(&self) -> Result<Vec<String>, KeyError> {
        // Only epochs: the staff-secret and receipt keys are never destroyed here.
        let mut out: Vec<String> = (self.keks.names()?.into_iter())
            .filter(|n| EpochLength::start_of_id(n).is_some())
            .collect();
        out.sort();
        Ok(out)
    }

    /// Destroys an epoch's KEK: every DEK it wrapped, in this database and in every
    /// backup of it, can no longer be unwrapped.
    pub fn destroy_epoch(&self, epoch: &str) -> Result<(), KeyError> {
        debug_assert!(EpochLength::start_of_id(epoch).is_some());
        self.keks.destroy(epoch)
    }

    pub fn unwrap(
        &self,
        wrapped: &WrappedKey,
        attempt: &AttemptId,
    ) -> Result<AttemptKey, KeyError> {
        if wrapped.blob.len() != 12 + 32 + 16 {
            return Err(KeyError::UnwrapFailed);
        }
        let pt = self
            .keks
            .open(&wrapped.epoch, &wrapped.blob, &aad(attempt))?;
        let arr: [u8; 32] = pt
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::UnwrapFailed)?;
        Ok(AttemptKey::from_bytes(arr))
    }

    /// Seals a staff member's secret (e.g. a TOTP seed) so that a database copy alone
    /// does not hold it; bound to the account.
    pub fn seal_staff_secret(
        &self,
        secret: &[u8],
        staff: &crate::db::StaffId,
    ) -> Result<Vec<u8>, KeyError> {
        self.keks.seal(STAFF_SECRETS, secret, &staff_aad(staff))
    }

    pub fn open_staff_secret(
        &self,
        sealed: &[u8],
        staff: &crate::db::StaffId,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        self.keks.open(STAFF_SECRETS, sealed, &staff_aad(staff))
    }

    /// The server's destruction-receipt signing key, created on first use outside
    /// production. Its public half is published (`receipt public-key`, the public API).
    pub fn receipt_signing_key(&self) -> Result<protocol::ReceiptSigningKey, KeyError> {
        let seed = self.root_key(RECEIPT_SIGNING, KeyError::SigningKeyMissing)?;
        Ok(protocol::ReceiptSigningKey::from_bytes(&seed))
    }

    /// A key of the server's own, never destroyed (the receipt signing seed, the pseudonym
    /// key): created on first use outside production, `missing` in production.
    fn root_key(&self, name: &str, missing: KeyError) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        if self.create_signing_key {
            return self.files.load_or_create(name);
        }
        self.files.load(name).map_err(|e| match e {
            KeyError::KekGone(_) => missing,
            e => e,
        })
    }

    /// Creates a root key (`receipt init-key`), or keeps the one there; says which.
    fn init_root_key(&self, name: &str) -> Result<(Zeroizing<[u8; 32]>, bool), KeyError> {
        let existed = self.files.contains(name)?;
        Ok((self.files.load_or_create(name)?, !existed))
    }

    /// Creates the receipt signing key (`receipt init-key`), or keeps the one there; says
    /// which.
    pub fn init_receipt_signing_key(
        &self,
    ) -> Result<(protocol::ReceiptSigningKey, bool), KeyError> {
        let (seed, created) = self.init_root_key(RECEIPT_SIGNING)?;
        Ok((protocol::ReceiptSigningKey::from_bytes(&seed), created))
    }

    /// A keyed hash standing for `text` (a reference, a free-text reason, an export's
    /// recipient): the same text gives the same pseudonym (look-ups, and anyone holding the
    /// text can check an entry), while without the key, kept beside the KEKs, a copy of the
    /// database or of the audit trail cannot guess it back from a short or usual text.
    /// `purpose` separates the uses.
    pub fn pseudonym(&self, purpose: &str, text: &str) -> Result<String, KeyError> {
        use hmac::Mac;
        let key = self.root_key(PSEUDONYMS, KeyError::PseudonymKeyMissing)?;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&*key).expect("any key length");
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(text.as_bytes());
        Ok(hex::encode(&mac.finalize().into_bytes()[..16]))
    }

    /// Creates the pseudonym key (`receipt init-key`), or keeps the one there; says which.
    pub fn init_pseudonym_key(&self) -> Result<bool, KeyError> {
        Ok(self.init_root_key(PSEUDONYMS)?.1)
    }

    /// The attempt's data key, unwrapped from its KEK epoch.
    pub fn attempt_key(&self, attempt: &crate::db::Attempt) -> Result<AttemptKey, KeyError> {
        self.data_key(attempt.id, &attempt.kek_epoch, &attempt.wrapped_dek)
    }

    /// A data key from the columns that hold it (a row other than the attempt's own).
    pub fn data_key(
        &self,
        attempt: AttemptId,
        kek_epoch: &str,
        wrapped_dek: &[u8],
    ) -> Result<AttemptKey, KeyError> {
        let wrapped = WrappedKey {
            epoch: kek_epoch.to_owned(),
            blob: wrapped_dek.to_vec(),
        };
        self.unwrap(&wrapped, &attempt)
    }

    /// One stream's key, derived from the attempt's.
    pub fn stream_key(
        &self,
        attempt: &crate::db::Attempt,
        stream: &crate::db::Stream,
    ) -> Result<protocol::StreamKey, KeyError> {
        stream_key(&self.attempt_key(attempt)?, &attempt.id, stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap_roundtrip_and_binding() {
        let dir = tempfile::tempdir().unwrap();
        let ks = KeyStore::open(dir.path()).unwrap();
        let dek = AttemptKey::generate();
        let a = AttemptId::random();
        let now = OffsetDateTime::now_utc();
        let w = ks.wrap(&dek, &a, now).unwrap();
        assert_eq!(ks.unwrap(&w, &a).unwrap().expose(), dek.expose());
        assert!(matches!(
            ks.unwrap(&w, &AttemptId::random()),
            Err(KeyError::UnwrapFailed)
        ));
        // A second store on the same directory sees the same KEK.
        let ks2 = KeyStore::open(dir.path()).unwrap();
        assert_eq!(ks2.unwrap(&w, &a).unwrap().expose(), dek.expose());
        std::fs::remove_file(
            dir.path()
                .join(format!("kek-{}.key", EpochLength::Day.epoch_of(now))),
        )
        .unwrap();
        assert!(matches!(ks.unwrap(&w, &a), Err(KeyError::KekGone(_))));
    }
}
