//! Key store: per-epoch key-encryption keys (KEKs) on disk in the key directory (the data
//! directory's `keys/` by default; a volume of its own in production), and
//! the wrapping of per-attempt data keys (DEKs). A DEK is in clear only in memory.
//! Epoch = calendar month of the attempt's creation (DESIGN invariant 3): destroying an
//! epoch's KEK shreds every wrapped DEK of that month, backups included.

use crate::db::{AttemptId, FlagId, StreamId};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use protocol::AttemptKey;
use rand::RngCore;
use std::io::Write;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;
use uuid::Uuid;
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
}

#[derive(Clone)]
pub struct KeyStore {
    dir: PathBuf,
    epoch_length: EpochLength,
    /// Outside production, the receipt signing key is created on first use.
    create_signing_key: bool,
}

pub struct WrappedKey {
    pub epoch: String,
    pub blob: Vec<u8>,
}

/// How long one KEK wraps new data keys (`[retention] kek_epoch`). A backup taken before a
/// destruction stays decryptable until its epoch's KEK goes: at the start of the second
/// epoch after it (the one between is a margin for instances whose clocks lag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum EpochLength {
    #[serde(rename = "1 day")]
    Day,
    #[serde(rename = "1 month")]
    Month,
}

impl EpochLength {
    /// The epoch's id: `2027-01-20` for a day, `2027-01` for a month (ids of both kinds sort
    /// in time order together, so a change of length destroys nothing early).
    pub fn epoch_of(self, t: OffsetDateTime) -> String {
        match self {
            Self::Day => format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()),
            Self::Month => format!("{:04}-{:02}", t.year(), u8::from(t.month())),
        }
    }

    fn start_of(self, t: OffsetDateTime) -> OffsetDateTime {
        let day = t.replace_time(time::Time::MIDNIGHT);
        match self {
            Self::Day => day,
            Self::Month => day.replace_day(1).expect("day 1 exists"),
        }
    }

    /// The oldest epoch still kept at `now`: the previous one. Every epoch before it is
    /// spent (its KEK goes once no live key needs it).
    pub fn oldest_kept(self, now: OffsetDateTime) -> String {
        self.epoch_of(self.start_of(now) - time::Duration::SECOND)
    }

    /// When the KEK of the epoch `now` falls in becomes spent: the start of the second
    /// epoch after it.
    pub fn spent_from(self, now: OffsetDateTime) -> OffsetDateTime {
        let next = |t: OffsetDateTime| match self {
            Self::Day => self.start_of(t) + time::Duration::DAY,
            Self::Month => self.start_of(self.start_of(t) + time::Duration::days(31)),
        };
        next(next(now))
    }

    /// The start of the epoch an id names, if it is one.
    pub fn start_of_id(id: &str) -> Option<OffsetDateTime> {
        let mut parts = id.split('-').map(str::parse::<u16>);
        let (y, m) = (parts.next()?.ok()?, parts.next()?.ok()?);
        let d = match parts.next() {
            Some(d) => d.ok()?,
            None => 1,
        };
        if parts.next().is_some() {
            return None;
        }
        let date = time::Date::from_calendar_date(
            i32::from(y),
            time::Month::try_from(u8::try_from(m).ok()?).ok()?,
            u8::try_from(d).ok()?,
        )
        .ok()?;
        Some(date.midnight().assume_utc())
    }
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

