//! Destruction tombstones: each destroyed attempt's signed receipt, kept beside the keys
//! (never in a database backup), so that a database restored from before a destruction
//! does not bring the attempt back: every start re-applies them before anything is
//! served, with the same receipt (one attempt never gets a second, different one).
//!
//! An intent (`ID.pending`) is written before the destruction's transaction and settled
//! after it (renamed to `ID.json` if the attempt was destroyed, to `ID.HASH.void` if a hold
//! placed meanwhile kept it): a crash in between leaves an intent the next start settles
//! against the database.
//!
//! The directory is also the log of the receipt chain: each receipt names the one signed
//! before it (`previous`), `head` names the latest, and `chain.lock` makes every signer (any
//! instance, any command, sharing the key volume) take its turn.

use crate::db::AttemptId;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A receipt written before its destruction's transaction, not settled yet.
pub struct Intent {
    pub attempt: AttemptId,
    stem: String,
}

#[derive(Clone)]
pub struct Tombstones {
    dir: PathBuf,
}

impl Tombstones {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn path(&self, attempt: AttemptId, ext: &str) -> PathBuf {
        self.dir.join(format!("{attempt}.{ext}"))
    }

    /// Before the transaction: the receipt that will be the attempt's, durable. Each
    /// intent has a name of its own (two signers racing on one attempt lose no receipt).
    pub fn intend(&self, attempt: AttemptId, receipt_json: &str) -> std::io::Result<Intent> {
        let hash = hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(receipt_json)[..8]);
        let intent = Intent {
            attempt,
            stem: format!("{attempt}.{hash}"),
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.dir.join(format!("{}.pending", intent.stem)))?;
        f.write_all(receipt_json.as_bytes())?;
        f.sync_all()?;
        sync_dir(&self.dir)?;
        Ok(intent)
    }

    /// After it: a tombstone for an attempt destroyed; for one a hold kept, the receipt
    /// stays in the log as void (it was signed and chained; the chain must show no gap).
    pub fn settle(&self, intent: &Intent, destroyed: bool) -> std::io::Result<()> {
        let pending = self.dir.join(format!("{}.pending", intent.stem));
        let target = if destroyed {
            self.path(intent.attempt, "json")
        } else {
            self.dir.join(format!("{}.void", intent.stem))
        };
        std::fs::rename(&pending, target)?;
        sync_dir(&self.dir)
    }

    /// Waits for this signer's turn on the chain (every process sharing the volume).
    pub async fn lock_chain(&self) -> std::io::Result<std::fs::File> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("chain.lock"))?;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(std::fs::TryLockError::WouldBlock) => {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
        }
    }

    /// The hash of the latest receipt signed, if any (under the chain's lock).
    pub fn head(&self) -> std::io::Result<Option<String>> {
        match std::fs::read_to_string(self.dir.join("head")) {
            Ok(h) => Ok(Some(h.trim().to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn set_head(&self, hash: &str) -> std::io::Result<()> {
        let tmp = self.dir.join("head.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(hash.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.dir.join("head"))?;
        sync_dir(&self.dir)
    }

    /// Every receipt of the log: tombstones and void ones, as stored (file name, JSON).
    pub fn log(&self) -> std::io::Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") || name.ends_with(".void") {
                out.push((name, std::fs::read_to_string(entry.path())?));
            }
        }
        out.sort();
        Ok(out)
    }

    fn listed(&self, ext: &str) -> std::io::Result<Vec<AttemptId>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name
                .strip_suffix(&format!(".{ext}"))
                .and_then(|s| s.parse::<uuid::Uuid>().ok())
            {
                out.push(AttemptId::from(id));
            }
        }
        Ok(out)
    }

    /// The receipt an intent holds.
    pub fn intended(&self, intent: &Intent) -> std::io::Result<String> {
        std::fs::read_to_string(self.dir.join(format!("{}.pending", intent.stem)))
    }

    /// Intents a crash left unsettled.
    pub fn pending(&self) -> std::io::Result<Vec<Intent>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".pending") else {
                continue;
            };
            if let Some(id) = stem
                .split('.')
                .next()
                .and_then(|s| s.parse::<uuid::Uuid>().ok())
            {
                out.push(Intent {
                    attempt: AttemptId::from(id),
                    stem: stem.to_owned(),
                });
            }
        }
        Ok(out)
    }

    /// Every tombstone's attempt.
    pub fn attempts(&self) -> std::io::Result<Vec<AttemptId>> {
        self.listed("json")
    }

    /// The receipt a tombstone holds.
    pub fn receipt(&self, attempt: AttemptId) -> std::io::Result<String> {
        std::fs::read_to_string(self.path(attempt, "json"))
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
