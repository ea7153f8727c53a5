//! The local spool: sealed chunks only (ciphertext), one file per chunk, fsynced before
//! the uploader is told about it, deleted only after the server's durable acknowledgement
//! (or dropped, with the reason logged in `dropped.log`, when the server can never take
//! it). Directories are 0700 and files 0600 whatever the umask: ciphertext still says
//! when and how much a candidate recorded.
//!
//! Layout: `<root>/<attempt id>/<stream id>/<index:010>.chunk`, plus `<stream id>/final`
//! holding the final index once the stream's final chunk is sealed. Keyed by the attempt,
//! not the launch token: an agent restarted with a reissued token finds the leftovers the
//! earlier token recorded (the server takes them under any token of the attempt).

use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Where versions before the attempt-keyed layout kept a token's spool: hex of the first
/// 16 bytes of SHA-256 of the token.
fn legacy_launch_id(token: &str) -> String {
    let d = Sha256::new()
        .chain_update(b"cloe-spool/v1/")
        .chain_update(token.as_bytes())
        .finalize();
    hex::encode(&d[..16])
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SpooledChunk {
    pub stream: Uuid,
    pub index: u32,
    pub path: PathBuf,
    pub size: u64,
    /// The sealed bytes, when writing them to the spool failed (disk full): held in memory
    /// until acknowledged (see `Held`).
    pub held: Option<std::sync::Arc<Vec<u8>>>,
}

impl SpooledChunk {
    pub fn read(&self) -> std::io::Result<Vec<u8>> {
        match &self.held {
            Some(bytes) => Ok(bytes.as_ref().clone()),
            None => fs::read(&self.path),
        }
    }
}

/// How many sealed bytes may wait in memory when the spool cannot be written: 96 MiB,
/// about 35 minutes at the highest bitrate and over an hour at the floor (which a low disk
/// imposes). Beyond it a fragment is lost, counted and logged: memory is not unbounded.
pub const MAX_HELD_BYTES: u64 = 96 * 1024 * 1024;

#[derive(Clone)]
pub struct Spool {
    dir: PathBuf,
    /// Held for the run: one agent per attempt on this computer (a second launch would
    /// forget the first one's live stream, or discard its spool on a withdrawal).
    _lock: std::sync::Arc<fs::File>,
}

/// Creates `dir` (and missing parents) as 0700, and makes an existing one 0700.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

fn private_file(path: &Path, append: bool) -> std::io::Result<fs::File> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create(true).mode(0o600);
    if append {
        o.append(true);
    } else {
        o.truncate(true);
    }
    o.open(path)
}