impl KeyStore {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        restrict(dir, 0o700)?;
        Ok(Self {
            dir: dir.to_owned(),
            epoch_length: EpochLength::Day,
            create_signing_key: true,
        })
    }

    /// New data keys go under KEKs of this length (a day unless configured).
    pub fn with_epoch_length(mut self, length: EpochLength) -> Self {
        self.epoch_length = length;
        self
    }

    pub fn epoch_length(&self) -> EpochLength {
        self.epoch_length
    }

    /// The destruction tombstones, beside the keys (`tombstones/`).
    pub fn tombstones(&self) -> std::io::Result<crate::tombstones::Tombstones> {
        crate::tombstones::Tombstones::open(&self.dir.join("tombstones"))
    }

    /// Production: the receipt signing key must already exist and is never created on
    /// use, since a new key silently makes every receipt fail against the pinned one.
    pub fn requiring_signing_key(mut self) -> Result<Self, KeyError> {
        self.create_signing_key = false;
        self.receipt_signing_key()?;
        Ok(self)
    }

    fn kek_path(&self, epoch: &str) -> PathBuf {
        self.dir.join(format!("kek-{epoch}.key"))
    }

    fn load_kek(&self, epoch: &str) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let bytes = Zeroizing::new(std::fs::read(self.kek_path(epoch)).map_err(
            |e| match e.kind() {
                std::io::ErrorKind::NotFound => KeyError::KekGone(epoch.to_owned()),
                _ => KeyError::Io(e),
            },
        )?);
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::KekGone(epoch.to_owned()))?;
        Ok(Zeroizing::new(arr))
    }

    /// Loads the epoch's KEK, creating it if this is the epoch's first use. Creation is
    /// atomic and never replaces (hard link of a fsynced temp file), so a CLI and a running
    /// server racing on the same data directory end up with the same KEK.
    fn kek_for(&self, epoch: &str) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        match self.load_kek(epoch) {
            Err(KeyError::KekGone(_)) => {}
            other => return other,
        }
        let mut fresh = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(fresh.as_mut());
        let tmp = self
            .dir
            .join(format!(".kek-{epoch}.{}.tmp", Uuid::new_v4()));
        {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            restrict(&tmp, 0o600)?;
            f.write_all(fresh.as_ref())?;
            f.sync_all()?;
        }
        let linked = std::fs::hard_link(&tmp, self.kek_path(epoch));
        std::fs::remove_file(&tmp)?;
        match linked {
            Ok(()) => sync_dir(&self.dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        self.load_kek(epoch)
    }

    pub fn wrap(
        &self,
        dek: &AttemptKey,
        attempt: &AttemptId,
        now: OffsetDateTime,
    ) -> Result<WrappedKey, KeyError> {
        let epoch = self.epoch_length.epoch_of(now);
        let blob = seal(&*self.kek_for(&epoch)?, dek.expose(), &aad(attempt))?;
        Ok(WrappedKey { epoch, blob })
    }

    /// The same data key wrapped under the KEK of `now`'s epoch (an old month's survivors
    /// move forward so that its KEK can go).
    pub fn rewrap(
        &self,
        wrapped: &WrappedKey,
        attempt: &AttemptId,
        now: OffsetDateTime,
    ) -> Result<WrappedKey, KeyError> {
        self.wrap(&self.unwrap(wrapped, attempt)?, attempt, now)
    }

    /// The epochs (days or months) whose KEK is on disk.
    pub fn epochs(&self) -> Result<Vec<String>, KeyError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let Some(epoch) = name
                .to_str()
                .and_then(|n| n.strip_prefix("kek-"))
                .and_then(|n| n.strip_suffix(".key"))
            else {
                continue;
            };
            // Only epochs: the staff-secret and receipt keys are never destroyed here.
            if EpochLength::start_of_id(epoch).is_some() {
                out.push(epoch.to_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Destroys an epoch's KEK: every DEK it wrapped, in this database and in every
    /// backup of it, can no longer be unwrapped.
    pub fn destroy_epoch(&self, epoch: &str) -> Result<(), KeyError> {
        // Every name the KEK may have: its file, and the temporary link `kek_for` leaves
        // when it crashes between the link and the unlink (the same bytes, another name).
        let stray = format!(".kek-{epoch}.");
        let mut names = vec![self.kek_path(epoch)];
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&stray) && name.ends_with(".tmp") {
                names.push(self.dir.join(&*name));
            }
        }
        for name in &names {
            shred(name)?;
        }
        Ok(sync_dir(&self.dir)?)
    }

    pub fn unwrap(
        &self,
        wrapped: &WrappedKey,
        attempt: &AttemptId,
    ) -> Result<AttemptKey, KeyError> {
        if wrapped.blob.len() != 12 + 32 + 16 {
            return Err(KeyError::UnwrapFailed);
        }
        let pt = open(
            &*self.load_kek(&wrapped.epoch)?,
            &wrapped.blob,
            &aad(attempt),
        )?;
        let arr: [u8; 32] = pt
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::UnwrapFailed)?;
        Ok(AttemptKey::from_bytes(arr))
    }
}

