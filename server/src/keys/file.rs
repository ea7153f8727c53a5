//! The file store: each key 32 random bytes in `kek-NAME.key` in the key directory (a
//! small volume of its own in production). Destruction overwrites the bytes in place and
//! syncs before unlinking; what that guarantees on which disks is in `docs/dpia.md`.

use super::sealed::{open, seal};
use super::{KekStore, KeyError};
use rand::RngCore;
use std::io::Write;
use std::path::{Path, PathBuf};
use uuid::Uuid;
use zeroize::Zeroizing;

#[derive(Clone)]
pub struct FileKeks {
    dir: PathBuf,
}

impl FileKeks {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        restrict(dir, 0o700)?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("kek-{name}.key"))
    }

    /// The named key's bytes.
    pub fn load(&self, name: &str) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let bytes = Zeroizing::new(std::fs::read(self.path(name)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => KeyError::KekGone(name.to_owned()),
            _ => KeyError::Io(e),
        })?);
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::KekGone(name.to_owned()))?;
        Ok(Zeroizing::new(arr))
    }

    /// Loads the named key, creating it if this is its first use. Creation is atomic and
    /// never replaces (hard link of a fsynced temp file), so a CLI and a running server
    /// racing on the same directory end up with the same key.
    pub fn load_or_create(&self, name: &str) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        match self.load(name) {
            Err(KeyError::KekGone(_)) => {}
            other => return other,
        }
        let mut fresh = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(fresh.as_mut());
        let tmp = self.dir.join(format!(".kek-{name}.{}.tmp", Uuid::new_v4()));
        {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            restrict(&tmp, 0o600)?;
            f.write_all(fresh.as_ref())?;
            f.sync_all()?;
        }
        let linked = std::fs::hard_link(&tmp, self.path(name));
        std::fs::remove_file(&tmp)?;
        match linked {
            Ok(()) => sync_dir(&self.dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        self.load(name)
    }
}

impl KekStore for FileKeks {
    fn seal(&self, name: &str, msg: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        seal(&*self.load_or_create(name)?, msg, aad)
    }

    fn open(&self, name: &str, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        open(&*self.load(name)?, sealed, aad)
    }

    fn contains(&self, name: &str) -> Result<bool, KeyError> {
        Ok(self.path(name).try_exists()?)
    }

    fn names(&self) -> Result<Vec<String>, KeyError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            if let Some(n) = name
                .to_str()
                .and_then(|n| n.strip_prefix("kek-"))
                .and_then(|n| n.strip_suffix(".key"))
            {
                out.push(n.to_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    fn destroy(&self, name: &str) -> Result<(), KeyError> {
        // Every name the key may have: its file, and the temporary link `load_or_create`
        // leaves when it crashes between the link and the unlink (the same bytes, another
        // name).
        let stray = format!(".kek-{name}.");
        let mut names = vec![self.path(name)];
        for entry in std::fs::read_dir(&self.dir)? {
            let n = entry?.file_name();
            let n = n.to_string_lossy();
            if n.starts_with(&stray) && n.ends_with(".tmp") {
                names.push(self.dir.join(&*n));
            }
        }
        for n in &names {
            shred(n)?;
        }
        Ok(sync_dir(&self.dir)?)
    }

    fn describe(&self) -> String {
        format!("files in {}", self.dir.display())
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

fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::super::{EpochLength, KeyStore};
    use crate::db::AttemptId;
    use protocol::AttemptKey;
    use time::OffsetDateTime;

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
}
