//! Destruction tombstones: each destroyed attempt's signed receipt, kept beside the keys
//! (never in a database backup), so that a database restored from before a destruction
//! does not bring the attempt back: every start re-applies them before anything is
//! served, with the same receipt (one attempt never gets a second, different one).
//!
//! An intent (`ID.pending`) is written before the destruction's transaction and settled
//! after it (renamed to `ID.json` if the attempt was destroyed, removed if a hold kept it):
//! a crash in between leaves an intent the next start settles against the database.

use crate::db::AttemptId;
use std::io::Write;
use std::path::{Path, PathBuf};

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

    /// Before the transaction: the receipt that will be the attempt's, durable.
    pub fn intend(&self, attempt: AttemptId, receipt_json: &str) -> std::io::Result<()> {
        let path = self.path(attempt, "pending");
        let mut f = std::fs::File::create(&path)?;
        f.write_all(receipt_json.as_bytes())?;
        f.sync_all()?;
        sync_dir(&self.dir)
    }

    /// After it: a tombstone for an attempt destroyed, nothing for one kept (a hold).
    pub fn settle(&self, attempt: AttemptId, destroyed: bool) -> std::io::Result<()> {
        let pending = self.path(attempt, "pending");
        if destroyed {
            std::fs::rename(&pending, self.path(attempt, "json"))?;
        } else {
            match std::fs::remove_file(&pending) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        sync_dir(&self.dir)
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

    /// Intents a crash left unsettled.
    pub fn pending(&self) -> std::io::Result<Vec<AttemptId>> {
        self.listed("pending")
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
