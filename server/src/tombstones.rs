//! Destruction tombstones: each destroyed attempt's signed receipt, kept beside the keys
//! (never in a database backup), so that a database restored from before a destruction
//! does not bring the attempt back: every start re-applies them before anything is
//! served, with the same receipt (one attempt never gets a second, different one).
//!
//! One file per destruction batch, so that a PV of a thousand candidates costs a few
//! fsyncs, not thousands: an intent (`B.pending`, every receipt of the batch) is written
//! before the transaction and settled after it (`B.json`, each receipt marked destroyed,
//! or void when a hold placed meanwhile kept its attempt): a crash in between leaves an
//! intent the next start settles against the database. The signer holds a lock on its
//! intent until it settles it (the kernel drops it if the signer dies), so a start beside a
//! live signer (a command while the server destroys) leaves that intent alone.
//!
//! The directory is also the log of the receipt chain: each receipt names the one signed
//! before it (`previous`), `head` names the latest, and `chain.lock` makes every signer (any
//! instance, any command, sharing the key volume) take its turn.

use crate::db::AttemptId;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone)]
pub struct Tombstones {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    attempt: AttemptId,
    /// The signed receipt, JSON, as the database stores it.
    receipt: String,
    /// Settled: destroyed with this receipt (false: void).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    destroyed: Option<bool>,
}

/// A batch's receipts written before its transaction, not settled yet.
pub struct Intent {
    stem: String,
    entries: Vec<Entry>,
    /// The intent's file, locked while its holder may still settle it.
    _held: std::fs::File,
}

impl Intent {
    /// The attempts and receipts it names.
    pub fn receipts(&self) -> impl Iterator<Item = (AttemptId, &str)> {
        self.entries.iter().map(|e| (e.attempt, e.receipt.as_str()))
    }
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

    /// Writes the file whole under its name, locked (the lock follows the file through
    /// the rename); returns it open.
    fn write_durably(&self, name: &str, entries: &[Entry]) -> std::io::Result<std::fs::File> {
        let tmp = self.dir.join(format!("{name}.tmp"));
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.lock()?;
            f.write_all(&serde_json::to_vec(entries).map_err(std::io::Error::other)?)?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.dir.join(name))?;
            Ok(f)
        })();
        written.map_err(|e| naming(e, &tmp))
    }

    fn read(&self, name: &str) -> std::io::Result<Vec<Entry>> {
        let path = self.dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| naming(e, &path))?;
        serde_json::from_slice(&bytes).map_err(|e| naming(std::io::Error::other(e), &path))
    }

    /// Before the transaction: the receipts that will be the batch's attempts', durable.
    pub fn intend<'a>(
        &self,
        batch: impl IntoIterator<Item = (AttemptId, &'a str)>,
    ) -> std::io::Result<Intent> {
        let entries: Vec<Entry> = batch
            .into_iter()
            .map(|(attempt, receipt)| Entry {
                attempt,
                receipt: receipt.to_owned(),
                destroyed: None,
            })
            .collect();
        // Time first, so that the files list in the order they were written.
        let stem = format!("{:020}-{}", unix_ms(), uuid::Uuid::new_v4());
        let held = self.write_durably(&format!("{stem}.pending"), &entries)?;
        sync_dir(&self.dir)?;
        Ok(Intent {
            stem,
            entries,
            _held: held,
        })
    }

    /// After it: each receipt marked destroyed (a tombstone) or void (a hold kept the
    /// attempt; the receipt stays so that the chain shows no gap).
    pub fn settle(&self, intent: Intent, destroyed: &HashSet<AttemptId>) -> std::io::Result<()> {
        let Intent {
            stem,
            entries,
            _held,
        } = intent;
        let entries: Vec<Entry> = entries
            .into_iter()
            .map(|e| Entry {
                destroyed: Some(destroyed.contains(&e.attempt)),
                ..e
            })
            .collect();
        self.write_durably(&format!("{stem}.json"), &entries)?;
        let pending = self.dir.join(format!("{stem}.pending"));
        std::fs::remove_file(&pending).map_err(|e| naming(e, &pending))?;
        // Unlocked once settled, not before.
        sync_dir(&self.dir)
    }

    fn names(&self, ext: &str) -> std::io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.ends_with(ext) {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Intents a crash left unsettled: those whose signer no longer holds them (a live
    /// one, in this or another process, settles its own).
    pub fn pending(&self) -> std::io::Result<Vec<Intent>> {
        let mut out = Vec::new();
        for name in self.names(".pending")? {
            let path = self.dir.join(&name);
            let held = match std::fs::File::open(&path) {
                Ok(f) => f,
                // Settled since the listing.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(naming(e, &path)),
            };
            match held.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => continue,
                Err(std::fs::TryLockError::Error(e)) => return Err(naming(e, &path)),
            }
            // Settled between the open and the lock: its holder let go after the removal.
            if !path.try_exists()? {
                continue;
            }
            out.push(Intent {
                entries: self.read(&name)?,
                stem: name.trim_end_matches(".pending").to_owned(),
                _held: held,
            });
        }
        Ok(out)
    }

    /// Every attempt a tombstone says was destroyed, with its receipt.
    pub fn destroyed(&self) -> std::io::Result<HashMap<AttemptId, String>> {
        let mut out = HashMap::new();
        for name in self.names(".json")? {
            for e in self.read(&name)? {
                if e.destroyed == Some(true) {
                    out.insert(e.attempt, e.receipt);
                }
            }
        }
        Ok(out)
    }

    /// Every receipt of the log, in the order the batches were written: (void, JSON).
    pub fn log(&self) -> std::io::Result<Vec<(bool, String)>> {
        let mut out = Vec::new();
        for name in self.names(".json")? {
            for e in self.read(&name)? {
                out.push((e.destroyed == Some(false), e.receipt));
            }
        }
        Ok(out)
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
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The error with the file it is about (an operator must find it).
fn naming(e: std::io::Error, path: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An intent its signer still holds is not another start's to settle (it would mark
    /// the receipts void while the transaction commits them, then the signer's own settle
    /// would fail); once the signer is gone (dropped without settling, as a crash does), it
    /// is.
    #[test]
    fn a_start_settles_only_the_intents_nobody_holds() {
        let dir = tempfile::tempdir().unwrap();
        let signer = Tombstones::open(dir.path()).unwrap();
        let other = Tombstones::open(dir.path()).unwrap();
        let a = AttemptId::random();
        let live = signer.intend([(a, "receipt")]).unwrap();
        assert!(other.pending().unwrap().is_empty(), "held by a live signer");
        signer.settle(live, &[a].into()).unwrap();
        assert!(other.pending().unwrap().is_empty());
        assert_eq!(other.destroyed().unwrap()[&a], "receipt");

        let b = AttemptId::random();
        drop(signer.intend([(b, "receipt b")]).unwrap());
        let abandoned = other.pending().unwrap();
        assert_eq!(abandoned.len(), 1, "the dead signer's intent");
        other
            .settle(abandoned.into_iter().next().unwrap(), &HashSet::new())
            .unwrap();
        assert!(other.pending().unwrap().is_empty());
        assert_eq!(other.log().unwrap().len(), 2);
    }
}
