//! The local spool: sealed chunks only (ciphertext), one file per chunk, fsynced before
//! the uploader is told about it, deleted only after the server's durable acknowledgement.
//!
//! Layout: `<root>/<launch id>/<stream id>/<index:010>.chunk`, plus `<stream id>/final`
//! holding the final index once the stream's final chunk is sealed. The launch id is a
//! digest of the launch token, so a restarted agent finds its leftovers and nobody else's.

use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Hex of the first 16 bytes of SHA-256 of the token: names the spool without revealing it.
fn launch_id(token: &str) -> String {
    let d = Sha256::new().chain_update(b"cloe-spool/v1/").chain_update(token.as_bytes()).finalize();
    hex::encode(&d[..16])
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SpooledChunk {
    pub stream: Uuid,
    pub index: u32,
    pub path: PathBuf,
}

#[derive(Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    pub fn open(root: &Path, token: &str) -> std::io::Result<Self> {
        let dir = root.join(launch_id(token));
        fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn stream_dir(&self, stream: Uuid) -> PathBuf {
        self.dir.join(stream.to_string())
    }

    /// Writes a sealed chunk durably (temp file, fsync, rename, fsync dir).
    pub fn put(&self, stream: Uuid, index: u32, sealed: &[u8]) -> std::io::Result<SpooledChunk> {
        let dir = self.stream_dir(stream);
        fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{index:010}.chunk"));
        let tmp = dir.join(format!(".{index:010}.tmp"));
        let mut f = fs::File::create(&tmp)?;
        f.write_all(sealed)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        fs::File::open(&dir)?.sync_all()?;
        Ok(SpooledChunk { stream, index, path })
    }

    pub fn mark_final(&self, stream: Uuid, index: u32) -> std::io::Result<()> {
        let path = self.stream_dir(stream).join("final");
        let mut f = fs::File::create(&path)?;
        f.write_all(index.to_string().as_bytes())?;
        f.sync_all()
    }

    pub fn final_index(&self, stream: Uuid) -> Option<u32> {
        fs::read_to_string(self.stream_dir(stream).join("final")).ok()?.trim().parse().ok()
    }

    pub fn remove(&self, chunk: &SpooledChunk) -> std::io::Result<()> {
        match fs::remove_file(&chunk.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
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
            let Some(stream) = s.file_name().to_str().and_then(|n| Uuid::parse_str(n).ok()) else { continue };
            for c in fs::read_dir(s.path())? {
                let c = c?;
                let name = c.file_name();
                let Some(index) = name.to_str().and_then(|n| n.strip_suffix(".chunk")).and_then(|n| n.parse().ok()) else { continue };
                out.push(SpooledChunk { stream, index, path: c.path() });
            }
        }
        out.sort();
        Ok(out)
    }

    /// Streams that have a directory (pending chunks or an unsent end).
    pub fn streams(&self) -> std::io::Result<Vec<Uuid>> {
        Ok(fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok()?.file_name().to_str().and_then(|n| Uuid::parse_str(n).ok()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_list_remove() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path(), "clt_token").unwrap();
        let s = Uuid::new_v4();
        spool.put(s, 2, b"two").unwrap();
        let c0 = spool.put(s, 0, b"zero").unwrap();
        let pending = spool.pending().unwrap();
        assert_eq!(pending.iter().map(|c| c.index).collect::<Vec<_>>(), vec![0, 2]);
        spool.remove(&c0).unwrap();
        assert_eq!(spool.pending().unwrap().len(), 1);
        spool.mark_final(s, 2).unwrap();
        assert_eq!(spool.final_index(s), Some(2));
        // Another token's spool is another directory.
        assert!(Spool::open(root.path(), "clt_other").unwrap().pending().unwrap().is_empty());
    }
}