impl Spool {
    pub fn open(root: &Path, attempt: Uuid, token: &str) -> std::io::Result<Self> {
        private_dir(root)?;
        let dir = root.join(attempt.to_string());
        private_dir(&dir)?;
        // Adopt what an earlier version left under the token's name.
        let legacy = root.join(legacy_launch_id(token));
        if legacy.is_dir() {
            for entry in fs::read_dir(&legacy)?.flatten() {
                let target = dir.join(entry.file_name());
                if !target.exists() {
                    fs::rename(entry.path(), target)?;
                }
            }
            let _ = fs::remove_dir(&legacy);
            fs::File::open(&dir)?.sync_all()?;
        }
        let lock = private_file(&root.join(format!("{attempt}.lock")), true)?;
        lock.try_lock().map_err(|e| match e {
            fs::TryLockError::WouldBlock => std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "another agent is recording this attempt on this computer",
            ),
            fs::TryLockError::Error(e) => e,
        })?;
        Ok(Self {
            dir,
            _lock: std::sync::Arc::new(lock),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Consent withdrawn: what waits here will never be sent; the ciphertext goes.
    pub fn discard(&self) -> std::io::Result<()> {
        fs::remove_dir_all(&self.dir)
    }

    fn stream_dir(&self, stream: Uuid) -> PathBuf {
        self.dir.join(stream.to_string())
    }

    /// Writes a sealed chunk durably (temp file, fsync, rename, fsync dir). On failure
    /// (disk full) nothing is left behind and the caller holds the bytes instead.
    pub fn put(&self, stream: Uuid, index: u32, sealed: &[u8]) -> std::io::Result<SpooledChunk> {
        let dir = self.stream_dir(stream);
        private_dir(&dir)?;
        let path = dir.join(format!("{index:010}.chunk"));
        let tmp = dir.join(format!(".{index:010}.tmp"));
        let written = (|| {
            let mut f = private_file(&tmp, false)?;
            f.write_all(sealed)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            fs::File::open(&dir)?.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(SpooledChunk {
            stream,
            index,
            path,
            size: sealed.len() as u64,
            held: None,
        })
    }

    /// The chunk as the uploader will take it from memory, where the spool would have put it.
    pub fn held(&self, stream: Uuid, index: u32, sealed: Vec<u8>) -> SpooledChunk {
        let path = self.stream_dir(stream).join(format!("{index:010}.chunk"));
        SpooledChunk {
            stream,
            index,
            path,
            size: sealed.len() as u64,
            held: Some(std::sync::Arc::new(sealed)),
        }
    }

    /// Bytes free on the spool's file system.
    pub fn free_bytes(&self) -> std::io::Result<u64> {
        fs4::available_space(&self.dir)
    }

    /// The candidate's consent as first given for this attempt, sealed to the attempt's
    /// public key (the agent cannot read it back; the server opens it).
    /// With the notice version it names (spools from before the version was kept: the
    /// version this agent ships).
    pub fn consent(&self) -> std::io::Result<Option<(String, Vec<u8>)>> {
        match fs::read(self.dir.join("consent.sealed")) {
            Ok(b) => {
                let version = fs::read_to_string(self.dir.join("consent.version"))
                    .map(|v| v.trim().to_owned());
                Ok(Some((
                    version.unwrap_or_else(|_| protocol::api::NOTICE_VERSION.into()),
                    b,
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Keeps the sealed consent durably, before anything is recorded.
    pub fn keep_consent(&self, notice_version: &str, sealed: &[u8]) -> std::io::Result<()> {
        let mut v = private_file(&self.dir.join("consent.version"), false)?;
        v.write_all(notice_version.as_bytes())?;
        v.sync_all()?;
        let tmp = self.dir.join(".consent.tmp");
        let mut f = private_file(&tmp, false)?;
        f.write_all(sealed)?;
        f.sync_all()?;
        fs::rename(&tmp, self.dir.join("consent.sealed"))?;
        fs::File::open(&self.dir)?.sync_all()
    }

    pub fn mark_final(&self, stream: Uuid, index: u32) -> std::io::Result<()> {
        let path = self.stream_dir(stream).join("final");
        let mut f = private_file(&path, false)?;
        f.write_all(index.to_string().as_bytes())?;
        f.sync_all()
    }

    pub fn final_index(&self, stream: Uuid) -> Option<u32> {
        fs::read_to_string(self.stream_dir(stream).join("final"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn remove(&self, chunk: &SpooledChunk) -> std::io::Result<()> {
        match fs::remove_file(&chunk.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes a chunk the server can never accept, and says why in `dropped.log`.
    pub fn drop_chunk(&self, chunk: &SpooledChunk, why: &str) -> std::io::Result<()> {
        let logged = (|| {
            let mut log = private_file(&self.dir.join("dropped.log"), true)?;
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            writeln!(
                log,
                "{at} stream={} index={} {why}",
                chunk.stream, chunk.index
            )?;
            log.sync_all()
        })();
        // A full disk must not keep a chunk the server can never take.
        self.remove(chunk)?;
        logged
    }

    /// Forgets a stream whose chunks are all acknowledged.
    pub fn forget_stream(&self, stream: Uuid) -> std::io::Result<()> {
        match fs::remove_dir_all(self.stream_dir(stream)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every chunk still waiting, by stream then index.
    pub fn pending(&self) -> std::io::Result<Vec<SpooledChunk>> {
        let mut out = Vec::new();
        for s in fs::read_dir(&self.dir)? {
            let s = s?;
            let Some(stream) = s.file_name().to_str().and_then(|n| Uuid::parse_str(n).ok()) else {
                continue;
            };
            if !s.file_type()?.is_dir() {
                continue;
            }
            for c in fs::read_dir(s.path())? {
                let c = c?;
                let name = c.file_name();
                let Some(index) = name
                    .to_str()
                    .and_then(|n| n.strip_suffix(".chunk"))
                    .and_then(|n| n.parse().ok())
                else {
                    continue;
                };
                let size = c.metadata().map(|m| m.len()).unwrap_or(0);
                out.push(SpooledChunk {
                    stream,
                    index,
                    path: c.path(),
                    size,
                    held: None,
                });
            }
        }
        out.sort();
        Ok(out)
    }

    /// Streams that have a directory (pending chunks or an unsent end).
    pub fn streams(&self) -> std::io::Result<Vec<Uuid>> {
        Ok(fs::read_dir(&self.dir)?
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()
                    .and_then(|n| Uuid::parse_str(n).ok())
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_list_remove() {
        let root = tempfile::tempdir().unwrap();
        let attempt = Uuid::new_v4();
        let spool = Spool::open(root.path(), attempt, "clt_token").unwrap();
        let s = Uuid::new_v4();
        spool.put(s, 2, b"two").unwrap();
        let c0 = spool.put(s, 0, b"zero").unwrap();
        let pending = spool.pending().unwrap();
        assert_eq!(
            pending.iter().map(|c| c.index).collect::<Vec<_>>(),
            vec![0, 2]
        );
        spool.remove(&c0).unwrap();
        assert_eq!(spool.pending().unwrap().len(), 1);
        spool.mark_final(s, 2).unwrap();
        assert_eq!(spool.final_index(s), Some(2));
        // One agent per attempt: a second one is turned away while the first runs.
        let second = Spool::open(root.path(), attempt, "clt_reissued");
        assert_eq!(
            second.err().map(|e| e.kind()),
            Some(std::io::ErrorKind::WouldBlock)
        );
        // Once it stopped, a reissued token of the same attempt finds the leftovers; another
        // attempt does not.
        drop(spool);
        let spool = Spool::open(root.path(), attempt, "clt_reissued").unwrap();
        assert_eq!(spool.pending().unwrap().len(), 1);
        assert!(Spool::open(root.path(), Uuid::new_v4(), "clt_other")
            .unwrap()
            .pending()
            .unwrap()
            .is_empty());
        // Consent is kept once, privately, and outlives the chunks.
        assert_eq!(spool.consent().unwrap(), None);
        spool.keep_consent("v-test", b"sealed consent").unwrap();
        assert_eq!(
            spool.consent().unwrap(),
            Some(("v-test".to_owned(), b"sealed consent".to_vec()))
        );
        assert_eq!(mode(&spool.dir().join("consent.sealed")), 0o600);
    }

    #[test]
    fn leftovers_in_the_token_keyed_layout_are_adopted() {
        let root = tempfile::tempdir().unwrap();
        let (s, attempt) = (Uuid::new_v4(), Uuid::new_v4());
        let legacy = root
            .path()
            .join(legacy_launch_id("clt_old"))
            .join(s.to_string());
        fs::create_dir_all(&legacy).unwrap();
        fs::write(legacy.join("0000000004.chunk"), b"sealed").unwrap();
        let spool = Spool::open(root.path(), attempt, "clt_old").unwrap();
        assert_eq!(
            spool
                .pending()
                .unwrap()
                .iter()
                .map(|c| (c.stream, c.index))
                .collect::<Vec<_>>(),
            vec![(s, 4)]
        );
        assert!(!root.path().join(legacy_launch_id("clt_old")).exists());
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// Defect: the spool was created with the process umask (0755 / 0644 under the usual 022).
    #[test]
    fn the_spool_is_private_whatever_the_umask() {
        let root = tempfile::tempdir().unwrap();
        let spool_root = root.path().join("a/b/spool");
        let spool = Spool::open(&spool_root, Uuid::new_v4(), "clt_token").unwrap();
        let s = Uuid::new_v4();
        let c = spool.put(s, 0, b"sealed").unwrap();
        spool.mark_final(s, 0).unwrap();
        spool.drop_chunk(&c, "conflicting_chunk").unwrap();
        for dir in [
            spool_root.clone(),
            spool.dir().to_owned(),
            spool.dir().join(s.to_string()),
        ] {
            assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        }
        for file in [
            spool.dir().join(s.to_string()).join("final"),
            spool.dir().join("dropped.log"),
        ] {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
        assert!(fs::read_to_string(spool.dir().join("dropped.log"))
            .unwrap()
            .contains("index=0 conflicting_chunk"));
        // An existing, too open directory is tightened.
        fs::set_permissions(&spool_root, fs::Permissions::from_mode(0o755)).unwrap();
        Spool::open(&spool_root, Uuid::new_v4(), "clt_token").unwrap();
        assert_eq!(mode(&spool_root), 0o700);
    }
}