/// Overwrites a key file's bytes with zeros on the disk, then unlinks it: an unlink alone
/// frees the block with the key still in it. In-place overwrite holds on ext4 and xfs over
/// a plain disk; a copy-on-write or log-structured file system, an SSD's remapping and a
/// snapshot keep old blocks whatever is written (docs/dpia.md), hence keys on a small
/// volume of their own, outside every snapshot, and an HSM in production.
fn shred(path: &Path) -> std::io::Result<()> {
    let mut f = match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len() as usize;
    f.write_all(&vec![0u8; len])?;
    f.sync_all()?;
    drop(f);
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The key that seals staff secrets (TOTP): not an epoch KEK, never destroyed with one.
const STAFF_SECRETS: &str = "staff-secrets";
/// The seed of the server's receipt signing key (Ed25519): not an epoch KEK either.
const RECEIPT_SIGNING: &str = "receipt-signing";

impl KeyStore {
    /// Seals a staff member's secret (e.g. a TOTP seed) so that a database copy alone
    /// does not hold it; bound to the account.
    pub fn seal_staff_secret(
        &self,
        secret: &[u8],
        staff: &crate::db::StaffId,
    ) -> Result<Vec<u8>, KeyError> {
        seal(&*self.kek_for(STAFF_SECRETS)?, secret, &staff_aad(staff))
    }

    pub fn open_staff_secret(
        &self,
        sealed: &[u8],
        staff: &crate::db::StaffId,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        open(&*self.load_kek(STAFF_SECRETS)?, sealed, &staff_aad(staff))
    }

    /// The server's destruction-receipt signing key, created on first use outside
    /// production. Its public half is published (`receipt public-key`, the public API).
    pub fn receipt_signing_key(&self) -> Result<protocol::ReceiptSigningKey, KeyError> {
        let seed = if self.create_signing_key {
            self.kek_for(RECEIPT_SIGNING)?
        } else {
            self.load_kek(RECEIPT_SIGNING).map_err(|e| match e {
                KeyError::KekGone(_) => KeyError::SigningKeyMissing,
                e => e,
            })?
        };
        Ok(protocol::ReceiptSigningKey::from_bytes(&seed))
    }

    /// Creates the receipt signing key (`receipt init-key`), or keeps the one there; says
    /// which.
    pub fn init_receipt_signing_key(
        &self,
    ) -> Result<(protocol::ReceiptSigningKey, bool), KeyError> {
        let existed = self.kek_path(RECEIPT_SIGNING).exists();
        let seed = self.kek_for(RECEIPT_SIGNING)?;
        Ok((protocol::ReceiptSigningKey::from_bytes(&seed), !existed))
    }
}

/// Connection data sealed under a key derived from the attempt's data key (bound to the
/// stream): no copy of the database keeps it readable past the key's destruction.
pub fn seal_connection(
    dek: &AttemptKey,
    attempt: &AttemptId,
    stream: &StreamId,
    conn: &crate::db::ConnectionInfo,
) -> Result<Vec<u8>, KeyError> {
    let json = Zeroizing::new(serde_json::to_vec(conn).expect("three strings serialise"));
    seal(
        &dek.connection_key(&attempt.as_uuid()),
        &json,
        stream.as_bytes(),
    )
}

pub fn open_connection(
    dek: &AttemptKey,
    attempt: &AttemptId,
    stream: &StreamId,
    sealed: &[u8],
) -> Result<crate::db::ConnectionInfo, KeyError> {
    let json = open(
        &dek.connection_key(&attempt.as_uuid()),
        sealed,
        stream.as_bytes(),
    )?;
    serde_json::from_slice(&json).map_err(|_| KeyError::UnwrapFailed)
}

/// How a sealed note is stored in the notes column (a note without it is an earlier
/// version's clear text, sealed by the worker).
pub const SEALED_NOTE: &str = "sealed:v1:";

/// A flag's note sealed under a key derived from the attempt's data key (bound to the flag).
pub fn seal_note(
    dek: &AttemptKey,
    attempt: &AttemptId,
    flag: &FlagId,
    note: &str,
) -> Result<String, KeyError> {
    use base64::Engine;
    if note.is_empty() {
        return Ok(String::new());
    }
    let sealed = seal(
        &dek.note_key(&attempt.as_uuid()),
        note.as_bytes(),
        flag.as_bytes(),
    )?;
    Ok(format!(
        "{SEALED_NOTE}{}",
        base64::engine::general_purpose::STANDARD.encode(sealed)
    ))
}

pub fn open_note(
    dek: &AttemptKey,
    attempt: &AttemptId,
    flag: &FlagId,
    stored: &str,
) -> Result<String, KeyError> {
    use base64::Engine;
    let Some(b64) = stored.strip_prefix(SEALED_NOTE) else {
        return Ok(stored.to_owned());
    };
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| KeyError::UnwrapFailed)?;
    String::from_utf8(open(&dek.note_key(&attempt.as_uuid()), &sealed, flag.as_bytes())?.to_vec())
        .map_err(|_| KeyError::UnwrapFailed)
}

/// AES-256-GCM under a key of the store: a random nonce, then the ciphertext and tag.
fn seal(key: &[u8; 32], msg: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ct = Aes256Gcm::new(key.into())
        .encrypt(Nonce::from_slice(&nonce), Payload { msg, aad })
        .map_err(|_| KeyError::UnwrapFailed)?;
    Ok([nonce.as_slice(), &ct].concat())
}

fn open(key: &[u8; 32], sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    if sealed.len() < 12 + 16 {
        return Err(KeyError::UnwrapFailed);
    }
    let (nonce, ct) = sealed.split_at(12);
    Aes256Gcm::new(key.into())
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .map(Zeroizing::new)
        .map_err(|_| KeyError::UnwrapFailed)
}

fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_days_or_months_and_spend_two_epochs_later() {
        use time::macros::datetime;
        let t = datetime!(2027-01-31 22:00 UTC);
        assert_eq!(EpochLength::Day.epoch_of(t), "2027-01-31");
        assert_eq!(EpochLength::Month.epoch_of(t), "2027-01");
        assert_eq!(EpochLength::Day.oldest_kept(t), "2027-01-30");
        assert_eq!(EpochLength::Month.oldest_kept(t), "2026-12");
        assert_eq!(
            EpochLength::Day.spent_from(t),
            datetime!(2027-02-02 00:00 UTC)
        );
        assert_eq!(
            EpochLength::Month.spent_from(t),
            datetime!(2027-03-01 00:00 UTC)
        );
        assert_eq!(
            EpochLength::start_of_id("2027-01-31"),
            Some(datetime!(2027-01-31 00:00 UTC))
        );
        assert_eq!(
            EpochLength::start_of_id("2027-01"),
            Some(datetime!(2027-01-01 00:00 UTC))
        );
        for not_an_epoch in [
            "receipt-signing",
            "staff-secrets",
            "2027-13",
            "2027-01-32",
            "2027",
        ] {
            assert_eq!(
                EpochLength::start_of_id(not_an_epoch),
                None,
                "{not_an_epoch}"
            );
        }
        // After switching from months to days, the month epochs are spent at once (their
        // survivors move to today's first), and yesterday's day is kept.
        let now = datetime!(2027-02-10 12:00 UTC);
        let kept = EpochLength::Day.oldest_kept(now);
        assert!(String::from("2027-01") < kept && String::from("2027-02") < kept);
        assert!(String::from("2027-02-09") >= kept);
    }

    /// Destroying an epoch overwrites its key's bytes before unlinking, under every name
    /// the key had (a crash's temporary link included). A third link, which destruction
    /// does not know of, reads the block as a raw scan of the disk would.
    #[test]
    fn destroying_an_epoch_overwrites_its_key_under_every_name() {
        let dir = tempfile::tempdir().unwrap();
        let ks = KeyStore::open(dir.path()).unwrap();
        let now = OffsetDateTime::now_utc();
        let epoch = EpochLength::Day.epoch_of(now);
        ks.wrap(&AttemptKey::generate(), &AttemptId::random(), now)
            .unwrap();
        let key = dir.path().join(format!("kek-{epoch}.key"));
        let stray = dir.path().join(format!(".kek-{epoch}.crashed.tmp"));
        let witness = dir.path().join("witness");
        std::fs::hard_link(&key, &stray).unwrap();
        std::fs::hard_link(&key, &witness).unwrap();
        assert_ne!(std::fs::read(&witness).unwrap(), vec![0u8; 32]);
        ks.destroy_epoch(&epoch).unwrap();
        assert!(!key.exists() && !stray.exists());
        assert_eq!(
            std::fs::read(&witness).unwrap(),
            vec![0u8; 32],
            "the key's bytes are overwritten on the disk, not only unlinked"
        );
    }

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

/// A stream's key: derived from the data key and the stream's salt (server-keyed streams),
/// or opened from the stream's opening with the attempt's private key (agent-keyed ones).
pub fn stream_key(
    dek: &AttemptKey,
    attempt: &AttemptId,
    stream: &crate::db::Stream,
) -> Result<protocol::StreamKey, KeyError> {
    match &stream.keying {
        crate::db::StreamKeying::Derived { salt } => Ok(dek.derive_stream_key(
            &protocol::StreamSalt(*salt),
            &attempt.as_uuid(),
            &stream.id.as_uuid(),
        )),
        crate::db::StreamKeying::Opening(bytes) => {
            let opening =
                protocol::StreamOpening::parse(bytes).map_err(|_| KeyError::UnwrapFailed)?;
            opening
                .open(
                    &dek.recipient(&attempt.as_uuid()).0,
                    &attempt.as_uuid(),
                    &stream.id.as_uuid(),
                )
                .map_err(|_| KeyError::UnwrapFailed)
        }
    }
}

impl KeyStore {
    /// The attempt's data key, unwrapped from its KEK epoch.
    pub fn attempt_key(&self, attempt: &crate::db::Attempt) -> Result<AttemptKey, KeyError> {
        let wrapped = WrappedKey {
            epoch: attempt.kek_epoch.clone(),
            blob: attempt.wrapped_dek.clone(),
        };
        self.unwrap(&wrapped, &attempt.id)
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
